"""The canonical data contract (SPEC section 3): four tables and their column types.

After import, every table has exactly these dtypes, so the code downstream never guesses:
ids and text are pandas `str`, dates are `datetime64[ns]` (naive, UTC), numbers are `float64`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

TABLES: tuple[str, ...] = ("accounts", "opportunities", "engagement", "intent")
REQUIRED_TABLES: tuple[str, ...] = ("accounts", "opportunities")
OUTCOMES: tuple[str, ...] = ("won", "lost", "open")

# column -> kind ("id", "text", "date", "number"); required columns first.
REQUIRED: dict[str, dict[str, str]] = {
    "accounts": {"account_id": "id"},
    "opportunities": {"opportunity_id": "id", "account_id": "id", "created_date": "date", "outcome": "text"},
    "engagement": {"account_id": "id", "timestamp": "date", "channel": "text"},
    "intent": {"account_id": "id", "date": "date", "topic": "text"},
}
OPTIONAL: dict[str, dict[str, str]] = {
    "accounts": {
        "account_name": "text",
        "industry": "text",
        "employees": "number",
        "annual_revenue": "number",
        "country": "text",
        "region": "text",
        "tech_stack": "text",
        "parent_account_id": "id",
        "owner": "text",  # the account owner's name or email, as CRMs export Account Owner
    },
    "opportunities": {"close_date": "date", "amount": "number", "product": "text"},
    "engagement": {"count": "number"},
    "intent": {"score": "number"},
}
MAX_COUNT = 1_000_000  # engagement events in one row; the import and the API both refuse more
# (table, column) -> inclusive (low, high) of a number column, enforced by the import and by the API alike
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("accounts", "employees"): (0, math.inf),
    ("accounts", "annual_revenue"): (0, math.inf),
    ("opportunities", "amount"): (0, math.inf),
    # Bounded so that every window sum of counts is exact in float64 (features.timeindex): 2**53 / 1e6 rows.
    ("engagement", "count"): (0, MAX_COUNT),
    ("intent", "score"): (0, 100),
}
DEFAULTS: dict[str, dict[str, float]] = {"engagement": {"count": 1.0}, "intent": {"score": 100.0}}

# The account fields the features read; extra account columns pass through untouched.
ACCOUNT_FIELDS: tuple[str, ...] = tuple(REQUIRED["accounts"]) + tuple(OPTIONAL["accounts"])


def columns(table: str) -> dict[str, str]:
    return {**REQUIRED[table], **OPTIONAL[table]}


def empty_table(table: str) -> pd.DataFrame:
    return conform(pd.DataFrame({name: [] for name in columns(table)}), table)


def to_datetime(values: pd.Series) -> pd.Series:
    """Naive datetime64[ns]; ISO 8601 strings with or without a time part (unparseable become NaT)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values.dt.tz_convert(None) if getattr(values.dt, "tz", None) is not None else values
    else:
        parsed = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True).dt.tz_convert(None)
    return parsed.astype("datetime64[ns]")


def conform(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Add missing optional columns and cast every known column to its canonical dtype.

    Values must already be parseable (validation guarantees it); extra columns are kept as they are.
    """
    frame = frame.copy(deep=False)  # columns are replaced, never changed in place: the caller's frame stays as it was
    for name, kind in columns(table).items():
        if name not in frame.columns:
            default = DEFAULTS.get(table, {}).get(name)
            frame[name] = default if default is not None else None
        if kind in ("id", "text"):
            if frame[name].dtype != "str":  # a str column is already what this makes of it
                frame[name] = frame[name].astype("str").where(frame[name].notna(), None).astype("str")
        elif kind == "date":
            frame[name] = to_datetime(frame[name])
        else:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name, default in DEFAULTS.get(table, {}).items():
        frame[name] = frame[name].fillna(default)
    known = list(columns(table))
    return frame[known + [c for c in frame.columns if c not in known]]


@dataclass(frozen=True)
class GroupedEvents:
    """A book's event tables split into groups of accounts (`features.groups`), read one group at a time.

    `read(group)` answers that group's engagement and intent rows (canonical dtypes, in the export's order); the
    groups are `account_groups` of `grouping_keys(accounts, by_family)` into `groups`."""

    groups: int
    by_family: bool
    read: Callable[[int], dict[str, pd.DataFrame]]
    rows: dict[str, int]  # rows per event table, over every group
    latest: dict[str, pd.Timestamp | None]  # the latest engagement timestamp and intent date (the default as_of)


@dataclass
class CrmData:
    """The four canonical tables; `engagement` and `intent` are empty (never None) when absent."""

    accounts: pd.DataFrame
    opportunities: pd.DataFrame
    engagement: pd.DataFrame = field(default_factory=lambda: empty_table("engagement"))
    intent: pd.DataFrame = field(default_factory=lambda: empty_table("intent"))
    # Which optional tables the export really had (the engagement score says when it is 0 by absence).
    present: frozenset[str] = frozenset(TABLES)
    # The events held by group instead of whole (`engagement` and `intent` are then empty): see `features.groups`.
    grouped: GroupedEvents | None = None

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def event_rows(self, name: str) -> int:
        """How many rows an event table has, held whole or by group."""
        return self.grouped.rows[name] if self.grouped is not None else len(self.table(name))
