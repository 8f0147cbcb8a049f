"""Faults: training killed mid-run, a locked or unreachable MLflow store. (Reproducibility, the same data, config
and seed giving the same model and scores, is tested with test_trust's identical retrain.)"""

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from cli.main import app
from scoring import registry
from sources.synthetic import generate_export
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from tests.trained import fast_config_file

pytestmark = pytest.mark.slow  # scheduled first: a long file started last would end alone

runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    generate_export(folder, n_accounts=1200, seed=21)
    return folder


@pytest.fixture(scope="module")
def fast_config(tmp_path_factory) -> str:
    """The fast search for every training here: the faults are the subject, not the learner search."""
    return str(fast_config_file(tmp_path_factory.mktemp("config")))


def _train_in_process(export, config: str):
    result = runner.invoke(app, ["train", str(export), "--config", config])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained_store(export, fast_config, mlflow_template, tmp_path_factory):  # noqa: F811
    """A store where `tiering train` ran once on the export (version 1, champion); tests copy its registry."""
    folder = tmp_path_factory.mktemp("trained-store")
    shutil.copy(mlflow_template, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        _train_in_process(export, fast_config)
    return folder


def _wait_until_training(pid: int, settle: float, timeout: float = 120) -> None:
    """LightGBM is imported only when `train` starts its pipeline: then the run is under way. Soon after
    (`settle` 0.05 s) C extensions are still being imported, which once turned SIGTERM into an exit by SIGINT."""
    maps = f"/proc/{pid}/maps"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "lib_lightgbm" in open(maps).read():
                time.sleep(settle)
                return
        except FileNotFoundError:
            break
        time.sleep(0.1)
    raise AssertionError("the training process never reached model fitting")


@pytest.mark.parametrize(("how", "settle"), [(signal.SIGTERM, 0.05), (signal.SIGTERM, 0.2), (signal.SIGKILL, 0.2)])
def test_training_killed_mid_run_leaves_the_champion_and_can_run_again(
    export,
    fast_config,
    trained_store,
    mlflow_store,  # noqa: F811
    how,
    settle,
):
    shutil.copy(trained_store / "mlflow.db", mlflow_store / "mlflow.db")  # the registry only: the model files stay put
    registry.configure()
    assert registry.alias_version("champion").version == "1"
    scores = mlflow_store / "scores.csv"
    assert runner.invoke(app, ["score", str(export), "--out", str(scores)]).exit_code == 0
    before = scores.read_bytes()

    child = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "train", str(export), "--config", fast_config],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_until_training(child.pid, settle)
    child.send_signal(how)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0
    if how == signal.SIGTERM:
        assert child.returncode == 130 and b"Traceback" not in stderr

    registry.configure()
    assert registry.alias_version("champion").version == "1"
    assert scores.read_bytes() == before
    assert "Version" in _train_in_process(export, fast_config)  # simply run again
    assert len(registry.versions()) >= 2


def test_locked_store_gives_a_clear_message(export, mlflow_store):  # noqa: F811
    holder = sqlite3.connect(mlflow_store / "mlflow.db", timeout=1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = runner.invoke(app, ["train", str(export)])
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 2, result.output
    assert "cannot use the MLflow store" in result.output and "Traceback" not in result.output
    assert time.monotonic() - started < 120


def test_unreachable_tracking_server_gives_a_clear_message(export, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    result = runner.invoke(app, ["train", str(export)])
    assert result.exit_code == 2, result.output
    assert f"cannot use the MLflow store at http://127.0.0.1:{port}" in result.output
