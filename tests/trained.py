"""Trained-model fixtures shared by every test folder (the root conftest registers them), each built once per test
run and shared by the xdist workers: one small trained and registered model, one default training of the demo
export, one families export trained with and without the roll-up. FAST_MODEL: a fast training for the rest."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest
import yaml

if TYPE_CHECKING:
    from features.schema import CrmData
    from training.pipeline import TrainingResult

SMALL_GATE = {"model": {"gate": {"min_won": 10, "min_lost": 10}}}  # a 1,500-account export passes it
# The `model:` section of a fast training, for tests whose subject is not the learner search nor the pipeline
# learner's accuracy: the logistic regression against one LightGBM on the validation slice (no rolling folds, no
# blend), and the pipeline learner on 3,000 account snapshots (300 per cut-off: enough to learn, not fall back).
# About half a default training's CPU time.
FAST_MODEL = {
    "pipeline_max_rows": 3000,
    "search": {
        "candidates": [{"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 30, "lambda_l2": 5.0}],
        "folds": 1,
        "blend": False,
    },
}
TRAINING_WAIT_SECONDS = 600
T = TypeVar("T")


def fast_config_file(folder: Path, model: dict | None = None) -> Path:
    """A tiering.yaml in `folder` with FAST_MODEL (and `model`'s keys over it), for `tiering train --config`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiering.yaml"
    path.write_text(yaml.safe_dump({"model": {**FAST_MODEL, **(model or {})}}))
    return path


@dataclass(frozen=True)
class TrainedModel:
    data_dir: Path  # the generated export it was trained on
    tracking_uri: str  # its MLflow store
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/abm-tiering/{self.version}"


def train_small_model(root: Path, seed: int = 11) -> TrainedModel:
    from configuration.tiering import parse_config
    from ingest.io import load_export
    from sources.synthetic import generate_export
    from training.workflow import train_and_register

    data_dir = root / "export"
    generate_export(data_dir, n_accounts=1500, seed=seed)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        outcome = train_and_register(load_export(data_dir).data, parse_config(SMALL_GATE), None, lambda step: None)
    return TrainedModel(data_dir, uri, outcome.version, outcome.run_id)


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """`build(folder)` once for the whole test run: the first caller builds it in `folder`, every other caller (other
    test folders, other xdist workers) waits for it and reads it back, so the same training never runs twice or two
    trainings fight over the two cores. The result is pickled by this run into its own temporary folder."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: the run's folder over workers'
    root = shared / name
    marker, failure = root / "built.pickle", root / "failed.txt"
    try:
        root.mkdir()  # atomic: exactly one caller gets to build
    except FileExistsError:
        deadline = time.monotonic() + TRAINING_WAIT_SECONDS
        while not marker.is_file():
            if failure.is_file():
                pytest.fail(f"building the shared test fixture {name} failed elsewhere: {failure.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the shared test fixture {name} was not built within {TRAINING_WAIT_SECONDS} s")
            time.sleep(0.5)
        return pickle.loads(marker.read_bytes())
    try:
        built = build(root)
    except BaseException as error:
        failure.write_text(f"{error.__class__.__name__}: {error}")
        raise
    partial = root / "built.pickle.partial"
    partial.write_bytes(pickle.dumps(built))
    partial.replace(marker)  # whole, so a waiting worker never reads half of it
    return built


def shared_trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """The test run's trained model (`once_per_run`)."""
    return once_per_run(tmp_path_factory, "trained-model", train_small_model)


@dataclass(frozen=True)
class DemoTraining:
    folder: Path  # the generated export, with the generator's truth files
    data: CrmData
    result: TrainingResult


@pytest.fixture(scope="session")
def demo_training(tmp_path_factory: pytest.TempPathFactory) -> DemoTraining:
    """`train` with the default configuration on the demo's 5,000-account export, once per test run, for the
    modules that judge it against the generator's truth (test_pipeline, test_look_ahead, test_rolling_selection)."""
    from configuration.tiering import TieringConfig
    from ingest.io import load_export
    from sources.synthetic import generate_export
    from training.pipeline import train

    def build(root: Path) -> DemoTraining:
        folder = root / "export"
        generate_export(folder, n_accounts=5000, seed=7)  # the demo's export
        data = load_export(folder).data
        return DemoTraining(folder, data, train(data, TieringConfig()))

    return once_per_run(tmp_path_factory, "demo-training", build)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return shared_trained_model(tmp_path_factory)


@pytest.fixture
def model_store(trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch) -> TrainedModel:
    """The trained model, with MLFLOW_TRACKING_URI pointing at its store for this test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_model.tracking_uri)
    return trained_model


@dataclass(frozen=True)
class FamilyTrainings:
    """One families export (`generate --families`) trained twice: without the roll-up and with it."""

    folder: Path
    data: CrmData
    none: TrainingResult
    family: TrainingResult


# A small, fast training: one LightGBM candidate beside the logistic regression, the pipeline learner on 1,000
# snapshots, and tier capacities that leave most of a 1,000-account book outside Tier 1 and 2.
FAMILY_TRAINING = {
    "model": {
        "gate": {"min_won": 10, "min_lost": 10},
        "pipeline_max_rows": 1000,
        "search": {"candidates": [{"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 30, "lambda_l2": 5.0}]},
    },
    "tiers": {"tier_1": {"max_accounts": 20, "min_score": 0}, "tier_2": {"max_accounts": 100, "min_score": 0}},
}


@pytest.fixture(scope="session")
def family_trainings(tmp_path_factory: pytest.TempPathFactory) -> FamilyTrainings:
    """`train` on a 1,000-account families export with hierarchy.roll_up none, then family (once per run)."""
    from configuration.tiering import parse_config
    from ingest.io import load_export
    from sources.synthetic import generate_export
    from training.pipeline import train

    def build(root: Path) -> FamilyTrainings:
        folder = root / "export"
        generate_export(folder, n_accounts=1000, seed=11, families=True)
        data = load_export(folder).data
        results = {
            roll_up: train(data, parse_config({**FAMILY_TRAINING, "hierarchy": {"roll_up": roll_up}}))
            for roll_up in ("none", "family")
        }
        return FamilyTrainings(folder, data, results["none"], results["family"])

    return once_per_run(tmp_path_factory, "family-trainings", build)
