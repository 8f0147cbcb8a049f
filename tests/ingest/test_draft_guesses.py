"""`tiering init` on exports as real CRMs write them: a bookings export with one deal per row and no account
column, CRM-formatted numbers and a `Booking Date Date`, validated from the draft with nothing edited; ids that
look like ids; close dates that come after their creation."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from features.errors import DataError
from ingest.draft import draft_mapping
from ingest.io import load_export
from ingest.mapping import load_mapping

runner = CliRunner()
HEADER = [
    "Created Date",
    "Booking Date Date",
    "Stage",
    "Total ARR",
    "Number of Employees",
    "Industry",
    "Is Customer (Yes / No)",
]
# The first rows by hand, with the values they must load as: (row, amount, employees).
FIRST_ROWS = [
    (["01/15/2025", "02/20/2025", "Closed Won", "$102K", "10,001", "Software", "Yes"], 102_000.0, 10_001.0),
    (["01/17/2025", "03/02/2025", "Closed Lost", "$0.00", "250", "Retail", "No"], 0.0, 250.0),
    (["02/03/2025", "04/30/2025", "Closed Won", "$1,234.56", "1,500", "Health", "Yes"], 1234.56, 1500.0),
]
AMOUNTS = ["$102K", "$0.00", "$1,234.56", "$45K", "$1.2M", "$8,500.00"]
HEAD_COUNTS = ["10,001", "250", "1,500", "45", "5,000"]


def bookings(folder: Path, rows: int = 60, deal_names: bool = False) -> Path:
    """A 12-month bookings export: one closed deal per row, no account column, US dates, CRM-formatted numbers."""
    folder.mkdir(parents=True)
    with (folder / "bookings.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow((["Opportunity Name"] if deal_names else []) + HEADER)
        for index in range(rows):
            if index < len(FIRST_ROWS):
                values = FIRST_ROWS[index][0]
            else:
                created = date(2025, 1, 1) + timedelta(days=(index * 37) % 300)
                booked = created + timedelta(days=10 + (index * 13) % 100)
                values = [
                    created.strftime("%m/%d/%Y"),
                    booked.strftime("%m/%d/%Y"),
                    "Closed Won" if index % 3 else "Closed Lost",
                    AMOUNTS[index % len(AMOUNTS)],
                    HEAD_COUNTS[index % len(HEAD_COUNTS)],
                    ("Software", "Retail", "Health")[index % 3],
                    ("Yes", "No")[index % 2],
                ]
            writer.writerow(([f"Deal {index:04d}"] if deal_names else []) + values)
    return folder


@pytest.mark.parametrize("deal_names", [False, True], ids=["no-id-column", "deal-name-column"])
def test_a_bookings_export_without_an_account_column_validates_from_the_unedited_draft(tmp_path, deal_names):
    folder = bookings(tmp_path / "export", deal_names=deal_names)
    draft = tmp_path / "mapping.yaml"
    result = runner.invoke(app, ["init", str(folder), "--out", str(draft)], terminal_width=300)
    assert result.exit_code == 0, result.output
    validated = runner.invoke(app, ["validate", str(folder), "--mapping", str(draft)], terminal_width=300)
    assert validated.exit_code == 0, validated.output
    assert "The export is valid." in validated.output
    assert "(each opportunity is its own account)" in validated.output
    assert "opportunities.amount (Total ARR): read as currency ($) with thousands separators and K/M" in (
        validated.output
    )

    document = yaml.safe_load(draft.read_text(encoding="utf-8"))
    opportunities, accounts = document["opportunities"]["columns"], document["accounts"]
    assert opportunities["close_date"] == "Booking Date Date"
    assert opportunities["created_date"] == "Created Date"
    assert opportunities["amount"] == "Total ARR"
    assert "account_id" not in opportunities  # never the Yes/No flag
    assert accounts["one_per_opportunity"] is True and accounts["columns"]["employees"] == "Number of Employees"
    assert "each opportunity is its own account" in draft.read_text(encoding="utf-8")

    data = load_export(folder, draft).data
    assert len(data.accounts) == len(data.opportunities) == 60  # one account per deal
    assert (data.opportunities["account_id"] == data.opportunities["opportunity_id"]).all()
    first = data.opportunities.head(3)
    assert first["amount"].tolist() == [amount for _, amount, _ in FIRST_ROWS]
    assert first["close_date"].dt.strftime("%Y-%m-%d").tolist() == ["2025-02-20", "2025-03-02", "2025-04-30"]
    employees = data.accounts.set_index("account_id")["employees"]
    assert employees[first["account_id"]].tolist() == [count for _, _, count in FIRST_ROWS]


def test_a_yes_no_flag_is_never_the_account_even_when_its_header_names_customers(tmp_path):
    folder = tmp_path / "flags"
    folder.mkdir()
    lines = ["Deal,Customer Account (Yes/No),Client,Created,Closed,Stage"]
    for index in range(40):
        lines.append(
            f"D{index},{('Yes', 'No')[index % 2]},C{index % 12},2025-01-{1 + index % 28:02d},"
            f"2025-03-{1 + index % 28:02d},{('Won', 'Lost')[index % 2]}"
        )
    (folder / "deals.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    draft = draft_mapping(folder)
    text = draft.render()
    assert 'account_id: "Client"' in text and "Customer Account" not in text.split("# not mapped")[0]


def test_a_close_date_comes_after_the_creation_date(tmp_path):
    folder = tmp_path / "dates"
    folder.mkdir()
    lines = ["Deal ID,Account,Created Date,Close Date,Booking Date,Stage"]
    for index in range(30):
        created = date(2025, 3, 1) + timedelta(days=index)
        # "Close Date" holds the previous contract's close, before the deal was created; the booking follows it.
        lines.append(
            f"D{index},A{index % 7},{created},{created - timedelta(days=200)},{created + timedelta(days=40)},"
            f"{('Won', 'Lost')[index % 2]}"
        )
    (folder / "deals.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    document = yaml.safe_load(draft_mapping(folder).render())
    assert document["opportunities"]["columns"]["close_date"] == "Booking Date"


def test_one_account_per_opportunity_cannot_also_map_an_account_column(tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "accounts: {from_opportunities: true, one_per_opportunity: true}\n"
        "opportunities: {columns: {account_id: Company}}\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="remove account_id from opportunities.columns"):
        load_mapping(mapping)
    mapping.write_text("accounts: {one_per_opportunity: true}\n", encoding="utf-8")
    with pytest.raises(DataError, match="with from_opportunities: true"):
        load_mapping(mapping)


def test_an_id_filled_on_a_few_rows_is_not_the_opportunity_id(tmp_path):
    folder = tmp_path / "leads"
    folder.mkdir()
    lines = ["Lead Id,Converted Opportunity Id,Company,Created,Closed,Stage"]
    for index in range(40):
        converted = f"OPP{index}" if index % 10 == 0 else ""  # one lead in ten became an opportunity
        lines.append(f"L{index},{converted},C{index % 15},2025-01-{1 + index % 28:02d},2025-03-01,Won")
    (folder / "leads.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    document = yaml.safe_load(draft_mapping(folder).render())
    assert document["opportunities"]["columns"]["opportunity_id"] == "Lead Id"
