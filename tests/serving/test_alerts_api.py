"""POST /alerts: two books of score records in, the events out; bad input a 400 with its field path."""

from __future__ import annotations

import hashlib

import pytest

from .conftest import serving


def record(account_id: str, as_of: str, **changes) -> dict:
    base = {
        "account_id": account_id,
        "tier": "tier_3",
        "learned_score": 40.0,
        "win_probability": 0.2,
        "rule_score": 40.0,
        "expected_value": 200.0,
        "intent_surge": False,
        "surge_channels": "",
        "reason_1": "",
        "reason_2": "",
        "reason_3": "",
        "model_version": "rules-only",
        "as_of": as_of,
        "scored_at": f"{as_of}T06:00:00+00:00",
        "budget": None,
    }  # other score columns are accepted
    return {**base, **changes}


PREVIOUS = [
    record("A", "2026-04-01", tier="tier_2"),
    record("B", "2026-04-01"),
    record("C", "2026-04-01", learned_score=70.0),
]
CURRENT = [
    record("A", "2026-07-01", tier="tier_1"),
    record("B", "2026-07-01", intent_surge=True, surge_channels="demo_request;external_intent"),
    record("C", "2026-07-01", learned_score=50.0),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory, empty_template):
    import shutil

    folder = tmp_path_factory.mktemp("alerts-store")
    shutil.copy(empty_template / "mlflow.db", folder / "mlflow.db")
    with serving(folder) as client:
        yield client


def test_a_pilots_control_account_gets_no_event(client):
    # B surges in both requests; marked control in the current book, its surge is left out and counted.
    current = [{**row, "pilot_group": "control"} if row["account_id"] == "B" else row for row in CURRENT]
    plain = client.post("/alerts", json={"previous": PREVIOUS, "current": CURRENT}).json()
    held = client.post("/alerts", json={"previous": PREVIOUS, "current": current}).json()
    assert "B" in {event["account_id"] for event in plain["events"]} and plain["control_left_out"] == 0
    assert [e for e in plain["events"] if e["account_id"] != "B"] == held["events"]
    assert held["control_left_out"] == sum(event["account_id"] == "B" for event in plain["events"])


def test_alerts_answers_the_events_by_hand(client):
    response = client.post("/alerts", json={"previous": PREVIOUS, "current": CURRENT})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["as_of"] == "2026-07-01" and answer["previous_as_of"] == "2026-04-01"
    events = answer["events"]
    assert [(e["account_id"], e["kind"]) for e in events] == [
        ("A", "tier_entered"),
        ("B", "intent_surge"),
        ("C", "learned_score_jump"),
    ]
    assert events[0]["id"] == hashlib.sha256(b"A\x1ftier_entered\x1f2026-07-01").hexdigest()[:32]
    assert events[0]["change"] == {"field": "tier", "from": "tier_2", "to": "tier_1", "delta": None}
    assert events[1]["surge_channels"] == ["demo_request", "external_intent"]
    assert events[2]["change"]["delta"] == -20.0


def test_nothing_changed_means_no_event_and_an_empty_previous_book_makes_every_account_new(client):
    unchanged = [dict(r, as_of="2026-07-01") for r in PREVIOUS]
    same = client.post("/alerts", json={"previous": PREVIOUS, "current": unchanged})
    assert same.status_code == 200 and same.json()["events"] == []
    first = client.post("/alerts", json={"previous": [], "current": CURRENT}).json()
    assert [(e["account_id"], e["kind"]) for e in first["events"]] == [("A", "tier_entered"), ("B", "intent_surge")]


@pytest.mark.parametrize(
    "body, path",
    [
        ({"previous": PREVIOUS, "current": [dict(CURRENT[0], tier="gold")]}, ["current", 0, "tier"]),
        (
            {"previous": PREVIOUS, "current": [{k: v for k, v in CURRENT[0].items() if k != "as_of"}]},
            ["current", 0, "as_of"],
        ),
        (
            {"previous": PREVIOUS, "current": [CURRENT[0], dict(CURRENT[1], as_of="2026-08-01")]},
            ["current", 1, "as_of"],
        ),
        ({"previous": PREVIOUS, "current": [CURRENT[0], CURRENT[0]]}, ["current", 1, "account_id"]),
        ({"previous": CURRENT, "current": PREVIOUS}, ["previous", 0, "as_of"]),
        ({"previous": PREVIOUS, "current": [dict(CURRENT[0], account_id="Z")]}, ["current"]),
        ({"previous": PREVIOUS, "current": [dict(CURRENT[0], learned_score="high")]}, ["current", 0, "learned_score"]),
        # outside the ranges /score answers in (probabilities 0-1, scores 0-100, money >= 0)
        ({"previous": PREVIOUS, "current": [dict(CURRENT[0], win_probability=5)]}, ["current", 0, "win_probability"]),
        (
            {"previous": [dict(PREVIOUS[0], win_probability=-1.7e308)], "current": CURRENT},
            ["previous", 0, "win_probability"],
        ),
        ({"previous": PREVIOUS, "current": [dict(CURRENT[0], learned_score=100.5)]}, ["current", 0, "learned_score"]),
        ({"previous": PREVIOUS, "current": [dict(CURRENT[0], rule_score=-0.1)]}, ["current", 0, "rule_score"]),
        ({"previous": PREVIOUS, "current": [dict(CURRENT[0], expected_value=-1)]}, ["current", 0, "expected_value"]),
        ({"previous": PREVIOUS}, ["current"]),
        ({"previous": PREVIOUS, "current": CURRENT, "webhook": "https://x"}, ["webhook"]),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, body, path):
    response = client.post("/alerts", json=body)
    assert response.status_code == 400, response.text
    assert path in [problem["loc"] for problem in response.json()["detail"]]


def test_alerts_needs_the_key_when_one_is_set(empty_template, tmp_path):
    import shutil

    shutil.copy(empty_template / "mlflow.db", tmp_path / "mlflow.db")
    with serving(tmp_path, TIERING_API_KEY="k3y") as client:
        body = {"previous": PREVIOUS, "current": CURRENT}
        assert client.post("/alerts", json=body).status_code == 401
        assert client.post("/alerts", json=body, headers={"Authorization": "Bearer k3y"}).status_code == 200
