"""Messages a user reads: problem headers, user text printed as written, the training window `validate` shows,
reasons with numbers written as people write them, and numbers in the scores file at sensible precision."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import TieringConfig, parse_config
from features.schema import CrmData, conform
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)

runner = CliRunner()


@pytest.fixture(autouse=True)
def defaults_only(tmp_path, monkeypatch):
    """Run where no tiering.yaml lies about, so the built-in defaults apply."""
    monkeypatch.chdir(tmp_path)


def lines(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


# --- the problem header --------------------------------------------------------------------------------------


def test_header_counts_problems_and_warnings_apart_and_marks_each_warning(write_export):
    folder = write_export(
        {
            "accounts.csv": "account_id,employees\nA1,many\nA2,10\nA3,5\n",  # error 1; A3 has no opportunity: warning
            # 2 warnings: an unknown channel, an unknown account
            "engagement.csv": "account_id,timestamp,channel\nA1,2024-01-01,webinar\nZZ,2024-01-02,web_visit\n",
            "intent.csv": "account_id,date,topic,score\nA1,2024-01-03,crm,101\n",  # error 2
        }
    )
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 2
    assert "2 problems stop this run (and 3 warnings):" in result.output
    listed = lines(result.output, "- ")
    assert len(listed) == 5
    assert [line.startswith("- warning: ") for line in listed] == [False, False, True, True, True]


def test_header_says_one_problem_in_the_singular(write_export):
    folder = write_export({"accounts.csv": "account_id,employees\nA1,many\nA2,10\nA3,5\n"})
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 2
    assert "1 problem stops this run (and 1 warning):" in result.output
    assert len(lines(result.output, "- ")) == 2


# --- user text is never markup or emoji ----------------------------------------------------------------------


def test_a_file_and_column_that_read_like_an_emoji_code_print_as_written(write_export, tmp_path):
    folder = write_export({"accounts.csv": None, "offers.csv": "Id,industry\nA1,software\n,retail\nA2,x\nA3,y\n"})
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("accounts:\n  file: offers.csv\n  columns: {account_id: Id}\n")
    result = runner.invoke(app, ["validate", str(folder), "--mapping", str(mapping)])
    assert result.exit_code == 2
    assert (
        "- accounts table, offers.csv:Id: account_id is empty (row 3). Fix: fill in account_id on every row"
        in result.output
    )
    assert "\N{SQUARED ID}" not in result.output


def test_markup_and_emoji_codes_in_values_print_as_written_in_the_summary(write_export):
    channel = "[bold]vip[/bold]:thumbs_up:"
    folder = write_export({"engagement.csv": f"account_id,timestamp,channel\nA1,2024-01-01,{channel}\n"})
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"Unknown channels: {channel} (1)" in result.output
    assert f"unknown channels are kept: '{channel}' (1)" in result.output
    assert "\N{THUMBS UP SIGN}" not in result.output


# --- what training would see ---------------------------------------------------------------------------------


def closed_deals(extra_before_window: int = 20) -> dict[str, str]:
    """One account's closed deals on a few dates, so each slice's counts are known by hand.

    With the default window (12 months, calibration 2, holdout 3) and the latest close 2024-12-31, as_of is
    2025-01-01: fit [2024-01-01, 2024-08-01), validation [2024-08-01, 2024-10-01), holdout [2024-10-01, 2025-01-01),
    and the registered model's final calibration [2024-11-01, 2025-01-01).
    """
    batches = [  # (close date, won, lost)
        ("2023-12-31", 5 + extra_before_window, 5 + extra_before_window),  # the day before the window: not in it
        ("2024-03-15", 25, 30),  # fit
        ("2024-08-01", 12, 11),  # the first day of validation
        ("2024-11-15", 0, 4),  # holdout
        ("2024-12-31", 1, 0),  # holdout, the latest close
    ]
    rows, number = [], 0
    for close, won, lost in batches:
        created = (pd.Timestamp(close) - pd.Timedelta(days=10)).date()
        for outcome, count in (("won", won), ("lost", lost)):
            for _ in range(count):
                number += 1
                rows.append(f"O{number},A1,{created},{close},{outcome},1000")
    return {
        "accounts.csv": "account_id,industry\nA1,software\n",
        "opportunities.csv": "opportunity_id,account_id,created_date,close_date,outcome,amount\n"
        + "\n".join(rows)
        + "\n",
    }


def test_validate_shows_the_window_its_slices_and_names_the_thin_holdout_with_an_as_of_that_works(write_export):
    result = runner.invoke(app, ["validate", str(write_export(closed_deals()))])
    assert result.exit_code == 0, result.output
    output = result.output
    assert "Training window: 2024-01-01 to 2024-12-31 (as_of 2025-01-01, the day after the latest close date)" in output
    assert (
        "The holdout slice (2024-10-01 to 2024-12-31) has 1 won and 4 lost opportunities; training needs at "
        "least 10 of each."
    ) in output
    assert (
        "The final calibration slice (2024-11-01 to 2024-12-31) has 1 won and 4 lost opportunities; training "
        "needs at least 10 of each."
    ) in output
    assert "The fit slice" not in output and "The validation slice" not in output
    # 2024-08-02: fit [2023-08-02, 2024-03-02) holds the 25/25 of 2023-12-31, validation [2024-03-02, 2024-05-02)
    # the 25/30 of 2024-03-15, holdout [2024-05-02, 2024-08-02) and final calibration [2024-06-02, 2024-08-02)
    # the 12/11 of 2024-08-01. No later cut-off works.
    assert (
        "--as-of moves the whole window: with --as-of 2024-08-02 (the nearest cut-off that works) every slice has "
        "enough (fit 25 won / 25 lost, validation 25 won / 30 lost, holdout 12 won / 11 lost, final calibration "
        "12 won / 11 lost). Or: "
        "model.window.holdout_months (3) and model.window.calibration_months (2) in tiering.yaml change the "
        "slices' lengths, and model.window.months (12) how far back the fit slice starts."
    ) in output


def test_the_slices_hold_the_hand_counted_deals_with_inclusive_starts():
    from ingest.io import load_export  # noqa: F401  (the CLI path is tested above; here the preview itself)
    from training.preview import preview

    data = _crm(closed_deals())
    seen = preview(data, TieringConfig())
    counts = {
        piece.name: (str(piece.start.date()), str(piece.end.date()), piece.won, piece.lost, piece.thin)
        for piece in seen.slices
    }
    assert counts == {
        "fit": ("2024-01-01", "2024-08-01", 25, 30, False),
        "validation": ("2024-08-01", "2024-10-01", 12, 11, False),
        "holdout": ("2024-10-01", "2025-01-01", 1, 4, True),
        "final calibration": ("2024-11-01", "2025-01-01", 1, 4, True),
    }
    assert seen.suggestion == pd.Timestamp("2024-08-02")


def test_an_as_of_and_a_config_move_the_slices(write_export, tmp_path):
    config = tmp_path / "longer.yaml"
    config.write_text("model:\n  window: {holdout_months: 4}\n")
    result = runner.invoke(app, ["validate", str(write_export(closed_deals())), "--config", str(config)])
    assert result.exit_code == 0, result.output
    # holdout [2024-09-01, 2025-01-01): still 1 won and 4 lost
    assert "The holdout slice (2024-09-01 to 2024-12-31) has 1 won and 4 lost opportunities" in result.output
    assert "model.window.holdout_months (4)" in result.output
    result = runner.invoke(app, ["validate", str(write_export(closed_deals())), "--as-of", "2024-08-02"])
    assert result.exit_code == 0, result.output
    assert "Training window: 2023-08-02 to 2024-08-01 (as_of 2024-08-02, from --as-of)" in result.output
    assert "Every slice has enough won and lost opportunities to train and judge a model." in result.output


def test_when_no_as_of_works_validate_says_so_and_what_else_helps(write_export):
    result = runner.invoke(app, ["validate", str(write_export(closed_deals(extra_before_window=0)))])
    assert result.exit_code == 0, result.output
    assert (
        "No --as-of gives every slice enough with this configuration: model.window.holdout_months (3) and "
        "model.window.calibration_months (2) in tiering.yaml change the slices' lengths"
    ) in result.output


def test_the_vectorised_slice_bounds_are_the_training_window():
    from training.window import WindowDates, slice_bounds

    config = parse_config({"model": {"window": {"months": 9, "holdout_months": 2, "calibration_months": 1}}})
    data = _crm(closed_deals())
    for day in ("2024-03-31", "2024-02-29", "2025-01-01", "2024-08-31"):
        window = WindowDates.for_data(data, config, pd.Timestamp(day))
        bounds = {
            name: (start[0], end[0]) for name, start, end in slice_bounds(pd.DatetimeIndex([day]), config.model.window)
        }
        assert bounds == {
            "fit": (window.start, window.calibration_start),
            "validation": (window.calibration_start, window.holdout_start),
            "holdout": (window.holdout_start, window.as_of),
            "final calibration": (window.final_calibration_start, window.as_of),
        }, day


def _crm(files: dict[str, str]) -> CrmData:
    import io

    accounts = pd.read_csv(io.StringIO(files["accounts.csv"]))
    opportunities = pd.read_csv(io.StringIO(files["opportunities.csv"]), dtype={"opportunity_id": str})
    return CrmData(accounts=conform(accounts, "accounts"), opportunities=conform(opportunities, "opportunities"))


# --- reasons: numbers as people write them -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("extra_past_two_year_revenue_code", 2.0, "past two year revenue code: 2"),
        ("extra_past_two_year_revenue_code", np.float64(3.0), "past two year revenue code: 3"),
        ("extra_seats", 1250000.0, "seats: 1,250,000"),
        ("extra_discount_rate", 0.125, "discount rate: 0.125"),
        ("extra_rating", 12.3456, "rating: 12.35"),
        ("extra_rating", 1e308, "rating: 1.0e+308"),
        ("extra_rating", -2.5e20, "rating: -2.5e+20"),
        ("extra_rating", math.nan, "rating: unknown"),
        ("extra_segment", "Gold", "segment: Gold"),
        ("employees", 1800.0, "1,800 employees"),
        ("employees", 1e308, "1.0e+308 employees"),
        ("annual_revenue", 2.5e9, "$2.5B annual revenue"),
        ("annual_revenue", 4e12, "$4.0T annual revenue"),
        ("annual_revenue", 1e308, "$1.0e+308 annual revenue"),
        ("prior_won_amount", 54000.0, "$54.0k won before"),
        ("prior_won_amount", math.inf, "an unknown amount won before"),
    ],
)
def test_reasons_write_numbers_as_people_write_them(feature, value, expected):
    from scoring.reasons import describe

    assert describe(feature, value, TieringConfig()) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (950.0, "$950"),
        (12345.0, "$12.3k"),
        (4.5e6, "$4.5M"),
        (2.1e9, "$2.1B"),
        (3e12, "$3.0T"),
        (1e308, "$1.0e+308"),
        (-2e6, "-$2.0M"),
        (math.inf, "an unknown amount"),
        (-math.inf, "an unknown amount"),
        (math.nan, "an unknown amount"),
    ],
)
def test_money_is_compact_and_never_infinite(value, expected):
    from scoring.reasons import money

    assert money(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (999.0, "999"),
        (999.4, "999"),
        (999.5, "1.0k"),  # prints as 1,000 in units: the next unit up
        (1_000.0, "1.0k"),
        (9_999.0, "10.0k"),
        (10_000.0, "10.0k"),
        (821_146.0, "821.1k"),
        (999_949.0, "999.9k"),
        (999_999.0, "1.0M"),
        (1e6, "1.0M"),
        (12_345_678.0, "12.3M"),
        (999_999_999.0, "1.0B"),
        (1e9, "1.0B"),
        (1e12, "1.0T"),
        (1e15, "1.0e+15"),
        (-9_999.0, "-10.0k"),
        (-0.2, "0"),
    ],
)
def test_compact_figures_change_unit_where_the_rounded_figure_reaches_1000(value, expected):
    from scoring.reasons import compact

    assert compact(value) == expected
    assert compact(value, "$") == (expected.replace("-", "-$") if expected.startswith("-") else "$" + expected)


def test_forecast_console_and_page_write_the_same_compact_figures():
    """$821,146 once printed $82.1K on the console (thousands at 1e4) while the page said $821.1k."""
    from rich.console import Console

    from cli.forecast import forecast_table
    from reports.forecast_page import forecast_tier_table

    row = {"tier": "tier_1", "accounts": 1_234}
    figures = {
        "new_opportunities": (10_000.0, 9_999.0, 10_400.0),
        "pipeline_value": (821_146.0, 999_999.0, 1_000.0),
        "deals_won": (999.0, 950.0, 1_050.0),
        "won_revenue": (52_200_000.0, 10_400_000.0, 999_949.0),
    }
    for name, (point, low, high) in figures.items():
        row.update({name: point, f"{name}_low": low, f"{name}_high": high})
    console = Console(width=200, record=True, color_system=None)
    console.print(forecast_table(pd.DataFrame([row]), "t"))
    text = console.export_text()
    for cell in ("10.0k", "10.0k-10.4k", "$821.1k", "$1.0M-$1.0k", "999", "950-1.1k", "$52.2M", "$10.4M-$999.9k"):
        assert cell in text, cell
    page = str(forecast_tier_table(pd.DataFrame([row])))
    assert "$821.1k ($1.0M – $1.0k)" in page and "$52.2M ($10.4M – $999.9k)" in page


# --- the scores file: sensible precision, rounded only when written ------------------------------------------


def score_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "rule_score": [39.199999999999996, 70.0],
            "learned_score": [55.5551, 12.344999],
            "win_probability": [0.123456789, np.nan],
            "expected_deal_size": [12345.6789, np.nan],
            "expected_value": [1524.1234, np.nan],
            "budget": [10.204081632653061, np.nan],
            "reason_1": ["↑ 2 deals won before", ""],
        }
    )


def test_write_table_rounds_scores_probabilities_and_money_and_leaves_the_frame_alone(tmp_path):
    from ingest.files import write_table

    frame = score_frame()
    path = write_table(frame, tmp_path / "scores.csv")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "account_id,rule_score,learned_score,win_probability,expected_deal_size,expected_value,budget,reason_1",
        "A1,39.2,55.56,0.1235,12345.68,1524.12,10.2,↑ 2 deals won before",
        "A2,70.0,12.34,,,,,",
    ]
    assert frame["rule_score"][0] == 39.199999999999996  # the domain's values are not rounded
    parquet = pd.read_parquet(write_table(frame, tmp_path / "scores.parquet"))
    assert parquet["rule_score"].tolist() == [39.2, 70.0]
    assert parquet["win_probability"].tolist()[0] == 0.1235 and math.isnan(parquet["win_probability"].tolist()[1])


def test_the_api_records_are_rounded_as_the_file_is():
    from scoring.scorer import SCORE_COLUMNS
    from serving.responses import score_records

    frame = score_frame()
    for column in SCORE_COLUMNS:
        if column not in frame:
            frame[column] = "x" if column not in ("intent_surge",) else False
    record = score_records(frame[SCORE_COLUMNS])[0]
    assert (record["rule_score"], record["learned_score"], record["win_probability"]) == (39.2, 55.56, 0.1235)
    assert (record["expected_deal_size"], record["expected_value"], record["budget"]) == (12345.68, 1524.12, 10.2)
    assert score_records(frame[SCORE_COLUMNS])[1]["win_probability"] is None


def test_paths_with_markup_and_emoji_codes_print_as_written(write_export, tmp_path, mlflow_store):  # noqa: F811
    out = tmp_path / "q[bold]3[/bold]:thumbs_up:.csv"
    result = runner.invoke(app, ["score", str(write_export()), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Scores written to {out}" in result.output
    assert out.is_file()
