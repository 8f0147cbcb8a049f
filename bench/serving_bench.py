"""Benchmark of the HTTP service against `mlflow models serve` of the same champion, on loopback.

    python -m bench.serving_bench [--quick]

Trains a champion on a synthetic export in a temporary MLflow store, starts `tiering serve` and
`mlflow models serve -m models:/abm-tiering@champion --env-manager local`, and measures on each:
sequential single-account latency (p50, p99), the same for one heavy account (1,000 engagement
events, a body of about 100 KB), one 1,000-account request, and throughput with 8 concurrent
clients, each client on one keep-alive connection of the standard library's `http.client` (the
median through httpx, which adds more time of its own, is kept beside it). `/score` takes the
raw account (fields, activity, deals) and builds the point-in-time features itself; MLflow's server
takes the already-built feature rows (the pyfunc input), so it does strictly less work per request.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd

GOAL_P50_MS, GOAL_P99_MS, GOAL_THROUGHPUT_RATIO = 5.0, 20.0, 2.0
CONCURRENCY = 8
BOOK = 1_000
HEAVY_EVENTS = 1_000  # the heavy account's engagement events: where the per-event costs of a request show
ROUNDS = 2  # both servers measured in turn, twice, so a burst of other load hits both alike
JSON = {"content-type": "application/json"}


def _progress(step: str) -> None:
    print(f"[serving bench] {step}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_champion(folder: Path, n_accounts: int):
    """A synthetic export and a champion trained on it with the default model settings."""
    from configuration.tiering import load_config, parse_config
    from ingest.io import load_export
    from sources.synthetic import generate_export
    from training.workflow import promote, train_and_register

    generate_export(folder / "data", n_accounts=n_accounts, seed=7)
    data = load_export(folder / "data").data
    settings = load_config(None).model_dump(mode="json")
    settings["model"]["gate"].update(min_won=10, min_lost=10)  # a benchmark measures speed, not model quality
    outcome = train_and_register(data, parse_config(settings), None, lambda step: None)
    if not outcome.decision.promote:
        promote(outcome.version)
    return data, outcome.version


@contextmanager
def running_server(command: list[str], ready_url: str, env: dict, log: Path) -> Iterator[None]:
    with open(log, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _feature_rows(data, scorer_config, ids: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
    from features.pointintime import FeatureBuilder, snapshot

    rows = snapshot(data, FeatureBuilder(data, scorer_config), as_of)
    return rows.set_index("account_id", drop=False).loc[ids].reset_index(drop=True)


def _split(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", date_format="iso", index=False))}


class _Connection:
    """One keep-alive HTTP/1.1 connection from the standard library, a client that adds little time of its own.

    httpx adds more time of its own (docs/benchmarks.md says how much), so its median is kept beside for comparison;
    both servers are measured through both."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self._path = parts.path
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def post(self, body: bytes) -> None:
        self._connection.request("POST", self._path, body=body, headers=JSON)
        response = self._connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{self._path} answered {response.status}")

    def close(self) -> None:
        self._connection.close()


def _httpx_connection(url: str):
    client = httpx.Client(timeout=120)

    class Connection:
        def post(self, body: bytes) -> None:
            client.post(url, content=body, headers=JSON).raise_for_status()

        def close(self) -> None:
            client.close()

    return Connection()


def _latencies(url: str, bodies: list[bytes], repeats: int, connect=_Connection) -> list[float]:
    connection = connect(url)
    try:
        for body in bodies[:20]:  # warm-up
            connection.post(body)
        latencies = []
        for i in range(repeats):
            started = time.perf_counter()
            connection.post(bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)
    finally:
        connection.close()
    return latencies


def _book_seconds(url: str, book: bytes) -> float:
    started = time.perf_counter()
    httpx.post(url, content=book, headers=JSON, timeout=300).raise_for_status()
    return time.perf_counter() - started


def _throughput(url: str, bodies: list[bytes], seconds: float) -> float:
    """Single-account requests per second from CONCURRENCY clients sending back to back."""
    done: list[int] = []
    stop = time.perf_counter() + seconds

    def client_loop(offset: int) -> None:
        count = 0
        connection = _Connection(url)
        try:
            while time.perf_counter() < stop:
                connection.post(bodies[(offset + count) % len(bodies)])
                count += 1
        finally:
            connection.close()
        done.append(count)

    threads = [threading.Thread(target=client_loop, args=(i * 17,)) for i in range(CONCURRENCY)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def _measure(url: str, bodies: list[bytes], heavy: bytes, book: bytes, seconds: float, repeats: int) -> dict:
    milliseconds = np.array(_latencies(url, bodies, repeats)) * 1000
    through_httpx = np.array(_latencies(url, bodies, repeats // 2, connect=_httpx_connection)) * 1000
    heavy_milliseconds = np.array(_latencies(url, [heavy], repeats)) * 1000
    return {
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "httpx_p50_ms": float(np.percentile(through_httpx, 50)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "heavy_p50_ms": float(np.percentile(heavy_milliseconds, 50)),
        "heavy_p99_ms": float(np.percentile(heavy_milliseconds, 99)),
        "book_seconds": _book_seconds(url, book),
        "throughput_per_s": _throughput(url, bodies, seconds),
    }


def _best(rounds: list[dict], repeats: int) -> dict:
    """Best figure of each kind over the rounds: the run least disturbed by other load on the machine."""
    return {
        "p50_ms": round(min(r["p50_ms"] for r in rounds), 2),
        "httpx_p50_ms": round(min(r["httpx_p50_ms"] for r in rounds), 2),
        "p99_ms": round(min(r["p99_ms"] for r in rounds), 2),
        "heavy_p50_ms": round(min(r["heavy_p50_ms"] for r in rounds), 2),
        "heavy_p99_ms": round(min(r["heavy_p99_ms"] for r in rounds), 2),
        "book_seconds": round(min(r["book_seconds"] for r in rounds), 3),
        "throughput_per_s": round(max(r["throughput_per_s"] for r in rounds), 1),
        "rounds": len(rounds),
        "sequential_requests_per_round": repeats,
    }


@contextmanager
def tracking_store(uri: str) -> Iterator[None]:
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def payloads(data, version: str) -> tuple[list[bytes], bytes, list[bytes], bytes]:
    """The same accounts and cut-off for both servers: raw accounts for `/score`, feature rows for MLflow."""
    from features.activity import default_as_of
    from scoring import registry
    from scoring.registry import load_model_for
    from serving.requests import account_payloads

    ids = data.accounts["account_id"].sample(n=BOOK, random_state=3).tolist()
    as_of = default_as_of(data)
    accounts = account_payloads(data, ids)
    ours_single = [json.dumps({"accounts": [a], "as_of": as_of.date().isoformat()}).encode() for a in accounts[:200]]
    ours_book = json.dumps({"accounts": accounts, "as_of": as_of.date().isoformat()}).encode()
    rows = _feature_rows(data, load_model_for(f"models:/{registry.MODEL_NAME}/{version}").config, ids, as_of)
    mlflow_single = [json.dumps(_split(rows.iloc[[i]])).encode() for i in range(200)]
    return ours_single, ours_book, mlflow_single, json.dumps(_split(rows)).encode()


def heavy_payloads(data, version: str) -> tuple[bytes, bytes, dict]:
    """One heavy account for both servers: the account with the fewest engagement events among those with at least
    HEAVY_EVENTS (the most engaged one if none has), cut to its latest HEAVY_EVENTS events; as a raw account for
    `/score` and as its feature row for MLflow, both from the same cut data."""
    from features.activity import default_as_of
    from features.schema import CrmData
    from scoring import registry
    from scoring.registry import load_model_for
    from serving.requests import account_payloads

    counts = data.engagement["account_id"].value_counts()
    enough = counts[counts >= HEAVY_EVENTS]
    account_id = enough.idxmin() if len(enough) else counts.idxmax()
    mine = {
        name: data.table(name)[data.table(name)["account_id"] == account_id]
        for name in ("accounts", "opportunities", "engagement", "intent")
    }
    mine["engagement"] = mine["engagement"].sort_values("timestamp", kind="stable").tail(HEAVY_EVENTS)
    heavy = CrmData(**{name: table.reset_index(drop=True) for name, table in mine.items()})
    as_of = default_as_of(data)  # the cut-off the single-account bodies use
    ours = json.dumps({"accounts": account_payloads(heavy, [account_id]), "as_of": as_of.date().isoformat()}).encode()
    row = _feature_rows(heavy, load_model_for(f"models:/{registry.MODEL_NAME}/{version}").config, [account_id], as_of)
    facts = {"events": len(heavy.engagement), "body_bytes": len(ours)}
    return ours, json.dumps(_split(row)).encode(), facts


def run(quick: bool = False) -> dict:
    from scoring import registry

    n_accounts, repeats, seconds = (1_500, 300, 5.0) if quick else (5_000, 1_000, 15.0)
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        folder = Path(tmp)
        store = f"sqlite:///{folder / 'store' / 'mlflow.db'}"
        with tracking_store(store):
            _progress(f"training a champion on {n_accounts:,} synthetic accounts")
            data, version = train_champion(folder, n_accounts)
            ours_single, ours_book, mlflow_single, mlflow_book = payloads(data, version)
            ours_heavy, mlflow_heavy, heavy = heavy_payloads(data, version)

        # `mlflow models serve` runs `uvicorn` from PATH, which lacks this venv when it is not activated.
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": store,
            "BENTOML_HOME": str(folder / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        env.pop("TIERING_API_KEY", None)
        ours_port, mlflow_port = free_port(), free_port()
        ours_command = [str(Path(sys.executable).parent / "tiering"), "serve", "--port", str(ours_port)]
        mlflow_command = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}",
            "--env-manager",
            "local",
            "-p",
            str(mlflow_port),
            "--host",
            "127.0.0.1",
        ]
        ours_url, mlflow_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{mlflow_port}"
        _progress("starting tiering serve and mlflow models serve")
        with (
            running_server(ours_command, f"{ours_url}/readyz", env, folder / "tiering.log"),
            running_server(mlflow_command, f"{mlflow_url}/ping", env, folder / "mlflow.log"),
        ):
            ours_rounds, mlflow_rounds = [], []
            for round_number in range(1, ROUNDS + 1):
                _progress(f"round {round_number} of {ROUNDS}")
                ours_rounds.append(_measure(f"{ours_url}/score", ours_single, ours_heavy, ours_book, seconds, repeats))
                mlflow_rounds.append(
                    _measure(f"{mlflow_url}/invocations", mlflow_single, mlflow_heavy, mlflow_book, seconds, repeats)
                )
    ours, reference = _best(ours_rounds, repeats), _best(mlflow_rounds, repeats)

    ratio = ours["throughput_per_s"] / reference["throughput_per_s"]
    return {
        "accounts_in_export": n_accounts,
        "cpus": os.cpu_count(),
        "concurrency": CONCURRENCY,
        "book_accounts": BOOK,
        "heavy_account": heavy,
        "tiering_serve": ours,
        "mlflow_models_serve": reference,
        "throughput_ratio": round(ratio, 2),
        "goals": {"p50_ms": GOAL_P50_MS, "p99_ms": GOAL_P99_MS, "throughput_ratio": GOAL_THROUGHPUT_RATIO},
        "goals_met": {
            "p50": ours["p50_ms"] <= GOAL_P50_MS,
            "p99": ours["p99_ms"] <= GOAL_P99_MS,
            "heavy_p50": ours["heavy_p50_ms"] <= GOAL_P50_MS,
            "throughput": ratio >= GOAL_THROUGHPUT_RATIO,
        },
        "markdown_rows": _markdown_rows(ours, reference, ratio, heavy),
    }


def _markdown_rows(ours: dict, reference: dict, ratio: float, heavy: dict) -> list[str]:
    """Rows for bench/run.py's table: | step | figure | reference | ratio | goal | peak memory |."""

    def cell(figures: dict, key: str, unit: str) -> str:
        return f"{figures[key]:,} {unit}"

    return [
        f"| `POST /score`, one account (raw activity in, features built per request), p50 | "
        f"{cell(ours, 'p50_ms', 'ms')} | "
        f"`mlflow models serve` of feature rows {cell(reference, 'p50_ms', 'ms')} | "
        f"{ours['p50_ms'] / reference['p50_ms']:.2f}x | <= {GOAL_P50_MS:g} ms | - |",
        f"| ... p50 through httpx (the client's own time included) | {cell(ours, 'httpx_p50_ms', 'ms')} | "
        f"{cell(reference, 'httpx_p50_ms', 'ms')} | {ours['httpx_p50_ms'] / reference['httpx_p50_ms']:.2f}x | - | - |",
        f"| ... p99 | {cell(ours, 'p99_ms', 'ms')} | {cell(reference, 'p99_ms', 'ms')} | "
        f"{ours['p99_ms'] / reference['p99_ms']:.2f}x | <= {GOAL_P99_MS:g} ms | - |",
        f"| `POST /score`, one heavy account ({heavy['events']:,} engagement events, "
        f"{heavy['body_bytes'] / 1000:,.0f} KB body), p50 | {cell(ours, 'heavy_p50_ms', 'ms')} | "
        f"its feature row {cell(reference, 'heavy_p50_ms', 'ms')} | "
        f"{ours['heavy_p50_ms'] / reference['heavy_p50_ms']:.2f}x | <= {GOAL_P50_MS:g} ms | - |",
        f"| ... p99 | {cell(ours, 'heavy_p99_ms', 'ms')} | {cell(reference, 'heavy_p99_ms', 'ms')} | "
        f"{ours['heavy_p99_ms'] / reference['heavy_p99_ms']:.2f}x | <= {GOAL_P99_MS:g} ms | - |",
        f"| `POST /score`, {BOOK:,} accounts in one request | {cell(ours, 'book_seconds', 's')} | "
        f"{cell(reference, 'book_seconds', 's')} | {ours['book_seconds'] / reference['book_seconds']:.2f}x | - | - |",
        f"| single-account throughput, {CONCURRENCY} concurrent clients | {cell(ours, 'throughput_per_s', 'req/s')} | "
        f"{cell(reference, 'throughput_per_s', 'req/s')} | {ratio:.2f}x | >= {GOAL_THROUGHPUT_RATIO:g}x | - |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller export, fewer requests")
    arguments = parser.parse_args(argv)
    print(json.dumps(run(quick=arguments.quick), indent=1))


if __name__ == "__main__":
    main()
