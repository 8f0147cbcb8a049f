"""The open pipeline a published scoring shows beside each account: what its deals open at the scoring's as_of
were worth, read from the export the scores came from (the scores file itself does not carry it).

Point in time, as the features see the export: an opportunity is open at as_of when it was created before that day
and not closed before it, so a deal won or lost on or after as_of still counts.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd


def open_pipeline_at(account_ids: pd.Series, opportunities: pd.DataFrame, as_of: datetime | date | str) -> pd.Series:
    """Per account of `account_ids` (the series' index, as text): the summed `amount` of its opportunities open at
    `as_of`, from canonical opportunities. An open deal without an amount adds nothing; an account without open
    deals has 0."""
    cutoff = pd.Timestamp(as_of)
    if cutoff.tzinfo is not None:  # canonical dates are naive UTC
        cutoff = cutoff.tz_convert(None)
    created = opportunities["created_date"] < cutoff
    closed = opportunities["outcome"].ne("open") & (opportunities["close_date"] < cutoff)
    open_then = opportunities[created & ~closed]
    amounts = open_then["amount"].fillna(0.0).groupby(open_then["account_id"].astype("str")).sum()
    ids = account_ids.astype("str")
    return pd.Series(ids.map(amounts).fillna(0.0).to_numpy(dtype="float64"), index=pd.Index(ids, name="account_id"))
