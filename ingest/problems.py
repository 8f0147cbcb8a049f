"""A problem found at data rows, the one way each check words where: here, not in `features.errors`, whose every
change is a change of the logged model's code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from features.errors import Problem, rows_of


def problem_at_rows(positions: Sequence[int] | np.ndarray, message: str, fix: str, **where: Any) -> Problem:
    """A problem at these 0-based data rows, which it shows as their first few row numbers and their count."""
    rows, count = rows_of(positions)
    return Problem(message, fix, rows=rows, row_count=count, **where)
