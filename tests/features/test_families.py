"""A family worked out by hand: a parent P, its children C1 and C2, and C1's child G (plus two accounts on their
own). Every event sits a whole number of half-lives (30 days) before the as-of date, so each decayed value is a
count times a power of one half."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import ConfigError, ModelConfig, parse_model_config
from features.families import resolve_families
from features.pointintime import FeatureBuilder, snapshot
from features.schema import CrmData, conform
from scoring.pyfunc import TieringModel

AS_OF = pd.Timestamp("2025-01-01")
HALF_LIFE = ModelConfig().engagement.half_life_days


def days_before(days: float) -> pd.Timestamp:
    return AS_OF - pd.Timedelta(days=days)


def family_export() -> CrmData:
    accounts = pd.DataFrame(
        {
            "account_id": ["P", "C1", "C2", "G", "S1", "S2"],
            "parent_account_id": [None, "P", "P", "C1", None, None],
            "industry": ["software", "retail", "software", "healthcare", "software", "government"],
            "employees": [5000.0, 300.0, 800.0, 250.0, 300.0, 5000.0],
            "annual_revenue": [2e9, 5e7, 1e8, 3e7, 2e7, 2e9],
            "country": ["united states"] * 6,
        }
    )
    h = HALF_LIFE
    engagement = pd.DataFrame(
        {
            "account_id": ["P", "C1", "C2", "G", "G"],
            "timestamp": [days_before(h), days_before(2 * h), days_before(3 * h), days_before(h), AS_OF],
            "channel": ["web_visit", "demo_request", "email_open", "web_visit", "sales_meeting"],
            "count": [2.0, 1.0, 4.0, 1.0, 50.0],  # G's meeting on the as-of day is not before it: never counted
        }
    )
    intent = pd.DataFrame(
        {
            "account_id": ["P", "C1", "G"],
            "date": [days_before(h), days_before(2 * h), days_before(h)],
            "topic": ["crm", "analytics", "security"],
            "score": [80.0, 100.0, 50.0],
        }
    )
    opportunities = pd.DataFrame(
        {
            "opportunity_id": ["O1", "O2"],
            "account_id": ["P", "C2"],
            "created_date": [days_before(200), days_before(150)],
            "close_date": [days_before(120), days_before(100)],
            "outcome": ["won", "lost"],
            "amount": [50_000.0, 20_000.0],
        }
    )
    return CrmData(
        accounts=conform(accounts, "accounts"),
        opportunities=conform(opportunities, "opportunities"),
        engagement=conform(engagement, "engagement"),
        intent=conform(intent, "intent"),
    )


FAMILY = {"hierarchy": {"roll_up": "family"}}
# Decayed engagement: P 2 * 1/2, C1 1 * 1/4, C2 4 * 1/8, G 1 * 1/2; intent: P 0.8 * 1/2, C1 1.0 * 1/4, G 0.5 * 1/2.
OWN_ENGAGEMENT = {"P": 1.0, "C1": 0.25, "C2": 0.5, "G": 0.5, "S1": 0.0, "S2": 0.0}
FAMILY_ENGAGEMENT = 2.25
FAMILY_INTENT = 0.9


def test_families_follow_chains_to_the_top_account():
    families = resolve_families(["P", "C1", "C2", "G", "S1"], [None, "P", "P", "C1", ""])
    assert families.top.tolist() == [0, 0, 0, 0, 4]
    assert families.depth.tolist() == [0, 1, 1, 2, 0]
    assert not families.faulty.any()


def test_rolled_up_engagement_intent_and_history_by_hand():
    rows = snapshot(family_export(), FeatureBuilder(family_export(), parse_model_config(FAMILY)), AS_OF)
    rows = rows.set_index("account_id")
    assert rows["eng_w_total"].to_dict() == pytest.approx(OWN_ENGAGEMENT, abs=1e-12)
    family = rows.loc[["P", "C1", "C2", "G"]]
    assert family["family_id"].eq("P").all() and family["family_size"].eq(4).all()
    assert family["family_eng_w_total"].to_numpy() == pytest.approx([FAMILY_ENGAGEMENT] * 4, abs=1e-12)
    assert family["family_intent_w_total"].to_numpy() == pytest.approx([FAMILY_INTENT] * 4, abs=1e-12)
    assert family["family_max_eng_w_total"].to_numpy() == pytest.approx([1.0] * 4, abs=1e-12)  # P's own
    assert family["family_prior_won"].eq(1).all() and family["family_prior_lost"].eq(1).all()
    assert family["family_prior_won_amount"].eq(50_000).all()
    assert family["family_industry"].eq("software").all()  # firmographics from the top account
    assert family["family_employees"].eq(5000).all()
    assert rows.loc["S1", "family_id"] == "S1" and rows.loc["S1", "family_size"] == 1
    assert rows.loc["S1", "family_eng_w_total"] == rows.loc["S1", "eng_w_total"]


def tiered(hierarchy: dict, budget: float | None = None, overrides: pd.DataFrame | None = None) -> pd.DataFrame:
    config = parse_model_config(
        {
            "hierarchy": hierarchy,
            "tiers": {
                "tier_1": {"max_accounts": 1, "min_score": 0},
                "tier_2": {"max_accounts": 1, "min_score": 0},
                "tier_3": {"max_accounts": None, "min_score": 0},
            },
        }
    )
    scored = TieringModel.rules_only(config).score_book(family_export(), AS_OF, budget=budget, overrides=overrides)
    return scored.scores.set_index("account_id")


def test_a_family_takes_one_slot_and_its_entities_inherit_its_tier():
    by_family = tiered({"roll_up": "family", "tier_by": "family"}, budget=1000.0)
    assert by_family.loc[["P", "C1", "C2", "G"], "tier"].eq("tier_1").all()  # four accounts, one Tier 1 slot
    assert by_family.loc["S1", "tier"] == "tier_2"
    assert by_family.loc["S2", "tier"] == "untiered"  # government: outside the ICP
    # Tier 1's 60% to its one family, split over its four accounts; Tier 2's 30% to S1.
    assert by_family["budget"].to_dict() == pytest.approx(
        {"P": 150.0, "C1": 150.0, "C2": 150.0, "G": 150.0, "S1": 300.0, "S2": 0.0}
    )
    assert by_family.loc["G", "family_engagement_share"] == pytest.approx(0.5 / FAMILY_ENGAGEMENT)
    assert by_family.loc["S1", "family_engagement_share"] != by_family.loc["S1", "family_engagement_share"]  # 0/0
    by_account = tiered({"roll_up": "family", "tier_by": "account"})
    assert (by_account["tier"] == "tier_1").sum() == 1  # accounts each take a slot
    assert by_account.loc[["P", "C1", "C2", "G"], "family_tier"].eq("tier_1").all()  # the family's view is kept


def test_a_pinned_entity_leaves_its_family_tier_and_the_budget_follows():
    pins = pd.DataFrame({"account_id": ["G"], "tier": ["tier_3"], "reason": ["new owner"], "owner": ["ana"]})
    scores = tiered({"roll_up": "family", "tier_by": "family"}, budget=1000.0, overrides=pins)
    assert scores.loc["G", "tier"] == "tier_3" and scores.loc["G", "learned_tier"] == "tier_1"
    assert scores.loc[["P", "C1", "C2"], "tier"].eq("tier_1").all()
    assert scores["budget"].to_dict() == pytest.approx(
        {"P": 200.0, "C1": 200.0, "C2": 200.0, "G": 100.0, "S1": 300.0, "S2": 0.0}
    )


def test_without_roll_up_the_scores_ignore_the_links():
    linked = TieringModel.rules_only(ModelConfig()).score_book(family_export(), AS_OF, budget=10.0)
    export = family_export()
    export.accounts["parent_account_id"] = pd.Series([None] * 6, dtype="str")
    alone = TieringModel.rules_only(ModelConfig()).score_book(export, AS_OF, budget=10.0)
    columns = [c for c in linked.scores.columns if c != "scored_at"]
    pd.testing.assert_frame_equal(linked.scores[columns], alone.scores[columns])
    assert not any(name.startswith("family_") for name in linked.scores.columns)
    assert not any(name.startswith("family_") for name in linked.features.columns)


def test_tier_by_family_needs_the_roll_up():
    with pytest.raises(ConfigError, match="roll_up: family"):
        parse_model_config({"hierarchy": {"tier_by": "family"}})
    model = TieringModel.rules_only(ModelConfig())
    business = parse_model_config({"hierarchy": {"roll_up": "family", "tier_by": "family"}})
    with pytest.raises(ConfigError, match="trained with hierarchy.roll_up: family"):
        model.with_business(business)
    assert np.isin(["family_id"], tiered({"roll_up": "family"}).columns).all()
