"""`tiering forecast --backtest` on the synthetic export: one model per past origin trained only before it, the
realised figures counted from the raw table, and the 80% intervals' coverage of the realised per-tier revenue."""

from __future__ import annotations

import pandas as pd
import pytest

from features.activity import default_as_of
from features.config import parse_config
from features.io import load_export
from sources.synthetic import generate_export
from training.backtest import backtest, backtest_origins, backtest_summary

ORIGINS = 6
ONE_CANDIDATE = {"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 50, "lambda_l2": 5.0}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backtest")
    generate_export(folder, n_accounts=3000, seed=13)
    data = load_export(folder).data
    config = parse_config({"model": {"search": {"candidates": [ONE_CANDIDATE]}}})
    as_of = default_as_of(data)
    return data, as_of, backtest(data, config, as_of, origins=ORIGINS, simulations=2_000)


def test_every_origin_forecasts_a_horizon_that_has_passed(run):
    data, as_of, table = run
    origins = backtest_origins(as_of, 90, ORIGINS)
    assert sorted(table["origin"].unique()) == sorted(o.date().isoformat() for o in origins)
    assert all(origin + pd.Timedelta(days=90) <= as_of for origin in origins)
    assert not table["fallback"].any()


def test_realised_overall_figures_are_the_raw_table_counted_by_hand(run):
    data, _, table = run
    opps = data.opportunities
    for origin, part in table[table["tier"] == "overall"].groupby("origin"):
        start = pd.Timestamp(origin)
        end = start + pd.Timedelta(days=90)
        won = opps[(opps["outcome"] == "won") & (opps["close_date"] >= start) & (opps["close_date"] < end)]
        created = opps[(opps["created_date"] >= start) & (opps["created_date"] < end)]
        actual = part.set_index("quantity")["actual"]
        assert actual["won_revenue"] == pytest.approx(won["amount"].sum())
        assert actual["deals_won"] == len(won)
        assert actual["new_opportunities"] == len(created)


def test_intervals_cover_the_realised_tier_revenue_about_80_percent_of_the_time(run):
    _, _, table = run
    summary = backtest_summary(table).set_index("quantity")
    revenue = summary.loc["won_revenue"]
    assert revenue["cells"] >= 12
    assert 0.70 <= revenue["coverage"] <= 0.90, summary
    assert revenue["mape"] < 0.25
