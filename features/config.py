"""The typed configuration behind `tiering.yaml`.

Every tunable of the tool lives here, validated by pydantic with unknown keys rejected, so a typo
in the YAML stops the run with the key's path instead of being silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CHANNELS: tuple[str, ...] = (
    "web_visit",
    "content_download",
    "email_open",
    "email_click",
    "event_attended",
    "demo_request",
    "sales_meeting",
)
TIER_NAMES: tuple[str, ...] = ("tier_1", "tier_2", "tier_3")
UNTIERED = "untiered"
TIERS: tuple[str, ...] = (*TIER_NAMES, UNTIERED)  # every value a tier column takes


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleWeights(Strict):
    revenue_potential: float = Field(0.40, ge=0, description="Weight of revenue_potential_score.")
    business_fit: float = Field(0.35, ge=0, description="Weight of business_fit_score.")
    engagement: float = Field(0.25, ge=0, description="Weight of engagement_score.")

    @model_validator(mode="after")
    def _sum_to_one(self) -> RuleWeights:
        total = self.revenue_potential + self.business_fit + self.engagement
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"rule weights must sum to 1 (they sum to {total:g})")
        return self


class RevenuePotential(Strict):
    """Size and spend capacity: log-scaled revenue and head-count between a floor and a ceiling."""

    revenue_floor: float = Field(1e6, gt=0, description="Annual revenue (USD) that scores 0.")
    revenue_ceiling: float = Field(1e10, gt=0, description="Annual revenue (USD) that scores 100.")
    employees_floor: float = Field(10, gt=0)
    employees_ceiling: float = Field(50_000, gt=0)
    revenue_share: float = Field(0.6, ge=0, le=1, description="Share of revenue in the score; rest is head-count.")


class BusinessFit(Strict):
    """The ideal customer profile (ICP); points add up to 100."""

    industries: list[str] = Field(
        default=["software", "financial services", "healthcare", "manufacturing"],
        description="ICP industries (matched case-insensitively after trimming).",
    )
    excluded_industries: list[str] = Field(default=["government"], description="Outside the ICP: never tiered.")
    employees_min: float = Field(200, ge=0)
    employees_max: float = Field(20_000, ge=0)
    countries: list[str] = Field(
        default=["united states", "canada", "united kingdom", "germany", "france", "netherlands"]
    )
    regions: list[str] = Field(
        default=["north america", "emea"], description="ICP regions, used when the country is not listed."
    )
    excluded_countries: list[str] = Field(default=[], description="Outside the ICP: never tiered.")
    tech_stack: list[str] = Field(default=["salesforce", "snowflake", "aws", "hubspot", "segment"])
    industry_points: float = Field(40, ge=0)
    size_points: float = Field(25, ge=0)
    geography_points: float = Field(15, ge=0)
    tech_points: float = Field(20, ge=0)
    tech_matches_for_full_points: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _points_sum_to_100(self) -> BusinessFit:
        total = self.industry_points + self.size_points + self.geography_points + self.tech_points
        if abs(total - 100) > 1e-6:
            raise ValueError(f"business-fit points must sum to 100 (they sum to {total:g})")
        return self


class Engagement(Strict):
    lookback_days: int = Field(180, gt=0, description="Events older than this are ignored.")
    half_life_days: float = Field(30, ge=3, description="An event this old counts half as much as one today.")
    channel_weights: dict[str, float] = Field(
        default={
            "web_visit": 1.0,
            "content_download": 3.0,
            "email_open": 0.5,
            "email_click": 1.5,
            "event_attended": 5.0,
            "demo_request": 10.0,
            "sales_meeting": 8.0,
        },
        description="Points per (recency-weighted) event; unknown channels weigh `unknown_channel_weight`.",
    )
    unknown_channel_weight: float = Field(1.0, ge=0)
    saturation_points: float = Field(
        60,
        gt=0,
        description="Weighted points at which engagement_score reaches 63 (score = 100 * (1 - exp(-points / this))).",
    )


class IntentSurge(Strict):
    window_days: int = Field(14, gt=0, description="Recent window compared against the baseline.")
    baseline_days: int = Field(90, gt=0, description="Baseline period just before the recent window.")
    factor: float = Field(3.0, gt=1, description="Recent activity must be this many times the baseline rate.")
    min_channels: int = Field(
        2, ge=1, description="Channels (engagement channels and external intent) that must surge."
    )
    min_recent_events: int = Field(3, ge=1, description="A channel with fewer recent events never surges.")


class Intent(Strict):
    topics: list[str] = Field(
        default=["crm", "marketing automation", "data warehouse", "analytics", "security", "cloud migration"],
        description="Topics with a feature of their own; others count in the total.",
    )
    surge: IntentSurge = IntentSurge()


class Tier(Strict):
    max_accounts: int | None = Field(ge=0, description="Capacity; null = no limit.")
    min_score: float = Field(ge=0, le=100, description="Accounts below this score cannot enter the tier.")


class Tiers(Strict):
    tier_1: Tier = Tier(max_accounts=20, min_score=60)
    tier_2: Tier = Tier(max_accounts=500, min_score=40)
    tier_3: Tier = Tier(max_accounts=None, min_score=20)

    def ordered(self) -> list[tuple[str, Tier]]:
        return [(name, getattr(self, name)) for name in TIER_NAMES]


class Budget(Strict):
    split: dict[str, float] = Field(default={"tier_1": 0.60, "tier_2": 0.30, "tier_3": 0.10})
    total: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Total budget split by tier when --budget is not given."
    )

    @model_validator(mode="after")
    def _valid_split(self) -> Budget:
        if any(share < 0 for share in self.split.values()):
            raise ValueError("budget.split shares must be 0 or more")
        unknown = set(self.split) - set(TIER_NAMES)
        if unknown:
            raise ValueError(f"budget.split has unknown tiers {sorted(unknown)}; use {list(TIER_NAMES)}")
        total = sum(self.split.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"budget.split must sum to 1 (it sums to {total:g})")
        return self


class Window(Strict):
    months: int = Field(12, ge=1, description="Train on opportunities closed this many months before --as-of.")
    holdout_months: int = Field(3, ge=1, description="The latest months of the window, held out for evaluation.")
    calibration_months: int = Field(2, ge=1, description="Months before the holdout used to calibrate win probability.")


class Gate(Strict):
    min_won: int = Field(100, ge=0)
    min_lost: int = Field(100, ge=0)
    champion_tolerance: float = Field(
        0.01,
        ge=0,
        description="Allowed holdout ROC AUC drop against the current champion "
        "(its recipe re-fitted on the same months, judged on the same holdout).",
    )
    min_auc_margin_over_rules: float = Field(
        0.0, ge=0, description="The 95% lower bound of the AUC gain over the rule score must exceed this."
    )


class Candidate(Strict):
    """One LightGBM setting the search tries; boosting stops early on the validation slice."""

    num_leaves: int = Field(ge=2)
    learning_rate: float = Field(gt=0, le=1)
    min_child_samples: int = Field(ge=1)
    lambda_l2: float = Field(0.0, ge=0)
    min_data_per_group: int = Field(
        100, ge=1, description="Fewest rows a category level needs to get its own split (LightGBM's default 100)."
    )
    cat_smooth: float = Field(20.0, ge=0, description="Shrinks a category level's mean towards the overall one.")

    def label(self) -> str:
        categories = (
            ""
            if (self.min_data_per_group, self.cat_smooth) == (100, 20.0)
            else f", categories of {self.min_data_per_group}+ rows smoothed {self.cat_smooth:g}"
        )
        return (
            f"LightGBM {self.num_leaves} leaves, rate {self.learning_rate:g}, "
            f"min leaf {self.min_child_samples}, L2 {self.lambda_l2:g}{categories}"
        )


DEFAULT_CANDIDATES = (
    Candidate(num_leaves=7, learning_rate=0.05, min_child_samples=50, lambda_l2=5.0),
    Candidate(num_leaves=15, learning_rate=0.05, min_child_samples=40, lambda_l2=1.0),
    Candidate(num_leaves=31, learning_rate=0.05, min_child_samples=20, lambda_l2=1.0),
    Candidate(num_leaves=15, learning_rate=0.1, min_child_samples=100, lambda_l2=10.0),
    # For small exports: few leaves, and category levels of 20 deals may split, their means smoothed.
    Candidate(
        num_leaves=7, learning_rate=0.05, min_child_samples=20, lambda_l2=1.0, min_data_per_group=20, cat_smooth=10.0
    ),
)


class Search(Strict):
    """Learner selection before the holdout (which it never sees): every candidate on the validation slice, then the
    finalists on rolling validation periods (`folds`)."""

    candidates: list[Candidate] = Field(
        default=list(DEFAULT_CANDIDATES),
        description="LightGBM settings tried, simplest first; the logistic regression is always a candidate.",
    )
    early_stopping_rounds: int = Field(
        50, ge=5, description="Stop boosting when validation AUC has not improved for this many rounds."
    )
    time_budget_seconds: float = Field(
        120.0, gt=0, description="No new candidate starts once the search has used this long."
    )
    tie_tolerance: float = Field(
        0.002,
        ge=0,
        description="Pooled validation ROC AUC within this of the best (or within "
        "`tie_standard_errors` of the difference, if larger) is a tie; ties go to the simpler learner.",
    )
    tie_standard_errors: float = Field(
        2.0,
        ge=0,
        description="A more complex learner must beat a simpler one by this many standard errors of their "
        "pooled paired difference over the folds (a bootstrap over deals; 2 = about 95% confidence).",
    )
    logistic_c: float = Field(1.0, gt=0, description="Inverse L2 strength of the logistic regression candidate.")
    folds: int = Field(
        3,
        ge=1,
        description="The finalists (the logistic regression, the best LightGBM and their blend) are judged on this "
        "many consecutive validation periods of `window.calibration_months` ending at the holdout, each fitted on "
        "the months before it; 1 judges on the validation slice alone.",
    )
    blend: bool = Field(
        True, description="Try the blend of the logistic regression and the best LightGBM as a finalist."
    )
    max_rows: int = Field(
        50_000,
        ge=1_000,
        description="The search fits its candidates on at most this many fit rows "
        "(a seeded random sample); the chosen learner is then fitted on all of them.",
    )


class Guards(Strict):
    """Checks before fitting: features that leak the outcome, and win rates that shift between slices."""

    leak_auc: float = Field(
        0.95,
        gt=0.5,
        le=1,
        description="A feature whose single-feature ROC AUC on the fitting months exceeds this is refused.",
    )
    leak_purity: float = Field(
        0.99,
        gt=0.5,
        le=1,
        description="A feature present (not empty) almost only for one outcome, at this share or more, is refused.",
    )
    leak_min_present: int = Field(
        30, ge=1, description="The purity check needs at least this many rows where the feature is present."
    )
    shift_p_value: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Win rates of the fit, validation and holdout slices differ at this significance: a warning.",
    )
    shift_min_ratio: float = Field(
        1.5, ge=1, description="...and the highest slice win rate is at least this many times the lowest."
    )


class Model(Strict):
    blend: float = Field(0.7, ge=0, le=1, description="learned_score = blend * model part + (1 - blend) * rule_score.")
    extra_features: list[str] = Field(default=[], description="Extra account columns used by the learners as they are.")
    allow_features: list[str] = Field(
        default=[], description="Features the leakage guard may not refuse (feature or account column names)."
    )
    balance_classes: Literal["auto", "always", "never"] = "auto"
    calibration: Literal["auto", "platt", "beta", "isotonic_platt"] = Field(
        "auto",
        description="Map from model margin to probability, fitted on the validation slice; auto picks by "
        "cross-validated log loss.",
    )
    deal_size_objective: Literal["log_l2", "gamma"] = "log_l2"
    deal_size_min_r2: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="A deal-size model whose validation R² on log amount (after shrinkage) "
        "is below this is replaced by the constant mean won amount.",
    )
    reasons_method: Literal["path", "treeshap"] = Field(
        "path", description="Per-feature contributions behind the reasons: tree-path attribution (fast) or TreeSHAP."
    )
    num_boost_round: int = Field(
        1000, ge=10, description="Most boosting rounds; early stopping on the validation slice usually stops sooner."
    )
    horizon_days: int = Field(
        90,
        ge=7,
        le=365,
        description="Look-ahead of pipeline_probability (a new opportunity within this many days) and "
        "expected_revenue (won revenue inside it), and of `tiering forecast`.",
    )
    rank_on: Literal["expected_value", "expected_revenue"] = Field(
        "expected_revenue",
        description="What the model part of learned_score ranks on: expected_value (per opportunity, today) or "
        "expected_revenue (won revenue expected inside the horizon: open deals plus new pipeline).",
    )
    pipeline_max_rows: int = Field(
        200_000,
        ge=1_000,
        description="The pipeline-propensity learner fits on at most this many account snapshots (a seeded sample).",
    )
    max_training_rows: int = Field(
        2_000_000,
        ge=1_000,
        description="The learners fit on at most this many of the window's closed opportunities (a seeded sample "
        "stratified by outcome and close month when there are more).",
    )
    search: Search = Search()
    guards: Guards = Guards()
    seed: int = 42
    num_threads: int = Field(
        0, ge=0, description="LightGBM threads; 0 = OpenMP's default (all cores, or OMP_NUM_THREADS)."
    )
    window: Window = Window()
    gate: Gate = Gate()


class Hierarchy(Strict):
    """Account families from `parent_account_id` (any depth; the top account's id is the family id)."""

    roll_up: Literal["none", "family"] = Field(
        "none",
        description="family: engagement and intent are summed over the family (with their decay), surges come from "
        "the family's channels, firmographics from the top account and opportunity history is pooled; the learners "
        "also see these family features, and the scores add the family columns. Model configuration: it changes "
        "the learners' inputs, so a model keeps the value it was trained with.",
    )
    tier_by: Literal["account", "family"] = Field(
        "account",
        description="family: families are ranked by family_learned_score and take one slot each in a tier's "
        "capacity; their accounts inherit the family tier unless pinned, and a tier's budget is split across its "
        "families, then evenly across a family's accounts. Business configuration, read at scoring time; needs a "
        "model trained with roll_up: family.",
    )


FEATURE_SECTIONS = ("revenue_potential", "business_fit", "engagement", "intent")


class ModelConfig(Strict):
    """What the logged model runs with: the feature settings (rule components are learner inputs), the learners,
    search, guards, window and gate, and `rank_on`, all frozen with a registered model.

    The business part (`rule_weights`, `model.blend`, `tiers`, `budget`) rides along so a scorer is complete on
    its own, but it is read at scoring time: `with_business` swaps in the current configuration's values, so
    re-weighting or re-sizing tiers needs no retraining. The full `tiering.yaml` (with the alerts, review and
    validation settings, which the model never reads) is `configuration.TieringConfig`."""

    rule_weights: RuleWeights = RuleWeights()
    revenue_potential: RevenuePotential = RevenuePotential()
    business_fit: BusinessFit = BusinessFit()
    engagement: Engagement = Engagement()
    intent: Intent = Intent()
    tiers: Tiers = Tiers()
    budget: Budget = Budget()
    model: Model = Model()
    hierarchy: Hierarchy = Hierarchy()

    @model_validator(mode="after")
    def _family_tiers_need_families(self) -> ModelConfig:
        if self.hierarchy.tier_by == "family" and self.hierarchy.roll_up != "family":
            raise ValueError(FAMILY_TIERS_NEED_ROLL_UP)
        return self

    def with_business(self, business: ModelConfig) -> ModelConfig:
        """This model configuration with the business knobs (rule weights, blend, tiers, budget, tier_by) of
        `business`; refused when `business` tiers by family and this model does not roll up to families."""
        if business.hierarchy.tier_by == "family" and self.hierarchy.roll_up != "family":
            raise ConfigError(
                "hierarchy.tier_by: family needs a model trained with hierarchy.roll_up: family; this one was "
                "trained without families: train one with roll_up: family, or set tier_by: account"
            )
        return self.model_copy(
            update={
                "rule_weights": business.rule_weights,
                "tiers": business.tiers,
                "budget": business.budget,
                "model": self.model.model_copy(update={"blend": business.model.blend}),
                "hierarchy": self.hierarchy.model_copy(update={"tier_by": business.hierarchy.tier_by}),
            }
        )

    def prediction_settings(self) -> dict:
        """What decides a trained model's predictions and reasons (not its training-only gate, search or window)."""
        scoring_knobs = ("extra_features", "reasons_method", "horizon_days", "rank_on")
        settings = {
            **{name: getattr(self, name).model_dump(mode="json") for name in FEATURE_SECTIONS},
            "model": {name: getattr(self.model, name) for name in scoring_knobs},
        }
        if self.hierarchy.roll_up != "none":  # absent by default, so models trained before families compare equal
            settings["hierarchy"] = {"roll_up": self.hierarchy.roll_up}
        return settings

    def model_part(self) -> dict:
        """The keys a registered model records (JSON-ready): this class's fields only, whatever subclass `self` is."""
        return {name: getattr(self, name).model_dump(mode="json") for name in ModelConfig.model_fields}


FAMILY_TIERS_NEED_ROLL_UP = (
    "hierarchy.tier_by: family ranks families by their rolled-up score: set hierarchy.roll_up: family as well "
    "(and train with it), or tier_by: account"
)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and key."""


def describe_problems(error: ValidationError, source: str) -> str:
    """One line per problem, naming the file and the key path, and the fix for an unknown key."""
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}': remove it or check its spelling")
        else:
            lines.append(f"{source}: '{key}': {problem['msg']}")
    return "\n".join(lines)


def parse_model_config(raw: dict | None, source: str = "config") -> ModelConfig:
    """A model configuration as a registered model recorded it."""
    try:
        return ModelConfig.model_validate(raw or {})
    except ValidationError as error:
        raise ConfigError(describe_problems(error, source)) from None
