"""Scoring a book in families against scoring it without (goal: at most 1.3x).

    python -m bench.family_bench [--accounts 100000]   (also part of `make bench`: --only families)

On the cached benchmark export (seeded, bench/data/), with the rules (the roll-up's cost is in the features and
in scoring each family once, not in the learner): `score_book` of the book with its parent links ignored
(`roll_up: none`), against `score_book` with every five consecutive accounts made one family (a parent, three
children and a grandchild: 20,000 families for 100,000 accounts) under `roll_up: family, tier_by: family`. The
export is read once, outside the timings. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

FAMILY_SIZE = 5


def run(quick: bool = False, accounts: int | None = None) -> dict:
    from bench.run import FULL_SIZES, QUICK_SIZES, dataset
    from features.activity import default_as_of
    from features.config import parse_model_config
    from features.schema import TABLES, CrmData
    from ingest.io import load_export
    from scoring.pyfunc import TieringModel

    n = accounts or (QUICK_SIZES if quick else FULL_SIZES)[-1]
    folder, _ = dataset(n)
    data = load_export(folder).data
    ids = data.accounts["account_id"].astype("str").to_numpy(dtype=object)
    position = np.arange(len(ids))
    top = position - position % FAMILY_SIZE
    parent = np.where(position % FAMILY_SIZE == 4, position - 1, top)  # the fifth is the fourth's child
    links = np.where(position == top, None, ids[np.minimum(parent, len(ids) - 1)])
    as_of = default_as_of(data)
    plain = TieringModel.rules_only(parse_model_config({}))
    families = TieringModel.rules_only(parse_model_config({"hierarchy": {"roll_up": "family", "tier_by": "family"}}))
    # Warm both paths up (imports, first calls) on a few families, so neither timing pays for it.
    few = CrmData(**{name: data.table(name)[data.table(name)["account_id"].isin(ids[:500])] for name in TABLES})
    few.accounts["parent_account_id"] = pd.Series(links[:500], dtype="str", index=few.accounts.index)
    plain.score_book(few, as_of)
    families.score_book(few, as_of)

    data.accounts["parent_account_id"] = pd.Series([None] * len(ids), dtype="str")
    started = time.perf_counter()
    plain.score_book(data, as_of, budget=1_000_000.0)
    without = time.perf_counter() - started

    data.accounts["parent_account_id"] = pd.Series(links, dtype="str")
    started = time.perf_counter()
    scored = families.score_book(data, as_of, budget=1_000_000.0)
    with_families = time.perf_counter() - started
    count = int(scored.scores["family_id"].nunique())
    ratio = with_families / without
    return {
        "accounts": len(ids),
        "families": count,
        "without_s": without,
        "with_families_s": with_families,
        "ratio": ratio,
        "markdown_rows": [
            f"| `tiering score`, {len(ids):,} accounts in {count:,} families (`roll_up: family`, `tier_by: family`, "
            f"rules) | {with_families:.1f} s | the same book without families {without:.1f} s | {ratio:.2f}x | "
            "<= 1.3x | - |"
        ],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=None)
    arguments = parser.parse_args()
    print(json.dumps(run(accounts=arguments.accounts)))
