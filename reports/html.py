"""The one Jinja2 environment of the HTML reports: templates in reports/templates/, every value escaped.

Pages extend `base.html` (the layout and its inline CSS: one self-contained file, nothing loaded from the network)
and build their parts with the macros of `macros.html` (sections, KPI cards, tables, tier badges and matrices,
figures with their how-to-read caption). Python prepares the values; all markup is in the templates.

The number formats (`count`, `percent`, `money`, `points`, `signed`) are plain functions, also registered as filters
of the same names: `{{ share | percent(1) }}`. Nothing is built at import time: the environment is made on first use.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ingest.display import count, date, decimals, money, percent, points, signed, tier_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OTHER_COLOUR = "#6b7280"  # a badge for a tier name outside the four
ANCHOR = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def tier_colour(tier: str) -> str:
    from training.plots import TIER_COLOURS

    return TIER_COLOURS.get(tier, OTHER_COLOUR)


def anchor(name: str) -> str:
    """An id for a section and its menu link: a fixed identifier from the code, refused if it is anything else."""
    if not ANCHOR.fullmatch(str(name)):
        raise ValueError(f"not a section anchor: {name!r} (letters, digits, - and _, starting with a letter)")
    return str(name)


FILTERS = {
    "count": count,
    "percent": percent,
    "money": money,
    "points": points,
    "signed": signed,
    "decimals": decimals,
    "date": date,
    "tier_label": tier_label,
    "tier_colour": tier_colour,
    "anchor": anchor,
}


@cache
def environment() -> Environment:
    """The reports' Jinja2 environment: autoescape on, and an undefined variable is an error, not an empty string."""
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def render(template_name: str, **context: Any) -> str:
    """The page `template_name` (a file in reports/templates/) rendered with `context`."""
    return environment().get_template(template_name).render(**context)


def macro(name: str, *args: Any, **kwargs: Any) -> Markup:
    """One macro of macros.html called from Python, for a part that Python hands to a page already rendered."""
    return Markup(getattr(environment().get_template("macros.html").module, name)(*args, **kwargs))


def png(chart: Figure, dpi: int = 130) -> str:
    """The matplotlib figure as a `data:image/png;base64,...` address (the figure is closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    chart.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(chart)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure(chart: Figure, caption: str, alt: str) -> Markup:
    """The figure embedded as a PNG `<img>` with its one-line "How to read:" caption (the `figure` macro)."""
    return macro("figure", png(chart), caption, alt)


def as_is(value):
    return value


@dataclass(frozen=True)
class Column:
    """A column of a table: its title, where its values come from, how they are written and shown.

    `value` names a column of the frame, or is a function of the whole row (a dict). `format` turns the value into
    what `kind` shows (macros.html `cell`): text (the default), tier, stack ((main, sub)), levels, lines, note.
    """

    title: str
    value: str | Callable[[dict], object]
    format: Callable[[Any], object] = as_is  # takes whatever the column holds
    numeric: bool = True
    kind: str = "text"

    def cell(self, record: dict) -> object:
        value = self.format(self.value(record) if callable(self.value) else record[self.value])
        return "" if value is None and self.kind == "text" else value


def table_data(frame: pd.DataFrame, columns: list[Column], groups: list[tuple[str, int]] | None = None) -> dict:
    """The rows of `frame` as the `table` macro takes them; `groups` spans a header row over consecutive columns
    (title, width), with a rule before each group but the first."""
    starts = set(np.cumsum([width for _, width in groups])[:-1].tolist()) if groups else set()
    names = [
        [name for name, on in (("num", column.numeric), ("start", index in starts)) if on]
        for index, column in enumerate(columns)
    ]
    return {
        "groups": groups or [],
        "columns": [{"title": column.title, "classes": names[i]} for i, column in enumerate(columns)],
        "rows": [
            [(column.kind, column.cell(record), names[i]) for i, column in enumerate(columns)]
            for record in frame.to_dict("records")
        ],
    }


def table(frame: pd.DataFrame, columns: list[Column], groups: list[tuple[str, int]] | None = None) -> Markup:
    """A table of `frame`'s rows (see `table_data`), rendered."""
    return macro("table", table_data(frame, columns, groups))


def matrix_data(counts: pd.DataFrame, row_title: str, column_title: str) -> dict:
    """Tier against tier (rows: `row_title`'s tier, columns: `column_title`'s) as the `matrix` macro takes it:
    each cell's accounts, share of all accounts and shade, the agreement diagonal marked."""
    total = max(int(counts.to_numpy().sum()), 1)
    high = max(counts.to_numpy().max() / total, 1e-9)
    rows = []
    for row_tier, row in counts.iterrows():
        cells = []
        for column_tier, value in row.items():
            share = value / total
            strength = math.sqrt(share / high)  # square root: small cells stay visible next to a large one
            cells.append(
                {
                    "accounts": value,
                    "share": share,
                    "alpha": 0.06 + 0.8 * strength,
                    "dark": strength > 0.6,
                    "diagonal": row_tier == column_tier,
                }
            )
        rows.append({"tier": row_tier, "cells": cells})
    return {"row_title": row_title, "column_title": column_title, "columns": list(counts.columns), "rows": rows}


def matrix(counts: pd.DataFrame, row_title: str, column_title: str) -> Markup:
    """The tier matrix (see `matrix_data`), rendered."""
    return macro("matrix", matrix_data(counts, row_title, column_title))
