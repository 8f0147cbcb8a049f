"""The quarterly review (`tiering review`): what happened to the accounts a past scoring tiered.

A past scores file records the `as_of` it was scored at; the review covers the period from that date (inclusive)
to `until` (exclusive) and counts only what is dated inside it: opportunities created in the period (pipeline),
deals whose close date falls in it (outcomes), and, for the predictions against reality, the deals created and
closed inside it (the past scoring could not have seen them). Everything here is pure pandas and numpy on frames
handed in; reading files, MLflow and the page live in the CLI and in `render_review` below.

Sections: outcomes by tier, return on the budget, ranking (gain and lift), predictions against reality
(calibration, ECE, field ROC AUC with a 95% interval, deal size), drift (population stability index per feature,
categories the model never saw, the rule components then and now), movement (`reports.diff`, re-used), and the
verdict, its thresholds in `tiering.yaml` under `review:`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from configuration.tiering import Review
from features.config import TIERS, ModelConfig
from features.dates import NotADate, parse_day
from features.errors import DataError, Problem
from features.schema import CrmData
from ingest.problems import problem_at_rows
from reports.diff import TierDiff, diff_scores
from scoring.tiers import allocate_budget
from training.evaluate import (
    bootstrap_aucs,
    deal_size_metrics,
    expected_calibration_error,
    gain_curve,
    win_metrics,
    won_revenue_by_account,
)

TIERINGS = {"tier": "final", "learned_tier": "learned", "rule_tier": "rule"}
COMPONENTS = {
    "revenue_potential_score": "revenue potential",
    "business_fit_score": "business fit",
    "engagement_score": "engagement",
    "rule_score": "rule score",
}
RANKED_BY = {"learned_score": "past learned score", "rule_score": "past rule score"}
TOP_SHARES = (0.05, 0.10, 0.20)
PSI_BINS = 10
PSI_FLOOR = 1e-4  # a bin empty on one side counts as this share, so PSI stays finite
RESAMPLES = 200
TOO_EARLY, RETRAIN, HOLDS, NO_MODEL = "too early to judge", "retrain recommended", "model still holds", "no model"
UNMEASURED = "cannot judge"  # a check the verdict needs could not be measured


# --- the period and its deals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: pd.Timestamp  # the past scoring's as_of, inclusive
    end: pd.Timestamp  # --until, exclusive

    @property
    def days(self) -> int:
        return int((self.end - self.start).days)

    def label(self) -> str:
        last = self.end - pd.Timedelta(days=1)
        return f"{self.start:%d %b %Y} to {last:%d %b %Y}"


def past_as_of(past: pd.DataFrame, name: str, since: pd.Timestamp | None) -> pd.Timestamp:
    """Where the period starts: --since when given, else the scores file's own as_of (one date for the file), read
    with the one date grammar of every command (features.dates) and cut to its day, as --as-of is."""
    if since is not None:
        return pd.Timestamp(since)
    values = sorted({str(v).strip() for v in past["as_of"] if str(v).strip() and str(v) != "nan"})
    if not values:
        raise DataError(
            [
                Problem(
                    "the scores file records no as_of (written before the column existed)",
                    "pass --since DATE: the as_of date it was scored at",
                    file=name,
                    column="as_of",
                )
            ]
        )
    days: dict[pd.Timestamp, str] = {}
    for value in values:
        try:
            day = parse_day(value, "as_of")
        except NotADate as error:
            raise DataError(
                [
                    problem_at_rows(
                        past.index[past["as_of"].astype(str).str.strip() == value],
                        str(error),
                        "write the as_of `tiering score` wrote (YYYY-MM-DD), or pass --since YYYY-MM-DD",
                        file=name,
                        column="as_of",
                    )
                ]
            ) from None
        days.setdefault(day, value)
    if len(days) > 1:
        raise DataError(
            [
                Problem(
                    f"the scores file mixes several as_of dates ({', '.join(list(days.values())[:3])})",
                    "review one scoring at a time (one `tiering score` output), or pass --since DATE",
                    file=name,
                    column="as_of",
                )
            ]
        )
    return next(iter(days))


def common_accounts(past: pd.DataFrame, data: CrmData, name: str) -> pd.DataFrame:
    """The past scoring's accounts that the export still has; another book (none in common) is refused."""
    known = past["account_id"].isin(data.accounts["account_id"].astype("str"))
    if not known.any():
        raise DataError(
            [
                Problem(
                    f"none of its {len(past):,} accounts is in the export (for example {past['account_id'].iloc[0]!r})",
                    "review a scores file of this book: one written by `tiering score` on this export",
                    file=name,
                    column="account_id",
                )
            ]
        )
    return past[known].reset_index(drop=True)


@dataclass(frozen=True)
class PeriodDeals:
    created: pd.DataFrame  # opportunities created in the period (pipeline)
    closed: pd.DataFrame  # won or lost deals whose close date is in the period
    field: pd.DataFrame  # deals created and closed in the period: the ones the past scoring could not see


def period_deals(data: CrmData, period: Period, accounts: pd.Series) -> PeriodDeals:
    """The period's opportunities of `accounts`; nothing dated before `start` or on/after `end` is counted."""
    opps = data.opportunities[data.opportunities["account_id"].isin(accounts)]
    created = opps[(opps["created_date"] >= period.start) & (opps["created_date"] < period.end)]
    closed = opps[
        opps["outcome"].isin(["won", "lost"]) & (opps["close_date"] >= period.start) & (opps["close_date"] < period.end)
    ]
    field_deals = closed[closed["created_date"] >= period.start]
    prepare = lambda frame: frame.assign(won=(frame["outcome"] == "won").astype(int)).reset_index(drop=True)  # noqa: E731
    return PeriodDeals(prepare(created), prepare(closed), prepare(field_deals))


# --- 1. outcomes by tier ----------------------------------------------------------------------------------------


def outcomes_by_tier(past: pd.DataFrame, deals: PeriodDeals, now: pd.DataFrame | None) -> pd.DataFrame:
    """Per tiering (final, learned, rule) and tier: accounts, accounts that opened pipeline, pipeline created,
    deals closed and won, win rate, won revenue and its share, median days to close, engagement then and now."""
    engagement_now = now.set_index("account_id")["engagement_score"] if now is not None else pd.Series(dtype="float64")
    created, closed = deals.created, deals.closed
    total_revenue = float(closed.loc[closed["won"] == 1, "amount"].fillna(0).sum())
    days = (closed["close_date"] - closed["created_date"]).dt.days
    rows = []
    for column, tiering in TIERINGS.items():
        tier_of = past.set_index("account_id")[column]
        created_tier, closed_tier = created["account_id"].map(tier_of), closed["account_id"].map(tier_of)
        for tier in TIERS:
            ids = tier_of.index[tier_of == tier]
            made, shut = created[created_tier == tier], closed[closed_tier == tier]
            won = shut[shut["won"] == 1]
            revenue = float(won["amount"].fillna(0).sum())
            rows.append(
                {
                    "tiering": tiering,
                    "tier": tier,
                    "accounts": len(ids),
                    "accounts_with_new_pipeline": int(made["account_id"].nunique()),
                    "pipeline_created": len(made),
                    "pipeline_amount": float(made["amount"].fillna(0).sum()),
                    "deals_closed": len(shut),
                    "deals_won": len(won),
                    "win_rate": len(won) / len(shut) if len(shut) else np.nan,
                    "won_revenue": revenue,
                    "revenue_share": revenue / total_revenue if total_revenue else np.nan,
                    "median_days_to_close": float(days[closed_tier == tier].median()) if len(shut) else np.nan,
                    "engagement_then": float(past.loc[past[column] == tier, "engagement_score"].mean())
                    if len(ids)
                    else np.nan,
                    "engagement_now": float(engagement_now.reindex(ids).mean())
                    if len(ids) and now is not None
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


# --- 2. return on the budget ------------------------------------------------------------------------------------


def has_budget(past: pd.DataFrame) -> bool:
    budget = pd.to_numeric(past["budget"], errors="coerce")
    return bool(budget.notna().any() and budget.sum() > 0)


def budget_return(past: pd.DataFrame, revenue: pd.Series, deals_won: pd.Series, config: ModelConfig) -> pd.DataFrame:
    """Per tier, for the budget as it was spent (final tiers) and as the rule tiers would have spent the same total:
    budget, won revenue, revenue per budget unit, budget per won deal; plus an `all` row per tiering.

    `revenue` and `deals_won` are per account in the order of `past`. The `all` row also carries the won revenue of
    the account an average budget unit went to (`revenue_behind_average_unit`): the money's aim, one number.
    """
    spent = pd.to_numeric(past["budget"], errors="coerce").fillna(0.0)
    total = float(spent.sum())
    budgets = {
        "final": spent,
        "rule": allocate_budget(past["rule_tier"].reset_index(drop=True), total, config.budget).set_axis(past.index),
    }
    tiers_of = {"final": past["tier"], "rule": past["rule_tier"]}
    rows = []
    for tiering, budget in budgets.items():
        for tier in [*TIERS, "all"]:
            mask = (tiers_of[tiering] == tier) if tier != "all" else pd.Series(True, index=past.index)
            money, won, count = float(budget[mask].sum()), float(revenue[mask].sum()), int(deals_won[mask].sum())
            funded = mask & (budget > 0)
            rows.append(
                {
                    "tiering": tiering,
                    "tier": tier,
                    "accounts": int(mask.sum()),
                    "budget": money,
                    "won_revenue": won,
                    "won_revenue_funded": float(revenue[funded].sum()),
                    "deals_won": count,
                    "revenue_per_budget_unit": float(revenue[funded].sum()) / money if money else np.nan,
                    "budget_per_won_deal": money / int(deals_won[funded].sum())
                    if int(deals_won[funded].sum())
                    else np.nan,
                    "revenue_behind_average_unit": float((budget[mask] * revenue[mask]).sum()) / money
                    if money
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


# --- 3. ranking -----------------------------------------------------------------------------------------------


def ranking(past: pd.DataFrame, revenue: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cumulative won revenue over accounts ordered by each past score and at random (the diagonal): the curves
    (share of accounts, share of revenue per score) and, per score, the share captured and the lift at the top
    5%, 10% and 20% of accounts (lift = share captured / share of accounts; 1 is random order)."""
    value = revenue.to_numpy(dtype=np.float64)
    curves = {}
    scores = {name: past[column].to_numpy(dtype=np.float64) for column, name in RANKED_BY.items()}
    scores["random order"] = np.zeros(len(past))  # one block of ties: the expected curve of a random order
    share = None
    for name, score in scores.items():
        share, captured = gain_curve(value, score)
        curves[name] = captured
    curve = pd.DataFrame({"share_of_accounts": share, **curves})
    rows = []
    for name in scores:
        row: dict[str, object] = {"score": name}
        for top in TOP_SHARES:
            top_captured = float(np.interp(top, curve["share_of_accounts"], curve[name]))
            row[f"top_{top:.0%}_revenue_share"] = top_captured
            row[f"top_{top:.0%}_lift"] = top_captured / top
        rows.append(row)
    return curve, pd.DataFrame(rows)


def top_tiers_share(outcomes: pd.DataFrame) -> dict[str, float]:
    """Tier 1 + 2's share of the period's won revenue, per tiering."""
    top = outcomes[outcomes["tier"].isin(["tier_1", "tier_2"])]
    return {tiering: float(part["revenue_share"].sum()) for tiering, part in top.groupby("tiering")}


# --- 4. predictions against reality -----------------------------------------------------------------------------


def _ece_interval(y: np.ndarray, p: np.ndarray, bins: int = 10, resamples: int = RESAMPLES, seed: int = 0):
    """Bootstrap 95% interval of the expected calibration error (10 equal-width bins, weighted by deals)."""
    rng = np.random.default_rng(seed)
    which = np.clip(np.digitize(p, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    values = np.empty(resamples)
    for row in range(resamples):
        weight = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(np.float64)
        wins = np.bincount(which, weights=weight * y, minlength=bins)
        predicted = np.bincount(which, weights=weight * p, minlength=bins)
        values[row] = np.abs(wins - predicted).sum() / weight.sum()  # sum over bins of n_b |mean y - mean p| / n
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Equal-count bins (tenths of the deals): mean predicted probability, observed win rate, deals."""
    rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    frame = pd.DataFrame({"bin": rank * bins // max(len(p), 1), "predicted": p, "won": y})
    grouped = frame.groupby("bin").agg(predicted=("predicted", "mean"), observed=("won", "mean"), deals=("won", "size"))
    return grouped.reset_index()


@dataclass(frozen=True)
class Predictions:
    deals: pd.DataFrame  # field deals: opportunity_id, account_id, won, amount, win_probability, rule_score, ...
    metrics: dict[str, float]
    calibration: pd.DataFrame
    deal_size: dict[str, float]


def predictions(past: pd.DataFrame, field_deals: pd.DataFrame) -> Predictions:
    """The past win probability of each field deal's account against its outcome, and the past expected deal size
    against the won amounts."""
    by_account = past.set_index("account_id")
    deals = field_deals[["opportunity_id", "account_id", "created_date", "close_date", "won", "amount"]].copy()
    for column in ("win_probability", "expected_deal_size", "rule_score", "learned_score"):
        deals[column] = deals["account_id"].map(by_account[column]).astype("float64")
    scored = deals[deals["win_probability"].notna()]
    y, p = scored["won"].to_numpy(dtype=np.float64), scored["win_probability"].to_numpy(dtype=np.float64)
    metrics: dict[str, float] = {
        "deals": float(len(deals)),
        "scored_deals": float(len(scored)),  # field deals whose account has a past win probability
        "won": float(deals["won"].sum()),
        "lost": float(len(deals) - deals["won"].sum()),
        "win_rate": float(deals["won"].mean()) if len(deals) else np.nan,
        "mean_win_probability": float(p.mean()) if len(p) else np.nan,
    }
    both = len(np.unique(y)) == 2
    field_metrics = win_metrics(y, p) if both else win_metrics(np.zeros(1), np.zeros(1))
    metrics.update({k: field_metrics[k] for k in ("roc_auc", "brier", "ece", "log_loss")})
    low = high = ece_low = ece_high = rule_auc = np.nan
    if both:
        aucs = bootstrap_aucs(y, [p], resamples=RESAMPLES)[:, 0]
        low, high = float(np.nanquantile(aucs, 0.025)), float(np.nanquantile(aucs, 0.975))
        ece_low, ece_high = _ece_interval(y, np.clip(p, 1e-6, 1 - 1e-6))
        rule_auc = win_metrics(y, scored["rule_score"].to_numpy(dtype=np.float64))["roc_auc"]
    metrics.update(roc_auc_low=low, roc_auc_high=high, ece_low=ece_low, ece_high=ece_high, rule_roc_auc=rule_auc)
    metrics["ece"] = expected_calibration_error(y, np.clip(p, 1e-6, 1 - 1e-6)) if len(p) else np.nan
    won = scored[(scored["won"] == 1) & scored["expected_deal_size"].notna()]
    amount, predicted = won["amount"].to_numpy(dtype=np.float64), won["expected_deal_size"].to_numpy(dtype=np.float64)
    size = deal_size_metrics(amount, predicted, np.log(np.clip(predicted, 1e-9, None)))
    keep = np.isfinite(amount) & (amount > 0)
    size.update(
        won_deals=float(keep.sum()),
        median_ratio=float(np.median(amount[keep] / predicted[keep])) if keep.any() else np.nan,
        actual_total=float(amount[keep].sum()),
        predicted_total=float(predicted[keep].sum()),
    )
    return Predictions(deals, metrics, calibration_bins(y, p) if len(p) else pd.DataFrame(), size)


# --- 5. drift ---------------------------------------------------------------------------------------------------


def psi(reference: pd.Series, current: pd.Series, categorical: bool = False, bins: int = PSI_BINS) -> float:
    """Population stability index of `current` against `reference`: sum of (c - r) * ln(c / r) over bins.

    Numeric values: bins at the reference's deciles (ties merged), missing values a bin of their own. Categories:
    one bin per value, missing one more. Below 0.1 is stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.
    """
    if categorical:
        ref, cur = (
            reference.astype("object").fillna("(missing)").astype(str),
            current.astype("object").fillna("(missing)").astype(str),
        )
        levels = sorted(set(ref) | set(cur))
        r = ref.value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
        c = cur.value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
    else:
        ref_values = pd.to_numeric(reference, errors="coerce").to_numpy(dtype=np.float64)
        cur_values = pd.to_numeric(current, errors="coerce").to_numpy(dtype=np.float64)
        present = ref_values[np.isfinite(ref_values)]
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])

        def shares(values: np.ndarray) -> np.ndarray:
            finite = np.isfinite(values)
            which = np.searchsorted(edges, values[finite], side="right")
            counts = np.bincount(which, minlength=len(edges) + 1).astype(np.float64)
            return np.r_[counts, (~finite).sum()] / max(len(values), 1)

        r, c = shares(ref_values), shares(cur_values)
    r, c = np.maximum(r, PSI_FLOOR), np.maximum(c, PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def drift_table(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], categories: dict[str, list[str]]
) -> pd.DataFrame:
    """PSI per feature (reference: the training population; current: the book now), largest first, with each
    feature's missing share then and now and, for a category, the share of accounts now holding a value the model
    never saw."""
    rows = []
    for column in columns:
        if column not in reference or column not in current:
            continue
        categorical = column in categories
        unseen = np.nan
        if categorical:
            seen = set(categories[column])
            values = current[column]
            unseen = float((values.notna() & ~values.astype(str).isin(seen)).mean())
        rows.append(
            {
                "feature": column,
                "kind": "category" if categorical else "number",
                "psi": psi(reference[column], current[column], categorical),
                "missing_then": float(reference[column].isna().mean()),
                "missing_now": float(current[column].isna().mean()),
                "unseen_share": unseen,
            }
        )
    table = pd.DataFrame(rows, columns=["feature", "kind", "psi", "missing_then", "missing_now", "unseen_share"])
    return table.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def unseen_accounts_share(current: pd.DataFrame, categories: dict[str, list[str]]) -> float:
    """Share of the book's accounts with at least one category value the model never saw."""
    if not categories or current.empty:
        return 0.0
    unseen = np.zeros(len(current), dtype=bool)
    for column, seen in categories.items():
        if column in current:
            values = current[column]
            unseen |= (values.notna() & ~values.astype(str).isin(set(seen))).to_numpy()
    return float(unseen.mean())


def component_shift(past: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """The rule components (0-100) of the same accounts then and now: mean, median and PSI."""
    now_by_id = now.set_index("account_id").reindex(past["account_id"])
    rows = []
    for column, name in COMPONENTS.items():
        then, current = past[column].astype("float64"), now_by_id[column].astype("float64")
        rows.append(
            {
                "component": column,
                "name": name,
                "mean_then": float(then.mean()),
                "mean_now": float(current.mean()),
                "median_then": float(then.median()),
                "median_now": float(current.median()),
                "psi": psi(then, current.reset_index(drop=True)),
            }
        )
    return pd.DataFrame(rows)


# --- 6. movement and overrides ----------------------------------------------------------------------------------


def movement(past: pd.DataFrame, now: pd.DataFrame, past_name: str, now_name: str) -> TierDiff:
    """What `tiering diff` shows between the past scoring and the book scored now (reports.diff, re-used)."""
    return diff_scores(past, now, past_name, now_name)


def overrides_outcome(past: pd.DataFrame, revenue: pd.Series, deals_won: pd.Series) -> pd.DataFrame:
    """The accounts a sales override pinned, how they did, and how the accounts of the pinned tier and of the model's
    tier did on average (won revenue per account, overrides left out)."""
    pinned = past["override_reason"].fillna("").astype(str).str.len() > 0
    free = ~pinned
    per_account = revenue[free].groupby(past.loc[free, "tier"]).mean()
    rows = []
    for index in past.index[pinned]:
        row = past.loc[index]
        rows.append(
            {
                "account_id": row["account_id"],
                "pinned_tier": row["tier"],
                "model_tier": row["learned_tier"],
                "override_reason": row["override_reason"],
                "won_revenue": float(revenue[index]),
                "deals_won": int(deals_won[index]),
                "pinned_tier_revenue_per_account": float(per_account.get(row["tier"], np.nan)),
                "model_tier_revenue_per_account": float(per_account.get(row["learned_tier"], np.nan)),
            }
        )
    columns = [
        "account_id",
        "pinned_tier",
        "model_tier",
        "override_reason",
        "won_revenue",
        "deals_won",
        "pinned_tier_revenue_per_account",
        "model_tier_revenue_per_account",
    ]
    return pd.DataFrame(rows, columns=columns)


FLAG_COLUMNS = [
    "account_id",
    "tier",
    "model_tier",
    "flags",
    "first_comment",
    "won_revenue",
    "deals_won",
    "tier_revenue_per_account",
]


def flags_outcome(
    past: pd.DataFrame, revenue: pd.Series, deals_won: pd.Series, flags: pd.DataFrame | None
) -> pd.DataFrame:
    """The accounts someone flagged in the workspace as wrongly scored, how they did in the period, and how the
    average unflagged account of their tier did (won revenue per account)."""
    if flags is None or flags.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    raised = flags.assign(account_id=flags["account_id"].astype(str)).sort_values("created_at")
    per_account = raised.groupby("account_id").agg(flags=("comment", "size"), first_comment=("comment", "first"))
    flagged = past["account_id"].astype(str).isin(per_account.index)
    average = revenue[~flagged].groupby(past.loc[~flagged, "tier"]).mean()
    rows = []
    for index in past.index[flagged]:
        row = past.loc[index]
        found = per_account.loc[str(row["account_id"])]
        rows.append(
            {
                "account_id": row["account_id"],
                "tier": row["tier"],
                "model_tier": row["learned_tier"],
                "flags": int(found["flags"]),
                "first_comment": found["first_comment"],
                "won_revenue": float(revenue[index]),
                "deals_won": int(deals_won[index]),
                "tier_revenue_per_account": float(average.get(row["tier"], np.nan)),
            }
        )
    return pd.DataFrame(rows, columns=FLAG_COLUMNS)


# --- 7. verdict -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFacts:
    """What the training run recorded about the model that made the past scores (read from MLflow by the CLI)."""

    version: str
    learned: bool
    run_id: str | None = None
    trained_until: pd.Timestamp | None = None  # the training window's cut-off
    holdout_roc_auc: float = np.nan
    holdout_roc_auc_low: float = np.nan
    holdout_ece: float = np.nan


@dataclass(frozen=True)
class Verdict:
    status: str  # TOO_EARLY, RETRAIN, HOLDS, UNMEASURED or NO_MODEL
    reasons: list[str]  # why, as measured
    checks: pd.DataFrame  # check, measured, threshold, outcome

    @property
    def headline(self) -> str:
        return {
            TOO_EARLY: "Too early to judge",
            RETRAIN: "Retrain recommended",
            HOLDS: "Model still holds",
            NO_MODEL: "No learned model to judge",
            UNMEASURED: "Cannot judge: a measurement the verdict needs is missing",
        }[self.status]


def months_between(start: pd.Timestamp, end: pd.Timestamp) -> float:
    return float((end - start).days / 30.4375)


def auc_floor(facts: ModelFacts, metrics: dict[str, float], margin: float) -> float:
    """The lowest field ROC AUC still consistent with the holdout's at 95%: the holdout AUC less 1.96 combined
    standard errors of the two estimates (each read off its 95% interval: the holdout's lower bound, the field's
    bootstrap interval), less `margin`. A field AUC below it is worse than the holdout beyond what chance explains."""
    holdout, holdout_low = facts.holdout_roc_auc, facts.holdout_roc_auc_low
    low, high = metrics.get("roc_auc_low", np.nan), metrics.get("roc_auc_high", np.nan)
    if not (np.isfinite(holdout) and np.isfinite(holdout_low)):
        return np.nan
    holdout_se = max(holdout - holdout_low, 0.0) / 1.96
    field_se = (high - low) / 3.92 if np.isfinite(low) and np.isfinite(high) else 0.0
    return float(holdout - 1.96 * np.hypot(holdout_se, field_se) - margin)


def verdict(
    period: Period,
    facts: ModelFacts,
    metrics: dict[str, float],
    drift: pd.DataFrame,
    unseen_share: float,
    rules: Review,
) -> Verdict:
    """ "retrain recommended" or "model still holds", with the reasons as measured; "too early to judge" (and how much
    more is needed) when the period is short or has too few deals created and closed in it."""
    checks: list[dict] = []

    def check(name: str, measured: str, threshold: str, failed: bool | None, outcome: str | None = None) -> None:
        outcome = outcome or ("not measured" if failed is None else ("retrain" if failed else "holds"))
        checks.append({"check": name, "measured": measured, "threshold": threshold, "outcome": outcome})

    if not facts.learned:
        reason = "the past scores were made with the rules only: there is no model to judge; train one (tiering train)"
        return Verdict(NO_MODEL, [reason], pd.DataFrame(checks, columns=["check", "measured", "threshold", "outcome"]))
    short: list[str] = []
    if period.days < rules.min_days:
        short.append(
            f"the period is {period.days} days long and at least {rules.min_days} are needed: review again from "
            f"{period.start + pd.Timedelta(days=rules.min_days):%d %b %Y} (--until)"
        )
    won, lost = int(metrics.get("won", 0)), int(metrics.get("lost", 0))
    if won < rules.min_won or lost < rules.min_lost:
        more = []
        if won < rules.min_won:
            more.append(f"{rules.min_won - won} more won")
        if lost < rules.min_lost:
            more.append(f"{rules.min_lost - lost} more lost")
        short.append(
            f"{won} won and {lost} lost deals were created and closed in the period; at least {rules.min_won} won and "
            f"{rules.min_lost} lost are needed to judge the predictions ({' and '.join(more)})"
        )
    long_enough = period.days >= rules.min_days
    enough_deals = won >= rules.min_won and lost >= rules.min_lost
    check(
        "period length",
        f"{period.days} days",
        f">= {rules.min_days} days",
        None,
        "enough" if long_enough else "too short",
    )
    check(
        "field deals",
        f"{won} won, {lost} lost",
        f">= {rules.min_won} won, >= {rules.min_lost} lost",
        None,
        "enough" if enough_deals else "too few",
    )
    reasons: list[str] = []
    auc, holdout = metrics.get("roc_auc", np.nan), facts.holdout_roc_auc
    floor = auc_floor(facts, metrics, rules.auc_margin)
    if np.isfinite(auc) and np.isfinite(floor):
        failed = auc < floor
        check(
            "field ROC AUC",
            f"{auc:.3f} (95% {metrics['roc_auc_low']:.3f}-{metrics['roc_auc_high']:.3f})",
            f">= {floor:.3f}: holdout {holdout:.3f} less the 95% margin of the two estimates"
            + (f" and {rules.auc_margin:g}" if rules.auc_margin else ""),
            failed,
        )
        if failed:
            reasons.append(
                f"the field ROC AUC {auc:.3f} (95% {metrics['roc_auc_low']:.3f}-{metrics['roc_auc_high']:.3f}) is "
                f"significantly below the training holdout's {holdout:.3f} (95% from {facts.holdout_roc_auc_low:.3f}):"
                " the model ranks deals worse than it was validated to"
            )
    else:
        check("field ROC AUC", "–", "the training holdout's ROC AUC", None)
    ece_low, holdout_ece = metrics.get("ece_low", np.nan), facts.holdout_ece
    if np.isfinite(ece_low) and np.isfinite(holdout_ece):
        failed = ece_low > holdout_ece + rules.calibration_tolerance
        check(
            "field calibration error",
            f"{metrics['ece']:.3f} (95% from {ece_low:.3f})",
            f"lower bound <= holdout {holdout_ece:.3f} + {rules.calibration_tolerance:g}",
            failed,
        )
        if failed:
            reasons.append(
                f"the field calibration error is {metrics['ece']:.1%} (95% lower bound {ece_low:.1%}), more than "
                f"{rules.calibration_tolerance * 100:.0f} points above the holdout's {holdout_ece:.1%}: win "
                f"probabilities can no longer be taken at face value (predicted "
                f"{metrics['mean_win_probability']:.0%} on average, {metrics['win_rate']:.0%} won)"
            )
    else:
        check("field calibration error", "–", "holdout's calibration error", None)
    drifted = drift[drift["psi"] > rules.psi_threshold] if len(drift) else drift
    failed = len(drifted) > rules.max_drifted_features
    top = ", ".join(f"{r.feature} ({r.psi:.2f})" for r in drifted.head(5).itertuples())
    check(
        "drifted features",
        f"{len(drifted)} above PSI {rules.psi_threshold:g}" + (f": {top}" if top else ""),
        f"<= {rules.max_drifted_features}",
        failed if len(drift) else None,
    )
    if failed:
        reasons.append(
            f"{len(drifted)} feature(s) drifted past PSI {rules.psi_threshold:g} between the training population and "
            f"the book now: {top}"
        )
    unseen_failed = unseen_share > rules.max_unseen_share
    check("accounts with unseen categories", f"{unseen_share:.1%}", f"<= {rules.max_unseen_share:.0%}", unseen_failed)
    if unseen_failed:
        reasons.append(
            f"{unseen_share:.1%} of the accounts now carry a category the model never saw (more than "
            f"{rules.max_unseen_share:.0%})"
        )
    if facts.trained_until is not None:
        age = months_between(facts.trained_until, period.end)
        failed = age >= rules.max_months_since_training
        check(
            "time since the training cut-off",
            f"{age:.1f} months (data to {facts.trained_until:%d %b %Y})",
            f"< {rules.max_months_since_training:g} months",
            failed,
        )
        if failed:
            reasons.append(
                f"the period ends {age:.1f} months after the model's training cut-off ({facts.trained_until:%d %b %Y}),"
                f" {rules.max_months_since_training:g} or more: newer deals have not taught it anything"
            )
    table = pd.DataFrame(checks, columns=["check", "measured", "threshold", "outcome"])
    if short:
        return Verdict(TOO_EARLY, short, table)
    if reasons:
        return Verdict(RETRAIN, reasons, table)
    missing = unmeasured(facts, metrics, bool(np.isfinite(auc) and np.isfinite(floor)))
    if missing:
        return Verdict(UNMEASURED, missing, table)
    return Verdict(HOLDS, ["every check is inside its threshold (see the table)"], table)


def unmeasured(facts: ModelFacts, metrics: dict[str, float], auc_measured: bool) -> list[str]:
    """Why the field ROC AUC or calibration check could not be made (empty when both were): a model "still holds"
    only on measurements."""
    if metrics.get("scored_deals", np.nan) == 0:
        return [
            "no field deal's account has a win probability in the past scores (the win_probability column is blank): "
            "the field ROC AUC and calibration error cannot be measured; review the scores file the model wrote"
        ]
    missing = []
    if not np.isfinite([facts.holdout_roc_auc, facts.holdout_roc_auc_low, facts.holdout_ece]).all():
        missing.append(
            f"the training run of model version {facts.version} records no holdout ROC AUC or calibration error to "
            "compare with: pass --model with the version that made the scores, or retrain"
        )
    elif not (auc_measured and np.isfinite(metrics.get("ece_low", np.nan))):
        missing.append(
            "the field deals with a past win probability are all won or all lost: the field ROC AUC and calibration "
            "error cannot be measured; review again once both outcomes have closed (--until)"
        )
    return missing


# --- the whole review -------------------------------------------------------------------------------------------


@dataclass
class QuarterlyReview:
    period: Period
    past_name: str
    data_label: str
    facts: ModelFacts
    accounts: int  # past accounts the export still has
    missing_accounts: int  # past accounts the export no longer has
    new_accounts: int  # accounts of the export the past scoring did not have
    deals: PeriodDeals
    outcomes: pd.DataFrame
    roi: pd.DataFrame | None
    gain: pd.DataFrame
    lift: pd.DataFrame
    top_tiers: dict[str, float]
    predictions: Predictions
    drift: pd.DataFrame
    unseen_share: float
    components: pd.DataFrame
    movement: TierDiff
    overrides: pd.DataFrame
    verdict: Verdict
    notes: list[str] = field(default_factory=list)
    flags: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FLAG_COLUMNS))
    past: pd.DataFrame | None = None
    now: pd.DataFrame | None = None

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {
            "outcomes_by_tier": self.outcomes,
            "ranking_lift": self.lift,
            "ranking_gain": self.gain,
            "predictions": self.predictions.deals,
            "prediction_metrics": pd.DataFrame(
                [
                    {"metric": k, "value": v}
                    for k, v in {
                        **self.predictions.metrics,
                        **{f"deal_size_{k}": v for k, v in self.predictions.deal_size.items()},
                    }.items()
                ]
            ),
            "calibration": self.predictions.calibration,
            "drift": self.drift,
            "rule_components": self.components,
            "movement_counts": self.movement.counts,
            "movement_transitions": self.movement.transitions.rename_axis(index="old_tier").reset_index(),
            "moves": self.movement.moves,
            "overrides": self.overrides,
            "verdict": self.verdict.checks,
        }
        if len(self.flags):
            tables["flags"] = self.flags
        if self.roi is not None:
            tables["budget_return"] = self.roi
        return tables

    def metrics(self) -> dict[str, float]:
        """The review's key numbers, for MLflow."""
        m = self.predictions.metrics
        out = {
            "review_field_deals": m["deals"],
            "review_field_roc_auc": m["roc_auc"],
            "review_field_ece": m["ece"],
            "review_max_psi": float(self.drift["psi"].max()) if len(self.drift) else np.nan,
            "review_unseen_share": self.unseen_share,
            "review_retrain": float(self.verdict.status == RETRAIN),
        }
        for tiering, share in self.top_tiers.items():
            out[f"review_{tiering}_top_tiers_revenue_share"] = share
        return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def build_review(
    past: pd.DataFrame,
    data: CrmData,
    period: Period,
    now: pd.DataFrame | None,
    facts: ModelFacts,
    reference: pd.DataFrame | None,
    current: pd.DataFrame | None,
    feature_columns: list[str],
    categories: dict[str, list[str]],
    config: ModelConfig,
    past_name: str = "past scores",
    data_label: str = "the export",
    rules: Review = Review(),
    flags: pd.DataFrame | None = None,
) -> QuarterlyReview:
    """The whole review from frames: the past scores, the export, the book scored now (`now`, for engagement now
    and movement), the training population's feature rows (`reference`, see `drift_rows`) and the book's (`current`);
    `flags` (account_id, comment, created_at), the workspace's flags, when there is a store.

    The verdict's thresholds are `rules` (the configuration's `review`). Refuses (DataError) a period with no closed
    deal: nothing could be judged."""
    common = common_accounts(past, data, past_name)
    deals = period_deals(data, period, common["account_id"])
    if deals.closed.empty:
        raise DataError(
            [
                Problem(
                    f"no deal of these accounts closed between {period.label()} (as_of to --until)",
                    "review once deals have closed: pass a later --until, or an export with the period's deals",
                    file=data_label,
                    column="close_date",
                )
            ]
        )
    revenue = won_revenue_by_account(deals.closed, common["account_id"])
    won_counts = deals.closed[deals.closed["won"] == 1].groupby("account_id").size()
    deals_won = common["account_id"].map(won_counts).fillna(0).astype(int)
    outcomes = outcomes_by_tier(common, deals, now)
    roi = budget_return(common, revenue, deals_won, config) if has_budget(common) else None
    gain, lift = ranking(common, revenue)
    preds = predictions(common, deals.field)
    notes = []
    if reference is not None and current is not None:
        drift = drift_table(reference, current, feature_columns, categories)
        unseen = unseen_accounts_share(current, categories)
    else:
        drift = drift_table(pd.DataFrame(), pd.DataFrame(), [], {})
        unseen = 0.0
        notes.append("no learned model: no training population to measure drift against")
    now_frame = now if now is not None else common
    components = component_shift(common, now_frame)
    moved = movement(common, now_frame, past_name, "the book now")
    overrides = overrides_outcome(common, revenue, deals_won)
    flagged = flags_outcome(common, revenue, deals_won, flags)
    judged = verdict(period, facts, preds.metrics, drift, unseen, rules)
    known = set(common["account_id"])
    new_accounts = int((~data.accounts["account_id"].astype(str).isin(known)).sum())
    return QuarterlyReview(
        period=period,
        past_name=past_name,
        data_label=data_label,
        facts=facts,
        accounts=len(common),
        missing_accounts=len(past) - len(common),
        new_accounts=new_accounts,
        deals=deals,
        outcomes=outcomes,
        roi=roi,
        gain=gain,
        lift=lift,
        top_tiers=top_tiers_share(outcomes),
        predictions=preds,
        drift=drift,
        unseen_share=unseen,
        components=components,
        movement=moved,
        overrides=overrides,
        verdict=judged,
        notes=notes,
        flags=flagged,
        past=common,
        now=now,
    )


def drift_rows(
    data: CrmData,
    config: ModelConfig,
    trained_until: pd.Timestamp,
    book: pd.DataFrame,
    reference: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training population and the book now, as feature rows with the rule components (what the learners see).

    The training population is the book as of the model's training cut-off, computed point in time from the export:
    accounts against accounts. (The training rows themselves are deals, each with features as of its creation, when
    activity peaks before every deal; against any book they differ by design, so they would show drift where there
    is none.) `reference`: the book's rows as of `trained_until` when built elsewhere (a Spark cluster)."""
    from features.groups import book_snapshot
    from features.rules import with_rule_scores

    if reference is None:
        reference = book_snapshot(data, config, trained_until)
    return with_rule_scores(reference, config), with_rule_scores(book, config)
