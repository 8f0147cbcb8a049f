"""Optional columns and tables may be absent: loading gives typed, empty columns, and the commands run or say why."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from ingest.io import load_export
from tests.trained import fast_config_file

runner = CliRunner()

ACCOUNTS = "account_id,industry,employees\nA1,software,500\nA2,retail,40\n"
ALL_OPEN_WITHOUT_CLOSE_DATE = (
    "opportunity_id,account_id,created_date,outcome,amount\nO1,A1,2024-01-05,open,1000\nO2,A2,2024-02-01,open,\n"
)
WITHOUT_AMOUNT = (
    "opportunity_id,account_id,created_date,close_date,outcome\n"
    "O1,A1,2024-01-05,2024-02-10,won\n"
    "O2,A1,2024-02-01,2024-03-15,lost\n"
    "O3,A2,2024-03-01,,open\n"
)


@pytest.fixture(autouse=True)
def defaults_only(tmp_path, monkeypatch):
    """Run where no tiering.yaml lies about, so the built-in defaults apply; MLflow in a throwaway store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_opportunities_without_close_date_column_all_open_load_with_an_empty_typed_column(write_export):
    folder = write_export({"accounts.csv": ACCOUNTS, "opportunities.csv": ALL_OPEN_WITHOUT_CLOSE_DATE})
    opportunities = load_export(folder).data.opportunities
    assert str(opportunities["close_date"].dtype) == "datetime64[ns]"
    assert opportunities["close_date"].isna().all()
    assert opportunities["amount"].tolist()[0] == 1000.0 and pd.isna(opportunities["amount"].tolist()[1])
    assert opportunities["product"].isna().all()


def test_validate_passes_and_says_no_window_without_closed_opportunities(write_export):
    folder = write_export({"accounts.csv": ACCOUNTS, "opportunities.csv": ALL_OPEN_WITHOUT_CLOSE_DATE})
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Outcomes: 0 won, 0 lost, 2 open" in result.output
    assert "Opportunities created 2024-01-05 to 2024-02-01, none closed" in result.output
    assert "The export is valid." in result.output
    assert (
        "Training window: none (no closed opportunities to train on): `tiering train` stops until the export "
        "has won or lost opportunities with their close_date."
    ) in result.output


def test_train_without_closed_opportunities_stops_with_one_clear_message(write_export):
    folder = write_export({"accounts.csv": ACCOUNTS, "opportunities.csv": ALL_OPEN_WITHOUT_CLOSE_DATE})
    result = runner.invoke(app, ["train", str(folder)])
    assert result.exit_code == 2, result.output
    assert "no closed opportunities to train on" in result.output
    assert "KeyError" not in result.output and "Traceback" not in result.output


def test_closed_opportunities_without_a_close_date_column_are_an_error_naming_the_rows(write_export, problems_of):
    opportunities = (
        "opportunity_id,account_id,created_date,outcome\n"
        "O1,A1,2024-01-05,won\nO2,A2,2024-02-01,open\nO3,A2,2024-02-03,lost\n"
    )
    [problem] = problems_of(write_export({"accounts.csv": ACCOUNTS, "opportunities.csv": opportunities}))
    assert (problem.file, problem.column, problem.rows) == ("opportunities.csv", "close_date", (2, 4))
    assert problem.message == "closed (won or lost) opportunities without close_date"


def test_an_export_without_any_amount_column_loads_an_all_missing_float_amount(write_export):
    folder = write_export({"opportunities.csv": WITHOUT_AMOUNT})
    opportunities = load_export(folder).data.opportunities
    assert str(opportunities["amount"].dtype) == "float64"
    assert opportunities["amount"].isna().all() and len(opportunities) == 3
    assert opportunities["product"].isna().all()
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert "Outcomes: 1 won, 1 lost, 1 open; win rate 50.0%" in result.output


def test_engagement_and_intent_default_columns_are_filled_when_absent(write_export):
    folder = write_export(
        {
            "engagement.csv": "account_id,timestamp,channel\nA1,2024-01-01,web_visit\n",
            "intent.csv": "account_id,date,topic\nA1,2024-01-03,crm\n",
        }
    )
    data = load_export(folder).data
    assert data.engagement["count"].tolist() == [1.0]
    assert data.intent["score"].tolist() == [100.0]


def test_validate_without_engagement_and_intent_files_passes_with_two_warnings(write_export):
    folder = write_export({"engagement.csv": None, "intent.csv": None})
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert "3 warnings:" in result.output  # both tables absent, and A3 without opportunities
    assert "- no engagement table: the engagement score is 0 for every account" in result.output
    assert "- no intent table: intent data is left out" in result.output
    data = load_export(folder).data
    assert data.present == frozenset({"accounts", "opportunities"})
    assert len(data.engagement) == 0 and list(data.engagement.columns[:4]) == [
        "account_id",
        "timestamp",
        "channel",
        "count",
    ]


SMALL_GATE = {"gate": {"min_won": 10, "min_lost": 10}}  # a 600-account export has enough for it


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A 600-account synthetic export and a config with a gate it can pass (and the fast search)."""
    from sources.synthetic import generate_export

    folder = tmp_path_factory.mktemp("optional") / "export"
    generate_export(folder, n_accounts=600, seed=4)
    config = fast_config_file(folder.parent, SMALL_GATE)
    return folder, config


def _copy_without(folder, tmp_path, drop_files=(), drop_columns=None):
    target = tmp_path / "trimmed"
    target.mkdir()
    for path in folder.iterdir():
        if path.name in drop_files or path.name == "truth.csv":
            continue
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.drop(columns=(drop_columns or {}).get(path.name, []), errors="raise").to_csv(
            target / path.name, index=False
        )
    return target


@pytest.mark.slow
def test_train_without_engagement_and_intent_files_trains_and_says_so(generated, tmp_path):
    folder, config = generated
    trimmed = _copy_without(folder, tmp_path, drop_files=("engagement.csv", "intent.csv"))
    result = runner.invoke(app, ["train", str(trimmed), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "no engagement table: the engagement score is 0 for every account" in result.output
    assert "Trained on" in result.output and "unexpected error" not in result.output


@pytest.mark.slow
def test_train_without_any_amount_column_trains_or_stops_with_a_clear_message(generated, tmp_path):
    folder, config = generated
    trimmed = _copy_without(folder, tmp_path, drop_columns={"opportunities.csv": ["amount"]})
    assert load_export(trimmed).data.opportunities["amount"].isna().all()
    result = runner.invoke(app, ["train", str(trimmed), "--config", str(config)])
    assert result.exit_code in (0, 2), result.output
    assert "unexpected error" not in result.output and "Traceback" not in result.output
