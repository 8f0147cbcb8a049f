"""surge_channels and as_of in every score record: hand-built activity, channels named by hand."""

import pandas as pd

from configuration.tiering import TieringConfig
from features.schema import CrmData, conform
from ingest.files import write_table
from reports.diff import read_scores
from scoring.pyfunc import TieringModel
from scoring.scorer import SCORE_COLUMNS

AS_OF = pd.Timestamp("2025-06-01")


def _data() -> CrmData:
    accounts = conform(pd.DataFrame({"account_id": ["hot", "one", "intent", "flat"]}), "accounts")
    opportunities = conform(
        pd.DataFrame(
            {"opportunity_id": ["x"], "account_id": ["hot"], "created_date": ["2025-01-01"], "outcome": ["open"]}
        ),
        "opportunities",
    )
    rows = []
    # 6 events in the 14 days before 2025-06-01 and none in the 90 days before that: a surge on each channel.
    for account, channels in (
        ("hot", ["demo_request", "web_visit"]),
        ("one", ["web_visit"]),
        ("intent", ["email_open"]),
    ):
        for channel in channels:
            rows += [(account, f"2025-05-{d:02d}", channel, 1) for d in range(20, 26)]
    # Steady activity every other day for four months: no rise, no surge.
    rows += [("flat", f"2025-{m:02d}-{d:02d}", "web_visit", 1) for m in (2, 3, 4, 5) for d in range(1, 28, 2)]
    engagement = conform(pd.DataFrame(rows, columns=["account_id", "timestamp", "channel", "count"]), "engagement")
    intent = conform(
        pd.DataFrame(
            {
                "account_id": ["intent"] * 4,
                "date": ["2025-05-22", "2025-05-23", "2025-05-24", "2025-05-25"],
                "topic": ["crm"] * 4,
            }
        ),
        "intent",
    )
    return CrmData(accounts, opportunities, engagement, intent)


def test_surge_channels_and_as_of_are_in_every_score(tmp_path):
    scores = TieringModel.rules_only(TieringConfig()).score_book(_data(), AS_OF).scores.set_index("account_id")
    assert list(scores.reset_index().columns) == SCORE_COLUMNS
    assert SCORE_COLUMNS[-5:] == ["scored_at", "as_of", "surge_channels", "pipeline_probability", "expected_revenue"]
    # Channels in the documented order (engagement channels as listed, then external_intent).
    assert scores.loc["hot", "surge_channels"] == "web_visit;demo_request"
    assert scores.loc["one", "surge_channels"] == "web_visit"
    assert scores.loc["intent", "surge_channels"] == "email_open;external_intent"
    assert scores.loc["flat", "surge_channels"] == ""
    # The flag needs two surging channels; the channels are listed whether or not they reach it.
    assert scores["intent_surge"].to_dict() == {"hot": True, "one": False, "intent": True, "flat": False}
    assert set(scores["as_of"]) == {"2025-06-01"}

    path = write_table(scores.reset_index(), tmp_path / "scores.csv")
    back = read_scores(path).set_index("account_id")
    assert back.loc["flat", "surge_channels"] == "" and back.loc["intent", "as_of"] == "2025-06-01"
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert raw.columns[-4:-2].tolist() == ["as_of", "surge_channels"]
