"""Selection on rolling time folds: the periods, the pooled rule that lets a small consistent gain count, and the
blend's exact reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from configuration.tiering import TieringConfig
from features.config import Window as WindowConfig
from scoring.learners import BLEND, LIGHTGBM, LOGISTIC, BlendLearner, Recipe
from training.models import fit_learner
from training.selection import pooled_choice, rolling_folds


def test_folds_validate_on_consecutive_periods_ending_at_the_holdout_each_fitted_on_the_months_before():
    months = WindowConfig(months=12, holdout_months=3, calibration_months=2)
    as_of = pd.Timestamp("2026-01-01")
    window = WindowDates(
        pd.Timestamp("2025-01-01"),
        pd.Timestamp("2025-08-01"),
        pd.Timestamp("2025-10-01"),
        pd.Timestamp("2025-11-01"),
        as_of,
        months,
    )
    dates = pd.Series(pd.date_range("2025-01-01", "2025-09-30", freq="D"))
    won = np.arange(len(dates)) % 3 == 0
    folds = rolling_folds(dates, won.astype(int), window, 3, seed=0, max_rows=10_000)
    assert [(f.start, f.end) for f in folds] == [
        (pd.Timestamp("2025-04-01"), pd.Timestamp("2025-06-01")),
        (pd.Timestamp("2025-06-01"), pd.Timestamp("2025-08-01")),
        (pd.Timestamp("2025-08-01"), pd.Timestamp("2025-10-01")),  # the validation slice
    ]
    for fold in folds:
        assert dates[fold.fit].max() < fold.start <= dates[fold.validation].min()
        assert dates[fold.validation].max() < fold.end
        assert len(fold.fit) == (fold.start - pd.Timestamp("2025-01-01")).days
    # A fold whose fit months hold too few deals is left out; the validation slice always stays.
    short = rolling_folds(dates, won.astype(int), window, 5, seed=0, max_rows=10_000)
    assert short[-1].start == window.calibration_start and short[0].start > pd.Timestamp("2025-01-01")


def _scores(y: np.ndarray, signal: float, rng: np.random.Generator) -> np.ndarray:
    return signal * y + rng.normal(size=len(y))


def test_a_small_gain_that_holds_on_every_fold_counts_and_one_that_does_not_is_a_tie():
    rng = np.random.default_rng(9)
    fold_y = [rng.integers(0, 2, 2500) for _ in range(3)]
    common = [_scores(y, 0.8, rng) for y in fold_y]
    # The complex candidate adds the same small extra signal on every fold.
    better = [c + 0.025 * y + 0.3 * rng.normal(size=len(y)) for c, y in zip(common, fold_y)]
    simple = [c + 0.3 * rng.normal(size=len(y)) for c, y in zip(common, fold_y)]
    gains = [roc_auc_score(y, b) - roc_auc_score(y, s) for y, b, s in zip(fold_y, better, simple)]
    assert all(0.005 < gain < 0.01 for gain in gains)  # small, and the same on every fold
    aucs, noise, chosen = pooled_choice([simple, better], fold_y, 0.002, 1.0, seed=0)
    assert np.isclose(aucs[1] - aucs[0], np.mean(gains))  # equal folds weigh the same
    assert aucs[1] - aucs[0] > noise[0] and chosen == 1
    # The same candidates on the last fold alone (the old rule: one slice, two standard errors): a tie.
    _, single_noise, single_chosen = pooled_choice([simple[-1:], better[-1:]], fold_y[-1:], 0.002, 2.0, seed=0)
    assert single_chosen == 0 and gains[-1] <= 2 * single_noise[0]
    # Better on one fold, worse on the other two: no consistent gain, the simpler candidate stays.
    mixed = [s + sign * 0.05 * y for s, y, sign in zip(simple, fold_y, (2, -1, -1))]
    mixed_gains = [roc_auc_score(y, m) - roc_auc_score(y, s) for y, m, s in zip(fold_y, mixed, simple)]
    assert mixed_gains[0] > 0.01 and max(mixed_gains[1:]) < 0
    assert pooled_choice([simple, mixed], fold_y, 0.002, 1.0, seed=0)[2] == 0


def test_the_blend_is_its_parts_weighted_and_its_reasons_add_up_to_its_margin():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=600), rng.exponential(size=600), rng.integers(0, 4, 600).astype(float)])
    y = (x[:, 0] + (x[:, 2] == 2) + rng.normal(size=600) > 0.5).astype(int)
    config = TieringConfig().model
    candidate = config.search.candidates[0]
    parts = [
        Recipe(LOGISTIC, {"c": 1.0}, "platt").to_dict(),
        Recipe(LIGHTGBM, {**candidate.model_dump(), "num_boost_round": 30}, "platt").to_dict(),
    ]
    recipe = Recipe(BLEND, {"parts": parts, "weights": [0.7, 0.4], "intercept": -0.2}, "platt")
    blend = fit_learner(recipe, x, y, [2], ["a", "b", "c"], config)
    assert isinstance(blend, BlendLearner)
    logistic = fit_learner(Recipe.from_dict(parts[0]), x, y, [2], ["a", "b", "c"], config)
    booster = fit_learner(Recipe.from_dict(parts[1]), x, y, [2], ["a", "b", "c"], config)
    expected = -0.2 + 0.7 * logistic.margin(x) + 0.4 * booster.predict(x, raw_score=True)
    assert np.allclose(blend.margin(x), expected)
    assert np.allclose(blend.contributions(x).sum(axis=1), expected)
    assert "blend of logistic regression (C 1) and LightGBM" in recipe.describe()
