"""The pages inside the real service: mounted at /app beside the API, outside the API key, and the store's pins
holding in /score and /tier."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.requests import ACCOUNT_EXAMPLE
from serving.workspace.pins import PinCache, with_pins
from tests.serving.conftest import serving
from tests.serving.workspace.conftest import PASSWORDS, csrf_of

KEY = "a-key-for-machine-clients"


def accounts(*ids: str) -> list[dict]:
    return [{**ACCOUNT_EXAMPLE, "account_id": account_id} for account_id in ids]


def test_pins_from_the_pages_hold_in_score_and_tier_and_the_key_never_opens_the_pages(empty_store, store):
    with serving(empty_store, TIERING_DATABASE_URL=store.url, TIERING_API_KEY=KEY) as client:
        api = {"authorization": f"Bearer {KEY}"}
        assert client.post("/score", json={"accounts": accounts("A1")}).status_code == 401  # the API keeps its key
        assert client.get("/app/login").status_code == 200  # the pages need none
        assert client.get("/app/", headers=api, follow_redirects=False).status_code == 303  # and it grants none

        before = client.post("/score", json={"accounts": accounts("A1", "A2")}, headers=api).json()["scores"]
        assert [record["override_reason"] for record in before] == ["", ""]
        model_said = before[1]["learned_tier"]
        pinned_to = "tier_1" if model_said != "tier_1" else "tier_3"

        token = csrf_of(client.get("/app/login").text)
        signed_in = client.post(
            "/app/login",
            data={"username": "ed", "password": PASSWORDS["ed"], "csrf_token": token},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303
        token = csrf_of(client.get("/app/accounts/A2").text)
        pinned = client.post(
            "/app/accounts/A2/pin",
            data={"tier": pinned_to, "reason": "signed an MSA", "csrf_token": token},
            follow_redirects=False,
        )
        assert pinned.status_code == 303

        reason = f"pinned to {pinned_to} by ed: signed an MSA (model said {model_said})"
        scored = client.post("/score", json={"accounts": accounts("A1", "A2")}, headers=api).json()["scores"]
        assert [(r["account_id"], r["tier"], r["override_reason"]) for r in scored] == [
            ("A1", before[0]["tier"], ""),
            ("A2", pinned_to, reason),
        ]
        tiered = client.post("/tier", json={"accounts": accounts("A1", "A2", "A3"), "budget": 900}, headers=api).json()
        placed = {r["account_id"]: r for r in tiered["scores"]}
        assert placed["A2"]["tier"] == pinned_to and placed["A2"]["override_reason"].startswith(
            f"pinned to {pinned_to}"
        )
        counted = {row["tier"]: row["accounts"] for row in tiered["tiers"]}
        assert counted[pinned_to] == sum(r["tier"] == pinned_to for r in tiered["scores"])
        assert sum(r["budget"] for r in tiered["scores"]) <= 900 + 1e-6

        token = csrf_of(client.get("/app/accounts/A2").text)
        assert client.post("/app/accounts/A2/unpin", data={"csrf_token": token}).status_code == 200
        after = client.post("/score", json={"accounts": accounts("A2")}, headers=api).json()["scores"]
        assert after[0]["override_reason"] == "" and after[0]["tier"] == model_said


def test_the_workspace_answers_at_app_with_and_without_the_slash(empty_store, store):
    with serving(empty_store, TIERING_DATABASE_URL=store.url) as client:
        assert client.get("/app", follow_redirects=False).status_code in (303, 307)
        assert client.get("/app", follow_redirects=True).url.path == "/app/login"
        assert client.get("/app/static/workspace.css").status_code == 200
        assert client.post("/score", json={"accounts": accounts("A1")}).status_code == 200  # no key set: open
        documented = client.get("/docs.json").json()["paths"]
        assert "/score" in documented and not [path for path in documented if path.startswith("/app")]


def test_the_pin_cache_loads_once_and_skips_unpinned_requests():
    loads = []

    def load() -> pd.DataFrame:
        loads.append(1)
        return pd.DataFrame({"account_id": ["P1"], "tier": ["tier_1"], "reason": ["r"], "owner": ["ed"]})

    cache = PinCache(load, max_age=3600)
    assert cache.pinned(np.array(["A1", "A2"], dtype=object)) is None
    assert cache.pinned(np.array(["A1", "P1"], dtype=object))["account_id"].tolist() == ["P1"]
    assert len(loads) == 1  # loaded on first use, then held
    cache.refresh()
    assert len(loads) == 2


def test_a_pin_cache_that_cannot_reload_keeps_the_pins_it_holds():
    answers = [pd.DataFrame({"account_id": ["P1"], "tier": ["tier_2"], "reason": ["r"], "owner": ["ed"]})]

    def load() -> pd.DataFrame:
        if answers:
            return answers.pop()
        raise ConnectionError("database down")

    cache = PinCache(load, max_age=3600)
    cache.refresh()
    cache.refresh()
    assert cache.problem and "database down" in cache.problem
    assert cache.pinned(np.array(["P1"], dtype=object))["tier"].tolist() == ["tier_2"]


def test_with_pins_sets_the_tier_the_reason_and_splits_the_budget_again():
    from features.config import Budget

    scores = {
        "account_id": np.array(["A", "B", "C"], dtype=object),
        "learned_tier": np.array(["tier_1", "tier_3", "tier_3"], dtype=object),
        "tier": np.array(["tier_1", "tier_3", "tier_3"], dtype=object),
        "override_reason": np.array(["", "", ""], dtype=object),
        "budget": np.array([600.0, 50.0, 50.0]),
    }
    pins = pd.DataFrame({"account_id": ["B"], "tier": ["tier_1"], "reason": ["MSA"], "owner": ["ed"]})
    split = Budget(split={"tier_1": 0.6, "tier_2": 0.3, "tier_3": 0.1})
    placed = with_pins(scores, pins, 1000.0, split)
    assert placed["tier"].tolist() == ["tier_1", "tier_1", "tier_3"]
    assert placed["override_reason"].tolist() == ["", "pinned to tier_1 by ed: MSA (model said tier_3)", ""]
    # Tier 1's 600 now shared by two accounts, Tier 3's 100 by one; Tier 2 has none, its 300 unspent.
    assert placed["budget"].tolist() == [300.0, 300.0, 100.0]
    assert with_pins(scores, None, 1000.0, split) is scores
