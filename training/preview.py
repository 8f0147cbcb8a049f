"""What training would see, before it runs: the window, its fit / validation / holdout slices and their deals.

`tiering validate` shows it so that a slice too thin to train or judge a model is visible (with its dates and
counts, and a cut-off that would work) before `tiering train` is started.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.config import ModelConfig
from features.schema import CrmData
from training.window import SLICE_MINIMUM, WindowDates, closed_dates, count_between, suggest_as_of


@dataclass(frozen=True)
class Slice:
    name: str  # fit, validation, holdout, final calibration
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
    window: WindowDates
    slices: list[Slice]
    default_as_of: bool  # the window ends the day after the latest close date (no --as-of given)
    suggestion: pd.Timestamp | None  # the --as-of nearest this one at which no slice is thin; None if none is

    @property
    def thin(self) -> list[Slice]:
        return [piece for piece in self.slices if piece.thin]


def preview(data: CrmData, config: ModelConfig, as_of: pd.Timestamp | None = None) -> WindowPreview:
    """The training window for `as_of` (default: the day after the latest close date) and its slices' deals.

    Raises DataError when there is no closed opportunity to place a window on (as training does).
    """
    window = WindowDates.for_data(data, config, as_of)
    won, lost = closed_dates(data)
    slices = []
    for name, (start, end) in window.slices().items():
        start_at, end_at = pd.DatetimeIndex([start]), pd.DatetimeIndex([end])
        slices.append(
            Slice(
                name,
                start,
                end,
                int(count_between(won, start_at, end_at)[0]),
                int(count_between(lost, start_at, end_at)[0]),
                SLICE_MINIMUM[name],
            )
        )
    thin = any(piece.thin for piece in slices)
    return WindowPreview(window, slices, as_of is None, suggest_as_of(data, config, window.as_of) if thin else None)
