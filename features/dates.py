"""One date grammar and one date range, for data files, the HTTP API and the command line's `--as-of`.

The grammar is ISO 8601 as a CRM or a client writes it: a day (`2026-06-01` or `20260601`), optionally a
time after `T` or a space (`10`, `10:15`, `10:15:30`, `10:15:30.123`, or `101530`), optionally a zone (`Z`,
`+02`, `+02:00`, `+0200`). A value with a zone is converted to UTC; one without is taken as UTC. Anything
else is not a date: numbers are never read as Unix times, and no format is guessed (a mapping's
`date_format` reads other layouts). Every date must lie between 1900-01-01 and 2100-12-31, which also keeps
it inside what `datetime64[ns]` holds.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from features.schema import CrmData

EARLIEST = pd.Timestamp("1900-01-01")
LATEST = pd.Timestamp("2100-12-31 23:59:59.999999")
RANGE_TEXT = f"between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}"
GRAMMAR_TEXT = f"ISO 8601, e.g. 2026-06-01, 20260601, 2026-06-01T09:30:00 or 2026-06-01T09:30:00Z (dates {RANGE_TEXT})"

_DAY = r"\d{4}-\d{2}-\d{2}|\d{8}"
_TIME = r"\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d{1,9})?)?)?"
_ZONE = r"Z|[+-]\d{2}(?::?\d{2})?"
PATTERN = rf"(?:{_DAY})(?:[T ]{_TIME}(?:{_ZONE})?)?"
_ISO = re.compile(PATTERN, re.ASCII)
# The layouts exports and clients write most (2026-06-01, 2026-06-01T09:30:00): a subset of PATTERN, tried first because
# it matches in half the time of the whole grammar (a request holds hundreds of dates).
_COMMON = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2})?", re.ASCII)

# A date beyond this many days past the 99.9th percentile of its column is far from the bulk of the data.
FAR_BEYOND_DAYS = 90
DATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("opportunities", "created_date"),
    ("opportunities", "close_date"),
    ("engagement", "timestamp"),
    ("intent", "date"),
)


class NotADate(ValueError):
    """A value outside the date grammar or the date range; the message says which."""


# As datetimes once: converting the Timestamps on every call was most of a parse (a request holds hundreds).
_EARLIEST_MOMENT, _LATEST_MOMENT = EARLIEST.to_pydatetime(), LATEST.to_pydatetime()


def in_range(moment: datetime) -> bool:
    return _EARLIEST_MOMENT <= moment <= _LATEST_MOMENT


def parse_moment(value: str | datetime | date) -> datetime:
    """One date-time in naive UTC. Raises NotADate for anything outside the grammar or the range."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if not (_COMMON.fullmatch(text) or _ISO.fullmatch(text)):
            raise NotADate(f"not a date: write dates as {GRAMMAR_TEXT}")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:  # right layout, impossible value: month 13, 30 February, hour 24
            raise NotADate(f"not a calendar date or time: write dates as {GRAMMAR_TEXT}") from None
    else:
        raise NotADate(f"dates must be text, not {type(value).__name__}: write them as {GRAMMAR_TEXT}")
    if moment.tzinfo is not None:
        if not in_range(moment.replace(tzinfo=None)):  # first: year 9999 with a zone overflows on conversion
            raise NotADate(f"dates must lie {RANGE_TEXT}")
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if not in_range(moment):
        raise NotADate(f"dates must lie {RANGE_TEXT}")
    return moment


def parse_day(value: str | None, option: str = "--as-of") -> pd.Timestamp | None:
    """A command-line day (`--as-of`): the grammar above, cut to midnight; None when the option is not given."""
    if value is None:
        return None
    try:
        return pd.Timestamp(parse_moment(value)).normalize()
    except NotADate as error:
        raise NotADate(f"{option} {value!r}: {error}") from None


def parse_dates(raw: pd.Series, date_format: str | None = None) -> pd.Series:
    """A column of dates as naive UTC datetime64[ns]; NaT where a value is outside the grammar or range.

    Datetime columns (a Parquet timestamp) are converted to UTC; text is read with `date_format` when a mapping
    names one, else by the ISO grammar above.
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return within_range(raw.dt.tz_convert("UTC").dt.tz_localize(None))
    if pd.api.types.is_datetime64_dtype(raw):
        return within_range(raw)
    if date_format:
        return within_range(pd.to_datetime(raw, format=date_format, errors="coerce", utc=True).dt.tz_localize(None))
    try:  # fast path: arrow parses plain ISO dates without a zone in C++ (a subset of the grammar)
        if not (pd.api.types.is_string_dtype(raw) or raw.dtype == object):
            raise pa.ArrowInvalid("numbers are not dates")  # arrow would read them as nanoseconds since 1970
        parsed = pd.Series(pc.cast(pa.array(raw), pa.timestamp("ns")).to_numpy(zero_copy_only=False), index=raw.index)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        text = raw.astype("str").where(raw.notna()).str.strip()
        matches = text.str.fullmatch(PATTERN).fillna(False).astype(bool)
        parsed = pd.to_datetime(text.where(matches), format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
    return within_range(parsed)


def within_range(parsed: pd.Series) -> pd.Series:
    return parsed.where(parsed.between(EARLIEST, LATEST)).astype("datetime64[ns]")


def far_beyond_bulk(data: CrmData, columns: tuple[tuple[str, str], ...] = DATE_COLUMNS) -> list[str]:
    """A sentence per date column whose latest date lies far beyond the bulk of its dates (a typo such as 2100-12-31
    would otherwise carry the default as_of years ahead, and every recency-weighted feature to zero)."""
    found = []
    for table, column in columns:
        values = data.table(table)[column].dropna()
        if len(values) < 2:
            continue
        nanoseconds = values.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        bulk = pd.Timestamp(int(np.quantile(nanoseconds, 0.999)))
        latest = values.max()
        if latest - bulk > pd.Timedelta(days=FAR_BEYOND_DAYS):
            count = int((values > bulk + pd.Timedelta(days=FAR_BEYOND_DAYS)).sum())
            found.append(
                f"{table}.{column}: the latest date, {latest.date().isoformat()}, lies "
                f"{(latest - bulk).days:,} days beyond 99.9% of the column's dates (up to "
                f"{bulk.date().isoformat()}; {count:,} row(s) that far out). The default as_of follows the "
                "latest date: correct those rows, or pass --as-of"
            )
    return found
