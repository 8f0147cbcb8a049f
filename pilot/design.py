"""Choosing a pilot's accounts and splitting them into treatment and control.

Stratified randomisation: the eligible accounts (those in the chosen tiers) are grouped into strata (the tier and
the chosen columns); a pilot smaller than the whole is drawn within each stratum in proportion to its size; then
within each stratum the units are shuffled and alternate between the groups, so every stratum is balanced to within
one unit, and the odd units of successive strata alternate too, so the whole pilot is balanced to within one.
Where the scores carry a non-empty `family_id`, a family is one unit: all its pilot accounts share one group
(cluster randomisation), since treating one member of a buying group reaches the others.

Everything follows from the seed: the selection from `seed`, the split of draw d from (seed, d). Balance is checked
by standardised differences (difference of means over the pooled standard deviation) on the score columns and the
history; an unbalanced draw is re-drawn, up to a limit, and the best one kept with a statement when none passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

TREATMENT = "treatment"
CONTROL = "control"
GROUPS = (TREATMENT, CONTROL)
BALANCE_COLUMNS = ("learned_score", "rule_score", "win_probability", "expected_revenue", "engagement_score")
QUANTILE_BINS = 4  # a numeric stratification column with many values is cut at its quartiles
MAX_CATEGORIES_AS_IS = 8


class DesignError(ValueError):
    """A design that cannot be made from these scores and options; the message says why and what to change."""


@dataclass
class Design:
    assignment: pd.DataFrame  # account_id, group, stratum (+ family_id when families were randomised together)
    balance: pd.DataFrame  # covariate, treatment_mean, control_mean, standardised_difference
    draw: int  # which draw of the seed was kept
    draws: int  # how many were tried
    balanced: bool
    threshold: float
    eligible_accounts: int
    units: int  # randomised units (families count once)
    notes: list[str] = field(default_factory=list)

    @property
    def clustered(self) -> bool:
        return "family_id" in self.assignment.columns


def stratum_labels(scores: pd.DataFrame, columns: list[str]) -> tuple[pd.Series, list[str]]:
    """'tier_1|Software|employees Q3'-style labels: the tier, then each stratification column (numeric columns with
    many values cut at their quartiles, missing values as '(missing)')."""
    notes: list[str] = []
    parts = [scores["tier"].astype(str)]
    for column in columns:
        values = scores[column]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and numeric.nunique() > MAX_CATEGORIES_AS_IS:
            bins = pd.qcut(numeric.rank(method="first"), QUANTILE_BINS, labels=False)
            parts.append(f"{column} Q" + (bins + 1).astype(int).astype(str))
            notes.append(f"{column} is numeric with many values: stratified by its quartiles")
        else:
            parts.append(values.astype("string").fillna("(missing)").replace("", "(missing)").astype(str))
    label = parts[0]
    for part in parts[1:]:
        label = label + "|" + part
    return label, notes


def _units(eligible: pd.DataFrame, strata: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """One row per randomised unit (an account, or a family): unit id, stratum, accounts."""
    if "family_id" in eligible.columns:
        family = eligible["family_id"].astype("string").fillna("").str.strip()
    else:
        family = pd.Series("", index=eligible.index, dtype="string")
    unit = family.where(family != "", "account:" + eligible["account_id"].astype(str))
    order = eligible.assign(_unit=unit.astype(str), _stratum=strata.astype(str))
    rank = "learned_score" if "learned_score" in order.columns else "account_id"
    # A family is stratified where its leading account (highest score) sits.
    lead = order.sort_values([rank, "account_id"], ascending=[False, True]).drop_duplicates("_unit")
    sizes = order.groupby("_unit").size()
    units = pd.DataFrame(
        {"unit": lead["_unit"].to_numpy(), "stratum": lead["_stratum"].to_numpy(), "accounts": 0}
    ).sort_values("unit", kind="stable")
    units["accounts"] = sizes.reindex(units["unit"]).to_numpy()
    return units.reset_index(drop=True), unit.astype(str)


def _quota(counts: pd.Series, share: float) -> pd.Series:
    """Units per stratum for a share, by largest remainder (the total is round(share * all))."""
    exact = counts * share
    base = np.floor(exact).astype(int)
    left = int(round(float(exact.sum()))) - int(base.sum())
    if left > 0:
        order = (exact - base).sort_values(ascending=False, kind="stable").index[:left]
        base[order] += 1
    return base


def _select(units: pd.DataFrame, share: float, rng: np.random.Generator) -> pd.DataFrame:
    if share >= 1:
        return units
    counts = units.groupby("stratum").size()
    quota = _quota(counts, share)
    chosen = []
    for stratum, frame in units.groupby("stratum", sort=True):
        take = int(quota[stratum])
        if take:
            chosen.append(frame.iloc[np.sort(rng.choice(len(frame), size=take, replace=False))])
    return pd.concat(chosen).reset_index(drop=True) if chosen else units.iloc[:0]


def split(units: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Treated flags per unit: within each stratum a random order alternates treatment and control, starting with
    a random group; the odd unit of successive odd-sized strata goes to alternate groups."""
    treated = np.zeros(len(units), dtype=bool)
    odd_goes_to_treatment = bool(rng.integers(2))
    for _, frame in units.groupby("stratum", sort=True):
        positions = frame.index.to_numpy()[rng.permutation(len(frame))]
        first = odd_goes_to_treatment if len(frame) % 2 else bool(rng.integers(2))
        if len(frame) % 2:
            odd_goes_to_treatment = not odd_goes_to_treatment
        pattern = (np.arange(len(frame)) % 2 == 0) == first
        treated[positions] = pattern
    return treated


def standardised_differences(frame: pd.DataFrame, treated: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """(mean treatment - mean control) / sqrt((var treatment + var control) / 2) per column; 0 where both are
    constant."""
    rows = []
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
        t, c = values[treated], values[~treated]
        t, c = t[~np.isnan(t)], c[~np.isnan(c)]
        if len(t) < 2 or len(c) < 2:
            continue
        pooled = np.sqrt((t.var(ddof=1) + c.var(ddof=1)) / 2)
        gap = t.mean() - c.mean()
        rows.append(
            {
                "covariate": column,
                "treatment_mean": t.mean(),
                "control_mean": c.mean(),
                "standardised_difference": gap / pooled if pooled > 0 else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["covariate", "treatment_mean", "control_mean", "standardised_difference"])


def design_pilot(
    scores: pd.DataFrame,
    tiers: list[str],
    seed: int,
    strata: list[str] | None = None,
    size: int | None = None,
    share: float | None = None,
    history: pd.DataFrame | None = None,
    threshold: float = 0.1,
    max_draws: int = 20,
) -> Design:
    """Pick the pilot's accounts among those in `tiers` and split them. `history`: per account (account_id plus
    numeric columns) pre-period activity to balance on as well as the score columns."""
    strata = list(strata or [])
    missing = [column for column in ["account_id", "tier", *strata] if column not in scores.columns]
    if missing:
        raise DesignError(
            f"no column {', '.join(missing)} in the scores (or the export's accounts, with --data): stratify by a "
            "column one of them holds"
        )
    eligible = scores[scores["tier"].astype(str).isin(tiers)].reset_index(drop=True)
    if len(eligible) < 2:
        raise DesignError(
            f"only {len(eligible)} account(s) in {', '.join(tiers)}: a pilot needs at least two; choose more tiers"
        )
    if size is not None:
        if size < 2 or size > len(eligible):
            raise DesignError(f"--size {size}: give between 2 and {len(eligible)} (the accounts in {', '.join(tiers)})")
        share = size / len(eligible)
    share = 1.0 if share is None else share
    labels, notes = stratum_labels(eligible, strata)
    units, unit_of_account = _units(eligible, labels)
    rng = np.random.default_rng(seed)
    chosen = _select(units, share, rng)
    if len(chosen) < 2:
        raise DesignError("the pilot would hold fewer than two units: raise --size or --share")
    pilot_accounts = eligible[unit_of_account.isin(chosen["unit"]).to_numpy()].copy()
    pilot_accounts["_unit"] = unit_of_account[unit_of_account.isin(chosen["unit"])].to_numpy()
    if history is not None:
        pilot_accounts = pilot_accounts.merge(history, on="account_id", how="left")
    covariates = [c for c in BALANCE_COLUMNS if c in pilot_accounts.columns]
    if history is not None:
        covariates += [c for c in history.columns if c != "account_id"]
    position = pd.Series(np.arange(len(chosen)), index=chosen["unit"].to_numpy())
    member_position = position.reindex(pilot_accounts["_unit"]).to_numpy()

    best: tuple[float, int, np.ndarray, pd.DataFrame] | None = None
    draws = 0
    for draw in range(max_draws):
        draws += 1
        unit_treated = split(chosen, np.random.default_rng([seed, draw]))
        treated = unit_treated[member_position]
        balance = standardised_differences(pilot_accounts, treated, covariates)
        worst = float(balance["standardised_difference"].abs().max()) if len(balance) else 0.0
        if best is None or worst < best[0]:
            best = (worst, draw, treated, balance)
        if worst <= threshold:
            break
    assert best is not None
    worst, draw, treated, balance = best
    stratum_of_unit = pd.Series(chosen["stratum"].to_numpy(), index=chosen["unit"].to_numpy())
    assignment = pd.DataFrame(
        {
            "account_id": pilot_accounts["account_id"].astype(str).to_numpy(),
            "group": np.where(treated, TREATMENT, CONTROL),
            "stratum": stratum_of_unit.reindex(pilot_accounts["_unit"]).to_numpy(),
        }
    )
    clustered = (chosen["accounts"] > 1).any() or not chosen["unit"].str.startswith("account:").all()
    if clustered:
        assignment["family_id"] = [u if not u.startswith("account:") else "" for u in pilot_accounts["_unit"]]
        notes.append(f"whole families randomised together: {len(chosen):,} units for {len(assignment):,} accounts")
    # The four-group readout (high and low score, treated and control) needs each account's band as designed.
    if "learned_score" in pilot_accounts.columns:
        score = pd.to_numeric(pilot_accounts["learned_score"], errors="coerce").to_numpy(float)
        assignment["score_band"] = np.where(score >= np.nanmedian(score), "high", "low")
    assignment = assignment.sort_values(["stratum", "account_id"], kind="stable").reset_index(drop=True)
    return Design(
        assignment=assignment,
        balance=balance,
        draw=draw,
        draws=draws,
        balanced=worst <= threshold,
        threshold=threshold,
        eligible_accounts=len(eligible),
        units=len(chosen),
        notes=notes,
    )
