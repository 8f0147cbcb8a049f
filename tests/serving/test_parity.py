"""The API scores exactly as batch scoring does, for the same accounts and cut-off."""

import numpy as np
import pandas as pd
import pytest

from features.activity import default_as_of
from features.pointintime import FeatureBuilder, snapshot
from features.schema import CrmData
from scoring.registry import load_model_for
from serving.requests import account_payloads
from tests.rounding import SCORE_NUMBERS, assert_published

from .conftest import serving, subset, tracking_at

NUMBERS = SCORE_NUMBERS
SAME = ["intent_surge", "reason_1", "reason_2", "reason_3", "model_version", "as_of", "surge_channels"]
TIERS = ["rule_tier", "learned_tier", "tier"]
BUDGET = 250_000.0
HEAVY_EVENTS = 1_000  # engagement events of the heavy account: a body of about 100 KB


@pytest.fixture(scope="module")
def case(trained, export):
    """A sample of the book as a client would send it, its cut-off, and the scorer batch scoring uses."""
    rng = np.random.default_rng(5)
    ids = sorted(rng.choice(export.accounts["account_id"].to_numpy(), size=150, replace=False).tolist())
    with tracking_at(trained.folder):
        scorer = load_model_for(f"models:/abm-tiering/{trained.version}")
    return ids, default_as_of(export), scorer


@pytest.fixture(scope="module")
def answers(trained, export, case):
    ids, as_of, _ = case
    body = {"accounts": account_payloads(export, ids), "as_of": as_of.date().isoformat()}
    with serving(trained.folder) as client:
        scored = client.post("/score", json=body)
        tiered = client.post("/tier", json={**body, "budget": BUDGET})
    assert scored.status_code == 200 and tiered.status_code == 200
    return (
        pd.DataFrame(scored.json()["scores"]).set_index("account_id"),
        pd.DataFrame(tiered.json()["scores"]).set_index("account_id"),
    )


def assert_same_scores(api: pd.DataFrame, batch: pd.DataFrame, columns: list[str]) -> None:
    batch = batch.set_index("account_id").loc[api.index]
    for column in columns:
        if column in NUMBERS or column == "budget":
            # The API publishes numbers rounded as the scores file writes them (ingest.files.OUTPUT_DECIMALS):
            # the answer must be the batch figure, to 1e-9, rounded the same way.
            assert_published(api[column].astype(float), batch[column].astype(float), column)
        else:
            assert api[column].tolist() == batch[column].tolist(), column


def test_score_matches_batch_scoring_of_the_whole_book(answers, export, case, trained):
    ids, as_of, scorer = case
    api, _ = answers
    batch = scorer.score_book(export, as_of, model_version=trained.version).scores
    assert_same_scores(api, batch, NUMBERS + SAME)


def test_score_places_tiers_by_the_frozen_cut_offs(answers, export, case, trained):
    _, as_of, scorer = case
    api, _ = answers
    rows = snapshot(export, FeatureBuilder(export, scorer.config), as_of)
    frozen = scorer.score_features(rows, by_capacity=False, model_version=trained.version)
    assert_same_scores(api, frozen, TIERS)


def test_tier_matches_batch_capacity_tiers_and_budget_for_the_same_book(answers, export, case, trained):
    ids, as_of, scorer = case
    _, api = answers
    batch = scorer.score_book(subset(export, ids), as_of, budget=BUDGET, model_version=trained.version).scores
    assert_same_scores(api, batch, NUMBERS + SAME + TIERS + ["budget"])
    assert api["tier"].nunique() > 1  # the sample spans tiers, so the comparison means something


def test_the_default_as_of_is_batch_scorings_default(export, case):
    from serving.requests import ScoreRequest, scoring_as_of

    ids, _, _ = case
    request = ScoreRequest.model_validate({"accounts": account_payloads(export, ids)})
    assert scoring_as_of(request) == default_as_of(subset(export, ids))


@pytest.fixture(scope="module")
def heavy(trained, export):
    """The most engaged account cut to its latest HEAVY_EVENTS events (the export restricted to it), sent alone."""
    counts = export.engagement["account_id"].value_counts()
    account_id = counts.index[0]
    assert counts.iloc[0] >= HEAVY_EVENTS
    alone = subset(export, [account_id])
    latest = alone.engagement.sort_values("timestamp", kind="stable").tail(HEAVY_EVENTS).reset_index(drop=True)
    data = CrmData(accounts=alone.accounts, opportunities=alone.opportunities, engagement=latest, intent=alone.intent)
    as_of = default_as_of(export)
    body = {"accounts": account_payloads(data, [account_id]), "as_of": as_of.date().isoformat()}
    assert len(body["accounts"][0]["engagement"]) == HEAVY_EVENTS
    with serving(trained.folder) as client:
        scored = client.post("/score", json=body)
    assert scored.status_code == 200
    return data, as_of, pd.DataFrame(scored.json()["scores"]).set_index("account_id")


def test_a_heavy_account_alone_scores_as_batch_scoring_does(heavy, case, trained):
    data, as_of, api = heavy
    _, _, scorer = case
    batch = scorer.score_book(data, as_of, model_version=trained.version).scores
    assert_same_scores(api, batch, NUMBERS + SAME)
    rows = snapshot(data, FeatureBuilder(data, scorer.config), as_of)
    frozen = scorer.score_features(rows, by_capacity=False, model_version=trained.version)
    assert_same_scores(api, frozen, TIERS)
    assert api["engagement_score"].iloc[0] > 0 and api["reason_1"].iloc[0]  # the activity was read, and explained
