"""Scoring requests, and `/score` requests that arrive together scored together.

Each call has a fixed cost (reading the request into arrays, LightGBM's set-up) on top of its cost per
account. `ScoreQueue` therefore scores the `/score` requests
that arrive while a call runs in the next call, all at once: a lone request waits for nothing, a busy
server spreads the per-call cost over the whole batch.

Merging is exact: each account keeps its own data (accounts are keyed by position, not id) and its
request's cut-off, and `/score` places tiers by the cut-offs frozen with the model, so no account's record
depends on which requests shared its batch. Two cases are kept apart because they would not be exact:
a scorer without frozen cut-offs (rules only) fills tiers by capacity within a request, and a custom
feature column is typed (number or text) from all the values it holds, so requests that disagree on
whether a custom feature is numeric are scored apart.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.timeindex import to_seconds
from serving.requests import MAX_SCORE_ACCOUNTS, ScoreRequest, feature_builder, scoring_as_of

if TYPE_CHECKING:  # the champion module scores a probe with this one
    from serving.champion import ChampionFollower, ServingModel

logger = logging.getLogger("bentoml.abm_tiering")


@dataclass(frozen=True)
class Scored:
    scores: dict[str, np.ndarray]  # the SPEC score columns, one entry per account in request order
    as_of: pd.Timestamp
    version: str


def score_requests(serving: ServingModel, requests: list[ScoreRequest], *, by_capacity: bool,
                   budget: float | None = None) -> list[Scored]:
    """Score several requests in one feature build and one model call; the answers come back per request."""
    accounts = [account for request in requests for account in request.accounts]
    sizes = [len(request.accounts) for request in requests]
    as_ofs = [scoring_as_of(request) for request in requests]
    scorer = serving.scorer
    cutoffs = np.repeat(to_seconds(np.array([as_of.to_datetime64() for as_of in as_ofs])), sizes)
    # Each account is coded by its position, so two requests naming the same account stay apart.
    features = feature_builder(accounts, scorer.config).build_columns(np.arange(len(accounts)), cutoffs)
    features["account_id"] = np.array([account.account_id for account in accounts], dtype=object)
    scores = scorer.score_columns(features, by_capacity=by_capacity, budget=budget, model_version=serving.version)
    bounds = np.cumsum([0, *sizes])
    return [Scored({name: values[start:end] for name, values in scores.items()}, as_of, serving.version)
            for start, end, as_of in zip(bounds[:-1], bounds[1:], as_ofs)]


def batches(requests: list[ScoreRequest], serving: ServingModel) -> list[list[int]]:
    """Positions of consecutive requests that can be scored together exactly (see the module docstring)."""
    if not serving.scorer.cutoffs:
        return [[index] for index in range(len(requests))]
    custom = serving.scorer.config.model.extra_features
    groups: list[list[int]] = []
    size, kinds = 0, {}
    for index, request in enumerate(requests):
        own = _custom_kinds(request, custom)
        clash = any(kinds.get(name, kind) != kind for name, kind in own.items())
        if not groups or clash or size + len(request.accounts) > MAX_SCORE_ACCOUNTS:
            groups.append([])
            size, kinds = 0, {}
        groups[-1].append(index)
        size += len(request.accounts)
        kinds.update(own)
    return groups


def _custom_kinds(request: ScoreRequest, names: list[str]) -> dict[str, bool]:
    """For each custom feature this request gives values for: whether they are all numbers.

    The feature builder types such a column as a number only when every value in it is one, so requests
    merge only when they agree on this for every custom feature.
    """
    kinds = {}
    for name in names:
        values = [value for account in request.accounts
                  if (value := (account.__pydantic_extra__ or {}).get(name)) is not None]
        if values:
            kinds[name] = bool(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").notna().all())
    return kinds


@dataclass
class _Waiting:
    request: ScoreRequest
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop

    def settle(self, result: Scored | None = None, error: BaseException | None = None) -> None:
        def set_once() -> None:
            if self.future.done():  # the client went away and the request was cancelled
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(set_once)


class ScoreQueue:
    """`/score` requests handed to one scoring thread, which takes everything waiting at each turn."""

    _STOP = object()

    def __init__(self, champion: ChampionFollower):
        self.champion = champion
        self._waiting: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="score-queue", daemon=True)
        self._thread.start()

    async def score(self, request: ScoreRequest) -> Scored:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.put(_Waiting(request, future, loop))
        return await future

    def stop(self) -> None:
        self._waiting.put(self._STOP)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            waiting = [self._waiting.get()]
            while not self._waiting.empty():
                waiting.append(self._waiting.get_nowait())
            stopping = self._STOP in waiting
            waiting = [item for item in waiting if item is not self._STOP]
            serving = self.champion.serving  # one model for everything taken at this turn
            for group in batches([item.request for item in waiting], serving) if waiting else []:
                self._score(serving, [waiting[index] for index in group])
            if stopping:
                return

    @staticmethod
    def _score(serving: ServingModel, group: list[_Waiting]) -> None:
        try:
            results = score_requests(serving, [item.request for item in group], by_capacity=False)
        except Exception as error:  # a bug, not bad input (validation caught that): answer 500, keep serving
            logger.exception("scoring %d request(s) failed", len(group))
            for item in group:
                item.settle(error=error)
            return
        for item, result in zip(group, results):
            item.settle(result)
