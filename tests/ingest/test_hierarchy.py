"""Bad account hierarchies said out loud: a cycle, an unknown parent, a self-parent and a chain too deep are named
by row with their fix; with --invalid-rows drop the link goes (the account keeps its row and stands alone) and is
listed in rejected_rows.csv. Rows are numbered as a spreadsheet shows them (the header is row 1)."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from cli.main import app
from features.errors import DataError
from features.families import MAX_DEPTH
from ingest.io import load_export
from ingest.repair import REJECTED_FILE

runner = CliRunner()

# Row 2 P heads a clean family (C1, C2 and the grandchild G); X<->Y is a cycle; S is its own parent; U's parent
# does not exist; a chain D0 <- D1 <- ... one link deeper than the bound.
CHAIN = [f"D{i}" for i in range(MAX_DEPTH + 2)]
ACCOUNTS = "account_id,parent_account_id\nP,\nC1,P\nC2,P\nG,C1\nX,Y\nY,X\nS,S\nU,NOPE\n" + "".join(
    f"{name},{CHAIN[i - 1] if i else ''}\n" for i, name in enumerate(CHAIN)
)
ROW = {name: i + 2 for i, name in enumerate(line.split(",")[0] for line in ACCOUNTS.splitlines()[1:])}
OPPORTUNITIES = "opportunity_id,account_id,created_date,close_date,outcome,amount\nO1,P,2024-01-05,2024-02-10,won,100\n"


@pytest.fixture(autouse=True)
def in_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tangled(write_export):
    return write_export({"accounts.csv": ACCOUNTS, "opportunities.csv": OPPORTUNITIES})


def test_validate_names_each_bad_link_by_row_with_its_fix(tangled):
    with pytest.raises(DataError) as raised:
        load_export(tangled)
    errors = {p.message: p for p in raised.value.problems if p.severity == "error"}
    by_kind = {
        "cycle": next(p for m, p in errors.items() if "cycle" in m),
        "self": next(p for m, p in errors.items() if "their own parent" in m),
        "unknown": next(p for m, p in errors.items() if "not in the accounts table" in m),
        "deep": next(p for m, p in errors.items() if "deeper than" in m),
    }
    assert by_kind["cycle"].rows == (ROW["X"], ROW["Y"])
    assert by_kind["self"].rows == (ROW["S"],)
    assert by_kind["unknown"].rows == (ROW["U"],)
    assert by_kind["deep"].rows == (ROW[CHAIN[-1]],)  # the first account beyond the bound
    assert all(p.column == "parent_account_id" and p.fix for p in by_kind.values())
    result = runner.invoke(app, ["validate", str(tangled)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "form a cycle" in output and "break the loop" in output and "--invalid-rows drop" in output
    assert "NOPE" not in output  # rows are named, client values are not


def test_drop_cuts_the_bad_links_lists_them_and_keeps_the_accounts(tangled, tmp_path):
    loaded = load_export(tangled, invalid_rows="drop")
    accounts = loaded.data.accounts.set_index("account_id")["parent_account_id"]
    assert len(accounts) == ACCOUNTS.count("\n") - 1  # every account keeps its row
    assert accounts[["X", "Y", "S", "U", CHAIN[-1]]].isna().all()
    assert list(accounts[["C1", "C2", "G", CHAIN[1]]]) == ["P", "P", "C1", CHAIN[0]]  # good links stay
    rejected = {(row.row, row.reason) for row in loaded.rejected.itertuples()}
    assert rejected == {
        (ROW["X"], "parent_account_id 'Y' closes a cycle of parent links: link dropped"),
        (ROW["Y"], "parent_account_id 'X' closes a cycle of parent links: link dropped"),
        (ROW["S"], "parent_account_id 'S' is the account itself: link dropped"),
        (ROW["U"], "parent_account_id 'NOPE' is not in the accounts table: link dropped"),
        (
            ROW[CHAIN[-1]],
            f"parent_account_id '{CHAIN[-2]}' is {MAX_DEPTH} links below its top account already: link dropped",
        ),
    }
    result = runner.invoke(app, ["validate", str(tangled), "--invalid-rows", "drop"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / REJECTED_FILE, encoding="utf-8", newline="") as handle:
        assert len(list(csv.reader(handle))) == 1 + 5


def test_a_clean_hierarchy_passes_validation(write_export):
    clean = "account_id,parent_account_id\nP,\nC1,P\nC2,P\nG,C1\n"
    loaded = load_export(write_export({"accounts.csv": clean, "opportunities.csv": OPPORTUNITIES}))
    assert not [w for w in loaded.warnings if w.column == "parent_account_id"]


def test_the_crm_presets_read_the_parent_column_when_the_export_has_it(tmp_path):
    from tests.ingest.test_mapping import (
        HUBSPOT_COMPANIES,
        HUBSPOT_DEALS,
        SALESFORCE_ACCOUNTS,
        SALESFORCE_OPPORTUNITIES,
    )

    hubspot = tmp_path / "hubspot"
    hubspot.mkdir()
    (hubspot / "hubspot-crm-exports-all-deals-2024-05-01.csv").write_text(HUBSPOT_DEALS)
    with_parent = HUBSPOT_COMPANIES.replace("Country/Region\n", "Country/Region,Parent Company\n", 1)
    with_parent = with_parent.replace("United States\n", "United States,\n").replace("Canada\n", "Canada,5001\n")
    (hubspot / "hubspot-crm-exports-all-companies-2024-05-01.csv").write_text(with_parent)
    accounts = load_export(hubspot, "hubspot").data.accounts
    assert list(accounts["parent_account_id"].fillna("")) == ["", "5001"]
    # Without the column (a plain companies export) the preset still reads, with no links.
    salesforce = tmp_path / "salesforce"
    salesforce.mkdir()
    (salesforce / "opportunities-report.csv").write_text(SALESFORCE_OPPORTUNITIES)
    without = "\n".join(line.rsplit(",", 1)[0] for line in SALESFORCE_ACCOUNTS.splitlines()) + "\n"
    (salesforce / "accounts-report.csv").write_text(without)
    assert load_export(salesforce, "salesforce").data.accounts["parent_account_id"].isna().all()
