"""A pilot's readout logged to MLflow: one run per readout in the experiment `abm-tiering-pilots`, with the design
as parameters, the pooled lifts as metrics, and the readout folder as artifacts."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from scoring import registry

EXPERIMENT = "abm-tiering-pilots"


def log_readout(pilot: dict, lift: pd.DataFrame, out: Path) -> str:
    """The run's id; TrackingError when the tracking store cannot take it (the readout files stay written)."""
    import mlflow

    registry.configure()
    params = {key: str(pilot[key])[:500] for key in ("pilot_id", "seed", "start_date", "horizon_days", "metric")}
    params.update(tiers=",".join(pilot["tiers"]), strata=",".join(pilot["strata"]) or "-")
    metrics = {}
    for row in lift[lift["scope"] == "pooled"].itertuples():
        for field in ("estimate", "low", "high", "p_value"):
            value = float(getattr(row, field))
            if math.isfinite(value):
                metrics[f"{row.metric}_{row.kind}_{field}"] = value
    try:
        mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(run_name=str(pilot["pilot_id"])) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.log_artifacts(str(out), "readout")
            return run.info.run_id
    except Exception as error:
        raise registry.TrackingError(
            f"the readout is in {out} but could not be logged to MLflow: {registry.first_line(error)}"
        ) from None
