"""The one date grammar (features.dates.parse_moment), against values written by hand."""

from datetime import datetime

import pytest

from features.dates import NotADate, parse_moment


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-01", datetime(2026, 6, 1)),
        ("2026-06-01T09:30:00", datetime(2026, 6, 1, 9, 30)),
        ("2026-06-01 09:30:15", datetime(2026, 6, 1, 9, 30, 15)),
        ("  2026-06-01T09:30:00 ", datetime(2026, 6, 1, 9, 30)),
        ("20260601", datetime(2026, 6, 1)),
        ("2026-06-01T09", datetime(2026, 6, 1, 9)),
        ("2026-06-01T0930", datetime(2026, 6, 1, 9, 30)),
        ("2026-06-01T09:30:00.250", datetime(2026, 6, 1, 9, 30, 0, 250000)),
        ("2026-06-01T09:30:00Z", datetime(2026, 6, 1, 9, 30)),
        ("2026-06-01T09:30:00+02:00", datetime(2026, 6, 1, 7, 30)),
        ("2026-06-01T01:00:00-0300", datetime(2026, 6, 1, 4, 0)),
        ("1900-01-01", datetime(1900, 1, 1)),
        ("2100-12-31T23:59:59", datetime(2100, 12, 31, 23, 59, 59)),
    ],
)
def test_dates_in_the_grammar(text, expected):
    assert parse_moment(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-13-01", "not a calendar date"),
        ("2026-02-30T10:00:00", "not a calendar date"),
        ("2026-06-01T24:00:00", "not a calendar date"),
        ("2026-06-01T09:30:00x", "not a date"),
        ("2026-6-1", "not a date"),
        ("٢٠٢٦-06-01", "not a date"),  # Arabic-Indic digits are digits to Python, not to the grammar
        ("2026-06-01T09:30:0٣", "not a date"),
        ("2026/06/01", "not a date"),
        ("0", "not a date"),
        ("", "not a date"),
        ("1899-12-31T23:59:59", "dates must lie"),
        ("2101-01-01", "dates must lie"),
        ("2100-12-31T23:00:00-02:00", "dates must lie"),  # 2101 in UTC
        (20260601, "dates must be text"),
        (None, "dates must be text"),
    ],
)
def test_values_outside_the_grammar_or_range(value, message):
    with pytest.raises(NotADate, match=message):
        parse_moment(value)
