"""The use cases behind the CLI: train-and-register, load the champion, promote and roll back.

This is where domain logic meets MLflow and files; the domain modules below it know neither.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from configuration.tiering import TieringConfig, config_to_yaml
from features.schema import CrmData
from scoring import registry
from scoring.bundle import model_code_paths, save_scorer
from scoring.registry import load_model_for
from training.evaluate import win_metrics
from training.pipeline import ChampionJudgement, GateDecision, Progress, TrainingResult, gate, refit_auc, train
from training.rows import RowsEngine

if TYPE_CHECKING:
    pass

RUNTIME_PACKAGES = ("lightgbm", "numpy", "pandas", "pyarrow", "scikit-learn", "pydantic", "pyyaml", "mlflow")


@dataclass
class TrainOutcome:
    result: TrainingResult
    version: str
    run_id: str
    decision: GateDecision
    previous_champion: str | None


def _pip_requirements() -> list[str]:
    # Pinned from this environment; MLflow's own inference would import everything in a subprocess.
    return [f"{name}=={importlib.metadata.version(name)}" for name in RUNTIME_PACKAGES]


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list) else value
    return out


def judge_champion(champion: registry.VersionInfo | None, result: TrainingResult) -> ChampionJudgement | None:
    """The current champion judged like for like: its recipe re-fitted on this run's fit and validation
    slices and scored on this run's holdout, never on rows it was trained on. Where the holdout has deals
    closed after the champion's own window, its real forward performance on them is reported too."""
    if champion is None:
        return None
    try:
        scorer = load_model_for(champion.uri).scorer
    except Exception as error:  # a broken or foreign artifact must not block training
        return ChampionJudgement(champion.version, None, f"its model cannot be loaded ({registry.first_line(error)})")
    learners = scorer.learners()
    if learners is None:
        return ChampionJudgement(champion.version, None, "it scores with rules only")
    spec = learners.spec
    missing = [c for c in spec.columns if c not in result.development]
    if missing:
        return ChampionJudgement(
            champion.version,
            None,
            f"its features {', '.join(missing)} are not in this export, so "
            "its recipe cannot be re-fitted on the same months",
        )
    window = result.window
    refit = refit_auc(
        result.development,
        result.holdout_rows,
        window.calibration_start,
        learners.win_model.recipe,
        scorer.config,
        spec.columns,
    )
    forward_auc, forward_rows = None, 0
    trained_until = champion.tags.get("window_end")
    if trained_until:
        rows = result.holdout_rows[result.holdout_rows["close_date"] >= pd.Timestamp(trained_until)]
        if rows["won"].nunique() == 2:
            probability = learners.win_model.predict(spec.encode(rows))
            forward_auc, forward_rows = win_metrics(rows["won"].to_numpy(), probability)["roc_auc"], len(rows)
    return ChampionJudgement(champion.version, refit, forward_auc=forward_auc, forward_rows=forward_rows)


def _log_figures(result: TrainingResult) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    from training import plots

    holdout = result.holdout
    y = holdout["won"].to_numpy()
    scores = {
        "learned": holdout["win_probability"].to_numpy(),
        "rule score": holdout["rule_score"].to_numpy(),
        "logreg": holdout["logreg_probability"].to_numpy(),
    }
    won_value = np.where(y == 1, holdout["amount"].fillna(0).to_numpy(), 0.0)
    value_scores = {
        "learned": (holdout["win_probability"] * holdout["expected_deal_size"]).to_numpy(),
        "rule score": holdout["rule_score"].to_numpy(),
    }
    figures = {
        "roc.png": plots.roc_figure(y, scores),
        "calibration.png": plots.calibration_figure(
            y,
            {
                "learned": scores["learned"],
                "rule score": holdout["rule_probability"].to_numpy(),
                "logreg": scores["logreg"],
            },
        ),
        "gain_lift.png": plots.gain_figure(won_value, value_scores),
        "tier_matrix.png": plots.tier_matrix_figure(
            result.holdout_book["learned_tier"], result.holdout_book["rule_tier"]
        ),
    }
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}")
        plt.close(figure)


def log_and_register(result: TrainingResult, config: TieringConfig, progress: Progress) -> TrainOutcome:
    import mlflow
    from mlflow.models import infer_signature

    from scoring.pyfunc import TieringModel

    champion = registry.alias_version(registry.CHAMPION)
    with mlflow.start_run(run_name=f"train-{result.window.as_of.date()}") as run:
        progress("logging to MLflow")
        mlflow.log_params(_flatten("", config.model_dump(mode="json"), {}))
        mlflow.log_text(config_to_yaml(config), "config/tiering.yaml")
        mlflow.log_dict(result.summary, "data_summary.json")
        mlflow.log_metrics({f"data_{k}": v for k, v in result.summary.items() if isinstance(v, (int, float))})
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)})
        for name, table in result.tier_tables.items():
            registry.write_frame_artifact(table, f"holdout_tiers_{name}.csv")
        registry.write_frame_artifact(result.feature_importance, "feature_importance.csv")
        if not result.pipeline_holdout.empty:
            registry.write_frame_artifact(result.pipeline_holdout, "pipeline_holdout.csv")
        registry.write_frame_artifact(result.selection.table(), "learner_selection.csv")
        registry.write_frame_artifact(result.selection.folds, "learner_folds.csv")
        mlflow.log_dict(
            {
                "recipe": result.selection.recipe.to_dict(),  # the final model's, refit with it
                "calibration_log_loss": result.selection.calibration_losses,
                "refused_features": [leak.render() for leak in result.leaks],
                "warnings": result.warnings,
                "notes": result.notes,
            },
            "selection.json",
        )
        mlflow.log_text("\n".join(result.warnings) or "no warnings", "warnings.txt")
        mlflow.set_tags({"learner": result.selection.recipe.describe(), "warnings": " | ".join(result.warnings)[:5000]})
        # Where the rows were built and what they were: two engines' runs on one export carry the same digest.
        mlflow.set_tags({"engine": result.engine, "training_rows_digest": result.rows_digest})
        mlflow.log_metrics(
            {
                "training_rows": result.summary["closed_opportunities"],
                "training_rows_fitted": result.summary["training_rows_fitted"],
            }
        )
        # The holdout as the evaluation models saw it: `tiering compare` reads these back, because the
        # registered model has been refit on the holdout months and would be judged in-sample there.
        registry.write_frame_artifact(result.holdout, registry.HOLDOUT_PREDICTIONS)
        registry.write_frame_artifact(result.holdout_book, registry.HOLDOUT_BOOK)
        _log_figures(result)

        progress("registering the model")
        example = result.book.head(5).reset_index(drop=True)
        signature = infer_signature(
            example, result.scorer.score(example, by_capacity=False), params={"model_version": ""}
        )
        # MLflow prints its own "registered model" lines to stderr; we print the outcome ourselves.
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
            bundle = save_scorer(result.scorer, Path(tmp) / "bundle")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=TieringModel(),
                artifacts={"bundle": str(bundle)},
                code_paths=[str(folder) for folder in model_code_paths()],
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(),
                registered_model_name=registry.MODEL_NAME,
            )
        version = str(info.registered_model_version)
        judgement = judge_champion(champion, result)
        decision = gate(result.summary, result.metrics, judgement, config, result.leaks)
        if judgement is not None and judgement.refit_auc is not None:
            mlflow.log_metric("champion_refit_roc_auc", judgement.refit_auc)
        if judgement is not None and judgement.forward_auc is not None:
            mlflow.log_metric("champion_forward_roc_auc", judgement.forward_auc)
        mlflow.set_tags(
            {
                "gate_decision": "champion" if decision.promote else "challenger",
                "gate_reason": "; ".join(decision.reasons),
                "model_version": version,
            }
        )
        mlflow.log_text(decision.render(), "gate.txt")
        client = registry.client()
        tags = {
            "holdout_roc_auc": result.metrics["model_roc_auc"],
            "rule_roc_auc": result.metrics["rule_roc_auc"],
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
            "window_start": result.window.start.date().isoformat(),
            "window_end": result.window.as_of.date().isoformat(),
            "gate_reason": "; ".join(decision.reasons),
        }
        for key, value in tags.items():
            client.set_model_version_tag(registry.MODEL_NAME, version, key, str(value))
    # Aliases move only once the run has finished cleanly: a failed run never touches the champion.
    if decision.promote:
        registry.record_champion(version)
    else:
        registry.set_alias(registry.CHALLENGER, version)
    return TrainOutcome(result, version, run.info.run_id, decision, champion.version if champion else None)


def train_and_register(
    data: CrmData,
    config: TieringConfig,
    as_of: pd.Timestamp | None,
    progress: Progress,
    engine: RowsEngine | None = None,
) -> TrainOutcome:
    """Train (the feature rows built by `engine`, default this process), then log, register and gate."""
    registry.configure()
    result = train(data, config, as_of, progress, engine)
    return log_and_register(result, config, progress)


def promote(version: str) -> tuple[str | None, str | None]:
    """Make VERSION champion; (the champion before, the champion after). Safe when several commands move the alias at
    once: each move is its own registry event and the alias settles on the latest (scoring.registry)."""
    registry.configure()
    with registry.store_lock(f"promoting version {version}"):
        known = {v.version for v in registry.versions()}
        if version not in known:
            raise registry.TrackingError(
                f"model version {version} does not exist; registered versions: "
                f"{', '.join(sorted(known, key=int)) or 'none'}"
            )
        before = registry.alias_version(registry.CHAMPION)
        after = registry.record_champion(version)
    return (before.version if before else None), after


def rollback() -> tuple[str, str | None]:
    """Move the champion back to the one before it; (the champion before, the champion after)."""
    registry.configure()
    with registry.store_lock("rolling back the champion"):
        current = registry.alias_version(registry.CHAMPION)
        if current is None:
            raise registry.TrackingError("there is no champion to roll back")
        earlier = [v for v in registry.champion_history() if v != current.version]
        if not earlier:
            rolled_back = [v for v in registry.ever_champion() if v != current.version]
            if rolled_back:
                raise registry.TrackingError(
                    f"version {current.version} is the earliest champion left in the history (version"
                    f"{'s' if len(rolled_back) > 1 else ''} {', '.join(rolled_back)} "
                    f"{'were' if len(rolled_back) > 1 else 'was'} champion too and "
                    f"{'have' if len(rolled_back) > 1 else 'has'} been rolled back): nothing to roll back to. "
                    "tiering promote VERSION makes any registered version champion"
                )
            raise registry.TrackingError(
                f"version {current.version} is the only champion there has been; nothing to roll back to"
            )
        after = registry.record_rollback(current.version, earlier[-1])
    return current.version, after
