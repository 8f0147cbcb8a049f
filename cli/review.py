"""`tiering review`: what happened since a past scoring, was the budget well spent, does the model still predict,
and is it time to retrain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.common import (
    ConfigOpt,
    DataDir,
    InvalidRowsOpt,
    MappingOpt,
    UserError,
    console,
    err_console,
    friendly_errors,
    load_data,
    steps,
)
from features.config import load_config

if TYPE_CHECKING:
    from reports.review import QuarterlyReview


def _day(value: str | None, option: str):
    from features.dates import NotADate, parse_day

    try:
        return parse_day(value, option)
    except NotADate as error:
        raise UserError(str(error)) from None


def past_model_uri(past, name: str) -> str | None:
    """The model version that made the past scores (None: rules only)."""
    from scoring.registry import MODEL_NAME
    from scoring.scorer import RULES_ONLY

    versions = sorted({str(v) for v in past["model_version"] if str(v).strip()})
    if not versions:
        raise UserError(f"{name}: the model_version column is empty: pass --model URI (the model that scored it)")
    if len(versions) > 1:
        raise UserError(
            f"{name}: the scores come from several model versions ({', '.join(versions[:3])}): review one scoring at a "
            "time, or pass --model URI"
        )
    version = versions[0]
    if version == RULES_ONLY:
        return None
    return f"models:/{MODEL_NAME}/{version}" if version.isdigit() else version


def short_money(value: float) -> str:
    """$1.2M, $340K, $950: amounts that fit a terminal column."""
    if value != value:
        return "-"
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"${value / size:,.1f}{suffix}"
    return f"${value:,.0f}"


def say_review(review: QuarterlyReview, page: Path, logged: str | None) -> None:
    from rich.table import Table

    from reports.html import count, percent

    final = review.outcomes[review.outcomes["tiering"] == "final"]
    table = Table(title=escape(f"Outcomes by tier, {review.period.label()} ({review.period.days} days)"))
    for column in ("tier", "accounts", "pipeline created", "closed", "won", "win rate", "won revenue", "share"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    for row in final.itertuples():
        table.add_row(
            row.tier,
            count(row.accounts),
            f"{count(row.pipeline_created)} ({short_money(row.pipeline_amount)})",
            count(row.deals_closed),
            count(row.deals_won),
            percent(row.win_rate),
            short_money(row.won_revenue),
            percent(row.revenue_share),
        )
    console.print(table)
    m, top = review.predictions.metrics, review.top_tiers
    console.print(
        f"Tier 1 + 2 took {percent(top.get('learned'))} of the period's won revenue under the learned tiers, "
        f"{percent(top.get('rule'))} under the rule tiers.",
        highlight=False,
    )
    if review.facts.learned and m["roc_auc"] == m["roc_auc"]:
        console.print(
            f"Field ROC AUC {m['roc_auc']:.3f} (95% {m['roc_auc_low']:.3f}-{m['roc_auc_high']:.3f}) on "
            f"{int(m['deals']):,} deals created and closed in the period; training holdout "
            f"{review.facts.holdout_roc_auc:.3f}. Calibration error {m['ece']:.1%}.",
            highlight=False,
        )
    if len(review.drift):
        worst = review.drift.iloc[0]
        console.print(f"Largest drift: {escape(worst['feature'])} (PSI {worst['psi']:.2f}).", highlight=False)
    colour = {"retrain recommended": "red", "model still holds": "green"}.get(review.verdict.status, "yellow")
    console.print(f"[bold {colour}]Verdict: {escape(review.verdict.headline)}[/]")
    for reason in review.verdict.reasons:
        console.print(f"  - {escape(reason)}", highlight=False, soft_wrap=True)
    if len(review.flags):
        flagged = review.flags
        console.print(
            f"{len(flagged):,} account(s) flagged in the workspace won {short_money(flagged['won_revenue'].sum())} in "
            f"the period ({short_money(flagged['won_revenue'].mean())} each; the average account of their tiers "
            f"{short_money(flagged['tier_revenue_per_account'].mean())}).",
            highlight=False,
        )
    where = f"  (logged to MLflow run {logged})" if logged else ""
    console.print(escape(f"Report: {page}{where}"), highlight=False, soft_wrap=True)


def workspace_flags():
    """The workspace's flags (account_id, comment, created_at) when a store exists, else None; never creates one."""
    import pandas as pd

    from cli.workspace import open_existing_store

    store = open_existing_store()
    if store is None:
        return None
    with store:
        flags = store.flags()
    return pd.DataFrame(
        [(f.account_id, f.comment, f.created_at) for f in flags], columns=["account_id", "comment", "created_at"]
    )


@friendly_errors
def review(
    past_scores: Annotated[
        Path,
        typer.Argument(help="A scores file written by `tiering score` at an earlier --as-of.", show_default=False),
    ],
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", help="Folder for review.html and its CSV tables (replaced whole).")],
    mapping: MappingOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="The model that made the past scores (default: the version in their model_version column).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="End of the period, YYYY-MM-DD, exclusive (default: the day after the latest date)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start of the period for a scores file without an as_of column (its as_of)."),
    ] = None,
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
) -> None:
    """What happened since a past scoring: outcomes and return on budget by tier, realised lift, predictions against
    reality, drift, tier movement, and a retrain verdict."""
    from features.activity import default_as_of
    from features.pointintime import FeatureBuilder, snapshot
    from features.repair import invalid_rows_mode
    from reports.diff import read_scores
    from reports.report import check_output_folder, publish
    from reports.review import Period, build_review, drift_rows, past_as_of
    from reports.review_mlflow import log_review, model_facts
    from reports.review_page import REVIEW_PAGE, render_review
    from scoring.registry import resolve_model

    settings = load_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    end = _day(until, "--until")
    start = _day(since, "--since")
    check_output_folder(out, REVIEW_PAGE)  # an --out holding the user's own files is refused before any work
    past = read_scores(past_scores)
    start = past_as_of(past, str(past_scores), start)
    if end is not None and end <= start:
        raise UserError(
            f"--until {end.date()} is not after the past scoring's as_of {start.date()} ({past_scores}): "
            "pass a later --until"
        )
    uri = model or past_model_uri(past, str(past_scores))
    frame = load_data(data, mapping, rows_mode)
    end = end or default_as_of(frame)
    if end <= start:
        raise UserError(
            f"the export's latest date is before the past scoring's as_of {start.date()} ({past_scores}): nothing has "
            "happened since; pass the export as it is now"
        )
    console.print(f"period {start.date()} to {end.date()} (from the scores' as_of to --until, exclusive)")
    if uri:
        tiering_model, version = resolve_model(uri, settings)
    else:
        from scoring.pyfunc import TieringModel
        from scoring.scorer import RULES_ONLY

        tiering_model, version = TieringModel.rules_only(settings), RULES_ONLY
    facts, warning = model_facts(version, tiering_model)
    if warning:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    with steps(5) as progress:
        progress("scoring the book now")
        builder = FeatureBuilder(frame, tiering_model.config)
        book = snapshot(frame, builder, end)
        now = tiering_model.score_features(book, by_capacity=True, model_version=version)
        progress("measuring drift")
        reference = current = None
        if tiering_model.is_learned and facts.trained_until is not None:
            reference, current = drift_rows(frame, tiering_model.config, facts.trained_until, book, builder)
        progress("outcomes, ranking and predictions")
        learners = tiering_model.scorer.learners()
        result = build_review(
            past,
            frame,
            Period(start, end),
            now,
            facts,
            reference,
            current,
            list(learners.spec.columns) if learners is not None else [],
            dict(learners.spec.categories) if learners is not None else {},
            tiering_model.config if tiering_model.is_learned else settings,
            past_name=str(past_scores),
            data_label=str(data),
            rules=settings.review,
            flags=workspace_flags(),
        )
        progress("writing the report")
        page = publish(out, REVIEW_PAGE, render_review(result, settings.review.psi_threshold), result.tables())
        logged = None
        if facts.run_id:
            progress("logging the review to MLflow")
            logged = log_review(result, out)
    say_review(result, page, logged)
