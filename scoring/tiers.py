"""Tier assignment, budget allocation and sales overrides: pure functions on score columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import TIER_NAMES, UNTIERED, Budget, Tiers

TIER_ORDER = {name: rank for rank, name in enumerate([*TIER_NAMES, UNTIERED])}


@dataclass(frozen=True)
class RankedBook:
    """Accounts in the order tiers are filled (`order` indexes the book), with their scores and ICP flags."""

    order: np.ndarray
    scores: np.ndarray
    eligible: np.ndarray


@dataclass(frozen=True)
class Placement:
    tiers: np.ndarray  # per account, in book order
    cutoffs: dict[str, float]
    ties: list[dict]  # per full tier whose last score is shared with accounts left out


def assign_by_capacity(book: RankedBook, tiers: Tiers) -> Placement:
    """Fill Tier 1 in the book's order up to its capacity among accounts at or above its minimum, then
    Tier 2, then Tier 3; the rest are untiered. Returns the tiers, the score cut-offs this produced, and
    the ties across each boundary.

    A tier's cut-off is the lowest score it admitted when it is full (a new account needs at least that
    to displace someone), and its minimum score when it has room.
    """
    ranked_scores = book.scores[book.order]
    free = book.eligible[book.order] & ~np.isnan(ranked_scores)
    assigned = np.full(len(ranked_scores), UNTIERED, dtype=object)
    cutoffs: dict[str, float] = {}
    ties: list[dict] = []
    for name, tier in tiers.ordered():
        candidates = np.flatnonzero(free & (ranked_scores >= tier.min_score))
        full = tier.max_accounts is not None and len(candidates) > tier.max_accounts
        admitted = candidates[: tier.max_accounts] if tier.max_accounts is not None else candidates
        assigned[admitted] = name
        free[admitted] = False
        if tier.max_accounts is not None and len(admitted) == tier.max_accounts:
            cutoffs[name] = float(max(tier.min_score, ranked_scores[admitted].min())) if len(admitted) else float("inf")
        else:
            cutoffs[name] = float(tier.min_score)
        if full and len(admitted):
            last = ranked_scores[admitted[-1]]
            left_out = int(np.sum(ranked_scores[candidates[tier.max_accounts :]] == last))
            if left_out:
                inside = int(np.sum(ranked_scores[admitted] == last))
                ties.append({"tier": name, "score": float(last), "tied": inside + left_out, "inside": inside})
    result = np.empty(len(assigned), dtype=object)
    result[book.order] = assigned
    return Placement(result, cutoffs, ties)


def tiers_by_cutoffs(scores: np.ndarray, eligible: np.ndarray, cutoffs: dict[str, float]) -> np.ndarray:
    """Tiers for accounts scored one at a time, from the cut-offs of the last full scoring."""
    values = np.asarray(scores, dtype="float64")
    result = np.full(len(values), UNTIERED, dtype=object)
    for name in reversed(TIER_NAMES):  # best tier last, so it wins
        result[values >= cutoffs[name]] = name
    result[~np.asarray(eligible, dtype=bool) | np.isnan(values)] = UNTIERED
    return result


def allocate_budget(tiers: pd.Series, total: float | None, budget: Budget) -> pd.Series:
    """Split `total` by tier share, then evenly across each tier's accounts; an empty tier's share is unspent."""
    if total is None:
        return pd.Series(np.nan, index=tiers.index, name="budget")
    counts = tiers.value_counts()
    per_account = {name: total * share / counts[name] for name, share in budget.split.items() if counts.get(name, 0)}
    return tiers.map(per_account).astype("float64").fillna(0.0).rename("budget")


def allocate_budget_by_family(
    tiers: pd.Series, family_ids: pd.Series, total: float | None, budget: Budget
) -> pd.Series:
    """Split `total` by tier share, then evenly across the families in each tier, then evenly across a family's
    accounts in that tier (a pinned account counts for its family in the tier it is pinned to)."""
    if total is None:
        return pd.Series(np.nan, index=tiers.index, name="budget")
    frame = pd.DataFrame({"tier": tiers.to_numpy(), "family": family_ids.to_numpy()}, index=tiers.index)
    families = frame.drop_duplicates().groupby("tier")["family"].size()
    members = frame.groupby(["tier", "family"])["family"].transform("size")
    share = frame["tier"].map(
        {name: total * part / families[name] for name, part in budget.split.items() if families.get(name, 0)}
    )
    return (share.astype("float64") / members).fillna(0.0).rename("budget")


def budget_summary(tiers: pd.Series, total: float | None, budget: Budget) -> pd.DataFrame:
    """Per tier: accounts, share of budget, total and per-account budget (unspent shares shown as such)."""
    rows = []
    for name in [*TIER_NAMES, UNTIERED]:
        count = int((tiers == name).sum())
        share = budget.split.get(name, 0.0)
        amount = (total or 0.0) * share if count else 0.0
        rows.append(
            {
                "tier": name,
                "accounts": count,
                "share": share,
                "budget": amount,
                "per_account": amount / count if count else 0.0,
            }
        )
    return pd.DataFrame(rows)


def apply_overrides(
    learned: pd.Series, account_ids: pd.Series, overrides: pd.DataFrame | None
) -> tuple[pd.Series, pd.Series]:
    """Final tier = learned tier unless a sales override pins the account; the reason says who and why."""
    final = learned.copy().rename("tier")
    reasons = pd.Series("", index=learned.index, name="override_reason", dtype="str")
    if overrides is None or overrides.empty:
        return final, reasons
    pinned = overrides.set_index("account_id")
    position = pd.Index(account_ids.astype("str")).get_indexer(pinned.index)
    # A pin for an account not scored here pins nothing (get_indexer's -1 would otherwise pin the last row).
    pinned, position = pinned[position >= 0], position[position >= 0]
    rows = learned.index[position]
    final.loc[rows] = pinned["tier"].to_numpy()
    reasons.loc[rows] = [
        f"pinned to {tier} by {owner}: {reason} (model said {model})"
        for tier, owner, reason, model in zip(pinned["tier"], pinned["owner"], pinned["reason"], learned.loc[rows])
    ]
    return final, reasons


def tier_movement(old: pd.Series, new: pd.Series) -> pd.Series:
    """Signed levels moved: +1 is one tier up (towards Tier 1), -2 two tiers down."""
    return old.map(TIER_ORDER) - new.map(TIER_ORDER)
