"""The published precision of each output number, applied only when scores are written or answered."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Decimals each published number is rounded to (scores files, report tables and API answers alike): scores 0-100
# to 2, probabilities to 4, money to the cent. Rounding happens only here, at writing: tiers, ties and budgets are
# decided on the full-precision values.
OUTPUT_DECIMALS: dict[str, int] = {
    **dict.fromkeys(
        (
            "revenue_potential_score",
            "business_fit_score",
            "engagement_score",
            "rule_score",
            "learned_score",
            "family_learned_score",
        ),
        2,
    ),
    **dict.fromkeys(("win_probability", "pipeline_probability"), 4),
    **dict.fromkeys(
        ("expected_deal_size", "expected_value", "expected_revenue", "family_expected_revenue", "budget"), 2
    ),
    "family_engagement_share": 4,
}


def rounded(values, column: str):
    """`values` (array-like) of `column` rounded to its OUTPUT_DECIMALS as float64; other columns unchanged."""
    decimals = OUTPUT_DECIMALS.get(column)
    if decimals is None:
        return values
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        array = pd.to_numeric(pd.Series(array, dtype=object), errors="coerce").to_numpy(dtype="float64")
    return np.round(array.astype("float64"), decimals)


def round_for_output(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every OUTPUT_DECIMALS column rounded (39.199999999999996 is written 39.2)."""
    present = [column for column in frame.columns if column in OUTPUT_DECIMALS]
    if not present:
        return frame
    out = frame.copy()
    for column in present:
        out[column] = rounded(out[column].to_numpy(), column)
    return out
