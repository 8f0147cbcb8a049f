"""Numbers as spreadsheets and CRMs write them: every format read to a hand-written value, and said by `validate`."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.errors import DataError
from ingest.io import load_export
from ingest.mapping import load_mapping
from ingest.numbers import parse_numbers

# (text, value) written by hand.
DECIMAL_POINT_VALUES = [
    ("1234.5", 1234.5),
    ("-3", -3.0),
    ("1e6", 1_000_000.0),
    ("10,001", 10_001.0),
    ("1,234,567.891", 1_234_567.891),
    ("1 234 567", 1_234_567.0),
    ("1'234.50", 1234.5),
    ("$1,234.56", 1234.56),
    ("USD 1,234", 1234.0),
    ("1,234 EUR", 1234.0),
    ("€ 12", 12.0),
    ("£7.5", 7.5),
    ("$102K", 102_000.0),
    ("1.1K", 1100.0),
    ("$1.5M", 1_500_000.0),
    ("2.25MM", 2_250_000.0),
    ("3B", 3_000_000_000.0),
    ("(1,234.50)", -1234.5),
    ("($12)", -12.0),
    ("-$5", -5.0),
    ("$-5", -5.0),
    ("−7", -7.0),
    ("12-", -12.0),
    ("$0.00", 0.0),
    (".5", 0.5),
    ("  42  ", 42.0),
    ("1\u00a0234.5", 1234.5),
]
DECIMAL_COMMA_VALUES = [
    ("1.234,5", 1234.5),
    ("12,5", 12.5),
    ("1.234.567", 1_234_567.0),
    ("1 234,75 €", 1234.75),
    ("EUR 3,2K", 3200.0),
    ("(1.000,50)", -1000.5),
    ("7", 7.0),
]
NOT_NUMBERS = ["about 1200", "12 apples", "TBD", "1.2.3,4,5", "$", "K", "--5", "(-5)", "$5 €", "1,23,4", "nan", "inf"]


def values(texts: list[str], convention=None, file_votes=None) -> list[float]:
    parsed, _ = parse_numbers(pd.Series(texts, dtype="str"), convention, file_votes)
    return parsed.tolist()


@pytest.mark.parametrize(("text", "expected"), DECIMAL_POINT_VALUES)
def test_every_decimal_point_format_reads_to_its_value(text, expected):
    # Beside a value only a decimal point reads, so the column is decided whatever this value is.
    assert values([text, "0.25"])[0] == expected


@pytest.mark.parametrize(("text", "expected"), DECIMAL_COMMA_VALUES)
def test_every_decimal_comma_format_reads_to_its_value(text, expected):
    assert values([text, "0,25"])[0] == expected


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_what_is_not_a_number_is_refused(text):
    assert math.isnan(values([text, "1"])[0])


def test_a_column_decides_its_decimal_mark_from_the_values_that_read_one_way():
    assert values(["1,234", "12,5"]) == [1.234, 12.5]  # 12,5 is only a decimal comma: 1,234 follows
    assert values(["1,234", "12.5"]) == [1234.0, 12.5]
    # A column that cannot tell follows the table's other columns, and the mapping wins over both.
    assert values(["1.500", "2.000"], file_votes={"decimal_point": 0, "decimal_comma": 3}) == [1500.0, 2000.0]
    assert values(["1,234", "2"], convention="decimal_comma") == [1.234, 2.0]
    assert values(["1.500"], convention="decimal_comma") == [1500.0]  # not the fast path's plain 1.5
    assert math.isnan(values(["1,234.5"], convention="decimal_comma")[0])


def test_the_reading_says_what_the_values_carried():
    _, reading = parse_numbers(pd.Series(["$102K", "$1,234.56", "(5)"], dtype="str"))
    assert reading.describe() == "currency ($) with thousands separators, K/M suffixes and parentheses for negatives"
    assert reading.values == 3
    _, plain = parse_numbers(pd.Series(["1", "2.5", None], dtype="str"))
    assert (plain.describe(), plain.values) == ("plain numbers", 2)
    _, comma = parse_numbers(pd.Series(["1.234,5"], dtype="str"))
    assert comma.describe() == "numbers with thousands separators and a decimal comma"


def write(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


CRM_EXPORT = {
    "accounts.csv": 'account_id,employees,annual_revenue\nA1,"10,001",$1.2M\nA2,250,$980K\n',
    "opportunities.csv": (
        "opportunity_id,account_id,created_date,close_date,outcome,amount,credit\n"
        'O1,A1,2024-01-05,2024-02-10,won,$102K,"(1,234.50)"\n'
        'O2,A1,2024-02-01,2024-03-15,lost,"$1,234.56",0\n'
        'O3,A2,2024-03-01,,open,$0.00,"1,000"\n'
    ),
}
DECIMAL_COMMA_EXPORT = {
    "accounts.csv": "account_id;employees;annual_revenue\nA1;1.500;2.500.000,75\nA2;40;980,5\n",
    "opportunities.csv": (
        "opportunity_id;account_id;created_date;close_date;outcome;amount\n"
        "O1;A1;2024-01-05;2024-02-10;won;1.234,5\n"
        "O2;A2;2024-02-01;2024-03-15;lost;12,5\n"
    ),
}


def test_a_crm_export_reads_currency_suffixes_separators_and_parentheses(tmp_path):
    files = dict(CRM_EXPORT)
    files["accounts.csv"] = files["accounts.csv"].replace("annual_revenue\n", "annual_revenue,call_length\n")
    files["accounts.csv"] = files["accounts.csv"].replace("$1.2M\n", "$1.2M,5m\n").replace("$980K\n", "$980K,12m\n")
    data = load_export(write(tmp_path / "crm", files)).data
    # A column nobody named numeric is read as numbers only without a bare K/M suffix: 5m may be 5 minutes.
    assert data.accounts["call_length"].tolist() == ["5m", "12m"]
    assert data.accounts["employees"].tolist() == [10_001.0, 250.0]
    assert data.accounts["annual_revenue"].tolist() == [1_200_000.0, 980_000.0]
    assert data.opportunities["amount"].tolist() == [102_000.0, 1234.56, 0.0]
    assert data.opportunities["credit"].tolist() == [-1234.5, 0.0, 1000.0]


def test_a_decimal_comma_file_reads_with_its_comma(tmp_path):
    data = load_export(write(tmp_path / "comma", DECIMAL_COMMA_EXPORT)).data
    assert data.opportunities["amount"].tolist() == [1234.5, 12.5]
    assert data.accounts["annual_revenue"].tolist() == [2_500_000.75, 980.5]
    assert data.accounts["employees"].tolist() == [1500.0, 40.0]  # 1.500 follows its table's decimal comma


def test_validate_says_how_each_number_column_was_read(tmp_path):
    crm = CliRunner().invoke(app, ["validate", str(write(tmp_path / "crm", CRM_EXPORT))], terminal_width=300)
    assert crm.exit_code == 0, crm.output
    assert "opportunities.amount: read as currency ($) with thousands separators and K/M suffixes (3 values)" in (
        crm.output
    )
    assert "accounts.employees: read as numbers with thousands separators (2 values" in crm.output
    assert "opportunities.credit: read as numbers with thousands separators and parentheses for negatives" in (
        crm.output
    )
    comma = CliRunner().invoke(
        app, ["validate", str(write(tmp_path / "comma", DECIMAL_COMMA_EXPORT))], terminal_width=300
    )
    assert comma.exit_code == 0, comma.output
    assert "opportunities.amount: read as numbers with thousands separators and a decimal comma (2 values)" in (
        comma.output
    )


def test_a_value_that_is_not_a_number_is_named_with_its_file_column_and_row(tmp_path, problems_of):
    files = dict(CRM_EXPORT)
    files["opportunities.csv"] = files["opportunities.csv"].replace("$0.00", "12 apples")
    problem = next(p for p in problems_of(write(tmp_path / "bad", files)) if "not numbers" in p.message)
    assert (problem.file, problem.column, problem.rows) == ("opportunities.csv", "amount", (4,))
    assert "'12 apples'" in problem.message and "number_format" in problem.fix


def test_the_mapping_says_which_mark_a_column_uses_when_its_values_cannot(tmp_path):
    files = {
        "accounts.csv": "account_id,employees\nA1,1.500\nA2,2.000\n",
        "opportunities.csv": CRM_EXPORT["opportunities.csv"].replace("$102K", "5").replace('"$1,234.56"', "6"),
    }
    folder = write(tmp_path / "either", files)
    loaded = load_export(folder)
    assert loaded.data.accounts["employees"].tolist() == [1.5, 2.0]  # plain numbers: the decimal point
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("accounts:\n  number_format: {employees: decimal_comma}\n", encoding="utf-8")
    assert load_export(folder, mapping).data.accounts["employees"].tolist() == [1500.0, 2000.0]


def test_a_column_of_thousands_that_nothing_decides_is_warned(tmp_path):
    files = {"accounts.csv": 'account_id,employees\nA1,"1,500"\nA2,"2,000"\n'}
    files["opportunities.csv"] = (
        "opportunity_id,account_id,created_date,close_date,outcome,amount\n"
        "O1,A1,2024-01-05,2024-02-10,won,5\nO2,A2,2024-02-01,2024-03-15,lost,6\n"
    )
    loaded = load_export(write(tmp_path / "thousands", files))
    assert loaded.data.accounts["employees"].tolist() == [1500.0, 2000.0]
    warning = next(p for p in loaded.warnings if "thousands separators" in p.message)
    assert warning.column == "employees" and "'1,500'" in warning.message and "decimal_comma" in warning.fix


def test_the_mapping_key_is_typed(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("opportunities:\n  number_format: decimal_comma\n", encoding="utf-8")
    assert load_mapping(good).opportunities.number_format == "decimal_comma"
    for text, expected in (
        ("opportunities:\n  number_format: comma\n", "'comma' is not a number format; use decimal_point or"),
        ("opportunities:\n  number_format: {amount: dot}\n", "amount: 'dot' is not a number format"),
        ("opportunities:\n  numbr_format: decimal_comma\n", "did you mean 'number_format'"),
        ("opportunities:\n  number_format: {product: decimal_comma}\n", "'product' is not a number column"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(DataError) as raised:
            load_mapping(bad)
        assert expected in str(raised.value) and len(raised.value.problems) == 1, str(raised.value)
