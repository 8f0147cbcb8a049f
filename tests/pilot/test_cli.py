"""`tiering pilot design|readout` and `tiering generate --pilot-lift` as a user runs them: files, the workspace,
and every refusal (exit 2, a message naming the fix, nothing written)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import TieringConfig
from reports.diff import SCORE_COLUMNS
from sources.synthetic import PILOT_TRUTH_FILE, PlantedPilot, generate_export
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from workspace import WorkspaceStore
from workspace.pilots import active_assignments, pilots

runner = CliRunner()
STRATA = {"tier_1": 6, "tier_2": 9, "tier_3": 5}  # accounts per tier in the hand-made scores


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def words(output: str) -> str:
    return " ".join(output.split())


def write_scores(path, families: dict[str, str] | None = None) -> pd.DataFrame:
    rows = []
    for tier, count in STRATA.items():
        for _ in range(count):
            number = len(rows)
            row = {column: "" for column in SCORE_COLUMNS}
            row.update(
                account_id=f"A{number:02d}",
                tier=tier,
                learned_tier=tier,
                rule_tier=tier,
                learned_score=90 - number,
                rule_score=60 - number,
                win_probability=0.5,
                intent_surge=False,
                model_version="rules-only",
            )
            rows.append(row)
    frame = pd.DataFrame(rows)
    if families:
        frame["family_id"] = frame["account_id"].map(families).fillna("")
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'workspace.db'}"
    monkeypatch.setenv("TIERING_DATABASE_URL", url)
    return url


def test_design_writes_the_split_and_publishes_it_frozen(tmp_path, workspace):
    write_scores(tmp_path / "scores.csv")
    result = invoke("pilot", "design", "scores.csv", "--out", "p1", "--seed", "4", "--start", "2026-01-05")
    assert result.exit_code == 0, result.output
    assignment = pd.read_csv(tmp_path / "p1" / "assignment.csv", keep_default_na=False)
    assert list(assignment.columns[:3]) == ["account_id", "group", "stratum"]
    # Default tiers (pilot.tiers): tier_1 and tier_2, so the 15 accounts A00-A14, 6 and 9 of them.
    assert sorted(TieringConfig().pilot.tiers) == ["tier_1", "tier_2"]
    assert set(assignment["account_id"]) == {f"A{i:02d}" for i in range(15)}
    counts = assignment.groupby(["stratum", "group"]).size().unstack()
    assert counts.loc["tier_1"].tolist() == [3, 3]
    assert abs(counts.loc["tier_2", "treatment"] - counts.loc["tier_2", "control"]) == 1
    pilot = json.loads((tmp_path / "p1" / "pilot.json").read_text())
    assert {key: pilot[key] for key in ("seed", "start_date", "horizon_days", "metric", "tiers", "strata")} == {
        "seed": 4,
        "start_date": "2026-01-05",
        "horizon_days": TieringConfig().pilot.horizon_days,
        "metric": "pipeline",
        "tiers": ["tier_1", "tier_2"],
        "strata": [],
    }
    with WorkspaceStore.open(workspace, create=False) as store:
        (stored,) = pilots(store)
        assert stored.pilot_key == pilot["pilot_id"]
        assert (stored.treatment, stored.control) == (
            int((assignment["group"] == "treatment").sum()),
            int((assignment["group"] == "control").sum()),
        )
        active = active_assignments(store, pd.Timestamp("2026-02-01").date())
        assert sorted(active["account_id"]) == sorted(assignment["account_id"])
        assert active_assignments(store, pd.Timestamp("2026-04-05").date()).empty  # 90 days on, it has ended

    # A second pilot on accounts of the running one is refused, and writes nothing.
    again = invoke("pilot", "design", "scores.csv", "--out", "p2", "--tiers", "tier_2", "--start", "2026-02-01")
    assert again.exit_code == 2
    assert "9 of the pilot's accounts are already in the running pilot" in words(again.output)
    assert not (tmp_path / "p2").exists()
    # The tier outside it is free.
    other = invoke("pilot", "design", "scores.csv", "--out", "p3", "--tiers", "tier_3", "--start", "2026-02-01")
    assert other.exit_code == 0, other.output
    with WorkspaceStore.open(workspace, create=False) as store:
        assert len(pilots(store)) == 2


def test_design_randomises_whole_families(tmp_path, workspace):
    families = {"A00": "F1", "A07": "F1", "A08": "F1", "A01": "F2", "A09": "F2"}
    write_scores(tmp_path / "scores.csv", families)
    result = invoke("pilot", "design", "scores.csv", "--out", "p", "--seed", "2", "--start", "2026-01-05")
    assert result.exit_code == 0, result.output
    assert "whole families randomised together" in words(result.output)
    a = pd.read_csv(tmp_path / "p" / "assignment.csv", keep_default_na=False).set_index("account_id")
    assert a.loc[["A00", "A07", "A08"], "group"].nunique() == 1
    assert a.loc[["A01", "A09"], "group"].nunique() == 1
    # 15 accounts, 5 in two families: 12 units; tier_1 holds F1, F2 (led by A00, A01) and A02-A05: 6 units, 3 + 3.
    units = a.assign(unit=a["family_id"].where(a["family_id"] != "", a.index.to_series())).drop_duplicates("unit")
    assert len(units) == 12
    assert units.groupby(["stratum", "group"]).size().loc["tier_1"].tolist() == [3, 3]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--size", "4", "--share", "0.5"], "--size and --share both given"),
        (["--tiers", "tier_9"], "tier_9 is not a tier"),
        (["--share", "1.5"], "--share 1.5: give a share above 0"),
        (["--size", "99"], "--size 99: give between 2 and 15"),
        (["--strata", "region"], "no column region"),
    ],
)
def test_design_refuses_bad_options(tmp_path, workspace, options, message):
    write_scores(tmp_path / "scores.csv")
    result = invoke("pilot", "design", "scores.csv", "--out", "p", *options)
    assert result.exit_code == 2
    assert message in words(result.output)
    assert not (tmp_path / "p").exists() and not (tmp_path / "workspace.db").exists()


@pytest.fixture(scope="module")
def planted_export(tmp_path_factory):
    """A small export with a pilot from 2026-03-01 (90 days, ending 2026-05-30) and no planted lift."""
    folder = tmp_path_factory.mktemp("planted") / "data"
    generate_export(folder, n_accounts=300, seed=5, pilot=PlantedPilot(start="2026-03-01", lift=0.0))
    return folder


def test_readout_refuses_bad_assignments_and_an_early_readout(tmp_path, workspace, planted_export):
    early = invoke("pilot", "readout", planted_export, planted_export, "--out", "r", "--until", "2026-05-01")
    assert early.exit_code == 2
    assert "runs until 2026-05-29: 29 day(s) left" in words(early.output)
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "pilot.json").write_text((planted_export / "pilot.json").read_text())
    assignment = pd.read_csv(planted_export / "assignment.csv", keep_default_na=False)
    assignment.iloc[[0, 1, 0]].to_csv(folder / "assignment.csv", index=False)  # row 4 repeats row 2
    duplicated = invoke("pilot", "readout", folder, planted_export, "--out", "r")
    assert duplicated.exit_code == 2
    assert "an account appears more than once" in words(duplicated.output) and "rows 2, 4" in words(duplicated.output)
    stranger = assignment.head(4).copy()
    stranger.loc[2, "account_id"] = "NOT-AN-ACCOUNT"
    stranger.to_csv(folder / "assignment.csv", index=False)
    unknown = invoke("pilot", "readout", folder, planted_export, "--out", "r")
    assert unknown.exit_code == 2
    assert "1 account(s) of the assignment are not in the export's accounts" in words(unknown.output)
    assert "row 4" in words(unknown.output) and "NOT-AN-ACCOUNT" not in unknown.output
    assert not (tmp_path / "r").exists()


def test_readout_page_tables_and_mlflow(tmp_path, workspace, planted_export, mlflow_store):
    result = invoke("pilot", "readout", planted_export, planted_export, "--out", "r")
    assert result.exit_code == 0, result.output
    lift = pd.read_csv(tmp_path / "r" / "lift.csv")
    assert list(lift.columns[:7]) == ["metric", "scope", "kind", "estimate", "low", "high", "p_value"]
    assert set(lift["metric"]) == {"pipeline", "win_rate", "won_revenue", "deals_won"}
    assert set(lift["scope"]) == {"pooled", "tier_1", "tier_2", "tier_3"}
    assert set(lift["kind"]) == {"difference", "ratio"}
    # Treatment and control per account, checked against the export by hand for the pooled pipeline.
    assignment = pd.read_csv(planted_export / "assignment.csv")
    opportunities = pd.read_csv(planted_export / "opportunities.csv", parse_dates=["created_date"])
    inside = opportunities[
        (opportunities["created_date"] >= "2026-03-01") & (opportunities["created_date"] < "2026-05-30")
    ]
    per_account = inside.groupby("account_id")["amount"].sum().reindex(assignment["account_id"], fill_value=0)
    groups = pd.read_csv(tmp_path / "r" / "groups.csv")
    pooled = groups[(groups["metric"] == "pipeline") & (groups["scope"] == "pooled")].set_index("group")
    treated = assignment["group"].eq("treatment").to_numpy()
    assert pooled.loc["treatment", "accounts"] == treated.sum()
    # Stratified by tier: the tiers' treated means weighted by the tiers' sizes.
    by_hand = sum(
        (assignment["stratum"] == tier).mean()
        * per_account.to_numpy()[((assignment["stratum"] == tier).to_numpy()) & treated].mean()
        for tier in ("tier_1", "tier_2", "tier_3")
    )
    assert pooled.loc["treatment", "value"] == pytest.approx(by_hand)
    page = (tmp_path / "r" / "readout.html").read_text()
    assert page.count("How to read:") == 2 and "Verdict" in page
    assert "verdict:" in result.output and "logged to MLflow run" in words(result.output)


def test_generate_plants_the_lift_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "generate",
        "--out",
        "d",
        "--accounts",
        "200",
        "--seed",
        "3",
        "--pilot-lift",
        "0.5",
        "--pilot-start",
        "2026-02-01",
    )
    assert result.exit_code == 0, result.output
    truth = pd.read_csv(tmp_path / "d" / PILOT_TRUTH_FILE)
    assignment = pd.read_csv(tmp_path / "d" / "assignment.csv")
    assert (truth["account_id"] == assignment["account_id"]).all() and len(truth) == 200
    assert (truth.loc[truth["group"] == "control", "extra_opportunities"] == 0).all()
    assert truth.loc[truth["group"] == "treatment", "extra_opportunities"].sum() > 0
    assert json.loads((tmp_path / "d" / "pilot.json").read_text())["start_date"] == "2026-02-01"
    late = invoke("generate", "--out", "e", "--accounts", "50", "--pilot-lift", "0.2", "--pilot-start", "2026-06-01")
    assert late.exit_code == 2 and "end after the export's last day" in words(late.output)
    alone = invoke("generate", "--out", "e", "--accounts", "50", "--pilot-lift", "0.2")
    assert alone.exit_code == 2 and "go together" in words(alone.output)
    assert not (tmp_path / "e").exists()


def test_control_accounts_stay_out_of_alerts_and_the_crm_export(tmp_path, workspace):
    today = pd.Timestamp.now(tz="UTC").date().isoformat()
    previous = write_scores(tmp_path / "previous.csv").assign(as_of="2026-01-01")
    previous.to_csv(tmp_path / "previous.csv", index=False)
    design = invoke("pilot", "design", "previous.csv", "--out", "p", "--tiers", "tier_1", "--start", today)
    assert design.exit_code == 0, design.output
    assignment = pd.read_csv(tmp_path / "p" / "assignment.csv")
    control = set(assignment.loc[assignment["group"] == "control", "account_id"])
    assert len(control) == 3  # tier_1 holds six accounts
    # Every account's win probability jumps by 0.4 (alerts.win_probability_jump is 0.15): one event each.
    current = previous.assign(win_probability=0.9, as_of="2026-02-01")
    current.to_csv(tmp_path / "current.csv", index=False)
    alerts = invoke("alerts", "previous.csv", "current.csv", "--out", "events.jsonl")
    assert alerts.exit_code == 0, alerts.output
    events = pd.read_json(tmp_path / "events.jsonl", lines=True)
    assert set(events["account_id"]) == set(previous["account_id"]) - control
    assert "3 control account(s) of a running pilot left out of the alerts" in words(alerts.output)

    crm_ids = {account: f"001Dn00000Ab{number:03d}" for number, account in enumerate(previous["account_id"])}
    pd.DataFrame({"account_id": list(crm_ids), "crm_id": list(crm_ids.values())}).to_csv("ids.csv", index=False)
    export = invoke("export", "current.csv", "--format", "salesforce", "--out", "crm.csv", "--ids", "ids.csv")
    assert export.exit_code == 0, export.output
    exported = pd.read_csv(tmp_path / "crm.csv")
    assert set(exported.iloc[:, 0]) == {crm_ids[a] for a in previous["account_id"] if a not in control}
    assert "3 control account(s) of a running pilot left out of the export" in words(export.output)

    # With pilot.exclude_control_from empty they are activated like any other account.
    (tmp_path / "open.yaml").write_text("pilot:\n  exclude_control_from: []\n")
    everyone = invoke(
        "export",
        "current.csv",
        "--format",
        "salesforce",
        "--out",
        "all.csv",
        "--ids",
        "ids.csv",
        "--config",
        "open.yaml",
    )
    assert everyone.exit_code == 0, everyone.output
    assert len(pd.read_csv(tmp_path / "all.csv")) == len(previous)


def test_scores_carry_each_accounts_pilot_group(tmp_path, workspace, write_export, mlflow_store):
    data = write_export()
    plain = invoke("score", data, "--out", "before.csv")
    assert plain.exit_code == 0, plain.output
    before = pd.read_csv(tmp_path / "before.csv", keep_default_na=False)
    assert before["pilot_group"].tolist() == ["", "", ""]  # always present, empty outside a pilot
    book = before.assign(tier="tier_1")
    book.to_csv(tmp_path / "book.csv", index=False)
    today = pd.Timestamp.now(tz="UTC").date().isoformat()
    design = invoke("pilot", "design", "book.csv", "--out", "p", "--tiers", "tier_1", "--start", today)
    assert design.exit_code == 0, design.output
    groups = pd.read_csv(tmp_path / "p" / "assignment.csv").set_index("account_id")["group"]
    after = invoke("score", data, "--out", "after.csv")
    assert after.exit_code == 0, after.output
    scored = pd.read_csv(tmp_path / "after.csv", keep_default_na=False).set_index("account_id")
    assert scored["pilot_group"].to_dict() == groups.to_dict()
    assert sorted(groups) == ["control", "control", "treatment"] or sorted(groups) == [
        "control",
        "treatment",
        "treatment",
    ]


def test_design_refuses_scores_of_another_export_and_duplicated_accounts(tmp_path, workspace, write_export):
    data = write_export()  # accounts A1, A2, A3: none of the scores' A00-A19
    write_scores(tmp_path / "scores.csv")
    other = invoke("pilot", "design", "scores.csv", "--out", "p", "--data", data)
    assert other.exit_code == 2
    assert "20 account(s) (rows 2, 3, 4, 5, 6) are not in the export" in words(other.output)
    frame = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    pd.concat([frame, frame.head(1)]).to_csv(tmp_path / "twice.csv", index=False)
    twice = invoke("pilot", "design", "twice.csv", "--out", "p")
    assert twice.exit_code == 2 and "appears more than once" in words(twice.output)
    assert not (tmp_path / "p").exists() and not (tmp_path / "workspace.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["pilot", "design", "nowhere.csv", "--out", "p", "--start"],
        ["pilot", "readout", "nowhere", "nowhere", "--out", "r", "--until"],
        ["generate", "--out", "g", "--pilot-lift", "0.2", "--pilot-start"],
    ],
)
@pytest.mark.parametrize("value", ["2026-13-01", "June 1 2026", "2101-01-01"])
def test_a_date_option_that_is_not_a_date_is_refused_before_any_file_is_read(tmp_path, monkeypatch, command, value):
    monkeypatch.chdir(tmp_path)
    result = invoke(*command, value)
    assert result.exit_code == 2
    assert "ISO 8601" in words(result.output) or "between 1900-01-01 and 2100-12-31" in words(result.output)
    assert "not found" not in result.output and list(tmp_path.iterdir()) == []
