"""Time to close: one Kaplan-Meier distribution for the book, or one per company size band, whichever foretells
better which deals close; the forecast and expected_revenue then use each account's own band. Oracles: exports
built by hand with known cycles, and the shares computed from them by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.schema import CrmData, conform
from scoring.forecast import BookInputs, tier_forecast
from scoring.pipeline import BY_SIZE, HISTORICAL, ONE_DISTRIBUTION, PipelineModel
from training.propensity import close_timing, snapshot_cutoffs

HORIZON = 90
START, AS_OF = pd.Timestamp("2025-01-01"), pd.Timestamp("2026-01-01")


def export(small_cycle: int, large_cycle: int, per_account: int = 6, seed: int = 0) -> CrmData:
    """300 small accounts (50 employees) and 300 large ones (5,000), each opening deals at random days over two
    years; a small account's deal closes exactly `small_cycle` days after it opens, a large one's `large_cycle`."""
    rng = np.random.default_rng(seed)
    ids = [f"S{i}" for i in range(300)] + [f"L{i}" for i in range(300)]
    employees = [50.0] * 300 + [5000.0] * 300
    accounts = conform(pd.DataFrame({"account_id": ids, "employees": employees}), "accounts")
    owner = np.repeat(np.arange(600), per_account)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 730, size=owner.size), unit="D")
    cycle = np.where(owner < 300, small_cycle, large_cycle)
    close = created + pd.to_timedelta(cycle, unit="D")
    still_open = close >= AS_OF
    opportunities = pd.DataFrame(
        {
            "opportunity_id": [f"O{i}" for i in range(owner.size)],
            "account_id": np.array(ids)[owner],
            "created_date": created,
            "close_date": np.where(still_open, pd.NaT, close),
            "outcome": np.where(still_open, "open", np.where(rng.random(owner.size) < 0.3, "won", "lost")),
            "amount": 10_000.0,
        }
    )
    opportunities = opportunities[opportunities["created_date"] < AS_OF]
    return CrmData(accounts, conform(opportunities, "opportunities"))


def timing_of(data: CrmData):
    return close_timing(data, START, AS_OF, snapshot_cutoffs(AS_OF, START, HORIZON), HORIZON)


def test_cycles_that_differ_by_size_get_a_distribution_per_band_with_the_shares_by_hand():
    timing, metrics = timing_of(export(small_cycle=20, large_cycle=150))
    assert timing.method == BY_SIZE and metrics["pipeline_close_by_size"] == 1.0
    assert metrics["pipeline_close_brier_by_size"] < metrics["pipeline_close_brier_one_distribution"]
    small, large = timing.segments[0], timing.segments[2]
    assert 1 not in timing.segments  # no mid-market account
    # A deal opened uniformly over the 90 days closes inside them when opened in the first 70 (20-day cycle).
    assert small.new_share == pytest.approx(70 / 90, abs=1e-3)  # KM keeps a deal censored on day 20 at risk
    assert large.new_share == pytest.approx(0.0, abs=1e-6)  # 150 days never fit in 90
    # Open at a cut-off: every small deal closes within 20 days; a large one when it is more than 60 days old,
    # i.e. 90 of its 150 open days.
    assert small.open_share == pytest.approx(1.0, abs=1e-6)
    assert large.open_share == pytest.approx(90 / 150, abs=0.03)


def test_cycles_alike_for_every_size_keep_one_distribution():
    timing, metrics = timing_of(export(small_cycle=45, large_cycle=45))
    assert timing.method == ONE_DISTRIBUTION and not timing.segments
    assert metrics["pipeline_close_by_size"] == 0.0
    assert timing.new_share == pytest.approx(45 / 90, abs=3e-3)


def test_the_forecast_and_expected_revenue_read_each_accounts_own_band():
    timing, _ = timing_of(export(small_cycle=20, large_cycle=150))
    pipeline = PipelineModel(HORIZON, HISTORICAL, timing)
    employees = np.array([50.0, 5000.0, np.nan])  # small, large, unknown (the book's distribution)
    book = BookInputs(
        tier=np.array(["tier_1", "tier_1", "tier_1"], dtype=object),
        pipeline_probability=np.array([0.5, 0.5, 0.5]),
        new_win_probability=np.array([0.4, 0.4, 0.4]),
        open_win_probability=np.array([0.4, 0.4, 0.4]),
        deal_size=np.array([10_000.0, 10_000.0, 10_000.0]),
        open_deals=np.array([0.0, 0.0, 0.0]),
        open_amount=np.array([0.0, 0.0, 0.0]),
        expected_new=np.array([1.0, 1.0, 1.0]),
        employees=employees,
    )
    table = tier_forecast(book, pipeline, simulations=200, seed=1).set_index("tier")
    small, large = timing.segments[0].new_share, timing.segments[2].new_share  # about 70/90 and 0, checked above
    by_hand = 0.4 * 10_000 * (small + large + timing.new_share)
    assert table.at["tier_1", "won_revenue"] == pytest.approx(by_hand, rel=1e-6)
    rows = {"open_amount": np.zeros(3), "employees": employees, "created_180d": np.zeros(3)}
    revenue = pipeline.expected_revenue(rows, np.full(3, 1 - np.exp(-1.0)), np.full(3, 0.4), np.full(3, 10_000.0))
    assert revenue == pytest.approx([0.4 * 10_000 * small, 0.4 * 10_000 * large, 0.4 * 10_000 * timing.new_share])


def test_the_win_rate_shift_matches_the_deals_that_closed_by_hand():
    """Ten closing deals at an even-odds account, eight won: the shift is logit(0.8) = ln 4; none: no shift."""
    from training.propensity import log_odds_shift

    assert log_odds_shift(np.array([0.5]), np.array([10.0]), np.array([8.0])) == pytest.approx(np.log(4), abs=1e-9)
    # two accounts at odds 1:3 and 1:1 with 4 closing deals each, 4 won in all: sigmoid(l + b) sums to 4
    shift = log_odds_shift(np.array([0.25, 0.5]), np.array([4.0, 4.0]), np.array([1.0, 3.0]))
    assert 4 / (1 + np.exp(-(np.log(1 / 3) + shift))) + 4 / (1 + np.exp(-shift)) == pytest.approx(4.0, abs=1e-9)
    assert log_odds_shift(np.array([0.3, 0.6]), np.zeros(2), np.zeros(2)) == 0.0


def test_the_count_learners_error_beyond_chance_by_hand():
    """Ten groups of 100 accounts, each expecting 100 opportunities; half got 120, half 80. Chance alone gives a
    group's log total a variance of about 1/100, so the spread beyond it is sqrt(mean(log(1.2 or 0.8)^2) - 0.01)."""
    from training.propensity import count_dispersion

    predicted = np.ones(1000)
    actual = np.zeros(1000)
    for group in range(10):
        actual[group * 100] = 120 if group % 2 == 0 else 80
    by_hand = np.sqrt((np.log(1.2) ** 2 + np.log(0.8) ** 2) / 2 - 1 / 100)
    assert count_dispersion(predicted, actual) == pytest.approx(by_hand, rel=1e-9)
    assert count_dispersion(predicted, predicted.copy()) == 0.0  # every group as predicted: chance explains it
    # Groups expect equal totals, not equal head counts: 500 accounts expecting 0.01 each are one group of their own
    # beside ten accounts expecting 5 each (5 per group), so their misses (nothing happened) weigh as one group.
    few = np.concatenate([np.full(10, 5.0), np.full(500, 0.01)])
    happened = np.concatenate([np.full(10, 5.0), np.zeros(500)])
    assert count_dispersion(few, happened, groups=11) == 0.0  # the empty group is left out, the others exact


def test_the_forecast_widens_the_count_interval_by_the_learners_error_and_keeps_the_point():
    """1,000 expected opportunities: Poisson chance alone gives about 1000 +- 1.28 sqrt(1000) (80%); a log-normal
    level error of sd 0.2 on top gives about 1000 exp(+-1.28 sqrt(0.2^2 + 1/1000) - 0.02)."""
    from scoring.pipeline import CloseTiming

    timing = CloseTiming(cdf=[0.5] * 400, new_share=0.5, open_share=0.5)
    book = BookInputs(
        tier=np.array(["tier_1"] * 100, dtype=object),
        pipeline_probability=np.full(100, 0.99),
        new_win_probability=np.full(100, 0.3),
        open_win_probability=np.full(100, 0.3),
        deal_size=np.full(100, 1_000.0),
        open_deals=np.zeros(100),
        open_amount=np.zeros(100),
        expected_new=np.full(100, 10.0),
        employees=np.full(100, np.nan),
    )
    plain = tier_forecast(book, PipelineModel(HORIZON, HISTORICAL, timing), simulations=20_000, seed=2)
    wide = tier_forecast(
        book, PipelineModel(HORIZON, HISTORICAL, timing, count_dispersion=0.2), simulations=20_000, seed=2
    )
    plain, wide = plain.set_index("tier").loc["tier_1"], wide.set_index("tier").loc["tier_1"]
    assert plain["new_opportunities"] == wide["new_opportunities"] == pytest.approx(1000)
    z = 1.2816
    assert plain["new_opportunities_low"] == pytest.approx(1000 - z * np.sqrt(1000), rel=0.01)
    assert plain["new_opportunities_high"] == pytest.approx(1000 + z * np.sqrt(1000), rel=0.01)
    sd = np.sqrt(0.2**2 + 1 / 1000)
    assert wide["new_opportunities_low"] == pytest.approx(1000 * np.exp(-z * sd - 0.02), rel=0.03)
    assert wide["new_opportunities_high"] == pytest.approx(1000 * np.exp(z * sd - 0.02), rel=0.03)


def test_without_any_deal_size_the_amounts_are_unknown_not_zero_and_the_counts_stand():
    """An export without amounts: the model knows no deal size (NaN), so pipeline value and won revenue are unknown;
    the counts are the same as with sizes. The API carries them as null."""
    from scoring.pipeline import CloseTiming
    from serving.responses import ForecastTier, forecast_records

    pipeline = PipelineModel(HORIZON, HISTORICAL, CloseTiming(cdf=[0.5] * 400, new_share=0.5, open_share=0.5))
    scores = {
        "tier": np.array(["tier_1", "tier_2"], dtype=object),
        "pipeline_probability": np.array([0.5, 0.2]),
        "win_probability": np.array([0.4, 0.3]),
        "expected_deal_size": np.array([np.nan, np.nan]),
    }
    features = {"open_deals": np.array([1.0, 0.0]), "open_amount": np.array([0.0, 0.0])}
    table = tier_forecast(BookInputs.of(scores, features, pipeline), pipeline, simulations=500, seed=1)
    sized = tier_forecast(
        BookInputs.of({**scores, "expected_deal_size": np.array([1e4, 2e4])}, features, pipeline),
        pipeline,
        simulations=500,
        seed=1,
    )
    for money in ("pipeline_value", "won_revenue"):
        assert table[[money, f"{money}_low", f"{money}_high"]].isna().all().all()
    for count in ("new_opportunities", "deals_won"):
        assert table[count].tolist() == pytest.approx(sized[count].tolist())
    records = forecast_records(table)
    assert records[0]["won_revenue"] is None and records[0]["deals_won"] == pytest.approx(table.at[0, "deals_won"])
    assert ForecastTier(**records[0]).pipeline_value_high is None
    from reports.forecast_page import render_forecast
    from scoring.forecast import fan

    inputs = BookInputs.of(scores, features, pipeline)
    page = render_forecast(table, fan(inputs, pipeline, simulations=200), None, None, AS_OF, HORIZON, "1", "odd")
    assert "unknown: the export has no amounts" in page and "No fan chart" in page and "<figure>" not in page
    assert page.count(">unknown</td>") == 2 * len(table)  # pipeline value and won revenue of every row
