"""The benches' child processes: a `tiering` command timed as a user runs it, the set-up of the benches that time
commands against a trained model, and a bench module run alone (its own interpreter, so one bench's memory never
counts in another's peak)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TRAIN_ACCOUNTS = 10_000  # the export the model learns from (or the measured one, when smaller)
# One LightGBM candidate: the learner is not what these benches measure, and a command costs the same whatever book
# its model learned from.
FAST_MODEL = {
    "model": {
        "num_boost_round": 300,
        "search": {
            "candidates": [{"num_leaves": 15, "learning_rate": 0.08, "min_child_samples": 40, "lambda_l2": 1.0}]
        },
    }
}


def tiering_seconds(*args: str, env: dict, cwd: Path = REPO) -> float:
    """Wall time of `tiering ARGS` in a fresh process; a failure raises with the end of its output."""
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"tiering {' '.join(args)} failed:\n{child.stdout[-2000:]}\n{child.stderr[-2000:]}")
    return time.perf_counter() - started


def bench_figures(module: str, n_accounts: int) -> dict:
    """`python -m MODULE --accounts N` in its own process: the JSON line it prints last."""
    child = subprocess.run(
        [sys.executable, "-m", module, "--accounts", str(n_accounts)], cwd=REPO, capture_output=True, text=True
    )
    if child.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class TrainedSetup:
    """A bench's cached export, private folder, fast model configuration and environment, with a model trained."""

    data: Path  # the export measured
    folder: Path  # the private temporary folder: configuration, MLflow and workspace stores, outputs
    config: Path  # FAST_MODEL as a configuration file
    env: dict[str, str]  # MLflow and the workspace store in `folder`, this checkout's code
    train_s: float

    def tiering_seconds(self, *args: str) -> float:
        """`tiering_seconds` of a command run in the set-up's folder and environment."""
        return tiering_seconds(*args, env=self.env, cwd=self.folder)


@contextmanager
def trained_setup(n_accounts: int, *train_args: str) -> Iterator[TrainedSetup]:
    """The cached export of `n_accounts` and a private folder in which `tiering train TRAIN_ACCOUNTS-export
    TRAIN_ARGS --config FAST_MODEL` has run (timed), as a user runs it; the folder is removed on the way out."""
    from bench.run import dataset

    data, _ = dataset(n_accounts)
    training_data, _ = dataset(min(n_accounts, TRAIN_ACCOUNTS))
    with tempfile.TemporaryDirectory(prefix="tiering-bench-") as tmp:
        folder = Path(tmp)
        config = folder / "fast.yaml"
        config.write_text(yaml.safe_dump(FAST_MODEL), encoding="utf-8")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),  # the commands run in `folder`: this checkout's code, not an installed one
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "TIERING_DATABASE_URL": f"sqlite:///{folder / 'workspace.db'}",
        }
        train_s = tiering_seconds(
            "train", str(training_data), *train_args, "--config", str(config), env=env, cwd=folder
        )
        yield TrainedSetup(data, folder, config, env, train_s)
