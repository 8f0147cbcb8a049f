"""`tiering serve` start-up as a real process: a port in use and bad environment settings stop it at once with one
message and exit 2, instead of a 57-line traceback or workers restarting in a loop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import free_port, sqlite_uri

TIERING = str(Path(sys.executable).parent / "tiering")
START_SECONDS = 60  # a refusal comes in seconds; a server that starts (or hangs) would still be running by then


def start_serve(tmp_path: Path, store: Path, *args: str, **env: str) -> tuple[int, str, float]:
    """Run `tiering serve` in its own session; (exit code, output, seconds). A server still running at the
    deadline is stopped (its whole session: the workers it started) and the test fails."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("TIERING_") and name != "MLFLOW_TRACKING_URI"
    }
    environment.update(MLFLOW_TRACKING_URI=sqlite_uri(store), BENTOML_HOME=str(tmp_path / "bentoml"), **env)
    started = time.monotonic()
    process = subprocess.Popen(
        [TIERING, "serve", *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=START_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"tiering serve was still running after {START_SECONDS} s:\n{output[-2000:]}")
    return process.returncode, output, time.monotonic() - started


def assert_one_message(code: int, output: str, *expected: str) -> None:
    text = " ".join(output.split())
    assert code == 2, output
    assert "Traceback" not in output and "unexpected error" not in output, output
    for part in expected:
        assert part in text, output
    assert len(output.strip().splitlines()) <= 4, output


@pytest.mark.slow
def test_a_port_in_use_is_one_message_and_exit_2(empty_template, tmp_path):
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        code, output, seconds = start_serve(tmp_path, empty_template, "--port", str(port))
    assert_one_message(
        code, output, f"port {port} on 127.0.0.1 is already in use by another process", "pass another --port"
    )
    assert seconds < 30


@pytest.mark.slow
def test_a_host_that_is_not_this_machines_is_one_message(empty_template, tmp_path):
    code, output, _ = start_serve(
        tmp_path, empty_template, "--host", "192.0.2.1", "--port", str(free_port()), TIERING_API_KEY="k"
    )
    assert_one_message(code, output, "--host 192.0.2.1 is not an address of this machine")


BAD_SETTINGS = {
    "reload not a number": ({"TIERING_RELOAD_SECONDS": "abc"}, "TIERING_RELOAD_SECONDS='abc'"),
    "reload zero": ({"TIERING_RELOAD_SECONDS": "0"}, "TIERING_RELOAD_SECONDS='0': Input should be greater than 0"),
    "reload negative": ({"TIERING_RELOAD_SECONDS": "-5"}, "TIERING_RELOAD_SECONDS='-5'"),
    "reload infinite": (
        {"TIERING_RELOAD_SECONDS": "inf"},
        "TIERING_RELOAD_SECONDS='inf': Input should be a finite number",
    ),
    "reload NaN": ({"TIERING_RELOAD_SECONDS": "nan"}, "TIERING_RELOAD_SECONDS='nan'"),
    "body timeout": ({"TIERING_BODY_TIMEOUT_SECONDS": "soon"}, "TIERING_BODY_TIMEOUT_SECONDS='soon'"),
    "access log": ({"TIERING_ACCESS_LOG": "maybe"}, "TIERING_ACCESS_LOG='maybe': Input should be a valid boolean"),
    "blank key": ({"TIERING_API_KEY": "  \n"}, "TIERING_API_KEY: is blank: unset it, or give the key"),
    "key with a line break": ({"TIERING_API_KEY": "abc\ndef"}, "TIERING_API_KEY: holds a line break"),
    "missing config": ({"TIERING_CONFIG": "/nonexistent/tiering.yaml"}, "TIERING_CONFIG='/nonexistent/tiering.yaml'"),
    "misspelt key": (
        {"TIERING_API_KEYS": "secret"},
        "TIERING_API_KEYS: no such setting (did you mean TIERING_API_KEY?)",
    ),
    "notebook date": ({"TIERING_AS_OF": "1700000000"}, "TIERING_AS_OF='1700000000': not a date"),
    "notebook budget": ({"TIERING_BUDGET": "1e309"}, "TIERING_BUDGET='1e309'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("env, expected", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_bad_environment_setting_stops_serve_at_once(env, expected, empty_template, tmp_path):
    code, output, seconds = start_serve(tmp_path, empty_template, "--port", str(free_port()), **env)
    assert_one_message(code, output, "the environment has settings tiering serve cannot use", expected)
    assert seconds < 30
    if env.get("TIERING_API_KEY", "").strip():
        assert "abc" not in output and "def" not in output  # the key is never echoed


def test_settings_read_trimmed_and_defaulted(monkeypatch):
    from ingest.settings import load_settings

    for name in list(os.environ):
        if name.startswith("TIERING_"):
            monkeypatch.delenv(name)
    defaults = load_settings()
    assert (defaults.reload_seconds, defaults.body_timeout_seconds, defaults.access_log, defaults.api_key) == (
        10.0,
        60.0,
        False,
        None,
    )
    monkeypatch.setenv("TIERING_API_KEY", " s3cret\n")
    monkeypatch.setenv("TIERING_RELOAD_SECONDS", "2.5")
    monkeypatch.setenv("TIERING_ACCESS_LOG", "on")
    monkeypatch.setenv("TIERING_BODY_TIMEOUT_SECONDS", "")  # empty counts as unset
    settings = load_settings()
    assert settings.api_key.get_secret_value() == "s3cret" and settings.reload_seconds == 2.5
    assert settings.access_log is True and settings.body_timeout_seconds == 60.0


def test_every_notebook_input_is_a_known_setting(monkeypatch):
    """The review notebook's inputs are settings too: set in the shell that later starts `tiering serve`, they must
    not stop it as unknown variables, and a bad date among them is named like any other."""
    from ingest.settings import SettingsError, check_environment

    for name in list(os.environ):
        if name.startswith("TIERING_"):
            monkeypatch.delenv(name)
    notebook_inputs = {
        "TIERING_DATA": "demo-output/data",
        "TIERING_MODEL": "models:/abm-tiering@champion",
        "TIERING_AS_OF": "2026-07-01",
        "TIERING_PAST_AS_OF": "2026-03-01",
        "TIERING_UNTIL": "2026-07-01",
        "TIERING_BUDGET": "250000",
    }
    for name, value in notebook_inputs.items():
        monkeypatch.setenv(name, value)
    settings = check_environment()
    assert (settings.past_as_of, settings.until) == ("2026-03-01", "2026-07-01")
    monkeypatch.setenv("TIERING_UNTIL", "next spring")
    with pytest.raises(SettingsError) as refused:
        check_environment()
    assert str(refused.value).startswith("TIERING_UNTIL='next spring'") and "no such setting" not in str(refused.value)


def test_only_the_scoring_routes_are_left_out_of_tracing():
    """BentoML's spans (exported nowhere by default) cost a tenth of a small answer: the four scoring routes skip
    them, by OpenTelemetry's own matching of the request URL; every other path is traced as before."""
    from opentelemetry.util.http import ExcludeList

    from serving.service import service

    excluded = ExcludeList(service.config["tracing"]["excluded_urls"])
    for path in ("/score", "/tier", "/forecast", "/alerts"):
        assert excluded.url_disabled(f"http://127.0.0.1:3000{path}")
    for path in ("/model", "/healthz", "/metrics", "/app/book", "/app/score", "/scores", "/score/x"):
        assert not excluded.url_disabled(f"http://127.0.0.1:3000{path}")
