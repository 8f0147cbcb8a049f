"""`tiering pilot design` and `tiering pilot readout`: a randomised pilot before a roll-out, from the split and its
power to the measured lift and a verdict."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import ConfigOpt, MappingOpt, UserError, console, err_console, friendly_errors, load_data, use_config
from pilot.metrics import Metric

pilot_app = typer.Typer(
    help="Pilots: randomised treatment and control within tiers, their power, and the measured lift.",
    no_args_is_help=True,
)

TIER_NAMES = ("tier_1", "tier_2", "tier_3")


def _day(value: str | None, option: str) -> date | None:
    from features.dates import NotADate, parse_day

    try:
        moment = parse_day(value, option)
    except NotADate as error:
        raise UserError(str(error)) from None
    return None if moment is None else moment.date()


def _names(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _tiers(value: str | None, default: Sequence[str]) -> list[str]:
    tiers = _names(value) or list(default)
    unknown = [tier for tier in tiers if tier not in TIER_NAMES]
    if unknown:
        raise UserError(f"--tiers {value}: {', '.join(unknown)} is not a tier; use {', '.join(TIER_NAMES)}")
    return tiers


def active_pilots():
    """account_id, group, pilot_key of the accounts in pilots running today, from the workspace store when one
    exists (never creating one); None without a store."""
    from cli.workspace import open_existing_store
    from workspace.pilots import active_assignments

    store = open_existing_store()
    if store is None:
        return None
    with store:
        return active_assignments(store)


def say_control_left_out(count: int, where: str) -> None:
    if count:
        err_console.print(
            f"note: {count:,} control account(s) of a running pilot left out of the {where} "
            "(pilot.exclude_control_from)",
            highlight=False,
            soft_wrap=True,
        )


def _say(text: str, colour: str = "") -> None:
    styled = f"[{colour}]{escape(text)}[/]" if colour else escape(text)
    console.print(styled, highlight=False, soft_wrap=True)


@friendly_errors
def design(
    scores: Annotated[Path, typer.Argument(help="Scores file from `tiering score` (CSV or Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for assignment.csv and pilot.json.")],
    tiers: Annotated[
        str | None, typer.Option("--tiers", help="Comma-separated tiers to draw from (default: pilot.tiers).")
    ] = None,
    size: Annotated[int | None, typer.Option("--size", help="Accounts in the pilot (default: all).")] = None,
    share: Annotated[
        float | None, typer.Option("--share", help="Share of the tiers' accounts in the pilot, e.g. 0.2.")
    ] = None,
    strata: Annotated[
        str | None,
        typer.Option("--strata", help="Comma-separated columns to stratify by, besides the tier (e.g. industry)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same split.")] = 1,
    metric: Annotated[Metric, typer.Option("--metric", help="The metric the pilot is judged on.")] = Metric.PIPELINE,
    horizon_days: Annotated[
        int | None, typer.Option("--horizon-days", min=7, max=730, help="Pilot length (default: pilot.horizon_days).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="First day of the pilot, YYYY-MM-DD (default: today, UTC).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="The export: the accounts' history gives the power and the balance check."),
    ] = None,
    target_lift: Annotated[
        float | None, typer.Option("--target-lift", help="Also say the group sizes this lift needs, e.g. 0.2.")
    ] = None,
    mapping: MappingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Split accounts into treatment and control by stratified randomisation within tiers, check the balance, state
    the power, write assignment.csv and pilot.json, and publish the pilot to the workspace (frozen)."""
    import pandas as pd

    from cli.workspace import current_user
    from pilot.design import DesignError, design_pilot
    from pilot.document import ASSIGNMENT_FILE, PILOT_FILE, pilot_document, pilot_json
    from pilot.metrics import account_activity
    from pilot.readout import design_power
    from reports.diff import read_scores
    from reports.report import check_output_folder, publish
    from workspace import WorkspaceStore
    from workspace.pilots import publish_pilot, withdraw_pilot

    settings = use_config(config).pilot
    chosen_tiers = _tiers(tiers, settings.tiers)
    columns = _names(strata)
    if size is not None and share is not None:
        raise UserError("--size and --share both given: pass one (accounts, or a share of the tiers' accounts)")
    if share is not None and not 0 < share <= 1:
        raise UserError(f"--share {share}: give a share above 0 and at most 1, e.g. 0.2")
    if target_lift is not None and not target_lift > 0:
        raise UserError(f"--target-lift {target_lift}: give a positive lift, e.g. 0.2 for +20%")
    horizon = horizon_days or settings.horizon_days
    first_day = _day(start, "--start") or pd.Timestamp.now(tz="UTC").date()
    check_output_folder(out, PILOT_FILE)

    book = read_scores(scores)
    history = earlier = None
    if data is not None:
        crm = load_data(data, mapping)
        known = set(crm.accounts["account_id"].astype(str))
        unknown = ~book["account_id"].astype(str).isin(known)
        if unknown.any():
            rows = ", ".join(str(r) for r in (unknown[unknown].index + 2)[:5])
            raise UserError(
                f"{scores}: {int(unknown.sum()):,} account(s) (rows {rows}) are not in the export {data}: pass the "
                "scores and the export of the same CRM"
            )
        pre_start = pd.Timestamp(first_day) - pd.Timedelta(days=horizon)
        ids = book["account_id"].astype(str)
        history = account_activity(crm.opportunities, ids, pre_start, pd.Timestamp(first_day))
        earlier = account_activity(crm.opportunities, ids, pre_start - pd.Timedelta(days=horizon), pre_start)
        # Stratification columns the scores lack (industry, country...) come from the export's accounts.
        wanted = [c for c in columns if c not in book.columns and c in crm.accounts.columns]
        if wanted:
            extra = crm.accounts[["account_id", *wanted]].astype({"account_id": str})
            book = book.astype({"account_id": str}).merge(extra, on="account_id", how="left")
    balance_history = None
    if history is not None:
        balance_history = history[["account_id", "pipeline", "deals_won", "won_revenue"]].rename(
            columns=lambda c: c if c == "account_id" else f"history_{c}"
        )
    try:
        made = design_pilot(
            book,
            chosen_tiers,
            seed=seed,
            strata=columns,
            size=size,
            share=share,
            history=balance_history,
            threshold=settings.max_standardised_difference,
            max_draws=settings.max_draws,
        )
    except DesignError as error:
        raise UserError(f"{scores}: {error}") from None
    power = None
    if history is not None:
        power = design_power(made.assignment, metric, history, earlier, target_lift)
    worst = float(made.balance["standardised_difference"].abs().max()) if len(made.balance) else 0.0
    document = pilot_document(
        made.assignment,
        seed=seed,
        start=first_day,
        horizon_days=horizon,
        metric=metric,
        tiers=chosen_tiers,
        strata=columns,
        draw=made.draw,
        draws_tried=made.draws,
        balanced=made.balanced,
        max_standardised_difference=round(worst, 4),
        balance_threshold=made.threshold,
        size=size,
        share=share,
        eligible_accounts=made.eligible_accounts,
        units=made.units,
        clustered=made.clustered,
        scores_file=scores.name,
        power=None
        if power is None
        else {
            "baseline": power.baseline,
            "detectable_difference": power.detectable_difference,
            "detectable_lift": power.detectable_lift,
            "with_cuped": power.with_cuped,
            "target_lift": target_lift,
            "units_per_group_for_target": power.units_per_group_for_target,
        },
    )
    with WorkspaceStore.open() as store:
        # The store refuses an overlapping pilot before any file is written; files that cannot be written take the
        # pilot back out of the store.
        publish_pilot(store, document, made.assignment, current_user())
        try:
            publish(out, PILOT_FILE, pilot_json(document), {ASSIGNMENT_FILE.removesuffix(".csv"): made.assignment})
        except BaseException:
            withdraw_pilot(store, document["pilot_id"])
            raise

    treated = document["treatment"]
    _say(
        f"pilot {document['pilot_id']}: {document['accounts']:,} accounts of {made.eligible_accounts:,} in "
        f"{', '.join(chosen_tiers)}; {treated:,} treatment, {document['control']:,} control; "
        f"{first_day.isoformat()} to {(first_day + timedelta(days=horizon - 1)).isoformat()} ({horizon} days)"
    )
    for note in made.notes:
        _say(f"note: {note}", "yellow")
    if made.balanced:
        _say(
            f"balance: largest standardised difference {worst:.3f} (at most {made.threshold}) on draw "
            f"{made.draw + 1} of {made.draws}"
        )
    else:
        _say(
            f"balance: no draw of {made.draws} kept every standardised difference within {made.threshold}; the best "
            f"(draw {made.draw + 1}) differs by {worst:.3f}: stratify by the unbalanced column or enlarge the pilot",
            "yellow",
        )
    if power is not None:
        _say(power.sentence())
    else:
        err_console.print("[yellow]note:[/] pass --data EXPORT for the power statement (from the accounts' history)")
    _say(f"written: {out / ASSIGNMENT_FILE}, {out / PILOT_FILE}; published to the workspace (frozen)")


@friendly_errors
def readout(
    assignment: Annotated[
        Path, typer.Argument(help="The design's folder, or its assignment.csv (pilot.json beside it).")
    ],
    data: Annotated[Path, typer.Argument(help="The export covering the pilot period (CSV or Parquet files).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for readout.html and its tables.")],
    until: Annotated[
        str | None,
        typer.Option("--until", help="Read out as of this day, YYYY-MM-DD (default: the export's latest date)."),
    ] = None,
    mapping: MappingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """After the pilot period: per metric, treatment against control, the lift as a difference and a ratio with
    95% intervals (stratified, CUPED), per tier and pooled; the sample-ratio check; the four groups; a verdict."""
    import pandas as pd

    from cli.workspace import open_existing_store
    from pilot.metrics import account_activity
    from pilot.readout import LIFT_COLUMNS, read_out
    from reports.pilot import check_known_accounts, read_pilot
    from reports.pilot_mlflow import log_readout
    from reports.pilot_page import READOUT_PAGE, render_readout
    from reports.report import check_output_folder, publish
    from workspace.pilots import store_readout

    use_config(config)
    as_of = _day(until, "--until")  # options first: a bad one is refused before any file is read
    check_output_folder(out, READOUT_PAGE)
    files = read_pilot(assignment)
    crm = load_data(data, mapping)
    check_known_accounts(files, crm.accounts["account_id"], str(data))
    opportunities = crm.opportunities
    latest = pd.concat([opportunities["created_date"], opportunities.get("close_date", pd.Series())]).max()
    if as_of is None:
        as_of = (pd.Timestamp(latest) + pd.Timedelta(days=1)).date() if pd.notna(latest) else files.start.date()
    elif pd.isna(latest) or pd.Timestamp(latest) < files.end - pd.Timedelta(days=1):
        err_console.print(
            f"[yellow]warning:[/] the export's latest date is {escape(str(pd.Timestamp(latest).date()))}, before the "
            f"pilot's last day {(files.end - pd.Timedelta(days=1)).date()}: activity after it counts as none",
            highlight=False,
            soft_wrap=True,
        )
    left = (files.end.date() - as_of).days
    if left > 0:
        raise UserError(
            f"the pilot {files.pilot['pilot_id']} runs until {(files.end - pd.Timedelta(days=1)).date()}: {left} "
            f"day(s) left (the data or --until reach {as_of - timedelta(days=1)}); read it out from "
            f"{files.end.date()} on an export that covers the period"
        )
    ids = files.assignment["account_id"]
    activity = account_activity(opportunities, ids, files.start, files.end)
    prior = account_activity(opportunities, ids, files.start - (files.end - files.start), files.start)
    power = files.pilot.get("power") or {}
    result = read_out(files.assignment, activity, prior, files.metric, power.get("detectable_lift"))
    page = render_readout(result, files.pilot, str(data))
    publish(
        out,
        READOUT_PAGE,
        page,
        {
            "lift": result.lift[LIFT_COLUMNS],
            "groups": result.groups,
            "four_groups": result.four_groups,
            "cuped": result.narrowing,
        },
    )
    run_id = log_readout(files.pilot, result.lift, out)
    store = open_existing_store()
    kept = False
    if store is not None:
        with store:
            kept = store_readout(store, str(files.pilot["pilot_id"]), readout_record(result, files.pilot))
    _say(result.ratio_check.sentence(), "red" if result.ratio_check.mismatch else "")
    for note in result.notes:
        _say(f"note: {note}", "yellow")
    console.print(_lift_console_table(result))
    _say(f"verdict: {result.verdict}", "bold")
    _say(f"written: {out / READOUT_PAGE} (lift.csv, groups.csv, four_groups.csv, cuped.csv beside it)")
    _say(f"logged to MLflow run {run_id}" + ("; kept with the pilot in the workspace" if kept else ""))


def readout_record(result, pilot: dict) -> dict:
    """What the workspace's pilot page shows of a readout: the verdict, the ratio check and the pooled lifts."""
    lift = result.lift[result.lift["scope"] == "pooled"]
    return {
        "verdict": result.verdict,
        "sample_ratio": result.ratio_check.sentence(),
        "metric": str(result.metric),
        "lift": [
            {key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
            for row in lift.to_dict("records")
        ],
        "four_groups": [
            {key: (None if isinstance(value, float) and value != value else value) for key, value in row.items()}
            for row in result.four_groups.to_dict("records")
        ],
    }


def _lift_console_table(result):
    from rich.table import Table

    from pilot.metrics import LABELS, Metric
    from reports.pilot_page import metric_value

    table = Table(title="Lift: treatment against control, per account (95% intervals)")
    for column in ("metric", "scope", "treatment", "control", "lift", "95% interval", "p"):
        table.add_column(column, justify="left" if column in ("metric", "scope") else "right")
    ratios = result.lift[result.lift["kind"] == "ratio"]
    for row in ratios.itertuples():
        metric = Metric(row.metric)
        table.add_row(
            LABELS[metric],
            row.scope,
            metric_value(str(metric), row.treatment),
            metric_value(str(metric), row.control),
            f"{row.estimate - 1:+.1%}",
            f"{row.low - 1:+.1%} to {row.high - 1:+.1%}",
            f"{row.p_value:.3f}",
        )
    return table
