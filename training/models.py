"""The learners: a calibrated LightGBM win model, a LightGBM deal-size model and a logistic baseline.

Models train on the encoded matrix from `features.matrix.FeatureSpec` and predict with the raw
booster on numpy (about 25x faster per row than the scikit-learn wrapper).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from features.config import Model as ModelConfig

MIN_CALIBRATION_ROWS = 50
BASELINE_MAX_ROWS = 100_000


def _booster_params(config: ModelConfig, objective: str) -> dict:
    return {
        "objective": objective,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "cat_smooth": 20,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }


def _dataset(matrix: np.ndarray, target: np.ndarray, categorical: list[int], names: list[str]) -> lgb.Dataset:
    return lgb.Dataset(matrix, label=target, categorical_feature=categorical, feature_name=names,
                       free_raw_data=True, params={"max_cat_to_onehot": 8, "verbose": -1})


@dataclass
class WinModel:
    """P(won): LightGBM on the fit rows, then isotonic calibration on later rows (never the same rows)."""

    booster: lgb.Booster
    calibration_x: np.ndarray  # isotonic knots: raw margin -> probability
    calibration_y: np.ndarray

    @classmethod
    def fit(cls, fit_x, fit_y, cal_x, cal_y, categorical: list[int], names: list[str], config: ModelConfig) -> "WinModel":
        params = _booster_params(config, "binary")
        positive_share = float(np.mean(fit_y)) if len(fit_y) else 0.5
        minority = min(positive_share, 1 - positive_share)
        if config.balance_classes == "always" or (config.balance_classes == "auto" and 0 < minority < 0.2):
            # Reweighting helps the trees find the rare class; calibration below undoes the shift in probabilities.
            params["scale_pos_weight"] = (1 - positive_share) / positive_share
        booster = lgb.train(params, _dataset(fit_x, fit_y, categorical, names), num_boost_round=config.num_boost_round)
        margin = booster.predict(cal_x, raw_score=True)
        if len(cal_y) < MIN_CALIBRATION_ROWS or len(np.unique(cal_y)) < 2:
            raise ValueError(f"only {len(cal_y)} rows with both outcomes to calibrate on; need {MIN_CALIBRATION_ROWS}")
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(margin, cal_y)
        return cls(booster, np.asarray(isotonic.X_thresholds_), np.asarray(isotonic.y_thresholds_))

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        return self.booster.predict(matrix, raw_score=True)

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        return np.interp(margin, self.calibration_x, self.calibration_y)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrate(self.margin(matrix))


@dataclass
class DealSizeModel:
    """Expected amount of a won deal: LightGBM on log amount, back-transformed with Duan's smearing factor."""

    booster: lgb.Booster
    smearing: float
    objective: str = "log_l2"

    @classmethod
    def fit(cls, x, amount, categorical: list[int], names: list[str], config: ModelConfig) -> "DealSizeModel":
        keep = amount > 0
        x, amount = x[keep], amount[keep]
        if config.deal_size_objective == "gamma":
            booster = lgb.train(_booster_params(config, "gamma"), _dataset(x, amount, categorical, names),
                                num_boost_round=config.num_boost_round)
            return cls(booster, 1.0, "gamma")
        log_amount = np.log(amount)
        booster = lgb.train(_booster_params(config, "regression"), _dataset(x, log_amount, categorical, names),
                            num_boost_round=config.num_boost_round)
        # exp(E[log y]) underestimates E[y]; the mean of exp(residual) restores the mean without assuming normality.
        residuals = log_amount - booster.predict(x)
        return cls(booster, float(np.mean(np.exp(residuals))), "log_l2")

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """The raw score: log amount for log_l2, the log of the mean for gamma's log link."""
        return self.booster.predict(matrix, raw_score=True)

    def from_margin(self, margin: np.ndarray) -> np.ndarray:
        return np.exp(margin) * (self.smearing if self.objective == "log_l2" else 1.0)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.from_margin(self.margin(matrix))


def _signed_log(matrix: np.ndarray) -> np.ndarray:
    return np.sign(matrix) * np.log1p(np.abs(matrix))


def logistic_baseline(x: np.ndarray, y: np.ndarray, categorical: list[int], config: ModelConfig):
    """Logistic regression on the same features: log-scaled numbers, one-hot categories."""
    numeric = [i for i in range(x.shape[1]) if i not in categorical]
    prep = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                                  FunctionTransformer(_signed_log), StandardScaler()), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1, keep_empty_features=True),
                                      OneHotEncoder(handle_unknown="ignore", min_frequency=20)), categorical),
    ])
    model = make_pipeline(prep, LogisticRegression(max_iter=500, C=1.0, random_state=config.seed))
    if len(y) > BASELINE_MAX_ROWS:  # a linear baseline's coefficients settle long before this many rows
        keep = np.random.default_rng(config.seed).choice(len(y), BASELINE_MAX_ROWS, replace=False)
        x, y = x[keep], y[keep]
    return model.fit(x, y)
