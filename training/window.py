"""The training window and its slices by close date, the checks that each slice has enough deals, and
the nearest `--as-of` that would give them enough (which `validate` and training's errors suggest).

Slices, in time order: *fit* (learners train on it), *validation* (the months before the holdout:
boosting stops, the learner and the calibration are chosen, probabilities are calibrated) and
*holdout* (the latest months, which judge). The registered model is refit on the whole window and
calibrated on its *final calibration* slice, the last `calibration_months` before as_of.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import ModelConfig, Window
from features.errors import DataError, Problem
from features.schema import CrmData


@dataclass(frozen=True)
class WindowDates:
    start: pd.Timestamp
    calibration_start: pd.Timestamp  # evaluation models calibrate on [calibration_start, holdout_start)
    holdout_start: pd.Timestamp
    final_calibration_start: pd.Timestamp  # the registered model calibrates on [this, as_of)
    as_of: pd.Timestamp

    @classmethod
    def for_data(cls, data: CrmData, config: ModelConfig, as_of: pd.Timestamp | None) -> WindowDates:
        if as_of is None:
            closed = data.opportunities.loc[data.opportunities["outcome"] != "open", "close_date"].dropna()
            if closed.empty:
                raise DataError(
                    [
                        Problem(
                            "no closed opportunities to train on",
                            "export won and lost opportunities with their close_date",
                            file="opportunities",
                            column="close_date",
                        )
                    ]
                )
            as_of = closed.max().normalize() + pd.Timedelta(days=1)  # the latest close date is inside the window
        as_of = pd.Timestamp(as_of)
        months = config.model.window
        holdout_start = as_of - pd.DateOffset(months=months.holdout_months)
        return cls(
            start=as_of - pd.DateOffset(months=months.months),
            calibration_start=holdout_start - pd.DateOffset(months=months.calibration_months),
            holdout_start=holdout_start,
            final_calibration_start=as_of - pd.DateOffset(months=months.calibration_months),
            as_of=as_of,
            months=months,
        )

    def as_dict(self) -> dict[str, str]:
        return {
            name: value.date().isoformat() for name, value in self.__dict__.items() if isinstance(value, pd.Timestamp)
        }

    def slices(self) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
        """Each slice's [first day, day after the last) by close date (see `slice_bounds`)."""
        if self.months is None:
            raise ValueError("this window has no slice lengths: make it with WindowDates.for_data, which records them")
        return {
            name: (start[0], end[0]) for name, start, end in slice_bounds(pd.DatetimeIndex([self.as_of]), self.months)
        }

    months: Window | None = None


SLICE_MINIMUM = {"fit": 20, "validation": 10, "holdout": 10, "final calibration": 10}  # won and lost deals each needs
SLICE_REMEDY = {
    "fit": "lengthen model.window.months (earlier months join the fit slice)",
    "validation": "lengthen model.window.calibration_months",
    "holdout": "lengthen model.window.holdout_months",
    "final calibration": "lengthen model.window.calibration_months",
}


def slice_bounds(as_of: pd.DatetimeIndex, months: Window) -> list[tuple[str, pd.DatetimeIndex, pd.DatetimeIndex]]:
    """Each slice's [start, end) for every cut-off in `as_of` (vectorised, to try many cut-offs at once).

    fit, validation and holdout follow each other; the final calibration slice is the registered model's:
    the last `calibration_months` before as_of (its fit rows are everything before).
    """
    holdout_start = as_of - pd.DateOffset(months=months.holdout_months)
    validation_start = holdout_start - pd.DateOffset(months=months.calibration_months)
    return [
        ("fit", as_of - pd.DateOffset(months=months.months), validation_start),
        ("validation", validation_start, holdout_start),
        ("holdout", holdout_start, as_of),
        ("final calibration", as_of - pd.DateOffset(months=months.calibration_months), as_of),
    ]


def _span(start: pd.Timestamp, end: pd.Timestamp) -> str:
    return f"{start.date()} to {(end - pd.Timedelta(days=1)).date()}"


def need(
    rows: pd.DataFrame,
    name: str,
    window: WindowDates,
    everything: pd.DataFrame | None = None,
    better: pd.Timestamp | None = None,
) -> None:
    """Stop with advice that works when a slice (or the whole window) lacks won or lost deals; `better` is the
    nearest --as-of at which every slice has enough, when one is known."""
    minimum = SLICE_MINIMUM.get(name, 20)
    counts = rows["won"].value_counts()
    won, lost = int(counts.get(1, 0)), int(counts.get(0, 0))
    if won >= minimum and lost >= minimum:
        return
    if name == "window":
        span, lengthen = _span(window.start, window.as_of), "lengthen model.window.months"
        move = "pass an --as-of date with more closed deals in the 12 months before it"
    else:
        start, end = window.slices()[name]
        span, lengthen = _span(start, end), SLICE_REMEDY[name]
        move = "pass an --as-of date that puts more closed deals in it"
    if better is not None:
        remedy = f"pass --as-of {better.date()} (the nearest cut-off at which every slice has enough), or {lengthen}"
    elif name == "window":
        remedy = f"{move}, or {lengthen}"
    else:
        remedy = f"{lengthen}, or {move}"
    if everything is not None:
        total = everything["won"].value_counts()
        all_won, all_lost = int(total.get(1, 0)), int(total.get(0, 0))
        if all_won < minimum or all_lost < minimum:  # no window can help: the export itself lacks an outcome
            remedy = (
                f"the whole export has only {all_won} won and {all_lost} lost closed opportunities, so no window "
                "can help: check that the mapping's outcome values map won and lost deals"
            )
    raise DataError(
        [
            Problem(
                f"the {name} slice ({span}) has {won} won and {lost} lost opportunities; at least {minimum} of each "
                f"are needed",
                remedy,
                file="opportunities",
                column="close_date",
            )
        ]
    )


def need_with_advice(rows: pd.DataFrame, name: str, window: WindowDates, data: CrmData, config: ModelConfig) -> None:
    """`need`, naming the nearest --as-of at which every slice has enough, when there is one."""
    everything = _closed_outcomes(data)
    try:
        need(rows, name, window, everything)
    except DataError:
        better = suggest_as_of(data, config, window.as_of)  # only searched for when a slice is short
        if better is None:
            raise
        need(rows, name, window, everything, better)
        raise


def _closed_outcomes(data: CrmData) -> pd.DataFrame:
    closed = data.opportunities["outcome"] != "open"
    return pd.DataFrame({"won": (data.opportunities.loc[closed, "outcome"] == "won").astype(int)})


def closed_dates(data: CrmData) -> tuple[np.ndarray, np.ndarray]:
    """Sorted close dates (datetime64[ns]) of the won and of the lost opportunities."""
    opportunities = data.opportunities
    dates = opportunities["close_date"]
    won = np.sort(dates[(opportunities["outcome"] == "won") & dates.notna()].to_numpy("datetime64[ns]"))
    lost = np.sort(dates[(opportunities["outcome"] == "lost") & dates.notna()].to_numpy("datetime64[ns]"))
    return won, lost


def count_between(dates: np.ndarray, start: pd.DatetimeIndex, end: pd.DatetimeIndex) -> np.ndarray:
    """How many of the sorted `dates` lie in [start, end), per cut-off."""
    return np.searchsorted(dates, end.to_numpy("datetime64[ns]"), side="left") - np.searchsorted(
        dates, start.to_numpy("datetime64[ns]"), side="left"
    )


def suggest_as_of(data: CrmData, config: ModelConfig, near: pd.Timestamp) -> pd.Timestamp | None:
    """The cut-off nearest `near` (the later on a tie) at which every slice has its minimum of won and lost deals.

    Cut-offs tried: the day after each close date (where a slice gains a deal). None when no cut-off works.
    """
    won, lost = closed_dates(data)
    if not len(won) or not len(lost):
        return None
    candidates = pd.DatetimeIndex(np.unique(np.concatenate([won, lost]))).normalize().unique() + pd.Timedelta(days=1)
    enough = np.ones(len(candidates), dtype=bool)
    for name, start, end in slice_bounds(candidates, config.model.window):
        minimum = SLICE_MINIMUM[name]
        enough &= (count_between(won, start, end) >= minimum) & (count_between(lost, start, end) >= minimum)
    if not enough.any():
        return None
    working = candidates[enough]
    distance = np.abs((working - pd.Timestamp(near)).to_numpy()) - (working > near).astype("timedelta64[ns]")
    return working[int(np.argmin(distance))]
