import math

import numpy as np
import pandas as pd
import pytest

from configuration.tiering import TieringConfig
from features.config import CHANNELS
from features.pointintime import OTHER
from features.rules import business_fit_score, engagement_score, revenue_potential_score, rule_scores

CONFIG = TieringConfig()


def account(**values) -> pd.DataFrame:
    row = {
        "industry": None,
        "country": None,
        "region": None,
        "employees": np.nan,
        "annual_revenue": np.nan,
        "tech_icp_matches": 0.0,
        **{f"eng_w_{c}": 0.0 for c in [*CHANNELS, OTHER]},
    }
    row.update(values)
    return pd.DataFrame([row])


def test_revenue_potential_by_hand():
    # revenue 1e8 is halfway between 1e6 and 1e10 in log10; 1,000 staff: log10 from 10 to 50,000 -> (3-1)/(4.699-1)
    frame = account(annual_revenue=1e8, employees=1000)
    staff = (3 - 1) / (math.log10(50_000) - 1)
    assert revenue_potential_score(frame, CONFIG)[0] == pytest.approx(100 * (0.6 * 0.5 + 0.4 * staff))
    assert revenue_potential_score(account(annual_revenue=1e12, employees=1e6), CONFIG)[0] == 100
    assert revenue_potential_score(account(), CONFIG)[0] == 0
    assert revenue_potential_score(account(annual_revenue=1e8), CONFIG)[0] == pytest.approx(50)  # revenue stands in


def test_business_fit_by_hand():
    ideal = account(industry="software", employees=5000, country="germany", tech_icp_matches=2)
    assert business_fit_score(ideal, CONFIG)[0] == 100
    partial = account(industry="retail", employees=5000, country="brazil", region="emea", tech_icp_matches=1)
    assert business_fit_score(partial, CONFIG)[0] == pytest.approx(25 + 15 + 10)
    assert business_fit_score(account(), CONFIG)[0] == 0


def test_engagement_score_by_hand_and_bounded():
    frame = account(eng_w_demo_request=3.0, eng_w_web_visit=6.0)  # 3*10 + 6*1 = 36 points
    assert engagement_score(frame, CONFIG)[0] == pytest.approx(100 * (1 - math.exp(-36 / 60)))
    assert engagement_score(account(eng_w_sales_meeting=1e6), CONFIG)[0] <= 100


def test_rule_score_is_the_weighted_sum_and_icp_exclusion():
    frame = account(industry="government", annual_revenue=1e8, employees=1000, eng_w_email_open=10.0)
    scores = rule_scores(frame, CONFIG).iloc[0]
    weights = CONFIG.rule_weights  # read from the config, not repeated here
    assert scores["rule_score"] == pytest.approx(
        weights.revenue_potential * scores["revenue_potential_score"]
        + weights.business_fit * scores["business_fit_score"]
        + weights.engagement * scores["engagement_score"]
    )
    assert not scores["in_icp"]


@pytest.mark.parametrize("channel", CHANNELS)
def test_more_engagement_never_lowers_the_engagement_score(channel):
    base = account(industry="software", eng_w_email_open=2.0)
    more = base.copy()
    more[f"eng_w_{channel}"] += 1.5
    assert engagement_score(more, CONFIG)[0] > engagement_score(base, CONFIG)[0]
    assert rule_scores(more, CONFIG)["rule_score"][0] >= rule_scores(base, CONFIG)["rule_score"][0]
