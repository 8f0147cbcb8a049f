"""The page of `tiering pilot readout` (readout.html): the verdict, the lift of every metric with its 95% interval
(pooled and per tier), the four groups, CUPED's gain and the design. Python prepares values; the template marks up."""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure

from pilot.metrics import AMOUNTS, LABELS, READOUT_ORDER, Metric
from pilot.readout import POOLED, Readout
from reports.html import Column, count, figure, money, percent, render, table

READOUT_PAGE = "readout.html"
TREATMENT_COLOUR, CONTROL_COLOUR = "#1f6feb", "#9ca3af"


def metric_value(metric: str, value) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    if metric == Metric.WIN_RATE:
        return percent(value, 1)
    if metric in AMOUNTS:
        return money(value) if value >= 0 else "-" + money(-value)
    return f"{value:,.3f}"


def _signed_change(ratio) -> str:
    return "–" if not np.isfinite(ratio) else f"{ratio - 1:+.0%}"


def forest_chart(lift: pd.DataFrame) -> Figure:
    """Each metric's ratio with its 95% interval, one row per scope, the no-change line at 0%."""
    ratios = lift[lift["kind"] == "ratio"].reset_index(drop=True)
    height = 0.9 + 0.34 * len(ratios)
    chart = Figure(figsize=(9, height))
    axis = chart.subplots()
    labels = []
    for row_number, row in ratios.iloc[::-1].reset_index(drop=True).iterrows():
        position = float(row_number)  # type: ignore[arg-type]
        low, high, estimate = (row[c] - 1 for c in ("low", "high", "estimate"))
        colour = "#047857" if low > 0 else "#b91c1c" if high < 0 else "#374151"
        axis.plot([low * 100, high * 100], [position, position], color=colour, linewidth=2.2)
        axis.plot([estimate * 100], [position], "o", color=colour)
        labels.append(f"{LABELS[Metric(row['metric'])]} · {row['scope'].replace('_', ' ')}")
    axis.axvline(0, color="#111827", linewidth=1, linestyle="--")
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlabel("treatment against control (%)", fontsize=8)
    axis.tick_params(axis="x", labelsize=8)
    axis.grid(axis="x", alpha=0.3)
    chart.tight_layout()
    return chart


def four_group_chart(four: pd.DataFrame, metric: Metric) -> Figure:
    """The design's metric per account in each score band, treated beside control."""
    chart = Figure(figsize=(6.5, 3.0))
    axis = chart.subplots()
    bands = sorted(four["score_band"].unique())
    for offset, (group, colour) in enumerate((("treatment", TREATMENT_COLOUR), ("control", CONTROL_COLOUR))):
        part = four[four["group"] == group].set_index("score_band").reindex(bands)
        axis.bar(np.arange(len(bands)) + (offset - 0.5) * 0.38, part[str(metric)], 0.38, color=colour, label=group)
    axis.set_xticks(range(len(bands)), [f"{band} score" for band in bands], fontsize=9)
    axis.set_ylabel(LABELS[metric] + (" per account" if metric != Metric.WIN_RATE else ""), fontsize=8)
    axis.tick_params(axis="y", labelsize=8)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    chart.tight_layout()
    return chart


def _lift_table(readout: Readout) -> Markup:
    wide = []
    for (metric, scope), part in readout.lift.groupby(["metric", "scope"], sort=False):
        difference = part[part["kind"] == "difference"].iloc[0]
        ratio = part[part["kind"] == "ratio"].iloc[0]
        wide.append(
            {
                "metric": LABELS[Metric(metric)],
                "scope": scope,
                "treatment": metric_value(metric, difference["treatment"]),
                "control": metric_value(metric, difference["control"]),
                "difference": metric_value(metric, difference["estimate"]),
                "difference_interval": f"{metric_value(metric, difference['low'])} to "
                f"{metric_value(metric, difference['high'])}",
                "lift": _signed_change(ratio["estimate"]),
                "lift_interval": f"{_signed_change(ratio['low'])} to {_signed_change(ratio['high'])}",
                "p_value": "–" if not np.isfinite(ratio["p_value"]) else f"{ratio['p_value']:.3f}",
                "estimator": difference["estimator"],
            }
        )
    return table(
        pd.DataFrame(wide),
        [
            Column("Metric", "metric", numeric=False),
            Column("Scope", "scope", numeric=False),
            Column("Treatment", "treatment"),
            Column("Control", "control"),
            Column("Difference", "difference"),
            Column("95% interval", "difference_interval"),
            Column("Lift", "lift"),
            Column("95% interval", "lift_interval"),
            Column("p", "p_value"),
            Column("Estimator", "estimator", numeric=False),
        ],
        [("", 2), ("Per account", 2), ("Difference", 2), ("Ratio", 3), ("", 1)],
    )


def _formatter(metric: Metric):
    def shown(value) -> str:
        return metric_value(str(metric), value)

    return shown


def _four_table(four: pd.DataFrame) -> Markup:
    return table(
        four,
        [
            Column("Score band", "score_band", numeric=False),
            Column("Group", "group", numeric=False),
            Column("Accounts", "accounts", count),
            *[Column(LABELS[m], str(m), _formatter(m)) for m in READOUT_ORDER],
        ],
    )


def _cuped_table(narrowing: pd.DataFrame) -> Markup:
    frame = narrowing.assign(label=narrowing["metric"].map(lambda m: LABELS[Metric(m)]))
    return table(
        frame,
        [
            Column("Metric", "label", numeric=False),
            Column("Scope", "scope", numeric=False),
            Column("Width without", lambda r: metric_value(r["metric"], r["plain_width"])),
            Column("Width with CUPED", lambda r: metric_value(r["metric"], r["cuped_width"])),
            Column("Narrower by", "narrower_by", lambda v: percent(v, 0)),
        ],
    )


def _design_table(pilot: dict, ratio_sentence: str) -> Markup:
    power = pilot.get("power") or {}
    rows = [
        ("Pilot", pilot["pilot_id"]),
        ("Seed (draw)", f"{pilot['seed']} ({int(pilot.get('draw', 0)) + 1})"),
        ("Tiers", ", ".join(pilot["tiers"])),
        ("Strata", ", ".join(pilot["strata"]) or "the tier only"),
        ("Accounts", f"{pilot.get('treatment', '?')} treatment, {pilot.get('control', '?')} control"),
        ("Balance", f"largest standardised difference {pilot.get('max_standardised_difference', '–')}"),
        (
            "Power (as designed)",
            f"{power['detectable_lift']:+.0%} detectable at 80% power, 5% significance"
            if power.get("detectable_lift") is not None
            else "not stated (the design had no history)",
        ),
        ("Sample ratio", ratio_sentence),
    ]
    return table(
        pd.DataFrame(rows, columns=["what", "value"]),
        [Column("", "what", numeric=False), Column("", "value", numeric=False)],
    )


def render_readout(readout: Readout, pilot: dict, data_label: str) -> str:
    metric = readout.metric
    start = pd.Timestamp(pilot["start_date"])
    pooled = readout.lift[(readout.lift["scope"] == POOLED) & (readout.lift["kind"] == "ratio")].set_index("metric")
    cards = []
    for name in READOUT_ORDER:
        if str(name) not in pooled.index:
            continue
        row = pooled.loc[str(name)]
        cards.append(
            (
                LABELS[name],
                _signed_change(row["estimate"]),
                f"95% CI {_signed_change(row['low'])} to {_signed_change(row['high'])} · "
                f"{metric_value(str(name), row['treatment'])} vs {metric_value(str(name), row['control'])}",
            )
        )
    return render(
        READOUT_PAGE,
        pilot=pilot,
        data_label=data_label,
        start=start,
        last_day=start + pd.Timedelta(days=int(pilot["horizon_days"]) - 1),
        metric_label=LABELS[metric],
        cards=cards,
        verdict=readout.verdict,
        srm_mismatch=readout.ratio_check.mismatch,
        srm_sentence=readout.ratio_check.sentence(),
        forest_figure=figure(
            forest_chart(readout.lift),
            "each line is one metric in one scope: the dot is treatment's change against control, the line its 95% "
            "interval. Green lies wholly right of the dashed no-change line (a lift), red wholly left, grey "
            "crosses it (no detectable change).",
            "Lift of each metric with its 95% interval",
        ),
        lift_table=_lift_table(readout),
        four_figure=figure(
            four_group_chart(readout.four_groups, metric),
            f"each pair of bars is one score band; the gap between blue (treated) and grey (control) is what the "
            f"programme did to {LABELS[metric]}, the gap between the bands is who was chosen.",
            "The design's metric in the four groups",
        ),
        four_table=_four_table(readout.four_groups),
        cuped_table=_cuped_table(readout.narrowing),
        design_table=_design_table(pilot, readout.ratio_check.sentence()),
        written=pd.Timestamp.now(tz="UTC"),
    )
