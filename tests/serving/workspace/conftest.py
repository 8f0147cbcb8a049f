"""Fixtures for the workspace pages: a small store with two published scorings written by hand, three users, and
the pages mounted under /app as `tiering serve` mounts them."""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from scoring.scorer import SCORE_COLUMNS

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from workspace.store import WorkspaceStore

XSS_NAME = "<img src=x onerror=alert(1)>"
PASSWORDS = {"vera": "viewer-password-1", "ed": "editor-password-1", "ada": "admin-password-1"}
ROLES = {"vera": "viewer", "ed": "editor", "ada": "admin"}
SECRET = "a-test-session-secret-of-enough-length-0123456789"


def account_rows() -> pd.DataFrame:
    """Six accounts, one named like an XSS payload; scores chosen by hand so each filter picks known accounts."""
    return pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4", "A5", "X1"],
            "account_name": ["Acme Corp", "Beta Labs", "Gamma Inc", "Delta plc", "Epsilon AG", XSS_NAME],
            "industry": ["software", "software", "retail", "retail", "finance", "software"],
            "country": ["US", "DE", "US", "GB", "DE", "US"],
            "employees": [1200, 300, 5000, 80, 900, 40],
            "owner": ["olga", "olga", "omar", "omar", "olga", "omar"],
        }
    )


def scores(learned: list[float], tiers: list[str], rule_tiers: list[str], surge: list[bool]) -> pd.DataFrame:
    n = len(learned)
    frame = pd.DataFrame({name: [None] * n for name in SCORE_COLUMNS})
    frame["account_id"] = account_rows()["account_id"]
    frame["learned_score"] = learned
    frame["rule_score"] = [score - 5 for score in learned]
    frame["revenue_potential_score"] = [50.0] * n
    frame["business_fit_score"] = [score * 0.8 for score in learned]
    frame["engagement_score"] = [100 - score for score in learned]
    frame["win_probability"] = [score / 100 for score in learned]
    frame["expected_deal_size"] = [10_000.0] * n
    frame["expected_value"] = [score * 100 for score in learned]
    frame["pipeline_probability"] = [0.5] * n
    frame["expected_revenue"] = [score * 50 for score in learned]
    frame["learned_tier"] = tiers
    frame["tier"] = tiers
    frame["rule_tier"] = rule_tiers
    frame["override_reason"] = ""
    frame["budget"] = np.nan
    frame["intent_surge"] = surge
    frame["reason_1"] = [f"reason one of {i}" for i in frame["account_id"]]
    frame["reason_2"] = ""
    frame["reason_3"] = ""
    frame["model_version"] = "7"
    frame["scored_at"] = "2026-06-01T00:00:00"
    frame["surge_channels"] = ["web" if flag else "" for flag in surge]
    return frame


FIRST = scores(
    [90, 70, 60, 40, 20, 10],
    ["tier_1", "tier_2", "tier_2", "tier_3", "untiered", "untiered"],
    ["tier_1", "tier_2", "tier_3", "tier_3", "untiered", "untiered"],
    [False, False, False, False, False, False],
)
# A2 drops from Tier 2 to Tier 3 with its learned score 70 -> 45: the history must say so.
SECOND = scores(
    [92, 45, 61, 41, 22, 11],
    ["tier_1", "tier_3", "tier_2", "tier_3", "untiered", "untiered"],
    ["tier_1", "tier_2", "tier_3", "tier_3", "untiered", "tier_3"],
    [True, False, False, True, False, False],
)


@dataclass
class Pages:
    client: TestClient
    store: WorkspaceStore
    waited: list[float]  # the delays the login throttle slept, in order

    def sign_in(self, user: str, password: str | None = None):
        form = self.client.get("/app/login")
        token = csrf_of(form.text)
        return self.client.post(
            "/app/login",
            data={"username": user, "password": password or PASSWORDS[user], "csrf_token": token},
            follow_redirects=False,
        )

    def token(self, path: str = "/app/") -> str:
        return csrf_of(self.client.get(path).text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def cheap_hasher():
    """Argon2 at its lightest (about 1 ms a hash, not 200): the tests check who may sign in, not the hash's cost. A
    hash records its own parameters, so the users of the template verify as cheaply wherever they are checked."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    monkeypatch.setattr("workspace.store.HASHER", cheap_hasher())


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """The two scorings and three users, made once (migrations and password hashing take seconds), copied per test."""
    from workspace.store import WorkspaceStore

    path = tmp_path_factory.mktemp("workspace-template") / "workspace.db"
    with pytest.MonkeyPatch.context() as patch, WorkspaceStore.open(f"sqlite:///{path}") as made:
        patch.setattr("workspace.store.HASHER", cheap_hasher())
        accounts = account_rows()
        made.publish(FIRST, accounts, as_of="2026-03-01", model_version="6", configuration={}, published_by="ops")
        made.publish(SECOND, accounts, as_of="2026-06-01", model_version="7", configuration={}, published_by="ops")
        for name, role in ROLES.items():
            made.add_user(name, role, PASSWORDS[name])
    return path


@pytest.fixture
def store(store_template, tmp_path):
    from workspace.store import WorkspaceStore

    copy = tmp_path / "workspace.db"
    shutil.copy(store_template, copy)
    opened = WorkspaceStore.open(f"sqlite:///{copy}")
    yield opened
    opened.close()


@pytest.fixture
def pages(store) -> Iterator[Pages]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from serving.workspace.app import Workspace, create_app
    from serving.workspace.auth import LoginThrottle

    async def no_wait(seconds: float) -> None:
        waited.append(seconds)

    waited: list[float] = []
    workspace = Workspace(open_store=lambda: store, secret=SECRET, throttle=LoginThrottle(sleep=no_wait))
    app = Starlette(routes=[Mount("/app", create_app(workspace))])
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        yield Pages(client, store, waited)
