"""Turn point-in-time feature rows into score records: rule scores, learned scores, tiers, budget, reasons.

Pure domain logic: no files, no MLflow, no HTTP. The same `Scorer` runs in `tiering score`, inside the
logged MLflow model, and behind the BentoML service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pandas as pd

from features.config import TIER_NAMES, UNTIERED, ModelConfig
from features.families import FAMILY_PREFIX
from features.matrix import FeatureSpec
from features.pointintime import surge_channel_names
from features.rules import Features, with_rule_score_columns, with_rule_scores
from scoring.learners import DealSizeModel, WinModel
from scoring.pipeline import PipelineModel
from scoring.reasons import top_reasons
from scoring.tiers import (
    RankedBook,
    allocate_budget,
    allocate_budget_by_family,
    apply_overrides,
    assign_by_capacity,
    tiers_by_cutoffs,
)

SCORE_COLUMNS = [
    "account_id",
    "revenue_potential_score",
    "business_fit_score",
    "engagement_score",
    "rule_score",
    "rule_tier",
    "win_probability",
    "expected_deal_size",
    "expected_value",
    "learned_score",
    "learned_tier",
    "tier",
    "override_reason",
    "budget",
    "intent_surge",
    "reason_1",
    "reason_2",
    "reason_3",
    "model_version",
    "scored_at",
    "as_of",
    "surge_channels",
    "pipeline_probability",
    "expected_revenue",
]
# With hierarchy.roll_up: family, after SCORE_COLUMNS (see `score_columns_for`).
FAMILY_COLUMNS = [
    "family_id",
    "family_tier",
    "family_learned_score",
    "family_expected_revenue",
    "family_engagement_share",
]
RULES_ONLY = "rules-only"
# Per-account columns carried from the feature rows and rule scores into the score records.
PREDICTED_FROM_FEATURES = (
    "account_id",
    "revenue_potential_score",
    "business_fit_score",
    "engagement_score",
    "rule_score",
    "in_icp",
    "intent_surge",
)
TIER_SOURCES = (("learned_tier", "learned_score", "learned"), ("rule_tier", "rule_score", "rule"))
QUANTILES = 201
FAMILY_RANKING = ("in_icp", "win_probability", "rule_score", "engagement_score")  # family_<name>: tie_order's keys
FAMILY_RANKING_COLUMNS = tuple(f"family_{name}" for name in FAMILY_RANKING)  # what `_family_tiers` ranks on


def score_columns_for(config: ModelConfig) -> list[str]:
    """The columns of score records: SCORE_COLUMNS, and FAMILY_COLUMNS with hierarchy.roll_up: family."""
    return SCORE_COLUMNS + FAMILY_COLUMNS if config.hierarchy.roll_up == "family" else SCORE_COLUMNS


@dataclass(frozen=True)
class Learners:
    """A learned scorer's feature spec and models, all present (see `Scorer.learners`)."""

    spec: FeatureSpec
    win_model: WinModel
    deal_model: DealSizeModel


@dataclass
class Scorer:
    """Everything needed to score an account; `win_model=None` means rules only (no champion yet)."""

    config: ModelConfig
    spec: FeatureSpec | None = None
    win_model: WinModel | None = None
    deal_model: DealSizeModel | None = None
    value_quantiles: np.ndarray | None = None  # of log1p(ranking value) on the training book
    cutoffs: dict[str, dict[str, float]] = field(default_factory=dict)  # {"learned": {...}, "rule": {...}}
    pipeline: PipelineModel | None = None  # pipeline propensity and time to close (models logged before: None)
    _attribution_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_learned(self) -> bool:
        return self.win_model is not None

    def learners(self) -> Learners | None:
        """The feature spec and both models; None for a rules-only scorer (no win model)."""
        if self.win_model is None:
            return None
        if self.spec is None or self.deal_model is None:
            raise ValueError("a learned scorer needs its feature spec and deal-size model along with its win model")
        return Learners(self.spec, self.win_model, self.deal_model)

    def predict(self, rows: pd.DataFrame, explain: bool = True) -> pd.DataFrame:
        """Per-account scores without the book-level parts (tiers, budget, overrides).

        `explain` adds the top three reasons from per-feature contributions, which cost more than the
        prediction itself, so book-level bookkeeping (cut-offs, holdout tiers) skips them.
        """
        return pd.DataFrame(self.predict_columns(rows, explain), index=rows.index)

    def predict_columns(self, features: Features, explain: bool = True) -> dict[str, np.ndarray]:
        """`predict` on feature columns given as a frame or a mapping of arrays (the service's way); with
        hierarchy.roll_up: family, also each account's family scores (see `family_predictions`)."""
        out = self._account_predictions(features, explain)
        if self.config.hierarchy.roll_up == "family" and "family_id" in features:
            out.update(self.family_predictions(features))
        return out

    def family_predictions(self, features: Features) -> dict[str, np.ndarray]:
        """Per account, its family's scores, each family predicted once from its rolled-up row (the `family_<name>`
        columns of the feature builder: summed signals, pooled deals, the top account's firmographics): family_id,
        family_learned_score, family_expected_revenue, family_engagement_share (the account's share of the family's
        decayed engagement; empty when the family has none), and what family tiers are ranked and tie-broken on."""
        ids = np.asarray(features["family_id"], dtype=object)
        _, first, inverse = np.unique(ids.astype(str), return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        family: dict[str, np.ndarray] = {}
        for name in features.keys():
            if name.startswith(FAMILY_PREFIX) and name != "family_id":
                values = np.asarray(features[name])[first]
                family[name] = values
                family.setdefault(name.removeprefix(FAMILY_PREFIX), values)
        family["account_id"] = ids[first]
        scored = self._account_predictions(family, explain=False)
        own = np.asarray(features["eng_w_total"], dtype=np.float64)
        total = np.asarray(features["family_eng_w_total"], dtype=np.float64)
        return {
            "family_id": ids,
            "family_learned_score": scored["learned_score"][inverse],
            "family_expected_revenue": scored["expected_revenue"][inverse],
            "family_engagement_share": np.divide(own, total, out=np.full(len(own), np.nan), where=total > 0),
            **{f"family_{name}": scored[name][inverse] for name in FAMILY_RANKING},
        }

    def family_ranking(self, features: Features) -> dict[str, np.ndarray]:
        """Per account, what its family is ranked and tie-broken on beside family_learned_score (FAMILY_RANKING_COLUMNS,
        from `family_predictions`): for an engine that scores accounts apart from placing them (Spark)."""
        family = self.family_predictions(features)
        return {name: family[name] for name in FAMILY_RANKING_COLUMNS}

    def _account_predictions(self, features: Features, explain: bool) -> dict[str, np.ndarray]:
        rows = with_rule_score_columns(features, self.config)
        out = {name: np.asarray(rows[name]) for name in PREDICTED_FROM_FEATURES}
        count = len(out["rule_score"])
        blank = np.full(count, "", dtype=object)
        learners = self.learners()
        if learners is None or count == 0:  # LightGBM cannot explain zero rows
            missing = np.full(count, np.nan)
            return {
                **out,
                "win_probability": missing,
                "expected_deal_size": missing,
                "expected_value": missing,
                "pipeline_probability": missing,
                "expected_revenue": missing,
                "learned_score": out["rule_score"],
                "reason_1": blank,
                "reason_2": blank,
                "reason_3": blank,
            }
        win_model, deal_model = learners.win_model, learners.deal_model
        matrix = learners.spec.encode(rows)
        if explain:
            # Contributions add up to each model's raw margin, so they replace the plain predictions.
            method, cache = self.config.model.reasons_method, self._attribution_cache
            contributions_win = win_model.contributions(matrix, method, cache)
            contributions_size = deal_model.contributions(matrix, method, cache)
            win_margin, size_margin = contributions_win.sum(axis=1), contributions_size.sum(axis=1)
        else:
            win_margin, size_margin = win_model.margin(matrix), deal_model.margin(matrix)
        probability = win_model.calibrate(win_margin)
        deal_size = deal_model.from_margin(size_margin)
        expected_value = probability * deal_size
        pipeline_probability, expected_revenue = self.look_ahead(rows, probability, deal_size)
        out.update(
            win_probability=probability,
            expected_deal_size=deal_size,
            expected_value=expected_value,
            pipeline_probability=pipeline_probability,
            expected_revenue=expected_revenue,
            learned_score=self.learned_score(
                self.ranking_value(probability, deal_size, expected_revenue), out["rule_score"]
            ),
        )
        reasons = [blank] * 3
        if explain:
            # d log(p) / d margin = 1 - p for a logistic link: contributions to log expected value, to first order.
            combined = contributions_win[:, :-1] * (1 - probability)[:, None]
            if deal_model.known:
                combined = combined + contributions_size[:, :-1]
            reasons = top_reasons(combined, learners.spec.columns, rows, self.config)
        out.update(reason_1=reasons[0], reason_2=reasons[1], reason_3=reasons[2])
        return out

    def look_ahead(
        self, rows: Features, probability: np.ndarray, deal_size: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """pipeline_probability and expected_revenue (NaN for models logged before the pipeline learner)."""
        if self.pipeline is None:
            missing = np.full(len(probability), np.nan)
            return missing, missing
        pipeline = self.pipeline
        matrix = pipeline.encode(rows)  # once for both of its learners
        pipeline_probability = pipeline.probability(rows, matrix)
        return pipeline_probability, pipeline.expected_revenue(
            rows, pipeline_probability, probability, deal_size, matrix
        )

    def ranking_value(
        self, probability: np.ndarray, deal_size: np.ndarray, expected_revenue: np.ndarray | None = None
    ) -> np.ndarray:
        """What the model part ranks on (`model.rank_on`): expected value, or expected revenue inside the horizon;
        the win probability when no amounts were known."""
        if self.deal_model is None:
            raise ValueError("this scorer has no deal-size model (rules only): it has no model part to rank on")
        if not self.deal_model.known:
            return probability
        if (
            self.config.model.rank_on == "expected_revenue"
            and expected_revenue is not None
            and self.pipeline is not None
        ):
            return expected_revenue
        return probability * deal_size

    def model_part(self, value: np.ndarray) -> np.ndarray:
        """0-100: where the value falls in the training book's distribution, strictly increasing.

        Inside the book's range it is the percentile (0.5 to 99.5); beyond it the score keeps rising
        (or falling) towards 100 (or 0) without reaching it, so accounts above the training book's
        range stay ordered instead of tying at 100.
        """
        quantiles = self.value_quantiles
        if quantiles is None:
            raise ValueError("the model part needs the value distribution of a full scoring: freeze the scorer first")
        logged = np.log1p(np.clip(value, 0, None))
        levels = _levels(len(quantiles))
        inside = np.interp(logged, quantiles, levels)
        # The tails decay over the book's whole log range, so even values far outside stay apart in floats.
        scale = max(float(quantiles[-1] - quantiles[0]), 1e-6)
        below = 0.5 * np.exp(np.clip((logged - quantiles[0]) / scale, -700, 0))
        above = 100.0 - 0.5 * np.exp(np.clip((quantiles[-1] - logged) / scale, -700, 0))
        return np.where(logged < quantiles[0], below, np.where(logged > quantiles[-1], above, inside))

    def learned_score(self, value: np.ndarray, rule_score: np.ndarray) -> np.ndarray:
        blend = self.config.model.blend
        return blend * self.model_part(value) + (1 - blend) * rule_score

    def freeze(self, book: pd.DataFrame) -> None:
        """Store the value distribution and tier cut-offs of a full scoring, for single-account scoring later."""
        scored = with_rule_scores(book, self.config)
        learned_score = scored["rule_score"].to_numpy()
        probability = np.full(len(scored), np.nan)
        learners = self.learners()
        if learners is not None:
            matrix = learners.spec.encode(scored)
            probability = learners.win_model.predict(matrix)
            deal_size = learners.deal_model.predict(matrix)
            _, revenue = self.look_ahead(scored, probability, deal_size)
            value = self.ranking_value(probability, deal_size, revenue)
            self.value_quantiles = np.quantile(np.log1p(np.clip(value, 0, None)), np.linspace(0, 1, QUANTILES))
            learned_score = self.learned_score(value, scored["rule_score"].to_numpy())
        columns = {
            "account_id": scored["account_id"].to_numpy(dtype=object),
            "in_icp": scored["in_icp"].to_numpy(),
            "learned_score": learned_score,
            "rule_score": scored["rule_score"].to_numpy(),
            "win_probability": probability,
            "engagement_score": scored["engagement_score"].to_numpy(),
        }
        self.cutoffs = {
            frozen: assign_by_capacity(tie_order(columns, score_column), self.config.tiers).cutoffs
            for _, score_column, frozen in TIER_SOURCES
        }

    def score(
        self,
        rows: pd.DataFrame,
        *,
        by_capacity: bool,
        budget: float | None = None,
        overrides: pd.DataFrame | None = None,
        model_version: str = RULES_ONLY,
        scored_at: pd.Timestamp | None = None,
        explain: bool = True,
        as_of: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Score records with exactly the SPEC columns.

        `by_capacity=True` fills tiers by capacity over this book (batch scoring, `/tier`), and the frame's
        `attrs["boundary_ties"]` lists the ties across tier boundaries (see `boundary_ties`); otherwise the
        frozen cut-offs of the last full scoring place each account on its own (`/score`). `as_of` (written as
        an ISO date) defaults to the feature rows' `cutoff`.
        """
        ties: list[dict] = []
        out = self._placed(rows, by_capacity, budget, overrides, model_version, scored_at, explain, ties, as_of)
        frame = pd.DataFrame({name: out[name] for name in score_columns_for(self.config)})
        frame.attrs["boundary_ties"] = ties
        return frame

    def score_columns(
        self,
        features: Features,
        *,
        by_capacity: bool,
        budget: float | None = None,
        overrides: pd.DataFrame | None = None,
        model_version: str = RULES_ONLY,
        scored_at: pd.Timestamp | None = None,
        explain: bool = True,
        as_of: pd.Timestamp | None = None,
    ) -> dict[str, np.ndarray]:
        """`score` as arrays in SPEC column order, from a frame or a mapping of feature arrays."""
        out = self._placed(features, by_capacity, budget, overrides, model_version, scored_at, explain, None, as_of)
        return {name: out[name] for name in score_columns_for(self.config)}

    def _placed(
        self,
        features: Features,
        by_capacity: bool,
        budget: float | None,
        overrides: pd.DataFrame | None,
        model_version: str,
        scored_at: pd.Timestamp | datetime | None,
        explain: bool,
        ties: list[dict] | None = None,
        as_of: pd.Timestamp | None = None,
    ) -> dict[str, np.ndarray]:
        out = self.predict_columns(features, explain=explain)
        count = len(out["rule_score"])
        out.update(place_tiers(out, self.config, None if by_capacity else self.cutoffs, budget, overrides, ties))
        # The clock read by datetime, not pandas: the same ISO text (whole seconds, +00:00) in a fifth of the time.
        stamp = scored_at if scored_at is not None else datetime.now(UTC).replace(microsecond=0)
        out.update(
            model_version=np.full(count, model_version, dtype=object),
            scored_at=np.full(count, stamp.isoformat(), dtype=object),
            intent_surge=out["intent_surge"].astype(bool),
            as_of=np.full(count, _as_of_date(features, as_of, count), dtype=object),
            surge_channels=(
                surge_channel_names(features["surge_mask"])
                if "surge_mask" in features
                else np.full(count, "", dtype=object)
            ),
        )
        return out


@cache
def _levels(count: int) -> np.ndarray:
    """The percentile of each of `count` training quantiles (0.5 to 99.5), computed once per count; read only."""
    levels = np.linspace(0.5, 99.5, count)
    levels.flags.writeable = False
    return levels


def _as_of_date(features: Features, as_of: pd.Timestamp | None, count: int) -> str:
    """The book's as-of date in ISO form: the one given, else the feature rows' cut-off ('' when neither)."""
    if as_of is None and count and "cutoff" in features:
        as_of = np.asarray(features["cutoff"])[0]
    return "" if as_of is None or pd.isna(as_of) else pd.Timestamp(as_of).date().isoformat()


def tie_order(book: Features, score_column: str) -> RankedBook:
    """The book ranked on `score_column`, ties broken by win probability, then rule score, then engagement
    score (each descending, missing last), then account_id (ascending): never by file order."""
    ids = np.asarray(book["account_id"], dtype=object)
    count = len(ids)

    def descending(name: str) -> np.ndarray:
        values = np.asarray(book[name], dtype=np.float64) if name in book else np.full(count, np.nan)
        return np.where(np.isnan(values), np.inf, -values)

    score = np.asarray(book[score_column], dtype=np.float64)
    # np.lexsort sorts by the last key first; account ids compare as text.
    order = np.lexsort(
        (
            ids.astype(str),
            descending("engagement_score"),
            descending("rule_score"),
            descending("win_probability"),
            np.where(np.isnan(score), np.inf, -score),
        )
    )
    return RankedBook(order=order, scores=score, eligible=np.asarray(book["in_icp"], dtype=bool))


def place_tiers(
    book: Features,
    config: ModelConfig,
    cutoffs: dict[str, dict[str, float]] | None,
    budget: float | None,
    overrides: pd.DataFrame | None,
    ties: list[dict] | None = None,
) -> dict[str, np.ndarray]:
    """The book-level half of scoring: learned and rule tiers, overrides, budget, as arrays.

    `book` (a frame or a mapping of arrays) needs account_id, learned_score, rule_score and in_icp, and
    uses win_probability and engagement_score to break ties when present. With `cutoffs` (the frozen ones
    of the last full scoring) each account is placed on its own; without, tiers are filled by capacity.
    Accounts placed one by one with no overrides or budget (the service's `/score`) never touch pandas:
    that is most of a single-account request. Filled by capacity, the ties across tier boundaries are
    appended to `ties` when it is given (see `boundary_ties`).
    """
    ids = np.asarray(book["account_id"], dtype=object)
    placement = {"account_id": ids}
    for tier_column, score_column, frozen in TIER_SOURCES:
        if cutoffs:
            placement[tier_column] = tiers_by_cutoffs(book[score_column], book["in_icp"], cutoffs[frozen])
        else:
            filled = assign_by_capacity(tie_order(book, score_column), config.tiers)
            placement[tier_column] = filled.tiers
            if ties is not None:
                ties.extend({"tiering": frozen, **tie} for tie in filled.ties)
    by_family = "family_id" in book and config.hierarchy.roll_up == "family"
    if by_family:
        placement["family_tier"] = _family_tiers(book, config, cutoffs, ties)
        if config.hierarchy.tier_by == "family":  # entities inherit their family's tier (pins still win below)
            placement["learned_tier"] = placement["family_tier"]
    if overrides is None or overrides.empty:
        placement["tier"], placement["override_reason"] = placement["learned_tier"], np.full(len(ids), "", dtype=object)
    else:
        tier, reason = apply_overrides(pd.Series(placement["learned_tier"]), pd.Series(ids), overrides)
        placement["tier"], placement["override_reason"] = tier.to_numpy(dtype=object), reason.to_numpy(dtype=object)
    if budget is None:
        placement["budget"] = np.full(len(ids), np.nan)
    elif by_family and config.hierarchy.tier_by == "family":
        placement["budget"] = allocate_budget_by_family(
            pd.Series(placement["tier"]), pd.Series(np.asarray(book["family_id"], dtype=object)), budget, config.budget
        ).to_numpy()
    else:
        placement["budget"] = allocate_budget(pd.Series(placement["tier"]), budget, config.budget).to_numpy()
    return placement


def _family_tiers(
    book: Features, config: ModelConfig, cutoffs: dict[str, dict[str, float]] | None, ties: list[dict] | None
) -> np.ndarray:
    """Each account's family tier: families ranked by family_learned_score, one slot each in a tier's capacity (or
    placed by the frozen learned cut-offs, one at a time), tie-broken like accounts on the family's own values."""
    ids = np.asarray(book["family_id"], dtype=object)
    _, first, inverse = np.unique(ids.astype(str), return_index=True, return_inverse=True)
    families = {
        "account_id": ids[first],
        "learned_score": np.asarray(book["family_learned_score"], dtype=np.float64)[first],
        **{name: np.asarray(book[f"family_{name}"])[first] for name in FAMILY_RANKING},
    }
    if cutoffs:
        tiers = tiers_by_cutoffs(families["learned_score"], families["in_icp"], cutoffs["learned"])
    else:
        filled = assign_by_capacity(tie_order(families, "learned_score"), config.tiers)
        tiers = filled.tiers
        if ties is not None and config.hierarchy.tier_by == "family":
            ties.extend({"tiering": "family", **tie} for tie in filled.ties)
    return np.asarray(tiers, dtype=object)[inverse.reshape(-1)]


def boundary_ties(book: Features, config: ModelConfig) -> list[dict]:
    """Per tiering and tier boundary where accounts with the same score fall on both sides: how many tie,
    the score, and how many the secondary keys put inside. What a user needs to know before trusting a cut.

    `book` holds the columns `place_tiers` reads, including in_icp (per-account predictions, not score records).
    """
    ties: list[dict] = []
    place_tiers(book, config, None, None, None, ties)
    return ties


def describe_ties(ties: list[dict]) -> list[str]:
    """One sentence per tie across a tier boundary."""
    return [
        f"{tie['tied']:,} accounts tie at {tie['tiering']} score {tie['score']:.2f} across the "
        f"{tie['tier'].replace('_', ' ').title()} boundary: {tie['inside']:,} placed inside by win probability, "
        "then rule score, engagement score and account_id"
        for tie in ties
    ]


def tier_counts(scores: pd.DataFrame, column: str = "tier") -> dict[str, int]:
    """Accounts per tier name (every tier, untiered last), zero where none."""
    counts = scores[column].value_counts()
    return {name: int(counts.get(name, 0)) for name in [*TIER_NAMES, UNTIERED]}
