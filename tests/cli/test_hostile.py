"""The command line under hostile use: every option that takes a date, an amount or a path, systematically.

Each refusal must be one clear message naming the option (or file) and the fix, exit code 2, no traceback and no
"unexpected error", and must come before any work: the tests pass a data folder that does not exist wherever the
option should be refused first, so a refusal that came after loading the data would name the data instead. A new
option that takes a date, an amount or an output path belongs in the tables at the top.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)

runner = CliRunner()
TIERING = str(Path(sys.executable).parent / "tiering")
NOWHERE = "/nonexistent/export"  # a data folder that cannot exist: options must be refused before it is read
RANGE = "between 1900-01-01 and 2100-12-31"

# Every command option that takes a date, an amount or an output path: (command line before the option).
AS_OF_COMMANDS = {
    "train": ["train", NOWHERE],
    "score": ["score", NOWHERE, "--out", "never.csv"],
    "compare": ["compare", NOWHERE, "--out", "never-report"],
    "publish": ["publish", f"{NOWHERE}/scores.csv"],
}
BUDGET_COMMANDS = {
    "score": ["score", NOWHERE, "--out", "never.csv"],
    "compare": ["compare", NOWHERE, "--out", "never-report"],
    "demo": ["demo", "--out", "never-demo"],
}
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """Run in a folder of its own: relative outputs land there, and no ./tiering.yaml is picked up."""
    monkeypatch.chdir(tmp_path)


def words(text: str) -> str:
    """The output as one line of words, without the frame rich draws around usage errors."""
    return " ".join(text.translate(str.maketrans("", "", "│╭╮╰╯─")).split())


def refused(result, *expected: str) -> str:
    output = words(result.output)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in output and "unexpected error" not in output, output
    for text in expected:
        assert text in output, output
    return output


def invoke(*args) -> Result:  # noqa: F821
    return runner.invoke(app, [str(arg) for arg in args])


# --- dates ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", AS_OF_COMMANDS)
@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "yesterday",
        "0",
        "1700000000",
        "2026-13-01",
        "2026-02-30",
        "2026-06-01T24:00",
        "01/06/2026",
        "June 1 2026",
        "2026-06",
        "\x00",
    ],
)
def test_as_of_that_is_not_a_date_is_refused_naming_the_grammar(command, value):
    output = refused(invoke(*AS_OF_COMMANDS[command], f"--as-of={value}"), "--as-of", "ISO 8601")
    assert "data folder not found" not in output  # refused before the data is read


@pytest.mark.parametrize("command", AS_OF_COMMANDS)
@pytest.mark.parametrize("value", ["9999-12-31", "1800-01-01", "1899-12-31", "2101-01-01", "0001-01-01"])
def test_as_of_outside_the_date_range_of_files_and_api_is_refused(command, value):
    refused(invoke(*AS_OF_COMMANDS[command], f"--as-of={value}"), f"--as-of '{value}'", RANGE)


too_early = st.dates(max_value=date(1899, 12, 31))
too_late = st.dates(min_value=date(2101, 1, 1))


@HYPOTHESIS
@given(day=too_early | too_late, basic=st.booleans(), command=st.sampled_from(sorted(AS_OF_COMMANDS)))
def test_any_day_outside_the_range_is_refused(day, basic, command):
    text = day.strftime("%Y%m%d") if basic else day.isoformat()
    if len(text) != (8 if basic else 10):  # years before 1000 have no four-digit form
        text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
    refused(invoke(*AS_OF_COMMANDS[command], f"--as-of={text}"), "--as-of", RANGE)


@HYPOTHESIS
@given(
    number=st.integers(min_value=-(10**12), max_value=10**12).filter(lambda n: len(str(abs(n))) != 8),
    command=st.sampled_from(sorted(AS_OF_COMMANDS)),
)
def test_numbers_are_never_read_as_unix_times(number, command):
    refused(invoke(*AS_OF_COMMANDS[command], f"--as-of={number}"), "--as-of", "not a date")


@HYPOTHESIS
@given(
    text=st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=30),
    command=st.sampled_from(sorted(AS_OF_COMMANDS)),
)
def test_text_without_digits_is_not_a_date(text, command):
    refused(invoke(*AS_OF_COMMANDS[command], f"--as-of={text}"), "--as-of", "not a date")


@HYPOTHESIS
@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 12, 30)),
    layout=st.sampled_from(
        ["%Y-%m-%d", "%Y%m%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H%M%S"]
    ),
    command=st.sampled_from(sorted(AS_OF_COMMANDS)),
)
def test_every_day_in_the_range_is_accepted_in_every_layout(moment, layout, command):
    # Accepted: the command goes on to read its input (a data folder, or publish's scores file), which does not exist.
    missing = "scores file not found" if command == "publish" else "data folder not found"
    refused(invoke(*AS_OF_COMMANDS[command], f"--as-of={moment.strftime(layout)}"), missing)


def test_as_of_used_is_printed_and_a_far_future_date_is_named(write_export, mlflow_store, tmp_path):
    folder = write_export(
        {
            "engagement.csv": (
                "account_id,timestamp,channel,count\n"
                + "".join(f"A1,{date(2024, 1, 1) + timedelta(days=i % 90)}T10:00:00,web_visit,1\n" for i in range(1200))
                + "A2,2100-12-31T00:00:00,email_open,1\n"
            )
        }
    )
    result = invoke("score", folder, "--out", tmp_path / "scores.csv")
    assert result.exit_code == 0, result.output
    output = words(result.output)
    assert "as_of 2101-01-01 (default: the day after the latest date in the export" in output
    assert "engagement.timestamp: the latest date, 2100-12-31, lies" in output
    assert "beyond 99.9% of the column's dates (up to 2024-03-30; 1 row(s) that far out)" in output
    given_date = words(invoke("score", folder, "--out", tmp_path / "s2.csv", "--as-of", "2024-04-01").output)
    assert "as_of 2024-04-01 (from --as-of)" in given_date and "lies" not in given_date  # no warning: as_of was given


def test_no_far_date_warning_for_an_ordinary_export(write_export, mlflow_store, tmp_path):
    output = words(invoke("score", write_export(), "--out", tmp_path / "scores.csv").output)
    assert "as_of 2024-04-02 (default" in output and "beyond 99.9%" not in output


# --- budgets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", BUDGET_COMMANDS)
@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e309", "nan", "NaN", "-1", "-1e-9", "abc", ""])
def test_budget_that_is_not_a_finite_amount_is_refused(command, value):
    output = refused(invoke(*BUDGET_COMMANDS[command], f"--budget={value}"), "--budget")
    assert "data folder not found" not in output and "$inf" not in output


@HYPOTHESIS
@given(
    value=st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (math.isfinite(v) and v >= 0))
    | st.sampled_from([float("inf"), float("nan"), -0.5]),
    command=st.sampled_from(sorted(BUDGET_COMMANDS)),
)
def test_any_negative_or_non_finite_budget_is_refused(value, command):
    refused(invoke(*BUDGET_COMMANDS[command], f"--budget={value!r}"), "--budget", "finite number of at least 0")


@HYPOTHESIS
@given(value=st.floats(min_value=0, max_value=1e300), command=st.sampled_from(["score", "compare"]))
def test_any_finite_budget_is_accepted(value, command):
    refused(invoke(*BUDGET_COMMANDS[command], f"--budget={value!r}"), "data folder not found")


# --- output paths -----------------------------------------------------------------------------------------


def unprivileged(command: list[str]) -> list[str]:
    """`command` without root's power to write anywhere (modes apply to root too once DAC override is dropped)."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_score_out_is_checked_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "folder.csv").mkdir()
    refused(invoke("score", NOWHERE, "--out", tmp_path / "folder.csv"), "--out is an existing folder, not a file")
    refused(
        invoke("score", NOWHERE, "--out", tmp_path / "a-file" / "scores.csv"),
        "is a file, not a folder",
        "choose a path whose parent folders are folders",
    )
    refused(invoke("score", NOWHERE, "--out", tmp_path / "a-file" / "deeper" / "scores.csv"), "is a file, not a folder")
    refused(invoke("score", NOWHERE, "--out", tmp_path / "scores.xlsx"), "must end in .csv or .parquet")
    assert (tmp_path / "a-file").read_text() == "mine"


@pytest.mark.parametrize(
    "command",
    [
        ["score", NOWHERE, "--out", "{ro}/scores.csv"],
        ["score", NOWHERE, "--out", "{ro}/new/scores.csv"],
        ["compare", NOWHERE, "--out", "{ro}/report"],
        ["diff", "old.csv", "new.csv", "--out", "{ro}/diff"],
        ["generate", "--out", "{ro}/export", "--accounts", "10"],
    ],
)
def test_an_output_in_a_read_only_folder_is_refused_before_any_work(command, read_only, tmp_path):
    line = unprivileged([TIERING, *(part.format(ro=read_only) for part in command)])
    result = subprocess.run(line, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    output = words(result.stdout + result.stderr)
    assert result.returncode == 2, output
    assert f"the folder {read_only} is not writable" in output and "change its permissions" in output
    assert "Traceback" not in output and "unexpected error" not in output
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("command", [["compare", NOWHERE], ["diff", "old.csv", "new.csv"], ["generate"]])
def test_a_folder_output_that_is_a_file_or_under_a_file_is_refused(command, tmp_path):
    (tmp_path / "a-file").write_text("mine")
    refused(invoke(*command, "--out", tmp_path / "a-file"), "--out is an existing file, not a folder")
    refused(invoke(*command, "--out", tmp_path / "a-file" / "sub"), "is a file, not a folder")
    assert (tmp_path / "a-file").read_text() == "mine"


def users_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "mynotes.txt").write_text("my notes")
    (path / "sub").mkdir(exist_ok=True)
    (path / "sub" / "keep.txt").write_text("keep me")
    return path


def assert_untouched(path: Path) -> None:
    assert (path / "mynotes.txt").read_text() == "my notes" and (path / "sub" / "keep.txt").read_text() == "keep me"


def test_compare_refuses_a_folder_of_the_users_files_before_any_work(tmp_path):
    out = users_folder(tmp_path / "report")
    output = refused(
        invoke("compare", NOWHERE, "--out", out),
        "--out is not an empty folder",
        "mynotes.txt",
        "sub/",
        "which tiering did not write",
    )
    assert "data folder not found" not in output
    assert_untouched(out)


def test_compare_and_diff_never_delete_files_they_did_not_write(write_export, mlflow_store, tmp_path):
    data = write_export()
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    assert invoke("score", data, "--out", old, "--as-of", "2024-02-01").exit_code == 0
    assert invoke("score", data, "--out", new).exit_code == 0

    mine = users_folder(tmp_path / "mine")
    refused(invoke("diff", old, new, "--out", mine), "mynotes.txt", "which tiering did not write")
    refused(invoke("compare", data, "--out", mine), "mynotes.txt")
    assert_untouched(mine)
    assert sorted(p.name for p in mine.iterdir()) == ["mynotes.txt", "sub"]

    # An earlier output of the same command is replaced whole; one the user added a file to is refused.
    out = tmp_path / "diff"
    assert invoke("diff", old, new, "--out", out).exit_code == 0
    assert invoke("diff", old, new, "--out", out).exit_code == 0
    assert (out / "diff.html").is_file()
    (out / "mynotes.txt").write_text("my notes")
    refused(invoke("diff", old, new, "--out", out), "mynotes.txt")
    assert (out / "mynotes.txt").read_text() == "my notes"
    # A diff output is not a compare output: compare does not take it over.
    (out / "mynotes.txt").unlink()
    refused(invoke("compare", data, "--out", out), "an earlier report.html output", "diff.html")
    assert (out / "diff.html").is_file()


def test_generate_refuses_a_real_export_it_would_overwrite(write_export):
    folder = write_export()
    before = (folder / "accounts.csv").read_text()
    refused(invoke("generate", "--out", folder, "--accounts", "10"), "accounts.csv", "not a synthetic export")
    assert (folder / "accounts.csv").read_text() == before


# --- input files ------------------------------------------------------------------------------------------


@HYPOTHESIS
@given(content=st.binary(min_size=1, max_size=4000))
def test_a_random_binary_accounts_file_is_named_with_exit_2(content, write_export):
    folder = write_export({"accounts.csv": content})
    refused(invoke("validate", folder), "accounts.csv")


def test_binary_with_a_carriage_return_in_its_header_is_not_an_unexpected_error(write_export):
    folder = write_export({"accounts.csv": b"\x89PNG\r\x1a\x00\xff\xfe\rjunk\x00\n\x01\x02"})
    refused(invoke("validate", folder), "accounts.csv: cannot be read as CSV", "export it again as CSV")


@pytest.mark.parametrize(
    "option", [["--mapping", "/nonexistent/mapping.yaml"], ["--config", "/nonexistent/tiering.yaml"]]
)
def test_missing_side_files_are_named(option, write_export):
    command = ["validate", write_export(), *option] if option[0] == "--mapping" else ["train", write_export(), *option]
    refused(invoke(*command), "/nonexistent/")


def test_data_that_is_a_file_or_missing_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("mine")
    for data in (tmp_path / "a-file", tmp_path / "missing"):
        for command in (
            ["validate", data],
            ["train", data],
            ["score", data, "--out", tmp_path / "s.csv"],
            ["compare", data, "--out", tmp_path / "r"],
        ):
            refused(invoke(*command), "data folder not found")
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    "encoding, delimiter", [("latin-1", ";"), ("cp1252", ","), ("utf-8-sig", "\t"), ("utf-8", ";")]
)
def test_overrides_are_read_like_data_files(encoding, delimiter, write_export, mlflow_store, tmp_path):
    pins = tmp_path / "pins.csv"
    rows = [["account_id", "tier", "reason", "owner"], ["A3", "tier_1", "logo stratégique", "Zoë"]]
    pins.write_bytes("".join(delimiter.join(row) + "\n" for row in rows).encode(encoding))
    result = invoke("score", write_export(), "--out", tmp_path / "scores.csv", "--overrides", pins)
    assert result.exit_code == 0, result.output
    import pandas as pd

    scores = pd.read_csv(tmp_path / "scores.csv", dtype=str, keep_default_na=False).set_index("account_id")
    assert scores.at["A3", "tier"] == "tier_1"
    assert "by Zoë: logo stratégique" in scores.at["A3", "override_reason"]


def test_a_binary_overrides_file_is_named(write_export, mlflow_store, tmp_path):
    pins = tmp_path / "pins.csv"
    pins.write_bytes(b"\x00\xff\r\x89PNG\r\n\x00")
    refused(invoke("score", write_export(), "--out", tmp_path / "scores.csv", "--overrides", pins), "pins.csv")
    assert not (tmp_path / "scores.csv").exists()
