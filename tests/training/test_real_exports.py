"""On every real export at hand (../shared/data, never copied into the repository), the shipped win model is at
least as good as a careful analyst's references on the same time split (a plain one-hot logistic regression and a
small LightGBM grid on the export's own columns, bench/real_exports.py), or neither reference beats chance there and
the tool says that nothing does; and its probabilities are calibrated, or off by no more than the holdout's own
shift in win rate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency
from sklearn.metrics import roc_auc_score

from bench.real_exports import EXPORTS, references, shipped

TOLERANCE = 0.005  # ROC AUC the shipped model may trail the better reference by
ECE_TARGET = 0.03
ECE_OVER_SHIFT = 0.01  # ECE allowed above the holdout's calibration-in-the-large gap


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def judged(request):
    export = EXPORTS[request.param]
    if not export.folder.is_dir():
        pytest.skip(f"the {export.name} export is not at {export.folder} (shared data, not in the repository)")
    data, config = export.load()
    tool = shipped(data, config)
    return export, tool, references(data, tool.window, config)


def test_the_references_are_judged_on_the_tools_own_holdout_deals(judged):
    _, tool, reference = judged
    assert reference["holdout_deals"] == len(tool.holdout) > 0


def test_the_shipped_model_matches_the_analysts_references_or_nothing_beats_chance_and_the_tool_says_so(judged):
    export, tool, reference = judged
    y = tool.holdout["won"].to_numpy()
    shipped_auc = roc_auc_score(y, tool.stage.probability)
    better = max(reference["one_hot_logistic"], reference["lightgbm_picked"])
    if shipped_auc >= better - TOLERANCE:
        return
    # Below a reference: acceptable only where neither reference beats chance with 95% confidence either,
    # and the tool then refuses the model for that reason.
    evidence = (export.name, shipped_auc, reference)
    assert reference["one_hot_logistic_low"] <= 0.5, evidence
    assert reference["lightgbm_picked_low"] <= 0.5, evidence
    assert not tool.decision.promote, evidence
    assert "is not better than chance with 95% confidence" in tool.decision.render(), evidence


def test_the_shipped_probabilities_are_calibrated_or_off_by_the_holdouts_shift_alone(judged):
    export, tool, _ = judged
    y, p = tool.holdout["won"].to_numpy(), tool.stage.probability
    # Expected calibration error over ten equal-width bins, computed here from its definition.
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * np.mean(bins == b) for b in np.unique(bins))
    in_the_large = abs(float(p.mean()) - float(y.mean()))
    assert ece <= ECE_TARGET or ece <= in_the_large + ECE_OVER_SHIFT, (export.name, ece, in_the_large)


def test_the_shift_warning_is_given_exactly_where_the_slices_win_rates_pass_the_guards_ratio(judged):
    export, tool, _ = judged
    guards = tool.config.model.guards
    dates, won = tool.rows["close_date"], tool.rows["won"].to_numpy()
    slices = [
        (dates < tool.window.calibration_start).to_numpy(),
        ((dates >= tool.window.calibration_start) & (dates < tool.window.holdout_start)).to_numpy(),
        (dates >= tool.window.holdout_start).to_numpy(),
    ]
    rates = [won[part].mean() for part in slices]
    low, high = min(rates), max(rates)
    counts = [[won[part].sum(), (1 - won[part]).sum()] for part in slices]
    significant = chi2_contingency(np.array(counts, dtype=float))[1] < guards.shift_p_value
    sizeable = high >= guards.shift_min_ratio * low or 1 - low >= guards.shift_min_ratio * (1 - high)
    assert (tool.shift is not None) == (significant and sizeable), (export.name, rates)
