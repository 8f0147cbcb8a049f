"""The models against the generator's known truth, the honest failure on flat data, and the gate."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from configuration.tiering import TieringConfig
from ingest.io import load_export
from training.pipeline import ChampionJudgement, WindowDates, _closed_from, _early_and_late, gate, train

pytestmark = pytest.mark.slow  # scheduled first: a long file started last would end alone

MAVEN = Path(__file__).resolve().parents[3] / "shared" / "data" / "maven-crm"


@pytest.fixture(scope="module")
def synthetic(demo_training):
    """The demo's export trained with the default configuration (shared with test_look_ahead), and its truth."""
    truth = pd.read_csv(demo_training.folder / "truth.csv", dtype={"opportunity_id": "str", "account_id": "str"})
    return demo_training.data, demo_training.result, truth


def test_win_model_ranks_nearly_as_well_as_the_truth_and_is_calibrated(synthetic):
    _, result, truth = synthetic
    holdout = result.holdout.merge(truth[["opportunity_id", "true_win_probability"]], on="opportunity_id")
    assert len(holdout) == len(result.holdout) > 1000
    oracle = roc_auc_score(holdout["won"], holdout["true_win_probability"])
    # The goal is 0.97 of the oracle at 20,000 accounts; 5,000 accounts leave a noisier holdout.
    assert result.metrics["model_roc_auc"] >= 0.95 * oracle
    assert result.metrics["model_ece"] <= 0.03
    assert result.metrics["model_roc_auc"] > result.metrics["rule_roc_auc"]


def test_a_window_within_max_training_rows_is_fitted_whole_with_no_sample_reported(synthetic):
    data, result, _ = synthetic
    window = result.window
    closed = data.opportunities[data.opportunities["outcome"].isin(["won", "lost"])]
    in_window = int(((closed["close_date"] >= window.start) & (closed["close_date"] < window.as_of)).sum())
    assert in_window <= TieringConfig().model.max_training_rows
    assert result.summary["training_rows_fitted"] == result.summary["closed_opportunities"] == in_window
    assert len(result.development) + len(result.holdout_rows) == in_window
    assert not [name for name in result.metrics if name.startswith("sample_")]
    assert not [note for note in result.notes if "max_training_rows" in note or "the sample's effect" in note]


def test_the_shipped_model_is_never_worse_than_the_logistic_baseline_beyond_the_bootstrap_noise(synthetic):
    _, result, _ = synthetic
    assert result.metrics["model_auc_gain_over_logreg_high"] >= 0
    chosen = [c for c in result.selection.candidates if c.chosen]
    assert len(chosen) == 1 and chosen[0].learner == result.scorer.win_model.recipe.learner
    # The choice used the folds before the holdout only: the chosen finalist is the simplest within noise of the
    # best pooled ROC AUC, and the pooled figure is the folds' AUCs weighted by their deals.
    finalists = [c for c in result.selection.candidates if c.pooled_auc == c.pooled_auc]
    assert chosen[0] in finalists and finalists[0].learner == "logistic"
    best = max(c.pooled_auc for c in finalists)
    search = TieringConfig().model.search
    margin = lambda c: max(search.tie_tolerance, search.tie_standard_errors * c.pooled_noise)  # noqa: E731
    assert best - chosen[0].pooled_auc <= margin(chosen[0])
    assert all(best - c.pooled_auc > margin(c) for c in finalists[: finalists.index(chosen[0])])
    folds = result.selection.folds
    periods = [c for c in folds.columns if "deals" in c]
    assert len(periods) == search.folds
    deals = np.array([int(c.split("(")[1].split(" deals")[0].replace(",", "")) for c in periods])
    assert np.allclose(folds[periods].to_numpy() @ (deals / deals.sum()), folds["pooled"])


def test_probabilities_have_fine_resolution_and_no_floor_the_data_cannot_support(synthetic):
    _, result, _ = synthetic
    book = result.scorer.score(result.book, by_capacity=True, explain=False)
    probability = book["win_probability"]
    assert len(book) == 5000 and probability.nunique() >= 1000
    # No floor: the lowest probability is held by a handful of accounts at most, not hundreds at a clip value.
    assert (probability == probability.min()).sum() <= 5 and (probability == probability.max()).sum() <= 5
    assert probability.min() > 0 and probability.max() < 1


def test_deal_size_explains_log_amount_nearly_as_well_as_the_truth(synthetic):
    _, result, truth = synthetic
    won = result.holdout[result.holdout["won"] == 1].merge(
        truth[["opportunity_id", "true_expected_deal_size"]], on="opportunity_id"
    )
    log_amount = np.log(won["amount"])
    oracle_r2 = (
        1
        - ((log_amount - np.log(won["true_expected_deal_size"])) ** 2).sum()
        / ((log_amount - log_amount.mean()) ** 2).sum()
    )
    assert result.metrics["deal_r2_log"] >= 0.9 * oracle_r2
    assert result.metrics["deal_r2_log"] > result.metrics["deal_baseline_r2_log"]


def test_learned_tiers_capture_more_holdout_revenue_than_rule_tiers(synthetic):
    _, result, _ = synthetic
    assert result.metrics["learned_top_tiers_revenue_share"] > result.metrics["rule_tiers_top_tiers_revenue_share"]
    learned = result.tier_tables["learned"].set_index("tier")
    tiers = TieringConfig().tiers
    assert learned.loc["tier_1", "accounts"] <= tiers.tier_1.max_accounts
    assert learned.loc["tier_2", "accounts"] <= tiers.tier_2.max_accounts


def test_training_uses_only_closed_deals_of_the_window(synthetic):
    data, result, _ = synthetic
    window = result.window
    closed = data.opportunities.query(
        "outcome != 'open' and close_date >= @window.start and close_date < @window.as_of"
    )
    assert result.summary["closed_opportunities"] == len(closed)
    assert (result.holdout["close_date"] >= window.holdout_start).all()
    assert window.as_of == data.opportunities["close_date"].max().normalize() + pd.Timedelta(days=1)


def test_scores_respect_frozen_cutoffs_and_single_account_scoring(synthetic):
    _, result, _ = synthetic
    scorer = result.scorer
    book = scorer.score(result.book, by_capacity=True)
    single = scorer.score(result.book.head(50), by_capacity=False)
    # Cut-offs were frozen on this very book, so one-at-a-time scoring agrees with the capacity fill.
    assert single["learned_tier"].tolist() == book["learned_tier"].head(50).tolist()
    assert single["learned_score"].tolist() == pytest.approx(book["learned_score"].head(50).tolist(), abs=1e-12)
    assert book["learned_score"].between(0, 100).all() and book["win_probability"].between(0, 1).all()
    assert (book["expected_value"] - book["win_probability"] * book["expected_deal_size"]).abs().max() < 1e-6
    explained = book[book["learned_tier"] == "tier_1"]
    assert (explained["reason_1"].str.len() > 0).all()
    assert explained["reason_1"].str.match(r"^[↑↓] ").all()


def test_more_engagement_of_the_same_profile_never_lowers_the_engagement_score(synthetic):
    _, result, _ = synthetic
    book = result.book.head(200).copy()
    more = book.copy()
    for column in [c for c in book.columns if c.startswith("eng_w_")]:
        more[column] = more[column] * 1.5 + 1.0
    before, after = result.scorer.predict(book, explain=False), result.scorer.predict(more, explain=False)
    assert (after["engagement_score"] >= before["engagement_score"]).all()
    assert (after["engagement_score"] > before["engagement_score"]).mean() > 0.99


@pytest.mark.skipif(not MAVEN.is_dir(), reason=f"the Maven export is not at {MAVEN} (shared data absent)")
def test_maven_trains_reports_chance_and_the_gate_refuses():
    data = load_export(MAVEN, "maven-crm").data
    result = train(data, TieringConfig())
    assert result.summary["closed_opportunities"] == 6711
    # The win rate is flat across sector, size and region: an honest model is near chance.
    assert 0.4 <= result.metrics["model_roc_auc"] <= 0.6
    decision = gate(result.summary, result.metrics, None, TieringConfig())
    assert not decision.promote
    assert "not better than chance" in decision.render() or "does not beat the rule score" in decision.render()


def _metrics(auc=0.80, rule=0.70, low=0.78, gain_low=0.05, logreg=0.79, logreg_high=0.02, constant=0.0):
    return {
        "model_roc_auc": auc,
        "rule_roc_auc": rule,
        "model_roc_auc_low": low,
        "model_auc_gain_over_rules_low": gain_low,
        "logreg_roc_auc": logreg,
        "model_auc_gain_over_logreg_high": logreg_high,
        "rule_score_constant": constant,
    }


def test_gate_rules_name_each_reference_and_its_figure():
    config = TieringConfig()
    enough = {"won": 500, "lost": 900}
    passed = gate(enough, _metrics(), None, config)
    assert passed.promote
    assert passed.reasons == [
        "enough data (500 won, 900 lost)",
        "holdout ROC AUC 0.800 beats the rule score's 0.700 (95% lower bound of the gain +0.050)",
        "not significantly worse than the logistic baseline's 0.790 (95% upper bound of the difference +0.020)",
    ]
    thin = gate({"won": 40, "lost": 900}, _metrics(), None, config)
    assert not thin.promote and "not enough data: 40 won" in thin.render()
    assert not gate(enough, _metrics(gain_low=-0.01), None, config).promote
    worse_than_logistic = gate(enough, _metrics(logreg=0.83, logreg_high=-0.004), None, config)
    assert worse_than_logistic.reasons == [
        "holdout ROC AUC 0.800 is significantly worse than the logistic baseline's "
        "0.830 (95% upper bound of the difference -0.004)"
    ]
    champion = ChampionJudgement("3", 0.82)
    worse = gate(enough, _metrics(auc=0.80), champion, config)
    assert not worse.promote
    assert worse.reasons == [
        "holdout ROC AUC 0.800 is worse than champion version 3's 0.820 (its recipe re-fitted on the "
        f"same months) by more than {config.model.gate.champion_tolerance:g}"
    ]
    tolerance = config.model.gate.champion_tolerance
    assert gate(enough, _metrics(auc=0.80), ChampionJudgement("3", 0.80 + tolerance / 2), config).promote


def test_gate_against_a_constant_rule_score_says_chance_is_the_reference():
    config = TieringConfig()
    enough = {"won": 500, "lost": 900}
    decision = gate(enough, _metrics(rule=0.5, gain_low=0.27, low=0.77, constant=1.0), None, config)
    assert decision.promote
    assert (
        "holdout ROC AUC 0.800 beats chance (0.500) with 95% confidence (lower bound 0.770); the rule score is "
        "constant on the holdout, so chance is the rule reference"
    ) in decision.reasons
    flat = gate(enough, _metrics(auc=0.52, rule=0.5, low=0.49, gain_low=-0.01, constant=1.0), None, config)
    assert not flat.promote and flat.reasons[0].startswith("holdout ROC AUC 0.520 is not better than chance")


def test_window_defaults_to_the_day_after_the_latest_close(synthetic):
    data, _, _ = synthetic
    window = WindowDates.for_data(data, TieringConfig(), pd.Timestamp("2026-01-01"))
    assert window.start == pd.Timestamp("2025-01-01") and window.holdout_start == pd.Timestamp("2025-10-01")
    assert window.calibration_start == pd.Timestamp("2025-08-01")


def test_training_says_how_calibrated_the_win_probability_is_on_each_slice(synthetic):
    _, result, _ = synthetic
    (note,) = [note for note in result.notes if note.startswith("win probability calibration by slice")]
    p, y = result.holdout["win_probability"].to_numpy(), result.holdout["won"].to_numpy()
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * np.mean(bins == b) for b in np.unique(bins))
    assert f"holdout: ECE {ece:.3f}, mean predicted {p.mean():.1%} against a win rate of {y.mean():.1%}" in note
    assert "fit: ECE" in note and "validation, calibrated on: ECE" in note


@pytest.mark.parametrize("ordered", [True, False], ids=["in close-date order: slices", "any order"])
def test_the_window_splits_at_a_date_into_the_deals_closed_before_and_the_others(ordered):
    dates = pd.to_datetime(["2025-01-03", "2025-02-01", "2025-02-01", "2025-03-15", "2025-04-02", "2025-04-30"])
    rows = pd.DataFrame({"opportunity_id": [f"o{i}" for i in range(6)], "close_date": dates, "won": [1, 0, 1, 1, 0, 0]})
    if not ordered:
        rows = rows.iloc[[4, 0, 5, 2, 1, 3]].reset_index(drop=True)
    before, after = _closed_from(rows, pd.Timestamp("2025-02-01"))
    assert sorted(before["opportunity_id"]) == ["o0"]  # a deal closed on the date itself is not before it
    assert sorted(after["opportunity_id"]) == ["o1", "o2", "o3", "o4", "o5"]
    assert list(after.index) == list(range(5))
    assert list(after["opportunity_id"]) == [name for name in rows["opportunity_id"] if name != "o0"]  # order kept


@pytest.mark.parametrize(
    "early", [[True, True, False, False, False], [False, True, True, False, True], [False] * 5, [True] * 5]
)
def test_a_matrix_splits_into_its_early_rows_and_the_others_in_order(early):
    matrix = np.arange(10.0).reshape(5, 2)
    first, rest = _early_and_late(matrix, np.array(early))
    assert first.tolist() == [row for row, keep in zip(matrix.tolist(), early) if keep]
    assert rest.tolist() == [row for row, keep in zip(matrix.tolist(), early) if not keep]
