"""The registry under concurrent and careless use: promotions and rollbacks at once,
a second rollback, a champion whose model files are gone, and two trainings on a fresh store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from scoring import registry
from scoring.registry import ChampionEvent, replay
from tests.trained import FAST_MODEL, SMALL_GATE

runner = CliRunner()
TIERING = str(Path(sys.executable).parent / "tiering")


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def store(trained_model, tmp_path, monkeypatch):
    """A private copy of the trained model's registry with versions 1 (champion) to 5 (copies of 1, never champion)."""
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(trained_model.tracking_uri.removeprefix("sqlite:///"), folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    registry.configure()
    original = registry.client().get_model_version(registry.MODEL_NAME, trained_model.version)
    for _ in range(4):
        registry.client().create_model_version(registry.MODEL_NAME, source=original.source, run_id=original.run_id)
    assert registry.alias_version(registry.CHAMPION).version == "1"
    return folder


def run_at_once(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start every command, then wait for all: they run at the same time."""
    processes = [
        subprocess.Popen(
            [TIERING, *command],
            cwd=cwd,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    ]
    results = []
    for process, command in zip(processes, commands):
        output, _ = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(command, process.returncode, output))
    return results


# --- the history's rules, by hand ------------------------------------------------------------------------


def event(kind: str, version: str, previous: str | None, n: int) -> ChampionEvent:
    return ChampionEvent(f"champion_event.{n:020d}", kind, version, previous)


def test_replaying_events_gives_the_history_by_hand():
    events = [
        event("promote", "2", "1", 1),
        event("promote", "3", "2", 2),
        event("rollback", "2", "3", 3),
        event("promote", "4", "2", 4),
    ]
    assert replay(["1"], events) == ["1", "2", "4"]
    # Two rollbacks of the same champion at once (on a server, where no lock orders them): the second changes nothing.
    twice = [event("promote", "2", "1", 1), event("rollback", "1", "2", 2), event("rollback", "1", "2", 3)]
    assert replay(["1"], twice) == ["1"]
    # A rollback pops every trailing entry of the champion it rolls back from.
    assert replay(["1", "3", "3"], [event("rollback", "1", "3", 1)]) == ["1"]
    # Two promotions at once are both kept, in the order they were written.
    assert replay(["1"], [event("promote", "3", "1", 1), event("promote", "2", "1", 2)]) == ["1", "3", "2"]


# --- promote and rollback at once ------------------------------------------------------------------------


@pytest.mark.slow
def test_promotions_at_once_lose_no_move_and_the_alias_ends_on_the_latest(store, tmp_path):
    results = run_at_once([["promote", version] for version in ("2", "3", "4", "5")], tmp_path)
    for result in results:
        assert result.returncode == 0, result.stdout
    history = registry.champion_history()
    assert history[0] == "1" and sorted(history[1:]) == ["2", "3", "4", "5"]  # every promotion is in the history
    assert registry.alias_version(registry.CHAMPION).version == history[-1]
    # Each command saw the champion just before it: the moves chain, one after the other (the lock orders them).
    moves = dict(tuple(words(result.stdout).removeprefix("champion: ").split(" -> ")) for result in results)
    chain, at = ["1"], "1"
    while at in moves:
        at = moves.pop(at)
        chain.append(at)
    assert chain == history and moves == {}


@pytest.mark.slow
def test_rollbacks_at_once_each_go_one_step_back(store, tmp_path):
    for version in ("2", "3", "4"):
        assert runner.invoke(app, ["promote", version]).exit_code == 0
    results = run_at_once([["rollback"], ["rollback"]], tmp_path)
    assert [r.returncode for r in results] == [0, 0], [r.stdout for r in results]
    assert sorted(words(r.stdout) for r in results) == ["champion: 3 -> 2", "champion: 4 -> 3"]
    assert registry.alias_version(registry.CHAMPION).version == "2"
    assert registry.champion_history() == ["1", "2"]


def test_a_second_rollback_says_what_happened_not_that_there_was_one_champion(store):
    assert words(runner.invoke(app, ["promote", "2"]).output) == "champion: 1 -> 2"
    assert words(runner.invoke(app, ["rollback"]).output) == "champion: 2 -> 1"
    second = runner.invoke(app, ["rollback"])
    assert second.exit_code == 2
    assert words(second.output) == (
        "error: version 1 is the earliest champion left in the history (version 2 was "
        "champion too and has been rolled back): nothing to roll back to. tiering "
        "promote VERSION makes any registered version champion"
    )
    assert registry.alias_version(registry.CHAMPION).version == "1"


def test_rollback_with_only_one_champion_ever(store):
    result = runner.invoke(app, ["rollback"])
    assert result.exit_code == 2 and words(result.output) == (
        "error: version 1 is the only champion there has been; nothing to roll back to"
    )


def test_the_lock_file_sits_next_to_the_local_store(store):
    assert runner.invoke(app, ["promote", "2"]).exit_code == 0
    assert (store / "mlflow.db.lock").is_file()


# --- a champion whose model files are gone ---------------------------------------------------------------


def local_folder(version: str) -> Path:
    return Path(unquote(urlparse(registry.client().get_model_version_download_uri(registry.MODEL_NAME, version)).path))


def test_a_champion_without_its_model_files_is_named_with_the_missing_folder(store, trained_model, tmp_path):
    copy = tmp_path / "copied-model"
    shutil.copytree(local_folder(trained_model.version), copy)
    broken = registry.client().create_model_version(registry.MODEL_NAME, source=str(copy), run_id=None).version
    assert runner.invoke(app, ["promote", str(broken)]).exit_code == 0
    shutil.rmtree(copy)

    expected = (
        f"error: champion version {broken} cannot be loaded: its model files are missing from {copy} "
        "(no such folder). Restore them, or make another version champion: tiering rollback, or tiering "
        "promote VERSION"
    )
    scored = runner.invoke(app, ["score", str(trained_model.data_dir), "--out", str(tmp_path / "s.csv")])
    assert scored.exit_code == 2 and expected in words(scored.output), scored.output
    compared = runner.invoke(app, ["compare", str(trained_model.data_dir), "--out", str(tmp_path / "report")])
    assert compared.exit_code == 2 and expected in words(compared.output), compared.output
    by_uri = runner.invoke(
        app,
        [
            "score",
            str(trained_model.data_dir),
            "--out",
            str(tmp_path / "s.csv"),
            "--model",
            f"models:/abm-tiering/{broken}",
        ],
    )
    assert (
        by_uri.exit_code == 2
        and f"model version {broken} cannot be loaded: its model files are missing from {copy}" in words(by_uri.output)
    )
    assert "unexpected error" not in scored.output + compared.output + by_uri.output
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "report").exists()
    # Rolling back repairs it.
    assert words(runner.invoke(app, ["rollback"]).output) == f"champion: {broken} -> 1"


# --- two trainings on a fresh store ----------------------------------------------------------------------


@pytest.mark.slow
def test_two_trainings_on_a_fresh_store_at_once_both_succeed(tmp_path, monkeypatch):
    from sources.synthetic import generate_export

    data = tmp_path / "export"
    generate_export(data, n_accounts=800, seed=3)
    config = tmp_path / "tiering.yaml"
    # The fast search: the subject is two commands creating one store at once, not the learner search.
    config.write_text(yaml.safe_dump({"model": {**SMALL_GATE["model"], **FAST_MODEL}}))
    store = tmp_path / "fresh"  # does not exist yet: both commands find no store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    results = run_at_once([["train", str(data), "--config", str(config)]] * 2, tmp_path)
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:]
        assert "alembic" not in result.stdout.lower() and "Traceback" not in result.stdout
    registry.configure()
    assert [v.version for v in registry.versions()] == ["1", "2"]
