"""Mappings and presets: any export's files, headers and values onto the canonical tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from features.errors import DataError
from ingest.io import load_export
from ingest.mapping import PRESETS, load_mapping

MAVEN = Path(__file__).resolve().parents[3] / "shared" / "data" / "maven-crm"


def write_mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def mapping_problems(spec) -> list[str]:
    with pytest.raises(DataError) as raised:
        load_mapping(spec)
    return [problem.render() for problem in raised.value.problems]


def test_presets_ship_and_canonical_is_the_default():
    assert set(PRESETS) == {"canonical", "salesforce", "hubspot", "maven-crm"}
    assert load_mapping(None).origin == "canonical"
    for preset in PRESETS:
        assert load_mapping(preset).origin == preset


def test_unknown_keys_are_rejected_by_name(tmp_path):
    path = write_mapping(tmp_path, "acounts:\n  file: a.csv\nopportunities:\n  colums: {account_id: Account}\n")
    rendered = "\n".join(mapping_problems(path))
    assert f"{path}: unknown key 'acounts'" in rendered and "did you mean 'accounts'?" in rendered
    assert "unknown key 'opportunities.colums'" in rendered and "did you mean 'columns'?" in rendered


def test_canonical_column_typos_are_caught(tmp_path):
    path = write_mapping(
        tmp_path,
        (
            "opportunities:\n  columns: {acount_id: Account}\n  scale: {product: 10}\n"
            "accounts:\n  columns: {anual_revenue: Revenue, founded: Year}\n"
        ),
    )
    rendered = "\n".join(mapping_problems(path))
    assert "columns: 'acount_id' is not a column of opportunities (did you mean 'account_id'?)" in rendered
    assert "scale: 'product' is not a number column" in rendered
    assert "'anual_revenue' is not a column of accounts (did you mean 'annual_revenue'?)" in rendered
    assert "founded" not in rendered  # extra account columns are allowed


def test_invalid_yaml_names_the_file(tmp_path):
    path = write_mapping(tmp_path, "accounts:\n  columns: {account_id: [unclosed\n")
    [rendered] = mapping_problems(path)
    assert rendered.startswith(f"{path}: not valid YAML at line 3, column 1:")


def test_repeated_yaml_key_is_an_error_not_a_silent_override(tmp_path):
    path = write_mapping(tmp_path, "accounts:\n  columns: {account_id: id}\n  columns: {account_name: name}\n")
    [rendered] = mapping_problems(path)
    assert "the key 'columns' appears twice" in rendered and "line 3" in rendered


def test_mapping_must_be_a_yaml_mapping(tmp_path):
    [rendered] = mapping_problems(write_mapping(tmp_path, "- accounts\n- opportunities\n"))
    assert "must be a YAML mapping of table names" in rendered


def test_unknown_preset_or_missing_file():
    [rendered] = mapping_problems("salesfroce")
    assert "no mapping preset or file named 'salesfroce'" in rendered
    assert "canonical, hubspot, maven-crm, salesforce" in rendered


@pytest.mark.parametrize("file", ["../elsewhere/accounts.csv", "/etc/passwd", "sub/../../x.csv", "C:\\\\data\\\\a.csv"])
def test_file_outside_the_data_folder_is_an_error(tmp_path, file):
    [rendered] = mapping_problems(write_mapping(tmp_path, f"accounts:\n  file: '{file}'\n"))
    assert "'accounts.file'" in rendered and "points outside the data folder" in rendered


def test_mapped_column_missing_from_the_file_names_mapping_table_and_column(write_export, tmp_path, problems_of):
    path = write_mapping(tmp_path, "accounts:\n  columns: {industry: Sector}\n")
    [problem] = problems_of(write_export(), path)
    assert (problem.file, problem.column) == ("accounts.csv", "Sector")
    assert f"mapping '{path}' maps accounts.industry to column 'Sector', which this file lacks" in problem.message
    assert "account_id, account_name, industry" in problem.fix  # what the file has
    result = CliRunner().invoke(app, ["validate", str(write_export()), "--mapping", str(path)])
    assert result.exit_code == 2 and "which this file lacks" in result.output


def test_values_scale_defaults_and_date_formats(write_export, tmp_path):
    folder = write_export(
        {
            "accounts.csv": "id,name,country,revenue_m\nA1,Acme,NO,1.5\nA2,Beta,US,2\nA3,Gamma,,\n",
            "opportunities.csv": (
                "opportunity_id,account_id,created_date,close_date,outcome,amount\n"
                "O1,A1,31/01/2024,02/15/2024,  Closed Won ,10\n"
                "O2,A2,01/02/2024,03/01/2024,Closed Lost,0\n"
                "O3,A2,15/02/2024,,Negotiation,\n"
            ),
        }
    )
    path = write_mapping(
        tmp_path,
        (
            "accounts:\n"
            "  values: {country: {NO: Norway, US: United States}}\n"  # NO stays text, not a YAML boolean
            "  scale: {annual_revenue: 1000000}\n"
            "  columns: {account_id: id, account_name: name, annual_revenue: revenue_m}\n"
            "  defaults: {industry: software}\n"
            "opportunities:\n"
            "  values: {outcome: {Closed Won: won, Closed Lost: lost, '*': open}}\n"
            "  date_format: {created_date: '%d/%m/%Y', close_date: '%m/%d/%Y'}\n"
        ),
    )
    data = load_export(folder, path).data
    assert list(data.accounts["country"][:2]) == ["Norway", "United States"]
    assert list(data.accounts["annual_revenue"][:2]) == [1_500_000.0, 2_000_000.0]
    assert set(data.accounts["industry"]) == {"software"}
    assert list(data.opportunities["outcome"]) == ["won", "lost", "open"]
    assert [d.isoformat()[:10] for d in data.opportunities["created_date"]] == [
        "2024-01-31",
        "2024-02-01",
        "2024-02-15",
    ]
    assert data.opportunities["close_date"].iloc[0].isoformat()[:10] == "2024-02-15"


def test_problems_name_the_file_header_of_a_mapped_column(write_export, tmp_path, problems_of):
    folder = write_export(
        {
            "opportunities.csv": (
                "Id,Account,Created,Closed,Stage\nO1,A1,2024-01-05,2024-02-10,Won\n"
                "O2,A1,2024-01-05,2024-02-10,Pending\n"
            )
        }
    )
    path = write_mapping(
        tmp_path,
        (
            "opportunities:\n"
            "  columns: {opportunity_id: Id, account_id: Account, created_date: Created, close_date: Closed, outcome: "
            "Stage}\n"
            "  values: {outcome: {Won: won}}\n"
        ),
    )
    [problem] = problems_of(folder, path)
    assert (problem.file, problem.column, problem.rows) == ("opportunities.csv", "Stage", (3,))
    assert "unknown outcome values: 'Pending' (1)" in problem.message


SALESFORCE_OPPORTUNITIES = """\
Opportunity Name,Opportunity ID,Account ID,Created Date,Close Date,Stage,Amount,Product Name,Opportunity Owner
Acme renewal,0061x00001,0011x0000A,1/15/2024,3/31/2024,Closed Won,25000,Platform,Ana
Acme upsell,0061x00002,0011x0000A,2/1/2024,4/30/2024,Closed Lost,8000,Add-on,Ana
Beta new,0061x00003,0011x0000B,3/5/2024,6/30/2024,Negotiation/Review,40000,Platform,Ben
"""
SALESFORCE_ACCOUNTS = """\
Account Name,Account ID,Industry,Employees,Annual Revenue,Billing Country,Parent Account ID
Acme Corp,0011x0000A,Technology,1200,250000000,United States,
Beta GmbH,0011x0000B,Manufacturing,300,40000000,Germany,0011x0000A
"""


def test_salesforce_preset_loads_a_report_export(tmp_path):
    (tmp_path / "opportunities-report.csv").write_text(SALESFORCE_OPPORTUNITIES)
    (tmp_path / "accounts-report.csv").write_text(SALESFORCE_ACCOUNTS)
    loaded = load_export(tmp_path, "salesforce")
    opportunities = loaded.data.opportunities
    assert list(opportunities["outcome"]) == ["won", "lost", "open"]
    assert opportunities["close_date"].iloc[0].isoformat()[:10] == "2024-03-31"
    assert list(opportunities["account_id"]) == ["0011x0000A", "0011x0000A", "0011x0000B"]
    assert opportunities["Opportunity Owner"].iloc[0] == "Ana"  # unmapped columns pass through
    accounts = loaded.data.accounts
    assert list(accounts["parent_account_id"].fillna("")) == ["", "0011x0000A"]
    assert accounts["country"].iloc[1] == "Germany" and accounts["employees"].iloc[0] == 1200.0
    assert loaded.mapping == "salesforce"


HUBSPOT_DEALS = """\
Record ID,Deal Name,Deal Stage,Create Date,Close Date,Amount,Associated Company IDs
901,Acme,closedwon,2024-01-10 09:15,2024-03-01 17:00,12000,5001
902,Acme 2,Closed Lost,2024-02-11 10:00,2024-04-02 12:00,5000,5001
903,Globex,appointmentscheduled,2024-03-12 11:30,,9000,5002
"""
HUBSPOT_COMPANIES = """\
Company ID,Company name,Industry,Number of Employees,Annual Revenue,Country/Region
5001,Acme,COMPUTER_SOFTWARE,250,30000000,United States
5002,Globex,RETAIL,5000,900000000,Canada
"""


def test_hubspot_preset_loads_deals_and_companies(tmp_path):
    (tmp_path / "hubspot-crm-exports-all-deals-2024-05-01.csv").write_text(HUBSPOT_DEALS)
    (tmp_path / "hubspot-crm-exports-all-companies-2024-05-01.csv").write_text(HUBSPOT_COMPANIES)
    loaded = load_export(tmp_path, "hubspot")
    opportunities = loaded.data.opportunities
    assert list(opportunities["opportunity_id"]) == ["901", "902", "903"]
    assert list(opportunities["outcome"]) == ["won", "lost", "open"]
    assert str(opportunities["created_date"].iloc[0]) == "2024-01-10 09:15:00"
    assert list(loaded.data.accounts["country"]) == ["United States", "Canada"]
    assert loaded.summary["opportunities"]["win_rate"] == 0.5


def test_cli_accepts_a_mapping_file(write_export, tmp_path):
    folder = write_export({"accounts.csv": "Account,Name\nA1,Acme\nA2,Beta\nA3,Gamma\n"})
    path = write_mapping(tmp_path, "accounts:\n  columns: {account_id: Account, account_name: Name}\n")
    result = CliRunner().invoke(app, ["validate", str(folder), "--mapping", str(path)])
    assert result.exit_code == 0, result.output
    assert f"Mapping: {path}" in result.output.replace("\n", "")


@pytest.mark.skipif(not MAVEN.is_dir(), reason=f"the Maven CRM export is not at {MAVEN} (shared data, not in the repo)")
def test_maven_export_loads_through_its_preset_untouched():
    loaded = load_export(MAVEN, "maven-crm")
    data, summary = loaded.data, loaded.summary
    assert len(data.accounts) == 85
    closed = data.opportunities[data.opportunities["outcome"] != "open"]
    assert len(closed) == 6711
    assert (summary["opportunities"]["won"], summary["opportunities"]["lost"]) == (4238, 2473)
    assert "technolgy" not in set(data.accounts["industry"]) and "technology" in set(data.accounts["industry"])
    assert "Philippines" in set(data.accounts["country"])
    assert "GTXPro" not in set(data.opportunities["product"]) and "GTX Pro" in set(data.opportunities["product"])
    acme = data.accounts.set_index("account_id").loc["Acme Corporation"]
    assert acme["annual_revenue"] == pytest.approx(1_100.04e6)
    assert acme["year_established"] == 1996  # an extra column, passed through as a number
    # Open deals without an account (or a Prospecting one without engage_date) are dropped, with a warning.
    dropped = {w.column: w.row_count for w in loaded.warnings if "are dropped" in w.message}
    assert dropped == {"account": 1425, "engage_date": 163}  # named as the file's headers
    assert summary["absent_tables"] == ["engagement", "intent"]
    result = CliRunner().invoke(app, ["validate", str(MAVEN), "--mapping", "maven-crm"])
    assert result.exit_code == 0 and "4,238 won, 2,473 lost" in result.output
