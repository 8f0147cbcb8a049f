"""Point-in-time account features: every value is computed from data dated strictly before a cut-off.

A training row is a closed opportunity whose cut-off is its `created_date`; scoring as of T uses the
cut-off T for every account. Firmographics are taken as given (CRMs keep no history of them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import CHANNELS, ModelConfig
from features.families import FAMILY_PREFIX, Families, resolve_families
from features.schema import CrmData
from features.timeindex import TimeIndex, to_seconds

RECENT_DAYS = 30
OTHER = "other"
OPEN_UNPRICED = "open_unpriced"  # open deals without an amount at the cut-off (a forecast input, not a learner's)

FIRMOGRAPHIC_TEXT = ("industry", "country", "region")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def engagement_columns() -> dict[str, list[str]]:
    channels = [*CHANNELS, OTHER]
    return {
        "decayed": [f"eng_w_{c}" for c in channels],
        "recent": [f"eng_30d_{c}" for c in channels],
    }


def intent_columns(config: ModelConfig) -> list[str]:
    return [f"intent_w_{slug(t)}" for t in config.intent.topics] + [f"intent_w_{OTHER}"]


_WHITESPACE = re.compile(r"\s+")
_TECH_SEPARATOR = re.compile(r"\s*;\s*")


def clean_text(value) -> str | None:
    """Trim, collapse inner whitespace and lower-case: ' Software ' and 'SOFTWARE' are one industry."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    text = value if isinstance(value, str) else str(value)  # a number in a text column reads as its digits
    cleaned = _WHITESPACE.sub(" ", text.strip()).lower()
    return cleaned or None


def _per_distinct(values, transform, dtype) -> np.ndarray:
    """`transform` of every value, computed once per distinct value; missing values get `transform(None)`.

    A column of millions (a Series) is factorised; a request's plain list is memoised.
    """
    if isinstance(values, pd.Series):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        lookup = np.array([transform(value) for value in uniques] + [transform(None)], dtype=dtype)
        return lookup[codes]  # the NA sentinel -1 picks the trailing transform(None)
    memo: dict = {}
    return np.array([memo[v] if v in memo else memo.setdefault(v, transform(v)) for v in values], dtype=dtype)


def _clean_each(values) -> np.ndarray:
    """`clean_text` of every value (object array, None for missing)."""
    return _per_distinct(values, clean_text, object)


def normalise_text(values: pd.Series) -> pd.Series:
    return pd.Series(_clean_each(values), index=values.index, dtype="str")


def _floats(values) -> np.ndarray:
    """Numbers as float64 with NaN for missing (None in a list, NA in a column)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.array(values, dtype="float64")


def _tech_items(stack: str | None) -> list[str]:
    return [item for item in _TECH_SEPARATOR.split(stack) if item] if stack else []


def _extra_values(accounts, column: str, n: int) -> tuple[pd.Series, pd.Series]:
    """An extra feature column's values and the same read as numbers (NaN where a value is not one)."""
    values = accounts[column] if column in accounts else [None] * n
    values = values if isinstance(values, pd.Series) else pd.Series(list(values))
    return values, pd.to_numeric(values, errors="coerce")


def text_extras(accounts, config: ModelConfig) -> frozenset[str]:
    """The extra feature columns read as text: those with a value that is not a number.

    A book built part by part decides this on the whole accounts table, so every part reads a column alike.
    """
    n = len(accounts["account_id"])
    text = set()
    for column in config.model.extra_features:
        values, numeric = _extra_values(accounts, column, n)
        if not (values.notna().sum() and numeric.notna().sum() == values.notna().sum()):
            text.add(column)
    return frozenset(text)


def firmographic_columns(accounts, config: ModelConfig, as_text: frozenset[str] | None = None) -> dict[str, np.ndarray]:
    """Cleaned firmographics and extra feature columns, one entry per account, in the order given.

    `accounts` is the accounts table or any mapping of its column names to sequences (the service
    passes plain lists), so both build the very same values. `as_text` names the extra columns read as text
    (default: `text_extras` of these accounts).
    """
    n = len(accounts["account_id"])
    frame: dict[str, np.ndarray] = {}
    for column in FIRMOGRAPHIC_TEXT:
        frame[column] = _clean_each(accounts[column])
    for column in ("employees", "annual_revenue"):
        frame[column] = _floats(accounts[column])
    stacks = [_tech_items(stack) for stack in _clean_each(accounts["tech_stack"])]
    icp_tech = set(config.business_fit.tech_stack)
    frame["tech_stack_size"] = np.array([len(items) for items in stacks], dtype="float64")
    frame["tech_icp_matches"] = np.array([len(icp_tech.intersection(items)) for items in stacks], dtype="float64")
    as_text = text_extras(accounts, config) if as_text is None else as_text
    for column in config.model.extra_features:
        values, numeric = _extra_values(accounts, column, n)
        if column in as_text:
            frame[f"extra_{slug(column)}"] = _clean_each(values)
        else:
            frame[f"extra_{slug(column)}"] = numeric.to_numpy(dtype="float64", na_value=np.nan)
    return frame


def vocabulary_codes(values, vocabulary: list[str]) -> np.ndarray:
    """Position of each value in `vocabulary` after cleaning, len(vocabulary) for anything else."""
    known = {word.lower(): i for i, word in enumerate(vocabulary)}

    def code(value) -> int:
        text = clean_text(value)
        return len(vocabulary) if text is None else known.get(text, len(vocabulary))

    return _per_distinct(values, code, np.int64)


def _with_unknown_row(values: np.ndarray) -> np.ndarray:
    """`values` and one missing value past the end (None for text, NaN for numbers)."""
    missing = np.array([None], dtype=object) if values.dtype == object else np.nan
    return np.append(values, missing).astype(values.dtype)


@dataclass(frozen=True)
class Activity:
    """The rows of one activity table reduced to what the features read, keyed by account code.

    An account code is the account's position in the accounts the builder was given; rows of unknown
    accounts carry a code past the end, so they never count for a real account.
    """

    account: np.ndarray  # int64 account codes
    kind: np.ndarray  # int64: channel or topic code; for deals, 0 won and 1 lost
    seconds: np.ndarray  # int64, see `to_seconds`
    value: np.ndarray  # float64: count, score / 100, or amount


class FeatureBuilder:
    """Indexes a CRM export once, then answers feature rows for any (account, cut-off) pairs."""

    def __init__(self, data: CrmData, config: ModelConfig, as_text: frozenset[str] | None = None):
        """`as_text`: the extra feature columns read as text, when `data` is part of a larger book (see
        `text_extras`)."""
        account_ids = pd.Index(data.accounts["account_id"].astype("str"))
        codes = self._codes_in(account_ids)
        eng, intent = data.engagement, data.intent
        opps = data.opportunities
        closed = opps[opps["outcome"].isin(["won", "lost"]) & opps["close_date"].notna()]
        self._index(
            config,
            account_ids,
            firmographic_columns(data.accounts, config, as_text),
            engagement=Activity(
                codes(eng["account_id"]),
                vocabulary_codes(eng["channel"], list(CHANNELS)),
                to_seconds(eng["timestamp"]),
                eng["count"].to_numpy(dtype="float64"),
            ),
            intent=Activity(
                codes(intent["account_id"]),
                vocabulary_codes(intent["topic"], config.intent.topics),
                to_seconds(intent["date"]),
                intent["score"].to_numpy(dtype="float64") / 100.0,
            ),
            deals=Activity(
                codes(closed["account_id"]),
                (closed["outcome"] != "won").to_numpy().astype(np.int64),
                to_seconds(closed["close_date"]),
                closed["amount"].to_numpy(dtype="float64", na_value=np.nan),
            ),
            created=Activity(
                codes(opps["account_id"]),
                np.zeros(len(opps), dtype=np.int64),
                to_seconds(opps["created_date"]),
                opps["amount"].to_numpy(dtype="float64", na_value=np.nan),
            ),
            parents=data.accounts["parent_account_id"].to_numpy(dtype=object)
            if "parent_account_id" in data.accounts
            else None,
        )

    @classmethod
    def from_activity(
        cls,
        config: ModelConfig,
        accounts: dict[str, list],
        engagement: Activity,
        intent: Activity,
        deals: Activity,
        created: Activity | None = None,
    ) -> FeatureBuilder:
        """A builder over accounts already reduced to arrays: the service's way in, without pandas tables.

        `accounts` maps the account columns (account_id and the firmographics) to one value per account;
        `deals` holds closed deals only; `created` every deal (open or closed) by its created date and amount
        (NaN where the deal has none).
        Ask it with `build_columns` and account positions as codes.
        """
        builder = cls.__new__(cls)
        builder._index(
            config,
            accounts["account_id"],
            firmographic_columns(accounts, config),
            engagement,
            intent,
            deals,
            created,
            parents=accounts.get("parent_account_id"),
        )
        return builder

    @staticmethod
    def _codes_in(account_ids: pd.Index):
        # Arrow's hash lookup on the strings themselves: pandas' get_indexer would first turn every Arrow
        # string into a Python object.
        known = pa.array(account_ids.astype("str"))

        def codes(values: pd.Series) -> np.ndarray:
            wanted = pa.array(values.astype("str"))
            found = pc.index_in(wanted, value_set=known.cast(wanted.type))
            return found.fill_null(len(account_ids)).to_numpy(zero_copy_only=False).astype(np.int64)

        return codes

    def _index(
        self,
        config: ModelConfig,
        account_ids: pd.Index | list[str],
        firmographics: dict[str, np.ndarray],
        engagement: Activity,
        intent: Activity,
        deals: Activity,
        created: Activity | None = None,
        parents=None,
    ) -> None:
        self.config = config
        self._family: FeatureBuilder | None = None
        self._families: Families | None = None
        if created is None:
            created = Activity(*(np.array([], dtype=t) for t in (np.int64, np.int64, np.int64, np.float64)))
        if config.hierarchy.roll_up == "family":
            self._index_families(account_ids, parents, firmographics, (engagement, intent, deals, created))
        self._account_ids = account_ids
        # One extra row past the end: what an unknown account reads (NaN numbers, missing text).
        self._firmographics = {name: _with_unknown_row(values) for name, values in firmographics.items()}
        self._n_channels = len(CHANNELS) + 1
        self._n_topics = len(config.intent.topics) + 1
        half_life = config.engagement.half_life_days
        self._engagement = TimeIndex(
            engagement.account * self._n_channels + engagement.kind, engagement.seconds, engagement.value, half_life
        )
        self._intent = TimeIndex(intent.account * self._n_topics + intent.kind, intent.seconds, intent.value, half_life)
        self._intent_rows = TimeIndex(intent.account, intent.seconds, np.ones(len(intent.account)))
        self._history = TimeIndex(deals.account * 2 + deals.kind, deals.seconds, np.ones(len(deals.account)))
        won = deals.kind == 0
        deal_amounts = np.nan_to_num(deals.value)  # a deal without an amount adds nothing to the sums
        self._won_amount = TimeIndex(deals.account[won], deals.seconds[won], deal_amounts[won])
        # Opportunity creations (open or closed) and closed amounts: how often the account opens pipeline, and
        # what is open at a cut-off (the pipeline-propensity learner's own features).
        self._created = TimeIndex(created.account, created.seconds, np.ones(len(created.account)))
        self._created_amount = TimeIndex(created.account, created.seconds, np.nan_to_num(created.value))
        self._closed_amount = TimeIndex(deals.account, deals.seconds, deal_amounts)
        # Deals without an amount: +1 at creation, -1 at close, so the sum before a cut-off is how many are open.
        # Built only when there are any (most exports price every deal).
        created_blank, closed_blank = np.isnan(created.value), np.isnan(deals.value)
        self._open_unpriced = (
            TimeIndex(
                np.concatenate((created.account[created_blank], deals.account[closed_blank])),
                np.concatenate((created.seconds[created_blank], deals.seconds[closed_blank])),
                np.concatenate((np.ones(created_blank.sum()), -np.ones(closed_blank.sum()))),
            )
            if created_blank.any()
            else None
        )

    def _index_families(self, account_ids, parents, firmographics: dict[str, np.ndarray], activities) -> None:
        """A second builder over the same data with every row re-keyed to its family's top account: asked for a top
        account, it answers the family's rolled-up features (sums of the decayed signals, surges over the family's
        channels, pooled deals, the top account's firmographics)."""
        ids = np.asarray(account_ids, dtype=object)
        count = len(ids)
        links = np.full(count, None, dtype=object) if parents is None else np.asarray(parents, dtype=object)
        families = resolve_families(ids, links)
        self._families = families
        # Codes past the end (rows of unknown accounts) stay past the end.
        self._top = np.append(families.top, count).astype(np.int64)
        self._family_size = np.append(np.bincount(families.top, minlength=count)[families.top], 1).astype(np.float64)
        self._family_ids = np.concatenate([ids, np.array([None], dtype=object)])[self._top]
        self._family_inputs = (ids, firmographics, activities)  # indexed on first need (see `_family_index`)
        # Members of each family, for the maxima over a family's entities.
        order = np.argsort(families.top, kind="stable")
        self._members = order
        self._member_start = np.searchsorted(families.top[order], np.arange(count + 1))

    def _family_index(self) -> FeatureBuilder:
        """A second builder over the same data with every row re-keyed to its family's top account: asked for a top
        account, it answers the family's rolled-up features at any cut-off. Built on first need (training rows)."""
        if self._family is None:
            ids, firmographics, activities = self._family_inputs
            family = FeatureBuilder.__new__(FeatureBuilder)
            rekeyed = [Activity(self._top[a.account], a.kind, a.seconds, a.value) for a in activities]
            plain = self.config.model_copy(update={"hierarchy": type(self.config.hierarchy)()})
            family._index(plain, ids, firmographics, *rekeyed)
            self._family = family
        return self._family

    def _family_features(
        self,
        codes: np.ndarray,
        when: np.ndarray,
        own: dict[str, np.ndarray],
        window_totals: tuple[np.ndarray, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """The family columns of account codes at cut-offs, each distinct (family, cut-off) computed once: family_id,
        the family's size, `family_<feature>` for every feature of the family's rolled-up row (what its
        family_learned_score is predicted from; the learners see `FAMILY_LEARNED` of them) and the largest decayed
        engagement of one of its entities.

        When every entity of each family is asked at the same cut-off (a book's snapshot), the family's row is its
        entities' own values summed (the decayed sums, counts and amounts are additive; the days since, the least;
        surges judged on the summed window totals): no second pass over the events. Otherwise (training rows) the
        re-keyed index answers it."""
        tops = self._top[codes]
        # One int64 key per (family, cut-off): seconds since 1970 stay below 2**34, codes far below 2**29.
        offset = when.min(initial=0)
        pair_key = tops * (1 << 34) + (when - offset)
        _, first, inverse = np.unique(pair_key, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        asked = np.bincount(inverse)
        distinct = len(np.unique(codes * (1 << 34) + (when - offset)))
        if distinct == len(codes) and np.array_equal(asked, self._family_size[codes[first]].astype(np.int64)):
            family = self._summed(own, tops[first], inverse, len(first), window_totals)
            family["family_max_eng_w_total"] = _grouped(np.maximum, own["eng_w_total"], inverse, len(first), 0.0)
        else:
            family = self._family_index().build_columns(tops[first], when[first])
            family["family_max_eng_w_total"] = self._max_member_engagement(codes[first], when[first])
        out = {
            f"{FAMILY_PREFIX}{name}" if not name.startswith(FAMILY_PREFIX) else name: values[inverse]
            for name, values in family.items()
        }
        out["family_id"] = self._family_ids[codes]
        out["family_size"] = self._family_size[codes]
        return out

    def _summed(
        self,
        own: dict[str, np.ndarray],
        tops: np.ndarray,
        inverse: np.ndarray,
        count: int,
        window_totals: tuple[np.ndarray, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Family rows from complete families' own rows (see `_family_features`)."""
        family: dict[str, np.ndarray] = {name: values[tops] for name, values in self._firmographics.items()}
        for name, values in own.items():
            if name in family or name in SURGE_OUTPUTS:
                continue
            if name.startswith("days_since_"):
                family[name] = _grouped(np.fmin, values, inverse, count, np.nan)
            else:
                # float64 even for an empty book (bincount of nothing is int64): the dtypes stay those of a book
                family[name] = np.bincount(inverse, weights=values, minlength=count).astype(np.float64)
        recent, baseline = (
            np.column_stack([np.bincount(inverse, weights=column, minlength=count) for column in totals.T])
            for totals in window_totals
        )
        surges = self._surging(recent, baseline)
        family["surging_channels"] = surges.sum(axis=1).astype(np.float64)
        family["surge_mask"] = (surges @ (1 << np.arange(surges.shape[1], dtype=np.int64))).astype(np.int64)
        family["intent_surge"] = family["surging_channels"] >= self.config.intent.surge.min_channels
        return family

    def _max_member_engagement(self, codes: np.ndarray, when: np.ndarray) -> np.ndarray:
        """The largest decayed engagement of one entity of each code's family at its cut-off (point in time)."""
        tops = self._top[codes]
        known = tops < len(self._member_start) - 1
        start = np.where(known, self._member_start[np.minimum(tops, len(self._member_start) - 2)], 0)
        stop = np.where(known, self._member_start[np.minimum(tops, len(self._member_start) - 2) + 1], 0)
        sizes = stop - start
        query = np.repeat(np.arange(len(codes)), sizes)
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        members = self._members[np.repeat(start, sizes) + offsets]
        n_channels = self._n_channels
        groups = (members[:, None] * n_channels + np.arange(n_channels)).ravel()
        totals = (
            self._engagement.decayed(groups, np.repeat(when[query], n_channels), self.config.engagement.lookback_days)
            .reshape(-1, n_channels)
            .sum(axis=1)
        )
        result = np.zeros(len(codes))
        np.maximum.at(result, query, totals)
        return result

    def _codes(self, account_ids: pd.Series) -> np.ndarray:
        return self._codes_in(pd.Index(self._account_ids))(account_ids)

    def build(self, account_ids: pd.Series, cutoffs: pd.Series) -> pd.DataFrame:
        """Feature rows aligned with `account_ids` (same index), each seeing only data before its cut-off."""
        columns = self.build_columns(self._codes(account_ids), to_seconds(cutoffs))
        features = pd.DataFrame(columns, index=account_ids.index)
        features = features.astype({name: "str" for name, values in columns.items() if values.dtype == object})
        features.insert(0, "account_id", account_ids.astype("str").to_numpy())
        features.insert(1, "cutoff", pd.to_datetime(cutoffs).to_numpy())
        if self._families is not None:  # one block per dtype: the family columns would otherwise be 100+ blocks
            features = features.copy()
        return features

    def build_columns(self, codes: np.ndarray, when: np.ndarray) -> dict[str, np.ndarray]:
        """The feature values (without account_id and cut-off) for account codes at cut-offs in seconds.

        Numpy only, so a request for one account costs microseconds, not pandas' milliseconds.
        """
        config = self.config
        # Queries in (account, time) order walk the sorted event index forwards, which keeps binary
        # searches in cache; in random order nearly every search misses it.
        order = np.lexsort((when, codes))
        codes, when = codes[order], when[order]
        lookback = config.engagement.lookback_days
        out: dict[str, np.ndarray] = {}

        # Every channel (topic) of every account in one query each: few calls, however many accounts.
        n_channels, n_topics = self._n_channels, self._n_topics
        channel_groups = (codes[:, None] * n_channels + np.arange(n_channels)).ravel()
        channel_when = np.repeat(when, n_channels)
        columns = engagement_columns()
        decayed = self._engagement.decayed(channel_groups, channel_when, lookback).reshape(-1, n_channels)
        recent = self._engagement.total(channel_groups, channel_when, RECENT_DAYS).reshape(-1, n_channels)
        out.update(zip(columns["decayed"], decayed.T))
        out.update(zip(columns["recent"], recent.T))
        out["eng_w_total"] = decayed.sum(axis=1)
        out["eng_30d_total"] = recent.sum(axis=1)
        days = self._engagement.days_since_last(channel_groups, channel_when).reshape(-1, n_channels)
        out["days_since_engagement"] = np.fmin.reduce(days, axis=1) if n_channels else np.full(len(codes), np.nan)
        totals: list | None = [] if self._families is not None else None
        channel_surges = self._surges(self._engagement, channel_groups, channel_when, totals).reshape(-1, n_channels)
        surging = channel_surges.sum(axis=1)

        topic_groups = (codes[:, None] * n_topics + np.arange(n_topics)).ravel()
        intent = self._intent.decayed(topic_groups, np.repeat(when, n_topics), lookback).reshape(-1, n_topics)
        out.update(zip(intent_columns(config), intent.T))
        out["intent_w_total"] = intent.sum(axis=1)
        out["intent_30d_signals"] = self._intent_rows.total(codes, when, RECENT_DAYS)
        intent_surges = self._surges(self._intent_rows, codes, when, totals)
        surging += intent_surges
        out["surging_channels"] = surging.astype(np.float64)
        # Which channels surge, one bit each in SURGE_CHANNELS order (`surge_channel_names` spells them out).
        out["surge_mask"] = (
            channel_surges @ (1 << np.arange(n_channels, dtype=np.int64)) + (intent_surges << n_channels)
        ).astype(np.int64)

        out["prior_won"] = self._history.total(codes * 2, when)
        out["prior_lost"] = self._history.total(codes * 2 + 1, when)
        out["prior_won_amount"] = self._won_amount.total(codes, when)
        out["days_since_won"] = self._history.days_since_last(codes * 2, when)
        out.update(self._pipeline_features(codes, when, out["prior_won"] + out["prior_lost"]))

        restore = np.empty_like(order)
        restore[order] = np.arange(len(order))
        codes = codes[restore]
        features = {name: values[codes] for name, values in self._firmographics.items()}
        features.update({name: values[restore] for name, values in out.items()})
        features["intent_surge"] = features["surging_channels"] >= config.intent.surge.min_channels
        if totals:
            (channel_recent, channel_baseline), (intent_recent, intent_baseline) = totals
            window_totals = (
                np.column_stack([channel_recent.reshape(-1, n_channels), intent_recent])[restore],
                np.column_stack([channel_baseline.reshape(-1, n_channels), intent_baseline])[restore],
            )
            features.update(self._family_features(codes, when[restore], features, window_totals))
        return features

    def _pipeline_features(self, codes: np.ndarray, when: np.ndarray, closed: np.ndarray) -> dict[str, np.ndarray]:
        """Opportunities created recently, and those open at the cut-off (created before it, not closed before it).

        An open deal without an amount counts in `open_deals` and `open_unpriced` but adds nothing to `open_amount`
        (the forecast counts it at the account's expected deal size). `open_unpriced` is not a learner's feature.
        """
        created = self._created.total(codes, when)
        open_amount = self._created_amount.total(codes, when) - self._closed_amount.total(codes, when)
        unpriced = self._open_unpriced
        return {
            OPEN_UNPRICED: np.zeros(len(codes)) if unpriced is None else np.maximum(unpriced.total(codes, when), 0.0),
            "created_90d": self._created.total(codes, when, 90),
            "created_180d": self._created.total(codes, when, 180),
            "days_since_created": self._created.days_since_last(codes, when),
            "open_deals": np.maximum(created - closed, 0.0),
            "open_amount": np.maximum(open_amount, 0.0),
        }

    def _surges(self, index: TimeIndex, group: np.ndarray, when: np.ndarray, keep: list | None = None) -> np.ndarray:
        """1 where this channel's last-14-day activity is `factor` times its own baseline rate; `keep` receives the
        recent and baseline totals (a family's surges are judged on their sums)."""
        surge = self.config.intent.surge
        recent = index.total(group, when, surge.window_days)
        baseline = index.total(group, when, surge.baseline_days, end_offset_days=surge.window_days)
        if keep is not None:
            keep.append((recent, baseline))
        return self._surging(recent, baseline)

    def _surging(self, recent: np.ndarray, baseline: np.ndarray) -> np.ndarray:
        surge = self.config.intent.surge
        expected = baseline * surge.window_days / surge.baseline_days
        return ((recent >= surge.min_recent_events) & (recent >= surge.factor * expected)).astype(np.int64)

    def surging_channel_names(self, account_ids: pd.Series, cutoffs: pd.Series) -> pd.Series:
        """Which channels surge, as 'demo_request;external_intent', for the accounts that need it spelled out."""
        codes = self._codes(account_ids)
        when = to_seconds(cutoffs)
        names = [*CHANNELS, OTHER]
        flags = {
            name: self._surges(self._engagement, codes * self._n_channels + i, when) for i, name in enumerate(names)
        }
        flags[SURGE_INTENT] = self._surges(self._intent_rows, codes, when)
        table = pd.DataFrame(flags, index=account_ids.index).astype(bool)
        return (
            table.apply(lambda row: ";".join(table.columns[row.to_numpy()]), axis=1)
            if len(table)
            else pd.Series([], dtype="str", index=account_ids.index)
        )


# Rolled-up values the learners see as family_<name> (sums over the family's entities; days since: the latest).
FAMILY_SUMS: tuple[str, ...] = (
    "eng_w_total",
    "eng_30d_total",
    "days_since_engagement",
    "intent_w_total",
    "intent_30d_signals",
    "surging_channels",
    "prior_won",
    "prior_lost",
    "prior_won_amount",
    "days_since_won",
    "created_90d",
    "open_deals",
    "open_amount",
)
FAMILY_LEARNED: tuple[str, ...] = (
    *(f"{FAMILY_PREFIX}{name}" for name in FAMILY_SUMS),
    "family_size",
    "family_max_eng_w_total",
)

SURGE_INTENT = "external_intent"  # the intent table's signals, as a surge channel
SURGE_OUTPUTS = ("surging_channels", "surge_mask", "intent_surge")


def _grouped(reduce: np.ufunc, values: np.ndarray, groups: np.ndarray, count: int, start: float) -> np.ndarray:
    """`reduce` (np.maximum, np.fmin...) of `values` within each of `count` groups, from `start`."""
    result = np.full(count, start, dtype=np.float64)
    reduce.at(result, groups, np.asarray(values, dtype=np.float64))
    return result


SURGE_CHANNELS: tuple[str, ...] = (*CHANNELS, OTHER, SURGE_INTENT)  # bit i of `surge_mask` is channel i


def surge_channel_names(masks) -> np.ndarray:
    """`surge_mask` values as ';'-separated channel names in SURGE_CHANNELS order ('' when none surges)."""
    masks = np.asarray(masks, dtype=np.int64)
    distinct, inverse = np.unique(masks, return_inverse=True)
    names = np.array(
        [";".join(name for bit, name in enumerate(SURGE_CHANNELS) if int(mask) >> bit & 1) for mask in distinct]
        or [""],
        dtype=object,
    )
    return names[inverse.reshape(masks.shape)] if len(masks) else np.array([], dtype=object)


def closed_between(opportunities: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The opportunities won or lost with start <= close_date < end, in the training rows' order."""
    opps = opportunities
    return (
        opps[opps["outcome"].isin(["won", "lost"]) & (opps["close_date"] >= start) & (opps["close_date"] < end)]
        .sort_values(["close_date", "opportunity_id"], kind="stable")
        .reset_index(drop=True)
    )


def training_rows(data: CrmData, builder: FeatureBuilder, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Closed opportunities with start <= close_date < end, each with features as of its created_date."""
    closed = closed_between(data.opportunities, start, end)
    return with_outcomes(builder.build(closed["account_id"], closed["created_date"]), closed)


def with_outcomes(features: pd.DataFrame, closed: pd.DataFrame) -> pd.DataFrame:
    """`closed_between`'s opportunities' feature rows (in its order) with the opportunity, close date and outcome."""
    features = features.reset_index(drop=True)
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
