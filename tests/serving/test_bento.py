"""`bentoml build` packs the service, its code and config into a Bento."""

import os
import subprocess
import sys
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
        "features/presets/canonical.yaml",
        "serving/templates/index.html",
        "serving/workspace/templates/book.html",
        "serving/workspace/static/htmx.min.js",
        "serving/workspace/static/plotly-strict.min.js.gz",
        "workspace/store.py",
        "workspace/migrations/versions/0001_workspace.py",
        "workspace/migrations/script.py.mako",
    ):
        assert (bento / "src" / packed).is_file(), packed
    assert "bentoml==" in (bento / "env" / "python" / "requirements.txt").read_text()
