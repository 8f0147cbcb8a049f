import numpy as np
import pandas as pd

from features.timeindex import SECONDS_PER_DAY, TimeIndex, to_seconds


def brute_force(groups, seconds, values, qg, qt, window_days, half_life=None, end_offset_days=0.0):
    out = []
    for g, t in zip(qg, qt):
        end = t - end_offset_days * SECONDS_PER_DAY
        start = end - window_days * SECONDS_PER_DAY if window_days is not None else -np.inf
        mask = (groups == g) & (seconds < end) & (seconds >= start)
        weights = values[mask]
        if half_life is not None:
            weights = weights * 0.5 ** ((t - seconds[mask]) / SECONDS_PER_DAY / half_life)
        out.append(weights.sum())
    return np.array(out)


def test_window_and_decayed_sums_match_brute_force():
    rng = np.random.default_rng(0)
    n = 4000
    groups = rng.integers(0, 30, n)
    base = to_seconds(pd.Series(pd.to_datetime(["2024-01-01"])))[0]
    seconds = base + rng.integers(0, 400 * 86400, n)
    values = rng.integers(1, 4, n).astype(float)
    index = TimeIndex(groups, seconds, values, half_life_days=20)
    qg = rng.integers(0, 32, 300)  # includes groups with no events
    qt = base + rng.integers(-10 * 86400, 420 * 86400, 300)
    np.testing.assert_allclose(index.total(qg, qt, 30), brute_force(groups, seconds, values, qg, qt, 30))
    np.testing.assert_allclose(index.total(qg, qt), brute_force(groups, seconds, values, qg, qt, None))
    np.testing.assert_allclose(
        index.total(qg, qt, 90, end_offset_days=14),
        brute_force(groups, seconds, values, qg, qt, 90, end_offset_days=14),
    )
    np.testing.assert_allclose(
        index.decayed(qg, qt, 180), brute_force(groups, seconds, values, qg, qt, 180, 20), rtol=1e-9, atol=1e-12
    )


def test_event_at_the_cutoff_instant_is_not_seen():
    t = to_seconds(pd.Series(pd.to_datetime(["2025-03-01"])))
    index = TimeIndex(np.array([0, 0]), np.array([t[0], t[0] - 1]), np.array([1.0, 10.0]), half_life_days=30)
    assert index.total(np.array([0]), t)[0] == 10.0
    assert index.days_since_last(np.array([0]), t)[0] == 1 / SECONDS_PER_DAY


def test_empty_index_answers_zero_and_nan():
    index = TimeIndex(np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([]), half_life_days=30)
    q = np.array([0, 1]), np.array([10**9, 10**9])
    assert index.total(*q).tolist() == [0.0, 0.0]
    assert index.decayed(*q, 180).tolist() == [0.0, 0.0]
    assert np.isnan(index.days_since_last(*q)).all()


def test_a_window_asked_alone_gets_the_bits_it_gets_among_a_books_thousands():
    """A request asks a few windows, a book thousands: each window's sum must not depend on how many are asked with it
    (one account scored through the API gets the bits batch scoring gives it), and must be the window's own sum."""
    rng = np.random.default_rng(3)
    n = 3000
    groups = rng.integers(0, 12, n)
    base = to_seconds(pd.Series(pd.to_datetime(["2024-01-01"])))[0]
    seconds = base + rng.integers(0, 700 * 86400, n)
    values = rng.uniform(0.0, 5.0, n)  # not whole numbers: plain sums come from the blocks as well
    index = TimeIndex(groups, seconds, values, half_life_days=30)
    qg = rng.integers(0, 13, 2000)
    qt = base + rng.integers(-10 * 86400, 720 * 86400, 2000)
    for ask in (
        lambda g, t: index.decayed(g, t, 365),
        lambda g, t: index.decayed(g, t, 10_000),
        lambda g, t: index.total(g, t, 90),
        lambda g, t: index.total(g, t),
    ):
        together = ask(qg, qt)
        for size in (1, 8, 100):
            for first in range(0, 400, size):
                alone = ask(qg[first : first + size], qt[first : first + size])
                assert alone.tobytes() == together[first : first + size].tobytes()
    np.testing.assert_allclose(
        index.decayed(qg[:50], qt[:50], 365),
        brute_force(groups, seconds, values, qg[:50], qt[:50], 365, 30),
        rtol=1e-9,
        atol=1e-12,
    )
