"""The stratified estimator of a lift, with and without CUPED, its 95% interval, the power it gives, and the
sample-ratio-mismatch check.

The randomised unit is an account, or a family when whole families are randomised together. Each unit carries a
`value` (the metric's numerator over the period: pipeline created, deals won, won revenue, won deals for a win
rate) and a `weight` (its denominator: the accounts in the unit, or its closed deals for a win rate), so one ratio
estimator serves every metric and cluster randomisation alike: within a stratum and group the metric is
sum(value) / sum(weight), with the linearised (delta-method) variance n/(n-1) * sum(e^2) / sum(weight)^2, where
e = value - rate * weight. With one account per unit that is the textbook s^2/n.

Strata are combined with weights proportional to their total weight in the pilot (post-stratification on the
design's strata), so the estimate is the lift per account across the whole pilot. Arrays may carry leading axes
(many simulated pilots at once) over the last axis of units; strata and groups are shared across those axes.

Intervals are normal (z) intervals: with the group sizes a pilot has, the stratified estimator is close to normal,
and the coverage tests hold them to 93-97%. The ratio's interval is built on the log scale (delta method).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
POWER = 0.80
SRM_ALPHA = 0.001  # a sample-ratio mismatch is flagged only when this unlikely by chance: it is a defect, not noise


def z_value(confidence: float = CONFIDENCE) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


@dataclass(frozen=True)
class Lift:
    """Treatment against control for one metric and scope. Arrays of the leading axes (one value per pilot)."""

    treatment: np.ndarray  # the metric in the treatment group (stratified)
    control: np.ndarray
    difference: np.ndarray
    difference_low: np.ndarray
    difference_high: np.ndarray
    difference_p: np.ndarray
    ratio: np.ndarray  # treatment / control
    ratio_low: np.ndarray
    ratio_high: np.ndarray
    ratio_p: np.ndarray
    standard_error: np.ndarray  # of the difference
    treatment_units: int
    control_units: int


def stratum_codes(strata) -> tuple[np.ndarray, list[str]]:
    labels, codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)
    return codes.reshape(-1), [str(label) for label in labels]


def merge_thin_strata(strata, treated, minimum: int = 2) -> np.ndarray:
    """Strata where a group has fewer than `minimum` units cannot estimate their own variance: pool them into one
    stratum (and that one into the largest when it is still too thin). Labels are returned as strings."""
    strata = np.asarray(strata, dtype=str).copy()
    treated = np.asarray(treated, dtype=bool)
    pooled = "(small strata pooled)"

    def thin(label: str) -> bool:
        members = strata == label
        return min(int((members & treated).sum()), int((members & ~treated).sum())) < minimum

    thin_labels = [label for label in np.unique(strata) if thin(label)]
    if thin_labels:
        strata[np.isin(strata, thin_labels)] = pooled
        if thin(pooled) and len(np.unique(strata)) > 1:
            labels, counts = np.unique(strata[strata != pooled], return_counts=True)
            strata[strata == pooled] = labels[np.argmax(counts)]
    return strata


def _group_sums(array: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Sums over the last axis for each mask: shape (..., len(masks))."""
    return np.stack([array[..., mask].sum(axis=-1) for mask in masks], axis=-1)


@dataclass(frozen=True)
class _Cells:
    """Per stratum and group: rate, variance of the rate, total weight, unit count."""

    rate: np.ndarray  # (..., strata, 2): group 0 control, 1 treatment
    variance: np.ndarray
    weight: np.ndarray
    units: np.ndarray  # (strata, 2)


def _cells(value: np.ndarray, weight: np.ndarray, codes: np.ndarray, treated: np.ndarray, n_strata: int) -> _Cells:
    masks = [(codes == h) & (treated == g) for h in range(n_strata) for g in (False, True)]
    units = np.array([mask.sum() for mask in masks]).reshape(n_strata, 2)
    weight = np.broadcast_to(weight, value.shape)
    totals = _group_sums(value, masks)
    weights = _group_sums(weight, masks)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = totals / weights
        squares = np.stack(
            [
                np.square(value[..., mask] - rate[..., k, None] * weight[..., mask]).sum(axis=-1)
                for k, mask in enumerate(masks)
            ],
            axis=-1,
        )
        n = units.reshape(-1)
        variance = np.where(n > 1, n / np.maximum(n - 1, 1) * squares / np.square(weights), np.nan)
    shape = value.shape[:-1] + (n_strata, 2)
    return _Cells(rate.reshape(shape), variance.reshape(shape), weights.reshape(shape), units)


def cuped_adjusted(value, weight, covariate, strata, treated) -> tuple[np.ndarray, np.ndarray]:
    """CUPED: value - theta * (covariate - stratum rate of the covariate * weight), theta the pooled within-stratum,
    within-group regression slope of the value on the covariate. The covariate is measured before the pilot started,
    so the adjustment removes variance without moving the expected difference. Returns (adjusted, theta)."""
    value = np.asarray(value, dtype=float)
    covariate = np.broadcast_to(np.asarray(covariate, dtype=float), value.shape)
    weight = np.broadcast_to(np.asarray(weight, dtype=float), value.shape)
    codes, labels = stratum_codes(strata)
    treated = np.asarray(treated, dtype=bool)
    residual_y = np.zeros_like(value)
    residual_x = np.zeros_like(value)
    centred = np.zeros_like(value)
    with np.errstate(invalid="ignore", divide="ignore"):
        for h in range(len(labels)):
            stratum = codes == h
            x_rate = covariate[..., stratum].sum(-1) / weight[..., stratum].sum(-1)
            centred[..., stratum] = covariate[..., stratum] - np.nan_to_num(x_rate)[..., None] * weight[..., stratum]
            for g in (False, True):
                cell = stratum & (treated == g)
                if not cell.any():
                    continue
                w = weight[..., cell].sum(-1)
                y_rate = np.nan_to_num(value[..., cell].sum(-1) / w)
                x_cell = np.nan_to_num(covariate[..., cell].sum(-1) / w)
                residual_y[..., cell] = value[..., cell] - y_rate[..., None] * weight[..., cell]
                residual_x[..., cell] = covariate[..., cell] - x_cell[..., None] * weight[..., cell]
        spread = np.square(residual_x).sum(-1)
        theta = np.where(spread > 0, (residual_y * residual_x).sum(-1) / np.where(spread > 0, spread, 1), 0.0)
    return value - theta[..., None] * centred, theta


def stratified_lift(value, weight, strata, treated, confidence: float = CONFIDENCE) -> Lift:
    """Treatment minus control (and treatment over control) of a ratio metric, stratified, with normal intervals.

    `value` has shape (..., units); `weight` broadcasts against it; `strata` and `treated` have shape (units,).
    """
    value = np.asarray(value, dtype=float)
    weight = np.broadcast_to(np.asarray(weight, dtype=float), value.shape)
    treated = np.asarray(treated, dtype=bool)
    codes, labels = stratum_codes(strata)
    cells = _cells(value, weight, codes, treated, len(labels))
    # A stratum counts where both groups have weight (accounts; for a win rate, closed deals): elsewhere there is
    # no comparison to make, and the other strata's shares are scaled up to fill its place.
    both = np.all(cells.weight > 0, axis=-1)  # (..., strata)
    share = np.where(both, cells.weight.sum(-1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = share / share.sum(-1, keepdims=True)
    rate = np.where(both[..., None], cells.rate, 0.0)
    variance = np.where(both[..., None], cells.variance, 0.0)
    means = (share[..., None] * rate).sum(-2)  # (..., 2)
    variances = (np.square(share)[..., None] * variance).sum(-2)
    control, treatment = means[..., 0], means[..., 1]
    z = z_value(confidence)
    difference = treatment - control
    se = np.sqrt(variances.sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = treatment / control
        se_log = np.sqrt(variances[..., 1] / np.square(treatment) + variances[..., 0] / np.square(control))
        log_ratio = np.log(ratio)
        difference_p = 2 * stats.norm.sf(np.abs(difference / se))
        ratio_p = 2 * stats.norm.sf(np.abs(log_ratio / se_log))
    return Lift(
        treatment=treatment,
        control=control,
        difference=difference,
        difference_low=difference - z * se,
        difference_high=difference + z * se,
        difference_p=difference_p,
        ratio=ratio,
        ratio_low=np.exp(log_ratio - z * se_log),
        ratio_high=np.exp(log_ratio + z * se_log),
        ratio_p=ratio_p,
        standard_error=se,
        treatment_units=int(treated.sum()),
        control_units=int((~treated).sum()),
    )


def detectable_difference(standard_error, confidence: float = CONFIDENCE, power: float = POWER):
    """The smallest true difference a two-sided test at 1 - confidence detects with the given power, for an
    estimator with this standard error: (z_{1-alpha/2} + z_{power}) * se."""
    return (z_value(confidence) + float(stats.norm.ppf(power))) * np.asarray(standard_error, dtype=float)


def units_per_group(unit_variance: float, difference: float, confidence: float = CONFIDENCE, power: float = POWER):
    """Units each group needs (equal groups) to detect `difference` with the given power, where `unit_variance` is
    the variance of one unit's metric (within strata, per unit of weight)."""
    if not difference > 0:
        raise ValueError("the target difference must be positive")
    factor = z_value(confidence) + float(stats.norm.ppf(power))
    return int(np.ceil(2 * unit_variance * factor**2 / difference**2))


def within_stratum_variance(value, weight, strata) -> float:
    """The pooled within-stratum variance of one unit's metric per unit of weight: the history's spread that a
    pilot's estimator inherits (both groups together, before any treatment)."""
    value = np.asarray(value, dtype=float)
    weight = np.broadcast_to(np.asarray(weight, dtype=float), value.shape)
    codes, labels = stratum_codes(strata)
    squares, units = 0.0, 0
    mean_weight = float(weight.mean()) if weight.size else 1.0
    for h in range(len(labels)):
        member = codes == h
        n = int(member.sum())
        if n < 2 or weight[member].sum() <= 0:
            continue
        rate = value[member].sum() / weight[member].sum()
        squares += float(np.square(value[member] - rate * weight[member]).sum())
        units += n - 1
    return squares / max(units, 1) / mean_weight**2


@dataclass(frozen=True)
class SampleRatio:
    treatment: int
    control: int
    expected_share: float  # of treatment
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA

    def sentence(self) -> str:
        total = self.treatment + self.control
        observed = self.treatment / total if total else float("nan")
        if self.mismatch:
            return (
                f"sample ratio mismatch: {self.treatment} treatment and {self.control} control accounts "
                f"({observed:.1%} treated, expected {self.expected_share:.1%}; p = {self.p_value:.2g}): find out why "
                "accounts went missing from one group before trusting the lift"
            )
        return (
            f"sample ratio as designed: {self.treatment} treatment and {self.control} control accounts "
            f"(p = {self.p_value:.2f})"
        )


def sample_ratio(treatment: int, control: int, expected_share: float = 0.5) -> SampleRatio:
    """Chi-square goodness of fit of the observed group sizes against the design's split."""
    total = treatment + control
    if total == 0 or not 0 < expected_share < 1:
        return SampleRatio(treatment, control, expected_share, float("nan"))
    expected = [total * expected_share, total * (1 - expected_share)]
    p_value = float(stats.chisquare([treatment, control], expected).pvalue)
    return SampleRatio(treatment, control, expected_share, p_value)
