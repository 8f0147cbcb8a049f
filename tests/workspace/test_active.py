"""The total a what-if preview splits: asked, else the configuration's, else the scoring's own."""

import numpy as np
import pandas as pd

from configuration.tiering import parse_config
from workspace.active import budget_to_split

# A scoring made with --budget 1,000: 600 + 300 + 100 + 0 across its accounts.
SCORED = pd.DataFrame({"account_id": ["A", "B", "C", "D"], "budget": [600.0, 300.0, 100.0, 0.0]})


def test_the_total_asked_then_the_configurations_then_the_scorings():
    unset, set_total = parse_config({}), parse_config({"budget": {"total": 5000.0}})
    assert unset.budget.total is None
    assert budget_to_split(250.0, set_total, SCORED) == 250.0
    assert budget_to_split(None, set_total, SCORED) == 5000.0
    assert budget_to_split(None, unset, SCORED) == 1000.0  # not $0 for a scoring that split a budget
    no_budget = SCORED.assign(budget=np.nan)
    assert budget_to_split(None, unset, no_budget) is None
    assert budget_to_split(None, unset, SCORED.drop(columns="budget")) is None
