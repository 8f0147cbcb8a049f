"""Figures for MLflow runs and the comparison report. Each returns a matplotlib Figure, titled and labelled."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from features.config import TIER_NAMES, UNTIERED  # noqa: E402
from ingest.display import TIER_LABELS  # noqa: E402
from training.evaluate import gain_curve  # noqa: E402

COLOURS = {"learned": "#1f6feb", "rule": "#d97706", "logreg": "#6b7280", "oracle": "#059669"}
TIER_COLOURS = {"tier_1": "#b91c1c", "tier_2": "#f59e0b", "tier_3": "#3b82f6", UNTIERED: "#9ca3af"}


def _figure(title: str, size=(6.4, 4.6)) -> tuple[Figure, plt.Axes]:
    figure, axes = plt.subplots(figsize=size, dpi=110)
    axes.set_title(title, fontsize=12, loc="left")
    axes.grid(alpha=0.25)
    return figure, axes


def roc_figure(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    from sklearn.metrics import roc_auc_score

    figure, axes = _figure("ROC curve on the holdout")
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y, score)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, score):.3f})", color=COLOURS.get(name.split()[0]))
    axes.plot([0, 1], [0, 1], ls="--", color="#9ca3af", lw=1, label="chance")
    axes.set_xlabel("False positive rate (lost deals ranked as likely wins)")
    axes.set_ylabel("True positive rate (won deals found)")
    axes.legend(loc="lower right", fontsize=9)
    figure.tight_layout()
    return figure


def calibration_figure(y: np.ndarray, probabilities: dict[str, np.ndarray], bins: int = 10) -> Figure:
    figure, axes = _figure("Calibration of win probability on the holdout")
    edges = np.linspace(0, 1, bins + 1)
    for name, p in probabilities.items():
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        frame = (
            pd.DataFrame({"bin": which, "p": p, "y": y})
            .groupby("bin")
            .agg(p=("p", "mean"), y=("y", "mean"), n=("y", "size"))
        )
        axes.plot(frame["p"], frame["y"], marker="o", label=name, color=COLOURS.get(name.split()[0]))
    axes.plot([0, 1], [0, 1], ls="--", color="#9ca3af", lw=1, label="perfect calibration")
    axes.set_xlabel("Predicted win probability")
    axes.set_ylabel("Observed win rate")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left", fontsize=9)
    figure.tight_layout()
    return figure


def gain_figure(value: np.ndarray, scores: dict[str, np.ndarray], what: str = "won revenue") -> Figure:
    figure, (gain_axes, lift_axes) = plt.subplots(1, 2, figsize=(10.5, 4.4), dpi=110)
    for name, score in scores.items():
        share, captured = gain_curve(value, score)
        colour = COLOURS.get(name.split()[0])
        gain_axes.plot(share * 100, captured * 100, label=name, color=colour)
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = np.where(share > 0, captured / share, np.nan)
        lift_axes.plot(share[5:] * 100, lift[5:], label=name, color=colour)
    gain_axes.plot([0, 100], [0, 100], ls="--", color="#9ca3af", lw=1, label="random order")
    gain_axes.set_title(f"Cumulative gain: {what}", fontsize=12, loc="left")
    gain_axes.set_xlabel("Accounts worked, best-scored first (%)")
    gain_axes.set_ylabel(f"Share of {what} captured (%)")
    lift_axes.axhline(1, ls="--", color="#9ca3af", lw=1)
    lift_axes.set_title("Lift over random order", fontsize=12, loc="left")
    lift_axes.set_xlabel("Accounts worked, best-scored first (%)")
    lift_axes.set_ylabel("Lift (x random)")
    for axes in (gain_axes, lift_axes):
        axes.grid(alpha=0.25)
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def tier_matrix(learned: pd.Series, rule: pd.Series) -> pd.DataFrame:
    order = [*TIER_NAMES, UNTIERED]
    return pd.crosstab(learned, rule).reindex(index=order, columns=order, fill_value=0)


def tier_matrix_figure(learned: pd.Series, rule: pd.Series) -> Figure:
    matrix = tier_matrix(learned, rule)
    figure, axes = _figure("Learned tier (rows) against rule tier (columns)", size=(6.0, 4.8))
    axes.grid(False)
    shares = matrix.to_numpy() / max(matrix.to_numpy().sum(), 1)
    axes.imshow(np.log1p(matrix.to_numpy()), cmap="Blues")
    labels = [TIER_LABELS[t] for t in matrix.index]
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("Rule tier")
    axes.set_ylabel("Learned tier")
    high = np.log1p(matrix.to_numpy()).max() or 1
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            count = matrix.iat[i, j]
            colour = "white" if np.log1p(count) > high * 0.6 else "black"
            axes.text(j, i, f"{count:,}\n{shares[i, j]:.1%}", ha="center", va="center", fontsize=9, color=colour)
    figure.tight_layout()
    return figure


def score_gain_figure(
    value: np.ndarray, scores: dict[str, np.ndarray], components: dict[str, np.ndarray], what: str = "won revenue"
) -> Figure:
    """`gain_figure` with the rule components added as thin dotted lines, so the main scores stand out."""
    figure = gain_figure(value, {**scores, **components}, what)
    palette = dict(zip(components, ("#7c3aed", "#0d9488", "#db2777")))
    for axes in figure.axes:
        for line in axes.lines:
            label = line.get_label()  # typed as any object by matplotlib; a line's label is text
            if isinstance(label, str) and label in palette:
                line.set(color=palette[label], linestyle=":", linewidth=1.6)
        axes.legend(fontsize=8)  # rebuilt so the legend shows the new styles
    return figure


def tier_outcome_figure(outcomes: pd.DataFrame) -> Figure:
    """Holdout win rate and share of won revenue per tier, one bar per tiering (`outcomes` in long form:
    tiering, tier, win_rate, revenue_share)."""
    figure, (rate_axes, share_axes) = plt.subplots(1, 2, figsize=(10.5, 3.8), dpi=110)
    tiers = [*TIER_NAMES, UNTIERED]
    tierings = list(dict.fromkeys(outcomes["tiering"]))
    width = 0.8 / len(tierings)
    positions = np.arange(len(tiers))
    for axes, column, title, label in (
        (rate_axes, "win_rate", "Win rate of the tier's deals", "Win rate (%)"),
        (share_axes, "revenue_share", "Share of all won revenue", "Share of won revenue (%)"),
    ):
        for offset, tiering in enumerate(tierings):
            values = outcomes[outcomes["tiering"] == tiering].set_index("tier")[column].reindex(tiers)
            bars = axes.bar(
                positions + (offset - (len(tierings) - 1) / 2) * width,
                values.fillna(0) * 100,
                width,
                label=f"{tiering} tiers",
                color=COLOURS[tiering],
            )
            axes.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.0%}" for v in values], fontsize=8, padding=2)
        axes.set_title(title, fontsize=12, loc="left")
        axes.set_xticks(positions, [TIER_LABELS[t] for t in tiers])
        axes.set_xlabel("Tier at the start of the holdout")
        axes.set_ylabel(label)
        axes.margins(y=0.15)
        axes.grid(alpha=0.25, axis="y")
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _spread(targets: np.ndarray, gap: float) -> np.ndarray:
    """Label positions in [0, 1] as close to `targets` as possible while at least `gap` apart."""
    order = np.argsort(-targets, kind="stable")
    if gap * (len(targets) - 1) >= 1:
        placed = np.linspace(1, 0, len(targets))
    else:
        placed = np.minimum(targets[order], 1.0)
        for i in range(1, len(placed)):
            placed[i] = min(placed[i], placed[i - 1] - gap)
        placed[-1] = max(placed[-1], 0.0)  # a stack that ran off the bottom is pushed back up from there
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = max(placed[i], placed[i + 1] + gap)
    result = np.empty_like(placed)
    result[order] = placed
    return result


def priority_map_figure(book: pd.DataFrame, labels: pd.Series) -> Figure:
    """Business fit against win probability, coloured by tier, sized by expected value.

    `book` has business_fit_score, win_probability, expected_value and learned_tier; Tier 1 accounts are
    named by `labels` (same index) in a column beside the plot, with a leader line to their point, so
    names never overlap however the accounts cluster.
    """
    figure, axes = plt.subplots(figsize=(11.5, 6.4), dpi=110)
    figure.subplots_adjust(left=0.07, right=0.74, top=0.93, bottom=0.17)
    axes.set_title("Account priority map: current book", fontsize=12, loc="left")
    axes.grid(alpha=0.25)
    # Business fit takes few distinct values: a little horizontal jitter stops accounts hiding each other.
    jitter = np.random.default_rng(0).uniform(-1.2, 1.2, len(book))
    x = book["business_fit_score"].to_numpy() + jitter
    y = book["win_probability"].to_numpy()
    value = book["expected_value"].fillna(0).to_numpy()
    sizes = 6 + 240 * np.sqrt(value / (value.max() or 1))
    tiers = book["learned_tier"].to_numpy()
    for tier in [UNTIERED, *reversed(TIER_NAMES)]:  # Tier 1 drawn last, on top
        mask = tiers == tier
        axes.scatter(
            x[mask],
            y[mask],
            s=sizes[mask],
            color=TIER_COLOURS[tier],
            alpha=0.35 if tier == UNTIERED else 0.7,
            edgecolors="white",
            linewidths=0.4,
            label=f"{TIER_LABELS[tier]} ({mask.sum():,})",
        )
    axes.set_xlim(-3, 103)
    axes.set_ylim(0, min(1.04, np.nanmax(y) * 1.08) if len(y) else 1.0)  # room above accounts at 100%
    axes.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axes.set_xlabel("Business fit score (rule, 0-100)")
    axes.set_ylabel("Win probability (learned)")
    # Below the axes, so it never hides an account.
    axes.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=4,
        fontsize=8,
        frameon=False,
        title="Learned tier (bubble size: expected value)",
        title_fontsize=8,
    )
    top = np.flatnonzero(tiers == "tier_1")
    if len(top):
        low, high = axes.get_ylim()
        fractions = (y[top] - low) / (high - low)
        for index, position in zip(top, _spread(fractions, gap=0.034)):
            axes.annotate(
                str(labels.iloc[index])[:30],
                xy=(x[index], y[index]),
                xytext=(1.03, position),
                textcoords="axes fraction",
                fontsize=7.5,
                va="center",
                color="#111827",
                arrowprops={"arrowstyle": "-", "color": TIER_COLOURS["tier_1"], "lw": 0.5, "alpha": 0.6},
            )
    return figure


def calibration_quantile_figure(y: np.ndarray, probabilities: dict[str, np.ndarray], bins: int = 10) -> Figure:
    """Calibration with equal-count bins (tenths of the deals), so no point rests on a handful of deals."""
    figure, axes = _figure("Calibration of win probability on the holdout")
    high = 0.0
    for name, p in probabilities.items():
        rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
        frame = pd.DataFrame({"bin": rank * bins // len(p), "p": p, "y": y}).groupby("bin").mean()
        axes.plot(frame["p"], frame["y"], marker="o", label=name, color=COLOURS.get(name.split()[0]))
        high = max(high, frame["p"].max(), frame["y"].max())
    limit = min(1.0, high * 1.1)  # zoomed to where the deals are
    axes.plot([0, limit], [0, limit], ls="--", color="#9ca3af", lw=1, label="perfect calibration")
    axes.set_xlim(0, limit)
    axes.set_ylim(0, limit)
    axes.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axes.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axes.set_xlabel("Predicted win probability (mean of the tenth)")
    axes.set_ylabel("Observed win rate")
    axes.legend(loc="upper left", fontsize=9)
    figure.tight_layout()
    return figure


# --- tiering review ----------------------------------------------------------------------------------


def psi_figure(drift: pd.DataFrame, threshold: float, shown: int = 15) -> Figure:
    """The features with the largest population stability index, as bars, with the 0.1 and threshold lines."""
    top = drift.head(shown).iloc[::-1]
    figure, axes = _figure("Population stability index, training population → book now", (7.4, 0.32 * len(top) + 1.6))
    colours = ["#b91c1c" if v > threshold else "#f59e0b" if v > 0.1 else "#3b82f6" for v in top["psi"]]
    axes.barh(top["feature"], top["psi"], color=colours)
    axes.axvline(0.1, ls=":", color="#6b7280", lw=1, label="0.1: moderate shift")
    axes.axvline(threshold, ls="--", color="#b91c1c", lw=1, label=f"{threshold:g}: retrain threshold")
    axes.set_xlabel("PSI (0 = same distribution)")
    axes.tick_params(axis="y", labelsize=8)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def distribution_shift_figure(then: dict[str, np.ndarray], now: dict[str, np.ndarray]) -> Figure:
    """Each 0-100 score's distribution then and now, one small panel per score."""
    figure, panels = plt.subplots(1, len(then), figsize=(3.0 * len(then), 2.8), dpi=110, sharey=True)
    bins = np.linspace(0, 100, 21)
    for axes, name in zip(np.atleast_1d(panels), then):
        for label, values, colour in (("then", then[name], "#9ca3af"), ("now", now[name], "#1f6feb")):
            finite = values[np.isfinite(values)]
            weights = np.full(len(finite), 100 / max(len(finite), 1))
            axes.hist(finite, bins=bins, weights=weights, histtype="step", lw=1.8, color=colour, label=label)
        axes.set_title(name, fontsize=10, loc="left")
        axes.set_xlabel("score (0-100)")
        axes.grid(alpha=0.25)
    np.atleast_1d(panels)[0].set_ylabel("% of accounts")
    np.atleast_1d(panels)[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def deal_size_figure(predicted: np.ndarray, actual: np.ndarray) -> Figure:
    """Won amounts against the expected deal size predicted for the account, both on log scales."""
    figure, axes = _figure("Won amount against the past expected deal size", (6.0, 4.6))
    keep = np.isfinite(predicted) & np.isfinite(actual) & (predicted > 0) & (actual > 0)
    axes.scatter(predicted[keep], actual[keep], s=10, alpha=0.45, color=COLOURS["learned"], edgecolors="none")
    if keep.any():
        low, high = min(predicted[keep].min(), actual[keep].min()), max(predicted[keep].max(), actual[keep].max())
        axes.plot([low, high], [low, high], ls="--", color="#9ca3af", lw=1, label="predicted = won")
        axes.legend(fontsize=8, loc="upper left")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("Expected deal size at the past scoring ($)")
    axes.set_ylabel("Won amount ($)")
    figure.tight_layout()
    return figure
