"""Activity presets: Salesforce activity reports and HubSpot engagement exports map onto the
engagement table, channels onto the canonical ones where one fits and kept (and reported) otherwise. The example
files use each CRM's documented export columns: Salesforce's ActivityHistory / OpenActivity field labels (Activity
ID, Subject, Activity Subtype with Task, Email, Call, Event, List Email, LinkedIn; Type; Date; Account ID) and
HubSpot's engagements (a type EMAIL, INCOMING_EMAIL, FORWARDED_EMAIL, CALL, MEETING, TASK or NOTE, the activity's
date and its associated company), marketing-email events (OPEN, CLICK) in the same columns."""

from __future__ import annotations

from typer.testing import CliRunner

from cli.main import app
from ingest.io import load_export
from ingest.mapping import load_mapping
from tests.ingest.test_mapping import HUBSPOT_COMPANIES, HUBSPOT_DEALS, SALESFORCE_ACCOUNTS, SALESFORCE_OPPORTUNITIES

SALESFORCE_ACTIVITIES = """\
Activity ID,Subject,Activity Subtype,Type,Date,Account ID,Assigned,Closed
00T1x001,Intro call,Call,Call,1/10/2024,0011x0000A,Ana,1
00U1x002,Onsite workshop,Event,Meeting,1/12/2024,0011x0000A,Ana,1
00T1x003,Proposal sent,Email,Email,2/3/2024,0011x0000B,Ben,1
00T1x004,Newsletter,List Email,Email,2/4/2024,0011x0000B,Ben,1
00T1x005,Follow up,Task,Other,2/5/2024,0011x0000B,Ben,0
00T1x006,InMail,LinkedIn,Other,2/6/2024,0011x0000A,Ana,1
00T1x007,Sequence step,Cadence,Other,2/7/2024,0011x0000A,Ana,1
"""
HUBSPOT_ACTIVITIES = """\
Record ID,Activity type,Activity date,Associated Company IDs,Associated Contact IDs,Subject
7001,MEETING,2024-01-15 10:00,5001,301,Kick-off
7002,EMAIL,2024-01-16 09:30,5001,301,Pricing
7003,INCOMING_EMAIL,2024-01-17 08:00,5001,301,Re: Pricing
7004,CALL,2024-01-18 16:45,5002,302,Discovery
7005,NOTE,2024-01-19 11:00,5002,302,Notes
7006,OPEN,2024-01-20 07:00,5002,302,Newsletter
7007,CLICK,2024-01-20 07:02,5002,302,Newsletter
7008,POSTAL_MAIL,2024-01-21 12:00,5001,301,Card
"""


def engagement_rows(loaded):
    frame = loaded.data.engagement
    return [
        (row.account_id, row.timestamp.isoformat(sep=" ")[:16], row.channel, row.count)
        for row in frame.itertuples(index=False)
    ]


def test_a_salesforce_activities_report_becomes_engagement(tmp_path):
    (tmp_path / "opportunities-report.csv").write_text(SALESFORCE_OPPORTUNITIES)
    (tmp_path / "accounts-report.csv").write_text(SALESFORCE_ACCOUNTS)
    (tmp_path / "activities-report.csv").write_text(SALESFORCE_ACTIVITIES)
    loaded = load_export(tmp_path, "salesforce")
    assert engagement_rows(loaded) == [
        ("0011x0000A", "2024-01-10 00:00", "sales_call", 1.0),
        ("0011x0000A", "2024-01-12 00:00", "sales_meeting", 1.0),
        ("0011x0000B", "2024-02-03 00:00", "sales_email", 1.0),
        ("0011x0000B", "2024-02-04 00:00", "sales_email", 1.0),
        ("0011x0000B", "2024-02-05 00:00", "sales_task", 1.0),
        ("0011x0000A", "2024-02-06 00:00", "linkedin", 1.0),
        ("0011x0000A", "2024-02-07 00:00", "Cadence", 1.0),  # a subtype the preset does not name: kept as it is
    ]
    assert loaded.summary["unknown_channels"] == {
        "sales_email": 2,
        "sales_call": 1,
        "sales_task": 1,
        "linkedin": 1,
        "Cadence": 1,
    }
    assert "engagement" not in loaded.summary["absent_tables"]


def test_a_hubspot_activities_export_becomes_engagement(tmp_path):
    (tmp_path / "hubspot-crm-exports-all-deals-2024-05-01.csv").write_text(HUBSPOT_DEALS)
    (tmp_path / "hubspot-crm-exports-all-companies-2024-05-01.csv").write_text(HUBSPOT_COMPANIES)
    (tmp_path / "hubspot-crm-exports-all-activities-2024-05-01.csv").write_text(HUBSPOT_ACTIVITIES)
    loaded = load_export(tmp_path, "hubspot")
    assert engagement_rows(loaded) == [
        ("5001", "2024-01-15 10:00", "sales_meeting", 1.0),
        ("5001", "2024-01-16 09:30", "sales_email", 1.0),
        ("5001", "2024-01-17 08:00", "sales_email_reply", 1.0),
        ("5002", "2024-01-18 16:45", "sales_call", 1.0),
        ("5002", "2024-01-19 11:00", "sales_note", 1.0),
        ("5002", "2024-01-20 07:00", "email_open", 1.0),
        ("5002", "2024-01-20 07:02", "email_click", 1.0),
        ("5001", "2024-01-21 12:00", "POSTAL_MAIL", 1.0),  # not named by the preset: kept and reported
    ]
    [unknown] = [w for w in loaded.warnings if w.column == "Activity type"]
    assert "'POSTAL_MAIL' (1)" in unknown.message and unknown.severity == "warning"


def test_without_an_activities_file_the_presets_still_load_and_say_so(tmp_path):
    (tmp_path / "opportunities-report.csv").write_text(SALESFORCE_OPPORTUNITIES)
    (tmp_path / "accounts-report.csv").write_text(SALESFORCE_ACCOUNTS)
    loaded = load_export(tmp_path, "salesforce")
    assert loaded.summary["absent_tables"] == ["engagement", "intent"]
    assert any("no engagement table" in w.message and "activities*.csv" in w.message for w in loaded.warnings)


def test_init_recognises_the_salesforce_export_with_its_activities(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "opportunities-report.csv").write_text(SALESFORCE_OPPORTUNITIES)
    (folder / "accounts-report.csv").write_text(SALESFORCE_ACCOUNTS)
    (folder / "activities-report.csv").write_text(SALESFORCE_ACTIVITIES)
    result = CliRunner().invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    assert load_mapping(tmp_path / "mapping.yaml").engagement == load_mapping("salesforce").engagement


def test_init_guesses_an_activity_file_of_another_shape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "deals.csv").write_text(
        "Deal ID,Company,Stage,Created,Closed\nD1,Acme,Won,2024-01-05,2024-02-01\nD2,Beta,Lost,2024-01-06,2024-02-02\n"
    )
    (folder / "companies.csv").write_text("Company,Industry\nAcme,software\nBeta,retail\n")
    (folder / "touchpoints.csv").write_text(
        "Company,Touch Type,Timestamp\nAcme,Webinar,2024-01-02T10:00:00\n"
        "Beta,Email Open,2024-01-03T11:00:00\nAcme,Page View,2024-01-04T12:00:00\n"
        "Beta,Podcast,2024-01-04T13:00:00\n"
    )
    result = CliRunner().invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    engagement = load_mapping(tmp_path / "mapping.yaml").engagement
    assert engagement.file == "touchpoints.csv"
    assert engagement.columns == {"account_id": "Company", "timestamp": "Timestamp", "channel": "Touch Type"}
    assert engagement.values["channel"] == {
        "Webinar": "event_attended",
        "Email Open": "email_open",
        "Page View": "web_visit",
    }
    frame = load_export(folder, tmp_path / "mapping.yaml").data.engagement
    assert list(frame["channel"]) == ["event_attended", "email_open", "web_visit", "Podcast"]
