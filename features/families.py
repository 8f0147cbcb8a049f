"""Account families: the chains of `parent_account_id` links, resolved to each account's top account.

A family is an account with no parent and every account whose chain of parents ends at it; the top account's id is
the family id. A link that cannot be followed (a parent missing from the accounts, an account that is its own parent,
a cycle, a chain deeper than `MAX_DEPTH`) is reported by the import's validation and, wherever it is still met, treated
as absent: the account then stands alone (or heads its own subtree, for a chain that is too deep).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_DEPTH = 10  # links from an account up to its top account; CRMs rarely nest more than four or five
FAMILY_PREFIX = "family_"


@dataclass(frozen=True)
class Families:
    """Each account's top account (as a position in the accounts given), its depth below it, and the faulty links.

    `self_parent`, `unknown_parent`, `cycle` and `too_deep` mark the accounts whose own link was cut."""

    top: np.ndarray  # int64 positions
    depth: np.ndarray  # int64: 0 for a top account
    parent: np.ndarray  # int64 position of the parent followed, -1 for none (faulty links removed)
    self_parent: np.ndarray
    unknown_parent: np.ndarray
    cycle: np.ndarray
    too_deep: np.ndarray

    @property
    def faulty(self) -> np.ndarray:
        return self.self_parent | self.unknown_parent | self.cycle | self.too_deep

    @property
    def linked(self) -> bool:
        """Whether any account has a parent it can follow (else every family is one account)."""
        return bool((self.parent >= 0).any())


def _blank(values: np.ndarray) -> np.ndarray:
    return pd.isna(values) | (pd.Series(values, dtype=object).astype("str").str.strip() == "").to_numpy()


def resolve_families(account_ids, parent_ids) -> Families:
    """Families of accounts (ids in order) from their parents' ids (None, NaN or empty for none)."""
    ids = np.asarray(account_ids, dtype=object).astype(str)
    count = len(ids)
    parents = np.asarray(parent_ids, dtype=object)
    blank = _blank(parents) if count else np.zeros(0, dtype=bool)
    index = pd.Index(ids)
    parent = np.full(count, -1, dtype=np.int64)
    if count and (~blank).any():
        parent[~blank] = index.get_indexer(parents[~blank].astype(str))
    return resolve_links(parent, unknown_parent=~blank & (parent < 0))


def resolve_links(parent: np.ndarray, unknown_parent: np.ndarray | None = None) -> Families:
    """Families from each account's parent position (-1 for none); `unknown_parent` marks links already lost."""
    count = len(parent)
    parent = np.asarray(parent, dtype=np.int64).copy()
    if unknown_parent is None:
        unknown_parent = np.zeros(count, dtype=bool)
    self_parent = parent == np.arange(count)
    parent[self_parent] = -1
    cycle = np.zeros(count, dtype=bool)
    too_deep = np.zeros(count, dtype=bool)
    _, _, unresolved = _climb(parent, MAX_DEPTH + 1)
    if unresolved.any():  # a chain that has not ended within the bound: a cycle, or simply too long
        cycle = _on_cycles(parent, np.flatnonzero(unresolved))
        parent[cycle] = -1
    top, depth, _ = _climb(parent, count)  # no cycle left: every chain ends
    while (depth > MAX_DEPTH).any():
        # Cut each chain that is too long at its first account beyond the bound, which then heads its own subtree.
        beyond = depth == MAX_DEPTH + 1
        too_deep |= beyond
        parent[beyond] = -1
        top, depth, _ = _climb(parent, count)
    return Families(top, depth, parent, self_parent, unknown_parent, cycle, too_deep)


def _climb(parent: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each account's highest ancestor within `steps` links, its depth, and whether the chain goes on."""
    count = len(parent)
    top = np.arange(count)
    depth = np.zeros(count, dtype=np.int64)
    above = parent.copy()
    for _ in range(steps):
        going = above >= 0
        if not going.any():
            break
        top[going] = above[going]
        depth[going] += 1
        above[going] = parent[above[going]]
    return top, depth, above >= 0


def _on_cycles(parent: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Accounts on a cycle of links, among the chains from `start` (the few accounts whose chains never ended)."""
    on_cycle = np.zeros(len(parent), dtype=bool)
    for first in start:
        seen: dict[int, int] = {}
        node = int(first)
        while node >= 0 and node not in seen and not on_cycle[node]:
            seen[node] = len(seen)
            node = int(parent[node])
        if node >= 0 and node in seen:  # returned to an account of this walk: from it on is the cycle
            loop = list(seen)[seen[node] :]
            on_cycle[loop] = True
    return on_cycle


def family_ids(account_ids, families: Families) -> np.ndarray:
    """The family id (the top account's id) of every account."""
    ids = np.asarray(account_ids, dtype=object)
    return ids[families.top] if len(ids) else np.array([], dtype=object)
