"""The logged MLflow model, and the one scoring path: every caller (`tiering score`, `tiering compare`,
the service, Spark) loads it and asks it for scores; nobody else turns accounts into scores.

It holds the feature spec, the learners, the rule config and the frozen tier cut-offs. It answers:
- `score_book`: a canonical export's accounts as of a date, tiers filled by capacity (batch scoring, compare,
  demo), with the feature rows it scored;
- `score_accounts`: accounts that carry their own activity (the API's), tiers by capacity or by the
  frozen cut-offs;
- `score_features` / `predict`: ready point-in-time feature rows (Spark's workers, `spark_udf`, MLflow's
  own serving), tiers by the frozen cut-offs unless asked to fill them by capacity.

The model records a digest of its scoring code and refuses to load in a process whose code differs
(`scoring.bundle.check_scoring_code`), so it is never scored silently by other code than it was
logged with. With no champion, `TieringModel.rules_only(config)` answers the same questions with the
rules alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from features.activity import builder_for_accounts, default_as_of
from features.config import ModelConfig
from features.groups import book_snapshot
from features.rules import Features, with_rule_score_columns
from features.schema import CrmData
from features.timeindex import to_seconds
from scoring.bundle import load_scorer
from scoring.forecast import SIMULATIONS, BookInputs, tier_forecast
from scoring.pipeline import PipelineModel
from scoring.scorer import RULES_ONLY, Scorer, place_tiers


@dataclass(frozen=True)
class ScoredBook:
    """A book scored by `TieringModel.score_book`: the score records, the feature rows they were scored from (same
    order; a forecast of the same book reads them) and the day they were scored as of."""

    scores: pd.DataFrame
    features: Features
    as_of: pd.Timestamp


@dataclass(frozen=True)
class ScoredAccounts:
    """Accounts scored by `TieringModel.score_accounts`: score columns in request order, and the per-tier forecast
    when one was asked for and the model can forecast."""

    scores: dict[str, np.ndarray]
    forecast: pd.DataFrame | None = None


class TieringModel(PythonModel):
    scorer: Scorer

    @classmethod
    def around(cls, scorer: Scorer) -> TieringModel:
        model = cls()
        model.scorer = scorer
        return model

    @classmethod
    def rules_only(cls, config: ModelConfig) -> TieringModel:
        return cls.around(Scorer(config=config))

    def load_context(self, context) -> None:
        self.scorer = load_scorer(context.artifacts["bundle"])

    def with_business(self, business: ModelConfig) -> TieringModel:
        """This model scoring with the business knobs (rule weights, blend, tiers, budget) of `business`, read at
        scoring time; its feature settings, learners and frozen single-account cut-offs stay as trained."""
        return TieringModel.around(replace(self.scorer, config=self.scorer.config.with_business(business)))

    @property
    def is_learned(self) -> bool:
        return self.scorer.is_learned

    @property
    def config(self) -> ModelConfig:
        return self.scorer.config

    def score_book(
        self,
        data: CrmData,
        as_of: pd.Timestamp | None = None,
        *,
        budget: float | None = None,
        overrides: pd.DataFrame | None = None,
        model_version: str = RULES_ONLY,
        features: pd.DataFrame | None = None,
    ) -> ScoredBook:
        """Every account of the export scored as of `as_of` (default: the day after the export's latest date), tiers
        filled by capacity over the book: the one way a book is scored (`score`, `compare`, `demo`, the notebooks).
        `features`: the book's feature rows as of `as_of` when built elsewhere (a Spark cluster holding the events),
        one per account of `data` in its order; else they are built here from `data`."""
        as_of = default_as_of(data) if as_of is None else as_of
        book = self._book(data, as_of, features)
        scores = self.scorer.score(
            book, by_capacity=True, budget=budget, overrides=overrides, model_version=model_version, as_of=as_of
        )
        return ScoredBook(scores, book, as_of)

    def forecast_book(
        self,
        data: CrmData,
        as_of: pd.Timestamp,
        *,
        model_version: str = RULES_ONLY,
        simulations: int = SIMULATIONS,
        features: pd.DataFrame | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame, BookInputs]:
        """The book scored as of `as_of` (tiers by capacity), its per-tier forecast inside the horizon, and what the
        forecast read of it (for more forecasts of the same book, e.g. a fan chart's steps). `features` as for
        `score_book`."""
        book = self._book(data, as_of, features)
        # The forecast reads tiers and probabilities, not the reasons (which cost more than the prediction).
        scores = self.scorer.score(book, by_capacity=True, model_version=model_version, as_of=as_of, explain=False)
        inputs = self.book_inputs(scores, book)
        return scores, self._simulate(inputs, simulations), inputs

    def _book(self, data: CrmData, as_of: pd.Timestamp, features: pd.DataFrame | None) -> pd.DataFrame:
        if features is None:
            return book_snapshot(data, self.scorer.config, as_of)
        if len(features) != len(data.accounts):
            raise ValueError(f"{len(features):,} feature rows for a book of {len(data.accounts):,} accounts")
        return features

    def book_inputs(self, scores: Features, features: Features) -> BookInputs:
        """What the forecast reads of score records and their feature rows (same order); refused without the learner."""
        return BookInputs.of(scores, with_rule_score_columns(features, self.scorer.config), self._pipeline())

    def forecast(self, scores: Features, features: Features, simulations: int = SIMULATIONS) -> pd.DataFrame:
        """Per-tier forecast of score records and their feature rows (same order); refused without the learner."""
        return self._simulate(self.book_inputs(scores, features), simulations)

    def _simulate(self, inputs: BookInputs, simulations: int) -> pd.DataFrame:
        return tier_forecast(inputs, self._pipeline(), simulations, seed=self.scorer.config.model.seed)

    def _pipeline(self) -> PipelineModel:
        """The pipeline-propensity learner, which forecasting needs; refused without it."""
        pipeline = self.scorer.pipeline
        if pipeline is None or not self.can_forecast:
            raise ValueError(
                "this model has no pipeline-propensity learner (rules only, or trained before it existed), so it "
                "cannot forecast: train a new version (tiering train) and forecast with it"
            )
        return pipeline

    def score_accounts(
        self,
        accounts: Sequence[Any],
        as_of: pd.Timestamp,
        *,
        by_capacity: bool,
        budget: float | None = None,
        model_version: str = RULES_ONLY,
        forecast: bool = False,
        explain: bool = True,
        simulations: int = SIMULATIONS,
    ) -> ScoredAccounts:
        """Accounts carrying their engagement, intent and opportunities, as score columns in request order; with
        `forecast`, tiers by capacity and the per-tier forecast from the same feature rows (when the model can)."""
        if forecast and not by_capacity:
            raise ValueError("a forecast reads tiers filled by capacity over the book: pass by_capacity=True")
        features = self._account_features(accounts, as_of)
        scores = self.scorer.score_columns(
            features, by_capacity=by_capacity, budget=budget, model_version=model_version, as_of=as_of, explain=explain
        )
        table = self.forecast(scores, features, simulations) if forecast and self.can_forecast else None
        return ScoredAccounts(scores, table)

    def _account_features(self, accounts: Sequence[Any], as_of: pd.Timestamp) -> dict[str, np.ndarray]:
        cutoffs = np.full(len(accounts), to_seconds(np.array([pd.Timestamp(as_of).to_datetime64()]))[0])
        # Accounts are coded by position: the builder never needs their ids.
        features = builder_for_accounts(accounts, self.scorer.config).build_columns(np.arange(len(accounts)), cutoffs)
        features["account_id"] = np.array([account.account_id for account in accounts], dtype=object)
        return features

    @property
    def can_forecast(self) -> bool:
        return self.is_learned and self.scorer.pipeline is not None

    def score_features(
        self,
        rows: Features,
        *,
        by_capacity: bool,
        budget: float | None = None,
        overrides: pd.DataFrame | None = None,
        model_version: str = RULES_ONLY,
    ) -> pd.DataFrame:
        """Ready point-in-time feature rows (one per account) as score records."""
        return self.scorer.score(
            rows, by_capacity=by_capacity, budget=budget, overrides=overrides, model_version=model_version
        )

    def place_tiers(
        self, book: Features, *, budget: float | None = None, overrides: pd.DataFrame | None = None
    ) -> dict[str, np.ndarray]:
        """Tiers by capacity, overrides and budget for per-account scores computed elsewhere (Spark's executors)."""
        return place_tiers(book, self.scorer.config, None, budget, overrides)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        version = (params or {}).get("model_version", "")
        return self.score_features(model_input, by_capacity=False, model_version=version or "logged-model")
