"""`POST /alerts`: two books of score records in, the events between them out (no delivery).

The records are the ones `/score` and `/tier` answer (or the rows of two scores files); only the columns the
events read are required, the others are accepted and ignored. Every problem, including two books that do not
belong together, is a 400 naming its field path; the events are `activation.alerts.build_events`'s, the same
as `tiering alerts` writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from serving.requests import Day

if TYPE_CHECKING:
    import pandas as pd

MAX_ALERT_ACCOUNTS = 100_000
TierName = Literal["tier_1", "tier_2", "tier_3", "untiered"]
Number = float | None


class AlertScore(BaseModel):
    """One account's score record, as `/score` answers it (other score columns are accepted and ignored)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    account_id: str = Field(min_length=1)
    tier: TierName
    # The ranges /score answers in: a probability of 5 or a score of -1.7e308 is not a score record.
    learned_score: Number = Field(None, strict=True, ge=0, le=100)
    win_probability: Number = Field(None, strict=True, ge=0, le=1)
    rule_score: Number = Field(None, strict=True, ge=0, le=100)
    expected_value: Number = Field(None, strict=True, ge=0)
    intent_surge: StrictBool = False
    surge_channels: str = ""
    reason_1: str = ""
    reason_2: str = ""
    reason_3: str = ""
    model_version: str = ""
    pilot_group: Literal["treatment", "control", ""] = Field(
        "", description="The account's group in a running pilot: control accounts get no alerts."
    )
    as_of: Day = Field(description="The date the book was scored as of (ISO date); a number is not a date.")


def _problem(kind: str, message: str, loc: tuple) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=None)


class AlertsRequest(BaseModel):
    """Two scorings of the same book: `previous` (earlier) and `current` (later)."""

    model_config = ConfigDict(
        extra="forbid",
        title="AlertsRequest",
        json_schema_extra={
            "example": {
                "previous": [
                    {
                        "account_id": "ACC-1",
                        "tier": "tier_2",
                        "learned_score": 61.0,
                        "win_probability": 0.21,
                        "intent_surge": False,
                        "surge_channels": "",
                        "as_of": "2026-04-01",
                    }
                ],
                "current": [
                    {
                        "account_id": "ACC-1",
                        "tier": "tier_1",
                        "learned_score": 78.5,
                        "win_probability": 0.38,
                        "intent_surge": True,
                        "surge_channels": "demo_request;external_intent",
                        "as_of": "2026-07-01",
                    }
                ],
            }
        },
    )

    previous: list[AlertScore] = Field(max_length=MAX_ALERT_ACCOUNTS, description="The earlier scoring's records.")
    current: list[AlertScore] = Field(
        min_length=1, max_length=MAX_ALERT_ACCOUNTS, description="The later scoring's records, of the same book."
    )

    @model_validator(mode="after")
    def _one_book_each(self) -> AlertsRequest:
        problems = []
        dates = {}
        for name in ("previous", "current"):
            records, seen, first = getattr(self, name), set(), None
            for i, record in enumerate(records):
                if record.account_id in seen:
                    problems.append(
                        _problem(
                            "duplicate_account",
                            f"account {record.account_id!r} appears more than once: a book has one record per account",
                            (name, i, "account_id"),
                        )
                    )
                seen.add(record.account_id)
                if first is None:
                    first = record.as_of
                elif record.as_of != first:
                    problems.append(
                        _problem(
                            "mixed_books",
                            f"as_of {record.as_of} differs from the book's {first}: two books mixed",
                            (name, i, "as_of"),
                        )
                    )
            dates[name] = first
        if dates["previous"] and dates["current"] and dates["previous"] > dates["current"]:
            message = (
                f"previous is scored as of {dates['previous']}, after current ({dates['current']}): "
                "send the earlier scoring as previous"
            )
            problems.append(_problem("order", message, ("previous", 0, "as_of")))
        if self.previous and not {r.account_id for r in self.previous} & {r.account_id for r in self.current}:
            problems.append(
                _problem(
                    "different_books",
                    "previous and current have no account in common: two different books",
                    ("current",),
                )
            )
        if problems:
            raise ValidationError.from_exception_data(self.__class__.__name__, problems)
        return self

    def books(self):
        """Both books as score frames (what `activation.alerts.build_events` reads)."""
        from activation.alerts import frame_of_records

        def frame(records: list[AlertScore]):
            rows = [{**record.model_dump(), "as_of": record.as_of.isoformat()} for record in records]
            empty = frame_of_records([]).reindex(columns=list(AlertScore.model_fields))
            return frame_of_records(rows) if rows else empty

        return frame(self.previous), frame(self.current)


class Change(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)  # `from` is a Python keyword

    field: str = Field(description="What changed: tier, surge_channels, win_probability or learned_score.")
    from_: Any = Field(alias="from", description="The value before (null for an account new in the book).")
    to: Any = Field(description="The value now.")
    delta: float | None = Field(None, description="to - from, for the jumps.")


class AlertEvent(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="Stable id (account, kind, as-of): the webhook's idempotency key.")
    kind: Literal["intent_surge", "tier_entered", "tier_left", "win_probability_jump", "learned_score_jump"]
    account_id: str
    as_of: str
    previous_as_of: str
    summary: str = Field(description="One line for a person (the webhook's `text`).")
    change: Change
    tier: str
    previous_tier: str | None
    learned_score: float | None
    win_probability: float | None
    rule_score: float | None
    expected_value: float | None
    intent_surge: bool
    surge_channels: list[str]
    reasons: list[str]
    model_version: str


class AlertsResponse(BaseModel):
    as_of: str = Field(description="The current book's as-of date.")
    previous_as_of: str = Field(description="The previous book's as-of date ('' when it is empty).")
    events: list[AlertEvent]
    control_left_out: int = Field(
        0, description="Events left out because their account is in a running pilot's control group."
    )


def answer(
    request: AlertsRequest, config, exclude_control: bool = False, running_pilots: pd.DataFrame | None = None
) -> dict:
    """The events between the request's two books (`config`: the `alerts` section), as the response's fields.

    With `exclude_control`, control accounts, by `running_pilots` (account_id, group: the store's) or by the
    records' own `pilot_group`, get no events: a pilot's control group stays out of the campaign."""
    from activation.alerts import build_events
    from activation.holdout import control_accounts, without_control_events

    previous, current = request.books()
    events = build_events(previous, current, config)
    left_out = 0
    if exclude_control:
        events, left_out = without_control_events(events, control_accounts(current, running_pilots))
    return {
        "as_of": request.current[0].as_of.isoformat(),
        "previous_as_of": request.previous[0].as_of.isoformat() if request.previous else "",
        "events": events,
        "control_left_out": left_out,
    }
