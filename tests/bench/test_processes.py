"""bench/processes.py's set-up of the benches that time commands against a trained model: which exports it trains
on, the configuration and environment it gives the commands, and the folder it cleans up (the commands themselves
are faked: the benches run them for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import bench.processes as processes
import bench.run
from configuration.tiering import parse_config


@pytest.fixture
def commands(monkeypatch, tmp_path: Path) -> list[tuple[tuple[str, ...], dict, Path]]:
    ran: list[tuple[tuple[str, ...], dict, Path]] = []

    def fake_command(*args: str, env: dict, cwd: Path = processes.REPO) -> float:
        ran.append((args, env, cwd))
        return 2.5

    monkeypatch.setattr(processes, "tiering_seconds", fake_command)
    monkeypatch.setattr(bench.run, "dataset", lambda n: (tmp_path / f"accounts-{n}", None))
    return ran


def test_the_model_learns_from_the_training_export_with_the_fast_configuration(commands, tmp_path: Path):
    with processes.trained_setup(100_000, "--as-of", "2026-03-01") as setup:
        folder = setup.folder
        (train_args, env, cwd), *_ = commands
        assert train_args == (
            "train",
            str(tmp_path / "accounts-10000"),
            "--as-of",
            "2026-03-01",
            "--config",
            str(setup.config),
        )
        assert setup.data == tmp_path / "accounts-100000" and setup.train_s == 2.5
        assert cwd == folder and setup.config.parent == folder
        # A configuration the tool accepts, with the one LightGBM candidate.
        config = parse_config(yaml.safe_load(setup.config.read_text(encoding="utf-8")))
        assert len(config.model.search.candidates) == 1 and config.model.num_boost_round == 300
        assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{folder / 'mlflow.db'}"
        assert env["TIERING_DATABASE_URL"] == f"sqlite:///{folder / 'workspace.db'}"
        assert env["PYTHONPATH"] == str(processes.REPO)

        assert setup.tiering_seconds("score", "x") == 2.5  # in the same folder and environment
        assert commands[-1] == (("score", "x"), env, folder)
    assert not folder.exists()


def test_a_book_smaller_than_the_training_export_is_its_own_training_export(commands, tmp_path: Path):
    with processes.trained_setup(2_000):
        pass
    assert commands[0][0][:2] == ("train", str(tmp_path / "accounts-2000"))
