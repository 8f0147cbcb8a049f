"""Alert events between two hand-built scorings: every event worked out by hand."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from activation.alerts import build_events, check_events_target, write_events
from configuration.tiering import Alerts
from features.errors import DataError
from scoring.scorer import SCORE_COLUMNS


def book(rows: list[dict], as_of: str) -> pd.DataFrame:
    base = {column: "" for column in SCORE_COLUMNS}
    base.update(
        revenue_potential_score=50.0,
        business_fit_score=50.0,
        engagement_score=10.0,
        rule_score=40.0,
        rule_tier="tier_3",
        learned_tier="tier_3",
        tier="tier_3",
        budget=np.nan,
        intent_surge=False,
        win_probability=0.2,
        expected_deal_size=1000.0,
        expected_value=200.0,
        learned_score=40.0,
        model_version="3",
        scored_at=f"{as_of}T06:00:00+00:00",
        as_of=as_of,
    )
    return pd.DataFrame([{**base, **row} for row in rows], columns=SCORE_COLUMNS)


PREVIOUS = book(
    [
        {"account_id": "A", "tier": "tier_2"},  # -> tier_1: entered Tier 1
        {"account_id": "B", "tier": "tier_1"},  # -> tier_3: left
        {"account_id": "C", "intent_surge": False, "surge_channels": "web_visit"},  # -> surges
        {"account_id": "D", "win_probability": 0.20, "learned_score": 40.0},  # +0.15 and +14.99: one jump only
        {
            "account_id": "E",
            "intent_surge": True,
            "surge_channels": "web_visit;demo_request",
            "tier": "tier_1",
            "win_probability": 0.5,
            "learned_score": 70.0,
        },  # unchanged: no event
        {"account_id": "F", "tier": "tier_2", "learned_score": 80.0},  # -> untiered, score down 20
    ],
    "2026-04-01",
)
CURRENT = book(
    [
        {"account_id": "A", "tier": "tier_1", "reason_1": "Demo requested twice"},
        {"account_id": "B", "tier": "tier_3"},
        {"account_id": "C", "intent_surge": True, "surge_channels": "demo_request;external_intent"},
        {"account_id": "D", "win_probability": 0.35, "learned_score": 54.99},
        {
            "account_id": "E",
            "intent_surge": True,
            "surge_channels": "web_visit;demo_request",
            "tier": "tier_1",
            "win_probability": 0.5,
            "learned_score": 70.0,
        },
        {"account_id": "F", "tier": "untiered", "learned_score": 60.0},
        {"account_id": "G", "tier": "tier_2"},  # new account, straight into Tier 2
    ],
    "2026-07-01",
)


def digest(account, kind, as_of):
    return hashlib.sha256(f"{account}\x1f{kind}\x1f{as_of}".encode()).hexdigest()[:32]


def test_events_by_hand():
    events = build_events(PREVIOUS, CURRENT, Alerts())
    assert [(e["account_id"], e["kind"]) for e in events] == [
        ("A", "tier_entered"),
        ("B", "tier_left"),
        ("C", "intent_surge"),
        ("D", "win_probability_jump"),
        ("F", "tier_left"),
        ("F", "learned_score_jump"),
        ("G", "tier_entered"),
    ]
    by = {(e["account_id"], e["kind"]): e for e in events}
    a = by["A", "tier_entered"]
    assert a["change"] == {"field": "tier", "from": "tier_2", "to": "tier_1"}
    assert a["summary"] == "A entered Tier 1 (from Tier 2)" and a["reasons"] == ["Demo requested twice"]
    assert a["as_of"] == "2026-07-01" and a["previous_as_of"] == "2026-04-01" and a["tier"] == "tier_1"
    assert a["id"] == digest("A", "tier_entered", "2026-07-01")
    assert by["B", "tier_left"]["summary"] == "B left Tier 1 (now Tier 3)"
    c = by["C", "intent_surge"]
    assert c["surge_channels"] == ["demo_request", "external_intent"]
    assert c["change"] == {"field": "surge_channels", "from": ["web_visit"], "to": ["demo_request", "external_intent"]}
    d = by["D", "win_probability_jump"]
    assert d["change"]["delta"] == pytest.approx(0.15) and d["summary"] == "D: win probability up 20% -> 35%"
    f = by["F", "learned_score_jump"]
    assert f["change"] == {"field": "learned_score", "from": 80.0, "to": 60.0, "delta": -20.0}
    assert by["G", "tier_entered"]["change"]["from"] is None
    assert by["G", "tier_entered"]["summary"] == "G entered Tier 2 (new account)"


def test_thresholds_come_from_the_config():
    events = build_events(
        PREVIOUS, CURRENT, Alerts(win_probability_jump=0.5, learned_score_jump=14.99, tiers=["tier_1"])
    )
    kinds = [(e["account_id"], e["kind"]) for e in events]
    assert ("D", "win_probability_jump") not in kinds and ("D", "learned_score_jump") in kinds
    assert ("G", "tier_entered") not in kinds and ("F", "tier_left") not in kinds  # Tier 2 no longer watched


def test_no_event_when_nothing_changed_and_ids_are_stable():
    same = CURRENT.assign(as_of="2026-10-01")
    assert build_events(same.assign(as_of="2026-07-01"), same, Alerts()) == []
    first, second = build_events(PREVIOUS, CURRENT, Alerts()), build_events(PREVIOUS, CURRENT.iloc[::-1], Alerts())
    assert [e["id"] for e in first] == [e["id"] for e in second]
    assert len({e["id"] for e in first}) == len(first)


def test_two_different_books_and_swapped_files_are_refused():
    other = CURRENT.assign(account_id=["X1", "X2", "X3", "X4", "X5", "X6", "X7"])
    with pytest.raises(DataError, match="no account in common"):
        build_events(PREVIOUS, other, Alerts())
    with pytest.raises(DataError, match="pass the earlier scoring first"):
        build_events(CURRENT, PREVIOUS, Alerts())
    mixed = pd.concat([CURRENT, PREVIOUS.iloc[:1].assign(account_id="Z")])
    with pytest.raises(DataError, match="several as_of dates"):
        build_events(PREVIOUS, mixed, Alerts())


def test_events_file_jsonl_and_csv_and_never_overwrites_a_foreign_file(tmp_path):
    events = build_events(PREVIOUS, CURRENT, Alerts())
    path = write_events(events, tmp_path / "alerts.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == [e["id"] for e in events]
    check_events_target(path)  # our own file may be replaced
    csv_path = write_events(events, tmp_path / "alerts.csv")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert table.loc[2, "to"] == "demo_request;external_intent" and table.loc[0, "from"] == "tier_2"
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text("my own notes\n")
    with pytest.raises(DataError, match="never replaced"):
        check_events_target(foreign)
    with pytest.raises(DataError, match="must end in .jsonl"):
        check_events_target(tmp_path / "alerts.txt")


def test_a_previous_scores_file_from_before_as_of_existed_is_still_compared(tmp_path):
    from reports.diff import read_scores

    old = tmp_path / "old.csv"
    PREVIOUS.drop(columns=["as_of", "surge_channels"]).to_csv(old, index=False)
    previous = read_scores(old)
    assert previous["as_of"].tolist() == [""] * 6 and previous["surge_channels"].tolist() == [""] * 6
    events = build_events(previous, CURRENT, Alerts())
    assert [(e["account_id"], e["kind"]) for e in events][:2] == [("A", "tier_entered"), ("B", "tier_left")]
    assert {e["previous_as_of"] for e in events} == {""} and {e["as_of"] for e in events} == {"2026-07-01"}
    with pytest.raises(DataError, match="no as_of date"):
        build_events(CURRENT, previous, Alerts())  # the current book must say when it was scored
