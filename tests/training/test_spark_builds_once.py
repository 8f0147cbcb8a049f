"""`tiering train --engine spark` asks for its rows once: Spark stops before they are read and the learners fit.

Its own module: the test stops its session, which the other Spark modules share within theirs."""

import shutil

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from features.groups import grouped_build
from ingest.io import load_export
from sources.synthetic import generate_export
from tests.training.test_rows import assert_same_rows
from tests.training.test_spark_training import CONFIG

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java: no `java` on PATH"),
]


def test_an_engine_that_builds_once_stops_spark_before_reading_its_rows_and_refuses_a_second_build(
    tmp_path, monkeypatch
):
    import training.spark as training_spark
    from scoring.spark import spark_session

    generate_export(tmp_path, n_accounts=80, seed=4, file_format="parquet")
    data = load_export(tmp_path).data
    ids = data.accounts["account_id"].astype("str")
    queries = pd.DataFrame(
        {
            "account_id": pd.concat([ids, ids], ignore_index=True),
            "cutoff": [pd.Timestamp("2025-06-01")] * len(ids) + [pd.Timestamp("2025-12-01")] * len(ids),
        }
    )
    active_at_read = []
    read_rows = training_spark._in_query_order

    def reading(read, reference):
        active_at_read.append(SparkSession.getActiveSession())
        return read_rows(read, reference)

    monkeypatch.setattr(training_spark, "_in_query_order", reading)
    with spark_session("local[2]", "abm-tiering builds-once test") as spark:
        _, engine = training_spark.spark_engine(spark, str(tmp_path), CONFIG, builds_once=True)
        rows = engine.build(queries)
        assert active_at_read == [None]  # stopped once the rows were written, before they were read
        with pytest.raises(RuntimeError, match="built its rows once"):
            engine.build(queries)

    expected = grouped_build(data, CONFIG)(queries)
    key = np.arange(len(queries))
    assert_same_rows(rows.assign(position=key), expected.assign(position=key), ["position"])
