"""`tiering serve`: start the BentoML server on the champion, refusing to expose it without a key."""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import NoReturn

from serving.middleware import API_KEY_ENV, api_key

SERVICE = "serving.service:TieringService"
ACCESS_LOG_ENV = "TIERING_ACCESS_LOG"
# The tiering.yaml the service uses when it scores with the rules only (`tiering serve --config`); unset: ./tiering.yaml,
# else the built-in defaults. A learned champion scores with the configuration it was trained with.
CONFIG_ENV = "TIERING_CONFIG"


def config_path() -> str | None:
    return os.environ.get(CONFIG_ENV) or None


def access_log_enabled() -> bool:
    return os.environ.get(ACCESS_LOG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class UnsafeHost(Exception):
    """Listening beyond loopback without an API key would open the scores to the network."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def serve_command(host: str, port: int) -> list[str]:
    """The `bentoml serve` command line, run by this interpreter so it uses the same environment."""
    # BentoML binds IP addresses only; the working directory stays the caller's, so a relative
    # MLFLOW_TRACKING_URI (default sqlite:///models/mlflow.db) and ./tiering.yaml resolve as for the CLI.
    address = "127.0.0.1" if host == "localhost" else host
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", address, "--port", str(port)]


def check_exposure(host: str) -> None:
    if not is_loopback(host) and api_key() is None:
        raise UnsafeHost(f"--host {host} listens beyond this machine: set {API_KEY_ENV} first (clients then send "
                         f"'Authorization: Bearer <key>'), or use --host 127.0.0.1")


def exec_server(host: str, port: int) -> NoReturn:
    """Replace this process with the server, so signals (Ctrl-C, kill PID) reach BentoML directly."""
    command = serve_command(host, port)
    os.execv(command[0], command)
