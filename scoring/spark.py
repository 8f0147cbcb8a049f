"""`tiering score --engine spark`: score a book of any size on a Spark cluster with the registered model.

The point-in-time features come from the same `FeatureBuilder` and `snapshot` as the pandas path: accounts are
hashed into groups, and `applyInPandas` builds each group from its accounts and their opportunities, engagement
and intent rows (every feature depends on one account's own rows only). A pandas UDF scores the feature rows
with the model the driver resolved, business configuration applied (`resolve_model`: rule weights, blend, ICP):
it ships to the executors with the function, so they score exactly as the pandas engine does, not with the
configuration the model was logged with. Tiers by capacity need a global ranking, so the driver collects only
`account_id`, the two scores, ICP membership and the tie-breaking keys (with families, the family's own, computed
beside its features by `Scorer.family_ranking`), and places tiers, overrides and budget with `scoring.tiers`, as
`Scorer.score` does.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import DoubleType, NullType, StringType, StructField, StructType, TimestampNTZType

from features.config import ModelConfig
from features.errors import DataError, Problem
from features.groups import EVENT_TABLES, account_families, by_family, group_count
from features.pointintime import FeatureBuilder, snapshot
from features.rules import icp_parts
from features.schema import REQUIRED, REQUIRED_TABLES, TABLES, CrmData, columns, conform, empty_table
from scoring import registry
from scoring.bundle import check_scoring_code, scoring_code_digests
from scoring.pyfunc import TieringModel
from scoring.rounding import round_for_output
from scoring.scorer import FAMILY_RANKING_COLUMNS, SCORE_COLUMNS, Scorer, score_columns_for

DEFAULT_MASTER = "local[2]"
LOCAL_SHUFFLE_PARTITIONS = 4  # Spark's default of 200 makes a small local book wait on empty tasks
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:MaxHeapFreeRatio=20 -XX:MinHeapFreeRatio=10"
TABLE_TAG, GROUP = "_table", "_group"
EXTRA_PREFIX = "extra_"  # feature columns of `model.extra_features`
SEPARATOR = "__"  # tagged columns are <table>__<column>, so tables with the same column names share one union
PLACEMENT_COLUMNS = ["learned_tier", "rule_tier", "tier", "override_reason", "budget", "family_tier"]
FAMILY_KEY = "_family"  # the family id each row is grouped by
RANKING_COLUMNS = ("in_icp", *FAMILY_RANKING_COLUMNS)  # beside the feature rows, for the ranking, not the model
KIND_TYPES = {"id": StringType(), "text": StringType(), "date": TimestampNTZType(), "number": DoubleType()}
# What the engine reads: canonical table names, comma-separated UTF-8 CSV with a header row, or Parquet.
CSV_OPTIONS: dict[str, bool | str] = {
    "header": True,
    "multiLine": True,
    "escape": '"',
    "encoding": "UTF-8",
    "ignoreLeadingWhiteSpace": True,
    "ignoreTrailingWhiteSpace": True,
}


class SparkUnavailable(Exception):
    """Spark cannot start here; the message says what is missing."""


@dataclass(frozen=True)
class SparkScores:
    """What the driver holds after a Spark scoring: per account, the tiers and budget (the scores are in `out`)."""

    placement: pd.DataFrame  # account_id, learned_tier, rule_tier, tier, override_reason, budget, pilot_group
    version: str
    overrides: pd.DataFrame | None  # the overrides applied, as read


@contextmanager
def spark_session(
    master: str = DEFAULT_MASTER, app: str = "abm-tiering score", log_level: str = "WARN"
) -> Iterator[SparkSession]:
    """A quiet session for scoring or training (Arrow on, UTC clock, no progress bar, Spark's driver log from
    `log_level` up, from its start), stopped on the way out.

    A session this process already runs on the same master (a notebook's, a test's) is used instead and left running:
    Spark allows one a process, and stopping it would stop its owner's. The SQL settings the engine needs are then
    set for the block only, and the owner's log level is left alone."""
    if master.startswith("sc://"):
        raise SparkUnavailable(
            f"--spark-master {master} is a Spark Connect server, which abm-tiering cannot score through: the "
            "scores are written atomically through Hadoop's file system, which a Connect client cannot reach. "
            "Use a classic master (spark://host:7077, yarn, k8s://..., local[*])"
        )
    if master.startswith("spark://"):
        _check_reachable(master, master.removeprefix("spark://").split("/")[0].split(","), 7077)
    elif master.startswith("k8s://"):
        api = urlsplit(master.removeprefix("k8s://"))
        default = 443 if api.scheme in ("https", "") else 80
        _check_reachable(master, [f"{api.hostname}:{api.port or default}"] if api.hostname else [], default)
    elif master == "yarn" and not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
        raise SparkUnavailable(
            "--spark-master yarn: set HADOOP_CONF_DIR (or YARN_CONF_DIR) to the folder of the cluster's "
            "configuration (core-site.xml, yarn-site.xml), which says where YARN is"
        )
    _quiet_pyspark_warnings()
    running = SparkSession.getActiveSession()
    if running is not None:
        with _running_session(running, master) as spark:
            yield spark
        return
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise SparkUnavailable("Spark needs Java 17 or 21: install it, or set JAVA_HOME to its folder")
    builder = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", log_level)
    )
    for key, value in _sql_settings(master).items():
        builder = builder.config(key, value)
    if master.startswith("local"):
        # Local workers must run this interpreter (it has the project's packages); clusters set their own.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            builder.config("spark.ui.enabled", "false")
            # The driver JVM shares the machine with the Python that works after a build: after a full
            # collection it keeps at most a fifth of its heap free, not seven tenths (Java's default).
            .config("spark.driver.defaultJavaOptions", LOCAL_DRIVER_JAVA_OPTIONS)
        )
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # PySpark and Py4J raise several types when the master refuses or never answers
        raise SparkUnavailable(
            f"--spark-master {master}: Spark could not start a session ({_first_line(error)}): check the master "
            "URL and that the cluster answers from this machine"
        ) from None
    spark.sparkContext.setLogLevel(log_level)
    try:
        yield spark
    finally:
        spark.stop()


def _sql_settings(master: str) -> dict[str, str]:
    """The session settings the engine's results depend on or its small local jobs need."""
    settings = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",  # timestamps reach pandas as naive UTC, as load_export's
        "spark.sql.debug.maxToStringFields": "1000",  # no warning about the wide score struct
    }
    if master.startswith("local"):  # Spark's default of 200 makes a small local book wait on empty tasks
        settings["spark.sql.shuffle.partitions"] = str(LOCAL_SHUFFLE_PARTITIONS)
    return settings


def _quiet_pyspark_warnings() -> None:
    # The parity test is what vouches for pandas 3 here; PySpark warns about it on every pandas UDF.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    # toPandas repeats a failed job's error as a warning, then raises it: the caller says the error, once.
    warnings.filterwarnings("ignore", message="toPandas attempted Arrow optimization", category=UserWarning)


@contextmanager
def _running_session(spark: SparkSession, master: str) -> Iterator[SparkSession]:
    """The session this process already runs, with the engine's SQL settings for the block and the owner's after."""
    running = spark.sparkContext.master
    if running != master:
        raise SparkUnavailable(
            f"--spark-master {master}: this process already runs a Spark session on {running}, and Spark runs one "
            f"session a process: pass --spark-master {running} to use it, or stop that session first"
        )
    settings = _sql_settings(master)
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield spark
    finally:
        for key, owned in before.items():
            if owned is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, owned)


def _check_reachable(master: str, addresses: list[str], default_port: int, timeout: float = 5.0) -> None:
    """A standalone master (spark://host:port[,host:port]) or a Kubernetes API server must answer; else Spark would
    retry for minutes."""
    failures = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or address, int(port or default_port)), timeout=timeout):
                return
        except (OSError, ValueError) as error:
            failures.append(f"{address}: {error.strerror if isinstance(error, OSError) and error.strerror else error}")
    raise SparkUnavailable(
        f"--spark-master {master}: no Spark master answers ({'; '.join(failures) or 'no host in the URL'}): start "
        "the master, or correct the URL (spark://HOST:7077, k8s://https://HOST:PORT)"
    )


def score_export(
    spark: SparkSession,
    data: str,
    out: str,
    *,
    model_uri: str | None,
    config: ModelConfig,
    as_of: pd.Timestamp | None = None,
    budget: float | None = None,
    overrides: Callable[[pd.Series], pd.DataFrame] | None = None,
    progress: Callable[[str], None] = lambda step: None,
    add_pins: Callable[[pd.DataFrame | None, pd.Series], pd.DataFrame | None] | None = None,
    pilot_groups: pd.DataFrame | None = None,
) -> SparkScores:
    """Score every account of the canonical export in `data`; write the SPEC scores columns to `out` (Parquet).

    The model is `model_uri`, else the champion, else rules only with `config`, as `resolve_model` decides.
    `overrides` reads the sales overrides checked against the book's account ids (the caller owns the file);
    `add_pins(file_pins, account_ids)` joins pins kept elsewhere (the workspace's) to those. `pilot_groups`
    (account_id, group) fills the file's `pilot_group` column, which is empty for every other account.
    """
    scorer, version = registry.resolve_model(model_uri, config)  # business configuration applied
    progress("reading the export")
    tables = read_tables(spark, data, scorer.config)
    with cached(*tables.values()):  # typed once, then read for the cut-off and for the features
        pins = None
        if overrides is not None or add_pins is not None:  # checked against the book before the expensive part
            accounts: pd.DataFrame = tables["accounts"].select("account_id").toPandas()
            pins = overrides(accounts["account_id"]) if overrides is not None else None
            if add_pins is not None:
                pins = add_pins(pins, accounts["account_id"])
        cutoff = as_of or default_cutoff(tables)
        progress(f"building features as of {cutoff.date()} and scoring with model {version}")
        features = feature_rows(tables, scorer, cutoff)
        score = _score_udf(scorer, version)
        ranking = [column for column in RANKING_COLUMNS if column in features.columns]
        scored = features.select(*ranking, score(_model_input(features)).alias("score"))
        with cached(scored):  # read for the ranking, then for the output
            # With the tie-breaking keys, so ties fall as the pandas engine places them.
            by_family = set(FAMILY_RANKING_COLUMNS) <= set(ranking)
            family = ["score.family_id", "score.family_learned_score"] if by_family else []
            book = scored.select(
                "score.account_id",
                "score.learned_score",
                "score.rule_score",
                "score.win_probability",
                "score.engagement_score",
                *ranking,
                *family,
            ).toPandas()
            _check_unique_accounts(book)
            progress("placing tiers by capacity")
            placement = pd.DataFrame(scorer.place_tiers(book, budget=budget, overrides=pins))
            placement["pilot_group"] = ""
            if pilot_groups is not None and len(pilot_groups):
                group = pilot_groups.drop_duplicates("account_id").set_index("account_id")["group"]
                placement["pilot_group"] = placement["account_id"].astype(str).map(group).fillna("")
            # One stamp for the whole book, as the pandas path writes: the earliest any batch wrote.
            earliest = scored.agg(F.min("score.scored_at")).first()
            assert earliest is not None  # an aggregate over the whole frame answers exactly one row
            scored_at = earliest[0]
            progress(f"writing {len(book):,} scores")
            result = (
                scored.select("score.*")
                .drop(*PLACEMENT_COLUMNS)
                .join(spark.createDataFrame(placement), "account_id")
                .withColumn("scored_at", F.lit(scored_at))
                # The scores file's order: SCORE_COLUMNS, pilot_group, then the family columns with roll_up: family.
                .select(*SCORE_COLUMNS, "pilot_group", *score_columns_for(scorer.config)[len(SCORE_COLUMNS) :])
            )
            # Rounded by the pandas engine's own function, so both engines write the same figures.
            result = result.mapInPandas(lambda batches: (round_for_output(batch) for batch in batches), result.schema)
            write_parquet(spark, result, out)
    return SparkScores(placement, version, pins)


@contextmanager
def cached(*frames: DataFrame) -> Iterator[None]:
    """Keep frames that are read more than once (spilling to disk), and release them on the way out."""
    for frame in frames:
        frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield
    finally:
        for frame in frames:
            frame.unpersist()


def read_tables(spark: SparkSession, data: str, config: ModelConfig) -> dict[str, DataFrame]:
    """The canonical tables found in `data` (<table>.parquet or <table>.csv), typed as `load_export` types them.

    Only structure is checked (tables, required columns, and unique account ids once scored): values are the
    job of `tiering validate`, which an export should pass before it is scored.
    """
    problems: list[Problem] = []
    found = {name: _read_table(spark, data.rstrip("/"), name, problems) for name in TABLES}
    if problems:
        raise DataError(problems)
    accounts = found["accounts"]
    assert accounts is not None  # a required table: without it, `problems` said so above
    extras = [column for column in config.model.extra_features if column in accounts.columns]
    return {
        name: _canonical(frame, name, extras if name == "accounts" else [])
        for name, frame in found.items()
        if frame is not None
    }


def _read_table(spark: SparkSession, data: str, name: str, problems: list[Problem]) -> DataFrame | None:
    found = [path for path in (f"{data}/{name}.parquet", f"{data}/{name}.csv") if _exists(spark, path)]
    if len(found) > 1:
        problems.append(Problem(f"both {name}.parquet and {name}.csv exist", "keep one of them", file=data))
        return None
    if not found:
        if name in REQUIRED_TABLES:
            problems.append(
                Problem(
                    f"required {name} table not found: no {name}.parquet or {name}.csv",
                    "--engine spark reads canonical tables: write them under these names",
                    file=data,
                )
            )
        return None
    path = found[0]
    try:
        frame = spark.read.parquet(path) if path.endswith(".parquet") else spark.read.options(**CSV_OPTIONS).csv(path)
    except (AnalysisException, Py4JJavaError) as error:
        problems.append(Problem(f"Spark cannot read it ({_first_line(error)})", _READ_FIX, file=path))
        return None
    frame = frame.toDF(*[column.strip("\ufeff \t") for column in frame.columns])  # as load_export trims headers
    for column in REQUIRED[name]:
        if column not in frame.columns:
            problems.append(
                Problem(
                    f"required column '{column}' is missing",
                    "--engine spark reads canonical column names: rename it in the export "
                    "(mappings are for the pandas engine)",
                    file=path,
                    column=column,
                )
            )
    return frame


def _canonical(frame: DataFrame, name: str, extras: list[str]) -> DataFrame:
    """The table's canonical columns (and the extra ones the model reads) through `conform`, the pandas path's
    own typing: text ids, naive UTC dates, float numbers, defaults filled, absent optional columns added."""
    known = columns(name)
    schema = StructType(
        [StructField(column, KIND_TYPES[kind]) for column, kind in known.items()]
        + [frame.schema[column] for column in extras]
    )
    present = [column for column in known if column in frame.columns]
    return frame.select(*present, *extras).mapInPandas(lambda batches: (conform(b, name) for b in batches), schema)


def _check_unique_accounts(book: pd.DataFrame) -> None:
    duplicated = book.loc[book["account_id"].duplicated(), "account_id"].unique()
    if len(duplicated):
        raise DataError(
            [
                Problem(
                    f"{len(duplicated):,} account_id(s) appear more than once, e.g. {duplicated[0]!r}",
                    "keep one row per account (`tiering validate DATA` lists them)",
                    file="accounts",
                    column="account_id",
                )
            ]
        )


# Hadoop's file system and the driver JVM's heap, reached through the JVM gateway: PySpark has no public API for
# either. These functions are the only place that touches `spark._jvm` / `spark._jsc`; Spark Connect is refused
# upfront.
def _exists(spark: SparkSession, path: str) -> bool:
    try:
        return _filesystem(spark, path).exists(_hadoop_path(spark, path))
    except Py4JJavaError as error:  # no file system for the scheme, no credentials, no such host...
        raise DataError(
            [Problem(f"Spark cannot read the folder ({_first_line(error)})", _READ_FIX, file=path)]
        ) from None


_READ_FIX = "check the path and that this Spark (driver and executors) can reach and read it"


def _first_line(error: Exception) -> str:
    """The Java or analysis error's own first line, without the stack trace Py4J appends."""
    java = getattr(error, "java_exception", None)
    text = str(java) if java is not None else str(error)
    return (text.strip().splitlines() or [error.__class__.__name__])[0][:300]


def _hadoop_path(spark: SparkSession, path: str):
    jvm = spark._jvm
    if jvm is None:
        raise SparkUnavailable(
            "this Spark session has no JVM gateway (a Spark Connect client?), so the scores cannot be written "
            "through Hadoop's file system: use a classic master (spark://host:7077, yarn, k8s://..., local[*])"
        )
    return jvm.org.apache.hadoop.fs.Path(path)


def _filesystem(spark: SparkSession, path: str):
    """Hadoop's file system for `path`: local, HDFS, S3 or whatever the cluster is configured for."""
    return _hadoop_path(spark, path).getFileSystem(spark._jsc.hadoopConfiguration())


def release_driver_heap(spark: SparkSession) -> None:
    """A full collection in the driver JVM, after which it hands its unused heap back to the system: the heap a
    build filled stays committed otherwise, idle beside the Python that works next (about 1.5 GB of 2)."""
    jvm = spark._jvm
    if jvm is not None:
        jvm.java.lang.System.gc()


def default_cutoff(tables: dict[str, DataFrame]) -> pd.Timestamp:
    """The pandas path's default cut-off, fed with each table's latest dates computed by Spark."""
    from features.activity import default_as_of

    latest = {}
    for name in ("opportunities", "engagement", "intent"):
        dates = [column for column, kind in columns(name).items() if kind == "date"]
        latest[name] = (
            conform(tables[name].agg(*[F.max(c).alias(c) for c in dates]).toPandas(), name)
            if name in tables
            else empty_table(name)
        )
    return default_as_of(CrmData(accounts=empty_table("accounts"), **latest))


def empty_book() -> CrmData:
    return CrmData(**{name: empty_table(name) for name in TABLES})


def book_features(data: CrmData, scorer: Scorer, as_of: pd.Timestamp) -> pd.DataFrame:
    """The pandas path's feature rows for these accounts, plus what the ranking needs beside the score records:
    `in_icp`, and with families what the family is ranked on (`Scorer.family_ranking`, from its rolled-up row: a
    family is never split across groups, so each group holds the whole of its families)."""
    config = scorer.config
    features = snapshot(data, FeatureBuilder(data, config), as_of)
    features["in_icp"] = icp_parts(features, config)["in_icp"]
    if "family_id" in features:
        for name, values in scorer.family_ranking(features).items():
            features[name] = values
    return features


def feature_rows(tables: dict[str, DataFrame], scorer: TieringModel, as_of: pd.Timestamp) -> DataFrame:
    """One feature row per account: accounts hashed into groups, each group built by `book_features`."""
    config, family_scorer = scorer.config, scorer.scorer  # the scorer ships to the executors with the function
    accounts = tables["accounts"]
    parallelism = accounts.sparkSession.sparkContext.defaultParallelism
    groups = max(parallelism, group_count(accounts.count()))
    # With families, every row goes to its family's group (a family is never split: its features need all of it).
    keys = family_keys(accounts) if by_family(config) else None
    schema = _feature_schema(scorer, as_of)
    extras = {field.name: field.dataType for field in schema if field.name.startswith(EXTRA_PREFIX)}

    def features_of_group(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
        data = CrmData(**{name: conform(parts[name], name) for name in TABLES})
        features = book_features(data, family_scorer, as_of)
        # The feature code decides an extra column's kind from the values it sees, which differ from group
        # to group: hold each to the kind the schema (the model) expects.
        for column, kind in extras.items():
            values = features[column]
            features[column] = (
                pd.to_numeric(values, errors="coerce")
                if kind == DoubleType()
                else values.astype("str").where(values.notna(), None)
            )
        return features

    return build_by_group(tables, groups, features_of_group, schema, keys)


def family_keys(accounts: DataFrame) -> DataFrame | None:
    """Each account's family id (its top account's id), resolved on the driver from the parent links by
    `account_families`; None when no account has a parent."""
    if "parent_account_id" not in accounts.columns:
        return None
    family = account_families(accounts.select("account_id", "parent_account_id").toPandas())
    if family is None:
        return None
    keys = pd.DataFrame({"account_id": family.index.to_numpy(dtype=object), FAMILY_KEY: family.to_numpy(dtype=object)})
    return accounts.sparkSession.createDataFrame(keys, schema="account_id string, " + FAMILY_KEY + " string")


def build_by_group(
    tables: dict[str, DataFrame],
    groups: int,
    build: Callable[[dict[str, pd.DataFrame]], pd.DataFrame],
    schema: StructType,
    keys: DataFrame | None = None,
    one_task_a_group: bool = False,
) -> DataFrame:
    """`build` run on the executors once a group, given each of `tables`' rows in that group by name (their own
    columns, as read; an empty frame for a table the group has no row of), returning rows of `schema`.

    The rows reach the groups as `grouped_rows` gives them; `one_task_a_group` gives each group its own shuffle
    partition, whatever the session's partition count."""
    names = list(tables)
    rows, events = grouped_rows(tables, groups, keys)
    if one_task_a_group:
        rows = rows.repartition(groups, GROUP)
        events = events.repartition(groups, GROUP) if events is not None else None
    if events is None:
        return rows.groupBy(GROUP).applyInPandas(lambda part: build(_parts(names, part)), schema)
    return (
        rows.groupBy(GROUP)
        .cogroup(events.groupBy(GROUP))
        .applyInPandas(lambda part, event_part: build(_parts(names, part, event_part)), schema)
    )


def grouped_rows(
    tables: dict[str, DataFrame], groups: int, keys: DataFrame | None = None
) -> tuple[DataFrame, DataFrame | None]:
    """The tables' rows, each tagged with its table (TABLE_TAG) and its group (GROUP): the tables other than the
    events in one frame, their columns renamed <table>__<column>; the event tables (None without any) in another.

    A row's group is a hash of its account_id into `groups` (with `keys` (account_id, FAMILY_KEY: `family_keys`),
    of its family id, so a family is never split); the grouping does not change what a group builds, only which
    accounts are built together. The events are most of the rows, so they travel apart from the rest (cogrouped)
    in a narrow frame whose columns both event tables share (`event_slots`): an event row carries its own few
    values, not a null for each of the other tables' columns."""

    def tagged(name: str, frame: DataFrame) -> DataFrame:
        own = frame.columns
        renamed = event_slots(name) if name in EVENT_TABLES else {c: f"{name}{SEPARATOR}{c}" for c in own}
        key = F.col("account_id")
        if keys is not None:
            frame = frame.join(F.broadcast(keys), "account_id", "left")
            key = F.coalesce(F.col(FAMILY_KEY), F.col("account_id"))
        group = F.pmod(F.xxhash64(key), F.lit(groups)).alias(GROUP)
        return frame.select(F.lit(name).alias(TABLE_TAG), group, *[frame[c].alias(renamed[c]) for c in own])

    def union(frames: list[DataFrame]) -> DataFrame:
        return functools.reduce(lambda left, right: left.unionByName(right, allowMissingColumns=True), frames)

    rows = [tagged(name, frame) for name, frame in tables.items() if name not in EVENT_TABLES]
    events = [tagged(name, frame) for name, frame in tables.items() if name in EVENT_TABLES]
    return union(rows), union(events) if events else None


def event_slots(name: str) -> dict[str, str]:
    """An event table's columns and the shared column each travels in: the n-th of its kind in `<kind>_<n>`, so the
    event tables (the same kinds in the same numbers) share one narrow frame."""
    seen: dict[str, int] = {}
    slots = {}
    for column, kind in columns(name).items():
        slots[column] = f"{kind}_{seen.get(kind, 0)}"
        seen[kind] = seen.get(kind, 0) + 1
    return slots


def _parts(names: list[str], rows: pd.DataFrame, event_rows: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Each table's rows of one group (`build_by_group`), with their own column names."""

    def part(frame: pd.DataFrame | None, name: str, own: dict[str, str]) -> pd.DataFrame:
        if frame is None or TABLE_TAG not in frame.columns:  # no row of either kind in this group
            return pd.DataFrame()
        present = {column: carried for column, carried in own.items() if carried in frame.columns}
        taken = frame.loc[frame[TABLE_TAG] == name, list(present.values())].reset_index(drop=True)
        return taken.set_axis(list(present), axis="columns")

    out = {}
    for name in (*names, *(name for name in TABLES if name not in names)):
        if name in EVENT_TABLES:
            out[name] = part(event_rows, name, event_slots(name))
        else:
            prefix = f"{name}{SEPARATOR}"
            own = [column for column in rows.columns if column.startswith(prefix)]
            out[name] = part(rows, name, {column.removeprefix(prefix): column for column in own})
    return out


def _feature_schema(scorer: TieringModel, as_of: pd.Timestamp) -> StructType:
    """The feature rows' Spark types, as the feature code produces them on an empty book; an extra feature
    is a double when the model reads it as a number, else text (always text for rules only)."""
    spec = scorer.scorer.spec if scorer.is_learned else None
    numeric_extras = (
        set()
        if spec is None
        else {column for column in spec.columns if column.startswith(EXTRA_PREFIX) and column not in spec.categories}
    )
    schema = spark_schema(book_features(empty_book(), scorer.scorer, as_of))
    return StructType(
        [StructField(field.name, DoubleType()) if field.name in numeric_extras else field for field in schema]
    )


def spark_schema(frame: pd.DataFrame) -> StructType:
    """Spark types for a pandas frame; columns left empty (all None) are text, as ids and names are."""
    schema = from_arrow_schema(pa.Schema.from_pandas(frame, preserve_index=False))
    return StructType(
        [StructField(field.name, StringType()) if isinstance(field.dataType, NullType) else field for field in schema]
    )


def _model_input(features: DataFrame):
    """The feature rows as one struct, so the model gets named columns (`in_icp` is ours, not the model's)."""
    return F.struct(*[column for column in features.columns if column not in RANKING_COLUMNS])


def _score_udf(scorer: TieringModel, version: str):
    """The driver's resolved model, business configuration applied (`resolve_model`), as a pandas UDF returning
    score records: the executors score with exactly this scorer, shipped with the function, through the pandas
    engine's own `score_features`, and label the records with the pinned version."""
    rules = TieringModel.rules_only(scorer.config)
    # Rules-only records of an empty book have the score records' columns and types, learned or not.
    empty = book_features(empty_book(), rules.scorer, pd.Timestamp(0))
    model_input = empty.drop(columns=[column for column in RANKING_COLUMNS if column in empty.columns])
    result_type = spark_schema(rules.score_features(model_input, by_capacity=False))
    # The driver loaded the model with its code checked; a worker must run that same code to score it.
    driver_code = scoring_code_digests() if scorer.is_learned else None

    # pyspark's stubs type only the functionType forms of pandas_udf, not this type-hint form (Spark 3's own).
    @F.pandas_udf(result_type)  # type: ignore[call-overload]
    def score(rows: pd.DataFrame) -> pd.DataFrame:
        check_scoring_code(driver_code)
        return scorer.score_features(rows, by_capacity=False, model_version=version)

    return score


def write_parquet(spark: SparkSession, frame: DataFrame, out: str) -> None:
    """Write a Parquet folder beside `out`, then swap it in: a failed run leaves the previous scores intact."""
    target, staging = _hadoop_path(spark, out), _hadoop_path(spark, f"{out.rstrip('/')}.partial-{uuid.uuid4().hex[:8]}")
    filesystem = _filesystem(spark, out)
    try:
        frame.write.parquet(staging.toString())
        filesystem.delete(target, True)
        filesystem.rename(staging, target)
    finally:
        filesystem.delete(staging, True)
