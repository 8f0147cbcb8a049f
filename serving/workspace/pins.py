"""The store's active pins in the API: `/score` and `/tier` answer with them, from memory.

A request never waits for the database: it reads the pins held in this process. They are reloaded at once when a
pin changes through the pages of this process, and otherwise in the background every TIERING_RELOAD_SECONDS
(another worker's or another server's pins, and pins that expired at midnight). With no store there are no pins,
and the API never creates one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from features.config import Budget
from scoring.tiers import allocate_budget, allocate_budget_by_family, apply_overrides

logger = logging.getLogger("bentoml.abm_tiering")
PIN_COLUMNS = ["account_id", "tier", "reason", "owner"]
NO_PINS = pd.DataFrame({name: pd.Series(dtype="str") for name in PIN_COLUMNS})


def store_pins() -> pd.DataFrame:
    """The store's active pins today; none when there is no store (it is not created here)."""
    from workspace import store_exists
    from workspace.store import WorkspaceStore

    if not store_exists():
        return NO_PINS
    with WorkspaceStore.open(create=False) as store:
        return store.active_pins()[PIN_COLUMNS]


class PinCache:
    """The active pins, reloaded on `refresh()` and, when older than `max_age` seconds, in a background thread."""

    def __init__(self, load: Callable[[], pd.DataFrame] = store_pins, max_age: float | None = None):
        self._load = load
        self._max_age = max_age
        self._pins = NO_PINS
        self._ids: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._refreshing = threading.Lock()
        self.problem: str | None = None

    @property
    def max_age(self) -> float:
        if self._max_age is None:
            from ingest.settings import load_settings

            self._max_age = load_settings().reload_seconds
        return self._max_age

    def forget(self) -> None:
        """Drop the pins held: the next request loads them (a server starting, perhaps on another store)."""
        with self._refreshing:
            self._pins, self._ids, self._loaded_at, self.problem = NO_PINS, frozenset(), None, None

    def refresh(self) -> None:
        """Reload now (after a pin changed here); on failure the pins held stay, and `problem` says why."""
        with self._refreshing:
            self._reload()

    def _reload(self) -> None:
        try:
            pins = self._load()
        except Exception as error:  # the database may be down: keep answering with the pins known
            self.problem = f"the workspace pins could not be reloaded: {str(error).splitlines()[0][:300]}"
            logger.warning(self.problem)
        else:
            self._pins, self._ids, self.problem = pins, frozenset(pins["account_id"]), None
        self._loaded_at = time.monotonic()

    def current(self) -> pd.DataFrame:
        """The pins held now; starts a background reload when they are older than `max_age`."""
        loaded_at = self._loaded_at
        if loaded_at is None:
            self.refresh()  # the first request of a process loads them once
        elif time.monotonic() - loaded_at > self.max_age and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._reload_and_release, daemon=True, name="pin-reload").start()
        return self._pins

    def _reload_and_release(self) -> None:
        try:
            self._reload()
        finally:
            self._refreshing.release()

    def pinned(self, account_ids: np.ndarray) -> pd.DataFrame | None:
        """The pins of these accounts, or None when none of them is pinned (the usual, cheap case)."""
        pins = self.current()
        if pins.empty or not self._ids.intersection(account_ids.tolist()):
            return None
        return pins[pins["account_id"].isin(account_ids)]


def with_pins(
    scores: dict[str, np.ndarray],
    pins: pd.DataFrame | None,
    budget: float | None,
    split: Budget,
    by_family: bool = False,
) -> dict[str, np.ndarray]:
    """Score columns with the pinned accounts' final tier and `override_reason` (as `tiering score --overrides`
    writes them), and the budget split again over the final tiers when a budget was asked for (across families
    first with `by_family`, as hierarchy.tier_by: family splits it)."""
    if pins is None or pins.empty:
        return scores
    ids = pd.Series(scores["account_id"])
    tier, reason = apply_overrides(pd.Series(scores["learned_tier"]), ids, pins)
    pinned = dict(scores)
    pinned["tier"], pinned["override_reason"] = tier.to_numpy(dtype=object), reason.to_numpy(dtype=object)
    if budget is not None and by_family:
        families = pd.Series(np.asarray(scores["family_id"], dtype=object))
        pinned["budget"] = allocate_budget_by_family(tier, families, budget, split).to_numpy()
    elif budget is not None:
        pinned["budget"] = allocate_budget(tier, budget, split).to_numpy()
    return pinned


def store_families() -> pd.DataFrame:
    """The latest published scoring's family columns; none when there is no store (it is not created here)."""
    from workspace import store_exists
    from workspace.store import PUBLISHED_FAMILY_COLUMNS, WorkspaceStore

    if not store_exists():
        return pd.DataFrame({name: pd.Series(dtype="object") for name in PUBLISHED_FAMILY_COLUMNS})
    with WorkspaceStore.open(create=False) as store:
        return store.published_families()


def with_published_families(
    scores: dict[str, np.ndarray], published: pd.DataFrame, by_family: bool = False
) -> dict[str, np.ndarray]:
    """Score columns whose family columns are those of the latest published scoring (a single account scored on its
    own cannot see its family): empty for an account that scoring did not place in a family. With `by_family`
    (tier_by: family) such an account also inherits that family tier as its learned and final tier, unless a pin
    holds it."""
    if "family_id" not in scores:
        return scores
    found = published.set_index("account_id").reindex(pd.Index(np.asarray(scores["account_id"], dtype=object)))
    out = dict(scores)
    if by_family:
        inherited = found["family_tier"].notna().to_numpy()
        family_tier = found["family_tier"].to_numpy(dtype=object)
        unpinned = inherited & (np.asarray(scores["override_reason"], dtype=object) == "")
        out["learned_tier"] = np.where(inherited, family_tier, np.asarray(scores["learned_tier"], dtype=object))
        out["tier"] = np.where(unpinned, family_tier, np.asarray(scores["tier"], dtype=object))
    for name in found.columns:
        values = found[name]
        out[name] = (
            values.to_numpy(dtype="float64", na_value=np.nan)
            if name.endswith(("_score", "_revenue", "_share"))
            else values.astype(object).where(values.notna(), "").to_numpy(dtype=object)
        )
    return out


pin_cache = PinCache()


def store_pilot_groups() -> pd.DataFrame:
    """account_id and group of the accounts in pilots running today; none without a store (never created here)."""
    from workspace import store_exists
    from workspace.pilots import active_assignments
    from workspace.store import WorkspaceStore

    if not store_exists():
        return NO_PINS
    with WorkspaceStore.open(create=False) as store:
        return active_assignments(store)[["account_id", "group"]]


def with_pilot_groups(scores: dict[str, np.ndarray], groups: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Score columns with `pilot_group`: treatment, control, or empty outside a running pilot (always present)."""
    ids = np.asarray(scores["account_id"], dtype=object)
    marked = dict(scores)
    if groups is None or groups.empty:
        marked["pilot_group"] = np.full(len(ids), "", dtype=object)
    else:
        group = groups.drop_duplicates("account_id").set_index("account_id")["group"]
        marked["pilot_group"] = pd.Series(ids).astype(str).map(group).fillna("").to_numpy(dtype=object)
    return marked


# Pilots change when a design is published (by the CLI): reloaded in the background like another process's pins.
pilot_cache = PinCache(load=store_pilot_groups)
family_cache = PinCache(load=store_families)  # the same reloading, for the published scoring's families
