"""`tiering init DATA [--out FILE]`: inspect an export, write a draft mapping (every guess commented), validate
with it and say what to fix next. Registered in `cli.main`; the inspection itself is `ingest.draft`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def init_command(
    data: Annotated[Path, typer.Argument(help="Folder with the export (CSV or Parquet files).", show_default=False)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the draft mapping; never overwritten.")
    ] = Path("mapping.yaml"),
) -> None:
    """Inspect an export and write a draft mapping, every guess commented (a preset's export is recognised), then
    validate with it and print what to fix next. Exit 0 when the draft validates, 2 when something is left to fix."""
    from cli.summary import render_summary
    from features.errors import DataError
    from ingest.draft import check_draft_target, draft_mapping, write_new
    from ingest.io import load_export

    check_draft_target(out)  # before any work: init never replaces a file, and can write where it is told
    draft = draft_mapping(data)
    write_new(out, draft.render())
    say(f"Draft mapping written to {out}")
    if draft.preset:
        say(f"Recognised: the {draft.preset} export (the draft is that preset, written out)")
    for table, entries in draft.sections.items():
        source = next((entry.value for entry in entries if entry.key == "file"), None)
        how = f"from {source}" if source else "from the opportunities rows"
        say(f"  {table}: {how}")
    for table, why in draft.absent.items():
        say(f"  {table}: not found ({why})")
    for name in draft.unreadable:
        say(f"  not read: {name}")
    for name in draft.unused:
        say(f"  not used: {name} (it did not look like any table)")
    say("")
    try:
        loaded = load_export(data, out)
    except DataError as error:
        err_console.print(
            f"[bold yellow]The draft does not validate yet: {escape(error.headline())}.[/]", highlight=False
        )
        for problem in sorted(error.problems, key=lambda p: p.severity != "error"):
            label = "" if problem.severity == "error" else "warning: "
            err_console.print(Text(f"- {label}{problem.render()}"), soft_wrap=True)
        if error.hint():
            err_console.print(Text(error.hint()), soft_wrap=True)
        _next_steps(draft, data, out, valid=False)
        raise typer.Exit(2) from None
    render_summary(loaded, console)
    _next_steps(draft, data, out, valid=True)


def say(text: str) -> None:
    console.print(Text(text), soft_wrap=True)


def _next_steps(draft, data: Path, out: Path, valid: bool) -> None:
    if draft.notes:
        say("To decide in the draft (each is commented there):")
        for note in draft.notes:
            say(f"  - {note}")
    # Quoted for a POSIX shell, so that a path with spaces or quotes can be pasted as it is.
    data_arg, out_arg = shlex.quote(str(data)), shlex.quote(str(out))
    if valid:
        say(f"Next: check the guesses in {out}, then `tiering train {data_arg} --mapping {out_arg}`.")
    else:
        say(
            f"Next: fix the problems above (in {out} or in the export), then "
            f"`tiering validate {data_arg} --mapping {out_arg}`."
        )
