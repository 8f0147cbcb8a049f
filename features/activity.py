"""Turning accounts with their activity into point-in-time feature builders, and the default `as_of`.

One preparation for both inputs the model scores: the canonical tables of a batch export (in
`features.pointintime`) and the API's accounts, each carrying its own engagement, intent and deals
(here). A test holds the two to the same features, value for value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from features.config import CHANNELS, ModelConfig
from features.pointintime import Activity, FeatureBuilder, vocabulary_codes
from features.schema import OPTIONAL, CrmData
from features.timeindex import seconds_of


def day_after_latest(moments: Iterable[Any]) -> pd.Timestamp | None:
    """The default `as_of` everywhere: the day after the latest date given, so every record is seen; None if none."""
    present = [pd.Timestamp(moment) for moment in moments if moment is not None and not pd.isna(moment)]
    return max(present).normalize() + pd.Timedelta(days=1) if present else None


def default_as_of(data: CrmData) -> pd.Timestamp:
    """The day after the latest date anywhere in the export, so every record is seen (today if it has none)."""
    events = (
        [data.grouped.latest["engagement"], data.grouped.latest["intent"]]
        if data.grouped is not None
        else [data.engagement["timestamp"].max(), data.intent["date"].max()]
    )
    latest = day_after_latest(
        [data.opportunities["created_date"].max(), data.opportunities["close_date"].max(), *events]
    )
    return latest if latest is not None else pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()


def account_columns_of(accounts: Sequence[Any], custom: list[str]) -> dict[str, list]:
    """The accounts table as columns: id, the contract's fields, and the named custom fields (pydantic extras)."""
    return {
        "account_id": [account.account_id for account in accounts],
        **{name: [getattr(account, name) for account in accounts] for name in OPTIONAL["accounts"]},
        **{name: [(account.__pydantic_extra__ or {}).get(name) for account in accounts] for name in custom},
    }


def builder_for_accounts(accounts: Sequence[Any], config: ModelConfig) -> FeatureBuilder:
    """A point-in-time feature builder over accounts that carry their activity, their codes being their positions.

    Reads the accounts (the service's validated request objects: `engagement`, `intent` and `opportunities`
    lists on each) straight into arrays, the same values the batch import's tables give, at a fraction of
    the cost of building tables.
    """
    columns = account_columns_of(
        accounts, [name for name in config.model.extra_features if name not in OPTIONAL["accounts"]]
    )

    def owners(rows: list[list]) -> np.ndarray:
        return np.repeat(np.arange(len(accounts), dtype=np.int64), [len(r) for r in rows])

    events = [account.engagement for account in accounts]
    flat_events = list(chain.from_iterable(events))
    engagement = Activity(
        owners(events),
        vocabulary_codes([e.channel for e in flat_events], list(CHANNELS)),
        seconds_of([e.timestamp for e in flat_events]),
        np.array([e.count for e in flat_events], dtype="float64"),
    )
    signals = [account.intent for account in accounts]
    flat_signals = list(chain.from_iterable(signals))
    intent = Activity(
        owners(signals),
        vocabulary_codes([s.topic for s in flat_signals], config.intent.topics),
        seconds_of([s.date for s in flat_signals]),
        np.array([s.score for s in flat_signals], dtype="float64") / 100.0,
    )
    closed = [
        [deal for deal in account.opportunities if deal.outcome != "open" and deal.close_date is not None]
        for account in accounts
    ]
    flat_closed = list(chain.from_iterable(closed))
    deals = Activity(
        owners(closed),
        np.array([deal.outcome != "won" for deal in flat_closed], dtype=np.int64),
        seconds_of([deal.close_date for deal in flat_closed]),
        np.array([deal.amount if deal.amount is not None else np.nan for deal in flat_closed], dtype="float64"),
    )
    every_deal = [account.opportunities for account in accounts]
    flat_deals = list(chain.from_iterable(every_deal))
    created = Activity(
        owners(every_deal),
        np.zeros(len(flat_deals), dtype=np.int64),
        seconds_of([deal.created_date for deal in flat_deals]),
        np.array([deal.amount if deal.amount is not None else np.nan for deal in flat_deals], dtype="float64"),
    )
    return FeatureBuilder.from_activity(config, columns, engagement, intent, deals, created)
