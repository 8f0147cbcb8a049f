"""`tiering alerts` and `tiering export`: scores where the team works. Registered in `cli.main`.

Exit codes: 0 done; 2 bad input (nothing written, nothing sent); 3 the events file was written but some events
could not be delivered (they stay in FILE.outbox and are sent first next run).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.text import Text

from cli.common import ConfigOpt, console, err_console, use_config
from cli.stopping import STOPPED
from features.redact import redact

PARTIAL_DELIVERY = 3


def say(text: str, error: bool = False) -> None:
    (err_console if error else console).print(Text(redact(text)), soft_wrap=True)


def alerts_command(
    previous_scores: Annotated[
        Path, typer.Argument(help="Earlier scores file (.csv or .parquet from `tiering score`).", show_default=False)
    ],
    current_scores: Annotated[Path, typer.Argument(help="Later scores file of the same book.", show_default=False)],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Events file: .jsonl (JSON Lines) or .csv. Delivery keeps FILE.outbox and FILE.delivered beside it.",
        ),
    ],
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook", help="POST each event here (https, or http to a loopback address); default alerts.webhook_url."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Intent surges, tier entries and exits, and large jumps between two scorings, as JSON Lines (or CSV), with
    optional signed webhook delivery through an outbox. Exit 3 when some events could not be delivered."""
    from reports.diff import read_pair

    settings = use_config(config)
    url = webhook or settings.alerts.webhook_url
    with prepare(out, url) as held:
        previous, current = read_pair(previous_scores, current_scores)
        publish_alerts(previous, current, out, url, settings, str(previous_scores), str(current_scores), held)


@contextlib.contextmanager
def prepare(out: Path, url: str | None) -> Iterator[TextIO | None]:
    """Everything refused before any work: the events file, the webhook URL, and another run on the same events
    file (which holds its lock until its delivery is over). Hold it around the work; yields the lock's ledger."""
    from activation.alerts import check_events_target
    from activation.delivery import check_webhook_url, events_file_lock

    check_events_target(out)
    if url:
        check_webhook_url(url)
    with events_file_lock(out, create=bool(url)) as held:
        yield held


def publish_alerts(
    previous,
    current,
    out: Path,
    url: str | None,
    settings,
    previous_name: str,
    current_name: str,
    held: TextIO | None = None,
) -> None:
    """Build the events, write them to `out`, deliver them when `url` is given (exit 3 when partly delivered);
    `held`: the events file's lock from `prepare`."""
    from activation.alerts import build_events, counts_by_kind, write_events

    events = build_events(previous, current, settings.alerts, previous_name, current_name)
    if "alerts" in settings.pilot.exclude_control_from:
        from activation.holdout import control_accounts, without_control_events
        from cli.pilot import active_pilots, say_control_left_out

        events, left_out = without_control_events(events, control_accounts(current, active_pilots()))
        say_control_left_out(left_out, "alerts")
    write_events(events, out)
    as_of = current["as_of"].iloc[0] if len(current) else "?"
    counts = ", ".join(f"{count:,} {kind}" for kind, count in counts_by_kind(events).items() if count) or "none"
    previous_as_of = previous["as_of"].iloc[0] if len(previous) else "none"
    say(f"as_of {as_of} against {previous_as_of}: {len(events):,} event(s) ({counts})")
    say(f"Events written to {out}")
    if url:
        _deliver(events, out, url, settings, held)
    else:
        from activation.delivery import outbox_path

        waiting = outbox_path(out)
        if waiting.exists():
            count = sum(1 for line in waiting.read_text(encoding="utf-8").splitlines() if line.strip())
            say(
                f"note: {count:,} undelivered event(s) wait in {waiting}; pass --webhook (or set alerts.webhook_url) "
                "to send them",
                error=True,
            )


def _deliver(events: list[dict], out: Path, url: str, settings, held: TextIO | None) -> None:
    from activation.delivery import deliver, outbox_path
    from ingest.settings import secret

    if not secret(settings.alerts.secret_env):
        say(f"note: {settings.alerts.secret_env} is not set: events are sent unsigned", error=True)
    try:
        report = deliver(events, out, url, settings.alerts, held=held)
    except STOPPED:  # the events file is written and the outbox holds what was not sent
        say(f"interrupted: {out} is written; the events not yet delivered are kept in {outbox_path(out)}", error=True)
        raise typer.Exit(130) from None
    already = f"; {report.already:,} delivered by an earlier run" if report.already else ""
    say(f"Delivered {len(report.delivered):,} event(s) to the webhook{already}")
    if report.pending:
        why = (
            "the time limit (alerts.max_total_seconds) ran out"
            if report.timed_out
            else (
                f"the receiver refused {len(report.refused):,}"
                if report.refused and len(report.refused) == len(report.pending)
                else f"the receiver could not be reached ({report.last_problem or 'no answer'})"
            )
        )
        say(
            f"error: delivered partially: {len(report.pending):,} event(s) not delivered ({why}); they are kept in "
            f"{outbox_path(out)} and sent first on the next run",
            error=True,
        )
        raise typer.Exit(PARTIAL_DELIVERY)


def export_command(
    scores: Annotated[
        Path, typer.Argument(help="Scores file (.csv or .parquet from `tiering score`).", show_default=False)
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="salesforce (Data Loader / Bulk API update CSV keyed on the "
            "Account Id) or hubspot (companies import keyed on Record ID).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="The import file (.csv); an existing file is replaced only if it is an export of this format."
        ),
    ],
    ids: Annotated[
        Path | None,
        typer.Option(
            "--ids", help="CSV of account_id,crm_id when account_id is not the CRM's own id (default: account_id is)."
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            "--mapping",
            "-m",
            help="The mapping the scored export was read with: another CRM's preset (or canonical) needs --ids.",
        ),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field",
            help="Rename a field, COLUMN=NAME (e.g. tier=Account_Tier__c); repeat for more. Default: the ABM_* names.",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """An upsert-ready import file for the CRM, keyed on its own account ids: tier, scores, surge and reasons.
    A running pilot's control accounts are left out (pilot.exclude_control_from)."""
    from activation.crm_export import (
        check_export_target,
        check_format,
        check_mapping,
        export_frame,
        parse_renames,
        read_id_map,
        write_export,
    )
    from reports.diff import read_scores

    settings = use_config(config)
    check_format(fmt)
    renames = parse_renames(fmt, field or [])
    check_mapping(fmt, mapping, ids is not None)
    check_export_target(out, fmt, renames)
    id_map = read_id_map(ids) if ids else None
    book = read_scores(scores)
    left_out = 0
    if "export" in settings.pilot.exclude_control_from:
        from activation.holdout import control_accounts, without_control_rows
        from cli.pilot import active_pilots

        book, left_out = without_control_rows(book, control_accounts(book, active_pilots()))
    frame, skipped = export_frame(book, fmt, id_map, str(scores), renames)
    write_export(frame, out)
    if left_out:
        from cli.pilot import say_control_left_out

        say_control_left_out(left_out, "export")
    if skipped:
        say(f"warning: {skipped:,} account(s) have no crm_id in {ids} and are left out", error=True)
    say(f"{len(frame):,} account(s) written to {out} ({fmt} import format)")
