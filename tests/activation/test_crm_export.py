"""CRM write-back files, checked against each CRM's documented import columns and limits, and a round trip from
the salesforce and hubspot presets: the ids in the import file are the ids of the original CRM files."""

import pandas as pd
from typer.testing import CliRunner

from activation.crm_export import export_frame
from cli.main import app
from configuration.tiering import TieringConfig
from ingest.files import write_table
from ingest.io import load_export
from scoring.pyfunc import TieringModel
from scoring.scorer import SCORE_COLUMNS

runner = CliRunner()
AS_OF = pd.Timestamp("2024-05-01")

# A Salesforce Accounts report and Opportunities report (US dates), with real-shaped 18-character Account Ids.
SF_ACCOUNTS = """\
Account ID,Account Name,Industry,Employees,Annual Revenue,Billing Country,Parent Account ID
001Dn00000AbCdEIAZ,Acme,Software,1200,300000000,United States,
001Dn00000XyZwVIAQ,Globex,Healthcare,5000,900000000,Germany,001Dn00000AbCdEIAZ
001Dn00000QqQqQIA1,Initech,Retail,40,2000000,France,
"""
SF_OPPORTUNITIES = """\
Opportunity ID,Account ID,Created Date,Close Date,Stage,Amount,Product Name
006Dn000001,001Dn00000AbCdEIAZ,1/10/2024,3/31/2024,Closed Won,12000,Core
006Dn000002,001Dn00000XyZwVIAQ,2/11/2024,4/2/2024,Closed Lost,5000,Core
006Dn000003,001Dn00000QqQqQIA1,3/12/2024,,Prospecting,9000,Core
"""
HS_COMPANIES = """\
Company ID,Company name,Industry,Number of Employees,Annual Revenue,Country/Region
5001,Acme,COMPUTER_SOFTWARE,250,30000000,United States
5002,Globex,RETAIL,5000,900000000,Canada
"""
HS_DEALS = """\
Record ID,Deal Name,Deal Stage,Create Date,Close Date,Amount,Associated Company IDs
901,Acme,closedwon,2024-01-10 09:15,2024-03-01 17:00,12000,5001
902,Globex,closedlost,2024-02-11 10:00,2024-04-02 12:00,5000,5002
"""
# Salesforce Data Loader / Bulk API: the record key is `Id`, custom fields by API name ending in __c.
SALESFORCE_HEADER = [
    "Id",
    "ABM_Tier__c",
    "ABM_Score__c",
    "ABM_Rule_Score__c",
    "ABM_Win_Probability__c",
    "ABM_Expected_Value__c",
    "ABM_Intent_Surge__c",
    "ABM_Surge_Channels__c",
    "ABM_Reason_1__c",
    "ABM_Reason_2__c",
    "ABM_Reason_3__c",
    "ABM_Model_Version__c",
    "ABM_As_Of__c",
    "ABM_Scored_At__c",
]
# HubSpot companies import: the record key is `Record ID`, properties by internal name.
HUBSPOT_HEADER = [
    "Record ID",
    "abm_tier",
    "abm_score",
    "abm_rule_score",
    "abm_win_probability",
    "abm_expected_value",
    "abm_intent_surge",
    "abm_surge_channels",
    "abm_reason_1",
    "abm_reason_2",
    "abm_reason_3",
    "abm_model_version",
    "abm_as_of",
    "abm_scored_at",
]


def scores_of(tmp_path, files: dict[str, str], preset: str):
    folder = tmp_path / preset
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    data = load_export(folder, preset).data
    scores = TieringModel.rules_only(TieringConfig()).score_book(data, AS_OF).scores
    return write_table(scores, tmp_path / f"{preset}-scores.csv")


def test_salesforce_round_trip_keeps_the_account_ids(tmp_path):
    scores = scores_of(tmp_path, {"accounts.csv": SF_ACCOUNTS, "opportunities.csv": SF_OPPORTUNITIES}, "salesforce")
    out = tmp_path / "sf.csv"
    result = runner.invoke(app, ["export", str(scores), "--format", "salesforce", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table.columns) == SALESFORCE_HEADER
    assert sorted(table["Id"]) == ["001Dn00000AbCdEIAZ", "001Dn00000QqQqQIA1", "001Dn00000XyZwVIAQ"]
    source = pd.read_csv(scores, dtype=str, keep_default_na=False).set_index("account_id")
    row = table.set_index("Id").loc["001Dn00000AbCdEIAZ"]
    assert row["ABM_Tier__c"] == source.loc["001Dn00000AbCdEIAZ", "tier"]
    assert float(row["ABM_Score__c"]) == float(source.loc["001Dn00000AbCdEIAZ", "learned_score"])
    assert row["ABM_Intent_Surge__c"] in ("true", "false") and row["ABM_As_Of__c"] == "2024-05-01"
    assert row["ABM_Win_Probability__c"] == ""  # rules only: the field is left blank, never 'nan'


def test_hubspot_round_trip_keeps_the_company_ids(tmp_path):
    scores = scores_of(tmp_path, {"companies.csv": HS_COMPANIES, "all-deals.csv": HS_DEALS}, "hubspot")
    out = tmp_path / "hs.csv"
    result = runner.invoke(app, ["export", str(scores), "--format", "hubspot", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table.columns) == HUBSPOT_HEADER and sorted(table["Record ID"]) == ["5001", "5002"]


def _book(**changes) -> pd.DataFrame:
    row = {column: "" for column in SCORE_COLUMNS}
    row.update(
        account_id="001Dn00000AbCdEIAZ",
        tier="tier_1",
        rule_tier="tier_2",
        learned_tier="tier_1",
        learned_score=81.234,
        rule_score=60.0,
        win_probability=0.41234,
        expected_value=1234.567,
        intent_surge=True,
        surge_channels="demo_request;external_intent",
        reason_1="x" * 300,
        reason_2='=HYPERLINK("evil")',
        reason_3="",
        model_version="3",
        as_of="2026-07-01",
        scored_at="2026-07-01T06:00:00+00:00",
    )
    row.update(changes)
    return pd.DataFrame([row])


def test_text_is_cut_to_the_field_length_and_formulas_are_neutralised():
    frame, skipped = export_frame(_book(), "salesforce")
    row = frame.iloc[0]
    assert skipped == 0 and len(row["ABM_Reason_1__c"]) == 255  # a Salesforce Text field holds 255 characters
    assert row["ABM_Reason_2__c"] == '\'=HYPERLINK("evil")'
    assert row["ABM_Win_Probability__c"] == 41.23  # a Percent field takes 41.23 for 41.23 %
    assert row["ABM_Score__c"] == 81.23 and row["ABM_Expected_Value__c"] == 1234.57
    assert row["ABM_Intent_Surge__c"] == "true" and row["ABM_Surge_Channels__c"] == "demo_request;external_intent"
    hubspot, _ = export_frame(_book(account_id="77", reason_1="y" * 70_000), "hubspot")
    assert len(hubspot.iloc[0]["abm_reason_1"]) == 65_536  # a HubSpot single-line text property's most


def test_ids_that_are_not_the_crms_are_refused_and_an_id_map_supplies_them(tmp_path):
    scores = tmp_path / "scores.csv"
    write_table(pd.concat([_book(account_id="ACC-1"), _book(account_id="ACC-2")]), scores)
    out = tmp_path / "sf.csv"
    refused = runner.invoke(app, ["export", str(scores), "--format", "salesforce", "--out", str(out)])
    assert refused.exit_code == 2 and "Salesforce Account Id" in refused.output and not out.exists()
    ids = tmp_path / "ids.csv"
    ids.write_text("account_id,crm_id\nACC-1,001Dn00000AbCdEIAZ\n")
    mapped = runner.invoke(app, ["export", str(scores), "--format", "salesforce", "--ids", str(ids), "--out", str(out)])
    assert mapped.exit_code == 0, mapped.output
    assert "1 account(s) have no crm_id" in mapped.output
    assert pd.read_csv(out, dtype=str)["Id"].tolist() == ["001Dn00000AbCdEIAZ"]


def test_bad_input_is_one_message_and_exit_2(tmp_path):
    scores = tmp_path / "scores.csv"
    write_table(_book(), scores)
    unknown = runner.invoke(app, ["export", str(scores), "--format", "pipedrive", "--out", str(tmp_path / "x.csv")])
    assert unknown.exit_code == 2 and "unknown --format 'pipedrive'" in unknown.output
    assert "Traceback" not in unknown.output
    foreign = tmp_path / "mine.csv"
    foreign.write_text("my,own,file\n")
    kept = runner.invoke(app, ["export", str(scores), "--format", "hubspot", "--out", str(foreign)])
    assert kept.exit_code == 2 and "never replaced" in kept.output and foreign.read_text() == "my,own,file\n"


def test_field_names_are_configurable_and_checked(tmp_path):
    scores = tmp_path / "scores.csv"
    write_table(_book(), scores)
    out = tmp_path / "sf.csv"
    renamed = runner.invoke(
        app,
        [
            "export",
            str(scores),
            "--format",
            "salesforce",
            "--out",
            str(out),
            "--field",
            "tier=Account_Tier__c",
            "--field",
            "learned_score=Fit_Score__c",
        ],
    )
    assert renamed.exit_code == 0, renamed.output
    columns = pd.read_csv(out, dtype=str).columns.tolist()
    assert columns[:3] == ["Id", "Account_Tier__c", "Fit_Score__c"] and columns[3:] == SALESFORCE_HEADER[3:]
    for bad, message in (
        ("tier=Account Tier", "is not a custom field API name"),
        ("tier=Tier", "is not a custom"),
        ("tier=My__Tier__c", "is not a custom"),
        ("budget=Budget__c", "is not an exported column"),
        ("learned_score=ABM_Tier__c", "the same field ABM_Tier__c"),
    ):
        refused = runner.invoke(
            app, ["export", str(scores), "--format", "salesforce", "--out", str(tmp_path / "x.csv"), "--field", bad]
        )
        assert refused.exit_code == 2 and message in " ".join(refused.output.split()), (bad, refused.output)
    hubspot = runner.invoke(
        app,
        [
            "export",
            str(scores),
            "--format",
            "hubspot",
            "--out",
            str(tmp_path / "h.csv"),
            "--field",
            "tier=Account_Tier",
        ],
    )
    assert hubspot.exit_code == 2 and "lowercase" in hubspot.output


def test_scores_of_another_crms_export_need_an_id_map(tmp_path):
    scores = tmp_path / "scores.csv"
    write_table(_book(account_id="5001"), scores)
    out = tmp_path / "sf.csv"
    refused = runner.invoke(
        app, ["export", str(scores), "--format", "salesforce", "--mapping", "hubspot", "--out", str(out)]
    )
    assert refused.exit_code == 2 and "--mapping hubspot" in refused.output and not out.exists()
    same = runner.invoke(
        app, ["export", str(scores), "--format", "hubspot", "--mapping", "hubspot", "--out", str(tmp_path / "hs.csv")]
    )
    assert same.exit_code == 0, same.output


def _export(tmp_path, fmt: str, *options: str, scores=None):
    path = tmp_path / "scores.csv"
    write_table(_book() if scores is None else scores, path)
    out = tmp_path / f"{fmt}.csv"
    result = runner.invoke(app, ["export", str(path), "--format", fmt, "--out", str(out), *options])
    return result, " ".join(result.output.split()), out


def test_hubspot_built_in_properties_are_refused_as_field_names(tmp_path):
    """--field tier=name would rename every company in the CRM (Salesforce already refuses fields without __c)."""
    scores = _book(account_id="5001")
    for name in ("name", "domain", "hs_object_id", "hubspot_owner_id", "numberofemployees"):
        result, text, out = _export(tmp_path, "hubspot", "--field", f"tier={name}", scores=scores)
        assert result.exit_code == 2 and f"'{name}' is one of HubSpot's own company properties" in text, text
        assert "Traceback" not in text and not out.exists()
    custom, _, out = _export(tmp_path, "hubspot", "--field", "tier=abm_account_tier", scores=scores)
    assert custom.exit_code == 0 and pd.read_csv(out, dtype=str).columns[1] == "abm_account_tier"


def test_a_column_given_two_fields_is_refused(tmp_path):
    result, text, out = _export(tmp_path, "salesforce", "--field", "tier=First__c", "--field", "tier=Second__c")
    assert result.exit_code == 2 and "--field names 'tier' twice ('First__c' and 'Second__c')" in text
    assert not out.exists()


def test_accounts_sharing_one_crm_id_are_refused(tmp_path):
    """Two rows of the import for one CRM record: the second would overwrite the first."""
    scores = pd.concat([_book(account_id=f"ACC-{n}") for n in (1, 2, 3)])
    ids = tmp_path / "ids.csv"
    ids.write_text("account_id,crm_id\nACC-1,001Dn00000AbCdEIAZ\nACC-2,001Dn00000XyZwVIAQ\nACC-3,001Dn00000AbCdEIAZ\n")
    result, text, out = _export(tmp_path, "salesforce", "--ids", str(ids), scores=scores)
    assert result.exit_code == 2 and "accounts share one crm_id (e.g. '001Dn00000AbCdEIAZ')" in text, text
    assert "ids.csv:crm_id" in text and "(rows 2, 4)" in text and not out.exists()  # file rows, header is row 1


def test_a_bare_carriage_return_in_text_is_quoted_in_export_and_alerts_csvs(tmp_path):
    """Unquoted, a lone CR ends the row for spreadsheets, CRM importers and Python's own csv reader."""
    import csv

    from activation.alerts import write_events
    from activation.crm_export import write_export
    from tests.activation.test_delivery import make_events

    frame, _ = export_frame(_book(reason_3="first\rsecond", surge_channels="a\rb"), "salesforce")
    out = write_export(frame, tmp_path / "sf.csv")
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 2 and rows[1][7] == "a\rb" and rows[1][10] == "first\rsecond"
    events = [dict(event, summary=f"A{n} moved\rup") for n, event in enumerate(make_events(2))]
    path = write_events(events, tmp_path / "alerts.csv")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["summary"] for row in rows] == ["A0 moved\rup", "A1 moved\rup"]
