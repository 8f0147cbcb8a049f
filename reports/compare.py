"""Learned versus rule tiers: the tables behind `tiering compare` and the comparison notebook.

Two books are compared. The *holdout* is the model's own time-based holdout, read back from its training
run: tiers as the evaluation models decided them at the holdout start, and the deals that closed after.
(The registered model was refit on those months, so scoring them again would judge it in-sample.) The
*current book* is every account scored now with the registered model. Without a learned model, a
rules-only backtest over the latest months of the training window stands in for the holdout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from features.config import ModelConfig
from features.redact import redact
from features.schema import CrmData
from scoring import registry
from scoring.pyfunc import TieringModel
from scoring.scorer import Scorer, describe_ties
from scoring.tiers import allocate_budget, budget_summary, tier_movement
from training.evaluate import gain_curve, tier_outcomes, win_metrics, won_revenue_by_account
from training.guards import constant_signals, inputs_available
from training.plots import tier_matrix

COMPONENTS = {
    "revenue_potential_score": "revenue potential",
    "business_fit_score": "business fit",
    "engagement_score": "engagement",
}
RANKING_SCORES = {"learned_score": "learned score", "rule_score": "rule score", **COMPONENTS}
MOVER_LEVELS = 2  # learned and rule tiers this many levels apart: worth a conversation with sales
HOLDOUT_FOLDER = "tables"  # where `log_and_register` puts the holdout tables in the training run
REPORT_FOLDER = "compare"  # where the report is logged in the same run


@dataclass(frozen=True)
class Holdout:
    """Tiers decided at `start` and the opportunities that closed from then until `end` (exclusive)."""

    book: pd.DataFrame  # one score record per account as of `start`
    opportunities: pd.DataFrame  # account_id, won, amount; with a model also win_probability, rule_probability
    start: pd.Timestamp
    end: pd.Timestamp
    source: str  # said in the report: where these tiers and deals come from


def model_run_id(model_uri: str | None) -> str:
    """The training run behind a model URI (default: the champion)."""
    import mlflow

    uri = model_uri or f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}"
    try:
        return mlflow.models.get_model_info(uri).run_id
    except Exception as error:  # MLflow raises many types for a missing model or an unreachable store
        raise registry.TrackingError(
            f"cannot find the training run of {redact(uri)}: {registry.first_line(error)}"
        ) from None


def holdout_from_run(run_id: str) -> Holdout:
    """The holdout as the training run logged it (see `log_and_register`)."""
    import mlflow

    try:
        with tempfile.TemporaryDirectory() as tmp:

            def table(name: str) -> pd.DataFrame:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=f"{HOLDOUT_FOLDER}/{name}", dst_path=tmp
                )
                return pd.read_csv(path, dtype={"account_id": "str"})

            book, opportunities = table(registry.HOLDOUT_BOOK), table(registry.HOLDOUT_PREDICTIONS)
        summary = mlflow.artifacts.load_dict(f"runs:/{run_id}/data_summary.json")
    except Exception as error:  # as above; most often a run logged by an older version of tiering
        raise registry.TrackingError(
            f"run {run_id} has no holdout tables to compare on "
            f"({registry.first_line(error)[:200]}): retrain the model with `tiering train`"
        ) from None
    text = ["reason_1", "reason_2", "reason_3", "override_reason"]
    book[text] = book[text].fillna("")
    return Holdout(
        book,
        opportunities,
        pd.Timestamp(summary["window_holdout_start"]),
        pd.Timestamp(summary["window_as_of"]),
        f"holdout of training run {run_id}",
    )


def rules_backtest(data: CrmData, config: ModelConfig, as_of: pd.Timestamp | None) -> Holdout:
    """Rule tiers as of the holdout start of the training window, judged on the deals that closed after."""
    from features.pointintime import FeatureBuilder, snapshot, training_rows
    from training.pipeline import WindowDates

    window = WindowDates.for_data(data, config, as_of)
    builder = FeatureBuilder(data, config)
    book = Scorer(config=config).score(snapshot(data, builder, window.holdout_start), by_capacity=True)
    deals = training_rows(data, builder, window.holdout_start, window.as_of)[["account_id", "won", "amount"]]
    return Holdout(book, deals, window.holdout_start, window.as_of, "rules-only backtest on the latest months")


def log_report(run_id: str, folder: Path) -> None:
    try:
        registry.client().log_artifacts(run_id, str(folder), REPORT_FOLDER)
    except Exception as error:  # the report is written either way; say so
        raise registry.TrackingError(
            f"the report is in {folder} but could not be logged to run {run_id}: {registry.first_line(error)}"
        ) from None


def agreement(books: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Learned tier against rule tier per book, in long form: accounts and share of the book per pair."""
    parts = []
    for name, book in books.items():
        matrix = tier_matrix(book["learned_tier"], book["rule_tier"]).rename_axis(
            index="learned_tier", columns="rule_tier"
        )
        pairs = matrix.stack().rename("accounts").reset_index()
        parts.append(pairs.assign(book=name, share=pairs["accounts"] / max(len(book), 1)))
    return pd.concat(parts, ignore_index=True)[["book", "learned_tier", "rule_tier", "accounts", "share"]]


def agreement_stats(book: pd.DataFrame) -> dict[str, float]:
    levels = tier_movement(book["rule_tier"], book["learned_tier"]).abs()
    if book["learned_tier"].nunique() == 1 and book["rule_tier"].nunique() == 1:  # kappa is 0/0 there
        kappa = 1.0 if (levels == 0).all() else 0.0
    else:
        kappa = float(cohen_kappa_score(book["learned_tier"], book["rule_tier"]))
    return {
        "accounts": len(book),
        "same_tier": float((levels == 0).mean()),
        "within_one_level": float((levels <= 1).mean()),
        "kappa": kappa,
    }


def holdout_tier_table(holdout: Holdout, tierings: tuple[str, ...]) -> pd.DataFrame:
    """Per tiering and tier: accounts, opportunities, win rate, won revenue and share, expected value."""
    book = holdout.book.set_index("account_id")
    parts = []
    for tiering in tierings:
        tiers = book[f"{tiering}_tier"]
        table = tier_outcomes(tiers, holdout.opportunities)
        table["expected_value"] = table["tier"].map(book.groupby(tiers)["expected_value"].sum(min_count=1))
        parts.append(table.assign(tiering=tiering))
    return _tiering_first(pd.concat(parts, ignore_index=True))


def book_tier_table(
    scores: pd.DataFrame, tierings: tuple[str, ...], budget: float, config: ModelConfig
) -> pd.DataFrame:
    """Per tiering and tier on the current book: accounts, expected value and its share, budget."""
    parts = []
    for tiering in tierings:
        tiers = scores[f"{tiering}_tier"]
        table = budget_summary(tiers, budget, config.budget).rename(columns={"share": "budget_share"})
        value = scores.groupby(tiers)["expected_value"].sum(min_count=1)
        table.insert(2, "expected_value", table["tier"].map(value))
        table.insert(3, "value_share", table["expected_value"] / scores["expected_value"].sum())
        parts.append(table.assign(tiering=tiering))
    return _tiering_first(pd.concat(parts, ignore_index=True))


def tierings(learned: bool) -> tuple[str, ...]:
    return ("learned", "rule") if learned else ("rule",)


def ranking_scores(learned: bool) -> dict[str, str]:
    """The scores whose gain is compared (column: name); with rules only the learned score is the rule score."""
    return {column: name for column, name in RANKING_SCORES.items() if learned or column != "learned_score"}


def gain_table(holdout: Holdout, scores: dict[str, str]) -> pd.DataFrame:
    """Cumulative gain of each score on the holdout: accounts worked best-first against won revenue captured."""
    value = won_revenue_by_account(holdout.opportunities, holdout.book["account_id"]).to_numpy()
    parts = []
    for column, name in scores.items():
        worked, captured = gain_curve(value, holdout.book[column].to_numpy())
        parts.append(pd.DataFrame({"score": name, "accounts_worked": worked, "revenue_captured": captured}))
    return pd.concat(parts, ignore_index=True)


def gain_at(gain: pd.DataFrame, shares: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)) -> pd.DataFrame:
    """Share of won revenue each score captures in its top `shares` of accounts (rows: scores, in order)."""
    picked = gain[np.isclose(gain["accounts_worked"].to_numpy()[:, None], shares).any(axis=1)]
    table = picked.pivot(index="score", columns="accounts_worked", values="revenue_captured")
    table.columns = [float(round(share, 4)) for share in table.columns]
    return table.reindex(gain["score"].unique())


def movers(scores: pd.DataFrame) -> pd.DataFrame:
    """Accounts whose learned and rule tiers are at least MOVER_LEVELS apart, largest gaps first.

    `levels` > 0: the learned tiering ranks the account higher than the rules do.
    """
    levels = tier_movement(scores["rule_tier"], scores["learned_tier"]).rename("levels")
    far = scores.assign(levels=levels)[levels.abs() >= MOVER_LEVELS]
    columns = [
        "account_id",
        "account_name",
        "rule_tier",
        "learned_tier",
        "levels",
        "learned_score",
        "rule_score",
        *COMPONENTS,
        "win_probability",
        "expected_value",
        "reason_1",
        "reason_2",
        "reason_3",
        "budget_rule",
        "budget_learned",
    ]
    order = far.assign(gap=far["levels"].abs()).sort_values(["gap", "learned_score"], ascending=[False, False])
    return order[columns].reset_index(drop=True)


def _tiering_first(table: pd.DataFrame) -> pd.DataFrame:
    return table[["tiering", *[c for c in table.columns if c != "tiering"]]]


@dataclass(frozen=True)
class Comparison:
    """Everything the report shows, as tables; `tables()` are the CSV files written beside it."""

    model: str  # the model's version label, or RULES_ONLY
    learned: bool
    run_id: str | None  # the model's training run (None with rules only)
    as_of: pd.Timestamp
    budget: float
    holdout: Holdout
    scores: pd.DataFrame  # the current book: score records, account_name, budget under each tiering
    agreement: pd.DataFrame  # book (current/holdout), learned_tier, rule_tier, accounts, share
    agreement_stats: pd.DataFrame  # per book: accounts, same_tier, within_one_level, kappa
    holdout_tiers: pd.DataFrame
    book_tiers: pd.DataFrame
    gain: pd.DataFrame
    movers: pd.DataFrame
    headline: dict[str, float]
    warnings: list[str] = field(default_factory=list)  # degenerate signals, ties, the training run's own warnings
    # What each tier of the current book should bring inside the horizon (scoring.forecast); None when the model
    # has no pipeline learner (rules only, or trained before it existed).
    forecast: pd.DataFrame | None = None
    horizon_days: int | None = None

    @property
    def tierings(self) -> tuple[str, ...]:
        return tierings(self.learned)

    @property
    def ranking_scores(self) -> dict[str, str]:
        return ranking_scores(self.learned)

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {
            "summary": pd.DataFrame({"metric": list(self.headline), "value": list(self.headline.values())}),
            "holdout_tiers": self.holdout_tiers,
            "book_tiers": self.book_tiers,
            "gain": self.gain,
            "scores": self.scores,
        }
        if self.learned:
            tables.update({"agreement": self.agreement, "agreement_stats": self.agreement_stats, "movers": self.movers})
        if self.forecast is not None:
            tables["forecast"] = self.forecast
        return tables


def compare(
    scores: pd.DataFrame,
    holdout: Holdout,
    config: ModelConfig,
    *,
    model: str,
    learned: bool,
    run_id: str | None,
    as_of: pd.Timestamp,
    budget: float,
    account_names: pd.Series | None = None,
) -> Comparison:
    """All the comparison's tables from the current book's score records and the holdout.

    `account_names` (indexed by account_id) label accounts in the report; the id stands in where missing.
    """
    names = scores["account_id"].map(account_names) if account_names is not None else scores["account_id"]
    current = scores.assign(
        account_name=names.fillna(scores["account_id"]),
        budget_learned=allocate_budget(scores["learned_tier"], budget, config.budget),
        budget_rule=allocate_budget(scores["rule_tier"], budget, config.budget),
    )
    books = {"current": current, "holdout": holdout.book}
    stats = pd.DataFrame([{"book": name, **agreement_stats(book)} for name, book in books.items()])
    holdout_tiers = holdout_tier_table(holdout, tierings(learned))
    moved = movers(current)
    return Comparison(
        model=model,
        learned=learned,
        run_id=run_id,
        as_of=as_of,
        budget=budget,
        holdout=holdout,
        scores=current,
        agreement=agreement(books),
        agreement_stats=stats,
        holdout_tiers=holdout_tiers,
        book_tiers=book_tier_table(current, tierings(learned), budget, config),
        gain=gain_table(holdout, ranking_scores(learned)),
        movers=moved,
        headline=_headline(current, holdout, holdout_tiers, stats, moved, learned),
    )


def _headline(
    current: pd.DataFrame,
    holdout: Holdout,
    holdout_tiers: pd.DataFrame,
    stats: pd.DataFrame,
    moved: pd.DataFrame,
    learned: bool,
) -> dict[str, float]:
    """The key numbers, raw (the report formats them)."""
    deals = holdout.opportunities
    share = holdout_tiers.pivot(index="tier", columns="tiering", values="revenue_share")
    top = share.loc[["tier_1", "tier_2"]].sum(min_count=1)
    numbers = {
        "accounts": float(len(current)),
        "holdout_opportunities": float(len(deals)),
        "holdout_win_rate": float(deals["won"].mean()) if len(deals) else np.nan,
        "rule_tier_1_revenue_share": float(share.at["tier_1", "rule"]),
        "rule_top_tiers_revenue_share": float(top["rule"]),
    }
    if learned:
        y = deals["won"].to_numpy()
        model, rule = (
            win_metrics(y, deals["win_probability"].to_numpy()),
            win_metrics(y, deals["rule_probability"].to_numpy()),
        )
        by_book = stats.set_index("book")
        numbers.update(
            {
                "learned_tier_1_revenue_share": float(share.at["tier_1", "learned"]),
                "learned_top_tiers_revenue_share": float(top["learned"]),
                "same_tier_share": float(by_book.at["current", "same_tier"]),
                "kappa_current": float(by_book.at["current", "kappa"]),
                "kappa_holdout": float(by_book.at["holdout", "kappa"]),
                "movers": float(len(moved)),
                "learned_roc_auc": model["roc_auc"],
                "rule_roc_auc": rule["roc_auc"],
                "learned_calibration_error": model["ece"],
                "rule_calibration_error": rule["ece"],
                "learned_brier": model["brier"],
                "rule_brier": rule["brier"],
            }
        )
    return numbers


def build_comparison(
    data: CrmData,
    scorer: TieringModel,
    scores: pd.DataFrame,
    features: pd.DataFrame,
    *,
    version: str,
    model_uri: str | None,
    as_of: pd.Timestamp,
    budget: float,
    progress: Callable[[str], None] = lambda step: None,
) -> Comparison:
    """The comparison of a scored book (`scores`, scored as of `as_of` by `scorer` from its feature rows `features`, in
    the same order) on its model's holdout.

    `model_uri` is the model that scored it (None: the champion); with rules only, a backtest stands in.
    """
    run_id = model_run_id(model_uri) if scorer.is_learned else None
    progress("reading the holdout" if run_id else "rules-only backtest on recent deals")
    holdout = holdout_from_run(run_id) if run_id else rules_backtest(data, scorer.config, as_of)
    progress("comparing tiers")
    comparison = compare(
        scores,
        holdout,
        scorer.config,
        model=version,
        learned=scorer.is_learned,
        run_id=run_id,
        as_of=as_of,
        budget=budget,
        account_names=data.accounts.set_index("account_id")["account_name"],
    )
    warnings = [
        *constant_signals(scores, inputs_available(data)),
        *describe_ties(scores.attrs.get("boundary_ties", [])),
        *run_warnings(run_id),
    ]
    forecast, horizon = None, None
    if scorer.can_forecast and scorer.scorer.pipeline is not None:
        progress("forecasting the horizon")
        forecast = scorer.forecast(scores, features)
        horizon = scorer.scorer.pipeline.horizon_days
    return replace(comparison, warnings=warnings, forecast=forecast, horizon_days=horizon)


def run_warnings(run_id: str | None) -> list[str]:
    """The warnings the model's training run logged (a shifting win rate, say), so the report repeats them."""
    if not run_id:
        return []
    from mlflow import MlflowClient

    logged = MlflowClient().get_run(run_id).data.tags.get("warnings", "")
    return [f"training run: {text}" for text in logged.split(" | ") if text]
