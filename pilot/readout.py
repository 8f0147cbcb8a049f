"""From an assignment and the accounts' activity to the power before a pilot and the lift after it.

Accounts are summed into their randomised units (families when whole families were randomised together) before
estimating, so the intervals respect the clustering. The pre-period is the same length as the pilot, just before
its start; its value of the same metric is the CUPED covariate (win rate excepted: its denominator, the deals
closed, is itself an outcome of the pilot, so it is estimated without adjustment).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pilot.design import TREATMENT
from pilot.estimate import (
    Lift,
    SampleRatio,
    cuped_adjusted,
    detectable_difference,
    merge_thin_strata,
    sample_ratio,
    stratified_lift,
    units_per_group,
    within_stratum_variance,
)
from pilot.metrics import AMOUNTS, COLUMNS, LABELS, READOUT_ORDER, Metric, value_and_weight

POOLED = "pooled"


def tier_of(stratum: pd.Series) -> pd.Series:
    return stratum.astype(str).str.split("|", n=1).str[0]


def unit_table(assignment: pd.DataFrame, activity: pd.DataFrame, prior: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per randomised unit: unit, stratum, tier, treated, and each activity column summed over its accounts
    (`pre_<column>` from `prior`, the pre-period), plus `accounts`."""
    frame = assignment[["account_id", "group", "stratum"]].copy()
    family = assignment["family_id"] if "family_id" in assignment.columns else pd.Series("", index=assignment.index)
    family = family.astype("string").fillna("").str.strip()
    frame["unit"] = family.where(family != "", "account:" + frame["account_id"].astype(str)).astype(str)
    frame = frame.merge(activity, on="account_id", how="left")
    if prior is not None:
        frame = frame.merge(prior.add_prefix("pre_").rename(columns={"pre_account_id": "account_id"}), on="account_id")
    numeric = [c for c in frame.columns if c not in ("account_id", "group", "stratum", "unit")]
    frame[numeric] = frame[numeric].fillna(0.0)
    frame["accounts"] = 1.0
    units = frame.groupby("unit", sort=True).agg(
        {"group": "first", "stratum": "first", **{c: "sum" for c in [*numeric, "accounts"]}}
    )
    units["treated"] = units["group"] == TREATMENT
    units["tier"] = tier_of(units["stratum"])
    return units.reset_index()


def _metric_arrays(units: pd.DataFrame, metric: Metric, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    columns = units[[f"{prefix}{c}" for c in COLUMNS]].rename(columns=lambda c: c[len(prefix) :])
    value, weight = value_and_weight(columns, metric)
    if metric != Metric.WIN_RATE:
        weight = units["accounts"].to_numpy(float)  # per account, whatever the unit's size
    return value, weight


@dataclass(frozen=True)
class Power:
    """What the design can detect in its metric, from the history of the same accounts."""

    metric: Metric
    baseline: float  # per account (or the win rate) over one pre-period, both groups
    detectable_difference: float
    detectable_lift: float  # relative to the baseline (0.25: +25%)
    with_cuped: bool  # the history had a second period to measure CUPED's gain from
    units_per_group_for_target: int | None = None
    target_lift: float | None = None

    def sentence(self) -> str:
        label = LABELS[self.metric]
        how = "with CUPED on the pre-period" if self.with_cuped else "without variance reduction"
        text = (
            f"power: with 80% power at 5% significance the design detects a lift in {label} of "
            f"{self.detectable_lift:+.0%} or more (a difference of {_amount(self.metric, self.detectable_difference)} "
            f"per account on a baseline of {_amount(self.metric, self.baseline)}), {how}"
        )
        if self.target_lift is not None and self.units_per_group_for_target is not None:
            text += (
                f"; a lift of {self.target_lift:+.0%} needs about {self.units_per_group_for_target:,} units per group"
            )
        return text


def _amount(metric: Metric, value: float) -> str:
    if metric == Metric.WIN_RATE:
        return f"{value:.1%}"
    if metric in AMOUNTS:
        return f"${value:,.0f}"
    return f"{value:.2f}"


def design_power(
    assignment: pd.DataFrame,
    metric: Metric,
    history: pd.DataFrame,
    earlier: pd.DataFrame | None = None,
    target_lift: float | None = None,
) -> Power:
    """The smallest lift the assignment detects (80% power, 5% two-sided), with the estimator the readout uses,
    applied to the last pre-period (`history`), CUPED-adjusted by the period before it (`earlier`) when given."""
    units = unit_table(assignment, history, earlier)
    strata = merge_thin_strata(units["stratum"], units["treated"])
    treated = units["treated"].to_numpy()
    value, weight = _metric_arrays(units, metric)
    with_cuped = earlier is not None and metric != Metric.WIN_RATE
    estimate_on = value
    if with_cuped:
        covariate, _ = _metric_arrays(units, metric, prefix="pre_")
        estimate_on, _ = cuped_adjusted(value, weight, covariate, strata, treated)
    lift = stratified_lift(estimate_on, weight, strata, treated)
    baseline = float(value.sum() / weight.sum()) if weight.sum() > 0 else float("nan")
    difference = float(detectable_difference(lift.standard_error))
    needed = None
    if target_lift is not None and baseline > 0:
        variance = within_stratum_variance(estimate_on, weight, strata)
        needed = units_per_group(variance, target_lift * baseline)
    return Power(
        metric=metric,
        baseline=baseline,
        detectable_difference=difference,
        detectable_lift=difference / baseline if baseline > 0 else float("nan"),
        with_cuped=with_cuped,
        units_per_group_for_target=needed,
        target_lift=target_lift,
    )


@dataclass
class Readout:
    lift: pd.DataFrame  # metric, scope, kind, estimate, low, high, p_value, treatment, control, estimator
    groups: pd.DataFrame  # metric, scope, group, accounts, value
    four_groups: pd.DataFrame  # score_band, group, accounts, then one column per metric
    narrowing: pd.DataFrame  # metric, scope, plain_width, cuped_width, narrower_by
    ratio_check: SampleRatio
    verdict: str
    metric: Metric
    notes: list[str] = field(default_factory=list)


def _rows(metric: Metric, scope: str, lift: Lift, estimator: str) -> list[dict]:
    common = {
        "metric": str(metric),
        "scope": scope,
        "treatment": float(lift.treatment),
        "control": float(lift.control),
        "estimator": estimator,
    }
    return [
        {
            **common,
            "kind": "difference",
            "estimate": float(lift.difference),
            "low": float(lift.difference_low),
            "high": float(lift.difference_high),
            "p_value": float(lift.difference_p),
        },
        {
            **common,
            "kind": "ratio",
            "estimate": float(lift.ratio),
            "low": float(lift.ratio_low),
            "high": float(lift.ratio_high),
            "p_value": float(lift.ratio_p),
        },
    ]


LIFT_COLUMNS = ["metric", "scope", "kind", "estimate", "low", "high", "p_value", "treatment", "control", "estimator"]


def read_out(
    assignment: pd.DataFrame,
    activity: pd.DataFrame,
    prior: pd.DataFrame,
    metric: Metric,
    detectable_lift: float | None = None,
    score_band: pd.Series | None = None,
) -> Readout:
    """Every metric, pooled and per tier: treatment against control, stratified, CUPED where it applies."""
    units = unit_table(assignment, activity, prior)
    lift_rows: list[dict] = []
    group_rows: list[dict] = []
    narrowing: list[dict] = []
    notes: list[str] = []
    scopes = [(POOLED, np.ones(len(units), dtype=bool))]
    tiers = sorted(units["tier"].unique())
    if len(tiers) > 1:
        scopes += [(tier, (units["tier"] == tier).to_numpy()) for tier in tiers]
    for scope, member in scopes:
        part = units[member].reset_index(drop=True)
        treated = part["treated"].to_numpy()
        if treated.sum() < 2 or (~treated).sum() < 2:
            notes.append(f"{scope}: fewer than two units in a group, no estimate")
            continue
        strata = merge_thin_strata(part["stratum"], treated)
        for name in READOUT_ORDER:
            value, weight = _metric_arrays(part, name)
            plain = stratified_lift(value, weight, strata, treated)
            chosen, estimator = plain, "stratified"
            if name != Metric.WIN_RATE:
                covariate, _ = _metric_arrays(part, name, prefix="pre_")
                adjusted, _ = cuped_adjusted(value, weight, covariate, strata, treated)
                cuped = stratified_lift(adjusted, weight, strata, treated)
                if np.isfinite(cuped.standard_error):
                    chosen, estimator = cuped, "stratified, CUPED"
                    plain_width = float(plain.difference_high - plain.difference_low)
                    cuped_width = float(cuped.difference_high - cuped.difference_low)
                    narrowing.append(
                        {
                            "metric": str(name),
                            "scope": scope,
                            "plain_width": plain_width,
                            "cuped_width": cuped_width,
                            "narrower_by": 1 - cuped_width / plain_width if plain_width > 0 else float("nan"),
                        }
                    )
            lift_rows += _rows(name, scope, chosen, estimator)
            for group, is_treated in (("treatment", True), ("control", False)):
                group_rows.append(
                    {
                        "metric": str(name),
                        "scope": scope,
                        "group": group,
                        "accounts": int(part.loc[treated == is_treated, "accounts"].sum()),
                        "value": float(plain.treatment if is_treated else plain.control),
                    }
                )
    lift = pd.DataFrame(lift_rows, columns=LIFT_COLUMNS)
    accounts_treated = int((assignment["group"] == TREATMENT).sum())
    check = sample_ratio(accounts_treated, len(assignment) - accounts_treated)
    if "family_id" in assignment.columns:
        check = sample_ratio(int(units["treated"].sum()), int((~units["treated"]).sum()))
    return Readout(
        lift=lift,
        groups=pd.DataFrame(group_rows, columns=["metric", "scope", "group", "accounts", "value"]),
        four_groups=four_group_table(assignment, activity, score_band),
        narrowing=pd.DataFrame(narrowing, columns=["metric", "scope", "plain_width", "cuped_width", "narrower_by"]),
        ratio_check=check,
        verdict=verdict(lift, metric, detectable_lift, check),
        metric=metric,
        notes=notes,
    )


def four_group_table(
    assignment: pd.DataFrame, activity: pd.DataFrame, score_band: pd.Series | None = None
) -> pd.DataFrame:
    """High and low score, treated and control: per account means of each metric (win rate: won over closed).
    The band is the assignment's `score_band` column when given, else the tier."""
    frame = assignment.merge(activity, on="account_id", how="left").fillna(
        {c: 0.0 for c in activity.columns if c != "account_id"}
    )
    if score_band is not None:
        frame["score_band"] = score_band.to_numpy()
    elif "score_band" not in frame.columns:
        frame["score_band"] = tier_of(frame["stratum"])
    rows = []
    for (band, group), part in frame.groupby(["score_band", "group"], sort=True):
        closed = part["closed_deals"].sum()
        rows.append(
            {
                "score_band": band,
                "group": group,
                "accounts": len(part),
                "pipeline": part["pipeline"].mean(),
                "win_rate": part["deals_won"].sum() / closed if closed else float("nan"),
                "won_revenue": part["won_revenue"].mean(),
                "deals_won": part["deals_won"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=["score_band", "group", "accounts", *[str(m) for m in READOUT_ORDER]])


def _percent(value: float) -> str:
    return f"{value - 1:+.0%}"


def verdict(lift: pd.DataFrame, metric: Metric, detectable_lift: float | None, check: SampleRatio) -> str:
    """One sentence on the design's metric, pooled: roll out, do not, or no detectable lift (and what the design
    could have detected)."""
    label = LABELS[metric]
    row = lift[(lift["metric"] == str(metric)) & (lift["scope"] == POOLED) & (lift["kind"] == "ratio")]
    if row.empty or not np.isfinite(row["low"].iloc[0]):
        text = f"{label}: no estimate (too few accounts or no activity in a group)"
    else:
        estimate, low, high = (float(row[c].iloc[0]) for c in ("estimate", "low", "high"))
        interval = f"{_percent(estimate)} (95% CI {_percent(low)} to {_percent(high)})"
        if low > 1:
            text = f"{label} {interval}: roll out"
        elif high < 1:
            text = f"{label} {interval}: do not roll out, the treatment lowered it"
        else:
            could = f"; the design could detect {detectable_lift:+.0%}" if detectable_lift is not None else ""
            text = f"no detectable lift in {label}, {interval}{could}"
    if check.mismatch:
        text = f"{check.sentence()}. Until then: {text}"
    return text
