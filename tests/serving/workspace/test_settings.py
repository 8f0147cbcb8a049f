"""The workspace's settings: a weak session secret or a proxy list that is not addresses stops with its name."""

from __future__ import annotations

import pytest

from ingest.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("TIERING_SESSION_SECRET", "hunter2xyz", "shorter than 32 characters"),
        ("TIERING_SSO_PROXIES", "10.0.0.5,proxy.example", "'proxy.example' is not an IP address or network"),
        ("TIERING_SSO_HEADER", "X-User: admin", "is not a header name"),
    ],
)
def test_a_bad_workspace_setting_is_named_with_its_fix(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert name in str(refused.value) and says in str(refused.value)
    if name == "TIERING_SESSION_SECRET":
        assert value not in str(refused.value)  # a secret is never echoed


def test_good_workspace_settings_are_read(monkeypatch):
    monkeypatch.setenv("TIERING_SESSION_SECRET", "s" * 40)
    monkeypatch.setenv("TIERING_SSO_HEADER", " X-Forwarded-User ")
    monkeypatch.setenv("TIERING_SSO_PROXIES", "10.0.0.5, 192.168.0.0/16")
    settings = load_settings()
    assert settings.session_secret.get_secret_value() == "s" * 40
    assert settings.sso_header == "X-Forwarded-User" and settings.sso_proxies == "10.0.0.5, 192.168.0.0/16"
