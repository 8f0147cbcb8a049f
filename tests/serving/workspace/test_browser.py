"""The workspace in a real browser (Playwright driving Debian's chromium) against a real `tiering serve`.

One server and one browser for the module. Every request each page makes is recorded, and none may leave
127.0.0.1. Without chromium these tests skip saying what to install; with REQUIRE_TEST_SERVICES=1 (CI) they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from serving.requests import ACCOUNT_EXAMPLE
from tests.serving.conftest import free_port, sqlite_uri
from tests.serving.test_live import wait_until_ready
from tests.serving.workspace.conftest import PASSWORDS, SECRET, XSS_NAME

CHROMIUM = Path("/usr/bin/chromium")
TIERING = str(Path(sys.executable).parent / "tiering")
KEY = "browser-test-api-key"

pytestmark = pytest.mark.slow


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = "Debian chromium is not installed (apt-get install chromium); the browser tests need it"
    if os.environ.get("REQUIRE_TEST_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Served:
    base_url: str
    database_url: str
    requests: list[str] = field(default_factory=list)  # every URL a page asked for


@pytest.fixture(scope="module")
def served(empty_template, store_template, tmp_path_factory) -> Iterator[Served]:
    require_chromium()
    folder = tmp_path_factory.mktemp("browser-server")
    (folder / "mlflow").mkdir()
    shutil.copy(empty_template / "mlflow.db", folder / "mlflow" / "mlflow.db")
    shutil.copy(store_template, folder / "workspace.db")
    port = free_port()
    database_url = f"sqlite:///{folder / 'workspace.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": sqlite_uri(folder / "mlflow"),
        "TIERING_DATABASE_URL": database_url,
        "TIERING_API_KEY": KEY,
        "TIERING_SESSION_SECRET": SECRET,
        "TIERING_RELOAD_SECONDS": "3600",
        "BENTOML_HOME": str(folder / "bentoml"),
    }
    log = folder / "server.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [TIERING, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base_url, log)
        yield Served(base_url, database_url)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def chromium_browser(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def unexpected(message) -> bool:
    """A console error other than the refusals these tests provoke on purpose (a 403 is one)."""
    return message.type == "error" and "the server responded with a status of 403" not in message.text


@pytest.fixture
def page_as(chromium_browser, served):
    """A fresh browser context signed in as a user; every request and console error recorded."""
    contexts = []
    problems: list[str] = []

    def open_as(user: str):
        context = chromium_browser.new_context(base_url=served.base_url)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("request", lambda request: served.requests.append(request.url))
        page.on("console", lambda message: problems.append(message.text) if unexpected(message) else None)
        page.on("dialog", lambda dialog: problems.append(f"a dialog opened: {dialog.message}"))
        page.goto("/app/")
        assert "/app/login" in page.url
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", PASSWORDS[user])
        page.click("button[type=submit]")
        page.wait_for_url("**/app/")
        return page

    yield open_as, problems
    for context in contexts:
        context.close()
    assert problems == [], problems  # no CSP violation, no script error, no alert
    off_site = [url for url in served.requests if urlparse(url).hostname != "127.0.0.1"]
    assert served.requests and off_site == []


def api_tier(served: Served, *ids: str) -> dict[str, dict]:
    body = {"accounts": [{**ACCOUNT_EXAMPLE, "account_id": account_id} for account_id in ids]}
    answer = httpx.post(f"{served.base_url}/tier", json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return {record["account_id"]: record for record in answer.json()["scores"]}


def test_an_editor_filters_opens_pins_flags_and_sees_the_audit(page_as, served):
    open_as, _ = page_as
    page = open_as("ed")
    # Filter the book: htmx swaps the results and pushes the link to share.
    page.select_option("select[name=tier]", "tier_3")
    page.wait_for_url(re.compile(r"/app/\?.*tier=tier_3"))
    rows = page.locator("#book-results tbody tr")
    assert rows.count() == 2 and "Beta Labs" in rows.first.inner_text()
    page.click("text=Beta Labs")
    page.wait_for_url("**/app/accounts/A2")
    assert "learned score 70 → 45" in page.inner_text("ul.moves")

    before = api_tier(served, "A1", "A2")["A2"]
    assert before["override_reason"] == ""
    page.select_option("form[action$='/pin'] select[name=tier]", "tier_1")
    page.fill("form[action$='/pin'] input[name=reason]", "signed an MSA")
    page.click("form[action$='/pin'] button")
    page.wait_for_selector("text=This pin holds")
    after = api_tier(served, "A1", "A2")["A2"]
    assert after["tier"] == "tier_1"
    assert after["override_reason"] == f"pinned to tier_1 by ed: signed an MSA (model said {before['learned_tier']})"

    page.fill("form[action$='/flag'] textarea[name=comment]", "deal size looks low")
    page.click("form[action$='/flag'] button")
    page.wait_for_selector("text=deal size looks low")
    page.goto("/app/audit?user=ed")
    actions = page.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert actions[:2] == ["flag", "pin"]

    page.goto("/app/accounts/X1")  # the account named like markup: text on the page, no script ran
    assert page.inner_text("h1").startswith(XSS_NAME)

    page.goto("/app/map")
    page.wait_for_selector("#map[data-ready='6']")
    assert page.locator("#map .main-svg").count() >= 1


def test_a_viewer_is_refused_and_a_form_without_its_token_too(page_as, served):
    open_as, _ = page_as
    viewer = open_as("vera")
    viewer.goto("/app/accounts/A3")
    assert viewer.locator("form[action$='/pin']").count() == 0
    token = viewer.get_attribute("form[action$='/flag'] input[name=csrf_token]", "value")
    refused = viewer.request.post(
        "/app/accounts/A3/pin", form={"tier": "tier_1", "reason": "x", "csrf_token": token}, max_redirects=0
    )
    assert refused.status == 403

    editor = open_as("ed")
    editor.goto("/app/accounts/A4")
    editor.evaluate("document.querySelector(\"form[action$='/flag'] input[name=csrf_token]\").remove()")
    editor.fill("form[action$='/flag'] textarea[name=comment]", "no token")
    with editor.expect_response(lambda answer: answer.url.endswith("/app/accounts/A4/flag")) as answered:
        editor.click("form[action$='/flag'] button")
    assert answered.value.status == 403
    editor.wait_for_selector("text=This form has expired")


def test_scenarios_are_previewed_saved_published_used_by_the_api_and_restored(page_as, served):
    open_as, _ = page_as
    viewer = open_as("vera")
    viewer.goto("/app/whatif")
    assert viewer.locator("form[action$='/whatif/publish']").count() == 0
    # An editor changes one weight pair and sees the moves and the budget per tier (the latest scoring: learned
    # scores A1 92, A3 61 lead; one Tier 1 seat leaves A3 in Tier 2).
    editor = open_as("ed")
    editor.goto("/app/whatif")
    editor.fill("input[name='tiers.tier_1.max_accounts']", "1")
    editor.fill("input[name='budget.total']", "1000")
    editor.click("form.whatif button[type=submit]")
    editor.wait_for_selector("#whatif-moves")
    assert editor.locator("#whatif-moves tbody tr").all_inner_texts()[0].startswith("A3")
    tiers = editor.locator("#whatif-tiers tbody tr").all_inner_texts()
    assert tiers[0].split("\t")[-1] == "$600"  # Tier 1's budget after: 60% of the 1,000, to its one account
    editor.fill("form[action$='/whatif/save'] input[name=name]", "one seat")
    editor.click("form[action$='/whatif/save'] button")
    editor.wait_for_url(re.compile(r"/app/whatif\?scenario=\d+"))
    assert editor.locator("form[action$='/whatif/publish']").count() == 0
    assert "one seat" in editor.inner_text("#whatif-scenarios")
    # The admin opens the saved scenario and publishes it: the API scores with it from the next request.
    admin = open_as("ada")
    admin.goto("/app/whatif")
    admin.click("#whatif-scenarios >> text=one seat")
    admin.wait_for_selector("#whatif-moves")
    ids = ["T1", "T2", "T3"]
    assert sum(record["tier"] == "tier_1" for record in api_tier(served, *ids).values()) == 3
    admin.fill("form[action$='/whatif/publish'] input[name=note]", "one Tier 1 seat")
    admin.click("form[action$='/whatif/publish'] button")
    admin.wait_for_url(re.compile(r"/app/whatif\?published=\d+"))
    assert "one Tier 1 seat" in admin.inner_text("#whatif-versions")
    assert sum(record["tier"] == "tier_1" for record in api_tier(served, *ids).values()) == 1
    # A second version, then the first restored from the list: back to one seat... and the defaults before it.
    admin.goto("/app/whatif")
    admin.fill("input[name='tiers.tier_1.max_accounts']", "2")
    admin.click("form.whatif button[type=submit]")
    admin.click("form[action$='/whatif/publish'] button")
    admin.wait_for_url(re.compile(r"/app/whatif\?published=\d+"))
    assert sum(record["tier"] == "tier_1" for record in api_tier(served, *ids).values()) == 2
    admin.click("#whatif-versions tr:has-text('one Tier 1 seat') button:has-text('Restore')")
    admin.wait_for_url(re.compile(r"/app/whatif\?published=\d+"))
    assert sum(record["tier"] == "tier_1" for record in api_tier(served, *ids).values()) == 1
    assert "restores version" in admin.inner_text("#whatif-versions")
