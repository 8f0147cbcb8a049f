"""Checks of an imported export against the data contract (SPEC section 3), and its summary.

Every check is vectorised (20 million engagement rows take seconds) and reports one `Problem` per
file naming the column, the first offending rows as a spreadsheet numbers them, and the fix.
Errors stop the run; warnings (unknown channels, accounts without opportunities, dropped open
opportunities) are reported and the data is used.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import CHANNELS
from features.dates import EARLIEST, LATEST, parse_dates
from features.errors import MAX_ROWS_SHOWN, Problem, rows_of
from features.families import MAX_DEPTH, resolve_families
from features.groups import EVENT_TABLES
from features.schema import OPTIONAL, OUTCOMES, RANGES, REQUIRED, REQUIRED_TABLES, TABLES, CrmData, columns
from ingest.mapping import Mapping, TableMapping
from ingest.numbers import (
    NumberFormat,
    NumberReading,
    decides_alone,
    numbers_if_all_numeric,
    parse_numbers,
    plain_numbers,
)
from ingest.problems import problem_at_rows

if TYPE_CHECKING:
    pass

CLOSED: tuple[str, ...] = ("won", "lost")
UNIQUE_IDS: dict[str, str] = {"accounts": "account_id", "opportunities": "opportunity_id"}
# Plausible dates (features.dates, shared with the API and --as-of); inside what datetime64[ns] can hold.
DATE_RANGE = (EARLIEST, LATEST)
MAX_EXAMPLES = 3

# Day-first and month-first layouts that read the same text when every day is 12 or less: each names the other.
SWAP_PAIRS: tuple[tuple[str, str], ...] = (
    ("%m/%d/%Y", "%d/%m/%Y"),
    ("%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M"),
    ("%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S"),
    ("%m/%d/%y", "%d/%m/%y"),
    ("%m-%d-%Y", "%d-%m-%Y"),
)
SWAPPED: dict[str, str] = {first: second for pair in SWAP_PAIRS for first, second in (pair, pair[::-1])}


@dataclass
class SourceTable:
    """One canonical table as imported, remembering which file and row each record came from.

    `origin` is each frame row's position in the files as read (all files in order), so problems keep naming the
    rows as the files number them after rows were dropped. `rejections` collects the rows that row-level errors
    name, each with its reason, for `validation.invalid_rows: drop`.
    """

    name: str
    frame: pd.DataFrame  # canonical column names, RangeIndex
    files: list[str]  # file names relative to the data folder
    starts: list[int]  # position (in the files as read) of each file's first row
    headers: dict[str, str] = field(default_factory=dict)  # canonical column -> the file's header, where mapped
    origin: np.ndarray | None = None  # None: every row is where it was read (no copy of 8 bytes a row)
    derived: bool = False  # accounts taken from the opportunities rows: one row per row, collapsed after the checks
    dropping: bool = False  # invalid_rows: drop (problems then name the rows that are dropped)
    rejections: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (frame positions, reasons)
    rejected: list[pd.DataFrame] = field(default_factory=list)  # rows dropped so far: file, row, table, reason
    dropped_ids: set[str] = field(default_factory=set)  # account_id values of dropped rows
    generated_ids: int = 0  # opportunities given an id made from their row (ingest.derive)
    rule_reference: pd.Timestamp | None = None  # the day the outcome rule judged lost opportunities on
    number_readings: dict[str, NumberReading] = field(default_factory=dict)  # column -> how its numbers were read
    number_evidence: dict[NumberFormat, int] | None = None  # values of its files that read one decimal mark only
    batch: BatchTally | None = None  # set when this is one batch of a table read batch by batch (`EventChecks`)

    def origins(self, positions: np.ndarray) -> np.ndarray:
        """Where frame rows were read: their positions in the files as read, all files in order."""
        return positions if self.origin is None else self.origin[positions]

    @property
    def all_origins(self) -> np.ndarray:
        return np.arange(len(self.frame)) if self.origin is None else self.origin

    @property
    def missing_columns(self) -> list[str]:
        return [column for column in REQUIRED[self.name] if column not in self.frame.columns]

    def header(self, column: str) -> str:
        """The column as the file names it (what the user can find and fix)."""
        return self.headers.get(column, column)

    def problems_at(
        self,
        mask: pd.Series,
        message: str,
        fix: str | Callable[[], str],
        column: str = "",
        severity: Literal["error", "warning"] = "error",
        reason: str | pd.Series | None = None,
        examples: pd.Series | None = None,
    ) -> list[Problem]:
        """One Problem per file holding rows where `mask` is true (none when it is all false).

        The column is named as the file's header; `examples` (the offending values) end the message with the first
        few. An error given a `reason` (one text, or one per row) is about single rows: the rows are remembered with
        it, so that `invalid_rows: drop` can drop them. A `fix` may be a function of what the whole table holds,
        asked once every batch was checked. In a batch (`batch` set) the problems are added to the table's tally,
        which words them once every batch was checked, and none is returned.
        """
        selected = np.flatnonzero(mask.to_numpy(dtype=bool))
        site = self.batch.site() if self.batch is not None else None  # every call, rows or not: the check's place
        if not len(selected):
            return []
        row_level = reason is not None and severity == "error"
        if row_level:
            self.reject(mask, reason)
        positions = self.origins(selected)
        file_of_row = np.searchsorted(self.starts, positions, side="right") - 1
        if site is not None:
            site.add(message, fix, self.header(column), severity, row_level, examples)
            for index in np.unique(file_of_row):
                site.add_rows(int(index), positions[file_of_row == index] - self.starts[index])
            return []
        problems = []
        for index in np.unique(file_of_row):
            problems.append(
                problem_at_rows(
                    positions[file_of_row == index] - self.starts[index],
                    message + ("" if examples is None else _examples(examples)),
                    fix if isinstance(fix, str) else fix(),
                    file=self.files[index],
                    column=self.header(column),
                    severity=severity,
                    table=self.name,
                    row_level=row_level,
                )
            )
        return problems

    def reject(self, mask: pd.Series, reason: str | pd.Series) -> None:
        """Remember the rows of `mask` with their reason (a text, or a Series of texts on the frame's index)."""
        selected = np.flatnonzero(mask.to_numpy(dtype=bool))
        if isinstance(reason, pd.Series):
            texts = reason.reindex(self.frame.index[selected]).fillna("").astype(str).to_numpy(dtype=object)
        else:
            texts = np.full(len(selected), reason, dtype=object)
        self.rejections.append((selected, texts))

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """File names and 1-based row numbers (the header is row 1) of frame positions."""
        origins = self.origins(positions)
        file_of_row = np.searchsorted(self.starts, origins, side="right") - 1
        return np.asarray(self.files, dtype=object)[file_of_row], origins - np.asarray(self.starts)[file_of_row] + 2

    def drop_rejected(self) -> int:
        """Drop every rejected row, keep it with its reasons in `rejected`; returns how many rows went."""
        if not self.rejections:
            return 0
        positions = np.concatenate([selected for selected, _ in self.rejections])
        reasons = np.concatenate([texts for _, texts in self.rejections])
        self.rejections = []
        order = pd.DataFrame({"position": positions, "reason": reasons})
        order = order[order["reason"] != ""].drop_duplicates()  # one check may name a row twice
        joined = order.groupby("position", sort=True)["reason"].agg("; ".join)
        dropped = joined.index.to_numpy()
        files, rows = self.locate(dropped)
        self.rejected.append(
            pd.DataFrame({"file": files, "row": rows.astype(np.int64), "table": self.name, "reason": joined.to_numpy()})
        )
        if "account_id" in self.frame:
            self.dropped_ids |= set(self.frame["account_id"].iloc[dropped].dropna())
        keep = np.ones(len(self.frame), dtype=bool)
        keep[dropped] = False
        self.frame = self.frame[keep].reset_index(drop=True)
        self.origin = np.flatnonzero(keep) if self.origin is None else self.origin[keep]
        return len(dropped)


class WholeTableNeeded(Exception):
    """A batch holds what only its whole table decides (a number column that is not plain text numbers, an extra
    column of formatted numbers): the table is read whole instead, as the tables not read in batches are."""


@dataclass
class BatchSite:
    """One check's finding (one `problems_at` call) over every batch of a table: its rows per file, its examples."""

    message: str = ""
    fix: str | Callable[[], str] = ""
    column: str = ""
    severity: Literal["error", "warning"] = "error"
    row_level: bool = False
    examples: list[Any] | None = None  # the first MAX_EXAMPLES distinct offending values, in the table's order
    rows: dict[int, tuple[np.ndarray, int]] = field(default_factory=dict)  # file -> (first rows, how many)

    def add(self, message: str, fix, column: str, severity, row_level: bool, examples: pd.Series | None) -> None:
        # The latest batch with rows words the message: a count that grows batch by batch is then the table's.
        self.message, self.fix, self.column, self.severity, self.row_level = message, fix, column, severity, row_level
        if examples is not None:
            shown = [] if self.examples is None else self.examples
            for value in examples.drop_duplicates().head(MAX_EXAMPLES):
                if len(shown) < MAX_EXAMPLES and value not in shown:
                    shown.append(value)
            self.examples = shown

    def add_rows(self, file: int, positions: np.ndarray) -> None:
        first, count = self.rows.get(file, (np.zeros(0, dtype=np.int64), 0))
        self.rows[file] = (np.concatenate([first, positions[:MAX_ROWS_SHOWN]])[:MAX_ROWS_SHOWN], count + len(positions))

    def problems(self, table: SourceTable) -> list[Problem]:
        message = self.message + ("" if self.examples is None else _examples(pd.Series(self.examples, dtype=object)))
        fix = self.fix if isinstance(self.fix, str) else self.fix()
        return [
            Problem(
                message,
                fix,
                file=table.files[file],
                column=self.column,
                rows=rows_of(first)[0],
                row_count=count,
                severity=self.severity,
                table=table.name,
                row_level=self.row_level,
            )
            for file, (first, count) in sorted(self.rows.items())
        ]


@dataclass
class DateFacts:
    """What decides a day-month date column's messages, over every value it holds."""

    present: bool = False
    unread: bool = False  # a value that is not a date under the mapping's layout
    small_days: bool = True  # every date read has a day of 12 or less
    swapped_reads_all: bool = True  # the other order (day-first / month-first) reads every value

    def add(self, raw: pd.Series, parsed: pd.Series, swapped: str, always: bool) -> None:
        """Add values and their dates; the other order is tried where values are not read (`always`: in every
        batch, as a later batch may hold the values that are not)."""
        present = raw.notna()
        unread = bool((present & parsed.isna()).any())
        self.present |= bool(present.any())
        self.unread |= unread
        self.small_days &= bool((parsed.dropna().dt.day <= 12).all())
        if always or unread:
            self.swapped_reads_all &= bool(parse_dates(raw, swapped).notna().sum() == present.sum())

    @property
    def both_ways(self) -> bool:
        return not self.unread and self.small_days


@dataclass
class BatchTally:
    """A table checked batch by batch: each check's rows and examples, and what only the whole table decides (the
    unknown channels' counts, the date layouts, how numbers were read), gathered so that the problems are worded
    as they are for the whole table. Checks are told apart by the order of their calls within a phase, the same in
    every batch (each batch has the same columns)."""

    phase: str = ""
    calls: int = 0
    sites: dict[tuple[str, int], BatchSite] = field(default_factory=dict)
    channels: ChannelCounts = field(default_factory=lambda: ChannelCounts())  # the unknown channels' rows
    dates: dict[str, DateFacts] = field(default_factory=dict)
    readings: dict[str, NumberReading] = field(default_factory=dict)

    def begin(self, phase: str) -> None:
        self.phase, self.calls = phase, 0

    def site(self) -> BatchSite:
        self.calls += 1
        return self.sites.setdefault((self.phase, self.calls), BatchSite())

    def add_reading(self, column: str, reading: NumberReading) -> None:
        held = self.readings.setdefault(column, replace(reading, values=0))
        held.values += reading.values

    def problems(self, phase: str, table: SourceTable) -> list[Problem]:
        return [
            problem for (at, _), site in sorted(self.sites.items()) if at == phase for problem in site.problems(table)
        ]


class InvalidRows(StrEnum):
    """What a row-level problem does (`--invalid-rows`, `validation.invalid_rows`)."""

    STOP = "stop"  # the run stops and lists every problem
    DROP = "drop"  # the row is dropped, counted in every summary and listed in rejected_rows.csv


# Where each check's problems stand in the list: by phase, then by table (the order `validate` reports them in).
Slot = tuple[str, str]
SLOTS: tuple[Slot, ...] = (
    *(("columns", name) for name in TABLES),
    *(("values", name) for name in TABLES),
    ("collapse", "accounts"),
    *(("references", name) for name in TABLES if name != "accounts"),
    ("unmatched", "accounts"),
    ("hierarchy", "accounts"),
)
EVENT_PHASES: tuple[str, ...] = ("columns", "values", "references")


def validate(tables: dict[str, SourceTable], mapping: Mapping, invalid_rows: str = InvalidRows.STOP) -> list[Problem]:
    """Check every imported table, parsing dates and numbers in place; returns errors and warnings.

    With `invalid_rows="drop"`, every row a row-level error names is dropped from its table (kept in the table's
    `rejected`) and the error becomes a warning; table-level errors still stop. References are checked after the
    rows of the accounts table were dropped, so an opportunity of a dropped account is dropped in turn.
    """
    core = {name: table for name, table in tables.items() if name in REQUIRED_TABLES}
    slots, emptied = validate_core(core, mapping, invalid_rows)
    accounts = core.get("accounts")
    for name in EVENT_TABLES:
        if name in tables:
            checks = EventChecks(name, mapping.table(name), accounts, invalid_rows)
            checks.check(tables[name])
            tables[name].rejected = checks.rejected
            slots |= checks.problems(tables[name])
    return in_order(slots, invalid_rows) + emptied


def in_order(slots: dict[Slot, list[Problem]], invalid_rows: str) -> list[Problem]:
    """The problems of every check in the order of SLOTS; dropping, row-level errors become warnings that say their
    rows were dropped."""
    problems = [problem for slot in SLOTS for problem in slots.get(slot, [])]
    return _dropped(problems) if invalid_rows == InvalidRows.DROP else problems


def validate_core(
    tables: dict[str, SourceTable], mapping: Mapping, invalid_rows: str = InvalidRows.STOP
) -> tuple[dict[Slot, list[Problem]], list[Problem]]:
    """`validate` of the accounts and opportunities tables: the problems by slot, and the tables emptied by
    dropping (which come last). The event tables are checked after them (`EventChecks`): they need the accounts
    as checked, and nothing in these two tables depends on them."""
    if invalid_rows not in set(InvalidRows):
        raise ValueError(f"invalid_rows must be stop or drop, not {invalid_rows!r}")
    dropping = invalid_rows == InvalidRows.DROP
    for table in tables.values():
        table.dropping = dropping
    slots: dict[Slot, list[Problem]] = {}
    for table in tables.values():
        found: list[Problem] = []
        if mapping.table(table.name).outcome_rule is not None:
            from ingest.derive import apply_outcome_rule

            found += apply_outcome_rule(table, mapping.table(table.name))
        found += check_required(table)
        found += parse_columns(table, mapping.table(table.name))
        add_absent_optional_columns(table)
        slots["columns", table.name] = found
    complete = {name: table for name, table in tables.items() if not table.missing_columns}
    for table in complete.values():
        slots["values", table.name] = check_values(table)
    if dropping:
        _drop_rejected(tables.values())
    accounts = complete.get("accounts")
    if accounts is not None and accounts.derived and "opportunities" in complete:
        from ingest.derive import collapse_accounts

        slots["collapse", "accounts"] = collapse_accounts(accounts, complete["opportunities"])
    if accounts is not None and "opportunities" in complete:
        opportunities = complete["opportunities"]
        slots["references", "opportunities"] = check_account_ids(opportunities, accounts)
        slots["unmatched", "accounts"] = check_unmatched_accounts(accounts, opportunities)
    if accounts is not None:
        slots["hierarchy", "accounts"] = check_hierarchy(accounts)
    emptied: list[Problem] = []
    if dropping:
        _drop_rejected(tables.values())
        emptied = _emptied(tables.values())
    return slots, emptied


class EventChecks:
    """The checks of one event table (engagement, intent) against the accounts as checked: on the whole table, or
    batch by batch (`check` of each batch, its `batch` set to this object's tally) with the very problems the whole
    table gets. Rows dropped (`invalid_rows: drop`) are gathered in `rejected`."""

    def __init__(self, name: str, section: TableMapping, accounts: SourceTable | None, invalid_rows: str) -> None:
        self.name, self.section, self.accounts = name, section, accounts
        self.dropping = invalid_rows == InvalidRows.DROP
        self.tally = BatchTally()
        # What the first call returned (in batches: the same in each).
        self.direct: dict[str, list[Problem]] | None = None
        self.rejected: list[pd.DataFrame] = []

    def check(self, table: SourceTable) -> pd.DataFrame:
        """Check the table or one of its batches, parsing its dates and numbers; returns its rows that stay."""
        table.dropping = self.dropping
        found: dict[str, list[Problem]] = {}
        self._begin("columns", table)
        found["columns"] = check_required(table) + parse_columns(table, self.section)
        add_absent_optional_columns(table)
        complete = not table.missing_columns
        self._begin("values", table)
        found["values"] = check_values(table) if complete else []
        if self.dropping:
            table.drop_rejected()
        self._begin("references", table)
        known = self.accounts is not None and not self.accounts.missing_columns
        found["references"] = check_account_ids(table, self.accounts) if complete and known else []  # type: ignore[arg-type]
        if self.direct is None:
            self.direct = found
        self.rejected += table.rejected
        table.rejected = []
        return table.frame

    def _begin(self, phase: str, table: SourceTable) -> None:
        if table.batch is not None:
            table.batch.begin(phase)

    def problems(self, table: SourceTable) -> dict[Slot, list[Problem]]:
        """Every problem found, by slot: `table` names the files (in batches, the table that read them)."""
        direct = self.direct or {}
        slots = {
            (phase, self.name): direct.get(phase, []) + self.tally.problems(phase, table) for phase in EVENT_PHASES
        }
        both_ways = {column: facts.both_ways for column, facts in self.tally.dates.items() if facts.present}
        if both_ways and all(both_ways.values()):
            slots["columns", self.name].append(_day_order_warning(table, self.section, list(both_ways)))
        return slots


def _drop_rejected(tables) -> None:
    for table in tables:
        table.drop_rejected()


def _dropped(problems: list[Problem]) -> list[Problem]:
    """Row-level errors become warnings that say their rows were dropped."""
    return [
        replace(
            problem,
            severity="warning",
            message=f"{problem.message}: {'row' if problem.row_count == 1 else 'rows'} dropped",
            fix="each dropped row is listed with its reason in rejected_rows.csv; correct the export to keep them",
        )
        if problem.row_level and problem.severity == "error"
        else problem
        for problem in problems
    ]


def _emptied(tables) -> list[Problem]:
    """A required table whose every row was dropped cannot be used: that stops the run."""
    problems = []
    for table in tables:
        dropped = sum(len(frame) for frame in table.rejected)
        if table.name in REQUIRED_TABLES and dropped and table.frame.empty:
            problems.append(
                Problem(
                    f"every row of the {table.name} table was dropped ({dropped:,} rows with row-level problems)",
                    fix="correct the export or the mapping: the warnings above say why the rows were dropped",
                    file=", ".join(table.files),
                    table=table.name,
                )
            )
    return problems


ABSENT_DTYPES: dict[str, str] = {"id": "str", "text": "str", "date": "datetime64[ns]", "number": "float64"}


def add_absent_optional_columns(table: SourceTable) -> None:
    """Give the table every optional column it lacks (`close_date`, `amount`, `product`...) as a typed, empty column.

    Optional means the export may leave it out; the checks and everything downstream then read an all-missing
    column (NaT, NaN or null) rather than fail on its absence. Defaults (`count`, `score`) are filled by `conform`.
    """
    frame = table.frame
    for column, kind in OPTIONAL[table.name].items():
        if column not in frame.columns:
            frame[column] = pd.Series(None, index=frame.index, dtype=ABSENT_DTYPES[kind])


def check_required(table: SourceTable) -> list[Problem]:
    """Required columns, rows and values; runs before parsing, so empty and unparseable stay apart."""
    if table.missing_columns:
        return [_missing_column(table, column) for column in table.missing_columns]
    frame, problems = table.frame, []
    if frame.empty:
        required = table.name in REQUIRED_TABLES
        problems.append(
            Problem(
                f"the {table.name} table has no data rows",
                fix="export it again with its rows" if required else "add its rows, or remove the file",
                file=", ".join(table.files),
                severity="error" if required else "warning",
                table=table.name,
            )
        )
    dropped = unusable_open_opportunities(frame) if table.name == "opportunities" else {}
    for column in REQUIRED[table.name]:
        empty = frame[column].isna()
        if column in dropped:
            lacking = "an account" if column == "account_id" else "a created date"
            problems += table.problems_at(
                dropped[column],
                f"open opportunities without {lacking} are dropped",
                column=column,
                severity="warning",
                fix="none needed (open opportunities never train a model); fill it in to keep them",
            )
            empty &= ~(dropped["account_id"] | dropped["created_date"])
        problems += table.problems_at(
            empty,
            f"{column} is empty",
            fix=f"fill in {column} on every row, or remove those rows",
            column=column,
            reason=f"{table.header(column)} is empty",
        )
    if table.name == "opportunities":
        closed = frame["outcome"].isin(CLOSED)
        undated = closed & frame["close_date"].isna() if "close_date" in frame else closed
        problems += table.problems_at(
            undated,
            "closed (won or lost) opportunities without close_date",
            column="close_date",
            fix="add the close date: it is required when outcome is won or lost",
            # Without the column at all, the mapping or the export is wrong, not single rows.
            reason=frame["outcome"][undated].astype(object) + f" but {table.header('close_date')} is empty"
            if "close_date" in frame
            else None,
        )
    return problems


def _missing_column(table: SourceTable, column: str) -> Problem:
    present = [str(name) for name in table.frame.columns]
    guesses = _close_headers(column, present)
    header = f'"{guesses[0]}"' if guesses else "<your header>"
    return Problem(
        f"required column '{column}' is missing (columns read: {_shortlist(present)})",
        fix=f"add the column, or map yours onto it in a mapping file: `{table.name}: columns: {{{column}: {header}}}`",
        file=", ".join(table.files),
        column=column,
        table=table.name,
    )


def _close_headers(column: str, headers: list[str]) -> list[str]:
    """Headers that look like `column` once case, spaces and punctuation are ignored ("Account ID")."""
    by_simple = {_letters_and_digits(header): header for header in headers}
    matches = difflib.get_close_matches(_letters_and_digits(column), list(by_simple), n=1, cutoff=0.75)
    return [by_simple[match] for match in matches]


def _letters_and_digits(name: str) -> str:
    return "".join(char for char in name.lower() if char.isalnum())


def unusable_open_opportunities(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Open opportunities that name no account or no created_date, by the column that is empty.

    They are dropped with a warning rather than stopping the run: open opportunities never train a
    model, and CRM exports (the Maven one among them) are full of early-stage rows like these.
    """
    is_open = frame["outcome"] == "open"
    without_account = is_open & frame["account_id"].isna()
    return {
        "account_id": without_account,
        "created_date": is_open & ~without_account & frame["created_date"].isna(),
    }


def parse_columns(table: SourceTable, section: TableMapping) -> list[Problem]:
    """Turn text dates and numbers into typed columns (then apply `scale`); unparseable cells are errors.

    Numbers are read by `ingest.numbers` (thousands separators, currencies, K/M suffixes, a decimal comma), and how
    each column was read is kept in `table.number_readings`. Extra columns become numbers when every value is one,
    so learners can use them as they are.
    """
    problems: list[Problem] = []
    frame, kinds = table.frame, columns(table.name)
    both_ways: dict[str, bool] = {}  # date columns read with a day-month layout: whether the swap reads them too
    for column in frame.columns:
        kind = _kind(column, kinds, section)
        raw = frame[column]
        if kind == "date":
            layout = section.date_format_for(column)
            parsed = parse_dates(raw, layout)
            fix: str | Callable[[], str] = DATE_FIX
            swapped = SWAPPED.get(layout or "")
            if swapped:  # every day 12 or less, or every value read the other way: said (batches: once all are read)
                facts = DateFacts() if table.batch is None else table.batch.dates.setdefault(column, DateFacts())
                facts.add(raw, parsed, swapped, always=table.batch is not None)
                if table.batch is None and facts.present:
                    both_ways[column] = facts.both_ways
                fix = partial(_date_fix, facts, layout or "", swapped)
        elif kind == "number":
            convention = section.number_format_for(column)
            if table.batch is None:
                parsed, reading = parse_numbers(raw, convention, table.number_evidence)
            else:  # a batch decides the reading only when it is plain numbers (else: the whole column decides)
                plain = plain_numbers(raw, convention, table.number_evidence)
                if plain is None:
                    raise WholeTableNeeded(f"{table.name}.{column} holds numbers that are not plain")
                parsed, reading = plain
                table.batch.add_reading(column, reading)
            table.number_readings[column] = reading
            problems += _ambiguity_warning(table, column, reading)
            fix = NUMBER_FIX + (f" (this column is read with {_mark(reading.convention)})")
        elif kind is None and isinstance(raw.dtype, pd.StringDtype):
            if table.batch is not None:  # an extra column: batches keep it as read (the features read none)
                if not decides_alone(raw):
                    raise WholeTableNeeded(f"{table.name}.{column} holds formatted numbers")
                continue
            frame[column], extra = numbers_if_all_numeric(raw)
            if extra is not None and not extra.plain:
                table.number_readings[column] = extra
            continue
        else:
            continue
        unparseable = raw.notna() & parsed.isna()
        what = "dates" if kind == "date" else "numbers"
        reason = _cell_reasons(table, column, raw, unparseable, f"is not a {what[:-1]}")
        problems += table.problems_at(
            unparseable, f"values are not {what}", fix, column, reason=reason, examples=raw[unparseable]
        )
        frame[column] = parsed * section.scale[column] if column in section.scale else parsed
        if kind == "number" and len(table.number_readings[column].currencies) > 1:
            listed = ", ".join(table.number_readings[column].currencies)
            problems += table.problems_at(
                raw.notna(),
                f"amounts in several currencies ({listed}) are read as written, without conversion",
                fix="convert them to one currency in the export if the figures are to be compared",
                column=column,
                severity="warning",
            )
    if both_ways and all(both_ways.values()):
        problems.append(_day_order_warning(table, section, list(both_ways)))
    return problems


DATE_FIX = (
    "write dates as YYYY-MM-DD, or set `date_format` for this table in the mapping "
    '(e.g. date_format: "%d/%m/%Y"); dates must lie between 1900 and 2100'
)


def _date_fix(facts: DateFacts, layout: str, swapped: str) -> str:
    if facts.unread and facts.swapped_reads_all:
        return (
            f"day and month are swapped: every value reads as a date with date_format {swapped!r}, not "
            f"{layout!r}; set that in the mapping (for every date column this table reads so)"
        )
    return DATE_FIX


def _day_order_warning(table: SourceTable, section: TableMapping, dates: list[str]) -> Problem:
    """Every date of the table reads day-first and month-first alike: the mapping's order is used, and said."""
    layout = section.date_format_for(dates[0]) or ""
    return Problem(
        f"every day in {', '.join(table.header(column) for column in dates)} is 12 or less, so the dates read "
        f"both day-first and month-first: they are read as date_format {layout!r}",
        fix=f"check in the CRM which comes first; if it is the other way, set date_format {SWAPPED[layout]!r}",
        file=", ".join(table.files),
        severity="warning",
        table=table.name,
    )


NUMBER_FIX = (
    "write numbers such as 1234.5, 1,234.50, $1.2K, USD 1,234 or (12.50); set `number_format: decimal_comma` "
    "in the mapping for 1.234,5"
)


def _kind(column: str, kinds: dict[str, str], section: TableMapping) -> str | None:
    named = column in section.scale or (isinstance(section.number_format, dict) and column in section.number_format)
    return kinds.get(column) or ("number" if named else None)


def _mark(convention: str) -> str:
    return "a decimal comma" if convention == "decimal_comma" else "a decimal point"


def _ambiguity_warning(table: SourceTable, column: str, reading: NumberReading) -> list[Problem]:
    """Values that read both ways (1,234) in a column and table that nothing else decided: said, never silent."""
    if not reading.ambiguous:
        return []
    shown = ", ".join(repr(value) for value in reading.ambiguous)
    return [
        Problem(
            f"values such as {shown} read as thousands separators with a decimal point (nothing in the file says "
            "otherwise)",
            fix=f"if ',' is the decimal mark here, set `number_format: decimal_comma` for {column} in the mapping",
            file=", ".join(table.files),
            column=table.header(column),
            severity="warning",
            table=table.name,
        )
    ]


def check_values(table: SourceTable) -> list[Problem]:
    """Checks within one parsed table: unique ids, outcomes, date order, numeric ranges, channels."""
    frame, problems = table.frame, []
    id_column = UNIQUE_IDS.get(table.name)
    if id_column and not table.derived:  # accounts taken from opportunities rows are one per id once collapsed
        problems += _check_unique(table, id_column)
    for (table_name, column), (low, high) in RANGES.items():
        if table_name == table.name and column in frame:
            values = frame[column]
            outside = values.notna() & ~values.between(low, high)
            if high == np.inf:
                message, fix = f"values below {low:g}", f"{column} must be at least {low:g}"
            else:
                message = f"values outside {low:,g} to {high:,.0f}"
                fix = (
                    f"{column} must be between {low:,g} and {high:,.0f}: check its unit, or set `scale` in the mapping"
                )
            bound = f"below {low:g}" if high == np.inf else f"outside {low:,g} to {high:,.0f}"
            problems += table.problems_at(
                outside,
                message,
                fix,
                column,
                reason=_cell_reasons(table, column, values, outside, f"is {bound}"),
                examples=values[outside],
            )
    if table.name == "opportunities":
        problems += _check_outcomes(table)
        created, closed = frame["created_date"], frame["close_date"]
        early = closed < created
        problems += table.problems_at(
            early,
            "close_date is before created_date",
            column="close_date",
            fix="correct one of the two dates (an opportunity closes after it is created)",
            reason=(
                f"{table.header('close_date')} "
                + _day_text(closed[early])
                + f" is before {table.header('created_date')} "
                + _day_text(created[early])
            ),
        )
    counts = None
    if table.name == "engagement":  # in every batch (its place among the checks), with the counts so far
        counts = unknown_channel_counts(frame, sort=table.batch is None)
        counts = counts if table.batch is None else table.batch.channels.add(counts)
    if counts is not None and (len(counts) or table.batch is not None):
        listed = ", ".join(f"'{channel}' ({count:,})" for channel, count in counts.items())
        problems += table.problems_at(
            _isin(frame["channel"], counts.index),
            f"unknown channels are kept: {listed}",
            column="channel",
            severity="warning",
            fix=f"if one means a known channel ({', '.join(CHANNELS)}), map it with a `values:` entry for channel",
        )
    return problems


def _check_unique(table: SourceTable, id_column: str) -> list[Problem]:
    """Every id once. Rows that repeat an earlier row exactly are extra copies (dropping keeps the first); rows that
    share an id but differ cannot be told apart, so dropping drops them all."""
    frame = table.frame
    ids = frame[id_column]
    repeated = ids.notna() & ids.duplicated(keep=False)
    if not repeated.any():
        return []
    rows = frame[repeated].astype(str)  # every value as text: NaN, NaT and None compare equal to themselves
    copies = rows.duplicated(keep="first")
    versions = rows.drop_duplicates()[id_column].value_counts()  # distinct rows per id
    conflicting = rows[id_column].isin(versions.index[versions > 1])
    header = table.header(id_column)
    exact = repeated.copy()
    exact[repeated] = copies.to_numpy() & ~conflicting.to_numpy()
    clash = repeated.copy()
    clash[repeated] = conflicting.to_numpy()
    named = (exact | clash) if table.dropping else repeated  # dropping keeps the first of exact copies
    problems = table.problems_at(
        named,
        f"duplicate {id_column} values{_examples(ids[repeated])}",
        column=id_column,
        fix=f"each {id_column} must appear once: remove or merge the repeated rows",
    )
    problems = [replace(problem, row_level=True) for problem in problems]  # the rows to drop are chosen here
    table.reject(exact, f"{header} " + _quoted(ids[exact]) + " repeats an earlier row exactly (the first is kept)")
    table.reject(clash, f"{header} " + _quoted(ids[clash]) + " is on several rows that differ (all are dropped)")
    return problems


def _cell_reasons(table: SourceTable, column: str, values: pd.Series, mask: pd.Series, what: str) -> pd.Series:
    """`Header: 'value' what` for the rows of `mask` (the value clipped, as written)."""
    return f"{table.header(column)} " + _quoted(values[mask]) + f" {what}"


def _quoted(values: pd.Series) -> pd.Series:
    return pd.Series([f"'{_clip(value)}'" for value in values], index=values.index, dtype=object)


def _day_text(values: pd.Series) -> pd.Series:
    return values.dt.strftime("%Y-%m-%d").fillna("").astype(object)


def _check_outcomes(table: SourceTable) -> list[Problem]:
    outcome = table.frame["outcome"]
    unknown = outcome.notna() & ~outcome.isin(OUTCOMES)
    if not unknown.any():
        return []
    counts = outcome[unknown].value_counts()
    listed = ", ".join(f"'{value}' ({count:,})" for value, count in counts.head(10).items())
    return table.problems_at(
        unknown,
        f"unknown outcome values: {listed}",
        column="outcome",
        fix=(
            "outcome must be won, lost or open: map your values with a `values:` entry in a mapping file, "
            f'e.g. opportunities: values: outcome: {{"{counts.index[0]}": won, "*": open}}'
        ),
    )


def check_account_ids(table: SourceTable, accounts: SourceTable) -> list[Problem]:
    """Every account_id of a table must name an account: an error for opportunities (the row cannot be used),
    a warning for events (they count for no account)."""
    ids = table.frame["account_id"]
    unknown = ids.notna() & ~_isin(ids, accounts.frame["account_id"])
    if table.name != "opportunities":
        return table.problems_at(
            unknown,
            "rows for accounts not in the accounts table",
            column="account_id",
            severity="warning",
            fix="none needed if expected (they count for no account); otherwise make the account keys agree",
            examples=ids[unknown],
        )
    strays = ids[unknown]
    reason = (
        f"{table.header('account_id')} "
        + _quoted(strays)
        + strays.isin(_dropped_ids(accounts))
        .map({True: " is an account whose row was dropped", False: " is not in the accounts table"})
        .astype(object)
    )
    return table.problems_at(
        unknown,
        "account_id values not in the accounts table",
        column="account_id",
        fix="add those accounts to the accounts table, or correct the ids (both tables must use the same account key)",
        reason=reason,
        examples=ids[unknown],
    )


def check_unmatched_accounts(accounts: SourceTable, opportunities: SourceTable) -> list[Problem]:
    """Accounts without opportunities are reported (they are scored all the same)."""
    return accounts.problems_at(
        accounts_without_opportunities(accounts.frame, opportunities.frame),
        "accounts without any opportunity",
        column="account_id",
        severity="warning",
        fix="none needed: they are scored from firmographics and engagement alone",
    )


HIERARCHY_FAULTS: tuple[tuple[str, str, str, str], ...] = (
    (
        "self_parent",
        "accounts that are their own parent",
        "is the account itself",
        "leave parent_account_id empty for a top account",
    ),
    (
        "unknown_parent",
        "parent_account_id values not in the accounts table",
        "is not in the accounts table",
        "add the parent accounts to the accounts table, or correct the parent ids (they must be account_id values)",
    ),
    (
        "cycle",
        "accounts whose parent links form a cycle (A's parent is B and B's parent is A, or a longer loop)",
        "closes a cycle of parent links",
        "break the loop: empty parent_account_id on the account that should be the top of that family",
    ),
    (
        "too_deep",
        f"parent chains deeper than {MAX_DEPTH} links",
        f"is {MAX_DEPTH} links below its top account already",
        f"link these accounts to an account nearer the top of their family (families nest at most {MAX_DEPTH} levels)",
    ),
)


def check_hierarchy(accounts: SourceTable) -> list[Problem]:
    """Parent links that cannot be followed. With `drop` the link is dropped (the account keeps its row and stands
    alone) and listed in rejected_rows.csv; otherwise each kind stops the run, naming its rows and the fix."""
    frame = accounts.frame
    if "parent_account_id" not in frame or not frame["parent_account_id"].notna().any():
        return []
    parents = frame["parent_account_id"]
    families = resolve_families(frame["account_id"].to_numpy(dtype=object), parents.to_numpy(dtype=object))
    problems: list[Problem] = []
    for fault, message, what, fix in HIERARCHY_FAULTS:
        mask = pd.Series(getattr(families, fault), index=frame.index)
        if not mask.any():
            continue
        found = accounts.problems_at(mask, message, fix, column="parent_account_id")
        if not accounts.dropping:  # about single rows: the message then says --invalid-rows drop keeps the run going
            problems += [replace(problem, row_level=True) for problem in found]
            continue
        reasons = f"{accounts.header('parent_account_id')} " + _quoted(parents[mask]) + f" {what}: link dropped"
        _drop_links(accounts, mask, reasons.to_numpy(dtype=object))
        problems += [
            replace(
                problem,
                severity="warning",
                message=f"{problem.message}: {'link' if problem.row_count == 1 else 'links'} dropped, "
                "each account stands alone",
                fix=f"each dropped link is listed in rejected_rows.csv; to keep it, {fix}",
            )
            for problem in found
        ]
    return problems


def _drop_links(accounts: SourceTable, mask: pd.Series, reasons: np.ndarray) -> None:
    """Empty the parent link of the rows of `mask` (the rows stay) and list each in `rejected` with its reason."""
    selected = mask.to_numpy(dtype=bool)
    files, rows = accounts.locate(np.flatnonzero(selected))
    accounts.rejected.append(
        pd.DataFrame({"file": files, "row": rows.astype(np.int64), "table": accounts.name, "reason": reasons})
    )
    frame = accounts.frame.copy()
    frame.loc[selected, "parent_account_id"] = None
    accounts.frame = frame


def _dropped_ids(accounts: SourceTable) -> set[str]:
    """Account ids whose rows were dropped and that no kept row carries."""
    return accounts.dropped_ids - set(accounts.frame["account_id"].dropna())


class ChannelCounts:
    """`unknown_channel_counts` of a table read in parts: the rows per channel so far, in the order each was first
    seen, which `value_counts` keeps among equal counts."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def add(self, counts: pd.Series) -> pd.Series:
        """Add a part's counts (`unknown_channel_counts(part, sort=False)`); the counts so far."""
        for channel, count in counts.items():
            self.rows[channel] = self.rows.get(channel, 0) + int(count)
        return self.counts()

    def counts(self) -> pd.Series:
        return pd.Series(self.rows, dtype="int64").sort_values(ascending=False, kind="stable")


def unknown_channel_counts(engagement: pd.DataFrame, sort: bool = True) -> pd.Series:
    """Rows per channel outside the known list, most frequent first (else in the order first seen)."""
    counts = engagement["channel"].value_counts(sort=sort)
    return counts[~counts.index.isin(CHANNELS)]


def accounts_without_opportunities(accounts: pd.DataFrame, opportunities: pd.DataFrame) -> pd.Series:
    return ~_isin(accounts["account_id"], opportunities["account_id"])


def _isin(values: pd.Series, allowed: Any) -> pd.Series:
    """`values.isin(allowed)` computed by arrow: pandas first turns `allowed` into Python objects, slowly."""
    value_set = pa.array(allowed).cast(pa.large_string())
    found = pc.is_in(pa.array(values).cast(pa.large_string()), value_set=value_set)
    return pd.Series(pc.fill_null(found, False).to_numpy(zero_copy_only=False), index=values.index)


def _examples(values: pd.Series) -> str:
    shown = [repr(_clip(value)) for value in values.drop_duplicates().head(MAX_EXAMPLES)]
    return f" (e.g. {', '.join(shown)})" if shown else ""


def _clip(value: Any, width: int = 40) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _shortlist(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(_clip(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "") if names else "no columns"


def summarize(data: CrmData, dropped_rows: dict[str, int], channels: pd.Series | None = None) -> dict[str, Any]:
    """Plain numbers and ISO dates (JSON-ready, so a training run can log it as it is). `channels`: the unknown
    channels' rows when the engagement table is held by group (`ChannelCounts`)."""
    opportunities = data.opportunities
    outcomes = {outcome: int((opportunities["outcome"] == outcome).sum()) for outcome in OUTCOMES}
    closed = outcomes["won"] + outcomes["lost"]
    channels = unknown_channel_counts(data.engagement) if channels is None else channels
    return {
        "rows": {name: data.event_rows(name) if name in EVENT_TABLES else len(data.table(name)) for name in TABLES},
        "dropped_rows": dropped_rows,
        "opportunities": {
            "created_from": _iso(opportunities["created_date"].min()),
            "created_to": _iso(opportunities["created_date"].max()),
            "closed_from": _iso(opportunities["close_date"].min()),
            "closed_to": _iso(opportunities["close_date"].max()),
            **outcomes,
            "win_rate": round(outcomes["won"] / closed, 4) if closed else None,
        },
        "accounts_without_opportunities": int(accounts_without_opportunities(data.accounts, opportunities).sum()),
        "unknown_channels": {str(channel): int(count) for channel, count in channels.items()},
        "absent_tables": [name for name in ("engagement", "intent") if name not in data.present],
    }


def _iso(value: Any) -> str | None:
    return None if pd.isna(value) else value.date().isoformat()
