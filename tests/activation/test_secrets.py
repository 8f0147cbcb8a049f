"""Secrets stay out of messages, logs and webhook payloads; values reach Slack as text, never as mentions or links.

Every expected string here is written by hand from Slack's escaping rules and the redaction rule (scheme, host,
port and a first plain path word stay; user information, query and the rest of the path become ***).
"""

from __future__ import annotations

import json
import logging
import socket

import pytest
from typer.testing import CliRunner

from activation.delivery import deliver
from cli.main import app
from configuration.tiering import Alerts
from features.redact import redact, redact_url
from ingest.files import write_table
from tests.activation.test_alerts import CURRENT, PREVIOUS
from tests.activation.test_delivery import Receiver, make_events

runner = CliRunner()
FAST = Alerts(timeout_seconds=0.4, max_attempts=2, backoff_seconds=0.05, max_total_seconds=3)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://hooks.slack.com/services/T0A1B2C3/B0D4E5F6/XyZsecretToken", "https://hooks.slack.com/services/***"),
        ("http://hooks.slack.com/services/T0A1B2C3/B0D4E5F6/XyZsecretToken", "http://hooks.slack.com/services/***"),
        ("hooks.slack.com/services/T0A1B2C3/B0D4E5F6/XyZsecretToken", "hooks.slack.com/services/***"),
        ("ftp://bob:hunter2@files.example.com/drop", "ftp://***@files.example.com/drop"),
        ("http://u:p@hooks.example.com/abm", "http://***@hooks.example.com/abm"),
        ("https://u:pa/ss@hooks.example.com/abm", "https://***@hooks.example.com/abm"),
        ("https://webhook.site/0c0ffee-4b1d-4e2a", "https://webhook.site/***"),
        ("https://discord.com/api/webhooks/123/tok", "https://discord.com/api/***"),
        ("http://[::1]:8080/hook?token=abc#part", "http://[::1]:8080/hook?***"),
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("https://hooks.example.com/abm", "https://hooks.example.com/abm"),
        ("sqlite:///models/mlflow.db", "sqlite:///models/mlflow.db"),
        ("file:///srv/models/3", "file:///srv/models/3"),
    ],
)
def test_a_url_keeps_its_host_and_loses_its_secrets(url, shown):
    assert redact_url(url) == shown
    if "://" in url:  # in free text, a URL is known by its scheme
        assert redact(f"cannot reach '{url}': refused") == f"cannot reach '{shown}': refused"


def test_text_without_a_url_is_unchanged():
    text = "accounts.csv:account_id: 'A:1@x' appears twice (rows 2, 3). Fix: one row per account"
    assert redact(text) == text


def alerts(tmp_path, *extra: str):
    previous, current = write_table(PREVIOUS, tmp_path / "april.csv"), write_table(CURRENT, tmp_path / "july.csv")
    return runner.invoke(app, ["alerts", str(previous), str(current), "--out", str(tmp_path / "alerts.jsonl"), *extra])


@pytest.mark.parametrize(
    "url, secret",
    [
        ("ftp://bob:hunter2@files.example.com/drop", "hunter2"),
        ("http://hooks.slack.com/services/T0A1B2C3/B0D4E5F6/XyZsecretToken", "XyZsecretToken"),
        ("http://hooks.slack.com/services/T0A1B2C3/B0D4E5F6/XyZsecretToken", "B0D4E5F6"),
        ("https://bob:hunter2@hooks.example.com/abm", "hunter2"),
    ],
)
def test_a_refused_webhook_is_never_echoed_with_its_secret(tmp_path, caplog, url, secret):
    with caplog.at_level(logging.DEBUG):
        result = alerts(tmp_path, "--webhook", url)
    assert result.exit_code == 2, result.output
    said = result.stdout + result.stderr
    assert secret not in said and secret not in caplog.text
    assert "--webhook" in said and not (tmp_path / "alerts.jsonl").exists()


def test_a_webhook_url_from_the_config_is_redacted_too(tmp_path, caplog):
    config = tmp_path / "tiering.yaml"
    config.write_text("alerts:\n  webhook_url: http://hooks.slack.com/services/T0A1B2C3/B0D4E5F6/XyZsecretToken\n")
    with caplog.at_level(logging.DEBUG):
        result = alerts(tmp_path, "--config", str(config))
    assert result.exit_code == 2
    assert "http://hooks.slack.com/services/***" in result.stderr
    assert "XyZsecretToken" not in result.stdout + result.stderr + caplog.text


def test_a_tracking_server_password_is_never_printed(tmp_path, monkeypatch, caplog):
    with socket.socket() as probe:  # a port nothing listens on: the store cannot be reached
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://admin:Tr0ub4dor@127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with caplog.at_level(logging.DEBUG):
        result = runner.invoke(app, ["promote", "1"])
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"http://***@127.0.0.1:{port}" in result.stderr
    assert "Tr0ub4dor" not in result.stdout + result.stderr + caplog.text


HOSTILE = "<!channel> & <https://evil.example|Reset your password>"
ESCAPED = "&lt;!channel&gt; &amp; &lt;https://evil.example|Reset your password&gt;"


def test_slack_control_sequences_arrive_as_text_in_text_and_blocks(tmp_path, monkeypatch):
    secret = "hmac-key-never-sent"
    monkeypatch.setenv("TIERING_WEBHOOK_SECRET", secret)
    [event] = make_events(1)
    event.update(account_id="<!here>", summary=f"{HOSTILE} entered Tier 1", surge_channels=["<@U123>"])
    with Receiver() as receiver:
        report = deliver([event], tmp_path / "alerts.jsonl", receiver.url + "?token=t0k", FAST)
    assert report.complete
    [request] = receiver.requests
    payload = json.loads(request["body"])
    assert payload["text"] == f"{ESCAPED} entered Tier 1"
    assert payload["blocks"][0]["text"]["text"] == f"{ESCAPED} entered Tier 1"
    fields = {item["text"].split("\n")[0]: item["text"].split("\n")[1] for item in payload["blocks"][1]["fields"]}
    assert fields["*account*"] == "&lt;!here&gt;" and fields["*surge channels*"] == "&lt;@U123&gt;"
    mrkdwn = json.dumps([payload["text"], payload["blocks"]])
    assert "<" not in mrkdwn and ">" not in mrkdwn  # no mention, link or command can open anywhere
    assert payload["event"] == event  # the raw values, for receivers that read the event itself
    assert secret.encode() not in request["body"] and b"t0k" not in request["body"]


def test_mlflow_errors_quoting_the_server_url_lose_its_password(monkeypatch):
    import mlflow

    from reports.compare import model_run_id
    from scoring.registry import TrackingError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        mlflow.set_tracking_uri(f"http://admin:Tr0ub4dor@127.0.0.1:{port}")
        mlflow.set_registry_uri(f"http://admin:Tr0ub4dor@127.0.0.1:{port}")
        with pytest.raises(TrackingError) as raised:
            model_run_id("models:/abm-tiering/1")
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    assert "cannot find the training run of models:/abm-tiering/1" in str(raised.value)
    assert "Tr0ub4dor" not in str(raised.value)
