"""Open deals without an amount (many CRMs leave open amounts blank) count at the account's expected deal size in
expected_revenue and the forecast, not at $0, and the run says how many did."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import TieringConfig
from features.pointintime import OPEN_UNPRICED, FeatureBuilder, snapshot
from scoring.forecast import BookInputs, tier_forecast
from scoring.pipeline import HISTORICAL, CloseTiming, PipelineModel
from tests.factories import random_crm

runner = CliRunner()
HORIZON = 90


def blank_some_amounts(seed: int = 5):
    data = random_crm(n_accounts=30, seed=seed)
    opps = data.opportunities.copy()
    blank = np.random.default_rng(seed).random(len(opps)) < 0.4  # open and closed deals alike
    opps.loc[blank, "amount"] = np.nan
    return type(data)(accounts=data.accounts, opportunities=opps, engagement=data.engagement, intent=data.intent)


@pytest.mark.parametrize("cutoff", ["2024-03-01", "2024-09-15", "2025-05-01"])
def test_open_deals_without_an_amount_are_counted_at_each_cut_off(cutoff):
    data = blank_some_amounts()
    when = pd.Timestamp(cutoff)
    rows = snapshot(data, FeatureBuilder(data, TieringConfig()), when).set_index("account_id")
    opps = data.opportunities
    closed_before = opps["outcome"].isin(["won", "lost"]) & (opps["close_date"] < when)
    open_then = opps[(opps["created_date"] < when) & ~closed_before]
    by_hand = open_then[open_then["amount"].isna()].groupby("account_id").size()
    by_hand = by_hand.reindex(rows.index, fill_value=0)
    assert by_hand.sum() > 0
    assert rows[OPEN_UNPRICED].tolist() == by_hand.astype(float).tolist()
    priced = open_then.groupby("account_id")["amount"].sum().reindex(rows.index, fill_value=0.0)  # NaN skipped
    np.testing.assert_allclose(rows["open_amount"], priced, atol=1e-6)  # running totals differenced


def pipeline_model() -> PipelineModel:
    return PipelineModel(HORIZON, HISTORICAL, CloseTiming(cdf=[0.25] * 400, new_share=0.25, open_share=0.8))


def test_expected_revenue_counts_an_open_deal_without_an_amount_at_the_expected_deal_size():
    rows = {
        "created_180d": np.array([0.0, 0.0, 0.0]),
        "open_amount": np.array([8_000.0, 0.0, 3_000.0]),
        OPEN_UNPRICED: np.array([0.0, 2.0, 1.0]),
        "employees": np.full(3, np.nan),
    }
    probability = np.array([0.5, 0.2, 0.1])
    win = np.array([0.4, 0.3, 0.2])
    size = np.array([10_000.0, 20_000.0, 5_000.0])
    revenue = pipeline_model().expected_revenue(rows, probability, win, size)
    count = -np.log1p(-probability)
    new = win * count * 0.25 * size
    assert revenue[0] == pytest.approx(new[0] + 0.4 * 0.8 * 8_000)
    assert revenue[1] == pytest.approx(new[1] + 0.3 * 0.8 * 2 * 20_000)  # was 0: two open deals worth $0
    assert revenue[2] == pytest.approx(new[2] + 0.2 * 0.8 * (3_000 + 5_000))


def test_the_forecast_counts_them_at_the_deal_size_and_says_how_many():
    scores = {
        "tier": np.array(["tier_1", "tier_1", "tier_2"], dtype=object),
        "win_probability": np.array([0.4, 0.3, 0.2]),
        "pipeline_probability": np.array([0.0, 0.0, 0.0]),  # no new deals: the open ones alone
        "expected_deal_size": np.array([10_000.0, 20_000.0, 5_000.0]),
    }
    features = {
        "created_180d": np.zeros(3),
        "open_deals": np.array([1.0, 2.0, 2.0]),
        "open_amount": np.array([8_000.0, 0.0, 3_000.0]),
        OPEN_UNPRICED: np.array([0.0, 2.0, 1.0]),
        "employees": np.full(3, np.nan),
    }
    inputs = BookInputs.of(scores, features, pipeline_model())
    assert inputs.open_at_deal_size == 3
    table = tier_forecast(inputs, pipeline_model(), simulations=2_000, seed=1).set_index("tier")
    assert table.loc["tier_1", "won_revenue"] == pytest.approx(0.8 * (0.4 * 8_000 + 0.3 * 2 * 20_000))
    assert table.loc["tier_2", "won_revenue"] == pytest.approx(0.8 * 0.2 * (3_000 + 5_000))


def test_forecast_and_score_say_how_many_open_deals_had_no_amount(model_store, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(model_store.data_dir, export)
    path = next(export.glob("opportunities.*"))
    assert path.suffix == ".csv"
    opps = pd.read_csv(path, dtype=str, keep_default_na=False)
    is_open = opps["outcome"].str.lower() == "open"
    opps.loc[is_open, "amount"] = ""
    opps.to_csv(path, index=False)
    blanked = int(is_open.sum())
    assert blanked > 0
    said = f"{blanked:,} open deal(s) have no amount"
    forecast = runner.invoke(
        app, ["forecast", str(export), "--model", model_store.uri, "--simulations", "200", "--out", str(tmp_path / "f")]
    )
    assert forecast.exit_code == 0, forecast.output
    assert said in " ".join(forecast.output.split())
    table = pd.read_csv(tmp_path / "f" / "forecast.csv").set_index("tier")
    assert table.loc["overall", "won_revenue"] > 0
    score = runner.invoke(app, ["score", str(export), "--model", model_store.uri, "--out", str(tmp_path / "s.csv")])
    assert score.exit_code == 0, score.output
    text = " ".join(score.output.split())
    assert said in text and re.search(r"expected_revenue count each at its account's expected deal size", text)


def test_the_services_accounts_count_them_as_the_batch_export_does():
    from types import SimpleNamespace

    from features.activity import builder_for_accounts
    from features.schema import OPTIONAL
    from features.timeindex import to_seconds

    data = blank_some_amounts(seed=8)
    when = pd.Timestamp("2024-09-15")
    batch = snapshot(data, FeatureBuilder(data, TieringConfig()), when).set_index("account_id")

    def deal(row) -> SimpleNamespace:
        return SimpleNamespace(
            outcome=row.outcome,
            created_date=row.created_date,
            close_date=None if pd.isna(row.close_date) else row.close_date,
            amount=None if pd.isna(row.amount) else row.amount,
        )

    accounts = [
        SimpleNamespace(
            account_id=account_id,
            **dict.fromkeys(OPTIONAL["accounts"]),
            __pydantic_extra__=None,
            engagement=[],
            intent=[],
            opportunities=[deal(row) for row in group.itertuples()],
        )
        for account_id, group in data.opportunities.groupby("account_id")
    ]
    cutoffs = np.full(len(accounts), to_seconds(pd.Series([when]))[0])
    api = builder_for_accounts(accounts, TieringConfig()).build_columns(np.arange(len(accounts)), cutoffs)
    ids = [account.account_id for account in accounts]
    assert api[OPEN_UNPRICED].sum() > 0
    assert api[OPEN_UNPRICED].tolist() == batch.loc[ids, OPEN_UNPRICED].tolist()
    np.testing.assert_allclose(api["open_amount"], batch.loc[ids, "open_amount"], atol=1e-6)
