"""Real exports against a careful analyst's references on the same time split.

    python -m bench.real_exports [maven-crm] [marketstar-sdr]

For each third-party export in ../shared/data, the tool is trained as a user would run it (its preset
or the mapping in bench/mappings), and two references are fitted on the same window: the deals that
closed before the holdout train them, the holdout judges them. The references read the export's own
columns (the account's fields and the deal's product), not the tool's features:

- a plain one-hot logistic regression (categories seen at least 20 times one-hot, the rest grouped;
  numbers log-scaled and standardised; L2 with C = 1);
- a small LightGBM grid with native categories, each setting's rounds chosen by early stopping on the
  validation slice (the months before the holdout) and the setting with the best validation AUC refit
  on all development months.

Prints one row per export: the shipped model's holdout ROC AUC and ECE and the references'.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from configuration.tiering import TieringConfig, parse_config
from features.schema import ACCOUNT_FIELDS, CrmData
from ingest.io import load_export
from training.evaluate import expected_calibration_error
from training.pipeline import TrainingResult, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MAPPINGS = Path(__file__).resolve().parent / "mappings"
MIN_LEVEL_ROWS = 20
LIGHTGBM_GRID = (
    {"num_leaves": 4, "learning_rate": 0.05, "min_child_samples": 20, "lambda_l2": 1.0},
    {"num_leaves": 8, "learning_rate": 0.05, "min_child_samples": 20, "lambda_l2": 1.0},
    {"num_leaves": 16, "learning_rate": 0.05, "min_child_samples": 50, "lambda_l2": 5.0},
    {"num_leaves": 31, "learning_rate": 0.03, "min_child_samples": 100, "lambda_l2": 10.0},
)


@dataclass(frozen=True)
class Export:
    name: str
    mapping: str  # a preset name or a mapping file
    config: dict
    invalid_rows: str = "stop"

    @property
    def folder(self) -> Path:
        return SHARED / self.name

    def load(self) -> tuple[CrmData, TieringConfig]:
        return load_export(self.folder, self.mapping, self.invalid_rows).data, parse_config(self.config)


EXPORTS = {
    "maven-crm": Export("maven-crm", "maven-crm", {}),
    # Four opportunities carry negative amounts; the tool drops such rows when asked to.
    "marketstar-sdr": Export(
        "marketstar-sdr",
        str(MAPPINGS / "marketstar-sdr.yaml"),
        {"model": {"extra_features": ["Title", "LeadSource"]}},
        invalid_rows="drop",
    ),
}


def analyst_columns(data: CrmData, config: TieringConfig) -> tuple[list[str], list[str]]:
    """The export's own columns an analyst would model on: account fields, the listed extras, the product."""
    accounts = data.accounts
    candidates = [c for c in ACCOUNT_FIELDS if c not in ("account_id", "account_name", "parent_account_id")]
    candidates += list(config.model.extra_features)
    present = [c for c in candidates if c in accounts and accounts[c].notna().any()]
    numeric = [c for c in present if pd.api.types.is_numeric_dtype(accounts[c])]
    categorical = [c for c in present if c not in numeric]
    if data.opportunities["product"].notna().any():
        categorical.append("product")
    return numeric, categorical


def deal_table(data: CrmData, window: WindowDates, config: TieringConfig) -> tuple[pd.DataFrame, list, list]:
    """The window's closed deals with their account's columns, and the split they fall in (fit, validation,
    holdout), exactly as the tool's window draws them."""
    numeric, categorical = analyst_columns(data, config)
    deals = data.opportunities[data.opportunities["outcome"] != "open"]
    deals = deals[(deals["close_date"] >= window.start) & (deals["close_date"] < window.as_of)]
    account_columns = [c for c in numeric + categorical if c != "product"]
    table = deals[["account_id", "close_date", "outcome", "product"]].merge(
        data.accounts[["account_id", *account_columns]], on="account_id", how="left"
    )
    table["won"] = (table["outcome"] == "won").astype(int)
    table["split"] = np.where(
        table["close_date"] >= window.holdout_start,
        "holdout",
        np.where(table["close_date"] >= window.calibration_start, "validation", "fit"),
    )
    return table, numeric, categorical


def one_hot_logistic(table: pd.DataFrame, numeric: list[str], categorical: list[str]) -> float:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    signed_log = FunctionTransformer(lambda x: np.sign(x) * np.log1p(np.abs(x)))
    parts = [
        (
            "categories",
            make_pipeline(
                SimpleImputer(strategy="constant", fill_value="(missing)"),
                OneHotEncoder(min_frequency=MIN_LEVEL_ROWS, handle_unknown="infrequent_if_exist"),
            ),
            categorical,
        )
    ]
    if numeric:
        parts.append(
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), signed_log, StandardScaler()), numeric)
        )
    model = make_pipeline(ColumnTransformer(parts), LogisticRegression(C=1.0, max_iter=2000))
    x = table[numeric + categorical].astype({c: "object" for c in categorical})
    x[categorical] = x[categorical].where(x[categorical].notna(), "(missing)").astype(str)
    development = (table["split"] != "holdout").to_numpy()
    model.fit(x[development], table.loc[development, "won"])
    return float(roc_auc_score(table.loc[~development, "won"], model.predict_proba(x[~development])[:, 1]))


def lightgbm_grid(table: pd.DataFrame, numeric: list[str], categorical: list[str], seed: int = 0) -> dict:
    """Each setting's holdout AUC, and the one the validation slice picks (refit on all development months)."""
    x = table[numeric + categorical].copy()
    for column in categorical:
        x[column] = x[column].astype("category")
    y = table["won"].to_numpy()
    split = table["split"].to_numpy()
    fit, validation, holdout = split == "fit", split == "validation", split == "holdout"
    development = ~holdout
    results = []
    for setting in LIGHTGBM_GRID:
        params = {
            "objective": "binary",
            "metric": "auc",
            "verbose": -1,
            "seed": seed,
            "deterministic": True,
            "num_threads": 2,
            "min_data_per_group": 20,
            "cat_smooth": 10,
            **setting,
        }
        train_set = lgb.Dataset(x[fit], y[fit])
        valid_set = lgb.Dataset(x[validation], y[validation], reference=train_set)
        booster = lgb.train(
            params, train_set, 2000, valid_sets=[valid_set], callbacks=[lgb.early_stopping(50, verbose=False)]
        )
        rounds = max(int(booster.best_iteration or 1), 1)
        valid_auc = float(roc_auc_score(y[validation], booster.predict(x[validation], num_iteration=rounds)))
        refit = lgb.train(params, lgb.Dataset(x[development], y[development]), rounds)
        holdout_auc = float(roc_auc_score(y[holdout], refit.predict(x[holdout])))
        results.append({**setting, "rounds": rounds, "validation_auc": valid_auc, "holdout_auc": holdout_auc})
    picked = max(results, key=lambda r: r["validation_auc"])
    return {
        "settings": results,
        "picked_holdout_auc": picked["holdout_auc"],
        "best_holdout_auc": max(r["holdout_auc"] for r in results),
    }


def shipped_figures(result: TrainingResult) -> dict:
    holdout = result.holdout
    y, p = holdout["won"].to_numpy(), holdout["win_probability"].to_numpy()
    return {
        "roc_auc": result.metrics["model_roc_auc"],
        "roc_auc_low": result.metrics["model_roc_auc_low"],
        "ece": expected_calibration_error(y, p),
        "calibration_in_the_large": float(abs(p.mean() - y.mean())),
        "learner": result.selection.recipe.describe(),
        "holdout_deals": int(len(holdout)),
    }


def references(data: CrmData, window: WindowDates, config: TieringConfig) -> dict:
    table, numeric, categorical = deal_table(data, window, config)
    grid = lightgbm_grid(table, numeric, categorical, config.model.seed)
    return {
        "one_hot_logistic": one_hot_logistic(table, numeric, categorical),
        "lightgbm_picked": grid["picked_holdout_auc"],
        "lightgbm_best": grid["best_holdout_auc"],
        "lightgbm_settings": grid["settings"],
        "columns": numeric + categorical,
    }


def run(name: str) -> dict:
    export = EXPORTS[name]
    data, config = export.load()
    started = time.perf_counter()
    result = train(data, config)
    seconds = time.perf_counter() - started
    return {
        "export": name,
        "training_seconds": seconds,
        "shipped": shipped_figures(result),
        "references": references(data, result.window, config),
        "fold_table": result.selection.fold_table().round(4).to_dict(orient="records"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="*", default=list(EXPORTS), choices=list(EXPORTS))
    for name in parser.parse_args().exports:
        if not EXPORTS[name].folder.is_dir():
            print(f"{name}: not at {EXPORTS[name].folder}, skipped")
            continue
        print(json.dumps(run(name), indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
