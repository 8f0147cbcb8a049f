"""The BentoML HTTP service (SPEC section 7): score accounts on the registry's champion model.

`POST /score` scores accounts one by one (tiers from the cut-offs frozen with the model), `POST /tier`
ranks a whole book (tiers filled by capacity, budget split), `GET /model` says which model answers;
both place the workspace store's active pins. The workspace pages are mounted under `/app`.
The health probes and `/metrics` are BentoML's own. Run it with `tiering serve`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.to_thread
import bentoml
import numpy as np
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from scoring import registry
from serving import memory
from serving.alerts_api import AlertsRequest, AlertsResponse
from serving.alerts_api import answer as alerts_answer
from serving.champion import ChampionFollower, reload_seconds
from serving.launch import access_log_enabled
from serving.logs import log_rejections_on_one_line
from serving.middleware import WORKSPACE_PATH, BearerAuth, BodySizeLimit, JsonBodiesOnly
from serving.offloop import validate_off_loop
from serving.openapi import DocumentedService
from serving.predict import INLINE_MAX_ROWS, request_rows, score_request
from serving.requests import ForecastRequest, ScoreRequest, TierRequest
from serving.responses import (
    ForecastResponse,
    ModelInfo,
    ScoreResponse,
    TierResponse,
    forecast_records,
    score_records,
    tier_budget_records,
)
from serving.workspace.app import workspace_app
from serving.workspace.pins import (
    family_cache,
    pilot_cache,
    pin_cache,
    with_pilot_groups,
    with_pins,
    with_published_families,
)

# BentoML routes every API as POST; the one GET route lives on a small FastAPI app mounted beside them.
model_routes = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

# BentoML opens five OpenTelemetry spans per request, which by default (no exporter configured) go nowhere and cost
# about 0.25 ms of a 3 ms single-account answer. Left out of tracing by default: BENTOML_CONFIG's
# services.abm-tiering.tracing.excluded_urls replaces this list (docs/serving.md).
# Patterns searched in the request's URL (scheme://host/path, no query): these paths exactly, not /app/... ones.
UNTRACED_ROUTES = [f"//[^/]+/{route}$" for route in ("score", "tier", "forecast", "alerts")]


@bentoml.service(
    name="abm-tiering",
    traffic={"timeout": 300},  # a 100,000-account book takes a while; single accounts take milliseconds
    # LightGBM's OpenMP threads only contend with each other on one small request at a time.
    envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    # One log line per request is a visible share of a small answer; `tiering serve --access-log` turns it on.
    logging={"access": {"enabled": access_log_enabled()}},
    tracing={"excluded_urls": UNTRACED_ROUTES},
)
@bentoml.asgi_app(model_routes)
@bentoml.asgi_app(workspace_app, path=WORKSPACE_PATH)
class TieringService:
    def __init__(self) -> None:
        log_rejections_on_one_line()
        self.champion = ChampionFollower(reload_seconds())
        self.champion.start()
        self.trimmer = memory.trimmer
        self.trimmer.start()

    @bentoml.on_shutdown
    def stop(self) -> None:
        self.champion.stop()
        self.trimmer.stop()

    def __is_ready__(self) -> bool:
        if self.champion.problem:
            # BentoML answers False with a fixed text; raising puts the reason in the 503 body instead.
            raise HTTPException(status_code=503, detail=f"not ready: {self.champion.problem}")
        return True

    # Async: a small request is scored right here (see serving.predict), sparing a thread hand-off.
    @bentoml.api(route="/score", output_spec=ScoreResponse)
    async def score(self, request: ScoreRequest, /) -> ScoreResponse | JSONResponse:
        """Score accounts one by one; each is placed in a tier by the cut-offs frozen with the model."""
        serving = self.champion.serving  # one model for the whole request, even if the alias moves meanwhile
        if serving is None:
            return self._unavailable()
        if request_rows(request) <= INLINE_MAX_ROWS:
            scored = score_request(serving, request, by_capacity=False)
        else:
            scored = await anyio.to_thread.run_sync(partial(score_request, serving, request, by_capacity=False))
        scores = with_pins(
            scored.scores, pin_cache.pinned(scored.scores["account_id"]), None, serving.model.config.budget
        )
        scores = with_pilot_groups(scores, pilot_cache.pinned(scored.scores["account_id"]))
        if "family_id" in scores:  # a model that rolls up: the family view as the latest published scoring saw it
            by_family = serving.model.config.hierarchy.tier_by == "family"
            scores = with_published_families(scores, family_cache.current(), by_family)
        return ScoreResponse(model_version=scored.version, as_of=scored.as_of.date(), scores=score_records(scores))

    @bentoml.api(route="/tier", output_spec=TierResponse)
    def tier(self, request: TierRequest, /) -> TierResponse | JSONResponse:
        """Rank a whole book: tiers filled by capacity over these accounts, the budget split by tier."""
        serving = self.champion.serving
        if serving is None:
            return self._unavailable()
        scored = score_request(serving, request, by_capacity=True, budget=request.budget, forecast=True)
        # The store's pins hold in /tier as in `tiering score`; the forecast stays by the model's own tiers.
        config = serving.model.config
        scores = with_pins(
            scored.scores,
            pin_cache.pinned(scored.scores["account_id"]),
            request.budget,
            config.budget,
            by_family=config.hierarchy.tier_by == "family" and "family_id" in scored.scores,
        )
        scores = with_pilot_groups(scores, pilot_cache.pinned(scored.scores["account_id"]))
        pipeline = serving.model.scorer.pipeline
        return TierResponse(
            model_version=scored.version,
            as_of=scored.as_of.date(),
            scores=score_records(scores),
            budget=request.budget,
            tiers=tier_budget_records(scores["tier"], request.budget, serving.model.config.budget),
            horizon_days=None if scored.forecast is None or pipeline is None else pipeline.horizon_days,
            forecast=None if scored.forecast is None else forecast_records(scored.forecast),
        )

    @bentoml.api(route="/forecast", output_spec=ForecastResponse)
    def forecast(self, request: ForecastRequest, /) -> ForecastResponse | JSONResponse:
        """Tiers by capacity over the book, then per tier: new opportunities, pipeline value, deals won and won revenue
        expected inside the horizon, each with an 80% interval from simulation."""
        serving = self.champion.serving
        if serving is None:
            return self._unavailable()
        pipeline = serving.model.scorer.pipeline
        if pipeline is None or not serving.model.can_forecast:
            return JSONResponse(
                {
                    "error": f"model {serving.version} cannot forecast: it has no pipeline-propensity learner (rules "
                    "only, or trained before it existed); train and promote a new version"
                },
                status_code=503,
            )
        # The forecast reads tiers and probabilities, not the reasons (which cost more than the prediction).
        scored = score_request(serving, request, by_capacity=True, forecast=True, explain=False)
        assert scored.forecast is not None  # the model can forecast: checked above
        return ForecastResponse(
            model_version=scored.version,
            as_of=scored.as_of.date(),
            horizon_days=pipeline.horizon_days,
            tiers=forecast_records(scored.forecast),
        )

    @bentoml.api(route="/alerts", output_spec=AlertsResponse)
    def alerts(self, request: AlertsRequest, /) -> AlertsResponse | JSONResponse:
        """The events between two books of score records (surges, Tier 1/2 entries and exits, jumps); no delivery."""
        from configuration.tiering import Alerts, PilotSettings
        from features.errors import DataError

        serving = self.champion.serving  # the business configuration's `alerts` thresholds, else the defaults
        config = serving.alerts if serving is not None else Alerts()
        pilot = serving.pilot if serving is not None else PilotSettings()
        exclude = "alerts" in pilot.exclude_control_from
        ids = np.asarray([record.account_id for record in request.current], dtype=object)
        running = pilot_cache.pinned(ids) if exclude else None
        try:
            return AlertsResponse.model_validate(alerts_answer(request, config, exclude, running))
        except DataError as error:  # the request's own checks come first; this is a last line, never a 500
            return JSONResponse(
                {"detail": [{"loc": [], "msg": problem.render()} for problem in error.problems]}, status_code=400
            )

    @model_routes.get("/model", response_model=ModelInfo, summary="The model answering requests")
    def model_info(self) -> ModelInfo:
        serving, follower = self.champion.serving, self.champion
        # "champion" only while the version answering is the one the registry calls champion: after a broken version
        # is promoted, the earlier one keeps answering, under its own number and without the alias.
        is_champion = bool(serving and serving.facts and serving.version == follower.registry_champion)
        return ModelInfo(
            name=registry.MODEL_NAME,
            version=serving.version if serving else None,
            alias=registry.CHAMPION if is_champion else None,
            ready=follower.ready,
            problem=follower.problem or follower.registry_problem,
            registry_champion=follower.registry_champion,
            **(serving.facts if serving else {}),
        )

    def _unavailable(self) -> JSONResponse:
        return JSONResponse({"error": f"no model can score: {self.champion.problem}"}, status_code=503)


# @bentoml.service makes the class a bentoml Service, whose attributes the type checker cannot see.
service: Any = TieringService
validate_off_loop(service.apis["score"], service.apis["tier"], service.apis["forecast"], service.apis["alerts"])
# Outermost first: an unauthenticated client is refused before its body is read.
service.add_asgi_middleware(BearerAuth)
service.add_asgi_middleware(JsonBodiesOnly)
service.add_asgi_middleware(BodySizeLimit)
service.add_asgi_middleware(DocumentedService, apis=service.apis)
