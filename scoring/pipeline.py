"""Looking ahead: pipeline propensity (will the account open an opportunity within the horizon?), time to
close, and the expected won revenue inside the horizon.

Prediction only (the fitting lives in `training.propensity`); it travels inside the logged model.

- `pipeline_probability` = P(the account opens at least one opportunity in [T, T + horizon)), from a
  learner trained on monthly snapshots of the book (features as of each snapshot), calibrated on later
  snapshots; or, when the history is too thin to learn from, from the account's own historical creation
  rate (`method == HISTORICAL`).
- `expected_revenue` = expected won revenue inside the horizon: the open deals' amounts times the share
  of open deals that close inside the horizon, plus the expected new opportunities (the Poisson count
  -ln(1 - p) behind the probability p) times the share of new deals that close inside the horizon,
  each times the account's win probability (and, for new deals, its expected deal size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from features.matrix import FeatureSpec
from features.rules import Features
from scoring.learners import Calibrator, LogisticLearner, Recipe, WinModel

HISTORICAL = "historical rate"
PIPELINE_FEATURES = ("created_90d", "created_180d", "days_since_created", "open_deals", "open_amount")
MAX_PROBABILITY = 0.999  # the Poisson count behind a probability of 1 is infinite


@dataclass
class CloseTiming:
    """Time to close, from the history: the Kaplan-Meier distribution of days from creation to close (won or
    lost; still-open deals censored), and the two shares the forecast needs for a horizon of h days."""

    cdf: list[float]  # P(closed within d days of creation), d = 0, 1, ..., len - 1 (flat beyond)
    new_share: float  # a deal created uniformly inside the horizon closes inside it
    open_share: float  # a deal open at the cut-off closes inside the horizon (measured at past cut-offs)
    rows: int = 0

    def closes_within(self, days: np.ndarray) -> np.ndarray:
        cdf = np.asarray(self.cdf)
        return cdf[np.clip(np.asarray(days, dtype=np.int64), 0, len(cdf) - 1)]

    def new_share_by(self, days: int) -> float:
        """The share of deals created uniformly over `days` days that close within those days."""
        cdf = np.asarray(self.cdf)
        return float(cdf[: max(days, 1)].mean()) if days <= len(cdf) else float(cdf.mean())

    def open_share_by(self, days: int, horizon: int) -> float:
        """Open deals closing within the first `days` days of the horizon, at a constant hazard."""
        return 1.0 - (1.0 - min(self.open_share, 1.0 - 1e-9)) ** (days / horizon)

    def open_close_share(self, age_days: np.ndarray, horizon: int) -> np.ndarray:
        """P(close inside the horizon | open at an age of `age_days`), from the distribution's hazard."""
        now, later = self.closes_within(age_days), self.closes_within(np.asarray(age_days) + horizon)
        alive = 1.0 - now
        return np.where(alive > 1e-9, (later - now) / np.maximum(alive, 1e-9), self.open_share)

    def to_dict(self) -> dict:
        return {"cdf": self.cdf, "new_share": self.new_share, "open_share": self.open_share, "rows": self.rows}

    @classmethod
    def from_dict(cls, raw: dict) -> CloseTiming:
        return cls(list(raw["cdf"]), float(raw["new_share"]), float(raw["open_share"]), int(raw.get("rows", 0)))


@dataclass
class PipelineModel:
    horizon_days: int
    method: str  # LIGHTGBM, LOGISTIC (a learner) or HISTORICAL (the account's own creation rate)
    timing: CloseTiming
    spec: FeatureSpec | None = None
    model: WinModel | None = None  # the learner and its calibration (the win model's classes, another label)
    mean_created_180d: float = 0.0  # the book's mean, which the historical rate shrinks towards
    residual_quantiles: list[float] = field(default_factory=list)  # of log won amount around the deal-size margin
    note: str = ""
    # How many opportunities the account opens inside the horizon (LightGBM, Poisson loss, on the same snapshots):
    # P(at least one) says little about accounts that open several. None: the Poisson count behind the probability.
    count_model: lgb.Booster | None = None
    count_scale: float = 1.0  # the count learner's level, set on later snapshots than it was fitted on

    def encode(self, rows: Features) -> np.ndarray | None:
        """The learners' matrix of `rows` (None when there is no learner to read it)."""
        if self.spec is None or (self.model is None and self.count_model is None):
            return None
        return self.spec.encode(rows)

    def probability(self, rows: Features, matrix: np.ndarray | None = None) -> np.ndarray:
        """`matrix`: `encode(rows)` when the caller has it already."""
        if self.model is not None and self.spec is not None:
            return np.clip(self.model.predict(self.spec.encode(rows) if matrix is None else matrix), 0.0, 1.0)
        return self.historical(rows)

    def historical(self, rows: Features) -> np.ndarray:
        """1 - exp(-rate x horizon), the rate being the account's creations of the last 180 days shrunk half-way to the
        book's mean (so one lucky half-year does not make a certainty)."""
        created = np.nan_to_num(np.asarray(rows["created_180d"], dtype=np.float64))
        rate = (created + self.mean_created_180d) / (2 * 180.0)
        return 1.0 - np.exp(-rate * self.horizon_days)

    def expected_count(
        self, probability: np.ndarray, rows: Features | None = None, matrix: np.ndarray | None = None
    ) -> np.ndarray:
        """New opportunities expected inside the horizon: the count learner's, else the Poisson mean behind
        P(at least one)."""
        if self.count_model is not None and self.spec is not None and rows is not None:
            return self.count_scale * self.count_model.predict(self.spec.encode(rows) if matrix is None else matrix)
        return -np.log1p(-np.clip(probability, 0.0, MAX_PROBABILITY))

    def expected_revenue(
        self,
        rows: Features,
        probability: np.ndarray,
        win_probability: np.ndarray,
        deal_size: np.ndarray,
        matrix: np.ndarray | None = None,
    ) -> np.ndarray:
        open_amount = np.nan_to_num(np.asarray(rows["open_amount"], dtype=np.float64))
        new = self.expected_count(probability, rows, matrix) * self.timing.new_share * deal_size
        return win_probability * (new + self.timing.open_share * open_amount)

    def to_dict(self) -> dict:
        model = self.model
        return {
            "horizon_days": self.horizon_days,
            "method": self.method,
            "timing": self.timing.to_dict(),
            "spec": None if self.spec is None else self.spec.to_dict(),
            "recipe": None if model is None else model.recipe.to_dict(),
            "calibrator": None if model is None else model.calibrator.to_dict(),
            "logistic": None if model is None or model.is_tree else model.learner.to_dict(),
            "mean_created_180d": self.mean_created_180d,
            "residual_quantiles": self.residual_quantiles,
            "note": self.note,
            "count_scale": self.count_scale,
        }

    @classmethod
    def from_dict(cls, raw: dict, booster: lgb.Booster | None, count_model: lgb.Booster | None = None) -> PipelineModel:
        model = None
        if raw["recipe"] is not None:
            learner = booster if raw["logistic"] is None else LogisticLearner.from_dict(raw["logistic"])
            model = WinModel(learner, Calibrator.from_dict(raw["calibrator"]), Recipe.from_dict(raw["recipe"]))
        return cls(
            horizon_days=int(raw["horizon_days"]),
            method=raw["method"],
            timing=CloseTiming.from_dict(raw["timing"]),
            spec=None if raw["spec"] is None else FeatureSpec.from_dict(raw["spec"]),
            model=model,
            mean_created_180d=float(raw["mean_created_180d"]),
            residual_quantiles=list(raw["residual_quantiles"]),
            note=raw.get("note", ""),
            count_model=count_model,
            count_scale=float(raw.get("count_scale", 1.0)),
        )
