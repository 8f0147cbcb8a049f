"""Tier movement between two scorings of the same book (`tiering diff`), with what changed behind it.

Tiers are reviewed quarterly, so every move must be explainable: for each account whose tier changed
this lists the rule components, learned score, win probability and reasons before and after, and says
in words which of them moved. A move with no notable change of its own means the tier boundary moved:
tiers are filled by capacity, so other accounts rising can push an account down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import DataError, Problem
from ingest.problems import problem_at_rows
from scoring.changes import COMPARED_SCORES, REASONS, describe_change
from scoring.scorer import SCORE_COLUMNS, tier_counts
from scoring.tiers import TIER_ORDER, tier_movement
from training.plots import tier_matrix

TIER_COLUMNS = ["rule_tier", "learned_tier", "tier"]
ADDED_LATER = ("as_of", "surge_channels", "pilot_group")
NUMBERS_ADDED_LATER = ("pipeline_probability", "expected_revenue")  # blank (NaN) in older scores files
# The numbers of a scores file and the values they can take; blank is allowed (rules only leave probabilities blank).
NUMBER_RANGES: dict[str, tuple[float, float, str]] = {
    **{column: (0.0, 100.0, "a score from 0 to 100") for column in COMPARED_SCORES},
    "win_probability": (0.0, 1.0, "a probability from 0 to 1 (0.93, not 93)"),
    "pipeline_probability": (0.0, 1.0, "a probability from 0 to 1 (0.93, not 93)"),
    "expected_deal_size": (0.0, np.inf, "an amount of 0 or more"),
    "expected_value": (0.0, np.inf, "an amount of 0 or more"),
    "expected_revenue": (0.0, np.inf, "an amount of 0 or more"),
    "budget": (0.0, np.inf, "an amount of 0 or more"),
}
TEXT_COLUMNS = [
    "account_id",
    *TIER_COLUMNS,
    "override_reason",
    *REASONS,
    "model_version",
    "pilot_group",
    "scored_at",
    "as_of",
    "surge_channels",
]


def read_scores(path: Path) -> pd.DataFrame:
    """A scores file (CSV or Parquet) with the SPEC columns; DataError naming the file otherwise."""
    path = Path(path)
    # `--engine spark` writes a Parquet folder, which pandas reads like a file.
    if not (path.is_file() or (path.is_dir() and path.suffix.lower() == ".parquet")):
        raise DataError([Problem("scores file not found", "pass a file written by `tiering score`", file=str(path))])
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataError(
            [
                Problem(
                    "a scores file must be .csv or .parquet", "pass a file written by `tiering score`", file=str(path)
                )
            ]
        )
    try:
        if suffix == ".csv":
            frame = pd.read_csv(
                path,
                dtype={c: "str" for c in TEXT_COLUMNS},
                keep_default_na=False,
                na_values={c: [""] for c in SCORE_COLUMNS if c not in TEXT_COLUMNS},
            )
        else:
            frame = pd.read_parquet(path)
    except Exception as error:  # pandas and pyarrow raise many types for a damaged file
        raise DataError(
            [
                Problem(
                    f"cannot read the scores file ({error.__class__.__name__})",
                    "pass a CSV or Parquet file written by `tiering score`",
                    file=str(path),
                )
            ]
        ) from None
    for column in ADDED_LATER:  # scores files written before these columns existed are still read (blank)
        if column not in frame.columns:
            frame[column] = ""
    for column in NUMBERS_ADDED_LATER:
        if column not in frame.columns:
            frame[column] = float("nan")
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            [
                Problem(
                    f"missing column(s) {', '.join(missing)}",
                    "pass a scores file written by `tiering score` (all of its columns)",
                    file=str(path),
                )
            ]
        )
    problems = []
    duplicated = frame.index[frame["account_id"].duplicated()]
    if len(duplicated):
        problems.append(
            problem_at_rows(
                duplicated,
                f"account {frame.at[duplicated[0], 'account_id']!r} appears more than once",
                "a scores file has one row per account",
                file=path.name,
                column="account_id",
            )
        )
    for column in TIER_COLUMNS:
        unknown = frame.index[~frame[column].isin(list(TIER_ORDER))]
        if len(unknown):
            problems.append(
                problem_at_rows(
                    unknown,
                    f"unknown tier {frame.at[unknown[0], column]!r}",
                    f"use one of {', '.join(TIER_ORDER)}",
                    file=path.name,
                    column=column,
                )
            )
    problems += number_problems(frame, path.name)
    if problems:
        raise DataError(problems)
    frame[[*REASONS, "override_reason", "surge_channels"]] = frame[
        [*REASONS, "override_reason", "surge_channels"]
    ].fillna("")
    return frame


def number_problems(frame: pd.DataFrame, name: str) -> list[Problem]:
    """Every number column of a scores file checked as `tiering score` writes it (NUMBER_RANGES), and converted to
    float64 in place; the problems name the file, the column, the first rows and the value."""
    problems = []
    for column, (low, high, meaning) in NUMBER_RANGES.items():
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        blank = raw.isna() | raw.astype("str").str.strip().eq("")
        for mask, what in (
            (values.isna() & ~blank, "is not a number"),
            (values.notna() & ~(np.isfinite(values) & values.between(low, high)), f"is not {meaning}"),
        ):
            bad = frame.index[mask.to_numpy()]
            if len(bad):
                problems.append(
                    problem_at_rows(
                        bad,
                        f"{str(raw.iloc[bad[0]])!r} {what}",
                        f"write {meaning}, or leave it blank, as `tiering score` writes it",
                        file=name,
                        column=column,
                    )
                )
        frame[column] = values
    return problems


def read_pair(old: Path, new: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both scores files, with the problems of both reported together."""
    frames, problems = [], []
    for path in (old, new):
        try:
            frames.append(read_scores(path))
        except DataError as error:
            problems += error.problems
    if problems:
        raise DataError(problems)
    return frames[0], frames[1]


@dataclass(frozen=True)
class TierDiff:
    old_name: str
    new_name: str
    common: int  # accounts in both scorings
    added: int  # accounts only in the new scoring
    dropped: int  # accounts only in the old scoring
    counts: pd.DataFrame  # tier, before, after, change
    transitions: pd.DataFrame  # old tier (rows) against new tier (columns), counts
    moves: pd.DataFrame  # one row per account whose tier changed

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "tier_counts": self.counts,
            "transitions": self.transitions.rename_axis(index="old_tier").reset_index(),
            "moves": self.moves,
        }


def diff_scores(old: pd.DataFrame, new: pd.DataFrame, old_name: str = "old", new_name: str = "new") -> TierDiff:
    common_ids = pd.Index(old["account_id"]).intersection(pd.Index(new["account_id"]))
    if common_ids.empty:
        raise DataError(
            [Problem(f"{old_name} and {new_name} have no account in common", "compare two scorings of the same book")]
        )
    before, after = old.set_index("account_id").loc[common_ids], new.set_index("account_id").loc[common_ids]
    levels = tier_movement(before["tier"], after["tier"])
    moved = levels.index[levels != 0]
    moves = pd.DataFrame(
        {
            "account_id": moved,
            "direction": ["up" if levels[a] > 0 else "down" for a in moved],
            "levels": levels[moved].to_numpy(),
            "old_tier": before.loc[moved, "tier"].to_numpy(),
            "new_tier": after.loc[moved, "tier"].to_numpy(),
            # Plain records: a pandas row per moved account made this most of a large review's time.
            "what_changed": [
                describe_change(was, now)
                for was, now in zip(before.loc[moved].to_dict("records"), after.loc[moved].to_dict("records"))
            ],
        }
    )
    for column in [*COMPARED_SCORES, "win_probability", "expected_value", "learned_tier", "rule_tier", *REASONS]:
        moves[f"old_{column}"] = before.loc[moved, column].to_numpy()
        moves[f"new_{column}"] = after.loc[moved, column].to_numpy()
    moves = moves.assign(gap=moves["levels"].abs()).sort_values(["gap", "new_learned_score"], ascending=False)
    counts_before, counts_after = tier_counts(old), tier_counts(new)  # whole scorings, as each was reported
    counts = pd.DataFrame(
        {
            "tier": list(counts_before),
            "before": list(counts_before.values()),
            "after": [counts_after[t] for t in counts_before],
        }
    )
    counts["change"] = counts["after"] - counts["before"]
    transitions = tier_matrix(before["tier"], after["tier"])
    transitions.index, transitions.columns = list(transitions.index), list(transitions.columns)
    return TierDiff(
        old_name,
        new_name,
        len(common_ids),
        int((~new["account_id"].isin(old["account_id"])).sum()),
        int((~old["account_id"].isin(new["account_id"])).sum()),
        counts,
        transitions,
        moves.drop(columns="gap").reset_index(drop=True),
    )
