"""`tiering forecast` refuses bad input with one message, exit 2 and nothing written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from sources.synthetic import generate_export
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from tests.trained import fast_config_file

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


def test_a_backtest_is_written_and_logged_to_the_models_training_run(model_store, tmp_path):
    """`--backtest` writes its tables beside the forecast and logs them, with its coverage and MAPE as metrics, to
    the training run of the model that forecast."""
    import pandas as pd
    from mlflow import MlflowClient

    out = tmp_path / "forecast"
    fast = fast_config_file(tmp_path / "config")  # the origin's training: what is judged is what gets written
    result = runner.invoke(
        app,
        [
            "forecast",
            str(model_store.data_dir),
            "--model",
            model_store.uri,
            "--config",
            str(fast),
            "--backtest",
            "--origins",
            "1",
            "--simulations",
            "500",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Backtest logged to MLflow run {model_store.run_id} under forecast/" in " ".join(result.output.split())
    assert "80% interval of 500 simulations" in (out / "forecast.html").read_text(encoding="utf-8")  # --simulations
    summary = pd.read_csv(out / "backtest_summary.csv").set_index("quantity")
    client = MlflowClient(model_store.tracking_uri)
    logged = {item.path for item in client.list_artifacts(model_store.run_id, "forecast")}
    for name in ("forecast.html", "forecast.csv", "fan.csv", "backtest.csv", "backtest_summary.csv"):
        assert (out / name).is_file() and f"forecast/{name}" in logged
    metrics = client.get_run(model_store.run_id).data.metrics
    for quantity, row in summary.iterrows():
        assert metrics[f"backtest_{quantity}_coverage"] == pytest.approx(row["coverage"])
        if row["mape"] == row["mape"]:  # no MAPE (NaN) where nothing happened: not logged
            assert metrics[f"backtest_{quantity}_mape"] == pytest.approx(row["mape"])
    cells = pd.read_csv(out / "backtest.csv")
    cells = cells[(cells["tier"] != "overall") & (cells["accounts"] > 0)]  # the tier x origin cells
    by_hand = cells.groupby("quantity")["covered"].mean()  # coverage: the share of cells whose actual was inside
    assert summary["coverage"].to_dict() == pytest.approx(by_hand.to_dict())
