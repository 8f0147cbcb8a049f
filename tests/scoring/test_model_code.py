"""A logged model is never scored silently by other code than it was logged with.

The model ships the packages features/ and scoring/ and records a digest of every file in them; a process whose
code differs refuses it with a message naming the files. Proven with a copy of the checkout whose code changes
after logging, in each shipped package; and the digest, the shipped files and the import contract that keeps the
model's code apart are held to name the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
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


def append_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


@pytest.mark.slow
def test_a_process_running_changed_code_in_any_shipped_package_refuses_the_model_and_names_the_files(
    trained_model, tmp_path
):
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
    # Any other file of either package counts too: the API's activity preparation, a module of scoring/ that
    # the scorer never imports, and a data file shipped beside the code.
    append_line(changed / "features" / "activity.py", "# changed after logging")
    append_line(changed / "scoring" / "messages.py", "# changed after logging")
    (changed / "scoring" / "notes.txt").write_text("shipped with the model\n")
    refused = load_in_fresh_process(changed, trained_model.uri, trained_model.tracking_uri, tmp_path)
    assert refused.returncode == 3, refused.stdout + refused.stderr[-2000:]
    assert "REFUSED" in refused.stdout
    assert (
        "this model was logged with other scoring code than this process runs (features/activity.py, "
        f"features/rules.py, scoring/messages.py, scoring/notes.txt differ; code from {changed})"
    ) in refused.stdout
    assert "train a new version with this one (tiering train)" in refused.stdout


def files_under(root: Path, packages: set[str]) -> set[str]:
    """Every file of the packages as a path from `root`, bytecode caches left out (MLflow does not ship them)."""
    found = set()
    for package in packages:
        for folder, subfolders, names in os.walk(root / package):
            subfolders[:] = [name for name in subfolders if name != "__pycache__"]
            found |= {(Path(folder) / name).relative_to(root).as_posix() for name in names}
    return found


def model_contract() -> dict:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in settings["contracts"] if c["name"].startswith("the logged model:")]
    return {**contract, "root_packages": settings["root_packages"]}


@pytest.mark.slow
def test_the_digest_the_shipped_code_and_the_import_contract_name_the_same_files(model_store, tmp_path):
    import grimp
    import mlflow

    from scoring.registry import configure

    configure()  # MLflow keeps the registry an earlier test of this process set: point it at this store
    contract = model_contract()
    packages = set(contract["source_modules"])
    # The contract keeps the model's packages from importing every other package of ours.
    assert set(contract["forbidden_modules"]) == set(contract["root_packages"]) - packages

    # What the registered model ships (its code_paths) and what its bundle recorded a digest of.
    model = Path(mlflow.artifacts.download_artifacts(model_store.uri, dst_path=str(tmp_path)))
    shipped = files_under(model / "code", packages)
    (bundle,) = model.glob("artifacts/**/bundle.json")
    recorded = json.loads(bundle.read_text())["scoring_code"]
    assert set(recorded) == shipped
    # ... which are the files of the checkout's packages, byte for byte.
    assert shipped == files_under(REPO, packages)
    for name, digest in recorded.items():
        assert digest == hashlib.sha256((REPO / name).read_bytes()).hexdigest(), name
    # ... and every module the import contract holds is a file the digest covers, and no Python file is left out.
    graph = grimp.build_graph(*sorted(packages))
    modules = {module for package in packages for module in graph.find_descendants(package) | {package}}
    as_files = {
        module.replace(".", "/") + ("/__init__.py" if (REPO / module.replace(".", "/")).is_dir() else ".py")
        for module in modules
    }
    assert as_files == {name for name in recorded if name.endswith(".py")}


@pytest.mark.slow
def test_changing_alert_and_review_defaults_never_stops_a_registered_model_from_loading(trained_model, tmp_path):
    """The alerts and review settings are business configuration: they live outside the shipped packages."""
    copy = checkout_copy(tmp_path / "business")
    shutil.copytree(REPO / "configuration", copy / "configuration", ignore=shutil.ignore_patterns("__pycache__"))
    settings = copy / "configuration" / "tiering.py"
    text = settings.read_text()
    changed = text.replace(
        'default=["tier_1", "tier_2"], description="Entering or leaving one of these tiers is an event."',
        'default=["tier_1"], description="Entering or leaving one of these tiers is an event."',
    ).replace(
        "min_days: int = Field(60, ge=1,",
        "min_days: int = Field(45, ge=1,",
    )
    assert changed.count("tier_1") == text.count("tier_1") and changed != text
    settings.write_text(changed)
    check = LOAD.replace(
        "print('LOADED', features.__file__)",
        "from configuration.tiering import TieringConfig\n"
        "print('LOADED', TieringConfig().alerts.tiers, TieringConfig().review.min_days)",
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "MLFLOW_TRACKING_URI": trained_model.tracking_uri,
        "MLFLOW_REGISTRY_URI": trained_model.tracking_uri,
    }
    loaded = subprocess.run(
        [sys.executable, "-c", check, trained_model.uri],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "LOADED ['tier_1'] 45"


@pytest.mark.slow
def test_the_registered_model_records_its_model_configuration_only(model_store, tmp_path):
    import mlflow

    from scoring.registry import configure

    configure()  # MLflow keeps the registry an earlier test of this process set: point it at this store

    model = Path(mlflow.artifacts.download_artifacts(model_store.uri, dst_path=str(tmp_path)))
    (bundle,) = model.rglob("bundle.json")
    recorded = json.loads(bundle.read_text())["config"]
    assert "model" in recorded and "engagement" in recorded and "tiers" in recorded
    assert not {"alerts", "review", "validation"} & set(recorded)
