"""What a client sends to the scoring endpoints, and how it becomes arrays (or the canonical `CrmData`).

The pydantic models are the HTTP contract: every rule the batch import enforces (SPEC section 3) is
checked here, so a bad request is answered with HTTP 400 listing each problem and its field path,
and nothing that passes can make the scoring code fail. No HTTP here: tests use it directly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import date, datetime
from itertools import chain
from typing import Annotated, Any, Literal, Self, TypeVar

import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainValidator,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import CoreConfig, CoreSchema, InitErrorDetails, PydanticCustomError, SchemaValidator, core_schema

from features.activity import account_columns_of, day_after_latest
from features.dates import NotADate, parse_moment
from features.schema import RANGES, TABLES, CrmData, conform

MAX_SCORE_ACCOUNTS = 10_000
MAX_BOOK_ACCOUNTS = 100_000  # /tier ranks a whole book; the body-size limit bounds it as well


def _bounded(table: str, column: str, default: float | None, description: str):
    """An optional finite number with the range the batch import enforces for this column."""
    low, high = RANGES[(table, column)]
    # Strict: only a JSON number is one; `true` or "12" is a wrong type, not a count of 1 or 12.
    return Field(
        default,
        ge=low,
        le=None if math.isinf(high) else high,
        allow_inf_nan=False,
        strict=True,
        description=description,
    )


def _moment(value: Any) -> datetime:
    """A date-time in naive UTC (what the canonical tables hold), by the batch import's own date grammar.

    Not pydantic's: it reads numbers and numeric strings ("20260601", "0") as Unix times, where a data file
    reads "20260601" as 1 June 2026 and "0" as no date at all.
    """
    try:
        return parse_moment(value)
    except NotADate as error:
        raise PydanticCustomError("date", str(error)) from None


def _day(value: Any) -> date:
    return _moment(value).date()


# The layouts clients send most (2026-06-01, 2026-06-01T09:30:00 or with a space), in the date range (every day of
# the years 1900 to 2100 lies in it) and without a zone: pydantic's own parser reads them to the very datetime
# `parse_moment` gives, without calling Python once per date. ASCII digits only: Rust's \d is any Unicode digit.
_PLAIN_MOMENT = r"^(?:19[0-9]{2}|20[0-9]{2}|2100)-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}:[0-9]{2})?$"
# The union's branch names, which pydantic puts in an error's path after the date field.
PLAIN_BRANCH, GRAMMAR_BRANCH = "plain-iso", "grammar"


class _PlainLayoutsFirst:
    """A date field read by pydantic's parser when it holds a plain layout, else by `_moment` (any other text, a
    datetime object, or a value that is not a date, which `_moment` names). Both failing puts both errors in the
    answer: `_checked_accounts` keeps the grammar's only. The JSON schema stays the grammar validator's."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        grammar = handler(source)
        plain = core_schema.chain_schema(
            [core_schema.str_schema(pattern=_PLAIN_MOMENT, strict=True), core_schema.datetime_schema()]
        )
        return core_schema.union_schema(
            [(plain, PLAIN_BRANCH), (grammar, GRAMMAR_BRANCH)],
            mode="left_to_right",
            metadata={"pydantic_js_functions": [lambda _, json_handler: json_handler(grammar)]},
        )


# ISO 8601 date or date-time, naive (taken as UTC) or with a zone (converted to UTC): features.dates.
# Plain validators, not wrap validators (whose handler pydantic's own parsing is never asked): a request's hundreds of
# dates validate in half the time.
Timestamp = Annotated[datetime, PlainValidator(_moment, json_schema_input_type=datetime | date), _PlainLayoutsFirst()]
Day = Annotated[date, PlainValidator(_day, json_schema_input_type=date)]
DATE_FIELDS = frozenset({"timestamp", "date", "created_date", "close_date"})  # the row models' Timestamp fields


def _float_as_python_writes_it(value: Any) -> Any:
    return str(value) if isinstance(value, float) else value


class _FloatsWrittenAsPython:
    """A text field of a `coerce_numbers_to_str` model writes a number in it as Python does, from JSON as well.

    From JSON, pydantic writes a float its own way (0.0 as "0", 1e20 as "100000000000000000000"), where it writes
    Python's ("0.0", "1e+20") from Python objects, as a request validated whole used to be read: so a JSON body reads
    the same validated directly (`ScoreRequest.model_validate_json`). Whole numbers read the same either way."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        text = handler(source)
        # Text itself takes the first branch, without calling Python: a request's thousand channels validate unslowed.
        floats_first = core_schema.union_schema(
            [
                core_schema.str_schema(strict=True),
                core_schema.no_info_plain_validator_function(_float_as_python_writes_it),
            ],
            mode="left_to_right",
        )
        return core_schema.json_or_python_schema(
            json_schema=core_schema.chain_schema([floats_first, text]), python_schema=text
        )


PlainText = Annotated[str, _FloatsWrittenAsPython()]
Text = Annotated[str, Field(min_length=1), _FloatsWrittenAsPython()]


def _exact_id(value: Any) -> Any:
    """An id is text, or a whole JSON number (kept digit for digit). A number with a fraction or an exponent
    arrives as a float: 12345678901234567.0 would become '1.2345678901234568e+16' and 1e309 'inf', another id."""
    if isinstance(value, float):
        raise PydanticCustomError(
            "id_not_exact", 'an id must be text or a whole number: send it as a string, e.g. "12345678901234567"'
        )
    return value


# Ids: text, or whole numbers turned into their digits (coerce_numbers_to_str), never a float's rounding of them.
Identifier = Annotated[str, BeforeValidator(_exact_id), Field(min_length=1)]


def _custom_field_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, float):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    raise PydanticCustomError("custom_field_type", "custom fields must be a string, number, boolean or null")


def _join_tech_stack(value: Any) -> Any:
    return ";".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value


# BentoML's OpenAPI page reads OpenAPI 3.0's singular `example` on models.
ACCOUNT_EXAMPLE: JsonDict = {
    "account_id": "ACC-000042",
    "account_name": "Globex",
    "industry": "Software",
    "employees": 1800,
    "annual_revenue": 350000000,
    "country": "United States",
    "region": "North America",
    "tech_stack": "salesforce;snowflake;aws",
    "engagement": [
        {"timestamp": "2026-06-12T14:05:00Z", "channel": "demo_request"},
        {"timestamp": "2026-06-20T09:00:00Z", "channel": "web_visit", "count": 4},
    ],
    "intent": [{"date": "2026-06-20", "topic": "crm", "score": 80}],
    "opportunities": [
        {
            "opportunity_id": "OPP-000123",
            "created_date": "2025-11-03",
            "close_date": "2026-02-17",
            "outcome": "won",
            "amount": 54000,
        }
    ],
}


# Errors are logged by BentoML: keep the client's CRM values out of the logs.
PRIVATE = ConfigDict(hide_input_in_errors=True)


class CrmRow(BaseModel):
    """A row of one of the activity tables, nested under its account."""

    model_config = ConfigDict(**PRIVATE, extra="forbid", coerce_numbers_to_str=True)


class EngagementEvent(CrmRow):
    """One marketing or sales touch (a row of the `engagement` table)."""

    timestamp: Timestamp = Field(
        description="When it happened (ISO 8601; UTC unless a zone is given).", examples=["2026-06-12T14:05:00Z"]
    )
    channel: Text = Field(
        description="web_visit, content_download, email_open, email_click, event_attended, "
        "demo_request, sales_meeting; other channels count as 'other'.",
        examples=["demo_request"],
    )
    count: float = _bounded("engagement", "count", 1.0, "How many such touches (default 1).")


class IntentSignal(CrmRow):
    """One third-party research-intent signal (a row of the `intent` table)."""

    date: Timestamp = Field(description="Day of the signal (ISO 8601).", examples=["2026-06-20"])
    topic: Text = Field(description="Research topic, e.g. crm, analytics, security.", examples=["crm"])
    score: float = _bounded("intent", "score", 100.0, "Signal strength 0-100 (default 100).")


class Opportunity(CrmRow):
    """One opportunity with this account, open or closed (a row of the `opportunities` table)."""

    opportunity_id: Identifier = Field(description="The CRM's opportunity id.", examples=["OPP-000123"])
    created_date: Timestamp = Field(description="When it was created.", examples=["2025-11-03"])
    close_date: Timestamp | None = Field(
        None, description="When it closed; required when outcome is won or lost.", examples=["2026-02-17"]
    )
    outcome: Literal["won", "lost", "open"] = Field(description="won, lost or open.", examples=["won"])
    amount: float | None = _bounded("opportunities", "amount", None, "Deal amount in USD (>= 0).")
    product: PlainText | None = Field(None, description="Product line.", examples=["Platform"])

    @model_validator(mode="after")
    def _closed_has_valid_close_date(self) -> Opportunity:
        if self.outcome != "open" and self.close_date is None:
            raise PydanticCustomError("close_date_missing", "close_date is required when outcome is won or lost")
        if self.close_date is not None and self.close_date < self.created_date:
            raise PydanticCustomError("close_before_created", "close_date is before created_date")
        return self


class Account(BaseModel):
    """An account's CRM fields (SPEC section 3) and, optionally, its recent activity and deals.

    Any further scalar field is kept as a custom field; those named under `model.extra_features` in
    `tiering.yaml` are used by the learners.
    """

    model_config = ConfigDict(
        **PRIVATE, extra="allow", coerce_numbers_to_str=True, json_schema_extra={"example": ACCOUNT_EXAMPLE}
    )
    __pydantic_extra__: dict[str, Annotated[Any, PlainValidator(_custom_field_value)]]

    account_id: Identifier = Field(
        description="The CRM's account id; unique within a request.", examples=["ACC-000042"]
    )
    account_name: PlainText | None = Field(None, description="Display name.", examples=["Globex"])
    industry: PlainText | None = Field(
        None, description="Industry, matched against the ICP case-insensitively.", examples=["Software"]
    )
    employees: float | None = _bounded("accounts", "employees", None, "Head-count (>= 0).")
    annual_revenue: float | None = _bounded("accounts", "annual_revenue", None, "Annual revenue in USD (>= 0).")
    country: PlainText | None = Field(None, description="Country name.", examples=["United States"])
    region: PlainText | None = Field(
        None, description="Region, used when the country is not an ICP country.", examples=["North America"]
    )
    tech_stack: Annotated[
        PlainText | None, BeforeValidator(_join_tech_stack, json_schema_input_type=str | list[StrictStr] | None)
    ] = Field(
        None,
        description="Technologies, ';'-separated (a list of strings is accepted too).",
        examples=["salesforce;aws"],
    )
    parent_account_id: Annotated[str, BeforeValidator(_exact_id)] | None = Field(
        None, description="Parent account id.", examples=["ACC-000001"]
    )
    owner: PlainText | None = Field(
        None, description="The account owner's name or email.", examples=["jane@example.com"]
    )
    engagement: list[EngagementEvent] = Field(default_factory=list, description="Recent touches with this account.")
    intent: list[IntentSignal] = Field(default_factory=list, description="Recent research-intent signals.")
    opportunities: list[Opportunity] = Field(default_factory=list, description="Earlier and open opportunities.")


def _duplicate_id_errors(account_ids: list[str | None]) -> list[InitErrorDetails]:
    """One error per repeated account_id (None: an id that is itself invalid, checked elsewhere)."""
    first_seen: dict[str, int] = {}
    errors: list[InitErrorDetails] = []
    for index, account_id in enumerate(account_ids):
        if account_id is None:
            continue
        if account_id in first_seen:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_account_id",
                        "account_id {account_id} also appears at accounts[{first}]",
                        {"account_id": account_id, "first": first_seen[account_id]},
                    ),
                    loc=("accounts", index, "account_id"),
                    input=account_id,
                )
            )
        else:
            first_seen[account_id] = index
    return errors


def _raw_id(item: Any) -> str | None:
    """The id an item will have once valid (numbers become text, as `coerce_numbers_to_str` does)."""
    value = item.get("account_id") if isinstance(item, dict) else None
    return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None


def _accounts_limit(model: type[BaseModel]) -> int:
    return next(
        rule.max_length for rule in model.model_fields["accounts"].metadata if getattr(rule, "max_length", None)
    )


def _date_branch(location: tuple) -> str | None:
    """Which branch of a date field's union (`_PlainLayoutsFirst`) an error comes from; None for other errors.

    The branch name follows the date field's name, the last part of a date's path: a custom field or an id that
    happens to hold the same text is never mistaken for it."""
    if len(location) >= 2 and location[-2] in DATE_FIELDS and location[-1] in (PLAIN_BRANCH, GRAMMAR_BRANCH):
        return location[-1]
    return None


_Request = TypeVar("_Request", bound="ScoreRequest")


def _checked_accounts(model: type[_Request], data: Any, handler: Callable[[Any], _Request]) -> _Request:
    """Validate the request, refusing an over-long account list up front and adding repeated ids.

    Around the whole model, not on the `accounts` field: a field wrap validator makes pydantic hand every account over
    as Python objects, then validate them at twice the cost of validating the JSON directly.
    """
    raw = data.get("accounts") if isinstance(data, dict) else None
    limit = _accounts_limit(model)
    if isinstance(raw, list) and len(raw) > limit:  # before validating 100,000 accounts only to refuse them
        raise ValidationError.from_exception_data(
            model.__name__,
            [
                InitErrorDetails(
                    type="too_long",
                    loc=("accounts",),
                    input=raw,
                    ctx={"field_type": "List", "max_length": limit, "actual_length": len(raw)},
                )
            ],
        )
    try:
        request = handler(data)
    except ValidationError as error:
        duplicates = _duplicate_id_errors([_raw_id(item) for item in raw] if isinstance(raw, list) else [])
        errors = error.errors(include_url=False)
        if not duplicates and not any(_date_branch(e["loc"]) for e in errors):
            raise
        # Keep each error as it was (type, message, path), a bad date's as the grammar words it, and add the
        # duplicates to the same answer.
        kept = [
            InitErrorDetails(
                type=PydanticCustomError(e["type"], e["msg"], e.get("ctx")),
                loc=e["loc"][:-1] if _date_branch(e["loc"]) else e["loc"],
                input=e["input"],
            )
            for e in errors
            if _date_branch(e["loc"]) != PLAIN_BRANCH
        ]
        raise ValidationError.from_exception_data(model.__name__, kept + duplicates) from None
    duplicates = _duplicate_id_errors([account.account_id for account in request.accounts])
    if duplicates:
        raise ValidationError.from_exception_data(model.__name__, duplicates)
    return request


@functools.cache
def _answering_validator(model: type[ScoreRequest]) -> SchemaValidator:
    """The model validated inside `_checked_accounts`: reads a body that failed, or that may hold too many accounts.

    Its function is handed the body as Python objects (a third of a large body's validation), to refuse a list that is
    too long before validating it, and to find repeated ids and word bad dates in a request that failed."""
    return SchemaValidator(
        core_schema.no_info_wrap_validator_function(
            functools.partial(_checked_accounts, model), model.__pydantic_core_schema__
        ),
        CoreConfig(title=model.__name__, hide_input_in_errors=True),
    )


# `{"account_id":0}` and a comma: a body shorter than this per account cannot hold too many accounts.
SMALLEST_ACCOUNT_BYTES = 17


ROW_MODELS: dict[str, type[CrmRow]] = {
    "opportunities": Opportunity,
    "engagement": EngagementEvent,
    "intent": IntentSignal,
}


class ScoreRequest(BaseModel):
    """Accounts to score one by one, each placed in a tier by the cut-offs frozen with the model."""

    model_config = ConfigDict(
        **PRIVATE, extra="forbid", title="ScoreRequest", json_schema_extra={"example": {"accounts": [ACCOUNT_EXAMPLE]}}
    )

    accounts: list[Account] = Field(
        min_length=1,
        max_length=MAX_SCORE_ACCOUNTS,
        description=f"1 to {MAX_SCORE_ACCOUNTS:,} accounts with unique account_id.",
    )
    as_of: Day | None = Field(
        None,
        description="Score as of this day: only data dated before it is used. "
        "Default: the day after the latest date in the request, else today (UTC).",
        examples=["2026-07-01"],
    )

    # Validated by pydantic's own validator when that is enough, else by `_answering_validator`: no model validator,
    # which would turn every JSON body into Python objects before validating it.
    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        return _answering_validator(cls).validate_python(obj, **options)

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **options: Any) -> Self:
        """The JSON validated directly, a third faster; a body that fails this or may hold too many accounts is
        validated again by `_answering_validator`, which words every problem as before."""
        if len(json_data) < SMALLEST_ACCOUNT_BYTES * _accounts_limit(cls):
            try:
                request = super().model_validate_json(json_data, **options)
            except ValidationError:
                pass
            else:
                if not _duplicate_id_errors([account.account_id for account in request.accounts]):
                    return request
        return _answering_validator(cls).validate_json(json_data, **options)


class ForecastRequest(ScoreRequest):
    """A whole book of accounts: tiers filled by capacity, then each tier's forecast inside the horizon."""

    model_config = ConfigDict(
        title="ForecastRequest",
        json_schema_extra={
            "example": {
                "accounts": [ACCOUNT_EXAMPLE, {**ACCOUNT_EXAMPLE, "account_id": "ACC-000043", "employees": 90}],
                "simulations": 2000,
            }
        },
    )

    accounts: list[Account] = Field(
        min_length=1,
        max_length=MAX_BOOK_ACCOUNTS,
        description=f"The book: 1 to {MAX_BOOK_ACCOUNTS:,} accounts with unique account_id.",
    )
    simulations: int = Field(
        2_000, ge=100, le=10_000, strict=True, description="Simulations behind each 80% interval (100 to 10,000)."
    )


class TierRequest(ScoreRequest):
    """A whole book of accounts, ranked against each other to fill the tiers by capacity."""

    model_config = ConfigDict(
        title="TierRequest",
        json_schema_extra={
            "example": {
                "accounts": [ACCOUNT_EXAMPLE, {**ACCOUNT_EXAMPLE, "account_id": "ACC-000043", "employees": 90}],
                "budget": 1_000_000,
            }
        },
    )

    accounts: list[Account] = Field(
        min_length=1,
        max_length=MAX_BOOK_ACCOUNTS,
        description=f"The book: 1 to {MAX_BOOK_ACCOUNTS:,} accounts with unique account_id.",
    )
    budget: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        strict=True,
        examples=[1_000_000],
        description="Total budget (USD) to split by tier share, then evenly within a tier.",
    )


def to_crm_data(accounts: list[Account]) -> CrmData:
    """The accounts as the four canonical tables, typed exactly as the batch import types them.

    The service scores from arrays (`features.activity.builder_for_accounts`); this is what those arrays mean, and a
    test holds the features of the two to each other.
    """
    custom = list(dict.fromkeys(name for account in accounts for name in account.__pydantic_extra__ or {}))
    account_columns = account_columns_of(accounts, custom)
    keys = account_columns["account_id"]
    tables = {"accounts": account_columns}
    for table, row_model in ROW_MODELS.items():
        rows = [(key, row) for account, key in zip(accounts, keys) for row in getattr(account, table)]
        tables[table] = {
            "account_id": [key for key, _ in rows],
            **{name: [getattr(row, name) for _, row in rows] for name in row_model.model_fields},
        }
    return CrmData(**{name: conform(pd.DataFrame(table_columns), name) for name, table_columns in tables.items()})


def scoring_as_of(request: ScoreRequest) -> pd.Timestamp:
    """The request's `as_of`, else the day after its latest date, else today (UTC).

    The middle rule is batch scoring's default (`features.activity.day_after_latest`), read here from the
    request itself; a parity test keeps the two in step.
    """
    if request.as_of is not None:
        return pd.Timestamp(request.as_of)
    dates = [
        moment
        for account in request.accounts
        for moment in chain(
            (event.timestamp for event in account.engagement),
            (signal.date for signal in account.intent),
            (deal.created_date for deal in account.opportunities),
            (deal.close_date for deal in account.opportunities if deal.close_date is not None),
        )
    ]
    latest = day_after_latest(dates)
    return latest if latest is not None else pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()


def account_payloads(data: CrmData, account_ids: list[str]) -> list[dict[str, Any]]:
    """Accounts of a canonical export as `Account` JSON, with all their activity and deals: what a client
    holding the CRM export sends (the benchmark and the parity tests build their requests with it)."""
    wanted = set(account_ids)
    grouped = {name: _rows_by_account(data.table(name)[data.table(name)["account_id"].isin(wanted)]) for name in TABLES}
    return [
        {
            "account_id": account_id,
            **grouped["accounts"][account_id][0],
            **{name: grouped[name].get(account_id, []) for name in ("engagement", "intent", "opportunities")},
        }
        for account_id in account_ids
    ]


def _rows_by_account(frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        owner = row.pop("account_id")
        grouped.setdefault(owner, []).append(
            {
                name: value.isoformat() if isinstance(value, pd.Timestamp) else value
                for name, value in row.items()
                if not pd.isna(value)
            }
        )
    return grouped
