"""/app/pilots: the pilots in the store, their group counts and state, and a readout's figures."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from workspace.pilots import publish_pilot, store_readout


def _pilot(key: str, start: dt.date, accounts: list[str]) -> tuple[dict, pd.DataFrame]:
    groups = ["treatment", "control"] * (len(accounts) // 2) + ["treatment"] * (len(accounts) % 2)
    assignment = pd.DataFrame({"account_id": accounts, "group": groups, "stratum": "tier_1"})
    pilot = {
        "pilot_id": key,
        "seed": 3,
        "start_date": start.isoformat(),
        "horizon_days": 90,
        "metric": "pipeline",
        "tiers": ["tier_1"],
        "strata": [],
        "power": {"detectable_lift": 0.25},
    }
    return pilot, assignment


def test_the_pilots_page_lists_pilots_counts_and_readouts(pages):
    today = dt.datetime.now(dt.UTC).date()
    running, assignment = _pilot("pilot-running", today - dt.timedelta(days=10), ["A1", "A2", "A3"])
    publish_pilot(pages.store, running, assignment, "cli:ana")
    done, done_assignment = _pilot("pilot-done", today - dt.timedelta(days=200), ["A4", "A5"])
    publish_pilot(pages.store, done, done_assignment, "cli:ana")
    store_readout(
        pages.store,
        "pilot-done",
        {
            "verdict": "pipeline created +18% (95% CI +4% to +33%): roll out",
            "sample_ratio": "sample ratio as designed: 1 treatment and 1 control accounts (p = 1.00)",
            "lift": [
                {"metric": "pipeline", "kind": "ratio", "estimate": 1.18, "low": 1.04, "high": 1.33, "p_value": 0.01}
            ],
        },
    )
    pages.sign_in("vera")
    page = pages.client.get("/app/pilots")
    assert page.status_code == 200
    text = " ".join(page.text.split())
    # The running pilot: 2 treatment and 1 control, 80 of its 90 days left; the other read out.
    assert "pilot-running</td><td>running, 80 day(s) left" in text
    assert '<td class="num">2</td><td class="num">1</td><td class="num">+25%</td>' in text
    assert "pilot-done</td><td>read out" in text
    assert "pipeline created +18% (95% CI +4% to +33%): roll out" in text
    assert '<td class="num">+18%</td><td class="num">+4% to +33%</td><td class="num">0.010</td>' in text
    assert 'href="/app/pilots"' in page.text  # in the menu


def test_score_and_tier_mark_each_accounts_pilot_group(empty_store, store):
    from serving.requests import ACCOUNT_EXAMPLE
    from tests.serving.conftest import serving

    today = dt.datetime.now(dt.UTC).date()
    pilot, assignment = _pilot("pilot-now", today, ["A1", "A2"])  # A1 treatment, A2 control
    publish_pilot(store, pilot, assignment, "cli:ana")
    body = {"accounts": [{**ACCOUNT_EXAMPLE, "account_id": account} for account in ("A1", "A2", "A3")]}
    with serving(empty_store, TIERING_DATABASE_URL=store.url) as client:
        scored = client.post("/score", json=body).json()["scores"]
        assert [record["pilot_group"] for record in scored] == ["treatment", "control", ""]
        tiered = client.post("/tier", json=body).json()["scores"]
        assert {r["account_id"]: r["pilot_group"] for r in tiered} == {"A1": "treatment", "A2": "control", "A3": ""}

        # /alerts: the store's control account A2 gets no event although both A1 and A2 surge; the records here
        # carry no pilot_group, so only the store can say A2 is control.
        def book(as_of: str, surge: bool) -> list[dict]:
            return [
                {"account_id": account, "tier": "tier_2", "as_of": as_of, "intent_surge": surge}
                for account in ("A1", "A2")
            ]

        answer = client.post(
            "/alerts", json={"previous": book("2026-04-01", False), "current": book("2026-07-01", True)}
        )
        assert answer.status_code == 200, answer.text
        assert [event["account_id"] for event in answer.json()["events"]] == ["A1"]
        assert answer.json()["control_left_out"] == 1


def test_an_accounts_page_says_its_pilot_group(pages):
    today = dt.datetime.now(dt.UTC).date()
    pilot, assignment = _pilot("pilot-now", today - dt.timedelta(days=5), ["A1", "A2"])  # A1 treatment, A2 control
    publish_pilot(pages.store, pilot, assignment, "cli:ana")
    pages.sign_in("vera")
    last_day = (today + dt.timedelta(days=84)).isoformat()
    control = " ".join(pages.client.get("/app/accounts/A2").text.split())
    assert '<span class="badge pilot">pilot: control</span>' in control
    assert f"until {last_day}: kept out of alerts and the CRM export until then" in control
    treated = " ".join(pages.client.get("/app/accounts/A1").text.split())
    assert "pilot: treatment" in treated and "kept out" not in treated
    assert "badge pilot" not in pages.client.get("/app/accounts/A3").text
