"""The CLI over MLflow: train, register, gate, promote, rollback, interruption, batch scoring, fresh-process load."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import TieringConfig
from scoring import registry
from scoring.scorer import SCORE_COLUMNS
from sources.synthetic import generate_export
from tests.mlflow_store import mlflow_template  # noqa: F401  (fixture)
from tests.trained import fast_config_file

pytestmark = pytest.mark.slow  # scheduled first: a long file started last would end alone

runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    generate_export(folder, n_accounts=1500, seed=5)
    return folder


@pytest.fixture(scope="module")
def fast_config(tmp_path_factory):
    """Every training here with the fast search: these tests judge the commands around training, not the search."""
    return str(fast_config_file(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, mlflow_template, export, fast_config):  # noqa: F811
    """A store where `tiering train` ran once; tests copy it before changing it."""
    folder = tmp_path_factory.mktemp("store")
    shutil.copy(mlflow_template, folder / "mlflow.db")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ.update(env)
    try:
        result = runner.invoke(app, ["train", str(export), "--config", fast_config])
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI") if previous is None else os.environ.update(
            {"MLFLOW_TRACKING_URI": previous}
        )
    assert result.exit_code == 0, result.output
    return folder, result.output


@pytest.fixture
def store(trained_store, tmp_path, monkeypatch):
    source, _ = trained_store
    target = tmp_path / "models"
    shutil.copytree(source, target)
    uri = f"sqlite:///{target / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    registry.configure()
    return target


def test_train_registers_a_champion_and_logs_everything(trained_store, store):
    _, output = trained_store
    assert "Version 1 promoted to champion" in output and "ROC AUC" in output
    champion = registry.alias_version("champion")
    assert champion.version == "1"
    assert float(champion.tags["holdout_roc_auc"]) > float(champion.tags["rule_roc_auc"])
    run = mlflow.get_run(champion.run_id)
    assert run.info.status == "FINISHED"
    for key in (
        "model_roc_auc",
        "model_pr_auc",
        "model_brier",
        "model_log_loss",
        "model_ece",
        "rule_roc_auc",
        "logreg_roc_auc",
        "deal_mae",
        "deal_mape",
        "deal_r2_log",
        "learned_tier_1_win_rate",
        "rule_tiers_tier_1_won_revenue",
        "data_won",
        "data_lost",
    ):
        assert key in run.data.metrics, key
    assert run.data.params["model.blend"] == "0.7"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(champion.run_id, "plots")}
    assert artifacts == {"plots/roc.png", "plots/calibration.png", "plots/gain_lift.png", "plots/tier_matrix.png"}
    tables = {a.path for a in mlflow.MlflowClient().list_artifacts(champion.run_id, "tables")}
    assert {"tables/holdout_predictions.csv", "tables/holdout_book.csv"} <= tables
    model = mlflow.pyfunc.load_model("models:/abm-tiering@champion")
    assert model.metadata.signature is not None and "account_id" in model.metadata.get_input_schema().input_names()


def test_second_version_is_judged_like_for_like_then_promote_and_rollback(store, export, fast_config):
    # The same data and config up to an earlier cut-off: the champion's recipe re-fitted on version 2's own
    # months is the same recipe, so version 2 is within the tolerance and promoted, and the reason says so.
    result = runner.invoke(app, ["train", str(export), "--as-of", "2026-05-01", "--config", fast_config])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    tolerance = TieringConfig().model.gate.champion_tolerance
    assert "Version 2 promoted to champion" in said
    assert (
        f"within {tolerance:g} of champion version 1's" in said and "(its recipe re-fitted on the same months)" in said
    )
    assert registry.alias_version("champion").version == "2"
    moved = runner.invoke(app, ["rollback"])
    assert moved.exit_code == 0 and moved.output.strip() == "champion: 2 -> 1"
    assert registry.alias_version("champion").version == "1"
    again = runner.invoke(app, ["rollback"])
    assert again.exit_code == 2 and "nothing to roll back to" in again.output
    assert runner.invoke(app, ["promote", "2"]).output.strip() == "champion: 1 -> 2"
    missing = runner.invoke(app, ["promote", "9"])
    assert missing.exit_code == 2 and "version 9 does not exist" in missing.output


def test_interrupted_training_leaves_the_champion_and_marks_the_run_failed(store, export, fast_config, monkeypatch):
    import training.workflow as workflow

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "gate", interrupt)  # after the model is logged, before any alias moves
    result = runner.invoke(app, ["train", str(export), "--config", fast_config])
    assert result.exit_code == 130 and "interrupted" in result.output
    assert registry.alias_version("champion").version == "1"
    runs = mlflow.search_runs(experiment_names=["abm-tiering"], order_by=["start_time DESC"])
    assert runs.iloc[0]["status"] in ("FAILED", "KILLED")


def test_score_writes_exactly_the_spec_columns_with_budget_and_overrides(store, export, tmp_path):
    pins = tmp_path / "pins.csv"
    pins.write_text("account_id,tier,reason,owner\nACC-000003,tier_1,strategic logo,dana\n")
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app, ["score", str(export), "--out", str(out), "--budget", "100000", "--overrides", str(pins)]
    )
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert list(scores.columns) == [*SCORE_COLUMNS, "pilot_group"]  # pilot_group: always, by the SPEC
    assert len(scores) == 1500 and scores["account_id"].is_unique
    assert set(scores["tier"]) <= {"tier_1", "tier_2", "tier_3", "untiered"}
    assert (scores["tier"] == "tier_1").sum() <= 21 and (scores["learned_tier"] == "tier_1").sum() <= 20
    # Each account's budget is written to the cent, so the total is the budget to within half a cent an account.
    assert scores["budget"].sum() == pytest.approx(100000, abs=0.005 * len(scores))
    pinned = scores.set_index("account_id").loc["ACC-000003"]
    assert pinned["tier"] == "tier_1" and "pinned to tier_1 by dana: strategic logo" in pinned["override_reason"]
    assert set(scores["model_version"].astype(str)) == {"1"}
    parquet = tmp_path / "scores.parquet"
    assert runner.invoke(app, ["score", str(export), "--out", str(parquet)]).exit_code == 0
    same = pd.read_parquet(parquet)
    assert list(same.columns) == [*SCORE_COLUMNS, "pilot_group"]
    pd.testing.assert_series_equal(same["learned_score"], scores["learned_score"], check_exact=False, rtol=1e-12)


def test_score_rejects_unknown_override_accounts_and_bad_outputs(store, export, tmp_path):
    pins = tmp_path / "pins.csv"
    pins.write_text("account_id,tier,reason,owner\nNOPE,tier_1,x,y\nACC-000001,platinum,x,y\n")
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(export), "--out", str(out), "--overrides", str(pins)])
    assert result.exit_code == 2 and "'NOPE'" in result.output and "unknown tier ['platinum']" in result.output
    assert not out.exists()
    wrong = runner.invoke(app, ["score", str(export), "--out", str(tmp_path / "scores.xlsx")])
    assert wrong.exit_code == 2 and "must end in .csv or .parquet" in wrong.output


def test_champion_loads_and_scores_in_a_fresh_process_elsewhere(store, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import mlflow, json, pandas as pd\n"
        "model = mlflow.pyfunc.load_model('models:/abm-tiering@champion')\n"
        "import features\n"
        "example = model.input_example\n"
        "out = model.predict(example, params={'model_version': '1'})\n"
        "print(json.dumps({'features': features.__file__, 'rows': len(out), 'columns': list(out.columns),"
        " 'p': float(out['win_probability'].iloc[0])}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    assert answer["columns"] == SCORE_COLUMNS and answer["rows"] == 5 and 0 < answer["p"] < 1
    # The model's own copy of features/ was imported, not the working tree's.
    repo = Path(__file__).resolve().parents[2]
    assert "/artifacts/code/features/" in answer["features"]
    assert not Path(answer["features"]).resolve().is_relative_to(repo)


def test_interrupted_score_leaves_the_previous_output_intact(store, export, tmp_path, monkeypatch):
    out = tmp_path / "scores.csv"
    out.write_text("previous scores\n")

    def half_written(self, path, *args, **kwargs):
        Path(path).write_text("account_id,revenue_potential_score\nACC-1,")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    result = runner.invoke(app, ["score", str(export), "--out", str(out)])
    assert result.exit_code == 130
    assert out.read_text() == "previous scores\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".scores")] == []
