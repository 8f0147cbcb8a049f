"""The big Spark training bench: `tiering train --engine spark` on one machine at a size the pandas engine was
not built for, with the wall time and the peak resident memory of the whole process tree.

    python -m bench.spark_train_bench --accounts 300000 [--master local[2]] [--driver-memory 2g]
    make bench-big

Not part of the default `make bench` (at 300,000 accounts and about 62 million events it runs for a long
while on two cores). The export is generated once (seeded) and cached in bench/data/. The peak is the
largest sum, over one sample of /proc every half second, of the resident memory of the `tiering` process
and all its descendants: the Python driver, the Spark JVM and its Python workers. The command's output and
a timeline of that sum are written to bench/out/spark-train-N.log as it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.processes import REPO

SAMPLE_SECONDS = 0.5
TIMELINE_SECONDS = 10.0  # how often the log gets a line of the memory timeline
PEAK_STEP_MB = 100  # ... and a line whenever the peak has grown by this much since the last line
DRIVER_MEMORY = "1536m"  # the Spark driver JVM's heap (spark.driver.memory); see docs/training.md
MAX_RESULT_SIZE = "2g"  # the feature rows the driver collects: about 1 GB at 300,000 accounts


KINDS = ("driver", "workers", "java", "other")


def tree_rss(root: psutil.Process) -> dict[str, int]:
    """Resident bytes of `root` and its descendants now, in total and by kind: the driver (the `tiering` Python
    process itself), its Python workers (Spark's daemon and the workers it forks), the Spark JVM, other."""
    out = dict.fromkeys(("total", *KINDS), 0)
    seen: dict[int, tuple[int, int]] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            memory = process.memory_info()
            name, parent = process.name(), process.ppid()
        except psutil.Error:  # ended between the listing and the reading
            continue
        seen[process.pid] = (memory.rss, memory.vms)
        rss = memory.rss
        if seen.get(parent) == (rss, memory.vms):
            # A child still in its parent's address space (the JVM spawning a command: vfork, before its exec)
            # reports the parent's memory as its own: not a byte more is resident.
            continue
        kind = (
            "driver"
            if process.pid == root.pid
            else "java"
            if name.startswith("java")
            else "workers"
            if name.startswith("python")
            else "other"
        )
        out[kind] += rss
        out["total"] += rss
    return out


def measure(n_accounts: int, master: str, driver_memory: str) -> dict:
    from bench.run import dataset

    folder, generated = dataset(n_accounts)
    log_path = REPO / "bench" / "out" / f"spark-train-{n_accounts}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spark-train-bench-") as tmp, log_path.open("w") as log:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{Path(tmp) / 'mlflow.db'}",
            # The driver JVM's heap: set before the JVM starts, as a user would (see docs/training.md).
            "PYSPARK_SUBMIT_ARGS": f"--driver-memory {driver_memory} --conf spark.driver.maxResultSize="
            f"{MAX_RESULT_SIZE} pyspark-shell",
        }
        command = [sys.executable, "-m", "cli.main", "train", str(folder), "--engine", "spark"]
        command += ["--spark-master", master]
        log.write(f"$ {' '.join(command)}  (driver memory {driver_memory})\n")
        log.flush()
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(child.pid)
        peak: dict[str, int] = {"total": 0}
        peak_by_kind = dict.fromkeys(KINDS, 0)
        next_line, logged_peak = 0.0, 0
        while child.poll() is None:
            now = tree_rss(root)
            if now["total"] > peak["total"]:
                peak = now
            for kind in peak_by_kind:
                peak_by_kind[kind] = max(peak_by_kind[kind], now[kind])
            elapsed = time.perf_counter() - started
            # Every TIMELINE_SECONDS, and whenever the peak grows by PEAK_STEP_MB, so a short peak is seen too.
            due = elapsed >= next_line
            if due or peak["total"] - logged_peak >= PEAK_STEP_MB * 2**20:
                mb = {kind: f"{value / 2**20:,.0f}" for kind, value in now.items()}
                log.write(
                    f"[bench {elapsed:7.1f} s] tree RSS {mb['total']} MB (driver {mb['driver']}, workers "
                    f"{mb['workers']}, java {mb['java']}); peak {peak['total'] / 2**20:,.0f} MB\n"
                )
                log.flush()
                logged_peak = peak["total"]
            if due:
                next_line += TIMELINE_SECONDS
            time.sleep(SAMPLE_SECONDS)
        wall = time.perf_counter() - started
        log.write(f"[bench] exit {child.returncode} after {wall:.1f} s; peak {peak['total'] / 2**20:,.0f} MB\n")
    if child.returncode != 0:
        raise RuntimeError(f"tiering train --engine spark failed (exit {child.returncode}): see {log_path}")
    return {
        "accounts": n_accounts,
        "master": master,
        "driver_memory": driver_memory,
        "generated": generated,
        "train_s": round(wall, 1),
        "peak_rss_mb": round(peak["total"] / 2**20),
        "peak_rss_mb_at_peak_by_kind": {kind: round(peak[kind] / 2**20) for kind in KINDS},
        "peak_rss_mb_by_kind": {kind: round(value / 2**20) for kind, value in peak_by_kind.items()},
        "log": str(log_path.relative_to(REPO)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=300_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default=DRIVER_MEMORY)
    args = parser.parse_args()
    print(json.dumps(measure(args.accounts, args.master, args.driver_memory)))


if __name__ == "__main__":
    main()
