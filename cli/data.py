"""`tiering generate` and `tiering validate`: where the data comes from and whether it is usable."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import (
    AsOfOpt,
    ConfigOpt,
    DataDir,
    InvalidRowsOpt,
    MappingOpt,
    UserError,
    console,
    err_console,
    friendly_errors,
    parse_as_of,
    use_config,
)
from features.errors import DataError
from sources.synthetic import FileFormat


@friendly_errors
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the synthetic export into.")],
    accounts: Annotated[int, typer.Option("--accounts", min=10, help="Number of accounts.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same export.")] = 7,
    file_format: Annotated[FileFormat, typer.Option("--format", help="Format of the tables.")] = FileFormat.CSV,
    pilot_lift: Annotated[
        float | None,
        typer.Option("--pilot-lift", help="Plant a pilot: treated accounts open this much more pipeline (0.2: +20%)."),
    ] = None,
    pilot_start: Annotated[
        str | None, typer.Option("--pilot-start", help="The planted pilot's first day, YYYY-MM-DD.")
    ] = None,
    families: Annotated[
        bool,
        typer.Option(
            "--families",
            help="Link accounts into families (parent_account_id) whose deals follow the whole family's engagement "
            "and intent; see docs/families.md.",
        ),
    ] = False,
) -> None:
    """Write a realistic synthetic CRM export in canonical form, plus truth.csv (never read by training)."""
    from sources.synthetic import PilotOutsideHistory, PlantedPilot, generate_export

    _check_generate_target(out)
    pilot = None
    if (pilot_lift is None) != (pilot_start is None):
        raise UserError("--pilot-lift and --pilot-start go together: pass both to plant a pilot, or neither")
    if pilot_lift is not None and pilot_start is not None:
        from configuration.tiering import TieringConfig
        from features.dates import NotADate, parse_day

        if not (math.isfinite(pilot_lift) and pilot_lift >= 0):
            raise UserError(f"--pilot-lift {pilot_lift}: give a lift of at least 0, e.g. 0.2 for +20%")
        try:
            start = parse_day(pilot_start, "--pilot-start")
        except NotADate as error:
            raise UserError(str(error)) from None
        assert start is not None
        pilot = PlantedPilot(
            start=start.date().isoformat(), lift=pilot_lift, horizon_days=TieringConfig().pilot.horizon_days
        )
    try:
        summary = generate_export(
            out, n_accounts=accounts, seed=seed, file_format=file_format, pilot=pilot, families=families
        )
    except PilotOutsideHistory as error:
        raise UserError(f"--pilot-start: {error}") from None
    console.print(summary.render() if hasattr(summary, "render") else escape(str(summary)))  # Text: never markup


def _check_generate_target(out: Path) -> None:
    """Refuse a folder whose export files `generate` would overwrite or remove unless it is an earlier synthetic export
    (it holds truth.csv): pointed at a real CRM export by mistake, it would replace the user's accounts.csv."""
    from features.schema import TABLES
    from ingest.files import check_writable_target
    from sources.synthetic import TRUTH_FILE

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
    from cli.summary import render_summary, report_rejected
    from ingest.io import load_export
    from ingest.repair import check_rejected_target, invalid_rows_mode

    settings = use_config(config)
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
