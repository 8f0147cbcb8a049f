"""`validation.invalid_rows: drop`: what became of the rows with row-level problems, said and written down.

With `drop`, `ingest.io.load_export` drops every row that a row-level problem names (an empty required
value, a date or number that is not one, close before create, a negative amount, a duplicate id, an
opportunity of an unknown or dropped account) and keeps each in `LoadedExport.rejected`. This module writes
them to `rejected_rows.csv` in the current folder (file, row as a spreadsheet numbers it, table, reason) and
prints the counts. The file is replaced only when tiering wrote it (its header says so); any other file of
that name stops the command before any work. Table-level problems (a missing column or file, an unreadable
file, outcome values the mapping does not name) still stop the run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import DataError, Problem, plural
from ingest.files import atomic_path
from ingest.io import REJECTED_COLUMNS
from ingest.validation import InvalidRows

if TYPE_CHECKING:
    from configuration.tiering import TieringConfig
    from ingest.io import LoadedExport

REJECTED_FILE = "rejected_rows.csv"
HEADER_LINE = ",".join(REJECTED_COLUMNS)


def invalid_rows_mode(option: InvalidRows | None, config: TieringConfig | None) -> InvalidRows:
    """`--invalid-rows` when given, else `validation.invalid_rows` from the configuration (default stop)."""
    if option is not None:
        return option
    return InvalidRows(config.validation.invalid_rows) if config is not None else InvalidRows.STOP


def check_rejected_target(path: str | Path = REJECTED_FILE) -> Path:
    """Refuse, before any work, a `rejected_rows.csv` that tiering did not write (or a folder of that name)."""
    path = Path(path)
    if path.is_dir() or (path.exists() and not _written_by_tiering(path)):
        raise DataError(
            [
                Problem(
                    f"{path} exists and was not written by tiering: --invalid-rows drop would replace it",
                    fix=f"move or rename it, or run from another folder (the dropped rows are written to "
                    f"./{REJECTED_FILE})",
                    file=str(path),
                )
            ]
        )
    return path


def _written_by_tiering(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8", newline="") as handle:
            return handle.readline().rstrip("\r\n") == HEADER_LINE
    except (OSError, UnicodeDecodeError):
        return False


def write_rejected(loaded: LoadedExport, path: str | Path = REJECTED_FILE) -> Path:
    """Write every dropped row (header only when none was dropped), replacing the file at once: never half-written."""
    path = check_rejected_target(path)
    target = path.resolve()
    with atomic_path(target) as temporary, temporary.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(REJECTED_COLUMNS)
        writer.writerows(loaded.rejected[list(REJECTED_COLUMNS)].itertuples(index=False, name=None))
    return path


def counts_sentence(loaded: LoadedExport) -> str:
    """`Dropped 3 rows with row-level problems (opportunities 2, accounts 1)`, or that none was."""
    counts = {name: count for name, count in loaded.summary.get("rejected_rows", {}).items() if count}
    if not counts:
        return "No row was dropped: every row passed the checks (--invalid-rows drop)"
    total = sum(counts.values())
    per_table = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    return f"Dropped {plural(total, 'row')} with row-level problems ({per_table})"
