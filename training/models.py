"""How the learners are fitted: LightGBM boosters with early stopping and cross-fitted rounds, the logistic
regression, the calibration and its selection, and the deal-size model with its shrinkage.

What they fit are the plain learners of `scoring.learners`, which the logged model carries and a scoring
process runs without any of this code (or scikit-learn) loaded.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from features.config import Candidate
from features.config import Model as ModelConfig
from scoring.attribution import predict_dense
from scoring.learners import (
    BLEND,
    LIGHTGBM,
    LOGISTIC,
    BlendLearner,
    Calibrator,
    DealSizeModel,
    LogisticLearner,
    Recipe,
    WinModel,
    beta_features,
    learner_margin,
    signed_log,
)

MIN_CALIBRATION_ROWS = 50

LOGISTIC_MAX_ROWS = 100_000  # a linear model's coefficients settle long before this many rows

LOGISTIC_MIN_LEVEL_ROWS = 20  # rarer categories share one coefficient

CALIBRATION_METHODS = ("platt", "beta", "isotonic_platt")  # simplest first: ties go to the simpler

CALIBRATION_FOLDS = 5


def booster_params(config: ModelConfig, objective: str, candidate: Candidate | None = None) -> dict:
    candidate = candidate or config.search.candidates[0]
    return {
        "objective": objective,
        "learning_rate": candidate.learning_rate,
        "num_leaves": candidate.num_leaves,
        "min_child_samples": candidate.min_child_samples,
        "lambda_l2": candidate.lambda_l2,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "cat_smooth": candidate.cat_smooth,
        "min_data_per_group": candidate.min_data_per_group,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbose": -1,
    }


def _dataset(
    matrix: np.ndarray,
    target: np.ndarray,
    categorical: list[int],
    names: list[str],
    reference: lgb.Dataset | None = None,
) -> lgb.Dataset:
    return lgb.Dataset(
        matrix,
        label=target,
        categorical_feature=categorical,
        feature_name=names,
        free_raw_data=True,
        params={"max_cat_to_onehot": 8, "verbose": -1},
        reference=reference,
    )


def class_weight_share(y: np.ndarray, config: ModelConfig) -> float | None:
    """The positive weight that balances the classes, when `balance_classes` asks for it; else None."""
    positive_share = float(np.mean(y)) if len(y) else 0.5
    minority = min(positive_share, 1 - positive_share)
    if config.balance_classes == "always" or (config.balance_classes == "auto" and 0 < minority < 0.2):
        return (1 - positive_share) / positive_share
    return None


def _fit_params(config: ModelConfig, objective: str, candidate: Candidate, y: np.ndarray) -> dict:
    params = booster_params(config, objective, candidate)
    if objective == "binary":
        weight = class_weight_share(y, config)
        if weight is not None:  # helps the trees find the rare class; calibration undoes the shift
            params["scale_pos_weight"] = weight
    return params


def train_booster(
    x: np.ndarray,
    y: np.ndarray,
    categorical: list[int],
    names: list[str],
    config: ModelConfig,
    candidate: Candidate,
    objective: str,
    rounds: int,
    validation: tuple | None = None,
    metric: str = "auc",
) -> tuple[lgb.Booster, int]:
    """A LightGBM fit; with `validation` (x, y) boosting stops early on it. Returns the booster and its rounds."""
    params = _fit_params(config, objective, candidate, y)
    train_set = _dataset(x, y, categorical, names)
    if validation is None:
        return lgb.train(params, train_set, num_boost_round=rounds), rounds
    params["metric"] = metric
    valid_set = _dataset(validation[0], validation[1], categorical, names, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.search.early_stopping_rounds, verbose=False)],
    )
    best = max(int(booster.best_iteration or rounds), 1)
    return booster, best


def cross_fitted_booster(
    x: np.ndarray,
    y: np.ndarray,
    categorical: list[int],
    names: list[str],
    config: ModelConfig,
    candidate: Candidate,
    val_x: np.ndarray,
    val_y: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Validation margins a LightGBM setting earns without choosing its rounds on the same rows.

    The validation rows are split in two halves at random: the rounds that are best on one half
    score the other, and the other way round, from one fit (boosting stops once either half has not
    improved for `early_stopping_rounds`). Early stopping on the very rows that then rank the
    candidates would flatter every tree model against the logistic regression, which has no rounds
    to tune. Returns the cross-fitted margins (in the rows' order) and the rounds to refit with.
    """
    params = _fit_params(config, "binary", candidate, y)
    params["metric"] = "auc"
    half = np.random.default_rng(config.seed).permutation(len(val_y)) % 2 == 0
    train_set = _dataset(x, y, categorical, names)
    halves = [_dataset(val_x[mask], val_y[mask], categorical, names, reference=train_set) for mask in (half, ~half)]
    curves: dict = {}
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=halves,
        valid_names=["a", "b"],
        callbacks=[
            lgb.record_evaluation(curves),
            lgb.early_stopping(config.search.early_stopping_rounds, verbose=False),
        ],
    )
    best_a, best_b = (int(np.argmax(curves[name]["auc"])) + 1 for name in ("a", "b"))
    margin = np.empty(len(val_y))
    margin[~half] = booster.predict(val_x[~half], raw_score=True, num_iteration=best_a)
    margin[half] = booster.predict(val_x[half], raw_score=True, num_iteration=best_b)
    return margin, max(1, round((best_a + best_b) / 2))


def fit_logistic(x: np.ndarray, y: np.ndarray, categorical: list[int], c: float, seed: int) -> LogisticLearner:
    from sklearn.linear_model import LogisticRegression  # fitting only: a scoring process never loads it

    if len(y) > LOGISTIC_MAX_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), LOGISTIC_MAX_ROWS, replace=False))
        x, y = x[keep], y[keep]
    numeric = [i for i in range(x.shape[1]) if i not in categorical]
    raw = x[:, numeric]
    medians = (
        np.nan_to_num(np.nanmedian(np.where(np.isnan(raw).all(axis=0), 0.0, raw), axis=0)) if numeric else np.zeros(0)
    )
    logged = signed_log(np.where(np.isnan(raw), medians, raw))
    means, scales = logged.mean(axis=0), logged.std(axis=0)
    scales = np.where(scales > 1e-12, scales, 1.0)
    blocks = [(logged - means) / scales]
    levels = []
    for column in categorical:
        values = x[:, column]
        found, counts = np.unique(values[~np.isnan(values)], return_counts=True)
        kept = found[counts >= LOGISTIC_MIN_LEVEL_ROWS]
        levels.append(kept.tolist())
        blocks.append(LogisticLearner._one_hot(values, kept))
    design = np.hstack(blocks)
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(design, y)
    coef = model.coef_[0]
    numeric_coef, rest = coef[: len(numeric)], coef[len(numeric) :]
    level_coef, level_mean, start = [], [], 0
    for column, kept in zip(categorical, levels):
        width = len(kept) + 2
        column_coef = rest[start : start + width]
        start += width
        level_coef.append(column_coef.tolist())
        level_mean.append(float(column_coef[LogisticLearner._slots(x[:, column], np.asarray(kept))].mean()))
    return LogisticLearner(
        numeric,
        medians,
        means,
        scales,
        numeric_coef,
        list(categorical),
        levels,
        level_coef,
        level_mean,
        float(model.intercept_[0]),
    )


def fit_calibrator(margin: np.ndarray, y: np.ndarray, method: str) -> Calibrator:
    from sklearn.isotonic import IsotonicRegression  # fitting only: a scoring process never loads them
    from sklearn.linear_model import LogisticRegression

    margin = np.asarray(margin, dtype=np.float64)
    if method == "knots":  # an old champion's recipe re-fitted: the isotonic steps it was logged with
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(margin, y)
        return Calibrator(
            "knots", [], np.asarray(isotonic.X_thresholds_).tolist(), np.asarray(isotonic.y_thresholds_).tolist()
        )
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(margin[:, None], y)
    platt_coef = [float(platt.coef_[0, 0]), float(platt.intercept_[0])]
    if method == "platt" or platt_coef[0] <= 0:  # a learner ranked backwards gets the plain curve
        return Calibrator("platt", platt_coef)
    if method == "beta":
        beta = LogisticRegression(C=1e6, max_iter=1000).fit(beta_features(margin), y)
        a, b = beta.coef_[0]
        if a < 0 or b < 0:  # not monotone: Kull et al. fall back to the simpler map
            return Calibrator("platt", platt_coef)
        return Calibrator("beta", [float(a), float(b), float(beta.intercept_[0])])
    isotonic = IsotonicRegression(out_of_bounds="clip").fit(margin, y)
    fitted = isotonic.predict(margin)
    levels, block = np.unique(fitted, return_inverse=True)
    centres = np.bincount(block, weights=margin) / np.bincount(block)
    return Calibrator("isotonic_platt", platt_coef, centres.tolist(), levels.tolist())


def select_calibrator(margin: np.ndarray, y: np.ndarray, method: str, seed: int) -> tuple[Calibrator, dict[str, float]]:
    """The method asked for, or with `auto` the one with the lowest cross-validated log loss on these rows."""
    if len(y) < MIN_CALIBRATION_ROWS or len(np.unique(y)) < 2:
        raise ValueError(f"only {len(y)} rows with both outcomes to calibrate on; need {MIN_CALIBRATION_ROWS}")
    if method != "auto":
        return fit_calibrator(margin, y, method), {}
    losses = calibration_losses([(margin, y)], seed)
    return fit_calibrator(margin, y, pick_calibration(losses)), losses


def calibration_losses(periods: list[tuple[np.ndarray, np.ndarray]], seed: int) -> dict[str, float]:
    """Each calibration method's cross-validated log loss over several periods' (margin, outcome) pairs, pooled:
    within each period (whose margins come from one learner fit) the map is fitted on four fifths and judged on
    the rest, and the losses are averaged over all rows of all periods."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    totals = dict.fromkeys(CALIBRATION_METHODS, 0.0)
    rows = 0
    for margin, y in periods:
        smaller_class = int(np.bincount(y.astype(int), minlength=2).min())
        if len(y) < MIN_CALIBRATION_ROWS or smaller_class < 2:
            continue
        folds = StratifiedKFold(n_splits=min(CALIBRATION_FOLDS, smaller_class), shuffle=True, random_state=seed)
        for candidate in CALIBRATION_METHODS:
            predicted = np.empty(len(y))
            for train_rows, test_rows in folds.split(margin[:, None], y):
                predicted[test_rows] = fit_calibrator(margin[train_rows], y[train_rows], candidate)(margin[test_rows])
            clipped = np.clip(predicted, 1e-12, 1 - 1e-12)
            totals[candidate] += float(log_loss(y, clipped, labels=[0, 1])) * len(y)
        rows += len(y)
    return {method: total / rows for method, total in totals.items()} if rows else {}


def pick_calibration(losses: dict[str, float]) -> str:
    """The simplest method within 1e-4 of the lowest log loss (platt without any)."""
    if not losses:
        return CALIBRATION_METHODS[0]
    best = min(losses.values())
    return next(m for m in CALIBRATION_METHODS if losses[m] <= best + 1e-4)


def blend_weights(margins: tuple[np.ndarray, np.ndarray], y: np.ndarray) -> tuple[list[float], float]:
    """A blend's weights and offset: half of each component's Platt curve (slope, intercept) on these rows."""
    from sklearn.linear_model import LogisticRegression

    curves = [LogisticRegression(C=1e6, max_iter=1000).fit(margin[:, None], y) for margin in margins]
    weights = [0.5 * float(curve.coef_[0, 0]) for curve in curves]
    return weights, 0.5 * float(sum(curve.intercept_[0] for curve in curves))


def cross_fitted_blend(margins: tuple[np.ndarray, np.ndarray], y: np.ndarray, seed: int) -> np.ndarray:
    """A blend's margins on rows its weights were not fitted on: the weights fitted on one random half of the rows
    score the other, and the other way round."""
    half = np.random.default_rng(seed).permutation(len(y)) % 2 == 0
    blended = np.empty(len(y))
    for fit_on in (half, ~half):
        weights, offset = blend_weights((margins[0][fit_on], margins[1][fit_on]), y[fit_on])
        blended[~fit_on] = weights[0] * margins[0][~fit_on] + weights[1] * margins[1][~fit_on] + offset
    return blended


def fit_learner(
    recipe: Recipe, x: np.ndarray, y: np.ndarray, categorical: list[int], names: list[str], config: ModelConfig
) -> lgb.Booster | LogisticLearner | BlendLearner:
    """The recipe's learner fitted on these rows; a blend's components with equal weights (`fit_recipe` fits its
    weights on the calibration rows)."""
    if recipe.learner == LOGISTIC:
        return fit_logistic(x, y, categorical, recipe.params["c"], config.seed)
    if recipe.learner == BLEND:
        logistic = fit_learner(recipe.component(LOGISTIC), x, y, categorical, names, config)
        booster = fit_learner(recipe.component(LIGHTGBM), x, y, categorical, names, config)
        assert isinstance(logistic, LogisticLearner) and isinstance(booster, lgb.Booster)
        return BlendLearner(logistic, booster, [0.5, 0.5], 0.0)
    params = dict(recipe.params)
    rounds = int(params.pop("num_boost_round"))
    booster, _ = train_booster(x, y, categorical, names, config, Candidate(**params), "binary", rounds)
    return booster


def fit_recipe(
    recipe: Recipe, fit_x, fit_y, cal_x, cal_y, categorical: list[int], names: list[str], config: ModelConfig
) -> WinModel:
    """Fit `recipe` exactly (fixed rounds, fixed calibration method): the same inputs give the same model."""
    learner = fit_learner(recipe, fit_x, fit_y, categorical, names, config)
    if isinstance(learner, BlendLearner):
        parts = (learner.logistic.margin(cal_x), predict_dense(learner.booster, cal_x, raw_score=True))
        learner.weights, learner.offset = blend_weights(parts, cal_y)
    calibrator = fit_calibrator(learner_margin(learner, cal_x), cal_y, recipe.calibration)
    return WinModel(learner, calibrator, recipe)


def fit_deal_size(
    x,
    amount,
    categorical: list[int],
    names: list[str],
    config: ModelConfig,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    rounds: int | None = None,
    shrink: float | None = None,
) -> DealSizeModel:
    """With `validation` (x, amount), boosting stops early and the shrinkage is measured on it;
    otherwise `rounds` and `shrink` come from an earlier, validated fit (the final refit)."""
    keep = np.isfinite(amount) & (amount > 0)
    x, amount = x[keep], amount[keep]
    if len(amount) < 2:
        return DealSizeModel.unknown()
    gamma = config.deal_size_objective == "gamma"
    target = amount if gamma else np.log(amount)
    base = float(np.log(amount.mean()) if gamma else target.mean())
    candidate = config.search.candidates[0]
    objective = "gamma" if gamma else "regression"
    valid = None
    if validation is not None:
        valid_keep = np.isfinite(validation[1]) & (validation[1] > 0)
        valid = (validation[0][valid_keep], validation[1][valid_keep])
    if valid is not None and len(valid[1]) >= 20:
        valid_target = valid[1] if gamma else np.log(valid[1])
        booster, rounds = train_booster(
            x,
            target,
            categorical,
            names,
            config,
            candidate,
            objective,
            config.num_boost_round,
            (valid[0], valid_target),
            metric="gamma_deviance" if gamma else "l2",
        )
        raw = predict_dense(booster, valid[0], raw_score=True, num_iteration=rounds)
        log_valid = np.log(valid[1])
        shrink, r2_raw, r2 = _shrinkage(log_valid, raw, base)
        if r2 < config.deal_size_min_r2:
            shrink = 0.0
        booster, _ = train_booster(x, target, categorical, names, config, candidate, objective, rounds)
        measured = {"r2_log_raw": r2_raw, "r2_log_shrunk": r2, "rows": float(len(log_valid))}
    else:
        # Too few validated deals to measure skill: keep a constant, which cannot rank on noise.
        rounds = rounds or config.num_boost_round
        shrink = 0.0 if shrink is None else shrink
        booster, _ = train_booster(x, target, categorical, names, config, candidate, objective, rounds)
        measured = {"rows": float(len(valid[1])) if valid is not None else 0.0}
    model = DealSizeModel(booster, 1.0, "gamma" if gamma else "log_l2", base, float(shrink), int(rounds), measured)
    if not gamma:  # exp(E[log y]) underestimates E[y]; the mean of exp(residual) restores the mean
        model.smearing = float(np.mean(np.exp(target - model.margin(x))))
    return model


def _shrinkage(log_amount: np.ndarray, raw: np.ndarray, base: float) -> tuple[float, float, float]:
    """Least-squares factor towards `base` on validation rows, clipped to [0, 1]; R² before and after."""
    spread = np.sum((log_amount - log_amount.mean()) ** 2)
    if spread <= 0:
        return 0.0, float("nan"), float("nan")
    centred = raw - base
    denominator = float(np.dot(centred, centred))
    shrink = float(np.clip(np.dot(log_amount - base, centred) / denominator, 0.0, 1.0)) if denominator > 0 else 0.0
    r2_raw = 1 - float(np.sum((log_amount - raw) ** 2) / spread)
    r2 = 1 - float(np.sum((log_amount - (base + shrink * centred)) ** 2) / spread)
    return shrink, r2_raw, r2
