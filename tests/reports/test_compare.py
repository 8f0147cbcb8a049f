"""`tiering compare`: the report's content, the tables behind it, the rules-only report and the errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import TieringConfig
from features.config import TIER_NAMES, UNTIERED
from features.errors import DataError
from reports.compare import MOVER_LEVELS, movers
from reports.report import Column, publish, table

runner = CliRunner()
TIERS = [*TIER_NAMES, UNTIERED]
LEARNED_SECTIONS = ("agreement", "holdout", "gain", "calibration", "map", "movers", "budget", "forecast")


def words(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


LEVEL = {"tier_1": 0, "tier_2": 1, "tier_3": 2, "untiered": 3}  # literal: the oracle, not the product's tier_movement


@pytest.fixture(scope="module")
def report(trained_model, tmp_path_factory) -> Path:
    """One `tiering compare` run with the trained model, and a `tiering score` of the same book beside it."""
    out = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained_model.tracking_uri)
        compared = runner.invoke(
            app, ["compare", str(trained_model.data_dir), "--model", trained_model.uri, "--out", str(out / "report")]
        )
        assert compared.exit_code == 0, compared.output
        scored = runner.invoke(
            app, ["score", str(trained_model.data_dir), "--model", trained_model.uri, "--out", str(out / "scores.csv")]
        )
        assert scored.exit_code == 0, scored.output
    return out


def test_report_has_every_section_with_captioned_embedded_figures(report):
    page = (report / "report" / "report.html").read_text(encoding="utf-8")
    for anchor in LEARNED_SECTIONS:
        assert f"<section id={anchor}>" in page
    figures = re.findall(r"<figure>.*?</figure>", page, flags=re.S)
    assert len(figures) == 4  # holdout bars, gain and lift, calibration, priority map
    for figure in figures:
        assert 'src="data:image/png;base64,' in figure and "How to read:" in figure
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # opens offline: nothing fetched
    assert "No learned model" not in page


def test_agreement_matrix_covers_every_account_once(report):
    scores = pd.read_csv(report / "scores.csv")
    agreement = pd.read_csv(report / "report" / "agreement.csv")
    for book in ("current", "holdout"):
        cells = agreement[agreement["book"] == book]
        assert len(cells) == len(TIERS) ** 2
        assert cells["accounts"].sum() == len(scores)
        assert cells["share"].sum() == pytest.approx(1.0)
    current = agreement[agreement["book"] == "current"].set_index(["learned_tier", "rule_tier"])["accounts"]
    expected = scores.groupby(["learned_tier", "rule_tier"]).size()
    assert current[current > 0].sort_index().to_dict() == expected.sort_index().to_dict()


def test_tier_counts_match_the_scores_file(report):
    scores = pd.read_csv(report / "scores.csv")
    book_tiers = pd.read_csv(report / "report" / "book_tiers.csv")
    for tiering in ("learned", "rule"):
        counts = book_tiers[book_tiers["tiering"] == tiering].set_index("tier")["accounts"]
        expected = scores[f"{tiering}_tier"].value_counts().reindex(TIERS, fill_value=0)
        assert counts.reindex(TIERS).to_dict() == expected.to_dict()
    learned_budget = book_tiers[book_tiers["tiering"] == "learned"]["budget"].sum()
    assert learned_budget == pytest.approx(1_000_000)


def test_kappa_and_headline_numbers(report):
    stats = pd.read_csv(report / "report" / "agreement_stats.csv").set_index("book")
    scores = pd.read_csv(report / "report" / "scores.csv")
    # Cohen's kappa by hand from the learned-versus-rule table of the current book.
    learned, rule = scores["learned_tier"], scores["rule_tier"]
    observed = float((learned == rule).mean())
    chance = sum(float((learned == t).mean()) * float((rule == t).mean()) for t in set(learned) | set(rule))
    assert stats.loc["current", "kappa"] == pytest.approx((observed - chance) / (1 - chance), abs=1e-9)
    summary = pd.read_csv(report / "report" / "summary.csv").set_index("metric")["value"]
    assert summary["kappa_current"] == pytest.approx(stats.loc["current", "kappa"], abs=1e-9)
    assert 0.5 < summary["learned_roc_auc"] <= 1
    holdout = pd.read_csv(report / "report" / "holdout_tiers.csv")
    for _, tiering in holdout.groupby("tiering"):
        assert tiering["revenue_share"].sum() == pytest.approx(1.0)


def test_listed_movers_are_all_accounts_two_levels_apart(report):
    scores = pd.read_csv(report / "report" / "scores.csv")
    listed = pd.read_csv(report / "report" / "movers.csv")
    levels = scores["rule_tier"].map(LEVEL) - scores["learned_tier"].map(LEVEL)
    assert set(listed["account_id"]) == set(scores.loc[levels.abs() >= MOVER_LEVELS, "account_id"])
    assert (listed["levels"].abs() >= MOVER_LEVELS).all()
    assert (listed["rule_tier"].map(LEVEL) - listed["learned_tier"].map(LEVEL) == listed["levels"]).all()


def test_movers_keep_only_tiers_two_levels_apart_largest_gap_first():
    book = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e"],
            "account_name": ["A", "B", "C", "D", "E"],
            "rule_tier": ["tier_3", "untiered", "tier_1", "tier_2", "tier_1"],
            "learned_tier": ["tier_1", "tier_1", "tier_2", "untiered", "untiered"],
            "learned_score": [90.0, 95, 70, 10, 5],
            "rule_score": [30.0, 10, 80, 50, 70],
            "revenue_potential_score": 50.0,
            "business_fit_score": 50.0,
            "engagement_score": 50.0,
            "win_probability": 0.3,
            "expected_value": 1000.0,
            "reason_1": "x",
            "reason_2": "",
            "reason_3": "",
            "budget_rule": 0.0,
            "budget_learned": 0.0,
        }
    )
    listed = movers(book)
    assert listed["account_id"].tolist() == ["b", "e", "a", "d"]  # c is one level apart
    assert listed["levels"].tolist() == [3, -3, 2, -2]


def test_report_is_logged_to_the_models_run(report, model_store):
    from mlflow import MlflowClient

    logged = {Path(item.path).name for item in MlflowClient().list_artifacts(model_store.run_id, "compare")}
    assert {"report.html", "agreement.csv", "movers.csv", "scores.csv"} <= logged


def test_the_forecast_section_adds_up_the_scores_files_expected_revenue_per_tier(report):
    """Each tier's expected won revenue inside the horizon is its accounts' expected_revenue summed (the scores
    file of `tiering score` on the same book), and the interval holds the point."""
    scores = pd.read_csv(report / "scores.csv")
    forecast = pd.read_csv(report / "report" / "forecast.csv").set_index("tier")
    assert list(forecast.index) == [*TIERS, "overall"]
    for tier in TIERS:
        members = scores[scores["tier"] == tier]
        assert forecast.at[tier, "accounts"] == len(members)
        assert forecast.at[tier, "won_revenue"] == pytest.approx(members["expected_revenue"].sum(), rel=1e-4, abs=1)
        assert forecast.at[tier, "won_revenue_low"] <= forecast.at[tier, "won_revenue"]
        assert forecast.at[tier, "won_revenue"] <= forecast.at[tier, "won_revenue_high"]
    assert forecast.at["overall", "accounts"] == len(scores)
    page = words((report / "report" / "report.html").read_text(encoding="utf-8"))
    horizon = TieringConfig().model.horizon_days
    assert f"What each learned tier should bring in the next {horizon} days" in page


def test_rules_only_report_says_so_and_skips_learned_parts(trained_model, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")  # no champion here
    result = runner.invoke(app, ["compare", str(trained_model.data_dir), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "No champion" in words(result.output)
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "No learned model" in page
    for anchor in ("holdout", "gain", "budget"):
        assert f"<section id={anchor}>" in page
    for anchor in ("agreement", "calibration", "map", "movers", "forecast"):
        assert f"<section id={anchor}>" not in page
    assert not (tmp_path / "report" / "movers.csv").exists()
    assert not (tmp_path / "report" / "forecast.csv").exists()
    holdout = pd.read_csv(tmp_path / "report" / "holdout_tiers.csv")
    assert set(holdout["tiering"]) == {"rule"} and holdout["opportunities"].sum() > 0


def test_compare_errors_exit_2_with_one_message(model_store, tmp_path):
    missing = runner.invoke(app, ["compare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    bad_model = runner.invoke(
        app, ["compare", str(model_store.data_dir), "--model", "models:/abm-tiering/99", "--out", str(tmp_path / "r")]
    )
    bad_date = runner.invoke(
        app, ["compare", str(model_store.data_dir), "--as-of", "soon", "--out", str(tmp_path / "r")]
    )
    for result in (missing, bad_model, bad_date):
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert "models:/abm-tiering/99" in words(bad_model.output)
    assert "not a date" in words(bad_date.output)
    assert not (tmp_path / "r").exists()


def test_publish_replaces_an_earlier_output_whole_and_keeps_it_when_interrupted(tmp_path, monkeypatch):
    out = tmp_path / "report"
    publish(out, "report.html", "first", {"a": pd.DataFrame({"x": [1]}), "b": pd.DataFrame({"y": [2]})})
    publish(out, "report.html", "second", {"a": pd.DataFrame({"x": [3]})})
    assert (out / "report.html").read_text() == "second" and not (out / "b.csv").exists()

    def interrupted(frame, path):
        raise KeyboardInterrupt

    monkeypatch.setattr("reports.report.write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        publish(out, "report.html", "third", {"a": pd.DataFrame({"x": [4]})})
    assert (out / "report.html").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging folder left behind


def test_publish_refuses_a_folder_holding_something_else(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not an empty folder"):
        publish(tmp_path, "report.html", "page", {})
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_tables_escape_crm_text():
    frame = pd.DataFrame({"name": ["<script>alert(1)</script> & Co"], "value": [np.nan]})
    cells = table(frame, [Column("Name", "name", numeric=False), Column("Value", "value")])
    assert "<script>" not in cells and "&lt;script&gt;" in cells
