"""`tiering alerts` and `tiering score --alerts-against` end to end, against a real local receiver."""

import json

import pandas as pd
from typer.testing import CliRunner

from cli.main import app
from ingest.files import write_table
from tests.activation.test_alerts import CURRENT, PREVIOUS
from tests.activation.test_delivery import Receiver, free_port_url
from tests.conftest import VALID_EXPORT
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401

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
    for url in ("http://127.0.0.1:9/a b", "https://hooks.example.com/\u00e9t\u00e9"):  # refused at once, no traceback
        odd = runner.invoke(app, ["alerts", str(previous), str(current), "--out", str(out), "--webhook", url])
        assert odd.exit_code == 2 and "percent-encode" in odd.output and "Traceback" not in odd.output
        assert not out.exists()
    swapped = runner.invoke(app, ["alerts", str(current), str(previous), "--out", str(out)])
    assert swapped.exit_code == 2 and "pass the earlier scoring first" in " ".join(swapped.output.split())
    other = write_table(CURRENT.assign(account_id=[f"X{i}" for i in range(7)]), tmp_path / "other.csv")
    strangers = runner.invoke(app, ["alerts", str(previous), str(other), "--out", str(out)])
    assert strangers.exit_code == 2 and "two different books" in strangers.output and not out.exists()


def test_score_with_alerts_against_an_earlier_scoring(write_export, mlflow_store, tmp_path):  # noqa: F811
    # A2 (rule score 48.2 without engagement: Tier 2) requests ten demos and visits the site five times in the last
    # fortnight of April: engagement lifts its rule score past 60 (Tier 1), and two channels surge.
    burst = "".join(f"A2,2024-04-{day:02d}T10:00:00,demo_request,1\n" for day in range(20, 30))
    burst += "".join(f"A2,2024-04-{day:02d}T11:00:00,web_visit,1\n" for day in range(24, 29))
    export = write_export({"engagement.csv": VALID_EXPORT["engagement.csv"] + burst})
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    ran = runner.invoke(app, ["score", str(export), "--out", str(first), "--as-of", "2024-01-02"])
    assert ran.exit_code == 0, ran.output
    result = runner.invoke(
        app, ["score", str(export), "--out", str(second), "--as-of", "2024-05-01", "--alerts-against", str(first)]
    )
    assert result.exit_code == 0, result.output
    events_file = tmp_path / "second.alerts.jsonl"
    assert "Events written to" in result.output and events_file.exists()
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    # Rules only: no win probability, so no win-probability jump; the learned score is the rule score.
    assert [(e["account_id"], e["kind"]) for e in events] == [
        ("A2", "intent_surge"),
        ("A2", "tier_entered"),
        ("A2", "learned_score_jump"),
    ]
    surge, entered, jump = events
    assert surge["surge_channels"] == ["web_visit", "demo_request"]
    assert entered["change"] == {"field": "tier", "from": "tier_2", "to": "tier_1"}
    assert {e["as_of"] for e in events} == {"2024-05-01"} and {e["previous_as_of"] for e in events} == {"2024-01-02"}
    after = pd.read_csv(second, dtype=str, keep_default_na=False).set_index("account_id")
    assert after.loc["A2", "surge_channels"] == "web_visit;demo_request"
    assert jump["change"]["to"] == float(after.loc["A2", "learned_score"]) and jump["change"]["delta"] >= 15


def test_ctrl_c_during_delivery_keeps_the_rest_in_the_outbox(tmp_path, monkeypatch):
    import activation.delivery

    previous, current = pair(tmp_path)
    out = tmp_path / "alerts.jsonl"
    real_send, calls = activation.delivery._send, []

    def send_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_send(*args, **kwargs)

    monkeypatch.setattr(activation.delivery, "_send", send_then_interrupt)
    with Receiver() as receiver:
        result = runner.invoke(
            app, ["alerts", str(previous), str(current), "--out", str(out), "--webhook", receiver.url]
        )
    assert result.exit_code == 130 and "are kept in" in " ".join(result.output.split())
    kept = (tmp_path / "alerts.jsonl.outbox").read_text().splitlines()
    assert len(receiver.requests) == 2 and len(kept) == 5 and out.exists()


def test_a_run_without_webhook_says_what_waits_in_the_outbox(tmp_path):
    previous, current = pair(tmp_path)
    out = tmp_path / "alerts.jsonl"
    (tmp_path / "alerts.jsonl.outbox").write_text('{"id":"1"}\n{"id":"2"}\n')
    result = runner.invoke(app, ["alerts", str(previous), str(current), "--out", str(out)])
    assert result.exit_code == 0 and "2 undelivered event(s) wait in" in " ".join(result.output.split())


def test_a_second_run_on_one_events_file_is_refused_before_writing_anything(tmp_path):
    """The refused second run once replaced the events file of the first while that one was still delivering."""
    import fcntl

    previous, current = pair(tmp_path)
    out = tmp_path / "alerts.jsonl"
    with Receiver() as receiver:
        first = runner.invoke(
            app, ["alerts", str(previous), str(current), "--out", str(out), "--webhook", receiver.url]
        )
        assert first.exit_code == 0, first.output
        written = out.read_bytes()
        ledger = (tmp_path / "alerts.jsonl.delivered").read_bytes()
        later = write_table(CURRENT.assign(as_of="2026-12-01", tier="tier_3"), tmp_path / "december.csv")
        with open(tmp_path / "alerts.jsonl.delivered", "a") as running:  # what a run still delivering holds
            fcntl.flock(running.fileno(), fcntl.LOCK_EX)
            for webhook in (["--webhook", receiver.url], []):
                second = runner.invoke(app, ["alerts", str(current), str(later), "--out", str(out), *webhook])
                text = " ".join(second.output.split())
                assert second.exit_code == 2 and "another run is writing or delivering this events file" in text
                assert "nothing was written or sent" in text and "Traceback" not in text
        assert len(receiver.requests) == 7  # the first run's only
    assert out.read_bytes() == written and (tmp_path / "alerts.jsonl.delivered").read_bytes() == ledger
    assert not (tmp_path / "alerts.jsonl.outbox").exists()


def test_score_checks_the_earlier_scoring_before_writing_its_scores(write_export, mlflow_store, tmp_path):  # noqa: F811
    export = write_export()
    later = tmp_path / "later.csv"
    ran = runner.invoke(app, ["score", str(export), "--out", str(later), "--as-of", "2024-05-01"])
    assert ran.exit_code == 0, ran.output
    out = tmp_path / "earlier.csv"
    swapped = runner.invoke(
        app, ["score", str(export), "--out", str(out), "--as-of", "2024-01-02", "--alerts-against", str(later)]
    )
    text = " ".join(swapped.output.split())
    assert swapped.exit_code == 2 and "pass the earlier scoring first" in text and "2024-05-01" in text
    assert not out.exists() and not (tmp_path / "earlier.alerts.jsonl").exists()
    strangers = CURRENT.assign(account_id=[f"X{i}" for i in range(7)], as_of="2024-01-02")
    other = runner.invoke(
        app,
        ["score", str(export), "--out", str(out), "--alerts-against", str(write_table(strangers, tmp_path / "x.csv"))],
    )
    assert other.exit_code == 2 and "two different books" in other.output
    assert not out.exists() and not (tmp_path / "earlier.alerts.jsonl").exists()
