"""The workspace store at book size: publishing a scoring, and one filtered, sorted book page, each beside its raw
reference on the same database (goals: publish at most 2x the raw bulk insert; the page's p50 at most 100 ms).

    python -m bench.workspace [--quick] [--accounts N]   (also part of `make bench`: --only workspace)

SQLite: `WorkspaceStore.publish` of a scores frame of N accounts (every column, the accounts' names) against
`executemany` of the same rows, already as tuples, into the same table of a fresh store. PostgreSQL (a throw-away
cluster, when the binaries are installed): against `COPY` of the same rows. The page (tiers 2 and 3 of one
industry, by learned score): `book_page` (the rows, the total, tier counts and budget, pins and flags of the rows)
against the one raw SELECT of the same rows; then the p50 of other kinds of page a user opens. Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

FULL_ACCOUNTS = 100_000
QUICK_ACCOUNTS = 10_000
PAGE_REPEATS = 21
TIERS = ("tier_1", "tier_2", "tier_3", "untiered")


def book(count: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A scores frame with every scores-file column, and its accounts (name, industry, country, employees, owner)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"ACC-{i:07d}" for i in range(count)], dtype=object)
    learned = rng.random(count) * 100
    tier = np.where(
        learned > 99.98, "tier_1", np.where(learned > 99.5, "tier_2", np.where(learned > 40, "tier_3", "untiered"))
    )
    win = rng.random(count)
    deal = rng.lognormal(10, 1, count)
    scores = pd.DataFrame(
        {
            "account_id": ids,
            "revenue_potential_score": rng.random(count) * 100,
            "business_fit_score": rng.random(count) * 100,
            "engagement_score": rng.random(count) * 100,
            "rule_score": rng.random(count) * 100,
            "rule_tier": rng.choice(TIERS, count),
            "win_probability": win,
            "expected_deal_size": deal,
            "expected_value": win * deal,
            "learned_score": learned,
            "learned_tier": tier,
            "tier": tier,
            "override_reason": "",
            "budget": rng.random(count) * 1000,
            "intent_surge": rng.random(count) < 0.05,
            "reason_1": "Won 3 of its last 4 deals",
            "reason_2": "Industry is in the ICP",
            "reason_3": "Engagement up in the last 30 days",
            "model_version": "12",
            "scored_at": "2026-07-01T09:30:00+00:00",
            "as_of": "2026-07-01",
            "surge_channels": "",
            "pipeline_probability": rng.random(count),
            "expected_revenue": rng.random(count) * 1e5,
            "pilot_group": "",
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "account_name": [f"Company {i}" for i in range(count)],
            "industry": rng.choice(["software", "healthcare", "retail", "finance", "manufacturing"], count),
            "country": rng.choice(["United States", "Germany", "France", "Japan"], count),
            "employees": rng.integers(1, 50_000, count).astype(float),
            "owner": rng.choice([f"rep{i}@example.com" for i in range(40)], count),
        }
    )
    return scores, accounts


def _publish(store, scores, accounts) -> float:
    started = time.perf_counter()
    store.publish(scores, accounts, as_of="2026-07-01", model_version="12", configuration={}, published_by="bench")
    return time.perf_counter() - started


def _rows(store, scores, accounts) -> tuple[list[str], list[tuple]]:
    """The rows exactly as publish stores them, under scoring id 1 (the reference inserts them, already built)."""
    built = store.scored_rows(scores, accounts)
    columns = ["scoring_id", *built]
    return columns, list(zip([1] * len(scores), *built.values()))


def _fresh(url: str):
    from workspace import WorkspaceStore

    store = WorkspaceStore.open(url)
    with store.engine.begin() as connection:  # a scoring row for the raw rows' foreign key
        connection.execute(
            text(
                "INSERT INTO scorings (id, as_of, model_version, configuration, published_by, published_at, "
                "account_count, source) VALUES (1, '2026-07-01', 'raw', '{}', 'bench', '2026-07-01', 0, '')"
            )
        )
    return store


def raw_sqlite(url: str, columns: list[str], rows: list[tuple]) -> float:
    import sqlite3

    store = _fresh(url)
    path = store.engine.url.database
    store.close()
    connection = sqlite3.connect(path)
    marks = ", ".join("?" for _ in columns)
    started = time.perf_counter()
    connection.executemany(f"INSERT INTO scored_accounts ({', '.join(columns)}) VALUES ({marks})", rows)
    connection.commit()
    seconds = time.perf_counter() - started
    connection.close()
    return seconds


def raw_copy(url: str, columns: list[str], rows: list[tuple]) -> float:
    import psycopg

    store = _fresh(url)
    store.close()
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as connection:
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY scored_accounts ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        connection.commit()
        return time.perf_counter() - started


PAGE_SQL = (
    "SELECT * FROM scored_accounts WHERE scoring_id = :scoring AND tier IN ('tier_2', 'tier_3') "
    "AND industry = 'software' ORDER BY learned_score DESC NULLS LAST, account_id LIMIT 50 OFFSET 100"
)


def mixed_pages(store) -> dict[str, float]:
    """p50 seconds of each of several kinds of page a user opens (filters and sorts), page 3 of 50 rows."""
    from workspace import BookFilter

    kinds = {
        "whole book by learned score": (BookFilter(), "learned_score"),
        "text search": (BookFilter(q="company 12"), "learned_score"),
        "an owner's accounts by name": (BookFilter(owner="rep3@example.com"), "account_name"),
        "learned and rule disagree, by expected revenue": (BookFilter(disagree=True), "expected_revenue"),
        "surging": (BookFilter(surge=True), "learned_score"),
        "not pinned": (BookFilter(pinned=False), "learned_score"),
        "tier 1 by win probability": (BookFilter(tier="tier_1"), "win_probability"),
    }
    medians = {}
    for label, (where, sort) in kinds.items():
        seconds = []
        for _ in range(7):
            started = time.perf_counter()
            store.book_page(where, sort=sort, direction="desc", page=3, page_size=50)
            seconds.append(time.perf_counter() - started)
        medians[label] = statistics.median(seconds)
    return medians


def page_times(store, scoring_id: int) -> tuple[float, float]:
    """p50 seconds of the store's book page and of the raw SELECT of the same rows."""
    from workspace import BookFilter

    where = BookFilter(tier=["tier_2", "tier_3"], industry="software")
    ours, raw = [], []
    expected = None
    for _ in range(PAGE_REPEATS):
        started = time.perf_counter()
        page = store.book_page(where, sort="learned_score", direction="desc", page=3, page_size=50)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        with store.engine.connect() as connection:
            found = connection.execute(text(PAGE_SQL), {"scoring": scoring_id}).all()
        raw.append(time.perf_counter() - started)
        expected = [row.account_id for row in found]
    assert [row["account_id"] for row in page.rows] == expected, "the store's page differs from the raw query's"
    return statistics.median(ours), statistics.median(raw)


@contextlib.contextmanager
def _postgres() -> Iterator[str | None]:
    from tests.postgres import ClusterUnavailable, postgres_cluster

    try:
        with postgres_cluster() as url:
            yield url
    except ClusterUnavailable as error:
        print(f"[bench] workspace on PostgreSQL skipped: {error}", file=sys.stderr)
        yield None


def _database(server: str, name: str) -> str:
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def measure(accounts_count: int) -> dict:
    from workspace import WorkspaceStore

    scores, accounts = book(accounts_count)
    results: dict = {"accounts": accounts_count}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'workspace.db'}"
        store = WorkspaceStore.open(url)
        columns, rows = _rows(store, scores, accounts)
        publish_s = _publish(store, scores, accounts)
        page_s, raw_page_s = page_times(store, 1)
        mixed = mixed_pages(store)
        store.close()
        raw_s = raw_sqlite(f"sqlite:///{Path(folder) / 'raw.db'}", columns, rows)
        results["sqlite"] = {
            "publish_s": publish_s,
            "raw_s": raw_s,
            "page_s": page_s,
            "raw_page_s": raw_page_s,
            "pages_s": mixed,
        }
    with _postgres() as server:
        if server is not None:
            store = WorkspaceStore.open(_database(server, "bench_store"))
            publish_s = _publish(store, scores, accounts)
            page_s, raw_page_s = page_times(store, 1)
            mixed = mixed_pages(store)
            store.close()
            raw_s = raw_copy(_database(server, "bench_raw"), columns, rows)
            results["postgresql"] = {
                "publish_s": publish_s,
                "raw_s": raw_s,
                "page_s": page_s,
                "raw_page_s": raw_page_s,
                "pages_s": mixed,
            }
    return results


def markdown_rows(results: dict) -> list[str]:
    rows = []
    for backend, raw_name in (("sqlite", "`executemany`"), ("postgresql", "`COPY`")):
        figures = results.get(backend)
        if not figures:
            continue
        label = "SQLite" if backend == "sqlite" else "PostgreSQL"
        rows.append(
            f"| workspace: publish {results['accounts']:,} accounts ({label}) | {figures['publish_s']:.2f} s | raw "
            f"{raw_name} of the same rows {figures['raw_s']:.2f} s | {figures['publish_s'] / figures['raw_s']:.2f}x "
            "| <= 2x | |"
        )
        rows.append(
            f"| workspace: filtered, sorted book page, p50 ({label}) | {figures['page_s'] * 1000:.1f} ms | raw "
            f"SELECT of the page {figures['raw_page_s'] * 1000:.1f} ms | "
            f"{figures['page_s'] / figures['raw_page_s']:.1f}x | <= 100 ms | |"
        )
        pages = figures["pages_s"]
        slowest = max(pages, key=pages.get)
        rows.append(
            f"| workspace: {len(pages)} other kinds of page, p50 of each ({label}) | median "
            f"{statistics.median(pages.values()) * 1000:.1f} ms, slowest {pages[slowest] * 1000:.1f} ms ({slowest}) "
            "| - | - | <= 100 ms | |"
        )
    return rows


def run(quick: bool = False, accounts: int | None = None) -> dict:
    results = measure(accounts or (QUICK_ACCOUNTS if quick else FULL_ACCOUNTS))
    results["markdown_rows"] = markdown_rows(results)
    return results


def sized_main(run_at: Callable[[bool, int | None], dict], description: str) -> None:
    """The command line of a book-size bench: --quick (QUICK_ACCOUNTS) or --accounts N; prints its results."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_ACCOUNTS:,} accounts instead of {FULL_ACCOUNTS:,}"
    )
    parser.add_argument("--accounts", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(run_at(args.quick, args.accounts)))


def main() -> None:
    sized_main(run, __doc__ or "")


if __name__ == "__main__":
    main()
