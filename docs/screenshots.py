"""Regenerate the workspace screenshots in docs/img/ with a real browser (Playwright driving Debian's chromium).

    python docs/screenshots.py [--accounts 3000] [--out docs/img] [--keep FOLDER]

It builds a demo workspace the way a user would, with the CLI, in a temporary folder (or FOLDER with --keep):
`tiering demo` (a synthetic export, a trained champion), two scorings published a quarter apart (so accounts
have a tier history), an editor and a viewer, a pin and a flag; then starts `tiering serve` on 127.0.0.1 and
photographs each page signed in as the editor. Needs chromium (apt-get install chromium). Takes a few minutes,
most of it training (kept with --keep, so a second run only photographs).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TIERING = str(Path(sys.executable).parent / "tiering")
CHROMIUM = "/usr/bin/chromium"
EDITOR, VIEWER = ("maria", "correct-horse-battery"), ("sam", "staple-battery-horse")
EARLIER_AS_OF = "2026-03-31"  # the demo's export ends 2026-06-30: one quarter before
WIDTH, HEIGHT = 1400, 900


def run(folder: Path, env: dict[str, str], *arguments: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [TIERING, *arguments], cwd=folder, env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"tiering {' '.join(arguments)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build(folder: Path, env: dict[str, str], accounts: int) -> None:
    print(f"building a demo workspace in {folder} ({accounts:,} accounts; training takes a while)")
    if not (folder / "demo" / "scores.csv").exists():  # a kept folder already has its trained champion
        run(folder, env, "demo", "--out", "demo", "--accounts", str(accounts))
    data = folder / "demo" / "data"
    run(folder, env, "score", str(data), "--as-of", EARLIER_AS_OF, "--out", "earlier.csv", "--publish")
    run(folder, env, "score", str(data), "--out", "latest.csv", "--publish")
    run(folder, env, "users", "add", EDITOR[0], "--role", "editor", "--password-stdin", stdin=EDITOR[1] + "\n")
    run(folder, env, "users", "add", VIEWER[0], "--role", "viewer", "--password-stdin", stdin=VIEWER[1] + "\n")


def serve(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(folder / "server.log", "w")  # noqa: SIM115 - open for the server's life
    process = subprocess.Popen(
        [TIERING, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"tiering serve stopped:\n{(folder / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    sys.exit("tiering serve was not ready within 180 s")


def photograph(base_url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--enable-unsafe-swiftshader"]
        )
        context = browser.new_context(base_url=base_url, viewport={"width": WIDTH, "height": HEIGHT})
        page = context.new_page()
        page.set_default_timeout(30_000)

        def shoot(name: str, full_page: bool = True) -> None:
            path = out / f"workspace-{name}.png"
            page.screenshot(path=str(path), full_page=full_page)
            shots.append(path)

        page.goto("/app/login")
        shoot("login", full_page=False)
        page.fill("input[name=username]", EDITOR[0])
        page.fill("input[name=password]", EDITOR[1])
        page.click("button[type=submit]")
        page.wait_for_url("**/app/")
        shoot("book", full_page=False)

        # An account whose tier moved between the two scorings (its history has a move to explain) gets a pin and
        # a flag, as a salesperson questioning the move would.
        page.goto(_an_account_that_moved(page) or "/app/")
        if "/accounts/" not in page.url:
            page.locator("#book-results tbody tr a").first.click()
            page.wait_for_url("**/app/accounts/**")
        page.select_option("form[action$='/pin'] select[name=tier]", "tier_1")
        page.fill("form[action$='/pin'] input[name=reason]", "Signed an MSA last week; expansion planned")
        page.click("form[action$='/pin'] button")
        page.wait_for_selector("text=This pin holds")
        page.fill("form[action$='/flag'] textarea[name=comment]", "Deal size looks low for a company this size")
        page.click("form[action$='/flag'] button")
        page.wait_for_selector("text=Deal size looks low")
        shoot("account")

        page.goto("/app/map")
        page.wait_for_selector("#map[data-ready]")
        shoot("map", full_page=False)
        page.goto("/app/compare")
        shoot("compare")
        page.goto("/app/overrides")
        shoot("overrides")
        page.goto("/app/audit")
        shoot("audit")
        browser.close()
    return shots


def _an_account_that_moved(page) -> str | None:
    """The page of an account whose tier changed between the two scorings, for a history with a move in it."""
    page.goto("/app/?tier=tier_2")
    links = [link.get_attribute("href") for link in page.locator("#book-results tbody tr a").all()[:30]]
    for href in links:
        page.goto(href)
        if page.locator("ul.moves li").count():
            return href
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--keep", type=Path, help="build the workspace in this folder and keep it")
    arguments = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("Debian chromium is needed: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="workspace-shots-") as temporary:
        folder = (arguments.keep or Path(temporary)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "TIERING_DATABASE_URL": f"sqlite:///{folder / 'workspace.db'}",
            "BENTOML_HOME": str(folder / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
        }
        env.pop("TIERING_API_KEY", None)
        if not (folder / "latest.csv").exists():
            build(folder, env, arguments.accounts)
        process, base_url = serve(folder, env)
        try:
            for path in photograph(base_url, arguments.out.resolve()):
                print(f"wrote {path}")
        finally:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
