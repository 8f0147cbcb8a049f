"""`tiering forecast`: per-tier pipeline and revenue expected inside the horizon, with 80% intervals; with
`--backtest`, the same forecast re-run from past origins and measured against what happened."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import (
    AsOfOpt,
    ConfigOpt,
    InvalidRowsOpt,
    MappingOpt,
    ModelOpt,
    UserError,
    console,
    err_console,
    friendly_errors,
    parse_as_of,
    say_as_of,
    say_model_config,
    say_open_at_deal_size,
    steps,
    use_config,
)
from cli.engines import Engine, EngineOpt, ExportArg, SparkMasterOpt, open_export

FORECAST_PAGE = "forecast.html"


def _compact(value: float, money: bool) -> str:
    if value != value:  # NaN: an amount the export does not have
        return "unknown"
    from scoring.reasons import compact

    return compact(value, "$" if money else "")


def _cell(row: dict, name: str, money: bool) -> str:
    """The point forecast, and its 80% interval on the line below."""
    if row[name] != row[name]:  # NaN: unknown, and so is its interval
        return "unknown"
    low, high = _compact(row[name + "_low"], money), _compact(row[name + "_high"], money)
    return f"{_compact(row[name], money)}\n{low}-{high}"


def forecast_table(table, title: str):
    from rich.table import Table

    out = Table(title=title)
    out.add_column("tier")
    out.add_column("accounts", justify="right")
    for name in ("new opps", "pipeline", "deals won", "won revenue"):
        out.add_column(name, justify="right")
    for row in table.to_dict("records"):
        out.add_row(
            row["tier"],
            f"{row['accounts']:,}",
            _cell(row, "new_opportunities", False),
            _cell(row, "pipeline_value", True),
            _cell(row, "deals_won", False),
            _cell(row, "won_revenue", True),
        )
    return out


def check_as_of_inside(frame, latest, cutoff) -> None:
    """An --as-of before the export's first opportunity or after the day after its latest date (`latest`) is
    refused."""
    import pandas as pd

    first, last = frame.opportunities["created_date"].min(), latest
    if cutoff is not None and not (first < cutoff <= last):
        raise UserError(
            f"--as-of {cutoff.date()} is outside the data (opportunities from {first.date()}; the latest date is "
            f"{(last - pd.Timedelta(days=1)).date()}): pass a date between them"
        )


@friendly_errors
def forecast(
    data: ExportArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for forecast.html and its CSV tables (replaced whole).")],
    mapping: MappingOpt = None,
    model: ModelOpt = None,
    as_of: AsOfOpt = None,
    config: ConfigOpt = None,
    invalid_rows: InvalidRowsOpt = None,
    backtest: Annotated[
        bool,
        typer.Option(
            "--backtest",
            help="Also re-run the forecast from past origins, each with a model trained only on data before it, "
            "and compare with what happened (trains one model per origin).",
        ),
    ] = False,
    origins: Annotated[int, typer.Option("--origins", min=1, max=12, help="Backtest origins, 30 days apart.")] = 3,
    simulations: Annotated[
        int, typer.Option("--simulations", min=100, max=100_000, help="Simulations behind each interval.")
    ] = 10_000,
    engine: EngineOpt = Engine.PANDAS,
    spark_master: SparkMasterOpt = "local[2]",
) -> None:
    """Per tier (and overall): new opportunities, pipeline value, deals won and won revenue expected inside the
    horizon (model.horizon_days), each with an 80% interval from simulation over the accounts."""
    from ingest.repair import invalid_rows_mode
    from reports.report import check_output_folder

    cutoff = parse_as_of(as_of)  # bad options and an --out holding the user's own files are refused before any work
    settings = use_config(config)
    rows_mode = invalid_rows_mode(invalid_rows, settings)
    check_output_folder(out, FORECAST_PAGE)
    with open_export(data, mapping, rows_mode, settings, engine, spark_master, "abm-tiering forecast") as export:
        _forecast(export, data, out, model, cutoff, settings, config, backtest, origins, simulations)


def _forecast(export, data: str, out: Path, model, cutoff, settings, config, backtest, origins, simulations) -> None:
    """The forecast of an export opened on its engine (the rest of `forecast`)."""
    import pandas as pd

    from ingest.spill import events_by_group
    from reports.report import publish
    from scoring.forecast import fan
    from scoring.registry import resolve_model

    frame = export.data
    check_as_of_inside(frame, export.latest, cutoff)
    scorer, version = resolve_model(model, settings)
    pipeline = scorer.scorer.pipeline
    if not scorer.is_learned or pipeline is None:
        raise UserError(
            "the model has no pipeline-propensity learner (rules only, or trained before it existed), so it cannot "
            "forecast: train a new version with `tiering train` and forecast with it"
        )
    say_model_config(scorer, version, settings, config)
    given, cutoff = cutoff is not None, cutoff or export.latest
    say_as_of(cutoff, given, "the day after the latest date in the export")
    horizon = pipeline.horizon_days
    if pipeline.note:
        err_console.print(f"[yellow]note:[/] {escape(pipeline.note)}", highlight=False, soft_wrap=True)
    tables: dict[str, pd.DataFrame] = {}
    summary = None
    with events_by_group(frame), steps(3 + (origins if backtest else 0)) as progress:
        progress("scoring the book and simulating the horizon")
        features = export.book(scorer.config, cutoff)
        _, table, inputs = scorer.forecast_book(
            frame, cutoff, model_version=version, simulations=simulations, features=features
        )
        progress("the fan chart's steps")
        fan_table = fan(inputs, pipeline)
        tables["forecast"], tables["fan"] = table, fan_table
        if backtest:
            from training.backtest import backtest as run_backtest
            from training.backtest import backtest_summary

            cells = run_backtest(
                frame,
                settings,
                cutoff,
                origins,
                simulations=min(simulations, 2_000),
                progress=progress,
                engine=export.rows(settings),
            )
            summary = backtest_summary(cells)
            tables["backtest"], tables["backtest_summary"] = cells, summary
        progress(f"writing {out}")
        from reports.forecast_page import render_forecast

        page = publish(
            out,
            FORECAST_PAGE,
            render_forecast(
                table, fan_table, summary, tables.get("backtest"), cutoff, horizon, version, str(data), simulations
            ),
            tables,
        )
    end = (cutoff + pd.Timedelta(days=horizon - 1)).date()
    title = f"Forecast {cutoff.date()} to {end} ({horizon} days), model {version}: expected, 80% interval below"
    console.print(forecast_table(table, title))
    if table["won_revenue"].isna().all():
        err_console.print(
            "[yellow]note:[/] the model knows no deal size (the export's opportunities have no amount), so pipeline "
            "value and won revenue are unknown; the counts stand. Map opportunities.amount to forecast them.",
            highlight=False,
            soft_wrap=True,
        )
    say_open_at_deal_size(inputs.open_at_deal_size, "pipeline value and won revenue")
    if summary is not None:
        for row in summary.to_dict("records"):
            console.print(
                f"backtest {row['quantity']}: the 80% interval covered {row['coverage']:.0%} of {row['cells']} "
                f"tier x origin cells; mean absolute percentage error of the point forecast {row['mape']:.0%}",
                highlight=False,
            )
    if summary is not None:
        _log_backtest(model, out, summary)
    console.print(escape(f"Forecast: {page}"), highlight=False, soft_wrap=True)


def _log_backtest(model_uri: str | None, out: Path, summary) -> None:
    """The backtest goes to the forecast model's training run (forecast/ and backtest_* metrics); a store that
    cannot take it is said, the files are written either way."""
    from reports.compare import model_run_id
    from scoring import registry

    try:
        run_id = model_run_id(model_uri)
        client = registry.client()
        client.log_artifacts(run_id, str(out), "forecast")
        for row in summary.to_dict("records"):
            client.log_metric(run_id, f"backtest_{row['quantity']}_coverage", row["coverage"])
            if row["mape"] == row["mape"]:
                client.log_metric(run_id, f"backtest_{row['quantity']}_mape", row["mape"])
        console.print(f"Backtest logged to MLflow run {run_id} under forecast/", highlight=False)
    except Exception as error:  # MLflow raises many types for an unreachable store
        err_console.print(
            f"[yellow]warning:[/] the backtest is in {escape(str(out))} but could not be logged to MLflow: "
            f"{escape(registry.first_line(error))}",
            highlight=False,
            soft_wrap=True,
        )
