"""A logged model is never scored silently by other scoring code than it was logged with.

The model records a digest of every scoring module; a process whose code differs refuses it with a
message naming the files. Proven with a copy of the checkout whose feature code changes after logging.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOAD = (
    "import sys, features.rules\n"
    "from scoring.registry import load_model_for\n"
    "try:\n"
    "    model = load_model_for(sys.argv[1])\n"
    "except Exception as error:\n"
    "    print('REFUSED', error); sys.exit(3)\n"
    "import features\n"
    "print('LOADED', features.__file__)\n"
)


def checkout_copy(target: Path) -> Path:
    for package in ("features", "scoring"):
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def load_in_fresh_process(code_root: Path, model_uri: str, tracking_uri: str, cwd: Path) -> subprocess.CompletedProcess:
    # MLflow exports its own tracking and registry settings to the environment: name both, or an earlier
    # test's store would be inherited as the registry.
    env = {
        **os.environ,
        "PYTHONPATH": str(code_root),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
    }
    return subprocess.run(
        [sys.executable, "-c", LOAD, model_uri], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_a_process_running_changed_feature_code_refuses_the_model_and_names_the_file(trained_model, tmp_path):
    same = checkout_copy(tmp_path / "same")
    loaded = load_in_fresh_process(same, trained_model.uri, trained_model.tracking_uri, tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.startswith(f"LOADED {same / 'features' / '__init__.py'}")

    changed = checkout_copy(tmp_path / "changed")
    rules = changed / "features" / "rules.py"
    # A change a developer might make after logging: the engagement score saturates differently.
    rules.write_text(
        rules.read_text().replace(
            "100.0 * (1.0 - np.exp(-points / config.engagement.saturation_points))",
            "100.0 * (1.0 - np.exp(-2 * points / config.engagement.saturation_points))",
        )
    )
    assert rules.read_text() != (REPO / "features" / "rules.py").read_text()
    refused = load_in_fresh_process(changed, trained_model.uri, trained_model.tracking_uri, tmp_path)
    assert refused.returncode == 3, refused.stdout + refused.stderr[-2000:]
    assert "REFUSED" in refused.stdout
    assert (
        "this model was logged with other scoring code than this process runs (features/rules.py differ; code "
        f"from {changed})"
    ) in refused.stdout
    assert "train a new version with this one (tiering train)" in refused.stdout


def test_the_bundle_records_a_digest_of_each_scoring_module(tmp_path):
    import hashlib

    from features.config import TieringConfig
    from scoring.bundle import SCORING_CODE, save_scorer
    from scoring.scorer import Scorer

    folder = save_scorer(Scorer(config=TieringConfig()), tmp_path / "bundle")
    recorded = json.loads((folder / "bundle.json").read_text())["scoring_code"]
    assert set(recorded) == set(SCORING_CODE)
    expected = hashlib.sha256((REPO / "features" / "rules.py").read_bytes()).hexdigest()
    assert recorded["features.rules"] == expected
