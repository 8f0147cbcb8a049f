"""`make bench`: every benchmark, each figure beside its raw reference from the same run.

    python -m bench.run [--quick] [--only features,train,...]

Writes bench/results.json and bench/results.md and, at full size, the table into docs/benchmarks.md
between its `bench:start` / `bench:end` markers (the rest of that page is written by hand). Benchmark
data is generated once per size (seeded) and cached in bench/data/.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import generator_bench

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DOCS_PAGE = REPO / "docs" / "benchmarks.md"
TABLE_START, TABLE_END = "<!-- bench:start -->", "<!-- bench:end -->"
FULL_SIZES = (10_000, 30_000, 100_000)
QUICK_SIZES = (2_000, 5_000, 10_000)
SEED = 7
# Goals beside the figures they started from, before the events were held by group of accounts.
TRAIN_PEAK_GOAL_MB, TRAIN_PEAK_BEFORE_MB = 3_000, 4_090  # `tiering train` (pandas engine) at 100,000 accounts
GROWTH_GOAL = 1.1
GROWTH_BEFORE = {"features": 1.18, "train": 0.57, "score": 1.42}  # wall time, one run per size (issue's figures)
# The growth is judged on CPU time (`cpu_s` of each step: other jobs on a shared machine move wall time far more), each
# size below the largest run this many times in its own process and its median run kept; the largest runs once.
GROWTH_REPEATS = 3
# OpenMP's threads (LightGBM's) wait for work by spinning: on a machine with more runnable threads than cores, one
# LightGBM fit measured 13 times the CPU and 15 times the wall time of the same fit with sleeping threads. The steps
# run with sleeping threads, so that their CPU time is their work.
STEP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
# step: (its CPU figure judged, its label, the raw reference's CPU figure and label)
GROWTH_ROWS = {
    "features": ("features", "features (groups read back and built)", "read_parquet", "reading the Parquet files"),
    "train": ("train", "train", "raw_fits", "raw fits of the chosen learners"),
    "score": ("score_with_reasons", "score with reasons", "raw_predict", "raw `booster.predict`"),
}


def dataset(n_accounts: int) -> tuple[Path, dict | None]:
    """The cached Parquet export for this size; generated (and timed) when missing."""
    folder = ROOT / "data" / f"accounts-{n_accounts}"
    if (folder / "accounts.parquet").exists():
        return folder, None
    return folder, generator_bench.run(n_accounts, folder, file_format="parquet", seed=SEED)


def step(name: str, folder: Path, *extra: Path) -> dict:
    """One bench step in its own process: its figures (the JSON line it prints last)."""
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-m", "bench.steps", name, str(folder), *map(str, extra)],
        cwd=REPO,
        env={**os.environ, **STEP_ENV},
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise RuntimeError(f"bench step {name} failed:\n{child.stderr[-3000:]}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    figures["process_wall_s"] = time.perf_counter() - started
    return figures


def growth(sizes: list[int], seconds: list[float]) -> float:
    """Exponent k in time ~ size^k between the smallest and largest size (1 = linear)."""
    return math.log(seconds[-1] / seconds[0]) / math.log(sizes[-1] / sizes[0])


def judged(name: str, figures: dict) -> float:
    """The CPU seconds a step's growth is judged on."""
    return figures["cpu_s"][GROWTH_ROWS[name][0]]


def median_run(name: str, runs: list[dict]) -> dict:
    """The run whose judged CPU time is the median (the lower middle of an even count), with every run's judged CPU
    time beside its figures (`cpu_runs`, in the order run) for the spread."""
    ranked = sorted(runs, key=lambda figures: judged(name, figures))
    return {**ranked[(len(ranked) - 1) // 2], "cpu_runs": [judged(name, figures) for figures in runs]}


def optional(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def run(quick: bool, only: set[str] | None) -> dict:
    sizes = list(QUICK_SIZES if quick else FULL_SIZES)

    def wanted(name: str) -> bool:
        return only is None or name in only

    results: dict = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "sizes": sizes,
        "quick": quick,
    }
    folders = {}
    for n in sizes:
        folders[n], generated = dataset(n)
        if generated and n == sizes[-1]:
            results["generator"] = generated
    if wanted("generator") and "generator" not in results:
        with tempfile.TemporaryDirectory() as tmp:
            results["generator"] = generator_bench.run(sizes[-1], Path(tmp), file_format="parquet", seed=SEED)
    with tempfile.TemporaryDirectory(prefix="tiering-bench-") as scratch:
        # Scoring: the model trained on the smallest export scores every size (the book's growth alone), trained once.
        model = (folders[sizes[0]], Path(scratch) / "scorer.pickle")
        for name in ("features", "train", "score", "forecast"):
            if not wanted(name):
                continue
            results[name] = {}
            for n in sizes:
                repeats = GROWTH_REPEATS if name in GROWTH_ROWS and n != sizes[-1] else 1
                runs = []
                for repeat in range(repeats):
                    print(f"[bench] {name} at {n:,} accounts ({repeat + 1} of {repeats})", flush=True)
                    runs.append(step(name, folders[n], *(model if name == "score" else ())))
                results[name][n] = median_run(name, runs) if name in GROWTH_ROWS else runs[0]
    for name, module in (
        ("serving", "bench.serving_bench"),
        ("load", "bench.load_bench"),
        ("alerts", "bench.alerts_bench"),
        ("review", "bench.review_bench"),
        ("whatif", "bench.whatif_bench"),
        ("workspace", "bench.workspace"),
        ("map", "bench.map_bench"),
        ("families", "bench.family_bench"),
    ):
        loaded = optional(module)
        if wanted(name) and loaded is not None:
            print(f"[bench] {name}", flush=True)
            results[name] = loaded.run(quick=quick)
    return results


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def markdown(results: dict) -> str:
    sizes = results["sizes"]
    top = sizes[-1]
    lines = [
        f"Measured on {results['machine']['cpus']} cores, Python {results['machine']['python']}"
        f"{' (quick sizes)' if results['quick'] else ''}. Each figure sits beside its raw reference from the same run.",
        "",
        "| step | figure | reference | ratio | goal | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    generator = results.get("generator")
    if generator:
        rows = generator["rows"]
        lines.append(
            f"| generate {generator['n_accounts']:,} accounts ({rows.get('opportunities.parquet', 0):,} opportunities, "
            f"{rows.get('engagement.parquet', 0):,} events) | {_fmt(generator['generator_seconds'])} s | - | - | "
            f"well under 120 s, < 4 GB | {_fmt(generator['peak_rss_mb'], 0)} MB |"
        )
    if "features" in results:
        f = results["features"][top]
        lines.append(
            f"| point-in-time features, {f['opportunity_rows']:,} opportunity rows + {f['accounts']:,} accounts over "
            f"{f['engagement_events']:,} events | {_fmt(f['features_s'])} s (+ {_fmt(f['load_and_validate_s'])} s load "
            f"and validate) | read Parquet {_fmt(f['read_parquet_s'])} s | "
            f"{_fmt(f['features_s'] / f['read_parquet_s'])}x | < 120 s, < 8 GB | {_fmt(f['peak_rss_mb'], 0)} MB |"
        )
    if "train" in results:
        t = results["train"][top]
        lines.append(
            f"| `tiering train` (learner search on), {t['training_rows']:,} closed opportunities | "
            f"{_fmt(t['train_s'])} s, of which the search {_fmt(t.get('search_s', 0))} s "
            f"({t.get('search_share', 0):.0%}; the finalists on the rolling folds {_fmt(t.get('folds_s', 0))} s, "
            f"{t.get('folds_share', 0):.0%}); chose {t.get('chosen', '?')} | raw fits of the chosen learners "
            f"{_fmt(t['raw_fits_s'])} s | {_fmt(t['ratio'], 2)}x | < 120 s; peak <= {TRAIN_PEAK_GOAL_MB:,} MB (was "
            f"{TRAIN_PEAK_BEFORE_MB:,} MB) | {_fmt(t['peak_rss_mb'], 0)} MB |"
        )
        pipeline = sum(seconds for name, seconds in t.get("steps_s", {}).items() if name.startswith("pipeline"))
        if pipeline:
            lines.append(
                f"| ... of which the pipeline-propensity learner, its count model and time to close | "
                f"{_fmt(pipeline)} s | the same training without them {_fmt(t['train_s'] - pipeline)} s | "
                f"+{pipeline / (t['train_s'] - pipeline):.0%} | <= +50% | |"
            )
    if "score" in results:
        s = results["score"][top]
        lines.append(
            f"| `tiering score`, {s['accounts']:,} accounts | {_fmt(s['score_per_s'], 0)} accounts/s | raw "
            f"`booster.predict` {_fmt(s['raw_predict_per_s'], 0)}/s | {_fmt(s['ratio'], 2)} | >= 0.5 | "
            f"{_fmt(s['peak_rss_mb'], 0)} MB |"
        )
        lines.append(
            f"| ... with the three reasons (path attribution) | {_fmt(s['score_with_reasons_per_s'], 0)} accounts/s | "
            f"raw "
            f"`booster.predict` | {_fmt(s['ratio_with_reasons'], 3)} | - | |"
        )
    if "forecast" in results:
        f = results["forecast"][top]
        lines.append(
            f"| `tiering forecast`, {f['accounts']:,} accounts ({f['simulations']:,} simulations per tier) | "
            f"{_fmt(f['forecast_s'])} s | `tiering score` of the same book {_fmt(f['score_s'])} s | "
            f"{_fmt(f['ratio'], 2)}x | <= 2x | {_fmt(f['peak_rss_mb'], 0)} MB |"
        )
    serving = results.get("serving")
    if serving and "markdown_rows" in serving:
        lines.extend(serving["markdown_rows"])
    load = results.get("load")
    if load and "markdown_rows" in load:
        lines.extend(load["markdown_rows"])
    alerts = results.get("alerts")
    if alerts and "markdown_rows" in alerts:
        lines.extend(alerts["markdown_rows"])
    review = results.get("review")
    if review and "markdown_rows" in review:
        lines.extend(review["markdown_rows"])
    whatif = results.get("whatif")
    if whatif and "markdown_rows" in whatif:
        lines.extend(whatif["markdown_rows"])
    for name in ("workspace", "map", "families"):
        figures = results.get(name)
        if figures and "markdown_rows" in figures:
            lines.extend(figures["markdown_rows"])
    lines += growth_table(results)
    return "\n".join(lines) + "\n"


def growth_table(results: dict) -> list[str]:
    """The growth with size of the steps measured at every size with their CPU times, each exponent beside its goal,
    the exponent before (the issue's, on wall time) and the raw reference's exponent from the same runs."""
    sizes = results["sizes"]
    scaled = [
        name for name in GROWTH_ROWS if name in results and all("cpu_s" in results[name].get(n, {}) for n in sizes)
    ]
    if not scaled:
        return []
    runs = max(len(results[name][n].get("cpu_runs", [])) for name in scaled for n in sizes[:-1])
    lines = [
        "",
        f"Growth with size ({', '.join(f'{n:,}' for n in sizes)} accounts): CPU seconds (`time.process_time`), "
        + (
            f"the median of {runs} runs below the largest size (their range in brackets) and one run at it; "
            if runs > 1
            else "one run each; "
        )
        + "exponent k in time ~ size^k between the smallest and the largest size, 1 = linear (in brackets: k over "
        "the smallest size's runs):",
        "",
        "| step | " + " | ".join(f"{n:,}" for n in sizes) + " | k | goal | before (wall) | reference | reference k |",
        "|---|" + "---|" * (len(sizes) + 5),
    ]
    for name in scaled:
        _, label, reference, reference_label = GROWTH_ROWS[name]
        at = [results[name][n] for n in sizes]
        seconds = [judged(name, figures) for figures in at]
        cells = [_cpu_cell(figures, name) for figures in at]
        spread = at[0].get("cpu_runs", [])
        k = f"{growth(sizes, seconds):.2f}"
        if len(spread) > 1:
            k += f" ({growth(sizes, [max(spread), seconds[-1]]):.2f}-{growth(sizes, [min(spread), seconds[-1]]):.2f})"
        references = [figures["cpu_s"][reference] for figures in at]
        lines.append(
            f"| {label} | {' | '.join(cells)} | {k} | <= {GROWTH_GOAL} | {GROWTH_BEFORE[name]:.2f} | "
            f"{reference_label} | {growth(sizes, references):.2f} |"
        )
        if name == "features":  # the build without reading groups back (a one-group book reads none); the import
            for part, part_label in (
                ("build", "... the build alone"),
                ("load_and_validate", "the import before it (read, validated, events written by group)"),
            ):
                seconds = [figures["cpu_s"][part] for figures in at]
                lines.append(
                    f"| {part_label} | {' | '.join(_fmt(value, 2) for value in seconds)} | "
                    f"{growth(sizes, seconds):.2f} | - | - | | |"
                )
    return lines


def _cpu_cell(figures: dict, name: str) -> str:
    runs = figures.get("cpu_runs", [])
    cell = _fmt(judged(name, figures), 2)
    return f"{cell} ({_fmt(min(runs), 2)}-{_fmt(max(runs), 2)})" if len(runs) > 1 else cell


def _around_table(page: Path) -> tuple[str, str]:
    """The hand-written text before and after the page's generated table; a clear error without its markers."""
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if text.count(TABLE_START) != 1 or text.count(TABLE_END) != 1 or end < start:
        raise SystemExit(
            f"{page}: the benchmark table goes between one '{TABLE_START}' line and one '{TABLE_END}' line after it; "
            "add them where the table belongs"
        )
    return text[:start], text[end + len(TABLE_END) :]


def write_table(page: Path, table: str) -> None:
    """Replace the table between the page's markers, leaving the rest of the page as written."""
    head, tail = _around_table(page)
    page.write_text(f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument(
        "--only",
        help="comma-separated steps: generator,features,train,score,forecast,serving,load,alerts,review,whatif,"
        "workspace,map",
    )
    args = parser.parse_args()
    if not args.quick:
        _around_table(DOCS_PAGE)  # before the long run, not after it
    results = run(args.quick, set(args.only.split(",")) if args.only else None)
    stored = ROOT / "results.json"
    if args.only and stored.exists():  # refresh only the steps that ran, keep the others' figures
        previous = json.loads(stored.read_text(encoding="utf-8"))
        if previous.get("quick") == args.quick:
            results = {**previous, **results}
    stored.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    results = json.loads(stored.read_text(encoding="utf-8"), object_hook=_int_keys)
    table = markdown(results)
    (ROOT / "results.md").write_text(table, encoding="utf-8")
    if not args.quick:
        write_table(DOCS_PAGE, table)
    print(table)


def _int_keys(mapping: dict) -> dict:
    """JSON turns the per-size keys into strings; turn them back."""
    return {int(k) if k.isdigit() else k: v for k, v in mapping.items()}


if __name__ == "__main__":
    main()
