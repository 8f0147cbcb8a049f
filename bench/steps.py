"""Benchmark steps, each run in its own process so its peak memory is its own.

`python -m bench.steps STEP DATA_DIR [MODEL_DIR]` prints one JSON object: the step's figures beside
its raw reference measured in the same process, and the process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Clock:
    def __init__(self):
        self.start = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.start = now - self.start, now
        return elapsed


def read_floor(data_dir: Path) -> float:
    """Seconds to merely read the export's Parquet files into Arrow: no step can beat this."""
    import pyarrow.parquet as pq

    clock = Clock()
    for path in sorted(data_dir.glob("*.parquet")):
        pq.read_table(path)
    return clock.lap()


def features(data_dir: Path) -> dict:
    from configuration.tiering import TieringConfig
    from features.pointintime import FeatureBuilder, snapshot, training_rows
    from ingest.io import load_export
    from training.pipeline import WindowDates

    floor = read_floor(data_dir)
    clock = Clock()
    data = load_export(data_dir).data
    load_seconds = clock.lap()
    config = TieringConfig()
    builder = FeatureBuilder(data, config)
    index_seconds = clock.lap()
    window = WindowDates.for_data(data, config, None)
    rows = training_rows(data, builder, pd.Timestamp("1900-01-01"), window.as_of)  # every closed deal
    rows_seconds = clock.lap()
    book = snapshot(data, builder, window.as_of)
    book_seconds = clock.lap()
    return {
        "read_parquet_s": floor,
        "load_and_validate_s": load_seconds,
        "index_s": index_seconds,
        "training_rows_s": rows_seconds,
        "snapshot_s": book_seconds,
        "features_s": index_seconds + rows_seconds + book_seconds,
        "opportunity_rows": len(rows),
        "accounts": len(book),
        "engagement_events": len(data.engagement),
    }


def _training_matrix(data_dir: Path):
    from configuration.tiering import TieringConfig
    from features.matrix import FeatureSpec
    from features.pointintime import FeatureBuilder, training_rows
    from features.rules import with_rule_scores
    from ingest.io import load_export
    from training.pipeline import WindowDates

    data = load_export(data_dir).data
    config = TieringConfig()
    window = WindowDates.for_data(data, config, None)
    rows = with_rule_scores(training_rows(data, FeatureBuilder(data, config), window.start, window.as_of), config)
    spec = FeatureSpec.fit(rows, config)
    return data, config, rows, spec, spec.encode(rows)


def train(data_dir: Path) -> dict:
    """`tiering train` end to end (with MLflow, learner search on) against raw fits of the learners it chose
    (the win recipe and the deal-size booster with their final rounds, on the same window's rows)."""
    import os
    import tempfile

    from features.config import Candidate
    from scoring.learners import LOGISTIC
    from training.models import fit_learner, train_booster
    from training.workflow import train_and_register

    data, config, rows, spec, matrix = _training_matrix(data_dir)
    steps: dict[str, float] = {}
    last = [time.perf_counter(), None]

    def progress(step: str) -> None:
        now = time.perf_counter()
        if last[1] is not None:
            steps[last[1]] = steps.get(last[1], 0.0) + now - last[0]
        last[0], last[1] = now, step

    clock = Clock()
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        outcome = train_and_register(data, config, None, progress)
        total = clock.lap()
    progress("end")
    scorer = outcome.result.scorer
    recipe, deal = scorer.win_model.recipe, scorer.deal_model
    won = rows["won"].to_numpy()
    amount = rows["amount"].to_numpy(dtype=np.float64, na_value=np.nan)
    clock.lap()
    fit_learner(recipe, matrix, won, spec.categorical_indices, spec.columns, config.model)
    keep = (won == 1) & (amount > 0)
    if deal.booster is not None:
        train_booster(
            matrix[keep],
            np.log(amount[keep]),
            spec.categorical_indices,
            spec.columns,
            config.model,
            Candidate(**config.model.search.candidates[0].model_dump()),
            "regression",
            deal.rounds,
        )
    raw_seconds = clock.lap()
    search = sum(seconds for name, seconds in steps.items() if name.startswith("learner search"))
    folds = sum(seconds for name, seconds in steps.items() if name.startswith("learner search: the finalists"))
    return {
        "train_s": total,
        "raw_fits_s": raw_seconds,
        "ratio": total / raw_seconds,
        "training_rows": int(len(rows)),
        "steps_s": steps,
        "search_s": search,
        "search_share": search / total,
        "folds_s": folds,
        "folds_share": folds / total,
        "chosen": recipe.describe(),
        "logistic_chosen": recipe.learner == LOGISTIC,
    }


def _load(data_dir: Path):
    from configuration.tiering import TieringConfig
    from ingest.io import load_export

    return load_export(data_dir).data, TieringConfig()


def score(data_dir: Path) -> dict:
    """Scoring every account (features as of a date, both models, tiers, reasons) against raw predict."""
    from features.pointintime import FeatureBuilder, snapshot
    from features.rules import with_rule_scores
    from training.pipeline import train as train_models

    data, config = _load(data_dir)
    result = train_models(data, config)
    scorer = result.scorer
    builder = FeatureBuilder(data, config)
    book = snapshot(data, builder, result.window.as_of)
    matrix = scorer.spec.encode(with_rule_scores(book, config))
    clock = Clock()
    scorer.win_model.margin(matrix)  # the raw learners: booster.predict or the logistic's matrix product
    scorer.deal_model.margin(matrix)
    raw_seconds = clock.lap()
    scorer.score(book, by_capacity=True, explain=False)
    without_reasons = clock.lap()
    scorer.score(book, by_capacity=True, explain=True)
    with_reasons = clock.lap()
    n = len(book)
    return {
        "accounts": n,
        "raw_predict_per_s": n / raw_seconds,
        "score_per_s": n / without_reasons,
        "score_with_reasons_per_s": n / with_reasons,
        "ratio": raw_seconds / without_reasons,
        "ratio_with_reasons": raw_seconds / with_reasons,
    }


def forecast(data_dir: Path) -> dict:
    """`tiering forecast`'s work (scoring the book, then 10,000 simulations per tier) against a plain scoring
    of the same book (the goal: at most 2x)."""
    from features.activity import default_as_of
    from scoring.forecast import SIMULATIONS
    from scoring.pyfunc import TieringModel
    from training.pipeline import train as train_models

    data, config = _load(data_dir)
    model = TieringModel.around(train_models(data, config).scorer)
    as_of = default_as_of(data)
    clock = Clock()
    model.score_book(data, as_of)
    scoring_seconds = clock.lap()
    model.forecast_book(data, as_of, simulations=SIMULATIONS)
    forecast_seconds = clock.lap()
    return {
        "accounts": int(len(data.accounts)),
        "score_s": scoring_seconds,
        "forecast_s": forecast_seconds,
        "simulations": SIMULATIONS,
        "ratio": forecast_seconds / scoring_seconds,
    }


STEPS = {"features": features, "train": train, "score": score, "forecast": forecast}

if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    figures = STEPS[step](folder)
    figures["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(figures))
