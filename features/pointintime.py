"""Point-in-time account features: every value is computed from data dated strictly before a cut-off.

A training row is a closed opportunity whose cut-off is its `created_date`; scoring as of T uses the
cut-off T for every account. Firmographics are taken as given (CRMs keep no history of them).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from features.config import CHANNELS, TieringConfig
from features.schema import CrmData
from features.timeindex import TimeIndex, to_seconds

RECENT_DAYS = 30
OTHER = "other"

FIRMOGRAPHIC_TEXT = ("industry", "country", "region")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def engagement_columns() -> dict[str, list[str]]:
    channels = [*CHANNELS, OTHER]
    return {
        "decayed": [f"eng_w_{c}" for c in channels],
        "recent": [f"eng_30d_{c}" for c in channels],
    }


def intent_columns(config: TieringConfig) -> list[str]:
    return [f"intent_w_{slug(t)}" for t in config.intent.topics] + [f"intent_w_{OTHER}"]


def normalise_text(values: pd.Series) -> pd.Series:
    """Trim, collapse inner whitespace and lower-case: ' Software ' and 'SOFTWARE' are one industry."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # clean each distinct value once
    cleaned = pd.Series(uniques, dtype="str").str.strip().str.replace(r"\s+", " ", regex=True).str.lower()
    cleaned = cleaned.where(cleaned.notna() & (cleaned != ""), None).to_numpy(dtype=object)
    result = np.where(codes >= 0, cleaned[np.clip(codes, 0, None)] if len(cleaned) else None, None)
    return pd.Series(result, index=values.index, dtype="str")


def firmographics(accounts: pd.DataFrame, config: TieringConfig) -> pd.DataFrame:
    """One row per account (indexed by account_id): cleaned firmographics and extra feature columns."""
    frame = pd.DataFrame(index=pd.Index(accounts["account_id"].astype("str"), name="account_id"))
    for column in FIRMOGRAPHIC_TEXT:
        frame[column] = normalise_text(accounts[column]).to_numpy()
    frame["employees"] = accounts["employees"].to_numpy(dtype="float64")
    frame["annual_revenue"] = accounts["annual_revenue"].to_numpy(dtype="float64")
    stacks = normalise_text(accounts["tech_stack"]).fillna("").str.split(r"\s*;\s*", regex=True)
    icp_tech = set(config.business_fit.tech_stack)
    frame["tech_stack_size"] = stacks.map(lambda items: sum(1 for t in items if t)).to_numpy(dtype="float64")
    frame["tech_icp_matches"] = stacks.map(lambda items: len(icp_tech.intersection(items))).to_numpy(dtype="float64")
    for column in config.model.extra_features:
        values = accounts[column] if column in accounts.columns else pd.Series([None] * len(accounts))
        numeric = pd.to_numeric(values, errors="coerce")
        if values.notna().sum() and numeric.notna().sum() == values.notna().sum():
            frame[f"extra_{slug(column)}"] = numeric.to_numpy(dtype="float64")
        else:
            frame[f"extra_{slug(column)}"] = normalise_text(values).to_numpy()
    return frame


def _vocabulary_codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Position of each value in `vocabulary` after normalising, len(vocabulary) for anything else."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    known = {word.lower(): i for i, word in enumerate(vocabulary)}
    per_unique = normalise_text(pd.Series(uniques, dtype="str")).map(known).fillna(len(vocabulary))
    lookup = np.append(per_unique.to_numpy(dtype=np.int64), len(vocabulary))  # the NA sentinel -1 lands last
    return lookup[codes]


def _channel_codes(channels: pd.Series) -> np.ndarray:
    return _vocabulary_codes(channels, list(CHANNELS))


def _topic_codes(topics: pd.Series, config: TieringConfig) -> np.ndarray:
    return _vocabulary_codes(topics, config.intent.topics)


class FeatureBuilder:
    """Indexes a CRM export once, then answers feature rows for any (account, cut-off) pairs."""

    def __init__(self, data: CrmData, config: TieringConfig):
        self.config = config
        self.firmographics = firmographics(data.accounts, config)
        self._account_codes = pd.Index(self.firmographics.index)
        self._n_channels = len(CHANNELS) + 1
        self._n_topics = len(config.intent.topics) + 1
        eng = data.engagement
        eng_group = self._codes(eng["account_id"]) * self._n_channels + _channel_codes(eng["channel"])
        self._engagement = TimeIndex(eng_group, to_seconds(eng["timestamp"]), eng["count"].to_numpy(dtype="float64"),
                                     config.engagement.half_life_days)
        intent = data.intent
        intent_group = self._codes(intent["account_id"]) * self._n_topics + _topic_codes(intent["topic"], config)
        self._intent = TimeIndex(intent_group, to_seconds(intent["date"]),
                                 intent["score"].to_numpy(dtype="float64") / 100.0, config.engagement.half_life_days)
        self._intent_rows = TimeIndex(self._codes(intent["account_id"]), to_seconds(intent["date"]),
                                      np.ones(len(intent)))
        opps = data.opportunities
        closed = opps[opps["outcome"].isin(["won", "lost"]) & opps["close_date"].notna()]
        won = (closed["outcome"] == "won").to_numpy()
        history_group = self._codes(closed["account_id"]) * 2 + (~won).astype(np.int64)
        self._history = TimeIndex(history_group, to_seconds(closed["close_date"]), np.ones(len(closed)))
        self._won_amount = TimeIndex(self._codes(closed["account_id"])[won], to_seconds(closed["close_date"])[won],
                                     closed["amount"].fillna(0.0).to_numpy(dtype="float64")[won])

    def _codes(self, account_ids: pd.Series) -> np.ndarray:
        # Unknown accounts get a code past the end, so they never collide with a real account.
        codes = self._account_codes.get_indexer(account_ids.astype("str"))
        return np.where(codes < 0, len(self._account_codes), codes).astype(np.int64)

    def build(self, account_ids: pd.Series, cutoffs: pd.Series) -> pd.DataFrame:
        """Feature rows aligned with `account_ids` (same index), each seeing only data before its cut-off."""
        config = self.config
        codes = self._codes(account_ids)
        when = to_seconds(cutoffs)
        # Queries in (account, time) order walk the sorted event index forwards, which keeps binary
        # searches in cache: ~10x faster than random order on 20 million events.
        order = np.lexsort((when, codes))
        codes, when = codes[order], when[order]
        lookback = config.engagement.lookback_days
        out: dict[str, np.ndarray] = {}

        columns = engagement_columns()
        decayed_names, recent_names = columns["decayed"], columns["recent"]
        surge = config.intent.surge
        surging = np.zeros(len(codes), dtype=np.int64)
        for channel_code in range(self._n_channels):
            group = codes * self._n_channels + channel_code
            out[decayed_names[channel_code]] = self._engagement.decayed(group, when, lookback)
            out[recent_names[channel_code]] = self._engagement.total(group, when, RECENT_DAYS)
            surging += self._surges(self._engagement, group, when)
        out["eng_w_total"] = np.sum([out[n] for n in decayed_names], axis=0)
        out["eng_30d_total"] = np.sum([out[n] for n in recent_names], axis=0)
        last_seen = np.full(len(codes), np.nan)
        for channel_code in range(self._n_channels):
            days = self._engagement.days_since_last(codes * self._n_channels + channel_code, when)
            last_seen = np.fmin(last_seen, days)
        out["days_since_engagement"] = last_seen

        for topic_code, name in enumerate(intent_columns(config)):
            out[name] = self._intent.decayed(codes * self._n_topics + topic_code, when, lookback)
        out["intent_w_total"] = np.sum([out[n] for n in intent_columns(config)], axis=0)
        out["intent_30d_signals"] = self._intent_rows.total(codes, when, RECENT_DAYS)
        surging += self._surges(self._intent_rows, codes, when)
        out["surging_channels"] = surging.astype(np.float64)

        out["prior_won"] = self._history.total(codes * 2, when)
        out["prior_lost"] = self._history.total(codes * 2 + 1, when)
        out["prior_won_amount"] = self._won_amount.total(codes, when)
        out["days_since_won"] = self._history.days_since_last(codes * 2, when)

        restore = np.empty_like(order)
        restore[order] = np.arange(len(order))
        features = pd.DataFrame({name: values[restore] for name, values in out.items()}, index=account_ids.index)
        firmo = self.firmographics.reindex(account_ids.astype("str").to_numpy())
        firmo.index = account_ids.index
        features = pd.concat([firmo, features], axis=1)
        features.insert(0, "account_id", account_ids.astype("str").to_numpy())
        features.insert(1, "cutoff", pd.to_datetime(cutoffs).to_numpy())
        features["intent_surge"] = features["surging_channels"] >= surge.min_channels
        return features

    def _surges(self, index: TimeIndex, group: np.ndarray, when: np.ndarray) -> np.ndarray:
        """1 where this channel's last-14-day activity is `factor` times its own baseline rate."""
        surge = self.config.intent.surge
        recent = index.total(group, when, surge.window_days)
        baseline = index.total(group, when, surge.baseline_days, end_offset_days=surge.window_days)
        expected = baseline * surge.window_days / surge.baseline_days
        return ((recent >= surge.min_recent_events) & (recent >= surge.factor * expected)).astype(np.int64)

    def surging_channel_names(self, account_ids: pd.Series, cutoffs: pd.Series) -> pd.Series:
        """Which channels surge, as 'demo_request;intent', for the accounts that need it spelled out."""
        codes = self._codes(account_ids)
        when = to_seconds(cutoffs)
        names = [*CHANNELS, OTHER]
        flags = {name: self._surges(self._engagement, codes * self._n_channels + i, when) for i, name in enumerate(names)}
        flags["intent"] = self._surges(self._intent_rows, codes, when)
        table = pd.DataFrame(flags, index=account_ids.index).astype(bool)
        return table.apply(lambda row: ";".join(table.columns[row.to_numpy()]), axis=1) if len(table) else pd.Series(
            [], dtype="str", index=account_ids.index)


def training_rows(data: CrmData, builder: FeatureBuilder, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Closed opportunities with start <= close_date < end, each with features as of its created_date."""
    opps = data.opportunities
    closed = opps[
        opps["outcome"].isin(["won", "lost"]) & (opps["close_date"] >= start) & (opps["close_date"] < end)
    ].sort_values(["close_date", "opportunity_id"], kind="stable").reset_index(drop=True)
    features = builder.build(closed["account_id"], closed["created_date"])
    features.insert(0, "opportunity_id", closed["opportunity_id"].to_numpy())
    features["close_date"] = closed["close_date"].to_numpy()
    features["won"] = (closed["outcome"] == "won").to_numpy(dtype=np.int64)
    features["amount"] = closed["amount"].to_numpy(dtype="float64")
    return features


def snapshot(data: CrmData, builder: FeatureBuilder, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every account's features as of `as_of` (data strictly before that instant)."""
    ids = data.accounts["account_id"].astype("str").reset_index(drop=True)
    cutoffs = pd.Series(pd.Timestamp(as_of), index=ids.index)
    return builder.build(ids, cutoffs)
