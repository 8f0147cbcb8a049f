"""Real exports against a careful analyst's references on the same time split.

    python -m bench.real_exports [maven-crm] [marketstar-sdr]

For each third-party export in ../shared/data, the tool's win model is fitted and judged as `tiering train`
does (its preset or the mapping in bench/mappings; the same window, slices, leak checks, learner search and
gate, without the deal-size, pipeline and tier stages), and two references are fitted on the same window: the deals that
closed before the holdout train them, the holdout judges them. The references read the export's own
columns (the account's fields and the deal's product), not the tool's features:

- a plain one-hot logistic regression (categories seen at least 20 times one-hot, the rest grouped;
  numbers log-scaled and standardised; L2 with C = 1);
- a small LightGBM grid with native categories, each setting's rounds chosen by early stopping on the
  validation slice (the months before the holdout) and the setting with the best validation AUC refit
  on all development months.

Prints one record per export: the shipped model's holdout ROC AUC (with its 95% lower bound), ECE and the gate's
verdict; the references' holdout ROC AUC with their 95% lower bounds (a percentile bootstrap); each candidate.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from configuration.tiering import TieringConfig, parse_config
from features.pointintime import FeatureBuilder, training_rows
from features.rules import with_rule_scores
from features.schema import ACCOUNT_FIELDS, CrmData
from ingest.io import load_export
from training.evaluate import auc_confidence, expected_calibration_error
from training.guards import Shift, win_rate_shift
from training.pipeline import GateDecision, WinModelStage, gate, win_model_stage
from training.window import WindowDates

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MAPPINGS = Path(__file__).resolve().parent / "mappings"
MIN_LEVEL_ROWS = 20
BOOTSTRAP_RESAMPLES = 200
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


def one_hot_logistic(table: pd.DataFrame, numeric: list[str], categorical: list[str]) -> np.ndarray:
    """Its probabilities on the holdout deals (in the table's order), fitted on every development deal."""
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
    return model.predict_proba(x[~development])[:, 1]


def lightgbm_grid(table: pd.DataFrame, numeric: list[str], categorical: list[str], seed: int = 0) -> dict:
    """Each setting's holdout AUC, and the one the validation slice picks (refit on all development months) with
    its holdout predictions."""
    x = table[numeric + categorical].copy()
    for column in categorical:
        x[column] = x[column].astype("category")
    y = table["won"].to_numpy()
    split = table["split"].to_numpy()
    fit, validation, holdout = split == "fit", split == "validation", split == "holdout"
    development = ~holdout
    results, predictions = [], []
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
        predicted = refit.predict(x[holdout])
        holdout_auc = float(roc_auc_score(y[holdout], predicted))
        results.append({**setting, "rounds": rounds, "validation_auc": valid_auc, "holdout_auc": holdout_auc})
        predictions.append(predicted)
    picked = int(np.argmax([r["validation_auc"] for r in results]))
    return {
        "settings": results,
        "picked_holdout_auc": results[picked]["holdout_auc"],
        "picked_predictions": predictions[picked],
        "best_holdout_auc": max(r["holdout_auc"] for r in results),
    }


def auc_lower_bound(y: np.ndarray, score: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> float:
    """The 2.5% percentile of the ROC AUC over bootstrap resamples of the deals (a plain percentile bootstrap)."""
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(resamples):
        rows = rng.integers(0, len(y), len(y))
        if 0 < y[rows].sum() < len(rows):
            aucs.append(roc_auc_score(y[rows], score[rows]))
    return float(np.percentile(aucs, 2.5))


def references(data: CrmData, window: WindowDates, config: TieringConfig) -> dict:
    """Both references' holdout ROC AUC and its 95% lower bound, on the export's own columns."""
    table, numeric, categorical = deal_table(data, window, config)
    y = table.loc[table["split"] == "holdout", "won"].to_numpy()
    grid = lightgbm_grid(table, numeric, categorical, config.model.seed)
    logistic = one_hot_logistic(table, numeric, categorical)
    return {
        "holdout_deals": int(len(y)),
        "one_hot_logistic": float(roc_auc_score(y, logistic)),
        "one_hot_logistic_low": auc_lower_bound(y, logistic),
        "lightgbm_picked": grid["picked_holdout_auc"],
        "lightgbm_picked_low": auc_lower_bound(y, grid["picked_predictions"]),
        "lightgbm_best": grid["best_holdout_auc"],
        "lightgbm_settings": grid["settings"],
        "columns": numeric + categorical,
    }


@dataclass
class Shipped:
    """The tool's win model on an export's holdout, as `tiering train` judges it, without the rest of training."""

    config: TieringConfig
    window: WindowDates
    rows: pd.DataFrame  # every closed deal in the window, with the tool's features
    holdout: pd.DataFrame
    stage: WinModelStage
    shift: Shift | None  # the win-rate shift warning between the slices, if training gives one
    decision: GateDecision  # the gate on the holdout figures (no champion)
    decision_metrics: dict = field(default_factory=dict)  # the holdout figures the gate read

    def figures(self) -> dict:
        y, p = self.holdout["won"].to_numpy(), self.stage.probability
        early = self.rows["close_date"] < self.window.holdout_start
        return {
            "roc_auc": float(roc_auc_score(y, p)),
            "roc_auc_low": self.decision_metrics["model_roc_auc_low"],
            "ece": expected_calibration_error(y, p),
            "calibration_in_the_large": float(abs(p.mean() - y.mean())),
            "win_rate_development": float(self.rows.loc[early, "won"].mean()),
            "win_rate_holdout": float(y.mean()),
            "learner": self.stage.selection.recipe.describe(),
            "holdout_deals": int(len(y)),
            "gate": self.decision.render(),
            "shift_warning": self.shift.render() if self.shift else "",
        }


def shipped(data: CrmData, config: TieringConfig) -> Shipped:
    """The window, the slices and the win model exactly as training draws and fits them, and the gate's verdict."""
    window = WindowDates.for_data(data, config, None)
    rows = with_rule_scores(training_rows(data, FeatureBuilder(data, config), window.start, window.as_of), config)
    development = rows[rows["close_date"] < window.holdout_start].reset_index(drop=True)
    holdout = rows[rows["close_date"] >= window.holdout_start].reset_index(drop=True)
    stage = win_model_stage(development, holdout, window, config)
    early = (development["close_date"] < window.calibration_start).to_numpy()
    shift = win_rate_shift(
        {
            "fit": development.loc[early, "won"].to_numpy(),
            "validation": development.loc[~early, "won"].to_numpy(),
            "holdout": holdout["won"].to_numpy(),
        },
        config.model.guards,
    )
    y, rule_score = holdout["won"].to_numpy(), holdout["rule_score"].to_numpy()
    rule_constant = bool(np.ptp(rule_score) < 1e-9)
    metrics = {
        "model_roc_auc": float(roc_auc_score(y, stage.probability)),
        "rule_roc_auc": 0.5 if rule_constant else float(roc_auc_score(y, rule_score)),
        "rule_score_constant": float(rule_constant),
        **{
            f"model_{k}": v
            for k, v in auc_confidence(y, stage.probability, {"rules": rule_score}, seed=config.model.seed).items()
        },
    }
    won = int(rows["won"].sum())
    decision = gate({"won": won, "lost": len(rows) - won}, metrics, None, config, stage.leaks)
    return Shipped(config, window, rows, holdout, stage, shift, decision, metrics)


def run(name: str) -> dict:
    export = EXPORTS[name]
    data, config = export.load()
    started = time.perf_counter()
    result = shipped(data, config)
    seconds = time.perf_counter() - started
    return {
        "export": name,
        "win_model_seconds": seconds,
        "shipped": result.figures(),
        "references": references(data, result.window, config),
        "candidates": result.stage.selection.table().round(4).to_dict(orient="records"),
        "folds": result.stage.selection.folds.round(4).to_dict(orient="records"),
        "fold_seconds": result.stage.selection.fold_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="*", choices=[*EXPORTS, []], help="default: every export")
    for name in parser.parse_args().exports or list(EXPORTS):
        if not EXPORTS[name].folder.is_dir():
            print(f"{name}: not at {EXPORTS[name].folder}, skipped")
            continue
        print(json.dumps(run(name), indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
