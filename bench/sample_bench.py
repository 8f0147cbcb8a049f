"""The sample bound at the bench's largest book: `train` on all the window's rows and on `model.max_training_rows`
of them, both judged on the same (whole) holdout, beside the run's own learning-curve estimate of the effect.

    python -m bench.sample_bench [--accounts 100000] [--max-rows 200000]
    make bench-big

Each training runs in its own process (one run's memory never counts in the other's peak). Not part of the
default `make bench`: two trainings at 100,000 accounts take a few minutes and about 4 GB each.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from bench.processes import REPO

ALL_ROWS = 0  # --one 0: the default bound, which the bench's window fits in


def one(n_accounts: int, max_rows: int) -> dict:
    """One `train` (no MLflow) with `model.max_training_rows` = max_rows (0: the default)."""
    from bench.run import dataset
    from configuration.tiering import TieringConfig
    from ingest.io import load_export
    from training.pipeline import train

    folder, _ = dataset(n_accounts)
    data = load_export(folder).data
    config = TieringConfig()
    if max_rows:
        config = config.model_copy(update={"model": config.model.model_copy(update={"max_training_rows": max_rows})})
    started = time.perf_counter()
    result = train(data, config)
    seconds = time.perf_counter() - started
    metrics = result.metrics
    return {
        "max_training_rows": config.model.max_training_rows,
        "window_rows": result.summary["closed_opportunities"],
        "fitted_rows": result.summary["training_rows_fitted"],
        "holdout_rows": len(result.holdout),
        "learner": result.selection.recipe.describe(),
        "holdout_roc_auc": metrics["model_roc_auc"],
        "sample": {name: value for name, value in metrics.items() if name.startswith("sample_")},
        "notes": [note for note in result.notes if "sample" in note],
        "train_s": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def measure(n_accounts: int, max_rows: int) -> dict:
    runs = {}
    for label, rows in (("all", ALL_ROWS), ("sample", max_rows)):
        command = [sys.executable, "-m", "bench.sample_bench", "--accounts", str(n_accounts), "--one", str(rows)]
        child = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if child.returncode != 0:
            raise RuntimeError(f"bench.sample_bench --one {rows} failed:\n{child.stderr[-3000:]}")
        runs[label] = json.loads(child.stdout.strip().splitlines()[-1])
    difference = runs["all"]["holdout_roc_auc"] - runs["sample"]["holdout_roc_auc"]
    return {"accounts": n_accounts, **runs, "auc_all_minus_sample": difference}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--max-rows", type=int, default=200_000)
    parser.add_argument("--one", type=int, help="run one training with this bound (0: the default) and print it")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.accounts, args.one)))
    else:
        print(json.dumps(measure(args.accounts, args.max_rows)))


if __name__ == "__main__":
    main()
