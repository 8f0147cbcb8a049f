"""`tiering serve`: start the BentoML server on the champion, refusing to expose it without a key."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

from serving.middleware import API_KEY_ENV, api_key

SERVICE = "serving.service:TieringService"
ACCESS_LOG_ENV = "TIERING_ACCESS_LOG"
# The tiering.yaml the service reads its business configuration from (`tiering serve --config`); unset:
# ./tiering.yaml, else the built-in defaults. A learned champion keeps its own model configuration.
CONFIG_ENV = "TIERING_CONFIG"


def config_path() -> Path | None:
    from ingest.settings import load_settings

    return load_settings().config


def access_log_enabled() -> bool:
    from ingest.settings import load_settings

    return load_settings().access_log


class UnsafeHost(Exception):
    """Listening beyond loopback without an API key would open the scores to the network."""


def serve_command(host: str, port: int) -> list[str]:
    """The `bentoml serve` command line, run by this interpreter so it uses the same environment."""
    # BentoML binds IP addresses only; the working directory stays the caller's, so a relative
    # MLFLOW_TRACKING_URI (default sqlite:///models/mlflow.db) and ./tiering.yaml resolve as for the CLI.
    address = "127.0.0.1" if host == "localhost" else host
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", address, "--port", str(port)]


def check_exposure(host: str) -> None:
    from ingest.settings import is_loopback

    if not is_loopback(host) and api_key() is None:
        raise UnsafeHost(
            f"--host {host} listens beyond this machine: set {API_KEY_ENV} first (clients then send "
            f"'Authorization: Bearer <key>'), or use --host 127.0.0.1"
        )


def exec_server(host: str, port: int) -> NoReturn:
    """Replace this process with the server, so signals (Ctrl-C, kill PID) reach BentoML directly."""
    command = serve_command(host, port)
    os.execv(command[0], command)


class CannotListen(Exception):
    """The address or port cannot be listened on; the message says why and what to do."""


def check_port(host: str, port: int) -> None:
    """Bind the address once before starting the server, so a port in use is one clear message,
    not BentoML's traceback."""
    import errno
    import socket

    address = "127.0.0.1" if host == "localhost" else host
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        raise CannotListen(
            f"--host {host} is not an address of this machine: use an IP address such as 127.0.0.1 or 0.0.0.0"
        ) from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no clash
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CannotListen(
                    f"port {port} on {address} is already in use by another process: stop it, or pass another --port"
                ) from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise CannotListen(
                    f"--host {host} is not an address of this machine: use one of its addresses, 127.0.0.1 or 0.0.0.0"
                ) from None
            if error.errno == errno.EACCES:
                raise CannotListen(f"port {port} needs privileges to listen on: pass a port above 1023") from None
            raise CannotListen(f"cannot listen on {address}:{port}: {error.strerror or error}") from None


def check_store() -> None:
    """Refuse a workspace store whose schema this version does not know (SchemaMismatch names `tiering db upgrade`).
    No store yet is fine (the pages create one on first use), and so is one that cannot be reached now (the pages
    answer 503 until it can)."""
    from workspace import store_exists
    from workspace.errors import StoreMissing, StoreUnavailable
    from workspace.store import WorkspaceStore

    if not store_exists():
        return
    try:
        WorkspaceStore.open(create=False).close()
    except (StoreMissing, StoreUnavailable):
        return
