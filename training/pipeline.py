"""Training: dataset assembly on a time window, evaluation on a time-based holdout, final refit.

Evaluation models fit on the early part of the window, calibrate on the months before the holdout and
are judged on the latest months (never a random split). The registered model is then refit with the
same recipe shifted to the end of the window, so it has seen the most recent deals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from features.config import TieringConfig
from features.errors import DataError, Problem
from features.matrix import FeatureSpec
from features.pointintime import FeatureBuilder, snapshot, training_rows
from features.schema import CrmData
from training.evaluate import auc_confidence, deal_size_metrics, tier_metric_dict, tier_outcomes, win_metrics
from training.models import DealSizeModel, WinModel, logistic_baseline
from training.scoring import Scorer, with_rule_scores

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Window:
    start: pd.Timestamp
    calibration_start: pd.Timestamp  # evaluation models calibrate on [calibration_start, holdout_start)
    holdout_start: pd.Timestamp
    final_calibration_start: pd.Timestamp  # the registered model calibrates on [this, as_of)
    as_of: pd.Timestamp

    @classmethod
    def for_data(cls, data: CrmData, config: TieringConfig, as_of: pd.Timestamp | None) -> "Window":
        if as_of is None:
            closed = data.opportunities.loc[data.opportunities["outcome"] != "open", "close_date"].dropna()
            if closed.empty:
                raise DataError([Problem("no closed opportunities to train on", "export won and lost opportunities "
                                         "with their close_date", file="opportunities", column="close_date")])
            as_of = closed.max().normalize() + pd.Timedelta(days=1)  # the latest close date is inside the window
        as_of = pd.Timestamp(as_of)
        months = config.model.window
        holdout_start = as_of - pd.DateOffset(months=months.holdout_months)
        return cls(
            start=as_of - pd.DateOffset(months=months.months),
            calibration_start=holdout_start - pd.DateOffset(months=months.calibration_months),
            holdout_start=holdout_start,
            final_calibration_start=as_of - pd.DateOffset(months=months.calibration_months),
            as_of=as_of,
        )

    def as_dict(self) -> dict[str, str]:
        return {name: value.date().isoformat() for name, value in self.__dict__.items()}


@dataclass
class TrainingResult:
    scorer: Scorer
    window: Window
    summary: dict
    metrics: dict[str, float]
    holdout: pd.DataFrame  # one row per holdout opportunity with every model's prediction
    holdout_book: pd.DataFrame  # accounts scored as of the holdout start, with learned and rule tiers
    tier_tables: dict[str, pd.DataFrame]
    book: pd.DataFrame  # every account's features as of the window end (input of the final scoring)
    holdout_rows: pd.DataFrame  # the holdout opportunities' feature rows (to judge the champion on them)
    feature_importance: pd.DataFrame = field(default_factory=pd.DataFrame)


def _need(rows: pd.DataFrame, what: str, minimum: int = 20) -> None:
    counts = rows["won"].value_counts()
    won, lost = int(counts.get(1, 0)), int(counts.get(0, 0))
    if won < minimum or lost < minimum:
        raise DataError([Problem(
            f"the {what} has {won} won and {lost} lost opportunities; at least {minimum} of each are needed",
            "pass an --as-of date with more closed deals before it, or widen model.window in tiering.yaml",
            file="opportunities", column="close_date")])


def fit_scorer(rows: pd.DataFrame, calibration_start: pd.Timestamp, config: TieringConfig) -> Scorer:
    """Fit both learners: win model on rows closed before `calibration_start`, calibrated on the rest."""
    spec = FeatureSpec.fit(rows, config)
    early = rows["close_date"] < calibration_start
    fit, calibration = rows[early], rows[~early]
    _need(fit, "fitting period")
    _need(calibration, "calibration period", minimum=10)
    matrix = spec.encode(rows)
    names = spec.columns
    win = WinModel.fit(matrix[early.to_numpy()], fit["won"].to_numpy(), matrix[~early.to_numpy()],
                       calibration["won"].to_numpy(), spec.categorical_indices, names, config.model)
    won = rows["won"].to_numpy() == 1
    deal = DealSizeModel.fit(matrix[won], rows["amount"].fillna(0).to_numpy()[won], spec.categorical_indices, names,
                             config.model)
    return Scorer(config=config, spec=spec, win_model=win, deal_model=deal)


def _data_summary(rows: pd.DataFrame, data: CrmData, window: Window) -> dict:
    won = int(rows["won"].sum())
    return {
        "accounts": int(len(data.accounts)),
        "closed_opportunities": int(len(rows)),
        "won": won,
        "lost": int(len(rows) - won),
        "win_rate": float(won / len(rows)) if len(rows) else float("nan"),
        "holdout_opportunities": int((rows["close_date"] >= window.holdout_start).sum()),
        "engagement_events": int(len(data.engagement)),
        "intent_signals": int(len(data.intent)),
        **{f"window_{k}": v for k, v in window.as_dict().items()},
    }


def train(data: CrmData, config: TieringConfig, as_of: pd.Timestamp | None = None,
          progress: Progress = lambda step: None) -> TrainingResult:
    window = Window.for_data(data, config, as_of)
    progress("point-in-time features")
    builder = FeatureBuilder(data, config)
    rows = with_rule_scores(training_rows(data, builder, window.start, window.as_of), config)
    _need(rows, f"window {window.start.date()} to {window.as_of.date()}")
    summary = _data_summary(rows, data, window)
    development = rows[rows["close_date"] < window.holdout_start].reset_index(drop=True)
    holdout = rows[rows["close_date"] >= window.holdout_start].reset_index(drop=True)
    _need(holdout, "holdout period", minimum=10)

    progress("evaluation models")
    evaluation = fit_scorer(development, window.calibration_start, config)
    holdout_matrix = evaluation.spec.encode(holdout)
    y = holdout["won"].to_numpy()
    probability = evaluation.win_model.predict(holdout_matrix)
    metrics = {f"model_{k}": v for k, v in win_metrics(y, probability).items()}

    progress("baselines")
    fit_part = development[development["close_date"] < window.calibration_start]
    # The rule score alone, mapped to a probability by a one-feature logistic fit on the same fitting rows.
    rule_link = LogisticRegression().fit(fit_part[["rule_score"]].to_numpy(), fit_part["won"].to_numpy())
    rule_probability = rule_link.predict_proba(holdout[["rule_score"]].to_numpy())[:, 1]
    metrics.update({f"rule_{k}": v for k, v in win_metrics(y, rule_probability).items()})
    metrics["rule_roc_auc"] = win_metrics(y, holdout["rule_score"].to_numpy())["roc_auc"]
    metrics.update({f"model_{k}": v for k, v in
                    auc_confidence(y, probability, holdout["rule_score"].to_numpy(), seed=config.model.seed).items()})
    development_matrix = evaluation.spec.encode(development)
    logistic = logistic_baseline(development_matrix, development["won"].to_numpy(), evaluation.spec.categorical_indices,
                                 config.model)
    logistic_probability = logistic.predict_proba(holdout_matrix)[:, 1]
    metrics.update({f"logreg_{k}": v for k, v in win_metrics(y, logistic_probability).items()})

    deal_size = evaluation.deal_model.predict(holdout_matrix)
    deal_log = evaluation.deal_model.margin(holdout_matrix)
    won = y == 1
    amount = holdout["amount"].fillna(0).to_numpy()
    metrics.update({f"deal_{k}": v for k, v in deal_size_metrics(amount[won], deal_size[won], deal_log[won]).items()})
    # Deal-size baseline: the median won amount of the development rows, for every account.
    baseline_size = np.full(won.sum(), np.median(development.loc[development["won"] == 1, "amount"].dropna()))
    metrics.update({f"deal_baseline_{k}": v for k, v in
                    deal_size_metrics(amount[won], baseline_size, np.log(np.clip(baseline_size, 1e-9, None))).items()})

    progress("holdout tiers")
    holdout_book = snapshot(data, builder, window.holdout_start)
    evaluation.freeze(holdout_book)
    scored = evaluation.score(holdout_book, by_capacity=True, explain=False)
    tiers_learned = scored.set_index("account_id")["learned_tier"]
    tiers_rule = scored.set_index("account_id")["rule_tier"]
    tier_tables = {"learned": tier_outcomes(tiers_learned, holdout), "rule": tier_outcomes(tiers_rule, holdout)}
    metrics.update(tier_metric_dict(tier_tables["learned"], "learned"))
    metrics.update(tier_metric_dict(tier_tables["rule"], "rule_tiers"))

    holdout_predictions = holdout[["opportunity_id", "account_id", "cutoff", "close_date", "won", "amount",
                                   "rule_score", "revenue_potential_score", "business_fit_score", "engagement_score"]].copy()
    holdout_predictions["win_probability"] = probability
    holdout_predictions["rule_probability"] = rule_probability
    holdout_predictions["logreg_probability"] = logistic_probability
    holdout_predictions["expected_deal_size"] = deal_size
    holdout_predictions["deal_log_prediction"] = deal_log

    progress("final model on the whole window")
    final = fit_scorer(rows, window.final_calibration_start, config)
    book = snapshot(data, builder, window.as_of)
    final.freeze(book)
    importance = pd.DataFrame({
        "feature": final.spec.columns,
        "win_gain": final.win_model.booster.feature_importance("gain"),
        "deal_size_gain": final.deal_model.booster.feature_importance("gain"),
    }).sort_values("win_gain", ascending=False)
    return TrainingResult(final, window, summary, metrics, holdout_predictions, scored, tier_tables, book, holdout,
                          importance)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str]

    def render(self) -> str:
        verdict = "promoted to champion" if self.promote else "kept as challenger"
        return f"{verdict}: " + "; ".join(self.reasons)


def gate(summary: dict, metrics: dict[str, float], champion_auc: float | None, config: TieringConfig) -> GateDecision:
    """Champion only with enough data, a holdout AUC above the rule score's, and no real loss against the champion."""
    rules, failures, passes = config.model.gate, [], []
    if summary["won"] < rules.min_won or summary["lost"] < rules.min_lost:
        failures.append(f"not enough data: {summary['won']} won and {summary['lost']} lost in the window, "
                        f"the gate needs {rules.min_won} and {rules.min_lost}")
    auc, rule_auc = metrics["model_roc_auc"], metrics["rule_roc_auc"]
    auc_low, gain_low = metrics["model_roc_auc_low"], metrics["model_auc_gain_over_rules_low"]
    if not auc_low > 0.5:
        failures.append(f"holdout ROC AUC {auc:.3f} is not better than chance with 95% confidence "
                        f"(lower bound {auc_low:.3f}): the data show no learnable signal for winning")
    if not gain_low > rules.min_auc_margin_over_rules:
        failures.append(f"holdout ROC AUC {auc:.3f} does not beat the rule score's {rule_auc:.3f} with 95% confidence "
                        f"(lower bound of the gain {gain_low:+.3f})")
    else:
        passes.append(f"holdout ROC AUC {auc:.3f} beats the rule score's {rule_auc:.3f} "
                      f"(95% lower bound of the gain {gain_low:+.3f})")
    if champion_auc is not None:
        if auc < champion_auc - rules.champion_tolerance:
            failures.append(f"holdout ROC AUC {auc:.3f} is worse than the champion's {champion_auc:.3f} "
                            f"by more than {rules.champion_tolerance}")
        else:
            passes.append(f"within {rules.champion_tolerance} of the champion's {champion_auc:.3f}")
    return GateDecision(not failures, failures or passes)
