"""A throw-away PostgreSQL cluster for tests: initdb in a temporary folder, pg_ctl on a free loopback port.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user (runuser). Without the
Debian `postgresql` binaries the tests skip saying what to install, unless REQUIRE_TEST_SERVICES=1 (CI), where
they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "install PostgreSQL (Debian: apt-get install postgresql) to run the PostgreSQL store tests"


def services_required() -> bool:
    return os.environ.get("REQUIRE_TEST_SERVICES") == "1"


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: PATH first, else the newest Debian /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


class ClusterUnavailable(RuntimeError):
    """PostgreSQL is not installed here, or its cluster would not start."""


def missing(reason: str) -> None:
    """Skip, or fail where CI requires the services."""
    if services_required():
        pytest.fail(f"{reason} (REQUIRE_TEST_SERVICES=1: {INSTALL_HINT})")
    pytest.skip(f"{reason}: {INSTALL_HINT}")


@contextlib.contextmanager
def postgres_for_tests() -> Iterator[str]:
    """postgres_cluster(), skipping (or failing, where CI requires it) when PostgreSQL is unavailable."""
    try:
        with postgres_cluster() as url:
            yield url
    except ClusterUnavailable as error:
        missing(str(error))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A running cluster; yields a SQLAlchemy URL of its `postgres` database (user postgres), then stops it and
    deletes its folder. ClusterUnavailable when PostgreSQL is not installed or would not start."""
    binaries = postgres_bin()
    if binaries is None:
        raise ClusterUnavailable("PostgreSQL's initdb and pg_ctl are not installed")
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="tiering-pg-"))
    data = folder / "data"
    prefix: list[str] = []
    if as_root:
        shutil.chown(folder, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"

    def run(*command: str) -> None:
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    try:
        # The C locale, so text sorts by code point as SQLite and Python sort it (whatever the machine's LANG).
        run(
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "--no-locale",
            "-E",
            "UTF8",
        )
        run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise ClusterUnavailable(f"could not start a PostgreSQL cluster: {error}") from None
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
