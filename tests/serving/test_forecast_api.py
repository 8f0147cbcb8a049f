"""POST /forecast: a book's per-tier forecast from the champion, its figures consistent by hand, bad input a 400."""

import numpy as np
import pytest

from features.activity import default_as_of
from serving.requests import account_payloads

from .conftest import serving


@pytest.fixture(scope="module")
def book(export):
    rng = np.random.default_rng(3)
    ids = sorted(rng.choice(export.accounts["account_id"].to_numpy(), size=300, replace=False).tolist())
    return {"accounts": account_payloads(export, ids), "as_of": default_as_of(export).date().isoformat()}


@pytest.fixture(scope="module")
def client(trained):
    """One service on the champion for the module: its tests only ask it questions."""
    with serving(trained.folder) as client:
        yield client


def test_forecast_answers_every_tier_with_intervals_around_the_point(trained, client, book):
    response = client.post("/forecast", json={**book, "simulations": 500})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == trained.version and answer["horizon_days"] == 90
    tiers = {row["tier"]: row for row in answer["tiers"]}
    assert list(tiers) == ["tier_1", "tier_2", "tier_3", "untiered", "overall"]
    assert tiers["overall"]["accounts"] == 300 == sum(tiers[t]["accounts"] for t in list(tiers)[:-1])
    for quantity in ("new_opportunities", "pipeline_value", "deals_won", "won_revenue"):
        parts = sum(tiers[t][quantity] for t in list(tiers)[:-1])
        assert tiers["overall"][quantity] == pytest.approx(parts)
        assert tiers["overall"][f"{quantity}_low"] <= tiers["overall"][quantity] <= tiers["overall"][f"{quantity}_high"]
    assert tiers["overall"]["won_revenue"] > 0


@pytest.mark.parametrize("simulations", [5, 1_000_000, "many", 2.5])
def test_bad_simulations_are_a_400_naming_the_field(client, book, simulations):
    response = client.post("/forecast", json={**book, "simulations": simulations})
    assert response.status_code == 400
    assert "simulations" in response.text


def test_tier_answers_carry_the_forecast_of_their_own_records(client, book):
    """Each tier's expected won revenue is the sum of its accounts' expected_revenue (open deals plus new pipeline,
    both inside the horizon), and its accounts are the records placed in it."""
    response = client.post("/tier", json={**book, "budget": 300_000})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["horizon_days"] == 90
    records = answer["scores"]
    forecast = {row["tier"]: row for row in answer["forecast"]}
    assert list(forecast) == ["tier_1", "tier_2", "tier_3", "untiered", "overall"]
    for tier in ("tier_1", "tier_2", "tier_3"):
        members = [r for r in records if r["tier"] == tier]
        assert forecast[tier]["accounts"] == len(members)
        by_hand = sum(r["expected_revenue"] for r in members)
        assert forecast[tier]["won_revenue"] == pytest.approx(by_hand, rel=1e-4, abs=1.0)
        assert forecast[tier]["won_revenue_low"] <= forecast[tier]["won_revenue"] <= forecast[tier]["won_revenue_high"]
    assert forecast["overall"]["accounts"] == 300


def test_a_rules_only_service_tiers_without_a_forecast(empty_store, tmp_path, monkeypatch, book):
    monkeypatch.chdir(tmp_path)
    with serving(empty_store) as client:
        answer = client.post("/tier", json=book).json()
    assert answer["model_version"] == "rules-only"
    assert answer["forecast"] is None and answer["horizon_days"] is None
    assert len(answer["scores"]) == 300
