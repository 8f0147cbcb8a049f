"""Numbers and tiers as people read them, on every page: the reports (Jinja2 filters) and the workspace alike.

Here, below both the service and the reports in the layers, so each page formats a figure the one way.
"""

from __future__ import annotations

import math

import pandas as pd

from features.config import UNTIERED
from scoring.reasons import money as reasons_money

MISSING = "–"
TIER_LABELS = {"tier_1": "Tier 1", "tier_2": "Tier 2", "tier_3": "Tier 3", UNTIERED: "Untiered"}


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def count(value) -> str:
    """A count to the nearest whole (an expected 134.9 deals reads 135, never a truncated 134)."""
    return MISSING if _missing(value) else f"{round(float(value)):,}"


def percent(value, digits: int = 0) -> str:
    return MISSING if _missing(value) else f"{value:.{digits}%}"


def money(value) -> str:
    return MISSING if _missing(value) else f"${value:,.0f}"


def compact_money(value) -> str:
    """$950, $12.3k, $4.5M: the one compact form (scoring.reasons.compact), for cells holding a figure and its
    interval."""
    return MISSING if _missing(value) else reasons_money(value)


def points(value) -> str:
    return MISSING if _missing(value) else f"{value:.0f}"


def signed(value) -> str:
    return MISSING if _missing(value) else f"{int(value):+,}"


def decimals(value, digits: int = 2) -> str:
    """A number with `digits` decimals and thousands separators (a score, kappa, AUC, Brier score)."""
    return MISSING if _missing(value) else f"{value:,.{digits}f}"


def date(value, format: str = "%d %b %Y") -> str:
    return MISSING if _missing(value) else f"{pd.Timestamp(value):{format}}"


def tier_label(tier: str | None) -> str:
    """Tier 1, Tier 2, Tier 3, Untiered; any other tier name as it is."""
    return MISSING if tier is None or tier == "" or _missing(tier) else TIER_LABELS.get(tier, str(tier))
