"""The `tiering` command line.

Each command is a thin shell: parse options, call domain functions, print with rich. Known user
errors (bad data, bad config, bad model URI) become one clear message and exit code 2; nothing
prints a traceback at a user.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

from features.config import ConfigError
from features.errors import DataError

app = typer.Typer(
    name="tiering",
    help="Machine-learning tier prediction for account-based marketing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A problem the user can fix; its message says how."""


def friendly_errors(command: Callable) -> Callable:
    """Turn expected failures into one message and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DataError as error:
            errors = [p for p in error.problems if p.severity == "error"]
            err_console.print(f"[bold red]{len(errors)} problem(s) stop this run:[/]")
            for problem in error.problems:
                colour = "red" if problem.severity == "error" else "yellow"
                err_console.print(f"[{colour}]- {problem.render()}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (ConfigError, UserError) as error:
            err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted: nothing was written[/]")
            raise typer.Exit(130) from None

    return wrapper


DataDir = Annotated[Path, typer.Argument(help="Folder with the export (CSV or Parquet files).", show_default=False)]
MappingOpt = Annotated[
    Optional[str],
    typer.Option("--mapping", "-m", help="Mapping preset (canonical, salesforce, hubspot, maven-crm) or a mapping YAML file."),
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
    summary = generate_export(out, n_accounts=accounts, seed=seed, file_format=file_format)
    console.print(summary.render() if hasattr(summary, "render") else str(summary))


@app.command()
@friendly_errors
def validate(data: DataDir, mapping: MappingOpt = None) -> None:
    """Check an export against the data contract; print a summary, or every problem and exit 2."""
    from features.io import load_export
    from features.validation import render_summary

    loaded = load_export(data, mapping)  # raises DataError on errors
    render_summary(loaded, console)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
