"""Comparing published (rounded) numbers with the full-precision values they were rounded from."""

from __future__ import annotations

import numpy as np

from scoring.rounding import OUTPUT_DECIMALS

# The per-account numbers of a score record, which every engine publishes rounded (budget is book-level).
SCORE_NUMBERS = [
    "revenue_potential_score",
    "business_fit_score",
    "engagement_score",
    "rule_score",
    "win_probability",
    "expected_deal_size",
    "expected_value",
    "learned_score",
    "pipeline_probability",
    "expected_revenue",
]
TOLERANCE = 1e-9  # how far two engines' full-precision values may drift apart (float summation order)


def assert_published(published, full_precision, column: str) -> None:
    """`published` is `full_precision` rounded to the column's OUTPUT_DECIMALS, exactly (to 1e-9).

    Two computations that agree to 1e-9 can still round apart when a value sits on a rounding midpoint
    (12.125 against 12.1249999999), so there, and only there, one unit of the last decimal is allowed.
    Columns that are not rounded are compared to 1e-9 as they are.
    """
    published = np.asarray(published, dtype="float64")
    full_precision = np.asarray(full_precision, dtype="float64")
    decimals = OUTPUT_DECIMALS.get(column)
    if decimals is None:
        np.testing.assert_allclose(published, full_precision, rtol=0, atol=TOLERANCE, err_msg=column)
        return
    unit = 10.0**-decimals
    expected = np.round(full_precision, decimals)
    gap = np.abs(published - expected)
    on_midpoint = np.abs(np.abs(full_precision / unit) % 1 - 0.5) < TOLERANCE / unit
    both_missing = np.isnan(published) & np.isnan(expected)
    fine = both_missing | (gap <= TOLERANCE) | (on_midpoint & (gap <= unit + TOLERANCE))
    assert fine.all(), (
        f"{column}: published {published[~fine][:5]} are not the full-precision "
        f"{full_precision[~fine][:5]} rounded to {decimals} decimals"
    )
