"""Scoring a validated request: straight from the request's objects to score columns, without tables.

A one-account request costs less computation than handing it to a thread would add, so small requests
are scored on the event loop itself; larger ones (which would hold the loop for longer than a health
probe should wait) go to a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from configuration.tiering import Alerts, PilotSettings
from scoring.forecast import SIMULATIONS
from scoring.pyfunc import TieringModel
from serving.requests import ForecastRequest, ScoreRequest, scoring_as_of

# Accounts plus their activity rows: about as much work as the event loop may hold before other requests wait.
INLINE_MAX_ROWS = 2_000


@dataclass(frozen=True)
class ServingModel:
    """A loaded model and what `/model` says about it."""

    model: TieringModel
    version: str  # the registered version, or "rules-only"
    facts: dict = field(default_factory=dict)  # ModelInfo fields read from the registry
    alerts: Alerts = field(default_factory=Alerts)  # the business configuration's thresholds for /alerts
    pilot: PilotSettings = field(default_factory=PilotSettings)  # where a running pilot's control group is left out
    config_version: int | None = None  # the workspace's business configuration version scored with, if any


@dataclass(frozen=True)
class Scored:
    scores: dict[str, np.ndarray]  # the SPEC score columns, one entry per account in request order
    as_of: pd.Timestamp
    version: str
    forecast: pd.DataFrame | None = None  # per tier, when asked for and the model can forecast


def request_rows(request: ScoreRequest) -> int:
    return sum(1 + len(a.engagement) + len(a.intent) + len(a.opportunities) for a in request.accounts)


def score_request(
    serving: ServingModel,
    request: ScoreRequest,
    *,
    by_capacity: bool,
    budget: float | None = None,
    forecast: bool = False,
    explain: bool = True,
) -> Scored:
    """The loaded model scores the request's accounts from their own activity: the one scoring path of every
    endpoint (`/score` by the frozen cut-offs; `/tier` and `/forecast` by capacity, with the forecast)."""
    as_of = scoring_as_of(request)
    simulations = request.simulations if isinstance(request, ForecastRequest) else SIMULATIONS
    scored = serving.model.score_accounts(
        request.accounts,
        as_of,
        by_capacity=by_capacity,
        budget=budget,
        model_version=serving.version,
        forecast=forecast,
        explain=explain,
        simulations=simulations,
    )
    return Scored(scored.scores, as_of, serving.version, scored.forecast)
