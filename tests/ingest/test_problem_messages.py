"""Messages: user text (file names, headers, values) is printed as written, never as console
markup or emoji; every problem names its table (two tables may read one file); headers count problems and warnings
apart."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from cli.main import app
from ingest.io import load_export

runner = CliRunner()


@pytest.fixture(autouse=True)
def in_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def listed(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("- ")]


def test_two_tables_reading_one_file_each_say_which_table_a_problem_is_about(tmp_path, problems_of):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "offers.csv").write_text(
        "Id,Account,Created,Closed,Stage\nO1,A1,2024-01-05,2024-02-10,won\nO2,A1,someday,2024-02-10,lost\n"
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "accounts:\n  file: offers.csv\n  columns: {account_id: Account}\n"
        "opportunities:\n  file: offers.csv\n"
        "  columns: {opportunity_id: Id, account_id: Account, created_date: Created, close_date: Closed, outcome: "
        "Stage}\n"
    )
    problems = problems_of(folder, mapping)
    assert {(p.table, p.column) for p in problems} == {("accounts", "Account"), ("opportunities", "Created")}
    result = runner.invoke(app, ["validate", str(folder), "--mapping", str(mapping)])
    assert result.exit_code == 2
    lines = listed(result.output)
    assert "- accounts table, offers.csv:Account: duplicate account_id values (e.g. 'A1') (rows 2, 3)." in " ".join(
        lines
    )
    assert any(
        line.startswith("- opportunities table, offers.csv:Created: values are not dates (e.g. 'someday') (row 3)")
        for line in lines
    )
    config_line, rest = result.output.split("\n", 1)
    assert config_line == "configuration: built-in defaults"
    assert rest.startswith("2 problems stop this run (and 2 warnings):")  # no engagement, no intent
    assert len(lines) == 2 + 2


MARKUP = "[bold]Emp:Id:[/bold]"
VALUE = "[red]:thumbs_up:"


def test_markup_and_emoji_codes_in_names_and_values_print_as_written_when_rows_are_dropped(write_export, tmp_path):
    folder = write_export(
        {
            "accounts.csv": None,
            ":Id:[b].csv": f"account_id,{MARKUP}\nA1,5\nA2,{VALUE}\nA3,7\n",
        }
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(f"accounts:\n  file: ':Id:[b].csv'\n  columns: {{employees: '{MARKUP}'}}\n")
    result = runner.invoke(app, ["validate", str(folder), "--mapping", str(mapping), "--invalid-rows", "drop"])
    assert result.exit_code == 0, result.output
    output = result.output
    assert (
        f"- accounts table, :Id:[b].csv:{MARKUP}: values are not numbers (e.g. '{VALUE}'): row dropped (row 3)."
        in " ".join(output.split())
    )
    assert ":Id:[b].csv" in output  # the file column of the summary table
    assert "\N{THUMBS UP SIGN}" not in output and "\N{SQUARED ID}" not in output
    with open(tmp_path / "rejected_rows.csv", encoding="utf-8", newline="") as handle:
        assert list(csv.reader(handle))[1] == [":Id:[b].csv", "3", "accounts", f"{MARKUP} '{VALUE}' is not a number"]


def test_the_summary_counts_its_warnings_and_lists_as_many(write_export):
    folder = write_export(
        {"engagement.csv": "account_id,timestamp,channel\nA1,2024-01-01,webinar\nZZ,2024-01-02,web_visit\n"}
    )
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert "3 warnings:" in result.output
    assert len(listed(result.output)) == 3


def test_warnings_about_absent_tables_have_no_file_and_no_table_prefix(write_export):
    loaded = load_export(write_export({"intent.csv": None}))
    [absent] = [w for w in loaded.warnings if "no intent table" in w.message]
    assert absent.render().startswith("no intent table: intent data is left out")


def test_a_problem_at_rows_shows_the_first_rows_below_the_header_and_counts_them_all():
    from features.errors import MAX_ROWS_SHOWN
    from ingest.problems import problem_at_rows

    problem = problem_at_rows([0, 3, 4, 7, 8, 9, 12], "empty id", "fill it in", file="a.csv", column="account_id")
    # Data row 0 is the file's line 2 (line 1 is the header); only the first MAX_ROWS_SHOWN are listed.
    assert problem.rows == (2, 5, 6, 9, 10)[:MAX_ROWS_SHOWN] and problem.row_count == 7
    where = (problem.file, problem.column, problem.message, problem.fix)
    assert where == ("a.csv", "account_id", "empty id", "fill it in")
