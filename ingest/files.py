"""Reading user side files and writing outputs safely.

Outputs are written to a temporary file beside the target and renamed into place, so an interrupted run
leaves the previous output intact; CSV cells that a spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from features.config import TIERS
from features.errors import DataError, Problem
from ingest.problems import problem_at_rows
from scoring.rounding import round_for_output

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
OVERRIDE_COLUMNS = ("account_id", "tier", "reason", "owner")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells starting with = + - @ (OWASP CSV-injection guidance) with a quote."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_string_dtype(out[column]) or out[column].dtype == object:
            values = out[column]
            text = values.astype("str")
            risky = values.notna() & text.str.startswith(FORMULA_PREFIXES)
            if risky.any():
                out[column] = values.where(~risky, "'" + text)
    return out


def csv_text(frame: pd.DataFrame) -> str:
    """`frame` as RFC 4180 CSV without its index: rows end in CRLF, so a field holding a line break, also a bare CR,
    is quoted (the csv module quotes only the characters of its line terminator; an unquoted CR splits the row in
    spreadsheets and CRM importers)."""
    return frame.to_csv(index=False, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)


@contextmanager
def atomic_path(target: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path in the target's folder that becomes the target only if the block succeeds: the one way
    tiering writes a file, so an interrupted run leaves the previous file (or none), never half of one.

    With `overwrite=False` an existing target is never replaced: FileExistsError if one appeared meanwhile.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp creates 0600; give the output the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        if overwrite:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)  # atomic too, and fails where a file exists
    finally:
        temporary.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """CSV or Parquet by extension, atomically, numbers rounded to their published precision (`round_for_output`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: output must end in .csv or .parquet")
    frame = round_for_output(frame)
    with atomic_path(path) as temporary:
        if suffix == ".csv":
            neutralise_formulas(frame).to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
    return path


def read_overrides(path: Path, known_accounts: pd.Series) -> pd.DataFrame:
    """Sales overrides (`account_id, tier, reason, owner`), checked against the book and the tier names."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DataError([Problem("overrides file not found", "pass an existing CSV with --overrides", file=str(path))])
    from ingest.io import read_side_csv

    frame = read_side_csv(path)  # the encodings and delimiters the export's own CSVs may have
    problems = []
    missing = [c for c in OVERRIDE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            [
                Problem(
                    f"missing column(s) {', '.join(missing)}",
                    f"the header must be {','.join(OVERRIDE_COLUMNS)}",
                    file=name,
                )
            ]
        )
    frame = frame[list(OVERRIDE_COLUMNS)].apply(lambda column: column.str.strip())
    bad_tier = frame.index[~frame["tier"].isin(TIERS)]
    if len(bad_tier):
        problems.append(
            problem_at_rows(
                bad_tier,
                f"unknown tier {sorted(set(frame.loc[bad_tier, 'tier']))}",
                f"use one of {', '.join(TIERS)}",
                file=name,
                column="tier",
            )
        )
    unknown = frame.index[~frame["account_id"].isin(set(known_accounts.astype("str")))]
    if len(unknown):
        problems.append(
            problem_at_rows(
                unknown,
                f"{len(unknown)} account(s) not in the scored export, e.g. {frame.loc[unknown[0], 'account_id']!r}",
                "fix the account_id or remove the row",
                file=name,
                column="account_id",
            )
        )
    duplicated = frame.index[frame["account_id"].duplicated(keep=False)]
    if len(duplicated):
        problems.append(
            problem_at_rows(
                duplicated,
                "an account is pinned more than once",
                "keep one row per account",
                file=name,
                column="account_id",
            )
        )
    empty = frame.index[(frame["reason"] == "") | (frame["owner"] == "")]
    if len(empty):
        problems.append(
            problem_at_rows(
                empty,
                "an override without a reason or owner",
                "say who pinned the account and why",
                file=name,
                column="reason",
            )
        )
    if problems:
        raise DataError(problems)
    return frame


def _nearest_existing(path: Path) -> Path:
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def _can_write_in(folder: Path) -> bool:
    """Whether a file can be created in `folder`: tried, not guessed
    (root ignores modes; file systems may be read-only)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".tiering-probe.", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def check_writable_target(path: Path, option: str = "--out", folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: its parent is a file or not writable, or (for a
    file output) it is an existing folder. DataError naming the path and the fix."""
    path = Path(path)
    if not folder and path.is_dir():
        raise DataError(
            [
                Problem(
                    f"{option} is an existing folder, not a file",
                    f"name a file, e.g. {option} {path / 'scores.csv'}",
                    file=str(path),
                )
            ]
        )
    if folder and path.exists() and not path.is_dir():
        raise DataError(
            [
                Problem(
                    f"{option} is an existing file, not a folder",
                    f"name a new or empty folder, e.g. {option} {path.with_suffix('')}-report",
                    file=str(path),
                )
            ]
        )
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise DataError(
            [
                Problem(
                    f"{option} cannot be written: {ancestor} is a file, not a folder",
                    "choose a path whose parent folders are folders",
                    file=str(path),
                )
            ]
        )
    if not _can_write_in(ancestor):
        raise DataError(
            [
                Problem(
                    f"{option} cannot be written: the folder {ancestor} is not writable",
                    "choose a folder you can write to, or change its permissions",
                    file=str(path),
                )
            ]
        )
