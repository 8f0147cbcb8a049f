"""The priority map in a real browser: from navigation to the points drawn, beside plotly alone drawing the same
points on a static page without the server (goal: at most 2 s at 100,000 accounts).

    python -m bench.map_bench [--quick] [--accounts N]   (also part of `make bench`: --only map)

The workspace: a SQLite store with one published scoring of N accounts (bench.workspace's book), `tiering serve`
on it, Playwright driving Debian's chromium, signed in; the clock runs from `page.goto('/app/map')` until the map
marks itself drawn (`#map[data-ready=N]`, set when plotly's newPlot resolves): the page, plotly.js, the points'
JSON from the store, and the drawing. The reference: a file:// page loading the same plotly.js bundle and the
same N points inlined in one scattergl trace, from `goto` until its newPlot resolves. The median of REPEATS loads
each, after one warm-up load. Prints one JSON line.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.workspace import FULL_ACCOUNTS, QUICK_ACCOUNTS, book, sized_main

REPEATS = 3
CHROMIUM = Path("/usr/bin/chromium")
USER, PASSWORD = "bench", "bench-password-1"
DRAW_TIMEOUT_MS = 120_000

REFERENCE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>plotly alone</title></head>
<body><div id="map" style="width:1200px;height:640px"></div>
<script src="plotly.min.js"></script><script src="points.js"></script>
<script>
Plotly.newPlot("map", [{type: "scattergl", mode: "markers", x: POINTS.x, y: POINTS.y,
  marker: {size: 4, opacity: 0.75}}], {margin: {l: 60, r: 20, t: 10, b: 50}}, {displayModeBar: false})
  .then(function () { document.body.dataset.ready = "1"; });
</script></body></html>
"""


def _store(folder: Path, accounts: int) -> str:
    from workspace import WorkspaceStore

    url = f"sqlite:///{folder / 'workspace.db'}"
    scores, names = book(accounts)
    with WorkspaceStore.open(url) as store:
        store.publish(scores, names, as_of="2026-07-01", model_version="12", configuration={}, published_by="bench")
        store.add_user(USER, "viewer", PASSWORD)
    return url


def _reference_files(folder: Path, accounts: int) -> Path:
    """The static page, plotly.js beside it (the bundle the workspace ships) and the same points as a script."""
    from serving.workspace.app import PLOTLY

    scores, _ = book(accounts)
    (folder / "plotly.min.js").write_bytes(gzip.decompress(PLOTLY.read_bytes()))
    points = {
        "x": [round(value, 2) for value in scores["business_fit_score"]],
        "y": [round(value, 2) for value in scores["engagement_score"]],
    }
    (folder / "points.js").write_text(f"var POINTS = {json.dumps(points)};", encoding="utf-8")
    page = folder / "reference.html"
    page.write_text(REFERENCE_PAGE, encoding="utf-8")
    return page


def _timed_loads(page, url: str, ready: str) -> list[float]:
    """Seconds from navigation to `ready` matching, for one warm-up load and REPEATS measured ones."""
    seconds = []
    for _ in range(REPEATS + 1):
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector(ready, state="attached", timeout=DRAW_TIMEOUT_MS)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def measure(accounts: int) -> dict:
    from playwright.sync_api import sync_playwright

    from bench.serving_bench import running_server
    from tests.serving.conftest import free_port

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database_url = _store(folder, accounts)
        reference = _reference_files(folder, accounts)
        (folder / "mlflow").mkdir()
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow' / 'mlflow.db'}",
            "TIERING_DATABASE_URL": database_url,
            "TIERING_SESSION_SECRET": "a-benchmark-session-secret-of-enough-length-0123456789",
            "BENTOML_HOME": str(folder / "bentoml"),
        }
        env.pop("TIERING_API_KEY", None)
        command = [str(Path(sys.executable).parent / "tiering"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        with (
            running_server(command, f"{base_url}/readyz", env, folder / "tiering.log"),
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{base_url}/app/login")
                page.fill("input[name=username]", USER)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base_url}/app/")
                workspace = _timed_loads(page, f"{base_url}/app/map", f"#map[data-ready='{accounts}']")
                status = page.text_content("#map-status") or ""
                raw = _timed_loads(page, reference.as_uri(), "body[data-ready='1']")
            finally:
                browser.close()
    return {
        "accounts": accounts,
        "map_s": statistics.median(workspace),
        "raw_s": statistics.median(raw),
        "map_runs_s": workspace,
        "raw_runs_s": raw,
        "webgl": "no WebGL" not in status,
    }


def markdown_rows(results: dict) -> list[str]:
    if "map_s" not in results:
        return []
    drawn = "WebGL" if results["webgl"] else "SVG (no WebGL in this browser)"
    return [
        f"| workspace: priority map of {results['accounts']:,} accounts in Chromium, navigation to points drawn "
        f"({drawn}), median of {REPEATS} | {results['map_s']:.2f} s | plotly alone, the same points on a static "
        f"page {results['raw_s']:.2f} s | {results['map_s'] / results['raw_s']:.2f}x | <= 2 s | |"
    ]


def run(quick: bool = False, accounts: int | None = None) -> dict:
    if not CHROMIUM.exists():
        print("[bench] map skipped: Debian chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return {"skipped": "chromium is not installed"}
    results = measure(accounts or (QUICK_ACCOUNTS if quick else FULL_ACCOUNTS))
    results["markdown_rows"] = markdown_rows(results)
    return results


def main() -> None:
    sized_main(run, __doc__ or "")


if __name__ == "__main__":
    main()
