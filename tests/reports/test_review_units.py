"""`tiering review`'s computations on a hand-built export: every expected figure is worked out by hand below."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.config import Review, TieringConfig
from features.errors import DataError
from features.schema import CrmData, conform
from reports.review import (
    HOLDS,
    RETRAIN,
    TOO_EARLY,
    ModelFacts,
    Period,
    budget_return,
    build_review,
    common_accounts,
    flags_outcome,
    outcomes_by_tier,
    past_as_of,
    period_deals,
    predictions,
    psi,
    ranking,
    verdict,
    won_revenue_by_account,
)

START, END = pd.Timestamp("2026-01-01"), pd.Timestamp("2026-04-01")
PERIOD = Period(START, END)


def export() -> CrmData:
    accounts = pd.DataFrame({"account_id": ["A1", "A2", "A3", "A4", "NEW"]})
    rows = [
        # id, account, created, close, outcome, amount
        ("O1", "A1", "2026-01-10", "2026-02-10", "won", 1000.0),  # in the period: created and closed (field)
        ("O2", "A1", "2025-12-01", "2026-01-20", "won", 500.0),  # created before, closed in: counts as closed
        ("O3", "A1", "2026-02-01", "2026-03-01", "lost", 200.0),  # field, lost
        ("O4", "A2", "2026-01-05", "2026-03-31", "won", 3000.0),  # field, last day of the period
        ("O5", "A2", "2026-03-15", None, "open", 800.0),  # pipeline created, still open
        ("O6", "A3", "2026-02-01", "2026-04-01", "won", 9999.0),  # closes on --until: outside (exclusive)
        ("O7", "A3", "2025-10-01", "2025-12-31", "won", 7777.0),  # closed before the period: outside
        ("O8", "A4", "2026-04-02", "2026-05-01", "won", 5555.0),  # created after the period: outside
        ("O9", "A4", "2026-01-15", "2026-02-15", "lost", 100.0),  # field, lost
        ("O10", "NEW", "2026-01-15", "2026-02-15", "won", 4242.0),  # an account the past scoring did not have
    ]
    opportunities = pd.DataFrame(
        rows, columns=["opportunity_id", "account_id", "created_date", "close_date", "outcome", "amount"]
    )
    return CrmData(accounts=conform(accounts, "accounts"), opportunities=conform(opportunities, "opportunities"))


def past_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4", "GONE"],
            "tier": ["tier_1", "tier_2", "tier_2", "tier_3", "tier_3"],
            "learned_tier": ["tier_1", "tier_2", "tier_3", "tier_3", "tier_3"],
            "rule_tier": ["tier_2", "tier_1", "tier_3", "untiered", "tier_3"],
            "override_reason": ["", "", "pinned to tier_2 by ana: key logo (model said tier_3)", "", ""],
            "learned_score": [90.0, 80.0, 50.0, 30.0, 10.0],
            "rule_score": [60.0, 70.0, 40.0, 20.0, 10.0],
            "revenue_potential_score": [50.0, 60.0, 40.0, 20.0, 10.0],
            "business_fit_score": [70.0, 80.0, 40.0, 20.0, 10.0],
            "engagement_score": [40.0, 60.0, 20.0, 10.0, 0.0],
            "win_probability": [0.6, 0.7, 0.3, 0.2, 0.1],
            "expected_deal_size": [1000.0, 2000.0, 500.0, 300.0, 100.0],
            "budget": [600.0, 150.0, 150.0, 100.0, 0.0],
            "as_of": ["2026-01-01"] * 5,
            "model_version": ["4"] * 5,
        }
    )


def test_period_counts_only_what_is_dated_inside_it():
    common = common_accounts(past_scores(), export(), "past.csv")
    deals = period_deals(export(), PERIOD, common["account_id"])
    assert sorted(deals.created["opportunity_id"]) == ["O1", "O3", "O4", "O5", "O6", "O9"]
    assert sorted(deals.closed["opportunity_id"]) == ["O1", "O2", "O3", "O4", "O9"]
    assert sorted(deals.field["opportunity_id"]) == ["O1", "O3", "O4", "O9"]  # O2 was created before the period


def test_outcomes_by_final_tier_by_hand():
    common = common_accounts(past_scores(), export(), "past.csv")
    deals = period_deals(export(), PERIOD, common["account_id"])
    now = common.assign(engagement_score=[50.0, 40.0, 30.0, 0.0])
    table = outcomes_by_tier(common, deals, now)
    final = table[table["tiering"] == "final"].set_index("tier")
    # Tier 1 = A1: created O1, O3; closed O1, O2 (won 1000 + 500), O3 lost; days 31, 50, 28.
    assert final.loc["tier_1", ["accounts", "accounts_with_new_pipeline", "pipeline_created"]].tolist() == [1, 1, 2]
    assert final.at["tier_1", "pipeline_amount"] == 1200.0
    assert final.loc["tier_1", ["deals_closed", "deals_won"]].tolist() == [3, 2]
    assert final.at["tier_1", "win_rate"] == pytest.approx(2 / 3)
    assert final.at["tier_1", "won_revenue"] == 1500.0
    assert final.at["tier_1", "median_days_to_close"] == 31.0
    # Tier 2 = A2, A3 (A3 pinned): A2's O4 won 3000 closed, O5 open; A3's O6 was created in the period but closes
    # on --until (outside), O7 closed before it.
    assert final.loc["tier_2", ["accounts", "accounts_with_new_pipeline", "pipeline_created"]].tolist() == [2, 2, 3]
    assert final.at["tier_2", "pipeline_amount"] == 3000.0 + 800.0 + 9999.0
    assert final.loc["tier_2", ["deals_closed", "deals_won", "won_revenue"]].tolist() == [1, 1, 3000.0]
    assert final.at["tier_2", "engagement_then"] == 40.0 and final.at["tier_2", "engagement_now"] == 35.0
    # Tier 3 = A4: O9 lost; O8 is after the period.
    assert final.loc["tier_3", ["deals_closed", "deals_won", "won_revenue"]].tolist() == [1, 0, 0.0]
    total = 4500.0  # 1000 + 500 + 3000; NEW's 4242 is not an account of the past scoring
    assert final.at["tier_1", "revenue_share"] == pytest.approx(1500 / total)
    assert final.at["tier_2", "revenue_share"] == pytest.approx(3000 / total)
    rule = table[table["tiering"] == "rule"].set_index("tier")
    assert rule.at["tier_1", "won_revenue"] == 3000.0 and rule.at["tier_2", "won_revenue"] == 1500.0


def test_return_on_budget_by_hand():
    common = common_accounts(past_scores(), export(), "past.csv")
    deals = period_deals(export(), PERIOD, common["account_id"])
    revenue = won_revenue_by_account(deals.closed, common["account_id"])
    assert revenue.tolist() == [1500.0, 3000.0, 0.0, 0.0]
    won = pd.Series([2, 1, 0, 0])
    table = budget_return(common, revenue, won, TieringConfig()).set_index(["tiering", "tier"])
    assert table.at[("final", "tier_1"), "revenue_per_budget_unit"] == pytest.approx(1500 / 600)
    assert table.at[("final", "tier_1"), "budget_per_won_deal"] == pytest.approx(300.0)
    assert table.at[("final", "tier_2"), "revenue_per_budget_unit"] == pytest.approx(3000 / 300)
    assert table.at[("final", "all"), "revenue_per_budget_unit"] == pytest.approx(4500 / 1000)
    # The money's aim: (600 * 1500 + 150 * 3000 + 150 * 0 + 100 * 0) / 1000.
    assert table.at[("final", "all"), "revenue_behind_average_unit"] == pytest.approx(1350.0)
    # Rule tiers, the same 1,000 split 60/30/10: A2 tier 1 gets 600; A1 tier 2 gets 300; A3 tier 3 gets 100.
    assert table.at[("rule", "tier_1"), "budget"] == pytest.approx(600.0)
    assert table.at[("rule", "tier_1"), "revenue_per_budget_unit"] == pytest.approx(3000 / 600)
    assert table.at[("rule", "all"), "revenue_behind_average_unit"] == pytest.approx((600 * 3000 + 300 * 1500) / 1000)


def test_realised_lift_by_hand():
    past = pd.DataFrame({"learned_score": [4.0, 3.0, 2.0, 1.0], "rule_score": [1.0, 2.0, 3.0, 4.0]})
    revenue = pd.Series([300.0, 0.0, 100.0, 0.0])
    _, lift = ranking(past, revenue)
    lift = lift.set_index("score")
    # The top 20% of 4 accounts is 0.8 of the first account (300 of 400 each): 0.8 * 300 / 400 = 60%, lift 3.
    assert lift.at["past learned score", "top_20%_revenue_share"] == pytest.approx(0.6)
    assert lift.at["past learned score", "top_20%_lift"] == pytest.approx(3.0)
    assert lift.at["past rule score", "top_20%_revenue_share"] == pytest.approx(0.0)
    assert lift.at["random order", "top_20%_lift"] == pytest.approx(1.0)


def test_predictions_against_outcomes_by_hand():
    common = common_accounts(past_scores(), export(), "past.csv")
    deals = period_deals(export(), PERIOD, common["account_id"])
    result = predictions(common, deals.field)
    # Field deals: O1 (A1, p .6, won), O3 (A1, .6, lost), O4 (A2, .7, won), O9 (A4, .2, lost).
    # Pairs won x lost: (.6 vs .6) tie 0.5, (.6 vs .2) 1, (.7 vs .6) 1, (.7 vs .2) 1 -> 3.5 / 4.
    assert result.metrics["roc_auc"] == pytest.approx(0.875)
    assert result.metrics["won"] == 2 and result.metrics["lost"] == 2
    # ECE, 10 equal-width bins: bin 6 (.6, .6: 1 won of 2) |0.5 - 0.6| * 2, bin 7 (.7, won) 0.3, bin 2 (.2, lost) 0.2.
    assert result.metrics["ece"] == pytest.approx((0.2 + 0.3 + 0.2) / 4)
    # Won amounts against expected deal size: O1 1000 vs 1000, O4 3000 vs 2000 -> ratios 1 and 1.5.
    assert result.deal_size["median_ratio"] == pytest.approx(1.25)
    assert result.deal_size["actual_total"] == 4000.0 and result.deal_size["predicted_total"] == 3000.0


def test_psi_by_hand():
    values = pd.Series(np.arange(1000, dtype=float))
    assert psi(values, values.sample(frac=1, random_state=1)) == pytest.approx(0.0, abs=1e-12)
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2)  # shares (.5, .5) -> (.75, .25)
    assert psi(pd.Series(list("aabb")), pd.Series(list("aaab")), categorical=True) == pytest.approx(expected)
    # Numeric: deciles of 0..999; every value now in the top decile: 0.9 of the mass moves into it.
    shifted = psi(values, pd.Series(np.full(1000, 995.0)))
    assert shifted == pytest.approx(9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + (1 - 0.1) * math.log(1 / 0.1))


def facts(**kwargs) -> ModelFacts:
    base = dict(
        version="4",
        learned=True,
        run_id="r",
        trained_until=pd.Timestamp("2025-12-01"),
        holdout_roc_auc=0.80,
        holdout_roc_auc_low=0.76,
        holdout_ece=0.03,
    )
    return ModelFacts(**{**base, **kwargs})


METRICS = {"won": 60, "lost": 90, "roc_auc": 0.79, "roc_auc_low": 0.72, "roc_auc_high": 0.85, "ece": 0.04}
METRICS.update(ece_low=0.03, mean_win_probability=0.4, win_rate=0.4)
QUIET = pd.DataFrame({"feature": ["eng_w_total"], "psi": [0.02]})


def test_verdicts():
    rules = Review()
    held = verdict(PERIOD, facts(), METRICS, QUIET, 0.0, rules)
    assert held.status == HOLDS and (held.checks["outcome"] != "retrain").all()
    # The AUC floor: holdout 0.80 less 1.96 combined standard errors, (0.80 - 0.76) / 1.96 for the holdout and
    # (0.85 - 0.72) / 3.92 for the field: 0.80 - 1.96 * hypot(0.02041, 0.03316) = 0.7237.
    assert verdict(PERIOD, facts(), {**METRICS, "roc_auc": 0.73}, QUIET, 0.0, rules).status == HOLDS
    worse = verdict(PERIOD, facts(), {**METRICS, "roc_auc": 0.72}, QUIET, 0.0, rules)
    assert worse.status == RETRAIN and "0.720 (95% 0.720-0.850) is significantly below" in worse.reasons[0]
    assert worse.checks.set_index("check").at["field ROC AUC", "threshold"].startswith(">= 0.724")
    drifted = pd.DataFrame({"feature": ["eng_w_total", "industry"], "psi": [0.9, 0.3]})
    moved = verdict(PERIOD, facts(), METRICS, drifted, 0.0, rules)
    assert moved.status == RETRAIN and "eng_w_total (0.90), industry (0.30)" in moved.reasons[0]
    stale = verdict(PERIOD, facts(trained_until=pd.Timestamp("2025-06-01")), METRICS, QUIET, 0.0, rules)
    assert stale.status == RETRAIN and "10.0 months after" in stale.reasons[0]
    miscalibrated = verdict(PERIOD, facts(), {**METRICS, "ece": 0.12, "ece_low": 0.09}, QUIET, 0.0, rules)
    assert miscalibrated.status == RETRAIN and "calibration error" in miscalibrated.reasons[0]


def test_too_early_says_how_much_more_is_needed():
    short = verdict(Period(START, START + pd.Timedelta(days=20)), facts(), METRICS, QUIET, 0.0, Review())
    assert short.status == TOO_EARLY and "20 days long and at least 60" in short.reasons[0]
    few = verdict(PERIOD, facts(), {**METRICS, "won": 5, "lost": 12}, QUIET, 0.0, Review())
    assert few.status == TOO_EARLY and "15 more won and 8 more lost" in few.reasons[0]


def test_bad_inputs_are_refused_with_the_file_and_the_fix():
    other = past_scores().assign(account_id=["X1", "X2", "X3", "X4", "X5"])
    with pytest.raises(DataError, match="none of its 5 accounts is in the export"):
        common_accounts(other, export(), "other.csv")
    with pytest.raises(DataError, match="records no as_of"):
        past_as_of(past_scores().assign(as_of=""), "old.csv", None)
    assert past_as_of(past_scores().assign(as_of=""), "old.csv", pd.Timestamp("2026-01-01")) == START
    empty = Period(pd.Timestamp("2027-01-01"), pd.Timestamp("2027-04-01"))
    with pytest.raises(DataError, match="no deal of these accounts closed"):
        build_review(past_scores(), export(), empty, None, facts(), None, None, [], {}, TieringConfig())


@pytest.mark.parametrize("option", ["--until", "--since"])
@pytest.mark.parametrize("value", ["next quarter", "2026-13-01", "1700-01-01"])
def test_review_dates_are_refused_before_any_work(option, value, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["review", "nowhere.csv", "/nonexistent/export", "--out", "r", option, value])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert option in text and "Traceback" not in text and "unexpected error" not in text
    assert not (tmp_path / "r").exists()


def test_review_refuses_a_folder_of_the_users_files_before_any_work(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["review", "nowhere.csv", "/nonexistent/export", "--out", "r"])
    assert result.exit_code == 2 and "notes.txt" in result.output
    assert (tmp_path / "r" / "notes.txt").read_text() == "mine"


def test_flagged_accounts_beside_their_tiers_unflagged_average_by_hand():
    common = common_accounts(past_scores(), export(), "past.csv")
    deals = period_deals(export(), PERIOD, common["account_id"])
    revenue = won_revenue_by_account(deals.closed, common["account_id"])
    won = deals.closed[deals.closed["won"] == 1].groupby("account_id").size()
    deals_won = common["account_id"].map(won).fillna(0).astype(int)
    flags = pd.DataFrame(
        {
            "account_id": ["A2", "A4", "A2", "GONE", "ZZZ"],
            "comment": ["later", "too low", "first", "gone", "unknown"],
            "created_at": pd.to_datetime(["2026-02-02", "2026-01-05", "2026-01-03", "2026-01-01", "2026-01-01"]),
        }
    )
    table = flags_outcome(common, revenue, deals_won, flags).set_index("account_id")
    # Flagged and in the past scoring: A2 (tier 2, won O4 3000) and A4 (tier 3, nothing won). The unflagged
    # accounts: A1 in tier 1 (1500) and A3 in tier 2 (0), so tier 2's unflagged average is 0 and tier 3 has none.
    assert table.index.tolist() == ["A2", "A4"]
    assert table.loc["A2", ["tier", "model_tier", "flags", "first_comment"]].tolist() == [
        "tier_2",
        "tier_2",
        2,
        "first",
    ]
    assert table.loc["A2", ["won_revenue", "deals_won", "tier_revenue_per_account"]].tolist() == [3000.0, 1, 0.0]
    assert table.loc["A4", ["flags", "won_revenue", "deals_won"]].tolist() == [1, 0.0, 0]
    assert math.isnan(table.loc["A4", "tier_revenue_per_account"])
    assert flags_outcome(common, revenue, deals_won, None).empty
