"""`tiering whatif --no-backtest` of a book-size scenario that changes business knobs only, beside `tiering score`
of the same book (goal: at most 0.5x).

    python -m bench.whatif_bench [--accounts 100000]   (also part of `make bench`: --only whatif)

On the cached benchmark export (seeded, bench/data/): a model trained on the 10,000-account export of the same
generator (one LightGBM candidate: the learner is not what is measured), then, timed, each as a user runs it:
`tiering score` of the book (export read and validated, features built, model run, file written), the same scoring
published to the workspace store (not timed: the what-if reads it), and `tiering whatif --no-backtest` of a draft
changing weights, blend, two capacities and the budget (its accounts, moves and tiers tables and page written).
Side by side in one process each, on the same machine. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource

import yaml

from bench.processes import bench_figures, trained_setup

DRAFT = {
    "rule_weights": {"revenue_potential": 0.3, "business_fit": 0.3, "engagement": 0.4},
    "model": {"blend": 0.6},
    "tiers": {"tier_1": {"max_accounts": 50}, "tier_2": {"max_accounts": 800}},
    "budget": {"total": 2_000_000.0},
}


def measure(n_accounts: int) -> dict:
    with trained_setup(n_accounts) as setup:
        data, folder = str(setup.data), setup.folder
        draft = folder / "draft.yaml"
        draft.write_text(yaml.safe_dump(DRAFT), encoding="utf-8")
        score_s = setup.tiering_seconds("score", data, "--out", str(folder / "scores.parquet"))
        publish_s = setup.tiering_seconds("publish", str(folder / "scores.parquet"), "--data", data)
        whatif_s = setup.tiering_seconds(
            "whatif", data, "--config", str(draft), "--out", str(folder / "whatif"), "--no-backtest"
        )
        page_mb = (folder / "whatif" / "whatif.html").stat().st_size / 1e6
        moves = sum(1 for _ in (folder / "whatif" / "moves.csv").open()) - 1
    return {
        "accounts": n_accounts,
        "train_s": round(setup.train_s, 2),
        "score_s": round(score_s, 2),
        "publish_s": round(publish_s, 2),
        "whatif_s": round(whatif_s, 2),
        "ratio": round(whatif_s / score_s, 3),
        "moves": moves,
        "page_mb": round(page_mb, 2),
        "peak_rss_mb_children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 0),
    }


def run(quick: bool = False) -> dict:
    """`make bench`'s entry: 100,000 accounts (quick: 10,000), in its own process, with its table row."""
    n_accounts = 10_000 if quick else 100_000
    figures = bench_figures("bench.whatif_bench", n_accounts)
    figures["markdown_rows"] = [row(figures)]
    return figures


def row(figures: dict) -> str:
    return (
        f"| `tiering whatif --no-backtest`, {figures['accounts']:,} accounts (weights, blend, capacities, budget; "
        f"from the published scoring's parts; {figures['moves']:,} moves, tables and page written) | "
        f"{figures['whatif_s']:.1f} s | `tiering score` of the same book {figures['score_s']:.1f} s | "
        f"{figures['ratio']:.2f}x | <= 0.5x | {figures['peak_rss_mb_children']:,.0f} MB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.accounts)))


if __name__ == "__main__":
    main()
