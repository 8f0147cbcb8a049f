"""MLflow: where runs and models live, what a training run logs, and the registry aliases.

Nothing here runs at import time; `configure()` is called by the commands that need MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MODEL_NAME = "abm-tiering"
EXPERIMENT = "abm-tiering"
CHAMPION, CHALLENGER = "champion", "challenger"
DEFAULT_STORE = Path("models")
HOLDOUT_PREDICTIONS = "holdout_predictions.csv"  # under tables/ in the training run
HOLDOUT_BOOK = "holdout_book.csv"


class TrackingError(Exception):
    """The MLflow store or registry cannot do what was asked; the message says why and what to do."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE / 'mlflow.db'}"


def configure() -> str:
    """Point MLflow at the team server (MLFLOW_TRACKING_URI) or the local SQLite store under models/."""
    import mlflow

    # A team server that is down should fail in seconds with a clear message, not retry for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    warnings.filterwarnings("ignore", module="mlflow")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            artifacts = None
            if uri.startswith("sqlite:///"):
                artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
        mlflow.set_experiment(EXPERIMENT)
    except Exception as error:  # MLflow raises many types for a locked or unreachable store
        raise TrackingError(f"cannot use the MLflow store at {uri}: {first_line(error)}. "
                            "Check MLFLOW_TRACKING_URI, that the server is up, and that no other process holds "
                            "the SQLite file") from None
    return uri


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else error.__class__.__name__


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: list[str]
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{MODEL_NAME}/{self.version}"


def client():
    from mlflow import MlflowClient

    return MlflowClient()


NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})  # no model, or no such alias


def _ask_registry(question, when_absent):
    """The registry's answer, or `when_absent` when the model or alias does not exist. A store that cannot
    be asked raises TrackingError: a locked or unreachable registry must not pass for an empty one."""
    from mlflow.exceptions import MlflowException

    try:
        return question()
    except MlflowException as error:
        if error.error_code in NOT_FOUND:
            return when_absent
        raise TrackingError(f"cannot read the MLflow registry at {tracking_uri()}: {first_line(error)}") from None


def _info(version) -> VersionInfo:
    return VersionInfo(str(version.version), list(version.aliases), version.run_id, dict(version.tags))


def alias_version(alias: str) -> VersionInfo | None:
    """The version holding `alias`; None when there is none."""
    found = _ask_registry(lambda: client().get_model_version_by_alias(MODEL_NAME, alias), None)
    return None if found is None else _info(found)


def versions() -> list[VersionInfo]:
    found = _ask_registry(lambda: client().search_model_versions(f"name='{MODEL_NAME}'"), [])
    return sorted((_info(v) for v in found), key=lambda v: int(v.version))


def set_alias(alias: str, version: str) -> None:
    client().set_registered_model_alias(MODEL_NAME, alias, version)


def champion_history() -> list[str]:
    """Versions that have been champion, oldest first (kept as a registered-model tag)."""
    model = _ask_registry(lambda: client().get_registered_model(MODEL_NAME), None)
    return [] if model is None else json.loads(model.tags.get("champion_history", "[]"))


def record_champion(version: str) -> None:
    history = champion_history()
    history.append(version)
    client().set_registered_model_tag(MODEL_NAME, "champion_history", json.dumps(history[-100:]))
    set_alias(CHAMPION, version)


def write_frame_artifact(frame: pd.DataFrame, name: str, folder: str = "tables") -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), folder)
