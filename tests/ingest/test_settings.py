"""The one loopback rule, shared by `tiering serve` (may it listen without an API key?) and webhook delivery (may
events travel over plain http?): `localhost` and loopback IP addresses, nothing a name server could redirect."""

from __future__ import annotations

import pytest

from ingest.settings import is_loopback
from serving.launch import UnsafeHost, check_exposure


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "10.0.0.1", "relay.localhost", "localhost.localdomain", "LOCALHOST.example", "example.com"],
)
def test_hosts_that_are_not_loopback(host):
    assert not is_loopback(host)


def test_serve_refuses_a_localhost_subdomain_without_a_key(monkeypatch):
    monkeypatch.delenv("TIERING_API_KEY", raising=False)
    check_exposure("127.0.0.1")  # loopback: open without a key
    with pytest.raises(UnsafeHost):
        check_exposure("relay.localhost")


@pytest.mark.parametrize(("value", "traceback"), [("1", True), ("yes", True), ("0", False), ("no", False)])
def test_tiering_debug_is_read_as_a_setting(value, traceback, monkeypatch, tmp_path):
    """TIERING_DEBUG=0 means off (it used to mean on: any non-empty value did)."""
    from typer.testing import CliRunner

    from cli.main import app

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("ingest.io.load_export", broken)
    monkeypatch.setenv("TIERING_DEBUG", value)
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    if traceback:
        assert isinstance(result.exception, RuntimeError)
    else:
        assert result.exit_code == 1
        assert "unexpected error: RuntimeError: a bug" in result.output
