"""A UTF-8 file with a byte order mark and a few stray cp1252 bytes: the mark never joins the first header, and
neither the data, nor a suggested fix, nor `tiering init`'s draft garbles accented text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from features.errors import DataError
from ingest.io import load_export

BOM = b"\xef\xbb\xbf"
OPPORTUNITIES = (
    "opportunity_id,account_id,created_date,close_date,outcome\n"
    "O1,A1,2024-01-05,2024-02-10,won\nO2,A2,2024-01-06,2024-02-11,lost\n"
)


def write(folder: Path, accounts: bytes, opportunities: str = OPPORTUNITIES) -> Path:
    folder.mkdir()
    (folder / "accounts.csv").write_bytes(accounts)
    (folder / "opportunities.csv").write_text(opportunities, encoding="utf-8")
    return folder


def test_a_bom_file_with_one_stray_cp1252_byte_keeps_its_header_and_its_accents(tmp_path):
    # "Café" and "Société" in UTF-8, "Zürich" with ü as the single cp1252 byte 0xFC.
    accounts = BOM + "account_id,account_name,city\nA1,Café,Zürich\nA2,Société,Genève\n".encode()
    accounts = accounts.replace("Zürich".encode(), b"Z\xfcrich")
    loaded = load_export(write(tmp_path / "export", accounts))
    frame = loaded.data.accounts
    assert "account_id" in frame.columns and "city" in frame.columns
    assert frame["account_name"].tolist() == ["Café", "Société"]
    assert frame["city"].tolist() == ["Zürich", "Genève"]
    [warning] = [w for w in loaded.warnings if w.file == "accounts.csv"]
    assert "UTF-8 but for 1 byte" in warning.message and "cp1252" in warning.message


def test_the_suggested_mapping_fix_names_the_header_as_written(tmp_path):
    accounts = BOM + "Account Id,Société\nA1,Acme\n".encode() + b"A2,M\xfcller\n"
    with pytest.raises(DataError) as raised:
        load_export(write(tmp_path / "export", accounts))
    text = str(raised.value)
    assert '{account_id: "Account Id"}' in text
    assert "columns read: Account Id, Société" in text
    assert "ï»¿" not in text and "Ã" not in text


def test_init_never_writes_the_byte_order_mark_into_the_draft(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    deals = (
        BOM
        + (
            "Company,Deal,Created,Closed,Stage,Région\n"
            "Acme,D1,2024-01-05,2024-02-10,Won,Île-de-France\n"
            "Beta,D2,2024-01-06,2024-02-11,Lost,Genève\n"
        ).encode()
    )
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "deals.csv").write_bytes(deals + b"Gamma,D3,2024-01-07,2024-02-12,Won,Z\xfcrich\n")
    result = CliRunner().invoke(app, ["init", str(folder), "--out", "mapping.yaml"])
    text = (tmp_path / "mapping.yaml").read_text(encoding="utf-8")
    assert "ï»¿" not in text and "\ufeff" not in text and "Ã" not in text, text
    assert yaml.safe_load(text)["opportunities"]["columns"]["account_id"] == "Company"
    assert "Région" in text
    assert result.exit_code == 0, result.output
