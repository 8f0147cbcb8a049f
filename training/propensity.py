"""Fitting the look-ahead: the pipeline-propensity learner on monthly snapshots of the book, and time to close.

Snapshots. Cut-offs T_k = as_of - horizon - 30 k days (k = 0, 1, ...) inside the training window; each
account at each cut-off is one row, its features as of T_k (data strictly before it), its label 1 when
the account created an opportunity in [T_k, T_k + horizon). Labels of a cut-off end where the next
slice's features begin, so no slice sees another's answers:

- holdout: k = 0 (labels end at as_of), which judges and chooses nothing;
- validation: k = v, the first cut-off whose labels end by T_0 (v = ceil(horizon / 30)): boosting stops,
  the learner and the calibration are chosen, probabilities are calibrated on it;
- fit: k >= 2 v (labels end by T_v).

The registered learner is then refit on every cut-off k >= v and calibrated on k = 0. Rows are bounded
by `model.pipeline_max_rows` (a seeded sample of accounts per cut-off).

Time to close: a Kaplan-Meier distribution of days from creation to close over the window's
opportunities (still-open deals censored at as_of), and the amount-weighted share of the deals open at
past cut-offs that closed inside the horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.config import Candidate, ModelConfig
from features.matrix import FeatureSpec, candidate_columns
from features.rules import with_rule_scores
from features.schema import CrmData
from scoring.attribution import predict_dense
from scoring.learners import LIGHTGBM, LOGISTIC, Recipe, WinModel
from scoring.pipeline import (
    BY_SIZE,
    HISTORICAL,
    PIPELINE_FEATURES,
    SIZE_BAND_NAMES,
    CloseTiming,
    PipelineModel,
    size_bands,
)
from training.evaluate import win_metrics
from training.models import fit_logistic, fit_recipe, select_calibrator, train_booster

SNAPSHOT_SPACING_DAYS = 30
MIN_CREATIONS = 50  # each slice needs this many accounts that did, and that did not, open an opportunity
PIPELINE_CANDIDATE = Candidate(num_leaves=15, learning_rate=0.05, min_child_samples=40, lambda_l2=1.0)
KM_DAYS = 731
COUNT_GROUPS = 10  # groups of accounts by predicted count, for the count learner's error beyond chance
SEGMENT_MIN_DEALS = 200  # a size band's own time-to-close distribution needs this many deals, else the book's
SEGMENT_GAIN = 0.01  # by size band must lower the Brier score by 1% to be chosen over one distribution
CLOSING_COLUMNS = ("open_closing", "open_won", "new_closing", "new_won")  # `closing_deals`' counts


@dataclass
class PipelineFit:
    """The pipeline learner of a training run: the evaluation model (judged on the holdout cut-off), the
    registered one, their metrics and what the run says about them."""

    evaluation: PipelineModel
    final: PipelineModel
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    holdout: pd.DataFrame = field(default_factory=pd.DataFrame)  # account, cut-off, label, predictions
    snapshots: pd.DataFrame = field(default_factory=pd.DataFrame)  # every account snapshot (for `set_win_shifts`)


# Counts since the export began grow with its age, not with the account: a learner fitted on early snapshots
# would read every later account as busier. The pipeline learner uses the windowed counts instead.
SINCE_THE_START = ("prior_won", "prior_lost", "prior_won_amount")


def pipeline_columns(config: ModelConfig) -> list[str]:
    return [*(c for c in candidate_columns(config) if c not in SINCE_THE_START), *PIPELINE_FEATURES]


def count_scale(counts: lgb.Booster, rows: pd.DataFrame, spec: FeatureSpec) -> float:
    """The factor that makes the count learner's total match these (later) snapshots' actual total."""
    predicted = float(predict_dense(counts, spec.encode(rows)).sum())
    return float(rows["count"].sum()) / predicted if predicted > 0 else 1.0


def validation_snapshot(horizon: int) -> int:
    """k of the validation slice: the first cut-off whose labels end where the holdout's features begin."""
    return math.ceil(horizon / SNAPSHOT_SPACING_DAYS)


def count_dispersion(predicted: np.ndarray, actual: np.ndarray, groups: int = COUNT_GROUPS) -> float:
    """The sd of log(actual / predicted) over groups of accounts ranked by their predicted count (as tiers rank
    them), each group expecting the same total (groups of equal size would let the many accounts that expect
    almost nothing decide it), less what Poisson chance alone gives (about 1 / predicted for a group's log total).
    0 when chance explains it all or the groups are empty."""
    order = np.argsort(-predicted, kind="stable")
    running = np.cumsum(predicted[order])
    if not len(running) or running[-1] <= 0:
        return 0.0
    edges = np.searchsorted(running, running[-1] * np.arange(1, groups) / groups, side="right")
    parts = [part for part in np.split(order, edges) if len(part)]
    expected = np.array([predicted[part].sum() for part in parts])
    happened = np.array([actual[part].sum() for part in parts])
    usable = (expected > 0) & (happened > 0)
    if usable.sum() < 2:
        return 0.0
    excess = np.mean(np.log(happened[usable] / expected[usable]) ** 2) - np.mean(1.0 / expected[usable])
    return float(np.sqrt(max(excess, 0.0)))


def snapshot_cutoffs(as_of: pd.Timestamp, start: pd.Timestamp, horizon: int) -> list[pd.Timestamp]:
    """T_k = as_of - horizon - 30 k days for every k with T_k at or after `start`, latest first."""
    cutoffs, k = [], 0
    while (cutoff := as_of - pd.Timedelta(days=horizon + SNAPSHOT_SPACING_DAYS * k)) >= start:
        cutoffs.append(cutoff)
        k += 1
    return cutoffs


def creation_counts(data: CrmData, ids: pd.Series, cutoff: pd.Timestamp, horizon: int) -> np.ndarray:
    """How many opportunities each account created in [cutoff, cutoff + horizon)."""
    created = data.opportunities["created_date"]
    inside = (created >= cutoff) & (created < cutoff + pd.Timedelta(days=horizon))
    counts = data.opportunities.loc[inside, "account_id"].astype("str").value_counts()
    return ids.map(counts).fillna(0).to_numpy(dtype=np.float64)


def snapshot_plan(
    account_ids: pd.Series, start: pd.Timestamp, as_of: pd.Timestamp, config: ModelConfig
) -> pd.DataFrame:
    """The account snapshots the pipeline learner reads: (account_id, cutoff, snapshot number), every (sampled)
    account at every cut-off of the window [start, as_of), at most `model.pipeline_max_rows` in all. A window too
    short for the fit, validation and holdout cut-offs has one snapshot at as_of (the historical rate's)."""
    horizon = config.model.horizon_days
    cutoffs = snapshot_cutoffs(as_of, start, horizon)
    if len(cutoffs) <= 2 * validation_snapshot(horizon):
        cutoffs, per_cutoff = [as_of], config.model.pipeline_max_rows
    else:
        per_cutoff = max(config.model.pipeline_max_rows // len(cutoffs), 1)
    # Sorted: the sample and the row order (so LightGBM's bagging) never depend on the file's order.
    ids = account_ids.astype("str").sort_values(kind="stable").reset_index(drop=True)
    frames = []
    for number, cutoff in enumerate(cutoffs):
        chosen = ids
        if len(ids) > per_cutoff:
            rng = np.random.default_rng(config.model.seed + number)
            chosen = ids.iloc[np.sort(rng.choice(len(ids), per_cutoff, replace=False))].reset_index(drop=True)
        frames.append(pd.DataFrame({"account_id": chosen.to_numpy(), "cutoff": cutoff, "snapshot": number}))
    plan = pd.concat(frames, ignore_index=True)
    plan["cutoff"] = pd.to_datetime(plan["cutoff"])
    return plan


def snapshot_rows(data: CrmData, features: pd.DataFrame, plan: pd.DataFrame, config: ModelConfig) -> pd.DataFrame:
    """`snapshot_plan`'s snapshots with their feature rows (`features`, in the plan's order) and their labels."""
    rows = with_rule_scores(features.reset_index(drop=True), config)
    rows["snapshot"] = plan["snapshot"].to_numpy()
    counts = np.zeros(len(plan))
    ids = plan["account_id"].astype("str").reset_index(drop=True)
    for number in np.unique(rows["snapshot"]):
        at = np.flatnonzero(rows["snapshot"].to_numpy() == number)
        cutoff = pd.Timestamp(plan["cutoff"].iloc[at[0]])
        counts[at] = creation_counts(data, ids.iloc[at], cutoff, config.model.horizon_days)
    rows["count"] = counts
    rows["label"] = (rows["count"] > 0).to_numpy().astype(np.int64)
    return rows


def _kaplan_meier(duration: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """P(closed within d days of creation) for d = 0 .. KM_DAYS - 1; `closed` False is censored at `duration`."""
    events = np.bincount(duration[closed], minlength=KM_DAYS)
    leaving = np.bincount(duration, minlength=KM_DAYS)
    at_risk = len(duration) - np.concatenate(([0], np.cumsum(leaving)[:-1]))
    hazard = np.where(at_risk > 0, events / np.maximum(at_risk, 1), 0.0)
    return 1.0 - np.cumprod(1.0 - hazard)


def _observed(opps: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """The opportunities created in [start - 1 year, end), with days to close and whether it closed before `end`
    (the others censored there)."""
    created = opps["created_date"]
    seen = opps[(created >= start - pd.Timedelta(days=365)) & (created < end)]
    close = seen["close_date"].where(seen["outcome"] != "open")
    closed = (close.notna() & (close < end)).to_numpy()
    duration = np.where(closed, (close - seen["created_date"]).dt.days, (end - seen["created_date"]).dt.days)
    duration = np.clip(np.nan_to_num(duration.astype(np.float64)), 0, KM_DAYS - 1).astype(np.int64)
    return duration, closed


def _open_share(opps: pd.DataFrame, cutoffs: list[pd.Timestamp], horizon: int, fallback: float) -> float:
    """The amount-weighted share of the deals open at each cut-off that closed within the horizon."""
    created = opps["created_date"]
    amount = opps["amount"].fillna(0.0).to_numpy(dtype=np.float64)
    weight = np.where(amount > 0, amount, 0.0) if (amount > 0).any() else np.ones(len(opps))
    closing = opps["close_date"].where(opps["outcome"] != "open")
    done, total = 0.0, 0.0
    for cutoff in cutoffs:
        open_then = ((created < cutoff) & ~(closing < cutoff)).to_numpy()
        closed_inside = ((closing >= cutoff) & (closing < cutoff + pd.Timedelta(days=horizon))).to_numpy()
        done += float(weight[open_then & closed_inside].sum())
        total += float(weight[open_then].sum())
    return done / total if total > 0 else fallback


def _account_bands(data: CrmData, opps: pd.DataFrame) -> np.ndarray:
    """Each opportunity's account size band (-1 unknown)."""
    employees = data.accounts.set_index(data.accounts["account_id"].astype("str"))["employees"]
    employees = employees[~employees.index.duplicated()]
    return size_bands(opps["account_id"].astype("str").map(employees).to_numpy(dtype=np.float64, na_value=np.nan))


def _timing(
    opps: pd.DataFrame, start: pd.Timestamp, as_of: pd.Timestamp, cutoffs: list[pd.Timestamp], horizon: int
) -> CloseTiming:
    duration, closed = _observed(opps, start, as_of)
    cdf = _kaplan_meier(duration, closed)
    new_share = float(np.mean(cdf[:horizon]))
    return CloseTiming(
        cdf.round(6).tolist(), new_share, _open_share(opps, cutoffs, horizon, new_share), rows=int(len(duration))
    )


def _with_bands(
    book: CloseTiming,
    opps: pd.DataFrame,
    bands: np.ndarray,
    start: pd.Timestamp,
    as_of: pd.Timestamp,
    cutoffs: list[pd.Timestamp],
    horizon: int,
) -> CloseTiming:
    """The book's distribution `book` with each size band's beside it, where the band has SEGMENT_MIN_DEALS deals
    of its own (`bands`: each opportunity's)."""
    created = opps["created_date"]
    recent = ((created >= start - pd.Timedelta(days=365)) & (created < as_of)).to_numpy()
    segments = {
        band: _timing(opps[bands == band], start, as_of, cutoffs, horizon)
        for band in range(len(SIZE_BAND_NAMES))
        if int(((bands == band) & recent).sum()) >= SEGMENT_MIN_DEALS
    }
    return replace(book, method=BY_SIZE, segments=segments)


def _brier_at(
    timing: CloseTiming, opps: pd.DataFrame, bands: np.ndarray, check: pd.Timestamp, as_of: pd.Timestamp
) -> float:
    """How well `timing` (fitted on data before `check`) foretells which deals close in [check, as_of): those
    open at `check` (given their age) and those created after it. The mean squared error of the probability."""
    created = opps["created_date"]
    close = opps["close_date"].where(opps["outcome"] != "open")
    open_then = ((created < check) & ~(close < check)).to_numpy()
    new_then = ((created >= check) & (created < as_of)).to_numpy()
    actual = (close.notna() & (close < as_of)).to_numpy().astype(np.float64)
    last = KM_DAYS - 1
    age = np.clip((check - created).dt.days.to_numpy(dtype=np.float64, na_value=0), 0, last).astype(np.int64)
    left = np.clip((as_of - created).dt.days.to_numpy(dtype=np.float64, na_value=0) - 1, 0, last).astype(np.int64)
    predicted = np.zeros(len(opps))
    for band in (-1, *range(len(SIZE_BAND_NAMES))):
        cdf = np.asarray(timing.segments.get(band, timing).cdf)
        mine = bands == band
        before = np.where(age > 0, cdf[np.maximum(age - 1, 0)], 0.0)  # closed before `check`: duration <= age - 1
        alive = np.maximum(1.0 - before, 1e-9)
        predicted[mine] = np.where(open_then, (cdf[left] - before) / alive, cdf[left])[mine]
    judged = open_then | new_then
    return float(np.mean((predicted[judged] - actual[judged]) ** 2)) if judged.any() else float("nan")


def close_timing(
    data: CrmData, start: pd.Timestamp, as_of: pd.Timestamp, cutoffs: list[pd.Timestamp], horizon: int
) -> tuple[CloseTiming, dict[str, float]]:
    """Time to close for the window [start, as_of): one Kaplan-Meier distribution for the book, or one per
    company size band, whichever foretells better which deals close in the last `horizon` days when both are fitted
    on the data before them (by the Brier score; the size bands must win by SEGMENT_GAIN). With it, the
    amount-weighted share of deals open at each past cut-off that closed within the horizon. Metrics beside it."""
    opps = data.opportunities
    bands = _account_bands(data, opps)
    check = as_of - pd.Timedelta(days=horizon)
    # The check reads the distributions only, not the open share: no past cut-offs for the fits it judges.
    one = _timing(opps, start, check, [], horizon)
    sized = _with_bands(one, opps, bands, start, check, [], horizon)
    one_brier, sized_brier = _brier_at(one, opps, bands, check, as_of), _brier_at(sized, opps, bands, check, as_of)
    by_size = bool(sized.segments) and sized_brier < one_brier * (1 - SEGMENT_GAIN)
    timing = _timing(opps, start, as_of, cutoffs, horizon)
    if by_size:
        timing = _with_bands(timing, opps, bands, start, as_of, cutoffs, horizon)
    metrics = {
        "pipeline_close_brier_one_distribution": one_brier,
        "pipeline_close_brier_by_size": sized_brier if sized.segments else float("nan"),
        "pipeline_close_by_size": float(by_size),
    }
    return timing, metrics


def _historical(horizon: int, timing: CloseTiming, rows: pd.DataFrame, note: str, residuals: list[float]):
    return PipelineModel(
        horizon,
        HISTORICAL,
        timing,
        mean_created_180d=float(rows["created_180d"].mean()) if len(rows) else 0.0,
        residual_quantiles=residuals,
        note=note,
    )


def _learn(
    fit: pd.DataFrame, calibrate: pd.DataFrame, spec: FeatureSpec, config: ModelConfig, recipe: Recipe | None
) -> tuple[WinModel, dict[str, float]]:
    """The recipe fitted on `fit` and calibrated on `calibrate`; without a recipe, logistic regression and one
    LightGBM (early-stopped on `calibrate`) are compared on it, the simpler winning ties."""
    x, y = spec.encode(fit), fit["label"].to_numpy()
    cx, cy = spec.encode(calibrate), calibrate["label"].to_numpy()
    categorical, names = spec.categorical_indices, spec.columns
    if recipe is not None:
        return fit_recipe(recipe, x, y, cx, cy, categorical, names, config.model), {}
    model_config = config.model
    logistic = fit_logistic(x, y, categorical, model_config.search.logistic_c, model_config.seed)
    booster, rounds = train_booster(
        x,
        y,
        categorical,
        names,
        model_config,
        PIPELINE_CANDIDATE,
        "binary",
        model_config.num_boost_round,
        validation=(cx, cy),
    )
    aucs = {
        LOGISTIC: float(roc_auc_score(cy, logistic.margin(cx))),
        LIGHTGBM: float(roc_auc_score(cy, predict_dense(booster, cx, raw_score=True))),
    }
    use_tree = aucs[LIGHTGBM] > aucs[LOGISTIC] + model_config.search.tie_tolerance
    learner = booster if use_tree else logistic
    margin = predict_dense(booster, cx, raw_score=True) if use_tree else logistic.margin(cx)
    calibrator, _ = select_calibrator(margin, cy, model_config.calibration, model_config.seed)
    params = (
        {**PIPELINE_CANDIDATE.model_dump(), "num_boost_round": rounds}
        if use_tree
        else {"c": model_config.search.logistic_c}
    )
    recipe = Recipe(LIGHTGBM if use_tree else LOGISTIC, params, calibrator.method)
    return WinModel(learner, calibrator, recipe), {f"pipeline_validation_{k}_roc_auc": v for k, v in aucs.items()}


def _count_learner(
    fit: pd.DataFrame, validation: pd.DataFrame, spec: FeatureSpec, config: ModelConfig, rounds: int | None
) -> tuple[lgb.Booster, int]:
    """LightGBM with the Poisson loss on the creation counts; early-stopped on `validation` unless `rounds` given."""
    categorical, names = spec.categorical_indices, spec.columns
    x, y = spec.encode(fit), fit["count"].to_numpy()
    if rounds is not None:
        return train_booster(x, y, categorical, names, config.model, PIPELINE_CANDIDATE, "poisson", rounds)
    return train_booster(
        x,
        y,
        categorical,
        names,
        config.model,
        PIPELINE_CANDIDATE,
        "poisson",
        config.model.num_boost_round,
        validation=(spec.encode(validation), validation["count"].to_numpy()),
        metric="poisson",
    )


def fit_pipeline(
    data: CrmData,
    rows: pd.DataFrame,
    config: ModelConfig,
    start: pd.Timestamp,
    as_of: pd.Timestamp,
    residual_quantiles: list[float] | None = None,
) -> PipelineFit:
    """The pipeline-propensity learner and time to close for a training window [start, as_of), from the account
    snapshots of `snapshot_plan` (`rows`, made by `snapshot_rows`)."""
    horizon = config.model.horizon_days
    residuals = list(residual_quantiles or [])
    cutoffs = snapshot_cutoffs(as_of, start, horizon)
    validation_at = validation_snapshot(horizon)
    timing, metrics = close_timing(data, start, as_of, cutoffs, horizon)
    metrics |= {"pipeline_close_new_share": timing.new_share, "pipeline_close_open_share": timing.open_share}
    if len(cutoffs) <= 2 * validation_at:
        note = (
            f"pipeline propensity: model.horizon_days {horizon} is longer than the training window allows "
            f"(snapshots {SNAPSHOT_SPACING_DAYS} days apart from {start.date()} to {as_of.date()} - {horizon} days "
            f"give {len(cutoffs)} cut-off(s); fit, validation and holdout need {2 * validation_at + 1}): "
            "pipeline_probability falls back to each account's historical creation rate. Shorten "
            "model.horizon_days or lengthen model.window.months"
        )
        model = _historical(horizon, timing, rows, note, residuals)
        return PipelineFit(model, model, {**metrics, "pipeline_fallback": 1.0}, [note])
    snapshot = rows["snapshot"].to_numpy()
    holdout, validation = rows[snapshot == 0], rows[snapshot == validation_at]
    fit = rows[snapshot >= 2 * validation_at]
    thin = [
        f"{name} ({int(part['label'].sum())} of {len(part):,} account snapshots opened one)"
        for name, part in (("fit", fit), ("validation", validation), ("holdout", holdout))
        if min(int(part["label"].sum()), int((1 - part["label"]).sum())) < MIN_CREATIONS
    ]
    metrics["pipeline_rows"] = float(len(rows))
    metrics["pipeline_creation_rate_holdout"] = float(holdout["label"].mean())
    y = holdout["label"].to_numpy()
    historical = _historical(horizon, timing, fit, "", residuals)
    historical_p = historical.probability(holdout)
    engagement = holdout["engagement_score"].to_numpy(dtype=np.float64)
    metrics.update({f"pipeline_historical_{k}": v for k, v in win_metrics(y, historical_p).items()})
    if len(np.unique(y)) == 2:
        metrics["pipeline_engagement_roc_auc"] = float(roc_auc_score(y, engagement))
    if thin:
        note = (
            f"pipeline propensity: too few opportunity creations to learn from (at least {MIN_CREATIONS} accounts "
            f"that open one and {MIN_CREATIONS} that do not per slice; {'; '.join(thin)}): pipeline_probability "
            "falls back to each account's historical creation rate"
        )
        model = _historical(horizon, timing, rows[snapshot == 0], note, residuals)
        return PipelineFit(model, model, {**metrics, "pipeline_fallback": 1.0}, [note], snapshots=rows)
    spec = FeatureSpec.fit(fit, config, columns=pipeline_columns(config))
    learner, chosen = _learn(fit, validation, spec, config, None)
    metrics.update(chosen)
    probability = learner.predict(spec.encode(holdout))
    metrics.update({f"pipeline_{k}": v for k, v in win_metrics(y, probability).items()})
    notes: list[str] = []
    validation_y = validation["label"].to_numpy()
    learner_validation = float(roc_auc_score(validation_y, learner.predict(spec.encode(validation))))
    historical_validation = float(roc_auc_score(validation_y, historical.probability(validation)))
    if learner_validation <= historical_validation + config.model.search.tie_tolerance:
        note = (
            f"pipeline propensity: the learner shows no validated skill over the historical creation rate "
            f"(validation ROC AUC {learner_validation:.3f} against {historical_validation:.3f}): replaced by it"
        )
        model = _historical(horizon, timing, rows[snapshot == 0], note, residuals)
        return PipelineFit(model, model, {**metrics, "pipeline_fallback": 1.0}, [note], snapshots=rows)
    counts, count_rounds = _count_learner(fit, validation, spec, config, None)
    scale = count_scale(counts, validation, spec)
    metrics["pipeline_count_scale"] = scale
    predicted_counts = scale * predict_dense(counts, spec.encode(holdout))
    actual_counts = holdout["count"].to_numpy()
    metrics["pipeline_count_mae"] = float(np.abs(predicted_counts - actual_counts).mean())
    metrics["pipeline_count_total_ratio"] = float(predicted_counts.sum() / max(actual_counts.sum(), 1.0))
    dispersion = count_dispersion(predicted_counts, actual_counts)
    metrics["pipeline_count_dispersion"] = dispersion
    poisson_of_probability = -np.log1p(-np.clip(probability, 0, 0.999))
    metrics["pipeline_count_from_probability_total_ratio"] = float(
        poisson_of_probability.sum() / max(actual_counts.sum(), 1.0)
    )
    evaluation = PipelineModel(
        horizon,
        learner.recipe.learner,
        timing,
        spec,
        learner,
        residual_quantiles=residuals,
        count_model=counts,
        count_scale=scale,
        count_dispersion=dispersion,
    )
    later = rows[snapshot >= validation_at]
    final_learner, _ = _learn(later, holdout, spec, config, learner.recipe)
    final_counts, _ = _count_learner(later, holdout, spec, config, count_rounds)
    final = PipelineModel(
        horizon,
        learner.recipe.learner,
        timing,
        spec,
        final_learner,
        residual_quantiles=residuals,
        count_model=final_counts,
        count_scale=count_scale(final_counts, holdout, spec),
        count_dispersion=dispersion,
    )
    metrics["pipeline_fallback"] = 0.0
    table = holdout[["account_id", "cutoff", "label", "engagement_score"]].copy()
    table["pipeline_probability"] = probability
    table["historical_probability"] = historical_p
    table["count"] = actual_counts
    table["expected_count"] = predicted_counts
    return PipelineFit(evaluation, final, metrics, notes, table, rows)


def closing_deals(data: CrmData, snapshots: pd.DataFrame, horizon: int) -> dict[str, np.ndarray]:
    """Per account snapshot (account at cut-off T): its deals that closed inside [T, T + horizon), those open at T
    and those opened inside it, and how many of each were won."""
    opps = data.opportunities
    account = opps["account_id"].astype("str")
    created = opps["created_date"]
    closing = opps["close_date"].where(opps["outcome"] != "open")
    won = (opps["outcome"] == "won").to_numpy()
    out = {name: np.zeros(len(snapshots)) for name in CLOSING_COLUMNS}
    cutoffs = pd.to_datetime(snapshots["cutoff"]).to_numpy()
    ids = snapshots["account_id"].astype("str").to_numpy()
    for cutoff in np.unique(cutoffs):
        at = np.flatnonzero(cutoffs == cutoff)
        start = pd.Timestamp(cutoff)
        inside = ((closing >= start) & (closing < start + pd.Timedelta(days=horizon))).to_numpy()
        opened_before = (created < start).to_numpy()  # and not closed before T, since it closes inside
        keys = pd.Index(ids[at])
        for part, mask in (("open", inside & opened_before), ("new", inside & ~opened_before)):
            closed_per_account = account[mask].value_counts()
            won_per_account = account[mask & won].value_counts()
            out[f"{part}_closing"][at] = closed_per_account.reindex(keys, fill_value=0).to_numpy()
            out[f"{part}_won"][at] = won_per_account.reindex(keys, fill_value=0).to_numpy()
    return out


def log_odds_shift(probability: np.ndarray, deals: np.ndarray, won: np.ndarray) -> float:
    """The shift b of the log-odds with sum(deals * sigmoid(logit(probability) + b)) = sum(won): the level at which
    `probability` (one per account snapshot) matches the win rate of `deals`. 0 without deals."""
    if deals.sum() <= 0 or not np.isfinite(probability).all():
        return 0.0
    clipped = np.clip(probability, 1e-6, 1 - 1e-6)
    margin = np.log(clipped / (1 - clipped))
    target = float(won.sum())
    low, high = -10.0, 10.0
    for _ in range(60):  # bisection: the expected wins grow with the shift
        middle = (low + high) / 2
        expected = float(deals @ (1 / (1 + np.exp(-(margin + middle)))))
        low, high = (middle, high) if expected < target else (low, middle)
    return (low + high) / 2


def with_closing_deals(data: CrmData, snapshots: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """`snapshots` with `closing_deals` as columns: they do not depend on the win model, so every fit of the shifts
    (the evaluation models', the final ones') reads the same columns."""
    return snapshots.assign(**closing_deals(data, snapshots, horizon)) if len(snapshots) else snapshots


def set_win_shifts(
    pipeline: PipelineModel, snapshots: pd.DataFrame, win: WinModel, spec: FeatureSpec
) -> dict[str, float]:
    """Fit `pipeline`'s open and new win shifts on these snapshots (carrying `with_closing_deals`' columns) for the
    win model `win`; their metrics."""
    if not len(snapshots):
        return {}
    probability = win.predict(spec.encode(snapshots))
    deals = {name: snapshots[name].to_numpy(dtype=np.float64) for name in CLOSING_COLUMNS}
    pipeline.open_win_shift = log_odds_shift(probability, deals["open_closing"], deals["open_won"])
    pipeline.new_win_shift = log_odds_shift(probability, deals["new_closing"], deals["new_won"])
    metrics = {"pipeline_open_win_shift": pipeline.open_win_shift, "pipeline_new_win_shift": pipeline.new_win_shift}
    for part in ("open", "new"):
        closing, won = deals[f"{part}_closing"], deals[f"{part}_won"]
        if closing.sum() > 0:
            metrics[f"pipeline_{part}_win_rate_actual"] = float(won.sum() / closing.sum())
            metrics[f"pipeline_{part}_win_rate_unshifted"] = float(closing @ probability / closing.sum())
    return metrics
