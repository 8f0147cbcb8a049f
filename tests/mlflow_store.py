"""A fresh MLflow SQLite store per test, copied from one migrated template (migrating each would cost seconds)."""

import shutil
from pathlib import Path

import pytest

from tests.trained import once_per_run


def migrated_store(folder: Path) -> Path:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # runs the migrations
    return folder / "mlflow.db"


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    """The migrated empty store, made once for the test run (all xdist workers copy the same file)."""
    return once_per_run(tmp_path_factory, "mlflow-template", migrated_store)


@pytest.fixture
def mlflow_store(mlflow_template, tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI pointing at a private copy of the template; returns the store's folder."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(mlflow_template, folder / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    return folder
