"""The review's MLflow side: what the training run recorded about the model that made the past scores, and the
review logged back to that run (under review/<as_of>_<until>/). The computations in reports.review know no MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from reports.review import ModelFacts, QuarterlyReview
from scoring import registry

REVIEW_FOLDER = "review"  # where the review is logged in the model version's training run


def model_facts(version: str, model) -> tuple[ModelFacts, str | None]:
    """What the registry and the training run recorded about `version` (its run, training cut-off, holdout ROC AUC
    with its 95% lower bound, calibration error), and a warning when the store has no record of it."""
    if not model.is_learned:
        return ModelFacts(version=version, learned=False), None
    try:
        info = registry.client().get_model_version(registry.MODEL_NAME, version)
        metrics = registry.client().get_run(info.run_id).data.metrics
    except Exception as error:  # a version the store does not know: judged without its holdout figures
        return ModelFacts(version=version, learned=True), (
            f"the registry has no record of model version {version} ({registry.first_line(error)}): the review "
            "cannot compare with its training holdout"
        )
    until = info.tags.get("window_end")
    nan = math.nan
    facts = ModelFacts(
        version=version,
        learned=True,
        run_id=info.run_id,
        trained_until=pd.Timestamp(until) if until else None,
        holdout_roc_auc=float(metrics.get("model_roc_auc", nan)),
        holdout_roc_auc_low=float(metrics.get("model_roc_auc_low", nan)),
        holdout_ece=float(metrics.get("model_ece", nan)),
    )
    return facts, None


def log_review(review: QuarterlyReview, out: Path) -> str | None:
    """The page, its tables and the key figures logged to the training run of the model that made the past scores;
    where it went (None without a run)."""
    run_id = review.facts.run_id
    if not run_id:
        return None
    folder = f"{REVIEW_FOLDER}/{review.period.start.date()}_{review.period.end.date()}"
    try:
        client = registry.client()
        client.log_artifacts(run_id, str(out), folder)
        for key, value in review.metrics().items():
            client.log_metric(run_id, key, value)
    except Exception as error:
        raise registry.TrackingError(
            f"the review is in {out} but could not be logged to run {run_id}: {registry.first_line(error)}"
        ) from None
    return f"{run_id} under {folder}/"
