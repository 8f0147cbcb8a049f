"""The events a team acts on between two scorings of the same book (`tiering alerts`, `POST /alerts`).

Pure domain logic: two score books in, a list of events out. An event is one account and one kind of change:

- `intent_surge`: the account surges now and did not before (with the channels that surge);
- `tier_entered`: its tier is now one of `alerts.tiers` (default Tier 1 and Tier 2) and was another before;
- `tier_left`: its tier was one of them and now is none of them;
- `win_probability_jump` / `learned_score_jump`: the value moved by at least the configured threshold.

Accounts only in the current book are compared against nothing (no surge, untiered, no scores): a new account
in Tier 1 is an event, a jump needs both scorings. Each event's id is a digest of (account, kind, as-of), so
rerunning the same pair gives the same ids, which the webhook delivery uses as idempotency keys.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from configuration.tiering import Alerts
from features.errors import DataError, Problem

KINDS = ("intent_surge", "tier_entered", "tier_left", "win_probability_jump", "learned_score_jump")
TIER_LABELS = {"tier_1": "Tier 1", "tier_2": "Tier 2", "tier_3": "Tier 3", "untiered": "untiered"}
CSV_COLUMNS = [
    "id",
    "kind",
    "account_id",
    "as_of",
    "previous_as_of",
    "summary",
    "field",
    "from",
    "to",
    "delta",
    "tier",
    "previous_tier",
    "learned_score",
    "win_probability",
    "rule_score",
    "expected_value",
    "intent_surge",
    "surge_channels",
    "reason_1",
    "reason_2",
    "reason_3",
    "model_version",
]
OUTPUT_SUFFIXES = (".jsonl", ".ndjson", ".csv")


def event_id(account_id: str, kind: str, as_of: str) -> str:
    """Stable across runs: the same account, kind and as-of date always give the same id."""
    return hashlib.sha256(f"{account_id}\x1f{kind}\x1f{as_of}".encode()).hexdigest()[:32]


def book_as_of(book: pd.DataFrame, name: str, required: bool = True) -> str:
    """The one as-of date of a score book; DataError when it holds several (two books mixed) or, if `required`,
    none ('' then)."""
    values = sorted({str(v) for v in book["as_of"].tolist() if isinstance(v, str) and v} if "as_of" in book else set())
    if len(values) > 1:
        raise DataError(
            [
                Problem(
                    f"the scores hold several as_of dates ({', '.join(values[:3])}): two books mixed",
                    "pass one scoring per file, as `tiering score` writes it",
                    file=name,
                    column="as_of",
                )
            ]
        )
    if not values and not required:
        return ""
    if not values:
        raise DataError(
            [
                Problem(
                    "the scores have no as_of date",
                    "score the book again with `tiering score` (its files carry as_of)",
                    file=name,
                    column="as_of",
                )
            ]
        )
    return values[0]


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _channels(value) -> list[str]:
    return [name for name in str(value or "").split(";") if name]


def _flags(values: pd.Series) -> np.ndarray:
    """`intent_surge` as booleans, from bools (Parquet, the API) or text (CSV: True/False)."""
    if values.dtype == bool:
        return values.to_numpy()
    return values.map(_flag).to_numpy(dtype=bool)


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def check_order_and_book(
    previous: pd.DataFrame, previous_name: str, as_of: str, current_ids, current_name: str
) -> None:
    """The previous book must be scored no later than the current one (as_of, ISO) and share accounts with it
    (`current_ids`): `score --alerts-against` asks this before it writes its scores, `alerts` before it writes
    events. An empty previous book (a first scoring) makes every account new; one without as_of (written before
    the column existed) is compared all the same."""
    before_as_of = book_as_of(previous, previous_name, required=False) if len(previous) else ""
    if before_as_of > as_of:
        raise DataError(
            [
                Problem(
                    f"{previous_name} is scored as of {before_as_of}, after {current_name} ({as_of})",
                    "pass the earlier scoring first: alerts PREVIOUS_SCORES CURRENT_SCORES",
                )
            ]
        )
    current_ids = pd.Series(current_ids, dtype=object)
    if len(previous) and len(current_ids) and not previous["account_id"].isin(current_ids).any():
        raise DataError(
            [
                Problem(
                    f"{previous_name} and {current_name} have no account in common: two different books",
                    "compare two scorings of the same book",
                )
            ]
        )


def build_events(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    config: Alerts,
    previous_name: str = "previous",
    current_name: str = "current",
) -> list[dict]:
    """The events between two score books (frames with the scores-file columns), ordered by account then kind."""
    as_of = book_as_of(current, current_name)
    check_order_and_book(previous, previous_name, as_of, current["account_id"], current_name)
    before_as_of = book_as_of(previous, previous_name, required=False) if len(previous) else ""
    # Vectorised over the book (100,000 accounts in well under a second); dicts only for the accounts with events.
    current = current.reset_index(drop=True)
    position = pd.Index(previous["account_id"]).get_indexer(current["account_id"])
    known = position >= 0

    def old(column: str, fill) -> np.ndarray:
        values = np.full(len(current), fill, dtype=object)
        values[known] = previous[column].to_numpy(dtype=object)[position[known]]
        return values

    alert_tiers = list(config.tiers)
    surge, old_surge = _flags(current["intent_surge"]), _flags(pd.Series(old("intent_surge", False)))
    tier, old_tier = current["tier"].to_numpy(dtype=object), old("tier", None)
    was = np.where(known, old_tier, "untiered")
    entered = np.isin(tier, alert_tiers) & (tier != was)
    left = np.isin(was, alert_tiers) & ~np.isin(tier, alert_tiers)
    masks = {"intent_surge": surge & ~old_surge, "tier_entered": entered, "tier_left": left}
    jumps = {}
    for kind, field, threshold in (
        ("win_probability_jump", "win_probability", config.win_probability_jump),
        ("learned_score_jump", "learned_score", config.learned_score_jump),
    ):
        new_values = pd.to_numeric(current[field], errors="coerce").to_numpy(dtype=np.float64)
        old_values = pd.to_numeric(pd.Series(old(field, np.nan)), errors="coerce").to_numpy(dtype=np.float64)
        delta = new_values - old_values
        with np.errstate(invalid="ignore"):
            masks[kind] = known & np.isfinite(delta) & (np.abs(delta) >= threshold - 1e-12)
        jumps[kind] = (field, old_values, new_values, delta)
    any_event = np.logical_or.reduce(list(masks.values()))
    old_channels = old("surge_channels", "")
    events = []
    rows = current[any_event].to_dict("records")
    for i, row in zip(np.flatnonzero(any_event), rows):
        account = str(row["account_id"])
        previous_tier = old_tier[i] if known[i] else None
        if masks["intent_surge"][i]:
            channels = _channels(row.get("surge_channels"))
            events.append(
                _event(
                    row,
                    account,
                    "intent_surge",
                    "surge_channels",
                    _channels(old_channels[i]),
                    channels,
                    None,
                    f"{account}: intent surge on {', '.join(channels) or 'several channels'}",
                    as_of,
                    before_as_of,
                    previous_tier,
                )
            )
        if masks["tier_entered"][i]:
            origin = f" (from {TIER_LABELS.get(old_tier[i], old_tier[i])})" if known[i] else " (new account)"
            summary = f"{account} entered {TIER_LABELS[tier[i]]}{origin}"
            events.append(
                _event(
                    row,
                    account,
                    "tier_entered",
                    "tier",
                    previous_tier,
                    tier[i],
                    None,
                    summary,
                    as_of,
                    before_as_of,
                    previous_tier,
                )
            )
        elif masks["tier_left"][i]:
            events.append(
                _event(
                    row,
                    account,
                    "tier_left",
                    "tier",
                    previous_tier,
                    tier[i],
                    None,
                    f"{account} left {TIER_LABELS[was[i]]} (now {TIER_LABELS.get(tier[i], tier[i])})",
                    as_of,
                    before_as_of,
                    previous_tier,
                )
            )
        for kind, show in (("win_probability_jump", "{:.0%}".format), ("learned_score_jump", "{:.1f}".format)):
            if masks[kind][i]:
                field, old_values, new_values, delta = jumps[kind]
                direction = "up" if delta[i] > 0 else "down"
                before, after = float(old_values[i]), float(new_values[i])
                events.append(
                    _event(
                        row,
                        account,
                        kind,
                        field,
                        before,
                        after,
                        float(delta[i]),
                        f"{account}: {field.replace('_', ' ')} {direction} {show(old_values[i])} -> "
                        f"{show(new_values[i])}",
                        as_of,
                        before_as_of,
                        previous_tier,
                    )
                )
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(events, key=lambda event: (event["account_id"], order[event["kind"]]))


def _event(
    row: dict,
    account: str,
    kind: str,
    field: str,
    old_value,
    new_value,
    delta,
    summary: str,
    as_of: str,
    previous_as_of: str,
    previous_tier,
) -> dict:
    change = {"field": field, "from": old_value, "to": new_value}
    if delta is not None:
        change["delta"] = round(delta, 4 if field == "win_probability" else 2)
    return {
        "id": event_id(account, kind, as_of),
        "kind": kind,
        "account_id": account,
        "as_of": as_of,
        "previous_as_of": previous_as_of,
        "summary": summary,
        "change": change,
        "tier": row["tier"],
        "previous_tier": previous_tier,
        "learned_score": _number(row["learned_score"]),
        "win_probability": _number(row["win_probability"]),
        "rule_score": _number(row["rule_score"]),
        "expected_value": _number(row["expected_value"]),
        "intent_surge": _flag(row["intent_surge"]),
        "surge_channels": _channels(row.get("surge_channels")),
        "reasons": [
            str(row[name])
            for name in ("reason_1", "reason_2", "reason_3")
            if isinstance(row.get(name), str) and row[name]
        ],
        "model_version": str(row["model_version"]),
    }


def event_line(event: dict) -> str:
    """One event as its canonical JSON (sorted keys, no spaces): the same bytes every run."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def csv_rows(events: list[dict]) -> list[dict]:
    rows = []
    for event in events:
        change = event["change"]
        flat = {column: event.get(column) for column in CSV_COLUMNS}
        reasons = event["reasons"] + ["", "", ""]
        flat.update(
            {
                "field": change["field"],
                "delta": change.get("delta"),
                "from": ";".join(change["from"]) if isinstance(change["from"], list) else change["from"],
                "to": ";".join(change["to"]) if isinstance(change["to"], list) else change["to"],
                "surge_channels": ";".join(event["surge_channels"]),
                "reason_1": reasons[0],
                "reason_2": reasons[1],
                "reason_3": reasons[2],
            }
        )
        rows.append(flat)
    return rows


def render_events(events: list[dict], suffix: str) -> str:
    """The events file's text: JSON Lines, or CSV (formulas neutralised as in every CSV the tool writes)."""
    if suffix != ".csv":
        return "".join(event_line(event) + "\n" for event in events)
    from ingest.files import csv_text, neutralise_formulas

    return csv_text(neutralise_formulas(pd.DataFrame(csv_rows(events), columns=CSV_COLUMNS)))


def is_events_file(path: Path) -> bool:
    """Whether `path` holds an events file this tool wrote (so it may be replaced): empty, our CSV header, or
    JSON Lines whose first line is an event."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    if not first.strip():
        return Path(path).stat().st_size == 0
    if path.suffix.lower() == ".csv":
        return first.strip().lstrip("\ufeff") == ",".join(CSV_COLUMNS)
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and {"id", "kind", "account_id", "as_of"} <= set(record)


def check_events_target(path: Path) -> None:
    """Refuse, before any work, an --out that is not .jsonl/.ndjson/.csv or that holds a file the tool did not write."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DataError(
            [
                Problem(
                    "the events file must end in .jsonl (JSON Lines) or .csv",
                    f"name it e.g. {path.with_suffix('.jsonl').name}",
                    file=str(path),
                )
            ]
        )
    from ingest.files import check_writable_target

    check_writable_target(path)
    if path.exists() and not is_events_file(path):
        raise DataError(
            [
                Problem(
                    "exists and is not an events file written by `tiering alerts`: it is never replaced",
                    "choose another --out, or move the file away",
                    file=str(path),
                )
            ]
        )


def write_events(events: list[dict], path: Path) -> Path:
    from ingest.files import atomic_path

    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(render_events(events, path.suffix.lower()), encoding="utf-8")
    return path


def counts_by_kind(events: list[dict]) -> dict[str, int]:
    counts = dict.fromkeys(KINDS, 0)
    for event in events:
        counts[event["kind"]] += 1
    return counts


def frame_of_records(records: list[dict]) -> pd.DataFrame:
    """Score records (the API's dicts) as a score book frame; missing numbers as NaN."""
    frame = pd.DataFrame.from_records(records)
    for column in ("learned_score", "win_probability", "rule_score", "expected_value"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame
