"""What the pages show, shaped from the store's answers: the book's filters from a query string, the tier history
with its "what changed" sentences, and the history chart's geometry. No HTTP and no SQL here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from features.config import TIERS
from ingest.display import tier_label
from scoring.changes import COMPARED_SCORES, REASONS, describe_change

PAGE_SIZE = 50
DEFAULT_SORT = "learned_score"
# Query parameters a book link may carry: the filters, then sort and page.
BOOK_FILTERS = (
    "q",
    "tier",
    "learned_tier",
    "rule_tier",
    "industry",
    "owner",
    "disagreement",
    "surge",
    "pinned",
    "flagged",
    "family",
)
YES_NO = {"1": True, "yes": True, "true": True, "0": False, "no": False, "false": False}


class BadQuery(ValueError):
    """A query parameter the pages cannot read; the message names it and says what it takes."""


@dataclass(frozen=True)
class BookQuery:
    """The book's query string, read and checked: what the filter form, the pager and the CSV link carry."""

    filters: dict[str, Any] = field(default_factory=dict)  # BookFilter's keyword arguments
    sort: str = DEFAULT_SORT
    direction: str = "desc"
    page: int = 1
    raw: tuple[tuple[str, str], ...] = ()  # the filter parameters as given, for links

    def link(self, **changes: Any) -> str:
        """This view's query string with some parameters changed (None drops one)."""
        params = dict(self.raw)
        params.update({"sort": self.sort, "direction": self.direction, "page": str(self.page)})
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = str(value)
        if params.get("sort") == DEFAULT_SORT and params.get("direction") == "desc":
            params.pop("sort"), params.pop("direction")
        if params.get("page") == "1":
            params.pop("page")
        return "?" + urlencode(params) if params else "?"

    def value(self, name: str) -> str:
        return dict(self.raw).get(name, "")


def read_book_query(params: Mapping[str, str], sortable: tuple[str, ...]) -> BookQuery:
    """The book's parameters; BadQuery naming the first one that cannot be read. Unknown parameters are ignored,
    as links carry what they like; text goes to the store as a bound value, never as SQL."""
    filters: dict[str, Any] = {}
    raw: list[tuple[str, str]] = []
    for name in BOOK_FILTERS:
        value = (params.get(name) or "").strip()
        if not value:
            continue
        if len(value) > 200:
            raise BadQuery(f"{name}: at most 200 characters")
        raw.append((name, value))
        if name in ("tier", "learned_tier", "rule_tier"):
            if value not in TIERS:
                raise BadQuery(f"{name}: {value!r} is not a tier; use one of {', '.join(TIERS)}")
            filters[name] = value
        elif name in ("disagreement", "surge", "pinned", "flagged"):
            if value.lower() not in YES_NO:
                raise BadQuery(f"{name}: {value!r}; use 1 (only those) or 0 (only the others)")
            filters["disagree" if name == "disagreement" else name] = YES_NO[value.lower()]
        else:
            filters[name] = value
    sort = (params.get("sort") or DEFAULT_SORT).strip()
    if sort not in sortable:
        raise BadQuery(f"sort: {sort!r} is not a book column; use one of {', '.join(sortable)}")
    direction = (params.get("direction") or "desc").strip().lower()
    if direction not in ("asc", "desc"):
        raise BadQuery(f"direction: {direction!r}; use asc or desc")
    page = read_page(params.get("page"))
    return BookQuery(filters, sort, direction, page, tuple(raw))


def read_page(value: str | None) -> int:
    text = (value or "1").strip()
    if not text.isdigit() or not 1 <= int(text) <= 10_000_000:
        raise BadQuery(f"page: {text[:20]!r}; use a whole number from 1")
    return int(text)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def as_score_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as `describe_change` reads a scores-file record: blanks as NaN or empty text."""
    record = dict(row)
    for column in (*COMPARED_SCORES, "win_probability"):
        record[column] = _number(row.get(column))
    for column in (*REASONS, "override_reason"):
        record[column] = row.get(column) or ""
    return record


@dataclass(frozen=True)
class HistoryPoint:
    scoring_id: int
    as_of: str
    tier: str
    learned_score: float | None
    pinned: bool
    moved: int  # levels moved since the scoring before (+ up, - down), 0 for the first
    what_changed: str  # empty when the tier stayed


def tier_history(history: pd.DataFrame) -> list[HistoryPoint]:
    """The account's tier in each published scoring, oldest first, each move with the sentence `tiering diff`
    writes for it."""
    points: list[HistoryPoint] = []
    previous: dict[str, Any] | None = None
    for row in history.to_dict("records"):
        record = as_score_record(row)
        moved = 0
        sentence = ""
        if previous is not None and previous["tier"] != record["tier"]:
            moved = TIERS.index(previous["tier"]) - TIERS.index(record["tier"]) if _known(previous, record) else 0
            sentence = describe_change(previous, record)
        as_of = row.get("scoring_as_of")
        points.append(
            HistoryPoint(
                int(row["scoring_id"]),
                as_of.date().isoformat() if isinstance(as_of, datetime) else str(as_of or "")[:10],
                str(record["tier"]),
                None if math.isnan(record["learned_score"]) else record["learned_score"],
                bool(record["override_reason"]),
                moved,
                sentence,
            )
        )
        previous = record
    return points


def _known(*records: Mapping[str, Any]) -> bool:
    return all(record["tier"] in TIERS for record in records)


@dataclass(frozen=True)
class ChartDot:
    x: float
    y: float
    label: str
    tier: str
    pinned: bool


@dataclass(frozen=True)
class HistoryChart:
    """A step chart of the tier per scoring, drawn as SVG by the template (no script needed)."""

    width: int
    height: int
    dots: list[ChartDot]
    path: str
    rows: list[tuple[float, str]]  # y and label of each tier's grid line


def history_chart(points: list[HistoryPoint], width: int = 640, height: int = 170) -> HistoryChart:
    left, right, top, bottom = 78, 24, 16, 34
    span = max(len(points) - 1, 1)
    rows = [
        (top + index * (height - top - bottom) / (len(TIERS) - 1), tier_label(tier)) for index, tier in enumerate(TIERS)
    ]
    level = {tier: y for tier, (y, _) in zip(TIERS, rows)}
    dots = [
        ChartDot(
            left + (index / span if len(points) > 1 else 0.5) * (width - left - right),
            level.get(point.tier, rows[-1][0]),
            point.as_of,
            point.tier,
            point.pinned,
        )
        for index, point in enumerate(points)
    ]
    steps = []
    for index, dot in enumerate(dots):
        if index == 0:
            steps.append(f"M{dot.x:.1f},{dot.y:.1f}")
        else:
            steps.append(f"H{dot.x:.1f}V{dot.y:.1f}")
    return HistoryChart(width, height, dots, "".join(steps), rows)


def audit_summary(record: Mapping[str, Any] | None) -> str:
    """An audit event's before or after, as a short line of `name: value` pairs."""
    if not record:
        return "—"
    return "; ".join(f"{name}: {value}" for name, value in record.items() if value not in (None, ""))


PILOT_METRIC_LABELS = {
    "pipeline": "pipeline created",
    "win_rate": "win rate",
    "won_revenue": "won revenue",
    "deals_won": "deals won",
}


def _change(ratio: Any) -> str:
    return "–" if ratio is None else f"{float(ratio) - 1:+.0%}"


def pilot_view(info: Any, today: date) -> dict[str, Any]:
    """A pilot as the pilots page lists it: its design, its counts, its state today, and its readout's figures."""
    power = (info.design or {}).get("power") or {}
    readout = info.readout or {}
    lifts = [
        {
            "metric": PILOT_METRIC_LABELS.get(str(row.get("metric")), str(row.get("metric"))),
            "lift": _change(row.get("estimate")),
            "interval": f"{_change(row.get('low'))} to {_change(row.get('high'))}",
            "p_value": "–" if row.get("p_value") is None else f"{float(row['p_value']):.3f}",
        }
        for row in readout.get("lift", [])
        if row.get("kind") == "ratio"
    ]
    if info.status != "running":
        state = info.status
    elif today < info.start_date:
        state = "starts " + info.start_date.isoformat()
    elif today < info.end_date:
        state = f"running, {(info.end_date - today).days} day(s) left"
    else:
        state = "ended, awaiting its readout"
    return {
        "key": info.pilot_key,
        "state": state,
        "start": info.start_date.isoformat(),
        "last_day": (info.end_date - timedelta(days=1)).isoformat(),
        "horizon_days": info.horizon_days,
        "metric": PILOT_METRIC_LABELS.get(info.metric, info.metric),
        "tiers": ", ".join((info.design or {}).get("tiers", [])),
        "strata": ", ".join((info.design or {}).get("strata", [])) or "tier only",
        "treatment": info.treatment,
        "control": info.control,
        "detectable": None if power.get("detectable_lift") is None else f"{float(power['detectable_lift']):+.0%}",
        "created_by": info.created_by,
        "verdict": readout.get("verdict"),
        "sample_ratio": readout.get("sample_ratio"),
        "lifts": lifts,
    }
