"""`tiering serve` as a real process: every endpoint over HTTP, and a live switch when the alias moves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from scoring import registry
from serving.requests import ACCOUNT_EXAMPLE

from .conftest import free_port, register_copy_of, sqlite_uri

KEY = "live-test-key"
RELOAD_SECONDS = 1
TIERING = str(Path(sys.executable).parent / "tiering")


def wait_until_ready(process: subprocess.Popen, base_url: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tiering serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"tiering serve was not ready within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def live_server(champion_store, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": sqlite_uri(champion_store),
        "TIERING_API_KEY": KEY,
        "TIERING_RELOAD_SECONDS": str(RELOAD_SECONDS),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
    }
    with open(log, "w") as output:
        process = subprocess.Popen(
            [TIERING, "serve", "--host", "127.0.0.1", "--port", str(port), "--access-log"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base_url, log)
        yield base_url, log
    finally:
        os.kill(process.pid, signal.SIGTERM)  # the CLI exec'd BentoML: this pid is the server
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_tiering_serve_answers_over_http_and_follows_a_promotion(live_server, trained):
    base_url, log = live_server
    http = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    body = {"accounts": [ACCOUNT_EXAMPLE]}

    assert httpx.get(f"{base_url}/healthz").status_code == 200 and httpx.get(f"{base_url}/livez").status_code == 200
    assert httpx.post(f"{base_url}/score", json=body).status_code == 401
    assert http.post("/score", json=body).json()["scores"][0]["model_version"] == trained.version
    assert http.post("/tier", json={**body, "budget": 100}).json()["tiers"][0]["tier"] == "tier_1"
    assert http.get("/model").json()["version"] == trained.version
    assert "bentoml_service_request_total" in http.get("/metrics").text

    registry.configure()
    newer = register_copy_of(trained.version)
    statuses: list[tuple[int, str]] = []
    stop = threading.Event()

    def keep_scoring() -> None:  # requests in flight while the model is swapped must not fail
        with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {KEY}"}, timeout=30) as client:
            while not stop.is_set():
                answer = client.post("/score", json=body)
                statuses.append((answer.status_code, answer.json()["model_version"]))

    scorer = threading.Thread(target=keep_scoring)
    scorer.start()
    try:
        promoted = CliRunner().invoke(app, ["promote", newer])
        assert promoted.exit_code == 0, promoted.output
        moved_at = time.monotonic()
        while http.get("/model").json()["version"] != newer:
            assert time.monotonic() - moved_at < 30, "the service did not switch within 30 s"
            time.sleep(0.2)
        switch_seconds = time.monotonic() - moved_at
        time.sleep(0.5)
    finally:
        stop.set()
        scorer.join()

    assert switch_seconds < RELOAD_SECONDS + 10
    assert {status for status, _ in statuses} == {200}
    assert statuses[-1][1] == newer and {version for _, version in statuses} <= {trained.version, newer}
    assert http.post("/score", json=body).json()["model_version"] == newer
    written = log.read_text()
    assert "path=/score" in written and "status=200" in written  # --access-log: one line per request
    assert KEY not in written


def test_serve_refuses_to_listen_beyond_loopback_without_a_key(monkeypatch):
    monkeypatch.delenv("TIERING_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "TIERING_API_KEY" in result.output and "127.0.0.1" in result.output
