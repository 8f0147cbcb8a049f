"""Import: file discovery, CSV and Parquet reading, encodings, delimiters and broken files."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.schema import TABLES, columns
from ingest.io import load_export

ACCOUNTS_HEADER = "account_id,account_name,industry,employees,annual_revenue,country\n"


def as_parquet(folder, table, dates=()):
    """Rewrite <table>.csv as <table>.parquet with real types (integers, timestamps), as tools write them."""
    frame = pd.read_csv(folder / f"{table}.csv", parse_dates=list(dates))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"{table}.parquet")
    (folder / f"{table}.csv").unlink()


def test_parquet_and_csv_give_the_same_tables(write_export):
    from_csv = load_export(write_export(folder="csv")).data
    folder = write_export(folder="parquet")
    for table in TABLES:
        as_parquet(folder, table, [c for c, kind in columns(table).items() if kind == "date" and c != "close_date"])
    from_parquet = load_export(folder).data
    for table in TABLES:
        pd.testing.assert_frame_equal(from_csv.table(table), from_parquet.table(table), check_exact=False)


def test_parquet_integer_ids_become_text(write_export):
    folder = write_export(
        {
            "accounts.csv": "account_id,account_name\n101,Acme\n102,Beta\n",
            "opportunities.csv": "opportunity_id,account_id,created_date,close_date,outcome\n"
            "7,101,2024-01-01,2024-02-01,won\n",
            "engagement.csv": None,
            "intent.csv": None,
        }
    )
    as_parquet(folder, "accounts")
    as_parquet(folder, "opportunities")
    data = load_export(folder).data
    assert list(data.accounts["account_id"]) == ["101", "102"]
    assert list(data.opportunities["opportunity_id"]) == ["7"]


def test_missing_required_file(write_export, problems_of):
    folder = write_export({"opportunities.csv": None})
    [problem] = problems_of(folder)
    assert problem.file == str(folder)
    assert (
        "required opportunities table not found: no file matches opportunities.csv or opportunities.parquet"
        in problem.message
    )
    assert "accounts.csv" in problem.fix  # lists what is there
    result = CliRunner().invoke(app, ["validate", str(folder)])
    assert result.exit_code == 2 and "required opportunities table not found" in result.output


def test_absent_engagement_and_intent_are_empty_tables_with_a_warning(write_export):
    loaded = load_export(write_export({"engagement.csv": None, "intent.csv": None}))
    assert loaded.data.present == frozenset({"accounts", "opportunities"})
    assert loaded.data.engagement.empty and list(loaded.data.engagement.columns) == list(columns("engagement"))
    assert loaded.summary["absent_tables"] == ["engagement", "intent"]
    messages = [w.message for w in loaded.warnings]
    assert (
        "no engagement table: the engagement score is 0 for every account "
        "(no file matches engagement.csv or engagement.parquet)"
    ) in messages
    assert any("no intent table" in m for m in messages)


def test_both_csv_and_parquet_for_one_table_is_an_error(write_export, problems_of):
    folder = write_export()
    (folder / "intent.parquet").write_bytes(b"")
    [problem] = problems_of(folder)
    assert "both intent.csv and intent.parquet exist" in problem.message


def test_missing_data_folder(tmp_path, problems_of):
    [problem] = problems_of(tmp_path / "nowhere")
    assert problem.message == "data folder not found" and problem.file.endswith("nowhere")


def test_truncated_parquet_names_the_file_without_traceback(write_export, problems_of):
    folder = write_export()
    as_parquet(folder, "engagement")
    whole = (folder / "engagement.parquet").read_bytes()
    (folder / "engagement.parquet").write_bytes(whole[: len(whole) // 2])
    [problem] = problems_of(folder)
    assert problem.file == "engagement.parquet" and "cannot be read as Parquet" in problem.message
    assert "truncated or corrupt" in problem.fix
    result = CliRunner().invoke(app, ["validate", str(folder)])
    assert result.exit_code == 2
    assert "engagement.parquet: cannot be read as Parquet" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_delimiters_are_detected(write_export, delimiter):
    rows = [
        ["account_id", "account_name", "employees"],
        ["A1", "Acme, Inc.", "500"],
        ["A2", "Beta", ""],
        ["A3", "Gamma", ""],
    ]
    folder = write_export({"accounts.csv": "".join(delimiter.join(row) + "\n" for row in rows)})
    accounts = load_export(folder).data.accounts
    assert list(accounts["account_name"]) == ["Acme, Inc.", "Beta", "Gamma"]
    assert accounts["employees"].iloc[0] == 500.0


def test_unrecognised_delimiter_says_so(write_export, problems_of):
    [problem] = problems_of(write_export({"accounts.csv": '"account_id,account_name"\n"A1,Acme"\n'}))
    assert problem.file == "accounts.csv"
    assert "one column named 'account_id,account_name'" in problem.message and "delimiter" in problem.message


def test_latin1_file_is_read_with_a_warning(write_export):
    rows = "A1,Société Générale,banking,,,France\nA2,Müller AG,,,,Germany\nA3,Gamma,,,,\n"
    latin1 = (ACCOUNTS_HEADER + rows).encode("latin-1")
    loaded = load_export(write_export({"accounts.csv": latin1}))
    assert list(loaded.data.accounts["account_name"][:2]) == ["Société Générale", "Müller AG"]
    [warning] = [w for w in loaded.warnings if w.file == "accounts.csv" and "UTF-8" in w.message]
    assert "read as cp1252" in warning.message


def test_utf8_bom_is_ignored(write_export):
    bom = ("\ufeff" + ACCOUNTS_HEADER + "A1,Acme,,,,\nA2,Beta,,,,\nA3,Café,,,,\n").encode("utf-8")
    loaded = load_export(write_export({"accounts.csv": bom}))
    assert list(loaded.data.accounts["account_id"]) == ["A1", "A2", "A3"]
    assert loaded.data.accounts["account_name"].iloc[2] == "Café"
    assert not [w for w in loaded.warnings if "UTF-8" in w.message]


def test_duplicate_headers_are_named(write_export, problems_of):
    [problem] = problems_of(write_export({"accounts.csv": "account_id,industry,Industry ,industry\nA1,a,b,c\n"}))
    assert (problem.file, problem.column) == ("accounts.csv", "industry")
    assert "the header 'industry' appears 2 times" in problem.message


def test_rows_with_extra_fields_are_numbered(write_export, problems_of):
    [problem] = problems_of(write_export({"accounts.csv": "account_id,account_name\nA1,Acme\nA2,Beta,Inc\nA3,Gamma\n"}))
    assert problem.file == "accounts.csv" and problem.rows == (3,)
    assert "different number of fields than the header's 2" in problem.message


def test_very_long_text_and_formulas_are_kept_as_text(write_export, monkeypatch):
    monkeypatch.setattr("ingest.io.CSV_BLOCK_SIZE", 1 << 20)  # a small block, so the long value straddles blocks
    long_name = "x" * (3 << 20)
    formula = '=HYPERLINK("http://evil.example","click")'
    quoted_formula = '"=HYPERLINK(""http://evil.example"",""click"")"'
    folder = write_export(
        {
            "accounts.csv": (
                "account_id,account_name,notes\n"
                f"A1,{long_name},plain\n"
                f'A2,{quoted_formula},"+1 line\nsecond line"\n'
                "A3,@SUM(A1),-2+3\n"
            )
        }
    )
    accounts = load_export(folder).data.accounts
    assert len(accounts["account_name"].iloc[0]) == len(long_name)
    assert accounts["account_name"].iloc[1] == formula
    assert accounts["notes"].iloc[1] == "+1 line\nsecond line"
    assert list(accounts["notes"]) == ["plain", "+1 line\nsecond line", "-2+3"]


def test_unsupported_file_type(write_export, tmp_path, problems_of):
    folder = write_export()
    (folder / "accounts.xlsx").write_bytes(b"PK")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("accounts:\n  file: accounts.xlsx\n")
    [problem] = problems_of(folder, mapping)
    assert problem.file == "accounts.xlsx" and "unsupported file type '.xlsx'" in problem.message


def test_glob_reads_every_matching_file_and_numbers_rows_per_file(write_export, tmp_path, problems_of):
    folder = write_export(
        {
            "engagement.csv": None,
            "engagement/part-1.csv": "account_id,timestamp,channel,count\nA1,2024-01-01,web_visit,1\n",
            "engagement/part-2.csv": "account_id,timestamp,channel,count\n"
            "A2,2024-01-01,web_visit,1\nA2,2024-01-02,web_visit,-4\n",
        }
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("engagement:\n  file: engagement/part-*.csv\n")
    [problem] = problems_of(folder, mapping)
    assert (problem.file, problem.column, problem.rows) == ("engagement/part-2.csv", "count", (3,))
    (folder / "engagement/part-2.csv").write_text("account_id,timestamp,channel\nA2,2024-01-01,web_visit\n")
    loaded = load_export(folder, mapping)
    assert loaded.summary["rows"]["engagement"] == 2
    assert [path.name for path in loaded.files["engagement"]] == ["part-1.csv", "part-2.csv"]
