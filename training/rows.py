"""A training run's feature rows, built one group of accounts at a time (`features.groups`).

The pandas engine builds the groups in this process, one after another; the Spark engine (`training.spark`) runs
the same per-group build on its executors.

What a run asks for is one table of queries (account_id, cutoff): each closed opportunity of the window at its
created date, the pipeline learner's account snapshots, and every account at the holdout start and at as_of.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.activity import default_as_of
from features.config import ModelConfig
from features.groups import BuildRows, grouped_build
from features.pointintime import closed_between, with_outcomes
from features.schema import CrmData
from training.propensity import snapshot_plan, snapshot_rows
from training.window import WindowDates

PANDAS = "pandas"
DIGEST_DIGITS = 9  # significant digits of the numbers the rows digest reads


@dataclass(frozen=True)
class RowsEngine:
    """Where a training run's feature rows are built, and what the driver knows of the events it does not hold."""

    name: str  # pandas or spark, logged with the run
    build: BuildRows
    engagement_events: int
    intent_signals: int
    latest: pd.Timestamp  # the day after the export's latest date (the default cut-off), events included


def pandas_engine(data: CrmData, config: ModelConfig, groups: int | None = None) -> RowsEngine:
    """This process, one group of accounts at a time."""
    build = grouped_build(data, config, groups)
    return RowsEngine(PANDAS, build, data.event_rows("engagement"), data.event_rows("intent"), default_as_of(data))


def book_rows(build: BuildRows, accounts: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every account's feature rows as of `as_of`, in the accounts' order (`snapshot`, asked of an engine)."""
    ids = accounts["account_id"].astype("str").reset_index(drop=True)
    return build(pd.DataFrame({"account_id": ids, "cutoff": pd.Series(pd.Timestamp(as_of), index=ids.index)}))


@dataclass(frozen=True)
class TrainingFeatures:
    """The feature rows of a training run."""

    rows: pd.DataFrame  # closed opportunities of the window (`training_rows`' rows)
    snapshots: pd.DataFrame  # the pipeline learner's labelled account snapshots (`snapshot_rows`' rows)
    holdout_book: pd.DataFrame  # every account as of the holdout start
    book: pd.DataFrame  # every account as of the window end


def training_features(data: CrmData, config: ModelConfig, window: WindowDates, build: BuildRows) -> TrainingFeatures:
    """All the feature rows a training run reads, asked of `build` at once (one pass over the groups).

    `data` needs its accounts and opportunities; `build` reads the events."""
    closed = closed_between(data.opportunities, window.start, window.as_of)
    ids = data.accounts["account_id"].astype("str").reset_index(drop=True)
    plan = snapshot_plan(ids, window.start, window.as_of, config)
    parts = [
        pd.DataFrame({"account_id": closed["account_id"].astype("str"), "cutoff": closed["created_date"]}),
        plan[["account_id", "cutoff"]],
        pd.DataFrame({"account_id": ids, "cutoff": window.holdout_start}),
        pd.DataFrame({"account_id": ids, "cutoff": window.as_of}),
    ]
    for part in parts:
        part["cutoff"] = pd.to_datetime(part["cutoff"]).astype("datetime64[ns]")
    features = build(pd.concat(parts, ignore_index=True))
    ends = np.cumsum([len(part) for part in parts])
    rows, snapshots, holdout_book, book = (
        features.iloc[start:end].reset_index(drop=True) for start, end in zip([0, *ends[:-1]], ends)
    )
    return TrainingFeatures(
        with_outcomes(rows, closed), snapshot_rows(data, snapshots, plan, config), holdout_book, book
    )


def sample_training_rows(rows: pd.DataFrame, most: int, seed: int) -> pd.DataFrame:
    """At most `most` rows: all when they fit, else a seeded sample stratified by outcome and close month (each
    stratum keeps its share, rounded by largest remainder), kept in the rows' order."""
    if len(rows) <= most:
        return rows
    strata = pd.Series(
        rows["won"].astype(np.int64).to_numpy() * 1_000_000
        + pd.to_datetime(rows["close_date"]).dt.to_period("M").map(lambda p: p.ordinal).to_numpy()
    )
    sizes = strata.value_counts().sort_index()
    exact = sizes * most / len(rows)
    take = np.floor(exact).astype(np.int64)
    short = most - int(take.sum())
    take.iloc[np.argsort(-(exact - take).to_numpy(), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(strata.to_numpy() == stratum), int(count), replace=False)
        for stratum, count in take.items()
    ]
    return rows.iloc[np.sort(np.concatenate(chosen))].reset_index(drop=True)


def rows_digest(rows: pd.DataFrame) -> str:
    """SHA-256 of the rows sorted by opportunity, every number rounded to DIGEST_DIGITS significant digits: equal
    for two engines whose rows agree (to rounding), so runs can be compared by their tags."""
    # Each column is put in order on its own: a sorted copy of the whole table would double the rows in memory.
    order = np.argsort(rows["opportunity_id"].to_numpy(), kind="stable")
    digest = hashlib.sha256()
    for column in sorted(rows.columns):
        values = rows[column].iloc[order]
        digest.update(column.encode() + b"\x00")
        if pd.api.types.is_datetime64_any_dtype(values):
            digest.update(values.astype("int64").to_numpy().tobytes())
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            digest.update(_rounded(values.to_numpy(dtype=np.float64, na_value=np.nan)).tobytes())
        else:
            text = values.astype(object).where(values.notna(), None)
            digest.update("\x1f".join("\x00" if v is None else str(v) for v in text).encode())
    return digest.hexdigest()


def _rounded(values: np.ndarray) -> np.ndarray:
    """Values to DIGEST_DIGITS significant digits; one NaN and one zero bit pattern."""
    finite = np.isfinite(values) & (values != 0)
    scale = np.ones_like(values)
    scale[finite] = 10.0 ** (np.floor(np.log10(np.abs(values[finite]))) - (DIGEST_DIGITS - 1))
    out = np.where(finite, np.round(values / scale) * scale, values)
    out[values == 0] = 0.0
    out[np.isnan(values)] = np.nan
    return out
