"""Numbers as spreadsheets and CRMs write them: one parser for every numeric column of an export.

Read, besides plain numbers (`1234.5`, `-3`, `1e6`):

- thousands separators: `10,001`, `1 234 567`, `1'234.50` (or `1.234.567` with a decimal comma);
- currency symbols and codes before or after the number: `$1,234.56`, `USD 1,234`, `€ 12`, `12,50 €`;
- `K`, `M` (or `MM`) and `B` (or `BN`) suffixes: `$102K` is 102,000, `1.5M` is 1,500,000;
- negatives as `-12`, `−12`, `12-` or in parentheses: `(1,234.50)` is -1,234.5;
- a decimal comma (`1.234,5`, `12,5`) where the column uses it.

Whether `,` or `.` is the decimal mark is the mapping's `number_format` where it says, else decided per column
from the values that can only be read one way (`12.5` and `1,234,567` read one way; `1.234,5` and `12,5` the
other); a column whose every value reads both ways (`1,234` is 1234 or 1.234) follows the other columns of its
file, else the decimal point, and the import says so. A value is refused only when it is not a number under the column's
convention. The text is rebuilt as a decimal literal before conversion (`102K` becomes `102e3`), so a suffix never
adds a rounding error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

NumberFormat = Literal["decimal_point", "decimal_comma"]
NUMBER_FORMATS: tuple[NumberFormat, ...] = ("decimal_point", "decimal_comma")
# Values tried before a column that is not named numeric is read as numbers (an extra column): text stops early.
EXTRA_SAMPLE = 1_000
# Rows of each column whose values vote for the file's decimal mark: decisive values are common where there are any.
EVIDENCE_ROWS = 2_000
EVIDENCE_VALUES = 100  # of them, the distinct values that could vote, per column

SUFFIXES: dict[str, int] = {"k": 3, "m": 6, "mm": 6, "b": 9, "bn": 9}
CURRENCY_CODES = (
    "USD EUR GBP JPY CHF CAD AUD NZD SEK NOK DKK PLN CZK HUF RON BGN INR CNY RMB HKD SGD BRL MXN ZAR KRW RUB TRY ILS "
    "AED SAR THB IDR MYR PHP TWD ARS CLP COP PEN"
).split()
CURRENCY_SYMBOLS: tuple[str, ...] = (
    *("US$", "CA$", "AU$", "NZ$", "HK$", "R$", "A$", "C$", "S$", "$", "€", "£", "¥", "₹", "₩", "₽"),
    *("₺", "₪", "₫", "฿", "zł", "kr", "Fr."),
)
_CURRENCY = "|".join(
    [re.escape(symbol) for symbol in sorted(CURRENCY_SYMBOLS, key=len, reverse=True)]
    + [rf"{code}\b" for code in CURRENCY_CODES]
)
_MINUS = "[-\u2212]"
_SUFFIX = "|".join(sorted(SUFFIXES, key=len, reverse=True))
# sign, currency, sign, the digits with their separators, a suffix, currency, a trailing minus; spaces anywhere.
_VALUE = re.compile(
    rf"(?P<lead>{_MINUS}|\+)?\s*(?P<before>{_CURRENCY})?\s*(?P<sign>{_MINUS}|\+)?\s*"
    r"(?P<digits>\d[\d.,' ]*(?:[eE][-+]?\d+)?|[.,]\d+)\s*"
    rf"(?:(?P<suffix>{_SUFFIX})\b)?\s*(?P<after>{_CURRENCY})?\s*(?P<trail>{_MINUS})?",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009]+")
_GROUPS = "[,' ]"  # with a decimal point: 1,234 / 1 234 / 1'234
_POINT = re.compile(
    rf"(?P<int>\d+|\d{{1,3}}(?:(?P<sep>{_GROUPS})\d{{3}})(?:(?P=sep)\d{{3}})*)(?P<frac>\.\d*)?(?P<exp>[eE][-+]?\d+)?"
)
_COMMA = re.compile(r"(?P<int>\d+|\d{1,3}(?:(?P<sep>[.' ])\d{3})(?:(?P=sep)\d{3})*)(?P<frac>,\d*)?")
_CANDIDATE = re.compile(r"[.,]\d")
_LEADING_FRACTION = {"decimal_point": re.compile(r"\.\d+"), "decimal_comma": re.compile(r",\d+")}


@dataclass(frozen=True)
class Parts:
    """One value taken apart: sign, currency, the digits as written, the suffix's power of ten."""

    negative: bool
    currency: str
    digits: str
    power: int
    parentheses: bool


@dataclass
class NumberReading:
    """How one column was read: its convention, what its values carried, and how many there were."""

    convention: NumberFormat
    values: int = 0
    currencies: list[str] = field(default_factory=list)
    thousands: bool = False
    suffixes: bool = False
    parentheses: bool = False
    decided_by: str = "values"  # values, file, mapping, default
    ambiguous: list[str] = field(default_factory=list)  # values that read both ways, when nothing decided

    @property
    def plain(self) -> bool:
        return not (
            self.currencies or self.thousands or self.suffixes or self.parentheses or self.convention == "decimal_comma"
        )

    def describe(self) -> str:
        """`currency ($) with thousands separators and K/M suffixes`, or `plain numbers`."""
        if self.plain:
            return "plain numbers"
        features = []
        if self.thousands:
            features.append("thousands separators")
        if self.convention == "decimal_comma":
            features.append("a decimal comma")
        if self.suffixes:
            features.append("K/M suffixes")
        if self.parentheses:
            features.append("parentheses for negatives")
        head = f"currency ({', '.join(self.currencies)})" if self.currencies else "numbers"
        if not features:
            return head
        listed = features[0] if len(features) == 1 else ", ".join(features[:-1]) + " and " + features[-1]
        return f"{head} with {listed}"


def split_value(text: str) -> Parts | None:
    """A cell's sign, currency, digits and suffix; None when it is not shaped like a number at all."""
    if not any(char.isdigit() for char in text):  # names and labels: no need for the whole pattern
        return None
    text = _SPACES.sub(" ", text.strip())
    parentheses = len(text) > 2 and text[0] == "(" and text[-1] == ")"
    if parentheses:
        text = text[1:-1].strip()
    match = _VALUE.fullmatch(text)
    if match is None:
        return None
    minus = [match[name] for name in ("lead", "sign", "trail") if match[name] and match[name] != "+"]
    pluses = [name for name in ("lead", "sign") if match[name] == "+"]
    currencies = [match[name] for name in ("before", "after") if match[name]]
    suffix = (match["suffix"] or "").lower()
    digits = match["digits"].strip()
    exponent = re.search(r"[eE]", digits) is not None
    if len(minus) + len(pluses) > 1 or (minus and parentheses) or len(currencies) > 1 or (suffix and exponent):
        return None
    currency = currencies[0] if currencies else ""
    canonical = next((symbol for symbol in CURRENCY_SYMBOLS if symbol.lower() == currency.lower()), currency.upper())
    return Parts(bool(minus) or parentheses, canonical, digits, SUFFIXES.get(suffix, 0), parentheses)


def literal(digits: str, convention: NumberFormat) -> tuple[str, bool] | None:
    """The digits as a plain decimal literal under a convention, and whether they held thousands separators."""
    if _LEADING_FRACTION[convention].fullmatch(digits):
        return "0." + digits[1:], False
    match = (_POINT if convention == "decimal_point" else _COMMA).fullmatch(digits)
    if match is None:
        return None
    whole = re.sub(r"\D", "", match["int"])
    fraction = (match["frac"] or "")[1:]
    exponent = match.groupdict().get("exp") or ""
    return whole + ("." + fraction if fraction else "") + exponent, match["sep"] is not None


def _readings(digits: str) -> dict[NumberFormat, tuple[str, bool] | None]:
    return {convention: literal(digits, convention) for convention in NUMBER_FORMATS}


def evidence(texts: Iterable[Any], limit: int | None = None) -> dict[NumberFormat, int]:
    """How many distinct values (of the first `limit` that could) read under one convention only, per convention."""
    counts: dict[NumberFormat, int] = dict.fromkeys(NUMBER_FORMATS, 0)
    seen: set[str] = set()
    for value in texts:
        if value is None or (isinstance(value, float) and value != value):
            continue
        text = str(value)
        # Only a mark followed by a digit can read one way only: names, dates and plain integers are skipped.
        if text in seen or _CANDIDATE.search(text) is None:
            continue
        seen.add(text)
        if limit is not None and len(seen) > limit:
            break
        parts = split_value(text)
        if parts is None:
            continue
        possible = [convention for convention, reading in _readings(parts.digits).items() if reading is not None]
        if len(possible) == 1:
            counts[possible[0]] += 1
    return counts


def file_evidence(table: pa.Table, rows: int = EVIDENCE_ROWS) -> dict[NumberFormat, int]:
    """`evidence` over the first rows of every text column of a file: the file's own decimal mark, for the columns
    whose values cannot tell (a table taken from the file keeps only some of its columns)."""
    totals: dict[NumberFormat, int] = dict.fromkeys(NUMBER_FORMATS, 0)
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            for convention, count in evidence(column.slice(0, rows).to_pylist(), EVIDENCE_VALUES).items():
                totals[convention] += count
    return totals


def _two_ways(digits: str) -> bool:
    point, comma = _readings(digits).values()
    return point is not None and comma is not None and float(point[0]) != float(comma[0])


def parse_numbers(
    raw: pd.Series, convention: NumberFormat | None = None, file_votes: dict[NumberFormat, int] | None = None
) -> tuple[pd.Series, NumberReading]:
    """float64 (NaN where a value is not a finite number under the column's convention) and how it was read.

    `convention` comes from the mapping and wins; else the column's own values decide, then `file_votes`
    (the values of the file's columns that read one way only, `file_evidence`), then the decimal point."""
    plain = plain_numbers(raw, convention, file_votes)
    if plain is not None:
        return plain
    present = raw.notna()
    texts = raw[present].astype(str)
    decided_by = "mapping"
    if convention is None:
        own = evidence(texts)
        if any(own.values()):
            convention, decided_by = _majority(own), "values"
        elif file_votes and any(file_votes.values()):
            convention, decided_by = _majority(file_votes), "file"
        else:
            convention, decided_by = "decimal_point", "default"
    reading = NumberReading(convention, values=int(present.sum()), decided_by=decided_by)
    values: dict[str, float] = {}
    currencies: dict[str, None] = {}
    for text in texts.unique():
        values[text] = _value(text, convention, reading, currencies)
    reading.currencies = list(currencies)
    if decided_by == "default":
        reading.ambiguous = [text for text in texts.unique()[:200] if _ambiguous(text)][:3]
    parsed = pd.Series(np.nan, index=raw.index, dtype="float64")
    parsed[present] = texts.map(values).astype("float64")
    return parsed.where(np.isfinite(parsed)), reading


def plain_numbers(
    raw: pd.Series, convention: NumberFormat | None = None, file_votes: dict[NumberFormat, int] | None = None
) -> tuple[pd.Series, NumberReading] | None:
    """`parse_numbers` where no value's format decides anything: a numeric column, or text that arrow reads as
    plain numbers when neither the mapping nor the file says how; None otherwise. Any part of such a column reads
    as the whole column does."""
    if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        parsed = raw.astype("float64")
        parsed = parsed.where(np.isfinite(parsed))
        return parsed, NumberReading(convention or "decimal_point", values=int(parsed.notna().sum()))
    comma_file = bool(file_votes) and _majority(file_votes or {}) == "decimal_comma"
    if convention is not None or comma_file:
        return None
    parsed = _arrow_floats(raw)  # fast path: arrow parses clean numeric text in C++
    if parsed is None:
        return None
    return parsed.where(np.isfinite(parsed)), NumberReading("decimal_point", values=int(raw.notna().sum()))


def _arrow_floats(raw: pd.Series) -> pd.Series | None:
    try:
        return pd.Series(pc.cast(pa.array(raw), pa.float64()).to_numpy(zero_copy_only=False), index=raw.index)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def decides_alone(raw: pd.Series) -> bool:
    """Whether part of an extra text column reads as the whole column would whatever the rest holds: every value
    a plain finite number (the column is numbers if every part is), or one value no convention reads as a number
    (the column is text). Formatted numbers (`1,234`, `$5K`) need the whole column's convention."""
    parsed = _arrow_floats(raw)
    if parsed is not None and bool(np.isfinite(parsed[raw.notna()]).all()):
        return True
    return any(split_value(str(text)) is None for text in raw.dropna().unique())


def _ambiguous(text: str) -> bool:
    parts = split_value(text)
    return parts is not None and _two_ways(parts.digits)


def _majority(counts: dict[NumberFormat, int]) -> NumberFormat:
    return "decimal_comma" if counts["decimal_comma"] > counts["decimal_point"] else "decimal_point"


def _value(text: str, convention: NumberFormat, reading: NumberReading, currencies: dict[str, None]) -> float:
    parts = split_value(text)
    if parts is None:
        return np.nan
    read = literal(parts.digits, convention)
    if read is None:
        return np.nan
    number_text, grouped = read
    if parts.power:
        number_text += f"e{parts.power}"
    try:
        number = float(number_text)
    except ValueError:
        return np.nan
    reading.thousands |= grouped
    reading.suffixes |= bool(parts.power)
    reading.parentheses |= parts.parentheses
    if parts.currency:
        currencies[parts.currency] = None
    return -number if parts.negative else number


def numbers_if_all_numeric(raw: pd.Series) -> tuple[pd.Series, NumberReading | None]:
    """An extra column as numbers when every value is one (so learners can use it), else as it is (and None)."""
    sample = raw.dropna().head(EXTRA_SAMPLE)
    if not len(sample):
        return raw, None
    if parse_numbers(sample)[0].isna().any():  # text: stop before reading the whole column
        return raw, None
    parsed, reading = parse_numbers(raw)
    if reading.suffixes and not reading.currencies:  # "5m" in a column nobody named numeric may be 5 minutes
        return raw, None
    return (parsed, reading) if parsed.notna().sum() == raw.notna().sum() else (raw, None)
