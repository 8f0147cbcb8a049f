"""The API under hostile input: one date grammar with the data files, NaN ids, a key read from a file, slow bodies,
and one log line per rejected request."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.io import load_export
from serving.middleware import BodySizeLimit
from serving.offloop import NON_JSON_NUMBERS, holds
from serving.requests import ScoreRequest, to_crm_data

from .conftest import serving, tracking_at

PLAIN = {"account_id": "ACC-1", "industry": "Software", "employees": 500}


@pytest.fixture(scope="module")
def rules_only(empty_template):
    with serving(empty_template) as client:
        yield client


def event_at(timestamp) -> dict:
    return {**PLAIN, "engagement": [{"timestamp": timestamp, "channel": "web_visit"}]}


def problems(response) -> list[tuple[str, str]]:
    assert response.status_code == 400, response.text
    return [(".".join(str(part) for part in item["loc"]), item["msg"]) for item in response.json()["detail"]]


# --- one date grammar -------------------------------------------------------------------------------------

LAYOUTS = {  # how a CRM or a client writes the moment, and what precision survives
    "day": ("%Y-%m-%d", "day"),
    "basic day": ("%Y%m%d", "day"),
    "minutes": ("%Y-%m-%dT%H:%M", "minute"),
    "space": ("%Y-%m-%d %H:%M:%S", "second"),
    "basic": ("%Y%m%dT%H%M%S", "second"),
    "micro": ("%Y-%m-%dT%H:%M:%S.%f", "micro"),
}
ZONES = {"": 0, "Z": 0, "+02:00": 120, "-05:30": -330, "+0100": 60, "+03": 180}


def truncated(moment: datetime, precision: str) -> datetime:
    keep = {
        "day": dict(hour=0, minute=0, second=0, microsecond=0),
        "minute": dict(second=0, microsecond=0),
        "second": dict(microsecond=0),
        "micro": {},
    }[precision]
    return moment.replace(**keep)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moment=st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2099, 12, 31)),
    layout=st.sampled_from(sorted(LAYOUTS)),
    zone=st.sampled_from(sorted(ZONES)),
)
def test_files_and_the_api_read_every_date_of_the_grammar_the_same(moment, layout, zone, write_export):
    pattern, precision = LAYOUTS[layout]
    if precision == "day":
        zone = ""  # a zone needs a time
    text = moment.strftime(pattern) + zone
    # By hand: the written local time, minus its offset, is the UTC moment both must hold.
    expected = truncated(moment, precision) - timedelta(minutes=ZONES[zone])

    folder = write_export({"engagement.csv": f'account_id,timestamp,channel\nA1,"{text}",web_visit\n'})
    from_file = load_export(folder).data.engagement["timestamp"].iloc[0]
    from_api = (
        to_crm_data(ScoreRequest.model_validate({"accounts": [event_at(text)]}).accounts)
        .engagement["timestamp"]
        .iloc[0]
    )
    assert from_file == from_api == expected, text


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "1700000000",
        "1700000000.5",
        "-1",
        "123456789012",
        "2026",
        "2026-06",
        "June 1 2026",
        "01/06/2026",
        "2026-06-01T24:00",
        "2026-02-30",
        "2026-06-01T10:00:00,5",
        "yesterday",
        "",
        " ",
    ],
)
def test_a_value_outside_the_grammar_is_a_400_in_the_api_and_an_error_in_a_file(
    text, rules_only, write_export, problems_of
):
    [(where, message)] = problems(rules_only.post("/score", json={"accounts": [event_at(text)]}))
    assert where == "accounts.0.engagement.0.timestamp" and "ISO 8601" in message, message
    if text.strip():  # a blank cell in a file is a missing date, which is its own error
        folder = write_export({"engagement.csv": f'account_id,timestamp,channel\nA1,"{text}",web_visit\n'})
        [problem] = [p for p in problems_of(folder) if p.column == "timestamp"]
        assert "values are not dates" in problem.message


def test_numbers_in_json_are_not_unix_times(rules_only):
    [(where, message)] = problems(rules_only.post("/score", json={"accounts": [event_at(1700000000)]}))
    assert where.endswith("timestamp") and "dates must be text" in message


def test_a_basic_iso_day_is_the_same_day_in_the_api_as_in_a_file(rules_only):
    answer = rules_only.post("/score", json={"accounts": [event_at("20260601")]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["as_of"] == "2026-06-02"  # the day after 1 June 2026, not after 24 August 1970


@pytest.mark.parametrize("text", ["1899-12-31", "2101-01-01", "9999-12-31T23:59:59+14:00", "0001-01-01"])
def test_dates_outside_the_shared_range_are_refused(text, rules_only):
    [(where, message)] = problems(rules_only.post("/score", json={"accounts": [event_at(text)]}))
    assert message == "dates must lie between 1900-01-01 and 2100-12-31"
    [(where, message)] = problems(rules_only.post("/score", json={"accounts": [PLAIN], "as_of": text}))
    assert where == "as_of" and "between 1900-01-01 and 2100-12-31" in message


# --- NaN and Infinity -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        ('{"accounts": [{"account_id": NaN}]}', "accounts.0.account_id"),
        ('{"accounts": [{"account_id": "A", "industry": Infinity}]}', "accounts.0.industry"),
        (
            '{"accounts": [{"account_id": "A", "engagement": [{"timestamp": "2026-01-01", "channel": -Infinity}]}]}',
            "accounts.0.engagement.0.channel",
        ),
        ('{"accounts": [{"account_id": "A", "segment_hint": NaN}]}', "accounts.0.segment_hint"),
    ],
)
def test_nan_and_infinity_are_not_json_numbers(body, expected, rules_only):
    [(where, message)] = problems(rules_only.post("/score", content=body, headers={"content-type": "application/json"}))
    assert where == expected and "NaN and Infinity are not JSON numbers" in message


@pytest.mark.parametrize(
    "body, where",
    [
        ('{"accounts": [{"account_id": 12345678901234567.0}]}', "accounts.0.account_id"),
        ('{"accounts": [{"account_id": 1e309}]}', "accounts.0.account_id"),
        ('{"accounts": [{"account_id": 42.5}]}', "accounts.0.account_id"),
        ('{"accounts": [{"account_id": "A", "parent_account_id": 1e17}]}', "accounts.0.parent_account_id"),
        (
            '{"accounts": [{"account_id": "A", "opportunities": [{"opportunity_id": 9.0e15, '
            '"created_date": "2026-01-01", "outcome": "open"}]}]}',
            "accounts.0.opportunities.0.opportunity_id",
        ),
    ],
)
def test_an_id_a_float_would_change_is_refused(body, where, rules_only):
    """12345678901234567.0 was scored as account '1.2345678901234568e+16', 1e309 as account 'inf'."""
    [(found, message)] = problems(rules_only.post("/score", content=body, headers={"content-type": "application/json"}))
    assert found == where and "an id must be text or a whole number" in message


def test_a_whole_number_id_is_kept_digit_for_digit(rules_only):
    body = '{"accounts": [{"account_id": 12345678901234567, "parent_account_id": 98765432109876543210}]}'
    answer = rules_only.post("/score", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["scores"][0]["account_id"] == "12345678901234567"


def test_nan_after_many_capital_letters_is_still_found(rules_only):
    """The search jumps between capital Ns and Is while they are few, then searches the rest of the body."""
    names = [{"account_id": f"A{i}", "account_name": "NORTH INDIANA INN"} for i in range(30)]
    body = json.dumps({"accounts": names})[:-2] + ', {"account_id": "B", "employees": NaN}]}'
    [(where, message)] = problems(rules_only.post("/score", content=body, headers={"content-type": "application/json"}))
    assert where == "accounts.30.employees" and "NaN and Infinity are not JSON numbers" in message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80).map(lambda raw: bytes(b"NaIfity{}: "[byte % 11] for byte in raw)))
def test_the_token_search_agrees_with_a_substring_search(body):
    for token in NON_JSON_NUMBERS:
        assert holds(body, token) == (token in body)


def test_the_text_nan_is_an_ordinary_id(rules_only):
    answer = rules_only.post("/score", json={"accounts": [{"account_id": "NaN", "account_name": "NaNa Infinity Corp"}]})
    assert answer.status_code == 200 and answer.json()["scores"][0]["account_id"] == "NaN"


# --- the API key ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("configured", ["s3cret\n", "  s3cret\t", "\ns3cret\r\n"])
def test_an_api_key_read_from_a_file_is_trimmed(configured, empty_template):
    with serving(empty_template, TIERING_API_KEY=configured) as client:
        assert (
            client.post("/score", json={"accounts": [PLAIN]}, headers={"authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert (
            client.post("/score", json={"accounts": [PLAIN]}, headers={"authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert client.post("/score", json={"accounts": [PLAIN]}).status_code == 401


# --- logs -------------------------------------------------------------------------------------------------


def test_a_rejected_request_is_one_warning_line_without_traceback_or_values(rules_only, caplog):
    accounts = [{"account_id": f"A{i}", "employees": -1, "industry": "secret-value"} for i in range(1000)]
    with caplog.at_level(logging.INFO):
        caplog.clear()
        response = rules_only.post("/score", json={"accounts": accounts})
    assert response.status_code == 400 and len(response.json()["detail"]) == 1000
    mine = [r for r in caplog.records if r.name.startswith("bentoml")]
    assert [r for r in mine if r.levelno >= logging.ERROR or r.exc_info] == []
    [line] = [r for r in mine if r.levelno == logging.WARNING]
    assert line.getMessage() == (
        "400 POST /score: 1000 problem(s) in the request; first at accounts.0.employees: greater_than_equal"
    )
    assert "secret-value" not in caplog.text and "Traceback" not in caplog.text


def alert_record(account_id: str) -> dict:
    return {
        "account_id": account_id,
        "tier": "tier_3",
        "learned_score": 40.0,
        "win_probability": 0.2,
        "as_of": "2026-07-01",
    }


@pytest.mark.parametrize(
    "path, body, line",
    [
        (
            "/score",
            {"accounts": [{**PLAIN, "account_id": "Acme-Secret-Merger-Target"}] * 2},
            "400 POST /score: 1 problem(s) in the request; first at accounts.1.account_id: duplicate_account_id",
        ),
        (
            "/alerts",
            {"previous": [], "current": [alert_record("Confidential-Co"), alert_record("Confidential-Co")]},
            "400 POST /alerts: 1 problem(s) in the request; first at current.1.account_id: duplicate_account",
        ),
        (
            "/score",
            {"accounts": [{**PLAIN, "engagement": [{"timestamp": "Project Nightingale 01/03", "channel": "web"}]}]},
            "400 POST /score: 1 problem(s) in the request; first at accounts.0.engagement.0.timestamp: date",
        ),
    ],
)
def test_a_rejected_request_logs_where_and_what_kind_never_the_client_values(rules_only, caplog, path, body, line):
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        response = rules_only.post(path, json=body)
    assert response.status_code == 400, response.text
    [logged] = [r for r in caplog.records if r.name.startswith("bentoml") and r.levelno == logging.WARNING]
    assert logged.getMessage() == line
    for value in ("Acme-Secret-Merger-Target", "Confidential-Co", "Nightingale"):
        assert value not in caplog.text


# --- slow bodies ------------------------------------------------------------------------------------------


def test_a_body_that_never_finishes_gets_408_within_the_timeout():
    sent: list[dict] = []
    reached_app = []

    async def app(scope, receive, send):
        reached_app.append(True)

    async def half_a_body():
        if not sent and not getattr(half_a_body, "started", False):
            half_a_body.started = True
            return {"type": "http.request", "body": b'{"accounts": [', "more_body": True}
        await anyio.sleep(3600)  # the client never sends the rest

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/score", "headers": [(b"content-length", b"1000")]}

    async def main():
        with anyio.fail_after(5):
            await BodySizeLimit(app, timeout_seconds=0.5)(scope, half_a_body, send)

    anyio.run(main)
    assert reached_app == [] and sent[0]["status"] == 408
    body = json.loads(sent[1]["body"])
    assert body["detail"][0]["loc"] == ["body"] and "did not arrive within 0.5 s" in body["error"]


# --- /model tells the truth about a champion it cannot load ----------------------------------------------


def test_model_never_passes_an_earlier_version_off_as_a_broken_champion(champion_store, trained):
    import time

    from scoring import registry

    with serving(champion_store, TIERING_RELOAD_SECONDS="0.3") as client:
        assert client.get("/model").json()["alias"] == "champion"
        with tracking_at(champion_store):
            registry.configure()
            broken = str(
                registry.client()
                .create_model_version(registry.MODEL_NAME, source="/nonexistent/model", run_id=None)
                .version
            )
            registry.record_champion(broken)
        deadline = time.monotonic() + 30
        # The follower names the new champion before it has tried to load it: wait for the verdict too.
        while time.monotonic() < deadline:
            seen = client.get("/model").json()
            if seen["registry_champion"] == broken and seen["problem"]:
                break
            time.sleep(0.2)
        info = client.get("/model").json()
        assert info["registry_champion"] == broken and info["version"] == trained.version and info["alias"] is None
        expected = (
            f"champion version {broken} cannot be loaded: its model files are missing from /nonexistent/model "
            f"(no such folder)"
        )
        assert info["problem"].startswith(expected) and info["ready"] is False
        assert f"still answering with version {trained.version}" in info["problem"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and expected in ready.text
        answer = client.post("/score", json={"accounts": [PLAIN]}).json()
        assert answer["model_version"] == trained.version  # the earlier champion keeps answering, under its own number
