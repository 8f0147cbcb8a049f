"""Rule-based fit scores, 0-100 each, from the point-in-time feature rows (formulas in docs/scoring.md).

Each function takes the feature rows as a DataFrame or as a mapping of column name to array (what
the service builds for a request) and answers numpy arrays, so both paths run the same arithmetic.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from features.config import CHANNELS, ModelConfig
from features.pointintime import OTHER

RULE_COLUMNS = ("revenue_potential_score", "business_fit_score", "engagement_score", "rule_score")

Features: TypeAlias = pd.DataFrame | Mapping[str, np.ndarray]


def _floats(features: Features, column: str) -> np.ndarray:
    return np.asarray(features[column], dtype="float64")


def _log_scaled(values: np.ndarray, floor: float, ceiling: float) -> np.ndarray:
    """0 at or below floor, 1 at or above ceiling, linear in log10 between; NaN stays NaN."""
    logs = np.log10(np.clip(values, 1e-9, None))
    return np.clip((logs - np.log10(floor)) / (np.log10(ceiling) - np.log10(floor)), 0.0, 1.0)


def revenue_potential_score(features: Features, config: ModelConfig) -> np.ndarray:
    rules = config.revenue_potential
    revenue = _log_scaled(_floats(features, "annual_revenue"), rules.revenue_floor, rules.revenue_ceiling)
    staff = _log_scaled(_floats(features, "employees"), rules.employees_floor, rules.employees_ceiling)
    # With one of the two missing, the other stands in for both; with both missing, no evidence = 0.
    revenue_part = np.where(np.isnan(revenue), staff, revenue)
    staff_part = np.where(np.isnan(staff), revenue, staff)
    blended = rules.revenue_share * revenue_part + (1 - rules.revenue_share) * staff_part
    return np.nan_to_num(blended, nan=0.0) * 100.0


SMALL_BOOK = 64  # below this many rows a plain loop beats pandas' vectorised set-up (a service request)


def _in(features: Features, column: str, allowed: list[str]) -> np.ndarray:
    """Whether each (cleaned, lower-case) value is one of `allowed`; missing values never are."""
    wanted = {a.lower() for a in allowed}
    values = np.asarray(features[column], dtype=object)
    if len(values) > SMALL_BOOK:
        return pd.Series(values, dtype=object).isin(wanted).to_numpy(dtype=bool)
    return np.fromiter((value in wanted for value in values), dtype=bool, count=len(values))


def icp_parts(features: Features, config: ModelConfig) -> dict[str, np.ndarray]:
    """Which ICP criteria each account meets, and whether it is excluded from the ICP altogether."""
    icp = config.business_fit
    employees = _floats(features, "employees")
    return {
        "industry_fit": _in(features, "industry", icp.industries),
        "size_fit": (employees >= icp.employees_min) & (employees <= icp.employees_max),
        "geography_fit": _in(features, "country", icp.countries) | _in(features, "region", icp.regions),
        "tech_fit": np.minimum(_floats(features, "tech_icp_matches") / icp.tech_matches_for_full_points, 1.0),
        "in_icp": ~(
            _in(features, "industry", icp.excluded_industries) | _in(features, "country", icp.excluded_countries)
        ),
    }


def business_fit_score(
    features: Features, config: ModelConfig, parts: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    icp, parts = config.business_fit, parts if parts is not None else icp_parts(features, config)
    return (
        icp.industry_points * parts["industry_fit"]
        + icp.size_points * parts["size_fit"]
        + icp.geography_points * parts["geography_fit"]
        + icp.tech_points * parts["tech_fit"]
    ).astype("float64")


def engagement_points(features: Features, config: ModelConfig) -> np.ndarray:
    weights = config.engagement.channel_weights
    points = np.zeros(len(_floats(features, f"eng_w_{OTHER}")))
    for channel in CHANNELS:
        points += weights.get(channel, config.engagement.unknown_channel_weight) * _floats(features, f"eng_w_{channel}")
    return points + config.engagement.unknown_channel_weight * _floats(features, f"eng_w_{OTHER}")


def engagement_score(features: Features, config: ModelConfig) -> np.ndarray:
    """Recency-weighted activity mapped onto 0-100 with diminishing returns (never above 100)."""
    points = engagement_points(features, config)
    return 100.0 * (1.0 - np.exp(-points / config.engagement.saturation_points))


def rule_score_columns(features: Features, config: ModelConfig) -> dict[str, np.ndarray]:
    """The three component scores, their weighted `rule_score`, and `in_icp`."""
    weights = config.rule_weights
    parts = icp_parts(features, config)
    scores = {
        "revenue_potential_score": revenue_potential_score(features, config),
        "business_fit_score": business_fit_score(features, config, parts),
        "engagement_score": engagement_score(features, config),
    }
    scores["rule_score"] = (
        weights.revenue_potential * scores["revenue_potential_score"]
        + weights.business_fit * scores["business_fit_score"]
        + weights.engagement * scores["engagement_score"]
    )
    scores["in_icp"] = parts["in_icp"]
    return scores


def with_rule_score_columns(features: Features, config: ModelConfig) -> Mapping[str, Any]:
    """The feature columns with `rule_score_columns` over them. A frame stays behind a ChainMap, uncopied; a mapping
    of arrays (the service's) merges into one dict, since the matrices read every column and a ChainMap's lookups
    cost a microsecond each."""
    scores = rule_score_columns(features, config)
    if isinstance(features, pd.DataFrame):
        return ChainMap(scores, features)
    return {**features, **scores}


def rule_scores(features: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """`rule_score_columns` as a frame on the feature rows' index."""
    return pd.DataFrame(rule_score_columns(features, config), index=features.index)


def with_rule_scores(features: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """Feature rows plus the rule component scores (which the learners also use as features), as a new frame."""
    scores = rule_scores(features, config)
    return pd.concat([features.drop(columns=[c for c in scores.columns if c in features.columns]), scores], axis=1)
