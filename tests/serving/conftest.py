"""Fixtures for the service tests: one trained champion per test session, copied per test that needs it.

Training takes seconds, so it happens once, even under pytest-xdist (workers share it through a lock
file); a fresh SQLite store costs seconds of migrations, so an empty one is also made once and copied.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from configuration.tiering import parse_config
from features.schema import CrmData
from ingest.io import load_export
from scoring import registry
from sources.synthetic import generate_export

if TYPE_CHECKING:
    from starlette.testclient import TestClient

FAST_TRAINING = {
    "model": {"num_boost_round": 30, "extra_features": ["segment_hint"], "gate": {"min_won": 10, "min_lost": 10}}
}
SEED = 11


@dataclass(frozen=True)
class TrainedStore:
    folder: Path  # holds mlflow.db and the artifacts; never modified after the session fixture made it
    data_dir: Path
    version: str


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@contextlib.contextmanager
def tracking_at(folder: Path) -> Iterator[None]:
    """MLflow pointed at the store in `folder`: the environment variable for the block, and MLflow's own
    setting, which wins over the variable (an earlier test in this worker may have set it). The setting is
    left in place afterwards, as `registry.configure()` leaves it: a service started in the block keeps
    reading this store."""
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
        mlflow.set_tracking_uri(sqlite_uri(folder))
        mlflow.set_registry_uri(sqlite_uri(folder))
        yield


def _made_once(tmp_path_factory, worker_id: str, name: str, make: Callable[[Path], None]) -> Path:
    """A folder built by `make` once per test run, shared by the xdist workers of that run."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # every xdist worker has its own basetemp under the run's folder
        root = root.parent
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".done").touch()
    return folder


def train_champion(folder: Path) -> None:
    from training.workflow import promote, train_and_register

    generate_export(folder / "data", n_accounts=1500, seed=SEED)
    data = load_export(folder / "data").data
    with tracking_at(folder / "store"):
        outcome = train_and_register(data, parse_config(FAST_TRAINING), None, lambda step: None)
        if not outcome.decision.promote:
            promote(outcome.version)
    (folder / "version").write_text(outcome.version)


def _empty_store(folder: Path) -> None:
    with tracking_at(folder):
        registry.configure()  # runs the migrations


@pytest.fixture(scope="session")
def trained(tmp_path_factory, worker_id) -> TrainedStore:
    folder = _made_once(tmp_path_factory, worker_id, "trained-champion", train_champion)
    return TrainedStore(folder / "store", folder / "data", (folder / "version").read_text())


@pytest.fixture(scope="session")
def export(trained) -> CrmData:
    return load_export(trained.data_dir).data


@pytest.fixture(scope="session")
def empty_template(tmp_path_factory, worker_id) -> Path:
    return _made_once(tmp_path_factory, worker_id, "empty-store", _empty_store)


def metrics_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test process's one PROMETHEUS_MULTIPROC_DIR, for every app it builds: BentoML's /metrics reads the folder
    the process's first app was built with and keeps it, while later apps write to the variable's folder (a test in
    another folder that built the first app with its own folder left /metrics empty for the service tests)."""
    folder = tmp_path_factory.getbasetemp() / "prometheus"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session", autouse=True)
def prometheus_dir(tmp_path_factory) -> Iterator[None]:
    # BentoML's /metrics needs it, and reads it when the first app is built.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_folder(tmp_path_factory)))
        patch.setenv("BENTOML_DO_NOT_TRACK", "true")
        yield


@pytest.fixture
def champion_store(trained, tmp_path, monkeypatch) -> Path:
    """This test's own copy of the registry (the artifacts it points at are shared, read-only)."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(trained.folder / "mlflow.db", folder / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
    return folder


@pytest.fixture
def empty_store(empty_template, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "empty-store"
    folder.mkdir()
    shutil.copy(empty_template / "mlflow.db", folder / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(folder))
    return folder


@functools.cache
def built_in_defaults_file() -> Path:
    """A tiering.yaml with no keys (the built-in defaults), one per test process."""
    path = Path(tempfile.mkdtemp(prefix="tiering-defaults-")) / "tiering.yaml"
    path.write_text("{}\n")
    return path


@contextlib.contextmanager
def serving(store: Path, **env: str) -> Iterator[TestClient]:
    """The service in-process on `store`; it follows no alias moves unless TIERING_RELOAD_SECONDS is given."""
    with warnings.catch_warnings():  # starlette asks for httpx2, which the lock does not have yet
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from serving.service import TieringService

    with tracking_at(store), pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIERING_RELOAD_SECONDS", "3600")
        patch.delenv("TIERING_API_KEY", raising=False)
        # The service reads its business configuration when it loads a model: the built-in defaults (what the test
        # models were trained with) unless a test names a file, whatever folder or environment the run is in.
        patch.setenv("TIERING_CONFIG", str(built_in_defaults_file()))
        for name, value in env.items():
            patch.setenv(name, value)
        _forget_bentoml_metrics()
        with TestClient(TieringService.to_asgi(), raise_server_exceptions=False) as client:
            yield client


def _forget_bentoml_metrics() -> None:
    """Let one test process build many BentoML apps.

    Each app registers its request metrics in prometheus_client's global registry, which refuses a
    second registration. In multiprocess mode `/metrics` reads the values from PROMETHEUS_MULTIPROC_DIR,
    not from that registry, so dropping the earlier apps' entries loses nothing.
    """
    from prometheus_client import REGISTRY

    # prometheus_client has no public list of a registry's collectors (and the service's gc.freeze() hides
    # them from gc.get_objects()): this private mapping is the one way, in tests only. An upgrade that
    # renames it fails here loudly, with an AttributeError, never silently.
    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)


def register_copy_of(version: str) -> str:
    """A new registered version with the same artifacts: a retrained model without the training time."""
    original = registry.client().get_model_version(registry.MODEL_NAME, version)
    copy = registry.client().create_model_version(registry.MODEL_NAME, source=original.source, run_id=original.run_id)
    return str(copy.version)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def subset(data: CrmData, account_ids: list[str]) -> CrmData:
    """The export restricted to some accounts: what a client sending just those accounts describes."""
    wanted = set(account_ids)
    return CrmData(
        **{
            name: data.table(name)[data.table(name)["account_id"].isin(wanted)].reset_index(drop=True)
            for name in ("accounts", "opportunities", "engagement", "intent")
        }
    )
