import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluate import auc_confidence, deal_size_metrics, expected_calibration_error, gain_curve, weighted_auc


def test_weighted_auc_equals_roc_auc_of_the_repeated_rows_with_ties():
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.3).astype(float)
    score = np.round(rng.random(2000) + 0.3 * y, 1)  # coarse: many ties, as isotonic output has
    level = np.unique(score, return_inverse=True)[1]
    for _ in range(5):
        weight = np.bincount(rng.integers(0, 2000, 2000), minlength=2000).astype(float)
        repeated = np.repeat(np.arange(2000), weight.astype(int))
        assert weighted_auc(y, level, level.max() + 1, weight) == pytest.approx(
            roc_auc_score(y[repeated], score[repeated]), abs=1e-12
        )


def test_confidence_bounds_separate_signal_from_noise():
    rng = np.random.default_rng(4)
    y = (rng.random(3000) < 0.4).astype(int)
    signal, noise = y + rng.normal(0, 1, 3000), rng.random(3000)
    strong = auc_confidence(y, signal, {"rules": noise})
    assert strong["roc_auc_low"] > 0.6 and strong["auc_gain_over_rules_low"] > 0.1
    flat = auc_confidence(y, rng.random(3000), {"rules": noise})
    assert flat["roc_auc_low"] < 0.5 and flat["auc_gain_over_rules_low"] < 0 < flat["auc_gain_over_rules_high"]


def test_a_score_against_itself_gains_exactly_nothing_and_a_constant_reference_is_chance():
    rng = np.random.default_rng(5)
    y = (rng.random(2000) < 0.3).astype(int)
    score = y + rng.normal(0, 1, 2000)
    bounds = auc_confidence(y, score, {"same": score.copy(), "constant": np.zeros(2000)})
    assert bounds["auc_gain_over_same_low"] == bounds["auc_gain_over_same_high"] == 0.0
    # Against a constant (AUC 0.5 in every resample), the gain's lower bound is the AUC's lower bound less 0.5.
    assert bounds["auc_gain_over_constant_low"] == pytest.approx(bounds["roc_auc_low"] - 0.5, abs=1e-12)


def test_gain_curve_treats_tied_scores_as_one_block():
    value = np.array([0.0, 0.0, 0.0, 10.0])
    share, captured = gain_curve(value, np.zeros(4), points=5)
    assert captured.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])  # a constant score is the diagonal
    # Scores 2, 1, 1, 1: the first account holds nothing; the tied three share the 10 evenly.
    share, captured = gain_curve(np.array([0.0, 0.0, 10.0, 0.0]), np.array([2.0, 1.0, 1.0, 1.0]), points=5)
    assert captured.tolist() == pytest.approx([0.0, 0.0, 1 / 3, 2 / 3, 1.0])


def test_expected_calibration_error_by_hand():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.95])  # bin 0: observed 0.5 vs 0.05; bin 9: 1.0 vs 0.95
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.45 + 2 * 0.05) / 4)


def test_deal_size_metrics_leave_out_zero_and_missing_amounts_and_count_them():
    amount = np.array([0.0, np.nan, 100.0, 200.0])
    predicted = np.array([50.0, 50.0, 150.0, 150.0])
    metrics = deal_size_metrics(amount, predicted, np.log(predicted))
    # By hand on the two positive deals: |100-150| = 50, |200-150| = 50; APE 0.5 and 0.25.
    assert metrics["excluded"] == 2 and metrics["mae"] == pytest.approx(50.0)
    assert metrics["mape"] == pytest.approx(0.375)
