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


def test_forecast_answers_every_tier_with_intervals_around_the_point(trained, book):
    with serving(trained.folder) as client:
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
def test_bad_simulations_are_a_400_naming_the_field(trained, book, simulations):
    with serving(trained.folder) as client:
        response = client.post("/forecast", json={**book, "simulations": simulations})
    assert response.status_code == 400
    assert "simulations" in response.text
