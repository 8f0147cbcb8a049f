"""`tiering forecast --backtest`: the forecast re-run from past origins, each with a model trained only on data
before it, against what happened in the horizon after it.

Origins T_k = as_of - horizon - 30 k days (k = 0 .. origins - 1), so every origin's horizon has passed. At each
origin a model is trained as of T_k (its window, slices and pipeline snapshots all end at T_k), the book is scored
and forecast as of T_k, and each tier's realised figures are counted with the tiers of that scoring:
opportunities created in [T_k, T_k + horizon) and their amounts (new pipeline), and deals won with a close date
inside it and their amounts (won revenue, from open deals and new ones alike).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from features.activity import default_as_of
from features.config import ModelConfig
from features.errors import DataError, Problem
from features.schema import CrmData
from scoring.forecast import OVERALL, QUANTITIES
from scoring.pyfunc import TieringModel
from training.pipeline import train
from training.propensity import SNAPSHOT_SPACING_DAYS
from training.rows import RowsEngine, book_rows
from training.window import suggest_as_of

Progress = Callable[[str], None]


def backtest_origins(as_of: pd.Timestamp, horizon: int, count: int) -> list[pd.Timestamp]:
    return [as_of - pd.Timedelta(days=horizon + SNAPSHOT_SPACING_DAYS * k) for k in range(count)]


def origin_problem(
    error: DataError,
    data: CrmData,
    config: ModelConfig,
    as_of: pd.Timestamp,
    origin: pd.Timestamp,
    number: int,
    origins: int,
    latest: pd.Timestamp | None = None,
) -> DataError:
    """Training failed at a backtest origin. Its advice names a training cut-off, but the user moves the forecast's
    --as-of, which lies `as_of - origin` after the origin: passing that cut-off as --as-of would put the origin even
    earlier (and was at times the very --as-of given). Translate it into an --as-of, or fewer --origins."""
    shift = as_of - origin
    better = suggest_as_of(data, config, origin)
    latest = default_as_of(data) if latest is None else latest
    wanted = None if better is None else better + shift
    if better is not None and wanted is not None and wanted <= latest and wanted != as_of:
        fix = (
            f"pass --as-of {wanted.date()} (backtest origin {number} then falls on {better.date()}, the nearest "
            "cut-off with enough closed deals to train)"
        )
        if number > 1:
            fix += f", or --origins {number - 1}"
    elif number > 1:
        fix = f"pass --origins {number - 1}: origin {number} lies too early in the export's history to train a model"
    else:
        fix = (
            f"forecast without --backtest: the export's history is too short to train a model {shift.days} days "
            "before --as-of"
        )
    what = "; ".join(problem.message for problem in error.problems)
    return DataError(
        [
            Problem(
                f"backtest origin {number} of {origins} ({origin.date()}, {shift.days} days before --as-of) cannot "
                f"be trained: {what}",
                fix,
                file="opportunities",
                column="close_date",
            )
        ]
    )


def realised(data: CrmData, tiers: pd.Series, start: pd.Timestamp, horizon: int) -> pd.DataFrame:
    """Per tier (`tiers`: account_id -> tier) and overall, what happened in [start, start + horizon)."""
    opps = data.opportunities
    end = start + pd.Timedelta(days=horizon)
    account = opps["account_id"].astype("str")
    amount = opps["amount"].fillna(0.0).astype(np.float64)
    created = (opps["created_date"] >= start) & (opps["created_date"] < end)
    won = (opps["outcome"] == "won") & (opps["close_date"] >= start) & (opps["close_date"] < end)
    tier = account.map(tiers)
    rows = []
    for name in [*pd.unique(tiers), OVERALL]:
        member = tier.notna() if name == OVERALL else tier == name
        rows.append(
            {
                "tier": name,
                "new_opportunities": float((created & member).sum()),
                "pipeline_value": float(amount[created & member].sum()),
                "deals_won": float((won & member).sum()),
                "won_revenue": float(amount[won & member].sum()),
            }
        )
    return pd.DataFrame(rows)


def backtest(
    data: CrmData,
    config: ModelConfig,
    as_of: pd.Timestamp,
    origins: int = 3,
    simulations: int = 2_000,
    progress: Progress = lambda step: None,
    engine: RowsEngine | None = None,
) -> pd.DataFrame:
    """One row per origin, tier and quantity: predicted (point, 80% interval) and actual, covered or not. `engine`
    builds every feature row (default: this process, from `data`)."""
    horizon = config.model.horizon_days
    rows = []
    for number, origin in enumerate(backtest_origins(as_of, horizon, origins), start=1):
        progress(f"backtest origin {number} of {origins}: training as of {origin.date()}")
        try:
            result = train(data, config, origin, engine=engine)
        except DataError as error:
            latest = engine.latest if engine is not None else None
            raise origin_problem(error, data, config, as_of, origin, number, origins, latest) from None
        model = TieringModel.around(result.scorer)
        book = book_rows(engine.build, data.accounts, origin) if engine is not None else None
        scores, forecast, _ = model.forecast_book(
            data, origin, model_version=f"backtest-{origin.date()}", simulations=simulations, features=book
        )
        actual = realised(data, scores.set_index("account_id")["tier"], origin, horizon).set_index("tier")
        for record in forecast.itertuples(index=False):
            record = record._asdict()
            for quantity in QUANTITIES:
                happened = float(actual[quantity].get(record["tier"], 0.0))
                low, high = record[f"{quantity}_low"], record[f"{quantity}_high"]
                rows.append(
                    {
                        "origin": origin.date().isoformat(),
                        "tier": record["tier"],
                        "accounts": record["accounts"],
                        "quantity": quantity,
                        "predicted": record[quantity],
                        "low": low,
                        "high": high,
                        "actual": happened,
                        "covered": bool(low <= happened <= high),
                        "fallback": bool(result.metrics.get("pipeline_fallback", 0.0)),
                    }
                )
    return pd.DataFrame(rows)


def backtest_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per quantity, over the tier x origin cells (overall rows left out, empty tiers and unknown amounts too): the
    share of cells the 80% interval covered and the mean absolute percentage error of the point forecast."""
    # Unknown amounts (an export without them) are no forecast to judge.
    cells = table[(table["tier"] != OVERALL) & (table["accounts"] > 0) & table["predicted"].notna()]
    rows = []
    for quantity, part in cells.groupby("quantity", sort=False):
        real = part["actual"] > 0
        error = (part["predicted"] - part["actual"]).abs() / part["actual"].where(real)
        rows.append(
            {
                "quantity": quantity,
                "cells": int(len(part)),
                "coverage": float(part["covered"].mean()),
                "mape": float(error.mean()) if real.any() else float("nan"),
            }
        )
    return pd.DataFrame(rows)
