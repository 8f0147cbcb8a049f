"""Top factors behind a learned score, from the models' own per-feature contributions, in plain words."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.config import ModelConfig

UP, DOWN = "↑", "↓"
CHANNEL_WORDS = {
    "web_visit": ("web visit", "web visits"),
    "content_download": ("content download", "content downloads"),
    "email_open": ("email open", "email opens"),
    "email_click": ("email click", "email clicks"),
    "event_attended": ("event attended", "events attended"),
    "demo_request": ("demo request", "demo requests"),
    "sales_meeting": ("sales meeting", "sales meetings"),
    "other": ("other touch", "other touches"),
}


HUGE = 1e15  # from here on numbers print in scientific notation, never as a wall of digits


def number(value) -> str:
    """A number as a person writes it: 2 (not 2.0), 1,250,000, 12.35, 0.00123, 1.0e+308; text as it is."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "unknown"
    if math.isinf(value):
        return "infinite" if value > 0 else "minus infinite"
    if abs(value) >= HUGE:
        return f"{value:.1e}"
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) < 1:
        return f"{value:.3g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


COMPACT_UNITS = ((1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "B"), (1e12, "T"))


def compact(value: float, unit: str = "") -> str:
    """The one compact form of a figure (console, pages, reasons): 950, 1.0k, 12.3k, 999.9k, 1.0M, 2.1B, 3.0T;
    beyond that 1.0e+15. `unit` goes before the digits ("$"). A figure that rounds up to 1,000 of its unit
    moves to the next one (999,999 is 1.0M, never 1,000.0k). NaN and infinity are the caller's to word."""
    value = float(value)
    sign, size = ("-" if value < 0 else ""), abs(value)
    if size >= HUGE:
        return f"{sign}{unit}{size:.1e}"
    # each unit's figure rounded as it prints, so the unit is chosen on what is shown
    shown_in = [(round(size / step, 0 if step == 1.0 else 1), suffix) for step, suffix in COMPACT_UNITS]
    shown, suffix = next((pair for pair in shown_in if pair[0] < 1000), shown_in[-1])
    digits = 0 if suffix == "" else 1
    return f"{'' if shown == 0 else sign}{unit}{shown:,.{digits}f}{suffix}"


def money(value: float) -> str:
    """$950, $12.3k, $4.5M, $2.1B, $3.0T; beyond that $1.0e+15; an unknown amount for NaN or infinity."""
    value = float(value)
    if not math.isfinite(value):
        return "an unknown amount"
    return compact(value, "$")


def _count(value: float, words: tuple[str, str]) -> str:
    n = int(round(value))
    return f"{'no' if n == 0 else f'{n:,}'} {words[0] if n == 1 else words[1]}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def describe(feature: str, value, config: ModelConfig) -> str:
    """One feature value in words a salesperson understands."""
    icp = config.business_fit
    if feature.startswith("eng_30d_"):
        channel = feature.removeprefix("eng_30d_")
        if channel == "total":
            return f"{_count(value, ('touch', 'touches'))} in the last 30 days"
        return f"{_count(value, CHANNEL_WORDS[channel])} in the last 30 days"
    if feature.startswith("eng_w_"):
        channel = feature.removeprefix("eng_w_")
        label = "overall engagement" if channel == "total" else CHANNEL_WORDS[channel][1]
        return f"{label} over the last {config.engagement.lookback_days} days (recency-weighted {value:,.1f})"
    if feature.startswith("intent_w_"):
        topic = feature.removeprefix("intent_w_").replace("_", " ")
        what = "research intent overall" if topic == "total" else f"research intent on {topic}"
        return f"{what} ({'none' if value < 0.05 else f'weighted {value:,.1f}'})"
    if feature == "intent_30d_signals":
        return f"{_count(value, ('intent signal', 'intent signals'))} in the last 30 days"
    if feature == "surging_channels":
        return "activity surging" + (f" on {int(value)} channels" if value else ": none")
    if feature == "days_since_engagement":
        return "no engagement on record" if _missing(value) else f"last engagement {int(value):,} days ago"
    if feature == "prior_won":
        return f"{_count(value, ('deal', 'deals'))} won before"
    if feature == "prior_lost":
        return f"{_count(value, ('deal', 'deals'))} lost before"
    if feature == "prior_won_amount":
        return f"{money(value)} won before"
    if feature == "days_since_won":
        return "never won before" if _missing(value) else f"last win {int(value):,} days ago"
    if feature == "industry":
        if _missing(value):
            return "industry unknown"
        inside = str(value) in [i.lower() for i in icp.industries]
        return f"industry {value} ({'in' if inside else 'outside'} the ICP)"
    if feature in ("country", "region"):
        return f"{feature} unknown" if _missing(value) else f"{feature} {value}"
    if feature == "employees":
        return "head-count unknown" if _missing(value) else f"{number(np.round(float(value)))} employees"
    if feature == "annual_revenue":
        return "revenue unknown" if _missing(value) else f"{money(value)} annual revenue"
    if feature == "tech_icp_matches":
        return f"{_count(value, ('ICP technology', 'ICP technologies'))} in the tech stack"
    if feature == "tech_stack_size":
        return f"{_count(value, ('known technology', 'known technologies'))} in the tech stack"
    if feature.endswith("_score"):
        return f"{feature.removesuffix('_score').replace('_', ' ')} {value:.0f}/100"
    if feature.startswith("extra_"):
        return f"{feature.removeprefix('extra_').replace('_', ' ')}: {'unknown' if _missing(value) else number(value)}"
    return f"{feature.replace('_', ' ')}: {'unknown' if _missing(value) else number(value)}"


def top_reasons(
    contributions: np.ndarray, names: list[str], rows, config: ModelConfig, how_many: int = 3
) -> list[np.ndarray]:
    """Per rank (strongest first), one phrase per row: the feature with that rank by absolute contribution.

    `rows` holds the feature values (a frame or a mapping of column name to array). Phrases are written
    once per distinct (feature, value, direction) and then looked up, since a book of 100,000 accounts
    repeats the same few thousand of them.
    """
    count = len(contributions)
    strength = np.abs(contributions)
    order = np.argsort(-strength, axis=1, kind="stable")[:, :how_many]
    if count <= FEW_ROWS:
        return _few_top_reasons(contributions, strength, order, names, rows, config, how_many)
    everyone = np.arange(count)
    ranked = []
    for rank in range(order.shape[1]):
        picked = order[:, rank]
        phrases = np.full(count, "", dtype=object)
        for feature in np.unique(picked):
            at = everyone[(picked == feature) & (strength[everyone, picked] > 1e-12)]
            if not len(at):
                continue
            values = np.asarray(rows[names[feature]], dtype=object)[at]
            written: dict[tuple[str, bool], str] = {}
            chosen = []
            for value, up in zip(values, (contributions[at, feature] > 0).tolist()):
                key = (str(value), up)
                phrase = written.get(key)
                if phrase is None:
                    phrase = written[key] = f"{UP if up else DOWN} {describe(names[feature], value, config)}"
                chosen.append(phrase)
            phrases[at] = chosen
        ranked.append(phrases)
    ranked += [np.full(count, "", dtype=object)] * (how_many - len(ranked))
    return ranked


FEW_ROWS = 8  # a service request: row by row costs less than the per-feature masks above


def _few_top_reasons(
    contributions: np.ndarray,
    strength: np.ndarray,
    order: np.ndarray,
    names: list[str],
    rows,
    config: ModelConfig,
    how_many: int,
) -> list[np.ndarray]:
    """`top_reasons` for a few rows, row by row: the same phrases, each (rank, feature, value, direction) written once
    and the first row's phrase kept for the rows after it, as above."""
    count = len(contributions)
    ranked = [np.full(count, "", dtype=object) for _ in range(how_many)]
    values: dict[int, np.ndarray] = {}
    written: dict[tuple[int, int, str, bool], str] = {}
    for row, features in enumerate(order.tolist()):
        for rank, feature in enumerate(features):
            if not strength[row, feature] > 1e-12:
                continue
            if feature not in values:
                values[feature] = np.asarray(rows[names[feature]], dtype=object)
            value = values[feature][row]
            up = bool(contributions[row, feature] > 0)
            key = (rank, feature, str(value), up)
            phrase = written.get(key)
            if phrase is None:
                phrase = written[key] = f"{UP if up else DOWN} {describe(names[feature], value, config)}"
            ranked[rank][row] = phrase
    return ranked
