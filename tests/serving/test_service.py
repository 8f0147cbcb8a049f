"""The HTTP service in-process: endpoints, rules-only mode, a broken champion, bad input, auth, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scoring import registry
from scoring.scorer import SCORE_COLUMNS
from serving.middleware import MAX_BODY_BYTES
from serving.requests import ACCOUNT_EXAMPLE, MAX_SCORE_ACCOUNTS

from .conftest import serving, tracking_at

KEY = "k3y-for-tests-only"
PLAIN = {"account_id": "ACC-PLAIN", "industry": "Retail", "employees": 40}


@pytest.fixture(scope="module")
def client(trained):
    with serving(trained.folder) as client:
        yield client


def assert_finite(value) -> None:
    """JSON answers hold no NaN or Infinity anywhere."""
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for inner in value.values():
            assert_finite(inner)
    elif isinstance(value, list):
        for inner in value:
            assert_finite(inner)


def test_score_answers_one_record_per_account_with_the_scores_file_columns(client, trained):
    response = client.post("/score", json={"accounts": [ACCOUNT_EXAMPLE, PLAIN], "as_of": "2026-07-01"})

    assert response.status_code == 200
    answer = response.json()
    assert answer["model_version"] == trained.version and answer["as_of"] == "2026-07-01"
    assert [record["account_id"] for record in answer["scores"]] == ["ACC-000042", "ACC-PLAIN"]
    for record in answer["scores"]:
        assert list(record) == [*SCORE_COLUMNS, "pilot_group"]  # the scores file: pilot_group too
        assert 0 < record["win_probability"] < 1 and record["budget"] is None
        assert record["model_version"] == trained.version
    assert_finite(answer)


def test_score_defaults_as_of_to_the_day_after_the_latest_date_sent(client):
    answer = client.post("/score", json={"accounts": [ACCOUNT_EXAMPLE]}).json()
    assert answer["as_of"] == "2026-06-21"


def test_tier_fills_tiers_by_capacity_and_splits_the_budget(client, trained):
    book = [{**ACCOUNT_EXAMPLE, "account_id": f"A{i}", "employees": 100 * (i + 1)} for i in range(30)]
    response = client.post("/tier", json={"accounts": book, "as_of": "2026-07-01", "budget": 90_000})

    assert response.status_code == 200
    answer = response.json()
    counts = {row["tier"]: row for row in answer["tiers"]}
    assert answer["budget"] == 90_000 and answer["model_version"] == trained.version
    assert sum(row["accounts"] for row in answer["tiers"]) == 30
    # Tier 1 is filled by capacity (20 by default) among the accounts at or above its min_score (60).
    eligible = sum(record["learned_score"] >= 60 for record in answer["scores"])
    assert counts["tier_1"]["accounts"] == min(20, eligible) and eligible >= 5
    assert sum(r["budget"] for r in answer["scores"]) == pytest.approx(sum(r["budget"] for r in counts.values()))
    assert_finite(answer)


def test_tier_without_a_budget_says_null_rather_than_zero(client):
    answer = client.post("/tier", json={"accounts": [ACCOUNT_EXAMPLE, PLAIN]}).json()
    assert answer["budget"] is None
    assert all(row["budget"] is None and row["per_account"] is None for row in answer["tiers"])
    assert all(record["budget"] is None for record in answer["scores"])


def test_model_describes_the_champion_from_the_registry(client, trained):
    info = client.get("/model").json()

    assert info["name"] == "abm-tiering" and info["version"] == trained.version and info["alias"] == "champion"
    assert info["ready"] is True and info["problem"] is None
    assert info["trained_at"] and info["window_start"] < info["window_end"]
    assert 0.5 < info["holdout_roc_auc"] <= 1 and info["rule_roc_auc"] > 0
    assert info["metrics"]["model_roc_auc"] == pytest.approx(info["holdout_roc_auc"])


def test_probes_metrics_and_the_openapi_page(client):
    for probe in ("/healthz", "/livez", "/readyz"):
        assert client.get(probe).status_code == 200
    client.post("/score", json={"accounts": [PLAIN]})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "bentoml_service_request_total" in metrics.text

    spec = client.get("/docs.json").json()
    assert {"/score", "/tier", "/model"} <= set(spec["paths"])
    account = spec["components"]["schemas"]["Account"]
    assert account["properties"]["employees"]["description"] and account["example"]["account_id"]


# --- Bad input: always 400 with the field path, never a 500 -----------------------------------------


def with_account(**fields) -> str:
    return json.dumps({"accounts": [{"account_id": "A", **fields}]})


BAD_REQUESTS = {
    "wrong type": (with_account(employees="many"), ["accounts", 0, "employees"]),
    "missing account_id": ('{"accounts": [{"industry": "Software"}]}', ["accounts", 0, "account_id"]),
    "empty account_id": ('{"accounts": [{"account_id": ""}]}', ["accounts", 0, "account_id"]),
    "negative number": (with_account(annual_revenue=-1), ["accounts", 0, "annual_revenue"]),
    "NaN": ('{"accounts": [{"account_id": "A", "employees": NaN}]}', ["accounts", 0, "employees"]),
    "Infinity": ('{"accounts": [{"account_id": "A", "employees": Infinity}]}', ["accounts", 0, "employees"]),
    "overflowing number": ('{"accounts": [{"account_id": "A", "employees": 1e999}]}', ["accounts", 0, "employees"]),
    "intent score over 100": (
        with_account(intent=[{"date": "2026-01-01", "topic": "crm", "score": 101}]),
        ["accounts", 0, "intent", 0, "score"],
    ),
    "negative count": (
        with_account(engagement=[{"timestamp": "2026-01-01", "channel": "web_visit", "count": -2}]),
        ["accounts", 0, "engagement", 0, "count"],
    ),
    "date that does not parse": (
        with_account(engagement=[{"timestamp": "last tuesday", "channel": "web_visit"}]),
        ["accounts", 0, "engagement", 0, "timestamp"],
    ),
    "date as a number": (
        with_account(intent=[{"date": 1767225600, "topic": "crm"}]),
        ["accounts", 0, "intent", 0, "date"],
    ),
    "date out of range": (
        with_account(engagement=[{"timestamp": "2999-01-01", "channel": "web_visit"}]),
        ["accounts", 0, "engagement", 0, "timestamp"],
    ),
    "date past year 9999 in UTC": (
        with_account(engagement=[{"timestamp": "9999-12-31T23:00:00-05:00", "channel": "x"}]),
        ["accounts", 0, "engagement", 0, "timestamp"],
    ),
    "impossible date": (
        with_account(intent=[{"date": "2026-02-30", "topic": "crm"}]),
        ["accounts", 0, "intent", 0, "date"],
    ),
    "unknown outcome": (
        with_account(opportunities=[{"opportunity_id": "O", "created_date": "2026-01-01", "outcome": "pending"}]),
        ["accounts", 0, "opportunities", 0, "outcome"],
    ),
    "closed without close_date": (
        with_account(opportunities=[{"opportunity_id": "O", "created_date": "2026-01-01", "outcome": "won"}]),
        ["accounts", 0, "opportunities", 0],
    ),
    "negative amount": (
        with_account(
            opportunities=[{"opportunity_id": "O", "created_date": "2026-01-01", "outcome": "open", "amount": -10}]
        ),
        ["accounts", 0, "opportunities", 0, "amount"],
    ),
    "unknown event field": (
        with_account(engagement=[{"timestamp": "2026-01-01", "channel": "web_visit", "cnt": 2}]),
        ["accounts", 0, "engagement", 0, "cnt"],
    ),
    "custom field that is not a scalar": (with_account(tags=["a", "b"]), ["accounts", 0, "tags"]),
    "nested custom field": (with_account(tags=json.loads("[" * 20 + "]" * 20)), ["accounts", 0, "tags"]),
    "no accounts": ('{"accounts": []}', ["accounts"]),
    "too many accounts": (
        json.dumps({"accounts": [{"account_id": str(i)} for i in range(MAX_SCORE_ACCOUNTS + 1)]}),
        ["accounts"],
    ),
    "duplicate account_id": (
        '{"accounts": [{"account_id": "A"}, {"account_id": "B"}, {"account_id": "A"}]}',
        ["accounts", 2, "account_id"],
    ),
    "duplicate numeric account_id": (
        '{"accounts": [{"account_id": 0.0}, {"account_id": 0.0}]}',
        ["accounts", 1, "account_id"],
    ),
    "as_of that does not parse": ('{"accounts": [{"account_id": "A"}], "as_of": "tomorrow"}', ["as_of"]),
    "misspelt top-level key": ('{"accounts": [{"account_id": "A"}], "asof": "2026-01-01"}', ["asof"]),
    "empty body": ("", ["accounts"]),
    "malformed JSON": ('{"accounts": [', []),
    "not JSON text": (b"\xff\xfe\x00", []),
    "JSON that is not an object": ("[1, 2]", []),
    "runaway nesting": ("[" * 100_000, []),
}


@pytest.mark.parametrize("body, path", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_input_is_a_400_naming_the_field(client, body, path):
    response = client.post("/score", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400, response.text
    assert path in [problem["loc"] for problem in response.json()["detail"]]


def test_every_problem_in_a_request_is_listed(client):
    body = {
        "accounts": [
            {"account_id": "A", "employees": -1},
            {"account_id": "A", "country": 5, "tags": {}},
            {"industry": "x"},
        ],
        "as_of": "never",
    }
    problems = client.post("/score", json=body).json()["detail"]
    assert {tuple(p["loc"]) for p in problems} == {
        ("accounts", 0, "employees"),
        ("accounts", 1, "tags"),
        ("accounts", 1, "account_id"),
        ("accounts", 2, "account_id"),
        ("as_of",),
    }


def test_a_refused_request_leaves_the_clients_values_out_of_the_logs(client, caplog):
    private = "Private Industries Ltd"
    body = {"accounts": [{"account_id": "A", "account_name": private, "employees": private}]}
    assert client.post("/score", json=body).status_code == 400
    assert "employees" in caplog.text and private not in caplog.text


def test_a_negative_budget_is_refused(client):
    response = client.post("/tier", json={"accounts": [PLAIN], "budget": -5})
    assert response.status_code == 400 and ["budget"] in [p["loc"] for p in response.json()["detail"]]


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded"])
def test_form_encoded_bodies_are_refused_with_a_hint(client, content_type):
    response = client.post("/score", content=json.dumps({"accounts": [PLAIN]}), headers={"content-type": content_type})
    assert response.status_code == 415 and "application/json" in response.json()["error"]


def test_an_oversized_body_is_refused_before_it_is_read(client):
    response = client.post("/score", content=b" " * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"][0] == {"type": "body_too_large", "loc": ["body"], "msg": response.json()["error"]}


# --- Modes: rules only, and a champion that cannot be loaded -----------------------------------------


def test_without_a_champion_it_scores_with_the_rules_and_says_so(empty_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the rules come from ./tiering.yaml: use the built-in defaults here
    with serving(empty_store) as client:
        assert client.get("/readyz").status_code == 200
        info = client.get("/model").json()
        assert info["version"] == "rules-only" and info["alias"] is None and info["ready"] is True

        answer = client.post("/score", json={"accounts": [ACCOUNT_EXAMPLE, PLAIN]}).json()
        assert answer["model_version"] == "rules-only"
        for record in answer["scores"]:
            assert record["model_version"] == "rules-only"
            assert record["win_probability"] is None and record["expected_value"] is None
            assert record["learned_score"] == record["rule_score"]
        assert_finite(answer)


def _broken_copy(version: str, folder: Path, artifacts: str) -> str:
    """Where a broken copy of a registered model lives: gone, unreadable, or loadable but unable to score."""
    import mlflow

    if artifacts == "missing":
        return str(folder / "gone")
    mlflow.artifacts.download_artifacts(f"models:/{registry.MODEL_NAME}/{version}", dst_path=str(folder))
    bundle = folder / "artifacts" / "bundle" / "bundle.json"
    if artifacts == "corrupt":
        bundle.write_text("{not json")
    else:  # loads, then fails on the first account: it asks for a feature that does not exist
        meta = json.loads(bundle.read_text())
        meta["spec"]["columns"].append("no_such_feature")
        bundle.write_text(json.dumps(meta))
    return str(folder)


@pytest.mark.parametrize("artifacts", ["missing", "corrupt", "unable to score"])
def test_a_champion_that_cannot_load_makes_the_service_not_ready(champion_store, trained, tmp_path, artifacts):
    with tracking_at(champion_store):
        registry.configure()
        source = _broken_copy(trained.version, tmp_path / "model", artifacts)
        broken = registry.client().create_model_version(registry.MODEL_NAME, source=source, run_id=None)
        registry.set_alias(registry.CHAMPION, broken.version)

    with serving(champion_store) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert f"champion version {broken.version} cannot be loaded" in ready.text
        scored = client.post("/score", json={"accounts": [PLAIN]})
        assert scored.status_code == 503 and "cannot be loaded" in scored.json()["error"]
        info = client.get("/model").json()
        assert info["ready"] is False and "cannot be loaded" in info["problem"] and info["version"] is None
        assert client.get("/livez").status_code == 200  # alive: no restart loop, it waits for a good champion


# --- Auth ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(trained):
    with serving(trained.folder, TIERING_API_KEY=KEY) as client:
        yield client


@pytest.mark.parametrize("header", [None, "", "Bearer", f"Basic {KEY}", f"Bearer {KEY}x", "Bearer wrong", KEY])
def test_without_the_right_key_every_endpoint_is_401(keyed, header):
    headers = {"authorization": header} if header is not None else {}
    for method, path in (
        ("post", "/score"),
        ("post", "/tier"),
        ("get", "/model"),
        ("get", "/metrics"),
        ("get", "/docs.json"),
        ("get", "/"),
    ):
        response = keyed.request(method, path, json={"accounts": [PLAIN]}, headers=headers)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert KEY not in response.text


def test_with_the_key_everything_works_and_probes_need_none(keyed):
    auth = {"authorization": f"Bearer {KEY}"}
    assert keyed.post("/score", json={"accounts": [PLAIN]}, headers=auth).status_code == 200
    assert (
        keyed.post("/tier", json={"accounts": [PLAIN]}, headers={"authorization": f"bearer {KEY}"}).status_code == 200
    )
    assert keyed.get("/model", headers=auth).status_code == 200
    assert keyed.get("/metrics", headers=auth).status_code == 200
    for probe in ("/healthz", "/livez", "/readyz"):
        assert keyed.get(probe).status_code == 200


# --- Anything at all: a 200 with finite numbers, or a 400 -----------------------------------------------


def _anything_like_an_account():
    from hypothesis import strategies as st

    moments = st.one_of(st.dates().map(str), st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), moments)
    values = st.one_of(
        scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2)
    )

    def rows(*names):
        return st.lists(
            st.dictionaries(st.sampled_from(names), st.one_of(scalars, moments), max_size=len(names)), max_size=3
        )

    fields = st.dictionaries(
        st.sampled_from(
            [
                "account_name",
                "industry",
                "employees",
                "annual_revenue",
                "country",
                "region",
                "tech_stack",
                "parent_account_id",
                "segment_hint",
                "custom",
            ]
        ),
        values,
        max_size=5,
    )
    lists = st.fixed_dictionaries(
        {},
        optional={
            "engagement": rows("timestamp", "channel", "count"),
            "intent": rows("date", "topic", "score"),
            "opportunities": rows("opportunity_id", "created_date", "close_date", "outcome", "amount", "product"),
        },
    )
    ids = st.one_of(st.text(max_size=4), st.integers(), st.none())
    return st.builds(
        lambda account_id, more, activity: {"account_id": account_id, **more, **activity}, ids, fields, lists
    )


def test_no_request_makes_a_500_or_a_non_finite_number(client):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_anything_like_an_account(), min_size=0, max_size=3), st.one_of(st.none(), st.text(max_size=10)))
    def check(accounts, as_of):
        body = json.dumps({"accounts": accounts, **({"as_of": as_of} if as_of is not None else {})})
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert_finite(response.json())

    check()
