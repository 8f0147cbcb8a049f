"""A book split into groups of accounts whose feature rows are built apart, one group at a time.

Every feature row depends on one account's own rows only (with `roll_up: family`, on its family's), so the
accounts can be split into groups (a stable hash of the account id, or of the family id) and each group built by
its own `FeatureBuilder` over its own events: the rows are those of one builder over the whole book, while memory
holds one group's events and index at a time. Training, scoring, the review and the forecast build their rows so
in this process; the Spark engines run the same grouping on their executors.

A group's events come from the book's own tables, or from `GroupedEvents`, the events already split by group
(spilled to disk by the import), so that the whole event tables are never held at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import ModelConfig
from features.families import family_ids, resolve_families
from features.pointintime import FeatureBuilder, text_extras
from features.schema import TABLES, CrmData

ACCOUNTS_PER_GROUP = 20_000  # one group's accounts and all their events fit a worker's memory
EVENT_TABLES: tuple[str, ...] = ("engagement", "intent")

# The feature rows for a table of queries (account_id, cutoff), in its order.
BuildRows = Callable[[pd.DataFrame], pd.DataFrame]
# What rows are grouped by: each row's account id, or its family id.
GroupingKey = Callable[[pd.Series], pd.Series]


def group_count(accounts: int) -> int:
    """How many groups a book of this many accounts is split into."""
    return max(1, math.ceil(accounts / ACCOUNTS_PER_GROUP))


def account_groups(account_ids: pd.Series, groups: int) -> np.ndarray:
    """Each account id's group in 0 .. groups - 1: a hash of the id that every machine and run agrees on.

    The one place that decides which accounts are built together (every table's rows follow their account).
    """
    codes, uniques = pd.factorize(account_ids.astype("str"), use_na_sentinel=True)
    hashed = pd.util.hash_array(np.asarray(uniques, dtype=object)) % np.uint64(max(groups, 1))
    return np.append(hashed.astype(np.int64), 0)[codes]  # a missing id (sentinel -1) takes the appended group 0


def row_groups(account_ids: pd.Series, accounts: pd.DataFrame, key: GroupingKey, groups: int) -> np.ndarray:
    """`account_groups(key(account_ids), groups)` of a table's rows, found by Arrow's hash lookup of each row's
    account among the accounts' own groups (the rows are many, the accounts few); rows of accounts not in the
    table are hashed themselves."""
    known = accounts["account_id"].astype("str")
    of_account = np.append(account_groups(key(known), groups), -1)
    wanted = pa.array(account_ids.astype("str"))
    found = pc.index_in(wanted, value_set=pa.array(known).cast(wanted.type))
    result = of_account[found.fill_null(len(known)).to_numpy(zero_copy_only=False)]
    unknown = np.flatnonzero(result < 0)
    if len(unknown):
        result[unknown] = account_groups(key(account_ids.iloc[unknown]), groups)
    return result


def group_positions(of_rows: np.ndarray, groups: int) -> list[np.ndarray]:
    """Each group's row positions, in the rows' order: one stable sort of the small group numbers (a radix sort),
    not a pass over every row for each group."""
    order = np.argsort(of_rows.astype(np.int16 if groups < 2**15 else np.int64), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(of_rows, minlength=groups))])
    return [order[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def account_families(accounts: pd.DataFrame) -> pd.Series | None:
    """Each account's family id (its top account's id), indexed by account id; None when no account has a parent
    (every family is then one account)."""
    if "parent_account_id" not in accounts or not accounts["parent_account_id"].notna().any():
        return None
    ids = accounts["account_id"].astype("str").to_numpy(dtype=object)
    families = resolve_families(ids, accounts["parent_account_id"].to_numpy(dtype=object))
    return pd.Series(family_ids(ids, families), index=ids, dtype=object)


def grouping_keys(accounts: pd.DataFrame, by_family: bool) -> GroupingKey:
    """What rows are grouped by: their account id, or `by_family` their family id (a family's features need every
    one of its entities' events, so a family is never split across groups)."""
    family = account_families(accounts) if by_family else None
    if family is None:
        return lambda account_ids: account_ids.astype("str")
    return lambda account_ids: account_ids.astype("str").map(family).fillna(account_ids.astype("str"))


def by_family(config: ModelConfig) -> bool:
    return config.hierarchy.roll_up == "family"


def grouped_build(data: CrmData, config: ModelConfig, groups: int | None = None) -> BuildRows:
    """Feature rows for queries, one group of accounts at a time (pandas, in this process).

    With `data.grouped`, each group's events are read from it (and its grouping is used); else they are the
    group's rows of the book's own tables."""
    grouped = data.grouped
    family = grouped.by_family if grouped is not None else by_family(config)
    if grouped is not None and family != by_family(config) and by_family(config):
        raise ValueError("events grouped by account cannot build family features")  # never split a family
    groups = grouped.groups if grouped is not None else groups or group_count(len(data.accounts))
    as_text = text_extras(data.accounts, config)  # decided on the whole book, as one builder would
    key = grouping_keys(data.accounts, family)
    held = ("accounts", "opportunities") if grouped is not None else TABLES
    tables = {name: data.table(name) for name in held}
    at = {
        name: group_positions(row_groups(frame["account_id"], data.accounts, key, groups), groups)
        for name, frame in tables.items()
    }

    def part(group: int) -> CrmData:
        own = {name: frame.iloc[at[name][group]] for name, frame in tables.items()}
        if grouped is not None:
            own |= grouped.read(group)
        return CrmData(**own, present=data.present)

    def build(queries: pd.DataFrame) -> pd.DataFrame:
        queries = queries.reset_index(drop=True)
        of_query = group_positions(account_groups(key(queries["account_id"]), groups), groups)
        parts: list[pd.DataFrame] = []
        for group in range(groups):
            asked = queries.iloc[of_query[group]]
            if len(asked) or (group == groups - 1 and not parts):  # an empty book still gets its columns
                parts.append(build_group(part(group), config, as_text, asked))
        if len(parts) == 1:
            return parts[0]
        # Back in the queries' order: each query's place in the stacked groups, one pass (sorting the index of the
        # stacked rows costs n log n).
        stacked = pd.concat(parts)
        place = np.empty(len(queries), dtype=np.int64)
        place[np.concatenate(of_query)] = np.arange(len(queries))
        return stacked.iloc[place]

    return build


def build_group(data: CrmData, config: ModelConfig, as_text: frozenset[str], queries: pd.DataFrame) -> pd.DataFrame:
    """One group's feature rows for its queries (aligned with their index), by its own builder."""
    builder = FeatureBuilder(data, config, as_text)
    return builder.build(queries["account_id"].astype("str"), queries["cutoff"])


def book_snapshot(data: CrmData, config: ModelConfig, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every account's features as of `as_of`, built group by group: `snapshot` of one builder over the whole book,
    holding one group's events at a time."""
    ids = data.accounts["account_id"].astype("str").reset_index(drop=True)
    cutoffs = pd.Series(pd.Timestamp(as_of), index=ids.index)
    return grouped_build(data, config)(pd.DataFrame({"account_id": ids, "cutoff": cutoffs}))
