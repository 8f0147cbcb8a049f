"""The reasons behind a score, against phrases written by hand: a request's few rows (written row by row) and a
book's many rows (written per feature) must say the same."""

import numpy as np
import pytest

from configuration.tiering import TieringConfig
from scoring.reasons import top_reasons

CONFIG = TieringConfig()
NAMES = ["employees", "prior_won", "tech_stack_size", "country"]
ROWS = {
    "employees": np.array([1800.0, 40.0, 1800.0]),
    "prior_won": np.array([2.0, 0.0, 1.0]),
    "tech_stack_size": np.array([3.0, 1.0, 0.0]),
    "country": np.array(["canada", "germany", "canada"], dtype=object),
}
CONTRIBUTIONS = np.array(
    [
        [0.5, -2.0, 0.0, 1.0],  # prior_won pulls down most, then the country, then the head-count
        [0.0, 0.0, 0.0, 3.0],  # only the country counts: the other two ranks stay empty
        [-0.25, 0.75, 0.1, -1.5],  # ties are none; the third is the win history, not the tech stack
    ]
)
EXPECTED = [
    ["↓ 2 deals won before", "↑ country canada", "↑ 1,800 employees"],
    ["↑ country germany", "", ""],
    ["↓ country canada", "↑ 1 deal won before", "↓ 1,800 employees"],
]


@pytest.mark.parametrize("copies", [1, 20], ids=["request (3 rows)", "book (60 rows)"])
def test_top_reasons_by_hand(copies):
    rows = {name: np.tile(values, copies) for name, values in ROWS.items()}
    reasons = top_reasons(np.tile(CONTRIBUTIONS, (copies, 1)), NAMES, rows, CONFIG)
    assert [
        [reasons[rank][row] for rank in range(3)] for row in range(len(CONTRIBUTIONS) * copies)
    ] == EXPECTED * copies


def test_one_row_with_fewer_features_than_reasons():
    reasons = top_reasons(
        np.array([[0.0, -1.0]]),
        ["prior_won", "country"],
        {"prior_won": np.array([5.0]), "country": np.array(["spain"], dtype=object)},
        CONFIG,
    )
    assert [list(r) for r in reasons] == [["↓ country spain"], [""], [""]]
