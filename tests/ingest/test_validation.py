"""Validation: each broken export yields a problem naming file, column, rows and fix; exit code 2."""

from __future__ import annotations

from rich.console import Console
from typer.testing import CliRunner

from cli.main import app
from cli.summary import render_summary
from ingest.io import load_export

VALID_OPPORTUNITIES_HEADER = "opportunity_id,account_id,created_date,close_date,outcome,amount,product\n"


def opportunities(*rows: str) -> str:
    return VALID_OPPORTUNITIES_HEADER + "".join(row + "\n" for row in rows)


def validate_cli(folder, *options):
    return CliRunner().invoke(app, ["validate", str(folder), *options])


def test_valid_export_loads_with_canonical_types_and_summary(write_export):
    loaded = load_export(write_export())
    data = loaded.data
    assert list(data.accounts["account_id"]) == ["A1", "A2", "A3"]
    assert str(data.opportunities["created_date"].dtype) == "datetime64[ns]"
    assert str(data.opportunities["amount"].dtype) == "float64"
    assert str(data.engagement["timestamp"].dtype) == "datetime64[ns]"
    assert data.present == frozenset({"accounts", "opportunities", "engagement", "intent"})
    assert loaded.summary["rows"] == {"accounts": 3, "opportunities": 4, "engagement": 2, "intent": 1}
    outcomes = loaded.summary["opportunities"]
    assert (outcomes["won"], outcomes["lost"], outcomes["open"]) == (2, 1, 1)
    assert outcomes["win_rate"] == round(2 / 3, 4)
    assert (outcomes["created_from"], outcomes["closed_to"]) == ("2024-01-05", "2024-04-01")
    # A3 has no opportunity: a warning naming its row, never an error.
    [lonely] = [w for w in loaded.warnings if "without any opportunity" in w.message]
    assert (lonely.file, lonely.column, lonely.rows) == ("accounts.csv", "account_id", (4,))


def test_cli_validate_prints_summary_and_exits_0(write_export):
    result = validate_cli(write_export())
    assert result.exit_code == 0, result.output
    assert "2 won, 1 lost, 1 open" in result.output
    assert "win rate 66.7%" in result.output
    assert "Accounts without opportunities: 1" in result.output


def test_render_summary_lists_warnings_and_prints_data_verbatim(write_export):
    engagement = "account_id,timestamp,channel\nA1,2024-01-01,[/bold]\n"  # not rich markup, just a channel
    console = Console(record=True, width=200)
    render_summary(load_export(write_export({"intent.csv": None, "engagement.csv": engagement})), console)
    text = console.export_text()
    assert "no intent table" in text
    assert "Unknown channels: [/bold] (1)" in text
    assert "The export is valid." in text


def test_missing_required_column_names_file_column_and_suggests_mapping(write_export, problems_of):
    renamed = opportunities("O1,A1,2024-01-05,2024-02-10,won,1,Core").replace("outcome", "Stage")
    folder = write_export({"opportunities.csv": renamed})
    [problem] = problems_of(folder)
    assert (problem.file, problem.column) == ("opportunities.csv", "outcome")
    assert "required column 'outcome' is missing" in problem.message
    assert "Stage" in problem.message  # what the file has instead
    result = validate_cli(folder)
    assert result.exit_code == 2
    assert "opportunities.csv:outcome: required column 'outcome' is missing" in result.output


def test_unparseable_dates_report_rows_and_values(write_export, problems_of):
    folder = write_export(
        {
            "opportunities.csv": opportunities(
                "O1,A1,2024-01-05,2024-02-10,won,1,Core",
                "O2,A1,yesterday,2024-02-10,won,1,Core",
                "O3,A2,2024-01-05,2024-13-45,lost,1,Core",
            )
        }
    )
    problems = problems_of(folder)
    created = next(p for p in problems if p.column == "created_date")
    assert created.rows == (3,) and "'yesterday'" in created.message and "date_format" in created.fix
    closed = next(p for p in problems if p.column == "close_date")
    assert closed.rows == (4,) and "not dates" in closed.message
    result = validate_cli(folder)
    assert result.exit_code == 2
    assert "opportunities.csv:created_date: values are not dates (e.g. 'yesterday') (row 3)" in result.output


def test_close_before_create_and_closed_without_close_date(write_export, problems_of):
    folder = write_export(
        {
            "opportunities.csv": opportunities(
                "O1,A1,2024-03-05,2024-02-10,won,1,Core",
                "O2,A1,2024-01-05,,lost,1,Core",
                "O3,A2,2024-01-05,,open,,Core",
            )
        }
    )
    problems = {p.message: p for p in problems_of(folder)}
    before = problems["close_date is before created_date"]
    assert (before.file, before.column, before.rows) == ("opportunities.csv", "close_date", (2,))
    undated = problems["closed (won or lost) opportunities without close_date"]
    assert undated.rows == (3,)  # the open O3 needs no close date


def test_duplicate_ids_list_every_occurrence(write_export, problems_of):
    folder = write_export(
        {
            "accounts.csv": "account_id,account_name\nA1,Acme\nA2,Beta\nA1,Acme again\nA3,Gamma\n",
            "opportunities.csv": opportunities(
                "O1,A1,2024-01-05,2024-02-10,won,1,Core",
                "O1,A2,2024-01-05,2024-02-10,lost,1,Core",
                "O2,A3,2024-01-05,2024-02-10,lost,1,Core",
            ),
        }
    )
    problems = {p.file: p for p in problems_of(folder) if "duplicate" in p.message}
    assert problems["accounts.csv"].rows == (2, 4) and "'A1'" in problems["accounts.csv"].message
    assert problems["opportunities.csv"].column == "opportunity_id"
    assert problems["opportunities.csv"].rows == (2, 3)


def test_negative_and_non_numeric_amounts(write_export, problems_of):
    folder = write_export(
        {
            "opportunities.csv": opportunities(
                "O1,A1,2024-01-05,2024-02-10,won,-5,Core",
                "O2,A1,2024-01-05,2024-02-10,won,about 1200,Core",
            )
        }
    )
    problems = problems_of(folder)
    negative = next(p for p in problems if "values below 0" in p.message)
    assert (negative.column, negative.rows) == ("amount", (2,)) and "at least 0" in negative.fix
    text = next(p for p in problems if "not numbers" in p.message)
    assert (text.column, text.rows) == ("amount", (3,)) and "'about 1200'" in text.message


def test_unknown_outcome_values_are_listed_with_the_mapping_fix(write_export, problems_of):
    folder = write_export(
        {
            "opportunities.csv": opportunities(
                "O1,A1,2024-01-05,2024-02-10,Closed Won,1,Core",
                "O2,A1,2024-01-05,2024-02-10,won,1,Core",
                "O3,A2,2024-01-05,2024-02-10,Closed Won,1,Core",
                "O4,A2,2024-01-05,,Negotiation,,Core",
            )
        }
    )
    [problem] = problems_of(folder)
    assert (problem.column, problem.rows) == ("outcome", (2, 4, 5))
    assert "'Closed Won' (2)" in problem.message and "'Negotiation' (1)" in problem.message
    assert "values:" in problem.fix and "Closed Won" in problem.fix


def test_opportunities_for_unknown_accounts_are_errors(write_export, problems_of):
    folder = write_export(
        {
            "opportunities.csv": opportunities(
                "O1,A1,2024-01-05,2024-02-10,won,1,Core",
                "O2,ZZ,2024-01-05,2024-02-10,won,1,Core",
            )
        }
    )
    [problem] = problems_of(folder)
    assert (problem.column, problem.rows, problem.severity) == ("account_id", (3,), "error")
    assert "'ZZ'" in problem.message
    assert validate_cli(folder).exit_code == 2


def test_closed_opportunity_without_account_is_an_error(write_export, problems_of):
    folder = write_export({"opportunities.csv": opportunities("O1,,2024-01-05,2024-02-10,won,1,Core")})
    [problem] = problems_of(folder)
    assert (problem.column, problem.rows, problem.message) == ("account_id", (2,), "account_id is empty")


def test_open_opportunities_without_account_or_created_date_are_dropped_with_warnings(write_export):
    loaded = load_export(
        write_export(
            {
                "opportunities.csv": opportunities(
                    "O1,A1,2024-01-05,2024-02-10,won,1,Core",
                    "O2,,2024-01-05,,open,,Core",
                    "O3,A2,,,open,,Core",
                    "O4,,,,open,,Core",
                )
            }
        )
    )
    assert list(loaded.data.opportunities["opportunity_id"]) == ["O1"]
    assert loaded.summary["dropped_rows"] == {"opportunities": 3}
    dropped = {w.column: w.rows for w in loaded.warnings if "are dropped" in w.message}
    assert dropped == {"account_id": (3, 5), "created_date": (4,)}


def test_empty_required_table_is_an_error_empty_optional_table_a_warning(write_export, problems_of):
    folder = write_export(
        {"accounts.csv": "account_id,account_name\n", "engagement.csv": "account_id,timestamp,channel\n"}
    )
    problems = problems_of(folder, severity=None)
    empty = {p.file: p.severity for p in problems if "no data rows" in p.message}
    assert empty == {"accounts.csv": "error", "engagement.csv": "warning"}


def test_intent_score_and_engagement_count_ranges(write_export, problems_of):
    problems = problems_of(
        write_export(
            {
                "intent.csv": "account_id,date,topic,score\nA1,2024-01-03,crm,80\nA1,2024-01-04,crm,140\n",
                "engagement.csv": "account_id,timestamp,channel,count\nA1,2024-01-01,web_visit,-2\n",
            }
        )
    )
    ranges = {p.file: p for p in problems if p.column in ("score", "count")}
    assert (ranges["intent.csv"].column, ranges["intent.csv"].rows) == ("score", (3,))
    assert "values outside 0 to 100 (e.g. '140')" in ranges["intent.csv"].message
    assert "values outside 0 to 1,000,000 (e.g. '-2')" in ranges["engagement.csv"].message
    assert (ranges["engagement.csv"].column, ranges["engagement.csv"].rows) == ("count", (2,))


def test_unknown_channels_are_kept_and_counted(write_export):
    loaded = load_export(
        write_export(
            {
                "engagement.csv": (
                    "account_id,timestamp,channel\n"
                    "A1,2024-01-01,web_visit\nA1,2024-01-02,webinar\nA2,2024-01-03,webinar\nA2,2024-01-03,podcast\n"
                )
            }
        )
    )
    assert loaded.summary["unknown_channels"] == {"webinar": 2, "podcast": 1}
    assert list(loaded.data.engagement["count"]) == [1.0] * 4  # default count
    [warning] = [w for w in loaded.warnings if w.column == "channel"]
    assert warning.rows == (3, 4, 5) and "'webinar' (2)" in warning.message


def test_engagement_for_unknown_accounts_is_a_warning(write_export):
    engagement = "account_id,timestamp,channel\nA1,2024-01-01,web_visit\nZZ,2024-01-02,web_visit\n"
    loaded = load_export(write_export({"engagement.csv": engagement}))
    [warning] = [w for w in loaded.warnings if w.file == "engagement.csv"]
    assert (warning.column, warning.rows) == ("account_id", (3,))


def test_every_problem_is_reported_at_once(write_export, problems_of):
    folder = write_export(
        {
            "accounts.csv": "account_id,employees\nA1,many\nA2,10\nA3,5\n",
            "opportunities.csv": opportunities(
                "O1,A1,2024-01-05,2024-02-10,won,-1,Core", "O2,A2,bad,2024-02-10,lost,1,Core"
            ),
            "intent.csv": "account_id,date,topic,score\nA1,2024-01-03,crm,101\n",
        }
    )
    where = {(p.file, p.column) for p in problems_of(folder) if p.severity == "error"}
    assert where == {
        ("accounts.csv", "employees"),
        ("opportunities.csv", "amount"),
        ("opportunities.csv", "created_date"),
        ("intent.csv", "score"),
    }
    result = validate_cli(folder)
    assert result.exit_code == 2 and "4 problems stop this run (and 1 warning):" in result.output
    assert "Traceback" not in result.output
