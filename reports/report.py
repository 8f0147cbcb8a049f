"""The HTML pages of `tiering compare` and `tiering diff`, and the atomic write of a page with its CSV tables.

Each page is a Jinja2 template (reports/templates/compare.html, diff.html) extending the shared layout and macros;
this module prepares what they show (tables, tier matrices, figures embedded as PNGs) and writes nothing as HTML
itself. Every value, account ids, names and reasons included, is escaped by the templates.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from features.config import TIERS
from features.errors import DataError, Problem
from ingest.display import count, money, percent, points, signed
from ingest.files import check_writable_target, write_table
from reports.compare import COMPONENTS, MOVER_LEVELS, Comparison, gain_at
from reports.diff import TierDiff
from reports.forecast_page import forecast_tier_table
from reports.html import Column, figure, matrix, render, table
from scoring.forecast import SIMULATIONS
from training import plots
from training.evaluate import won_revenue_by_account

__all__ = [
    "DIFF_PAGE",
    "REPORT_PAGE",
    "Column",
    "check_output_folder",
    "count",
    "money",
    "percent",
    "points",
    "publish",
    "render_comparison",
    "render_diff",
    "signed",
    "table",
]

REPORT_PAGE = "report.html"
DIFF_PAGE = "diff.html"
MOVERS_SHOWN = 40  # the full lists are in the CSV files beside the page


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


def publish(
    out: Path, page_name: str, text: str, tables: dict[str, pd.DataFrame], files: dict[str, str] | None = None
) -> Path:
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
        for name, content in (files or {}).items():  # other text files of the output (e.g. a suggested draft)
            (staging / name).write_text(content, encoding="utf-8")
        written = [page_name, *(f"{name}.csv" for name in tables), *(files or {})]
        (staging / MANIFEST).write_text(json.dumps({"page": page_name, "files": written}), encoding="utf-8")
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
    value = won_revenue_by_account(c.holdout.opportunities, c.holdout.book["account_id"]).to_numpy()
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


def account(record: dict) -> tuple[str, str]:
    """An account's name with its id underneath (no second line when there is no name)."""
    name, account_id = record.get("account_name", record["account_id"]), record["account_id"]
    return (name, "") if name == account_id else (name, account_id)


def before_after(column: str, format):
    """A cell showing old_<column> → new_<column>."""
    return lambda record: f"{format(record[f'old_{column}'])} → {format(record[f'new_{column}'])}"


def _tier(title: str, column: str) -> Column:
    return Column(title, column, numeric=False, kind="tier")


def _side_by_side(
    long: pd.DataFrame, tierings: tuple[str, ...], fields: list[Column]
) -> tuple[pd.DataFrame, list[Column], list[tuple[str, int]]]:
    """A long table (tiering, tier, fields...) as one row per tier with each tiering's fields next to each other.

    `fields` name columns of `long` (not functions of a row).
    """
    wide = pd.DataFrame({"tier": TIERS})
    cells, groups = [_tier("Tier", "tier")], [("", 1)]
    for tiering in tierings:
        part = long[long["tiering"] == tiering].set_index("tier").reindex(TIERS)
        for field in fields:
            wide[f"{tiering}.{field.value}"] = part[field.value].to_numpy()
            cells.append(Column(field.title, f"{tiering}.{field.value}", field.format))
        groups.append((f"{tiering.capitalize()} tiers", len(fields)))
    return wide, cells, groups


def _agreement(c: Comparison) -> list[dict]:
    """One panel per book (current, holdout start): its tier matrix and agreement figures."""
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
        panels.append(
            {"title": title, "matrix": matrix(counts, "Learned tier", "Rule tier"), "stats": stats.loc[book].to_dict()}
        )
    return panels


def _holdout_table(c: Comparison):
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
    return table(*_side_by_side(outcomes, c.tierings, fields))


def _gain_table(c: Comparison):
    captured = gain_at(c.gain).reset_index()
    return table(
        captured,
        [
            Column("Score", "score", numeric=False),
            *[Column(f"Top {share:.0%} of accounts", share, percent) for share in captured.columns[1:]],
        ],
    )


def _calibration_table(c: Comparison):
    h = c.headline
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
    return table(
        numbers,
        [
            Column("", "model", numeric=False),
            Column("Calibration error", "ece", lambda v: f"{v * 100:.1f} pts"),
            Column("Brier score", "brier", lambda v: f"{v:.3f}"),
            Column("ROC AUC", "auc", lambda v: f"{v:.3f}"),
        ],
    )


def _tier_1(c: Comparison) -> pd.DataFrame:
    book = c.scores
    return book[book["learned_tier"] == "tier_1"].sort_values("learned_score", ascending=False)


def _tier_1_table(first: pd.DataFrame):
    return table(
        first,
        [
            Column("Account", account, numeric=False, kind="stack"),
            Column("Learned score", "learned_score", points),
            Column("Win probability", "win_probability", percent),
            Column("Expected value", "expected_value", money),
            Column("Business fit", "business_fit_score", points),
            _tier("Rule tier", "rule_tier"),
            Column("Top reason", "reason_1", numeric=False),
        ],
    )


def _reasons(record: dict) -> list[str]:
    return [record[k] for k in ("reason_1", "reason_2", "reason_3") if record[k]]


def _movers_table(c: Comparison):
    return table(
        c.movers.head(MOVERS_SHOWN),
        [
            Column("Account", account, numeric=False, kind="stack"),
            _tier("Rule tier", "rule_tier"),
            _tier("Learned tier", "learned_tier"),
            Column("Gap", "levels", kind="levels"),
            Column("Score learned / rule", lambda r: f"{points(r['learned_score'])} / {points(r['rule_score'])}"),
            Column("Revenue · fit · engagement", lambda r: " · ".join(points(r[c]) for c in COMPONENTS)),
            Column("Win prob.", "win_probability", percent),
            Column("Expected value", "expected_value", money),
            Column("Why (the model's top reasons)", _reasons, numeric=False, kind="lines"),
            Column(
                "Budget rule → learned",
                lambda r: (money(r["budget_rule"]), f"→ {money(r['budget_learned'])}"),
                kind="stack",
            ),
        ],
    )


def _budget_table(c: Comparison):
    fields = [
        Column("Accounts", "accounts", count),
        Column("Budget", "budget", money),
        Column("Per account", "per_account", money),
    ]
    if c.learned:
        fields.append(Column("Share of expected value", "value_share", percent))
    return table(*_side_by_side(c.book_tiers, c.tierings, fields))


def _budget_split(c: Comparison) -> str:
    return " / ".join(
        f"{plots.TIER_LABELS[t]} {percent(s)}"
        for t, s in c.book_tiers.drop_duplicates("tier").set_index("tier")["budget_share"].items()
        if s
    )


def render_comparison(c: Comparison, data_label: str) -> str:
    """The `tiering compare` page (compare.html): the learned parts only when a learned model was compared."""
    parts: dict[str, object] = {
        "holdout_figure": figure(holdout_chart(c), CAPTIONS["holdout"], "Win rate and share of won revenue per tier"),
        "holdout_table": _holdout_table(c),
        "holdout_last_day": c.holdout.end - pd.Timedelta(days=1),
        "gain_figure": figure(gain_chart(c), CAPTIONS["gain"], "Cumulative gain and lift of each score"),
        "gain_table": _gain_table(c),
        "budget_table": _budget_table(c),
        "budget_split": _budget_split(c),
        "forecast_table": forecast_tier_table(c.forecast) if c.learned and c.forecast is not None else None,
        "forecast_end": None if c.horizon_days is None else c.as_of + pd.Timedelta(days=c.horizon_days - 1),
        "simulations": SIMULATIONS,  # the comparison's forecast draws scoring.forecast's default
    }
    if c.learned:
        first = _tier_1(c)
        current = c.agreement_stats.set_index("book").loc["current"]
        parts |= {
            "agreement": _agreement(c),
            "calibration_figure": figure(
                calibration_chart(c), CAPTIONS["calibration"], "Calibration of the win probability"
            ),
            "calibration_table": _calibration_table(c),
            "map_figure": figure(priority_chart(c), CAPTIONS["map"], "Account priority map"),
            "tier_1_accounts": len(first),
            "tier_1_table": _tier_1_table(first),
            "movers_table": _movers_table(c) if len(c.movers) else None,
            "one_level_apart": current["within_one_level"] - current["same_tier"],
        }
    return render(
        "compare.html",
        c=c,
        h=c.headline,
        data_label=data_label,
        files=[f"{name}.csv" for name in c.tables()],
        written=pd.Timestamp.now(tz="UTC"),
        mover_levels=MOVER_LEVELS,
        movers_shown=MOVERS_SHOWN,
        **parts,
    )


# --- tiering diff ------------------------------------------------------------------------------------


def render_diff(d: TierDiff) -> str:
    """The `tiering diff` page (diff.html)."""
    moves = d.moves
    counts = table(
        d.counts,
        [
            _tier("Tier", "tier"),
            Column("Before", "before", count),
            Column("After", "after", count),
            Column("Change", "change", signed),
        ],
    )
    listing = table(
        moves.head(MOVERS_SHOWN),
        [
            Column("Account", "account_id", numeric=False),
            _tier("Before", "old_tier"),
            _tier("After", "new_tier"),
            Column("Levels", "levels", kind="levels"),
            Column("Learned score", before_after("learned_score", points)),
            Column("Rule score", before_after("rule_score", points)),
            Column("Win probability", before_after("win_probability", percent)),
            Column("What changed", "what_changed", numeric=False, kind="note"),
        ],
    )
    return render(
        "diff.html",
        d=d,
        moved=len(moves),
        up=int((moves["levels"] > 0).sum()),
        down=int((moves["levels"] < 0).sum()),
        counts_table=counts,
        transitions=matrix(d.transitions, "Before", "After"),
        moves_table=listing,
        files=[f"{name}.csv" for name in d.tables()],
        written=pd.Timestamp.now(tz="UTC"),
        movers_shown=MOVERS_SHOWN,
    )
