"""The console reports of an import: what `tiering validate` and `tiering init` print about a loaded export,
and the dropped-rows note of `--invalid-rows drop`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from features.errors import plural
from ingest.io import LoadedExport
from ingest.repair import REJECTED_FILE, counts_sentence, write_rejected


def render_summary(loaded: LoadedExport, console: Console) -> None:
    """The `tiering validate` report: what was read, the outcome mix, and every warning.

    User text (file names, channels, mapping names, problems) is printed as plain text: never read as rich markup
    or emoji codes, whatever console is passed in ("offers.csv:Id: ..." stays as written).
    """
    summary = loaded.summary

    def say(text: str, **options: Any) -> None:
        console.print(text, highlight=False, emoji=False, **options)

    say(f"Mapping: {escape(loaded.mapping)}", soft_wrap=True)
    files = Table()
    files.add_column("table")
    files.add_column("file(s)")
    files.add_column("rows", justify="right")
    for name, rows in summary["rows"].items():
        read = ", ".join(path.name for path in loaded.files.get(name, []))
        names = Text(read) if read else Text("absent", style="dim")
        if name == "accounts" and summary.get("one_account_per_opportunity"):
            names.append(" (each opportunity is its own account)", style="dim")
        elif name == "accounts" and summary.get("accounts_from_opportunities"):
            names.append(" (one account per account_id of the opportunities rows)", style="dim")
        dropped = summary["dropped_rows"].get(name)
        rejected = summary.get("rejected_rows", {}).get(name)
        notes = [f"{rejected:,} with row-level problems dropped"] if rejected else []
        notes += [f"{dropped:,} open without account or date dropped"] if dropped else []
        files.add_row(name, names, f"{rows:,}" + (f" [dim]({'; '.join(notes)})[/]" if notes else ""))
    console.print(files)

    opportunities = summary["opportunities"]
    win_rate = opportunities["win_rate"]
    closed = (
        f"closed {opportunities['closed_from']} to {opportunities['closed_to']}"
        if opportunities["closed_from"]
        else "none closed"
    )
    say(f"Opportunities created {opportunities['created_from']} to {opportunities['created_to']}, {closed}")
    say(
        f"Outcomes: {opportunities['won']:,} won, {opportunities['lost']:,} lost, {opportunities['open']:,} open; "
        f"win rate {f'{win_rate:.1%}' if win_rate is not None else 'n/a (no closed opportunities)'}"
    )
    rule = summary.get("outcome_rule")
    if rule:
        say(
            escape(
                f"Outcomes by the mapping's outcome_rule: won when '{rule['won_date']}' holds a date; lost after "
                f"{rule['lost_after_days']:,} days without one, judged on {rule['judged_on']}; open otherwise"
            ),
            soft_wrap=True,
        )
    for line in number_lines(summary.get("numbers", [])):
        say(escape(line), soft_wrap=True)
    say(f"Accounts without opportunities: {summary['accounts_without_opportunities']:,}")
    if summary.get("generated_ids"):
        say(f"Opportunity ids generated (rows without one): {summary['generated_ids']:,}")
    channels = summary["unknown_channels"]
    say("Unknown channels: " + escape(", ".join(f"{name} ({count:,})" for name, count in channels.items()) or "none"))
    if loaded.warnings:
        say(f"[yellow]{plural(len(loaded.warnings), 'warning')}:[/]")
        for warning in loaded.warnings:
            say(f"[yellow]- {escape(warning.render())}[/]", soft_wrap=True)
    say("[green]The export is valid.[/]")


DECIDED_BY = {
    "mapping": "as the mapping's number_format says",
    "file": "as the file's other numbers show",
    "values": "",
    "default": "",
}


def number_lines(readings: list[dict[str, Any]]) -> list[str]:
    """`Numbers: opportunities.amount (Total ARR): read as currency ($) with K/M suffixes (3,699 values)`, one line
    per number column; plain columns share one line."""
    lines, plain = [], []
    for reading in readings:
        name = f"{reading['table']}.{reading['column']}"
        if reading["header"] != reading["column"]:
            name += f" ({reading['header']})"
        if reading["read_as"] == "plain numbers":
            plain.append(name)
            continue
        why = DECIDED_BY.get(reading["decided_by"], "")
        lines.append(
            f"Numbers: {name}: read as {reading['read_as']} ({reading['values']:,} values"
            + (f"; {why}" if why else "")
            + ")"
        )
    if plain:
        lines.append(f"Numbers read as plain numbers: {', '.join(plain)}")
    return lines


def report_rejected(loaded: LoadedExport, console: Console, path: str | Path = REJECTED_FILE) -> Path | None:
    """With drop: write rejected_rows.csv and print the counts and where the list is. Nothing with stop."""
    if loaded.invalid_rows != "drop":
        return None
    written = write_rejected(loaded, path)
    console.print(Text(f"{counts_sentence(loaded)}; each is listed with its reason in {written}"), soft_wrap=True)
    return written
