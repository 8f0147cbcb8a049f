import numpy as np
from sklearn.linear_model import LogisticRegression

from scoring.learners import MARGIN_BLOCK_ROWS
from training.models import LOGISTIC_MIN_LEVEL_ROWS, fit_logistic


def test_the_logistic_margin_over_several_blocks_of_rows_is_the_fitted_regressions_decision():
    """The margin is computed a block of rows at a time; over more rows than two blocks it must still be the
    regression's own decision function on the design it was fitted on (log-scaled, standardised numbers with
    missing values at the median; one-hot categories with rare ones as "other" and a slot for missing)."""
    rng = np.random.default_rng(3)
    train_rows, score_rows = 3_000, 2 * MARGIN_BLOCK_ROWS + 17

    def rows(n: int) -> np.ndarray:
        x = np.column_stack([rng.lognormal(3, 1, n), rng.normal(0, 5, n), rng.integers(0, 6, n).astype(float)])
        x[rng.random(n) < 0.1, 0] = np.nan
        x[rng.random(n) < 0.1, 2] = np.nan
        return x

    x = rows(train_rows)
    x[:, 2] = np.where(x[:, 2] == 5, 7.0, x[:, 2])  # category 7: rare in training, "other" then
    x[np.flatnonzero(x[:, 2] == 7)[LOGISTIC_MIN_LEVEL_ROWS - 1 :], 2] = 1.0
    y = np.nan_to_num(x[:, 0], nan=20) / 20 + x[:, 1] / 5 + (x[:, 2] == 2) + rng.normal(0, 1, train_rows) > 2
    learner = fit_logistic(x, y.astype(int), [2], c=1.0, seed=0)

    def design(values: np.ndarray) -> np.ndarray:
        numbers = values[:, :2]
        medians = np.nanmedian(x[:, :2], axis=0)
        filled = np.where(np.isnan(numbers), medians, numbers)
        logged = np.sign(filled) * np.log(1 + np.abs(filled))
        train_filled = np.where(np.isnan(x[:, :2]), medians, x[:, :2])
        train_logged = np.sign(train_filled) * np.log(1 + np.abs(train_filled))
        standard = (logged - train_logged.mean(axis=0)) / train_logged.std(axis=0)
        kept = [0.0, 1.0, 2.0, 3.0, 4.0]  # 7 has fewer than LOGISTIC_MIN_LEVEL_ROWS rows
        one_hot = np.column_stack(
            [values[:, 2] == level for level in kept]
            + [~np.isin(values[:, 2], kept) & ~np.isnan(values[:, 2]), np.isnan(values[:, 2])]
        )
        return np.hstack([standard, one_hot.astype(float)])

    reference = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(design(x), y.astype(int))
    scored = rows(score_rows)
    scored[:5, 2] = 7.0
    margin = learner.margin(scored)
    assert margin.shape == (score_rows,)
    np.testing.assert_allclose(margin, reference.decision_function(design(scored)), rtol=1e-6, atol=1e-6)
    assert learner.margin(scored[:0]).shape == (0,)
