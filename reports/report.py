"""Self-contained HTML pages for `tiering compare` and `tiering diff`: one file, plots embedded, no external assets.

The building blocks (page, section, tables, tier matrices, figures, number formats, the atomic write of a
page with its CSV tables) are shared by both pages, so they look the same and are built one way.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from features.config import TIER_NAMES, UNTIERED
from features.errors import DataError, Problem
from features.files import check_writable_target, write_table
from reports.compare import COMPONENTS, MOVER_LEVELS, Comparison, gain_at, won_revenue_by_account
from reports.diff import TierDiff
from training import plots

REPORT_PAGE = "report.html"
DIFF_PAGE = "diff.html"
MOVERS_SHOWN = 40  # the full lists are in the CSV files beside the page
TIERS = [*TIER_NAMES, UNTIERED]

CSS = """
:root { --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --page: #f5f7fa; --accent: #1f6feb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 28px 48px; }
header h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
header .subtitle { color: var(--muted); margin: 0 0 16px; }
nav { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 14px 0 4px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 20px 24px; margin: 18px 0; }
h2 { font-size: 18px; margin: 0 0 4px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
p.lead { color: var(--muted); margin: 0 0 14px; max-width: 900px; }
figure { margin: 14px 0 6px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption, .caption { color: var(--muted); font-size: 13px; margin-top: 6px; }
figcaption b, .caption b { color: var(--ink); font-weight: 600; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: #f3f4f6; font-weight: 600; vertical-align: bottom; }
thead tr.groups th { background: #fff; text-align: center; color: var(--muted); font-weight: 600;
                     border-bottom: 2px solid var(--line); }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; }
td.num, td:first-child { white-space: nowrap; }
th.start, td.start, thead tr.groups th + th { border-left: 2px solid var(--line); }
.sub { display: block; color: var(--muted); font-size: 11px; }
.reasons { font-size: 12px; color: #374151; min-width: 260px; white-space: normal; }
.tier { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600;
        color: #fff; white-space: nowrap; }
.up { color: #047857; font-weight: 600; } .down { color: #b91c1c; font-weight: 600; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: 12px; margin: 8px 0; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.kpi .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.04em; }
.kpi .value { font-size: 24px; font-weight: 650; margin: 2px 0; }
.kpi .note { color: var(--muted); font-size: 12px; }
.banner { border-left: 4px solid #d97706; background: #fffbeb; padding: 12px 16px; border-radius: 6px; margin: 12px 0; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; align-items: start; }
.columns.wide-left { grid-template-columns: 3fr 2fr; }
@media (max-width: 960px) { .columns, .columns.wide-left { grid-template-columns: 1fr; } }
table.matrix { width: auto; margin: 0 auto; }
table.matrix td { text-align: center; min-width: 92px; }
table.matrix td.diagonal { outline: 2px solid #111827; outline-offset: -2px; }
table.matrix th.corner { font-weight: 400; color: var(--muted); font-size: 12px; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
@media print { body { background: #fff; } section { break-inside: avoid; border: none; } }
"""


class Html(str):
    """A fragment that is already HTML; every other value is escaped when placed on a page."""


def escape(value) -> Html:
    return value if isinstance(value, Html) else Html(html.escape("" if value is None else str(value)))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def count(value) -> str:
    return "–" if _missing(value) else f"{int(value):,}"


def percent(value, digits: int = 0) -> str:
    return "–" if _missing(value) else f"{value:.{digits}%}"


def money(value) -> str:
    return "–" if _missing(value) else f"${value:,.0f}"


def points(value) -> str:
    return "–" if _missing(value) else f"{value:.0f}"


def signed(value) -> str:
    return "–" if _missing(value) else f"{int(value):+,}"


def tier_badge(tier: str) -> Html:
    colour = plots.TIER_COLOURS.get(tier, "#6b7280")
    return Html(f'<span class="tier" style="background:{colour}">{escape(plots.TIER_LABELS.get(tier, tier))}</span>')


def account(record: dict) -> Html:
    """An account's name with its id underneath (the id alone when there is no name)."""
    name, account_id = record.get("account_name", record["account_id"]), record["account_id"]
    if name == account_id:
        return escape(name)
    return Html(f'{escape(name)}<span class="sub">{escape(account_id)}</span>')


def levels_moved(levels: int) -> Html:
    """Signed tier levels as ▲ 2 (towards Tier 1) or ▼ 1."""
    return Html(f"<span class=up>▲ {levels}</span>" if levels > 0 else f"<span class=down>▼ {-levels}</span>")


def before_after(column: str, format: Callable[[object], str]) -> Callable[[dict], str]:
    """A cell showing old_<column> → new_<column>."""
    return lambda record: f"{format(record[f'old_{column}'])} → {format(record[f'new_{column}'])}"


def as_is(value):
    return value


@dataclass(frozen=True)
class Column:
    title: str
    value: str | Callable[[dict], object]  # a column of the table, or a function of the whole row
    format: Callable[[object], str] = as_is  # to text, or to Html for a cell that is markup already
    numeric: bool = True

    def cell(self, record: dict) -> Html:
        value = self.value(record) if callable(self.value) else record[self.value]
        return escape(self.format(value))


def table(frame: pd.DataFrame, columns: list[Column], groups: list[tuple[str, int]] | None = None) -> Html:
    """A table of `frame`'s rows; `groups` spans a header row over consecutive columns (title, width)."""
    starts = set(np.cumsum([width for _, width in groups])[:-1]) if groups else set()  # a rule before each group

    def classes(index: int, column: Column) -> str:
        names = " ".join(name for name, on in (("num", column.numeric), ("start", index in starts)) if on)
        return f' class="{names}"' if names else ""

    head = ""
    if groups:
        head += (
            "<tr class=groups>"
            + "".join(f"<th colspan={width}>{escape(title)}</th>" for title, width in groups)
            + "</tr>"
        )
    head += "<tr>" + "".join(f"<th{classes(i, c)}>{escape(c.title)}</th>" for i, c in enumerate(columns)) + "</tr>"
    rows = []
    for record in frame.to_dict("records"):
        rows.append(
            "<tr>" + "".join(f"<td{classes(i, c)}>{c.cell(record)}</td>" for i, c in enumerate(columns)) + "</tr>"
        )
    return Html(f"<div class=scroll><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>")


def matrix(counts: pd.DataFrame, row_title: str, column_title: str) -> Html:
    """Tier against tier: count and share of all accounts per cell, shaded by share, agreement outlined."""
    total = max(int(counts.to_numpy().sum()), 1)
    high = max(counts.to_numpy().max() / total, 1e-9)
    header = "".join(f"<th class=num>{tier_badge(t)}</th>" for t in counts.columns)
    rows = []
    for row_tier, row in counts.iterrows():
        cells = []
        for column_tier, value in row.items():
            share = value / total
            strength = math.sqrt(share / high)  # square root: small cells stay visible next to a large one
            colour = "#fff" if strength > 0.6 else "#111827"
            style = f"background:rgba(31,111,235,{0.06 + 0.8 * strength:.2f});color:{colour}"
            outline = " diagonal" if row_tier == column_tier else ""
            cells.append(
                f'<td class="num{outline}" style="{style}"><b>{count(value)}</b>'
                f'<span class=sub style="color:inherit">{percent(share, 1)}</span></td>'
            )
        rows.append(f"<tr><th>{tier_badge(row_tier)}</th>{''.join(cells)}</tr>")
    corner = f"<th class=corner>{escape(row_title)} ↓ · {escape(column_title)} →</th>"
    return Html(
        f"<div class=scroll><table class=matrix><thead><tr>{corner}{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def figure(chart: Figure, caption: str, alt: str) -> Html:
    """The matplotlib figure as an embedded PNG (closed afterwards), with its how-to-read caption."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    chart.savefig(buffer, format="png", dpi=130, bbox_inches="tight", facecolor="white")
    plt.close(chart)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Html(
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
        f"<figcaption><b>How to read:</b> {escape(caption)}</figcaption></figure>"
    )


def caption(text: str) -> Html:
    return Html(f"<p class=caption>{escape(text)}</p>")


def kpis(items: Iterable[tuple[str, str, str]]) -> Html:
    cards = "".join(
        f"<div class=kpi><div class=label>{escape(label)}</div><div class=value>{escape(value)}</div>"
        f"<div class=note>{escape(note)}</div></div>"
        for label, value, note in items
    )
    return Html(f"<div class=kpis>{cards}</div>")


def banner(text: str) -> Html:
    return Html(f"<div class=banner>{escape(text)}</div>")


def columns(*parts: str, wide_left: bool = False) -> Html:
    inner = "".join(f"<div>{part}</div>" for part in parts)
    return Html(f'<div class="columns{" wide-left" if wide_left else ""}">{inner}</div>')


def section(anchor: str, title: str, lead: str, *parts: str) -> Html:
    return Html(
        f"<section id={anchor}><h2>{escape(title)}</h2><p class=lead>{escape(lead)}</p>{''.join(parts)}</section>"
    )


def page(title: str, subtitle: str, intro: list[str], sections: list[tuple[str, str, Html]], footer: str) -> str:
    """A whole page; `sections` are (anchor, menu title, section HTML) in order."""
    menu = "".join(f'<a href="#{anchor}">{escape(name)}</a>' for anchor, name, _ in sections)
    body = "".join(part for _, _, part in sections)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta name=viewport content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><main><header><h1>{escape(title)}</h1>"
        f"<p class=subtitle>{escape(subtitle)}</p>{''.join(intro)}<nav>{menu}</nav></header>{body}"
        f"<footer>{escape(footer)}</footer></main></body></html>"
    )


# Written into every output folder: the files the command wrote there, so a later run replaces exactly those and
# refuses a folder holding anything else (the user's own notes are never deleted).
MANIFEST = ".tiering-output.json"
# Outputs written before the manifest existed: their page and the tables each command writes.
LEGACY_TABLES = {
    REPORT_PAGE: {"summary", "holdout_tiers", "book_tiers", "gain", "scores", "agreement", "agreement_stats", "movers"},
    DIFF_PAGE: {"tier_counts", "transitions", "moves"},
}


def _written_by_us(out: Path, page_name: str) -> set[str]:
    """The names in `out` that an earlier output of this command wrote (empty when there is no such output)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("page") == page_name and isinstance(manifest.get("files"), list):
            return {str(name) for name in manifest["files"]} | {MANIFEST}
    except (OSError, ValueError, AttributeError):
        pass
    legacy = {page_name} | {f"{name}.csv" for name in LEGACY_TABLES.get(page_name, ())}
    return legacy if (out / page_name).is_file() else set()


def check_output_folder(out: Path, page_name: str) -> None:
    """Refuse, before any work, an --out that is not a new folder, an empty one or an earlier output of this command
    (a page and the files its manifest lists, nothing else): replacing it would delete files the tool did not write."""
    out = Path(out)
    check_writable_target(out, folder=True)
    if not out.is_dir():
        return
    present = sorted(out.iterdir())
    if not present:
        return
    ours = _written_by_us(out, page_name)
    foreign = [
        path.name + ("/" if path.is_dir() else "")
        for path in present
        if path.name not in ours or not path.is_file() or path.is_symlink()
    ]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DataError(
            [
                Problem(
                    f"--out is not an empty folder or an earlier {page_name} output: it holds {shown}, "
                    "which tiering did not write (replacing the folder would delete them)",
                    "pass a new or empty folder, or the folder of an earlier output to replace",
                    file=str(out),
                )
            ]
        )


def publish(out: Path, page_name: str, text: str, tables: dict[str, pd.DataFrame]) -> Path:
    """Write the page and its CSV tables into `out`, replacing an earlier output of the same command whole.

    Everything is written into a staging folder beside `out` first: an interrupted run leaves the
    previous output as it was. A folder holding anything tiering did not write is refused rather than replaced.
    """
    out = Path(out)
    check_output_folder(out, page_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for name, frame in tables.items():
            write_table(frame, staging / f"{name}.csv")
        (staging / page_name).write_text(text, encoding="utf-8")
        files = [page_name, *(f"{name}.csv" for name in tables)]
        (staging / MANIFEST).write_text(json.dumps({"page": page_name, "files": files}), encoding="utf-8")
        # mkdtemp and write_table's temporary files are private; a report is for sharing.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if out.exists():
            retired = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(out, retired)  # an interruption between these two renames leaves the old output here
            os.replace(staging, out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / page_name


# --- tiering compare ---------------------------------------------------------------------------------

CAPTIONS = {  # how to read each figure, one line each
    "holdout": "each bar is one tiering's tier; a good tiering has a high win rate and a large share of revenue in "
    "Tier 1 and 2, and little left in Untiered.",
    "gain": "accounts ranked by each score at the holdout start, best first; the higher a curve at a given share of "
    "accounts, the more of the holdout's won revenue those accounts brought. Lift is that share divided by "
    "the share of accounts (1 = random order).",
    "calibration": "each point is a tenth of the deals, grouped by predicted probability; on the dashed diagonal, "
    "deals predicted to win 30% of the time won 30% of the time.",
    "map": "up is likelier to win, right fits the ideal customer profile better, bigger bubbles are worth more; "
    "Tier 1 accounts are named on the right.",
}


def holdout_chart(c: Comparison) -> Figure:
    return plots.tier_outcome_figure(c.holdout_tiers)


def gain_chart(c: Comparison) -> Figure:
    value = won_revenue_by_account(c.holdout).to_numpy()
    book = c.holdout.book
    scores = {name: book[column].to_numpy() for column, name in c.ranking_scores.items() if column not in COMPONENTS}
    components = {name: book[column].to_numpy() for column, name in COMPONENTS.items()}
    return plots.score_gain_figure(value, scores, components)


def calibration_chart(c: Comparison) -> Figure:
    """Learned models only: the learned win probability against the rule score's logistic link."""
    deals = c.holdout.opportunities
    return plots.calibration_quantile_figure(
        deals["won"].to_numpy(),
        {
            "learned win probability": deals["win_probability"].to_numpy(),
            "rule score (logistic link)": deals["rule_probability"].to_numpy(),
        },
    )


def priority_chart(c: Comparison) -> Figure:
    """Learned models only: the current book's priority map."""
    book = c.scores.reset_index(drop=True)
    return plots.priority_map_figure(book, book["account_name"])


def _side_by_side(
    long: pd.DataFrame, tierings: tuple[str, ...], fields: list[Column]
) -> tuple[pd.DataFrame, list[Column], list[tuple[str, int]]]:
    """A long table (tiering, tier, fields...) as one row per tier with each tiering's fields next to each other.

    `fields` name columns of `long` (not functions of a row).
    """
    wide = pd.DataFrame({"tier": TIERS})
    cells, groups = [Column("Tier", "tier", tier_badge, numeric=False)], [("", 1)]
    for tiering in tierings:
        part = long[long["tiering"] == tiering].set_index("tier").reindex(TIERS)
        for field in fields:
            wide[f"{tiering}.{field.value}"] = part[field.value].to_numpy()
            cells.append(Column(field.title, f"{tiering}.{field.value}", field.format))
        groups.append((f"{tiering.capitalize()} tiers", len(fields)))
    return wide, cells, groups


def _headline_cards(c: Comparison) -> Html:
    h = c.headline
    if not c.learned:
        return kpis(
            [
                ("Accounts scored", count(h["accounts"]), f"as of {c.as_of:%d %b %Y}"),
                ("Recent deals", count(h["holdout_opportunities"]), f"win rate {percent(h['holdout_win_rate'])}"),
                (
                    "Tier 1 share of won revenue",
                    percent(h["rule_tier_1_revenue_share"]),
                    f"rule tiers, recent deals · Tier 1 + 2: {percent(h['rule_top_tiers_revenue_share'])}",
                ),
            ]
        )
    return kpis(
        [
            (
                "Same tier",
                percent(h["same_tier_share"]),
                f"of {count(h['accounts'])} accounts · kappa {h['kappa_current']:.2f}",
            ),
            (
                "Tier 1 share of holdout won revenue",
                f"{percent(h['learned_tier_1_revenue_share'])} vs {percent(h['rule_tier_1_revenue_share'])}",
                f"learned vs rule tiers · Tier 1 + 2: "
                f"{percent(h['learned_top_tiers_revenue_share'])} vs {percent(h['rule_top_tiers_revenue_share'])}",
            ),
            (
                "Holdout ROC AUC",
                f"{h['learned_roc_auc']:.3f} vs {h['rule_roc_auc']:.3f}",
                f"learned vs rule score · {count(h['holdout_opportunities'])} deals",
            ),
            ("Accounts far apart", count(h["movers"]), f"learned and rule tiers {MOVER_LEVELS}+ levels apart"),
        ]
    )


def _agreement_section(c: Comparison) -> Html:
    stats = c.agreement_stats.set_index("book")
    panels = []
    for book, title in (
        ("current", f"Current book, as of {c.as_of:%d %b %Y}"),
        ("holdout", f"Holdout start, {c.holdout.start:%d %b %Y}"),
    ):
        counts = (
            c.agreement[c.agreement["book"] == book]
            .pivot(index="learned_tier", columns="rule_tier", values="accounts")
            .reindex(index=TIERS, columns=TIERS)
        )
        row = stats.loc[book]
        panels.append(
            Html(
                f"<h3>{escape(title)}</h3>{matrix(counts, 'Learned tier', 'Rule tier')}"
                + caption(
                    f"{percent(row['same_tier'])} of {count(row['accounts'])} accounts in the same tier, "
                    f"{percent(row['within_one_level'])} within one level; Cohen's kappa {row['kappa']:.2f}."
                )
            )
        )
    return section(
        "agreement",
        "Where learned and rule tiers agree",
        "Each account is counted once, in the cell of its learned tier (row) and rule tier (column). The "
        "outlined diagonal is agreement; cells far from it are accounts the two tierings see differently.",
        columns(*panels),
        caption(
            "How to read: a darker cell holds more accounts. Cohen's kappa is agreement beyond chance: "
            "1 means identical tiers, 0 no more agreement than chance."
        ),
    )


def _holdout_section(c: Comparison) -> Html:
    fields = [
        Column("Accounts", "accounts", count),
        Column("Deals", "opportunities", count),
        Column("Win rate", "win_rate", percent),
        Column("Won revenue (share)", "won"),
    ]
    if c.learned:
        fields.append(Column("Expected value", "expected_value", money))
    outcomes = c.holdout_tiers.assign(
        won=[
            f"{money(value)} ({percent(share)})"
            for value, share in zip(c.holdout_tiers["won_revenue"], c.holdout_tiers["revenue_share"])
        ]
    )
    wide, cells, groups = _side_by_side(outcomes, c.tierings, fields)
    period = f"{c.holdout.start:%d %b %Y} to {c.holdout.end - pd.Timedelta(days=1):%d %b %Y}"
    chart = figure(holdout_chart(c), CAPTIONS["holdout"], "Win rate and share of won revenue per tier")
    value = " Expected value is the model's win probability times deal size, summed." if c.learned else ""
    return section(
        "holdout",
        "How each tiering did on the holdout" if c.learned else "How the rule tiers did on recent deals",
        f"Tiers as decided on {c.holdout.start:%d %b %Y}, judged on the deals that closed from {period} "
        f"({c.holdout.source}).{value}",
        chart,
        table(wide, cells, groups),
    )


def _gain_section(c: Comparison) -> Html:
    chart = figure(gain_chart(c), CAPTIONS["gain"], "Cumulative gain and lift of each score")
    captured = gain_at(c.gain).reset_index()
    summary = table(
        captured,
        [
            Column("Score", "score", numeric=False),
            *[Column(f"Top {share:.0%} of accounts", share, percent) for share in captured.columns[1:]],
        ],
    )
    scores = "the learned score, the rule score" if c.learned else "the rule score"
    return section(
        "gain",
        "Which score finds the revenue first",
        f"Cumulative gain and lift of {scores} and each rule component on the holdout, in won revenue.",
        chart,
        Html("<h3>Share of holdout won revenue captured</h3>"),
        summary,
    )


def _calibration_section(c: Comparison) -> Html:
    deals, h = c.holdout.opportunities, c.headline
    chart = figure(calibration_chart(c), CAPTIONS["calibration"], "Calibration of the win probability")
    numbers = pd.DataFrame(
        [
            {
                "model": "Learned win probability",
                "ece": h["learned_calibration_error"],
                "brier": h["learned_brier"],
                "auc": h["learned_roc_auc"],
            },
            {
                "model": "Rule score (logistic link)",
                "ece": h["rule_calibration_error"],
                "brier": h["rule_brier"],
                "auc": h["rule_roc_auc"],
            },
        ]
    )
    metrics = table(
        numbers,
        [
            Column("", "model", numeric=False),
            Column("Calibration error", "ece", lambda v: f"{v * 100:.1f} pts"),
            Column("Brier score", "brier", lambda v: f"{v:.3f}"),
            Column("ROC AUC", "auc", lambda v: f"{v:.3f}"),
        ],
    )
    note = caption(
        f"On {count(len(deals))} holdout deals. Calibration error: the average gap between predicted and "
        "observed win rate; Brier score: mean squared error of the probability (lower is better for both)."
    )
    return section(
        "calibration",
        "Can the win probability be taken at face value",
        "Calibration of the learned win probability on the holdout deals, against the rule score mapped to "
        "a probability.",
        columns(chart, Html(metrics + note), wide_left=True),
    )


def _map_section(c: Comparison) -> Html:
    chart = figure(priority_chart(c), CAPTIONS["map"], "Account priority map")
    book = c.scores
    first = book[book["learned_tier"] == "tier_1"].sort_values("learned_score", ascending=False)
    listing = table(
        first,
        [
            Column("Account", account, numeric=False),
            Column("Learned score", "learned_score", points),
            Column("Win probability", "win_probability", percent),
            Column("Expected value", "expected_value", money),
            Column("Business fit", "business_fit_score", points),
            Column("Rule tier", "rule_tier", tier_badge, numeric=False),
            Column("Top reason", "reason_1", numeric=False),
        ],
    )
    return section(
        "map",
        "Account priority map",
        "Every account of the current book: business fit (rules) against win probability (model), coloured "
        "by learned tier and sized by expected value.",
        chart,
        Html(f"<h3>Tier 1 accounts ({count(len(first))})</h3>"),
        listing,
    )


def _reasons(record: dict) -> Html:
    lines = "<br>".join(escape(record[k]) for k in ("reason_1", "reason_2", "reason_3") if record[k])
    return Html(f"<div class=reasons>{lines}</div>")


def _movers_section(c: Comparison) -> Html:
    movers = c.movers
    lead = (
        f"Accounts whose learned and rule tiers are {MOVER_LEVELS} or more levels apart on the current book, "
        "largest gaps first (▲: the model ranks the account higher than the rules, ▼: lower), with the rule "
        "components behind the rule score and the model's reasons."
    )
    if movers.empty:
        current = c.agreement_stats.set_index("book").loc["current"]
        one_level = current["within_one_level"] - current["same_tier"]
        return section(
            "movers",
            "Accounts the tierings disagree on",
            lead,
            caption(
                f"No account is {MOVER_LEVELS} or more levels apart: the two tierings differ by one level "
                f"at most ({percent(one_level)} of accounts, see the agreement matrix)."
            ),
        )
    listing = table(
        movers.head(MOVERS_SHOWN),
        [
            Column("Account", account, numeric=False),
            Column("Rule tier", "rule_tier", tier_badge, numeric=False),
            Column("Learned tier", "learned_tier", tier_badge, numeric=False),
            Column("Gap", "levels", levels_moved),
            Column("Score learned / rule", lambda r: f"{points(r['learned_score'])} / {points(r['rule_score'])}"),
            Column("Revenue · fit · engagement", lambda r: " · ".join(points(r[c]) for c in COMPONENTS)),
            Column("Win prob.", "win_probability", percent),
            Column("Expected value", "expected_value", money),
            Column("Why (the model's top reasons)", _reasons, numeric=False),
            Column(
                "Budget rule → learned",
                lambda r: Html(f"{money(r['budget_rule'])}<span class=sub>→ {money(r['budget_learned'])}</span>"),
            ),
        ],
    )
    more = (
        f" The first {MOVERS_SHOWN} are shown; all {count(len(movers))} are in movers.csv."
        if len(movers) > MOVERS_SHOWN
        else ""
    )
    return section("movers", f"Accounts the tierings disagree on ({count(len(movers))})", lead + more, listing)


def _budget_section(c: Comparison) -> Html:
    fields = [
        Column("Accounts", "accounts", count),
        Column("Budget", "budget", money),
        Column("Per account", "per_account", money),
    ]
    if c.learned:
        fields.append(Column("Share of expected value", "value_share", percent))
    wide, cells, groups = _side_by_side(c.book_tiers, c.tierings, fields)
    split = " / ".join(
        f"{plots.TIER_LABELS[t]} {percent(s)}"
        for t, s in c.book_tiers.drop_duplicates("tier").set_index("tier")["budget_share"].items()
        if s
    )
    return section(
        "budget",
        "Budget under each tiering",
        f"A budget of {money(c.budget)} split by tier ({split}), then evenly across each tier's accounts of "
        "the current book. An empty tier's share is left unspent.",
        table(wide, cells, groups),
    )


def render_comparison(c: Comparison, data_label: str) -> str:
    intro = [_headline_cards(c)]
    for warning in reversed(c.warnings):
        intro.insert(0, banner(warning))
    if not c.learned:
        intro.insert(
            0,
            banner(
                "No learned model: no champion model is registered, so every account is scored with "
                "the rule score alone and learned tiers equal rule tiers. The agreement matrix, "
                "calibration, priority map and movers are left out; the holdout is a backtest of the "
                "rule tiers on the latest months. Train a model with `tiering train DATA` to compare."
            ),
        )
    sections = [("holdout", "Holdout by tier", _holdout_section(c)), ("gain", "Gain and lift", _gain_section(c))]
    if c.learned:
        sections = [
            ("agreement", "Agreement", _agreement_section(c)),
            *sections,
            ("calibration", "Calibration", _calibration_section(c)),
            ("map", "Priority map", _map_section(c)),
            ("movers", "Movers", _movers_section(c)),
        ]
    sections.append(("budget", "Budget", _budget_section(c)))
    model = f"model version {c.model}" if c.learned else "rules only"
    subtitle = f"{data_label} · {count(len(c.scores))} accounts scored as of {c.as_of:%d %b %Y} · {model}"
    files = ", ".join(f"{name}.csv" for name in c.tables())
    footer = (
        f"Written by tiering compare on {pd.Timestamp.now(tz='UTC'):%d %b %Y %H:%M} UTC. The tables behind "
        f"this page are beside it: {files}."
    )
    return page("Learned versus rule tiers", subtitle, intro, sections, footer)


# --- tiering diff ------------------------------------------------------------------------------------


def render_diff(d: TierDiff) -> str:
    moves = d.moves
    up, down = int((moves["levels"] > 0).sum()), int((moves["levels"] < 0).sum())
    intro = [
        kpis(
            [
                ("Accounts in both", count(d.common), f"{count(d.added)} new, {count(d.dropped)} no longer scored"),
                ("Moved up", count(up), "towards Tier 1"),
                ("Moved down", count(down), "away from Tier 1"),
                ("Unchanged", percent(1 - len(moves) / d.common), "of accounts in both"),
            ]
        )
    ]
    counts = table(
        d.counts,
        [
            Column("Tier", "tier", tier_badge, numeric=False),
            Column("Before", "before", count),
            Column("After", "after", count),
            Column("Change", "change", signed),
        ],
    )
    transitions = matrix(d.transitions, "Before", "After")
    overview = section(
        "counts",
        "Tier counts before and after",
        "Accounts per final tier in each scoring, and where the accounts of each tier went.",
        columns(
            Html(counts + caption("Counts of each whole scoring, new and dropped accounts included.")),
            Html(
                transitions
                + caption(
                    "Rows: tier before; columns: tier after; the outlined diagonal "
                    "stayed put. Accounts in both scorings only."
                )
            ),
        ),
    )
    listing = table(
        moves.head(MOVERS_SHOWN),
        [
            Column("Account", "account_id", numeric=False),
            Column("Before", "old_tier", tier_badge, numeric=False),
            Column("After", "new_tier", tier_badge, numeric=False),
            Column("Levels", "levels", levels_moved),
            Column("Learned score", before_after("learned_score", points)),
            Column("Rule score", before_after("rule_score", points)),
            Column("Win probability", before_after("win_probability", percent)),
            Column(
                "What changed",
                "what_changed",
                lambda text: Html(f"<span class=reasons>{escape(text)}</span>"),
                numeric=False,
            ),
        ],
    )
    more = (
        f" The first {MOVERS_SHOWN} are shown; all {count(len(moves))} are in moves.csv."
        if len(moves) > MOVERS_SHOWN
        else ""
    )
    movers = section(
        "moves",
        f"Accounts that changed tier ({count(len(moves))})",
        "Largest moves first. What changed names the rule components, scores and win probability that moved "
        f"notably, and the model's reasons that appeared or went.{more}",
        listing if len(moves) else caption("No account changed tier."),
    )
    footer = (
        f"Written by tiering diff on {pd.Timestamp.now(tz='UTC'):%d %b %Y %H:%M} UTC. The tables behind this page "
        f"are beside it: {', '.join(f'{name}.csv' for name in d.tables())}."
    )
    return page(
        "Tier movement between two scorings",
        f"{d.old_name} → {d.new_name}",
        intro,
        [("counts", "Tier counts", overview), ("moves", "Accounts that moved", movers)],
        footer,
    )
