"""`tiering review`: what happened since a past scoring, was the budget well spent, does the model still predict,
and is it time to retrain."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.common import (
    ConfigOpt,
    InvalidRowsOpt,
    MappingOpt,
    UserError,
    console,
    err_console,
    friendly_errors,
    steps,
    use_config,
)
from cli.engines import Engine, EngineOpt, ExportArg, SparkMasterOpt, open_export
from features.errors import DataError
from features.redact import redact

if TYPE_CHECKING:
    from reports.review import QuarterlyReview


def _day(value: str | None, option: str):
    from features.dates import NotADate, parse_day

    try:
        return parse_day(value, option)
    except NotADate as error:
        raise UserError(str(error)) from None


def past_model_version(past, name: str) -> str | None:
    """The registered version that made the past scores, as their model_version column names it (None: rules only).

    Loading a model runs its code, so a file may only name a version number of the registered model (or
    models:/abm-tiering/<number>); any other value, a path or another URI, needs an explicit --model."""
    from scoring.registry import MODEL_NAME
    from scoring.scorer import RULES_ONLY

    versions = sorted({str(v).strip() for v in past["model_version"] if str(v).strip()})
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
    number = re.fullmatch(rf"(?:models:/{re.escape(MODEL_NAME)}/)?([0-9]+)", version)
    if number is None:
        raise UserError(
            f"{name}: model_version {version!r} is not a version of the registered model {MODEL_NAME}: a scores file "
            "may only name a registered version, since loading a model runs its code. If you trust that model, pass "
            "it explicitly with --model URI"
        )
    return number.group(1)


def registered_uri(version: str, name: str) -> str:
    """The URI of the version a scores file names; refused, by name, when the registry does not hold it."""
    from scoring import registry

    registry.configure()
    if registry.registered_version(version) is None:
        known = [info.version for info in registry.versions()]
        held = f"it holds version(s) {', '.join(known[-5:])}" if known else "it holds no version"
        raise UserError(
            f"{name}: model_version {version} is not in the MLflow registry at "
            f"{redact(registry.tracking_uri())} ({held}): pass --model URI for the model that made these scores, or "
            "set MLFLOW_TRACKING_URI to the store that holds it"
        )
    return f"models:/{registry.MODEL_NAME}/{version}"


def explicit_version(uri: str) -> str:
    """The version an explicit --model names: the number of models:/abm-tiering/<n> or of the version an alias holds
    (models:/abm-tiering@champion), else the URI itself (a model outside the registry)."""
    from scoring import registry

    prefix = f"models:/{registry.MODEL_NAME}"
    number = re.fullmatch(rf"{re.escape(prefix)}/([0-9]+)", uri)
    if number:
        return number.group(1)
    alias = re.fullmatch(rf"{re.escape(prefix)}@([\w-]+)", uri)
    if alias:
        registry.configure()
        held = registry.alias_version(alias.group(1))
        if held is not None:
            return held.version
    return uri


def file_claims(past, name: str) -> str | None:
    """The version the scores file says made it (a number or rules-only); None when it names none usable."""
    from scoring.scorer import RULES_ONLY

    try:
        return past_model_version(past, name) or RULES_ONLY
    except UserError:
        return None


def warn(text: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(redact(text))}", highlight=False, soft_wrap=True)


def short_money(value: float) -> str:
    """An amount that fits a terminal column, in the one compact form ($1.2M, $340.0k, $950); "-" when unknown."""
    from scoring.reasons import compact

    return compact(value, "$") if math.isfinite(value) else "-"


def say_review(review: QuarterlyReview, page: Path, logged: str | None) -> None:
    from rich.table import Table

    from ingest.display import count, percent

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
    data: ExportArg,
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
            "--until",
            help="End of the period, YYYY-MM-DD, exclusive (default and latest: the day after the data's latest date).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start of the period for a scores file without an as_of column (its as_of)."),
    ] = None,
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
    engine: EngineOpt = Engine.PANDAS,
    spark_master: SparkMasterOpt = "local[2]",
) -> None:
    """What happened since a past scoring: outcomes and return on budget by tier, realised lift, predictions against
    reality, drift, tier movement, and a retrain verdict."""
    from ingest.repair import invalid_rows_mode
    from reports.diff import read_scores
    from reports.report import check_output_folder
    from reports.review import past_as_of
    from reports.review_page import REVIEW_PAGE

    settings = use_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    end = _day(until, "--until")
    start = _day(since, "--since")
    check_output_folder(out, REVIEW_PAGE)  # an --out holding the user's own files is refused before any work
    past = read_scores(past_scores)
    cautions: list[str] = []  # said on the console and on the page
    if start is not None:
        try:
            written = past_as_of(past, str(past_scores), None)
        except DataError:
            written = None  # no usable as_of in the file: --since is what the user knows
        if written is not None and written != start:
            cautions.append(
                f"--since {start.date()} overrides the scores file's as_of {written.date()}: the period, and the deals "
                "judged against these scores, start at --since, not when the scores were made"
            )
    start = past_as_of(past, str(past_scores), start)
    if end is not None and end <= start:
        raise UserError(
            f"--until {end.date()} is not after the past scoring's as_of {start.date()} ({past_scores}): "
            "pass a later --until"
        )
    if model:
        uri: str | None = model
        claimed = file_claims(past, str(past_scores))
        chosen: str | None = explicit_version(model)
        if claimed != chosen:
            cautions.append(
                f"--model {model} overrides the scores file's model_version ({claimed or 'none usable'}): these "
                f"scores' probabilities are judged against {model}'s training holdout, and the review is not logged "
                "to MLflow, since that model's run did not make these scores"
            )
            chosen = None
        elif chosen is not None and chosen.isdigit():  # an alias is reviewed as the version it holds
            uri = registered_uri(chosen, str(past_scores))
    else:
        chosen = past_model_version(past, str(past_scores))
        uri = registered_uri(chosen, str(past_scores)) if chosen else None
    with open_export(data, mapping, rows_mode, settings, engine, spark_master, "abm-tiering review") as export:
        _review(export, past, past_scores, data, out, settings, start, end, uri, chosen, cautions)


def _review(export, past, past_scores: Path, data: str, out: Path, settings, start, end, uri, chosen, cautions) -> None:
    """The review of an export opened on its engine (the rest of `review`)."""
    import pandas as pd

    from ingest.spill import events_by_group
    from reports.report import publish
    from reports.review import Period, build_review, drift_rows
    from reports.review_mlflow import log_review, model_facts
    from reports.review_page import REVIEW_PAGE, render_review
    from scoring.registry import resolve_model

    frame, last = export.data, export.latest
    if end is not None and end > last:  # after the data, activity would look like it stopped: invented drift
        raise UserError(
            f"--until {end.date()} is beyond the data (the export's latest date is "
            f"{(last - pd.Timedelta(days=1)).date()}): pass --until {last.date()} or earlier, or leave it out"
        )
    end = end or last
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
        warn(warning)
    made_the_scores = chosen is not None  # the run behind the model is the run that made these scores
    if facts.trained_until is not None and start < facts.trained_until:
        cautions.append(
            f"the period starts {start.date()}, before the model's training cut-off {facts.trained_until.date()}: "
            "deals closed in between may be its own training deals, which flatter its field ROC AUC and "
            "calibration; the review is not logged to MLflow"
        )
        made_the_scores = False
    for caution in cautions:
        warn(caution)
    with events_by_group(frame), steps(5) as progress:
        progress("scoring the book now")
        features = export.book(tiering_model.config, end)
        scored = tiering_model.score_book(frame, end, model_version=version, features=features)
        now, book = scored.scores, scored.features
        progress("measuring drift")
        reference = current = None
        if tiering_model.is_learned and facts.trained_until is not None:
            then = export.book(tiering_model.config, facts.trained_until)
            reference, current = drift_rows(frame, tiering_model.config, facts.trained_until, book, then)
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
        result.notes.extend(cautions)
        progress("writing the report")
        page = publish(out, REVIEW_PAGE, render_review(result, settings.review.psi_threshold), result.tables())
        logged = None
        if facts.run_id and made_the_scores:
            progress("logging the review to MLflow")
            logged = log_review(result, out)
    say_review(result, page, logged)
