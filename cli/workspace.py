"""`tiering publish`, `tiering users ...` and `tiering db upgrade`: the workspace store from the command line,
and the store's side of `tiering score` (its active pins, and `--publish`)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.markup import escape

from cli.common import AsOfOpt, ConfigOpt, MappingOpt, UserError, console, friendly_errors
from workspace.roles import Role

if TYPE_CHECKING:
    from workspace import WorkspaceStore


users_app = typer.Typer(
    help="Workspace users: who may sign in to the pages, and with which role.", no_args_is_help=True
)
db_app = typer.Typer(
    help="The workspace store (TIERING_DATABASE_URL, default models/workspace.db).", no_args_is_help=True
)


def current_user() -> str:
    """Who published, as the operating system names them (the audit's `user` for CLI actions)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def open_existing_store() -> WorkspaceStore | None:
    """The store when one exists (never creating one): for commands that only read it when it is there."""
    from workspace.location import store_exists

    if not store_exists():
        return None
    from workspace import StoreMissing, WorkspaceStore

    try:
        return WorkspaceStore.open(create=False)
    except StoreMissing:  # a configured server database that holds no store yet
        return None


def merged_overrides(
    file_pins: pd.DataFrame | None, store: WorkspaceStore | None, accounts: pd.Series
) -> tuple[pd.DataFrame | None, int]:
    """The --overrides file's pins and the store's active pins (today) for the accounts in the book, as one
    override frame; UserError naming both when the two pin one account to different tiers.
    (frame or None, number of store pins applied)."""
    if store is None:
        return file_pins, 0
    pins = store.active_pins()
    pins = pins[pins["account_id"].isin(set(accounts.astype("str")))]
    if pins.empty:
        return file_pins, 0
    pins = pins[["account_id", "tier", "reason", "owner"]]
    if file_pins is None or file_pins.empty:
        return pins.reset_index(drop=True), len(pins)
    both = file_pins.merge(pins, on="account_id", suffixes=("_file", "_store"))
    clash = both[both["tier_file"] != both["tier_store"]]
    if len(clash):
        first = clash.iloc[0]
        raise UserError(
            f"{len(clash)} account(s) pinned two ways, e.g. {first['account_id']}: the --overrides file pins it to "
            f"{first['tier_file']} ({first['owner_file']}: {first['reason_file']}) and the workspace pins it to "
            f"{first['tier_store']} ({first['owner_store']}: {first['reason_store']}); remove the file's row or "
            "unpin it in the workspace"
        )
    extra = pins[~pins["account_id"].isin(set(file_pins["account_id"]))]
    return pd.concat([file_pins, extra], ignore_index=True), len(extra)


def publish_scores(
    store: WorkspaceStore,
    scores: pd.DataFrame,
    accounts: pd.DataFrame | None,
    as_of,
    model_version: str,
    configuration: dict,
    source: str,
    opportunities: pd.DataFrame | None = None,
) -> int:
    """Record the scores; with the export's accounts and opportunities, each account's open pipeline at as_of."""
    pipeline = None
    if accounts is not None and opportunities is not None:
        from workspace.open_pipeline import open_pipeline_at

        pipeline = open_pipeline_at(accounts["account_id"], opportunities, as_of)
    with console.status("publishing to the workspace store"):
        scoring_id = store.publish(
            scores,
            accounts,
            as_of=as_of,
            model_version=model_version,
            configuration=configuration,
            published_by=current_user(),
            source=source,
            open_pipeline=pipeline,
        )
    console.print(
        f"Published {len(scores):,} accounts to the workspace as scoring {scoring_id}.",
        highlight=False,
        soft_wrap=True,
    )
    return scoring_id


DEMO_USER = "demo"
# Where `make serve` (and `tiering serve` with its defaults) opens the pages.
DEMO_PAGES = "http://127.0.0.1:3000/app/"


def first_contact(
    store: WorkspaceStore,
    scores: pd.DataFrame,
    accounts: pd.DataFrame,
    as_of,
    model_version: str,
    settings,
    source: str,
    opportunities: pd.DataFrame | None = None,
) -> str | None:
    """The demo's book in the workspace and a login to read it: publishes the scoring (the store's pins applied),
    creates the editor `demo`, who signs in from this machine only, or on a re-run gives it a new password, and
    prints where to go. The password, or None when a `demo` user made by hand (not local-only) is left alone."""
    from workspace import generated_password

    scores, applied = with_store_pins(scores, store.active_pins(), settings)
    if applied:
        console.print(f"{applied} workspace pin(s) applied to the published tiers; see override_reason.")
    publish_scores(
        store, scores, accounts, as_of, model_version, settings.model_dump(mode="json"), source, opportunities
    )
    existing = store.user(DEMO_USER)
    password: str | None = generated_password()
    assert password is not None
    if existing is None:
        store.add_user(DEMO_USER, Role.editor, password, by=current_user(), local_only=True)
    elif existing.local_only and not existing.disabled:
        store.set_password(DEMO_USER, password, by=current_user())
    else:  # someone's own account: never reset a password the demo did not make
        password = None
    if password is None:
        console.print(
            f"[bold]Workspace:[/] `make serve`, then open {DEMO_PAGES} and sign in as one of `tiering users list` "
            f"(a user named {DEMO_USER} exists already, so the demo made no login of its own)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"[bold]Workspace:[/] `make serve`, then open {DEMO_PAGES} and sign in as {DEMO_USER} / "
            f"{escape(password)} (this login works from this machine only)",
            highlight=False,
            soft_wrap=True,
        )
    return password


def one_value(scores: pd.DataFrame, column: str) -> str | None:
    """The one value a column holds in every row (as_of, model_version), else None."""
    values = scores[column].dropna().astype("str").unique() if column in scores else []
    values = [value for value in values if value.strip()]
    return values[0] if len(values) == 1 else None


def with_store_pins(scores: pd.DataFrame, pins: pd.DataFrame, settings) -> tuple[pd.DataFrame, int]:
    """A scores file scored without the store (e.g. on Spark) with the store's active pins applied as `tiering
    score` applies them, the budget re-split by tier when the file has one; (scores, pins applied).

    A row the file already overrides keeps its override when it names the same tier; a different tier stops the
    publish naming both. Rows the store's pins already placed (scored here) are left as they are."""
    from scoring.tiers import allocate_budget, apply_overrides

    ids = scores["account_id"].astype("str")
    pins = pins[pins["account_id"].isin(set(ids))]
    if pins.empty:
        return scores, 0
    by_id = scores.assign(account_id=ids).set_index("account_id")
    reasons = by_id["override_reason"].fillna("").astype("str")
    overridden = pins[reasons.loc[pins["account_id"]].str.strip().ne("").to_numpy()]
    clash = overridden[by_id.loc[overridden["account_id"], "tier"].to_numpy() != overridden["tier"].to_numpy()]
    if len(clash):
        first = clash.iloc[0]
        raise UserError(
            f"{len(clash)} account(s) pinned two ways, e.g. {first['account_id']}: the scores file says "
            f"{by_id.loc[first['account_id'], 'override_reason']!r}, and the workspace pins it to {first['tier']} "
            f"({first['owner']}: {first['reason']}); unpin it in the workspace or rescore without the file's override"
        )
    fresh = pins[~pins["account_id"].isin(set(overridden["account_id"]))]
    if fresh.empty:
        return scores, 0
    tier, reason = apply_overrides(scores["learned_tier"], ids, fresh[["account_id", "tier", "reason", "owner"]])
    pinned = ids.isin(set(fresh["account_id"]))
    out = scores.copy()
    out.loc[pinned, "tier"] = tier[pinned]
    out.loc[pinned, "override_reason"] = reason[pinned]
    budgets = pd.to_numeric(out["budget"], errors="coerce")
    if budgets.notna().any():
        out["budget"] = allocate_budget(out["tier"], float(budgets.sum()), settings.budget)
    return out, len(fresh)


@friendly_errors
def publish(
    scores: Annotated[
        Path, typer.Argument(help="Scores file (.csv or .parquet) written by `tiering score`.", show_default=False)
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="The export the scores came from: account names, industry, country, employees, owner and each "
            "account's open pipeline at as_of.",
        ),
    ] = None,
    mapping: MappingOpt = None,
    as_of: AsOfOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Record a scores file (scored here or elsewhere, e.g. on Spark) in the workspace store; the pages show it."""
    from cli.common import load_data, parse_as_of, use_config
    from reports.diff import read_scores
    from workspace import WorkspaceStore

    cutoff = parse_as_of(as_of)  # refused before anything is read
    settings = use_config(config)
    frame = read_scores(scores)
    if cutoff is None:
        written = one_value(frame, "as_of")
        if written is None:
            raise UserError(f"{scores}: its as_of column holds no single date; give the scoring's date with --as-of")
        cutoff = parse_as_of(written)
    export = load_data(data, mapping) if data is not None else None
    if export is None:
        console.print(
            "No --data: the workspace shows account ids without names, industry, country, owner or open pipeline."
        )
    store = WorkspaceStore.open()
    try:
        frame, applied = with_store_pins(frame, store.active_pins(), settings)
        if applied:
            console.print(
                f"{applied} workspace pin(s) applied to the published tiers (and budget); see override_reason.",
                highlight=False,
            )
        publish_scores(
            store,
            frame,
            export.accounts if export is not None else None,
            cutoff,
            one_value(frame, "model_version") or "unknown",
            settings.model_dump(mode="json"),
            str(scores),
            export.opportunities if export is not None else None,
        )
    finally:
        store.close()


@friendly_errors
def users_add(
    name: Annotated[str, typer.Argument(help="The user's sign-in name.", show_default=False)],
    role: Annotated[
        Role,
        typer.Option("--role", help="viewer (reads, flags), editor (also pins), admin (also users, configuration)."),
    ] = Role.viewer,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (else one is generated).")
    ] = False,
) -> None:
    """Add a workspace user; without --password-stdin a generated password is printed once."""
    from workspace import WorkspaceStore, generated_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UserError("--password-stdin: standard input held no password")
    else:
        password = generated_password()
    with WorkspaceStore.open() as store:
        store.add_user(name, role, password, by=current_user())
    console.print(f"Added {escape(name)} as {role.value}.", highlight=False)
    if not password_stdin:
        console.print(f"Password (shown once): {password}", highlight=False, soft_wrap=True)


@friendly_errors
def users_list() -> None:
    """Every workspace user, their role and when they last signed in."""
    from rich.table import Table

    from workspace import WorkspaceStore

    with WorkspaceStore.open() as store:
        users = store.users()
    if not users:
        console.print("No users yet: add one with `tiering users add NAME --role admin`.")
        return
    table = Table(title="Workspace users")
    for column in ("name", "role", "status", "last sign-in", "failed sign-ins"):
        table.add_column(column, no_wrap=column == "status")  # a status reads as one phrase
    for user in users:
        table.add_row(
            escape(user.name),
            user.role.value,
            "disabled" if user.disabled else "active, this machine only" if user.local_only else "active",
            user.last_login_at.isoformat(timespec="minutes") if user.last_login_at else "never",
            str(user.failed_logins),
        )
    console.print(table)


@friendly_errors
def users_disable(name: Annotated[str, typer.Argument(help="The user to disable.", show_default=False)]) -> None:
    """Disable a user: they can no longer sign in or change anything (their history stays in the audit)."""
    from workspace import WorkspaceStore

    with WorkspaceStore.open() as store:
        store.disable_user(name, by=current_user())
    console.print(f"Disabled {escape(name)}.", highlight=False)


@friendly_errors
def db_upgrade() -> None:
    """Create the workspace store, or migrate it to this version's schema (back it up first)."""
    from workspace import WorkspaceStore
    from workspace.store import shown

    store = WorkspaceStore.open_for_upgrade()
    try:
        before, after = store.upgrade()
    finally:
        store.close()
    where = escape(shown(store.url))
    if before == after:
        console.print(f"The workspace store {where} is up to date (schema {after}).", highlight=False, soft_wrap=True)
    else:
        console.print(
            f"Migrated the workspace store {where} from schema {before or '(none)'} to {after}.",
            highlight=False,
            soft_wrap=True,
        )


users_app.command(name="add")(users_add)
users_app.command(name="list")(users_list)
users_app.command(name="disable")(users_disable)
db_app.command(name="upgrade")(db_upgrade)
