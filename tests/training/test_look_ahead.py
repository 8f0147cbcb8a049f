"""Looking ahead against the generator's truth: pipeline propensity (ROC AUC against the oracle's, calibration),
point-in-time snapshot features, the two new score columns by hand, the stated fallback, the forecast's
expectations by hand and its simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from configuration.tiering import TieringConfig, parse_config
from features.activity import default_as_of
from features.pointintime import FeatureBuilder, snapshot
from ingest.io import load_export
from scoring.bundle import load_scorer, save_scorer
from scoring.forecast import BookInputs, tier_forecast
from scoring.pipeline import HISTORICAL, CloseTiming, PipelineModel
from scoring.pyfunc import TieringModel
from scoring.scorer import SCORE_COLUMNS
from sources.synthetic import CREATION_TRUTH_FILE, generate_export
from training.evaluate import expected_calibration_error
from training.pipeline import train

HORIZON = 90


@pytest.fixture(scope="module")
def synthetic(demo_training):
    """The demo's export trained with the default configuration (shared with test_pipeline), and its creation truth."""
    creation = pd.read_csv(demo_training.folder / CREATION_TRUTH_FILE, dtype={"account_id": "str"})
    return demo_training.data, demo_training.result, creation


def oracle_probability(holdout: pd.DataFrame, creation: pd.DataFrame, end: pd.Timestamp) -> np.ndarray:
    """P(a creation in [T, T + 90 days)) from the true Poisson rate and the true surge follow-up date."""
    rows = holdout.merge(creation, on="account_id", how="left")
    cutoff = pd.to_datetime(rows["cutoff"])
    creation_start = pd.to_datetime(rows["creation_start"])
    start = cutoff.where(cutoff > creation_start, creation_start)
    stop = (cutoff + pd.Timedelta(days=HORIZON)).clip(upper=end + pd.Timedelta(days=1))
    days = (stop - start).dt.days.clip(lower=0).to_numpy()
    poisson = 1 - np.exp(-rows["true_creation_rate_per_day"].to_numpy() * days)
    follow_up = pd.to_datetime(rows["follow_up_created_date"])
    inside = ((follow_up >= cutoff) & (follow_up < cutoff + pd.Timedelta(days=HORIZON))).to_numpy()
    return np.where(inside, 1.0, poisson)


def test_propensity_ranks_nearly_as_well_as_the_true_creation_rate_and_is_calibrated(synthetic):
    data, result, creation = synthetic
    holdout = result.pipeline_holdout
    assert len(holdout) == 5000 and result.metrics["pipeline_fallback"] == 0.0
    label = holdout["label"].to_numpy()
    oracle = roc_auc_score(label, oracle_probability(holdout, creation, data.opportunities["created_date"].max()))
    learned = roc_auc_score(label, holdout["pipeline_probability"])
    assert learned >= 0.95 * oracle
    assert expected_calibration_error(label, holdout["pipeline_probability"].to_numpy()) <= 0.03
    # and it beats its baselines: the engagement score alone and the account's historical creation rate
    assert learned > roc_auc_score(label, holdout["engagement_score"]) + 0.03
    assert learned > roc_auc_score(label, holdout["historical_probability"])
    assert result.metrics["pipeline_roc_auc"] == pytest.approx(learned)


def test_labels_are_the_creations_counted_from_the_raw_table(synthetic):
    data, result, _ = synthetic
    holdout = result.pipeline_holdout
    cutoff = pd.Timestamp(holdout["cutoff"].iloc[0])
    opps = data.opportunities
    inside = (opps["created_date"] >= cutoff) & (opps["created_date"] < cutoff + pd.Timedelta(days=HORIZON))
    opened = set(opps.loc[inside, "account_id"])
    assert holdout["label"].tolist() == [int(a in opened) for a in holdout["account_id"]]
    assert (holdout["cutoff"] == holdout["cutoff"].iloc[0]).all()


def test_snapshot_features_see_nothing_from_the_cutoff_on(synthetic):
    data, result, _ = synthetic
    config = TieringConfig()
    cutoff = pd.Timestamp("2026-01-15")
    everything = snapshot(data, FeatureBuilder(data, config), cutoff)
    opps = data.opportunities
    past = opps[opps["created_date"] < cutoff].copy()
    # What a CRM showed on the cut-off: later deals absent, later closes still open.
    later_close = past["close_date"] >= cutoff
    past.loc[later_close, "outcome"] = "open"
    past.loc[later_close, "close_date"] = pd.NaT
    then = type(data)(
        accounts=data.accounts,
        opportunities=past,
        engagement=data.engagement[data.engagement["timestamp"] < cutoff],
        intent=data.intent[data.intent["date"] < cutoff],
    )
    before = snapshot(then, FeatureBuilder(then, config), cutoff)
    for column in ("created_90d", "created_180d", "days_since_created", "open_deals", "open_amount"):
        np.testing.assert_allclose(everything[column], before[column], err_msg=column)
    # open deals by hand from the raw table
    account = data.accounts["account_id"].iloc[0]
    mine = past[past["account_id"] == account]
    assert everything.loc[everything["account_id"] == account, "open_deals"].item() == int(
        later_close[mine.index].sum()
    ) + int((mine["outcome"] == "open").sum() - later_close[mine.index].sum())


def test_scores_carry_pipeline_probability_and_expected_revenue_by_hand(synthetic, tmp_path):
    data, result, _ = synthetic
    as_of = default_as_of(data)
    model = TieringModel.around(load_scorer(save_scorer(result.scorer, tmp_path / "bundle")))
    scores = model.score_book(data, as_of).scores.set_index("account_id")
    assert list(scores.reset_index().columns) == SCORE_COLUMNS
    assert SCORE_COLUMNS[-2:] == ["pipeline_probability", "expected_revenue"]
    assert scores["pipeline_probability"].between(0, 1).all() and (scores["expected_revenue"] >= 0).all()
    direct = TieringModel.around(result.scorer).score_book(data, as_of).scores.set_index("account_id")
    np.testing.assert_allclose(scores["pipeline_probability"], direct["pipeline_probability"])  # saved and loaded
    # expected_revenue by hand: open deals' amounts from the raw table, the shares the run logged
    pipeline = result.scorer.pipeline
    opps = data.opportunities
    open_now = opps[(opps["created_date"] < as_of) & ~(opps["close_date"] < as_of)]
    open_amount = open_now.groupby("account_id")["amount"].sum().reindex(scores.index).fillna(0.0)
    book = snapshot(data, FeatureBuilder(data, result.scorer.config), as_of).set_index("account_id")
    from features.rules import rule_scores

    rows = pd.concat([book, rule_scores(book, result.scorer.config)], axis=1)
    count = pipeline.count_scale * pipeline.count_model.predict(pipeline.spec.encode(rows))
    # the win rates of deals closing inside the horizon: the win probability moved on its log-odds by the logged shifts
    logit = np.log(scores["win_probability"] / (1 - scores["win_probability"]))
    open_win = 1 / (1 + np.exp(-(logit + result.metrics["pipeline_open_win_shift"])))
    new_win = 1 / (1 + np.exp(-(logit + result.metrics["pipeline_new_win_shift"])))
    by_hand = new_win * count * pipeline.timing.new_share * scores["expected_deal_size"] + (
        open_win * result.metrics["pipeline_close_open_share"] * open_amount
    )
    np.testing.assert_allclose(scores["expected_revenue"], by_hand, rtol=1e-9)


def test_ranking_on_expected_revenue_puts_more_holdout_revenue_in_the_top_tiers(synthetic):
    _, result, _ = synthetic
    assert TieringConfig().model.rank_on == "expected_revenue"
    assert result.metrics["learned_top_tiers_revenue_share"] > result.metrics["rule_tiers_top_tiers_revenue_share"]


def test_a_horizon_longer_than_the_window_allows_falls_back_to_historical_rates_and_says_so(tmp_path):
    # The fallback depends on the window's length, not on the book's size: a small export and gate do.
    generate_export(tmp_path, n_accounts=800, seed=3)
    data = load_export(tmp_path).data
    one = {"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 50}
    small_gate = {"min_won": 10, "min_lost": 10}
    config = parse_config({"model": {"horizon_days": 200, "gate": small_gate, "search": {"candidates": [one]}}})
    result = train(data, config)
    assert result.scorer.pipeline.method == HISTORICAL and result.metrics["pipeline_fallback"] == 1.0
    assert any("horizon_days 200 is longer than the training window allows" in note for note in result.notes)
    scores = TieringModel.around(result.scorer).score_book(data, default_as_of(data)).scores
    assert scores["pipeline_probability"].between(0, 1).all()


def _book(tiers, probability, win, size, open_deals, open_amount):
    return BookInputs(
        tier=np.array(tiers, dtype=object),
        pipeline_probability=np.array(probability, dtype=float),
        new_win_probability=np.array(win, dtype=float),
        open_win_probability=np.array(win, dtype=float),
        deal_size=np.array(size, dtype=float),
        open_deals=np.array(open_deals, dtype=float),
        open_amount=np.array(open_amount, dtype=float),
        expected_new=-np.log1p(-np.array(probability, dtype=float)),
        employees=np.full(len(tiers), np.nan),
    )


def test_forecast_expectations_by_hand_and_the_simulation_around_them():
    timing = CloseTiming(cdf=[0.25] * 400, new_share=0.25, open_share=0.8)  # a quarter of new deals close in time
    pipeline = PipelineModel(HORIZON, HISTORICAL, timing)
    book = _book(
        ["tier_1", "tier_1", "tier_2", "untiered"],
        [0.5, 0.2, 0.9, 0.1],
        [0.4, 0.3, 0.2, 0.1],
        [10_000, 20_000, 5_000, 1_000],
        [1, 0, 2, 0],
        [8_000, 0, 6_000, 0],
    )
    table = tier_forecast(book, pipeline, simulations=20_000, seed=3).set_index("tier")
    count = -np.log(1 - np.array([0.5, 0.2]))
    assert table.loc["tier_1", "new_opportunities"] == pytest.approx(count.sum())
    assert table.loc["tier_1", "pipeline_value"] == pytest.approx(count @ [10_000, 20_000])
    assert table.loc["tier_1", "won_revenue"] == pytest.approx(
        count[0] * 0.25 * 0.4 * 10_000 + count[1] * 0.25 * 0.3 * 20_000 + 0.8 * 0.4 * 8_000
    )
    assert table.loc["tier_3", "accounts"] == 0 and table.loc["tier_3", "won_revenue"] == 0
    assert table.loc["overall", "deals_won"] == pytest.approx(table.drop("overall")["deals_won"].sum())
    for quantity in ("new_opportunities", "pipeline_value", "deals_won", "won_revenue"):
        row = table.loc["overall"]
        assert row[f"{quantity}_low"] <= row[quantity] <= row[f"{quantity}_high"], quantity
    # a tier with ~0.29 expected won deals is 0 most of the time: its 80% interval starts at 0
    assert table.loc["tier_1", "deals_won_low"] == 0
