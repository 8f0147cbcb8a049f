"""The page of `tiering review` (reports/templates/review.html): figures, tables and words for a `reports.review`
result. Python prepares the values; the markup is in the template (Jinja2, autoescaped, via reports.html)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingest.display import count, decimals, money, percent, points
from reports import html
from reports.html import Column
from reports.review import COMPONENTS, HOLDS, RETRAIN, TIERS, TOO_EARLY, QuarterlyReview
from training import plots
from training.evaluate import won_revenue_by_account

REVIEW_PAGE = "review.html"
MOVES_SHOWN = 25
DRIFT_SHOWN = 15

CAPTIONS = {  # how to read each figure, one line each
    "outcomes": "each bar is one tiering's tier as the past scoring placed it; a tiering that paid off has the "
    "highest win rate and most of the period's won revenue in Tier 1 and 2, and little in Untiered.",
    "gain": "accounts ordered by each past score, best first; the higher a curve at a given share of accounts, the "
    "more of the period's won revenue those accounts brought. Lift is that share divided by the share of accounts "
    "(the dashed line, 1, is a random order).",
    "calibration": "each point is a tenth of the period's deals, grouped by the win probability their account had at "
    "the past scoring; on the dashed diagonal, deals predicted to win 30% of the time won 30% of the time.",
    "deal_size": "each dot is a deal won in the period: right is what the model expected a won deal with the account "
    "to be worth, up is what it was; dots on the dashed line were predicted exactly, above it were bigger.",
    "drift": "one bar per feature, largest shift first: 0 means the book now looks like the population the model was "
    "trained on; past the dotted line (0.1) it has moved, past the dashed line it has moved enough to retrain.",
    "components": "the share of the same accounts at each rule score, at the past scoring (grey) and now (blue); "
    "curves that sit apart mean the accounts' fit or engagement has changed since.",
}
VERDICT_STYLE = {RETRAIN: "retrain", HOLDS: "holds", TOO_EARLY: "early"}


def _ratio(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:,.2f}"


def _interval(low, high) -> str:
    return f"{decimals(low, 3)}–{decimals(high, 3)}"


def _side_by_side(long: pd.DataFrame, tierings: list[str], fields: list[Column]):
    """Long (tiering, tier, fields...) as one row per tier, each tiering's fields side by side."""
    wide = pd.DataFrame({"tier": TIERS})
    cells, groups = [Column("Tier", "tier", numeric=False, kind="tier")], [("", 1)]
    for tiering in tierings:
        part = long[long["tiering"] == tiering].set_index("tier").reindex(TIERS)
        for column in fields:
            wide[f"{tiering}.{column.value}"] = part[column.value].to_numpy()
            cells.append(Column(column.title, f"{tiering}.{column.value}", column.format))
        groups.append((f"{tiering.capitalize()} tiers", len(fields)))
    return html.table(wide, cells, groups)


def outcomes_table(r: QuarterlyReview) -> object:
    final = r.outcomes[r.outcomes["tiering"] == "final"]
    return html.table(
        final,
        [
            Column("Tier", "tier", numeric=False, kind="tier"),
            Column("Accounts", "accounts", count),
            Column("Opened pipeline", "accounts_with_new_pipeline", count),
            Column(
                "Pipeline created", lambda row: f"{count(row['pipeline_created'])} · {money(row['pipeline_amount'])}"
            ),
            Column("Deals closed", "deals_closed", count),
            Column("Won", "deals_won", count),
            Column("Win rate", "win_rate", percent),
            Column("Won revenue", "won_revenue", money),
            Column("Share", "revenue_share", percent),
            Column("Median days to close", "median_days_to_close", points),
            Column(
                "Engagement then → now",
                lambda row: f"{points(row['engagement_then'])} → {points(row['engagement_now'])}",
            ),
        ],
    )


def outcome_chart(r: QuarterlyReview):
    chart = plots.tier_outcome_figure(r.outcomes[r.outcomes["tiering"].isin(["learned", "rule"])])
    for axes in chart.axes:
        axes.set_xlabel("Tier at the past scoring")
    return html.figure(chart, CAPTIONS["outcomes"], "Win rate and share of won revenue per tier")


def roi_table(r: QuarterlyReview) -> object | None:
    if r.roi is None:
        return None
    fields = [
        Column("Budget", "budget", money),
        Column("Won revenue", "won_revenue_funded", money),
        Column("Revenue per $1", "revenue_per_budget_unit", _ratio),
        Column("Budget per won deal", "budget_per_won_deal", money),
    ]
    return _side_by_side(r.roi[r.roi["tier"] != "all"], ["final", "rule"], fields)


def roi_totals(r: QuarterlyReview) -> dict | None:
    if r.roi is None:
        return None
    totals = r.roi[r.roi["tier"] == "all"].set_index("tiering")
    return {
        tiering: {
            "budget": money(totals.at[tiering, "budget"]),
            "per_unit": _ratio(totals.at[tiering, "revenue_per_budget_unit"]),
            "behind": money(totals.at[tiering, "revenue_behind_average_unit"]),
            "per_deal": money(totals.at[tiering, "budget_per_won_deal"]),
        }
        for tiering in totals.index
    }


def _past(r: QuarterlyReview) -> pd.DataFrame:
    """The past scoring's accounts, which `build_review` always records."""
    if r.past is None:
        raise ValueError("this review holds no past scoring to draw (build it with build_review)")
    return r.past


def gain_chart(r: QuarterlyReview):
    past = _past(r)
    revenue = won_revenue_by_account(r.deals.closed, past["account_id"]).to_numpy()
    scores = {
        "learned score (past)": past["learned_score"].to_numpy(dtype=np.float64),
        "rule score (past)": past["rule_score"].to_numpy(dtype=np.float64),
    }
    return html.figure(plots.gain_figure(revenue, scores), CAPTIONS["gain"], "Cumulative gain and lift of each score")


def _captured(top: float):
    """A cell: the share of won revenue the top `top` of accounts brought, and its lift."""

    def cell(row: dict) -> str:
        return f"{percent(row[f'top_{top:.0%}_revenue_share'])} ({_ratio(row[f'top_{top:.0%}_lift'])}x)"

    return cell


def lift_table(r: QuarterlyReview):
    columns = [Column("Ordered by", "score", numeric=False)]
    columns += [Column(f"Top {top:.0%}: revenue (lift)", _captured(top)) for top in (0.05, 0.10, 0.20)]
    return html.table(r.lift, columns)


def calibration_chart(r: QuarterlyReview):
    deals = r.predictions.deals.dropna(subset=["win_probability"])
    if deals["won"].nunique() < 2:
        return None
    chart = plots.calibration_quantile_figure(
        deals["won"].to_numpy(), {"learned win probability (past)": deals["win_probability"].to_numpy()}
    )
    chart.axes[0].set_title("Calibration of the past win probability in the period", fontsize=12, loc="left")
    return html.figure(chart, CAPTIONS["calibration"], "Calibration of the past win probability")


def deal_size_chart(r: QuarterlyReview):
    won = r.predictions.deals[(r.predictions.deals["won"] == 1) & r.predictions.deals["expected_deal_size"].notna()]
    if won.empty:
        return None
    chart = plots.deal_size_figure(won["expected_deal_size"].to_numpy(), won["amount"].to_numpy(dtype=np.float64))
    return html.figure(chart, CAPTIONS["deal_size"], "Won amounts against the expected deal size")


def prediction_table(r: QuarterlyReview):
    m, s, f = r.predictions.metrics, r.predictions.deal_size, r.facts
    rows = pd.DataFrame(
        [
            {
                "what": "ROC AUC (win probability)",
                "field": f"{decimals(m['roc_auc'], 3)} (95% {_interval(m['roc_auc_low'], m['roc_auc_high'])})",
                "holdout": f"{decimals(f.holdout_roc_auc, 3)} (95% from {decimals(f.holdout_roc_auc_low, 3)})",
            },
            {"what": "ROC AUC of the rule score", "field": decimals(m["rule_roc_auc"], 3), "holdout": "–"},
            {
                "what": "Calibration error",
                "field": f"{percent(m['ece'], 1)} (95% {percent(m['ece_low'], 1)}–{percent(m['ece_high'], 1)})",
                "holdout": percent(f.holdout_ece, 1),
            },
            {
                "what": "Win rate: predicted · observed",
                "field": f"{percent(m['mean_win_probability'])} · {percent(m['win_rate'])}",
                "holdout": "–",
            },
            {
                "what": "Won deal size: median won / expected",
                "field": _ratio(s.get("median_ratio")),
                "holdout": "–",
            },
            {
                "what": "Won revenue: expected · actual",
                "field": f"{money(s.get('predicted_total'))} · {money(s.get('actual_total'))}",
                "holdout": "–",
            },
        ]
    )
    return html.table(
        rows,
        [
            Column("", "what", numeric=False),
            Column(f"In the period ({count(m['deals'])} deals)", "field"),
            Column("Training holdout", "holdout"),
        ],
    )


def drift_table(r: QuarterlyReview):
    if r.drift.empty:
        return None
    return html.table(
        r.drift.head(DRIFT_SHOWN),
        [
            Column("Feature", "feature", numeric=False),
            Column("PSI", "psi", lambda v: decimals(v, 3)),
            Column("Missing then → now", lambda row: f"{percent(row['missing_then'])} → {percent(row['missing_now'])}"),
            Column("Unseen categories", "unseen_share", lambda v: percent(v, 1)),
        ],
    )


def drift_chart(r: QuarterlyReview, threshold: float):
    if r.drift.empty:
        return None
    return html.figure(
        plots.psi_figure(r.drift, threshold), CAPTIONS["drift"], "Population stability index per feature"
    )


def components_chart(r: QuarterlyReview):
    if r.now is None:
        return None
    past = _past(r)
    now = r.now.set_index("account_id").reindex(past["account_id"])
    then = {name: past[column].to_numpy(dtype=np.float64) for column, name in COMPONENTS.items()}
    current = {name: now[column].to_numpy(dtype=np.float64) for column, name in COMPONENTS.items()}
    return html.figure(
        plots.distribution_shift_figure(then, current), CAPTIONS["components"], "Rule components then and now"
    )


def components_table(r: QuarterlyReview):
    return html.table(
        r.components,
        [
            Column("Rule component", "name", numeric=False),
            Column("Mean then → now", lambda row: f"{points(row['mean_then'])} → {points(row['mean_now'])}"),
            Column("Median then → now", lambda row: f"{points(row['median_then'])} → {points(row['median_now'])}"),
            Column("PSI", "psi", lambda v: decimals(v, 3)),
        ],
    )


def movement_parts(r: QuarterlyReview) -> dict:
    d = r.movement
    counts = html.table(
        d.counts,
        [
            Column("Tier", "tier", numeric=False, kind="tier"),
            Column("Then", "before", count),
            Column("Now", "after", count),
            Column("Change", "change", html.signed),
        ],
    )
    moves = d.moves.head(MOVES_SHOWN)
    listing = html.table(
        moves,
        [
            Column("Account", "account_id", numeric=False),
            Column("Then", "old_tier", numeric=False, kind="tier"),
            Column("Now", "new_tier", numeric=False, kind="tier"),
            Column("Levels", "levels", kind="levels"),
            Column("What changed", "what_changed", numeric=False, kind="note"),
        ],
    )
    up, down = int((d.moves["levels"] > 0).sum()), int((d.moves["levels"] < 0).sum())
    return {
        "counts": counts,
        "transitions": html.matrix(d.transitions, "Then", "Now"),
        "moves": listing if len(moves) else None,
        "up": up,
        "down": down,
        "moved": len(d.moves),
        "common": d.common,
    }


def overrides_table(r: QuarterlyReview):
    if r.overrides.empty:
        return None
    return html.table(
        r.overrides,
        [
            Column("Account", "account_id", numeric=False),
            Column("Pinned to", "pinned_tier", numeric=False, kind="tier"),
            Column("Model said", "model_tier", numeric=False, kind="tier"),
            Column("Won in the period", lambda row: f"{money(row['won_revenue'])} ({count(row['deals_won'])} deals)"),
            Column("Pinned tier's average", "pinned_tier_revenue_per_account", money),
            Column("Model tier's average", "model_tier_revenue_per_account", money),
            Column("Reason", "override_reason", numeric=False, kind="note"),
        ],
    )


def flags_table(r: QuarterlyReview):
    if r.flags.empty:
        return None
    return html.table(
        r.flags,
        [
            Column("Account", "account_id", numeric=False),
            Column("Tier", "tier", numeric=False, kind="tier"),
            Column("Model said", "model_tier", numeric=False, kind="tier"),
            Column("Flags", "flags", count),
            Column("Won in the period", lambda row: f"{money(row['won_revenue'])} ({count(row['deals_won'])} deals)"),
            Column("Tier's average", "tier_revenue_per_account", money),
            Column("First comment", "first_comment", numeric=False, kind="note"),
        ],
    )


def verdict_table(r: QuarterlyReview):
    if r.verdict.checks.empty:
        return None
    return html.table(
        r.verdict.checks,
        [
            Column("Check", "check", numeric=False),
            Column("Measured", "measured", numeric=False),
            Column("Threshold", "threshold", numeric=False),
            Column("Outcome", "outcome", numeric=False),
        ],
    )


def verdict_note(r: QuarterlyReview) -> str:
    """The verdict card's one line: which checks call for retraining, else the first reason."""
    failed = (
        r.verdict.checks.loc[r.verdict.checks["outcome"] == "retrain", "check"].tolist()
        if len(r.verdict.checks)
        else []
    )
    if r.verdict.status == RETRAIN and failed:
        return f"because of: {', '.join(failed)} (see the verdict)"
    return r.verdict.reasons[0] if r.verdict.reasons else ""


def render_review(r: QuarterlyReview, psi_threshold: float) -> str:
    """The whole page."""
    m = r.predictions.metrics
    top = r.top_tiers
    final = r.outcomes[r.outcomes["tiering"] == "final"]
    cards = [
        ("Verdict", r.verdict.headline, verdict_note(r)),
        (
            "Won in the period",
            money(final["won_revenue"].sum()),
            f"{count(final['deals_won'].sum())} of {count(final['deals_closed'].sum())} deals closed · "
            f"{count(final['pipeline_created'].sum())} created",
        ),
        (
            "Tier 1 + 2 share of won revenue",
            f"{percent(top.get('learned'))} vs {percent(top.get('rule'))}",
            "learned vs rule tiers of the past scoring",
        ),
        (
            "Field ROC AUC",
            decimals(m["roc_auc"], 3),
            f"95% {decimals(m['roc_auc_low'], 3)}–{decimals(m['roc_auc_high'], 3)} · holdout "
            f"{decimals(r.facts.holdout_roc_auc, 3)} · {count(m['deals'])} deals",
        ),
    ]
    model = f"model version {r.facts.version}" if r.facts.learned else "rules only"
    subtitle = (
        f"{r.past_name} · {count(r.accounts)} accounts · period {r.period.label()} ({r.period.days} days) · {model}"
    )
    tables = r.tables()
    banners = list(r.notes)
    if r.missing_accounts:
        banners.append(f"{r.missing_accounts:,} account(s) of the past scoring are no longer in the export: left out.")
    if r.new_accounts:
        banners.append(
            f"{r.new_accounts:,} account(s) of the export were not in the past scoring: their deals are not counted."
        )
    return html.render(
        "review.html",
        r=r,
        subtitle=subtitle,
        cards=cards,
        banners=banners,
        verdict_style=VERDICT_STYLE.get(r.verdict.status, "early"),
        outcomes_table=outcomes_table(r),
        learned_outcomes=_side_by_side(
            r.outcomes,
            ["learned", "rule"],
            [
                Column("Deals closed", "deals_closed", count),
                Column("Win rate", "win_rate", percent),
                Column("Won revenue (share)", "won_revenue", money),
                Column("Share", "revenue_share", percent),
            ],
        ),
        outcome_chart=outcome_chart(r),
        roi_table=roi_table(r),
        roi=roi_totals(r),
        gain_chart=gain_chart(r),
        lift_table=lift_table(r),
        top_tiers=top,
        calibration_chart=calibration_chart(r),
        deal_size_chart=deal_size_chart(r),
        prediction_table=prediction_table(r),
        drift_chart=drift_chart(r, psi_threshold),
        drift_table=drift_table(r),
        psi_threshold=psi_threshold,
        unseen=percent(r.unseen_share, 1),
        components_chart=components_chart(r),
        components_table=components_table(r),
        movement=movement_parts(r),
        overrides_table=overrides_table(r),
        flags_table=flags_table(r),
        verdict_table=verdict_table(r),
        files=[f"{name}.csv" for name in tables],
        written=pd.Timestamp.now(tz="UTC"),
    )
