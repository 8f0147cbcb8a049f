"""`tiering review` end to end: a model trained before an earlier date scores the book as of that date, and the
review judges it on what the synthetic export says happened after, against the generator's truth."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cli.main import app

pytestmark = pytest.mark.slow  # scheduled first: a long file started last would end alone

runner = CliRunner()
AS_OF, UNTIL = "2026-03-01", "2026-07-01"  # the export ends on 30 Jun 2026
FAST = {  # one LightGBM candidate: the review is under test, not the learner search
    "model": {
        "gate": {"min_won": 10, "min_lost": 10},
        "num_boost_round": 300,
        "search": {
            "candidates": [{"num_leaves": 15, "learning_rate": 0.08, "min_child_samples": 40, "lambda_l2": 1.0}]
        },
    }
}
SECTIONS = ("verdict", "outcomes", "budget", "ranking", "predictions", "drift", "movement")


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One trained model (cut-off 1 Mar 2026) and two exports of the same seed: as generated, and with every
    account's engagement four times as frequent from 1 Mar 2026 (a planted population shift)."""
    from configuration.tiering import parse_config
    from ingest.io import load_export
    from sources.synthetic import generate_export
    from training.workflow import train_and_register

    root = tmp_path_factory.mktemp("review")
    plain, shifted = root / "plain", root / "shifted"
    generate_export(plain, n_accounts=1200, seed=5)
    generate_export(shifted, n_accounts=1200, seed=5, engagement_shift=(AS_OF, 4.0))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        outcome = train_and_register(
            load_export(plain).data, parse_config(FAST), pd.Timestamp(AS_OF), lambda step: None
        )
        overrides = root / "overrides.csv"
        overrides.write_text("account_id,tier,reason,owner\nACC-000003,tier_1,key logo,ana\n")
        for name, export in (("plain", plain), ("shifted", shifted)):
            scored = runner.invoke(
                app,
                ["score", str(export), "--model", f"models:/abm-tiering/{outcome.version}", "--as-of", AS_OF]
                + ["--budget", "1000000", "--overrides", str(overrides), "--out", str(root / f"past_{name}.csv")],
            )
            assert scored.exit_code == 0, scored.output
    return {"root": root, "plain": plain, "shifted": shifted, "uri": uri, "run_id": outcome.run_id}


def review(world, monkeypatch, export: str, out: Path, *extra: str):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    past = world["root"] / f"past_{export}.csv"
    return runner.invoke(app, ["review", str(past), str(world[export]), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def plain_review(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "review"
    with pytest.MonkeyPatch.context() as patch:
        result = review(world, patch, "plain", out)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_the_page_has_every_section_and_captioned_embedded_figures(plain_review):
    out, output = plain_review
    page = (out / "review.html").read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f"<section id={anchor}>" in page
    figures = re.findall(r"<figure>.*?</figure>", page, flags=re.S)
    assert len(figures) == 6  # outcomes, gain, calibration, deal size, drift, rule components
    for figure in figures:
        assert 'src="data:image/png;base64,' in figure and "How to read:" in figure
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "Verdict: Model still holds" in output and "won revenue" in output, output  # the key table, the verdict


def test_outcomes_match_the_export_counted_independently(world, plain_review):
    out, _ = plain_review
    past = pd.read_csv(world["root"] / "past_plain.csv")
    opps = pd.read_csv(world["plain"] / "opportunities.csv", parse_dates=["created_date", "close_date"])
    start, end = pd.Timestamp(AS_OF), pd.Timestamp(UNTIL)
    closed = opps[opps["outcome"].isin(["won", "lost"]) & (opps["close_date"] >= start) & (opps["close_date"] < end)]
    created = opps[(opps["created_date"] >= start) & (opps["created_date"] < end)]
    table = pd.read_csv(out / "outcomes_by_tier.csv")
    for tiering, column in (("final", "tier"), ("rule", "rule_tier")):
        tier_of = past.set_index("account_id")[column]
        mine = table[table["tiering"] == tiering].set_index("tier")
        for tier in ("tier_1", "tier_2", "tier_3", "untiered"):
            shut = closed[closed["account_id"].map(tier_of) == tier]
            won = shut[shut["outcome"] == "won"]
            assert mine.at[tier, "deals_closed"] == len(shut)
            assert mine.at[tier, "deals_won"] == len(won)
            assert mine.at[tier, "won_revenue"] == pytest.approx(won["amount"].sum())
            assert mine.at[tier, "pipeline_created"] == (created["account_id"].map(tier_of) == tier).sum()
    assert table.loc[table["tiering"] == "final", "won_revenue"].sum() == pytest.approx(
        closed.loc[closed["outcome"] == "won", "amount"].sum()
    )
    # The override pinned ACC-000003 to Tier 1: it is counted there, and listed with how it did.
    assert past.set_index("account_id").at["ACC-000003", "tier"] == "tier_1"
    overrides = pd.read_csv(out / "overrides.csv")
    assert overrides["account_id"].tolist() == ["ACC-000003"]


def test_realised_lift_and_predictions_against_the_truth(world, plain_review):
    out, _ = plain_review
    deals = pd.read_csv(out / "predictions.csv")
    truth = pd.read_csv(world["plain"] / "truth.csv").dropna(subset=["opportunity_id"])
    truth = truth.set_index("opportunity_id")["true_win_probability"]
    metrics = pd.read_csv(out / "prediction_metrics.csv").set_index("metric")["value"]
    assert (pd.to_datetime(deals["created_date"]) >= pd.Timestamp(AS_OF)).all()
    assert (pd.to_datetime(deals["close_date"]) < pd.Timestamp(UNTIL)).all()
    field_auc = roc_auc_score(deals["won"], deals["win_probability"])
    truth_auc = roc_auc_score(deals["won"], deals["opportunity_id"].map(truth))
    assert metrics["roc_auc"] == pytest.approx(field_auc)
    assert metrics["roc_auc_low"] < field_auc < metrics["roc_auc_high"]
    assert 0.70 < field_auc <= truth_auc + 0.02  # the truth is the ceiling; the model gets close to it

    # Calibration: the review's ECE is the 10-bin figure computed here; the truth is calibrated on the same deals,
    # and the past account probabilities come close (deals opened after the scoring come with buying activity the
    # scoring could not see, so they win a little more often than their account's probability said).
    def ece(p: pd.Series) -> float:
        bins = np.clip((p * 10).astype(int), 0, 9)
        frame = pd.DataFrame({"bin": bins, "p": p, "y": deals["won"]}).groupby("bin")
        return float((frame.size() * (frame["y"].mean() - frame["p"].mean()).abs()).sum() / len(p))

    assert metrics["ece"] == pytest.approx(ece(deals["win_probability"].clip(1e-6, 1 - 1e-6)))
    assert ece(deals["opportunity_id"].map(truth)) < 0.05
    assert metrics["ece"] < 0.12 and metrics["ece_low"] < metrics["ece"] < metrics["ece_high"]
    # Realised lift: the accounts with the top 10% of past learned scores, their share of the period's won revenue.
    past = pd.read_csv(world["root"] / "past_plain.csv")
    opps = pd.read_csv(world["plain"] / "opportunities.csv", parse_dates=["close_date"])
    won = opps[(opps["outcome"] == "won") & (opps["close_date"] >= AS_OF) & (opps["close_date"] < UNTIL)]
    revenue = past["account_id"].map(won.groupby("account_id")["amount"].sum()).fillna(0)
    top = past["learned_score"].rank(ascending=False, method="first") <= len(past) * 0.10
    lift = pd.read_csv(out / "ranking_lift.csv").set_index("score")
    assert lift.at["past learned score", "top_10%_revenue_share"] == pytest.approx(
        revenue[top].sum() / revenue.sum(), abs=0.01
    )
    assert lift.at["past learned score", "top_10%_lift"] > 3
    assert lift.at["random order", "top_10%_lift"] == pytest.approx(1.0)


def test_an_unchanged_population_has_psi_near_zero(plain_review):
    out, _ = plain_review
    drift = pd.read_csv(out / "drift.csv")
    assert drift["psi"].max() < 0.1
    verdict = pd.read_csv(out / "verdict.csv").set_index("check")
    assert verdict.at["drifted features", "outcome"] == "holds"


def test_a_planted_shift_drifts_and_recommends_retraining(world, tmp_path, monkeypatch):
    result = review(world, monkeypatch, "shifted", tmp_path / "review")
    assert result.exit_code == 0, result.output
    drift = pd.read_csv(tmp_path / "review" / "drift.csv").set_index("feature")["psi"]
    assert drift["eng_w_total"] > 0.25 and drift["engagement_score"] > 0.25
    assert drift[["employees", "annual_revenue", "industry"]].max() < 0.01  # firmographics did not move
    assert "Verdict: Retrain recommended" in result.output
    assert "drifted past PSI 0.25" in words(result.output) and "eng_w_total" in result.output


def test_the_review_is_logged_to_the_run_that_made_the_past_scores(world, plain_review):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=world["uri"])
    logged = [a.path for a in client.list_artifacts(world["run_id"], f"review/{AS_OF}_{UNTIL}")]
    assert f"review/{AS_OF}_{UNTIL}/review.html" in logged
    assert f"review/{AS_OF}_{UNTIL}/outcomes_by_tier.csv" in logged
    assert "review_field_roc_auc" in client.get_run(world["run_id"]).data.metrics


def test_a_short_period_is_too_early_to_judge(world, tmp_path, monkeypatch):
    result = review(world, monkeypatch, "plain", tmp_path / "review", "--until", "2026-03-21")
    assert result.exit_code == 0, result.output
    text = words(result.output)
    assert "Verdict: Too early to judge" in text and "20 days long and at least 60 are needed" in text


@pytest.mark.parametrize(
    "case, expected",
    [
        ("not_scores", "missing column(s)"),
        ("other_book", "none of its"),
        ("until_before", "is not after the past scoring's as_of 2026-03-01"),
        ("no_closed_deals", "no deal of these accounts closed"),
        (
            "until_beyond",
            "--until 2026-07-02 is beyond the data (the export's latest date is 2026-06-30): pass --until "
            "2026-07-01 or earlier",
        ),
        ("until_far_beyond", "--until 2030-01-01 is beyond the data"),
        ("as_of_day_first", "past.csv:as_of: as_of '01/03/2026': not a date"),
        ("probability_text", "past.csv:win_probability: 'high' is not a number (row 4)"),
        ("probability_percent", "past.csv:win_probability: '9.3' is not a probability from 0 to 1"),
        ("negative_size", "past.csv:expected_deal_size: '-120.5' is not an amount of 0 or more (row 2)"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(world, tmp_path, monkeypatch, case, expected):
    past = pd.read_csv(world["root"] / "past_plain.csv", dtype=str, keep_default_na=False)
    extra: list[str] = []
    path = tmp_path / "past.csv"
    if case == "not_scores":
        path = world["plain"] / "accounts.csv"
    elif case == "other_book":
        past.assign(account_id="X" + past["account_id"]).to_csv(path, index=False)
    elif case == "until_before":
        past.to_csv(path, index=False)
        extra = ["--until", "2026-02-01"]
    elif case == "as_of_day_first":  # 1 March as a spreadsheet writes it: refused, never guessed as 3 January
        past.assign(as_of="01/03/2026").to_csv(path, index=False)
    elif case in ("probability_text", "probability_percent", "negative_size"):  # hand edits of the file
        column, row, value = {
            "probability_text": ("win_probability", 2, "high"),
            "probability_percent": ("win_probability", 0, "9.3"),
            "negative_size": ("expected_deal_size", 0, "-120.5"),
        }[case]
        past.loc[row, column] = value
        past.to_csv(path, index=False)
    elif case.startswith("until_"):  # the day after the latest date is the last --until the data can answer
        past.to_csv(path, index=False)
        extra = ["--until", "2026-07-02" if case == "until_beyond" else "2030-01-01"]
    else:  # a period before any deal closed
        past.assign(as_of="2000-01-01").to_csv(path, index=False)
        extra = ["--until", "2000-02-01"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    out = tmp_path / "review"
    result = runner.invoke(app, ["review", str(path), str(world["plain"]), "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert expected in words(result.output)
    assert "Traceback" not in result.output
    assert not out.exists()


def logged_folders(world) -> list[str]:
    from mlflow import MlflowClient

    return [a.path for a in MlflowClient(tracking_uri=world["uri"]).list_artifacts(world["run_id"], "review")]


def test_a_model_other_than_the_files_is_warned_and_never_logged_to_its_run(world, tmp_path, monkeypatch):
    past = pd.read_csv(world["root"] / "past_plain.csv", dtype=str, keep_default_na=False)
    path = tmp_path / "past.csv"
    past.assign(model_version="rules-only").to_csv(path, index=False)  # these scores were not made by version 1
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    out = tmp_path / "review"
    args = ["review", str(path), str(world["plain"]), "--out", str(out), "--model", "models:/abm-tiering/1"]
    result = runner.invoke(app, [*args, "--until", "2026-06-01"])
    assert result.exit_code == 0, result.output
    warning = "--model models:/abm-tiering/1 overrides the scores file's model_version (rules-only)"
    assert warning in words(result.stderr) and "is not logged to MLflow" in words(result.stderr)
    assert warning in words(html.unescape((out / "review.html").read_text(encoding="utf-8")))
    assert "logged to MLflow run" not in result.output
    assert "review/2026-03-01_2026-06-01" not in logged_folders(world)


def test_the_files_own_model_named_with_model_is_logged_without_warning(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    past = world["root"] / "past_plain.csv"
    args = ["review", str(past), str(world["plain"]), "--out", str(tmp_path / "review"), "--until", "2026-05-15"]
    result = runner.invoke(app, [*args, "--model", "models:/abm-tiering/1"])
    assert result.exit_code == 0, result.output
    assert "overrides" not in result.stderr and "logged to MLflow run" in result.output
    assert "review/2026-03-01_2026-05-15" in logged_folders(world)


def test_since_before_the_files_as_of_and_the_training_cut_off_is_warned_and_not_logged(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    past = world["root"] / "past_plain.csv"
    args = ["review", str(past), str(world["plain"]), "--out", str(tmp_path / "review"), "--since", "2025-06-01"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    said = words(result.stderr)
    assert "--since 2025-06-01 overrides the scores file's as_of 2026-03-01" in said
    assert "before the model's training cut-off 2026-03-01" in said and "its own training deals" in said
    assert "logged to MLflow run" not in result.output
    assert not [folder for folder in logged_folders(world) if folder.startswith("review/2025-06-01")]


def test_scores_without_probabilities_get_no_verdict_that_needs_them(world, tmp_path, monkeypatch):
    past = pd.read_csv(world["root"] / "past_plain.csv", dtype=str, keep_default_na=False)
    path = tmp_path / "past.csv"
    past.assign(win_probability="").to_csv(path, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    out = tmp_path / "review"
    result = runner.invoke(app, ["review", str(path), str(world["plain"]), "--out", str(out), "--until", "2026-06-15"])
    assert result.exit_code == 0, result.output
    text = words(result.output)
    assert "Verdict: Cannot judge" in text and "Model still holds" not in text
    assert "the win_probability column is blank" in text
    checks = pd.read_csv(out / "verdict.csv").set_index("check")["outcome"]
    assert checks["field ROC AUC"] == checks["field calibration error"] == "not measured"


class LoadHook:
    """A pyfunc model whose load hook writes a file: proof that loading it ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def load_context(self, context) -> None:
        Path(self.marker).write_text("code ran")

    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def crafted_model(tmp_path_factory) -> tuple[Path, Path]:
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("crafted")
    marker, folder = root / "code-ran.txt", root / "model"

    class Hook(LoadHook, mlflow.pyfunc.PythonModel):
        pass

    Hook.__module__, Hook.__qualname__ = __name__, "Hook"
    globals()["Hook"] = Hook  # pickled by reference, as an attacker's class would be found on the path
    mlflow.pyfunc.save_model(str(folder), python_model=Hook(str(marker)), pip_requirements=[])
    mlflow.pyfunc.load_model(str(folder))  # the hook does run when loaded: the test below can fail
    assert marker.exists()
    marker.unlink()
    return folder, marker


@pytest.mark.parametrize("form", ["path", "file_uri"])
def test_a_scores_file_cannot_choose_a_model_to_load(world, crafted_model, tmp_path, monkeypatch, form):
    folder, marker = crafted_model
    named = str(folder) if form == "path" else folder.as_uri()
    past = pd.read_csv(world["root"] / "past_plain.csv", dtype=str, keep_default_na=False)
    path = tmp_path / "past.csv"
    past.assign(model_version=named).to_csv(path, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    out = tmp_path / "review"
    result = runner.invoke(app, ["review", str(path), str(world["plain"]), "--out", str(out)])
    assert not marker.exists()  # the model's code never ran
    assert result.exit_code == 2, result.output
    text = words(result.output)
    assert f"model_version '{named}' is not a version of the registered model abm-tiering" in text
    assert "pass it explicitly with --model URI" in text and "Traceback" not in text
    assert not out.exists()


@pytest.mark.parametrize("named", ["99", "models:/abm-tiering/99"])
def test_a_version_the_registry_does_not_hold_is_refused_by_name(world, tmp_path, monkeypatch, named):
    past = pd.read_csv(world["root"] / "past_plain.csv", dtype=str, keep_default_na=False)
    path = tmp_path / "past.csv"
    past.assign(model_version=named).to_csv(path, index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    out = tmp_path / "review"
    result = runner.invoke(app, ["review", str(path), str(world["plain"]), "--out", str(out)])
    assert result.exit_code == 2, result.output
    text = words(result.output)
    assert "model_version 99 is not in the MLflow registry" in text and "(it holds version(s) 1)" in text
    assert "pass --model URI" in text and not out.exists()


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quarterly_review.ipynb"


def test_the_review_notebook_is_stored_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_review_notebook_runs_top_to_bottom(world, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", world["uri"])
    monkeypatch.setenv("TIERING_DATA", str(world["plain"]))
    monkeypatch.setenv("TIERING_MODEL", "models:/abm-tiering/1")
    monkeypatch.setenv("TIERING_PAST_AS_OF", AS_OF)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    assert not any(output.get("output_type") == "error" for output in outputs)
    text = "".join(output.get("text", "") for output in outputs)
    assert "Model still holds" in text
