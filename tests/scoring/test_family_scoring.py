"""Family scoring on real and generated exports: the Maven CRM sample's seven families tiered once each, and an
export without a single parent link scored exactly alike with and without the roll-up."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import parse_model_config
from features.families import FAMILY_PREFIX
from features.matrix import FeatureSpec
from features.rules import with_rule_scores
from ingest.io import load_export
from scoring.pyfunc import TieringModel
from scoring.scorer import FAMILY_COLUMNS

FAMILY = {"hierarchy": {"roll_up": "family"}}
MAVEN = Path(__file__).resolve().parents[3] / "shared" / "data" / "maven-crm"


def maven_families() -> dict[str, str]:
    """Each account's top account, read from the raw file (subsidiary_of names the parent company)."""
    with open(MAVEN / "accounts.csv", encoding="utf-8", newline="") as handle:
        parent = {row["account"]: row["subsidiary_of"] or None for row in csv.DictReader(handle)}

    def top(name: str) -> str:
        while parent[name] is not None:
            name = parent[name]
        return name

    return {name: top(name) for name in parent}


@pytest.mark.skipif(not MAVEN.is_dir(), reason=f"the Maven CRM export is not at {MAVEN} (shared data, not in the repo)")
def test_the_maven_export_has_seven_families_each_tiered_once():
    expected = maven_families()
    families = {top for name, top in expected.items() if name != top}
    assert len(families) == 7
    data = load_export(MAVEN, "maven-crm").data
    config = parse_model_config(
        {
            "hierarchy": {"roll_up": "family", "tier_by": "family"},
            "tiers": {
                "tier_1": {"max_accounts": 3, "min_score": 0},
                "tier_2": {"max_accounts": 10, "min_score": 0},
                "tier_3": {"max_accounts": None, "min_score": 0},
            },
        }
    )
    scores = TieringModel.rules_only(config).score_book(data).scores
    assert dict(zip(scores["account_id"], scores["family_id"])) == expected
    per_family = scores.groupby("family_id")["tier"].nunique()
    assert (per_family == 1).all()  # every entity of a family shares its tier
    # Capacities count families: Tier 1 holds three families, however many accounts they have.
    tier_1 = scores[scores["tier"] == "tier_1"]
    assert tier_1["family_id"].nunique() == 3
    tier_2 = scores[scores["tier"] == "tier_2"]
    assert tier_2["family_id"].nunique() == 10 and len(tier_2) > 10  # families with several entities inside
    assert scores.loc[scores["family_id"] == "Acme Corporation", "account_id"].size == 5


def test_without_parent_links_the_roll_up_changes_no_score(model_store):
    """The shared trained model on its export without the parent links: scoring with roll_up: family adds the family
    columns and changes no other value, learned ones included (each family is one account, and the learners see no
    family feature where no family has two accounts)."""
    from scoring.registry import configure, load_model_for

    configure()
    trained = load_model_for(model_store.uri)
    data = load_export(model_store.data_dir).data
    data.accounts["parent_account_id"] = pd.Series([None] * len(data.accounts), dtype="str")
    rolled = trained.scorer.config.model_copy(update={"hierarchy": parse_model_config(FAMILY).hierarchy})
    family_model = TieringModel.around(replace(trained.scorer, config=rolled))
    alone = trained.score_book(data, budget=1000.0)
    family = family_model.score_book(data, budget=1000.0, as_of=alone.as_of)
    shared = [column for column in alone.scores.columns if column != "scored_at"]
    pd.testing.assert_frame_equal(alone.scores[shared], family.scores[shared])
    assert list(family.scores.columns[-len(FAMILY_COLUMNS) :]) == FAMILY_COLUMNS
    assert (family.scores["family_id"] == family.scores["account_id"]).all()
    assert np.allclose(family.scores["family_learned_score"], family.scores["learned_score"])
    assert not any(column.startswith(FAMILY_PREFIX) for column in alone.features.columns)
    # Training on such rows: the family features are left out of the learners' columns.
    spec = FeatureSpec.fit(with_rule_scores(family.features, rolled), rolled)
    assert "family_eng_w_total" in family.features
    assert spec.columns == FeatureSpec.fit(with_rule_scores(alone.features, rolled), trained.scorer.config).columns
