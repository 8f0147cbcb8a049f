"""`tiering review` at book size, beside the time to merely score the same book (goal: at most 2x).

    python -m bench.review_bench [--accounts 100000]   (also part of `make bench`: --only review)

On the cached benchmark export (seeded, bench/data/): a model trained as of 1 Mar 2026 on the 10,000-account
export of the same generator (one LightGBM candidate: the learner is not what is measured, and a review costs the
same whatever book the model learned from), `tiering score --as-of 2026-03-01 --budget` as the past scoring, then,
timed, each as a user runs it (export read and validated by each): `tiering score` of the book now, and `tiering
review` of the past scores against the export (page, tables and MLflow logging included). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource

from bench.processes import bench_figures, trained_setup

AS_OF = "2026-03-01"


def measure(n_accounts: int) -> dict:
    with trained_setup(n_accounts, "--as-of", AS_OF) as setup:
        data, folder = str(setup.data), setup.folder
        past = folder / "past.parquet"
        setup.tiering_seconds("score", data, "--as-of", AS_OF, "--budget", "1000000", "--out", str(past))
        score_s = setup.tiering_seconds("score", data, "--out", str(folder / "now.parquet"))
        review_s = setup.tiering_seconds(
            "review", str(past), data, "--out", str(folder / "review"), "--config", str(setup.config)
        )
        page_mb = (folder / "review" / "review.html").stat().st_size / 1e6
    return {
        "accounts": n_accounts,
        "train_s": round(setup.train_s, 2),
        "score_s": round(score_s, 2),
        "review_s": round(review_s, 2),
        "ratio": round(review_s / score_s, 2),
        "page_mb": round(page_mb, 2),
        "peak_rss_mb_children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 0),
    }


def run(quick: bool = False) -> dict:
    """`make bench`'s entry: 100,000 accounts (quick: 10,000), in its own process, with its table row."""
    n_accounts = 10_000 if quick else 100_000
    figures = bench_figures("bench.review_bench", n_accounts)
    figures["markdown_rows"] = [
        f"| `tiering review`, {n_accounts:,} accounts (a quarter after the past scoring; page, tables and MLflow "
        f"logging included) | {figures['review_s']:.1f} s | `tiering score` of the same book "
        f"{figures['score_s']:.1f} s | "
        f"{figures['ratio']:.2f}x | <= 2x | {figures['peak_rss_mb_children']:,.0f} MB |"
    ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.accounts)))


if __name__ == "__main__":
    main()
