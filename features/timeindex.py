"""Point-in-time sums over timestamped events, vectorised for tens of millions of rows.

Events are sorted once by (group, time) under an exact int64 key; every question "what happened in
group g during [T - window, T)" is then two binary searches and a difference of per-group cumulative
sums. Only events strictly before T are ever seen, which is what keeps training rows free of leaks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

_TIME_BITS = 34  # seconds since 1900 fit in 34 bits until the year 2444
_ORIGIN = np.datetime64("1900-01-01T00:00:00", "s")
SECONDS_PER_DAY = 86_400.0
_FEW_RUNS = 32
_ORIGIN_MOMENT = datetime(1900, 1, 1)
_SECOND = timedelta(seconds=1)


def to_seconds(values: pd.Series | np.ndarray) -> np.ndarray:
    """Seconds since 1900 as int64 (NaT becomes -1, which sorts before every real time)."""
    array = np.asarray(values, dtype="datetime64[s]")
    seconds = (array - _ORIGIN).astype(np.int64)
    return np.where(np.isnat(array), -1, np.clip(seconds, 0, (1 << _TIME_BITS) - 1))


def segmented_cumsum(values: np.ndarray, starts: np.ndarray, chunk_cells: int = 1 << 20) -> np.ndarray:
    """Running sums that restart at each run start, every run summed on its own, left to right.

    Each run's sums are exactly `np.cumsum` of that run, whatever the other runs hold or how many there
    are: one account scored alone gets the same bits as in a book of a million. Vectorised by padding
    runs of similar length (within a factor of two) into rows and summing along the rows.
    """
    total = len(values)
    out = np.empty(total, dtype=np.float64)
    if total == 0:
        return out
    if len(starts) <= _FEW_RUNS:  # a request's few accounts: a plain loop costs less than the set-up below
        bounds = [*starts.tolist(), total]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            out[lo:hi] = np.cumsum(values[lo:hi])
        return out
    lengths = np.diff(np.append(starts, total))
    width_class = np.ceil(np.log2(lengths)).astype(np.int64)
    for klass in np.unique(width_class):
        runs = np.flatnonzero(width_class == klass)
        width = int(lengths[runs].max())
        offsets = np.arange(width)
        for first in range(0, len(runs), max(1, chunk_cells // width)):  # bounded memory on huge exports
            chunk = runs[first:first + max(1, chunk_cells // width)]
            positions = starts[chunk][:, None] + offsets[None, :]
            inside = offsets[None, :] < lengths[chunk][:, None]
            padded = np.where(inside, values[np.minimum(positions, total - 1)], 0.0)
            out[positions[inside]] = np.cumsum(padded, axis=1)[inside]
    return out


def seconds_of(moments: list[datetime]) -> np.ndarray:
    """`to_seconds` of naive UTC datetimes, without numpy's slow conversion of datetime objects."""
    seconds = np.fromiter(((moment - _ORIGIN_MOMENT) // _SECOND for moment in moments), dtype=np.int64, count=len(moments))
    return np.clip(seconds, 0, (1 << _TIME_BITS) - 1)


class TimeIndex:
    """Events (group, time, value) that answer windowed sums and recency-weighted sums before a cut-off."""

    def __init__(self, group: np.ndarray, seconds: np.ndarray, value: np.ndarray, half_life_days: float | None = None):
        keep = seconds >= 0
        group, seconds, value = group[keep].astype(np.int64), seconds[keep], value[keep].astype(np.float64)
        order = np.argsort((group << _TIME_BITS) | seconds, kind="stable")
        self._group = group[order]
        self._seconds = seconds[order]
        self._keys = (self._group << _TIME_BITS) | self._seconds
        self._starts = np.flatnonzero(np.diff(self._group, prepend=-1)) if len(self._group) else np.zeros(0, np.int64)
        self._cum = self._segmented_cumsum(value[order])
        self._value = value[order]
        self._decay = None if half_life_days is None else np.log(2.0) / (half_life_days * SECONDS_PER_DAY)
        if self._decay is not None:
            # Each group's weights are relative to its own latest event, so they stay within (0, 1]
            # and sums over a window never cancel against other groups' much larger totals.
            # Sorted by (group, time): each group's latest event is the last of its run.
            ends = np.append(self._starts[1:], len(self._seconds))[:len(self._starts)]
            latest = np.repeat(self._seconds[ends - 1], ends - self._starts)
            self._latest = latest
            weights = self._value * np.exp(-self._decay * (latest - self._seconds))
            self._weighted_cum = self._segmented_cumsum(weights)
            self._weights = weights

    def _segmented_cumsum(self, values: np.ndarray) -> np.ndarray:
        return segmented_cumsum(values, self._starts)

    def __len__(self) -> int:
        return len(self._keys)

    def _bounds(self, group: np.ndarray, cutoff: np.ndarray, window_seconds: float | None, end_offset: float = 0.0):
        # np.maximum, not np.clip: clip's checks cost more than the work on a request's few values.
        end = np.maximum(cutoff - end_offset, 0).astype(np.int64)
        group = group.astype(np.int64)
        hi = np.searchsorted(self._keys, (group << _TIME_BITS) | end, side="left")
        if window_seconds is None:
            lo = np.searchsorted(self._keys, group << _TIME_BITS, side="left")
        else:
            start = np.maximum(end - int(window_seconds), 0)
            lo = np.searchsorted(self._keys, (group << _TIME_BITS) | start, side="left")
        return lo, hi

    @staticmethod
    def _window(cum: np.ndarray, own: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if len(cum) == 0:
            return np.zeros(len(lo))
        nonempty = hi > lo
        last = np.maximum(hi - 1, 0)  # hi and lo lie in [0, len(cum)]
        first = np.minimum(lo, len(cum) - 1)
        return np.where(nonempty, cum[last] - (cum[first] - own[first]), 0.0)

    def total(self, group, cutoff, window_days: float | None = None, end_offset_days: float = 0.0) -> np.ndarray:
        """Sum of values in [cutoff - end_offset - window, cutoff - end_offset); all earlier history when window is None."""
        lo, hi = self._bounds(group, cutoff, None if window_days is None else window_days * SECONDS_PER_DAY,
                              end_offset_days * SECONDS_PER_DAY)
        return self._window(self._cum, self._value, lo, hi)

    def decayed(self, group, cutoff, window_days: float) -> np.ndarray:
        """Sum of value * 0.5 ** (age / half_life) over events in [cutoff - window, cutoff)."""
        if self._decay is None:
            raise ValueError("this index was built without a half-life")
        lo, hi = self._bounds(group, cutoff, window_days * SECONDS_PER_DAY)
        raw = self._window(self._weighted_cum, self._weights, lo, hi)
        if len(self._keys) == 0:
            return raw
        latest = self._latest[np.maximum(hi - 1, 0)]
        exponent = np.minimum(self._decay * (latest - cutoff.astype(np.float64)), 700.0)
        return np.where(hi > lo, raw * np.exp(exponent), 0.0)

    def days_since_last(self, group, cutoff) -> np.ndarray:
        """Days from the latest event before the cut-off to the cut-off; NaN when there is none."""
        lo, hi = self._bounds(group, cutoff, None)
        if len(self._keys) == 0:
            return np.full(len(lo), np.nan)
        last = np.maximum(hi - 1, 0)
        return np.where(hi > lo, (cutoff - self._seconds[last]) / SECONDS_PER_DAY, np.nan)
