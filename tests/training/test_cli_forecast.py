"""`tiering forecast` refuses bad input with one message, exit 2 and nothing written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from sources.synthetic import generate_export
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)

runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forecast-export")
    generate_export(folder, n_accounts=300, seed=3)
    return folder


def test_without_a_learned_model_it_says_what_to_do_and_writes_nothing(export, mlflow_store, tmp_path):
    out = tmp_path / "forecast"
    result = runner.invoke(app, ["forecast", str(export), "--out", str(out)])
    assert result.exit_code == 2
    assert "no pipeline-propensity learner" in result.output and "tiering train" in result.output
    assert not out.exists()


@pytest.mark.parametrize("as_of", ["2001-01-01", "2031-01-01"])
def test_an_as_of_outside_the_data_is_refused(export, mlflow_store, tmp_path, as_of):
    out = tmp_path / "forecast"
    result = runner.invoke(app, ["forecast", str(export), "--as-of", as_of, "--out", str(out)])
    assert result.exit_code == 2
    assert f"--as-of {as_of} is outside the data" in result.output
    assert not out.exists()


def test_an_out_folder_holding_other_files_is_refused_before_any_work(export, mlflow_store, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    result = runner.invoke(app, ["forecast", str(export), "--out", str(out)])
    assert result.exit_code == 2 and (out / "notes.txt").read_text(encoding="utf-8") == "mine"
