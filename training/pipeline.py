"""Training: dataset assembly on a time window, learner selection, evaluation on a time-based holdout,
final refit, and the gate.

The window has three slices, in time order: *fit* (the learners train on it), *validation* (the
months before the holdout: boosting stops, the learner and the calibration are chosen, and the win
probability is calibrated on it) and *holdout* (the latest months, which judge every candidate and
which nothing was chosen on). The registered model is then refit with the chosen recipe shifted to
the end of the window, so it has seen the most recent deals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from features.config import ModelConfig
from features.matrix import FeatureSpec
from features.pointintime import FAMILY_LEARNED
from features.rules import with_rule_scores
from features.schema import CrmData
from scoring.attribution import predict_dense
from scoring.learners import BLEND, LIGHTGBM, LOGISTIC, DealSizeModel, Recipe, WinModel
from scoring.scorer import Scorer
from training.evaluate import (
    auc_confidence,
    bootstrap_aucs,
    deal_size_metrics,
    expected_calibration_error,
    tier_metric_dict,
    tier_outcomes,
    win_metrics,
)
from training.guards import Leak, constant_signals, find_leaks, inputs_available, win_rate_shift
from training.models import (
    blend_weights,
    calibration_losses,
    cross_fitted_blend,
    cross_fitted_booster,
    fit_calibrator,
    fit_deal_size,
    fit_logistic,
    fit_recipe,
    pick_calibration,
    train_booster,
)
from training.propensity import fit_pipeline, set_win_shifts, validation_snapshot, with_closing_deals
from training.rows import PANDAS, RowsEngine, pandas_engine, rows_digest, sample_training_rows, training_features
from training.window import WindowDates, need_with_advice

Progress = Callable[[str], None]


@dataclass
class CandidateScore:
    """One win-model candidate: its ROC AUC on the validation slice, on the rolling folds if a finalist (which
    chose), and on the holdout (which judges and chooses nothing)."""

    name: str
    learner: str
    validation_auc: float
    holdout_auc: float = float("nan")
    pooled_auc: float = float("nan")  # finalists: mean ROC AUC over the rolling folds, weighted by their deals
    pooled_noise: float = float("nan")  # finalists: standard error of its pooled difference to the best finalist
    seconds: float = 0.0
    chosen: bool = False
    rounds: int = 0


@dataclass(frozen=True)
class Fold:
    """One rolling validation period: the development rows it is judged on, and those fitted on (closed before it,
    a bounded seeded sample)."""

    start: pd.Timestamp
    end: pd.Timestamp
    fit_at: np.ndarray  # positions in the development rows
    period_at: np.ndarray


@dataclass
class Selection:
    recipe: Recipe
    candidates: list[CandidateScore]
    calibration_losses: dict[str, float]  # cross-validated log loss per calibration method (auto), pooled over folds
    skipped: list[str] = field(default_factory=list)  # candidates (or folds) the time budget left out
    folds: pd.DataFrame = field(default_factory=pd.DataFrame)  # the finalists' ROC AUC per rolling fold, pooled
    fold_seconds: float = 0.0  # what judging the finalists on the earlier folds cost

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([c.__dict__ for c in self.candidates])


@dataclass
class TrainingResult:
    scorer: Scorer
    window: WindowDates
    summary: dict
    metrics: dict[str, float]
    holdout: pd.DataFrame  # one row per holdout opportunity with every model's prediction
    holdout_book: pd.DataFrame  # accounts scored as of the holdout start, with learned and rule tiers
    tier_tables: dict[str, pd.DataFrame]
    book: pd.DataFrame  # every account's features as of the window end (input of the final scoring)
    holdout_rows: pd.DataFrame  # the holdout opportunities' feature rows (to judge the champion on them)
    development: pd.DataFrame  # the fit and validation slices' rows (to re-fit the champion's recipe on them)
    selection: Selection
    leaks: list[Leak] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the run decided for the user (deal size, calibration)
    feature_importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    pipeline_holdout: pd.DataFrame = field(default_factory=pd.DataFrame)  # the propensity holdout's accounts
    engine: str = PANDAS  # where the feature rows were built
    rows_digest: str = ""  # `rows_digest` of the window's training rows, to compare runs and engines


MIN_FOLD_CLASS = 20  # an earlier fold needs this many won and lost deals, both to fit on and to be judged on
FOLD_RESAMPLES = 200


def rolling_folds(development: pd.DataFrame, window: WindowDates, config: ModelConfig) -> list[Fold]:
    """Up to `search.folds` consecutive periods of `window.calibration_months`, oldest first, the last being the
    validation slice (fitted on the fit slice); each earlier one fitted on every development deal closed before it.
    An earlier period with fewer than MIN_FOLD_CLASS won or lost deals, to fit on or to judge, is left out."""
    dates, won = development["close_date"], development["won"].to_numpy()
    months, search = config.model.window.calibration_months, config.model.search
    folds = []
    for back in range(search.folds):
        end = window.holdout_start - pd.DateOffset(months=months * back)
        start = end - pd.DateOffset(months=months)
        before = (dates < start).to_numpy()
        period = ((dates >= start) & (dates < end)).to_numpy()
        enough = min(won[before].sum(), (1 - won[before]).sum(), won[period].sum(), (1 - won[period]).sum())
        if back and enough < MIN_FOLD_CLASS:
            break
        fit_at = sample_rows(np.flatnonzero(before), search.max_rows, config.model.seed)
        folds.append(Fold(pd.Timestamp(start), pd.Timestamp(end), fit_at, np.flatnonzero(period)))
    return folds[::-1]


def pooled_fold_aucs(
    outcomes: list[np.ndarray], scores: list[list[np.ndarray]], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-fold ROC AUC of each score, (folds, scores); their mean over the folds weighted by the folds' deals; and
    the standard error of each score's pooled paired difference to the best pooled score. That error has two parts:
    the deals' (a bootstrap over the deals within each fold, each score judged on the same resampled deals) and the
    periods' (how much the per-fold difference varies from one period to the next, over the square root of the
    folds), since the holdout is one more period: a gain that holds on every period is small in the second part,
    one that comes from a single period is not."""
    weights = np.array([len(y) for y in outcomes], dtype=np.float64)
    weights /= weights.sum()
    aucs = np.array([[roc_auc_score(y, score) for score in fold] for y, fold in zip(outcomes, scores)])
    pooled = weights @ aucs
    resampled = sum(
        weight * bootstrap_aucs(y, fold, FOLD_RESAMPLES, seed=seed + number)
        for number, (weight, y, fold) in enumerate(zip(weights, outcomes, scores))
    )
    best = int(np.argmax(pooled))
    noise = np.nanstd(np.asarray(resampled)[:, [best]] - resampled, axis=0)
    if len(outcomes) > 1:
        differences = aucs[:, [best]] - aucs
        noise = np.sqrt(noise**2 + differences.var(axis=0, ddof=1) / len(outcomes))
    return aucs, pooled, noise


def occams_choice(pooled: np.ndarray, noise: np.ndarray, search) -> int:
    """The simplest score (the first) whose pooled ROC AUC is within the noise of the best: `tie_standard_errors`
    standard errors of their paired difference, or `tie_tolerance` if larger. A more complex learner is chosen only
    when its gain over every simpler one is larger than that noise: small but consistent over the folds is enough."""
    best = float(np.max(pooled))
    return next(
        i
        for i in range(len(pooled))
        if best - pooled[i] <= max(search.tie_tolerance, search.tie_standard_errors * noise[i])
    )


def select_recipe(
    matrix: np.ndarray,
    y: np.ndarray,
    folds: list[Fold],
    holdout_x: np.ndarray,
    holdout_y: np.ndarray,
    categorical: list[int],
    names: list[str],
    config: ModelConfig,
    progress: Progress,
) -> Selection:
    """Two stages. Every candidate is fitted on the fit slice and ranked by its ROC AUC on the validation slice (the
    last fold); the finalists (the logistic regression, the best LightGBM and their blend) are then judged on every
    fold, each fitted on the months before it, and the simplest within the noise of the best pooled ROC AUC is
    chosen, its calibration method chosen on the pooled folds. The holdout AUC of each candidate is recorded for
    the report only: it plays no part in the choice."""
    search, model_config = config.model.search, config.model
    last = folds[-1]
    fit_x, fit_y, val_x, val_y = matrix[last.fit_at], y[last.fit_at], matrix[last.period_at], y[last.period_at]
    scores, margins, boosters, skipped = [], {}, {}, []
    began = time.perf_counter()
    two_classes = len(np.unique(holdout_y)) == 2

    def holdout_auc(margin: np.ndarray) -> float:
        return float(roc_auc_score(holdout_y, margin)) if two_classes else float("nan")

    clock = time.perf_counter()
    logistic = fit_logistic(fit_x, fit_y, categorical, search.logistic_c, model_config.seed)
    margins["logistic"] = logistic.margin(val_x)
    scores.append(
        CandidateScore(
            "logistic regression",
            LOGISTIC,
            float(roc_auc_score(val_y, margins["logistic"])),
            holdout_auc(logistic.margin(holdout_x)),
            seconds=time.perf_counter() - clock,
        )
    )
    for number, candidate in enumerate(search.candidates):
        if number and time.perf_counter() - began > search.time_budget_seconds:
            skipped.append(candidate.label())
            continue
        progress(f"learner search: {candidate.label()}")
        clock = time.perf_counter()
        key = f"lightgbm_{number}"
        margins[key], rounds = cross_fitted_booster(
            fit_x, fit_y, categorical, names, model_config, candidate, val_x, val_y
        )
        boosters[key], _ = train_booster(fit_x, fit_y, categorical, names, model_config, candidate, "binary", rounds)
        scores.append(
            CandidateScore(
                candidate.label(),
                LIGHTGBM,
                float(roc_auc_score(val_y, margins[key])),
                holdout_auc(predict_dense(boosters[key], holdout_x, raw_score=True)),
                seconds=time.perf_counter() - clock,
                rounds=rounds,
            )
        )
    keys = list(margins)  # margins and scores share one order
    finalists = [0]
    if len(scores) > 1:
        # The LightGBM finalist: the simplest setting within noise of the best on the validation slice, so the
        # slice that picked it does not also flatter it on the folds (the best of several is lucky there).
        tree_margins = [margins[key] for key in keys[1:]]
        tree_aucs = np.array([score.validation_auc for score in scores[1:]])
        resampled = bootstrap_aucs(val_y, tree_margins, seed=model_config.seed)
        spread = np.nanstd(resampled[:, [int(np.argmax(tree_aucs))]] - resampled, axis=0)
        tree_at = 1 + occams_choice(tree_aucs, spread, search)
        finalists.append(tree_at)
        tree_key, tree = keys[tree_at], search.candidates[int(keys[tree_at].rsplit("_", 1)[1])]
        if search.blend:
            clock = time.perf_counter()
            pair = (margins["logistic"], margins[tree_key])
            margins["blend"] = cross_fitted_blend(pair, val_y, model_config.seed)
            weights, offset = blend_weights(
                (logistic.margin(val_x), predict_dense(boosters[tree_key], val_x, raw_score=True)), val_y
            )
            blended = (
                weights[0] * logistic.margin(holdout_x)
                + weights[1] * predict_dense(boosters[tree_key], holdout_x, raw_score=True)
                + offset
            )
            scores.append(
                CandidateScore(
                    f"blend of logistic regression and {scores[tree_at].name}",
                    BLEND,
                    float(roc_auc_score(val_y, margins["blend"])),
                    holdout_auc(blended),
                    seconds=time.perf_counter() - clock,
                    rounds=scores[tree_at].rounds,
                )
            )
            finalists.append(len(scores) - 1)
            keys.append("blend")
    # The finalists on the earlier folds, newest first, while the time budget lasts.
    clock = time.perf_counter()
    judged: list[tuple[Fold, np.ndarray, list[np.ndarray]]] = [(last, val_y, [margins[keys[i]] for i in finalists])]
    for fold in folds[-2::-1]:
        if time.perf_counter() - began > search.time_budget_seconds:
            skipped.append(f"the fold from {fold.start.date()}")
            continue
        progress(f"learner search: the finalists on the fold from {fold.start.date()}")
        x, fold_y = matrix[fold.fit_at], y[fold.fit_at]
        period_x, period_y = matrix[fold.period_at], y[fold.period_at]
        fold_margins = [fit_logistic(x, fold_y, categorical, search.logistic_c, model_config.seed).margin(period_x)]
        if len(finalists) > 1:
            fold_margins.append(
                cross_fitted_booster(x, fold_y, categorical, names, model_config, tree, period_x, period_y)[0]
            )
        if len(finalists) > 2:
            fold_margins.append(cross_fitted_blend((fold_margins[0], fold_margins[1]), period_y, model_config.seed))
        judged.insert(0, (fold, period_y, fold_margins))
    fold_seconds = time.perf_counter() - clock
    aucs, pooled, noise = pooled_fold_aucs([o for _, o, _ in judged], [m for _, _, m in judged], model_config.seed)
    for at, i in enumerate(finalists):
        scores[i].pooled_auc, scores[i].pooled_noise = float(pooled[at]), float(noise[at])
    picked = occams_choice(pooled, noise, search)
    chosen = scores[finalists[picked]]
    chosen.chosen = True
    losses: dict[str, float] = {}
    method: str = model_config.calibration
    if method == "auto":
        losses = calibration_losses([(m[picked], o) for _, o, m in judged], model_config.seed)
        method = pick_calibration(losses)
    calibrator = fit_calibrator(margins[keys[finalists[picked]]], val_y, method)  # may fall back to a simpler map
    if chosen.learner == LOGISTIC:
        params = {"c": search.logistic_c}
    else:
        params = {**tree.model_dump(), "num_boost_round": chosen.rounds}
        if chosen.learner == BLEND:
            params = {"c": search.logistic_c, **params}
    table = fold_table([fold for fold, _, _ in judged], [o for _, o, _ in judged], [scores[i] for i in finalists], aucs)
    return Selection(Recipe(chosen.learner, params, calibrator.method), scores, losses, skipped, table, fold_seconds)


def fold_table(
    folds: list[Fold], outcomes: list[np.ndarray], finalists: list[CandidateScore], aucs: np.ndarray
) -> pd.DataFrame:
    """One row per finalist: its ROC AUC on each fold (a column named by the fold's months, deals and wins), pooled,
    and the noise of its pooled difference to the best."""
    columns = [
        f"{fold.start.date()} to {fold.end.date()} ({len(y):,} deals, {int(y.sum()):,} won)"
        for fold, y in zip(folds, outcomes)
    ]
    table = pd.DataFrame(aucs.T, columns=columns)
    table.insert(0, "candidate", [score.name for score in finalists])
    table["pooled"] = [score.pooled_auc for score in finalists]
    table["noise of the difference to the best"] = [score.pooled_noise for score in finalists]
    table["chosen"] = [score.chosen for score in finalists]
    return table


LEAK_CHECK_ROWS = 100_000  # a single feature's AUC is settled to the second decimal long before this


def sample_rows(positions: np.ndarray, most: int, seed: int) -> np.ndarray:
    """At most `most` of `positions`, a seeded random sample kept in their order; all of them when fewer."""
    if len(positions) <= most:
        return positions
    return np.sort(np.random.default_rng(seed).choice(positions, most, replace=False))


def fit_win_model(
    rows: pd.DataFrame,
    calibration_start: pd.Timestamp,
    spec: FeatureSpec,
    recipe: Recipe,
    config: ModelConfig,
    matrix: np.ndarray | None = None,
) -> WinModel:
    """The recipe fitted on rows closed before `calibration_start`, calibrated on the rest. `matrix`: the rows
    already encoded by `spec`, when the caller has them."""
    early = (rows["close_date"] < calibration_start).to_numpy()
    fit_matrix, calibration_matrix = _early_and_late(spec.encode(rows) if matrix is None else matrix, early)
    fit_won, calibration_won = _early_and_late(rows["won"].to_numpy(), early)
    return fit_recipe(
        recipe,
        fit_matrix,
        fit_won,
        calibration_matrix,
        calibration_won,
        spec.categorical_indices,
        spec.columns,
        config.model,
    )


def _early_and_late(values: np.ndarray, early: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`values` split by `early`. The rows come in close-date order, so the early ones are usually a prefix and
    the two parts are views of `values`, not copies."""
    count = int(early.sum())
    if early[:count].all():
        return values[:count], values[count:]
    return values[early], values[~early]


def refit_probability(
    development: pd.DataFrame,
    holdout: pd.DataFrame,
    calibration_start: pd.Timestamp,
    recipe: Recipe,
    config: ModelConfig,
    columns: list[str],
) -> np.ndarray:
    """A recipe re-fitted on these fit and validation slices: its win probability for each holdout row."""
    spec = FeatureSpec.fit(development, config, columns=columns)
    model = fit_win_model(development, calibration_start, spec, recipe, config)
    return model.predict(spec.encode(holdout))


def refit_auc(
    development: pd.DataFrame,
    holdout: pd.DataFrame,
    calibration_start: pd.Timestamp,
    recipe: Recipe,
    config: ModelConfig,
    columns: list[str],
) -> float:
    """A recipe (e.g. the champion's) re-fitted on these fit and validation slices, judged on this holdout."""
    probability = refit_probability(development, holdout, calibration_start, recipe, config, columns)
    return win_metrics(holdout["won"].to_numpy(), probability)["roc_auc"]


SAMPLING_BOOTSTRAP_ROWS = 200_000  # holdout rows the gain's standard error is resampled from


@dataclass(frozen=True)
class SamplingEffect:
    """What fitting on a sample of the window's rows costs in holdout ROC AUC, read off the learning curve: the
    chosen recipe fitted on the sample's development rows and on a nested half of them, judged on the same
    (whole) holdout.

    `doubling_gain` is what the sample's last doubling of rows added. Learning curves flatten: each doubling of
    the rows adds no more than the one before (a power law in the rows, the usual shape, adds less). All the
    window's rows, `doublings` = log2(window rows / fitted rows) doublings beyond the sample, would then add at
    most `doubling_gain * doublings`: the estimate reported, and with two paired-bootstrap standard errors of
    the gain (the holdout's noise) as its high end."""

    window_rows: int
    fitted_rows: int
    half_rows: int  # development rows of the nested half
    auc: float  # the sample's evaluation model
    half_auc: float
    gain_error: float

    @property
    def doubling_gain(self) -> float:
        return self.auc - self.half_auc

    @property
    def doublings(self) -> float:
        return math.log2(self.window_rows / self.fitted_rows)

    @property
    def estimate(self) -> float:
        return max(self.doubling_gain, 0.0) * self.doublings

    @property
    def estimate_high(self) -> float:
        return max(self.doubling_gain + 2 * self.gain_error, 0.0) * self.doublings

    def metrics(self) -> dict[str, float]:
        return {
            "sample_rows": float(self.fitted_rows),
            "sample_half_development_rows": float(self.half_rows),
            "sample_half_holdout_roc_auc": self.half_auc,
            "sample_doubling_auc_gain": self.doubling_gain,
            "sample_doubling_auc_gain_se": self.gain_error,
            "sample_auc_effect_estimate": self.estimate,
            "sample_auc_effect_high": self.estimate_high,
        }

    def render(self) -> str:
        return (
            f"the sample's effect on holdout ROC AUC, measured: the chosen learner fitted on a nested half of the "
            f"sample ({self.half_rows:,} development rows) scores {self.half_auc:.4f} against the sample's "
            f"{self.auc:.4f}, a gain of {self.doubling_gain:+.4f} (standard error {self.gain_error:.4f}) for the "
            f"last doubling of rows; as each doubling adds no more than the one before, all "
            f"{self.window_rows:,} rows ({self.doublings:.2f} doublings more) would raise it by at most about "
            f"{self.estimate:.4f} ({self.estimate_high:.4f} with two standard errors)"
        )


def sampling_effect(
    development: pd.DataFrame,
    holdout: pd.DataFrame,
    window: WindowDates,
    recipe: Recipe,
    config: ModelConfig,
    columns: list[str],
    probability: np.ndarray,
    summary: dict,
) -> SamplingEffect:
    """The learning-curve measurement of `SamplingEffect`: `probability` is the sample's evaluation model's on
    `holdout`; the half is a seeded subset of `development`, stratified by outcome and close month as the sample."""
    half = sample_training_rows(development, len(development) // 2, config.model.seed + 1)
    half_probability = refit_probability(half, holdout, window.calibration_start, recipe, config, columns)
    y = holdout["won"].to_numpy()
    kept = sample_rows(np.arange(len(y)), SAMPLING_BOOTSTRAP_ROWS, config.model.seed)
    resampled = bootstrap_aucs(y[kept], [probability[kept], half_probability[kept]], seed=config.model.seed)
    return SamplingEffect(
        window_rows=summary["closed_opportunities"],
        fitted_rows=summary["training_rows_fitted"],
        half_rows=len(half),
        auc=win_metrics(y, probability)["roc_auc"],
        half_auc=win_metrics(y, half_probability)["roc_auc"],
        gain_error=float(np.nanstd(resampled[:, 0] - resampled[:, 1])),
    )


@dataclass
class WinModelStage:
    """The win model judged on the holdout: the features it may use, the learner search, and the model fitted on
    the fit slice and calibrated on the validation slice, with its holdout probabilities."""

    spec: FeatureSpec
    leaks: list[Leak]
    selection: Selection
    model: WinModel
    matrix: np.ndarray  # the development rows encoded
    holdout_matrix: np.ndarray
    probability: np.ndarray  # of each holdout row


def win_model_stage(
    development: pd.DataFrame,
    holdout: pd.DataFrame,
    window: WindowDates,
    config: ModelConfig,
    progress: Progress = lambda step: None,
) -> WinModelStage:
    """Leak checks on the fit slice, the learner search, and the chosen recipe fitted for evaluation."""
    early = (development["close_date"] < window.calibration_start).to_numpy()
    leak_rows = development.iloc[sample_rows(np.flatnonzero(early), LEAK_CHECK_ROWS, config.model.seed)]
    leaks = find_leaks(leak_rows, FeatureSpec.fit(leak_rows, config).columns, config)
    spec = FeatureSpec.fit(development, config, exclude=[leak.feature for leak in leaks])
    matrix = spec.encode(development)
    holdout_matrix = spec.encode(holdout)
    y_dev, y = development["won"].to_numpy(), holdout["won"].to_numpy()
    # Candidates are compared on a bounded sample of the fit rows: their ranking settles long before the
    # rows run out, and the search's cost then stops growing with the book.
    selection = select_recipe(
        matrix,
        y_dev,
        rolling_folds(development, window, config),
        holdout_matrix,
        y,
        spec.categorical_indices,
        spec.columns,
        config,
        progress,
    )
    progress("evaluation models")
    win = fit_win_model(development, window.calibration_start, spec, selection.recipe, config, matrix)
    return WinModelStage(spec, leaks, selection, win, matrix, holdout_matrix, win.predict(holdout_matrix))


def _closed_from(rows: pd.DataFrame, date: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows closed before `date` and the others. The window's rows come in close-date order
    (`closed_between`), so these are slices of them, not copies: the development rows are most of the window."""
    close = rows["close_date"]
    if not close.is_monotonic_increasing:
        before = (close < date).to_numpy()
        return rows[before].reset_index(drop=True), rows[~before].reset_index(drop=True)
    cut = int(close.searchsorted(date, side="left"))
    return rows.iloc[:cut].reset_index(drop=True), rows.iloc[cut:].reset_index(drop=True)


def _amounts(rows: pd.DataFrame) -> np.ndarray:
    return rows["amount"].to_numpy(dtype=np.float64, na_value=np.nan)


def _data_summary(rows: pd.DataFrame, data: CrmData, window: WindowDates, engine: RowsEngine) -> dict:
    won = int(rows["won"].sum())
    return {
        "accounts": int(len(data.accounts)),
        "closed_opportunities": int(len(rows)),
        "won": won,
        "lost": int(len(rows) - won),
        "win_rate": float(won / len(rows)) if len(rows) else float("nan"),
        "holdout_opportunities": int((rows["close_date"] >= window.holdout_start).sum()),
        "engagement_events": engine.engagement_events,
        "intent_signals": engine.intent_signals,
        **{f"window_{k}": v for k, v in window.as_dict().items()},
    }


def train(
    data: CrmData,
    config: ModelConfig,
    as_of: pd.Timestamp | None = None,
    progress: Progress = lambda step: None,
    engine: RowsEngine | None = None,
) -> TrainingResult:
    """Train on the window before `as_of`. `engine` builds the feature rows (default: this process, group by
    group); `data` then needs only its accounts and opportunities."""
    window = WindowDates.for_data(data, config, as_of)
    engine = engine or pandas_engine(data, config)
    progress("point-in-time features")
    built = training_features(data, config, window, engine.build)
    rows = with_rule_scores(built.rows, config)
    need_with_advice(rows, "window", window, data, config)
    summary = _data_summary(rows, data, window, engine)
    digest = rows_digest(rows)
    notes = []
    # The holdout is judged whole even when the learners fit on a sample: it is only predicted, and a run on all
    # rows and one on a sample are then judged on the same deals.
    holdout = _closed_from(rows, window.holdout_start)[1]
    sampled = len(rows) > config.model.max_training_rows
    if sampled:
        rows = sample_training_rows(rows, config.model.max_training_rows, config.model.seed)
        notes.append(
            f"the learners fitted on {len(rows):,} of the window's {summary['closed_opportunities']:,} training rows "
            f"(model.max_training_rows), a seeded sample stratified by outcome and close month"
        )
    summary["training_rows_fitted"] = int(len(rows))
    development = _closed_from(rows, window.holdout_start)[0]
    early = (development["close_date"] < window.calibration_start).to_numpy()
    # The slices' outcomes and rule scores are all that is read of them: copies of whole rows would hold the
    # development rows twice over while the learners fit.
    outcomes = development[["won", "rule_score"]]
    fit_rows, validation_rows = outcomes[early], outcomes[~early]
    final_calibration = rows.loc[rows["close_date"] >= window.final_calibration_start, ["won"]]
    for name, part in (
        ("fit", fit_rows),
        ("validation", validation_rows),
        ("holdout", holdout),
        ("final calibration", final_calibration),
    ):
        need_with_advice(part, name, window, data, config)

    progress("leakage and shift checks")
    warnings: list[str] = []
    shift = win_rate_shift(
        {
            "fit": fit_rows["won"].to_numpy(),
            "validation": validation_rows["won"].to_numpy(),
            "holdout": holdout["won"].to_numpy(),
        },
        config.model.guards,
    )
    if shift:
        warnings.append(shift.render())
    stage = win_model_stage(development, holdout, window, config, progress)
    spec, leaks, selection, win = stage.spec, stage.leaks, stage.selection, stage.model
    matrix, holdout_matrix, probability = stage.matrix, stage.holdout_matrix, stage.probability
    y_dev, y = development["won"].to_numpy(), holdout["won"].to_numpy()
    if selection.skipped:
        notes.append(
            f"the learner search stopped at its time budget ({config.model.search.time_budget_seconds:g} s): "
            f"{len(selection.skipped)} candidate(s) or earlier fold(s) not tried ({'; '.join(selection.skipped)})"
        )
    won_dev = y_dev == 1
    amount_dev = _amounts(development)
    deal = fit_deal_size(
        matrix[early & won_dev],
        amount_dev[early & won_dev],
        spec.categorical_indices,
        spec.columns,
        config.model,
        validation=(matrix[~early & won_dev], amount_dev[~early & won_dev]),
    )
    evaluation = Scorer(config=config, spec=spec, win_model=win, deal_model=deal)
    metrics = {f"model_{k}": v for k, v in win_metrics(y, probability).items()}
    if sampled:
        progress("the sample's effect on holdout ROC AUC")
        effect = sampling_effect(
            development, holdout, window, selection.recipe, config, spec.columns, probability, summary
        )
        metrics.update(effect.metrics())
        notes.append(effect.render())
    account_columns = [column for column in spec.columns if column not in FAMILY_LEARNED]
    if len(account_columns) < len(spec.columns):  # the family model: report the account-level one beside it
        account_auc = refit_auc(
            development, holdout, window.calibration_start, selection.recipe, config, account_columns
        )
        metrics["account_level_model_roc_auc"] = account_auc
        notes.append(
            f"families: this model, with the family features, has holdout ROC AUC {metrics['model_roc_auc']:.3f}; "
            f"the same learner on the account's own features alone has {account_auc:.3f}"
        )

    progress("pipeline propensity and time to close")
    won_validation = ~early & won_dev
    look_ahead = fit_pipeline(
        data,
        built.snapshots,
        config,
        window.start,
        window.as_of,
        residual_quantiles(deal, matrix[won_validation], amount_dev[won_validation]),
    )
    evaluation.pipeline = look_ahead.evaluation
    metrics.update(look_ahead.metrics)
    # Which deals closed inside each snapshot's horizon, counted once for both fits of the win shifts below.
    snapshots = with_closing_deals(data, look_ahead.snapshots, config.model.horizon_days)
    if len(snapshots):  # the evaluation models know the snapshots whose horizon ends before the holdout's labels
        earlier = snapshots[snapshots["snapshot"] >= validation_snapshot(config.model.horizon_days)]
        set_win_shifts(look_ahead.evaluation, earlier, win, spec)
    notes.extend(look_ahead.notes)
    for number, candidate in enumerate(selection.candidates):
        metrics[f"candidate_{number}_validation_roc_auc"] = candidate.validation_auc
        metrics[f"candidate_{number}_holdout_roc_auc"] = candidate.holdout_auc

    progress("baselines")
    # The rule score alone, mapped to a probability by a one-feature logistic fit on the same fitting rows.
    rule_link = LogisticRegression().fit(fit_rows[["rule_score"]].to_numpy(), fit_rows["won"].to_numpy())
    rule_probability = rule_link.predict_proba(holdout[["rule_score"]].to_numpy())[:, 1]
    metrics.update({f"rule_{k}": v for k, v in win_metrics(y, rule_probability).items()})
    rule_constant = bool(np.ptp(holdout["rule_score"].to_numpy()) < 1e-9)
    metrics["rule_roc_auc"] = 0.5 if rule_constant else win_metrics(y, holdout["rule_score"].to_numpy())["roc_auc"]
    metrics["rule_score_constant"] = float(rule_constant)
    logistic_recipe = Recipe(LOGISTIC, {"c": config.model.search.logistic_c}, selection.recipe.calibration)
    logistic = (
        win
        if selection.recipe.learner == LOGISTIC
        else fit_win_model(development, window.calibration_start, spec, logistic_recipe, config, matrix)
    )
    logistic_probability = logistic.predict(holdout_matrix)
    metrics.update({f"logreg_{k}": v for k, v in win_metrics(y, logistic_probability).items()})
    confidence = auc_confidence(
        y,
        probability,
        {"rules": holdout["rule_score"].to_numpy(), "logreg": logistic_probability},
        seed=config.model.seed,
    )
    metrics.update({f"model_{k}": v for k, v in confidence.items()})

    deal_size = deal.predict(holdout_matrix)
    deal_log = deal.margin(holdout_matrix)
    won = y == 1
    amount = _amounts(holdout)
    metrics.update({f"deal_{k}": v for k, v in deal_size_metrics(amount[won], deal_size[won], deal_log[won]).items()})
    # Deal-size baseline: the median won amount of the development rows, for every account.
    development_amounts = amount_dev[won_dev]
    development_amounts = development_amounts[np.isfinite(development_amounts) & (development_amounts > 0)]
    median = float(np.median(development_amounts)) if len(development_amounts) else float("nan")
    baseline_size = np.full(won.sum(), median)
    metrics.update(
        {
            f"deal_baseline_{k}": v
            for k, v in deal_size_metrics(
                amount[won], baseline_size, np.log(np.clip(baseline_size, 1e-9, None))
            ).items()
        }
    )
    metrics["deal_shrink"] = deal.shrink if deal.known else float("nan")
    metrics["deal_validation_r2_log"] = deal.validation.get("r2_log_raw", float("nan"))
    notes.extend(_deal_notes(deal, config))
    for slice_name, part in (("fit", fit_rows), ("validation", validation_rows), ("holdout", holdout)):
        metrics[f"data_win_rate_{slice_name}"] = float(part["won"].mean())
    notes.append(_calibration_note(win, matrix, y_dev, early, probability, y))

    progress("holdout tiers")
    holdout_book = built.holdout_book
    evaluation.freeze(holdout_book)
    scored = evaluation.score(holdout_book, by_capacity=True, explain=False)
    tiers_learned = scored.set_index("account_id")["learned_tier"]
    tiers_rule = scored.set_index("account_id")["rule_tier"]
    tier_tables = {"learned": tier_outcomes(tiers_learned, holdout), "rule": tier_outcomes(tiers_rule, holdout)}
    metrics.update(tier_metric_dict(tier_tables["learned"], "learned"))
    metrics.update(tier_metric_dict(tier_tables["rule"], "rule_tiers"))

    holdout_predictions = holdout[
        [
            "opportunity_id",
            "account_id",
            "cutoff",
            "close_date",
            "won",
            "amount",
            "rule_score",
            "revenue_potential_score",
            "business_fit_score",
            "engagement_score",
        ]
    ].copy()
    holdout_predictions["win_probability"] = probability
    holdout_predictions["rule_probability"] = rule_probability
    holdout_predictions["logreg_probability"] = logistic_probability
    holdout_predictions["expected_deal_size"] = deal_size
    holdout_predictions["deal_log_prediction"] = deal_log

    progress("final model on the whole window")
    del stage, matrix, holdout_matrix  # the evaluation's matrices: the final fits encode the whole window again
    final_win = fit_win_model(rows, window.final_calibration_start, spec, selection.recipe, config)
    won_all = rows["won"].to_numpy() == 1
    final_deal = (
        DealSizeModel.unknown()
        if not deal.known
        else fit_deal_size(
            spec.encode(rows.loc[won_all, spec.columns]),  # the deal size is fitted on the won deals alone
            _amounts(rows)[won_all],
            spec.categorical_indices,
            spec.columns,
            config.model,
            rounds=deal.rounds,
            shrink=deal.shrink,
        )
    )
    metrics.update(set_win_shifts(look_ahead.final, snapshots, final_win, spec))
    final = Scorer(config=config, spec=spec, win_model=final_win, deal_model=final_deal, pipeline=look_ahead.final)
    book = built.book
    final.freeze(book)
    available = inputs_available(data, engine.engagement_events)
    warnings.extend(constant_signals(with_rule_scores(book, config), available))
    importance = pd.DataFrame(
        {
            "feature": spec.columns,
            "win_gain": final_win.importance(spec.columns),
            "deal_size_gain": final_deal.importance(len(spec.columns)),
        }
    ).sort_values("win_gain", ascending=False)
    return TrainingResult(
        final,
        window,
        summary,
        metrics,
        holdout_predictions,
        scored,
        tier_tables,
        book,
        holdout,
        development,
        selection,
        leaks,
        warnings,
        notes,
        importance,
        look_ahead.holdout,
        engine.name,
        digest,
    )


def _calibration_note(
    win: WinModel, matrix: np.ndarray, y_dev: np.ndarray, early: np.ndarray, probability: np.ndarray, y: np.ndarray
) -> str:
    """Calibration per slice of the evaluation model: a shift in win rate shows as predicted against observed."""
    parts = []
    predicted_dev = win.predict(matrix)  # once, not on two copies of the matrix's slices
    for name, predicted, observed in (
        ("fit", predicted_dev[early], y_dev[early]),
        ("validation, calibrated on", predicted_dev[~early], y_dev[~early]),
        ("holdout", probability, y),
    ):
        parts.append(
            f"{name}: ECE {expected_calibration_error(observed, predicted):.3f}, mean predicted "
            f"{predicted.mean():.1%} against a win rate of {observed.mean():.1%}"
        )
    return "win probability calibration by slice (" + "; ".join(parts) + ")"


RESIDUAL_QUANTILES = 101


def residual_quantiles(deal: DealSizeModel, matrix: np.ndarray, amount: np.ndarray) -> list[float]:
    """Quantiles of log won amount around the deal-size model's margin on validation deals (never fitted on):
    what the forecast draws a deal's amount from."""
    priced = np.isfinite(amount) & (amount > 0)
    if not deal.known or priced.sum() < 10:
        return []
    residual = np.log(amount[priced]) - deal.margin(matrix[priced])
    return np.quantile(residual, np.linspace(0, 1, RESIDUAL_QUANTILES)).round(6).tolist()


def _deal_notes(deal: DealSizeModel, config: ModelConfig) -> list[str]:
    if not deal.known:
        return [
            "no won deal has an amount: deal size is not learned (expected_deal_size and expected_value are "
            "empty) and the learned score ranks on win probability"
        ]
    r2 = deal.validation.get("r2_log_shrunk", float("nan"))
    if deal.shrink == 0.0:
        if "r2_log_shrunk" not in deal.validation:
            return [
                f"deal size: only {int(deal.validation.get('rows', 0))} won deals with an amount in the validation "
                "slice, too few to show skill: every account gets the mean won amount"
            ]
        return [
            f"deal size: the model shows no validated skill (validation R² on log amount {r2:.3f}, below "
            f"model.deal_size_min_r2 {config.model.deal_size_min_r2:g}): replaced by a constant, the mean won amount, "
            "so expected value ranks on win probability"
        ]
    if deal.shrink < 0.95:
        return [
            f"deal size: predictions shrunk {1 - deal.shrink:.0%} towards the mean won amount, the share the "
            f"validation slice supports (validation R² on log amount {r2:.3f})"
        ]
    return []


@dataclass(frozen=True)
class ChampionJudgement:
    """The current champion on this run's holdout, like for like: its recipe re-fitted on this run's slices."""

    version: str
    refit_auc: float | None  # None: the recipe could not be re-fitted here (say why in `note`)
    note: str = ""
    forward_auc: float | None = None  # the champion as registered, on holdout deals closed after its own window
    forward_rows: int = 0


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str]  # the failures when refused, else every check passed; each names its reference and figure
    checks: list[tuple[bool, str]] = field(default_factory=list)

    def render(self) -> str:
        verdict = "promoted to champion" if self.promote else "kept as challenger"
        return f"{verdict}: " + "; ".join(self.reasons)


def gate(
    summary: dict,
    metrics: dict[str, float],
    champion: ChampionJudgement | None,
    config: ModelConfig,
    leaks: Sequence[Leak] = (),
) -> GateDecision:
    """Champion only with enough data, a holdout AUC above the rule score's (or chance), not significantly
    below the logistic baseline, and no real loss against the champion judged like for like."""
    rules, checks = config.model.gate, []
    if summary["won"] < rules.min_won or summary["lost"] < rules.min_lost:
        checks.append(
            (
                False,
                f"not enough data: {summary['won']} won and {summary['lost']} lost in the window, "
                f"the gate needs {rules.min_won} and {rules.min_lost}",
            )
        )
    else:
        checks.append((True, f"enough data ({summary['won']:,} won, {summary['lost']:,} lost)"))
    if leaks:
        checks.append(
            (
                True,
                "no leaking feature in the model (refused and left out: "
                + ", ".join(f"{leak.column or leak.feature} with single-feature AUC {leak.auc:.3f}" for leak in leaks)
                + ")",
            )
        )
    auc, rule_auc = metrics["model_roc_auc"], metrics["rule_roc_auc"]
    auc_low, gain_low = metrics["model_roc_auc_low"], metrics["model_auc_gain_over_rules_low"]
    if not auc_low > 0.5:
        checks.append(
            (
                False,
                f"holdout ROC AUC {auc:.3f} is not better than chance with 95% confidence "
                f"(lower bound {auc_low:.3f}): the data show no learnable signal for winning",
            )
        )
    if metrics.get("rule_score_constant"):
        if auc_low > 0.5 + rules.min_auc_margin_over_rules:
            checks.append(
                (
                    True,
                    f"holdout ROC AUC {auc:.3f} beats chance (0.500) with 95% confidence (lower bound "
                    f"{auc_low:.3f}); the rule score is constant on the holdout, so chance is the rule reference",
                )
            )
        elif auc_low > 0.5:
            checks.append(
                (
                    False,
                    f"holdout ROC AUC {auc:.3f} does not beat chance (0.500) by the margin "
                    f"{rules.min_auc_margin_over_rules:g}; the rule score is constant on the holdout",
                )
            )
    elif not gain_low > rules.min_auc_margin_over_rules:
        checks.append(
            (
                False,
                f"holdout ROC AUC {auc:.3f} does not beat the rule score's {rule_auc:.3f} with 95% "
                f"confidence (lower bound of the gain {gain_low:+.3f})",
            )
        )
    else:
        checks.append(
            (
                True,
                f"holdout ROC AUC {auc:.3f} beats the rule score's {rule_auc:.3f} "
                f"(95% lower bound of the gain {gain_low:+.3f})",
            )
        )
    logreg_auc, logreg_high = metrics.get("logreg_roc_auc"), metrics.get("model_auc_gain_over_logreg_high")
    if logreg_auc is not None and logreg_high is not None and np.isfinite(logreg_high):
        if logreg_high < 0:
            checks.append(
                (
                    False,
                    f"holdout ROC AUC {auc:.3f} is significantly worse than the logistic baseline's "
                    f"{logreg_auc:.3f} (95% upper bound of the difference {logreg_high:+.3f})",
                )
            )
        else:
            checks.append(
                (
                    True,
                    f"not significantly worse than the logistic baseline's {logreg_auc:.3f} "
                    f"(95% upper bound of the difference {logreg_high:+.3f})",
                )
            )
    if champion is not None:
        if champion.refit_auc is None:
            checks.append((True, f"champion version {champion.version} not judged: {champion.note}"))
        elif auc < champion.refit_auc - rules.champion_tolerance:
            checks.append(
                (
                    False,
                    f"holdout ROC AUC {auc:.3f} is worse than champion version {champion.version}'s "
                    f"{champion.refit_auc:.3f} (its recipe re-fitted on the same months) by more than "
                    f"{rules.champion_tolerance:g}",
                )
            )
        else:
            checks.append(
                (
                    True,
                    f"within {rules.champion_tolerance:g} of champion version {champion.version}'s "
                    f"{champion.refit_auc:.3f} (its recipe re-fitted on the same months)",
                )
            )
        if champion.forward_auc is not None:
            checks.append(
                (
                    True,
                    f"for reference, champion version {champion.version} as registered scored "
                    f"{champion.forward_auc:.3f} on the {champion.forward_rows:,} holdout deals that closed "
                    "after its own training window",
                )
            )
    failures = [text for ok, text in checks if not ok]
    return GateDecision(not failures, failures or [text for _, text in checks], checks)
