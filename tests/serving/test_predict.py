"""Scoring a request without tables, and where the work runs: small requests and bodies on the event
loop, large ones in worker threads, so the loop (health probes, other clients) keeps answering."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from scoring.registry import load_model_for
from scoring.scorer import SCORE_COLUMNS
from serving import memory, offloop, predict
from serving.predict import INLINE_MAX_ROWS, ServingModel, request_rows, score_request
from serving.requests import ScoreRequest, account_payloads

from .conftest import serving, tracking_at


@pytest.fixture(scope="module")
def champion(trained) -> ServingModel:
    with tracking_at(trained.folder):
        return ServingModel(load_model_for(f"models:/abm-tiering/{trained.version}"), trained.version)


def test_a_request_is_scored_in_its_own_order_with_every_score_column(champion, export):
    ids = export.accounts["account_id"].tolist()[:5][::-1]
    request = ScoreRequest.model_validate({"accounts": account_payloads(export, ids), "as_of": "2026-07-01"})
    scored = score_request(champion, request, by_capacity=False)

    assert list(scored.scores) == SCORE_COLUMNS
    assert scored.scores["account_id"].tolist() == ids
    assert str(scored.as_of.date()) == "2026-07-01" and scored.version == champion.version
    assert np.isfinite(scored.scores["learned_score"]).all()


def test_an_account_scores_the_same_alone_as_among_others(champion, export):
    ids = export.accounts["account_id"].tolist()[:8]
    payloads = account_payloads(export, ids)
    together = score_request(
        champion, ScoreRequest.model_validate({"accounts": payloads, "as_of": "2026-05-01"}), by_capacity=False
    )
    for position, payload in enumerate(payloads):
        alone = score_request(
            champion, ScoreRequest.model_validate({"accounts": [payload], "as_of": "2026-05-01"}), by_capacity=False
        )
        for name in SCORE_COLUMNS:
            if name != "scored_at":  # exactly, NaN for NaN: no account's record depends on its company
                np.testing.assert_array_equal(
                    alone.scores[name], together.scores[name][position : position + 1], err_msg=name
                )


@pytest.fixture(scope="module")
def client(trained):
    with serving(trained.folder) as client:
        yield client


def test_small_requests_are_scored_on_the_loop_and_large_ones_in_a_thread(client, export, monkeypatch):
    where: list[str] = []
    original = predict.score_request

    def recording(*args, **kwargs):
        where.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr("serving.service.score_request", recording)
    small = {"accounts": account_payloads(export, export.accounts["account_id"].tolist()[:1])}
    ids, rows = [], 0
    for account_id in export.accounts["account_id"]:  # enough accounts to pass the inline limit
        ids.append(account_id)
        rows = request_rows(ScoreRequest.model_validate({"accounts": account_payloads(export, ids[-1:])})) + rows
        if rows > INLINE_MAX_ROWS:
            break
    large = {"accounts": account_payloads(export, ids)}

    assert client.post("/score", json=small).status_code == 200
    assert client.post("/score", json=large).status_code == 200
    assert len(where) == 2 and where[1] != where[0]  # the large one ran in a worker thread, not on the loop


def test_large_bodies_are_validated_off_the_loop_with_the_same_400(client, monkeypatch):
    from _bentoml_impl.serde import JSONSerde

    threads: list[str] = []

    validate = JSONSerde.deserialize_model

    def recording(self, payload, cls):
        threads.append(threading.current_thread().name)
        return validate(self, payload, cls)

    monkeypatch.setattr(JSONSerde, "deserialize_model", recording)
    trims: list[int] = []
    monkeypatch.setattr(memory.trimmer, "large_request_done", lambda: trims.append(len(threads)))
    bad_account = {"account_id": "A", "employees": -1}
    padding = [{"timestamp": "2026-05-01", "channel": "web_visit"}] * 8_000
    small = {"accounts": [bad_account]}
    large = {"accounts": [bad_account, {"account_id": "B", "engagement": padding}]}
    assert len(json.dumps(large)) > offloop.INLINE_BODY_BYTES > len(json.dumps(small))

    small_answer, large_answer = client.post("/score", json=small), client.post("/score", json=large)

    assert threads[0] != threads[1]
    assert trims == [2]  # the large body's freed heap is handed back; the small one's is not worth it
    assert small_answer.status_code == large_answer.status_code == 400
    assert (
        small_answer.json()["detail"]
        == large_answer.json()["detail"]
        == [{**small_answer.json()["detail"][0], "loc": ["accounts", 0, "employees"]}]
    )


def test_the_bentoml_internals_are_checked_and_another_minor_version_is_refused():
    import bentoml

    offloop.check_bentoml_version(bentoml.__version__)  # the locked version passes
    assert offloop.payload_type().__module__ == "_bentoml_impl.serde"
    with pytest.raises(offloop.UnsupportedBentoML, match=r"BentoML 1\.5\.0 is installed.*make install"):
        offloop.check_bentoml_version("1.5.0")
