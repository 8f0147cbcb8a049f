"""`tiering serve`: the HTTP service on the champion."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import ConfigOpt, UserError, err_console, friendly_errors, say_no_champion_to_serve, use_config
from features.redact import redact


@friendly_errors
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; beyond loopback it needs TIERING_API_KEY.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 3000,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log", help="Log one line per request (method, path, status, time); off by default for latency."
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Start the BentoML service on the champion model (rules only while there is none); follows the alias live."""
    from ingest.settings import SettingsError, check_environment
    from scoring.registry import tracking_uri
    from serving.launch import (
        ACCESS_LOG_ENV,
        CONFIG_ENV,
        CannotListen,
        UnsafeHost,
        check_exposure,
        check_port,
        check_store,
        exec_server,
    )
    from workspace.errors import SchemaMismatch

    try:  # every setting and the address before the server starts: its workers would fail and restart in a loop
        check_environment()
        check_exposure(host)
        check_port(host, port)
        check_store()
    except SettingsError as error:
        raise UserError(f"the environment has settings tiering serve cannot use:\n{error}") from None
    except (UnsafeHost, CannotListen, SchemaMismatch) as error:
        raise UserError(str(error)) from None
    use_config(config)  # a bad file stops here, with its message, rather than leave the service not ready
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())  # read by the service's workers, which inherit this environment
    err_console.print(
        f"Serving the champion of {escape(redact(tracking_uri()))} on http://{escape(host)}:{port} (Ctrl-C stops)",
        highlight=False,
    )
    err_console.print(f"Workspace pages: http://{escape(host)}:{port}/app (sign in as a user of `tiering users`)")
    say_no_champion_to_serve()
    if access_log:
        os.environ[ACCESS_LOG_ENV] = "1"  # read by the service's workers, which inherit this environment
    exec_server(host, port)
