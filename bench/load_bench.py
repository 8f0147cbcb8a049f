"""Bounded load test of `tiering serve` on loopback: good and bad requests together, at concurrency 16.

    python -m bench.load_bench [--quick]

Trains a champion on a synthetic export in a temporary MLflow store (bench/serving_bench.py's helpers),
starts the real `tiering serve` with an API key on a free 127.0.0.1 port, and runs 16 clients back to
back for 60 s (10 s with --quick): most send single-account `POST /score`, two send a 1,000-account
book to `POST /tier`, two send invalid requests (bad JSON, wrong types, more than 10,000 accounts, a
wrong key), after a warm-up under the same load (5 s; 60 s at full length). Reports throughput,
p50/p99 latency per kind of request, answers by class (each invalid request must get its 4xx; goal:
zero 5xx, zero timeouts), the server's RSS (the `bentoml serve` process and its workers) a few seconds
after the warm-up and after the measured load (what it keeps, not the books in flight at that instant;
goal: growth under 10%), its peak and its RSS the moment the load ended, and whether the key reached
its log.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

import httpx
import numpy as np
import psutil

from bench.serving_bench import BOOK as BOOK_ACCOUNTS
from bench.serving_bench import free_port, payloads, running_server, tracking_store, train_champion
from serving.requests import MAX_SCORE_ACCOUNTS

CLIENTS = {"single": 12, "book": 2, "invalid": 2}  # 16 in all
CONCURRENCY = sum(CLIENTS.values())
REQUEST_TIMEOUT_S = 30.0  # a request still unanswered after this counts as a timeout
RSS_SAMPLE_S = 0.5
# After each phase the clients stop and the server idles this long before its RSS is read: longer than the memory
# trimmer's wait (serving.memory), so what is read is what the server keeps, not a 1,000-account book in flight.
SETTLE_S = 4.0
# The server's working set under this load (two 1,000-account books validated and scored at once, beside the single
# accounts) takes about a minute to reach (docs/benchmarks.md has the readings). Growth after this warm-up is what the
# goal judges: memory kept, not warm-up.
WARM_UP_S = 60.0
GOAL_RSS_GROWTH = 0.10
JSON = {"content-type": "application/json"}
SINGLE, BOOK = "single-account /score", f"{BOOK_ACCOUNTS:,}-account /tier"


def _progress(step: str) -> None:
    print(f"[load bench] {step}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Call:
    kind: str  # how it is reported
    path: str
    body: bytes
    expected: int  # the status it must get
    wrong_key: bool = False


@dataclass(frozen=True)
class Outcome:
    kind: str
    answer: str  # the status code, or "timeout" / "connection_error"
    seconds: float
    expected: bool


def _calls(singles: list[bytes], book: bytes) -> dict[str, list[Call]]:
    """What each kind of client sends, in turn."""
    tier_book = json.dumps({**json.loads(book), "budget": 1_000_000}).encode()
    too_many = json.dumps({"accounts": [{"account_id": f"A{i}"} for i in range(MAX_SCORE_ACCOUNTS + 1)]}).encode()
    wrong_types = json.dumps(
        {
            "accounts": [
                {
                    "account_id": "A",
                    "employees": "many",
                    "annual_revenue": True,
                    "engagement": [{"timestamp": 5, "channel": ["web"]}],
                }
            ]
        }
    ).encode()
    return {
        "single": [Call(SINGLE, "/score", body, 200) for body in singles],
        "book": [Call(BOOK, "/tier", tier_book, 200)],
        "invalid": [
            Call("bad JSON", "/score", b'{"accounts": [{"account_id": ', 400),
            Call("wrong types", "/score", wrong_types, 400),
            Call(f"{MAX_SCORE_ACCOUNTS + 1:,} accounts", "/score", too_many, 400),
            Call("wrong key", "/score", singles[0], 401, wrong_key=True),
        ],
    }


def _send(client: httpx.Client, call: Call, key: str) -> Outcome:
    headers = {**JSON, "authorization": f"Bearer {'not-' + key if call.wrong_key else key}"}
    started = time.perf_counter()
    try:
        answer = str(client.post(call.path, content=call.body, headers=headers).status_code)
    except httpx.TimeoutException:
        answer = "timeout"
    except httpx.TransportError:
        answer = "connection_error"
    return Outcome(call.kind, answer, time.perf_counter() - started, answer == str(call.expected))


def _run_clients(base_url: str, key: str, calls: dict[str, list[Call]], seconds: float) -> tuple[list[Outcome], float]:
    """Every client sends its calls back to back until the time is up; all outcomes, and the seconds taken."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client_loop(own: list[Call], offset: int) -> None:
        mine = []
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
            for call in cycle(own[offset:] + own[:offset]):
                if time.perf_counter() >= stop:
                    break
                mine.append(_send(client, call, key))
        with lock:
            outcomes.extend(mine)

    threads = [
        threading.Thread(target=client_loop, args=(calls[role], index * 17 % len(calls[role])))
        for role, count in CLIENTS.items()
        for index in range(count)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


class RssSampler:
    """The RSS of a process and all its descendants, sampled in the background; `peak_mb` is the highest seen."""

    def __init__(self, process: psutil.Process):
        self.process = process
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now_mb(self) -> float:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:  # a worker that exited between listing and reading
                pass
        self.peak_mb = max(self.peak_mb, total / 2**20)
        return total / 2**20

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self.now_mb()


def _server_process(port: int) -> psutil.Process:
    """The `bentoml serve` process listening on `port` (`tiering serve` execs into it), a child of this one."""
    return next(child for child in psutil.Process().children() if f"--port {port}" in " ".join(child.cmdline()))


def _milliseconds(outcomes: list[Outcome]) -> dict:
    latencies = np.array([outcome.seconds for outcome in outcomes]) * 1000
    return {f"p{q}_ms": round(float(np.percentile(latencies, q)), 1) for q in (50, 99)}


def _answer_class(answer: str) -> str:
    return answer if not answer.isdigit() else f"{answer[0]}xx"


def _summary(outcomes: list[Outcome], seconds: float) -> dict:
    by_kind = {}
    for kind in dict.fromkeys(outcome.kind for outcome in outcomes):
        own = [outcome for outcome in outcomes if outcome.kind == kind]
        answers = {answer: sum(o.answer == answer for o in own) for answer in sorted({o.answer for o in own})}
        by_kind[kind] = {
            "requests": len(own),
            "per_s": round(len(own) / seconds, 1),
            **_milliseconds(own),
            "answers": answers,
            "unexpected": sum(not outcome.expected for outcome in own),
        }
    classes = ("2xx", "4xx", "5xx", "timeout", "connection_error")
    return {
        "requests": len(outcomes),
        "throughput_per_s": round(len(outcomes) / seconds, 1),
        **_milliseconds(outcomes),
        "answers": {name: sum(_answer_class(o.answer) == name for o in outcomes) for name in classes},
        "unexpected_answers": sum(not outcome.expected for outcome in outcomes),
        "by_kind": by_kind,
    }


def _settled(rss: RssSampler) -> float:
    time.sleep(SETTLE_S)
    return rss.now_mb()


def run(quick: bool = False) -> dict:
    n_accounts, seconds, warm_up_seconds = (1_500, 10.0, 5.0) if quick else (5_000, 60.0, WARM_UP_S)
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        folder = Path(tmp)
        store = f"sqlite:///{folder / 'store' / 'mlflow.db'}"
        with tracking_store(store):
            _progress(f"training a champion on {n_accounts:,} synthetic accounts")
            data, version = train_champion(folder, n_accounts)
            singles, book, _, _ = payloads(data, version)
        calls = _calls(singles, book)

        key = secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": store,
            "BENTOML_HOME": str(folder / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "TIERING_API_KEY": key,
        }
        port = free_port()
        base_url, log = f"http://127.0.0.1:{port}", folder / "tiering.log"
        _progress(
            f"starting tiering serve; then {CONCURRENCY} clients for {warm_up_seconds:g} s of warm-up "
            f"and {seconds:g} s measured"
        )
        command = [str(Path(sys.executable).parent / "tiering"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with running_server(command, f"{base_url}/readyz", env, log):
            with RssSampler(_server_process(port)) as rss:
                ready_mb = rss.now_mb()
                # The same load first, so the allocator's working set for it (concurrent 1,000-account requests
                # included) is in place: what grows after that is retained memory, not warm-up.
                _run_clients(base_url, key, calls, warm_up_seconds)
                start_mb = _settled(rss)
                outcomes, elapsed = _run_clients(base_url, key, calls, seconds)
                end_under_load_mb = rss.now_mb()
                end_mb = _settled(rss)
        server_log = log.read_text(errors="replace")

    summary = _summary(outcomes, elapsed)
    growth = end_mb / start_mb - 1
    result = {
        "accounts_in_export": n_accounts,
        "cpus": os.cpu_count(),
        "seconds": round(elapsed, 1),
        "concurrency": CONCURRENCY,
        "clients": CLIENTS,
        **summary,
        "warm_up_seconds": warm_up_seconds,
        "rss_mb": {
            "ready": round(ready_mb, 1),
            "start": round(start_mb, 1),
            "end": round(end_mb, 1),
            "end_under_load": round(end_under_load_mb, 1),
            "peak": round(rss.peak_mb, 1),
            "growth_pct": round(100 * growth, 1),
        },
        "server_log_mb": round(len(server_log.encode()) / 2**20, 2),
        "key_in_server_log": key in server_log,
    }
    result["goals_met"] = {
        "zero_5xx": summary["answers"]["5xx"] == 0,
        "zero_timeouts": summary["answers"]["timeout"] == 0,
        "every_answer_expected": summary["unexpected_answers"] == 0,
        "rss_growth_under_10pct": growth < GOAL_RSS_GROWTH,
        "key_never_logged": not result["key_in_server_log"],
    }
    result["markdown_rows"] = _markdown_rows(result)
    return result


def _markdown_rows(result: dict) -> list[str]:
    """Rows for bench/run.py's table: | step | figure | reference | ratio | goal | peak memory |."""
    answers, rss, kinds = result["answers"], result["rss_mb"], result["by_kind"]
    single, book = kinds[SINGLE], kinds[BOOK]
    invalid = [kind for kind in kinds if kind not in (SINGLE, BOOK)]
    return [
        f"| load test: concurrency {result['concurrency']} for {result['seconds']:g} s, mixed ({CLIENTS['single']} "
        f"clients single-account `/score`, {CLIENTS['book']} {BOOK_ACCOUNTS:,}-account `/tier`, "
        f"{CLIENTS['invalid']} invalid) | "
        f"{result['throughput_per_s']:,} req/s, p50 {result['p50_ms']:,} ms, p99 {result['p99_ms']:,} ms | "
        f"{answers['5xx']} 5xx, {answers['timeout']} timeouts, {result['unexpected_answers']} unexpected answers | - | "
        f"zero 5xx, RSS +<{GOAL_RSS_GROWTH:.0%} | settled after warm-up {rss['start']:,} MB -> after the load "
        f"{rss['end']:,} MB ({rss['growth_pct']:+}%), peak {rss['peak']:,} MB, as the load ended "
        f"{rss['end_under_load']:,} MB |",
        f"| ... single-account `/score` within it | {single['per_s']:,} req/s, p50 {single['p50_ms']:,} ms, "
        f"p99 {single['p99_ms']:,} ms | {BOOK}: {book['per_s']:,} req/s, p50 {book['p50_ms']:,} ms, "
        f"p99 {book['p99_ms']:,} ms | - | - | - |",
        f"| ... invalid requests within it ({', '.join(invalid)}) | "
        f"{sum(kinds[kind]['requests'] for kind in invalid):,} answered, "
        f"{sum(kinds[kind]['unexpected'] for kind in invalid)} not with their 400/401 | "
        f"key in the server log: {'yes' if result['key_in_server_log'] else 'no'} | - | "
        f"4xx only, key never logged | - |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s of load on a smaller export, instead of 60 s")
    arguments = parser.parse_args(argv)
    print(json.dumps(run(quick=arguments.quick), indent=1))


if __name__ == "__main__":
    main()
