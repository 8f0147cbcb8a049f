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
