"""Request -> CrmData without HTTP: the conversion types every table as the batch import does."""

import datetime
import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.schema import columns
from features.timeindex import to_seconds
from serving.requests import ACCOUNT_EXAMPLE, ScoreRequest, TierRequest, scoring_as_of, to_crm_data


def parse(body: dict) -> ScoreRequest:
    return ScoreRequest.model_validate_json(json.dumps(body))


def test_example_account_becomes_four_canonical_tables():
    request = parse({"accounts": [{**ACCOUNT_EXAMPLE, "segment_hint": "Enterprise", "score_hint": 3}]})
    data = to_crm_data(request.accounts)

    for name in ("accounts", "opportunities", "engagement", "intent"):
        table = data.table(name)
        assert list(table.columns[: len(columns(name))]) == list(columns(name))
        assert set(table["account_id"]) == {"ACC-000042"}
    assert len(data.engagement) == 2 and len(data.intent) == 1 and len(data.opportunities) == 1
    assert data.engagement["timestamp"].dtype == "datetime64[ns]"
    assert data.engagement["timestamp"].iloc[0] == pd.Timestamp("2026-06-12 14:05:00")
    assert data.engagement["count"].tolist() == [1.0, 4.0]  # the default fills the missing count
    assert data.opportunities["close_date"].iloc[0] == pd.Timestamp("2026-02-17")
    assert data.accounts[["segment_hint", "score_hint"]].iloc[0].tolist() == ["Enterprise", 3]


def test_zones_are_converted_to_utc_and_lists_of_technologies_joined():
    request = parse(
        {
            "accounts": [
                {
                    "account_id": 7,
                    "tech_stack": ["aws", "snowflake"],
                    "engagement": [{"timestamp": "2026-05-01T10:00:00+02:00", "channel": "web_visit"}],
                }
            ]
        }
    )
    data = to_crm_data(request.accounts)

    assert data.accounts["account_id"].tolist() == ["7"]  # numeric CRM ids are ids like any other
    assert data.accounts["tech_stack"].tolist() == ["aws;snowflake"]
    assert data.engagement["timestamp"].tolist() == [pd.Timestamp("2026-05-01 08:00:00")]


def test_an_account_without_activity_gives_empty_typed_tables():
    data = to_crm_data(parse({"accounts": [{"account_id": "A"}]}).accounts)

    assert data.opportunities.empty and data.engagement.empty and data.intent.empty
    assert data.opportunities["created_date"].dtype == "datetime64[ns]"
    assert data.accounts["employees"].isna().all()


def test_as_of_defaults_to_the_day_after_the_latest_date_in_the_request():
    request = parse({"accounts": [ACCOUNT_EXAMPLE]})
    assert scoring_as_of(request) == pd.Timestamp("2026-06-21")

    explicit = parse({"accounts": [ACCOUNT_EXAMPLE], "as_of": "2026-01-15"})
    assert scoring_as_of(explicit) == pd.Timestamp("2026-01-15")


def test_as_of_is_today_utc_when_nothing_in_the_request_is_dated():
    request = parse({"accounts": [{"account_id": "A"}]})
    before = datetime.datetime.now(datetime.UTC).date()
    answered = scoring_as_of(request)
    after = datetime.datetime.now(datetime.UTC).date()
    # Midnight UTC may fall between the two clock readings: either day is right, nothing else.
    assert answered.time() == datetime.time(0) and answered.date() in {before, after}


def test_every_problem_is_reported_at_once_with_its_path():
    body = {
        "accounts": [
            {"account_id": "A", "employees": -5},
            {
                "account_id": "A",
                "opportunities": [
                    {"opportunity_id": "O1", "created_date": "2026-03-01", "close_date": "2026-02-01", "outcome": "won"}
                ],
            },
        ]
    }
    with pytest.raises(ValidationError) as caught:
        parse(body)

    paths = {tuple(error["loc"]): error["type"] for error in caught.value.errors()}
    assert paths == {
        ("accounts", 0, "employees"): "greater_than_equal",
        ("accounts", 1, "opportunities", 0): "close_before_created",
        ("accounts", 1, "account_id"): "duplicate_account_id",
    }


def _event_at(text) -> dict:
    return {"accounts": [{"account_id": "A", "engagement": [{"timestamp": text, "channel": "web_visit"}]}]}


def _calendar_moment(year: int, month: int, day: int, clock: tuple[int, int, int]) -> datetime.datetime | None:
    """The moment the text names, or None when the calendar or the clock has no such day or time."""
    try:
        return datetime.datetime(year, month, day, *clock)
    except ValueError:
        return None


@pytest.mark.parametrize("separator", ["T", " ", None])
def test_plain_layouts_read_as_the_calendar_says_and_impossible_ones_are_refused_with_the_grammars_message(separator):
    """Dates in the common layouts are read by pydantic's own parser: every day and clock it accepts must be the one
    Python's calendar gives, and every impossible one must be refused as any other bad date is."""
    clocks = [(0, 0, 0), (23, 59, 59), (24, 0, 0), (23, 60, 0), (23, 59, 60), (7, 5, 9)]
    for year in (1900, 1904, 2023, 2024, 2100):
        for month in (0, 1, 2, 4, 12, 13):
            for day in (0, 1, 28, 29, 30, 31, 32):
                for clock in clocks if separator else [(0, 0, 0)]:
                    text = f"{year:04d}-{month:02d}-{day:02d}"
                    if separator:
                        text += f"{separator}{clock[0]:02d}:{clock[1]:02d}:{clock[2]:02d}"
                    expected = _calendar_moment(year, month, day, clock)
                    if expected is not None:
                        assert parse(_event_at(text)).accounts[0].engagement[0].timestamp == expected, text
                        continue
                    with pytest.raises(ValidationError) as caught:
                        parse(_event_at(text))
                    errors = caught.value.errors()
                    assert [(e["loc"], e["type"]) for e in errors] == [
                        (("accounts", 0, "engagement", 0, "timestamp"), "date")
                    ], text
                    assert errors[0]["msg"].startswith("not a calendar date or time"), text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1899-12-31", "dates must lie between 1900-01-01 and 2100-12-31"),
        ("2101-01-01T00:00:00", "dates must lie between 1900-01-01 and 2100-12-31"),
        ("20\u0662\u0666-01-01", "not a date"),  # Arabic-Indic digits are no ISO 8601 digits
        ("2026-01-01T10:00", None),
        ("2026-01-01T10:00:00Z", None),
        (" 2026-01-01 ", None),
        ("20260101", None),
        (20260101, "dates must be text, not int"),
    ],
)
def test_other_layouts_keep_the_grammars_reading_and_messages(text, message):
    body = json.dumps(_event_at(text))
    if message is None:
        moment = ScoreRequest.model_validate_json(body).accounts[0].engagement[0].timestamp
        assert moment.tzinfo is None and moment.date() == datetime.date(2026, 1, 1)
        return
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json(body)
    assert [(e["loc"], e["msg"][: len(message)]) for e in caught.value.errors()] == [
        (("accounts", 0, "engagement", 0, "timestamp"), message)
    ]


def test_a_bad_date_among_other_problems_is_one_error_on_its_field():
    body = {
        "accounts": [
            {
                "account_id": "A",
                "employees": -5,
                "engagement": [{"timestamp": "2026-13-01", "channel": "x"}],
                "opportunities": [{"opportunity_id": "O", "created_date": "2026-02-30", "outcome": "open"}],
            }
        ]
    }
    with pytest.raises(ValidationError) as caught:
        parse(body)
    assert {tuple(e["loc"]): e["type"] for e in caught.value.errors()} == {
        ("accounts", 0, "employees"): "greater_than_equal",
        ("accounts", 0, "engagement", 0, "timestamp"): "date",
        ("accounts", 0, "opportunities", 0, "created_date"): "date",
    }


def test_a_book_may_be_larger_than_a_scoring_request():
    accounts = [{"account_id": str(i)} for i in range(10_001)]
    with pytest.raises(ValidationError):
        ScoreRequest.model_validate({"accounts": accounts})
    assert len(TierRequest.model_validate({"accounts": accounts, "budget": 10}).accounts) == 10_001


ODD_ACCOUNT = {
    "account_id": 901,
    "industry": "  SOFTWARE ",
    "country": "united   states",
    "employees": 250,
    "tech_stack": ["AWS", " snowflake"],
    "segment_hint": 12,
    "engagement": [
        {"timestamp": "2026-05-01T23:30:00-02:00", "channel": " Demo_Request "},
        {"timestamp": "2026-05-02T01:00:00.999999Z", "channel": "webinar", "count": 3},
        {"timestamp": "2026-06-30", "channel": "web_visit", "count": 2.5},
    ],
    "intent": [{"date": "2026-06-01", "topic": "CRM", "score": 40}, {"date": "2026-06-02", "topic": "quantum"}],
    "opportunities": [
        {"opportunity_id": "O1", "created_date": "2025-01-01", "close_date": "2025-03-01", "outcome": "won"},
        {
            "opportunity_id": "O2",
            "created_date": "2025-04-01",
            "close_date": "2025-05-01",
            "outcome": "lost",
            "amount": 9,
        },
        {"opportunity_id": "O3", "created_date": "2026-04-01", "outcome": "open", "amount": 500},
    ],
}


@pytest.mark.parametrize("extra_features", [[], ["segment_hint"]])
def test_request_arrays_give_exactly_the_features_of_the_canonical_tables(export, extra_features):
    """The service reads requests straight into arrays; the batch path builds typed tables first."""
    from configuration.tiering import parse_config
    from features.activity import builder_for_accounts
    from features.pointintime import FeatureBuilder
    from serving.requests import account_payloads

    config = parse_config({"model": {"extra_features": extra_features}})
    ids = export.accounts["account_id"].tolist()[:40]
    accounts = parse({"accounts": [*account_payloads(export, ids), ODD_ACCOUNT, {"account_id": "bare"}]}).accounts
    cutoffs = pd.Series(pd.to_datetime(["2026-07-01", "2026-03-15"] * 21))

    reference = FeatureBuilder(to_crm_data(accounts), config).build(
        pd.Series([a.account_id for a in accounts]), cutoffs
    )
    from_arrays = builder_for_accounts(accounts, config).build_columns(np.arange(len(accounts)), to_seconds(cutoffs))

    assert reference.columns[2:].tolist() == list(from_arrays)
    for name, values in from_arrays.items():
        if values.dtype == object:  # text: missing is NA in a table, None in an array
            assert [None if pd.isna(v) else v for v in reference[name]] == values.tolist(), name
        else:
            np.testing.assert_array_equal(reference[name].to_numpy(dtype=values.dtype), values, err_msg=name)
    assert reference["eng_30d_other"].iloc[-2] == 0 and reference["prior_lost"].iloc[-2] == 1  # the odd one counted


@pytest.mark.parametrize(
    ("number", "text"),
    [
        ("0.0", "0.0"),
        ("-0.0", "-0.0"),
        ("1e20", "1e+20"),
        ("1E2", "100.0"),
        ("1e-7", "1e-07"),
        ("7", "7"),
        ("2.50", "2.5"),
    ],
)
def test_a_number_in_a_text_field_reads_as_it_did_when_requests_were_read_from_python_objects(number, text):
    """A JSON body is validated directly, where pydantic writes 0.0 as "0" and 1e20 as "100000000000000000000"; every
    text field must keep the reading of a request validated from Python objects (Python's own writing)."""
    names = ("account_name", "industry", "country", "region", "owner", "tech_stack")
    account = {
        "account_id": "A",
        **dict.fromkeys(names, "NUMBER"),
        "engagement": [{"timestamp": "2026-06-01", "channel": "NUMBER"}],
        "intent": [{"date": "2026-06-01", "topic": "NUMBER"}],
        "opportunities": [
            {"opportunity_id": "O", "created_date": "2026-01-01", "outcome": "open", "product": "NUMBER"}
        ],
    }
    body = json.dumps({"accounts": [account]}).replace('"NUMBER"', number)  # the number exactly as written
    read = ScoreRequest.model_validate_json(body).accounts[0]

    assert [getattr(read, name) for name in names] == [text] * len(names)
    assert read.engagement[0].channel == read.intent[0].topic == read.opportunities[0].product == text


def test_a_failing_body_is_worded_as_json_and_lists_repeated_ids_beside_its_other_problems():
    """A body that fails the direct reading is read again for the whole answer, in the words of JSON (an array, an
    object), as a client sent it."""
    with pytest.raises(ValidationError) as caught:
        parse({"accounts": [{"account_id": "A", "engagement": 5}]})
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("accounts", 0, "engagement"), "Input should be a valid array")
    ]
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json("[1, 2]")
    assert [e["msg"] for e in caught.value.errors()] == ["Input should be an object"]

    with pytest.raises(ValidationError) as caught:
        parse({"accounts": [{"account_id": "A"}, {"account_id": "A", "intent": [{"topic": "crm"}]}]})
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [
        (("accounts", 1, "intent", 0, "date"), "missing"),
        (("accounts", 1, "account_id"), "duplicate_account_id"),
    ]
