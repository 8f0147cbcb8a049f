"""`tiering whatif` and `tiering config history|restore`: a draft configuration against the active one, and the
published business configurations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
import yaml
from rich.markup import escape

from cli.common import (
    AsOfOpt,
    MappingOpt,
    ModelOpt,
    UserError,
    active_config,
    console,
    err_console,
    finite_budget,
    friendly_errors,
    load_data,
    parse_as_of,
    say_as_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from configuration.tiering import TieringConfig
    from features.config import ModelConfig
    from features.schema import CrmData
    from workspace import WorkspaceStore

WHATIF_PAGE = "whatif.html"

config_app = typer.Typer(
    help="Published business configurations: their history, and restoring an earlier one.", no_args_is_help=True
)


@dataclass
class Parts:
    """A book's score records with `in_icp`, the configuration they were scored with, and where they came from."""

    scores: pd.DataFrame
    then: ModelConfig
    source: str
    as_of: pd.Timestamp
    scoring_id: int | None = None
    features: pd.DataFrame | None = None  # the feature rows, when the book was scored here (not published)


def published_parts(store: WorkspaceStore | None, as_of: pd.Timestamp | None, version: str | None) -> Parts | None:
    """The latest published scoring's records when it is of the book as of `as_of` (any, when None) by model
    `version` (any, when None) and knows its accounts' industry and country; else None (the book is scored)."""
    from configuration.tiering import parse_config
    from features.config import ConfigError
    from scoring.scenarios import in_icp_from

    if store is None:
        return None
    scoring = store.latest_scoring()
    if scoring is None or (as_of is not None and pd.Timestamp(scoring.as_of).normalize() != as_of.normalize()):
        return None
    if version is not None and scoring.model_version != version:
        return None
    try:
        then = parse_config(scoring.configuration, f"scoring {scoring.id}'s configuration")
    except ConfigError:  # written by a version with other keys: score the book instead
        return None
    scores = store.scores_frame(scoring.id)
    if scores["industry"].isna().all() and scores["country"].isna().all():
        return None  # published without its accounts: the ICP exclusions cannot be told
    scores["in_icp"] = in_icp_from(scores["industry"], scores["country"], then)
    source = f"published scoring {scoring.id} of {scoring.as_of.date().isoformat()}"
    return Parts(scores, then, source, pd.Timestamp(scoring.as_of), scoring.id)


def _other_accounts(parts: Parts, data: Path, mapping: str | None, book: Callable[[], CrmData]) -> str:
    """How the published scoring's accounts differ from the export's ('' when they are the same accounts): a
    preview of another book's scoring would be a wrong answer about this one. The accounts table alone is read
    when it can be (the preview then reads no event); else the export (`book`)."""
    from ingest.io import export_account_ids

    ids = export_account_ids(data, mapping)
    published = set(parts.scores["account_id"].astype(str))
    exported = set(book().accounts["account_id"].astype(str) if ids is None else ids)
    missing, extra = len(exported - published), len(published - exported)
    if not missing and not extra:
        return ""
    return f"{missing} of the export's {len(exported)} accounts not in it, {extra} of its accounts not in the export"


def scored_parts(
    model,
    version: str,
    frame: CrmData,
    as_of: pd.Timestamp,
    source: str,
    *,
    budget: float | None = None,
    overrides: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
) -> Parts:
    """The book scored now as of `as_of`, with `budget` and the pins in `overrides` (none by default: the scenarios
    place those from the parts); from `features`, the book's feature rows as of `as_of`, when already built."""
    from features.rules import icp_parts

    scored = model.score_book(
        frame, as_of, budget=budget, overrides=overrides, model_version=version, features=features
    )
    scores = scored.scores.copy()
    scores["in_icp"] = icp_parts(scored.features, model.config)["in_icp"]
    return Parts(scores, model.config, source, as_of, features=scored.features)


def with_rules_of(after: pd.DataFrame, frame: CrmData, scenario: TieringConfig, as_of, learned: bool) -> pd.DataFrame:
    """A scenario that changes what the learners read: its rule scores and rule tiers from the book scored with its
    feature settings now; a rules-only book takes its whole scoring (final tiers are rule tiers there)."""
    from scoring.pyfunc import TieringModel

    rules = TieringModel.rules_only(scenario).score_book(frame, as_of).scores.set_index("account_id")
    ids = after["account_id"].astype("str")
    out = after.copy()
    columns = ["revenue_potential_score", "business_fit_score", "engagement_score", "rule_score", "rule_tier"]
    if not learned:
        columns += ["learned_score", "learned_tier"]
    for column in columns:
        out[column] = rules[column].reindex(ids).to_numpy()
    return out


def _pins(store: WorkspaceStore | None, overrides: Path | None, accounts: pd.Series):
    from cli.workspace import merged_overrides
    from ingest.files import read_overrides

    file_pins = read_overrides(overrides, accounts) if overrides else None
    pins, _ = merged_overrides(file_pins, store, accounts)
    return pins


@friendly_errors
def whatif(
    data: Annotated[Path, typer.Argument(help="Folder with the export (CSV or Parquet files).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for whatif.html and its CSV tables (replaced whole).")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="The draft: a YAML holding only the keys it changes, over the active configuration."
        ),
    ] = None,
    suggest: Annotated[
        bool,
        typer.Option(
            "--suggest",
            help="Fit the rule weights (and up to whatif.max_suggested_changes ICP industry edits) that would have put "
            "the most won revenue in Tier 1 and 2, and show them as the scenario (written as suggested.yaml).",
        ),
    ] = False,
    mapping: MappingOpt = None,
    model: ModelOpt = None,
    as_of: AsOfOpt = None,
    budget: Annotated[
        float | None,
        typer.Option("--budget", callback=finite_budget, help="Total budget to split (default: budget.total)."),
    ] = None,
    overrides: Annotated[
        Path | None, typer.Option("--overrides", help="Extra pins: a CSV of account_id,tier,reason,owner.")
    ] = None,
    no_backtest: Annotated[
        bool, typer.Option("--no-backtest", help="The preview alone, without the backtest.")
    ] = False,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish",
            help="Store the scenario and its backtest in the workspace and publish its business configuration as "
            "the active one (the next `tiering score` and the service use it).",
        ),
    ] = False,
    note: Annotated[str, typer.Option("--note", help="Why, for the configuration's history (with --publish).")] = "",
) -> None:
    """A draft configuration against the active one: who enters or leaves each tier and why, the budget per tier and
    account, and a backtest of both on a past period."""
    from configuration.tiering import apply_draft, config_changes, model_knobs, read_mapping
    from features.activity import default_as_of
    from reports.report import check_output_folder
    from reports.report import publish as write_output
    from reports.review import Period
    from reports.whatif import WhatIfResult, backtest, render_whatif
    from scoring.pyfunc import TieringModel
    from scoring.registry import CHAMPION, alias_version, configure, resolve_model
    from scoring.scenarios import PartsMissing, compare_scenario, rescored
    from scoring.scorer import RULES_ONLY
    from workspace.active import budget_to_split

    if (config is None) == (not suggest):
        raise UserError("give a draft with --config DRAFT.yaml, or --suggest for suggested weights (not both)")
    check_output_folder(out, WHATIF_PAGE)  # bad options and outputs are refused before any work
    cutoff = parse_as_of(as_of)
    active, label = active_config(None)
    frame = None
    resolved = None

    def book() -> CrmData:
        nonlocal frame
        if frame is None:
            frame = load_data(data, mapping)
        return frame

    def scorer():
        nonlocal resolved
        if resolved is None:
            resolved = resolve_model(model, active)
        return resolved

    suggestion = None
    if config is not None:
        draft_raw = read_mapping(config)
        draft_label = str(config)
    else:
        suggestion = suggested(book(), scorer(), cutoff or default_as_of(book()), active)
        if suggestion.weights is None:
            console.print(f"Nothing suggested: {escape(suggestion.message)}.", highlight=False, soft_wrap=True)
            return
        draft_raw, draft_label = suggestion.draft(), "suggested.yaml"
    scenario = apply_draft(active, draft_raw, draft_label)
    err_console.print(
        f"configuration: {escape(label)} (active); scenario: {escape(draft_label)} over it",
        highlight=False,
        soft_wrap=True,
    )
    changes = config_changes(active, scenario)
    retrain = model_knobs(changes)
    if publish and len(retrain) == len(changes):
        raise UserError(
            f"{draft_label} changes no business key of the active configuration, so --publish has nothing to publish"
            + (f" ({', '.join(retrain)} are the model's: train a challenger with them)" if retrain else "")
        )
    store: WorkspaceStore | None
    if publish:
        from workspace import WorkspaceStore

        store = WorkspaceStore.open()
    else:
        from cli.workspace import open_existing_store

        store = open_existing_store()
    try:
        wanted: str | None
        if model:
            wanted = model.rsplit("/", 1)[-1]
        else:
            configure()
            champion = alias_version(CHAMPION)
            wanted = champion.version if champion is not None else RULES_ONLY
        parts = None if retrain else published_parts(store, cutoff, wanted)
        if parts is not None and (other := _other_accounts(parts, data, mapping, book)):
            err_console.print(
                f"note: {parts.source} is not of this export ({other}): scoring the export now instead",
                highlight=False,
                soft_wrap=True,
            )
            parts = None
        if parts is None:
            when = cutoff or default_as_of(book())
            tiering_model, version = scorer()
            parts = scored_parts(tiering_model, version, book(), when, f"the book scored now with model {version}")
        say_as_of(
            parts.as_of, as_of is not None, "the published scoring's, else the day after the export's latest date"
        )
        accounts = parts.scores["account_id"].astype("str")
        pins = _pins(store, overrides, accounts)

        # The book's feature rows by date, built once: business knobs change no feature, so every scoring of the
        # same date below (the active configuration's and the scenario's) reads the same rows.
        features_at: dict[pd.Timestamp, pd.DataFrame] = {}
        scored_now: list[str] = []  # the model version that scored the book here, when stored parts could not serve

        def under(business: TieringConfig, parts: Parts, total: float | None, pins) -> pd.DataFrame:
            """The book's records under `business`: from `parts`, else (a scoring blended with weight 0 on the
            model keeps no model part; a book rolled up by family keeps no family's parts) the book scored with
            `business` itself, its budget and pins placed by that scoring."""
            try:
                return rescored(parts.scores, parts.then, business, budget=total, overrides=pins)
            except PartsMissing:
                tiering_model, version = scorer()
                fresh = tiering_model.with_business(business)
                built = parts.features if parts.features is not None else features_at.get(parts.as_of)
                scored = scored_parts(
                    fresh, version, book(), parts.as_of, "", budget=total, overrides=pins, features=built
                )
                features_at[parts.as_of] = scored.features
                scored_now.append(version)
                return scored.scores

        before = under(active, parts, budget_to_split(budget, active, parts.scores), pins)
        after = under(scenario, parts, budget_to_split(budget, scenario, parts.scores), pins)
        learned = bool(parts.scores["win_probability"].notna().any())
        if retrain and not learned:  # rules only: the book scored with the scenario's settings, pins and budget
            total = budget_to_split(budget, scenario, parts.scores)
            rules = TieringModel.rules_only(scenario)
            after = scored_parts(rules, RULES_ONLY, book(), parts.as_of, "", budget=total, overrides=pins).scores
        elif retrain:
            after = with_rules_of(after, book(), scenario, parts.as_of, learned)
        source = parts.source
        if scored_now and parts.scoring_id is not None:  # a published book rolled up by family: its date, fresh numbers
            source = f"the book scored now with model {scored_now[0]}, as of {parts.source}"
        comparison = compare_scenario(before, after)
        table, period_label = None, None
        if not no_backtest:
            tiering_model, version = scorer()
            past = parts.as_of - pd.Timedelta(days=active.model.horizon_days)
            past_parts = scored_parts(tiering_model, version, book(), past, "")
            past_before = under(active, past_parts, None, None)
            past_after = under(scenario, past_parts, None, None)
            if retrain:
                past_after = with_rules_of(past_after, book(), scenario, past, learned)
            period = Period(past, parts.as_of)
            table, period_label = backtest(book(), period, past_before, past_after), period.label()
        result = WhatIfResult(
            comparison,
            changes,
            retrain,
            source,
            parts.as_of.date().isoformat(),
            table,
            period_label,
            None if suggestion is None else f"Suggested: {suggestion.message}.",
        )
        from reports.diff import diff_scores

        moves = diff_scores(before.drop(columns="in_icp"), after.drop(columns="in_icp"), "active", "scenario").moves
        tables = {**comparison.tables(), "moves": moves}
        if table is not None:
            tables["backtest"] = table
        extra = {"suggested.yaml": yaml.safe_dump(draft_raw, sort_keys=False)} if suggestion is not None else {}
        page = write_output(out, WHATIF_PAGE, render_whatif(result, draft_label), tables, extra)
        _say(result, page)
        if publish:
            assert store is not None
            _publish(store, scenario, draft_raw or {}, result, parts.scoring_id, draft_label, note, retrain)
    finally:
        if store is not None:
            store.close()


def suggested(frame: CrmData, resolved, as_of: pd.Timestamp, active: TieringConfig):
    """Weights fitted on the period two horizons to one horizon before `as_of` (the backtest then judges them on the
    last horizon: out of time)."""
    from reports.review import Period, period_deals
    from training.suggestions import suggest

    model, version = resolved
    horizon = pd.Timedelta(days=active.model.horizon_days)
    start = as_of - 2 * horizon
    with console.status("fitting suggested weights"):
        scored = model.score_book(frame, start, model_version=version)
        parts = scored.scores.copy()
        features = scored.features.reset_index(drop=True)
        from features.rules import icp_parts

        parts["in_icp"] = icp_parts(features, model.config)["in_icp"]
        closed = period_deals(frame, Period(start, as_of - horizon), parts["account_id"]).closed
        won = closed[closed["won"] == 1].groupby("account_id")["amount"].sum()
        revenue = parts["account_id"].map(won).fillna(0.0).to_numpy()
        found = suggest(parts, features, revenue, active, active.whatif.max_suggested_changes)
    console.print(
        f"Fitted on {Period(start, as_of - horizon).label()}: {escape(found.message)}", highlight=False, soft_wrap=True
    )
    return found


def _say(result, page: Path) -> None:
    from rich.table import Table

    from reports.whatif import headline

    if result.retrain_keys:
        err_console.print(
            f"[yellow]note: {escape(', '.join(result.retrain_keys))} feed the learners: the rule tiers show the "
            "scenario now; the learned tiers need a retrain (tiering train --config DRAFT trains a challenger).[/]",
            highlight=False,
            soft_wrap=True,
        )
    table = Table(title="Tiers: active -> scenario")
    for column in ("tier", "before", "after", "entered", "left", "budget before", "budget after"):
        table.add_column(column, justify="left" if column == "tier" else "right")
    for row in result.comparison.tiers.itertuples():
        table.add_row(
            row.tier,
            f"{row.accounts_before:,}",
            f"{row.accounts_after:,}",
            f"{row.entered:,}",
            f"{row.left:,}",
            f"${row.budget_before:,.0f}",
            f"${row.budget_after:,.0f}",
        )
    console.print(table)
    moves = result.comparison.moves
    console.print(f"{(moves['levels'] > 0).sum():,} account(s) move up and {(moves['levels'] < 0).sum():,} down.")
    if result.backtest is not None:
        shares = headline(result.backtest)
        console.print(
            f"Backtest {result.period}: Tier 1+2 took {shares.get('active', float('nan')):.1%} of the won revenue "
            f"under the active configuration, {shares.get('scenario', float('nan')):.1%} under the scenario.",
            highlight=False,
        )
    console.print(f"Report: {escape(str(page))}", highlight=False, soft_wrap=True)


def _publish(
    store: WorkspaceStore,
    scenario: TieringConfig,
    draft: dict,
    result,
    scoring_id: int | None,
    name: str,
    note: str,
    retrain: list[str],
) -> None:
    from cli.workspace import current_user
    from configuration.tiering import business_part
    from scoring.registry import log_config_version

    user = current_user()
    active = store.active_config()
    scenario_id = store.save_scenario(
        Path(name).stem,
        draft,
        result.summary(),
        user,
        base_version_id=active.id if active else None,
        scoring_id=scoring_id,
        check_role=False,
    )
    version = store.publish_config(
        business_part(scenario), note or f"scenario {Path(name).name}", user, check_role=False
    )
    log_config_version(version.id, version.configuration, version.changes, version.published_by, version.note)
    console.print(
        f"Saved scenario {scenario_id}; published its business configuration as version {version.id} "
        f"({len(result.changes) - len(retrain)} business key(s) changed). The next `tiering score` and the service "
        "use it; "
        f"`tiering config restore` goes back.",
        highlight=False,
        soft_wrap=True,
    )
    if retrain:
        err_console.print(
            f"[yellow]note: {escape(', '.join(retrain))} are the model's configuration, not published: train a "
            "challenger with them (tiering train --config DRAFT).[/]",
            highlight=False,
            soft_wrap=True,
        )


@friendly_errors
def history() -> None:
    """Every published business configuration, newest first: who, when, why, and what it changed."""
    from workspace import StoreMissing, WorkspaceStore

    try:
        with WorkspaceStore.open(create=False) as store:
            versions = store.config_versions()
    except StoreMissing:
        versions = []
    if not versions:
        console.print(
            "No business configuration has been published: commands use --config, ./tiering.yaml or the "
            "built-in defaults. Publish one with `tiering whatif ... --publish`."
        )
        return
    for position, version in enumerate(versions):
        state = " (active)" if position == 0 else ""
        restored = f", restores version {version.restored_from}" if version.restored_from else ""
        console.print(
            f"[bold]version {version.id}{state}[/]  {version.published_at.isoformat(timespec='minutes')} UTC by "
            f"{escape(version.published_by)}{restored}: {escape(version.note) or '(no note)'}",
            highlight=False,
            soft_wrap=True,
        )
        for key, value in version.changes.items():
            console.print(f"    {escape(key)}: {value['before']} -> {value['after']}", highlight=False, soft_wrap=True)
        if not version.changes:
            console.print("    (the first version: every business key as published)", highlight=False)


@friendly_errors
def restore(
    version: Annotated[int, typer.Argument(help="The version to make active again (see `tiering config history`).")],
) -> None:
    """Make an earlier business configuration active again, as a new version that says which one it restores."""
    from cli.workspace import current_user
    from scoring.registry import log_config_version
    from workspace import WorkspaceStore

    with WorkspaceStore.open(create=False) as store:
        restored = store.restore_config(version, current_user(), check_role=False)
    log_config_version(
        restored.id, restored.configuration, restored.changes, restored.published_by, restored.note, version
    )
    console.print(
        f"Version {version} is active again, as version {restored.id} ({len(restored.changes)} key(s) changed).",
        highlight=False,
    )


config_app.command(name="history")(history)
config_app.command(name="restore")(restore)
