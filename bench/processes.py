"""The benches' child processes: a `tiering` command timed as a user runs it, and a bench module run alone (its
own interpreter, so one bench's memory never counts in another's peak)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiering_seconds(*args: str, env: dict, cwd: Path = REPO) -> float:
    """Wall time of `tiering ARGS` in a fresh process; a failure raises with the end of its output."""
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"tiering {' '.join(args)} failed:\n{child.stdout[-2000:]}\n{child.stderr[-2000:]}")
    return time.perf_counter() - started


def bench_figures(module: str, n_accounts: int) -> dict:
    """`python -m MODULE --accounts N` in its own process: the JSON line it prints last."""
    child = subprocess.run(
        [sys.executable, "-m", module, "--accounts", str(n_accounts)], cwd=REPO, capture_output=True, text=True
    )
    if child.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])
