"""`tiering train`, `promote`, `rollback` and `demo`: the models and the champion."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.common import (
    AsOfOpt,
    ConfigOpt,
    InvalidRowsOpt,
    MappingOpt,
    console,
    err_console,
    finite_budget,
    friendly_errors,
    load_data,
    parse_as_of,
    say_as_of,
    say_ties,
    steps,
    tier_count_table,
    tracking_hint,
    use_config,
    warn_far_dates,
)
from cli.engines import Engine, EngineOpt, ExportArg, SparkMasterOpt, open_export
from cli.scores import write_comparison

if TYPE_CHECKING:
    from rich.table import Table

TRAIN_STEPS = 13  # progress steps of a training run (features, checks, search, evaluation, final, MLflow)


def _gate_table(outcome) -> Table:
    from rich.table import Table

    result = outcome.result
    metrics = result.metrics
    table = Table(title=f"Holdout ({result.summary['holdout_opportunities']:,} opportunities)", show_lines=False)
    table.add_column("model")
    for name in ("ROC AUC", "PR AUC", "Brier", "log loss", "ECE"):
        table.add_column(name, justify="right")
    learner = result.scorer.win_model.recipe.describe()
    rule_label = "rule score (constant: chance)" if metrics.get("rule_score_constant") else "rule score"
    for label, prefix in ((f"shipped: {learner}", "model"), ("logistic regression", "logreg"), (rule_label, "rule")):
        table.add_row(
            escape(label),
            *[f"{metrics[f'{prefix}_{k}']:.3f}" for k in ("roc_auc", "pr_auc", "brier", "log_loss", "ece")],
        )
    return table


def _selection_table(result) -> Table:
    from rich.table import Table

    table = Table(title="Learner selection: chosen before the holdout, judged on it")
    for column in ("candidate", "validation ROC AUC", "rolling folds (pooled)", "holdout ROC AUC", "rounds", "seconds"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for candidate in result.selection.candidates:
        mark = " (chosen)" if candidate.chosen else ""
        pooled = candidate.pooled_auc
        table.add_row(
            escape(candidate.name + mark),
            f"{candidate.validation_auc:.3f}",
            "-" if pooled != pooled else f"{pooled:.3f} ± {candidate.pooled_noise:.3f}",
            f"{candidate.holdout_auc:.3f}",
            str(candidate.rounds or "-"),
            f"{candidate.seconds:.1f}",
            style="bold" if candidate.chosen else None,
        )
    return table


def _fold_table(result) -> Table:
    """The finalists' ROC AUC on each rolling validation period, pooled, and the noise of the difference."""
    from rich.table import Table

    folds = result.selection.folds
    table = Table(title="The finalists on rolling validation periods (each fitted on the months before it)")
    for column in folds.columns:
        if column != "chosen":
            table.add_column(escape(column), justify="left" if column == "candidate" else "right")
    for _, row in folds.iterrows():
        cells = [f"{value:.3f}" for value in row.drop(["candidate", "chosen"])]
        table.add_row(
            escape(row["candidate"] + (" (chosen)" if row["chosen"] else "")),
            *cells,
            style="bold" if row["chosen"] else None,
        )
    return table


def print_training_findings(result) -> None:
    """Refused features, warnings and the run's own decisions, each in one line a user can act on."""
    for leak in result.leaks:
        err_console.print(f"[yellow]refused:[/] {escape(leak.render())}", highlight=False, soft_wrap=True)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)


@friendly_errors
def train(
    data: ExportArg,
    mapping: MappingOpt = None,
    as_of: AsOfOpt = None,
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
    engine: EngineOpt = Engine.PANDAS,
    spark_master: SparkMasterOpt = "local[2]",
) -> None:
    """Train on the closed deals of the window, evaluate on a time-based holdout, log to MLflow, register, gate."""
    from ingest.repair import invalid_rows_mode
    from ingest.spill import events_by_group
    from training.workflow import train_and_register

    cutoff = parse_as_of(as_of)
    settings = use_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    on_spark = engine == Engine.SPARK
    # Nothing is registered unless the whole run succeeds: registration is its last step.
    # One build of rows, then the fit: Spark stops in between, and on one machine its memory goes to the fit.
    app = "abm-tiering train"
    with open_export(data, mapping, rows_mode, settings, engine, spark_master, app, builds_once=True) as export:
        if cutoff is None and not on_spark:  # the default as_of follows the latest close
            warn_far_dates(export.data, (("opportunities", "close_date"),))
        with events_by_group(export.data), steps(TRAIN_STEPS) as progress:
            outcome = train_and_register(export.data, settings, cutoff, progress, export.rows(settings))
    say_as_of(outcome.result.window.as_of, cutoff is not None, "the day after the latest close date")
    summary = outcome.result.summary
    console.print(
        f"Trained on {summary['closed_opportunities']:,} closed opportunities "
        f"({summary['won']:,} won, win rate {summary['win_rate']:.1%}) from {summary['window_start']} "
        f"to {summary['window_as_of']} (exclusive)."
    )
    console.print(
        f"Feature rows built by the {outcome.result.engine} engine; training rows digest "
        f"{outcome.result.rows_digest[:16]} (MLflow tag training_rows_digest)."
    )
    console.print(_selection_table(outcome.result))
    console.print(_fold_table(outcome.result))
    console.print(_gate_table(outcome))
    metrics = outcome.result.metrics
    excluded = int(metrics.get("deal_excluded", 0))
    console.print(
        f"Deal size: R² on log amount {metrics['deal_r2_log']:.3f}, MAPE {metrics['deal_mape']:.1%} "
        f"(median baseline R² {metrics['deal_baseline_r2_log']:.3f})"
        + (f"; {excluded:,} won deal(s) without a positive amount left out of these figures." if excluded else ".")
    )
    print_training_findings(outcome.result)
    colour = "green" if outcome.decision.promote else "yellow"
    console.print(f"[{colour}]Version {outcome.version} {escape(outcome.decision.render())}[/]", highlight=False)
    if not outcome.decision.promote:
        console.print(f"The champion stays {outcome.previous_champion or 'unset (scoring uses rules only)'}.")


@friendly_errors
def promote(version: Annotated[str, typer.Argument(help="Registered model version to make champion.")]) -> None:
    """Move the champion alias to VERSION (the registry keeps the history)."""
    from training.workflow import promote as promote_version

    before, after = promote_version(version)
    console.print(f"champion: {before or 'none'} -> {after}")
    if after != version:  # another command promoted a version at the same moment, after this one
        err_console.print(
            f"[yellow]version {escape(version)} was promoted, but another command promoted version "
            f"{escape(str(after))} right after it; {escape(str(after))} is champion[/]",
            highlight=False,
        )


@friendly_errors
def rollback() -> None:
    """Move the champion alias back to the previous champion."""
    from training.workflow import rollback as rollback_champion

    before, after = rollback_champion()
    console.print(f"champion: {before} -> {after}")


def holdout_tiers_console(result) -> Table:
    from rich.table import Table

    table = Table(
        title=f"Holdout from {result.window.holdout_start.date()}: tiers decided at its start, outcomes after"
    )
    for column in ("tier", "tiering", "accounts", "win rate", "won revenue", "share"):
        table.add_column(column, justify="left" if column in ("tier", "tiering") else "right")
    learned, rule = (result.tier_tables[k].set_index("tier") for k in ("learned", "rule"))
    for name in learned.index:
        for label, side in (("learned", learned), ("rule", rule)):
            row = side.loc[name]
            rate = "-" if row["win_rate"] != row["win_rate"] else f"{row['win_rate']:.1%}"
            share = "-" if row["revenue_share"] != row["revenue_share"] else f"{row['revenue_share']:.0%}"
            table.add_row(
                name if label == "learned" else "",
                label,
                f"{int(row['accounts']):,}",
                rate,
                f"${row['won_revenue']:,.0f}",
                share,
                end_section=label == "rule",
            )
    return table


@friendly_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's data, scores and report.")] = Path(
        "demo-output"
    ),
    accounts: Annotated[int, typer.Option("--accounts", min=500, help="Accounts in the synthetic export.")] = 5000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    budget: Annotated[
        float, typer.Option("--budget", callback=finite_budget, help="Budget to split by tier.")
    ] = 1_000_000.0,
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
) -> None:
    """Generate a synthetic export, train, score, compare learned with rule tiers, and open the workspace on it."""
    from ingest.files import write_table
    from ingest.repair import check_rejected_target, invalid_rows_mode
    from sources.synthetic import generate_export
    from training.workflow import train_and_register

    settings = use_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    if rows_mode == "drop":
        check_rejected_target()
    data_dir = out / "data"
    from ingest.files import check_writable_target
    from reports.report import REPORT_PAGE, check_output_folder

    check_writable_target(out / "scores.csv")  # before the work: outputs that cannot be written are refused first
    check_output_folder(out / "report", REPORT_PAGE)
    from cli.workspace import first_contact
    from workspace import WorkspaceStore

    store = WorkspaceStore.open()  # an outdated or unreachable store is refused before the work, as with --publish
    try:
        with steps(TRAIN_STEPS + 3) as progress:
            progress(f"generating {accounts:,} synthetic accounts")
            generate_export(data_dir, n_accounts=accounts, seed=seed)
            progress("loading and validating the export")
            frame = load_data(data_dir, None, rows_mode)
            outcome = train_and_register(frame, settings, None, progress)
            progress("scoring every account")
            from scoring.registry import resolve_model

            scorer, version = resolve_model(None, settings)
            from features.activity import default_as_of

            scoring_as_of = default_as_of(frame)
            scored = scorer.score_book(frame, scoring_as_of, budget=budget, model_version=version)
            scores, features = scored.scores, scored.features
            scores_path = write_table(scores, out / "scores.csv")
        say_as_of(outcome.result.window.as_of, False, "training: the day after the latest close date")
        say_as_of(scoring_as_of, False, "scoring: the day after the latest date in the export")
        console.print(_selection_table(outcome.result))
        console.print(_fold_table(outcome.result))
        print_training_findings(outcome.result)
        console.print(_gate_table(outcome))
        console.print(
            f"[{'green' if outcome.decision.promote else 'yellow'}]Version {outcome.version} "
            f"{escape(outcome.decision.render())}[/]",
            highlight=False,
        )
        console.print(holdout_tiers_console(outcome.result))
        console.print(
            tier_count_table(scores, f"Current book: {len(scores):,} accounts scored with model {escape(version)}")
        )
        say_ties(scores)
        with steps(4) as progress:
            report, _ = write_comparison(
                frame,
                scorer,
                scores,
                features,
                version,
                None,
                scoring_as_of,
                budget,
                out / "report",
                f"Synthetic export in {data_dir}",
                progress,
            )
        console.print(
            escape(f"Data: {data_dir}/  Scores: {scores_path}  MLflow: {tracking_hint()}"),
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"[bold]Report: {escape(str(report))}[/] (open it in a browser)", highlight=False, soft_wrap=True)
        first_contact(
            store, scores, frame.accounts, scoring_as_of, version, settings, "tiering demo", frame.opportunities
        )
    finally:
        store.close()
