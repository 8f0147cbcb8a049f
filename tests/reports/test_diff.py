"""`tiering diff`: tier movement between two scorings, what changed behind each move, and the errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from scoring.changes import describe_change

runner = CliRunner()


def words(text: str) -> str:
    return " ".join(text.split())


LEVEL = {"tier_1": 0, "tier_2": 1, "tier_3": 2, "untiered": 3}  # literal: the oracle, not the product's tier_movement


@pytest.fixture(scope="module")
def two_scorings(trained_model, tmp_path_factory) -> tuple[Path, Path]:
    """The same export scored by the same model as of two dates a quarter apart (CSV, then Parquet)."""
    folder = tmp_path_factory.mktemp("scorings")
    last_close = pd.read_csv(trained_model.data_dir / "opportunities.csv", usecols=["close_date"])["close_date"].max()
    quarter_before = (pd.Timestamp(last_close) - pd.DateOffset(months=3)).date().isoformat()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained_model.tracking_uri)
        for as_of, name in ((quarter_before, "q1.csv"), (None, "q2.parquet")):
            dated = ["--as-of", as_of] if as_of else []
            result = runner.invoke(
                app,
                [
                    "score",
                    str(trained_model.data_dir),
                    "--model",
                    trained_model.uri,
                    "--budget",
                    "100000",
                    *dated,
                    "--out",
                    str(folder / name),
                ],
            )
            assert result.exit_code == 0, result.output
    return folder / "q1.csv", folder / "q2.parquet"


def test_diff_lists_every_account_that_moved_with_what_changed(two_scorings, tmp_path):
    old_path, new_path = two_scorings
    result = runner.invoke(app, ["diff", str(old_path), str(new_path), "--out", str(tmp_path / "diff")])
    assert result.exit_code == 0, result.output
    old, new = pd.read_csv(old_path), pd.read_parquet(new_path)
    joined = old.merge(new, on="account_id", suffixes=("_old", "_new"))
    levels = joined["tier_old"].map(LEVEL) - joined["tier_new"].map(LEVEL)  # + is up, towards Tier 1
    moved = joined[levels != 0]
    assert len(moved) > 0  # a quarter of new engagement and deals moves some accounts

    moves = pd.read_csv(tmp_path / "diff" / "moves.csv")
    assert set(moves["account_id"]) == set(moved["account_id"])
    assert ((moves["levels"] > 0) == (moves["direction"] == "up")).all()
    assert (moves["levels"] == moves["old_tier"].map(LEVEL) - moves["new_tier"].map(LEVEL)).all()
    assert moves["what_changed"].str.len().gt(0).all()
    one = moves.iloc[0]
    source = old.set_index("account_id").loc[one["account_id"]]
    assert one["old_engagement_score"] == pytest.approx(source["engagement_score"])
    assert one["old_reason_1"] == source["reason_1"]

    counts = pd.read_csv(tmp_path / "diff" / "tier_counts.csv").set_index("tier")
    assert counts["before"].to_dict() == old["tier"].value_counts().reindex(counts.index, fill_value=0).to_dict()
    assert counts["after"].to_dict() == new["tier"].value_counts().reindex(counts.index, fill_value=0).to_dict()
    page = (tmp_path / "diff" / "diff.html").read_text(encoding="utf-8")
    assert "Accounts that changed tier" in page and str(moves.iloc[0]["account_id"]) in page
    assert f"{(moves['direction'] == 'up').sum():,} account(s) moved up" in words(result.output)


def test_describe_change_names_what_moved_biggest_first():
    old = pd.Series(
        {
            "revenue_potential_score": 50.0,
            "business_fit_score": 60.0,
            "engagement_score": 10.0,
            "rule_score": 40.0,
            "learned_score": 45.0,
            "win_probability": 0.20,
            "override_reason": "",
            "reason_1": "↑ 2 demo requests in the last 30 days",
            "reason_2": "↑ fit",
            "reason_3": "",
        }
    )
    new = old.copy()
    new[["engagement_score", "rule_score", "learned_score", "win_probability"]] = [70.0, 55.0, 52.0, 0.22]
    new["reason_1"] = "↑ 9 sales meetings in the last 30 days"
    text = describe_change(old, new)
    assert text.startswith("engagement 10 → 70; rule score 40 → 55; learned score 45 → 52")
    assert "win probability" not in text  # 2 points: not notable
    assert "new reasons: ↑ 9 sales meetings in the last 30 days; dropped: ↑ 2 demo requests" in text
    assert describe_change(old, old.copy()).endswith("the tier boundary moved")


def test_diff_errors_exit_2_naming_the_file(two_scorings, tmp_path):
    old_path, _ = two_scorings
    scores = pd.read_csv(old_path)
    wrong = tmp_path / "wrong.csv"
    scores.drop(columns=["rule_tier", "reason_2"]).to_csv(wrong, index=False)
    strangers = tmp_path / "strangers.csv"
    scores.assign(account_id="X-" + scores["account_id"]).to_csv(strangers, index=False)

    missing = runner.invoke(app, ["diff", str(tmp_path / "nope.csv"), str(wrong), "--out", str(tmp_path / "d")])
    assert missing.exit_code == 2
    text = words(missing.output)
    assert "nope.csv: scores file not found" in text and "missing column(s) rule_tier, reason_2" in text  # both files
    disjoint = runner.invoke(app, ["diff", str(old_path), str(strangers), "--out", str(tmp_path / "d")])
    assert disjoint.exit_code == 2 and "no account in common" in words(disjoint.output)
    assert not (tmp_path / "d").exists()
    assert "Traceback" not in missing.output + disjoint.output
