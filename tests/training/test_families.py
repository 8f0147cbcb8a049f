"""Learning at the family level, judged on the generator's families export (`generate --families`), where the
activity before a deal shows up at the family's other entities and each outcome follows the family's engagement
and intent: the family model must beat the account-level one on the same holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.pointintime import FAMILY_LEARNED

pytestmark = pytest.mark.slow  # two trainings, shared by the module


def won_revenue_in_top_tiers(book: pd.DataFrame, holdout: pd.DataFrame) -> float:
    """Share of the holdout's won revenue at accounts the holdout book put in Tier 1 or 2 (computed here from the
    holdout deals themselves, not from the run's own metric)."""
    won = holdout[holdout["won"] == 1]
    top = set(book.loc[book["learned_tier"].isin(["tier_1", "tier_2"]), "account_id"])
    return float(won.loc[won["account_id"].isin(top), "amount"].sum() / won["amount"].sum())


def test_the_family_model_beats_the_account_model_on_the_holdout(family_trainings):
    none, family = family_trainings.none, family_trainings.family
    assert family.holdout["opportunity_id"].tolist() == none.holdout["opportunity_id"].tolist()  # one holdout
    assert family.metrics["model_roc_auc"] > none.metrics["model_roc_auc"]
    captured_family = won_revenue_in_top_tiers(family.holdout_book, family.holdout)
    captured_none = won_revenue_in_top_tiers(none.holdout_book, none.holdout)
    assert captured_family > captured_none
    assert any(column in FAMILY_LEARNED for column in family.scorer.spec.columns)
    assert not any(column in FAMILY_LEARNED for column in none.scorer.spec.columns)


def test_the_family_run_reports_the_account_level_model_beside_it(family_trainings):
    family = family_trainings.family
    account_auc = family.metrics["account_level_model_roc_auc"]
    assert np.isfinite(account_auc) and account_auc < family.metrics["model_roc_auc"]
    assert any("own features alone" in note for note in family.notes)
    assert "account_level_model_roc_auc" not in family_trainings.none.metrics


def test_the_families_export_links_subsidiaries_to_their_top_account(family_trainings):
    accounts = family_trainings.data.accounts
    linked = accounts["parent_account_id"].notna()
    assert 0.3 < linked.mean() < 0.8  # FAMILY_SIZE_SHARES: 40% of families are one account, the rest larger
    parents = set(accounts.loc[linked, "parent_account_id"])
    assert parents <= set(accounts["account_id"])
    grandchildren = accounts["parent_account_id"].isin(accounts.loc[linked, "account_id"])
    assert grandchildren.any()  # chains deeper than one link
