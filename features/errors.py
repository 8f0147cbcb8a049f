"""Problems found in user input, reported all at once with where they are and how to fix them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MAX_ROWS_SHOWN = 5


@dataclass(frozen=True)
class Problem:
    """One problem: `table`, `file` and `column` say where, `rows` the first offending 1-based data rows.

    `row_level` marks an error that belongs to single rows (an empty id, a date that is not one): with
    `validation.invalid_rows: drop` those rows are dropped instead of stopping the run. Everything else (a missing
    column, an unreadable file, an outcome value the mapping does not name) is about the whole table.
    """

    message: str
    fix: str
    file: str = ""
    column: str = ""
    rows: tuple[int, ...] = ()
    row_count: int = 0
    severity: Literal["error", "warning"] = "error"
    table: str = ""
    row_level: bool = False

    def render(self) -> str:
        where = ":".join(part for part in (self.file, self.column) if part)
        if self.table:  # two tables may read one file: say which one the problem is about
            where = f"{self.table} table, {where}" if where else f"{self.table} table"
        text = f"{where}: {self.message}" if where else self.message
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:MAX_ROWS_SHOWN])
            more = self.row_count - min(len(self.rows), MAX_ROWS_SHOWN)
            text += f" (row{'s' if self.row_count > 1 else ''} {shown}{f' and {more} more' if more > 0 else ''})"
        return f"{text}. Fix: {self.fix}" if self.fix else text


def rows_of(mask_index: Sequence[int] | np.ndarray) -> tuple[tuple[int, ...], int]:
    """First few 1-based row numbers (as a spreadsheet shows data rows below the header) and the count."""
    # Convert only the rows shown: a check may flag millions of rows.
    first = tuple(int(i) + 2 for i in list(mask_index[:MAX_ROWS_SHOWN]))  # +1 for 1-based, +1 for the header
    return first, len(mask_index)


@dataclass
class DataError(Exception):
    """Raised when input data cannot be used; carries every error found, not just the first."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(p.render() for p in self.problems)

    def headline(self) -> str:
        """The header above the listed problems, errors and warnings counted apart:
        2 problems stop this run (and 3 warnings)."""
        errors = sum(problem.severity == "error" for problem in self.problems)
        warnings = len(self.problems) - errors
        text = f"{plural(errors, 'problem')} {'stops' if errors == 1 else 'stop'} this run"
        return text + (f" (and {plural(warnings, 'warning')})" if warnings else "")

    def hint(self) -> str:
        """What to do about the errors that concern single rows: they can be dropped instead (empty when none do)."""
        errors = [problem for problem in self.problems if problem.severity == "error"]
        row_level = sum(problem.row_level for problem in errors)
        if not row_level:
            return ""
        how = (
            "drop those rows instead with --invalid-rows drop (or `validation: invalid_rows: drop` in tiering.yaml); "
            "each dropped row is then listed with its reason in rejected_rows.csv"
        )
        if row_level == len(errors):
            which = "This problem is" if row_level == 1 else "Each of these problems is"
            return f"{which} about single rows: fix them in the export, or {how}."
        return (
            f"{row_level:,} of these {len(errors):,} problems are about single rows: fix them, or {how}. "
            "The others stop the run either way."
        )


def plural(count: int, noun: str) -> str:
    """A count and its noun: 1 warning, 3 warnings, 1,204 problems."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
