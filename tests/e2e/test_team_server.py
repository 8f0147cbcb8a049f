"""Against a real team MLflow server: `mlflow server` with its tracking store, registry and artifact
proxy (`--serve-artifacts`) on 127.0.0.1 and a free port, started and stopped by each test.

Training takes most of a test's time, so the module trains version 1 against a fresh server once (`first_training`)
and the tests that start from that champion each run their own server on a copy of its store and artifacts.

train -> register -> gate -> score -> serve (following the alias) -> promote -> rollback, all over HTTP; then what a
team meets: the server stopped in the middle of training, the server restarting while `tiering serve` runs, and two
`tiering train` against the server at once.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from serving.requests import ACCOUNT_EXAMPLE
from tests.mlflow_store import mlflow_template  # noqa: F401  (fixture)
from tests.trained import FAST_MODEL

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TIERING, MLFLOW = str(BIN / "tiering"), str(BIN / "mlflow")
# The small gate and the fast search: what is judged here is the tool against a team server, not the search.
TRAINING_CONFIG = {"model": {"gate": {"min_won": 10, "min_lost": 10}, **FAST_MODEL}}
KEY = "team-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, what: str, timeout: float, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except (httpx.TransportError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s" + (f":\n{log.read_text()[-3000:]}" if log else ""))


class Process:
    """A process of this test, in its own session, so stopping it stops the workers it started, and nothing else."""

    def __init__(self, command: list[str], log: Path, cwd: Path, env: dict[str, str]):
        self.command, self.log, self.cwd, self.env = command, log, cwd, env
        self.process: subprocess.Popen | None = None

    def start(self) -> Process:
        with open(self.log, "a") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class TeamServer(Process):
    def __init__(self, folder: Path, empty_store: Path | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        if empty_store is not None:  # a fresh store, migrated once for the test run (migrating costs seconds)
            shutil.copy(empty_store, folder / "server.db")
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                MLFLOW,
                "server",
                "--backend-store-uri",
                f"sqlite:///{folder / 'server.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            folder / "server.log",
            folder,
            # Its job runner (a second process, for GenAI evaluation jobs) serves nothing the tool uses.
            {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        self.artifacts = folder / "artifacts"

    def start(self) -> TeamServer:
        super().start()
        wait_for(
            lambda: httpx.get(f"{self.uri}/health", timeout=2).status_code == 200,
            "the MLflow server's /health",
            120,
            self.log,
        )
        return self


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """The export and the tiering.yaml (small gate, fast search) every command of the module reads (never written)."""
    from sources.synthetic import generate_export

    folder = tmp_path_factory.mktemp("team-book")
    generate_export(folder / "export", n_accounts=800, seed=3)
    (folder / "tiering.yaml").write_text(yaml.safe_dump(TRAINING_CONFIG))
    return folder


def working_folder(folder: Path, book: Path) -> Path:
    """A folder to run commands in, with the module's export (linked) and tiering.yaml in it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export").symlink_to(book / "export", target_is_directory=True)
    shutil.copy(book / "tiering.yaml", folder / "tiering.yaml")
    return folder


def command_env(server: TeamServer) -> dict[str, str]:
    """The environment of a command pointed at the server."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIERING_")}
    env.update(MLFLOW_TRACKING_URI=server.uri, OMP_NUM_THREADS="1")
    return env


@dataclass(frozen=True)
class FirstTraining:
    server: Path  # the stopped server's folder (server.db, artifacts/), copied by each test that starts from it
    folder: Path  # where `tiering train` ran
    champion: str


@pytest.fixture(scope="module")
def first_training(tmp_path_factory, book, mlflow_template) -> FirstTraining:  # noqa: F811
    """`tiering train` against a fresh team server, once for the module: version 1, champion."""
    folder = working_folder(tmp_path_factory.mktemp("first-training"), book)
    server = TeamServer(folder / "server", mlflow_template).start()
    try:
        env = command_env(server)
        champion = champion_after_training(train(env, folder), env, folder)
    finally:
        server.stop()
    return FirstTraining(folder / "server", folder, champion)


@pytest.fixture
def team(tmp_path, book, mlflow_template):  # noqa: F811
    """A running fresh team server, a folder with the export and a small-gate config, and the environment of a
    command pointed at the server."""
    working_folder(tmp_path, book)
    server = TeamServer(tmp_path / "server", mlflow_template).start()
    try:
        yield server, tmp_path, command_env(server)
    finally:
        server.stop()


@pytest.fixture
def team_with_champion(tmp_path, book, first_training):
    """As `team`, the server running on a copy of `first_training`'s store and artifacts: version 1 is champion."""
    working_folder(tmp_path, book)
    shutil.copytree(first_training.server, tmp_path / "server", ignore=shutil.ignore_patterns("server.log"))
    server = TeamServer(tmp_path / "server").start()
    try:
        yield server, tmp_path, command_env(server)
    finally:
        server.stop()


def tiering(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([TIERING, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    result.words = " ".join((result.stdout + result.stderr).split())
    return result


def registry(env: dict[str, str]):
    """The server's registry as the tool sees it: (versions, champion version, champion history)."""
    from scoring import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        registry.configure()
        champion = registry.alias_version(registry.CHAMPION)
        return (
            [v.version for v in registry.versions()],
            champion.version if champion else None,
            registry.champion_history(),
        )


def train(env, folder) -> subprocess.CompletedProcess:
    return tiering(env, folder, "train", str(folder / "export"), "--config", str(folder / "tiering.yaml"))


def champion_after_training(result, env, folder) -> str:
    """Version 1 champion: by the gate when it passes, else promoted by hand (the gate's own tests judge the gate)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Version 1 " in result.words and "as_of " in result.words
    if "Version 1 promoted to champion" not in result.words:
        assert tiering(env, folder, "promote", "1").returncode == 0
    return "1"


def serve(env, folder) -> tuple[Process, int]:
    """`tiering serve` on a free port, and that port. A port found free can be taken before the service binds it
    (other processes' connections draw from the same range): the service then ends at once, and another is tried."""
    for _ in range(3):
        port = free_port()
        process = Process(
            [TIERING, "serve", "--host", "127.0.0.1", "--port", str(port)],
            folder / f"serve-{port}.log",
            folder,
            {
                **env,
                "TIERING_RELOAD_SECONDS": "1",
                "TIERING_API_KEY": f"{KEY}\n",
                "BENTOML_HOME": str(folder / "bentoml"),
            },
        ).start()
        answer = functools.partial(_serve_state, process, f"http://127.0.0.1:{port}")
        if wait_for(answer, "tiering serve's /readyz", 180, process.log) == "ready":
            return process, port
        if "Address already in use" not in process.log.read_text():
            pytest.fail(f"tiering serve ended:\n{process.log.read_text()[-3000:]}")
    pytest.fail("tiering serve found each of three free ports taken before it could bind it")


def _serve_state(process: Process, base: str) -> str | None:
    """ "ended" once the service has ended, "ready" once it answers /readyz, else None."""
    assert process.process is not None
    if process.process.poll() is not None:
        return "ended"
    return "ready" if httpx.get(f"{base}/readyz", timeout=2).status_code == 200 else None


def model_info(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/model", headers={"authorization": f"Bearer {KEY}"}, timeout=10).json()


def scored_version(port: int) -> str:
    answer = httpx.post(
        f"http://127.0.0.1:{port}/score",
        json={"accounts": [ACCOUNT_EXAMPLE]},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


def register_copy(env, version: str) -> str:
    """A new version with the same model files (a retraining without the training time), through the server."""
    from scoring import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        registry.configure()
        original = registry.client().get_model_version(registry.MODEL_NAME, version)
        model_id = original.model_id or (
            original.source.removeprefix("models:/") if original.source.startswith("models:/") else None
        )
        copy = registry.client().create_model_version(
            registry.MODEL_NAME, source=original.source, run_id=original.run_id, model_id=model_id
        )
        return str(copy.version)


def test_train_register_gate_score_serve_promote_rollback_over_http(first_training, team_with_champion):
    server, folder, env = team_with_champion
    champion = first_training.champion  # `tiering train` against a fresh server made it
    versions, alias, history = registry(env)
    assert versions == ["1"] and alias == champion and history == ["1"]
    assert any((first_training.server / "artifacts").rglob("MLmodel")), "the model files went through the proxy"
    trained_in = first_training.folder
    assert not (trained_in / "models").exists() and not (trained_in / "mlruns").exists()  # nothing written locally

    scored = tiering(env, folder, "score", str(folder / "export"), "--out", str(folder / "scores.csv"))
    assert scored.returncode == 0, scored.words
    assert set(pd.read_csv(folder / "scores.csv", dtype=str)["model_version"]) == {"1"}

    service, port = serve(env, folder)
    try:
        assert scored_version(port) == "1" and model_info(port)["alias"] == "champion"
        newer = register_copy(env, "1")
        assert tiering(env, folder, "promote", newer).words == f"champion: 1 -> {newer}"
        wait_for(lambda: scored_version(port) == newer, f"the service following the promotion to {newer}", 30)
        assert model_info(port)["version"] == newer
        assert tiering(env, folder, "rollback").words == f"champion: {newer} -> 1"
        wait_for(lambda: scored_version(port) == "1", "the service following the rollback", 30)
        assert registry(env)[1:] == ("1", ["1"])
    finally:
        service.stop()


def test_the_server_restarting_while_the_service_runs(team_with_champion):
    # The service keeps answering with the champion it loaded, /readyz stays ready, /model says it cannot read the
    # registry, and it follows the alias again once the server is back.
    server, folder, env = team_with_champion
    service, port = serve(env, folder)
    try:
        server.stop()
        assert scored_version(port) == "1"
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        info = wait_for(
            lambda: (lambda i: i if i["problem"] else None)(model_info(port)),
            "/model reporting the unreachable registry",
            30,
        )
        assert f"cannot read the MLflow registry at {server.uri}" in info["problem"]
        assert "still serving version 1, loaded earlier" in info["problem"] and info["version"] == "1"
        server.start()
        wait_for(lambda: model_info(port)["problem"] is None, "/model seeing the registry again", 60)
        newer = register_copy(env, "1")
        assert tiering(env, folder, "promote", newer).returncode == 0
        wait_for(lambda: scored_version(port) == newer, "the service following the alias after the restart", 30)
        assert tiering(env, folder, "rollback").returncode == 0
    finally:
        service.stop()


def test_the_server_stopping_in_the_middle_of_training(team_with_champion):
    # One clear message and exit 2; the champion is untouched, no version is half-registered, and training again once
    # the server is back succeeds.
    server, folder, env = team_with_champion
    before = registry(env)
    assert before[:2] == (["1"], "1")
    log = folder / "train-interrupted.log"
    training = Process(
        [TIERING, "train", str(folder / "export"), "--config", str(folder / "tiering.yaml")], log, folder, env
    ).start()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name("abm-tiering").experiment_id

    def started():
        if training.process.poll() is not None:
            pytest.fail(f"tiering train ended before its run started:\n{log.read_text()[-3000:]}")
        return client.search_runs([experiment], "attributes.status = 'RUNNING'")

    wait_for(started, "the training run to start", 120, log)
    server.stop()
    training.process.wait(timeout=120)
    output = " ".join(log.read_text().split())
    assert training.process.returncode == 2, output[-3000:]
    assert f"the MLflow store at {server.uri} stopped answering" in output
    assert "this command did not change the champion" in output and "is left unfinished on the server" in output
    assert "Traceback" not in output and "unexpected error" not in output
    server.start()
    assert registry(env) == before
    again = train(env, folder)
    assert again.returncode == 0, again.words[-3000:]
    versions, alias, _ = registry(env)
    assert versions == [*before[0], str(int(before[0][-1]) + 1)] and alias is not None


def test_two_trainings_against_the_server_at_once(team):
    server, folder, env = team
    command = [TIERING, "train", str(folder / "export"), "--config", str(folder / "tiering.yaml")]
    runs = [Process(command, folder / f"train-{i}.log", folder, env).start() for i in range(2)]
    for run in runs:
        run.process.wait(timeout=300)
        assert run.process.returncode == 0, run.log.read_text()[-3000:]
    versions, alias, history = registry(env)
    assert versions == ["1", "2"]
    assert alias is None or alias in versions
    if alias is not None:
        assert history[-1] == alias
