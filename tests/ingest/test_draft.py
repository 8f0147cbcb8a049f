"""`tiering init`: a draft mapping from the export's own files, every guess commented; a preset's
export recognised; validated with the draft; never overwriting a file. On hand-made shapes the guesses (outcome,
dates, ids, accounts) are asserted, and the tables the draft loads are checked row by row."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from ingest.draft import draft_mapping
from ingest.io import load_export
from ingest.mapping import load_mapping
from sources.synthetic import generate_export

runner = CliRunner()
MAVEN = Path(__file__).resolve().parents[3] / "shared" / "data" / "maven-crm"


@pytest.fixture(autouse=True)
def in_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def export(tmp_path: Path, files: dict[str, str], name: str = "export") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text, encoding="utf-8")
    return folder


def init(folder: Path, out: str = "mapping.yaml"):
    return runner.invoke(app, ["init", str(folder), "--out", out])


def mapped_lines(text: str) -> list[str]:
    """The draft's lines that map something (key: value), not comments or section headers."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("    ") and not line.strip().startswith("#") and not line.rstrip().endswith(":")
    ]


def rows(frame, columns):
    return [
        tuple(
            None if value != value else (value.date().isoformat() if hasattr(value, "date") else value) for value in row
        )
        for row in frame[columns].itertuples(index=False)
    ]


# An opportunity report only, Salesforce style, with US dates and one row without its id.
SALESFORCE_REPORT = """\
Opportunity Name,Opportunity ID,Account Name,Account ID,Industry,Employees,Created Date,Close Date,Stage,Amount,Opportunity Owner
Acme renewal,0061A,Acme Corp,001A,Technology,1200,1/15/2024,3/31/2024,Closed Won,25000,Ana
Acme upsell,,Acme Corp,001A,Technology,1200,2/1/2024,4/30/2024,Closed Lost,8000,Ana
Beta new,0061C,Beta GmbH,001B,Manufacturing,300,3/5/2024,,Negotiation/Review,40000,Ben
Gamma,0061D,Gamma SA,001C,Retail,80,2/13/2024,5/15/2024,Closed Won,1000,Ben
"""


def test_an_opportunity_report_only_gives_accounts_from_its_rows_and_validates(tmp_path):
    folder = export(tmp_path, {"pipeline_report_2024.csv": SALESFORCE_REPORT})
    result = init(folder)
    assert result.exit_code == 0, result.output
    mapping = load_mapping(tmp_path / "mapping.yaml")
    opportunities, accounts = mapping.opportunities, mapping.accounts
    assert opportunities.file == "pipeline_report_2024.csv"
    assert opportunities.columns == {
        "opportunity_id": "Opportunity ID",
        "account_id": "Account ID",
        "created_date": "Created Date",
        "outcome": "Stage",
        "close_date": "Close Date",
        "amount": "Amount",
    }
    assert opportunities.values["outcome"] == {"Closed Won": "won", "Closed Lost": "lost", "*": "open"}
    assert opportunities.date_format == "%m/%d/%Y"
    assert accounts.from_opportunities and accounts.file is None
    assert accounts.columns == {
        "account_id": "Account ID",
        "account_name": "Account Name",
        "industry": "Industry",
        "employees": "Employees",
    }
    text = (tmp_path / "mapping.yaml").read_text()
    assert mapped_lines(text) and all("  # " in line for line in mapped_lines(text))  # every guess says why
    assert "1 empty: those rows get a stable generated id" in text
    loaded = load_export(folder, tmp_path / "mapping.yaml")
    assert rows(loaded.data.accounts, ["account_id", "account_name", "industry", "employees"]) == [
        ("001A", "Acme Corp", "Technology", 1200.0),
        ("001B", "Beta GmbH", "Manufacturing", 300.0),
        ("001C", "Gamma SA", "Retail", 80.0),
    ]
    opps = loaded.data.opportunities
    assert rows(opps, ["account_id", "created_date", "close_date", "outcome", "amount"]) == [
        ("001A", "2024-01-15", "2024-03-31", "won", 25000.0),
        ("001A", "2024-02-01", "2024-04-30", "lost", 8000.0),
        ("001B", "2024-03-05", None, "open", 40000.0),
        ("001C", "2024-02-13", "2024-05-15", "won", 1000.0),
    ]
    assert opps["opportunity_id"][1].startswith("gen-") and list(opps["opportunity_id"][[0, 2, 3]]) == [
        "0061A",
        "0061C",
        "0061D",
    ]
    assert "Next: check the guesses in mapping.yaml" in " ".join(result.output.split())


# A deals sheet (semicolons, day-first dates) and a customers file keyed by company name.
DEALS = """\
Deal;Company;Status;Opened;Closed;Value
D-1;Acme;Won;31/01/2024;15/03/2024;1200
D-2;Acme;Lost;01/02/2024;20/03/2024;0
D-3;Beta;Open;15/02/2024;;500
D-4;Beta;Won;03/02/2024;28/02/2024;700
"""
CUSTOMERS = """\
Company,Sector,Headcount,Country
Acme,software,500,Germany
Beta,retail,40,France
Gamma,healthcare,900,Spain
"""


def test_a_deals_sheet_and_a_customers_file_are_matched_by_their_values(tmp_path):
    folder = export(tmp_path, {"Deals export.csv": DEALS, "customers.csv": CUSTOMERS})
    result = init(folder)
    assert result.exit_code == 0, result.output
    mapping = load_mapping(tmp_path / "mapping.yaml")
    assert mapping.opportunities.file == "Deals export.csv" and mapping.accounts.file == "customers.csv"
    assert mapping.opportunities.columns == {
        "opportunity_id": "Deal",
        "account_id": "Company",
        "created_date": "Opened",
        "outcome": "Status",
        "close_date": "Closed",
        "amount": "Value",
    }
    assert mapping.opportunities.values["outcome"] == {"Won": "won", "Lost": "lost", "Open": "open"}
    assert mapping.opportunities.date_format == "%d/%m/%Y"
    assert mapping.accounts.columns == {
        "account_id": "Company",
        "industry": "Sector",
        "employees": "Headcount",
        "country": "Country",
    }
    data = load_export(folder, tmp_path / "mapping.yaml").data
    assert rows(data.opportunities, ["opportunity_id", "account_id", "created_date", "close_date", "outcome"]) == [
        ("D-1", "Acme", "2024-01-31", "2024-03-15", "won"),
        ("D-2", "Acme", "2024-02-01", "2024-03-20", "lost"),
        ("D-3", "Beta", "2024-02-15", None, "open"),
        ("D-4", "Beta", "2024-02-03", "2024-02-28", "won"),
    ]
    assert rows(data.accounts, ["account_id", "industry", "employees", "country"]) == [
        ("Acme", "software", 500.0, "Germany"),
        ("Beta", "retail", 40.0, "France"),
        ("Gamma", "healthcare", 900.0, "Spain"),
    ]


def test_ambiguous_day_and_month_is_said(tmp_path):
    folder = export(
        tmp_path,
        {
            "deals.csv": DEALS.replace("31/01/2024", "11/01/2024")
            .replace("15/03/2024", "12/03/2024")
            .replace("20/03/2024", "10/03/2024")
            .replace("15/02/2024", "05/02/2024")
            .replace("28/02/2024", "08/02/2024"),
            "customers.csv": CUSTOMERS,
        },
    )
    draft = draft_mapping(folder)
    assert any("day first" in note and "deals.csv" in note for note in draft.notes)
    assert "day and month could be swapped" in draft.render()


HUBSPOT_DEALS = """\
Record ID,Deal Name,Deal Stage,Create Date,Close Date,Amount,Associated Company IDs
901,Acme,closedwon,2024-01-10 09:15,2024-03-01 17:00,12000,5001
902,Acme 2,Closed Lost,2024-02-11 10:00,2024-04-02 12:00,5000,5001
"""
HUBSPOT_COMPANIES = """\
Company ID,Company name,Industry,Number of Employees,Annual Revenue,Country/Region
5001,Acme,COMPUTER_SOFTWARE,250,30000000,United States
"""


def test_a_presets_export_is_recognised_and_its_preset_written_out_without_missing_columns(tmp_path):
    folder = export(
        tmp_path,
        {
            "hubspot-crm-exports-all-deals-2024-05-01.csv": HUBSPOT_DEALS,
            "hubspot-crm-exports-all-companies-2024-05-01.csv": HUBSPOT_COMPANIES,
        },
    )
    result = init(folder)
    assert result.exit_code == 0, result.output
    assert "Recognised: the hubspot export" in result.output
    preset, draft = load_mapping("hubspot"), load_mapping(tmp_path / "mapping.yaml")
    assert draft.opportunities == preset.opportunities
    # The preset's optional parent column (`if_present`) is left out: these companies have none.
    headers = HUBSPOT_COMPANIES.splitlines()[0].split(",")
    assert draft.accounts == preset.accounts.for_headers(headers).model_copy(update={"if_present": []})


def test_on_the_generators_output_the_draft_validates_without_edits(tmp_path):
    generate_export(tmp_path / "synthetic", n_accounts=60, seed=3)
    result = init(tmp_path / "synthetic")
    assert result.exit_code == 0, result.output
    assert "Recognised: the canonical export" in result.output and "The export is valid." in result.output
    draft = load_mapping(tmp_path / "mapping.yaml")
    assert [draft.table(t).file for t in ("accounts", "opportunities", "engagement", "intent")] == [
        "accounts.csv",
        "opportunities.csv",
        "engagement.csv",
        "intent.csv",
    ]  # truth.csv is never read
    ours = load_export(tmp_path / "synthetic", tmp_path / "mapping.yaml").data
    canonical = load_export(tmp_path / "synthetic").data
    assert ours.opportunities.equals(canonical.opportunities) and ours.accounts.equals(canonical.accounts)


@pytest.mark.skipif(not MAVEN.is_dir(), reason=f"the Maven CRM export is not at {MAVEN} (shared data, not in the repo)")
def test_on_the_maven_export_the_draft_validates_without_edits(tmp_path):
    result = init(MAVEN)
    assert result.exit_code == 0, result.output
    assert "Recognised: the maven-crm export" in result.output
    assert "4,238 won, 2,473 lost" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mapping.yaml"]  # nothing written into the export


@pytest.mark.skipif(not MAVEN.is_dir(), reason=f"the Maven CRM export is not at {MAVEN} (shared data, not in the repo)")
def test_on_the_maven_export_the_guesses_alone_also_validate(tmp_path):
    draft = draft_mapping(MAVEN, presets=False)
    (tmp_path / "guess.yaml").write_text(draft.render())
    mapping = load_mapping(tmp_path / "guess.yaml")
    assert mapping.opportunities.columns == {
        "opportunity_id": "opportunity_id",
        "account_id": "account",
        "created_date": "engage_date",
        "outcome": "deal_stage",
        "close_date": "close_date",
        "amount": "close_value",
        "product": "product",
    }
    assert mapping.accounts.columns["account_id"] == "account" and mapping.accounts.columns["industry"] == "sector"
    assert any("revenue has a median of 1,224" in note for note in draft.notes)  # $M: the scale is left to the user
    summary = load_export(MAVEN, tmp_path / "guess.yaml").summary
    assert (summary["opportunities"]["won"], summary["opportunities"]["lost"]) == (4238, 2473)


def test_init_never_overwrites_a_file(tmp_path):
    folder = export(tmp_path, {"pipeline.csv": SALESFORCE_REPORT})
    (tmp_path / "mapping.yaml").write_text("mine\n")
    result = init(folder)
    assert result.exit_code == 2
    assert "mapping.yaml already exists: tiering init never overwrites a file" in " ".join(result.output.split())
    assert (tmp_path / "mapping.yaml").read_text() == "mine\n"
    (tmp_path / "link.yaml").symlink_to(tmp_path / "nowhere.yaml")  # a dangling link is not written through either
    assert init(folder, "link.yaml").exit_code == 2 and not (tmp_path / "nowhere.yaml").exists()
    assert init(folder, "missing-folder/m.yaml").exit_code == 2


def test_a_draft_that_does_not_validate_says_what_to_fix_and_exits_2(tmp_path):
    folder = export(tmp_path, {"deals.csv": DEALS.replace("15/03/2024", "someday"), "customers.csv": CUSTOMERS})
    result = init(folder)
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "The draft does not validate yet: 1 problem stops this run" in output
    assert "values are not dates (e.g. 'someday') (row 2)" in output
    assert "--invalid-rows drop" in output  # a row-level problem: it could be dropped
    assert "then `tiering validate" in output
    assert (tmp_path / "mapping.yaml").is_file()  # the draft is written whole all the same


def test_without_any_outcome_column_the_draft_says_what_it_could_not_decide(tmp_path):
    folder = export(tmp_path, {"notes.csv": "name,comment\nAcme,call back\n"})
    result = init(folder)
    assert result.exit_code == 2
    text = (tmp_path / "mapping.yaml").read_text()
    assert "# opportunities: no file has an outcome-like column" in text
    assert "which file holds the opportunities" in " ".join(result.output.split())


def test_an_empty_folder_or_a_missing_one_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert init(tmp_path / "empty").exit_code == 2
    assert init(tmp_path / "nowhere").exit_code == 2
    assert not (tmp_path / "mapping.yaml").exists()


LEADS = """\
Lead ID,Company,Created,Source
L1,Acme,2024-01-05,webinar
L2,Acme,2024-02-01,web
L3,Beta,2024-03-01,event
L4,Gamma,2024-05-20,web
"""
WON_DEALS = """\
Lead,Won On,Deal Amount
L1,2024-02-15,12000
L3,2024-03-20,3000
"""


def test_a_lead_funnel_gets_a_join_and_an_outcome_rule(tmp_path):
    folder = export(tmp_path, {"qualified_leads.csv": LEADS, "won_deals.csv": WON_DEALS})
    result = init(folder)
    assert result.exit_code == 0, result.output
    mapping = load_mapping(tmp_path / "mapping.yaml").opportunities
    assert mapping.file == "qualified_leads.csv"
    [join] = mapping.join
    assert (join.file, join.on, join.right_on, join.columns) == ("won_deals.csv", "Lead ID", "Lead", [])
    assert (mapping.outcome_rule.won_date, mapping.outcome_rule.lost_after_days) == ("Won On", 90)
    assert mapping.columns == {
        "opportunity_id": "Lead ID",
        "account_id": "Company",
        "created_date": "Created",
        "amount": "Deal Amount",
    }
    assert "lost_after_days is 90, a guess" in " ".join(result.output.split())
    data = load_export(folder, tmp_path / "mapping.yaml").data
    # Judged on 2024-05-20: L2 (2024-02-01 + 90 days = 2024-05-01) is lost; L4 is too recent: open.
    assert rows(data.opportunities, ["opportunity_id", "outcome", "close_date", "amount"]) == [
        ("L1", "won", "2024-02-15", 12000.0),
        ("L2", "lost", "2024-05-01", None),
        ("L3", "won", "2024-03-20", 3000.0),
        ("L4", "open", None, None),
    ]


def test_an_account_owner_column_is_mapped_to_owner_and_an_opportunity_owner_is_not(tmp_path):
    deals = DEALS.replace("Deal;Company;", "Deal;Opportunity Owner;Company;").replace(";Acme;", ";rep-1;Acme;")
    deals = deals.replace(";Beta;", ";rep-2;Beta;")
    customers = CUSTOMERS.replace("Company,Sector,", "Company,Account Owner,Sector,")
    customers = customers.replace("Acme,", "Acme,ann@example.com,").replace("Beta,", "Beta,bob@example.com,")
    customers = customers.replace("Gamma,", "Gamma,,")
    folder = export(tmp_path, {"Deals export.csv": deals, "customers.csv": customers})
    result = init(folder)
    assert result.exit_code == 0, result.output
    mapping = load_mapping(tmp_path / "mapping.yaml")
    assert mapping.accounts.columns["owner"] == "Account Owner"
    assert "owner" not in mapping.opportunities.columns
    data = load_export(folder, tmp_path / "mapping.yaml").data
    assert rows(data.accounts, ["account_id", "owner"]) == [
        ("Acme", "ann@example.com"),
        ("Beta", "bob@example.com"),
        ("Gamma", None),
    ]
