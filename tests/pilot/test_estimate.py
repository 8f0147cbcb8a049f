"""The stratified estimator, CUPED, power and the sample-ratio check against hand arithmetic and simulated pilots.

Simulations draw many pilots' account outcomes at once (numpy, one array of pilots x accounts) over one fixed
randomised split, and read the product's intervals against the lift planted in the draws.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pilot.estimate import cuped_adjusted, sample_ratio, stratified_lift, units_per_group
from pilot.metrics import Metric
from pilot.readout import design_power

Z95 = 1.959963984540054
DRAWS = 600


def test_ten_accounts_by_hand():
    # Stratum A: treatment 10, 20, 30 (mean 20, s2 100); control 5, 10, 15 (mean 10, s2 25); 6 of 10 accounts.
    # Stratum B: treatment 40, 60 (mean 50, s2 200); control 30, 50 (mean 40, s2 200); 4 of 10 accounts.
    value = [10, 20, 30, 5, 10, 15, 40, 60, 30, 50]
    treated = [True, True, True, False, False, False, True, True, False, False]
    strata = ["A"] * 6 + ["B"] * 4
    lift = stratified_lift(value, 1.0, strata, treated)
    treatment_mean, control_mean = 0.6 * 20 + 0.4 * 50, 0.6 * 10 + 0.4 * 40  # 32 and 22
    variance_t = 0.6**2 * 100 / 3 + 0.4**2 * 200 / 2  # 28
    variance_c = 0.6**2 * 25 / 3 + 0.4**2 * 200 / 2  # 19
    se = math.sqrt(variance_t + variance_c)  # sqrt(47)
    assert float(lift.treatment) == pytest.approx(32)
    assert float(lift.control) == pytest.approx(22)
    assert float(lift.difference) == pytest.approx(10)
    assert float(lift.standard_error) == pytest.approx(math.sqrt(47))
    assert float(lift.difference_low) == pytest.approx(10 - Z95 * se)
    assert float(lift.difference_high) == pytest.approx(10 + Z95 * se)
    phi = 0.5 * (1 + math.erf(10 / se / math.sqrt(2)))
    assert float(lift.difference_p) == pytest.approx(2 * (1 - phi))
    se_log = math.sqrt(variance_t / treatment_mean**2 + variance_c / control_mean**2)
    assert float(lift.ratio) == pytest.approx(32 / 22)
    assert float(lift.ratio_low) == pytest.approx(32 / 22 * math.exp(-Z95 * se_log))
    assert float(lift.ratio_high) == pytest.approx(32 / 22 * math.exp(Z95 * se_log))


def test_clusters_are_one_unit_each():
    # Two families of two accounts per group: rates are sums over accounts; variance over the families.
    # Treatment families total 10 and 30 over 2 accounts each: rate 40/4 = 10; residuals 10-20=-10, 30-20=10.
    # Control families 4 and 8: rate 3; residuals 4-6=-2, 8-6=2. var_t = 2/1 * 200 / 16 = 25, var_c = 2 * 8/16 = 1.
    lift = stratified_lift([10, 30, 4, 8], [2, 2, 2, 2], ["s"] * 4, [True, True, False, False])
    assert float(lift.difference) == pytest.approx(7)
    assert float(lift.standard_error) == pytest.approx(math.sqrt(26))


def _split(n: int, strata: int) -> tuple[np.ndarray, np.ndarray]:
    stratum = np.repeat(np.arange(strata), n // strata)
    treated = np.tile([True, False], n // 2)
    return stratum.astype(str), treated


def _outcomes(rng, shape, stratum, correlated_pre: bool = False, spread: float = 0.6):
    """Skewed per-account pipeline: a lognormal account level (shared with the pre-period) times noise."""
    base = 200.0 * (1 + stratum.astype(int))
    level = base * rng.lognormal(0, spread, size=shape)
    period = level * rng.gamma(4, 1 / 4, size=shape)
    pre = level * rng.gamma(4, 1 / 4, size=shape) if correlated_pre else None
    return period, pre


def test_interval_covers_a_planted_lift_and_zero_without_one():
    rng = np.random.default_rng(2026)
    stratum, treated = _split(400, 4)
    period, pre = _outcomes(rng, (DRAWS, 400), stratum, correlated_pre=True)
    planted = 60.0
    lifted = period + planted * treated
    plain = stratified_lift(lifted, 1.0, stratum, treated)
    covered = ((plain.difference_low <= planted) & (planted <= plain.difference_high)).mean()
    assert 0.93 <= covered <= 0.97
    null = stratified_lift(period, 1.0, stratum, treated)
    covers_zero = ((null.difference_low <= 0) & (0 <= null.difference_high)).mean()
    assert 0.93 <= covers_zero <= 0.97
    # Ratio: a planted +15% on the treated accounts' own outcomes.
    scaled = stratified_lift(period * np.where(treated, 1.15, 1.0), 1.0, stratum, treated)
    assert 0.93 <= ((scaled.ratio_low <= 1.15) & (1.15 <= scaled.ratio_high)).mean() <= 0.97
    assert 0.93 <= ((null.ratio_low <= 1) & (1 <= null.ratio_high)).mean() <= 0.97

    adjusted, theta = cuped_adjusted(lifted, 1.0, pre, stratum, treated)
    cuped = stratified_lift(adjusted, 1.0, stratum, treated)
    assert 0.93 <= ((cuped.difference_low <= planted) & (planted <= cuped.difference_high)).mean() <= 0.97
    narrower = 1 - np.mean(cuped.standard_error) / np.mean(plain.standard_error)
    # Within a stratum the pre-period shares the account's lognormal level L (sigma 0.6) and not its gamma noise g
    # (mean 1, variance 1/4): rho = var(L) / var(L g), and the interval narrows by 1 - sqrt(1 - rho^2) (about 16%).
    var_level = math.exp(0.36) * (math.exp(0.36) - 1)
    rho = var_level / (math.exp(0.72) * 1.25 - math.exp(0.36))
    assert narrower == pytest.approx(1 - math.sqrt(1 - rho**2), abs=0.02)
    assert theta.shape == (DRAWS,)


def test_sample_ratio_mismatch():
    assert not sample_ratio(101, 99).mismatch
    # 150 against 250 where 200/200 was designed: chi-square 25 on one degree of freedom, p about 6e-7.
    check = sample_ratio(150, 250)
    assert check.mismatch
    assert check.p_value == pytest.approx(math.erfc(math.sqrt(25 / 2)))


def test_units_per_group_by_the_textbook_formula():
    # n = 2 * sigma^2 * (z_.975 + z_.8)^2 / delta^2 = 2 * 100 * 7.849 / 25 = 62.8 -> 63
    assert units_per_group(100.0, 5.0) == math.ceil(2 * 100 * (Z95 + 0.8416212335729143) ** 2 / 25)


def test_the_stated_detectable_lift_is_detected_four_times_in_five():
    # The statement rests on the history's variance: a history of 1,000 moderately skewed accounts estimates it
    # to within a few percent, so the detection rate reads the power formula rather than one history's luck.
    rng = np.random.default_rng(11)
    n = 1000
    stratum, treated = _split(n, 4)
    ids = [f"A{i}" for i in range(n)]
    assignment = pd.DataFrame(
        {"account_id": ids, "group": np.where(treated, "treatment", "control"), "stratum": stratum}
    )
    history, _ = _outcomes(rng, (n,), stratum, spread=0.3)
    activity = pd.DataFrame({"account_id": ids, "pipeline": history, "deals_won": 0.0, "won_revenue": 0.0})
    activity["closed_deals"] = 0.0
    power = design_power(assignment, Metric.PIPELINE, activity)
    assert 0.05 < power.detectable_lift < 0.5
    period, _ = _outcomes(rng, (DRAWS, n), stratum, spread=0.3)
    lifted = period + power.detectable_difference * treated
    lift = stratified_lift(lifted, 1.0, stratum, treated)
    detected = ((lift.difference_p < 0.05) & (lift.difference > 0)).mean()
    assert 0.75 <= detected <= 0.85, detected


def test_a_win_rate_is_won_over_closed_and_a_stratum_without_closed_deals_drops_out():
    # Stratum a: treatment won 1+1+0 of 2+2+1 closed (0.4), control 0+1+0 of 1+2+1 (0.25); stratum b's control
    # closed nothing, so b compares nothing and a carries the whole weight.
    value = [1, 1, 0, 1, 0, 0, 1, 0]
    closed = [2, 2, 1, 2, 1, 1, 1, 0]
    treated = [True, True, False, False, False, True, True, False]
    lift = stratified_lift(value, closed, ["a"] * 6 + ["b"] * 2, treated)
    assert (float(lift.treatment), float(lift.control)) == pytest.approx((0.4, 0.25))
    # Linearised variance: treatment residuals 1-0.8, 1-0.8, 0-0.4 -> 0.04+0.04+0.16 = 0.24, n/(n-1) = 1.5, / 5^2;
    # control residuals 0-0.25, 1-0.5, 0-0.25 -> 0.0625+0.25+0.0625 = 0.375, * 1.5 / 4^2.
    assert float(lift.standard_error) == pytest.approx(math.sqrt(1.5 * 0.24 / 25 + 1.5 * 0.375 / 16))


def test_a_readout_with_a_sample_ratio_mismatch_says_so_first():
    from pilot.readout import read_out
    from reports.pilot_page import render_readout

    # 10 treatment against 40 control where the design split 25/25: chi-square (15^2 + 15^2) / 25 = 18, p ~ 2e-5.
    ids = [f"A{i}" for i in range(50)]
    assignment = pd.DataFrame(
        {"account_id": ids, "group": ["treatment"] * 10 + ["control"] * 40, "stratum": ["tier_1"] * 50}
    )
    rng = np.random.default_rng(3)
    activity = pd.DataFrame(
        {
            "account_id": ids,
            "pipeline": rng.gamma(2, 100, 50),
            "deals_won": rng.poisson(1, 50).astype(float),
            "won_revenue": rng.gamma(2, 50, 50),
        }
    )
    activity["closed_deals"] = activity["deals_won"] + 1
    readout = read_out(assignment, activity, activity.assign(pipeline=activity["pipeline"] * 0.9), Metric.PIPELINE)
    assert readout.ratio_check.mismatch
    assert readout.ratio_check.p_value == pytest.approx(math.erfc(math.sqrt(18 / 2)))
    assert readout.verdict.startswith("sample ratio mismatch: 10 treatment and 40 control accounts")
    pilot = {"pilot_id": "p", "seed": 1, "start_date": "2026-01-01", "horizon_days": 90, "metric": "pipeline"}
    page = render_readout(readout, {**pilot, "tiers": ["tier_1"], "strata": []}, "export")
    assert "<div class=banner>sample ratio mismatch" in page
