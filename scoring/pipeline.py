"""Looking ahead: pipeline propensity (will the account open an opportunity within the horizon?), time to
close, and the expected won revenue inside the horizon.

Prediction only (the fitting lives in `training.propensity`); it travels inside the logged model.

- `pipeline_probability` = P(the account opens at least one opportunity in [T, T + horizon)), from a
  learner trained on monthly snapshots of the book (features as of each snapshot), calibrated on later
  snapshots; or, when the history is too thin to learn from, from the account's own historical creation
  rate (`method == HISTORICAL`).
- `expected_revenue` = expected won revenue inside the horizon: the open deals' amounts (the expected deal size
  for an open deal without one) times the share
  of open deals that close inside the horizon, plus the expected new opportunities (the Poisson count
  -ln(1 - p) behind the probability p) times the share of new deals that close inside the horizon,
  each times the account's win probability (and, for new deals, its expected deal size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from features.matrix import FeatureSpec
from features.pointintime import OPEN_UNPRICED
from features.rules import Features
from scoring.attribution import predict_dense
from scoring.learners import Calibrator, LogisticLearner, Recipe, WinModel

HISTORICAL = "historical rate"
PIPELINE_FEATURES = ("created_90d", "created_180d", "days_since_created", "open_deals", "open_amount")
MAX_PROBABILITY = 0.999  # the Poisson count behind a probability of 1 is infinite


# Company size bands by employees (small below 200, mid-market below 2,000, enterprise from there): deal cycles
# usually differ most along size. Accounts without a head count take the book's one distribution.
SIZE_BANDS = (200.0, 2_000.0)
SIZE_BAND_NAMES = ("small", "mid", "large")
ONE_DISTRIBUTION = "one distribution"
BY_SIZE = "by company size"


def size_bands(employees) -> np.ndarray:
    """0, 1, 2 by SIZE_BANDS; -1 where the head count is unknown."""
    values = np.asarray(employees, dtype=np.float64)
    return np.where(np.isnan(values), -1, np.searchsorted(np.asarray(SIZE_BANDS), values, side="right"))


@dataclass
class CloseTiming:
    """Time to close, from the history: the Kaplan-Meier distribution of days from creation to close (won or
    lost; still-open deals censored), and the two shares the forecast needs for a horizon of h days. With
    `method == BY_SIZE`, each size band with enough deals has its own (in `segments`, by band number)."""

    cdf: list[float]  # P(closed within d days of creation), d = 0, 1, ..., len - 1 (flat beyond)
    new_share: float  # a deal created uniformly inside the horizon closes inside it
    open_share: float  # a deal open at the cut-off closes inside the horizon (measured at past cut-offs)
    rows: int = 0
    method: str = ONE_DISTRIBUTION
    segments: dict[int, CloseTiming] = field(default_factory=dict)

    def new_share_by(self, days: int) -> float:
        """The share of deals created uniformly over `days` days that close within those days."""
        cdf = np.asarray(self.cdf)
        return float(cdf[: max(days, 1)].mean()) if days <= len(cdf) else float(cdf.mean())

    def open_share_by(self, days: int, horizon: int) -> float:
        """Open deals closing within the first `days` days of the horizon, at a constant hazard."""
        return 1.0 - (1.0 - min(self.open_share, 1.0 - 1e-9)) ** (days / horizon)

    def per_account(self, rows: Features, share: Callable[[CloseTiming], float]) -> np.ndarray:
        """`share` of each account's distribution (its size band's, else the book's), one value per row."""
        count = len(rows["open_amount"])
        values = np.full(count, share(self))
        if self.segments and "employees" in rows:
            bands = size_bands(rows["employees"])
            for band, timing in self.segments.items():
                values[bands == band] = share(timing)
        return values

    def to_dict(self) -> dict:
        return {
            "cdf": self.cdf,
            "new_share": self.new_share,
            "open_share": self.open_share,
            "rows": self.rows,
            "method": self.method,
            "segments": {str(band): timing.to_dict() for band, timing in self.segments.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict) -> CloseTiming:
        return cls(
            list(raw["cdf"]),
            float(raw["new_share"]),
            float(raw["open_share"]),
            int(raw.get("rows", 0)),
            raw.get("method", ONE_DISTRIBUTION),
            {int(band): cls.from_dict(inner) for band, inner in raw.get("segments", {}).items()},
        )


def open_unpriced(rows: Features) -> np.ndarray:
    """Per account: open deals without an amount at the cut-off (0 for rows built before the count existed)."""
    if OPEN_UNPRICED not in rows:
        return np.zeros(len(rows["open_amount"]))
    return np.nan_to_num(np.asarray(rows[OPEN_UNPRICED], dtype=np.float64))


def open_value(rows: Features, deal_size: np.ndarray) -> np.ndarray:
    """Per account: what its open deals are worth. Many CRMs leave open amounts blank: such a deal counts at the
    account's expected deal size, not at 0 (which once took a book's won revenue from $52.2M to $10.4M)."""
    unpriced = open_unpriced(rows)
    at_size = np.where(unpriced > 0, unpriced * np.asarray(deal_size, dtype=np.float64), 0.0)
    return np.nan_to_num(np.asarray(rows["open_amount"], dtype=np.float64)) + at_size


def counted_at_deal_size(rows: Features, deal_size: np.ndarray) -> int:
    """How many open deals `open_value` counted at the expected deal size (where that size is known)."""
    return int(open_unpriced(rows)[np.isfinite(np.asarray(deal_size, dtype=np.float64))].sum())


def shifted(probability: np.ndarray, shift: float) -> np.ndarray:
    """The probability with `shift` added to its log-odds (0 and 1 stay where they are)."""
    if shift == 0.0:
        return probability
    odds = np.asarray(probability, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = odds * np.exp(shift) / (1.0 - odds + odds * np.exp(shift))
    return np.where(np.isfinite(moved), moved, odds)


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
    # The win model judges a deal by the account's features when the deal was opened; at a cut-off the account
    # looks different (quieter before it opens one, say). These log-odds shifts, fitted on the snapshots, turn the
    # account's win probability now into the win rate of its deals that close inside the horizon: open ones, new ones.
    open_win_shift: float = 0.0
    new_win_shift: float = 0.0
    # The count learner's error on a group of accounts beyond Poisson chance (sd of log actual / predicted), measured
    # out of time on the holdout snapshot: the forecast draws each tier's level from it.
    count_dispersion: float = 0.0

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
            return self.count_scale * predict_dense(
                self.count_model, self.spec.encode(rows) if matrix is None else matrix
            )
        return -np.log1p(-np.clip(probability, 0.0, MAX_PROBABILITY))

    def horizon_win(self, win_probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The win rate of the account's deals that close inside the horizon: (open ones, new ones)."""
        return shifted(win_probability, self.open_win_shift), shifted(win_probability, self.new_win_shift)

    def expected_revenue(
        self,
        rows: Features,
        probability: np.ndarray,
        win_probability: np.ndarray,
        deal_size: np.ndarray,
        matrix: np.ndarray | None = None,
    ) -> np.ndarray:
        open_amount = open_value(rows, deal_size)
        new_share = self.timing.per_account(rows, lambda timing: timing.new_share)
        open_share = self.timing.per_account(rows, lambda timing: timing.open_share)
        open_win, new_win = self.horizon_win(win_probability)
        new = self.expected_count(probability, rows, matrix) * new_share * deal_size
        return new_win * new + open_win * open_share * open_amount

    def to_dict(self) -> dict:
        model = self.model
        logistic = model.learner if model is not None and isinstance(model.learner, LogisticLearner) else None
        return {
            "horizon_days": self.horizon_days,
            "method": self.method,
            "timing": self.timing.to_dict(),
            "spec": None if self.spec is None else self.spec.to_dict(),
            "recipe": None if model is None else model.recipe.to_dict(),
            "calibrator": None if model is None else model.calibrator.to_dict(),
            "logistic": None if logistic is None else logistic.to_dict(),
            "mean_created_180d": self.mean_created_180d,
            "residual_quantiles": self.residual_quantiles,
            "note": self.note,
            "count_scale": self.count_scale,
            "open_win_shift": self.open_win_shift,
            "new_win_shift": self.new_win_shift,
            "count_dispersion": self.count_dispersion,
        }

    @classmethod
    def from_dict(cls, raw: dict, booster: lgb.Booster | None, count_model: lgb.Booster | None = None) -> PipelineModel:
        model = None
        if raw["recipe"] is not None:
            learner: lgb.Booster | LogisticLearner
            if raw["logistic"] is not None:
                learner = LogisticLearner.from_dict(raw["logistic"])
            elif booster is not None:
                learner = booster
            else:
                raise ValueError("the pipeline-propensity learner is a LightGBM model, but its booster file is missing")
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
            open_win_shift=float(raw.get("open_win_shift", 0.0)),
            new_win_shift=float(raw.get("new_win_shift", 0.0)),
            count_dispersion=float(raw.get("count_dispersion", 0.0)),
        )
