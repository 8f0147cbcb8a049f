"""`tiering train --engine spark`: a training run's feature rows built on a Spark cluster.

The rows are `training.rows`' per-group build run by `applyInPandas`: every table's rows and the run's queries
(account_id, cutoff) are grouped by `build_by_group` (a hash of each row's account, or family), and each group is
built by its own `FeatureBuilder` on an executor, exactly as the pandas engine builds it in one process. The
driver holds the accounts and the opportunities (the window, the labels and time to close read them), collects
the feature rows, and the learners fit there, as with the pandas engine; the events stay on the cluster.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, LongType, StructField, StructType

from features.config import ModelConfig
from features.groups import BuildRows, build_group, by_family, group_count
from features.pointintime import text_extras
from features.schema import TABLES, CrmData, conform
from scoring.spark import (
    build_by_group,
    default_cutoff,
    empty_book,
    family_keys,
    read_tables,
    release_driver_heap,
    spark_schema,
)
from training.rows import RowsEngine

SPARK = "spark"
DRIVER_TABLES = ("accounts", "opportunities")  # what the driver holds besides the feature rows
# A group's memory on its Python worker follows its events rather than its accounts (about 330 MB for 500,000
# events, its frames and their index, beside the worker's own 150 MB): at most about this many events a group.
EVENTS_PER_GROUP = 250_000
QUERIES = "queries"  # the tag of the run's (account_id, cutoff) queries in the grouped union
POSITION = "_position"  # a query's place in the run's table of queries


def spark_engine(
    spark: SparkSession,
    data: str,
    config: ModelConfig,
    release: ExitStack | None = None,
    builds_once: bool = False,
) -> tuple[CrmData, RowsEngine]:
    """The driver's part of the export in `data` (its accounts and opportunities; no events) and the engine that
    builds the feature rows on the cluster. Only structure is checked, as for scoring. `release`: where the tables
    kept for the build are let go once the caller is done (a session the caller does not stop keeps them else).
    `builds_once`: the command asks for rows once (`tiering train`) on a session it owns, which is stopped as soon
    as they have left the cluster, before they are read into pandas and the learners fit: on one machine its
    executors' memory goes back to the fit."""
    tables = read_tables(spark, data, config)
    # The accounts and opportunities are typed once and read twice (here and by the build), kept on disk: the heap
    # is the build's sort's. The events are not kept: the build reads them once (counting them reads no column of
    # a Parquet file).
    for name in DRIVER_TABLES:
        tables[name].persist(StorageLevel.DISK_ONLY)
        if release is not None:
            release.callback(tables[name].unpersist)
    driver = CrmData(
        accounts=conform(tables["accounts"].toPandas(), "accounts"),
        opportunities=conform(tables["opportunities"].toPandas(), "opportunities"),
        present=frozenset(tables),
    )
    events = {name: tables[name].count() if name in tables else 0 for name in ("engagement", "intent")}
    groups = max(
        spark.sparkContext.defaultParallelism,
        group_count(len(driver.accounts)),
        math.ceil(sum(events.values()) / EVENTS_PER_GROUP),
    )
    build = _build_on(spark, tables, config, text_extras(driver.accounts, config), groups, builds_once)
    return driver, RowsEngine(SPARK, build, events["engagement"], events["intent"], default_cutoff(tables))


def _build_on(
    spark: SparkSession,
    tables: dict[str, DataFrame],
    config: ModelConfig,
    as_text: frozenset[str],
    groups: int,
    builds_once: bool,
) -> BuildRows:
    """The feature rows for a table of queries, built group by group by `build_group` on the executors; with
    `builds_once`, the session stops once they are built."""

    # The rows an empty group gives: the result's columns and types (an extra column is a number unless text).
    reference = build_group(empty_book(), config, as_text, pd.DataFrame({"account_id": [], "cutoff": []}))
    schema = StructType([*spark_schema(reference), StructField(POSITION, LongType())])
    numeric = [name for name, dtype in reference.dtypes.items() if dtype == np.float64]
    schema = StructType([StructField(field.name, DoubleType()) if field.name in numeric else field for field in schema])

    # With families, a family's accounts are built together: its family features need all of its entities.
    keys = family_keys(tables["accounts"]) if by_family(config) else None

    stopped: list[bool] = []  # non-empty once the session is stopped

    def rows_of_group(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
        data = CrmData(**{name: conform(parts[name], name) for name in TABLES})
        asked = parts[QUERIES]
        features = build_group(data, config, as_text, asked)
        features[POSITION] = asked[POSITION].to_numpy()
        return features

    def build(queries: pd.DataFrame) -> pd.DataFrame:
        if stopped:
            raise RuntimeError("this Spark engine built its rows once and stopped its session")
        asked = pd.DataFrame(
            {
                "account_id": queries["account_id"].astype("str").to_numpy(),
                "cutoff": pd.to_datetime(queries["cutoff"]).astype("datetime64[us]").to_numpy(),
                POSITION: np.arange(len(queries), dtype=np.int64),
            }
        )
        everything = {**tables, QUERIES: spark.createDataFrame(asked)}
        # One shuffle partition a group: each task sorts, builds and returns one group's rows.
        built = build_by_group(everything, groups, rows_of_group, schema, keys, one_task_a_group=True)
        rows = _collected(spark, built, reference, stop_session=builds_once)
        if builds_once:
            stopped.append(True)
        release_driver_heap(spark)  # again, once the build's last buffers are let go
        return rows

    return build


def _collected(
    spark: SparkSession,
    rows: DataFrame,
    reference: pd.DataFrame,
    through_files: bool | None = None,
    stop_session: bool = False,
) -> pd.DataFrame:
    """The built rows on the driver, in the queries' order (`_in_query_order`). On one machine (a local master) the
    executors write them to a private temporary folder, read back once the build is over, a column at a time: the
    driver does not hold them beside the build's own memory (the JVM's heap, the Python workers' groups), which
    shares the machine, nor beside a second copy of them. On a cluster they are collected. Either way the driver
    JVM then hands back the heap the build filled. `through_files`: the one-machine way (default: on a local master).
    `stop_session`: stop the session once the rows have left the cluster (its executors and Python workers end).
    """
    if through_files is None:
        through_files = (spark.sparkContext.master or "").startswith("local")
    if not through_files:
        table = rows.toArrow()
        _let_go(spark, stop_session)
        return _in_query_order(table.select, reference)
    folder = tempfile.mkdtemp(prefix="tiering-rows-")
    try:
        # A file: URI, so that a default file system set by the cluster's configuration (HDFS) is not written instead.
        rows.write.mode("overwrite").parquet(Path(folder).as_uri())
        _let_go(spark, stop_session)
        # Each part's footer is parsed once, not again for every column (on the rows of 10,000 accounts the read
        # then adds 136 MB rather than 237 MB for 69 MB of rows).
        parts = [(part, pq.read_metadata(part)) for part in sorted(Path(folder).glob("*.parquet"))]
        # No part at all (no query): the empty group's rows, as the feature code types them.
        empty = pa.Table.from_pandas(reference.assign(**{POSITION: np.array([], dtype=np.int64)}), preserve_index=False)

        def read(names: list[str]) -> pa.Table:
            columns = []
            for part, metadata in parts:
                with pq.ParquetFile(part, metadata=metadata) as opened:
                    columns.append(opened.read(columns=names))
            return pa.concat_tables(columns) if columns else empty.select(names)

        return _in_query_order(read, reference)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _let_go(spark: SparkSession, stop_session: bool) -> None:
    """What the build held: the session itself when it is done with (the driver JVM stays, with little heap)."""
    if stop_session:
        spark.stop()
    release_driver_heap(spark)


def _in_query_order(read: Callable[[list[str]], pa.Table], reference: pd.DataFrame) -> pd.DataFrame:
    """The rows `read` gives (those columns of them), in the queries' order and typed as `FeatureBuilder.build`
    types its rows (text as pandas' str, dates naive in ns, the rest as the empty group's `reference`), read,
    placed and converted a column at a time: the rows are held about once, not beside their Arrow table or a
    sorted copy."""
    order = pa.array(np.argsort(read([POSITION]).column(POSITION).to_numpy(), kind="stable"))
    rows = pd.DataFrame(index=pd.RangeIndex(len(order)))
    for name, dtype in reference.dtypes.items():
        values = read([name]).column(name).take(order).to_pandas()
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert(None)
        rows[name] = values.astype("str" if dtype.kind == "O" else "datetime64[ns]" if dtype.kind == "M" else dtype)
    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps what the reads freed otherwise
    return rows
