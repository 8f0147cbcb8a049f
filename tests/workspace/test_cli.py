"""The store from the command line: `tiering score --publish`, `tiering publish`, workspace pins applied in
`tiering score` beside --overrides, `tiering users ...` and `tiering db upgrade`, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cli.main import app
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from tests.workspace.conftest import PASSWORD
from workspace import WorkspaceStore
from workspace.migrate import head_revision

runner = CliRunner()


def invoke(*args, stdin: str | None = None):
    return runner.invoke(app, [str(arg) for arg in args], input=stdin)


def words(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def workspace_url(database_url, monkeypatch, tmp_path):
    """TIERING_DATABASE_URL at an empty database; the working folder a fresh one (for models/ and files)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERING_DATABASE_URL", database_url)
    return database_url


def test_a_plain_score_never_creates_a_store(write_export, mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERING_DATABASE_URL", raising=False)
    result = invoke("score", write_export(), "--out", "scores.csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "scores.csv").is_file() and not (tmp_path / "models" / "workspace.db").exists()


def test_score_publish_records_the_scores_and_workspace_pins_apply_in_the_next_score(
    write_export, mlflow_store, workspace_url, tmp_path
):
    data = write_export()
    result = invoke("score", data, "--out", "scores.csv", "--publish")
    assert result.exit_code == 0, result.output
    assert "Published 3 accounts to the workspace as scoring 1" in words(result.output)
    written = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    with WorkspaceStore.open(workspace_url, create=False) as store:
        stored = store.scores_frame().set_index("account_id")
        assert stored.loc[written["account_id"], "tier"].tolist() == written["tier"].tolist()
        assert stored["account_name"].to_dict() == {"A1": "Acme", "A2": "Beta", "A3": "Gamma"}
        assert stored["industry"].to_dict() == {"A1": "software", "A2": "healthcare", "A3": "retail"}
        for column in ("rule_score", "learned_score"):  # the file rounds to 2 decimals; the store keeps them all
            full = stored.loc[written["account_id"], column].to_numpy()
            assert full == pytest.approx(written[column], abs=0.005 + 1e-9)
            assert (full.round(2) != full).any()
        assert store.latest_scoring().as_of == pd.Timestamp(written["as_of"].iloc[0]).to_pydatetime()
        store.add_user("erin", "editor", PASSWORD)
        model_said = written.set_index("account_id").loc["A3", "learned_tier"]
        store.pin("A3", "tier_1", "strategic logo", None, "erin")

    pinned = invoke("score", data, "--out", "pinned.csv")
    assert pinned.exit_code == 0, pinned.output
    assert "1 override(s) applied, 1 of them pinned in the workspace" in words(pinned.output)
    row = pd.read_csv(tmp_path / "pinned.csv", keep_default_na=False).set_index("account_id").loc["A3"]
    assert row["tier"] == "tier_1"
    assert row["override_reason"] == f"pinned to tier_1 by erin: strategic logo (model said {model_said})"

    (tmp_path / "agree.csv").write_text("account_id,tier,reason,owner\nA3,tier_1,same call,sam\nA1,tier_3,low,sam\n")
    agreed = invoke("score", data, "--out", "agreed.csv", "--overrides", "agree.csv")
    assert agreed.exit_code == 0, agreed.output
    tiers = pd.read_csv(tmp_path / "agreed.csv").set_index("account_id")["tier"]
    assert (tiers["A3"], tiers["A1"]) == ("tier_1", "tier_3")

    (tmp_path / "clash.csv").write_text("account_id,tier,reason,owner\nA3,tier_2,not so fast,sam\n")
    clash = invoke("score", data, "--out", "clash-scores.csv", "--overrides", "clash.csv")
    assert clash.exit_code == 2
    message = words(clash.output)
    assert "A3: the --overrides file pins it to tier_2 (sam: not so fast)" in message
    assert "the workspace pins it to tier_1 (erin: strategic logo)" in message
    assert not (tmp_path / "clash-scores.csv").exists()


def test_publish_a_scores_file_with_and_without_the_export(write_export, mlflow_store, workspace_url, tmp_path):
    data = write_export()
    assert invoke("score", data, "--out", "scores.csv").exit_code == 0
    bare = invoke("publish", "scores.csv")
    assert bare.exit_code == 0, bare.output
    assert "No --data" in words(bare.output)
    named = invoke("publish", "scores.csv", "--data", data)
    assert named.exit_code == 0, named.output
    with WorkspaceStore.open(workspace_url, create=False) as store:
        first, second = (store.scores_frame(s.id) for s in reversed(store.scorings()))
    assert first["account_name"].isna().all()
    assert second["account_name"].tolist() == ["Acme", "Beta", "Gamma"]
    missing = invoke("publish", "nowhere.csv")
    assert missing.exit_code == 2 and "scores file not found" in words(missing.output)


# Open at 2024-03-01 means created before that day and not closed before it; by hand, per opportunity:
OPEN_PIPELINE_OPPORTUNITIES = (
    "opportunity_id,account_id,created_date,close_date,outcome,amount,product\n"
    "O1,A1,2024-01-05,2024-02-10,won,12000,Core\n"  # closed before: no
    "O2,A1,2024-02-01,2024-03-15,lost,5000,Core\n"  # lost after as_of, so open then: 5,000
    "O3,A1,2024-02-20,,open,7500.5,Core\n"  # open: 7,500.5
    "O4,A2,2024-01-10,2024-03-01,won,30000,Core\n"  # won on the as_of day, not before it: 30,000
    "O5,A2,2024-02-15,,open,,Add-on\n"  # open without an amount: nothing
    "O6,A2,2024-03-01,,open,9000,Core\n"  # created on the as_of day, not before it: no
    "O7,A3,2024-03-20,2024-04-10,won,40000,Core\n"  # created after: no
)
OPEN_PIPELINE = {"A1": 12_500.5, "A2": 30_000.0, "A3": 0.0}


def test_publishing_with_the_export_stores_each_accounts_open_pipeline_at_as_of(
    write_export, mlflow_store, workspace_url
):
    data = write_export({"opportunities.csv": OPEN_PIPELINE_OPPORTUNITIES})
    scored = invoke("score", data, "--as-of", "2024-03-01", "--out", "scores.csv", "--publish")
    assert scored.exit_code == 0, scored.output
    assert invoke("publish", "scores.csv", "--data", data).exit_code == 0
    assert invoke("publish", "scores.csv").exit_code == 0
    with WorkspaceStore.open(workspace_url, create=False) as store:
        from_score, from_publish, without_export = (
            store.scores_frame(s.id).set_index("account_id")["open_pipeline"] for s in reversed(store.scorings())
        )
    assert from_score.to_dict() == OPEN_PIPELINE
    assert from_publish.to_dict() == OPEN_PIPELINE
    assert without_export.isna().all()


def test_users_from_the_command_line(workspace_url):
    added = invoke("users", "add", "frank", "--role", "editor")
    assert added.exit_code == 0, added.output
    password = re.search(r"Password \(shown once\): (\S+)", added.output).group(1)
    piped = invoke("users", "add", "gail", "--role", "admin", "--password-stdin", stdin=f"{PASSWORD}\n")
    assert piped.exit_code == 0 and PASSWORD not in piped.output
    with WorkspaceStore.open(workspace_url, create=False) as store:
        assert store.authenticate("frank", password).role == "editor"
        assert store.authenticate("gail", PASSWORD).role == "admin"
    listed = words(invoke("users", "list").output)
    assert "frank" in listed and "gail" in listed and "admin" in listed
    assert invoke("users", "disable", "frank").exit_code == 0
    with WorkspaceStore.open(workspace_url, create=False) as store:
        assert store.authenticate("frank", password) is None
    refused = {
        ("users", "add", "hana", "--role", "owner"): "owner",
        ("users", "add", "frank"): "taken",
        ("users", "disable", "nobody"): "no user named",
    }
    for arguments, message in refused.items():
        result = invoke(*arguments)
        assert result.exit_code == 2 and message in words(result.output), result.output
    empty = invoke("users", "add", "ivan", "--password-stdin", stdin="\n")
    assert empty.exit_code == 2 and "held no password" in words(empty.output)


def test_db_upgrade_creates_then_reports_up_to_date_and_a_newer_schema_stops_every_store_command(
    workspace_url, write_export, mlflow_store
):
    created = invoke("db", "upgrade")
    assert created.exit_code == 0, created.output
    assert f"from schema (none) to {head_revision()}" in words(created.output)
    again = invoke("db", "upgrade")
    assert again.exit_code == 0 and f"is up to date (schema {head_revision()})" in words(again.output)
    engine = create_engine(workspace_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    for arguments in (("users", "list"), ("db", "upgrade"), ("score", write_export(), "--out", "s.csv")):
        result = invoke(*arguments)
        assert result.exit_code == 2, result.output
        assert "does not know" in words(result.output) and "unexpected" not in result.output
    assert "tiering db upgrade" in words(invoke("users", "list").output)


def test_an_unreachable_database_is_one_message_naming_the_setting(monkeypatch, tmp_path):
    from tests.postgres import free_port

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TIERING_DATABASE_URL", f"postgresql+psycopg://u:hunter2@127.0.0.1:{free_port()}/db")
    result = invoke("users", "list")
    assert result.exit_code == 2
    assert "cannot reach the workspace store" in words(result.output) and "hunter2" not in result.output
    monkeypatch.setenv("TIERING_DATABASE_URL", "not a url")
    result = invoke("users", "list")
    assert result.exit_code == 2 and "is not a database URL" in words(result.output)


def test_publish_applies_workspace_pins_to_a_file_scored_without_them(
    write_export, mlflow_store, workspace_url, tmp_path
):
    from configuration.tiering import TieringConfig

    data = write_export()
    assert invoke("score", data, "--out", "plain.csv", "--budget", "1000").exit_code == 0
    (tmp_path / "file-pin.csv").write_text("account_id,tier,reason,owner\nA3,tier_2,from the file,sam\n")
    assert invoke("score", data, "--out", "file-pinned.csv", "--overrides", "file-pin.csv").exit_code == 0
    assert invoke("publish", "plain.csv", "--data", data).exit_code == 0
    with WorkspaceStore.open(workspace_url, create=False) as store:
        store.add_user("erin", "editor", PASSWORD)
        store.pin("A3", "tier_1", "strategic logo", None, "erin")

    result = invoke("publish", "plain.csv")
    assert result.exit_code == 0, result.output
    assert "1 workspace pin(s) applied" in words(result.output)
    plain = pd.read_csv(tmp_path / "plain.csv", keep_default_na=False).set_index("account_id")
    with WorkspaceStore.open(workspace_url, create=False) as store:
        published = store.scores_frame().set_index("account_id")
    assert published.loc["A3", "tier"] == "tier_1"
    expected_reason = f"pinned to tier_1 by erin: strategic logo (model said {plain.loc['A3', 'learned_tier']})"
    assert published.loc["A3", "override_reason"] == expected_reason
    tiers = published["tier"]
    split = TieringConfig().budget.split
    total = plain["budget"].sum()
    for account, tier in tiers.items():  # the budget re-split by tier, evenly within each tier
        assert published.loc[account, "budget"] == pytest.approx(total * split.get(tier, 0.0) / (tiers == tier).sum())
    others = [a for a in plain.index if a != "A3"]
    assert published.loc[others, "tier"].tolist() == plain.loc[others, "tier"].tolist()

    clash = invoke("publish", "file-pinned.csv")
    assert clash.exit_code == 2
    assert "the workspace pins it to tier_1 (erin: strategic logo)" in words(clash.output)
    with WorkspaceStore.open(workspace_url, create=False) as store:
        assert len(store.scorings()) == 2


def test_review_counts_the_accounts_flagged_in_the_workspace(write_export, mlflow_store, workspace_url, tmp_path):
    data = write_export()
    past = invoke("score", data, "--as-of", "2024-02-01", "--out", "past.csv", "--publish")
    assert past.exit_code == 0, past.output
    with WorkspaceStore.open(workspace_url, create=False) as store:
        store.add_user("vic", "viewer", PASSWORD)
        store.flag("A2", "should be tier 1", "vic")
        store.flag("A2", "really", "vic")
    result = invoke("review", "past.csv", data, "--out", "review")
    assert result.exit_code == 0, result.output
    # A2 won O4 (30,000, closed 2024-04-01) inside the period 2024-02-01 to 2024-04-02.
    assert "1 account(s) flagged in the workspace won $30.0k in the period" in words(result.output)
    flags = pd.read_csv(tmp_path / "review" / "flags.csv")
    assert flags[["account_id", "flags", "first_comment", "won_revenue"]].values.tolist() == [
        ["A2", 2, "should be tier 1", 30000.0]
    ]
    assert "Flagged in the workspace" in (tmp_path / "review" / "review.html").read_text()
