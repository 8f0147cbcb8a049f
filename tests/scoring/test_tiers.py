import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.config import Budget, Tier, Tiers
from scoring.scorer import boundary_ties, place_tiers, tie_order
from scoring.tiers import allocate_budget, apply_overrides, assign_by_capacity, budget_summary, tiers_by_cutoffs

TIERS = Tiers(
    tier_1=Tier(max_accounts=2, min_score=60),
    tier_2=Tier(max_accounts=3, min_score=40),
    tier_3=Tier(max_accounts=None, min_score=20),
)


def fill(scores: pd.Series, eligible: pd.Series, tiers: Tiers = TIERS, **keys) -> tuple[pd.Series, dict]:
    """Capacity fill of a book given as scores (ids are the row numbers, zero-padded so text order is number order)."""
    book = {
        "account_id": np.array([f"{i:04d}" for i in range(len(scores))], dtype=object),
        "learned_score": scores.to_numpy(dtype=float),
        "in_icp": eligible.to_numpy(dtype=bool),
        **keys,
    }
    placement = assign_by_capacity(tie_order(book, "learned_score"), tiers)
    return pd.Series(placement.tiers, index=scores.index), placement.cutoffs


def test_capacity_fill_by_hand():
    scores = pd.Series([95, 90, 85, 70, 65, 50, 45, 30, 10, 99.0])
    eligible = pd.Series([True] * 9 + [False])
    tiers, cutoffs = fill(scores, eligible)
    assert tiers.tolist() == [
        "tier_1",
        "tier_1",
        "tier_2",
        "tier_2",
        "tier_2",
        "tier_3",
        "tier_3",
        "tier_3",
        "untiered",
        "untiered",
    ]
    assert cutoffs == {"tier_1": 90.0, "tier_2": 65.0, "tier_3": 20.0}


def test_tier_with_room_keeps_its_minimum_as_cutoff():
    tiers, cutoffs = fill(pd.Series([55.0, 45.0]), pd.Series([True, True]))
    assert tiers.tolist() == ["tier_2", "tier_2"]
    assert cutoffs["tier_1"] == 60 and cutoffs["tier_2"] == 40


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 100), min_size=0, max_size=60, unique=True), st.integers(0, 5), st.integers(0, 10))
def test_no_tier_holds_more_than_its_capacity_and_order_is_respected(values, cap1, cap2):
    tiers_config = Tiers(
        tier_1=Tier(max_accounts=cap1, min_score=50),
        tier_2=Tier(max_accounts=cap2, min_score=30),
        tier_3=Tier(max_accounts=None, min_score=10),
    )
    scores = pd.Series(values, dtype=float)
    tiers, cutoffs = fill(scores, pd.Series(True, index=scores.index), tiers_config)
    assert (tiers == "tier_1").sum() <= cap1 and (tiers == "tier_2").sum() <= cap2
    rank = tiers.map({"tier_1": 0, "tier_2": 1, "tier_3": 2, "untiered": 3})
    # A higher score never lands in a worse tier than a lower score.
    order = scores.sort_values(ascending=False, kind="stable").index
    assert rank.loc[order].is_monotonic_increasing
    for name, tier in tiers_config.ordered():
        assert (scores[tiers == name] >= tier.min_score).all()
    # Frozen cut-offs re-create the same tiers for the accounts that made it into each tier.
    again = tiers_by_cutoffs(scores.to_numpy(), np.ones(len(scores), dtype=bool), cutoffs)
    placed = (tiers != "untiered").to_numpy()
    assert (again[placed] == tiers.to_numpy()[placed]).all()


def test_cutoffs_place_single_accounts():
    cutoffs = {"tier_1": 80.0, "tier_2": 50.0, "tier_3": 20.0}
    tiers = tiers_by_cutoffs(
        np.array([85, 80, 60, 20, 19.9, 99, np.nan]), np.array([True] * 5 + [False, True]), cutoffs
    )
    assert tiers.tolist() == ["tier_1", "tier_1", "tier_2", "tier_3", "untiered", "untiered", "untiered"]


def test_budget_split_and_even_within_tier():
    tiers = pd.Series(["tier_1", "tier_2", "tier_2", "tier_3", "untiered"])
    budget = allocate_budget(tiers, 1000.0, Budget())
    assert budget.tolist() == [600.0, 150.0, 150.0, 100.0, 0.0]
    assert budget.sum() == pytest.approx(1000.0)
    assert allocate_budget(tiers, None, Budget()).isna().all()
    summary = budget_summary(tiers, 1000.0, Budget()).set_index("tier")
    assert summary.loc["tier_2", "per_account"] == 150.0 and summary.loc["untiered", "budget"] == 0


def test_overrides_pin_accounts_and_say_why():
    learned = pd.Series(["tier_3", "tier_1"])
    ids = pd.Series(["a", "b"])
    pins = pd.DataFrame({"account_id": ["a"], "tier": ["tier_1"], "reason": ["strategic logo"], "owner": ["kim"]})
    final, reasons = apply_overrides(learned, ids, pins)
    assert final.tolist() == ["tier_1", "tier_1"]
    assert reasons[0] == "pinned to tier_1 by kim: strategic logo (model said tier_3)" and reasons[1] == ""


def test_score_ties_are_broken_by_win_probability_then_rule_score_then_engagement_then_id():
    # Five accounts tie at score 70 for two Tier 1 places; the file order is deliberately the reverse.
    book = {
        "account_id": np.array(["e", "d", "c", "b", "a"], dtype=object),
        "learned_score": np.array([70.0, 70.0, 70.0, 70.0, 70.0]),
        "rule_score": np.array([50.0, 50.0, 60.0, 50.0, 50.0]),
        "win_probability": np.array([0.2, 0.3, 0.3, 0.2, 0.2]),
        "engagement_score": np.array([10.0, 5.0, 5.0, 10.0, 30.0]),
        "in_icp": np.ones(5, dtype=bool),
    }
    # By hand: c and d lead on win probability (0.3), c before d on rule score; then a (engagement 30),
    # then b and e tie on everything but the id: b before e.
    placement = assign_by_capacity(tie_order(book, "learned_score"), TIERS)
    assert dict(zip(book["account_id"], placement.tiers)) == {
        "c": "tier_1",
        "d": "tier_1",
        "a": "tier_2",
        "b": "tier_2",
        "e": "tier_2",
    }
    assert placement.ties == [{"tier": "tier_1", "score": 70.0, "tied": 5, "inside": 2}]
    reversed_book = {name: values[::-1] for name, values in book.items()}
    again = place_tiers(reversed_book, _config_with(TIERS), None, None, None)
    assert dict(zip(again["account_id"], again["learned_tier"])) == dict(zip(book["account_id"], placement.tiers))


def test_boundary_ties_report_each_tiering_and_only_ties_that_straddle_a_boundary():
    book = {
        "account_id": np.array(["a", "b", "c", "d"], dtype=object),
        "learned_score": np.array([90.0, 80.0, 80.0, 80.0]),
        "rule_score": np.array([90.0, 85.0, 80.0, 45.0]),
        "in_icp": np.ones(4, dtype=bool),
    }
    ties = boundary_ties(book, _config_with(TIERS))
    # Learned: Tier 1 holds a and one of the three 80s; two 80s are left out. Rules: no tie at a boundary.
    assert ties == [{"tiering": "learned", "tier": "tier_1", "score": 80.0, "tied": 3, "inside": 1}]


def _config_with(tiers: Tiers):
    from configuration.tiering import TieringConfig

    return TieringConfig(tiers=tiers)


def test_a_pin_for_an_account_not_scored_pins_nothing():
    from scoring.tiers import apply_overrides

    learned = pd.Series(["tier_2", "tier_3", "untiered"])
    ids = pd.Series(["A", "B", "C"])
    pins = pd.DataFrame(
        {"account_id": ["ZZ", "B"], "tier": ["tier_1", "tier_1"], "reason": ["gone", "MSA"], "owner": ["ana", "bo"]}
    )
    final, reasons = apply_overrides(learned, ids, pins)
    assert final.tolist() == ["tier_2", "tier_1", "untiered"]
    assert reasons.tolist() == ["", "pinned to tier_1 by bo: MSA (model said tier_3)", ""]
