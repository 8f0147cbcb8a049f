"""Point-in-time sums over timestamped events, vectorised for tens of millions of rows.

Events are sorted once by (group, time) under an exact int64 key; every question "what happened in
group g during [T - window, T)" is then two binary searches and a sum over the events between them.
Only events strictly before T are ever seen, which is what keeps training rows free of leaks.

A window's sum is made of the events inside it only, so an event outside the window cannot change it
(one old row with a count of 1e17 once swamped every later window of its account, as a difference of
running totals does). Where every value is a whole number and a group's total stays below 2**53, running
totals are exact and their difference is used. Otherwise, and for recency-weighted sums, the sum is put
together from precomputed sums over power-of-two blocks of each group's events, aligned at the group's
first event, taking only blocks that lie wholly inside the window (at most two per block size); each
block's weighted sum is kept relative to its own latest event, so no weight underflows however far apart
a group's events lie. An account's sums therefore depend only on its own events, never on the others'.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

_TIME_BITS = 34  # seconds since 1900 fit in 34 bits until the year 2444
_ORIGIN = np.datetime64("1900-01-01T00:00:00", "s")
SECONDS_PER_DAY = 86_400.0
_FEW_RUNS = 32
_FEW_QUERIES = 256  # a request's windows: few enough that all levels' block positions fit in small arrays at once
_ORIGIN_MOMENT = datetime(1900, 1, 1)


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
            chunk = runs[first : first + max(1, chunk_cells // width)]
            positions = starts[chunk][:, None] + offsets[None, :]
            inside = offsets[None, :] < lengths[chunk][:, None]
            padded = np.where(inside, values[np.minimum(positions, total - 1)], 0.0)
            out[positions[inside]] = np.cumsum(padded, axis=1)[inside]
    return out


def seconds_of(moments: list[datetime]) -> np.ndarray:
    """`to_seconds` of naive UTC datetimes, without numpy's slow conversion of datetime objects."""
    # A timedelta keeps 0 <= seconds < 86,400, so days * 86,400 + seconds is the floor of its seconds (what `// 1 s`
    # gives) without building a second timedelta per moment: half the time.
    seconds = np.fromiter(
        ((delta := moment - _ORIGIN_MOMENT).days * 86_400 + delta.seconds for moment in moments),
        dtype=np.int64,
        count=len(moments),
    )
    return np.clip(seconds, 0, (1 << _TIME_BITS) - 1)


class GroupBlocks:
    """Sums over power-of-two blocks of each group's events (sorted by group, then time), for exact window sums.

    Level j holds, for every group, its events in blocks of 2**j counted from the group's first event (the last
    block may be shorter). With a decay rate, a block's sum weighs each event by exp(-decay * (block's latest
    time - event time)), so each block is read as of any later moment with one factor. Levels are built on
    demand, up to the longest window asked for.
    """

    def __init__(self, starts: np.ndarray, value: np.ndarray, seconds: np.ndarray, decay: float | None):
        self._starts = starts.astype(np.int64)
        self._lengths = np.diff(np.append(self._starts, len(value))).astype(np.int64)
        self._decay = decay
        self._sums = [value.astype(np.float64)]
        self._times = [seconds.astype(np.int64)]  # the latest event time in each block
        self._offsets = [self._starts]  # where each group's blocks begin, per level

    def _level(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        while len(self._sums) <= j:
            sums, times, offsets = self._sums[-1], self._times[-1], self._offsets[-1]
            level = len(self._sums)
            previous = -(-self._lengths // (1 << (level - 1)))  # blocks per group one level down
            count = -(-self._lengths // (1 << level))
            new_offsets = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
            pair = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(new_offsets, count)
            left = np.repeat(offsets, count) + 2 * pair
            has_right = 2 * pair + 1 < np.repeat(previous, count)
            right = np.where(has_right, left + 1, left)
            latest = times[right]
            left_sum = sums[left] if self._decay is None else sums[left] * np.exp(-self._decay * (latest - times[left]))
            self._sums.append(left_sum + np.where(has_right, sums[right], 0.0))
            self._times.append(latest)
            self._offsets.append(new_offsets)
        return self._sums[j], self._times[j], self._offsets[j]

    def window_sum(self, lo: np.ndarray, hi: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
        """Sum over events [lo, hi) of one group each (positions in the sorted events), weighed as of `cutoff`."""
        total = np.zeros(len(lo), dtype=np.float64)
        if len(self._starts) == 0 or len(lo) == 0:
            return total
        run = np.maximum(np.searchsorted(self._starts, lo, side="right") - 1, 0)
        left, right = lo - self._starts[run], hi - self._starts[run]  # positions within the group
        cutoff = np.asarray(cutoff, dtype=np.float64)
        if len(lo) <= _FEW_QUERIES:
            return self._few_window_sums(run, left, right, cutoff)
        j = 0
        while True:  # bottom-up: at most one block from each end per level, every block wholly inside
            active = left < right
            if not active.any():
                return total
            sums, times, offsets = self._level(j)
            base = offsets[run]
            take_left, take_right = active & (left & 1 == 1), active & (right & 1 == 1)
            for take, position in ((take_left, left), (take_right, right - 1)):
                index = np.where(take, base + position, 0)
                part = sums[index]
                if self._decay is not None:
                    part = part * np.exp(-self._decay * np.maximum(cutoff - times[index], 0.0))
                total += np.where(take, part, 0.0)
            left, right, j = (left + take_left) >> 1, (right - take_right) >> 1, j + 1

    def _few_window_sums(self, run: np.ndarray, left: np.ndarray, right: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
        """`window_sum` of a request's few windows: the same blocks, weighed and added in the same order, with the
        levels' block positions worked out at once instead of a dozen array operations per level.

        Going up a level, a window's first block inside is ceil(left / 2) and its end floor(right / 2) (the blocks
        taken at one end are exactly the odd ones), so level j's are ceil(left / 2**j) and floor(right / 2**j); a
        window with no block left at one level has none at any later one.
        """
        shifts = np.arange(int(right.max()).bit_length() + 1)[:, None]
        first, stop = -(-left >> shifts), right >> shifts
        active = first < stop
        levels = int(np.flatnonzero(active.any(axis=1))[-1]) + 1 if active.any() else 0
        take = np.stack([active & (first & 1 == 1), active & (stop & 1 == 1)], axis=1)[:levels]
        position = np.stack([first, stop - 1], axis=1)[:levels]
        parts = np.zeros((2 * levels + 1, len(run)), dtype=np.float64)  # a zero row first, as the sum starts at 0
        for j in range(levels):
            sums, times, offsets = self._level(j)
            index = np.where(take[j], offsets[run] + position[j], 0)
            part = sums[index]
            if self._decay is not None:
                part = part * np.exp(-self._decay * np.maximum(cutoff - times[index], 0.0))
            parts[2 * j + 1 : 2 * j + 3] = np.where(take[j], part, 0.0)
        # Left then right block of each level in turn, one addition at a time: the bits of the loop above.
        return np.cumsum(parts, axis=0)[-1]


class TimeIndex:
    """Events (group, time, value) that answer windowed sums and recency-weighted sums before a cut-off."""

    def __init__(self, group: np.ndarray, seconds: np.ndarray, value: np.ndarray, half_life_days: float | None = None):
        keep = seconds >= 0
        group, seconds, value = group[keep].astype(np.int64), seconds[keep], value[keep].astype(np.float64)
        keys = (group << _TIME_BITS) | seconds
        order = np.argsort(keys, kind="stable")
        self._group = group[order]
        self._seconds = seconds[order]
        self._keys = keys[order]
        # Where each group's run begins (groups are never negative). Plain comparisons, not np.diff's set-up: a request
        # builds eight of these indexes.
        self._starts = (
            np.concatenate(([0], np.flatnonzero(self._group[1:] != self._group[:-1]) + 1))
            if len(self._group)
            else np.zeros(0, np.int64)
        )
        self._value = value[order]
        self._cum = self._segmented_cumsum(self._value)
        # Running totals of whole numbers below 2**53 are exact, and so is their difference.
        self._exact_totals = bool(
            len(self._value) == 0
            or ((self._value == np.floor(self._value)).all() and (self._value >= 0).all() and self._cum.max() < 2.0**53)
        )
        self._decay = None if half_life_days is None else np.log(2.0) / (half_life_days * SECONDS_PER_DAY)
        self._plain_blocks: GroupBlocks | None = None
        self._decayed_blocks: GroupBlocks | None = None

    def _segmented_cumsum(self, values: np.ndarray) -> np.ndarray:
        return segmented_cumsum(values, self._starts)

    def __len__(self) -> int:
        return len(self._keys)

    def _bounds(self, group: np.ndarray, cutoff: np.ndarray, window_seconds: float | None, end_offset: float = 0.0):
        # np.maximum, not np.clip: clip's checks cost more than the work on a request's few values. Whole seconds with
        # no offset skip the round trip through floats; groups already int64 are not copied.
        cutoff = np.asarray(cutoff)
        if end_offset == 0 and cutoff.dtype == np.int64:
            end = np.maximum(cutoff, 0)
        else:
            end = np.maximum(cutoff - end_offset, 0).astype(np.int64)
        group = np.asarray(group, dtype=np.int64)
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
        """Sum of values in [cutoff - end_offset - window, cutoff - end_offset);
        all earlier history when window is None."""
        lo, hi = self._bounds(
            group,
            cutoff,
            None if window_days is None else window_days * SECONDS_PER_DAY,
            end_offset_days * SECONDS_PER_DAY,
        )
        if self._exact_totals:
            return self._window(self._cum, self._value, lo, hi)
        if self._plain_blocks is None:
            self._plain_blocks = GroupBlocks(self._starts, self._value, self._seconds, None)
        return self._plain_blocks.window_sum(lo, hi, cutoff)

    def decayed(self, group, cutoff, window_days: float) -> np.ndarray:
        """Sum of value * 0.5 ** (age / half_life) over events in [cutoff - window, cutoff)."""
        if self._decay is None:
            raise ValueError("this index was built without a half-life")
        lo, hi = self._bounds(group, cutoff, window_days * SECONDS_PER_DAY)
        if self._decayed_blocks is None:
            self._decayed_blocks = GroupBlocks(self._starts, self._value, self._seconds, self._decay)
        return self._decayed_blocks.window_sum(lo, hi, cutoff)

    def days_since_last(self, group, cutoff) -> np.ndarray:
        """Days from the latest event before the cut-off to the cut-off; NaN when there is none."""
        lo, hi = self._bounds(group, cutoff, None)
        if len(self._keys) == 0:
            return np.full(len(lo), np.nan)
        last = np.maximum(hi - 1, 0)
        return np.where(hi > lo, (cutoff - self._seconds[last]) / SECONDS_PER_DAY, np.nan)
