"""Stratified assignment on hand-made scores: balance per stratum counted by hand, the seed, families together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pilot.design import DesignError, design_pilot

# (tier, industry, accounts): strata of 5, 4, 7 and 6 pilot-eligible accounts, plus tier_3 accounts left out.
LAYOUT = [("tier_1", "software", 5), ("tier_1", "retail", 4), ("tier_2", "software", 7), ("tier_2", "retail", 6)]


def _scores(extra_tier_3: int = 5) -> pd.DataFrame:
    rows = []
    for tier, industry, count in [*LAYOUT, ("tier_3", "software", extra_tier_3)]:
        for _ in range(count):
            number = len(rows)
            rows.append(
                {
                    "account_id": f"A{number:03d}",
                    "tier": tier,
                    "industry": industry,
                    "learned_score": 90 - number,
                    "rule_score": 50 + (number * 7) % 30,
                }
            )
    return pd.DataFrame(rows)


def test_every_stratum_is_balanced_to_within_one():
    design = design_pilot(_scores(), ["tier_1", "tier_2"], seed=3, strata=["industry"], threshold=10)
    a = design.assignment
    assert len(a) == 22 and a["account_id"].is_unique
    assert set(a["account_id"]) == {f"A{i:03d}" for i in range(22)}  # the tier_3 accounts A022.. stay out
    counts = a.groupby(["stratum", "group"]).size().unstack(fill_value=0)
    assert sorted(counts.index) == ["tier_1|retail", "tier_1|software", "tier_2|retail", "tier_2|software"]
    assert ((counts["treatment"] - counts["control"]).abs() <= 1).all()
    assert counts.sum(axis=1).to_dict() == {
        "tier_1|retail": 4,
        "tier_1|software": 5,
        "tier_2|retail": 6,
        "tier_2|software": 7,
    }
    # Two odd strata (5 and 7): their odd accounts go to different groups, so the pilot splits 11 / 11.
    assert (a["group"] == "treatment").sum() == 11


def test_the_seed_reproduces_the_split_and_another_seed_changes_it():
    first = design_pilot(_scores(), ["tier_1", "tier_2"], seed=3, strata=["industry"], threshold=10).assignment
    again = design_pilot(_scores(), ["tier_1", "tier_2"], seed=3, strata=["industry"], threshold=10).assignment
    other = design_pilot(_scores(), ["tier_1", "tier_2"], seed=4, strata=["industry"], threshold=10).assignment
    pd.testing.assert_frame_equal(first, again)
    assert not first["group"].equals(other["group"])


def test_a_smaller_pilot_is_drawn_in_proportion_to_each_stratum():
    # 10 of 22: exact shares 2.27, 1.82, 3.18, 2.73 -> floors 2, 1, 3, 2 (8), the two largest remainders (0.82 for
    # tier_1 retail and 0.73 for tier_2 retail) get the other two.
    design = design_pilot(_scores(), ["tier_1", "tier_2"], seed=9, strata=["industry"], size=10, threshold=10)
    sizes = design.assignment.groupby("stratum").size().to_dict()
    assert sizes == {"tier_1|retail": 2, "tier_1|software": 2, "tier_2|retail": 3, "tier_2|software": 3}


def test_whole_families_share_a_group():
    scores = _scores()
    families = {"A000": "F1", "A001": "F1", "A002": "F1", "A005": "F2", "A006": "F2", "A008": "F3", "A015": "F3"}
    scores["family_id"] = scores["account_id"].map(families).fillna("")
    design = design_pilot(scores, ["tier_1", "tier_2"], seed=5, threshold=10)
    a = design.assignment.set_index("account_id")
    for family in ("F1", "F2", "F3"):
        members = [account for account, name in families.items() if name == family]
        assert a.loc[members, "group"].nunique() == 1, family
        assert a.loc[members, "stratum"].nunique() == 1, family  # the family's leading account's tier
    assert a.loc["A015", "stratum"] == "tier_1"  # F3 leads with A008 (tier_1, score 82), though A015 is tier_2
    # Units: 22 accounts - 7 family members + 3 families = 18, balanced to within one unit per tier.
    assert design.units == 18
    units = a.assign(unit=a["family_id"].where(a["family_id"] != "", a.index.to_series()))
    per_tier = units.drop_duplicates("unit").groupby(["stratum", "group"]).size().unstack()
    assert ((per_tier["treatment"] - per_tier["control"]).abs() <= 1).all()


def test_an_unbalanced_draw_is_redrawn_and_said_when_none_passes():
    loose = design_pilot(_scores(), ["tier_1", "tier_2"], seed=3, threshold=10, max_draws=20)
    assert loose.draws == 1 and loose.balanced
    strict = design_pilot(_scores(), ["tier_1", "tier_2"], seed=3, threshold=1e-9, max_draws=20)
    assert strict.draws == 20 and not strict.balanced
    # The kept draw is the best of the twenty: no worse than the first.
    first = loose.balance["standardised_difference"].abs().max()
    assert strict.balance["standardised_difference"].abs().max() <= first
    # The standardised difference by hand for the kept split.
    a = strict.assignment.merge(_scores(), on="account_id")
    t = a.loc[a["group"] == "treatment", "learned_score"]
    c = a.loc[a["group"] == "control", "learned_score"]
    by_hand = (t.mean() - c.mean()) / np.sqrt((t.var() + c.var()) / 2)
    row = strict.balance.set_index("covariate").loc["learned_score"]
    assert row["standardised_difference"] == pytest.approx(by_hand)


def test_refusals_name_the_fix():
    with pytest.raises(DesignError, match="--size 40: give between 2 and 22"):
        design_pilot(_scores(), ["tier_1", "tier_2"], seed=1, size=40)
    with pytest.raises(DesignError, match="no column region in the scores"):
        design_pilot(_scores(), ["tier_1"], seed=1, strata=["region"])
