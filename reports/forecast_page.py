"""The `tiering forecast` page (forecast.html): the per-tier forecast inside the horizon with its 80% intervals,
a fan chart per tier (won revenue through the horizon), and the backtest when one was run."""

from __future__ import annotations

import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure

from ingest.display import compact_money, count, money, percent
from reports.html import Column, figure, render, table
from scoring.forecast import OVERALL, SIMULATIONS

FAN_TIERS = ("tier_1", "tier_2", "tier_3", "untiered", OVERALL)


def _interval(name: str, fmt) -> Column:
    def cell(r) -> str:
        if r[name] != r[name]:  # NaN: an amount the export does not have, and so is its interval
            return "unknown"
        return f"{fmt(r[name])} ({fmt(r[name + '_low'])} – {fmt(r[name + '_high'])})"

    return Column(name.replace("_", " ").capitalize(), cell)


def fan_chart(fan: pd.DataFrame) -> Figure:
    """Won revenue through the horizon per tier: the point forecast and its 80% band, one small panel each."""
    chart = Figure(figsize=(12, 2.8))
    axes = chart.subplots(1, len(FAN_TIERS), sharex=True)
    for axis, tier in zip(axes, FAN_TIERS):
        part = fan[fan["tier"] == tier].sort_values("day")
        days = [0, *part["day"].tolist()]
        low = [0, *(part["won_revenue_low"] / 1e6).tolist()]
        high = [0, *(part["won_revenue_high"] / 1e6).tolist()]
        point = [0, *(part["won_revenue"] / 1e6).tolist()]
        axis.fill_between(days, low, high, color="#1f6feb", alpha=0.25, linewidth=0, label="80% interval")
        axis.plot(days, point, color="#1f6feb", linewidth=1.6, label="expected")
        axis.set_title(tier.replace("_", " ").title(), fontsize=10)
        axis.set_xlabel("days ahead", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("won revenue ($M)", fontsize=8)
    axes[0].legend(fontsize=7, loc="upper left")
    chart.tight_layout()
    return chart


def forecast_tier_table(forecast: pd.DataFrame) -> Markup:
    """Per tier: accounts, and each quantity's point forecast with its 80% interval (this page and compare's)."""
    return table(
        forecast,
        [
            Column("Tier", "tier", numeric=False, kind="tier"),
            Column("Accounts", "accounts", count),
            _interval("new_opportunities", count),
            _interval("pipeline_value", compact_money),
            _interval("deals_won", count),
            _interval("won_revenue", compact_money),
        ],
    )


def render_forecast(
    forecast: pd.DataFrame,
    fan: pd.DataFrame,
    summary: pd.DataFrame | None,
    backtest: pd.DataFrame | None,
    as_of: pd.Timestamp,
    horizon: int,
    version: str,
    data_label: str,
    simulations: int = SIMULATIONS,
) -> str:
    """The forecast page; `simulations`: how many drew each interval (the page says so)."""
    overall = forecast[forecast["tier"] == OVERALL].iloc[0]
    forecast_table = forecast_tier_table(forecast)
    backtest_table = None
    summary_table = None
    if backtest is not None and summary is not None:
        revenue = backtest[backtest["quantity"] == "won_revenue"]
        backtest_table = table(
            revenue,
            [
                Column("Origin", "origin", numeric=False),
                Column("Tier", "tier", numeric=False, kind="tier"),
                Column("Predicted", "predicted", money),
                Column("80% interval", lambda r: f"{money(r['low'])} – {money(r['high'])}"),
                Column("Actual", "actual", money),
                Column("Inside", lambda r: "yes" if r["covered"] else "no", numeric=False),
            ],
        )
        summary_table = table(
            summary,
            [
                Column("Quantity", lambda r: r["quantity"].replace("_", " "), numeric=False),
                Column("Cells", "cells", count),
                Column("Interval coverage", "coverage", percent),
                Column("Point error (MAPE)", "mape", percent),
            ],
        )
    end = as_of + pd.Timedelta(days=horizon - 1)
    return render(
        "forecast.html",
        as_of=as_of,
        end=end,
        horizon=horizon,
        version=version,
        data_label=data_label,
        simulations=simulations,
        overall=overall,
        forecast_table=forecast_table,
        amounts_known=bool(forecast["won_revenue"].notna().any()),
        fan_figure=figure(
            fan_chart(fan),
            "The line is the expected won revenue from the as-of date to each day of the horizon; the "
            "band holds 80% of the simulated outcomes.",
            "Fan chart of won revenue per tier",
        ),
        backtest_table=backtest_table,
        summary_table=summary_table,
        written=pd.Timestamp.now(tz="UTC"),
    )
