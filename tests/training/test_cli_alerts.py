"""`tiering alerts` and `tiering score --alerts-against` end to end, against a real local receiver."""

import json

import pandas as pd
from typer.testing import CliRunner

from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401
from tests.training.test_alerts import CURRENT, PREVIOUS
from tests.training.test_delivery import Receiver, free_port_url
from training.cli import app
from training.files import write_table

runner = CliRunner()
FAST = "alerts:\n  timeout_seconds: 0.4\n  max_attempts: 2\n  backoff_seconds: 0.05\n  max_total_seconds: 3\n"


def pair(tmp_path):
    return (write_table(PREVIOUS, tmp_path / "april.csv"), write_table(CURRENT, tmp_path / "july.csv"))


def test_alerts_writes_the_events_and_delivers_them(tmp_path, monkeypatch):
    previous, current = pair(tmp_path)
    config = tmp_path / "fast.yaml"
    config.write_text(FAST)
    monkeypatch.setenv("TIERING_WEBHOOK_SECRET", "k")
    out = tmp_path / "alerts.jsonl"
    with Receiver() as receiver:
        result = runner.invoke(
            app,
            [
                "alerts",
                str(previous),
                str(current),
                "--out",
                str(out),
                "--webhook",
                receiver.url,
                "--config",
                str(config),
            ],
        )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["account_id"], e["kind"]) for e in events][:3] == [
        ("A", "tier_entered"),
        ("B", "tier_left"),
        ("C", "intent_surge"),
    ]
    assert len(events) == 7 and "7 event(s)" in result.output and "Delivered 7 event(s)" in result.output
    assert receiver.keys() == [e["id"] for e in events]
    again = runner.invoke(
        app,
        ["alerts", str(previous), str(current), "--out", str(out), "--webhook", receiver.url, "--config", str(config)],
    )
    assert again.exit_code == 0 and "7 delivered by an earlier run" in again.output  # nothing sent twice


def test_unreachable_receiver_exits_3_and_keeps_the_outbox(tmp_path):
    previous, current = pair(tmp_path)
    config = tmp_path / "fast.yaml"
    config.write_text(FAST)
    out = tmp_path / "alerts.jsonl"
    result = runner.invoke(
        app,
        [
            "alerts",
            str(previous),
            str(current),
            "--out",
            str(out),
            "--webhook",
            free_port_url(),
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 3
    assert "delivered partially: 7 event(s) not delivered" in " ".join(result.output.split())
    assert len((tmp_path / "alerts.jsonl.outbox").read_text().splitlines()) == 7 and out.exists()
    assert "Traceback" not in result.output


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    previous, current = pair(tmp_path)
    out = tmp_path / "alerts.jsonl"
    plain = runner.invoke(
        app, ["alerts", str(previous), str(current), "--out", str(out), "--webhook", "http://hooks.example.com/abm"]
    )
    assert plain.exit_code == 2 and "plain http beyond this machine" in " ".join(plain.output.split())
    assert not out.exists()
    swapped = runner.invoke(app, ["alerts", str(current), str(previous), "--out", str(out)])
    assert swapped.exit_code == 2 and "pass the earlier scoring first" in " ".join(swapped.output.split())
    other = write_table(CURRENT.assign(account_id=[f"X{i}" for i in range(7)]), tmp_path / "other.csv")
    strangers = runner.invoke(app, ["alerts", str(previous), str(other), "--out", str(out)])
    assert strangers.exit_code == 2 and "two different books" in strangers.output and not out.exists()


def test_score_with_alerts_against_an_earlier_scoring(write_export, mlflow_store, tmp_path):  # noqa: F811
    export = write_export()
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    ran = runner.invoke(app, ["score", str(export), "--out", str(first), "--as-of", "2024-01-02"])
    assert ran.exit_code == 0, ran.output
    result = runner.invoke(
        app, ["score", str(export), "--out", str(second), "--as-of", "2024-05-01", "--alerts-against", str(first)]
    )
    assert result.exit_code == 0, result.output
    events_file = tmp_path / "second.alerts.jsonl"
    assert "Events written to" in result.output and events_file.exists()
    before = pd.read_csv(first, dtype=str, keep_default_na=False).set_index("account_id")
    after = pd.read_csv(second, dtype=str, keep_default_na=False).set_index("account_id")
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    # Oracle: each account whose tier entered Tier 1/2, or left them, between the two files.
    watched = {"tier_1", "tier_2"}
    expected = sorted(
        a
        for a in after.index
        if after.loc[a, "tier"] != before.loc[a, "tier"]
        and (after.loc[a, "tier"] in watched or before.loc[a, "tier"] in watched)
    )
    assert sorted(e["account_id"] for e in events if e["kind"].startswith("tier_")) == expected
    assert {e["as_of"] for e in events} <= {"2024-05-01"} and after["as_of"].unique().tolist() == ["2024-05-01"]
