"""Shared test helpers: a small valid canonical export to break one way at a time."""

from __future__ import annotations

import os

# pytest-xdist runs one worker per core: one OpenMP thread each, or LightGBM's threads fight over the
# cores and spin (much slower than single-threaded).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Waiting OpenMP threads sleep rather than spin: with two workers on two cores (and Spark's JVM beside them), spinning
# measured 1.7 times the CPU of the same training tests.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Spark's JVM runs seconds of small jobs here, never long enough for the optimising compiler to pay for itself: with
# the client compiler only it spent 21 s of CPU on two scorings of an 800-account book instead of 38 s (and the
# first took 25 s of wall time, not 35). Not the product's setting: a cluster's long jobs want both compilers.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1")

from collections.abc import Callable
from pathlib import Path

import pytest

from features.errors import DataError, Problem
from ingest.io import load_export
from tests.spark_session import no_running_spark, spark, spark_sessions  # noqa: F401  (fixtures for every folder)
from tests.trained import demo_training, family_trainings, model_store, trained_model  # noqa: F401  (fixtures for every folder)

# Rows are numbered as a spreadsheet shows them: the header is row 1, O1 is row 2.
VALID_EXPORT: dict[str, str] = {
    "accounts.csv": (
        "account_id,account_name,industry,employees,annual_revenue,country\n"
        "A1,Acme,software,500,1000000,United States\n"
        "A2,Beta,healthcare,2000,50000000,Germany\n"
        "A3,Gamma,retail,50,200000,France\n"
    ),
    "opportunities.csv": (
        "opportunity_id,account_id,created_date,close_date,outcome,amount,product\n"
        "O1,A1,2024-01-05,2024-02-10,won,12000,Core\n"
        "O2,A1,2024-02-01,2024-03-15,lost,0,Core\n"
        "O3,A2,2024-03-01,,open,,Add-on\n"
        "O4,A2,2024-01-10,2024-04-01,won,30000,Core\n"
    ),
    "engagement.csv": (
        "account_id,timestamp,channel,count\nA1,2024-01-01T10:00:00,web_visit,3\nA2,2024-01-02 09:30:00,email_open,1\n"
    ),
    "intent.csv": "account_id,date,topic,score\nA1,2024-01-03,crm software,80\n",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests (trainings, processes) first: under pytest-xdist the long ones start early and the short ones fill
    in around them, rather than one long test running alone at the end. With --dist loadfile a file goes to a worker
    where its first test stands here, and only as long as xdist does not reorder the files (--no-loadscope-reorder
    in pyproject's addopts)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def tiering_environment_restored():
    """Every TIERING_* variable as it was before the test: `tiering serve --config`, run in-process by a test, sets
    TIERING_CONFIG for its workers, and a later test in the same worker would read another configuration."""
    before = {name: value for name, value in os.environ.items() if name.startswith("TIERING_")}
    yield
    for name in [name for name in os.environ if name.startswith("TIERING_") and name not in before]:
        del os.environ[name]
    os.environ.update(before)


@pytest.fixture
def write_export(tmp_path: Path) -> Callable[..., Path]:
    """write_export({name: content}): the valid export with files replaced (text or bytes) or removed (None)."""

    def write(changes: dict[str, str | bytes | None] | None = None, folder: str = "export") -> Path:
        target = tmp_path / folder
        target.mkdir(parents=True, exist_ok=True)
        for name, content in {**VALID_EXPORT, **(changes or {})}.items():
            if content is None:
                continue
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return target

    return write


@pytest.fixture
def problems_of() -> Callable[..., list[Problem]]:
    """problems_of(folder, mapping=None, severity="error"): the problems load_export raises (it must raise)."""

    def problems(folder: Path, mapping: str | Path | None = None, severity: str | None = "error") -> list[Problem]:
        with pytest.raises(DataError) as raised:
            load_export(folder, mapping)
        return [p for p in raised.value.problems if severity is None or p.severity == severity]

    return problems
