"""The business configuration (rule weights, blend, tiers, budget) is read at scoring time: a registered model
scores with the current file's knobs, with no retraining, while keeping its own feature settings and learners."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()

DRAFT = """\
rule_weights: {revenue_potential: 0.2, business_fit: 0.2, engagement: 0.6}
tiers:
  tier_1: {max_accounts: 7, min_score: 0}
  tier_2: {max_accounts: 30, min_score: 0}
  tier_3: {max_accounts: null, min_score: 0}
budget:
  split: {tier_1: 0.5, tier_2: 0.5, tier_3: 0.0}
model:
  blend: 0.0
"""


@pytest.mark.slow
def test_a_registered_model_scores_with_the_business_knobs_of_the_current_file(model_store, tmp_path):
    draft = tmp_path / "draft.yaml"
    draft.write_text(DRAFT)
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app,
        [
            "score",
            str(model_store.data_dir),
            "--model",
            model_store.uri,
            "--config",
            str(draft),
            "--budget",
            "1000",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"configuration: {draft}" in result.output
    scores = pd.read_csv(out)
    assert set(scores["model_version"].astype(str)) == {model_store.version}  # the learned model, not rules only
    # Rule score: the draft's weights over the three components (scores are published to 2 decimals).
    expected = (
        0.2 * scores["revenue_potential_score"] + 0.2 * scores["business_fit_score"] + 0.6 * scores["engagement_score"]
    )
    assert np.abs(scores["rule_score"] - expected).max() <= 0.02
    # Blend 0: the learned score is the rule score.
    assert np.abs(scores["learned_score"] - scores["rule_score"]).max() <= 0.011
    counts = scores["tier"].value_counts()
    assert counts.get("tier_1", 0) == 7 and counts.get("tier_2", 0) == 30
    # Budget 50/50 over tiers 1 and 2, evenly inside each, nothing for tier 3.
    assert scores.loc[scores["tier"] == "tier_1", "budget"].sum() == pytest.approx(500, abs=0.05)
    assert scores.loc[scores["tier"] == "tier_1", "budget"].iloc[0] == pytest.approx(500 / 7, abs=0.01)
    assert scores.loc[scores["tier"] == "tier_3", "budget"].sum() == 0
