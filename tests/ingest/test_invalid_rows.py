"""`validation.invalid_rows: drop`: every row-level problem drops its row, which is counted and
listed in rejected_rows.csv with its file, row number and reason; table-level problems still stop.

The expected rows are written out by hand from the export below (rows numbered as a spreadsheet shows them: the
header is row 1)."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import TieringConfig, parse_config
from features.errors import DataError
from ingest.io import load_export
from ingest.repair import REJECTED_FILE, invalid_rows_mode
from tests.cli.test_hostile import words

runner = CliRunner()

ACCOUNTS = """\
account_id,account_name,employees
A1,Acme,500
A2,Beta,many
A3,Gamma,50
"""
OPPORTUNITIES = """\
opportunity_id,account_id,created_date,close_date,outcome,amount
O1,A1,2024-01-05,2024-02-10,won,100
O2,A1,2024-03-05,2024-02-10,lost,0
O3,A3,yesterday,2024-02-10,lost,0
O4,A3,2024-01-05,2024-02-10,won,-5
O5,A3,2024-01-05,,won,10
O6,ZZ,2024-01-05,2024-02-10,lost,0
O1,A1,2024-01-05,2024-02-10,won,100
O8,A3,2024-01-05,2024-02-10,won,1
O8,A3,2024-01-06,2024-02-10,won,1
O10,A2,2024-01-05,2024-02-10,won,1
O11,A3,2024-01-07,,open,
"""
# What drop must do, row by row: (file, row, table, reason).
EXPECTED_REJECTED = [
    ("accounts.csv", 3, "accounts", "employees 'many' is not a number"),
    ("opportunities.csv", 3, "opportunities", "close_date 2024-02-10 is before created_date 2024-03-05"),
    ("opportunities.csv", 4, "opportunities", "created_date 'yesterday' is not a date"),
    ("opportunities.csv", 5, "opportunities", "amount '-5' is below 0"),
    ("opportunities.csv", 6, "opportunities", "won but close_date is empty"),
    ("opportunities.csv", 7, "opportunities", "account_id 'ZZ' is not in the accounts table"),
    ("opportunities.csv", 8, "opportunities", "opportunity_id 'O1' repeats an earlier row exactly (the first is kept)"),
    ("opportunities.csv", 9, "opportunities", "opportunity_id 'O8' is on several rows that differ (all are dropped)"),
    ("opportunities.csv", 10, "opportunities", "opportunity_id 'O8' is on several rows that differ (all are dropped)"),
    ("opportunities.csv", 11, "opportunities", "account_id 'A2' is an account whose row was dropped"),
]


@pytest.fixture(autouse=True)
def in_own_folder(tmp_path, monkeypatch):
    """rejected_rows.csv is written to the current folder; no ./tiering.yaml is picked up."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def bad_rows(write_export):
    return write_export(
        {"accounts.csv": ACCOUNTS, "opportunities.csv": OPPORTUNITIES, "engagement.csv": None, "intent.csv": None}
    )


def read_rejected(path=REJECTED_FILE) -> list[tuple]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "row", "table", "reason"]
    return [(file, int(row), table, reason) for file, row, table, reason in rows[1:]]


def test_drop_keeps_the_good_rows_and_lists_every_dropped_row_with_its_reason(bad_rows):
    loaded = load_export(bad_rows, invalid_rows="drop")
    assert list(loaded.data.accounts["account_id"]) == ["A1", "A3"]
    assert list(loaded.data.opportunities["opportunity_id"]) == ["O1", "O11"]  # the first O1 is kept
    assert [tuple(row) for row in loaded.rejected.itertuples(index=False)] == EXPECTED_REJECTED
    assert loaded.summary["rejected_rows"] == {"accounts": 1, "opportunities": 9}
    assert loaded.summary["invalid_rows"] == "drop"
    # The problems are still reported, as warnings naming the dropped rows.
    dropped = {(w.file, w.column): w.rows for w in loaded.warnings if "dropped" in w.message and w.table}
    assert dropped[("opportunities.csv", "opportunity_id")] == (8, 9, 10)
    assert dropped[("opportunities.csv", "account_id")] == (7, 11)
    assert dropped[("accounts.csv", "employees")] == (3,)


def test_stop_is_the_default_and_says_the_rows_could_be_dropped(bad_rows):
    with pytest.raises(DataError) as raised:
        load_export(bad_rows)
    errors = [p for p in raised.value.problems if p.severity == "error"]
    assert {(p.file, p.column) for p in errors} == {
        ("accounts.csv", "employees"),
        ("opportunities.csv", "close_date"),
        ("opportunities.csv", "created_date"),
        ("opportunities.csv", "amount"),
        ("opportunities.csv", "opportunity_id"),
        ("opportunities.csv", "account_id"),
    }
    assert all(p.row_level for p in errors)
    result = runner.invoke(app, ["validate", str(bad_rows)])
    assert result.exit_code == 2
    assert "Each of these problems is about single rows" in result.output and "--invalid-rows drop" in result.output
    assert not (bad_rows.parent / REJECTED_FILE).exists() and not (bad_rows / REJECTED_FILE).exists()


def test_cli_validate_drop_writes_rejected_rows_csv_and_prints_the_counts(bad_rows, tmp_path):
    result = runner.invoke(app, ["validate", str(bad_rows), "--invalid-rows", "drop"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert (
        "Dropped 10 rows with row-level problems (accounts 1, opportunities 9); each is listed with its reason in "
        "rejected_rows.csv"
    ) in output
    assert "1 with row-level problems dropped" in output and "9 with row-level problems dropped" in output
    assert "1 won, 0 lost, 1 open" in output
    assert read_rejected(tmp_path / REJECTED_FILE) == EXPECTED_REJECTED
    # A second run replaces the file tiering wrote.
    assert runner.invoke(app, ["validate", str(bad_rows), "--invalid-rows", "drop"]).exit_code == 0
    assert read_rejected(tmp_path / REJECTED_FILE) == EXPECTED_REJECTED


def test_a_clean_export_with_drop_writes_only_the_header(write_export, tmp_path):
    result = runner.invoke(app, ["validate", str(write_export()), "--invalid-rows", "drop"])
    assert result.exit_code == 0, result.output
    assert "No row was dropped" in result.output
    assert (tmp_path / REJECTED_FILE).read_text() == "file,row,table,reason\n"


def test_the_config_key_sets_drop_and_the_option_overrides_it(bad_rows, tmp_path):
    (tmp_path / "tiering.yaml").write_text("validation:\n  invalid_rows: drop\n")
    assert runner.invoke(app, ["validate", str(bad_rows)]).exit_code == 0
    assert len(read_rejected()) == 10
    assert runner.invoke(app, ["validate", str(bad_rows), "--invalid-rows", "stop"]).exit_code == 2
    assert invalid_rows_mode(None, parse_config({"validation": {"invalid_rows": "drop"}})) == "drop"
    assert invalid_rows_mode(None, TieringConfig()) == "stop"


def test_a_bad_option_value_or_config_value_is_refused():
    result = runner.invoke(app, ["validate", "anywhere", "--invalid-rows", "skip"])
    assert result.exit_code == 2 and "'skip' is not one of 'stop', 'drop'" in words(result.output)
    from features.config import ConfigError

    with pytest.raises(ConfigError, match="validation.invalid_rows"):
        parse_config({"validation": {"invalid_rows": "skip"}})


def test_table_level_problems_still_stop_and_nothing_is_written(write_export, tmp_path):
    folder = write_export({"opportunities.csv": OPPORTUNITIES.replace("outcome", "stage"), "accounts.csv": ACCOUNTS})
    result = runner.invoke(app, ["validate", str(folder), "--invalid-rows", "drop"])
    assert result.exit_code == 2
    assert "required column 'outcome' is missing" in result.output
    assert not (tmp_path / REJECTED_FILE).exists()


def test_unknown_outcome_values_are_a_mapping_problem_and_stop_even_with_drop(write_export, problems_of):
    folder = write_export(
        {
            "opportunities.csv": (
                "opportunity_id,account_id,created_date,close_date,outcome\nO1,A1,2024-01-05,2024-02-10,won\n"
                "O2,A1,2024-01-05,2024-02-10,Closed Won\n"
            )
        }
    )
    with pytest.raises(DataError) as raised:
        load_export(folder, invalid_rows="drop")
    [problem] = [p for p in raised.value.problems if p.severity == "error"]
    assert "unknown outcome values: 'Closed Won' (1)" in problem.message and not problem.row_level


def test_when_every_row_of_a_required_table_is_dropped_the_run_stops(write_export):
    folder = write_export({"accounts.csv": "account_id,employees\nA1,x\nA2,y\nA3,z\n"})
    with pytest.raises(DataError) as raised:
        load_export(folder, invalid_rows="drop")
    messages = [p.message for p in raised.value.problems if p.severity == "error"]
    assert "every row of the accounts table was dropped (3 rows with row-level problems)" in messages
    # The opportunities of those accounts were dropped in turn: that table is empty too.
    assert "every row of the opportunities table was dropped (4 rows with row-level problems)" in messages


def test_a_rejected_rows_csv_tiering_did_not_write_is_never_replaced(bad_rows, tmp_path):
    mine = tmp_path / REJECTED_FILE
    mine.write_text("my notes\n")
    result = runner.invoke(app, ["validate", str(bad_rows), "--invalid-rows", "drop"])
    assert result.exit_code == 2
    assert "rejected_rows.csv exists and was not written by tiering" in " ".join(result.output.split())
    assert mine.read_text() == "my notes\n"


def test_engagement_rows_with_problems_are_dropped_too(write_export):
    folder = write_export(
        {
            "engagement.csv": (
                "account_id,timestamp,channel,count\nA1,2024-01-01,web_visit,2\n,2024-01-02,web_visit,1\n"
                "A2,soon,email_open,1\nA2,2024-01-03,email_open,-1\n"
            )
        }
    )
    loaded = load_export(folder, invalid_rows="drop")
    assert list(loaded.data.engagement["count"]) == [2.0]
    assert [tuple(row) for row in loaded.rejected.itertuples(index=False)] == [
        ("engagement.csv", 3, "engagement", "account_id is empty"),
        ("engagement.csv", 4, "engagement", "timestamp 'soon' is not a date"),
        ("engagement.csv", 5, "engagement", "count '-1' is outside 0 to 1,000,000"),
    ]


def test_every_command_that_loads_data_takes_invalid_rows():
    for command in ("validate", "train", "score", "compare", "demo"):
        result = runner.invoke(app, [command, "--help"])
        assert "--invalid-rows" in result.output, command
