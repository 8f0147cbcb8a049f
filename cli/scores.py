"""`tiering score`, `compare` and `diff`: scores, learned against rule tiers, and what moved."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.common import (
    AsOfOpt,
    ConfigOpt,
    DataDir,
    InvalidRowsOpt,
    MappingOpt,
    ModelOpt,
    UserError,
    console,
    err_console,
    finite_budget,
    friendly_errors,
    load_data,
    parse_as_of,
    say_as_of,
    say_model_config,
    say_no_champion,
    say_open_at_deal_size,
    say_ties,
    steps,
    tier_count_table,
    use_config,
    warn_far_dates,
)
from cli.engines import Engine, ExportArg, SparkMasterOpt, refuse_for_spark, spark_failures, spark_log_level

if TYPE_CHECKING:
    from workspace import WorkspaceStore


@friendly_errors
def score(
    data: ExportArg,
    # Text, not Path: with --engine spark this may be a cluster URI, which Path would mangle.
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
        Engine,
        typer.Option(
            "--engine", help="pandas (one machine) or spark (a Spark cluster; reads canonical tables, writes Parquet)."
        ),
    ] = Engine.PANDAS,
    spark_master: SparkMasterOpt = "local[2]",
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
    publish: Annotated[
        bool,
        typer.Option(
            "--publish", help="Also record the scores in the workspace store (created on first use), for the pages."
        ),
    ] = False,
) -> None:
    """Score every account: rule scores, learned scores, tiers by capacity, budget and reasons.

    Active pins in the workspace store (when there is one) apply beside --overrides.
    """
    from activation.holdout import pilot_groups
    from cli.pilot import active_pilots
    from cli.workspace import merged_overrides, one_value, open_existing_store, publish_scores
    from ingest.files import read_overrides, write_table
    from scoring.pipeline import counted_at_deal_size
    from scoring.registry import resolve_model
    from scoring.scorer import RULES_ONLY, SCORE_COLUMNS

    settings = use_config(config)
    from ingest.repair import invalid_rows_mode

    budget = budget if budget is not None else settings.budget.total  # --budget, else budget.total
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    # With --publish an unreachable or outdated store is refused before any work; without, a store is read for
    # its pins when one exists, and never created.
    store: WorkspaceStore | None
    if publish:
        from workspace import WorkspaceStore

        store = WorkspaceStore.open()
    else:
        store = open_existing_store()
    store_pins = 0

    def add_pins(file_pins, account_ids):
        nonlocal store_pins
        pins, store_pins = merged_overrides(file_pins, store, account_ids)
        return pins

    with contextlib.ExitStack() as stack:  # holds the events file's lock from the check to the delivery
        against = None  # with --alerts-against: the earlier scores, the events file and its lock
        if alerts_against is not None:  # refused before any work, like every other option
            from cli.alerts import prepare
            from reports.diff import read_scores

            events_file = alerts_out or Path(out).with_name(f"{Path(out).stem}.alerts.jsonl")
            held = stack.enter_context(prepare(events_file, settings.alerts.webhook_url))
            against = (read_scores(alerts_against), events_file, held)
        if engine == Engine.SPARK:
            refuse_for_spark(mapping, rows_mode)
            if not out.lower().endswith(".parquet"):
                raise UserError(f"--out {out}: --engine spark writes Parquet; name the output {Path(out).stem}.parquet")
            spark_as_of = parse_as_of(as_of)
            if against is not None and spark_as_of is not None:  # the default as_of is known only to Spark
                from activation.alerts import check_order_and_book

                check_order_and_book(against[0], str(alerts_against), spark_as_of.date().isoformat(), [], out)
            with spark_failures():
                from scoring.spark import score_export, spark_session

                with steps(5) as progress:
                    progress(f"starting Spark ({spark_master})")
                    with spark_session(spark_master, log_level=spark_log_level()) as spark:
                        result = score_export(
                            spark,
                            data,
                            out,
                            model_uri=model,
                            config=settings,
                            as_of=spark_as_of,
                            budget=budget,
                            overrides=(lambda ids: read_overrides(overrides, ids)) if overrides else None,
                            progress=progress,
                            add_pins=add_pins,
                            pilot_groups=active_pilots(),
                        )
            scores, version, pins = result.placement, result.version, result.overrides
            if version == RULES_ONLY:
                say_no_champion("scored with the rules only", "Score")
        else:
            if Path(out).suffix.lower() not in (".csv", ".parquet"):
                raise UserError(f"--out {out} must end in .csv or .parquet")
            from features.activity import default_as_of
            from ingest.files import check_writable_target
            from ingest.spill import events_by_group, spill_folder

            cutoff = parse_as_of(as_of)  # bad options and unwritable outputs are refused before any work
            check_writable_target(Path(out))
            folder = stack.enter_context(spill_folder())  # the events, read in batches and held by group there
            frame = load_data(data, mapping, rows_mode, folder)
            pins = add_pins(
                read_overrides(overrides, frame.accounts["account_id"]) if overrides else None,
                frame.accounts["account_id"],
            )
            scorer, version = resolve_model(model, settings)
            if version == RULES_ONLY:
                say_no_champion("scoring with the rules only", "Score")
            say_model_config(scorer, version, settings, config)
            if cutoff is None:
                warn_far_dates(frame)
            cutoff = cutoff or default_as_of(frame)
            say_as_of(cutoff, as_of is not None, "the day after the latest date in the export")
            if against is not None:  # the earlier scoring must come before this one, of the same book
                from activation.alerts import check_order_and_book

                accounts = frame.accounts["account_id"].astype("str")
                check_order_and_book(against[0], str(alerts_against), cutoff.date().isoformat(), accounts, out)
            with events_by_group(frame), steps(1) as progress:
                progress("scoring accounts")
                scored = scorer.score_book(frame, cutoff, budget=budget, overrides=pins, model_version=version)
                scores, features = scored.scores, scored.features
            # After the SPEC columns, before the family ones (the scores file's order).
            scores.insert(len(SCORE_COLUMNS), "pilot_group", pilot_groups(scores["account_id"], active_pilots()))
            write_table(scores, out)
            if scorer.can_forecast:
                say_open_at_deal_size(counted_at_deal_size(features, scores["expected_deal_size"]), "expected_revenue")
        if pins is not None:
            pinned_here = f", {store_pins} of them pinned in the workspace" if store_pins else ""
            console.print(f"{len(pins)} override(s) applied{pinned_here}; see the override_reason column.")
        console.print(tier_count_table(scores, f"{len(scores):,} accounts scored with model {escape(version)}"))
        say_ties(scores)
        console.print(f"Scores written to {escape(str(out))}", highlight=False, soft_wrap=True)
        if publish:
            assert store is not None
            if engine == Engine.SPARK:  # the placement alone is in memory: publish the file Spark wrote
                from reports.diff import read_scores

                scores, accounts, opportunities = read_scores(Path(out)), None, None
            else:
                accounts, opportunities = frame.accounts, frame.opportunities
            given = spark_as_of if engine == Engine.SPARK else cutoff
            published_as_of = one_value(scores, "as_of") or (str(given.date()) if given is not None else None)
            if published_as_of is None:
                raise UserError(f"{out}: its as_of column holds no single date; publish it with --as-of")
            publish_scores(
                store,
                scores,
                accounts,
                published_as_of,
                version,
                settings.model_dump(mode="json"),
                "tiering score",
                opportunities,
            )
        if store is not None:
            store.close()
        if against is not None:
            from cli.alerts import publish_alerts
            from reports.diff import read_scores

            previous_scores, events_file, held = against
            publish_alerts(
                previous_scores,
                read_scores(Path(out)),
                events_file,
                settings.alerts.webhook_url,
                settings,
                str(alerts_against),
                str(out),
                held,
            )


def write_comparison(
    frame,
    scorer,
    scores,
    features,
    version: str,
    model_uri: str | None,
    as_of,
    budget: float,
    out: Path,
    data_label: str,
    progress: Callable[[str], None],
):
    """The comparison report and its tables in OUT, logged to the model's training run (compare and demo)."""
    from features.activity import default_as_of
    from reports.compare import build_comparison, log_report
    from reports.report import REPORT_PAGE, publish, render_comparison

    comparison = build_comparison(
        frame,
        scorer,
        scores,
        features,
        version=version,
        model_uri=model_uri,
        as_of=as_of or default_as_of(frame),
        budget=budget,
        progress=progress,
    )
    page = publish(out, REPORT_PAGE, render_comparison(comparison, data_label), comparison.tables())
    if comparison.run_id:
        progress("logging the report to MLflow")
        log_report(comparison.run_id, out)
    return page, comparison


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
    from features.activity import default_as_of
    from ingest.repair import invalid_rows_mode
    from reports.report import REPORT_PAGE, check_output_folder
    from scoring.pipeline import counted_at_deal_size
    from scoring.registry import resolve_model

    cutoff = parse_as_of(as_of)  # bad options and an --out holding the user's own files are refused before any work
    settings = use_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    check_output_folder(out, REPORT_PAGE)
    frame = load_data(data, mapping, rows_mode)
    scorer, version = resolve_model(model, settings)
    if not scorer.is_learned:
        say_no_champion("the report compares nothing learned and shows the rule tiers only", "Compare")
    say_model_config(scorer, version, settings, config)
    if cutoff is None:
        warn_far_dates(frame)
    given, cutoff = cutoff is not None, cutoff or default_as_of(frame)
    say_as_of(cutoff, given, "the day after the latest date in the export")
    with steps(5) as progress:
        progress("scoring the current book")
        scored = scorer.score_book(frame, cutoff, budget=budget, model_version=version)
        scores, features = scored.scores, scored.features
        page, comparison = write_comparison(
            frame, scorer, scores, features, version, model, cutoff, budget, out, f"Data: {data}", progress
        )
    for warning in comparison.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if scorer.can_forecast:
        say_open_at_deal_size(
            counted_at_deal_size(features, scores["expected_deal_size"]), "expected_revenue and the forecast"
        )
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

    from reports.diff import diff_scores, read_pair
    from reports.report import DIFF_PAGE, check_output_folder, publish, render_diff

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
