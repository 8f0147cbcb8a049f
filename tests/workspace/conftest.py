"""The workspace store under test on SQLite and on a real PostgreSQL (a throw-away cluster per test session)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from tests.postgres import postgres_for_tests
from workspace import Role, WorkspaceStore

BACKENDS = ("sqlite", "postgresql")
TIERS = ("tier_1", "tier_2", "tier_3", "untiered")
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """Argon2 at its lightest: the tests check what is stored and matched, not the cost."""
    monkeypatch.setattr("workspace.store.HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    with postgres_for_tests() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new database in the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'workspace.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def store(database_url) -> Iterator[WorkspaceStore]:
    opened = WorkspaceStore.open(database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def people(store) -> dict[str, str]:
    """One user of each role, by role."""
    for role in Role:
        store.add_user(f"{role.value}-user", role, PASSWORD)
    return {role.value: f"{role.value}-user" for role in Role}


def scores_frame(count: int = 60, seed: int = 3) -> pd.DataFrame:
    """A scores file as `tiering score` writes it, with values at full precision, gaps and awkward text."""
    rng = np.random.default_rng(seed)
    ids = [f"ACC-{i:05d}" for i in range(count)]
    tiers = rng.choice(TIERS, size=count)
    learned = rng.choice(TIERS, size=count)
    rule = rng.choice(TIERS, size=count)
    win = rng.random(count)
    deal = rng.lognormal(10, 1, count)
    learned_score = rng.random(count) * 100
    learned_score[::7] = np.nan  # rules-only rows and missing values must survive as missing
    frame = pd.DataFrame(
        {
            "account_id": ids,
            "revenue_potential_score": rng.random(count) * 100,
            "business_fit_score": rng.random(count) * 100,
            "engagement_score": rng.random(count) * 100,
            "rule_score": rng.random(count) * 100,
            "rule_tier": rule,
            "win_probability": win,
            "expected_deal_size": deal,
            "expected_value": win * deal,
            "learned_score": learned_score,
            "learned_tier": learned,
            "tier": tiers,
            "override_reason": [
                "" if i % 5 else "pinned to tier_1 by ann: big renewal (model said tier_2)" for i in range(count)
            ],
            "budget": rng.random(count) * 10_000,
            "intent_surge": rng.random(count) < 0.3,
            "reason_1": ["Won deals before: 3 of 4" for _ in range(count)],
            "reason_2": ["Industry is in the ICP" for _ in range(count)],
            "reason_3": [None if i % 3 else "Intent surge on 2 topics" for i in range(count)],
            "model_version": "7",
            "scored_at": "2026-07-01T09:30:00+00:00",
            "as_of": "2026-07-01",
            "surge_channels": ["web_visit;email_click" if i % 4 == 0 else "" for i in range(count)],
            "pipeline_probability": rng.random(count),
            "expected_revenue": rng.random(count) * 1e6,
            "pilot_group": [["treatment", "control", ""][i % 3] for i in range(count)],
        }
    )
    return frame


def accounts_frame(scores: pd.DataFrame, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    count = len(scores)
    names = [f"Company {i} {'Ltd' if i % 2 else 'GmbH_%'}" for i in range(count)]
    names[1] = "<img src=x onerror=alert(1)>"
    names[2] = "Ünïcødé Straße"
    names[3] = "O'Brien; DROP TABLE scored_accounts;--"
    return pd.DataFrame(
        {
            "account_id": scores["account_id"],
            "account_name": names,
            "industry": rng.choice(["software", "healthcare", "retail", "Finance & Banking"], size=count),
            "country": rng.choice(["United States", "Germany", "France"], size=count),
            "employees": rng.integers(1, 100_000, size=count).astype(float),
            "owner": [None if i % 6 == 0 else ["ann@example.com", "bob", "chloé"][i % 3] for i in range(count)],
            "annual_revenue": rng.random(count) * 1e9,  # not stored: only the fields the pages show
        }
    )


@pytest.fixture
def published(store) -> tuple[int, pd.DataFrame]:
    """A published scoring and the frame it came from (scores joined with their accounts)."""
    scores = scores_frame()
    accounts = accounts_frame(scores)
    scoring_id = store.publish(
        scores, accounts, as_of="2026-07-01", model_version="7", configuration={"tiers": {"a": 1}}, published_by="ann"
    )
    merged = scores.merge(accounts[["account_id", "account_name", "industry", "country", "employees", "owner"]])
    return scoring_id, merged
