"""Accounts from the opportunities rows: an opportunities-only report (a Salesforce opportunity
report with the account's columns on each row) gives one account per distinct account id, each column from the
latest row that has a value, with disagreements counted and reported. Expected tables are written out by hand."""

from __future__ import annotations

import pytest

from features.errors import DataError
from ingest.io import load_export
from ingest.mapping import load_mapping

REPORT = """\
Opportunity ID,Account ID,Account Name,Industry,Employees,Created Date,Close Date,Stage,Amount
006A,001X,Acme,Software,500,2024-01-05,2024-02-10,Closed Won,100
006B,001X,Acme Inc,Software,,2024-03-05,2024-04-10,Closed Lost,0
006C,001Y,Beta,Retail,50,2024-01-06,2024-02-11,Closed Won,30
006D,,,,,2024-01-07,,Prospecting,
006E,001Y,Beta,Healthcare,60,2023-12-01,2024-01-11,Closed Lost,0
"""
MAPPING = """\
accounts:
  from_opportunities: true
  columns: {account_id: Account ID, account_name: Account Name, industry: Industry, employees: Employees}
opportunities:
  file: report.csv
  columns: {opportunity_id: Opportunity ID, account_id: Account ID, created_date: Created Date,
            close_date: Close Date, outcome: Stage, amount: Amount}
  values:
    outcome: {Closed Won: won, Closed Lost: lost, "*": open}
"""


@pytest.fixture
def report(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "report.csv").write_text(REPORT)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    return folder, mapping


def rows(frame, columns):
    return [tuple(None if value != value else value for value in row) for row in frame[columns].itertuples(index=False)]


def test_one_account_per_id_from_the_latest_row_with_a_value(report):
    folder, mapping = report
    loaded = load_export(folder, mapping)
    # 001X: latest row 006B (2024-03-05) gives the name; its employees cell is empty, so 006A's 500.
    # 001Y: latest row is 006C (2024-01-06), not 006E (2023-12-01), though 006E comes later in the file.
    assert rows(loaded.data.accounts, ["account_id", "account_name", "industry", "employees"]) == [
        ("001X", "Acme Inc", "Software", 500.0),
        ("001Y", "Beta", "Retail", 50.0),
    ]
    assert list(loaded.data.opportunities["opportunity_id"]) == [
        "006A",
        "006B",
        "006C",
        "006E",
    ]  # 006D: open, no account
    # Only mapped columns become account columns: no Stage or Amount on accounts.
    assert "Stage" not in loaded.data.accounts and "Amount" not in loaded.data.accounts
    [conflict] = [w for w in loaded.warnings if "differing values" in w.message]
    assert conflict.table == "accounts" and conflict.file == "report.csv"
    assert "2 accounts taken from the opportunities rows" in conflict.message
    assert "Account Name (1), Industry (1), Employees (1)" in conflict.message
    assert conflict.rows == (3, 4)  # the rows whose values were taken: 006B and 006C
    assert loaded.summary["accounts_from_opportunities"] is True
    assert loaded.summary["accounts_without_opportunities"] == 0


def test_a_bad_account_value_names_the_report_row_and_the_accounts_table(report, problems_of):
    folder, mapping = report
    (folder / "report.csv").write_text(REPORT.replace("Beta,Retail,50", "Beta,Retail,fifty"))
    [problem] = problems_of(folder, mapping)
    assert (problem.table, problem.file, problem.column, problem.rows) == ("accounts", "report.csv", "Employees", (4,))
    assert problem.render().startswith("accounts table, report.csv:Employees: values are not numbers (e.g. 'fifty')")


def test_drop_removes_a_bad_row_from_the_accounts_only_and_an_account_with_no_good_row_in_turn(report):
    folder, mapping = report
    # 001X keeps a good row (006A); 001Z's only row is bad, so 001Z is no account and its opportunity goes too.
    bad = (
        REPORT.replace("Acme Inc,Software,,", "Acme Inc,Software,lots,")
        + "006F,001Z,Zeta,Retail,x,2024-01-08,2024-02-01,Closed Won,5\n"
    )
    (folder / "report.csv").write_text(bad)
    loaded = load_export(folder, mapping, invalid_rows="drop")
    assert rows(loaded.data.accounts, ["account_id", "account_name", "employees"]) == [
        ("001X", "Acme", 500.0),  # from 006A: 006B's row is dropped from the accounts
        ("001Y", "Beta", 50.0),
    ]
    assert list(loaded.data.opportunities["opportunity_id"]) == ["006A", "006B", "006C", "006E"]
    assert [tuple(row) for row in loaded.rejected.itertuples(index=False)] == [
        ("report.csv", 3, "accounts", "Employees 'lots' is not a number"),
        ("report.csv", 7, "accounts", "Employees 'x' is not a number"),
        ("report.csv", 7, "opportunities", "Account ID '001Z' is an account whose row was dropped"),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("opportunities:\n  from_opportunities: true\n", "from_opportunities is for the accounts table only"),
        ("accounts:\n  from_opportunities: true\n  file: report.csv\n", "remove `file:` here"),
    ],
)
def test_misplaced_from_opportunities_is_a_mapping_error(tmp_path, text, expected):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as raised:
        load_mapping(path)
    assert expected in str(raised.value)


def test_a_missing_opportunities_file_is_reported_once(report, problems_of):
    folder, mapping = report
    (folder / "report.csv").rename(folder / "other.csv")
    problems = problems_of(folder, mapping)
    assert len(problems) == 1 and "required opportunities table not found" in problems[0].message
