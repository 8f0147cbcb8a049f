"""Hostile inputs end to end: mixed date formats, formulas and very long strings."""

import pandas as pd
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_mixed_date_formats_are_named_not_guessed(write_export, problems_of):
    folder = write_export(
        {
            "opportunities.csv": (
                "opportunity_id,account_id,created_date,close_date,outcome,amount\n"
                "O1,A1,2024-01-05,2024-02-10,won,10\n"
                "O2,A1,01/07/2024,2024-03-01,lost,5\n"
                "O3,A1,2024-01-05T10:00:00,2024-03-01,lost,5\n"
                "O4,A2,5 Jan 2024,2024-03-01,lost,5\n"
            )
        }
    )
    [problem] = [p for p in problems_of(folder) if p.column == "created_date"]
    assert problem.rows == (3, 5) and "'01/07/2024'" in problem.message and "date_format" in problem.fix


def test_formulas_and_long_strings_flow_through_scoring_and_are_neutralised(write_export, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    long_name = "x" * 10_000
    folder = write_export(
        {
            "accounts.csv": (
                "account_id,account_name,industry,employees,annual_revenue,country\n"
                f'A1,"=HYPERLINK(""http://evil"",""click"")",software,500,1000000,United States\n'
                f"A2,{long_name},@SUM(1+1),2000,50000000,Germany\n"
                "=2+5,Gamma,-retail,50,200000,+France\n"
            )
        }
    )
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(folder), "--out", str(out)])  # no champion: rules only
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    for line in text.splitlines()[1:]:
        for cell in line.split(","):
            assert not cell.startswith(("=", "+", "-", "@")), cell
    scores = pd.read_csv(out)
    assert len(scores) == 3 and set(scores["model_version"]) == {"rules-only"}
    assert "'=2+5" in scores["account_id"].tolist()  # the formula id survives as inert text
