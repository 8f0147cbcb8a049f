"""`--engine pandas|spark`: where a command's point-in-time feature rows are built, and how a Spark failure the
user can fix becomes one message (shared by `train`, `review`, `forecast` and `score`)."""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.common import UserError, err_console, load_data

if TYPE_CHECKING:
    import pandas as pd

    from configuration.tiering import TieringConfig
    from features.config import ModelConfig
    from features.schema import CrmData
    from ingest.validation import InvalidRows
    from training.rows import RowsEngine


class Engine(StrEnum):
    """Where a command's feature rows are built."""

    PANDAS = "pandas"  # this machine
    SPARK = "spark"  # a Spark cluster: reads canonical tables


SparkMasterOpt = Annotated[
    str,
    typer.Option("--spark-master", help="Spark master URL for --engine spark, e.g. spark://host:7077, yarn, k8s://..."),
]

EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="Where the point-in-time feature rows are built: pandas (this machine) or spark (a Spark cluster; "
        "reads canonical tables). Either way the learners fit, and tables and pages are written, on this machine.",
    ),
]

# Text, not Path: with --engine spark this may be a cluster URI (hdfs://, s3a://), which Path would mangle.
ExportArg = Annotated[
    str,
    typer.Argument(
        help="Folder with the export (CSV or Parquet files); with --engine spark, "
        "any folder Spark reads (local, hdfs://, s3a://...).",
        show_default=False,
    ),
]

NEEDS_PYSPARK = "--engine spark needs pyspark: pip install 'abm-tiering[spark]'"
NOT_ON_EXECUTORS = (
    "the Spark executors cannot import abm-tiering's code (No module named {module!r}): install the project on "
    "every executor, at the same version as the driver (pip install abm-tiering[spark]=={version}), or ship it "
    "with the job (spark.archives with a packed venv, --py-files, or a container image with "
    "spark.kubernetes.container.image); see docs/training.md, Training beyond one machine"
)
DEPENDENCY_NOT_ON_EXECUTORS = (
    "the Spark executors cannot import {module!r}, which abm-tiering's code needs: install the project with its "
    "dependencies (requirements.lock) on every executor, with the driver's Python version, or ship them "
    "(spark.archives with a packed venv, or a container image); see docs/training.md, Training beyond one machine"
)
_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")
_MISSING_PACKAGE = re.compile(r"(\w+) >= [\w.]+ must be installed; however, it was not found")  # PySpark's own
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "abm-tiering"


def refuse_for_spark(mapping: str | None, rows_mode: str) -> None:
    """What --engine spark cannot do, refused before Spark starts."""
    if rows_mode == "drop":
        raise UserError(
            "--engine spark reads canonical tables as they are and drops no rows; validate and run "
            "with --engine pandas to use --invalid-rows drop (or validation.invalid_rows: drop)"
        )
    if mapping:
        raise UserError(
            "--engine spark reads canonical tables (accounts, opportunities, engagement, intent as "
            ".parquet or .csv with canonical columns), without --mapping; map an export with --engine pandas"
        )


def executor_import_failure(error: BaseException) -> str | None:
    """The message for a Spark failure whose executors could not import a module the driver has (the project not
    installed there, or one of its dependencies), else None."""
    text = str(error)
    package = _MISSING_PACKAGE.search(text)
    if package is not None:  # PySpark checks pandas and PyArrow itself, on the driver and on each worker
        return DEPENDENCY_NOT_ON_EXECUTORS.format(module=package.group(1))
    found = _MISSING_MODULE.search(text)
    if found is None:
        return None
    module = found.group(1)
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return None  # the driver lacks it too: not an executor's difference
    if _is_project(top, spec.origin):
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version(DISTRIBUTION)
        except PackageNotFoundError:
            installed = "the driver's version"
        return NOT_ON_EXECUTORS.format(module=module, version=installed)
    return DEPENDENCY_NOT_ON_EXECUTORS.format(module=module)


def _is_project(package: str, origin: str) -> bool:
    """Whether a top-level package is this project's: by the installed distributions, else (run from a source
    checkout, not installed) by where it lies."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions().get(package)
    if owners:
        return DISTRIBUTION in owners
    return (PROJECT_ROOT / "pyproject.toml").is_file() and Path(origin).resolve().is_relative_to(PROJECT_ROOT)


@contextlib.contextmanager
def spark_failures() -> Iterator[None]:
    """Spark that cannot start, and executors that cannot run the project's code, said as a UserError."""
    try:
        from scoring.spark import SparkUnavailable
    except ImportError:
        raise UserError(NEEDS_PYSPARK) from None
    try:
        yield
    except SparkUnavailable as error:
        raise UserError(str(error)) from None
    except Exception as error:  # Spark raises a Py4J or PySpark error wrapping the executor's own traceback
        message = executor_import_failure(error)
        if message is None:
            raise
        raise UserError(message) from None


def spark_log_level() -> str:
    """Spark's own log on the driver for fatal errors only, unless TIERING_DEBUG=1: a failure is said once, by the
    command, where Spark's log would print the executor's Java and Python stack traces."""
    from ingest.settings import debugging

    return "WARN" if debugging() else "FATAL"


@dataclass(frozen=True)
class Export:
    """What a command reads of its export: the data on this machine and, with --engine spark, the engines that build
    the feature rows on the cluster (this machine then holds the accounts and opportunities only)."""

    data: CrmData
    latest: pd.Timestamp  # the day after the export's latest date, events included (the default cut-off)
    engine_for: Callable[[ModelConfig], RowsEngine] | None = None  # None: the pandas engine, rows built from `data`

    def rows(self, config: ModelConfig) -> RowsEngine | None:
        """The engine that builds feature rows with `config`'s feature settings; None: build them here."""
        return None if self.engine_for is None else self.engine_for(config)

    def book(self, config: ModelConfig, as_of: pd.Timestamp) -> pd.DataFrame | None:
        """Every account's feature rows as of `as_of` on the Spark engine; None: the caller builds them here."""
        engine = self.rows(config)
        if engine is None:
            return None
        from training.rows import book_rows

        return book_rows(engine.build, self.data.accounts, as_of)


@contextlib.contextmanager
def open_export(
    data: str,
    mapping: str | None,
    rows_mode: InvalidRows,
    settings: TieringConfig,
    engine: Engine,
    master: str,
    app: str,
    builds_once: bool = False,
) -> Iterator[Export]:
    """The export on the chosen engine, for as long as the command works on it (a Spark session stays open, unless
    `builds_once`: the command asks for feature rows once, with its own configuration, and Spark stops after)."""
    if engine == Engine.PANDAS:
        from features.activity import default_as_of
        from ingest.spill import spill_folder

        with spill_folder() as folder:  # the events, read in batches and held by group there
            frame = load_data(data, mapping, rows_mode, folder)
            yield Export(frame, default_as_of(frame))
        return
    refuse_for_spark(mapping, rows_mode)
    with spark_failures():
        from pyspark.sql import SparkSession

        from scoring.spark import spark_session
        from training.spark import spark_engine

        err_console.print(escape(f"starting Spark ({master}) and reading the export"), highlight=False)
        # A session this process already runs (a notebook's, a test's) is used and left running: the tables the
        # build keeps are let go on the way out, and it is not stopped after a build.
        borrowed = SparkSession.getActiveSession() is not None
        with spark_session(master, app, spark_log_level()) as spark, contextlib.ExitStack() as release:
            kept = release if borrowed else None
            driver, first = spark_engine(spark, data, settings, kept, builds_once and not borrowed)
            engines = {_feature_key(settings): first}

            def engine_for(config: ModelConfig) -> RowsEngine:
                # A model keeps the feature settings it was trained with: another configuration's rows, another engine.
                key = _feature_key(config)
                if key not in engines:
                    engines[key] = spark_engine(spark, data, config, kept)[1]
                return engines[key]

            yield Export(driver, first.latest, engine_for)


def _feature_key(config: ModelConfig) -> str:
    import json

    return json.dumps(config.prediction_settings(), sort_keys=True, default=str)
