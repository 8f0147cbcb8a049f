"""Small in-memory CRM exports for unit tests (the generator covers realistic ones)."""

import numpy as np
import pandas as pd

from features.config import CHANNELS
from features.schema import CrmData, conform


def random_crm(n_accounts: int = 40, seed: int = 0, start: str = "2024-01-01", days: int = 500) -> CrmData:
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp(start)
    ids = [f"A{i:03d}" for i in range(n_accounts)]
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "industry": rng.choice(["Software", " software ", "Retail", "Government", None], n_accounts),
            "employees": rng.choice([50.0, 500.0, 5000.0, np.nan], n_accounts),
            "annual_revenue": rng.choice([2e6, 5e7, 3e9, np.nan], n_accounts),
            "country": rng.choice(["United States", "Germany", "Brazil", None], n_accounts),
            "region": rng.choice(["north america", "emea", "latam"], n_accounts),
            "tech_stack": rng.choice(["salesforce;aws", "SAP", "", "snowflake; hubspot; aws"], n_accounts),
        }
    )
    n_opps = n_accounts * 5
    created = origin + pd.to_timedelta(rng.integers(0, days - 60, n_opps), unit="D")
    close = created + pd.to_timedelta(rng.integers(5, 120, n_opps), unit="D")
    outcome = rng.choice(["won", "lost"], n_opps, p=[0.35, 0.65])
    end = origin + pd.Timedelta(days=days)
    outcome = np.where(close > end, "open", outcome)
    opportunities = pd.DataFrame(
        {
            "opportunity_id": [f"O{i:05d}" for i in range(n_opps)],
            "account_id": rng.choice(ids, n_opps),
            "created_date": created,
            "close_date": pd.Series(close).where(outcome != "open"),
            "outcome": outcome,
            "amount": rng.lognormal(10, 1, n_opps).round(2),
        }
    )
    n_events = n_accounts * 60
    engagement = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n_events),
            "timestamp": origin + pd.to_timedelta(rng.integers(0, days * 86400, n_events), unit="s"),
            "channel": rng.choice([*CHANNELS, "webinar_replay"], n_events),
            "count": rng.integers(1, 3, n_events).astype(float),
        }
    )
    n_intent = n_accounts * 10
    intent = pd.DataFrame(
        {
            "account_id": rng.choice(ids, n_intent),
            "date": origin + pd.to_timedelta(rng.integers(0, days, n_intent), unit="D"),
            "topic": rng.choice(["crm", "analytics", "security", "quantum"], n_intent),
            "score": rng.integers(10, 100, n_intent).astype(float),
        }
    )
    return CrmData(
        accounts=conform(accounts, "accounts"),
        opportunities=conform(opportunities, "opportunities"),
        engagement=conform(engagement, "engagement"),
        intent=conform(intent, "intent"),
    )
