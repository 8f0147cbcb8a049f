"""`tiering whatif`: a scenario against the active configuration, judged on the current book and on the past.

The preview (who enters or leaves each tier, and the budget) comes from `scoring.scenarios`; this module adds the
backtest, both configurations applied as of a past date and measured against what then happened (the counting of
`tiering review`, re-used: `reports.review.period_deals` and `outcomes_by_tier`), and the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import TIER_NAMES
from features.schema import CrmData
from reports.html import Column, count, money, percent, points, render, signed, table
from reports.review import Period, outcomes_by_tier, period_deals
from scoring.scenarios import ScenarioComparison

TOP_TWO = "tier_1+2"
CONFIGURATIONS = ("active", "scenario")
BACKTEST_TIERINGS = ("final", "rule")
MOVERS_SHOWN = 60  # the page's list; accounts.csv and moves.csv hold every account


def backtest(
    data: CrmData, period: Period, active: pd.DataFrame, scenario: pd.DataFrame, tierings=BACKTEST_TIERINGS
) -> pd.DataFrame:
    """Per configuration, tiering (final, rule) and tier, plus Tier 1+2 together: what the accounts so tiered as of
    the period's start did inside it (pipeline created, deals closed and won, won revenue and each one's share) and
    the lift (share of won revenue over share of accounts; 1 is no better than chance)."""
    deals = period_deals(data, period, active["account_id"])
    total_pipeline = float(deals.created["amount"].fillna(0).sum())
    frames = []
    for name, scores in zip(CONFIGURATIONS, (active, scenario)):
        outcomes = outcomes_by_tier(scores, deals, None)
        outcomes = outcomes[outcomes["tiering"].isin(tierings)]
        top = (
            outcomes[outcomes["tier"].isin(TIER_NAMES[:2])]
            .groupby("tiering", as_index=False)[
                ["accounts", "pipeline_created", "pipeline_amount", "deals_closed", "deals_won", "won_revenue"]
            ]
            .sum()
            .assign(tier=TOP_TWO)
        )
        top["revenue_share"] = top["won_revenue"] / float(deals.closed.loc[deals.closed["won"] == 1, "amount"].sum())
        top["win_rate"] = np.where(
            top["deals_closed"] > 0, top["deals_won"] / top["deals_closed"].clip(lower=1), np.nan
        )
        both = pd.concat([outcomes, top], ignore_index=True)
        both.insert(0, "configuration", name)
        frames.append(both)
    table_ = pd.concat(frames, ignore_index=True)
    table_["pipeline_share"] = table_["pipeline_amount"] / total_pipeline if total_pipeline else np.nan
    account_share = table_["accounts"] / len(active)
    table_["lift"] = np.where(
        account_share > 0, table_["revenue_share"] / account_share.where(account_share > 0), np.nan
    )
    columns = [
        "configuration",
        "tiering",
        "tier",
        "accounts",
        "pipeline_created",
        "pipeline_amount",
        "pipeline_share",
        "deals_closed",
        "deals_won",
        "win_rate",
        "won_revenue",
        "revenue_share",
        "lift",
    ]
    order = {tier: rank for rank, tier in enumerate([*TIER_NAMES[:2], TOP_TWO, *TIER_NAMES[2:], "untiered"])}
    table_ = table_.assign(_order=table_["tier"].map(order)).sort_values(["configuration", "tiering", "_order"])
    return table_[columns].reset_index(drop=True)


def headline(backtest_table: pd.DataFrame, tiering: str = "final") -> dict[str, float]:
    """Tier 1+2's share of the period's won revenue, per configuration."""
    rows = backtest_table[(backtest_table["tier"] == TOP_TWO) & (backtest_table["tiering"] == tiering)]
    return {row.configuration: float(row.revenue_share) for row in rows.itertuples()}


@dataclass(frozen=True)
class WhatIfResult:
    comparison: ScenarioComparison
    changes: dict[str, dict[str, object]]  # dotted key -> before, after
    retrain_keys: list[str]  # changed keys that feed the learners
    source: str  # where the parts came from (a published scoring, or the book scored now)
    as_of: str
    backtest: pd.DataFrame | None
    period: str | None
    note: str | None = None  # how a suggested scenario was found

    def summary(self) -> dict:
        """What the workspace stores of a run (JSON-ready): changes, tier table, backtest, movers."""
        moves = self.comparison.moves.head(MOVERS_SHOWN)
        return {
            "as_of": self.as_of,
            "source": self.source,
            "changes": self.changes,
            "retrain_keys": self.retrain_keys,
            "tiers": self.comparison.tiers.to_dict("records"),
            "moves": int(len(self.comparison.moves)),
            "movers": moves.replace({np.nan: None}).to_dict("records"),
            "period": self.period,
            "note": self.note,
            "backtest": None if self.backtest is None else self.backtest.replace({np.nan: None}).to_dict("records"),
        }


def _tier(title: str, column: str) -> Column:
    return Column(title, column, numeric=False, kind="tier")


def render_whatif(result: WhatIfResult, draft_label: str) -> str:
    """The `tiering whatif` page (whatif.html)."""
    comparison = result.comparison
    tiers = table(
        comparison.tiers,
        [
            _tier("Tier", "tier"),
            Column("Accounts before", "accounts_before", count),
            Column("After", "accounts_after", count),
            Column("Entered", "entered", count),
            Column("Left", "left", count),
            Column("Budget before", "budget_before", money),
            Column("After", "budget_after", money),
            Column("Change", "budget_change", lambda v: "–" if v != v else f"{'+' if v >= 0 else '-'}${abs(v):,.0f}"),
        ],
    )
    movers = table(
        comparison.moves.head(MOVERS_SHOWN),
        [
            Column("Account", "account_id", numeric=False),
            _tier("Before", "tier_before"),
            _tier("After", "tier_after"),
            Column("Levels", "levels", kind="levels"),
            Column(
                "Rule score",
                lambda r: (points(r["rule_score_after"]), f"was {points(r['rule_score_before'])}"),
                kind="stack",
            ),
            Column(
                "Learned score",
                lambda r: (points(r["learned_score_after"]), f"was {points(r['learned_score_before'])}"),
                kind="stack",
            ),
            Column("Budget", lambda r: (money(r["budget_after"]), f"was {money(r['budget_before'])}"), kind="stack"),
            Column("Why", "why", numeric=False, kind="note"),
        ],
    )
    changes = pd.DataFrame(
        [
            {"key": key, "before": str(value["before"]), "after": str(value["after"])}
            for key, value in result.changes.items()
        ]
    )
    changes_table = (
        table(
            changes,
            [
                Column("Key", "key", numeric=False),
                Column("Active", "before", numeric=False),
                Column("Scenario", "after", numeric=False),
            ],
        )
        if len(changes)
        else None
    )
    backtest_table = None
    shares = {}
    if result.backtest is not None:
        shown = result.backtest[result.backtest["tiering"] == "final"]
        backtest_table = table(
            shown,
            [
                Column("Configuration", "configuration", numeric=False),
                Column("Tier", "tier", lambda v: "Tier 1 + 2 together" if v == TOP_TWO else v, False, "tier"),
                Column("Accounts", "accounts", count),
                Column("Pipeline", "pipeline_amount", money),
                Column("Pipeline share", "pipeline_share", percent),
                Column("Deals won", "deals_won", count),
                Column("Win rate", "win_rate", percent),
                Column("Won revenue", "won_revenue", money),
                Column("Revenue share", "revenue_share", percent),
                Column("Lift", "lift", lambda v: "–" if v != v else f"{v:.2f}"),
            ],
        )
        shares = headline(result.backtest)
    moved = len(comparison.moves)
    return render(
        "whatif.html",
        r=result,
        draft=draft_label,
        moved=moved,
        up=int((comparison.moves["levels"] > 0).sum()) if moved else 0,
        down=int((comparison.moves["levels"] < 0).sum()) if moved else 0,
        accounts=len(comparison.accounts),
        tiers_table=tiers,
        moves_table=movers,
        changes_table=changes_table,
        backtest_table=backtest_table,
        shares=shares,
        signed=signed,
        written=pd.Timestamp.now(tz="UTC"),
        movers_shown=MOVERS_SHOWN,
    )
