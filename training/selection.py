"""Learner selection on rolling time folds inside the window.

The development months (everything before the holdout) end in `folds` consecutive validation
periods of `calibration_months` each; the last is the validation slice. Each candidate is fitted
on the months before a period and scored on it (a rolling origin), so every candidate is judged on
several periods, none of which it trained on, and the holdout takes no part. Per period the ROC AUC
of each candidate is measured; the pooled AUC is their average weighted by rows, and the noise of
the pooled difference between two candidates is the weighted sum of each period's paired bootstrap
variance. The simplest candidate within that noise (or `tie_tolerance`) of the best is chosen, so a
small gain that holds period after period counts where one slice's noise would have hidden it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.config import ModelConfig
from scoring.attribution import predict_dense
from scoring.learners import BLEND, LIGHTGBM, LOGISTIC, Recipe
from training.evaluate import bootstrap_aucs, expected_calibration_error
from training.models import (
    CALIBRATION_METHODS,
    MIN_CALIBRATION_ROWS,
    cross_fitted_booster,
    fit_calibrator,
    fit_logistic,
    fit_stack,
)
from training.window import WindowDates

Progress = Callable[[str], None]

FOLD_MIN_WON_LOST = 10  # a validation period with fewer won or lost deals cannot rank: it is left out
FOLD_FIT_MIN_WON_LOST = 20


@dataclass(frozen=True)
class Fold:
    """One rolling-origin split: fit on closes before `start`, validate on [start, end)."""

    start: pd.Timestamp
    end: pd.Timestamp
    fit: np.ndarray  # row positions of the development rows
    validation: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.start.date()} to {(self.end - pd.Timedelta(days=1)).date()}"


def rolling_folds(
    close_date: pd.Series, won: np.ndarray, window: WindowDates, count: int, seed: int, max_rows: int
) -> list[Fold]:
    """Up to `count` validation periods of `calibration_months` ending at the holdout, oldest first; a period whose
    fit or validation rows lack won or lost deals is left out. The last one is always the validation slice."""
    months = window.months.calibration_months if window.months else 2
    dates = pd.DatetimeIndex(close_date)
    folds = []
    for back in range(count, 0, -1):
        end = window.holdout_start - pd.DateOffset(months=months * (back - 1))
        start = end - pd.DateOffset(months=months)
        validation = np.flatnonzero((dates >= start) & (dates < end))
        fit = np.flatnonzero((dates >= window.start) & (dates < start))
        fit_won, valid_won = int(won[fit].sum()), int(won[validation].sum())
        enough = (
            min(valid_won, len(validation) - valid_won) >= FOLD_MIN_WON_LOST
            and min(fit_won, len(fit) - fit_won) >= FOLD_FIT_MIN_WON_LOST
        )
        if enough or back == 1:
            folds.append(Fold(start, end, sample_rows(fit, max_rows, seed), validation))
    return folds


def sample_rows(positions: np.ndarray, most: int, seed: int) -> np.ndarray:
    """At most `most` of `positions`, a seeded random sample kept in their order; all of them when fewer."""
    if len(positions) <= most:
        return positions
    return np.sort(np.random.default_rng(seed).choice(positions, most, replace=False))


@dataclass
class CandidateScore:
    """One win-model candidate: its ROC AUC per fold and pooled (which chose) and on the holdout (which judges)."""

    name: str
    learner: str
    validation_auc: float  # pooled over the folds
    holdout_auc: float = float("nan")
    validation_noise: float = 0.0  # standard error of its pooled AUC difference to the best candidate
    seconds: float = 0.0
    chosen: bool = False
    rounds: int = 0
    fold_aucs: list[float] = field(default_factory=list)


@dataclass
class Selection:
    recipe: Recipe
    candidates: list[CandidateScore]
    calibration_losses: dict[str, float]  # log loss per calibration method, pooled over the folds (auto)
    skipped: list[str] = field(default_factory=list)  # candidates the time budget left out
    folds: list[Fold] = field(default_factory=list)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)  # per fold: ECE and mean predicted vs observed

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{k: v for k, v in c.__dict__.items() if k != "fold_aucs"} for c in self.candidates])

    def fold_table(self) -> pd.DataFrame:
        """One row per candidate: its AUC on each fold, pooled, its gap to the best with the gap's noise, holdout."""
        best = max(c.validation_auc for c in self.candidates)
        rows = []
        for candidate in self.candidates:
            row: dict = {"candidate": candidate.name + (" (chosen)" if candidate.chosen else "")}
            for fold, auc in zip(self.folds, candidate.fold_aucs):
                row[fold.label] = auc
            row["pooled"] = candidate.validation_auc
            row["gap to best"] = best - candidate.validation_auc
            row["noise of gap"] = candidate.validation_noise
            row["holdout"] = candidate.holdout_auc
            rows.append(row)
        return pd.DataFrame(rows)


@dataclass
class _Tried:
    score: CandidateScore
    margins: list[np.ndarray]  # per fold, on its validation rows
    recipe_params: dict
    holdout_margin: np.ndarray  # the last fold's fit, on the holdout (for the report)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def select_recipe(
    matrix: np.ndarray,
    y: np.ndarray,
    close_date: pd.Series,
    holdout_x: np.ndarray,
    holdout_y: np.ndarray,
    categorical: list[int],
    names: list[str],
    config: ModelConfig,
    window: WindowDates,
    progress: Progress,
) -> Selection:
    """Every candidate fitted on each fold's earlier months and ranked by its pooled validation ROC AUC; the
    simplest within the noise of the best is chosen (logistic regression, then the LightGBM settings in
    order, then the blend). The holdout AUC of each is recorded for the report only."""
    search, model_config = config.model.search, config.model
    folds = rolling_folds(close_date, y, window, search.folds, model_config.seed, search.max_rows)
    began = time.perf_counter()
    tried: list[_Tried] = []
    skipped: list[str] = []

    progress(f"learner search: logistic regression on {len(folds)} rolling folds")
    clock = time.perf_counter()
    margins, logistic = [], None
    for fold in folds:
        logistic = fit_logistic(matrix[fold.fit], y[fold.fit], categorical, search.logistic_c, model_config.seed)
        margins.append(logistic.margin(matrix[fold.validation]))
    assert logistic is not None
    holdout_margin = logistic.margin(holdout_x)
    score = CandidateScore("logistic regression", LOGISTIC, float("nan"), _auc(holdout_y, holdout_margin))
    score.seconds = time.perf_counter() - clock
    tried.append(_Tried(score, margins, {"c": search.logistic_c}, holdout_margin))
    tree_seconds: list[float] = []
    for candidate in search.candidates:
        expected = float(np.mean(tree_seconds)) if tree_seconds else 0.0
        if tree_seconds and time.perf_counter() - began + expected > search.time_budget_seconds:
            skipped.append(candidate.label())
            continue
        progress(f"learner search: {candidate.label()}")
        clock = time.perf_counter()
        margins, rounds, booster = [], 0, None
        for fold in folds:
            margin, rounds, booster = cross_fitted_booster(
                matrix[fold.fit],
                y[fold.fit],
                categorical,
                names,
                model_config,
                candidate,
                matrix[fold.validation],
                y[fold.validation],
            )
            margins.append(margin)
        assert booster is not None
        # The last fold's booster (fitted on the months before the validation slice) stands for it on the holdout.
        holdout_margin = predict_dense(booster, holdout_x, raw_score=True, num_iteration=rounds)
        tree_seconds.append(time.perf_counter() - clock)
        score = CandidateScore(
            candidate.label(),
            LIGHTGBM,
            float("nan"),
            _auc(holdout_y, holdout_margin),
            seconds=tree_seconds[-1],
            rounds=rounds,
        )
        tried.append(_Tried(score, margins, {**candidate.model_dump(), "num_boost_round": rounds}, holdout_margin))
    fold_y = [y[fold.validation] for fold in folds]
    weights = np.array([len(f.validation) for f in folds], dtype=np.float64)
    weights /= weights.sum()
    for item in tried:
        item.score.fold_aucs = [_auc(part, margin) for part, margin in zip(fold_y, item.margins)]
        item.score.validation_auc = float(np.dot(weights, item.score.fold_aucs))
    if search.blend and any(t.score.learner == LIGHTGBM for t in tried):
        progress("learner search: blend of the best logistic regression and LightGBM")
        tried.append(_blend(tried, folds, fold_y, weights, holdout_y, config.model.seed))

    aucs, noise, chosen_at = pooled_choice(
        [t.margins for t in tried], fold_y, search.tie_tolerance, search.tie_standard_errors, model_config.seed
    )
    for item, error in zip(tried, noise):
        item.score.validation_noise = float(error)
    chosen = tried[chosen_at]
    chosen.score.chosen = True
    method, losses = _choose_calibration(chosen.margins, fold_y, model_config.calibration)
    calibration = _calibration_by_fold(chosen.margins, fold_y, folds, method)
    recipe = Recipe(chosen.score.learner, chosen.recipe_params, method)
    return Selection(recipe, [t.score for t in tried], losses, skipped, folds, calibration)


def pooled_choice(
    margins: list[list[np.ndarray]], fold_y: list[np.ndarray], tolerance: float, standard_errors: float, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Occam's rule on the pooled folds. `margins[candidate][fold]` score the fold's rows `fold_y[fold]`;
    candidates come simplest first. Returns each candidate's pooled AUC (fold AUCs weighted by rows), the
    standard error of its pooled paired difference to the best (per-fold paired bootstrap variances, weighted
    by rows squared: the folds are independent rows), and the index of the simplest candidate within
    `standard_errors` of that noise (or `tolerance`, if larger) of the best."""
    weights = np.array([len(part) for part in fold_y], dtype=np.float64)
    weights /= weights.sum()
    aucs = np.array([np.dot(weights, [_auc(part, m) for part, m in zip(fold_y, ms)]) for ms in margins])
    best_at = int(np.nanargmax(aucs))
    variance = np.zeros(len(margins))
    for number, part in enumerate(fold_y):
        resampled = bootstrap_aucs(part, [ms[number] for ms in margins], seed=seed + number)
        variance += weights[number] ** 2 * np.nanvar(resampled[:, [best_at]] - resampled, axis=0)
    noise = np.sqrt(variance)
    chosen_at = next(
        i for i in range(len(margins)) if aucs[best_at] - aucs[i] <= max(tolerance, standard_errors * noise[i])
    )
    return aucs, noise, chosen_at


def _blend(
    tried: list[_Tried],
    folds: list[Fold],
    fold_y: list[np.ndarray],
    weights: np.ndarray,
    holdout_y: np.ndarray,
    seed: int,
) -> _Tried:
    """The best logistic regression and the best LightGBM stacked: a logistic fit on their out-of-fold margins.

    Each fold is scored by weights fitted on the other folds' margins (on the only fold, by two halves), so the
    blend's fold AUCs are as out-of-sample as its parts'."""
    clock = time.perf_counter()
    parts = [
        max((t for t in tried if t.score.learner == kind), key=lambda t: t.score.validation_auc)
        for kind in (LOGISTIC, LIGHTGBM)
    ]
    stacked = [np.column_stack([p.margins[i] for p in parts]) for i in range(len(folds))]
    margins = []
    rng = np.random.default_rng(seed)
    for i, (features, part_y) in enumerate(zip(stacked, fold_y)):
        others = [j for j in range(len(folds)) if j != i]
        if others:
            coef, intercept = fit_stack(
                np.vstack([stacked[j] for j in others]), np.concatenate([fold_y[j] for j in others])
            )
            margins.append(features @ coef + intercept)
        else:
            half = rng.permutation(len(part_y)) % 2 == 0
            margin = np.empty(len(part_y))
            for train_rows in (half, ~half):
                coef, intercept = fit_stack(features[train_rows], part_y[train_rows])
                margin[~train_rows] = features[~train_rows] @ coef + intercept
            margins.append(margin)
    coef, intercept = fit_stack(np.vstack(stacked), np.concatenate(fold_y))
    params = {
        "parts": [Recipe(p.score.learner, p.recipe_params, "platt").to_dict() for p in parts],
        "weights": [float(w) for w in coef],
        "intercept": float(intercept),
    }
    holdout_margin = np.column_stack([p.holdout_margin for p in parts]) @ coef + intercept
    fold_aucs = [_auc(part_y, margin) for part_y, margin in zip(fold_y, margins)]
    score = CandidateScore(
        f"blend of {parts[0].score.name} and {parts[1].score.name}",
        BLEND,
        float(np.dot(weights, fold_aucs)),
        _auc(holdout_y, np.asarray(holdout_margin)),
        seconds=time.perf_counter() - clock,
        rounds=parts[1].score.rounds,
        fold_aucs=fold_aucs,
    )
    return _Tried(score, margins, params, holdout_margin)


def _cross_fitted(margin: np.ndarray, y: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Each row's probability from the calibration map fitted on the other half of the rows."""
    half = np.random.default_rng(seed).permutation(len(y)) % 2 == 0
    out = np.empty(len(y))
    for fit_rows in (half, ~half):
        out[~fit_rows] = fit_calibrator(margin[fit_rows], y[fit_rows], method)(margin[~fit_rows])
    return out


def _usable(y: np.ndarray) -> bool:
    return len(y) >= 2 * MIN_CALIBRATION_ROWS and min(int(y.sum()), int(len(y) - y.sum())) >= 10


def _choose_calibration(
    margins: list[np.ndarray], fold_y: list[np.ndarray], method: str
) -> tuple[str, dict[str, float]]:
    """The method asked for, or with `auto` the one with the lowest log loss pooled over the folds (each fold's
    rows calibrated by a map fitted on the other half of that fold); ties go to the simpler."""
    if method != "auto":
        return method, {}
    from sklearn.metrics import log_loss

    usable = [i for i, part in enumerate(fold_y) if _usable(part)] or [len(fold_y) - 1]
    losses = {}
    for candidate in CALIBRATION_METHODS:
        predicted = np.concatenate([_cross_fitted(margins[i], fold_y[i], candidate, i) for i in usable])
        observed = np.concatenate([fold_y[i] for i in usable])
        losses[candidate] = float(log_loss(observed, np.clip(predicted, 1e-12, 1 - 1e-12), labels=[0, 1]))
    best = min(losses.values())
    return next(m for m in CALIBRATION_METHODS if losses[m] <= best + 1e-4), losses


def _calibration_by_fold(
    margins: list[np.ndarray], fold_y: list[np.ndarray], folds: list[Fold], method: str
) -> pd.DataFrame:
    """Per fold, the chosen candidate with the chosen map (each half of the fold calibrated on the other half):
    ECE, mean predicted probability and observed win rate."""
    rows = []
    for number, (fold, margin, part) in enumerate(zip(folds, margins, fold_y)):
        if not _usable(part):
            continue
        probability = _cross_fitted(margin, part, method, number)
        rows.append(
            {
                "slice": fold.label,
                "rows": len(part),
                "ece": expected_calibration_error(part, probability),
                "mean_predicted": float(probability.mean()),
                "win_rate": float(part.mean()),
            }
        )
    return pd.DataFrame(rows)
