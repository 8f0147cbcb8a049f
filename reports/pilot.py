"""A pilot's files: `pilot.json` (the design) beside `assignment.csv` (account_id, group, stratum), written by
`tiering pilot design` and by the generator, read back, checked, by `tiering pilot readout`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from features.errors import DataError, Problem
from pilot.design import GROUPS
from pilot.document import ASSIGNMENT_COLUMNS, ASSIGNMENT_FILE, PILOT_FILE, PILOT_KEYS
from pilot.metrics import Metric


@dataclass(frozen=True)
class PilotFiles:
    assignment: pd.DataFrame
    pilot: dict[str, Any]
    folder: Path

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.pilot["start_date"])

    @property
    def end(self) -> pd.Timestamp:  # exclusive: the pilot's last day is the one before
        return self.start + pd.Timedelta(days=int(self.pilot["horizon_days"]))

    @property
    def metric(self) -> Metric:
        return Metric(self.pilot["metric"])


def _problem(message: str, fix: str, file: Path, column: str = "", rows: list[int] | None = None) -> DataError:
    rows = rows or []
    return DataError([Problem(message, fix, file=str(file), column=column, rows=tuple(rows[:5]), row_count=len(rows))])


def read_pilot(path: Path) -> PilotFiles:
    """A design's folder, or its assignment.csv with pilot.json beside it, checked: DataError naming the file, the
    column and the rows (by number, never by account) otherwise."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    assignment_path = path if path.is_file() else folder / ASSIGNMENT_FILE
    pilot_path = folder / PILOT_FILE
    fix = "pass the folder written by `tiering pilot design` (assignment.csv with pilot.json beside it)"
    if not assignment_path.is_file():
        raise _problem("assignment file not found", fix, assignment_path)
    if not pilot_path.is_file():
        raise _problem("pilot.json not found beside the assignment", fix, pilot_path)
    try:
        pilot = json.loads(pilot_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _problem(f"not readable JSON ({error.__class__.__name__})", fix, pilot_path) from None
    if not isinstance(pilot, dict):
        raise _problem("expected a JSON object", fix, pilot_path)
    missing = [key for key in PILOT_KEYS if key not in pilot]
    if missing:
        raise _problem(f"missing key(s) {', '.join(missing)}", fix, pilot_path)
    try:
        date.fromisoformat(str(pilot["start_date"]))
        horizon = int(pilot["horizon_days"])
        Metric(pilot["metric"])
    except ValueError:
        raise _problem(
            "start_date must be YYYY-MM-DD, horizon_days a whole number, metric one of "
            + ", ".join(m.value for m in Metric),
            fix,
            pilot_path,
        ) from None
    if horizon < 1:
        raise _problem("horizon_days must be at least 1", fix, pilot_path)
    try:
        frame = pd.read_csv(assignment_path, dtype=str, keep_default_na=False)
    except Exception as error:  # pandas raises many types for a damaged file
        raise _problem(f"cannot read the CSV ({error.__class__.__name__})", fix, assignment_path) from None
    absent = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if absent:
        raise _problem(f"missing column(s) {', '.join(absent)}", fix, assignment_path)
    frame["account_id"] = frame["account_id"].str.strip()
    rows = lambda mask: (mask[mask].index + 2).tolist()  # noqa: E731  (spreadsheet rows: the header is row 1)
    empty = frame["account_id"] == ""
    if empty.any():
        raise _problem("empty account_id", "fill or remove those rows", assignment_path, "account_id", rows(empty))
    duplicated = frame["account_id"].duplicated(keep=False)
    if duplicated.any():
        raise _problem(
            "an account appears more than once (an account is in one group only)",
            "keep one row per account",
            assignment_path,
            "account_id",
            rows(duplicated),
        )
    bad_group = ~frame["group"].isin(GROUPS)
    if bad_group.any():
        raise _problem(
            "group must be treatment or control", "fix those rows", assignment_path, "group", rows(bad_group)
        )
    if frame["group"].nunique() < 2:
        raise _problem("the assignment has one group only", fix, assignment_path, "group")
    return PilotFiles(assignment=frame, pilot=pilot, folder=folder)


def check_known_accounts(files: PilotFiles, known: pd.Series, export: str) -> None:
    """DataError when assignment rows name accounts the export does not hold."""
    unknown = ~files.assignment["account_id"].isin(set(known.astype(str)))
    if unknown.any():
        rows = (unknown[unknown].index + 2).tolist()
        raise DataError(
            [
                Problem(
                    f"{len(rows):,} account(s) of the assignment are not in the export's accounts ({export})",
                    "read the pilot out on the export of the same CRM, or remove those rows from the assignment",
                    file=str(files.folder / ASSIGNMENT_FILE),
                    column="account_id",
                    rows=tuple(rows[:5]),
                    row_count=len(rows),
                )
            ]
        )
