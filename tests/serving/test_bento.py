"""`bentoml build` packs the service, its code and config into a Bento."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bentoml_build_makes_a_bento_with_the_service_and_its_code(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(REPO)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr

    (bento,) = [path for path in (tmp_path / "bentos" / "abm-tiering").iterdir() if path.name != "latest"]
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    assert manifest["service"] == "serving.service:TieringService"
    assert {route["route"] for route in manifest["schema"]["routes"]} >= {"/score", "/tier"}
    for packed in (
        "serving/service.py",
        "features/pointintime.py",
        "scoring/scorer.py",
        "tiering.yaml",
        "ingest/settings.py",  # the service reads its environment settings there
        "ingest/presets/canonical.yaml",
        "serving/templates/index.html",
        "serving/workspace/templates/book.html",
        "serving/workspace/static/htmx.min.js",
        "serving/workspace/static/plotly-strict.min.js.gz",
        "workspace/store.py",
        "workspace/migrations/versions/0001_workspace.py",
        "workspace/migrations/script.py.mako",
    ):
        assert (bento / "src" / packed).is_file(), packed
    # Every module of ours the service imports, directly or through others, is packed.
    import grimp

    root_packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
    graph = grimp.build_graph(*root_packages)
    needed = graph.find_upstream_modules("serving.service") | {"serving.service"}
    missing = []
    for module in sorted(needed):
        path = Path(*module.split("."))
        if not (
            (bento / "src" / path.with_suffix(".py")).is_file() or (bento / "src" / path / "__init__.py").is_file()
        ):
            missing.append(module)
    assert not missing, f"the service imports modules the Bento does not pack: {missing}"
    assert "bentoml==" in (bento / "env" / "python" / "requirements.txt").read_text()
