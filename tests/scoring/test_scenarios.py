"""Scenarios from a scoring's parts, against values worked out by hand: rule scores, learned scores, tiers under
capacity, pins and budget per account."""

import numpy as np
import pandas as pd
import pytest

from configuration.tiering import TieringConfig, apply_draft
from scoring.scenarios import compare_scenario, rescored

# Five accounts. The scoring they come from weighed the components 0.40 / 0.35 / 0.25 and blended 0.5 model part
# with 0.5 rule score; E is outside the ICP (an excluded industry). By hand:
#   rule then:    A 0.4*100 + 0.35*40  + 0.25*0   = 54    learned then: 0.5*60 + 0.5*54   = 57
#                 B 0.4*50  + 0.35*100 + 0.25*20  = 60                  0.5*70 + 0.5*60   = 65
#                 C 0.4*20  + 0.35*60  + 0.25*100 = 54                  0.5*40 + 0.5*54   = 47
#                 D 0.4*0   + 0.35*20  + 0.25*80  = 27                  0.5*50 + 0.5*27   = 38.5
#                 E 0.4*80  + 0.35*80  + 0.25*80  = 80                  0.5*10 + 0.5*80   = 45
PARTS = pd.DataFrame(
    {
        "account_id": ["A", "B", "C", "D", "E"],
        "revenue_potential_score": [100.0, 50, 20, 0, 80],
        "business_fit_score": [40.0, 100, 60, 20, 80],
        "engagement_score": [0.0, 20, 100, 80, 80],
        "rule_score": [54.0, 60, 54, 27, 80],
        "learned_score": [57.0, 65, 47, 38.5, 45],
        "win_probability": [0.3, 0.5, 0.2, 0.4, 0.1],
        "expected_value": [1.0, 1, 1, 1, 1],
        "in_icp": [True, True, True, True, False],
        "reason_1": "",
        "reason_2": "",
        "reason_3": "",
        "override_reason": "",
    }
)
ACTIVE = apply_draft(
    TieringConfig(),
    {
        "model": {"blend": 0.5},
        "tiers": {
            "tier_1": {"max_accounts": 1, "min_score": 55},
            "tier_2": {"max_accounts": 2, "min_score": 40},
            "tier_3": {"max_accounts": None, "min_score": 20},
        },
    },
    "active",
)
WEIGHTS = {"rule_weights": {"revenue_potential": 0.2, "business_fit": 0.3, "engagement": 0.5}}
BUDGET = 1000.0


def by_id(frame: pd.DataFrame, column: str) -> dict:
    return dict(zip(frame["account_id"], frame[column]))


def test_a_weight_change_on_five_accounts_by_hand():
    scenario = apply_draft(ACTIVE, WEIGHTS, "draft")
    before = rescored(PARTS, ACTIVE, ACTIVE, budget=BUDGET, overrides=None)
    after = rescored(PARTS, ACTIVE, scenario, budget=BUDGET, overrides=None)
    # Unchanged knobs give the scoring back: learned tiers B 65 (tier 1), A 57 and C 47 (tier 2, full), D 38.5
    # (tier 3), E outside the ICP; budget 600 to Tier 1's one account, 300 / 2 in Tier 2, 100 to D.
    assert by_id(before, "learned_score") == {"A": 57, "B": 65, "C": 47, "D": 38.5, "E": 45}
    assert by_id(before, "tier") == {"A": "tier_2", "B": "tier_1", "C": "tier_2", "D": "tier_3", "E": "untiered"}
    assert by_id(before, "budget") == {"A": 150, "B": 600, "C": 150, "D": 100, "E": 0}
    # Weights 0.2 / 0.3 / 0.5: rule A 20+12+0 = 32, B 10+30+10 = 50, C 4+18+50 = 72, D 0+6+40 = 46, E 16+24+40 = 80;
    # learned = 0.5 * model part + 0.5 * rule: A 30+16 = 46, B 35+25 = 60, C 20+36 = 56, D 25+23 = 48, E 5+40 = 45.
    assert after["rule_score"].to_numpy() == pytest.approx([32, 50, 72, 46, 80], abs=1e-9)
    assert after["learned_score"].to_numpy() == pytest.approx([46, 60, 56, 48, 45], abs=1e-9)
    # Tier 1 (1 seat, 55+): B 60. Tier 2 (2 seats, 40+): C 56, D 48. A 46 falls to Tier 3.
    assert by_id(after, "tier") == {"A": "tier_3", "B": "tier_1", "C": "tier_2", "D": "tier_2", "E": "untiered"}
    # Rule tiers: C 72 in Tier 1; B 50 and D 46 in Tier 2; A 32 in Tier 3.
    assert by_id(after, "rule_tier") == {"A": "tier_3", "B": "tier_2", "C": "tier_1", "D": "tier_2", "E": "untiered"}
    assert by_id(after, "budget") == pytest.approx({"A": 100, "B": 600, "C": 150, "D": 150, "E": 0})
    comparison = compare_scenario(before, after)
    moves = comparison.moves.set_index("account_id")
    assert set(moves.index) == {"A", "D"}
    assert moves.loc["A", "direction"] == "down" and moves.loc["D", "direction"] == "up"
    assert "rule score 54 → 32" in moves.loc["A", "why"] and "rule score 27 → 46" in moves.loc["D", "why"]
    tiers = comparison.tiers.set_index("tier")
    assert tiers.loc["tier_2", ["accounts_before", "accounts_after", "entered", "left"]].tolist() == [2, 2, 1, 1]
    assert tiers.loc["tier_3", "budget_after"] == pytest.approx(100)


def test_a_new_blend_recovers_the_model_part():
    after = rescored(
        PARTS, ACTIVE, apply_draft(ACTIVE, {"model": {"blend": 1.0}}, "draft"), budget=None, overrides=None
    )
    assert after["learned_score"].to_numpy() == pytest.approx([60, 70, 40, 50, 10], abs=1e-9)  # the model parts
    # B 70 in Tier 1; A 60 and D 50 fill Tier 2; C 40 is left for Tier 3.
    assert by_id(after, "tier") == {"A": "tier_2", "B": "tier_1", "C": "tier_3", "D": "tier_2", "E": "untiered"}


def test_pins_survive_every_scenario():
    pins = pd.DataFrame({"account_id": ["A"], "tier": ["tier_1"], "reason": ["strategic"], "owner": ["kim"]})
    drafts = [{}, WEIGHTS, {"model": {"blend": 0.0}}, {"tiers": {"tier_1": {"max_accounts": 0}}}]
    for draft in drafts:
        after = rescored(PARTS, ACTIVE, apply_draft(ACTIVE, draft, "draft"), budget=BUDGET, overrides=pins)
        assert by_id(after, "tier")["A"] == "tier_1", draft
        assert "pinned to tier_1 by kim: strategic" in by_id(after, "override_reason")["A"]
    # With the weights changed, Tier 1 is the pin A and B: 600 / 2 each; Tier 2 C and D: 150 each; Tier 3 none.
    after = rescored(PARTS, ACTIVE, apply_draft(ACTIVE, WEIGHTS, "draft"), budget=BUDGET, overrides=pins)
    assert by_id(after, "budget") == pytest.approx({"A": 300, "B": 300, "C": 150, "D": 150, "E": 0})


def test_a_capacity_change_moves_exactly_the_accounts_at_the_boundary():
    count = 30
    book = pd.DataFrame(
        {
            "account_id": [f"{i:02d}" for i in range(count)],
            "revenue_potential_score": np.linspace(99, 70, count),
            "business_fit_score": np.linspace(99, 70, count),
            "engagement_score": np.linspace(99, 70, count),
            "win_probability": np.nan,
            "in_icp": True,
            "reason_1": "",
            "reason_2": "",
            "reason_3": "",
            "override_reason": "",
        }
    )
    book["rule_score"] = book["learned_score"] = book["revenue_potential_score"]
    base = apply_draft(TieringConfig(), {"tiers": {"tier_1": {"max_accounts": 2}, "tier_2": {"max_accounts": 10}}}, "a")
    before = rescored(book, base, base, budget=None, overrides=None)
    # Ranked 00 (99) to 29 (70): Tier 1 takes 00-01, Tier 2 02-11, Tier 3 the rest; two more Tier 2 seats take 12-13.
    wider = rescored(
        book, base, apply_draft(base, {"tiers": {"tier_2": {"max_accounts": 12}}}, "b"), budget=None, overrides=None
    )
    moved = compare_scenario(before, wider).moves
    assert sorted(moved["account_id"]) == ["12", "13"]
    assert set(moved["tier_before"]) == {"tier_3"} and set(moved["tier_after"]) == {"tier_2"}
    assert set(moved["why"]) == {"no notable change of its own: the tier boundary moved"}
    # One Tier 1 seat fewer: 01 drops to Tier 2, which then ends at 10, so 11 drops to Tier 3.
    narrower = rescored(
        book, base, apply_draft(base, {"tiers": {"tier_1": {"max_accounts": 1}}}, "c"), budget=None, overrides=None
    )
    moved = compare_scenario(before, narrower).moves.set_index("account_id")
    assert moved["tier_after"].to_dict() == {"01": "tier_2", "11": "tier_3"}
