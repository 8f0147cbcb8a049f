"""What moved for one account between two scorings, in words: the sentence beside each tier move.

Shared by `tiering diff` and the workspace's account page, so both say the same thing about the same move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COMPARED_SCORES = {
    "revenue_potential_score": "revenue potential",
    "business_fit_score": "business fit",
    "engagement_score": "engagement",
    "rule_score": "rule score",
    "learned_score": "learned score",
}
REASONS = ["reason_1", "reason_2", "reason_3"]
NOTABLE_POINTS = 5.0  # a score change smaller than this (on 0-100) is not worth naming
NOTABLE_PROBABILITY = 0.05


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What moved for one account (a record or a row), biggest score changes first, in plain words."""
    changes = []
    for column, name in COMPARED_SCORES.items():
        delta = new[column] - old[column]
        if abs(delta) >= NOTABLE_POINTS:
            changes.append((abs(delta), f"{name} {old[column]:.0f} → {new[column]:.0f}"))
    delta = new["win_probability"] - old["win_probability"]
    if abs(delta) >= NOTABLE_PROBABILITY:  # NaN (rules only) compares False
        changes.append(
            (abs(delta) * 100, f"win probability {old['win_probability']:.0%} → {new['win_probability']:.0%}")
        )
    parts = [text for _, text in sorted(changes, key=lambda change: -change[0])]
    old_reasons, new_reasons = [old[column] for column in REASONS], [new[column] for column in REASONS]
    gained = [r for r in new_reasons if r and r not in old_reasons]
    dropped = [r for r in old_reasons if r and r not in new_reasons]
    for label, reasons in (("new reasons", gained), ("dropped", dropped)):
        if reasons:
            parts.append(f"{label}: {' · '.join(reasons)}")  # reasons hold commas (1,784 employees)
    if new["override_reason"] != old["override_reason"]:
        parts.append(f"override: {new['override_reason'] or 'removed'}")
    return "; ".join(parts) or "no notable change of its own: the tier boundary moved"
