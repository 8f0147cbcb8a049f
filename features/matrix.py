"""The model matrix: which feature columns the learners see, in which order, with which encoding.

The `FeatureSpec` is fitted on training rows and stored with the model; serving encodes with the same
spec, so category codes and column order can never drift between training and serving.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from features.config import ModelConfig
from features.pointintime import FAMILY_LEARNED, FIRMOGRAPHIC_TEXT, engagement_columns, intent_columns, slug
from features.rules import RULE_COLUMNS, SMALL_BOOK

MAX_CATEGORIES = 200  # rarer values share the "unseen" code; keeps trees from memorising ids


def candidate_columns(config: ModelConfig) -> list[str]:
    engagement = engagement_columns()
    return [
        *FIRMOGRAPHIC_TEXT,
        "employees",
        "annual_revenue",
        "tech_stack_size",
        "tech_icp_matches",
        *engagement["decayed"],
        "eng_w_total",
        *engagement["recent"],
        "eng_30d_total",
        "days_since_engagement",
        *intent_columns(config),
        "intent_w_total",
        "intent_30d_signals",
        "surging_channels",
        "prior_won",
        "prior_lost",
        "prior_won_amount",
        "days_since_won",
        *[c for c in RULE_COLUMNS if c != "rule_score"],
        *[f"extra_{slug(c)}" for c in config.model.extra_features],
        *(FAMILY_LEARNED if config.hierarchy.roll_up == "family" else ()),
    ]


def without_lone_families(columns: list[str], rows: pd.DataFrame) -> list[str]:
    """`columns` without the family features when no row belongs to a family of two or more: they would only repeat
    the account's own values, and an export without parent links must give the very scores of `roll_up: none`."""
    if "family_size" in rows and (rows["family_size"] > 1).any():
        return columns
    return [column for column in columns if column not in FAMILY_LEARNED]


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


@dataclass
class FeatureSpec:
    columns: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        rows: pd.DataFrame,
        config: ModelConfig,
        columns: list[str] | None = None,
        exclude: tuple[str, ...] | list[str] = (),
    ) -> FeatureSpec:
        """The spec of `columns` (default: every candidate column but `exclude`), categories from `rows`."""
        columns = [c for c in (columns if columns is not None else candidate_columns(config)) if c not in exclude]
        columns = without_lone_families(columns, rows)
        categories = {}
        for column in columns:
            if not pd.api.types.is_numeric_dtype(rows[column]) or pd.api.types.is_bool_dtype(rows[column]):
                counts = rows[column].dropna().astype("str").value_counts()
                categories[column] = sorted(counts.index[:MAX_CATEGORIES].tolist())
        return cls(columns=columns, categories=categories)

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c in self.categories]

    def encode(self, rows) -> np.ndarray:
        """Float64 matrix in spec order; categories become their code, unseen or missing become NaN.

        `rows` is a frame or any mapping of column name to array (the service's feature columns).
        """
        count = len(rows[self.columns[0]])
        small = count <= SMALL_BOOK
        # A few rows (a service request) are gathered column by column and stacked in one call; a book is written
        # into its matrix column by column. Either way each value is the same float64.
        matrix = None if small else np.empty((count, len(self.columns)), dtype=np.float64)
        gathered = []
        for i, column in enumerate(self.columns):
            values = np.asarray(rows[column])
            if column in self.categories:
                codes = self._codes[column]
                if not small:  # one hashed lookup over the column instead of a Python call per value
                    text = pd.Series(values, dtype=object)
                    mapped = text.astype("str").map(codes).to_numpy(dtype=np.float64, na_value=np.nan)
                    values = np.where(pd.isna(text).to_numpy(), np.nan, mapped)
                else:
                    values = np.array(
                        [
                            np.nan
                            if _missing(value)
                            else codes.get(value if isinstance(value, str) else str(value), np.nan)
                            for value in values
                        ],
                        dtype=np.float64,
                    )
            elif (
                values.dtype.kind not in "fiub"
            ):  # e.g. a custom feature that arrived as text but was numeric in training
                values = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
            if matrix is None:
                gathered.append(values)
            else:
                matrix[:, i] = values
        if matrix is None:
            return np.ascontiguousarray(np.array(gathered, dtype=np.float64).reshape(len(self.columns), count).T)
        return matrix

    @cached_property
    def _codes(self) -> dict[str, dict[str, int]]:
        return {
            column: {value: code for code, value in enumerate(values)} for column, values in self.categories.items()
        }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> FeatureSpec:
        return cls(columns=list(raw["columns"]), categories={k: list(v) for k, v in raw["categories"].items()})
