"""A scenario's tiers from a scoring's parts: what re-weighting, re-blending, re-sizing tiers or re-splitting the
budget does to a book, without building features or running a learner.

A score record keeps every part the business knobs act on: the three rule components, the learned score and the
blend it was made with. The rule score is their weighted sum and the learned score is `blend * model part +
(1 - blend) * rule score`, so the model part is recovered exactly from a record and re-blended with new weights.
Tiers, pins and budget then go through the one placement every scoring uses (`TieringModel.place_tiers`).
A book rolled up by family (hierarchy.roll_up: family) cannot be re-weighted so: a family's scores pool its
accounts' signals and it is ranked on the family's own keys, none of which its records keep; `rescored` says so
(PartsMissing) and the caller scores the book with the scenario instead. Pure domain: frames in, frames out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import TIERS, ModelConfig
from features.pointintime import clean_text
from scoring.changes import describe_change
from scoring.tiers import TIER_ORDER

COMPONENT_WEIGHTS = {
    "revenue_potential_score": "revenue_potential",
    "business_fit_score": "business_fit",
    "engagement_score": "engagement",
}
NUMBERS = (
    *COMPONENT_WEIGHTS,
    "rule_score",
    "learned_score",
    "win_probability",
    "expected_deal_size",
    "expected_value",
    "pipeline_probability",
    "expected_revenue",
    "budget",
)
ACCOUNT_COLUMNS = [
    "account_id",
    "tier_before",
    "tier_after",
    "rule_score_before",
    "rule_score_after",
    "learned_score_before",
    "learned_score_after",
    "budget_before",
    "budget_after",
    "why",
]


class PartsMissing(ValueError):
    """The scoring's parts cannot give the scenario (blended with weight 0 on the model, or rolled up by family)."""


def in_icp_from(industry: pd.Series, country: pd.Series, config: ModelConfig) -> np.ndarray:
    """Whether each account is inside the ICP (not an excluded industry or country), as the rules decide it."""
    icp = config.business_fit
    excluded_industries = {value.lower() for value in icp.excluded_industries}
    excluded_countries = {value.lower() for value in icp.excluded_countries}
    industries = industry.map(clean_text).isin(excluded_industries).to_numpy()
    countries = country.map(clean_text).isin(excluded_countries).to_numpy()
    return ~(industries | countries)


def rule_score_of(parts: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """The weighted sum of the rule components (as `features.rules` weighs them)."""
    weights = config.rule_weights
    return sum(  # type: ignore[return-value]
        getattr(weights, name) * parts[column].to_numpy(dtype="float64") for column, name in COMPONENT_WEIGHTS.items()
    )


def rolled_up_by_family(parts: pd.DataFrame, then: ModelConfig) -> bool:
    """Whether score records are of a book rolled up by family (`family_id` filled for any account)."""
    if then.hierarchy.roll_up == "family":
        return True
    return "family_id" in parts and bool(parts["family_id"].fillna("").astype("str").ne("").any())


def rescored(
    parts: pd.DataFrame,
    then: ModelConfig,
    business: ModelConfig,
    *,
    budget: float | None,
    overrides: pd.DataFrame | None,
) -> pd.DataFrame:
    """The score records of `parts` (scored with the business knobs of `then`, with an `in_icp` column) under the
    business knobs of `business`: rule and learned scores, rule, learned and final tiers, override reasons, budget.

    Unchanged knobs give back the scores as they were, bit for bit. PartsMissing when the records cannot give the
    scenario: the model part cannot be recovered (the scoring was blended with weight 0 on the model), or the book is
    rolled up by family (its families' own parts are not in the records); score the book instead."""
    from scoring.pyfunc import TieringModel

    if rolled_up_by_family(parts, then):
        raise PartsMissing(
            "it is rolled up by family (hierarchy.roll_up: family): a family is scored and ranked on its accounts' "
            "pooled signals, which its score records do not keep, so its scores cannot be re-weighted from them"
        )
    out = parts.copy()
    for column in NUMBERS:  # a store hands back a column of rules-only blanks as None
        if column in out:
            out[column] = out[column].astype("float64")
    parts = out
    rule_then = parts["rule_score"].to_numpy(dtype="float64")
    same_weights = business.rule_weights == then.rule_weights
    rule = rule_then if same_weights else rule_score_of(parts, business)
    learned_then = parts["learned_score"].to_numpy(dtype="float64")
    learned_model = parts["win_probability"].notna().any()
    blend_then, blend = then.model.blend, business.model.blend
    if not learned_model:
        learned = rule
    elif blend == blend_then:  # the model part is untouched: only the rule part moves
        learned = learned_then if same_weights else learned_then + (1 - blend) * (rule - rule_then)
    elif blend_then == 0:
        raise PartsMissing("the scoring was blended with weight 0 on the model, so its model part is not in it")
    else:
        model_part = (learned_then - (1 - blend_then) * rule_then) / blend_then
        learned = blend * model_part + (1 - blend) * rule
    out["rule_score"], out["learned_score"] = rule, learned
    placement = TieringModel.rules_only(business).place_tiers(out, budget=budget, overrides=overrides)
    for column in ("rule_tier", "learned_tier", "tier", "override_reason", "budget"):
        out[column] = placement[column]
    return out


@dataclass(frozen=True)
class ScenarioComparison:
    accounts: pd.DataFrame  # ACCOUNT_COLUMNS, one row per account
    tiers: pd.DataFrame  # per tier: accounts and budget before and after, and the changes
    moves: pd.DataFrame  # the accounts whose final tier changed, with their direction

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"accounts": self.accounts, "moves": self.moves, "tiers": self.tiers}


def compare_scenario(before: pd.DataFrame, after: pd.DataFrame) -> ScenarioComparison:
    """Per account and per tier, the active configuration's records against the scenario's (same accounts, same
    order); `why` says what moved behind each tier change, in the words of `tiering diff`."""
    moved = (before["tier"].to_numpy() != after["tier"].to_numpy()).nonzero()[0]
    why = np.full(len(before), "", dtype=object)
    old_records = before.iloc[moved].to_dict("records")
    new_records = after.iloc[moved].to_dict("records")
    why[moved] = [describe_change(old, new) for old, new in zip(old_records, new_records)]
    accounts = pd.DataFrame(
        {
            "account_id": before["account_id"].astype("str").to_numpy(),
            "tier_before": before["tier"].to_numpy(),
            "tier_after": after["tier"].to_numpy(),
            "rule_score_before": before["rule_score"].to_numpy(dtype="float64"),
            "rule_score_after": after["rule_score"].to_numpy(dtype="float64"),
            "learned_score_before": before["learned_score"].to_numpy(dtype="float64"),
            "learned_score_after": after["learned_score"].to_numpy(dtype="float64"),
            "budget_before": before["budget"].to_numpy(dtype="float64"),
            "budget_after": after["budget"].to_numpy(dtype="float64"),
            "why": why,
        }
    )
    rows = []
    for tier in TIERS:
        was, now = accounts["tier_before"] == tier, accounts["tier_after"] == tier
        rows.append(
            {
                "tier": tier,
                "accounts_before": int(was.sum()),
                "accounts_after": int(now.sum()),
                "entered": int((now & ~was).sum()),
                "left": int((was & ~now).sum()),
                "budget_before": float(accounts.loc[was, "budget_before"].sum()),
                "budget_after": float(accounts.loc[now, "budget_after"].sum()),
            }
        )
    tiers = pd.DataFrame(rows)
    tiers["budget_change"] = tiers["budget_after"] - tiers["budget_before"]
    moves = accounts.iloc[moved].copy()
    rank = np.vectorize(TIER_ORDER.__getitem__, otypes=[np.int64])
    levels = rank(moves["tier_before"].to_numpy()) - rank(moves["tier_after"].to_numpy()) if len(moves) else []
    levels = pd.Series(levels, index=moves.index, dtype="int64")
    moves.insert(1, "direction", np.where(levels > 0, "up", "down"))
    moves.insert(2, "levels", levels.astype(int))
    moves = moves.sort_values(["levels", "learned_score_after"], ascending=[False, False], key=None)
    return ScenarioComparison(accounts, tiers, moves.reset_index(drop=True))
