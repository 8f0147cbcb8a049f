"""Holdout metrics for the win and deal-size models, the baselines, and the tiers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from features.config import TIER_NAMES, UNTIERED


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed win rate - predicted probability| over 10 equal-width bins, weighted by rows."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / max(len(y), 1))


def win_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if len(np.unique(y)) < 2:
        return {
            "roc_auc": float("nan"),
            "pr_auc": float("nan"),
            "brier": float("nan"),
            "log_loss": float("nan"),
            "ece": float("nan"),
        }
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, clipped)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "ece": expected_calibration_error(y, clipped),
    }


def weighted_auc(y: np.ndarray, level: np.ndarray, levels: int, weight: np.ndarray) -> float:
    """ROC AUC with rows repeated `weight` times; `level` is each row's rank among distinct scores.

    Two weighted histograms over the score levels, O(rows), instead of a sort per resample; ties
    count half, as in roc_auc_score.
    """
    positive = np.bincount(level, weights=weight * y, minlength=levels)
    negative = np.bincount(level, weights=weight * (1 - y), minlength=levels)
    pairs = positive.sum() * negative.sum()
    return float(np.dot(positive, np.cumsum(negative) - 0.5 * negative) / pairs) if pairs else float("nan")


def rank_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by one sort of the scores (ties count half, as in roc_auc_score), without its input checks: for the
    guards, which ask it of thousands of small groups."""
    level = np.unique(score, return_inverse=True)[1]
    return weighted_auc(np.asarray(y, dtype=np.float64), level, int(level.max()) + 1, np.ones(len(level)))


def bootstrap_aucs(y: np.ndarray, scores: list[np.ndarray], resamples: int = 200, seed: int = 0) -> np.ndarray:
    """ROC AUC of each score on the same bootstrap resamples of the rows: (resamples, scores)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=np.float64)
    ranked = [np.unique(score, return_inverse=True)[1] for score in scores]
    out = np.empty((resamples, len(scores)))
    for row in range(resamples):
        weight = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(np.float64)
        out[row] = [weighted_auc(y, level, level.max() + 1, weight) for level in ranked]
    return out


def auc_confidence(
    y: np.ndarray,
    model: np.ndarray,
    references: dict[str, np.ndarray],
    resamples: int = 200,
    max_rows: int = 200_000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap 95% bounds: the model's AUC (lower), and its AUC gain over each reference score
    (`auc_gain_over_<name>_low` and `_high`).

    The gate asks for evidence, not luck: on a small or flat holdout a model can beat the rules by a
    hair by chance, and the lower bound says so. A constant reference has AUC 0.5 in every resample.
    """
    rng = np.random.default_rng(seed)
    if len(y) > max_rows:  # the bound barely moves beyond this many rows; the cost does
        keep = rng.choice(len(y), max_rows, replace=False)
        y, model = y[keep], model[keep]
        references = {name: score[keep] for name, score in references.items()}
    names = list(references)
    empty = {"roc_auc_low": float("nan")}
    for name in names:
        empty.update({f"auc_gain_over_{name}_low": float("nan"), f"auc_gain_over_{name}_high": float("nan")})
    if len(np.unique(y)) < 2:
        return empty
    y = y.astype(np.float64)
    ranked = [np.unique(score, return_inverse=True)[1] for score in (model, *references.values())]
    aucs: list[float] = []
    gains: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(resamples):
        weight = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(np.float64)
        model_auc, *reference_aucs = (weighted_auc(y, level, level.max() + 1, weight) for level in ranked)
        aucs.append(model_auc)
        for name, reference_auc in zip(names, reference_aucs):
            gains[name].append(model_auc - reference_auc)
    out = {"roc_auc_low": float(np.nanquantile(aucs, 0.025))}
    for name in names:
        out[f"auc_gain_over_{name}_low"] = float(np.nanquantile(gains[name], 0.025))
        out[f"auc_gain_over_{name}_high"] = float(np.nanquantile(gains[name], 0.975))
    return out


def deal_size_metrics(amount: np.ndarray, predicted: np.ndarray, predicted_log: np.ndarray) -> dict[str, float]:
    """MAE and MAPE on the amount; R² on log amount (the scale deal sizes vary on).

    Won deals without a positive amount ($0, empty) are left out, since one $0 deal makes MAPE
    infinite and a $1 deal dominates it; `excluded` says how many were left out.
    """
    keep = np.isfinite(amount) & (amount > 0)
    excluded = float((~keep).sum())
    amount, predicted, predicted_log = amount[keep], predicted[keep], predicted_log[keep]
    if len(amount) < 2 or not np.isfinite(predicted).all():
        return {"mae": float("nan"), "mape": float("nan"), "r2_log": float("nan"), "excluded": excluded}
    log_amount = np.log(amount)
    residual = np.sum((log_amount - predicted_log) ** 2)
    spread = np.sum((log_amount - log_amount.mean()) ** 2)
    return {
        "mae": float(np.mean(np.abs(amount - predicted))),
        "mape": float(np.mean(np.abs(amount - predicted) / amount)),
        "r2_log": float(1 - residual / spread) if spread > 0 else float("nan"),
        "excluded": excluded,
    }


def won_revenue_by_account(deals: pd.DataFrame, accounts: pd.Series) -> pd.Series:
    """Won revenue of `deals` (account_id, won, amount) per account, in the order of `accounts`; 0 where none."""
    won = deals[deals["won"] == 1]
    revenue = won.groupby("account_id")["amount"].sum(min_count=1).fillna(0.0)
    return accounts.map(revenue).fillna(0.0).astype("float64").rename("won_revenue")


def tier_outcomes(tiers: pd.Series, holdout: pd.DataFrame) -> pd.DataFrame:
    """Per tier: accounts, holdout opportunities, win rate, won revenue and its share.

    `tiers` is indexed by account_id (tiers as decided at the start of the holdout); `holdout` has the
    opportunities that closed afterwards (account_id, won, amount).
    """
    joined = holdout.assign(tier=holdout["account_id"].map(tiers).fillna(UNTIERED))
    joined["won_revenue"] = np.where(joined["won"] == 1, joined["amount"].fillna(0.0), 0.0)
    total_revenue = joined["won_revenue"].sum()
    rows = []
    for name in [*TIER_NAMES, UNTIERED]:
        part = joined[joined["tier"] == name]
        revenue = float(part["won_revenue"].sum())
        rows.append(
            {
                "tier": name,
                "accounts": int((tiers == name).sum()),
                "opportunities": int(len(part)),
                "win_rate": float(part["won"].mean()) if len(part) else float("nan"),
                "won_revenue": revenue,
                "revenue_share": revenue / total_revenue if total_revenue else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def tier_metric_dict(table: pd.DataFrame, prefix: str) -> dict[str, float]:
    metrics = {}
    for row in table.itertuples():
        metrics[f"{prefix}_{row.tier}_win_rate"] = row.win_rate
        metrics[f"{prefix}_{row.tier}_won_revenue"] = row.won_revenue
    top = table[table["tier"].isin(["tier_1", "tier_2"])]
    metrics[f"{prefix}_top_tiers_revenue_share"] = float(top["revenue_share"].sum())
    return metrics


def gain_curve(y_value: np.ndarray, score: np.ndarray, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Share of accounts contacted (by descending score) against share of the value captured.

    Accounts with equal scores are one block worked together: the curve is straight across a block
    (each tied account carries the block's average value), so no file order decides, and a constant
    score lies on the diagonal.
    """
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="stable")
    ranked = score[order]
    value = np.asarray(y_value, dtype=np.float64)[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True]) + 1  # one past each block of ties
    counts = np.r_[0, ends]
    captured = np.r_[0.0, np.cumsum(value)[ends - 1]]
    total = captured[-1] if captured[-1] else 1.0
    share = np.linspace(0, 1, points)
    return share, np.interp(share * len(score), counts, captured / total)
