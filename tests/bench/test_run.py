"""bench/run.py's results table: its rows from a small fake result set, worked out by hand, and how it is
written into the docs page between the markers without touching the hand-written rest of the page."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import TABLE_END, TABLE_START, markdown, median_run, write_table

SIZES = [1_000, 2_000, 4_000]


def fake_results() -> dict:
    features = {
        n: {
            "features_s": s,
            "opportunity_rows": 10 * n,
            "accounts": n,
            "engagement_events": 200 * n,
            "load_and_validate_s": 0.5,
            "read_parquet_s": 0.5,
            "peak_rss_mb": 300.0,
            "cpu_s": {
                "features": s,
                "rows_and_book": rows,
                "build": build,
                "read_parquet": s / 2,
                "load_and_validate": load,
            },
        }
        for n, s, rows, build, load in zip(SIZES, [1.0, 2.0, 4.0], [1.0, 1.5, 3.0], [0.5, 1.0, 4.0], [0.5, 1.5, 4.0])
    }
    features[SIZES[0]]["cpu_runs"] = [1.2, 1.0, 0.8]  # the smallest size's three runs, the median kept
    features[SIZES[1]]["cpu_runs"] = [2.0, 2.5, 1.5]
    train = {
        n: {
            "train_s": s,
            "training_rows": 5 * n,
            "search_s": 8.0,
            "search_share": 0.1,
            "folds_s": 4.0,
            "folds_share": 0.05,
            "chosen": "LightGBM",
            "raw_fits_s": 4.0,
            "ratio": s / 4.0,
            "peak_rss_mb": 900.0,
            "steps_s": {"pipeline_fit": 10.0, "pipeline_count": 5.0, "search": 8.0},
            "cpu_s": {"train": s, "raw_fits": 4.0},
        }
        for n, s in zip(SIZES, [10.0, 20.0, 80.0])
    }
    score = {
        n: {
            "accounts": n,
            "score_per_s": 4_000.0,
            "raw_predict_per_s": 8_000.0,
            "ratio": 0.5,
            "score_with_reasons_per_s": 1_000.0,
            "ratio_with_reasons": 0.125,
            "peak_rss_mb": 500.0,
            "cpu_s": {"score_with_reasons": n / 1_000, "raw_predict": n / 2_000},
        }
        for n in SIZES
    }
    return {
        "machine": {"cpus": 2, "python": "3.11.7", "platform": "Linux"},
        "sizes": SIZES,
        "quick": False,
        "features": features,
        "train": train,
        "score": score,
    }


def test_the_table_rows_are_the_figures_of_the_largest_size_and_their_ratios():
    table = markdown(fake_results())
    lines = table.splitlines()
    assert (
        lines[0] == "Measured on 2 cores, Python 3.11.7. Each figure sits beside its raw reference from the same run."
    )
    assert (
        "| point-in-time features, 40,000 opportunity rows + 4,000 accounts over 800,000 events | 4.0 s "
        "(+ 0.5 s load and validate) | read Parquet 0.5 s | 8.0x | < 120 s, < 8 GB | 300 MB |"
    ) in lines
    # 80 s of training, of which the pipeline steps 10 + 5 = 15 s: the same training without them 65 s, +23%.
    assert (
        "| ... of which the pipeline-propensity learner, its count model and time to close | 15.0 s | "
        "the same training without them 65.0 s | +23% | <= +50% | |"
    ) in lines
    # The folds' share (4 of 80 s), and the pandas engine's peak goal beside the peak before the events were held
    # by group.
    assert (
        "| `tiering train` (learner search on), 20,000 closed opportunities | 80.0 s, of which the search 8.0 s (10%; "
        "the finalists on the rolling folds 4.0 s, 5%); chose LightGBM | raw fits of the chosen learners 4.0 s | "
        "20.00x | < 120 s; peak <= 3,000 MB (was 4,090 MB) "
        "| 900 MB |"
    ) in lines
    assert (
        "| `tiering score`, 4,000 accounts | 4,000 accounts/s | raw `booster.predict` 8,000/s | 0.50 | >= 0.5 | "
        "500 MB |"
    ) in lines
    assert "generate" not in table  # no generator figures, no generator row


def test_growth_with_size_is_the_exponent_of_cpu_time_between_the_smallest_and_largest_size():
    lines = markdown(fake_results()).splitlines()
    assert "| step | 1,000 | 2,000 | 4,000 | k | goal | before (wall) | reference | reference k |" in lines
    assert any("the median of 3 runs below the largest size" in line for line in lines)
    # CPU seconds doubling with the size: linear. Over the smallest size's runs (0.8 to 1.2 s) against 4 s:
    # log(4 / 1.2) / log(4) = 0.87 and log(4 / 0.8) / log(4) = 1.16. Reading the Parquet files doubles too.
    assert (
        "| features (groups read back and built) | 1.00 (0.80-1.20) | 2.00 (1.50-2.50) | 4.00 | 1.00 (0.87-1.16) "
        "| <= 1.1 | 1.18 | reading the Parquet files | 1.00 |"
    ) in lines
    # The build alone (without reading the groups back): 8 times for 4 times the size, 4^1.5.
    assert not any(line.startswith("| ... without the spill") for line in lines)
    assert "| ... the build alone | 0.50 | 1.00 | 4.00 | 1.50 | - | - | | |" in lines
    # The import: 8 times for 4 times the size, 4^1.5.
    assert (
        "| the import before it (read, validated, events written by group) | 0.50 | 1.50 | 4.00 | 1.50 | - | - | | |"
        in lines
    )
    # One run per size: no range. The raw fits take 4 s at every size: exponent 0.
    assert "| train | 10.00 | 20.00 | 80.00 | 1.50 | <= 1.1 | 0.57 | raw fits of the chosen learners | 0.00 |" in lines
    assert "| score with reasons | 1.00 | 2.00 | 4.00 | 1.00 | <= 1.1 | 1.42 | raw `booster.predict` | 1.00 |" in lines


def test_results_without_cpu_times_have_no_growth_rows():
    results = fake_results()
    del results["train"][SIZES[1]]["cpu_s"]  # an older results file, kept by `--only`
    lines = markdown(results).splitlines()
    assert not any(line.startswith("| train |") for line in lines)
    assert any(line.startswith("| features (groups read back and built) |") for line in lines)


def test_the_median_run_is_kept_with_every_run_beside_it():
    runs = [{"cpu_s": {"train": seconds}, "run": i} for i, seconds in enumerate([3.0, 1.0, 2.0])]
    assert median_run("train", runs) == {"cpu_s": {"train": 2.0}, "run": 2, "cpu_runs": [3.0, 1.0, 2.0]}
    assert median_run("train", runs[:2])["run"] == 1  # of two, the lower
    assert median_run("train", runs[:1])["cpu_runs"] == [3.0]


HEAD = "# Benchmarks\n\nWritten by hand before the table.\n\n"
TAIL = "\n\n## How to read the table\n\nWritten by hand after it.\n"


def test_the_table_replaces_only_what_lies_between_the_markers(tmp_path: Path):
    page = tmp_path / "benchmarks.md"
    page.write_text(f"{HEAD}{TABLE_START}\n| an old | table |\n{TABLE_END}{TAIL}", encoding="utf-8")
    table = markdown(fake_results())
    write_table(page, table)
    assert page.read_text(encoding="utf-8") == f"{HEAD}{TABLE_START}\n{table}{TABLE_END}{TAIL}"
    write_table(page, table)  # a second run with the same figures changes nothing
    assert page.read_text(encoding="utf-8") == f"{HEAD}{TABLE_START}\n{table}{TABLE_END}{TAIL}"


@pytest.mark.parametrize(
    "text",
    [
        f"{HEAD}{TAIL}",  # no markers
        f"{HEAD}{TABLE_START}\n{TAIL}",  # no end marker
        f"{HEAD}{TABLE_END}\n| t |\n{TABLE_START}{TAIL}",  # end before start
        f"{HEAD}{TABLE_START}\n{TABLE_END}\n{TABLE_START}\n{TABLE_END}{TAIL}",  # two tables
    ],
)
def test_a_page_without_one_pair_of_markers_is_refused_by_name_and_left_as_it_was(tmp_path: Path, text: str):
    page = tmp_path / "benchmarks.md"
    page.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit, match="benchmarks.md: the benchmark table goes between one"):
        write_table(page, markdown(fake_results()))
    assert page.read_text(encoding="utf-8") == text


def test_the_docs_page_carries_the_markers_the_bench_writes_between():
    page = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    text = page.read_text(encoding="utf-8")
    assert text.count(TABLE_START) == 1 and text.count(TABLE_END) == 1
    assert text.index(TABLE_START) < text.index(TABLE_END)
