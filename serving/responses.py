"""What the service answers: score records (the SPEC scores-file columns), tier summaries, model facts.

Every number in an answer is finite: a value that does not exist (e.g. `win_probability` when scoring
with rules only, `budget` when none was given) is null, never NaN or Infinity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.config import Budget
from scoring.rounding import OUTPUT_DECIMALS, rounded
from scoring.scorer import FAMILY_COLUMNS, SCORE_COLUMNS
from scoring.tiers import budget_summary

TierName = Literal["tier_1", "tier_2", "tier_3", "untiered"]


class Finite(BaseModel):
    # Ranges are stated in the descriptions, not enforced: float rounding (100.00000000000001) must not
    # turn a good answer into an error.
    model_config = ConfigDict(allow_inf_nan=False)


class ScoreRecord(Finite):
    """One account's scores: the columns of the `tiering score` file, in the same order. A model trained with
    hierarchy.roll_up: family adds family_id, family_tier, family_learned_score, family_expected_revenue and
    family_engagement_share (on `/score`, as the latest published scoring has them; empty when it has not)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="allow")  # the family columns, when the model has them

    account_id: str
    revenue_potential_score: float = Field(description="Size and spend capacity, 0-100.")
    business_fit_score: float = Field(description="Fit with the ideal customer profile, 0-100.")
    engagement_score: float = Field(description="Recency-weighted activity, 0-100.")
    rule_score: float = Field(description="Weighted sum of the three rule scores, 0-100.")
    rule_tier: TierName = Field(description="Tier the rule score alone would give.")
    win_probability: float | None = Field(description="Calibrated P(an opportunity is won); null with rules only.")
    expected_deal_size: float | None = Field(description="Expected amount of a won deal (USD); null with rules only.")
    expected_value: float | None = Field(description="win_probability x expected_deal_size; null with rules only.")
    learned_score: float = Field(
        description="Model value blended with the rule score, 0-100 (the rule score with rules only)."
    )
    learned_tier: TierName = Field(description="Tier from the learned score.")
    tier: TierName = Field(description="Final tier: the learned tier, unless a pin in the workspace store holds it.")
    override_reason: str = Field(
        description="Who pinned the account to its tier and why (a workspace pin that holds today); else empty."
    )
    budget: float | None = Field(description="This account's share of the budget; null when no budget was given.")
    intent_surge: bool = Field(description="Activity up threefold on at least two channels within 14 days.")
    reason_1: str = Field(description="Strongest factor behind the learned score, in words (empty with rules only).")
    reason_2: str
    reason_3: str
    model_version: str = Field(description="Registered model version that scored, or 'rules-only'.")
    scored_at: str = Field(description="When it was scored (ISO 8601, UTC).")
    as_of: str = Field(description="The date the account was scored as of (ISO date): only data before it was seen.")
    surge_channels: str = Field(
        description="The channels whose activity surges, ';'-separated (e.g. "
        "'demo_request;external_intent'); intent_surge needs at least two."
    )
    pipeline_probability: float | None = Field(
        description="P(the account opens a new opportunity within model.horizon_days, default 90), calibrated; "
        "null with rules only or a model trained before it existed."
    )
    expected_revenue: float | None = Field(
        description="Expected won revenue inside the horizon (USD): open deals plus new pipeline, each by its "
        "chance to close inside the horizon and be won; null with rules only or without deal amounts."
    )
    pilot_group: str = Field(
        "",
        description="The account's group in a pilot running today (treatment or control; control accounts are "
        "kept out of activation); empty outside a pilot.",
    )


class ScoreResponse(Finite):
    """One score record per account, in request order."""

    model_version: str = Field(description="Registered model version that scored, or 'rules-only'.", examples=["3"])
    as_of: date = Field(description="The cut-off used: only data dated before it was seen.", examples=["2026-07-01"])
    scores: list[ScoreRecord]


class TierCount(Finite):
    tier: TierName
    accounts: int = Field(description="Accounts placed in this tier.")
    share: float = Field(description="This tier's share of the budget.")
    budget: float | None = Field(description="Budget for the tier (its share, or 0 when empty); null without a budget.")
    per_account: float | None = Field(description="Budget per account in the tier; null without a budget.")


class ForecastTier(Finite):
    """One tier's (or the whole book's, `overall`) figures expected inside the horizon, each with its 80% interval."""

    tier: Literal["tier_1", "tier_2", "tier_3", "untiered", "overall"]
    accounts: int
    new_opportunities: float = Field(description="Opportunities expected to be created inside the horizon.")
    new_opportunities_low: float
    new_opportunities_high: float
    pipeline_value: float | None = Field(
        description="Their amounts (USD); null when the model knows no deal size (no amounts)."
    )
    pipeline_value_low: float | None
    pipeline_value_high: float | None
    deals_won: float = Field(description="Deals expected to close won inside the horizon, open deals included.")
    deals_won_low: float
    deals_won_high: float
    won_revenue: float | None = Field(
        description="Their amounts (USD); null when the model knows no deal size (no amounts)."
    )
    won_revenue_low: float | None
    won_revenue_high: float | None


class TierResponse(ScoreResponse):
    """The book's score records with tiers filled by capacity, what each tier holds, and what each tier should
    bring inside the horizon (as `POST /forecast` answers, with 10,000 simulations)."""

    budget: float | None = Field(description="The total budget given, or null.", examples=[1_000_000])
    tiers: list[TierCount]
    horizon_days: int | None = Field(
        description="The forecast's horizon (model.horizon_days); null when the model cannot forecast.", examples=[90]
    )
    forecast: list[ForecastTier] | None = Field(
        description="Per tier and overall: new opportunities, pipeline value, deals won and won revenue expected "
        "inside the horizon, each with its 80% interval; null when the model has no pipeline-propensity learner "
        "(rules only, or trained before it existed)."
    )


class ForecastResponse(Finite):
    """Per-tier forecast of a book inside the model's horizon (model.horizon_days)."""

    model_version: str = Field(examples=["3"])
    as_of: date = Field(description="The forecast starts here: only data before it was seen.", examples=["2026-07-01"])
    horizon_days: int = Field(description="The horizon, from the model's configuration.", examples=[90])
    tiers: list[ForecastTier]


class ModelInfo(Finite):
    """The model behind the answers, as the MLflow registry describes it."""

    name: str = Field(description="Registered model name.", examples=["abm-tiering"])
    version: str | None = Field(
        description="Version now serving; 'rules-only' when no champion is registered; null when none can be loaded.",
        examples=["3"],
    )
    alias: str | None = Field(description="Registry alias followed by the service.", examples=["champion"])
    ready: bool = Field(description="False when the champion cannot be served; `problem` says why.")
    problem: str | None = Field(description="Why the champion cannot be served, or the registry cannot be read, if so.")
    registry_champion: str | None = Field(
        None,
        description="The version the registry last called champion "
        "('rules-only' when none); null before it was first read.",
    )
    trained_at: str | None = Field(None, description="When the version was trained (ISO 8601).")
    window_start: str | None = Field(None, description="First day of the training window.")
    window_end: str | None = Field(None, description="Training cut-off (exclusive).")
    holdout_roc_auc: float | None = Field(None, description="The model's ROC AUC on the time-based holdout.")
    rule_roc_auc: float | None = Field(None, description="The rule score's ROC AUC on the same holdout.")
    gate_reason: str | None = Field(None, description="Why the promotion gate passed or refused it.")
    run_id: str | None = Field(None, description="MLflow run that trained it.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Every metric the training run logged (holdout)."
    )


def score_records(scores: Mapping[str, np.ndarray] | pd.DataFrame) -> list[dict]:
    """Score rows as JSON-ready dicts: missing or non-finite numbers become None.

    Numbers are rounded as the scores file rounds them (`ingest.files.rounded`), so the API and batch scoring
    publish the same figures.
    """
    # Column by column: pandas' own row conversion costs milliseconds even for one account.
    # pilot_group, then the family columns with roll_up: family, as the scores file writes them
    names = [*SCORE_COLUMNS, *(name for name in ["pilot_group", *FAMILY_COLUMNS] if name in scores)]
    columns = [
        np.asarray(rounded(scores[name], name)).tolist()
        if name in OUTPUT_DECIMALS
        else np.asarray(scores[name]).tolist()
        for name in names
    ]
    records = [dict(zip(names, values)) for values in zip(*columns)]
    for record in records:
        for name, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                record[name] = None
    return records


def forecast_records(table: pd.DataFrame) -> list[dict]:
    """The per-tier forecast as JSON-ready dicts: unknown amounts (an export without them) become None."""
    return table.astype(object).where(table.notna(), None).to_dict("records")


def tier_budget_records(tiers: pd.Series, budget: float | None, split: Budget) -> list[dict]:
    """Accounts and budget per tier; the amounts are null when no budget was given."""
    summary = budget_summary(tiers, budget, split)
    if budget is None:
        summary[["budget", "per_account"]] = None
    return summary.astype(object).where(summary.notna(), None).to_dict("records")
