"""Window sums are made of the events inside the window only.

They were differences of running totals, so one old engagement row with count 1e17 swamped every later
window of its account: an engagement score of 12.66 became 0.0. Counts are now bounded (0 to 1,000,000 a row,
in files and in the API), and a window's sum cannot be changed by an event outside it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configuration.tiering import parse_config
from features.pointintime import FeatureBuilder, snapshot
from features.rules import rule_scores
from features.schema import CrmData, conform
from features.timeindex import SECONDS_PER_DAY, TimeIndex

DAY = int(SECONDS_PER_DAY)
CUTOFF = 100_000 * DAY  # seconds since 1900 (in 2173), with room on both sides within the index's 34-bit seconds
WINDOW_DAYS = 30
HALF_LIFE = 10.0
counts = st.floats(min_value=0, max_value=1e6, allow_nan=False)
inside_ages = st.integers(min_value=1, max_value=WINDOW_DAYS * DAY)  # seconds before the cut-off, inside the window


def by_hand(events: list[tuple[int, float]], decayed: bool) -> float:
    """The window's sum from its definition: fsum of count (times 0.5 ** (age / half-life)) over inside events."""
    return math.fsum(count * (0.5 ** (age / DAY / HALF_LIFE) if decayed else 1.0) for age, count in events)


def window(events: list[tuple[int, float]], extra: list[tuple[int, float]] = ()) -> tuple[float, float]:
    """total and decayed of group 7's window [cut-off - 30 days, cut-off), events given as (age in seconds, count);
    a negative age is at or after the cut-off. Group 3 holds a huge neighbour."""
    ages = [age for age, _ in [*events, *extra]]
    group = np.array([7] * len(ages) + [3], dtype=np.int64)
    seconds = np.array([CUTOFF - age for age in ages] + [CUTOFF - DAY], dtype=np.int64)
    value = np.array([count for _, count in [*events, *extra]] + [1e6], dtype=np.float64)
    index = TimeIndex(group, seconds, value, half_life_days=HALF_LIFE)
    query, when = np.array([7]), np.array([CUTOFF])
    return float(index.total(query, when, WINDOW_DAYS)[0]), float(index.decayed(query, when, WINDOW_DAYS)[0])


@settings(max_examples=200, deadline=None)
@given(
    inside=st.lists(st.tuples(inside_ages, counts), max_size=40),
    outside=st.lists(
        st.tuples(
            st.integers(min_value=WINDOW_DAYS * DAY + 1, max_value=40_000 * DAY)
            | st.integers(min_value=-40_000 * DAY, max_value=0),
            counts,
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_an_event_outside_the_window_never_changes_its_sums(inside, outside):
    total, decayed = window(inside)
    assert total == pytest.approx(by_hand(inside, False), rel=1e-12, abs=1e-300)
    assert decayed == pytest.approx(by_hand(inside, True), rel=1e-12, abs=1e-300)
    with_outside = window(inside, outside)
    assert with_outside == pytest.approx((total, decayed), rel=1e-12, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(
    inside=st.lists(st.tuples(inside_ages, st.integers(min_value=0, max_value=1_000_000)), max_size=40),
    outside=st.lists(
        st.tuples(
            st.integers(min_value=WINDOW_DAYS * DAY + 1, max_value=40_000 * DAY),
            st.integers(min_value=0, max_value=1_000_000),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_whole_counts_are_summed_exactly(inside, outside):
    expected = float(sum(count for _, count in inside))  # integers: exact by hand
    assert window([(age, float(c)) for age, c in inside], [(age, float(c)) for age, c in outside])[0] == expected


def test_a_far_future_event_does_not_underflow_the_recency_weights():
    # An event a century after the cut-off (a typo) once made every weight of its group underflow to zero.
    total, decayed = window([(DAY, 1.0)], [(-36_500 * DAY, 1.0)])
    assert total == 1.0 and decayed == pytest.approx(0.5 ** (1 / HALF_LIFE), rel=1e-12)


CONFIG = parse_config({})
AS_OF = pd.Timestamp("2026-07-01")


def engagement_score(events: list[tuple[float, float]]) -> float:
    """The engagement score of one account as of AS_OF, events given as (days before AS_OF, count) on demo requests."""
    accounts = conform(pd.DataFrame({"account_id": ["A1"]}), "accounts")
    opportunities = conform(
        pd.DataFrame({"opportunity_id": [], "account_id": [], "created_date": [], "outcome": []}), "opportunities"
    )
    engagement = conform(
        pd.DataFrame(
            {
                "account_id": ["A1"] * len(events),
                "timestamp": [AS_OF - pd.Timedelta(days=age) for age, _ in events],
                "channel": ["demo_request"] * len(events),
                "count": [count for _, count in events],
            }
        ),
        "engagement",
    )
    data = CrmData(accounts, opportunities, engagement)
    features = snapshot(data, FeatureBuilder(data, CONFIG), AS_OF)
    return float(rule_scores(features, CONFIG)["engagement_score"].iloc[0])


@settings(max_examples=40, deadline=None)
@given(
    recent=st.lists(
        st.tuples(st.floats(min_value=0.01, max_value=179), st.floats(min_value=0, max_value=3)),
        min_size=1,
        max_size=10,
    ),
    extra=st.tuples(st.floats(min_value=0.01, max_value=5000), counts),
)
def test_more_engagement_never_lowers_the_engagement_score(recent, extra):
    before = engagement_score(recent)
    after = engagement_score([*recent, extra])
    assert after >= before - 1e-12
    if extra[0] > 180:  # outside the 180-day look-back: no change at all
        assert after == pytest.approx(before, rel=1e-12, abs=1e-12)


def test_the_issue_reproduction_an_old_huge_row_leaves_recent_engagement_alone():
    recent = [(3.0, 2.0), (10.0, 1.0)]
    assert engagement_score([*recent, (400.0, 1e6)]) == pytest.approx(engagement_score(recent), rel=1e-12)


def test_counts_beyond_the_documented_bound_are_refused_in_files_and_api(write_export, problems_of):
    from pydantic import ValidationError

    from serving.requests import ScoreRequest

    folder = write_export({"engagement.csv": "account_id,timestamp,channel,count\nA1,2024-01-01,web_visit,1e17\n"})
    [problem] = [p for p in problems_of(folder) if p.column == "count"]
    assert problem.message.startswith("values outside 0 to 1,000,000") and "between 0 and 1,000,000" in problem.fix
    with pytest.raises(ValidationError, match="less than or equal to 1000000"):
        ScoreRequest.model_validate(
            {
                "accounts": [
                    {
                        "account_id": "A",
                        "engagement": [{"timestamp": "2026-01-01", "channel": "web_visit", "count": 1e17}],
                    }
                ]
            }
        )
