"""Per-tier forecast inside the horizon: expected new opportunities, pipeline value, deals won and won
revenue, each with an 80% interval from simulation over the accounts.

Prediction only (it runs in `tiering forecast`, `tiering compare` and the service's `/forecast`), from the
score records and the feature rows of one book and the model's `PipelineModel`:

- account a opens new opportunities as a Poisson count with mean lambda_a (the count learner's); each closes
  inside the horizon with the time-to-close share for new deals, is won with the win rate of the account's new
  deals closing inside the horizon (win_probability_a shifted on its log-odds: `PipelineModel.horizon_win`) and
  is worth expected_deal_size_a times a factor drawn from the deal-size model's own residuals (log won amount
  around its prediction on validation deals, rescaled to mean 1);
- each of its open deals closes inside the horizon with the share of open deals that did at past cut-offs
  and is won with the win rate of its open deals closing inside the horizon, for its own amount (the mean of the
  account's open amounts, an open deal without one counting at the account's expected deal size).

Thinned Poisson counts add up to Poisson counts, so a tier's events are drawn as one Poisson count per
simulation and assigned to accounts by their weights (exact compound-Poisson sums). Where a tier expects so
many events that drawing each would cost more than `MAX_DRAWS`, the sum of the count's amounts is drawn from
its exact conditional mean and variance (the central limit: thousands of deals). Points are the exact
expectations; intervals are the simulations' 10th and 90th percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import TIER_NAMES, UNTIERED
from scoring.pipeline import CloseTiming, PipelineModel, counted_at_deal_size, open_value

SIMULATIONS = 10_000
MAX_DRAWS = 1_000_000  # per quantity and tier (about 100 deals a simulation): beyond, the sum is drawn by its moments
LOW, HIGH = 0.10, 0.90
QUANTITIES = ("new_opportunities", "pipeline_value", "deals_won", "won_revenue")
MONEY = ("pipeline_value", "won_revenue")  # unknown (NaN) when the export has no amounts
OVERALL = "overall"
FORECAST_TIERS = (*TIER_NAMES, UNTIERED, OVERALL)


@dataclass(frozen=True)
class BookInputs:
    """The per-account numbers the forecast reads, as arrays in one order."""

    tier: np.ndarray
    pipeline_probability: np.ndarray
    new_win_probability: np.ndarray  # the win rate of the account's deals closing inside the horizon: new ones
    open_win_probability: np.ndarray  # open ones
    deal_size: np.ndarray
    open_deals: np.ndarray
    open_amount: np.ndarray
    expected_new: np.ndarray  # new opportunities expected inside the horizon
    employees: np.ndarray  # the head count (NaN unknown), which picks the account's time-to-close distribution
    amounts_known: bool = True  # False when the model knows no deal size (an export without amounts)
    open_at_deal_size: int = 0  # open deals without an amount, counted at their account's expected deal size

    def new_share_by(self, timing: CloseTiming, days: int) -> np.ndarray:
        """Per account: the share of deals created over the first `days` days that close within them."""
        return timing.per_account(self._rows(), lambda own: own.new_share_by(days))

    def open_share_by(self, timing: CloseTiming, days: int, horizon: int) -> np.ndarray:
        """Per account: the share of its open deals that close within the first `days` days of the horizon."""
        return timing.per_account(self._rows(), lambda own: own.open_share_by(days, horizon))

    def _rows(self) -> dict[str, np.ndarray]:
        return {"open_amount": self.open_amount, "employees": self.employees}

    @classmethod
    def of(cls, scores, features, pipeline: PipelineModel) -> BookInputs:
        """From score records (tier, probabilities, deal size) and the feature rows in the same order."""

        def numbers(values) -> np.ndarray:
            return np.nan_to_num(np.asarray(values, dtype=np.float64))

        open_win, new_win = pipeline.horizon_win(numbers(scores["win_probability"]))
        deal_size = np.asarray(scores["expected_deal_size"], dtype=np.float64)
        return cls(
            tier=np.asarray(scores["tier"], dtype=object),
            pipeline_probability=numbers(scores["pipeline_probability"]),
            new_win_probability=new_win,
            open_win_probability=open_win,
            deal_size=numbers(deal_size),
            open_deals=numbers(features["open_deals"]),
            open_amount=numbers(open_value(features, deal_size)),
            expected_new=pipeline.expected_count(numbers(scores["pipeline_probability"]), features),
            employees=(
                np.asarray(features["employees"], dtype=np.float64)
                if "employees" in features
                else np.full(len(scores["tier"]), np.nan)
            ),
            amounts_known=bool(np.isfinite(deal_size).any()),
            open_at_deal_size=counted_at_deal_size(features, deal_size),
        )


def amount_factors(pipeline: PipelineModel) -> np.ndarray:
    """The deal-size model's residual distribution as multiplicative factors with mean 1 (1 when unknown)."""
    quantiles = np.asarray(pipeline.residual_quantiles, dtype=np.float64)
    if len(quantiles) < 2:
        return np.ones(1)
    factors = np.exp(quantiles)
    # The quantiles' midpoints stand for equal-probability bands of the distribution.
    factors = 0.5 * (factors[1:] + factors[:-1])
    return factors / factors.mean()


def _compound(
    rng: np.random.Generator,
    weights: np.ndarray,
    amounts: np.ndarray,
    factors: np.ndarray | None,
    simulations: int,
    level: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per simulation: a Poisson count of events with rate sum(weights) (times that simulation's `level`, when
    given), each at account a with probability weights_a / sum, worth amounts_a (times a random factor when
    `factors` is given). Returns counts and sums."""
    total = float(weights.sum())
    rate = total if level is None else total * level
    counts = rng.poisson(rate, size=simulations) if total > 0 else np.zeros(simulations, dtype=np.int64)
    if total <= 0:
        return counts, np.zeros(simulations)
    share = weights / total
    if total * simulations <= MAX_DRAWS:
        drawn = int(counts.sum())
        accounts = np.minimum(np.searchsorted(np.cumsum(share), rng.random(drawn) * share.sum()), len(share) - 1)
        values = amounts[accounts]
        if factors is not None:
            values = values * factors[rng.integers(0, len(factors), size=drawn)]
        owner = np.repeat(np.arange(simulations), counts)
        return counts, np.bincount(owner, weights=values, minlength=simulations)
    second = float((factors**2).mean()) if factors is not None else 1.0
    mean = float(share @ amounts)
    variance = max(float(share @ (amounts**2)) * second - mean**2, 0.0)
    sums = counts * mean + np.sqrt(counts * variance) * rng.standard_normal(simulations)
    return counts, np.maximum(sums, 0.0)


def tier_forecast(
    inputs: BookInputs,
    pipeline: PipelineModel,
    simulations: int = SIMULATIONS,
    seed: int = 0,
    days: int | None = None,
) -> pd.DataFrame:
    """One row per tier (and overall): accounts, and for each quantity its expectation and 80% interval.

    `days` (default: the horizon) forecasts the first `days` days of the horizon only (the fan chart's steps).
    """
    rng = np.random.default_rng(seed)
    timing, horizon = pipeline.timing, pipeline.horizon_days
    days = horizon if days is None else min(days, horizon)
    factors = amount_factors(pipeline)
    expected_new = inputs.expected_new * days / horizon
    won_new = expected_new * inputs.new_share_by(timing, days) * inputs.new_win_probability
    won_open = inputs.open_deals * inputs.open_share_by(timing, days, horizon) * inputs.open_win_probability
    open_each = np.where(inputs.open_deals > 0, inputs.open_amount / np.maximum(inputs.open_deals, 1), 0.0)
    spread = pipeline.count_dispersion
    rows = []
    for tier in FORECAST_TIERS:
        members = np.ones(len(inputs.tier), dtype=bool) if tier == OVERALL else inputs.tier == tier
        size = inputs.deal_size[members]
        # The count learner's own error on a group of accounts, beyond chance: one draw per tier and simulation.
        level = np.exp(spread * rng.standard_normal(simulations) - spread**2 / 2) if spread > 0 else None
        new_count, pipeline_value = _compound(rng, expected_new[members], size, factors, simulations, level)
        new_won, new_revenue = _compound(rng, won_new[members], size, factors, simulations, level)
        open_won, open_revenue = _compound(rng, won_open[members], open_each[members], None, simulations)
        simulated = {
            "new_opportunities": new_count.astype(np.float64),
            "pipeline_value": pipeline_value,
            "deals_won": (new_won + open_won).astype(np.float64),
            "won_revenue": new_revenue + open_revenue,
        }
        expected = {
            "new_opportunities": float(expected_new[members].sum()),
            "pipeline_value": float(expected_new[members] @ size),
            "deals_won": float(won_new[members].sum() + won_open[members].sum()),
            "won_revenue": float(won_new[members] @ size + won_open[members] @ open_each[members]),
        }
        row: dict = {"tier": tier, "accounts": int(members.sum())}
        for name in QUANTITIES:
            low, high = np.quantile(simulated[name], [LOW, HIGH])
            row.update({name: expected[name], f"{name}_low": float(low), f"{name}_high": float(high)})
        if not inputs.amounts_known:  # no deal size to count in: the amounts are unknown, not 0
            row.update({f"{name}{end}": np.nan for name in MONEY for end in ("", "_low", "_high")})
        rows.append(row)
    return pd.DataFrame(rows)


def forecast_columns() -> list[str]:
    return ["tier", "accounts", *[f"{name}{end}" for name in QUANTITIES for end in ("", "_low", "_high")]]


def fan(inputs: BookInputs, pipeline: PipelineModel, steps: int = 6, simulations: int = 2_000) -> pd.DataFrame:
    """Won revenue by tier at `steps` points through the horizon, with 80% intervals: a fan chart's data."""
    horizon = pipeline.horizon_days
    frames = []
    for step in range(1, steps + 1):
        days = max(round(horizon * step / steps), 1)
        table = tier_forecast(inputs, pipeline, simulations, seed=step, days=days)
        frames.append(table[["tier", "won_revenue", "won_revenue_low", "won_revenue_high"]].assign(day=days))
    return pd.concat(frames, ignore_index=True)
