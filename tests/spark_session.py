"""One Spark session for a test process, shared by every Spark test file (the root conftest registers the fixture):
a session's start and its Python workers' first imports cost seconds each time, and `tiering ... --engine spark` run
in-process uses the running session rather than starting its own (`scoring.spark.spark_session`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER = "local[2]"  # the commands' default --spark-master, so they run on the shared session


@pytest.fixture(scope="session")
def spark_sessions() -> Iterator[contextlib.ExitStack]:
    """The sessions the `spark` fixture started, stopped when the test process ends."""
    with contextlib.ExitStack() as sessions:
        yield sessions


@pytest.fixture
def spark(spark_sessions: contextlib.ExitStack) -> SparkSession:
    """The process's running Spark session, started (and left running) if none runs: a test that needs a session of
    its own stops this one first (`no_running_spark`)."""
    from pyspark.sql import SparkSession

    from scoring.spark import spark_session

    running = SparkSession.getActiveSession()
    if running is None:
        running = spark_sessions.enter_context(spark_session(MASTER, "abm-tiering tests"))
    return running


@pytest.fixture
def no_running_spark() -> None:
    """No Spark session runs when the test starts: its command starts (and stops) one with the test's environment."""
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    if running is not None:
        running.stop()
