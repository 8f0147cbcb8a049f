"""`tiering init`'s messages and draft for awkward inputs: an --out it cannot write (said before any work), a folder
of empty files, headers holding DEL or NEL, and paths a shell must have quoted."""

from __future__ import annotations

import re
import shlex
import subprocess

import yaml
from typer.testing import CliRunner

from cli.main import app
from ingest.io import load_export
from ingest.mapping import load_mapping
from tests.cli.test_hostile import NOWHERE, TIERING, read_only, unprivileged, words  # noqa: F401 (read_only: a fixture)

runner = CliRunner()
DEALS = "Deal ID,Company,Created,Closed,Stage\nD1,Acme,2024-01-05,2024-02-10,Won\nD2,Beta,2024-01-06,2024-02-11,Lost\n"


def test_an_out_in_a_read_only_folder_is_refused_before_the_export_is_read(read_only, tmp_path):
    # The export does not even exist: a refusal about --out proves that nothing was profiled first.
    line = unprivileged([TIERING, "init", NOWHERE, "--out", str(read_only / "mapping.yaml")])
    result = subprocess.run(line, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    output = words(result.stdout + result.stderr)
    assert result.returncode == 2, output
    assert f"the folder {read_only} is not writable" in output
    assert "unexpected error" not in output and "PermissionError" not in output and "data folder" not in output
    assert list(read_only.iterdir()) == []


def test_an_out_in_a_missing_folder_is_refused_before_the_export_is_read(tmp_path):
    result = runner.invoke(app, ["init", NOWHERE, "--out", str(tmp_path / "missing" / "mapping.yaml")])
    output = words(result.output)
    assert result.exit_code == 2 and "does not exist" in output and "data folder" not in output, output


def test_a_folder_of_empty_files_says_they_are_empty_and_names_them(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("deals.csv", "accounts.csv"):
        (folder / name).write_bytes(b"")
    result = runner.invoke(app, ["init", str(folder), "--out", str(tmp_path / "mapping.yaml")])
    output = words(result.output)
    assert result.exit_code == 2, output
    assert "every CSV or Parquet file here is empty (no header, no rows): accounts.csv, deals.csv" in output
    assert "no CSV or Parquet file to inspect" not in output
    assert not (tmp_path / "mapping.yaml").exists()


def test_headers_with_del_or_nel_give_a_draft_that_is_valid_yaml_and_maps_them_as_written(tmp_path):
    stage, closed = "Stage\x7f", "Closed\x85On"  # DEL, and NEL (a line break to YAML) inside a header
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "deals.csv").write_text(
        DEALS.replace("Stage", stage).replace("Closed", closed).replace("Won", "Won\x7f"), encoding="utf-8"
    )
    draft = tmp_path / "mapping.yaml"
    result = runner.invoke(app, ["init", str(folder), "--out", str(draft)])
    text = draft.read_text(encoding="utf-8")
    document = yaml.safe_load(text)  # PyYAML refuses DEL, and would read a raw NEL as a space
    columns = document["opportunities"]["columns"]
    assert columns["outcome"] == stage and columns["close_date"] == closed
    assert document["opportunities"]["values"]["outcome"] == {"Won\x7f": "won", "Lost": "lost"}
    data = load_export(folder, load_mapping(draft)).data
    assert data.opportunities["outcome"].tolist() == ["won", "lost"]
    assert data.opportunities["close_date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-02-10", "2024-02-11"]
    assert result.exit_code == 0, result.output


def test_the_next_command_is_quoted_for_the_shell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "Bob's export $HOME"
    folder.mkdir()
    (folder / "deals.csv").write_text(DEALS, encoding="utf-8")
    out = "my mapping.yaml"
    result = runner.invoke(app, ["init", str(folder), "--out", out], terminal_width=400)
    assert result.exit_code == 0, result.output
    command = re.search(r"`(tiering train .*)`", result.output)
    assert command is not None, result.output
    assert shlex.split(command.group(1)) == ["tiering", "train", str(folder), "--mapping", out]
