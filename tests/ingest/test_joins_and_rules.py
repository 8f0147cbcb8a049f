"""Joins and outcome rules in the mapping: a lead-funnel export (qualified leads, and a file of won
deals only) loads without code. The outcomes are worked out by hand from the rule: won when a won date exists;
lost when none `lost_after_days` after creation, judged on the export's latest date; open otherwise."""

from __future__ import annotations

import hashlib

import pytest

from features.errors import DataError
from ingest.io import load_export
from ingest.mapping import load_mapping

LEADS = """\
Lead ID,Company,Created,Source
L1,Acme,2024-01-05,webinar
L2,Acme,2024-02-01,web
L3,Beta,2024-03-01,event
L4,Gamma,2024-05-20,web
L5,Beta,2024-01-10,ads
"""
DEALS = """\
Lead,Won On,Amount,Segment
L1,2024-02-15,12000,Mid
L5,2024-03-01,3000,SMB
L9,2024-03-02,999,SMB
"""
MAPPING = """\
accounts:
  from_opportunities: true
  columns: {account_id: Company, segment: Segment}
opportunities:
  file: leads.csv
  join: {file: deals.csv, on: Lead ID, right_on: Lead}
  columns: {opportunity_id: Lead ID, account_id: Company, created_date: Created, amount: Amount}
  outcome_rule: {won_date: Won On, lost_after_days: 60}
"""


@pytest.fixture
def funnel(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "leads.csv").write_text(LEADS)
    (folder / "deals.csv").write_text(DEALS)

    def mapping(text: str = MAPPING):
        path = tmp_path / "mapping.yaml"
        path.write_text(text)
        return path

    return folder, mapping


def table(frame, columns):
    return [
        tuple(
            None if value != value else (value.date().isoformat() if hasattr(value, "date") else value) for value in row
        )
        for row in frame[columns].itertuples(index=False)
    ]


def test_a_lead_funnel_loads_with_a_join_and_an_outcome_rule(funnel):
    folder, mapping = funnel
    loaded = load_export(folder, mapping())
    # Judged on 2024-05-20 (the latest created or won date): L2 was created 2024-02-01, 60 days on is 2024-04-01:
    # lost then; L3: 2024-03-01 + 60 = 2024-04-30, lost; L4: 2024-05-20 + 60 is after the export: open.
    assert table(
        loaded.data.opportunities, ["opportunity_id", "account_id", "created_date", "outcome", "close_date", "amount"]
    ) == [
        ("L1", "Acme", "2024-01-05", "won", "2024-02-15", 12000.0),
        ("L2", "Acme", "2024-02-01", "lost", "2024-04-01", None),
        ("L3", "Beta", "2024-03-01", "lost", "2024-04-30", None),
        ("L4", "Gamma", "2024-05-20", "open", None, None),
        ("L5", "Beta", "2024-01-10", "won", "2024-03-01", 3000.0),
    ]
    # Accounts from the leads, with a column joined from the deals (Beta's latest lead, L3, has none: L5's).
    assert table(loaded.data.accounts, ["account_id", "segment"]) == [("Acme", "Mid"), ("Beta", "SMB"), ("Gamma", None)]
    assert loaded.summary["outcome_rule"] == {"won_date": "Won On", "lost_after_days": 60, "judged_on": "2024-05-20"}
    [unmatched] = [w for w in loaded.warnings if "match no row" in w.message]
    assert (unmatched.file, unmatched.column, unmatched.rows) == ("deals.csv", "Lead", (4,))


def test_observed_until_sets_the_day_the_rule_judges_on(funnel):
    folder, mapping = funnel
    text = MAPPING.replace("lost_after_days: 60}", "lost_after_days: 60, observed_until: 2024-04-15}")
    outcomes = load_export(folder, mapping(text)).data.opportunities.set_index("opportunity_id")["outcome"]
    assert outcomes.to_dict() == {"L1": "won", "L2": "lost", "L3": "open", "L4": "open", "L5": "won"}


def test_a_won_date_that_is_not_a_date_is_a_row_problem(funnel):
    folder, mapping = funnel
    (folder / "deals.csv").write_text(DEALS.replace("2024-03-01,3000", "soon,3000"))
    with pytest.raises(DataError) as raised:
        load_export(folder, mapping())
    [problem] = [p for p in raised.value.problems if p.severity == "error"]
    assert (problem.file, problem.column, problem.rows, problem.row_level) == ("leads.csv", "Won On", (6,), True)
    kept = load_export(folder, mapping(), invalid_rows="drop")
    assert list(kept.data.opportunities["opportunity_id"]) == ["L1", "L2", "L3", "L4"]
    assert list(kept.rejected["reason"]) == ["Won On 'soon' is not a date"]


def test_a_key_the_joined_file_holds_twice_stops_with_its_rows(funnel, problems_of):
    folder, mapping = funnel
    (folder / "deals.csv").write_text(DEALS + "L1,2024-02-20,5,Mid\n")
    [problem] = problems_of(folder, mapping())
    assert (problem.file, problem.column, problem.rows) == ("deals.csv", "Lead", (2, 5))
    assert "the key 'Lead' repeats (e.g. 'L1')" in problem.message and not problem.row_level


@pytest.mark.parametrize(
    "change, expected",
    [
        (("right_on: Lead", "right_on: LeadRef"), "join: column 'LeadRef' is not in this file"),
        (("on: Lead ID,", "on: Lead Key,"), "join: the key column 'Lead Key' is not in this file"),
        (("file: deals.csv", "file: won.csv"), "join: no file matches 'won.csv'"),
        (("won_date: Won On", "won_date: Won"), "outcome_rule: won_date names the column 'Won'"),
    ],
)
def test_a_join_or_rule_naming_what_is_not_there_stops(funnel, problems_of, change, expected):
    folder, mapping = funnel
    problems = problems_of(folder, mapping(MAPPING.replace(*change)))
    assert any(expected in p.message for p in problems), [p.render() for p in problems]


def test_a_header_both_files_have_must_be_left_out_of_the_join(funnel, problems_of):
    folder, mapping = funnel
    (folder / "deals.csv").write_text(DEALS.replace("Segment", "Source"))
    problems = problems_of(folder, mapping(MAPPING.replace("segment: Segment", "segment: Source")))
    assert any("both leads.csv and deals.csv have a column 'Source'" in p.message for p in problems)
    fixed = MAPPING.replace("right_on: Lead}", "right_on: Lead, columns: [Won On, Amount]}").replace(
        ", segment: Segment", ""
    )
    assert len(load_export(folder, mapping(fixed)).data.opportunities) == 5


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "opportunities:\n  columns: {outcome: Stage}\n  outcome_rule: {won_date: W, lost_after_days: 9}\n",
            "outcome_rule derives outcome: remove outcome from columns and values",
        ),
        (
            "accounts:\n  outcome_rule: {won_date: W, lost_after_days: 9}\n",
            "outcome_rule is for the opportunities table only",
        ),
        (
            "opportunities:\n  outcome_rule: {won_date: W, lost_after_days: 0}\n",
            "'opportunities.outcome_rule.lost_after_days'",
        ),
        ("opportunities:\n  join: {file: d.csv, key: x}\n", "unknown key 'opportunities.join.0.key'"),
        ("accounts:\n  from_opportunities: true\n  join: {file: d.csv, on: x}\n", "put `join:` under opportunities"),
    ],
)
def test_mapping_mistakes_in_joins_and_rules_are_named(tmp_path, text, expected):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as raised:
        load_mapping(path)
    assert expected in str(raised.value)


def test_generated_ids_of_a_funnel_use_the_leads_own_columns_only(funnel):
    folder, mapping = funnel
    (folder / "leads.csv").write_text(LEADS.replace("Lead ID,", "Ref,"))
    text = MAPPING.replace("on: Lead ID", "on: Ref").replace("opportunity_id: Lead ID, ", "")
    ids = list(load_export(folder, mapping(text)).data.opportunities["opportunity_id"])

    def documented(**values):  # the documented recipe: every column of the row in its own file, by name
        line = "\x1e".join(f"{name}\x1f{values[name]}" for name in sorted(values))
        return "gen-" + hashlib.sha256(line.encode()).hexdigest()[:16]

    assert ids[0] == documented(Ref="L1", account_id="Acme", created_date="2024-01-05", Source="webinar")
    assert ids[3] == documented(Ref="L4", account_id="Gamma", created_date="2024-05-20", Source="web")


def test_a_join_on_the_accounts_brings_firmographics_from_a_second_file(write_export, tmp_path):
    folder = write_export(
        {
            "accounts.csv": "account_id,account_name\nA1,Acme\nA2,Beta\nA3,Gamma\n",
            "firmographics.csv": "Account,Sector,Staff\nA2,healthcare,2000\nA1,software,500\n",
        }
    )
    path = tmp_path / "m.yaml"
    path.write_text(
        "accounts:\n  join: {file: firmographics.csv, on: account_id, right_on: Account}\n"
        "  columns: {industry: Sector, employees: Staff}\n"
    )
    data = load_export(folder, path).data
    assert table(data.accounts, ["account_id", "industry", "employees"]) == [
        ("A1", "software", 500.0),
        ("A2", "healthcare", 2000.0),
        ("A3", None, None),
    ]
