"""The logged MLflow model: one pyfunc holding features, both learners, rule config and tier cut-offs.

Its input is the point-in-time feature rows of `features.pointintime` (one per account); its output is
the score records with tiers placed by the frozen cut-offs. `features/` and `training/` travel inside
the model (`code_paths`), so any process that loads it computes exactly what training computed.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from training.bundle import load_scorer


class TieringModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.scorer = load_scorer(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        version = (params or {}).get("model_version", "")
        return self.scorer.score(model_input, by_capacity=False, model_version=version or "logged-model")
