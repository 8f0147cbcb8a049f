"""`tiering whatif` and `tiering config history|restore` from the command line: bad drafts refused by key, the
preview from a published scoring's parts equal to a full scoring with the draft, the backtest equal to `tiering
review` and to a recount from the raw CSVs, and publishing, the next scoring's use of it, and restoring."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import TieringConfig, merged
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def small_export(tmp_path_factory) -> Path:
    from sources.synthetic import generate_export

    folder = tmp_path_factory.mktemp("whatif") / "export"
    generate_export(folder, n_accounts=300, seed=4)
    return folder


@pytest.fixture
def workspace(tmp_path, monkeypatch, mlflow_store):
    """A fresh working folder with its own workspace store (SQLite) and MLflow store (no champion: rules only)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERING_DATABASE_URL", f"sqlite:///{tmp_path / 'workspace.db'}")
    return tmp_path


def draft(folder: Path, text: str, name: str = "draft.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_config_history_and_restore_without_a_store_create_none(workspace):
    history = invoke("config", "history")
    assert history.exit_code == 0 and "No business configuration has been published" in words(history.output)
    restored = invoke("config", "restore", "1")
    assert restored.exit_code == 2 and "no workspace store" in words(restored.output)
    assert not (workspace / "workspace.db").exists()


@pytest.mark.parametrize(
    "text, key",
    [
        ("rule_weights: {engagement: 0.5}\n", "'rule_weights': Value error, rule weights must sum to 1"),
        ("budget: {total: -5}\n", "'budget.total': Input should be greater than or equal to 0"),
        ("tiers: {tier_4: {max_accounts: 3, min_score: 10}}\n", "unknown key 'tiers.tier_4'"),
        ("tiers: {tier_1: {max_accounts: -1}}\n", "'tiers.tier_1.max_accounts': Input should be greater than or equal"),
        ("tiers: {tier_2: {min_score: 101}}\n", "'tiers.tier_2.min_score': Input should be less than or equal to 100"),
    ],
)
def test_a_bad_draft_is_refused_naming_the_key_and_nothing_is_written_or_published(workspace, text, key):
    path = draft(workspace, text)
    result = invoke("whatif", "no-such-export", "--config", path, "--out", "out", "--publish")
    assert result.exit_code == 2, result.output
    assert f"{path}: {key}" in words(result.output)
    assert "Traceback" not in result.output
    assert not (workspace / "out").exists() and not (workspace / "workspace.db").exists()


def test_the_backtest_of_the_active_configuration_is_the_review_of_the_same_period(workspace, small_export):
    as_of, past = "2026-07-01", "2026-04-02"  # the export ends 30 Jun 2026; one horizon (90 days) earlier
    path = draft(workspace, "rule_weights: {revenue_potential: 0.1, business_fit: 0.3, engagement: 0.6}\n")
    result = invoke("whatif", small_export, "--config", path, "--out", "out", "--as-of", as_of)
    assert result.exit_code == 0, result.output
    backtest = pd.read_csv(workspace / "out" / "backtest.csv")
    assert invoke("score", small_export, "--as-of", past, "--out", "past.csv").exit_code == 0
    reviewed = invoke("review", "past.csv", small_export, "--until", as_of, "--out", "review")
    assert reviewed.exit_code == 0, reviewed.output
    outcomes = pd.read_csv(workspace / "review" / "outcomes_by_tier.csv")
    figures = ["accounts", "pipeline_created", "pipeline_amount", "deals_closed", "deals_won", "won_revenue"]
    for tiering in ("final", "rule"):
        mine = backtest[(backtest["configuration"] == "active") & (backtest["tiering"] == tiering)].set_index("tier")
        theirs = outcomes[outcomes["tiering"] == tiering].set_index("tier")
        for tier in ("tier_1", "tier_2", "tier_3", "untiered"):
            for column in figures:
                assert mine.at[tier, column] == pytest.approx(theirs.at[tier, column]), (tiering, tier, column)
    # Recounted from the raw CSVs: won revenue closed in the period by the accounts each configuration put in Tier
    # 1 or 2 as of its start (the scenario's tiers are its accounts.csv's as of then: re-weighted past scores).
    opps = pd.read_csv(small_export / "opportunities.csv", parse_dates=["created_date", "close_date"])
    start, end = pd.Timestamp(past), pd.Timestamp(as_of)
    won = opps[(opps["outcome"] == "won") & (opps["close_date"] >= start) & (opps["close_date"] < end)]
    scores = pd.read_csv(workspace / "past.csv")
    top = set(scores.loc[scores["tier"].isin(["tier_1", "tier_2"]), "account_id"])
    row = backtest[(backtest["configuration"] == "active") & (backtest["tiering"] == "final")].set_index("tier")
    assert row.at["tier_1+2", "won_revenue"] == pytest.approx(won.loc[won["account_id"].isin(top), "amount"].sum())
    assert row.at["tier_1+2", "revenue_share"] == pytest.approx(
        won.loc[won["account_id"].isin(top), "amount"].sum() / won["amount"].sum()
    )
    # The scenario's Tier 1+2, recomputed from the past scores' components with the draft's weights.
    weighted = (
        0.1 * scores["revenue_potential_score"] + 0.3 * scores["business_fit_score"] + 0.6 * scores["engagement_score"]
    )
    # Tier 1 under the scenario by hand: the 20 best re-weighted scores of 60 or more inside the ICP (not government).
    industries = pd.read_csv(small_export / "accounts.csv").set_index("account_id")["industry"]
    inside = scores["account_id"].map(industries).str.strip().str.lower() != "government"
    ranked = scores.assign(w=weighted)[inside & (weighted >= 60)]
    tier_1 = set(ranked.sort_values(["w", "engagement_score"], ascending=False).head(20)["account_id"])
    scenario = backtest[(backtest["configuration"] == "scenario") & (backtest["tiering"] == "final")].set_index("tier")
    assert scenario.at["tier_1", "accounts"] == len(tier_1) > 0
    assert scenario.at["tier_1", "won_revenue"] == pytest.approx(
        won.loc[won["account_id"].isin(tier_1), "amount"].sum()
    )


def test_publish_is_used_by_the_next_scoring_and_restore_goes_back(workspace, small_export, mlflow_store):
    five = draft(workspace, "tiers: {tier_1: {max_accounts: 5}}\nbudget: {total: 1000}\n", "five.yaml")
    eight = draft(workspace, "tiers: {tier_1: {max_accounts: 8}}\n", "eight.yaml")
    # A rules-only scoring published first: the scenario is previewed from its parts (blank probabilities and all).
    assert invoke("score", small_export, "--out", "s0.csv", "--publish").exit_code == 0
    first = invoke(
        "whatif",
        small_export,
        "--config",
        five,
        "--out",
        "w1",
        "--no-backtest",
        "--publish",
        "--note",
        "fewer Tier 1 accounts",
    )
    assert first.exit_code == 0, first.output
    assert "published its business configuration as version 1" in words(first.output)
    assert "published scoring 1" in (workspace / "w1" / "whatif.html").read_text()
    moved = pd.read_csv(workspace / "w1" / "accounts.csv").query("tier_before != tier_after")
    assert set(moved["tier_before"]) == {"tier_1"} and len(moved) == 15  # 20 Tier 1 seats down to 5

    def tier_1_after_scoring(name: str) -> tuple[int, str, float]:
        scored = invoke("score", small_export, "--out", name)
        assert scored.exit_code == 0, scored.output
        scores = pd.read_csv(workspace / name)
        return int((scores["tier"] == "tier_1").sum()), words(scored.output), float(scores["budget"].sum())

    count, output, budget = tier_1_after_scoring("s1.csv")
    assert (
        count == 5 and "workspace configuration version 1" in output and budget == pytest.approx(1000, abs=5)
    )  # whole dollars per account
    second = invoke("whatif", small_export, "--config", eight, "--out", "w2", "--no-backtest", "--publish")
    assert second.exit_code == 0, second.output
    # The second scenario is laid over the first (the active one): its budget total stays.
    assert tier_1_after_scoring("s2.csv")[0] == 8
    history = invoke("config", "history")
    assert history.exit_code == 0 and "fewer Tier 1 accounts" in words(history.output)
    assert "tiers.tier_1.max_accounts: 5 -> 8" in words(history.output)
    restored = invoke("config", "restore", "1")
    assert restored.exit_code == 0, restored.output
    assert "Version 1 is active again, as version 3" in words(restored.output)
    assert tier_1_after_scoring("s3.csv")[0] == 5
    assert invoke("config", "restore", "9").exit_code == 2
    unchanged = invoke("whatif", small_export, "--config", five, "--out", "w4", "--no-backtest", "--publish")
    assert unchanged.exit_code == 2 and "changes no business key" in words(unchanged.output)
    assert not (workspace / "w4").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name("abm-tiering-configurations")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["config_version"] for run in runs) == ["1", "2", "3"]
    from workspace import WorkspaceStore

    with WorkspaceStore.open(create=False) as store:
        scenarios = store.scenarios()
        versions = store.config_versions()
    assert [s.configuration for s in scenarios] == [yaml.safe_load(eight.read_text()), yaml.safe_load(five.read_text())]
    assert {row["tier"]: row["accounts_after"] for row in scenarios[1].result["tiers"]}["tier_1"] == 5
    assert versions[0].restored_from == 1 and versions[0].changes == {
        "tiers.tier_1.max_accounts": {"before": 8, "after": 5}
    }


@pytest.mark.slow
def test_the_preview_from_a_published_scoring_equals_a_full_scoring_with_the_draft(
    trained_model, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERING_DATABASE_URL", f"sqlite:///{tmp_path / 'workspace.db'}")
    shutil.copy(trained_model.tracking_uri.removeprefix("sqlite:///"), tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data, uri = trained_model.data_dir, trained_model.uri
    published = invoke("score", data, "--model", uri, "--out", "published.csv", "--publish")
    assert published.exit_code == 0, published.output
    changes = {
        "rule_weights": {"revenue_potential": 0.2, "business_fit": 0.2, "engagement": 0.6},
        "model": {"blend": 0.4},
        "tiers": {"tier_1": {"max_accounts": 15}, "tier_2": {"max_accounts": 120}},
        "budget": {"total": 50000.0},
    }
    path = draft(tmp_path, yaml.safe_dump(changes))
    result = invoke("whatif", data, "--config", path, "--model", uri, "--out", "w", "--no-backtest")
    assert result.exit_code == 0, result.output
    assert "published scoring 1" in (tmp_path / "w" / "whatif.html").read_text()
    accounts = pd.read_csv(tmp_path / "w" / "accounts.csv", keep_default_na=False).set_index("account_id")
    whole = draft(tmp_path, yaml.safe_dump(merged(TieringConfig().model_dump(mode="json"), changes)), "whole.yaml")
    rescored = invoke("score", data, "--model", uri, "--config", whole, "--out", "scenario.csv")
    assert rescored.exit_code == 0, rescored.output
    truth = pd.read_csv(tmp_path / "scenario.csv").set_index("account_id").loc[accounts.index]
    assert (accounts["tier_after"] == truth["tier"]).all()
    assert (accounts["learned_score_after"] - truth["learned_score"]).abs().max() <= 0.006  # the file's 2 decimals
    assert (accounts["rule_score_after"] - truth["rule_score"]).abs().max() <= 0.006
    assert (accounts["budget_after"] - truth["budget"]).abs().max() <= 0.006
    before = pd.read_csv(tmp_path / "published.csv").set_index("account_id").loc[accounts.index]
    assert (accounts["tier_before"] == before["tier"]).all()
    moved = accounts[accounts["tier_before"] != accounts["tier_after"]]
    assert len(moved) and (moved["why"] != "").all()
    assert len(pd.read_csv(tmp_path / "w" / "moves.csv")) == len(moved)

    # Another book (one account more than was published): the published parts would describe the wrong book.
    other = tmp_path / "other-export"
    shutil.copytree(data, other)
    book = pd.read_csv(other / "accounts.csv", keep_default_na=False)
    pd.concat([book, book.tail(1).assign(account_id="NEW-1")]).to_csv(other / "accounts.csv", index=False)
    result = invoke("whatif", other, "--config", path, "--model", uri, "--out", "w2", "--no-backtest")
    assert result.exit_code == 0, result.output
    assert "is not of this export (1 of the export's" in words(result.output)
    assert "NEW-1" in set(pd.read_csv(tmp_path / "w2" / "accounts.csv")["account_id"])


CONSTANT_RULES = {
    "accounts.csv": (
        "account_id,account_name,industry,employees,annual_revenue,country\n"
        "A1,Acme,software,500,1000000,United States\n"
        "A2,Beta,software,500,1000000,United States\n"
        "A3,Gamma,software,500,1000000,United States\n"
    ),
    "opportunities.csv": (
        "opportunity_id,account_id,created_date,close_date,outcome,amount,product\n"
        "O1,A1,2024-01-05,2024-02-10,won,12000,Core\n"
        "O2,A2,2024-05-01,2024-06-30,lost,0,Core\n"
    ),
    "engagement.csv": "account_id,timestamp,channel,count\n",
    "intent.csv": "account_id,date,topic,score\n",
}


def test_on_an_export_whose_rule_scores_are_constant_the_suggestion_says_there_is_nothing_to_learn(
    workspace, write_export
):
    result = invoke("whatif", write_export(CONSTANT_RULES), "--suggest", "--out", "out")
    assert result.exit_code == 0, result.output
    assert "Nothing suggested: the rule scores are the same for every account: there is nothing to learn" in words(
        result.output
    )
    assert not (workspace / "out").exists()


def test_the_suggested_weights_beat_the_default_out_of_time_on_the_generator(workspace, tmp_path):
    from sources.synthetic import generate_export

    export = tmp_path / "book"
    generate_export(export, n_accounts=3000, seed=7)
    result = invoke("whatif", export, "--suggest", "--out", "out")
    assert result.exit_code == 0, result.output
    suggested = yaml.safe_load((workspace / "out" / "suggested.yaml").read_text())
    weights = suggested["rule_weights"]
    assert all(value >= 0 for value in weights.values()) and sum(weights.values()) == pytest.approx(1)
    assert (
        len(suggested.get("business_fit", {}).get("industries", []))
        <= len(TieringConfig().business_fit.industries) + TieringConfig().whatif.max_suggested_changes
    )
    backtest = pd.read_csv(workspace / "out" / "backtest.csv")
    top = backtest[(backtest["tier"] == "tier_1+2") & (backtest["tiering"] == "rule")].set_index("configuration")
    # Judged on the last horizon, which the fit never saw (it fits on the horizon before).
    assert top.at["scenario", "revenue_share"] > top.at["active", "revenue_share"]
    assert "Fitted on 02 Jan 2026 to 01 Apr 2026" in words(result.output)
    assert "Backtest 02 Apr 2026 to 30 Jun 2026" in words(result.output)


FAMILY_DRAFT = {
    "rule_weights": {"revenue_potential": 0.2, "business_fit": 0.2, "engagement": 0.6},
    "tiers": {"tier_1": {"max_accounts": 40}},
    "budget": {"total": 50000.0},
}


def assert_whatif_is_the_full_scoring(
    workspace: Path, export: Path, active: dict, changes: dict, model: tuple[str, ...] = (), backtest: bool = True
) -> None:
    """`tiering whatif --config DRAFT` on a book rolled up by family: its before and after are `tiering score` of the
    export with the active configuration and with the draft over it (which no score record can give: the family's
    pooled parts are not in them)."""
    (workspace / "tiering.yaml").write_text(yaml.safe_dump(active))
    path = draft(workspace, yaml.safe_dump(changes))
    result = invoke("whatif", export, "--config", path, *model, "--out", "w", *([] if backtest else ["--no-backtest"]))
    assert result.exit_code == 0, result.output
    accounts = pd.read_csv(workspace / "w" / "accounts.csv").set_index("account_id")
    full = merged(merged(TieringConfig().model_dump(mode="json"), active), changes)
    whole = draft(workspace, yaml.safe_dump(full), "whole.yaml")
    for config, name, side in (("tiering.yaml", "active.csv", "before"), (whole, "scenario.csv", "after")):
        scored = invoke("score", export, *model, "--config", config, "--out", name)
        assert scored.exit_code == 0, scored.output
        truth = pd.read_csv(workspace / name).set_index("account_id").loc[accounts.index]
        assert truth["family_id"].notna().all() and truth["family_tier"].eq(truth["tier"]).all()  # tiered by family
        assert (accounts[f"tier_{side}"] == truth["tier"]).all(), side
        for column in ("rule_score", "learned_score", "budget"):  # the file's 2 decimals; no budget: blank in both
            mine, theirs = accounts[f"{column}_{side}"], truth[column]
            assert mine.isna().eq(theirs.isna()).all(), (side, column)
            assert (mine - theirs).abs().fillna(0).max() <= 0.006, (side, column)
    moved = accounts[accounts["tier_before"] != accounts["tier_after"]]
    assert len(moved) > 10 and (moved["why"] != "").all()
    assert accounts["budget_after"].sum() == pytest.approx(changes["budget"]["total"], abs=len(accounts) * 0.01)
    if backtest:  # the backtest scores the past book under both configurations too
        backtest = pd.read_csv(workspace / "w" / "backtest.csv")
        assert set(backtest["configuration"]) == {"active", "scenario"}


def test_whatif_on_a_book_tiered_by_family_equals_a_full_scoring_with_the_draft(workspace, tmp_path):
    """Rules only, hierarchy.roll_up and tier_by family, with the backtest."""
    from sources.synthetic import generate_export

    export = tmp_path / "families"
    generate_export(export, n_accounts=300, seed=4, families=True)
    active = {"hierarchy": {"roll_up": "family", "tier_by": "family"}}
    (workspace / "tiering.yaml").write_text(yaml.safe_dump(active))
    # Published first: its records keep no family's pooled parts, so the page must not name it as the numbers' source.
    assert invoke("score", export, "--out", "published.csv", "--publish").exit_code == 0
    assert_whatif_is_the_full_scoring(workspace, export, active, FAMILY_DRAFT)
    subtitle = words((workspace / "w" / "whatif.html").read_text())
    from scoring.scorer import RULES_ONLY

    assert f"the book scored now with model {RULES_ONLY}, as of published scoring 1" in subtitle, subtitle[:2000]


@pytest.mark.slow
def test_whatif_with_a_family_trained_model_equals_a_full_scoring_with_the_draft(workspace, family_trainings):
    """The shared family training (hierarchy.roll_up: family) registered, tier_by: family, a draft re-weighting the
    rules and re-blending."""
    from configuration.tiering import parse_config
    from scoring.registry import configure
    from tests.trained import FAMILY_TRAINING
    from training.workflow import log_and_register

    active = {**FAMILY_TRAINING, "hierarchy": {"roll_up": "family", "tier_by": "family"}}
    configure()
    outcome = log_and_register(family_trainings.family, parse_config(active), lambda step: None)
    changes = {**FAMILY_DRAFT, "model": {"blend": 0.4}}
    model = ("--model", f"models:/abm-tiering/{outcome.version}")
    assert_whatif_is_the_full_scoring(workspace, family_trainings.folder, active, changes, model, backtest=False)
