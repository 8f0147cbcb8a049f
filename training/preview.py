"""What training would see, before it runs: the window, its fit / calibration / holdout slices and their deals.

`tiering validate` shows it so that a slice too thin to train or judge a model is visible (with its dates and
counts, and a cut-off that would work) before `tiering train` is started.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import TieringConfig
from features.schema import CrmData
from training.pipeline import Window

# The fewest won and the fewest lost deals training needs in each slice (as training/pipeline.py checks them).
SLICE_MINIMUMS: dict[str, int] = {"fit": 20, "calibration": 10, "holdout": 10}


@dataclass(frozen=True)
class Slice:
    name: str  # fit, calibration, holdout
    start: pd.Timestamp  # inclusive
    end: pd.Timestamp  # exclusive
    won: int
    lost: int
    minimum: int

    @property
    def thin(self) -> bool:
        return self.won < self.minimum or self.lost < self.minimum

    @property
    def dates(self) -> str:
        """'2024-01-02 to 2024-04-01': both days inside the slice."""
        return f"{self.start.date()} to {(self.end - pd.Timedelta(days=1)).date()}"


@dataclass(frozen=True)
class WindowPreview:
    window: Window
    slices: list[Slice]
    default_as_of: bool  # the window ends the day after the latest close date (no --as-of given)
    suggestion: pd.Timestamp | None  # the --as-of nearest this one at which no slice is thin; None if none is

    @property
    def thin(self) -> list[Slice]:
        return [piece for piece in self.slices if piece.thin]


def _closed(data: CrmData) -> tuple[np.ndarray, np.ndarray]:
    """Sorted close dates (datetime64[ns]) of the won and of the lost opportunities."""
    opportunities = data.opportunities
    dates = opportunities["close_date"]
    won = np.sort(dates[(opportunities["outcome"] == "won") & dates.notna()].to_numpy("datetime64[ns]"))
    lost = np.sort(dates[(opportunities["outcome"] == "lost") & dates.notna()].to_numpy("datetime64[ns]"))
    return won, lost


def _bounds(as_of: pd.DatetimeIndex, config: TieringConfig) -> list[tuple[str, pd.DatetimeIndex, pd.DatetimeIndex]]:
    """Each slice's [start, end) for every cut-off in `as_of`, as Window.for_data places them (vectorised, to try
    every candidate cut-off at once; a test holds the two equal)."""
    months = config.model.window
    holdout_start = as_of - pd.DateOffset(months=months.holdout_months)
    calibration_start = holdout_start - pd.DateOffset(months=months.calibration_months)
    start = as_of - pd.DateOffset(months=months.months)
    return [("fit", start, calibration_start), ("calibration", calibration_start, holdout_start),
            ("holdout", holdout_start, as_of)]


def _count(dates: np.ndarray, start: pd.DatetimeIndex, end: pd.DatetimeIndex) -> np.ndarray:
    """How many of the sorted `dates` lie in [start, end), per cut-off."""
    return (np.searchsorted(dates, end.to_numpy("datetime64[ns]"), side="left")
            - np.searchsorted(dates, start.to_numpy("datetime64[ns]"), side="left"))


def suggest_as_of(data: CrmData, config: TieringConfig, near: pd.Timestamp) -> pd.Timestamp | None:
    """The cut-off nearest `near` (the later on a tie) at which every slice has its minimum of won and lost deals.

    Cut-offs tried: the day after each close date (where a slice gains a deal). None when no cut-off works.
    """
    won, lost = _closed(data)
    if not len(won) or not len(lost):
        return None
    candidates = pd.DatetimeIndex(np.unique(np.concatenate([won, lost]))).normalize().unique() + pd.Timedelta(days=1)
    enough = np.ones(len(candidates), dtype=bool)
    for name, start, end in _bounds(candidates, config):
        minimum = SLICE_MINIMUMS[name]
        enough &= (_count(won, start, end) >= minimum) & (_count(lost, start, end) >= minimum)
    if not enough.any():
        return None
    working = candidates[enough]
    distance = np.abs((working - pd.Timestamp(near)).to_numpy()) - (working > near).astype("timedelta64[ns]")
    return working[int(np.argmin(distance))]


def preview(data: CrmData, config: TieringConfig, as_of: pd.Timestamp | None = None) -> WindowPreview:
    """The training window for `as_of` (default: the day after the latest close date) and its slices' deals.

    Raises DataError when there is no closed opportunity to place a window on (as training does).
    """
    window = Window.for_data(data, config, as_of)
    won, lost = _closed(data)
    edges = {"fit": (window.start, window.calibration_start), "calibration": (window.calibration_start,
                                                                              window.holdout_start),
             "holdout": (window.holdout_start, window.as_of)}
    slices = []
    for name, (start, end) in edges.items():
        start_at, end_at = pd.DatetimeIndex([start]), pd.DatetimeIndex([end])
        slices.append(Slice(name, start, end, int(_count(won, start_at, end_at)[0]),
                            int(_count(lost, start_at, end_at)[0]), SLICE_MINIMUMS[name]))
    thin = any(piece.thin for piece in slices)
    return WindowPreview(window, slices, as_of is None, suggest_as_of(data, config, window.as_of) if thin else None)
