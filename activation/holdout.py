"""A running pilot's control accounts stay out of the campaign: no alerts to their owners, no rows in the CRM
import. Which accounts are control comes from the workspace's active pilots and from the scores' own
`pilot_group` column (a scores file made while the pilot ran)."""

from __future__ import annotations

import pandas as pd

CONTROL = "control"


def control_accounts(scores: pd.DataFrame, active: pd.DataFrame | None = None) -> set[str]:
    """Account ids held as control: by `active` (account_id, group: the store's active pilots) or by the scores'
    pilot_group column."""
    held: set[str] = set()
    if "pilot_group" in scores.columns:
        marked = scores["pilot_group"].astype("string").fillna("").str.strip().eq(CONTROL)
        held |= set(scores.loc[marked.to_numpy(), "account_id"].astype(str))
    if active is not None and len(active):
        held |= set(active.loc[active["group"] == CONTROL, "account_id"].astype(str))
    return held


def without_control_rows(scores: pd.DataFrame, control: set[str]) -> tuple[pd.DataFrame, int]:
    """The scores without the control accounts' rows, and how many were left out."""
    keep = ~scores["account_id"].astype(str).isin(control)
    return scores[keep.to_numpy()].reset_index(drop=True), int((~keep).sum())


def without_control_events(events: list[dict], control: set[str]) -> tuple[list[dict], int]:
    """The events without those about control accounts, and how many were left out."""
    kept = [event for event in events if str(event["account_id"]) not in control]
    return kept, len(events) - len(kept)


def pilot_groups(account_ids: pd.Series, active: pd.DataFrame | None) -> pd.Series:
    """Each account's group in an active pilot: treatment, control, or empty."""
    if active is None or active.empty:
        return pd.Series("", index=account_ids.index, dtype=object)
    group = active.drop_duplicates("account_id").set_index("account_id")["group"]
    return account_ids.astype(str).map(group).fillna("").astype(object)
