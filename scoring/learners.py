"""The learners: win-model candidates (LightGBM settings and a logistic regression), the probability
calibration, and the deal-size model with its shrinkage towards a constant.

Models train on the encoded matrix from `features.matrix.FeatureSpec` and predict with plain numpy
or the raw LightGBM booster (much cheaper per row than the scikit-learn wrapper). Every learner
answers per-feature contributions that add up to its margin, which is what the reasons are made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
from scipy.special import expit, log_expit

from features.config import Candidate
from scoring.attribution import contributions as tree_contributions
from scoring.attribution import predict_dense

LIGHTGBM, LOGISTIC, BLEND = "lightgbm", "logistic", "blend"
MARGIN_BLOCK_ROWS = 65_536  # rows whose logistic margins are computed together


def signed_log(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


@dataclass
class LogisticLearner:
    """L2 logistic regression on log-scaled, standardised numbers and one-hot categories, kept as plain arrays.

    Its contributions are exact: each numeric feature adds coefficient x standardised value, each
    category its coefficient less the training average, and the bias collects the rest.
    """

    numeric: list[int]
    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    numeric_coef: np.ndarray
    categorical: list[int]
    levels: list[list[float]]  # kept category codes per categorical column
    level_coef: list[list[float]]  # per column: one per kept level, then "other", then "missing"
    level_mean: list[float]  # training average of each column's picked coefficient
    intercept: float

    @staticmethod
    def _slots(values: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """Each value's slot: its kept level, else "other" (len(kept)), or "missing" (len(kept) + 1)."""
        position = np.searchsorted(kept, values)
        found = (
            (position < len(kept)) & (kept[np.minimum(position, max(len(kept) - 1, 0))] == values)
            if len(kept)
            else np.zeros(len(values), dtype=bool)
        )
        slots = np.where(found, position, len(kept))
        return np.where(np.isnan(values), len(kept) + 1, slots)

    @classmethod
    def _one_hot(cls, values: np.ndarray, kept: np.ndarray) -> np.ndarray:
        out = np.zeros((len(values), len(kept) + 2))
        out[np.arange(len(values)), cls._slots(values, kept)] = 1.0
        return out

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        out = np.zeros((len(matrix), matrix.shape[1] + 1))
        if self.numeric:
            raw = matrix[:, self.numeric]
            standard = (signed_log(np.where(np.isnan(raw), self.medians, raw)) - self.means) / self.scales
            out[:, self.numeric] = standard * self.numeric_coef
        bias = self.intercept
        for column, kept, coef, mean in zip(self.categorical, self.levels, self.level_coef, self.level_mean):
            out[:, column] = np.asarray(coef)[self._slots(matrix[:, column], np.asarray(kept))] - mean
            bias += mean
        out[:, -1] = bias
        return out

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        # A block of rows at a time: the contributions and their temporaries are several times the matrix's size.
        starts = range(0, len(matrix), MARGIN_BLOCK_ROWS) or range(1)
        return np.concatenate([self.contributions(matrix[at : at + MARGIN_BLOCK_ROWS]).sum(axis=1) for at in starts])

    def to_dict(self) -> dict:
        return {
            "numeric": self.numeric,
            "medians": self.medians.tolist(),
            "means": self.means.tolist(),
            "scales": self.scales.tolist(),
            "numeric_coef": self.numeric_coef.tolist(),
            "categorical": self.categorical,
            "levels": self.levels,
            "level_coef": self.level_coef,
            "level_mean": self.level_mean,
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> LogisticLearner:
        arrays = {k: np.asarray(raw[k], dtype=np.float64) for k in ("medians", "means", "scales", "numeric_coef")}
        return cls(
            numeric=list(raw["numeric"]),
            categorical=list(raw["categorical"]),
            levels=raw["levels"],
            level_coef=raw["level_coef"],
            level_mean=raw["level_mean"],
            intercept=float(raw["intercept"]),
            **arrays,
        )


@dataclass
class BlendLearner:
    """The average of a logistic regression's and a LightGBM booster's log-odds, each first mapped by its own
    Platt curve (fitted on rows neither learner trained on): margin = sum_i w_i x margin_i + offset, with w_i half
    of component i's Platt slope and `offset` half the sum of their intercepts.

    Being linear in its components' margins, its contributions are theirs, weighted, and still add up to it.
    """

    logistic: LogisticLearner
    booster: lgb.Booster
    weights: list[float]  # (logistic, booster)
    offset: float

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        logistic, booster = self.weights
        return (
            logistic * self.logistic.margin(matrix)
            + booster * predict_dense(self.booster, matrix, raw_score=True)
            + self.offset
        )

    def contributions(self, matrix: np.ndarray, method: str, cache: dict) -> np.ndarray:
        logistic, booster = self.weights
        out = logistic * self.logistic.contributions(matrix) + booster * tree_contributions(
            self.booster, matrix, method, cache
        )
        out[:, -1] += self.offset
        return out

    def importance(self, names: list[str]) -> np.ndarray:
        """Each component's importance as shares of its own total, averaged with the blend's weights."""
        parts = [
            WinModel.learner_importance(self.logistic, names),
            np.asarray(self.booster.feature_importance("gain"), dtype=np.float64),
        ]
        shares = [part / part.sum() if part.sum() > 0 else part for part in parts]
        weights = np.abs(np.asarray(self.weights))
        return (weights[0] * shares[0] + weights[1] * shares[1]) / max(float(weights.sum()), 1e-12)

    def to_dict(self) -> dict:
        return {"weights": list(self.weights), "offset": self.offset}


def beta_features(margin: np.ndarray) -> np.ndarray:
    """Beta calibration's inputs ln(s) and -ln(1 - s) for s = sigmoid(margin), computed without overflow."""
    return np.column_stack([log_expit(margin), -log_expit(-margin)])


@dataclass
class Calibrator:
    """Margin -> probability, fitted on rows the learner never trained on.

    `platt`: a logistic curve on the margin. `beta`: beta calibration (Kull et al. 2017), a logistic
    fit on ln(s) and -ln(1-s). `isotonic_platt`: the mean of Platt and a centred isotonic fit (the
    isotonic steps replaced by lines through each block's centre). Each is strictly increasing, so
    distinct margins stay distinct probabilities, and none has a floor the data do not support.
    """

    method: str
    coef: list[float]  # platt: (a, b); beta: (a, b, c); isotonic_platt: Platt's (a, b)
    knots_x: list[float] = field(default_factory=list)  # isotonic_platt: block centres
    knots_y: list[float] = field(default_factory=list)

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=np.float64)
        if self.method == "knots":  # models logged before calibration was selected: isotonic steps
            return np.interp(margin, self.knots_x, self.knots_y)
        if self.method == "beta":
            a, b, c = self.coef
            features = beta_features(margin)
            return expit(a * features[:, 0] + b * features[:, 1] + c)
        platt = expit(self.coef[0] * margin + self.coef[1])
        if self.method == "platt":
            return platt
        return 0.5 * (platt + np.interp(margin, self.knots_x, self.knots_y))

    def to_dict(self) -> dict:
        return {"method": self.method, "coef": self.coef, "knots_x": self.knots_x, "knots_y": self.knots_y}

    @classmethod
    def from_dict(cls, raw: dict) -> Calibrator:
        return cls(raw["method"], list(raw["coef"]), list(raw.get("knots_x", [])), list(raw.get("knots_y", [])))


@dataclass(frozen=True)
class Recipe:
    """How a win model is made, so another run can re-fit it on its own months (the gate's like for like)."""

    learner: str  # LIGHTGBM, LOGISTIC or BLEND
    params: dict[str, Any]  # lightgbm: a Candidate's fields and num_boost_round; logistic: c; blend: all of them
    calibration: str

    def component(self, learner: str) -> Recipe:
        """A blend's logistic regression or LightGBM part as a recipe of its own."""
        if learner == LOGISTIC:
            return Recipe(LOGISTIC, {"c": self.params["c"]}, self.calibration)
        return Recipe(LIGHTGBM, {k: v for k, v in self.params.items() if k != "c"}, self.calibration)

    def describe(self) -> str:
        if self.learner == LOGISTIC:
            return f"logistic regression (C {self.params['c']:g}), {self.calibration} calibration"
        if self.learner == BLEND:
            booster = self.component(LIGHTGBM).describe().rsplit(", ", 1)[0]
            return (
                f"blend of logistic regression (C {self.params['c']:g}) and {booster}, {self.calibration} calibration"
            )
        candidate = Candidate(**{k: v for k, v in self.params.items() if k != "num_boost_round"})
        return f"{candidate.label()}, {self.params['num_boost_round']} rounds, {self.calibration} calibration"

    def to_dict(self) -> dict:
        return {"learner": self.learner, "params": dict(self.params), "calibration": self.calibration}

    @classmethod
    def from_dict(cls, raw: dict) -> Recipe:
        return cls(raw["learner"], dict(raw["params"]), raw["calibration"])


@dataclass
class WinModel:
    """P(won): a learner's margin, calibrated on later rows than it was fitted on."""

    learner: lgb.Booster | LogisticLearner | BlendLearner
    calibrator: Calibrator
    recipe: Recipe

    @property
    def is_tree(self) -> bool:
        return isinstance(self.learner, lgb.Booster)

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        return learner_margin(self.learner, matrix)

    def contributions(self, matrix: np.ndarray, method: str, cache: dict) -> np.ndarray:
        learner = self.learner
        if isinstance(learner, lgb.Booster):
            return tree_contributions(learner, matrix, method, cache)
        if isinstance(learner, BlendLearner):
            return learner.contributions(matrix, method, cache)
        return learner.contributions(matrix)

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        return self.calibrator(margin)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrate(self.margin(matrix))

    def importance(self, names: list[str]) -> np.ndarray:
        return self.learner_importance(self.learner, names)

    @staticmethod
    def learner_importance(learner: lgb.Booster | LogisticLearner | BlendLearner, names: list[str]) -> np.ndarray:
        if isinstance(learner, lgb.Booster):
            return learner.feature_importance("gain")
        if isinstance(learner, BlendLearner):
            return learner.importance(names)
        weights = np.zeros(len(names))
        weights[learner.numeric] = np.abs(learner.numeric_coef)
        for column, coef in zip(learner.categorical, learner.level_coef):
            weights[column] = float(np.ptp(coef)) if coef else 0.0
        return weights


def learner_margin(learner: lgb.Booster | LogisticLearner | BlendLearner, matrix: np.ndarray) -> np.ndarray:
    if isinstance(learner, lgb.Booster):
        return predict_dense(learner, matrix, raw_score=True)
    return learner.margin(matrix)


@dataclass
class DealSizeModel:
    """Expected amount of a won deal: LightGBM on log amount, shrunk towards a constant by what validates.

    margin = base + shrink x (tree margin - base), where base is the mean log amount of the fit rows;
    `shrink` is the least-squares factor on the validation slice's won deals, clipped to [0, 1], and
    0 (a constant: the mean won amount) when the model shows no validated skill. The back-transform
    uses Duan's smearing factor. `booster=None` with a NaN base means no amounts were known at all.
    """

    booster: lgb.Booster | None
    smearing: float
    objective: str = "log_l2"
    base: float = float("nan")
    shrink: float = 1.0
    rounds: int = 0
    validation: dict[str, float] = field(default_factory=dict)  # r2 before and after shrinkage, rows

    @property
    def known(self) -> bool:
        return bool(np.isfinite(self.base))

    @classmethod
    def unknown(cls) -> DealSizeModel:
        return cls(None, float("nan"))

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """Log amount (log_l2) or the log of the mean (gamma), after shrinkage."""
        if self.booster is None or self.shrink == 0.0:
            return np.full(len(matrix), self.base)
        return self.base + self.shrink * (predict_dense(self.booster, matrix, raw_score=True) - self.base)

    def contributions(self, matrix: np.ndarray, method: str, cache: dict) -> np.ndarray:
        """Per-feature contributions to the (shrunk) margin; the last column is the bias."""
        if self.booster is None or self.shrink == 0.0:
            out = np.zeros((len(matrix), matrix.shape[1] + 1))
            out[:, -1] = self.base
            return out
        out = tree_contributions(self.booster, matrix, method, cache) * self.shrink
        out[:, -1] += (1 - self.shrink) * self.base
        return out

    def from_margin(self, margin: np.ndarray) -> np.ndarray:
        return np.exp(margin) * (self.smearing if self.objective == "log_l2" else 1.0)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.from_margin(self.margin(matrix))

    def importance(self, count: int) -> np.ndarray:
        if self.booster is None or self.shrink == 0.0:
            return np.zeros(count)
        return self.booster.feature_importance("gain") * self.shrink
