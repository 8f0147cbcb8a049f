"""What every `tiering` command shares: the typer app, the consoles, the options, and the one way a
known failure becomes a clear message and exit code 2 (never a traceback).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cli.stopping import STOPPED, default_sigterm, stop_on_sigterm
from features.config import ConfigError
from features.errors import DataError
from features.redact import redact
from ingest.validation import InvalidRows
from scoring.registry import TrackingError
from workspace.errors import StoreError

if TYPE_CHECKING:
    from rich.table import Table

    from configuration.tiering import TieringConfig


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
    """Turn expected failures into one message and a non-zero exit, never a traceback; every message passes through
    `redact`, so no URL's secret reaches the terminal, whichever layer wrote the message."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DataError as error:
            err_console.print(f"[bold red]{escape(redact(error.headline()))}:[/]")
            # Errors first, then warnings, each warning marked as one (colour alone is lost in a log file).
            for problem in sorted(error.problems, key=lambda p: p.severity != "error"):
                colour, label = ("red", "") if problem.severity == "error" else ("yellow", "warning: ")
                err_console.print(
                    f"[{colour}]- {label}{escape(redact(problem.render()))}[/]", highlight=False, soft_wrap=True
                )
            if error.hint():  # row-level problems: they could be dropped instead
                err_console.print(escape(error.hint()), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (ConfigError, UserError, TrackingError, StoreError) as error:
            err_console.print(f"[bold red]error:[/] {escape(redact(str(error)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except STOPPED:
            err_console.print("[yellow]interrupted: nothing was written[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as error:  # a bug or an environment failure: say so in one line, traceback on demand
            from scoring.registry import store_failure

            failure = store_failure(error)  # a tracking server that stopped answering mid-command is no bug
            if failure:
                err_console.print(f"[bold red]error:[/] {escape(redact(failure))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            from ingest.settings import debugging

            if debugging():
                raise
            err_console.print(
                f"[bold red]unexpected error:[/] {escape(error.__class__.__name__)}: "
                f"{escape(redact(str(error)).strip().splitlines()[0][:300] if str(error).strip() else '')}\n"
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
    InvalidRows | None,
    typer.Option(
        "--invalid-rows",
        help="stop: a row-level problem (empty id, bad date, close before create...) stops the run; drop: "
        "the row is dropped, counted and listed in ./rejected_rows.csv. Default: validation.invalid_rows "
        "in tiering.yaml (stop).",
        show_default=False,
    ),
]


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

    columns = columns or DATE_COLUMNS
    for sentence in far_beyond_bulk(_event_dates_gathered(frame, columns), columns):
        err_console.print(f"[yellow]warning:[/] {escape(sentence)}", highlight=False, soft_wrap=True)


def _event_dates_gathered(frame, columns):
    """The book with the event tables' date columns read back from their groups, when the events are held by group
    (the bulk of a column's dates is a quantile of all of them: 8 bytes an event, not the events' every column)."""
    import pandas as pd

    from features.groups import EVENT_TABLES
    from features.schema import CrmData

    wanted = [(table, column) for table, column in columns if table in EVENT_TABLES]
    if frame.grouped is None or not wanted:
        return frame
    parts: dict[tuple[str, str], list] = {where: [] for where in wanted}
    for group in range(frame.grouped.groups):
        events = frame.grouped.read(group)
        for table, column in wanted:
            parts[table, column].append(events[table][column])
        del events
    gathered = {
        table: pd.DataFrame({column: pd.concat(parts[table, column], ignore_index=True)}) for table, column in wanted
    }
    return CrmData(frame.accounts, frame.opportunities, **gathered, present=frame.present)


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


def load_data(
    data: str | Path, mapping: str | None, invalid_rows: InvalidRows = InvalidRows.STOP, spill: Path | None = None
):
    """The export, validated; with invalid_rows drop, rows with row-level problems are dropped, counted and listed in
    ./rejected_rows.csv (a file of that name tiering did not write is refused before the export is read). With
    `spill` (`ingest.spill.spill_folder`), the events are read in batches and held by group there."""
    from cli.summary import report_rejected
    from ingest.io import load_export
    from ingest.repair import check_rejected_target

    if invalid_rows == "drop":
        check_rejected_target()
    loaded = load_export(data, mapping, invalid_rows, spill)
    for warning in loaded.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning.render())}", highlight=False, soft_wrap=True)
    report_rejected(loaded, err_console)
    return loaded.data


def say_ties(scores) -> None:
    """Ties across tier boundaries, said out loud (the tie-breaking keys decided who is inside)."""
    from scoring.scorer import describe_ties

    for sentence in describe_ties(scores.attrs.get("boundary_ties", [])):
        err_console.print(f"[yellow]note:[/] {escape(sentence)}", highlight=False, soft_wrap=True)


def say_open_at_deal_size(count: int, figures: str) -> None:
    """Open deals without an amount were counted at their account's expected deal size in `figures`: say how many."""
    if count:
        err_console.print(
            f"[yellow]note:[/] {count:,} open deal(s) have no amount; {figures} count each at its account's expected "
            "deal size (map or fill opportunities.amount to use the real ones)",
            highlight=False,
            soft_wrap=True,
        )


def tier_count_table(scores, title: str) -> Table:
    from rich.table import Table

    from scoring.scorer import tier_counts

    table = Table(title=title)
    for column in ("tier", "accounts (learned)", "accounts (rule)", "budget"):
        table.add_column(column, justify="right" if column != "tier" else "left")
    learned, rule = tier_counts(scores, "tier"), tier_counts(scores, "rule_tier")
    for name in learned:
        budget = scores.loc[scores["tier"] == name, "budget"].sum()
        table.add_row(name, f"{learned[name]:,}", f"{rule[name]:,}", f"${budget:,.0f}" if budget == budget else "-")
    return table


def say_no_champion(doing: str, use_with: str | None) -> None:
    from scoring.messages import no_champion_message

    err_console.print(f"[yellow]{escape(no_champion_message(doing, use_with))}[/]", highlight=False, soft_wrap=True)


def say_no_champion_to_serve() -> None:
    """Before the service starts: with no champion, say which version could be promoted. A registry that cannot be
    asked now is the service's to report (it keeps trying, and /readyz says why), so it is not an error here."""
    from scoring import registry

    try:
        registry.configure()
        if registry.alias_version(registry.CHAMPION) is None:
            say_no_champion("the service scores with the rules only until one is promoted", None)
    except TrackingError:
        return


def use_config(path: Path | None) -> TieringConfig:
    """The configuration a command runs with (`--config`, else the workspace's active business configuration over
    ./tiering.yaml or the defaults, else ./tiering.yaml, else the defaults), said on stderr."""
    config, label = active_config(path)
    err_console.print(f"configuration: {escape(label)}", highlight=False, soft_wrap=True)
    return config


def active_config(path: Path | None = None) -> tuple[TieringConfig, str]:
    """`--config` when given; else the latest business configuration published in the workspace store (when there
    is one) laid over ./tiering.yaml or the defaults; else those. (configuration, where it came from)."""
    from configuration.tiering import choose_config
    from workspace.active import active_version_over

    choice = choose_config(path)
    if path is not None:
        return choice.config, choice.label
    config, label, _ = active_version_over(choice.config, choice.label)
    return config, label


def say_model_config(scorer, version: str, settings: TieringConfig, config: Path | None) -> None:
    """A learned model keeps the feature settings and learners it was trained with (the business knobs of the
    configuration apply); say so when the configuration's model part differs from the model's."""
    if (
        config is not None
        and scorer.is_learned
        and scorer.config.prediction_settings() != settings.prediction_settings()
    ):
        err_console.print(
            f"[yellow]note: model {escape(version)} keeps the feature settings and learners it was trained with "
            f"(logged with its run as config/tiering.yaml), which differ from {escape(str(config))}; its rule "
            "weights, blend, tiers and budget apply, the rest applies when scoring with the rules only.[/]",
            highlight=False,
            soft_wrap=True,
        )


def tracking_hint() -> str:
    from scoring.registry import tracking_uri

    return f"{redact(tracking_uri())} (make ui)"
