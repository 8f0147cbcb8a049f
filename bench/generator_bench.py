"""Benchmark of the synthetic CRM generator: wall time, peak memory and rows per file.

    python -m bench.generator_bench 100000 [--out DIR] [--format parquet|csv] [--seed S]

The generation runs in a fresh child process, so the peak resident memory it reports is the
generator's own and not that of whatever ran before it in this interpreter.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs in the child; prints one JSON line. ru_maxrss is in KiB on Linux and in bytes on macOS.
_CHILD = """
import json, resource, sys
from sources.synthetic import generate_export

out_dir, n_accounts, seed, file_format = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
summary = generate_export(out_dir, n_accounts=n_accounts, seed=seed, file_format=file_format)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({"rows": summary.rows, "win_rate": summary.win_rate, "seconds": summary.seconds, "peak_bytes": peak}))
"""


def run(n_accounts: int, out_dir: Path, file_format: str = "parquet", seed: int = 7) -> dict:
    """Generate `n_accounts` accounts into `out_dir` in a child process and return the figures."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(out_dir), str(n_accounts), str(seed), file_format],
        capture_output=True,
        text=True,
    )
    wall_seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"the generator failed (exit {child.returncode}):\n{child.stderr}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    rows = figures["rows"]
    return {
        "n_accounts": n_accounts,
        "file_format": file_format,
        "seed": seed,
        "wall_seconds": round(wall_seconds, 2),  # includes interpreter start and imports
        "generator_seconds": round(figures["seconds"], 2),
        "peak_rss_mb": round(figures["peak_bytes"] / 2**20, 1),
        "rows": rows,
        "engagement_rows_per_second": round(rows[f"engagement.{file_format}"] / figures["seconds"]),
        "win_rate": round(figures["win_rate"], 4),
        "file_mb": {name: round((out_dir / name).stat().st_size / 2**20, 1) for name in rows},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("accounts", type=int, nargs="?", default=100_000, help="number of accounts (default 100000)")
    parser.add_argument(
        "--out", type=Path, help="folder to write into (default: a temporary folder, removed afterwards)"
    )
    parser.add_argument("--format", dest="file_format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.out is not None:
        result = run(args.accounts, args.out, args.file_format, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="generator-bench-") as folder:
            result = run(args.accounts, Path(folder), args.file_format, args.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
