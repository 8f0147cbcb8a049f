"""`tiering review` and `tiering forecast --backtest` with `--engine spark` write the pandas engine's tables and
pages; bad input on Spark stops `train`, `review` and `forecast` with one message and the registry unchanged."""

import re
import shutil
import socket
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli.main import app
from scoring import registry
from sources.synthetic import generate_export
from tests.cli.test_hostile import words
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java: no `java` on PATH")
pytestmark = pytest.mark.slow

runner = CliRunner()
PAST = "2026-03-01"  # the synthetic export runs to 30 Jun 2026: four months happen after this scoring
# One LightGBM candidate and a thousand pipeline snapshots: each backtest origin trains one model per engine.
FAST = """\
model:
  gate: {min_won: 10, min_lost: 10}
  pipeline_max_rows: 1000
  num_boost_round: 200
  search:
    candidates: [{num_leaves: 7, learning_rate: 0.1, min_child_samples: 30}]
"""
WRITTEN_AT = re.compile(r"Written by tiering \w+ on [^.]*UTC")  # the page's footer says when it was written


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("spark-commands") / "export"
    generate_export(folder, n_accounts=300, seed=8, file_format="parquet")
    return folder


@pytest.fixture(scope="module")
def world(export, trained_model):
    """The 300-account export, the shared model's scores of it as of PAST, and a fast configuration."""
    root = export.parent
    (root / "fast.yaml").write_text(FAST)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained_model.tracking_uri)
        scored = runner.invoke(
            app,
            ["score", str(root / "export"), "--model", trained_model.uri, "--as-of", PAST]
            + ["--out", str(root / "past.csv")],
        )
    assert scored.exit_code == 0, scored.output
    return root


def assert_same_outputs(pandas_out: Path, spark_out: Path) -> None:
    """Every table alike (numbers to 1e-9), and the page alike but for the minute it was written."""
    tables = sorted(path.name for path in pandas_out.glob("*.csv"))
    assert tables == sorted(path.name for path in spark_out.glob("*.csv"))
    for name in tables:
        expected, actual = pd.read_csv(pandas_out / name), pd.read_csv(spark_out / name)
        assert list(actual.columns) == list(expected.columns), name
        assert len(actual) == len(expected), name
        for column in expected.columns:
            left, right = actual[column], expected[column]
            if pd.api.types.is_float_dtype(right):
                np.testing.assert_allclose(left, right, rtol=1e-9, atol=1e-9, err_msg=f"{name}: {column}")
            else:
                assert left.tolist() == right.tolist(), f"{name}: {column}"
    (page,) = {path.name for path in pandas_out.glob("*.html")}
    assert WRITTEN_AT.sub("", (spark_out / page).read_text()) == WRITTEN_AT.sub("", (pandas_out / page).read_text())


def run_on_both_engines(args: list[str], out: Path) -> Path:
    """`args` run with --engine pandas and --engine spark, each writing to its own folder under `out`; their outputs
    checked alike (`assert_same_outputs`); the Spark run's folder."""
    for engine in ("pandas", "spark"):
        result = runner.invoke(app, [*args, "--out", str(out / engine), "--engine", engine])
        assert result.exit_code == 0, result.output
    assert_same_outputs(out / "pandas", out / "spark")
    return out / "spark"


@needs_java
def test_a_review_on_spark_is_the_pandas_review(world, model_store, spark, tmp_path):
    spark_out = run_on_both_engines(
        ["review", str(world / "past.csv"), str(world / "export"), "--config", str(world / "fast.yaml")], tmp_path
    )
    # Not alike by being empty: the drift compares every learner feature, and the period's deals were judged.
    drift = pd.read_csv(spark_out / "drift.csv")
    assert len(drift) > 20 and drift["psi"].notna().all()
    assert pd.read_csv(spark_out / "predictions.csv").shape[0] > 0
    assert spark.range(3).count() == 3  # the command ran on the test's session and left it running


@needs_java
def test_a_forecast_backtest_on_spark_is_the_pandas_backtest(world, model_store, spark, tmp_path):
    spark_out = run_on_both_engines(
        ["forecast", str(world / "export"), "--model", model_store.uri, "--config", str(world / "fast.yaml")]
        + ["--backtest", "--origins", "1", "--simulations", "200"],
        tmp_path,
    )
    cells = pd.read_csv(spark_out / "backtest.csv")
    assert len(cells) >= 4 * 4 and cells["actual"].sum() > 0  # the tiers' four quantities, and what happened


def registered_model(store: Path) -> dict:
    """A registered version with the champion alias (no training needed to watch the registry)."""
    client = MlflowClient()
    client.create_registered_model(registry.MODEL_NAME)
    version = client.create_model_version(registry.MODEL_NAME, str(store / "no-model"))
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version.version)
    return registry_state()


def registry_state() -> dict:
    client = MlflowClient()
    found = client.search_model_versions(f"name='{registry.MODEL_NAME}'")
    return {
        "versions": sorted(version.version for version in found),
        "aliases": client.get_registered_model(registry.MODEL_NAME).aliases,
        "runs": len(mlflow.search_runs(search_all_experiments=True)),
    }


@pytest.fixture
def command(write_export, tmp_path, mlflow_store):
    """The command line of `name` on `data`; a review reads a rules-only scoring, so it needs no registered model
    before Spark starts."""
    past = tmp_path / "past.csv"
    scored = runner.invoke(app, ["score", str(write_export()), "--as-of", "2024-03-01", "--out", str(past)])
    assert scored.exit_code == 0, scored.output

    def line(name: str, data: str) -> list[str]:
        out = str(tmp_path / "out")
        if name == "review":
            return ["review", str(past), data, "--out", out]
        return [name, data] + (["--out", out] if name == "forecast" else [])

    return line


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused(args: list[str], store: Path) -> str:
    before = registered_model(store)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        result = runner.invoke(app, [*args, "--engine", "spark"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert not [warning for warning in warned if "Traceback" in str(warning.message)]  # nor a warning repeating it
    assert registry_state() == before  # no version registered, no alias moved, no run logged
    return words(result.output)


# The train command's unreachable master and mapping are tested beside its parity test.
@pytest.mark.parametrize("name", ["review", "forecast"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--spark-master", "spark://127.0.0.1:{port}"], "no Spark master answers"),
        (["--mapping", "salesforce"], "without --mapping; map an export with --engine pandas"),
    ],
)
def test_what_review_and_forecast_cannot_run_on_spark_is_refused(name, options, message, command, mlflow_store):
    options = [option.replace("{port}", str(free_port())) for option in options]  # chosen when run, not collected
    assert message in refused([*command(name, "export"), *options], mlflow_store)


@pytest.mark.parametrize("name", ["train", "review", "forecast"])
@pytest.mark.parametrize(
    ("master", "message"),
    [
        ("k8s://https://127.0.0.1:{port}", "no Spark master answers (127.0.0.1:"),
        ("yarn", "--spark-master yarn: set HADOOP_CONF_DIR (or YARN_CONF_DIR)"),
    ],
)
def test_a_cluster_that_cannot_be_reached_is_said_before_spark_starts(
    name, master, message, command, mlflow_store, monkeypatch
):
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    master = master.replace("{port}", str(free_port()))  # chosen when run: xdist workers must collect the same ids
    assert message in refused([*command(name, "export"), "--spark-master", master], mlflow_store)


@needs_java
@pytest.mark.parametrize("name", ["review", "forecast"])
def test_a_path_spark_cannot_read_is_said_by_review_and_forecast(name, command, mlflow_store, spark):
    output = refused(command(name, "nosuchscheme://bucket/export"), mlflow_store)
    assert "Spark cannot read the folder" in output and "nosuchscheme://bucket/export" in output


BLOCKER = """\
import sys
import warnings
from importlib.abc import MetaPathFinder

PROJECT = {"features", "scoring", "training", "configuration", "ingest"}


class WithoutTheProject(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in PROJECT:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, WithoutTheProject())
"""


@pytest.fixture
def executors_without_the_project(tmp_path, monkeypatch, no_running_spark):
    """The executors' Python: this one, with a sitecustomize that refuses every import of the project's code (for the
    session the command starts: a running one keeps the Python it started with)."""
    folder = tmp_path / "executor"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCKER)
    python = folder / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{folder}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    monkeypatch.setenv("PYSPARK_PYTHON", str(python))


@needs_java
@pytest.mark.parametrize("name", ["train", "review", "forecast"])
def test_executors_without_the_project_are_told_to_install_or_ship_it(
    name, export, command, mlflow_store, executors_without_the_project
):
    output = refused(command(name, str(export)), mlflow_store)
    assert "the Spark executors cannot import abm-tiering's code (No module named" in output
    assert "install the project on every executor, at the same version as the driver" in output
    assert "spark.archives" in output and "docs/training.md" in output


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        ("ModuleNotFoundError: No module named 'training.spark'", "cannot import abm-tiering's code"),
        ("ModuleNotFoundError: No module named 'lightgbm'", "cannot import 'lightgbm', which abm-tiering's code needs"),
        ("[PACKAGE_NOT_INSTALLED] PyArrow >= 11.0.0 must be installed; however, it was not found.", "'PyArrow'"),
        ("ModuleNotFoundError: No module named 'no_such_module_here'", None),  # missing here too: not the executors'
        ("java.lang.OutOfMemoryError: Java heap space", None),
    ],
)
def test_only_an_import_the_driver_can_make_is_blamed_on_the_executors(failure, says):
    from cli.engines import executor_import_failure

    message = executor_import_failure(RuntimeError(f"Job aborted: PythonException: Traceback ...\n{failure}"))
    assert (message is None) if says is None else (says in message and "on every executor" in message)
