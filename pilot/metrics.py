"""What a pilot measures, per account and period, from the canonical opportunities table.

- pipeline: the amount of opportunities created in the period;
- deals_won: opportunities won with a close date in the period, and won_revenue their amount;
- win_rate: won over closed (won or lost) with a close date in the period, a ratio of two sums.

A period is the half-open day range [start, end). Opportunities without an amount count 0 towards the amounts.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd


class Metric(StrEnum):
    PIPELINE = "pipeline"
    WIN_RATE = "win_rate"
    WON_REVENUE = "won_revenue"
    DEALS_WON = "deals_won"


LABELS = {
    Metric.PIPELINE: "pipeline created",
    Metric.WIN_RATE: "win rate",
    Metric.WON_REVENUE: "won revenue",
    Metric.DEALS_WON: "deals won",
}
READOUT_ORDER = (Metric.PIPELINE, Metric.WIN_RATE, Metric.WON_REVENUE, Metric.DEALS_WON)
AMOUNTS = {Metric.PIPELINE, Metric.WON_REVENUE}
COLUMNS = ("pipeline", "deals_won", "won_revenue", "closed_deals")


def account_activity(opportunities: pd.DataFrame, account_ids, start, end) -> pd.DataFrame:
    """One row per account in `account_ids` (in that order): pipeline, deals_won, won_revenue, closed_deals over
    [start, end)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    ids = pd.Index(pd.Series(account_ids, dtype=str))
    opportunities = opportunities[opportunities["account_id"].astype(str).isin(ids)]
    amount = pd.to_numeric(opportunities.get("amount"), errors="coerce").fillna(0.0) if len(opportunities) else 0.0
    created = opportunities["created_date"]
    created_in = (created >= start) & (created < end)
    close = opportunities["close_date"] if "close_date" in opportunities else pd.Series(pd.NaT, index=created.index)
    outcome = opportunities["outcome"].astype(str).str.lower()
    closed_in = (close >= start) & (close < end) & outcome.isin(["won", "lost"])
    won_in = closed_in & (outcome == "won")
    frame = pd.DataFrame(
        {
            "account_id": opportunities["account_id"].astype(str),
            "pipeline": np.where(created_in, amount, 0.0),
            "deals_won": won_in.astype(float),
            "won_revenue": np.where(won_in, amount, 0.0),
            "closed_deals": closed_in.astype(float),
        }
    )
    totals = frame.groupby("account_id")[list(COLUMNS)].sum()
    return totals.reindex(ids, fill_value=0.0).rename_axis("account_id").reset_index()


def value_and_weight(activity: pd.DataFrame, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """The ratio estimator's numerator and denominator per account for a metric."""
    if metric == Metric.WIN_RATE:
        return activity["deals_won"].to_numpy(float), activity["closed_deals"].to_numpy(float)
    return activity[str(metric)].to_numpy(float), np.ones(len(activity))
