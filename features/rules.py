"""Rule-based fit scores, 0-100 each, from the point-in-time feature rows (formulas in the README)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import CHANNELS, TieringConfig
from features.pointintime import OTHER

RULE_COLUMNS = ("revenue_potential_score", "business_fit_score", "engagement_score", "rule_score")


def _log_scaled(values: pd.Series, floor: float, ceiling: float) -> np.ndarray:
    """0 at or below floor, 1 at or above ceiling, linear in log10 between; NaN stays NaN."""
    logs = np.log10(np.clip(values.to_numpy(dtype="float64"), 1e-9, None))
    return np.clip((logs - np.log10(floor)) / (np.log10(ceiling) - np.log10(floor)), 0.0, 1.0)


def revenue_potential_score(features: pd.DataFrame, config: TieringConfig) -> pd.Series:
    rules = config.revenue_potential
    revenue = _log_scaled(features["annual_revenue"], rules.revenue_floor, rules.revenue_ceiling)
    staff = _log_scaled(features["employees"], rules.employees_floor, rules.employees_ceiling)
    # With one of the two missing, the other stands in for both; with both missing, no evidence = 0.
    revenue_part = np.where(np.isnan(revenue), staff, revenue)
    staff_part = np.where(np.isnan(staff), revenue, staff)
    blended = rules.revenue_share * revenue_part + (1 - rules.revenue_share) * staff_part
    return pd.Series(np.nan_to_num(blended, nan=0.0) * 100.0, index=features.index, name="revenue_potential_score")


def _in(values: pd.Series, allowed: list[str]) -> np.ndarray:
    return values.isin([a.lower() for a in allowed]).to_numpy(dtype=bool)


def icp_parts(features: pd.DataFrame, config: TieringConfig) -> pd.DataFrame:
    """Which ICP criteria each account meets, and whether it is excluded from the ICP altogether."""
    icp = config.business_fit
    employees = features["employees"].to_numpy(dtype="float64")
    return pd.DataFrame(
        {
            "industry_fit": _in(features["industry"], icp.industries),
            "size_fit": (employees >= icp.employees_min) & (employees <= icp.employees_max),
            "geography_fit": _in(features["country"], icp.countries) | _in(features["region"], icp.regions),
            "tech_fit": np.minimum(features["tech_icp_matches"].to_numpy(dtype="float64") / icp.tech_matches_for_full_points, 1.0),
            "in_icp": ~(_in(features["industry"], icp.excluded_industries) | _in(features["country"], icp.excluded_countries)),
        },
        index=features.index,
    )


def business_fit_score(features: pd.DataFrame, config: TieringConfig) -> pd.Series:
    icp, parts = config.business_fit, icp_parts(features, config)
    score = (
        icp.industry_points * parts["industry_fit"]
        + icp.size_points * parts["size_fit"]
        + icp.geography_points * parts["geography_fit"]
        + icp.tech_points * parts["tech_fit"]
    )
    return pd.Series(score.to_numpy(dtype="float64"), index=features.index, name="business_fit_score")


def engagement_points(features: pd.DataFrame, config: TieringConfig) -> np.ndarray:
    weights = config.engagement.channel_weights
    points = np.zeros(len(features))
    for channel in CHANNELS:
        points += weights.get(channel, config.engagement.unknown_channel_weight) * features[f"eng_w_{channel}"].to_numpy()
    return points + config.engagement.unknown_channel_weight * features[f"eng_w_{OTHER}"].to_numpy()


def engagement_score(features: pd.DataFrame, config: TieringConfig) -> pd.Series:
    """Recency-weighted activity mapped onto 0-100 with diminishing returns (never above 100)."""
    points = engagement_points(features, config)
    score = 100.0 * (1.0 - np.exp(-points / config.engagement.saturation_points))
    return pd.Series(score, index=features.index, name="engagement_score")


def rule_scores(features: pd.DataFrame, config: TieringConfig) -> pd.DataFrame:
    """The three component scores, their weighted `rule_score`, and `in_icp`."""
    weights = config.rule_weights
    scores = pd.DataFrame(
        {
            "revenue_potential_score": revenue_potential_score(features, config),
            "business_fit_score": business_fit_score(features, config),
            "engagement_score": engagement_score(features, config),
        }
    )
    scores["rule_score"] = (
        weights.revenue_potential * scores["revenue_potential_score"]
        + weights.business_fit * scores["business_fit_score"]
        + weights.engagement * scores["engagement_score"]
    )
    scores["in_icp"] = icp_parts(features, config)["in_icp"].to_numpy()
    return scores
