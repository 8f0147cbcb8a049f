"""Checks before fitting: features that leak the outcome, win rates that shift between slices, and
signals that are constant because the export lacks their inputs.

Pure functions on training rows; the pipeline turns their findings into refusals and warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency

from features.config import Guards, ModelConfig
from features.pointintime import slug
from features.schema import CrmData
from training.evaluate import rank_auc

CATEGORY_PRIOR_ROWS = 20  # a category's win rate is pulled towards the overall rate by this many rows
FEW_LEVELS = 12  # a column with at most this many values splits the deals into levels the guard looks within
RULE_INPUTS = {
    "revenue_potential_score": ("annual_revenue", "employees"),
    "business_fit_score": ("industry", "employees", "country", "region", "tech_stack"),
    "engagement_score": ("engagement table",),
}


@dataclass(frozen=True)
class Leak:
    feature: str
    auc: float  # single-feature ROC AUC, folded so 1.0 = perfect separation either way
    present_won: float  # share of won rows where the feature has a value
    present_lost: float
    why: str
    column: str = ""  # what the user calls it: the account column behind an extra feature

    def render(self) -> str:
        return (
            f"feature '{self.column or self.feature}' {self.why} (single-feature ROC AUC {self.auc:.3f}; present for "
            f"{self.present_won:.0%} of won and {self.present_lost:.0%} of lost deals): it is probably filled in "
            "after the deal closes, so it was left out of the model. If it is known before a deal opens, list it "
            "under model.allow_features in tiering.yaml"
        )


def _single_feature_auc(values: pd.Series, won: np.ndarray) -> float:
    """How well this one column alone ranks won above lost; missing values form a level of their own."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(numbers)
        if present.all():
            score = numbers
        elif not present.any():
            return 0.5
        else:  # missing ranks below or above every value, whichever separates better
            ranks = np.full(len(numbers), 0.0)
            ranks[present] = pd.Series(numbers[present]).rank(method="average").to_numpy()
            low, high = ranks, np.where(present, ranks, present.sum() + 1.0)
            return max(_folded_auc(won, low), _folded_auc(won, high))
    else:
        text = values.astype("object").where(values.notna(), "\x00missing")
        # Each category's smoothed win rate: a column that alone tells the outcome gets rates near 0 and 1.
        table = pd.DataFrame({"level": text.astype(str).to_numpy(), "won": won})
        stats = table.groupby("level")["won"].agg(["sum", "count"])
        overall = won.mean()
        rate = (stats["sum"] + CATEGORY_PRIOR_ROWS * overall) / (stats["count"] + CATEGORY_PRIOR_ROWS)
        score = table["level"].map(rate).to_numpy(dtype=np.float64)
    return _folded_auc(won, score)


def _folded_auc(won: np.ndarray, score: np.ndarray) -> float:
    if np.all(score == score[0]):
        return 0.5
    auc = rank_auc(won, score)
    return max(auc, 1 - auc)


def level_masks(
    rows: pd.DataFrame, columns: list[str], smallest: int, won: np.ndarray
) -> list[tuple[str, str, np.ndarray]]:
    """(column, level, rows in it) for each value of a column with at most FEW_LEVELS values (empty counts as one)
    whose rows hold at least `smallest` won and `smallest` lost deals: the groups a leak can hide in."""
    groups = []
    for column in columns:
        if column not in rows or not 1 < rows[column].nunique(dropna=False) <= FEW_LEVELS:
            continue
        codes, levels = pd.factorize(rows[column], use_na_sentinel=False)
        for code, level in enumerate(levels):
            mask = codes == code
            level_won = int(won[mask].sum())
            if min(level_won, int(mask.sum()) - level_won) >= smallest:
                groups.append((column, "(empty)" if pd.isna(level) else str(level), mask))
    return groups


def _auc_from_counts(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC of a score whose distinct values, in ascending order, hold these won and lost counts (ties half)."""
    pairs = positive.sum() * negative.sum()
    return float(np.dot(positive, np.cumsum(negative) - 0.5 * negative) / pairs) if pairs else 0.5


def _aucs_within(values: pd.Series, won: np.ndarray, masks: list[np.ndarray]) -> list[float]:
    """`_single_feature_auc` of `values` within each group of rows, folded; each group is one pass of bincounts
    over the values' codes, computed once, so thousands of groups stay cheap."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(numbers)
        # Missing ranks below or above every value, whichever separates better (as for the whole column).
        encodings = [np.unique(np.where(missing, -np.inf, numbers), return_inverse=True)[1]]
        if missing.any():
            encodings.append(np.unique(np.where(missing, np.inf, numbers), return_inverse=True)[1])
        out = []
        for mask in masks:
            best = 0.5
            for codes in encodings:
                positive = np.bincount(codes[mask], weights=won[mask], minlength=int(codes.max()) + 1)
                negative = np.bincount(codes[mask], minlength=int(codes.max()) + 1) - positive
                auc = _auc_from_counts(positive, negative)
                best = max(best, auc, 1 - auc)
            out.append(best)
        return out
    codes = pd.factorize(values.astype("object"), use_na_sentinel=False)[0]
    out = []
    for mask in masks:
        won_count = np.bincount(codes[mask], weights=won[mask], minlength=int(codes.max()) + 1)
        count = np.bincount(codes[mask], minlength=int(codes.max()) + 1)
        overall = won[mask].mean()
        rate = (won_count + CATEGORY_PRIOR_ROWS * overall) / (count + CATEGORY_PRIOR_ROWS)
        order = np.unique(rate, return_inverse=True)[1]
        positive = np.bincount(order, weights=won_count)
        auc = _auc_from_counts(positive, np.bincount(order, weights=count) - positive)
        out.append(max(auc, 1 - auc))
    return out


def find_leaks(rows: pd.DataFrame, columns: list[str], config: ModelConfig) -> list[Leak]:
    """Features that alone separate won from lost almost perfectly, overall or within one level of a column with
    few values, or are present almost only for one outcome."""
    guards, allowed = config.model.guards, _allowed(config)
    won = rows["won"].to_numpy(dtype=np.int64)
    if len(np.unique(won)) < 2:
        return []
    groups = level_masks(rows, columns, guards.leak_min_present, won)
    leaks = []
    for column in columns:
        if column in allowed or column not in rows:
            continue
        values = rows[column]
        present = values.notna().to_numpy()
        present_won, present_lost = float(present[won == 1].mean()), float(present[won == 0].mean())
        auc = _single_feature_auc(values, won)
        why = None
        if auc > guards.leak_auc:
            why = f"alone separates won from lost almost perfectly (above the bound {guards.leak_auc:g})"
        elif present.sum() >= guards.leak_min_present and not present.all():
            share_won = float(won[present].mean())
            purity = max(share_won, 1 - share_won)
            base = max(won.mean(), 1 - won.mean())
            if purity >= guards.leak_purity and purity > base:
                outcome = "won" if share_won > 0.5 else "lost"
                why = f"is filled in almost only for {outcome} deals ({purity:.1%} of the rows where it has a value)"
        if why is None:
            why = _leak_within_levels(values, won, column, groups, guards.leak_auc, config)
        if why:
            leaks.append(Leak(column, auc, present_won, present_lost, why, _display_name(column, config)))
    return leaks


def _leak_within_levels(
    values: pd.Series,
    won: np.ndarray,
    column: str,
    groups: list[tuple[str, str, np.ndarray]],
    bound: float,
    config: ModelConfig,
) -> str | None:
    """Why `values` leaks inside one level of another column (the first such level), or None.

    A flag that winning sets can be diluted overall by a level where every deal has it (upgrades are
    customers anyway) and still tell the outcome among the other deals."""
    others = [group for group in groups if group[0] != column]
    for (other, level, _), auc in zip(others, _aucs_within(values, won, [mask for _, _, mask in others])):
        if auc > bound:
            return (
                f"separates won from lost almost perfectly among the deals whose '{_display_name(other, config)}' is "
                f"'{level}' (ROC AUC {auc:.3f} there, above the bound {bound:g})"
            )
    return None


def _allowed(config: ModelConfig) -> set[str]:
    names = set(config.model.allow_features)
    return names | {f"extra_{slug(name)}" for name in names}


def _display_name(feature: str, config: ModelConfig) -> str:
    """The account column a user knows (`signed_segment`), not the model's feature name (`extra_signed_segment`)."""
    for name in config.model.extra_features:
        if feature == f"extra_{slug(name)}":
            return name
    return feature


@dataclass(frozen=True)
class Shift:
    rates: dict[str, tuple[float, int]]  # slice -> (win rate, closed deals)
    p_value: float

    def render(self) -> str:
        parts = ", ".join(f"{name} {rate:.1%} of {count:,}" for name, (rate, count) in self.rates.items())
        p_value = "p < 0.0001" if self.p_value < 1e-4 else f"p = {self.p_value:.4f}"
        return (
            f"the win rate shifts between the training slices ({parts}; chi-squared {p_value}): "
            "probabilities calibrated on earlier months may be off for later ones; check whether the export's "
            "outcomes changed (a new sales process, missing lost deals) or move --as-of"
        )


def win_rate_shift(slices: dict[str, np.ndarray], guards: Guards) -> Shift | None:
    """A significant, sizeable difference between the slices' win rates; None when there is none."""
    counts = {name: (int(y.sum()), int(len(y) - y.sum())) for name, y in slices.items() if len(y)}
    if len(counts) < 2:
        return None
    rates = {name: (won / (won + lost), won + lost) for name, (won, lost) in counts.items()}
    table = np.array(list(counts.values()), dtype=np.float64)
    if (table.sum(axis=0) == 0).any():
        return None
    p_value = float(chi2_contingency(table)[1])
    values = [rate for rate, _ in rates.values()]
    low, high = min(values), max(values)
    sizeable = high >= guards.shift_min_ratio * low or (1 - low) >= guards.shift_min_ratio * (1 - high)
    return Shift(rates, p_value) if p_value < guards.shift_p_value and sizeable else None


def constant_signals(book: pd.DataFrame, available: dict[str, bool]) -> list[str]:
    """Which rule components (and the rule score) are the same for every account, with the inputs that are missing.

    `available` says, per input column (and "engagement table"), whether the export has any value.
    """
    messages = []
    for component, inputs in RULE_INPUTS.items():
        if component in book and _is_constant(book[component]):
            missing = [name for name in inputs if not available.get(name, True)]
            value = float(book[component].iloc[0]) if len(book) else 0.0
            cause = f": the export has no {', '.join(missing)}" if missing else ""
            messages.append(f"{component} is {value:g} for every account{cause}")
    if "rule_score" in book and _is_constant(book["rule_score"]):
        messages.append(
            "rule_score is the same for every account: comparisons against the rules are against a "
            "constant (chance), and rule tiers cannot rank"
        )
    return messages


def _is_constant(values: pd.Series) -> bool:
    finite = values.dropna()
    return len(finite) == 0 or float(finite.max() - finite.min()) < 1e-9


def inputs_available(data: CrmData, engagement_events: int | None = None) -> dict[str, bool]:
    """Which rule inputs the export carries at all (a column that is absent or empty is not available).
    `engagement_events`: the engagement table's size, where `data` does not hold its rows."""
    accounts = data.accounts
    available = {
        column: column in accounts and bool(accounts[column].notna().any())
        for column in ("annual_revenue", "employees", "industry", "country", "region", "tech_stack")
    }
    events = data.event_rows("engagement") if engagement_events is None else engagement_events
    available["engagement table"] = events > 0
    return available
