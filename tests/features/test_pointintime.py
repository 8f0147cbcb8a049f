import numpy as np
import pandas as pd
import pytest

from configuration.tiering import TieringConfig
from features.pointintime import FeatureBuilder, snapshot, training_rows
from features.schema import CrmData, conform
from tests.factories import random_crm

CONFIG = TieringConfig()


def _features(data: CrmData, as_of: pd.Timestamp):
    builder = FeatureBuilder(data, CONFIG)
    rows = training_rows(data, builder, pd.Timestamp("2000-01-01"), as_of)
    return rows, snapshot(data, builder, as_of)


def _future_copy(data: CrmData, after: pd.Timestamp, rng) -> CrmData:
    """The same export plus events, intent and opportunities dated at or after `after`."""
    ids = data.accounts["account_id"].to_numpy()
    n = 500
    stamps = after + pd.to_timedelta(rng.integers(0, 200 * 86400, n), unit="s")
    engagement = pd.concat(
        [
            data.engagement,
            conform(
                pd.DataFrame(
                    {
                        "account_id": rng.choice(ids, n),
                        "timestamp": stamps,
                        "channel": rng.choice(["demo_request", "sales_meeting", "web_visit"], n),
                        "count": 5.0,
                    }
                ),
                "engagement",
            ),
        ]
    )
    intent = pd.concat(
        [
            data.intent,
            conform(
                pd.DataFrame(
                    {
                        "account_id": rng.choice(ids, n),
                        "date": stamps.normalize() + pd.Timedelta(days=1),
                        "topic": "crm",
                        "score": 100.0,
                    }
                ),
                "intent",
            ),
        ]
    )
    opportunities = pd.concat(
        [
            data.opportunities,
            conform(
                pd.DataFrame(
                    {
                        "opportunity_id": [f"F{i}" for i in range(n)],
                        "account_id": rng.choice(ids, n),
                        "created_date": stamps.normalize() + pd.Timedelta(days=1),
                        "close_date": stamps.normalize() + pd.Timedelta(days=2),
                        "outcome": "won",
                        "amount": 1e6,
                    }
                ),
                "opportunities",
            ),
        ]
    )
    return CrmData(data.accounts, opportunities, engagement, intent)


def test_rows_do_not_change_when_data_after_their_cutoff_is_added():
    data = random_crm(seed=1)
    rng = np.random.default_rng(2)
    as_of = pd.Timestamp("2025-01-15")
    rows_before, snap_before = _features(data, as_of)
    # Each training row: add data from its own created_date on, and check that row again.
    builder_cols = [c for c in rows_before.columns if c not in ("opportunity_id", "close_date", "won", "amount")]
    for _, row in rows_before.sample(15, random_state=3).iterrows():
        later = _future_copy(data, row["cutoff"], rng)
        again = FeatureBuilder(later, CONFIG).build(pd.Series([row["account_id"]]), pd.Series([row["cutoff"]]))
        pd.testing.assert_series_equal(again.iloc[0][builder_cols], row[builder_cols], check_names=False)
    # Scoring as of T: add data at or after T and every account's features stay the same.
    _, snap_after = _features(_future_copy(data, as_of, rng), as_of)
    pd.testing.assert_frame_equal(snap_after, snap_before)


def test_training_rows_are_closed_opportunities_in_the_window_only():
    data = random_crm(seed=4)
    start, end = pd.Timestamp("2024-06-01"), pd.Timestamp("2025-01-01")
    rows = training_rows(data, FeatureBuilder(data, CONFIG), start, end)
    opps = data.opportunities.set_index("opportunity_id").loc[rows["opportunity_id"]]
    assert set(opps["outcome"]) <= {"won", "lost"}
    assert (opps["close_date"] >= start).all() and (opps["close_date"] < end).all()
    assert rows["won"].tolist() == (opps["outcome"] == "won").astype(int).tolist()
    expected = data.opportunities.query("outcome != 'open' and close_date >= @start and close_date < @end")
    assert len(rows) == len(expected)


def test_engagement_and_history_counts_by_hand():
    accounts = conform(pd.DataFrame({"account_id": ["a", "b"]}), "accounts")
    opportunities = conform(
        pd.DataFrame(
            {
                "opportunity_id": ["o1", "o2", "o3"],
                "account_id": ["a", "a", "a"],
                "created_date": ["2025-01-01", "2025-02-01", "2025-05-01"],
                "close_date": ["2025-03-01", "2025-04-01", "2025-06-01"],
                "outcome": ["won", "lost", "won"],
                "amount": [1000.0, 50.0, 7.0],
            }
        ),
        "opportunities",
    )
    engagement = conform(
        pd.DataFrame(
            {
                "account_id": ["a", "a", "a", "b"],
                "timestamp": ["2025-04-30 10:00", "2025-04-01", "2024-01-01", "2025-04-30"],
                "channel": ["demo_request", "Demo_Request ", "web_visit", "podcast"],
                "count": [2, 1, 1, 4],
            }
        ),
        "engagement",
    )
    data = CrmData(accounts, opportunities, engagement)
    as_of = pd.Series([pd.Timestamp("2025-05-01")] * 2)
    row = FeatureBuilder(data, CONFIG).build(pd.Series(["a", "b"]), as_of)
    a, b = row.iloc[0], row.iloc[1]
    assert a["eng_30d_demo_request"] == 3  # 2025-04-01 is exactly 30 days before: inside the window
    assert a["eng_w_demo_request"] == pytest.approx(2 * 0.5 ** ((14 / 24) / 30) + 0.5 ** (30 / 30))
    assert a["eng_w_web_visit"] == 0  # older than the 180-day look-back
    assert a["prior_won"] == 1 and a["prior_lost"] == 1 and a["prior_won_amount"] == 1000.0
    assert a["days_since_won"] == pytest.approx((pd.Timestamp("2025-05-01") - pd.Timestamp("2025-03-01")).days)
    assert b["eng_30d_other"] == 4 and b["eng_30d_total"] == 4
    assert np.isnan(b["days_since_won"])


def test_surge_needs_threefold_rise_on_two_channels():
    accounts = conform(pd.DataFrame({"account_id": ["hot", "one", "flat"]}), "accounts")
    opportunities = conform(
        pd.DataFrame(
            {"opportunity_id": ["x"], "account_id": ["hot"], "created_date": ["2025-01-01"], "outcome": ["open"]}
        ),
        "opportunities",
    )
    rows = []
    for account, channels in (("hot", ["web_visit", "content_download"]), ("one", ["web_visit"])):
        for channel in channels:
            rows += [(account, f"2025-05-{d:02d}", channel, 1) for d in range(20, 26)]  # 6 in the last 14 days
    rows += [("flat", f"2025-{m:02d}-{d:02d}", "web_visit", 1) for m in (2, 3, 4, 5) for d in range(1, 28, 2)]
    engagement = conform(pd.DataFrame(rows, columns=["account_id", "timestamp", "channel", "count"]), "engagement")
    data = CrmData(accounts, opportunities, engagement)
    builder = FeatureBuilder(data, CONFIG)
    ids = pd.Series(["hot", "one", "flat"])
    cut = pd.Series([pd.Timestamp("2025-06-01")] * 3)
    built = builder.build(ids, cut)
    assert built["intent_surge"].tolist() == [True, False, False]
    assert builder.surging_channel_names(ids, cut).tolist() == ["web_visit;content_download", "web_visit", ""]
