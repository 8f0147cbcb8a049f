"""Learner selection on rolling time folds, against data whose truth is known by construction: a small gain that
holds on every fold is taken, a win on one fold alone is not; the holdout plays no part; the blend ships inside the
logged model and scores as it was fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from configuration.tiering import parse_config
from features.rules import with_rule_scores
from scoring.bundle import load_scorer, save_scorer
from scoring.learners import BLEND, LIGHTGBM, LOGISTIC, BlendLearner, Recipe
from scoring.scorer import Scorer
from training.pipeline import Fold, fit_win_model, occams_choice, pooled_fold_aucs, select_recipe

SEARCH = parse_config({}).model.search


SHARED = 0.7  # correlation of the two learners' errors: they read the same deals


def folds_of(errors: list[tuple[float, float]], deals: int, seed: int) -> tuple[list, list]:
    """One fold per (simple, complex) pair of error sizes: its outcomes, drawn from a true log-odds, and both
    learners' scores, the true log-odds blurred by errors of those sizes. Less error ranks better, by construction."""
    rng = np.random.default_rng(seed)
    outcomes, scores = [], []
    for simple, complex_ in errors:
        latent = rng.normal(0.0, 1.0, deals)
        outcomes.append((rng.random(deals) < expit(latent)).astype(int))
        common = rng.normal(0.0, 1.0, deals)
        own = [SHARED * common + np.sqrt(1 - SHARED**2) * rng.normal(0.0, 1.0, deals) for _ in range(2)]
        scores.append([latent + simple * own[0], latent + complex_ * own[1]])
    return outcomes, scores


def test_a_small_gain_on_every_fold_is_taken_though_one_fold_alone_does_not_prove_it():
    # The complex learner's error is 0.85 of the simple one's on every fold: a real, small gain.
    outcomes, scores = folds_of([(1.0, 0.85)] * 3, deals=2000, seed=3)
    per_fold_gain = [roc_auc_score(y, s[1]) - roc_auc_score(y, s[0]) for y, s in zip(outcomes, scores)]
    assert all(gain > 0.01 for gain in per_fold_gain)  # consistent, as constructed
    _, pooled, noise = pooled_fold_aucs(outcomes, scores, seed=0)
    assert occams_choice(pooled, noise, SEARCH) == 1
    # The last fold alone, judged the same way, leaves the gain inside its noise and keeps the simpler learner.
    _, last_pooled, last_noise = pooled_fold_aucs(outcomes[-1:], scores[-1:], seed=0)
    assert occams_choice(last_pooled, last_noise, SEARCH) == 0


def test_a_win_on_one_fold_alone_is_not_taken():
    # The complex learner is worse on the two earlier folds and better on the last only: no consistent gain.
    outcomes, scores = folds_of([(1.0, 1.2), (1.0, 1.2), (1.0, 0.7)], deals=2000, seed=3)
    aucs, pooled, noise = pooled_fold_aucs(outcomes, scores, seed=0)
    assert aucs[-1, 1] > aucs[-1, 0] + 0.02  # the last fold, which one slice would judge on, says "complex"
    assert occams_choice(pooled, noise, SEARCH) == 0
    # The pooled figures are the folds' AUCs weighted by their deals (here equal), computed independently.
    by_hand = np.mean([[roc_auc_score(y, s) for s in fold] for y, fold in zip(outcomes, scores)], axis=0)
    assert np.allclose(pooled, by_hand)


def synthetic_folds(interaction: float, seed: int = 3, months: int = 10, per_month: int = 400):
    """Deals over `months` months with two numeric features and one category; the log-odds hold an
    interaction of two features (`interaction` 0: purely linear, which the logistic regression gets exactly)."""
    rng = np.random.default_rng(seed)
    n = months * per_month
    x = rng.normal(size=(n, 3))
    x[:, 2] = rng.integers(0, 4, n)  # a category code
    latent = 0.8 * x[:, 0] - 0.6 * x[:, 1] + 0.3 * (x[:, 2] == 1) + interaction * x[:, 0] * x[:, 1]
    y = (rng.random(n) < expit(latent)).astype(int)
    month = np.repeat(np.arange(months), per_month)
    holdout = month >= months - 2
    development = ~holdout
    folds = []
    for start in (months - 8, months - 6, months - 4):  # three 2-month periods, the last ending at the holdout
        period = np.flatnonzero((month >= start) & (month < start + 2))
        before = np.flatnonzero(month < start)
        folds.append(Fold(pd.Timestamp(2024, start + 1, 1), pd.Timestamp(2024, start + 3, 1), before, period))
    return x[development], y[development], folds, x[holdout], y[holdout]  # development rows come first


CONFIG = parse_config(
    {"model": {"search": {"candidates": [{"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 30}]}}}
)


def choose(x, y, folds, hx, hy):
    return select_recipe(x, y, folds, hx, hy, [2], ["a", "b", "segment"], CONFIG, lambda step: None)


def test_linear_data_keep_the_logistic_regression_and_the_holdout_never_decides():
    x, y, folds, hx, hy = synthetic_folds(interaction=0.0)
    selection = choose(x, y, folds, hx, hy)
    assert selection.recipe.learner == LOGISTIC
    assert [c.learner for c in selection.candidates] == [LOGISTIC, LIGHTGBM, BLEND]
    assert len(selection.folds) == 3 and selection.folds.shape[1] == 1 + 3 + 3  # name, 3 folds, pooled, noise, chosen
    shuffled = choose(x, y, folds, hx, np.random.default_rng(0).permutation(hy))
    assert shuffled.recipe == selection.recipe
    assert shuffled.folds.drop(columns="chosen").equals(selection.folds.drop(columns="chosen"))


def test_an_interaction_the_logistic_regression_cannot_see_takes_a_tree_learner():
    x, y, folds, hx, hy = synthetic_folds(interaction=1.5)
    selection = choose(x, y, folds, hx, hy)
    assert selection.recipe.learner in (LIGHTGBM, BLEND)
    chosen = next(c for c in selection.candidates if c.chosen)
    logistic = selection.candidates[0]
    # Every fold agrees, by construction: the tree learner ranks better than the logistic regression on each.
    fold_columns = [c for c in selection.folds.columns if "deals" in c]
    rows = selection.folds.set_index("candidate")
    assert (rows.loc[chosen.name, fold_columns] > rows.loc[logistic.name, fold_columns]).all()


@pytest.fixture(scope="module")
def blended(demo_training):
    """The demo training's scorer with its win model replaced by a blend re-fitted on the same slices."""
    result = demo_training.result
    config = result.scorer.config
    candidate = config.model.search.candidates[0]
    recipe = Recipe(BLEND, {"c": 1.0, **candidate.model_dump(), "num_boost_round": 60}, "platt")
    win = fit_win_model(result.development, result.window.calibration_start, result.scorer.spec, recipe, config)
    scorer = Scorer(
        config=config,
        spec=result.scorer.spec,
        win_model=win,
        deal_model=result.scorer.deal_model,
        pipeline=result.scorer.pipeline,
    )
    scorer.freeze(result.book)
    return result, scorer


def test_the_blend_averages_its_components_platt_log_odds(blended):
    result, scorer = blended
    learner = scorer.win_model.learner
    assert isinstance(learner, BlendLearner)
    development = result.development
    late = (development["close_date"] >= result.window.calibration_start).to_numpy()
    matrix = scorer.spec.encode(development[late])
    y = development.loc[late, "won"].to_numpy()
    # Each component's Platt curve, fitted here with scikit-learn directly, then averaged in log-odds.
    margins = [learner.logistic.margin(matrix), learner.booster.predict(matrix, raw_score=True)]
    curves = [LogisticRegression(C=1e6, max_iter=1000).fit(m[:, None], y) for m in margins]
    expected = np.mean([c.coef_[0, 0] * m + c.intercept_[0] for c, m in zip(curves, margins)], axis=0)
    assert np.allclose(scorer.win_model.margin(matrix), expected, atol=1e-6)


def test_a_blend_scores_the_same_after_the_logged_bundle_is_loaded_and_its_reasons_add_up(blended, tmp_path):
    result, scorer = blended
    loaded = load_scorer(save_scorer(scorer, tmp_path / "bundle"))
    assert isinstance(loaded.win_model.learner, BlendLearner)
    book = result.book.head(300)
    before = scorer.score(book, by_capacity=False, explain=True)
    after = loaded.score(book, by_capacity=False, explain=True)
    pd.testing.assert_frame_equal(before.drop(columns="scored_at"), after.drop(columns="scored_at"))  # a clock
    matrix = scorer.spec.encode(with_rule_scores(book, scorer.config))
    contributions = loaded.win_model.contributions(matrix, "path", {})
    assert np.allclose(contributions.sum(axis=1), loaded.win_model.margin(matrix))
