"""A pilot's design as its files hold it: the names of `assignment.csv` and `pilot.json`, and pilot.json's content
(built here, written by the CLI and by the generator)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from typing import Any

import pandas as pd

from pilot.metrics import Metric

ASSIGNMENT_FILE = "assignment.csv"
PILOT_FILE = "pilot.json"
ASSIGNMENT_COLUMNS = ("account_id", "group", "stratum")
PILOT_KEYS = ("pilot_id", "seed", "start_date", "horizon_days", "metric", "tiers", "strata")


def pilot_key(start: date, seed: int, assignment: pd.DataFrame) -> str:
    """pilot-<start>-<seed>-<6 hex of the assignment>: the same design gets the same key, another one another."""
    digest = hashlib.sha256(assignment[list(ASSIGNMENT_COLUMNS)].to_csv(index=False).encode()).hexdigest()[:6]
    return f"pilot-{start.isoformat()}-s{seed}-{digest}"


def pilot_document(
    assignment: pd.DataFrame,
    *,
    seed: int,
    start: date,
    horizon_days: int,
    metric: Metric,
    tiers: list[str],
    strata: list[str],
    **more: Any,
) -> dict[str, Any]:
    """pilot.json's content: the SPEC keys first, then what else the design knows (draw, balance, power...)."""
    return {
        "pilot_id": pilot_key(start, seed, assignment),
        "seed": seed,
        "start_date": start.isoformat(),
        "horizon_days": horizon_days,
        "metric": str(metric),
        "tiers": list(tiers),
        "strata": list(strata),
        "end_date": (start + timedelta(days=horizon_days)).isoformat(),
        "accounts": len(assignment),
        "treatment": int((assignment["group"] == "treatment").sum()),
        "control": int((assignment["group"] == "control").sum()),
        **more,
    }


def pilot_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, default=str) + "\n"
