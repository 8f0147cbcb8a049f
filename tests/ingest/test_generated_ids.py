"""Generated opportunity ids: a row without an opportunity_id gets `gen-` and the first 16 hex
digits of the SHA-256 of its other values, by column name in name order, as documented. The oracle below
is that recipe written out independently of the product's code."""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

from cli.main import app
from features.errors import DataError
from ingest.io import load_export


def documented_id(**values: str) -> str:
    text = "\x1e".join(f"{name}\x1f{values[name]}" for name in sorted(values))
    return "gen-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


WITHOUT_ID_COLUMN = """\
account_id,created_date,close_date,outcome,amount
A1,2024-01-05,2024-02-10,won,100
A1,2024-01-05,2024-03-10,lost,0
A2,2024-01-06,,open,
"""
EXPECTED = [
    documented_id(account_id="A1", created_date="2024-01-05", close_date="2024-02-10", outcome="won", amount="100"),
    documented_id(account_id="A1", created_date="2024-01-05", close_date="2024-03-10", outcome="lost", amount="0"),
    documented_id(account_id="A2", created_date="2024-01-06", close_date="", outcome="open", amount=""),
]


def test_an_export_without_an_id_column_gets_the_documented_ids(write_export):
    loaded = load_export(write_export({"opportunities.csv": WITHOUT_ID_COLUMN}))
    assert list(loaded.data.opportunities["opportunity_id"]) == EXPECTED
    assert loaded.summary["generated_ids"] == 3
    [warning] = [w for w in loaded.warnings if w.column == "opportunity_id"]
    assert (
        warning.rows == (2, 3, 4)
        and "3 opportunities without an opportunity_id were given a stable id" in warning.message
    )


def test_only_empty_ids_are_generated_and_an_empty_id_column_gives_the_same_ids(write_export):
    with_some = (
        "opportunity_id,"
        + WITHOUT_ID_COLUMN.splitlines()[0]
        + "\n"
        + "O1,A1,2024-01-05,2024-02-10,won,100\n"
        + ",A1,2024-01-05,2024-03-10,lost,0\n"
        + " ,A2,2024-01-06,,open,\n"
    )  # a blank cell is an empty id
    data = load_export(write_export({"opportunities.csv": with_some})).data
    assert list(data.opportunities["opportunity_id"]) == ["O1", EXPECTED[1], EXPECTED[2]]


def test_ids_do_not_depend_on_row_or_column_order_or_on_the_run(write_export):
    lines = WITHOUT_ID_COLUMN.splitlines()
    reordered_rows = "\n".join([lines[0], lines[3], lines[1], lines[2]]) + "\n"
    columns = [line.split(",") for line in lines]
    order = [4, 2, 0, 3, 1]
    reordered_columns = "\n".join(",".join(row[i] for i in order) for row in columns) + "\n"
    first = load_export(write_export({"opportunities.csv": WITHOUT_ID_COLUMN}, folder="a")).data
    again = load_export(write_export({"opportunities.csv": WITHOUT_ID_COLUMN}, folder="a")).data
    rows = load_export(write_export({"opportunities.csv": reordered_rows}, folder="b")).data
    cols = load_export(write_export({"opportunities.csv": reordered_columns}, folder="c")).data
    assert list(again.opportunities["opportunity_id"]) == EXPECTED
    assert list(rows.opportunities["opportunity_id"]) == [EXPECTED[2], EXPECTED[0], EXPECTED[1]]
    assert list(cols.opportunities["opportunity_id"]) == EXPECTED
    assert list(first.opportunities["opportunity_id"]) == EXPECTED


def test_mapped_headers_hash_under_their_canonical_names(write_export, tmp_path):
    renamed = WITHOUT_ID_COLUMN.replace("account_id,created_date", "Account,Created")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("opportunities:\n  columns: {account_id: Account, created_date: Created}\n")
    data = load_export(write_export({"opportunities.csv": renamed}), mapping).data
    assert list(data.opportunities["opportunity_id"]) == EXPECTED


def test_two_rows_alike_in_every_value_are_duplicates(write_export):
    twice = WITHOUT_ID_COLUMN + "A1,2024-01-05,2024-02-10,won,100\n"
    folder = write_export({"opportunities.csv": twice})
    with pytest.raises(DataError) as raised:
        load_export(folder)
    [duplicate] = [p for p in raised.value.problems if "duplicate" in p.message]
    assert duplicate.rows == (2, 5)
    kept = load_export(folder, invalid_rows="drop")
    assert list(kept.data.opportunities["opportunity_id"]) == EXPECTED
    assert list(kept.rejected["row"]) == [5]


def test_validate_says_how_many_ids_it_made(write_export):
    result = CliRunner().invoke(app, ["validate", str(write_export({"opportunities.csv": WITHOUT_ID_COLUMN}))])
    assert result.exit_code == 0, result.output
    assert "Opportunity ids generated (rows without one): 3" in result.output
    assert "were given a stable id made from the row" in " ".join(result.output.split())
