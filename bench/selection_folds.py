"""An experiment, not the shipped selection: what choosing the win learner on rolling time folds would ship.

    python -m bench.selection_folds maven-crm marketstar-sdr [GENERATED_EXPORT_FOLDER ...]

The shipped search (training.pipeline.select_recipe) ranks its candidates on one validation slice, the
`calibration_months` before the holdout. This script ranks the same candidates on `--folds` consecutive
validation periods of that length ending at the holdout, each fitted on every development deal that closed
before it (rolling origin; LightGBM rounds cross-fitted on each period's halves, as the shipped search does),
and pools them: each candidate's ROC AUC averaged over the periods, weighted by their deals. The simplest
candidate within `tie_standard_errors` paired-bootstrap standard errors of the best pooled AUC (or within
`tie_tolerance`) is chosen, its calibration chosen on the last period, and it is fitted exactly as the shipped
evaluation model (fit slice, calibrated on the validation slice) and judged on the same holdout.

Prints one JSON record per export: the shipped and the rolling choice with their holdout ROC AUC and ECE, and
the fold table (each candidate's ROC AUC per period, pooled, and the standard error of its pooled difference to
the best).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bench.real_exports import EXPORTS
from configuration.tiering import TieringConfig
from features.pointintime import FeatureBuilder, training_rows
from features.rules import with_rule_scores
from ingest.io import load_export
from scoring.learners import LIGHTGBM, LOGISTIC, Recipe
from training.evaluate import expected_calibration_error
from training.models import cross_fitted_booster, fit_logistic, select_calibrator
from training.pipeline import fit_win_model, sample_rows, win_model_stage
from training.window import WindowDates

MIN_FIT_CLASS, MIN_PERIOD_CLASS = 20, 10  # a period is used only with this many of each outcome to fit and judge
RESAMPLES = 200


def periods(development: pd.DataFrame, window: WindowDates, months: int, count: int) -> list[tuple]:
    """Up to `count` validation periods of `months`, the last ending at the holdout, oldest first:
    (start, fit rows, period rows) as boolean masks of the development rows."""
    won = development["won"].to_numpy()
    found = []
    for back in range(count):
        end = window.holdout_start - pd.DateOffset(months=months * back)
        start = end - pd.DateOffset(months=months)
        fit = (development["close_date"] < start).to_numpy()
        period = ((development["close_date"] >= start) & (development["close_date"] < end)).to_numpy()
        if (
            min(won[fit].sum(), (1 - won[fit]).sum()) >= MIN_FIT_CLASS
            and min(won[period].sum(), (1 - won[period]).sum()) >= MIN_PERIOD_CLASS
        ):
            found.append((start, fit, period))
    return found[::-1]


def run(name: str, folds: int) -> dict:
    if name in EXPORTS:
        data, config = EXPORTS[name].load()
    else:
        data, config = load_export(Path(name)).data, TieringConfig()
    window = WindowDates.for_data(data, config, None)
    rows = with_rule_scores(training_rows(data, FeatureBuilder(data, config), window.start, window.as_of), config)
    development = rows[rows["close_date"] < window.holdout_start].reset_index(drop=True)
    holdout = rows[rows["close_date"] >= window.holdout_start].reset_index(drop=True)
    clock = time.perf_counter()
    stage = win_model_stage(development, holdout, window, config)
    shipped_seconds = time.perf_counter() - clock
    search, model = config.model.search, config.model
    spec, matrix, won = stage.spec, stage.matrix, development["won"].to_numpy()
    names = ["logistic regression", *(candidate.label() for candidate in search.candidates)]

    clock = time.perf_counter()
    table = []  # per period: (its outcomes, each candidate's margins, each candidate's rounds)
    chosen_periods = periods(development, window, model.window.calibration_months, folds)
    for _, fit, period in chosen_periods:
        at = sample_rows(np.flatnonzero(fit), search.max_rows, model.seed)
        x, y, period_x, period_y = matrix[at], won[at], matrix[period], won[period]
        margins = [fit_logistic(x, y, spec.categorical_indices, search.logistic_c, model.seed).margin(period_x)]
        rounds = [0]
        for candidate in search.candidates:
            margin, best = cross_fitted_booster(
                x, y, spec.categorical_indices, spec.columns, model, candidate, period_x, period_y
            )
            margins.append(margin)
            rounds.append(best)
        table.append((period_y, margins, rounds))
    weights = np.array([len(period_y) for period_y, _, _ in table], dtype=np.float64)
    weights /= weights.sum()
    aucs = np.array([[roc_auc_score(period_y, margin) for margin in margins] for period_y, margins, _ in table])
    pooled = weights @ aucs
    rng = np.random.default_rng(model.seed)
    resampled = np.zeros((RESAMPLES, len(names)))
    for draw in range(RESAMPLES):
        for weight, (period_y, margins, _) in zip(weights, table):
            rows_at = rng.integers(0, len(period_y), len(period_y))
            resampled[draw] += weight * np.array([roc_auc_score(period_y[rows_at], m[rows_at]) for m in margins])
    best = int(np.argmax(pooled))
    noise = np.std(resampled[:, [best]] - resampled, axis=0)
    chosen = next(
        i
        for i in range(len(names))
        if pooled[best] - pooled[i] <= max(search.tie_tolerance, search.tie_standard_errors * noise[i])
    )
    last_y, last_margins, last_rounds = table[-1]
    calibrator, _ = select_calibrator(last_margins[chosen], last_y, model.calibration, model.seed)
    if chosen == 0:
        recipe = Recipe(LOGISTIC, {"c": search.logistic_c}, calibrator.method)
    else:
        candidate = search.candidates[chosen - 1]
        recipe = Recipe(LIGHTGBM, {**candidate.model_dump(), "num_boost_round": last_rounds[chosen]}, calibrator.method)
    rolling_seconds = time.perf_counter() - clock
    rolling = fit_win_model(development, window.calibration_start, spec, recipe, config).predict(stage.holdout_matrix)
    y = holdout["won"].to_numpy()
    return {
        "export": name,
        "holdout_deals": int(len(y)),
        "shipped": {
            "learner": stage.selection.recipe.describe(),
            "roc_auc": round(float(roc_auc_score(y, stage.probability)), 4),
            "ece": round(expected_calibration_error(y, stage.probability), 4),
            "win_model_seconds": round(shipped_seconds, 1),
        },
        "rolling": {
            "learner": recipe.describe(),
            "roc_auc": round(float(roc_auc_score(y, rolling)), 4),
            "ece": round(expected_calibration_error(y, rolling), 4),
            "search_seconds": round(rolling_seconds, 1),
        },
        "periods": [
            {"from": start.date().isoformat(), "deals": int(period.sum()), "won": int(won[period].sum())}
            for start, _, period in chosen_periods
        ],
        "fold_table": [
            {
                "candidate": label,
                "period_roc_auc": aucs[:, i].round(4).tolist(),
                "pooled": round(float(pooled[i]), 4),
                "noise_of_difference_to_best": round(float(noise[i]), 4),
                "chosen": i == chosen,
            }
            for i, label in enumerate(names)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", help="a real export's name (bench/real_exports.py) or an export folder")
    parser.add_argument("--folds", type=int, default=3)
    arguments = parser.parse_args()
    for name in arguments.exports:
        if name in EXPORTS and not EXPORTS[name].folder.is_dir():
            print(f"{name}: not at {EXPORTS[name].folder}, skipped")
            continue
        print(json.dumps(run(name, arguments.folds), indent=1), flush=True)


if __name__ == "__main__":
    main()
