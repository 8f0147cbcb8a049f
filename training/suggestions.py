"""Suggested rule weights: the weights (non-negative, summing to 1) whose rule tiers would have put the most won
revenue in Tier 1 and 2, fitted on one period and judged on the next (out of time), never applied by themselves.

The fit is a search over the weight simplex in steps of 0.05 (231 candidates a revenue team can read), each judged
by the share of the fit period's won revenue its Tier 1 + 2 took (filled by capacity, as scoring fills them; at most
as many accounts as the active configuration puts there, so no candidate wins by filling the tiers with more);
ties go to the larger area under the won-revenue gain curve, then to the weights nearest the active ones. Optionally,
up to `whatif.max_suggested_changes` ICP industry edits (adding an industry to the ICP list, or dropping one) are
tried greedily at the fitted weights, each kept only when it raises the fit share. Pure numpy on score records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pandas as pd

from features.config import TIER_NAMES, ModelConfig
from features.rules import icp_parts
from scoring.scenarios import COMPONENT_WEIGHTS
from scoring.scorer import tie_order
from scoring.tiers import assign_by_capacity
from training.evaluate import gain_curve

GRID_STEP = 0.05
COMPONENTS = tuple(COMPONENT_WEIGHTS)  # score columns, in the order of the weights
WEIGHT_NAMES = tuple(COMPONENT_WEIGHTS.values())


@dataclass(frozen=True)
class Suggestion:
    """What the fit found: weights (None: nothing to learn), the ICP edits kept, and the fit period's figures."""

    weights: dict[str, float] | None
    message: str
    fit_share: float = float("nan")  # Tier 1+2's share of the fit period's won revenue with the suggestion
    active_share: float = float("nan")  # ...with the active weights
    icp_edits: list[str] = field(default_factory=list)
    industries: list[str] | None = None  # the ICP industry list after the edits (None: unchanged)

    def draft(self) -> dict:
        """The suggestion as a draft configuration (only the keys it changes)."""
        if self.weights is None:
            return {}
        changes: dict = {"rule_weights": dict(self.weights)}
        if self.industries is not None:
            changes["business_fit"] = {"industries": list(self.industries)}
        return changes


def weight_grid(step: float = GRID_STEP) -> np.ndarray:
    """Every (revenue potential, business fit, engagement) on the simplex in steps of `step`, as rows."""
    units = round(1 / step)
    rows = [(a, b, units - a - b) for a, b in product(range(units + 1), repeat=2) if a + b <= units]
    return np.array(rows, dtype=np.float64) / units


def _book(score: np.ndarray, parts: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        "account_id": parts["account_id"].to_numpy(dtype=object),
        "rule_score": score,
        "engagement_score": parts["engagement_score"].to_numpy(dtype=np.float64),
        "in_icp": parts["in_icp"].to_numpy(dtype=bool),
    }


def top_two_count(score: np.ndarray, parts: pd.DataFrame, config: ModelConfig) -> int:
    """How many accounts a rule score of `score` puts in Tier 1 or 2 (filled by capacity, as scoring fills them)."""
    tiers = assign_by_capacity(tie_order(_book(score, parts), "rule_score"), config.tiers).tiers
    return int(np.isin(tiers, TIER_NAMES[:2]).sum())


def top_share(score: np.ndarray, parts: pd.DataFrame, revenue: np.ndarray, count: int, config: ModelConfig) -> float:
    """Share of `revenue` (per account) held by the accounts a rule score of `score` puts in Tier 1 or 2 (filled by
    capacity, minimum scores included), counting at most the `count` best: no candidate wins by filling the tiers
    with more accounts than the active configuration does."""
    ranked = tie_order(_book(score, parts), "rule_score")
    tiers = assign_by_capacity(ranked, config.tiers).tiers
    order = ranked.order[np.isin(tiers[ranked.order], TIER_NAMES[:2])][:count]
    total = revenue.sum()
    return float(revenue[order].sum() / total) if total else float("nan")


def _fit_weights(components: np.ndarray, parts: pd.DataFrame, revenue: np.ndarray, config: ModelConfig, count: int):
    active = np.array([getattr(config.rule_weights, name) for name in WEIGHT_NAMES])
    best, best_key = active, (-1.0, -1.0, 0.0)
    for weights in weight_grid():
        score = components @ weights
        share = top_share(score, parts, revenue, count, config)
        area = float(gain_curve(revenue, score)[1].mean())
        key = (round(share, 12), round(area, 12), -float(np.abs(weights - active).sum()))
        if key > best_key:
            best, best_key = weights, key
    return best, best_key[0]


def suggest(
    parts: pd.DataFrame, features: pd.DataFrame | None, revenue: np.ndarray, config: ModelConfig, max_changes: int = 0
) -> Suggestion:
    """Suggested weights (and up to `max_changes` ICP industry edits, when `features`, the feature rows behind
    `parts` in the same order, are given) from `parts` (score records with in_icp) and the won revenue each account
    brought in the fit period."""
    revenue = np.asarray(revenue, dtype=np.float64)
    components = parts[list(COMPONENTS)].to_numpy(dtype=np.float64)
    if not np.isfinite(components).all() or np.ptp(components, axis=0).max() == 0:
        return Suggestion(
            None,
            "the rule scores are the same for every account: there is nothing to learn from "
            "them; keep the weights (or give the rules more to tell accounts apart by)",
        )
    if revenue.sum() <= 0:
        return Suggestion(None, "no deal was won in the fit period: there is nothing to learn the weights from")
    active = np.array([getattr(config.rule_weights, name) for name in WEIGHT_NAMES])
    count = top_two_count(components @ active, parts, config)
    active_share = top_share(components @ active, parts, revenue, count, config)
    weights, share = _fit_weights(components, parts, revenue, config, count)
    edits: list[str] = []
    industries: list[str] | None = None
    if features is not None and max_changes > 0:
        weights, share, edits, industries = _icp_edits(
            parts, features, revenue, config, weights, share, max_changes, count
        )
    fitted = {name: round(float(w), 2) for name, w in zip(WEIGHT_NAMES, weights)}
    message = (
        f"weights {fitted['revenue_potential']:.2f} / {fitted['business_fit']:.2f} / {fitted['engagement']:.2f} "
        f"put {share:.1%} of the fit period's won revenue in Tier 1 and 2 (the active weights: {active_share:.1%})"
        + (f", with {len(edits)} ICP edit(s): {'; '.join(edits)}" if edits else "")
    )
    return Suggestion(fitted, message, share, active_share, edits, industries)


def _icp_edits(
    parts: pd.DataFrame,
    features: pd.DataFrame,
    revenue: np.ndarray,
    config: ModelConfig,
    weights: np.ndarray,
    share: float,
    max_changes: int,
    count: int,
) -> tuple[np.ndarray, float, list[str], list[str] | None]:
    """Greedy ICP industry edits at the fitted weights, each kept only when it raises the fit share."""
    industries = list(config.business_fit.industries)
    seen = sorted({value for value in features["industry"].dropna().astype(str) if value})
    edits: list[str] = []
    components = parts[list(COMPONENTS)].to_numpy(dtype=np.float64).copy()
    fit_column = COMPONENTS.index("business_fit_score")
    for _ in range(max_changes):
        best: tuple[float, list[str], str, np.ndarray] | None = None
        for industry in seen:
            trial = [i for i in industries if i != industry] if industry in industries else [*industries, industry]
            edited = config.model_copy(
                update={"business_fit": config.business_fit.model_copy(update={"industries": trial})}
            )
            fit = _business_fit(features, edited)
            trial_components = components.copy()
            trial_components[:, fit_column] = fit
            trial_share = top_share(trial_components @ weights, parts, revenue, count, config)
            if trial_share > share + 1e-9 and (best is None or trial_share > best[0]):
                verb = "drop" if industry in industries else "add"
                best = (trial_share, trial, f"{verb} industry {industry!r}", trial_components)
        if best is None:
            break
        share, industries, edit, components = best
        edits.append(edit)
    return weights, share, edits, (industries if edits else None)


def _business_fit(features: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    from features.rules import business_fit_score

    return business_fit_score(features, config, icp_parts(features, config))
