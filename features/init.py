"""`tiering init`: inspect an export and write a draft mapping, every guess commented.

The inspection reads each CSV or Parquet file of the folder (the first `PROFILE_ROWS` rows), profiles every
column (filled share, distinct values, numbers, dates and their format) and then:

1. recognises a preset's export (`canonical`, `salesforce`, `hubspot`, `maven-crm`): its files are there and
   they carry the headers the preset maps; the draft is that preset, written out, without the columns the
   files lack;
2. otherwise guesses: the opportunities file (an outcome-like column), the accounts file (a key whose values
   hold the opportunities' accounts; none: the accounts come from the opportunities rows), activity
   (engagement) and intent files, every canonical column by its header and its values, outcome and channel
   value maps, date formats. What it could not decide is said in the draft and in `notes`.

The draft never overwrites a file: it is linked into place only where nothing exists yet.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import CHANNELS
from features.dates import PATTERN as ISO_PATTERN
from features.dates import within_range
from features.errors import DataError, Problem
from features.io import CSV_SUFFIXES, PARQUET_SUFFIXES, _read_file, data_folder
from features.mapping import PRESETS, Mapping, TableMapping, load_mapping
from features.schema import REQUIRED, TABLES, columns

PROFILE_ROWS = 200_000
DATE_SAMPLE = 5_000
MAX_VALUES = 60  # value maps are drafted for columns with at most this many distinct values
ISO = "ISO 8601"
# strftime layouts tried after ISO 8601, the most common CRM exports first.
DATE_FORMATS: tuple[str, ...] = (
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%m/%d/%y",
    "%d/%m/%y",
    "%d %b %Y",
    "%b %d, %Y",
    "%d-%b-%Y",
)
# Day-first and month-first layouts that read the same text when every day is 12 or less.
SWAPPED = {
    "%m/%d/%Y": "%d/%m/%Y",
    "%m/%d/%Y %H:%M": "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S": "%d/%m/%Y %H:%M:%S",
    "%m/%d/%y": "%d/%m/%y",
    "%m-%d-%Y": "%d-%m-%Y",
}

FILE_WORDS: dict[str, tuple[str, ...]] = {
    "accounts": ("account", "compan", "organi", "customer", "firm"),
    "opportunities": ("opportunit", "deal", "pipeline", "sales", "oppty", "won"),
    "engagement": ("engagement", "activit", "event", "task", "email", "meeting", "call", "touch", "visit"),
    "intent": ("intent", "surge", "topic", "bombora", "g2"),
}
ACCOUNT_WORDS = ("account", "company", "customer", "client", "organization", "organisation", "org")
# canonical column -> header word sets, strongest first; a header matches a set when it holds all its words.
HEADER_WORDS: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "opportunities": {
        "opportunity_id": (
            ("opportunity", "id"),
            ("deal", "id"),
            ("opp", "id"),
            ("record", "id"),
            ("opportunity_id",),
            ("id",),
            ("deal", "number"),
            ("reference",),
            ("deal",),
            ("opportunity",),
        ),
        "created_date": (
            ("created", "date"),
            ("create", "date"),
            ("created",),
            ("engage", "date"),
            ("open", "date"),
            ("start", "date"),
            ("creation",),
            ("created", "on"),
            ("opened",),
        ),
        "close_date": (("close", "date"), ("closed", "date"), ("close",), ("closed",), ("won", "date"), ("closing",)),
        "outcome": (("outcome",), ("deal", "stage"), ("stage",), ("status",), ("result",), ("won",)),
        "amount": (
            ("amount",),
            ("close", "value"),
            ("deal", "value"),
            ("value",),
            ("revenue",),
            ("arr",),
            ("acv",),
            ("price",),
        ),
        "product": (("product", "name"), ("product",), ("plan",), ("sku",)),
    },
    "accounts": {
        "account_name": (("account", "name"), ("company", "name"), ("name",)),
        "industry": (("industry",), ("sector",), ("vertical",)),
        "employees": (("employees",), ("number", "of", "employees"), ("employee",), ("headcount",), ("staff",)),
        "annual_revenue": (("annual", "revenue"), ("revenue",), ("turnover",)),
        "country": (("country",), ("billing", "country"), ("office", "location"), ("location",)),
        "region": (("region",), ("territory",)),
        "tech_stack": (("tech", "stack"), ("technologies",), ("tech",), ("stack",)),
        "parent_account_id": (("parent", "account", "id"), ("parent",), ("subsidiary", "of"), ("subsidiary",)),
        "owner": (("account", "owner"), ("company", "owner"), ("account", "manager")),
    },
    "engagement": {
        "timestamp": (
            ("timestamp",),
            ("activity", "date"),
            ("event", "date"),
            ("date",),
            ("time",),
            ("occurred",),
            ("created", "date"),
        ),
        "channel": (
            ("channel",),
            ("activity", "type"),
            ("engagement", "type"),
            ("event", "type"),
            ("type",),
            ("subtype",),
            ("activity",),
        ),
        "count": (("count",), ("quantity",), ("events",)),
    },
    "intent": {
        "date": (("date",), ("week",), ("timestamp",)),
        "topic": (("topic",), ("keyword",), ("category",), ("intent",)),
        "score": (("score",), ("strength",), ("intensity",)),
    },
}
WON_WORDS = ("won", "win", "closedwon", "booked", "signed", "success")
LOST_WORDS = ("lost", "lose", "loss", "closedlost", "disqualified", "dead", "rejected")
CHANNEL_WORDS: dict[str, tuple[str, ...]] = {
    "email_open": ("open",),
    "email_click": ("click",),
    "demo_request": ("demo",),
    "sales_meeting": ("meeting", "appointment"),
    "event_attended": ("event", "webinar", "conference", "attended"),
    "content_download": ("download", "content", "whitepaper", "ebook"),
    "web_visit": ("visit", "page", "web", "view"),
}


@dataclass
class Profile:
    """What one column holds."""

    name: str
    rows: int
    filled: int
    distinct: int
    unique: bool
    numeric: bool
    date_format: str | None  # ISO, a strftime layout, or None (not dates)
    ambiguous_day: bool  # day-first or month-first: every day is 12 or less
    values: pd.Series  # value counts of the text, most frequent first (at most MAX_VALUES + 1)
    texts: pd.Series  # the non-empty cells as text

    @property
    def words(self) -> set[str]:
        return set(words_of(self.name))


@dataclass
class FileProfile:
    path: Path
    name: str  # relative to the data folder
    rows: int
    columns: dict[str, Profile]


@dataclass
class Entry:
    """One line of the draft: a key, its value and the comment that says why."""

    key: str
    value: Any = None
    comment: str = ""
    children: list[Entry] = field(default_factory=list)


@dataclass
class Draft:
    """A draft mapping: its sections as entries, what was recognised, and what could not be decided."""

    data_dir: Path
    sections: dict[str, list[Entry]]
    absent: dict[str, str]  # table -> why no file was chosen
    preset: str | None
    notes: list[str]
    unreadable: list[str]
    unused: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"# Draft mapping written by `tiering init` for {_comment(str(self.data_dir))}.",
            "# Every guess says why in a comment: check them, edit what is wrong, then run",
            "#   tiering validate DATA --mapping THIS_FILE",
            "# Keys: file (name or glob), columns (canonical: your header), values (your value: canonical), "
            "date_format,",
            '# scale, defaults, from_opportunities (accounts only); see the README, "Bring your own export".',
        ]
        if self.preset:
            lines.append(
                f"# Recognised as the {self.preset} export: this is the {self.preset} preset written out "
                "(columns these files lack are left out)."
            )
        for note in self.notes:
            lines.append(f"# To decide: {_comment(note)}")
        for name in self.unreadable:
            lines.append(f"# Not read: {_comment(name)}")
        for name in self.unused:
            lines.append(f"# Not used: {_comment(name)} (it did not look like any table)")
        lines.append(
            "description: "
            + _scalar("Draft mapping by tiering init" + (f" (from the {self.preset} preset)" if self.preset else ""))
        )
        for table in TABLES:
            lines.append("")
            if table in self.sections:
                lines.append(f"{table}:")
                lines += _render_entries(self.sections[table], 1)
            else:
                lines.append(f"# {table}: {_comment(self.absent.get(table, 'no file found'))}")
        return "\n".join(lines) + "\n"


def words_of(text: str) -> list[str]:
    """Lower-case words of a header or file name: 'Close Date' -> close, date; 'closeDate' -> close, date."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(text))
    return [word for word in re.split(r"[^a-z0-9]+", spaced.lower()) if word]


def _comment(text: str) -> str:
    return " ".join(str(text).split())


PLAIN_KEY = re.compile(r"[a-z_][a-z0-9_]*")
YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def _scalar(value: Any, key: bool = False) -> str:
    """A YAML scalar: numbers and booleans as they are, text double-quoted (JSON quoting is valid YAML), except
    keys that are plain names (canonical columns)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if key and PLAIN_KEY.fullmatch(str(value)) and str(value) not in YAML_WORDS:
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def _render_entries(entries: list[Entry], depth: int) -> list[str]:
    lines = []
    indent = "  " * depth
    for entry in entries:
        key = _scalar(entry.key, key=True) if depth > 1 else entry.key
        if entry.key.startswith("#"):
            lines.append(f"{indent}{entry.key} {_comment(entry.comment)}".rstrip())
            continue
        comment = f"  # {_comment(entry.comment)}" if entry.comment else ""
        if entry.children:
            lines.append(f"{indent}{key}:{comment}")
            lines += _render_entries(entry.children, depth + 1)
        else:
            lines.append(f"{indent}{key}: {_scalar(entry.value)}{comment}")
    return lines


# --- profiling ------------------------------------------------------------------------------------------------


def profile_folder(data_dir: Path) -> tuple[list[FileProfile], list[str]]:
    """Every readable data file at the top of the folder, profiled; and the names of those that could not be read."""
    profiles, unreadable = [], []
    for path in sorted(data_dir.iterdir()):
        if (
            not path.is_file()
            or path.suffix.lower() not in CSV_SUFFIXES | PARQUET_SUFFIXES
            or path.name.startswith(".")
        ):
            continue
        problems: list[Problem] = []
        table = _read_file(path, path.name, problems)
        if table is None or table.num_columns == 0:
            unreadable.append(f"{path.name} ({problems[0].message if problems else 'no columns'})")
            continue
        profiles.append(profile_table(path, path.name, table.slice(0, PROFILE_ROWS)))
    return profiles, unreadable


def profile_table(path: Path, name: str, table: pa.Table) -> FileProfile:
    return FileProfile(
        path,
        name,
        table.num_rows,
        {column: profile_column(column, table.column(column)) for column in table.column_names},
    )


def profile_column(name: str, column: pa.ChunkedArray) -> Profile:
    typed_date = pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)
    typed_number = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
    text = (
        column
        if pa.types.is_large_string(column.type) or pa.types.is_string(column.type)
        else pc.cast(column, pa.large_string())
    )
    series = pd.Series(text.to_pandas(), dtype="object")
    series = series.where(series.isna(), series.astype(str).str.strip())
    texts = series[series.notna() & (series != "")]
    counts = texts.value_counts()
    numeric = typed_number or (len(texts) > 0 and pd.to_numeric(texts, errors="coerce").notna().all())
    date_format, ambiguous = (ISO, False) if typed_date else _date_format(texts, name)
    if numeric and date_format == ISO and not typed_date:  # 20240105 is a number first, unless named like a date
        date_format = ISO if {"date", "day", "timestamp", "time"} & set(words_of(name)) else None
    return Profile(
        name,
        len(series),
        len(texts),
        len(counts),
        bool(len(texts)) and len(counts) == len(texts) == len(series),
        bool(numeric),
        date_format,
        ambiguous,
        counts.head(MAX_VALUES + 1),
        texts,
    )


DATE_WORDS = {"date", "day", "time", "timestamp", "created", "closed", "opened", "won", "lost", "engaged", "at", "on"}


def _date_format(texts: pd.Series, header: str = "") -> tuple[str | None, bool]:
    """The layout the sampled values parse with (ISO 8601 first), and whether day and month could be swapped.

    Every value must parse, or half of them when the header names a date (the rest are then errors `validate`
    lists, rather than a date column left unmapped)."""
    sample = texts.head(DATE_SAMPLE)
    if not len(sample) or not sample.str.contains(r"\d", regex=True).any():
        return None, False
    needed = 0.5 if DATE_WORDS & set(words_of(header)) else 1.0
    iso = sample.str.fullmatch(ISO_PATTERN)
    parsed = pd.to_datetime(sample.where(iso), format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
    shares = {ISO: within_range(parsed).notna()}
    if shares[ISO].mean() < 1:
        for layout in DATE_FORMATS:
            shares[layout] = within_range(pd.to_datetime(sample, format=layout, errors="coerce")).notna()
    layout = max(shares, key=lambda name: shares[name].mean())  # the first of the best: ISO, then the order above
    if shares[layout].mean() < needed:
        return None, False
    swapped = SWAPPED.get(layout)
    ambiguous = swapped is not None and bool((shares[swapped] >= shares[layout]).all())
    return layout, ambiguous


# --- preset recognition ---------------------------------------------------------------------------------------


def recognise_preset(data_dir: Path, files: list[FileProfile]) -> tuple[str, Mapping] | None:
    """The preset whose required tables' files are here with every header it maps for their required columns;
    of several, the one whose mapped headers are found most. Canonical comes last: it renames nothing."""
    by_name = {profile.name: profile for profile in files}
    best: tuple[int, str, Mapping] | None = None
    for preset in sorted(PRESETS, key=lambda name: name == "canonical"):
        mapping = load_mapping(preset)
        found = 0
        for table in ("accounts", "opportunities"):
            matched = _preset_files(data_dir, table, mapping.table(table), by_name)
            if not matched:
                break
            headers = set.intersection(*(set(by_name[name].columns) for name in matched))
            section = mapping.table(table)
            # An opportunities file without its id column still loads: its ids are generated (features.derive).
            wanted = {
                column: section.columns.get(column, column)
                for column in REQUIRED[table]
                if (table, column) != ("opportunities", "opportunity_id")
            }
            if not set(wanted.values()) <= headers:
                break
            found += sum(source in headers for source in section.columns.values()) + len(wanted)
        else:
            if best is None or found > best[0]:
                best = (found, preset, mapping)
    return (best[1], best[2]) if best else None


def _preset_files(data_dir: Path, table: str, section: TableMapping, by_name: dict[str, FileProfile]) -> list[str]:
    if section.file:
        literal = section.file if section.file in by_name else None
        return (
            [literal] if literal else sorted(path.name for path in data_dir.glob(section.file) if path.name in by_name)
        )
    return [name for name in (f"{table}.csv", f"{table}.parquet") if name in by_name][:1]


def preset_draft(data_dir: Path, preset: str, mapping: Mapping, files: list[FileProfile]) -> Draft:
    """The preset written out as entries, each mapped column checked against its file's headers."""
    by_name = {profile.name: profile for profile in files}
    sections: dict[str, list[Entry]] = {}
    absent: dict[str, str] = {}
    for table in TABLES:
        section = mapping.table(table)
        matched = _preset_files(data_dir, table, section, by_name)
        if not matched:
            absent[table] = (
                f"no file matches the preset's {section.file!r}"
                if section.file
                else f"no {table}.csv or {table}.parquet"
            )
            continue
        headers = set.intersection(*(set(by_name[name].columns) for name in matched))
        entries = [
            Entry(
                "file",
                section.file or matched[0],
                f"{', '.join(matched)}: {sum(by_name[n].rows for n in matched):,} rows read",
            )
        ]
        mapped = []
        for canonical, source in section.columns.items():
            if source in headers:
                mapped.append(Entry(canonical, source, "from the preset"))
            else:
                mapped.append(
                    Entry("#", comment=f"{canonical}: {source} (the preset's; these files have no such column)")
                )
        if mapped:
            entries.append(Entry("columns", children=mapped))
        if section.values:
            entries.append(
                Entry(
                    "values",
                    children=[
                        Entry(column, children=[Entry(value, target) for value, target in replacements.items()])
                        for column, replacements in section.values.items()
                    ],
                )
            )
        if isinstance(section.date_format, str):
            entries.append(Entry("date_format", section.date_format, "from the preset"))
        elif section.date_format:
            entries.append(Entry("date_format", children=[Entry(k, v) for k, v in section.date_format.items()]))
        if section.scale:
            entries.append(Entry("scale", children=[Entry(k, v, "from the preset") for k, v in section.scale.items()]))
        if section.defaults:
            entries.append(Entry("defaults", children=[Entry(k, v) for k, v in section.defaults.items()]))
        if section.from_opportunities:
            entries.append(Entry("from_opportunities", True, "from the preset"))
        sections[table] = entries
    return Draft(data_dir, sections, absent, preset, [], [])


# --- guessing -------------------------------------------------------------------------------------------------


def header_score(profile: Profile, word_sets: tuple[tuple[str, ...], ...]) -> float:
    """How well a header names a column: 1 for the strongest word set, less for later ones, 0 for none."""
    held = profile.words
    joined = "".join(words_of(profile.name))
    for rank, word_set in enumerate(word_sets):
        if all(word in held or (len(word) > 3 and word in joined) for word in word_set):
            return 1.0 - rank / (len(word_sets) + 1)
    return 0.0


def outcome_values(profile: Profile) -> tuple[dict[str, str], list[str]] | None:
    """Value map for an outcome-like column (won, lost, the rest open), or None if no value reads as won or lost."""
    if profile.distinct > MAX_VALUES or not profile.distinct:
        return None
    mapping, others = {}, []
    for value in profile.values.index:
        squashed = "".join(words_of(value))
        tokens = set(words_of(value))
        if squashed in OUTCOME_CANONICAL:
            mapping[value] = squashed
        elif tokens & set(WON_WORDS) or squashed in WON_WORDS:
            mapping[value] = "won"
        elif tokens & set(LOST_WORDS) or squashed in LOST_WORDS:
            mapping[value] = "lost"
        else:
            others.append(value)
    if "won" not in mapping.values() and "lost" not in mapping.values():
        return None
    return mapping, others


OUTCOME_CANONICAL = ("won", "lost", "open")


def channel_values(profile: Profile) -> dict[str, str]:
    """Source channel values that read as a canonical channel (the others are kept as they are)."""
    mapped = {}
    for value in profile.values.index[:MAX_VALUES]:
        squashed = "_".join(words_of(value))
        if squashed in CHANNELS:
            if squashed != value:
                mapped[value] = squashed
            continue
        tokens = set(words_of(value))
        for channel, cues in CHANNEL_WORDS.items():
            if tokens & set(cues):
                mapped[value] = channel
                break
    return mapped


@dataclass
class Choice:
    canonical: str
    profile: Profile
    why: str


def guess_draft(data_dir: Path, files: list[FileProfile], unreadable: list[str]) -> Draft:
    notes: list[str] = []
    sections: dict[str, list[Entry]] = {}
    absent: dict[str, str] = {}
    remaining = list(files)

    opportunities = _pick_opportunities(remaining)
    funnel = _pick_funnel(remaining) if opportunities is None else None
    if opportunities is None and funnel is None:
        absent["opportunities"] = "no file has an outcome-like column (values such as Won / Lost): map it by hand"
        notes.append(
            "which file holds the opportunities (deals): none has an outcome column with won and lost values, "
            "and no file of won dates matches another file's ids (a lead funnel)"
        )
        for table in ("accounts", "engagement", "intent"):
            absent[table] = "not guessed without an opportunities file"
        return Draft(data_dir, sections, absent, None, notes, unreadable)
    if funnel is not None:  # leads, and a file of won deals on their key: a join and an outcome rule
        lead_file, lead_key, deals_file, deal_key, won, overlap = funnel
        remaining.remove(lead_file)
        remaining.remove(deals_file)
        brought = [name for name in deals_file.columns if name != deal_key.name and name not in lead_file.columns]
        opp_file = FileProfile(
            lead_file.path,
            lead_file.name,
            lead_file.rows,
            {**lead_file.columns, **{name: deals_file.columns[name] for name in brought}},
        )
        outcome = outcome_map = open_values = None  # the outcome comes from the funnel's join and rule
    else:
        opp_file, outcome, outcome_map, open_values = opportunities
        remaining.remove(opp_file)

    account_pair = _pick_accounts(remaining, opp_file)
    opp_choices: dict[str, Choice] = {}
    if account_pair is not None:
        accounts_file, account_key, opp_account, overlap = account_pair
        remaining.remove(accounts_file)
        opp_choices["account_id"] = Choice(
            "account_id", opp_account, f"its values are the accounts' {account_key.name} ({overlap:.0%} of them found)"
        )
    else:
        accounts_file = account_key = None
        opp_account = _best(opp_file, ACCOUNT_KEY_SETS, lambda p: p.filled > 0 and p.date_format is None)
        if opp_account is not None:
            opp_choices["account_id"] = Choice(
                "account_id", opp_account, "header names the account; no other file holds these accounts"
            )
    decided: set[str] = set()
    taken: set[str] = set()
    if outcome is not None:  # an opportunities file with an outcome column (not a funnel)
        opp_choices["outcome"] = Choice(
            "outcome", outcome, f"values read as outcomes ({_listed(outcome.values.index)})"
        )
    else:
        opp_choices["opportunity_id"] = Choice(
            "opportunity_id",
            lead_key,
            f"one row per value: each lead is an opportunity; {deals_file.name} refers to it",
        )
        decided, taken = {"outcome", "close_date"}, {won.name, deal_key.name}
    taken |= {choice.profile.name for choice in opp_choices.values()}
    opp_choices.update(_pick_columns(opp_file, "opportunities", taken, set(opp_choices) | decided))
    if "opportunity_id" not in opp_choices:
        notes.append(
            f"{opp_file.name} has no opportunity id column: each row gets a stable generated id "
            "(see the README); map yours if it has one"
        )
    elif opp_choices["opportunity_id"].profile.filled < opp_file.rows:
        empty = opp_file.rows - opp_choices["opportunity_id"].profile.filled
        opp_choices["opportunity_id"].why += f"; {empty:,} empty: those rows get a stable generated id"
    for required in ("account_id", "created_date"):
        if required not in opp_choices:
            notes.append(f"which column of {opp_file.name} is the opportunities' {required}: none looked like it")

    account_columns: set[str] = set()
    if accounts_file is not None:
        choices = {
            "account_id": Choice(
                "account_id", account_key, f"one row per value; holds the opportunities' {opp_account.name} values"
            )
        }
        choices.update(_pick_columns(accounts_file, "accounts", {account_key.name}, {"account_id"}))
        sections["accounts"] = _section(accounts_file, "accounts", choices, notes)
    elif opp_account is not None:
        choices = {"account_id": Choice("account_id", opp_account, "the opportunities' account column")}
        taken = {choice.profile.name for choice in opp_choices.values()}
        choices.update(_pick_columns(opp_file, "accounts", taken, {"account_id"}))
        account_columns = {choice.profile.name for choice in choices.values()}
        entries = _section(opp_file, "accounts", choices, notes, with_file=False)
        entries.insert(
            0,
            Entry(
                "from_opportunities",
                True,
                f"no accounts file: one account per distinct {opp_account.name} of {opp_file.name}",
            ),
        )
        sections["accounts"] = entries
    else:
        absent["accounts"] = "no account column found"
    values = (
        {"outcome": _outcome_entries(outcome_map, open_values)}
        if outcome_map is not None and open_values is not None
        else {}
    )
    rule_columns = {won.name} if funnel is not None else set()
    sections["opportunities"] = _section(
        opp_file, "opportunities", opp_choices, notes, also_used=account_columns | rule_columns, values=values
    )
    if funnel is not None:
        join = [
            Entry(
                "file",
                deals_file.name,
                f"{deals_file.rows:,} rows; its {deal_key.name} values are "
                f"{lead_file.name}'s {lead_key.name} ({overlap:.0%} found)",
            ),
            Entry("on", lead_key.name),
            Entry("right_on", deal_key.name),
        ]
        if len(brought) < len(deals_file.columns) - 1:
            join.append(Entry("columns", brought, "the other columns are in both files"))
        sections["opportunities"].insert(
            1, Entry("join", comment="a lead funnel: columns from the won deals, on the lead's key", children=join)
        )
        rule_at = next(index for index, entry in enumerate(sections["opportunities"]) if entry.key == "columns") + 1
        sections["opportunities"].insert(
            rule_at,
            Entry(
                "outcome_rule",
                comment="derives outcome and close_date",
                children=[
                    Entry("won_date", won.name, f"won when it holds a date ({_format_text(won)})"),
                    Entry(
                        "lost_after_days",
                        DEFAULT_LOST_AFTER_DAYS,
                        "a guess: lost when no deal this many days after creation; set it to your sales cycle",
                    ),
                ],
            ),
        )
        notes.append(
            f"outcome_rule.lost_after_days is {DEFAULT_LOST_AFTER_DAYS}, a guess: set it to the days after "
            "which a lead without a deal counts as lost"
        )

    for table in ("engagement", "intent"):
        picked = _pick_activity(remaining, table, account_key or opp_account, accounts_file or opp_file)
        if picked is None:
            absent[table] = (
                "no file has an account, a date and an activity type on each row"
                if table == "engagement"
                else "no file has an account, a date and a topic on each row"
            )
            continue
        activity_file, choices = picked
        remaining.remove(activity_file)
        values = {}
        if "channel" in choices:
            mapped = channel_values(choices["channel"].profile)
            if mapped:
                values["channel"] = [
                    Entry(source, target, "reads as this channel") for source, target in mapped.items()
                ]
        sections[table] = _section(activity_file, table, choices, notes, values=values)
    return Draft(data_dir, sections, absent, None, notes, unreadable, [profile.name for profile in remaining])


DEFAULT_LOST_AFTER_DAYS = 90
WON_DATE_WORDS = (
    ("won", "date"),
    ("won",),
    ("closed", "won"),
    ("signed",),
    ("converted",),
    ("close", "date"),
    ("closed",),
    ("close",),
    ("date",),
)


def _pick_funnel(files: list[FileProfile]):
    """Leads and won deals: a file with a unique key and a created date, and another whose key column refers to it
    and that holds a won date. The best pair by share of the deals found among the leads, then by headers."""
    best = None
    for leads in files:
        if not any(
            p.date_format and header_score(p, HEADER_WORDS["opportunities"]["created_date"])
            for p in leads.columns.values()
        ):
            continue
        for key in (p for p in leads.columns.values() if p.unique and not p.date_format):
            known = set(key.texts)
            for deals in files:
                if deals is leads:
                    continue
                dates = [p for p in deals.columns.values() if p.date_format and header_score(p, WON_DATE_WORDS)]
                if not dates:
                    continue
                won = max(dates, key=lambda p: header_score(p, WON_DATE_WORDS))
                for reference in (p for p in deals.columns.values() if not p.date_format and p.filled):
                    values = reference.texts.drop_duplicates()
                    overlap = float(values.isin(known).mean()) if len(values) else 0.0
                    if overlap < 0.5:
                        continue
                    score = (
                        overlap,
                        header_score(won, WON_DATE_WORDS),
                        header_score(
                            key, HEADER_WORDS["opportunities"]["opportunity_id"] + (("lead", "id"), ("lead",))
                        ),
                        _file_score(deals, "opportunities"),
                    )
                    if best is None or score > best[0]:
                        best = (score, leads, key, deals, reference, won, overlap)
    return None if best is None else best[1:]


ACCOUNT_KEY_SETS = (
    tuple((word, suffix) for suffix in ("id", "key", "number") for word in ACCOUNT_WORDS)
    + tuple((word,) for word in ACCOUNT_WORDS)
    + tuple((word, "name") for word in ACCOUNT_WORDS)
)


def _listed(values, limit: int = 6) -> str:
    shown = [str(value) for value in list(values)[:limit]]
    return ", ".join(shown) + (", ..." if len(values) > limit else "")


def _best(file: FileProfile, word_sets, accept=lambda profile: True, taken=()) -> Profile | None:
    scored = [
        (header_score(profile, word_sets), -index, profile)
        for index, profile in enumerate(file.columns.values())
        if profile.name not in taken and accept(profile)
    ]
    scored = [item for item in scored if item[0] > 0]
    return max(scored, key=lambda item: item[:2])[2] if scored else None


def _pick_opportunities(files: list[FileProfile]):
    candidates = []
    for file in files:
        for profile in file.columns.values():
            read = outcome_values(profile)
            if read is None:
                continue
            score = header_score(profile, HEADER_WORDS["opportunities"]["outcome"]) + _file_score(file, "opportunities")
            score += 0.5 * any(profile.date_format for profile in file.columns.values())
            candidates.append((score, file.rows, file, profile, *read))
    if not candidates:
        return None
    _, _, file, profile, mapping, others = max(candidates, key=lambda item: item[:2])
    return file, profile, mapping, others


def _file_score(file: FileProfile, table: str) -> float:
    name = "".join(words_of(Path(file.name).stem))
    return 1.0 if any(word in name for word in FILE_WORDS[table]) else 0.0


def _pick_accounts(files: list[FileProfile], opportunities: FileProfile):
    """The file and key column whose unique values hold most of an opportunities column's values."""
    best = None
    opp_columns = [
        p
        for p in opportunities.columns.values()
        if not p.unique and p.filled and not p.numeric and p.date_format is None
    ]
    for file in files:
        for key in file.columns.values():
            if not key.unique or key.date_format:
                continue
            known = set(key.texts)
            for column in opp_columns:
                values = column.texts.drop_duplicates()
                overlap = float(values.isin(known).mean()) if len(values) else 0.0
                if overlap < 0.5:
                    continue
                score = (
                    overlap,
                    header_score(key, ACCOUNT_KEY_SETS)
                    + header_score(column, ACCOUNT_KEY_SETS)
                    + _file_score(file, "accounts"),
                )
                if best is None or score > best[0]:
                    best = (score, file, key, column, overlap)
    return None if best is None else best[1:]


def _pick_columns(
    file: FileProfile, table: str, taken: set[str], decided: frozenset[str] | set[str] = frozenset()
) -> dict[str, Choice]:
    """Each canonical column of `table` not `decided` yet, by its header among the columns not `taken`, checked
    against its values' kind."""
    chosen: dict[str, Choice] = {}
    kinds = columns(table)
    taken = set(taken)
    for canonical, word_sets in HEADER_WORDS[table].items():
        kind = kinds[canonical]
        if canonical in decided:
            continue

        def fits(profile: Profile, kind=kind, canonical=canonical) -> bool:
            if kind == "date":
                return profile.date_format is not None
            if kind == "number":
                return profile.numeric and profile.date_format is None
            if canonical == "opportunity_id":
                return profile.distinct >= 0.9 * profile.filled and profile.date_format is None
            return profile.date_format is None or canonical in ("product",)

        profile = _best(file, word_sets, fits, taken)
        if profile is None:
            continue
        taken.add(profile.name)
        why = {"date": f"dates ({_format_text(profile)})", "number": "numbers"}.get(kind, "")
        chosen[canonical] = Choice(canonical, profile, f"header reads as {canonical}" + (f"; {why}" if why else ""))
    return chosen


def _format_text(profile: Profile) -> str:
    if profile.date_format == ISO:
        return "ISO 8601"
    text = f"like {profile.texts.iloc[0]}, read as {profile.date_format}"
    return text + (" - day and month could be swapped: every day is 12 or less" if profile.ambiguous_day else "")


def _pick_activity(
    files: list[FileProfile], table: str, account_key: Profile | None, accounts_file: FileProfile | None
):
    """A file with an account column (matching the accounts' values when known), a date and a type or topic."""
    best = None
    known = set(account_key.texts) if account_key is not None else set()
    for file in files:
        account, overlap = None, 0.0
        for profile in (p for p in file.columns.values() if p.filled and p.date_format is None):
            values = profile.texts.drop_duplicates()
            share = float(values.isin(known).mean()) if known and len(values) else 0.0
            if share > overlap:
                account, overlap = profile, share
        if account is None:
            account = _best(file, ACCOUNT_KEY_SETS)
        if account is None:
            continue
        choices = {
            "account_id": Choice(
                "account_id",
                account,
                f"its values are accounts ({overlap:.0%} known)" if overlap else "header names the account",
            )
        }
        choices.update(_pick_columns(file, table, {account.name}))
        needed = ("timestamp", "channel") if table == "engagement" else ("date", "topic")
        if not all(column in choices for column in needed):
            continue
        score = (_file_score(file, table), overlap, len(choices))
        if best is None or score > best[0]:
            best = (score, file, choices)
    return None if best is None else (best[1], best[2])


def _outcome_entries(mapping: dict[str, str], others: list[str]) -> list[Entry]:
    if all(source == target for source, target in mapping.items()) and not others:
        return []
    entries = [Entry(source, target, f"reads as {target}") for source, target in mapping.items() if source != target]
    if others:
        entries.append(Entry("*", "open", f"every other value is still in the pipeline: {_listed(others)}"))
    return entries


def _section(
    file: FileProfile,
    table: str,
    choices: dict[str, Choice],
    notes: list[str],
    values=None,
    with_file: bool = True,
    also_used: frozenset[str] | set[str] = frozenset(),
) -> list[Entry]:
    entries = [Entry("file", file.name, f"{file.rows:,} rows read")] if with_file else []
    mapped = [
        Entry(canonical, choice.profile.name, choice.why)
        for canonical, choice in choices.items()
        if canonical in columns(table) or canonical == "account_id"
    ]
    order = list(columns(table))
    mapped.sort(key=lambda entry: order.index(entry.key))
    entries.append(Entry("columns", children=mapped))
    value_entries = [Entry(column, children=items) for column, items in (values or {}).items() if items]
    if value_entries:
        entries.append(Entry("values", children=value_entries))
    formats = {
        canonical: choice.profile.date_format
        for canonical, choice in choices.items()
        if columns(table).get(canonical) == "date" and choice.profile.date_format not in (None, ISO)
    }
    layouts = set(formats.values())
    if len(layouts) == 1 and len(formats) == sum(columns(table).get(c) == "date" for c in choices):
        layout = layouts.pop()
        ambiguous = any(choices[c].profile.ambiguous_day for c in formats)
        entries.append(
            Entry(
                "date_format",
                layout,
                "every date column reads so"
                + ("; day and month could be swapped (every day is 12 or less): check" if ambiguous else ""),
            )
        )
        if ambiguous:
            notes.append(f"{file.name}: are dates month first ({layout}) or day first? Every day is 12 or less")
    elif formats:
        entries.append(
            Entry("date_format", children=[Entry(canonical, layout) for canonical, layout in formats.items()])
        )
    revenue = choices.get("annual_revenue")
    if revenue is not None:
        median = float(pd.to_numeric(revenue.profile.texts, errors="coerce").median())
        if median < 100_000:
            notes.append(
                f"{file.name}: {revenue.profile.name} has a median of {median:,.4g}: if it is in thousands or "
                "millions, add scale: {annual_revenue: 1000} or 1000000 under accounts"
            )
    used = {choice.profile.name for choice in choices.values()} | set(also_used)
    unmapped = [name for name in file.columns if name not in used]
    if unmapped and table != "engagement" and (table != "accounts" or with_file):
        entries.append(Entry("#", comment=f"not mapped (passed through as extra columns): {_listed(unmapped, 12)}"))
    return entries


# --- the whole draft ------------------------------------------------------------------------------------------


def draft_mapping(data_dir: str | Path, presets: bool = True) -> Draft:
    """Inspect the export in `data_dir` and draft its mapping (a preset's when its export is recognised, unless
    `presets` is false)."""
    data_dir = data_folder(data_dir)
    files, unreadable = profile_folder(data_dir)
    if not files:
        raise DataError(
            [
                Problem(
                    "no CSV or Parquet file to inspect",
                    file=str(data_dir),
                    fix="pass the folder that holds the export's files (.csv, .tsv, .txt, .parquet)",
                )
            ]
        )
    recognised = recognise_preset(data_dir, files) if presets else None
    if recognised is not None:
        draft = preset_draft(data_dir, *recognised, files)
        draft.unreadable = unreadable
        return draft
    return guess_draft(data_dir, files, unreadable)


def refuse_existing(path: str | Path) -> None:
    """Stop, naming it, if anything (a file, a folder, a link) is at `path`: init never overwrites."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise DataError(
            [
                Problem(
                    f"{path} already exists: tiering init never overwrites a file",
                    fix="pass another --out, or move that file away first",
                    file=str(path),
                )
            ]
        )


def write_new(path: str | Path, text: str) -> Path:
    """Write `text` to `path` only if nothing is there: the whole file appears at once, or nothing does."""
    path = Path(path)
    refuse_existing(path)
    folder = path.resolve().parent
    if not folder.is_dir():
        raise DataError(
            [
                Problem(
                    f"the folder of --out {path} does not exist", fix="create it, or pass another --out", file=str(path)
                )
            ]
        )
    handle, temporary = tempfile.mkstemp(prefix=".mapping.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        try:
            os.link(temporary, path)  # fails if a file appeared meanwhile: never replaced
        except FileExistsError:
            raise DataError(
                [
                    Problem(
                        f"{path} already exists: tiering init never overwrites a file",
                        fix="pass another --out, or move that file away first",
                        file=str(path),
                    )
                ]
            ) from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path
