"""`tiering train --engine spark` builds the pandas engine's training rows on Spark and registers the same model."""

import shutil
import socket
from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import parse_config
from features.errors import DataError
from features.groups import grouped_build
from ingest.io import load_export
from scoring import registry
from sources.synthetic import generate_export
from tests.cli.test_hostile import words
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from tests.training.test_rows import assert_same_rows
from training.workflow import train_and_register

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java: no `java` on PATH")
pytestmark = pytest.mark.slow

# A 300-account export passes this gate; one LightGBM candidate keeps the two trainings short.
CONFIG = parse_config(
    {
        "model": {
            "gate": {"min_won": 10, "min_lost": 10},
            "search": {"candidates": [{"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 30}]},
        }
    }
)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark-training-export")
    generate_export(folder, n_accounts=300, seed=8, file_format="parquet")
    return folder


def run_of(version: str):
    client = registry.client()
    return client.get_run(client.get_model_version(registry.MODEL_NAME, version).run_id).data


@needs_java
def test_spark_rows_are_the_pandas_rows_and_register_the_same_model(spark, export, mlflow_store):  # noqa: F811
    from training.spark import spark_engine

    driver, engine = spark_engine(spark, str(export), CONFIG)
    asked = {}

    def recording(queries: pd.DataFrame) -> pd.DataFrame:
        asked["queries"], asked["rows"] = queries, engine.build(queries)
        return asked["rows"]

    on_spark = train_and_register(driver, CONFIG, None, lambda step: None, replace(engine, build=recording))
    data = load_export(export).data
    on_pandas = train_and_register(data, CONFIG, None, lambda step: None)

    queries = asked["queries"]
    expected = grouped_build(data, CONFIG)(queries)
    assert len(queries) > 2 * len(data.accounts)  # the deals, the snapshots and both books were asked
    key = queries.assign(position=np.arange(len(queries)))["position"]
    assert_same_rows(asked["rows"].assign(position=key), expected.assign(position=key), ["position"])

    spark_run, pandas_run = run_of(on_spark.version), run_of(on_pandas.version)
    assert (spark_run.tags["engine"], pandas_run.tags["engine"]) == ("spark", "pandas")
    assert spark_run.tags["training_rows_digest"] == pandas_run.tags["training_rows_digest"]
    opps = pd.read_parquet(export / "opportunities.parquet")
    close = pd.to_datetime(opps["close_date"])
    window = on_pandas.result.window
    in_window = opps["outcome"].isin(["won", "lost"]) & (close >= window.start) & (close < window.as_of)
    assert spark_run.metrics["training_rows"] == pandas_run.metrics["training_rows"] == in_window.sum()
    holdout = [name for name in pandas_run.metrics if name.startswith(("model_", "logreg_", "rule_", "pipeline_"))]
    assert len(holdout) > 20
    assert {name: spark_run.metrics[name] for name in holdout} == {name: pandas_run.metrics[name] for name in holdout}
    assert spark_run.metrics["model_roc_auc"] == on_pandas.result.metrics["model_roc_auc"]


@needs_java
def test_a_folder_spark_cannot_read_stops_before_anything_is_registered(spark, mlflow_store, tmp_path):  # noqa: F811
    from training.spark import spark_engine

    with pytest.raises(DataError, match="required accounts table not found"):
        spark_engine(spark, str(tmp_path / "no-such-export"), CONFIG)
    with pytest.raises(DataError, match="Spark cannot read the folder"):
        spark_engine(spark, "nosuchscheme://bucket/export", CONFIG)
    registry.configure()
    assert registry.versions() == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--spark-master", f"spark://127.0.0.1:{free_port()}"], "no Spark master answers"),
        (["--mapping", "salesforce"], "without --mapping; map an export with --engine pandas"),
        (["--invalid-rows", "drop"], "drops no rows"),
    ],
)
def test_what_the_spark_engine_cannot_train_on_is_refused_with_one_message(options, message, tmp_path, mlflow_store):  # noqa: F811
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--engine", "spark", *options])
    assert result.exit_code == 2, result.output
    assert message in words(result.output)
    assert "Traceback" not in result.output
    assert mlflow.search_runs(search_all_experiments=True).empty  # nothing logged, nothing registered


@needs_java
@pytest.mark.parametrize(
    "through_files", [True, False], ids=["one machine: written and read back", "cluster: collected"]
)
def test_built_rows_reach_the_driver_in_the_queries_order_either_way(spark, through_files):
    """The built rows come back from the executors in any order: the driver puts them in the queries' order
    (`_position`) and types them as the feature code does, whether it reads them from files or collects them."""
    from training.spark import POSITION, _collected

    rng = np.random.default_rng(3)
    positions = rng.permutation(50)  # the order the executors happened to return them in
    built = pd.DataFrame(
        {
            "account_id": [f"a{p}" for p in positions],
            "cutoff": pd.Timestamp("2026-01-01") + pd.to_timedelta(positions, unit="D"),
            "score": positions * 0.5,
            POSITION: positions.astype(np.int64),
        }
    )
    reference = pd.DataFrame(
        {"account_id": pd.Series([], dtype="str"), "cutoff": pd.Series([], dtype="datetime64[ns]"), "score": []}
    )
    rows = _collected(spark, spark.createDataFrame(built).repartition(4), reference, through_files=through_files)
    assert list(rows.columns) == ["account_id", "cutoff", "score"]
    assert rows["account_id"].tolist() == [f"a{p}" for p in range(50)]
    assert rows["cutoff"].tolist() == [pd.Timestamp("2026-01-01") + pd.Timedelta(days=p) for p in range(50)]
    assert rows["score"].tolist() == [p * 0.5 for p in range(50)]
    assert rows["cutoff"].dtype == "datetime64[ns]" and rows["score"].dtype == np.float64


@needs_java
def test_an_engine_that_builds_once_stops_spark_before_reading_its_rows_and_refuses_a_second_build(
    spark, export, monkeypatch
):
    """`tiering train` asks for its rows once: the session is stopped as soon as they are written, before they
    are read back (the stop is recorded here rather than done: the module's other tests share the session)."""
    import training.spark as training_spark

    events = []
    read_rows = training_spark._in_query_order

    def reading(read, reference):
        events.append("read")
        return read_rows(read, reference)

    monkeypatch.setattr(training_spark, "_in_query_order", reading)
    monkeypatch.setattr(spark, "stop", lambda: events.append("stop"))
    data = load_export(export).data
    ids = data.accounts["account_id"].astype("str")
    queries = pd.DataFrame(
        {
            "account_id": pd.concat([ids, ids], ignore_index=True),
            "cutoff": [pd.Timestamp("2025-06-01")] * len(ids) + [pd.Timestamp("2025-12-01")] * len(ids),
        }
    )
    _, engine = training_spark.spark_engine(spark, str(export), CONFIG, builds_once=True)
    rows = engine.build(queries)
    assert events == ["stop", "read"]
    with pytest.raises(RuntimeError, match="built its rows once"):
        engine.build(queries)

    expected = grouped_build(data, CONFIG)(queries)
    key = np.arange(len(queries))
    assert_same_rows(rows.assign(position=key), expected.assign(position=key), ["position"])
