"""The `tiering` command line.

Each command is a thin shell: parse options, call domain functions, print with rich. Known user
errors (bad data, bad config, bad model URI) become one clear message and exit code 2; nothing
prints a traceback at a user.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from features.config import ConfigError, load_config
from features.errors import DataError
from training.stopping import STOPPED, default_sigterm, stop_on_sigterm
from training.tracking import TrackingError

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(
    name="tiering",
    help="Machine-learning tier prediction for account-based marketing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No emoji codes: user text such as "offers.csv:Id: account_id is empty" must print as written, not as an emoji.
# Markup is escaped wherever user text (file names, values, paths) is printed.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


@app.callback()
def _on_start() -> None:
    stop_on_sigterm()


class UserError(Exception):
    """A problem the user can fix; its message says how."""


def friendly_errors(command: Callable) -> Callable:
    """Turn expected failures into one message and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DataError as error:
            err_console.print(f"[bold red]{escape(error.headline())}:[/]")
            # Errors first, then warnings, each warning marked as one (colour alone is lost in a log file).
            for problem in sorted(error.problems, key=lambda p: p.severity != "error"):
                colour, label = ("red", "") if problem.severity == "error" else ("yellow", "warning: ")
                err_console.print(f"[{colour}]- {label}{escape(problem.render())}[/]", highlight=False, soft_wrap=True)
            if error.hint():  # row-level problems: they could be dropped instead (issue 17)
                err_console.print(escape(error.hint()), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (ConfigError, UserError, TrackingError) as error:
            err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except STOPPED:
            err_console.print("[yellow]interrupted: nothing was written[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as error:  # a bug or an environment failure: say so in one line, traceback on demand
            from training.tracking import store_failure

            failure = store_failure(error)  # a tracking server that stopped answering mid-command is no bug
            if failure:
                err_console.print(f"[bold red]error:[/] {escape(failure)}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            if os.environ.get("TIERING_DEBUG"):
                raise
            err_console.print(
                f"[bold red]unexpected error:[/] {escape(error.__class__.__name__)}: "
                f"{escape(str(error).strip().splitlines()[0][:300] if str(error).strip() else '')}\n"
                "Set TIERING_DEBUG=1 to see the traceback, and please report it.",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None
        finally:
            default_sigterm()

    return wrapper


DataDir = Annotated[Path, typer.Argument(help="Folder with the export (CSV or Parquet files).", show_default=False)]
MappingOpt = Annotated[
    str | None,
    typer.Option(
        "--mapping", "-m", help="Mapping preset (canonical, salesforce, hubspot, maven-crm) or a mapping YAML file."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="tiering.yaml to use (default: ./tiering.yaml, else built-in defaults)."),
]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Cut-off date YYYY-MM-DD: only data before it is used.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Model URI, e.g. models:/abm-tiering/3 (default: the champion; rules only if none)."),
]
InvalidRowsOpt = Annotated[
    str | None,
    typer.Option(
        "--invalid-rows",
        help="stop: a row-level problem (empty id, bad date, close before create...) stops the run; drop: "
        "the row is dropped, counted and listed in ./rejected_rows.csv. Default: validation.invalid_rows "
        "in tiering.yaml (stop).",
        show_default=False,
    ),
]


@app.command()
@friendly_errors
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the synthetic export into.")],
    accounts: Annotated[int, typer.Option("--accounts", min=10, help="Number of accounts.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same export.")] = 7,
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write a realistic synthetic CRM export in canonical form, plus truth.csv (never read by training)."""
    from features.generator import generate_export

    if file_format not in ("csv", "parquet"):
        raise UserError(f"--format must be csv or parquet, not {file_format!r}")
    _check_generate_target(out)
    summary = generate_export(out, n_accounts=accounts, seed=seed, file_format=file_format)
    console.print(summary.render() if hasattr(summary, "render") else escape(str(summary)))  # Text: never markup


def _check_generate_target(out: Path) -> None:
    """Refuse a folder whose export files `generate` would overwrite or remove unless it is an earlier synthetic export
    (it holds truth.csv): pointed at a real CRM export by mistake, it would replace the user's accounts.csv."""
    from features.generator import TRUTH_FILE
    from features.schema import TABLES
    from training.files import check_writable_target

    check_writable_target(out, folder=True)
    if not out.is_dir() or (out / TRUTH_FILE).is_file():
        return
    clashing = sorted(
        name for table in TABLES for name in (f"{table}.csv", f"{table}.parquet") if (out / name).exists()
    )
    if clashing:
        raise UserError(
            f"--out {out} holds {', '.join(clashing)}, which is not a synthetic export (no {TRUTH_FILE}): "
            "generating there would replace those files. Pass a new or empty folder"
        )


from training.cli_init import init_command  # noqa: E402  (issue 17: tiering init)

app.command(name="init")(friendly_errors(init_command))

from training.cli_alerts import alerts_command, export_command  # noqa: E402  (issue 15: alerts and CRM write-back)

app.command(name="alerts")(friendly_errors(alerts_command))
app.command(name="export")(friendly_errors(export_command))


@app.command()
@friendly_errors
def validate(
    data: DataDir,
    mapping: MappingOpt = None,
    config: ConfigOpt = None,
    as_of: AsOfOpt = None,
    invalid_rows: InvalidRowsOpt = None,
) -> None:
    """Check an export against the data contract; print a summary and the training window it gives, or every
    problem and exit 2."""
    from features.io import load_export
    from features.repair import check_rejected_target, invalid_rows_mode, report_rejected
    from features.validation import render_summary

    settings = load_config(config)
    cutoff = parse_as_of(as_of)
    mode = invalid_rows_mode(invalid_rows, settings)
    if mode == "drop":
        check_rejected_target()  # before any work: a rejected_rows.csv tiering did not write is never replaced
    loaded = load_export(data, mapping, mode)  # raises DataError on errors
    render_summary(loaded, console)
    report_rejected(loaded, console)
    _print_window(loaded.data, settings, cutoff)
    for sentence in missing_rule_inputs(loaded.data):
        err_console.print(f"[yellow]warning:[/] {escape(sentence)}", highlight=False, soft_wrap=True)


def missing_rule_inputs(data) -> list[str]:
    """Rule components the export cannot inform at all, so they will be the same for every account."""
    from training.guards import RULE_INPUTS, inputs_available

    available = inputs_available(data)
    sentences = []
    for component, inputs in RULE_INPUTS.items():
        if not any(available.get(name, True) for name in inputs):
            sentences.append(f"{component} will be 0 for every account: the export has no {', '.join(inputs)}")
    if len(sentences) == len(RULE_INPUTS):
        sentences.append(
            "rule_score will be the same for every account: rule tiers cannot rank, and the gate will "
            "compare the model against chance"
        )
    return sentences


def _print_window(data, settings, cutoff) -> None:
    """The window `tiering train` would use, its fit / calibration / holdout slices with their won and lost deals,
    and, when a slice is too thin, its dates and counts and what would help."""
    import pandas as pd
    from rich.table import Table

    from training.preview import preview

    day = pd.Timedelta(days=1)
    try:
        seen = preview(data, settings, cutoff)
    except DataError as error:  # no closed opportunity: nothing to place a window on
        reason = "; ".join(problem.message for problem in error.problems)
        console.print(
            f"[yellow]Training window: none ({escape(reason)}): `tiering train` stops until the export "
            "has won or lost opportunities with their close_date.[/]",
            highlight=False,
            soft_wrap=True,
        )
        return
    window = seen.window
    why = "the day after the latest close date" if seen.default_as_of else "from --as-of"
    console.print(
        f"Training window: {window.start.date()} to {(window.as_of - day).date()} (as_of {window.as_of.date()}, {why})",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="What training would see (closed opportunities by close date)")
    for column in ("slice", "from", "to", "won", "lost", "needs"):
        table.add_column(column, justify="right" if column in ("won", "lost") else "left")
    for piece in seen.slices:
        style = "yellow" if piece.thin else None
        table.add_row(
            piece.name,
            str(piece.start.date()),
            str((piece.end - day).date()),
            f"{piece.won:,}",
            f"{piece.lost:,}",
            f"{piece.minimum} won and {piece.minimum} lost",
            style=style,
        )
    console.print(table)
    if not seen.thin:
        console.print("[green]Every slice has enough won and lost opportunities to train and judge a model.[/]")
        return
    for piece in seen.thin:
        console.print(
            f"[yellow]The {piece.name} slice ({piece.dates}) has {piece.won:,} won and {piece.lost:,} lost "
            f"opportunities; training needs at least {piece.minimum} of each.[/]",
            highlight=False,
            soft_wrap=True,
        )
    months = settings.model.window
    lengths = (
        f"model.window.holdout_months ({months.holdout_months}) and model.window.calibration_months "
        f"({months.calibration_months}) in tiering.yaml change the slices' lengths, and model.window.months "
        f"({months.months}) how far back the fit slice starts"
    )
    if seen.suggestion is not None:
        better = preview(data, settings, seen.suggestion)
        counts = ", ".join(f"{piece.name} {piece.won:,} won / {piece.lost:,} lost" for piece in better.slices)
        console.print(
            f"[yellow]--as-of moves the whole window: with --as-of {seen.suggestion.date()} (the nearest "
            f"cut-off that works) every slice has enough ({counts}). Or: {lengths}.[/]",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"[yellow]No --as-of gives every slice enough with this configuration: {lengths}; "
            "or export more closed opportunities.[/]",
            highlight=False,
            soft_wrap=True,
        )


def parse_as_of(value: str | None):
    """--as-of by the one date grammar and range of data files and the API (features.dates)."""
    from features.dates import NotADate, parse_day

    try:
        return parse_day(value, "--as-of")
    except NotADate as error:
        raise UserError(str(error)) from None


def finite_budget(value: float | None) -> float | None:
    """--budget: a finite amount of at least 0 (click reads 'inf', '1e309' and 'nan' as floats)."""
    import math

    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value!r} is not an amount: give a finite number of at least 0, e.g. 250000")
    return value


def say_as_of(as_of, given: bool, default_rule: str) -> None:
    """Print the cut-off a command used, and where it came from."""
    source = "from --as-of" if given else f"default: {default_rule}; --as-of sets another"
    console.print(f"as_of {as_of.date().isoformat()} ({source})", highlight=False)


def warn_far_dates(frame, columns=None) -> None:
    """Warn when a date column's latest value lies far beyond the bulk of its dates (it moves the default as_of)."""
    from features.dates import DATE_COLUMNS, far_beyond_bulk

    for sentence in far_beyond_bulk(frame, columns or DATE_COLUMNS):
        err_console.print(f"[yellow]warning:[/] {escape(sentence)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def steps(total: int):
    """A progress bar over named pipeline steps; yields the callback the pipeline calls per step."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=total)
        seen: list[str] = []

        def advance(step: str) -> None:
            if seen:
                progress.advance(task)
            seen.append(step)
            progress.update(task, description=step)

        yield advance
        progress.update(task, completed=total, description="done")


def _load(data: Path, mapping: str | None, invalid_rows: str = "stop"):
    """The export, validated; with invalid_rows drop, rows with row-level problems are dropped, counted and listed in
    ./rejected_rows.csv (a file of that name tiering did not write is refused before the export is read)."""
    from features.io import load_export
    from features.repair import check_rejected_target, report_rejected

    if invalid_rows == "drop":
        check_rejected_target()
    loaded = load_export(data, mapping, invalid_rows)
    for warning in loaded.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning.render())}", highlight=False, soft_wrap=True)
    report_rejected(loaded, err_console)
    return loaded.data


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

    table = Table(title="Learner selection: chosen on the validation slice, judged on the holdout")
    for column in ("candidate", "validation ROC AUC", "holdout ROC AUC", "rounds", "seconds"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for candidate in result.selection.candidates:
        mark = " (chosen)" if candidate.chosen else ""
        table.add_row(
            escape(candidate.name + mark),
            f"{candidate.validation_auc:.3f}",
            f"{candidate.holdout_auc:.3f}",
            str(candidate.rounds or "-"),
            f"{candidate.seconds:.1f}",
            style="bold" if candidate.chosen else None,
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


@app.command()
@friendly_errors
def train(
    data: DataDir,
    mapping: MappingOpt = None,
    as_of: AsOfOpt = None,
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
) -> None:
    """Train on the closed deals of the window, evaluate on a time-based holdout, log to MLflow, register, gate."""
    from features.repair import invalid_rows_mode
    from training.workflow import train_and_register

    cutoff = parse_as_of(as_of)
    settings = load_config(config)
    frame = _load(data, mapping, invalid_rows_mode(invalid_rows, settings))
    if cutoff is None:
        warn_far_dates(frame, (("opportunities", "close_date"),))  # the default as_of follows the latest close
    with steps(TRAIN_STEPS) as progress:
        outcome = train_and_register(frame, settings, cutoff, progress)
    say_as_of(outcome.result.window.as_of, cutoff is not None, "the day after the latest close date")
    summary = outcome.result.summary
    console.print(
        f"Trained on {summary['closed_opportunities']:,} closed opportunities "
        f"({summary['won']:,} won, win rate {summary['win_rate']:.1%}) from {summary['window_start']} "
        f"to {summary['window_as_of']} (exclusive)."
    )
    console.print(_selection_table(outcome.result))
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


def say_ties(scores) -> None:
    """Ties across tier boundaries, said out loud (the tie-breaking keys decided who is inside)."""
    from training.scoring import describe_ties

    for sentence in describe_ties(scores.attrs.get("boundary_ties", [])):
        err_console.print(f"[yellow]note:[/] {escape(sentence)}", highlight=False, soft_wrap=True)


def tier_count_table(scores, title: str) -> Table:
    from rich.table import Table

    from training.scoring import tier_counts

    table = Table(title=title)
    for column in ("tier", "accounts (learned)", "accounts (rule)", "budget"):
        table.add_column(column, justify="right" if column != "tier" else "left")
    learned, rule = tier_counts(scores, "tier"), tier_counts(scores, "rule_tier")
    for name in learned:
        budget = scores.loc[scores["tier"] == name, "budget"].sum()
        table.add_row(name, f"{learned[name]:,}", f"{rule[name]:,}", f"${budget:,.0f}" if budget == budget else "-")
    return table


@app.command()
@friendly_errors
def score(
    # Text, not Path: with --engine spark these may be cluster URIs (hdfs://, s3a://), which Path would mangle.
    data: Annotated[
        str,
        typer.Argument(
            help="Folder with the export (CSV or Parquet files); with --engine spark, "
            "any folder Spark reads (local, hdfs://, s3a://...).",
            show_default=False,
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Output file: .csv or .parquet (--engine spark: .parquet, written as a Parquet folder)."
        ),
    ],
    mapping: MappingOpt = None,
    model: ModelOpt = None,
    as_of: AsOfOpt = None,
    budget: Annotated[
        float | None, typer.Option("--budget", callback=finite_budget, help="Total budget to split by tier.")
    ] = None,
    overrides: Annotated[
        Path | None, typer.Option("--overrides", help="CSV of account_id,tier,reason,owner pinning accounts.")
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine", help="pandas (one machine) or spark (a Spark cluster; reads canonical tables, writes Parquet)."
        ),
    ] = "pandas",
    spark_master: Annotated[
        str,
        typer.Option(
            "--spark-master", help="Spark master URL for --engine spark, e.g. spark://host:7077, yarn, k8s://..."
        ),
    ] = "local[2]",
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
    alerts_against: Annotated[
        Path | None,
        typer.Option(
            "--alerts-against",
            help="An earlier scores file: after "
            "scoring, write the alerts against it (as `tiering alerts`, "
            "delivered to alerts.webhook_url when set).",
        ),
    ] = None,
    alerts_out: Annotated[
        Path | None,
        typer.Option(
            "--alerts-out", help="Events file for --alerts-against (default: beside --out, NAME.alerts.jsonl)."
        ),
    ] = None,
) -> None:
    """Score every account: rule scores, learned scores, tiers by capacity, budget and reasons."""
    from training.files import read_overrides, write_table
    from training.scoring import RULES_ONLY
    from training.workflow import resolve_model, score_book

    if engine not in ("pandas", "spark"):
        raise UserError(f"--engine must be pandas or spark, not {engine!r}")
    settings = load_config(config)
    from features.repair import invalid_rows_mode

    rows_mode = invalid_rows_mode(invalid_rows, settings)
    previous_scores = None
    if alerts_against is not None:  # refused before any work, like every other option
        from training.cli_alerts import prepare
        from training.diff import read_scores

        alerts_out = alerts_out or Path(out).with_name(f"{Path(out).stem}.alerts.jsonl")
        prepare(alerts_out, settings.alerts.webhook_url)
        previous_scores = read_scores(alerts_against)
    if engine == "spark":
        if rows_mode == "drop":
            raise UserError(
                "--engine spark reads canonical tables as they are and drops no rows; validate and score "
                "with --engine pandas to use --invalid-rows drop (or validation.invalid_rows: drop)"
            )
        if not out.lower().endswith(".parquet"):
            raise UserError(f"--out {out}: --engine spark writes Parquet; name the output {Path(out).stem}.parquet")
        if mapping:
            raise UserError(
                "--engine spark reads canonical tables (accounts, opportunities, engagement, intent as "
                ".parquet or .csv with canonical columns), without --mapping; map an export with --engine pandas"
            )
        try:
            from training.spark_scoring import SparkUnavailable, score_export, spark_session
        except ImportError:
            raise UserError("--engine spark needs pyspark: pip install 'abm-tiering[spark]'") from None
        try:
            with steps(5) as progress:
                progress(f"starting Spark ({spark_master})")
                with spark_session(spark_master) as spark:
                    result = score_export(
                        spark,
                        data,
                        out,
                        model_uri=model,
                        config=settings,
                        as_of=parse_as_of(as_of),
                        budget=budget,
                        overrides=overrides,
                        progress=progress,
                    )
        except SparkUnavailable as error:
            raise UserError(str(error)) from None
        scores, version, pins = result.placement, result.version, result.overrides
        if version == RULES_ONLY:
            _say_no_champion("scored with the rules only", "Score")
    else:
        if Path(out).suffix.lower() not in (".csv", ".parquet"):
            raise UserError(f"--out {out} must end in .csv or .parquet")
        from training.files import check_writable_target
        from training.workflow import default_scoring_as_of

        cutoff = parse_as_of(as_of)  # bad options and unwritable outputs are refused before any work
        check_writable_target(Path(out))
        frame = _load(data, mapping, rows_mode)
        pins = read_overrides(overrides, frame.accounts["account_id"]) if overrides else None
        scorer, version = resolve_model(model, settings)
        if version == RULES_ONLY:
            _say_no_champion("scoring with the rules only", "Score")
        _say_model_config(scorer, version, settings, config)
        if cutoff is None:
            warn_far_dates(frame)
        cutoff = cutoff or default_scoring_as_of(frame)
        say_as_of(cutoff, as_of is not None, "the day after the latest date in the export")
        with steps(1) as progress:
            progress("scoring accounts")
            scores = score_book(frame, scorer, version, cutoff, budget, pins)
        write_table(scores, out)
    if pins is not None:
        console.print(f"{len(pins)} override(s) applied; see the override_reason column.")
    console.print(tier_count_table(scores, f"{len(scores):,} accounts scored with model {escape(version)}"))
    say_ties(scores)
    console.print(f"Scores written to {escape(str(out))}", highlight=False, soft_wrap=True)
    if previous_scores is not None:
        from training.cli_alerts import publish_alerts
        from training.diff import read_scores

        publish_alerts(
            previous_scores,
            read_scores(Path(out)),
            alerts_out,
            settings.alerts.webhook_url,
            settings,
            str(alerts_against),
            str(out),
        )


@app.command()
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


@app.command()
@friendly_errors
def rollback() -> None:
    """Move the champion alias back to the previous champion."""
    from training.workflow import rollback as rollback_champion

    before, after = rollback_champion()
    console.print(f"champion: {before} -> {after}")


def holdout_tier_table(result) -> Table:
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


@app.command()
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
    """Generate a synthetic export, train, score and compare learned with rule tiers, end to end."""
    from features.generator import generate_export
    from features.repair import check_rejected_target, invalid_rows_mode
    from training.files import write_table
    from training.workflow import score_book, train_and_register

    settings = load_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    if rows_mode == "drop":
        check_rejected_target()
    data_dir = out / "data"
    from training.files import check_writable_target
    from training.report import REPORT_PAGE, check_output_folder

    check_writable_target(out / "scores.csv")  # before the work: outputs that cannot be written are refused first
    check_output_folder(out / "report", REPORT_PAGE)
    with steps(TRAIN_STEPS + 3) as progress:
        progress(f"generating {accounts:,} synthetic accounts")
        generate_export(data_dir, n_accounts=accounts, seed=seed)
        progress("loading and validating the export")
        frame = _load(data_dir, None, rows_mode)
        outcome = train_and_register(frame, settings, None, progress)
        progress("scoring every account")
        from training.workflow import resolve_model

        scorer, version = resolve_model(None, settings)
        from training.workflow import default_scoring_as_of

        scoring_as_of = default_scoring_as_of(frame)
        scores = score_book(frame, scorer, version, scoring_as_of, budget)
        scores_path = write_table(scores, out / "scores.csv")
    say_as_of(outcome.result.window.as_of, False, "training: the day after the latest close date")
    say_as_of(scoring_as_of, False, "scoring: the day after the latest date in the export")
    console.print(_selection_table(outcome.result))
    print_training_findings(outcome.result)
    console.print(_gate_table(outcome))
    console.print(
        f"[{'green' if outcome.decision.promote else 'yellow'}]Version {outcome.version} "
        f"{escape(outcome.decision.render())}[/]",
        highlight=False,
    )
    console.print(holdout_tier_table(outcome.result))
    console.print(
        tier_count_table(scores, f"Current book: {len(scores):,} accounts scored with model {escape(version)}")
    )
    say_ties(scores)
    with steps(3) as progress:
        report, _ = write_comparison(
            frame,
            scorer,
            scores,
            version,
            None,
            None,
            budget,
            out / "report",
            f"Synthetic export in {data_dir}",
            progress,
        )
    console.print(
        escape(f"Data: {data_dir}/  Scores: {scores_path}  MLflow: {_tracking_hint()}"), highlight=False, soft_wrap=True
    )
    console.print(f"[bold]Report: {escape(str(report))}[/] (open it in a browser)", highlight=False, soft_wrap=True)


def write_comparison(
    frame,
    scorer,
    scores,
    version: str,
    model_uri: str | None,
    as_of,
    budget: float,
    out: Path,
    data_label: str,
    progress: Callable[[str], None],
):
    """The comparison report and its tables in OUT, logged to the model's training run (compare and demo)."""
    from training.compare import build_comparison, log_report
    from training.report import REPORT_PAGE, publish, render_comparison
    from training.workflow import default_scoring_as_of

    comparison = build_comparison(
        frame,
        scorer,
        scores,
        version=version,
        model_uri=model_uri,
        as_of=as_of or default_scoring_as_of(frame),
        budget=budget,
        progress=progress,
    )
    page = publish(out, REPORT_PAGE, render_comparison(comparison, data_label), comparison.tables())
    if comparison.run_id:
        progress("logging the report to MLflow")
        log_report(comparison.run_id, out)
    return page, comparison


@app.command()
@friendly_errors
def compare(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html and its CSV tables (replaced whole).")],
    mapping: MappingOpt = None,
    model: ModelOpt = None,
    as_of: AsOfOpt = None,
    budget: Annotated[
        float, typer.Option("--budget", callback=finite_budget, help="Budget to split by tier in the report.")
    ] = 1_000_000.0,
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
) -> None:
    """Learned versus rule tiers: an HTML report with plots and the tables behind it, logged to the model's run."""
    from features.repair import invalid_rows_mode
    from training.report import REPORT_PAGE, check_output_folder
    from training.workflow import default_scoring_as_of, resolve_model, score_book

    cutoff = parse_as_of(as_of)  # bad options and an --out holding the user's own files are refused before any work
    settings = load_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    check_output_folder(out, REPORT_PAGE)
    frame = _load(data, mapping, rows_mode)
    scorer, version = resolve_model(model, settings)
    if not scorer.is_learned:
        _say_no_champion("the report compares nothing learned and shows the rule tiers only", "Compare")
    _say_model_config(scorer, version, settings, config)
    if cutoff is None:
        warn_far_dates(frame)
    given, cutoff = cutoff is not None, cutoff or default_scoring_as_of(frame)
    say_as_of(cutoff, given, "the day after the latest date in the export")
    with steps(4) as progress:
        progress("scoring the current book")
        scores = score_book(frame, scorer, version, cutoff, budget)
        page, comparison = write_comparison(
            frame, scorer, scores, version, model, cutoff, budget, out, f"Data: {data}", progress
        )
    for warning in comparison.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if comparison.learned:
        h = comparison.headline
        console.print(
            f"Learned and rule tiers agree for {h['same_tier_share']:.0%} of {len(scores):,} accounts "
            f"(Cohen's kappa {h['kappa_current']:.2f}); {int(h['movers']):,} accounts are 2 or more levels apart."
        )
    run_id = comparison.run_id
    console.print(
        escape(f"Report: {page}" + (f"  (logged to MLflow run {run_id} under compare/)" if run_id else "")),
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@friendly_errors
def diff(
    old_scores: Annotated[
        Path, typer.Argument(help="Earlier scores file (.csv or .parquet from `tiering score`).", show_default=False)
    ],
    new_scores: Annotated[Path, typer.Argument(help="Later scores file of the same book.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for diff.html and its CSV tables (replaced whole).")],
) -> None:
    """Which accounts moved tier between two scorings, up or down, and what changed behind each move."""
    from rich.table import Table

    from training.diff import diff_scores, read_pair
    from training.report import DIFF_PAGE, check_output_folder, publish, render_diff

    check_output_folder(out, DIFF_PAGE)  # before reading: an --out holding the user's own files is refused
    result = diff_scores(*read_pair(old_scores, new_scores), str(old_scores), str(new_scores))
    page = publish(out, DIFF_PAGE, render_diff(result), result.tables())
    table = Table(title=escape(f"Tiers: {old_scores} -> {new_scores}"))
    for column in ("tier", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    for row in result.counts.itertuples():
        table.add_row(row.tier, f"{row.before:,}", f"{row.after:,}", f"{row.change:+,}")
    console.print(table)
    moves = result.moves["direction"].value_counts()
    console.print(
        f"{moves.get('up', 0):,} account(s) moved up and {moves.get('down', 0):,} down, of {result.common:,} "
        f"in both files. Report: {escape(str(page))}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@friendly_errors
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; beyond loopback it needs TIERING_API_KEY.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 3000,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log", help="Log one line per request (method, path, status, time); off by default for latency."
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Start the BentoML service on the champion model (rules only while there is none); follows the alias live."""
    from serving.launch import (
        ACCESS_LOG_ENV,
        CONFIG_ENV,
        CannotListen,
        UnsafeHost,
        check_exposure,
        check_port,
        exec_server,
    )
    from training.settings import SettingsError, check_environment
    from training.tracking import tracking_uri

    try:  # every setting and the address before the server starts: its workers would fail and restart in a loop
        check_environment()
        check_exposure(host)
        check_port(host, port)
    except SettingsError as error:
        raise UserError(f"the environment has settings tiering serve cannot use:\n{error}") from None
    except (UnsafeHost, CannotListen) as error:
        raise UserError(str(error)) from None
    load_config(config)  # a bad file stops here, with its message, rather than leave the service not ready
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())  # read by the service's workers, which inherit this environment
    err_console.print(
        f"Serving the champion of {escape(tracking_uri())} on http://{escape(host)}:{port} (Ctrl-C stops)",
        highlight=False,
    )
    _say_no_champion_to_serve()
    if access_log:
        os.environ[ACCESS_LOG_ENV] = "1"  # read by the service's workers, which inherit this environment
    exec_server(host, port)


def _say_no_champion(doing: str, use_with: str | None) -> None:
    from training.messages import no_champion_message

    err_console.print(f"[yellow]{escape(no_champion_message(doing, use_with))}[/]", highlight=False, soft_wrap=True)


def _say_no_champion_to_serve() -> None:
    """Before the service starts: with no champion, say which version could be promoted. A registry that cannot be
    asked now is the service's to report (it keeps trying, and /readyz says why), so it is not an error here."""
    from training import tracking

    try:
        tracking.configure()
        if tracking.alias_version(tracking.CHAMPION) is None:
            _say_no_champion("the service scores with the rules only until one is promoted", None)
    except TrackingError:
        return


def _say_model_config(scorer, version: str, settings, config: Path | None) -> None:
    """A learned model scores with the configuration it was trained with; say so when --config differs from it."""
    if config is not None and scorer.is_learned and scorer.config != settings:
        err_console.print(
            f"[yellow]note: model {escape(version)} scores with the configuration it was trained with "
            f"(logged with its run as config/tiering.yaml), which differs from {escape(str(config))}; "
            "--config applies when scoring with the rules only.[/]",
            highlight=False,
            soft_wrap=True,
        )


def _tracking_hint() -> str:
    from training.tracking import tracking_uri

    return f"{tracking_uri()} (make ui)"


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
