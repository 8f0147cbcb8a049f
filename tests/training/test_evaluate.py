import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluate import _weighted_auc, auc_confidence, expected_calibration_error


def test_weighted_auc_equals_roc_auc_of_the_repeated_rows_with_ties():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.3).astype(float)
    score = np.round(rng.random(2000) + 0.3 * y, 1)  # coarse: many ties, as isotonic output has
    level = np.unique(score, return_inverse=True)[1]
    for _ in range(5):
        weight = np.bincount(rng.integers(0, 2000, 2000), minlength=2000).astype(float)
        repeated = np.repeat(np.arange(2000), weight.astype(int))
        assert _weighted_auc(y, level, level.max() + 1, weight) == pytest.approx(
            roc_auc_score(y[repeated], score[repeated]), abs=1e-12)


def test_confidence_bounds_separate_signal_from_noise():
    rng = np.random.default_rng(4)
    y = (rng.random(3000) < 0.4).astype(int)
    signal, noise = y + rng.normal(0, 1, 3000), rng.random(3000)
    strong = auc_confidence(y, signal, noise)
    assert strong["roc_auc_low"] > 0.6 and strong["auc_gain_over_rules_low"] > 0.1
    flat = auc_confidence(y, rng.random(3000), noise)
    assert flat["roc_auc_low"] < 0.5 and flat["auc_gain_over_rules_low"] < 0


def test_expected_calibration_error_by_hand():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.95])  # bin 0: observed 0.5 vs 0.05; bin 9: 1.0 vs 0.95
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.45 + 2 * 0.05) / 4)
