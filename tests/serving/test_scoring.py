"""Requests scored together answer exactly what each would get alone; the queue merges what waits."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest

from features.config import TieringConfig
from serving import scoring
from serving.champion import ChampionFollower, ServingModel
from serving.requests import ScoreRequest, account_payloads
from serving.scoring import ScoreQueue, batches, score_requests
from training.scoring import RULES_ONLY, Scorer
from training.workflow import load_scorer_for

from .conftest import tracking_at


@pytest.fixture(scope="module")
def champion(trained) -> ServingModel:
    with tracking_at(trained.folder):
        return ServingModel(load_scorer_for(f"models:/abm-tiering/{trained.version}"), trained.version)


@pytest.fixture(scope="module")
def requests(export) -> list[ScoreRequest]:
    """Requests of different sizes and cut-offs; two name the same account with different data."""
    ids = export.accounts["account_id"].tolist()
    payloads = account_payloads(export, ids[:12])
    same_id_other_data = {**payloads[0], "employees": 12, "engagement": payloads[5]["engagement"]}
    bodies = [{"accounts": payloads[:1], "as_of": "2026-07-01"},
              {"accounts": payloads[1:6]},
              {"accounts": [same_id_other_data, *payloads[6:8]], "as_of": "2026-03-15"},
              {"accounts": payloads[8:12], "as_of": "2025-12-01"}]
    return [ScoreRequest.model_validate(body) for body in bodies]


def without_stamp(scores: dict) -> pd.DataFrame:
    return pd.DataFrame(scores).drop(columns="scored_at")


def test_scoring_requests_together_is_exactly_scoring_each_alone(champion, requests):
    together = score_requests(champion, requests, by_capacity=False)

    for request, merged in zip(requests, together):
        (alone,) = score_requests(champion, [request], by_capacity=False)
        assert merged.as_of == alone.as_of
        assert merged.scores["account_id"].tolist() == [account.account_id for account in request.accounts]
        pd.testing.assert_frame_equal(without_stamp(merged.scores), without_stamp(alone.scores), check_exact=True)
    assert together[0].scores["revenue_potential_score"][0] != together[2].scores["revenue_potential_score"][0]


def test_requests_are_kept_apart_when_merging_would_not_be_exact(champion, requests):
    assert batches(requests, champion) == [[0, 1, 2, 3]]

    rules_only = ServingModel(Scorer(config=TieringConfig()), RULES_ONLY)  # no frozen cut-offs: capacity per request
    assert batches(requests, rules_only) == [[0], [1], [2], [3]]

    custom = champion.scorer.config.model.extra_features
    assert custom, "the fixture model uses a custom feature"
    tagged = [ScoreRequest.model_validate({"accounts": [{"account_id": "X", custom[0]: value}]})
              for value in ("SMB", "Enterprise", None, 7, "12", "Mid-market")]
    # Numbers and text in one custom column would turn the numbers into text: kept apart.
    assert batches(tagged, champion) == [[0, 1, 2], [3, 4], [5]]


def test_the_queue_scores_what_waits_in_one_call(champion, requests, monkeypatch):
    follower = ChampionFollower(interval_seconds=3600)
    follower.serving = champion
    calls: list[int] = []
    original = scoring.score_requests

    def slow_first_call(serving, batch, **options):
        calls.append(len(batch))
        if len(calls) == 1:
            time.sleep(0.5)  # the other requests arrive meanwhile
        return original(serving, batch, **options)

    monkeypatch.setattr(scoring, "score_requests", slow_first_call)
    queue = ScoreQueue(follower)

    async def send_all():
        first = asyncio.ensure_future(queue.score(requests[0]))
        await asyncio.sleep(0.1)
        return await asyncio.gather(first, *(queue.score(request) for request in requests[1:]))

    try:
        answers = asyncio.run(send_all())
    finally:
        queue.stop()

    assert calls == [1, 3]
    for request, answer in zip(requests, answers):
        (alone,) = original(champion, [request], by_capacity=False)
        pd.testing.assert_frame_equal(without_stamp(answer.scores), without_stamp(alone.scores), check_exact=True)
