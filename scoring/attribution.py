"""Per-feature contributions of a LightGBM model, two ways.

- `treeshap`: LightGBM's own `pred_contrib=True` (exact Shapley values, TreeSHAP), many times the cost
  of the prediction itself (docs/benchmarks.md has the figures).
- `path`: the decomposition of each tree's output along the row's decision path (Saabas; what
  treeinterpreter computes): every split moves the prediction from the parent's value to the child's,
  and that move is credited to the split's feature. Like TreeSHAP it adds up exactly to the raw
  prediction; it costs one leaf lookup per tree (`pred_leaf=True`) and a sparse product with a table
  precomputed once per booster.

Both return an (n, features + 1) array whose last column is the bias (the expected value), so that
each row sums to the raw margin.
"""

from __future__ import annotations

from functools import cached_property

import lightgbm as lgb
import numpy as np
from scipy import sparse

DENSE_ROWS = 64


def predict_dense(
    booster: lgb.Booster,
    matrix: np.ndarray,
    *,
    raw_score: bool = False,
    pred_leaf: bool = False,
    pred_contrib: bool = False,
    num_iteration: int | None = None,
) -> np.ndarray:
    """`Booster.predict` on a dense matrix, which answers a dense array (LightGBM's annotation also allows
    the sparse results it gives for sparse input only)."""
    prediction = booster.predict(
        matrix, raw_score=raw_score, pred_leaf=pred_leaf, pred_contrib=pred_contrib, num_iteration=num_iteration
    )
    if not isinstance(prediction, np.ndarray):
        raise TypeError(f"LightGBM predicted a {type(prediction).__name__} for a dense matrix, not an array")
    return prediction


class PathAttribution:
    def __init__(self, booster: lgb.Booster):
        self.booster = booster

    @cached_property
    def _leaf_table(self) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Rows: every leaf of every tree; columns: the contribution of each feature on its path, then bias."""
        n_features = self.booster.num_feature()
        tables, offsets, total = [], [], 0
        for tree in self.booster.dump_model()["tree_info"]:
            table = np.zeros((tree["num_leaves"], n_features + 1))
            root = tree["tree_structure"]
            if "leaf_index" in root or "leaf_value" in root and "split_feature" not in root:
                table[root.get("leaf_index", 0), -1] = root["leaf_value"]
            else:
                table[:, -1] = root["internal_value"]
                pending = [(root, np.zeros(n_features))]
                while pending:
                    node, path = pending.pop()
                    for side in ("left_child", "right_child"):
                        child = node[side]
                        child_value = child["leaf_value"] if "leaf_index" in child else child["internal_value"]
                        moved = path.copy()
                        moved[node["split_feature"]] += child_value - node["internal_value"]
                        if "leaf_index" in child:
                            table[child["leaf_index"], :-1] = moved
                        else:
                            pending.append((child, moved))
            tables.append(table)
            offsets.append(total)
            total += tree["num_leaves"]
        return sparse.csr_matrix(np.vstack(tables)), np.asarray(offsets, dtype=np.int64)

    @cached_property
    def _dense_table(self) -> np.ndarray:
        return self._leaf_table[0].toarray()

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        table, offsets = self._leaf_table
        leaves = predict_dense(self.booster, matrix, pred_leaf=True).astype(np.int64).reshape(len(matrix), -1)
        rows, trees = leaves.shape
        if rows <= DENSE_ROWS:
            # A few rows (a service request): gathering dense rows skips scipy's set-up. Both sum each
            # row's leaves in tree order, so the two give the same bits (tested).
            return self._dense_table[leaves + offsets[None, :trees]].sum(axis=1)
        columns = (leaves + offsets[None, :trees]).ravel()
        pick = sparse.csr_matrix(
            (np.ones(columns.size), columns, np.arange(0, columns.size + 1, trees)), shape=(rows, table.shape[0])
        )
        return (pick @ table).toarray()


def contributions(booster: lgb.Booster, matrix: np.ndarray, method: str, cache: dict | None = None) -> np.ndarray:
    if method == "treeshap":
        return predict_dense(booster, matrix, pred_contrib=True)
    if cache is None:
        return PathAttribution(booster).contributions(matrix)
    attribution = cache.setdefault(id(booster), PathAttribution(booster))
    return attribution.contributions(matrix)
