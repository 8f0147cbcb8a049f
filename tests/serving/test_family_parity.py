"""Batch scoring and the API's entry point give the same family columns for the same accounts (whole families,
posted with their parent links), with the family-trained model and tier_by: family."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.activity import default_as_of
from features.config import parse_model_config
from scoring.pyfunc import TieringModel
from scoring.scorer import FAMILY_COLUMNS
from serving.requests import TierRequest, account_payloads

from .conftest import subset

BUDGET = 100_000.0
FAMILIES = 40


def test_the_api_entry_point_gives_batch_scoring_family_columns(family_trainings):
    data = family_trainings.data
    business = parse_model_config(
        {
            "hierarchy": {"roll_up": "family", "tier_by": "family"},
            "tiers": {"tier_1": {"max_accounts": 3, "min_score": 0}, "tier_2": {"max_accounts": 10, "min_score": 0}},
        }
    )
    model = TieringModel.around(family_trainings.family.scorer).with_business(business)
    as_of = default_as_of(data)
    whole = model.score_book(data, as_of).scores
    # Whole families (every member), so the families the API sees are those of the book.
    tops = np.sort(whole["family_id"].unique())[:FAMILIES]
    ids = sorted(whole.loc[whole["family_id"].isin(tops), "account_id"])
    assert len(ids) > FAMILIES  # some families have several accounts
    batch = model.score_book(subset(data, ids), as_of, budget=BUDGET).scores.set_index("account_id")
    request = TierRequest.model_validate({"accounts": account_payloads(data, ids), "as_of": as_of.date().isoformat()})
    api = pd.DataFrame(model.score_accounts(request.accounts, as_of, by_capacity=True, budget=BUDGET).scores)
    api = api.set_index("account_id").loc[batch.index]
    for column in ("family_id", "family_tier", "tier", "learned_tier"):
        assert api[column].tolist() == batch[column].tolist(), column
    for column in ("family_learned_score", "family_expected_revenue", "family_engagement_share", "budget"):
        assert np.allclose(api[column].astype(float), batch[column].astype(float), equal_nan=True), column
    # A family's rolled-up scores depend on its own accounts only: the same in the whole book.
    in_book = whole.set_index("account_id").loc[batch.index]
    assert np.allclose(batch["family_learned_score"], in_book["family_learned_score"], rtol=0, atol=1e-9)
    assert set(FAMILY_COLUMNS) <= set(api.columns)
    assert (batch.groupby("family_id")["family_tier"].nunique() == 1).all()
