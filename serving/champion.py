"""Which model the service scores with: the registry's `champion`, followed while the service runs.

A background thread asks the registry every `TIERING_RELOAD_SECONDS` (default 10) which version is
champion and loads a new one next to the old; the swap is one attribute assignment. A request reads
`serving` once and scores with that model to the end, so a swap never fails or mixes a request.
With no champion the service scores with the rules only and says so. A champion that cannot be
loaded makes the service not ready, with the reason, while the last good model (if any) keeps
answering under its own version number.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref

import numpy as np

from configuration.tiering import TieringConfig, load_config
from features.redact import redact
from scoring import registry
from scoring.messages import no_champion_message
from scoring.pyfunc import TieringModel
from scoring.registry import load_model_for
from scoring.scorer import RULES_ONLY
from serving.launch import config_path
from serving.predict import ServingModel, score_request
from serving.requests import ACCOUNT_EXAMPLE, ScoreRequest
from workspace.active import active_version_over

# How MLflow says "no such alias" and "no such registered model"; any other error means the
# registry could not be asked, which must not be mistaken for "there is no champion".
VERSION_FACTS = ("trained_at", "window_start", "window_end", "gate_reason")
VERSION_SCORES = ("holdout_roc_auc", "rule_roc_auc")

logger = logging.getLogger("bentoml.abm_tiering")


def reload_seconds() -> float:
    """TIERING_RELOAD_SECONDS, validated with every other setting (ingest.settings; SettingsError if bad)."""
    from ingest.settings import load_settings

    return load_settings().reload_seconds


def registered_champion() -> registry.VersionInfo | None:
    """The champion's registry entry; None when there is none; raises when the registry cannot be asked."""
    return registry.alias_version(registry.CHAMPION)


def _float_or_none(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and np.isfinite(value) else None


def _version_facts(champion: registry.VersionInfo) -> dict:
    """What the registry says about a version: its tags, and the metrics of the run that trained it."""
    facts: dict = {name: champion.tags.get(name) for name in VERSION_FACTS}
    facts.update({name: _float_or_none(champion.tags.get(name)) for name in VERSION_SCORES})
    facts["run_id"] = champion.run_id
    if champion.run_id:
        metrics = registry.client().get_run(champion.run_id).data.metrics
        facts["metrics"] = {name: float(value) for name, value in sorted(metrics.items()) if np.isfinite(value)}
    return facts


def _log_no_champion() -> None:
    """Name the registered challenger, if any, and how to promote it; never a reason not to serve."""
    try:
        logger.warning("%s", no_champion_message("scoring with the rules only until one is promoted"))
    except Exception as error:  # the registry answered a moment ago; if it does not now, the next look will say so
        logger.warning("no champion is registered: scoring with the rules only (%s)", registry.first_line(error))


def load_serving_model(champion: registry.VersionInfo | None) -> ServingModel:
    # The business configuration (rule weights, blend, tiers, budget, alerts) is read now, not taken from the model.
    business, config_version = business_configuration()
    if champion is None:
        model = ServingModel(
            TieringModel.rules_only(business),
            RULES_ONLY,
            alerts=business.alerts,
            pilot=business.pilot,
            config_version=config_version,
        )
        _log_no_champion()
    else:
        # By version, not by alias: the alias may move between looking it up and loading it.
        loaded = load_model_for(champion.uri).with_business(business)
        model = ServingModel(
            loaded,
            champion.version,
            _version_facts(champion),
            alerts=business.alerts,
            pilot=business.pilot,
            config_version=config_version,
        )
    # Score one account before serving: a model that loads but cannot score is never swapped in, and
    # the first real request does not pay for the scorer's lazy set-up.
    score_request(model, ScoreRequest.model_validate({"accounts": [ACCOUNT_EXAMPLE]}), by_capacity=False)
    return model


def business_configuration() -> tuple[TieringConfig, int | None]:
    """`tiering serve --config` (TIERING_CONFIG) when given; else the workspace's active business configuration
    over ./tiering.yaml or the defaults, and its version."""
    path = config_path()
    business = load_config(path)
    if path is not None:
        return business, None
    business, _, version = active_version_over(business, "tiering.yaml")
    return business, version


def active_config_version() -> int | None:
    """The workspace's active configuration version now (None: none, or TIERING_CONFIG fixes the configuration)."""
    if config_path() is not None:
        return None
    return business_configuration()[1]


_FOLLOWERS: weakref.WeakSet[ChampionFollower] = weakref.WeakSet()


def refresh_followers() -> None:
    """Every follower of this process looks again now (a business configuration was published from the pages)."""
    for follower in list(_FOLLOWERS):
        follower.refresh()


class ChampionFollower:
    """Keeps `serving` on the registry's champion; `problem` says why the champion cannot be served."""

    def __init__(self, interval_seconds: float):
        self.interval_seconds = interval_seconds
        self.serving: ServingModel | None = None
        self.problem: str | None = "the model has not been loaded yet"
        # What the registry last said is champion (RULES_ONLY when none), and why it cannot be asked now, if it
        # cannot: /model tells both, so a service still answering with an earlier version never passes it off as
        # the champion.
        self.registry_champion: str | None = None
        self.registry_problem: str | None = None
        self._configured = False
        self._last_problem: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="champion-follower", daemon=True)
        self._refreshing = threading.Lock()  # the background look and a publish's look, one at a time
        _FOLLOWERS.add(self)

    @property
    def ready(self) -> bool:
        return self.problem is None

    def start(self) -> None:
        """Load the champion now, then follow the alias in the background."""
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_seconds + 5)

    def _follow(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            self.refresh()

    def refresh(self) -> None:
        """One look at the registry and the active configuration: load the champion if it is not the version
        serving, or if another business configuration was published since."""
        with self._refreshing:
            self._refresh()

    def _refresh(self) -> None:
        try:
            if not self._configured:
                registry.configure()
                self._configured = True
            champion = registered_champion()
        except Exception as error:  # a store that is down, locked or misconfigured: keep what serves
            described = registry.first_line(error)
            if not isinstance(error, registry.TrackingError):
                described = f"cannot read the MLflow registry at {redact(registry.tracking_uri())}: {described}"
            self.registry_problem = described + (
                f"; still serving version {self.serving.version}, loaded earlier" if self.serving is not None else ""
            )
            self._report(self.registry_problem, blocking=self.serving is None)
            return
        self.registry_problem = None
        wanted = champion.version if champion else RULES_ONLY
        self.registry_champion = wanted
        if self.serving is not None and self.serving.version == wanted:
            try:  # a newly published business configuration is loaded like a new champion
                unchanged = active_config_version() == self.serving.config_version
            except Exception as error:  # a store that cannot be read now: keep what serves
                logger.warning("cannot read the active configuration: %s", registry.first_line(error))
                unchanged = True
            if unchanged:
                self._report(None)
                return
        try:
            loaded = load_serving_model(champion)
        except Exception as error:  # missing or corrupt artifacts, a bad tiering.yaml: never serve them, never crash
            if champion is not None:
                problem = registry.load_problem(champion, error)
            else:
                problem = (
                    f"the rules-only scorer (no champion is registered) cannot be loaded: {registry.first_line(error)}"
                )
            if self.serving is not None:
                problem += f"; still answering with version {self.serving.version}, loaded earlier"
            self._report(problem, blocking=True)
            return
        previous = self.serving.version if self.serving else None
        self.serving = loaded  # the old model is garbage from here on
        # What the heap now holds (libraries, this model) stays: frozen, the garbage collector stops
        # re-scanning it every few requests (a noticeable share of a single-account request). Unfrozen
        # first, so the previous model's cycles are collected rather than kept for good.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._report(None)
        logger.info("now serving model %s (was %s)", loaded.version, previous or "none")

    def _report(self, problem: str | None, blocking: bool = True) -> None:
        """Log a problem once when it appears; only a blocking one makes the service not ready."""
        if problem and problem != self._last_problem:
            logger.error("%s", problem)
        self._last_problem = problem
        if blocking or problem is None:
            self.problem = problem
