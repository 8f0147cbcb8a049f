"""Decisions a data scientist can trust on exports unlike our generator's: each test plants one real-export
shape (no firmographics, no amounts, a leaking field, a shifting win rate, massive ties, a noise deal
size, an identical retrain, which must also reproduce every figure and score) in files and asserts what the tool
says and does about it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configuration.tiering import TieringConfig, parse_config
from ingest.io import load_export
from sources.synthetic import generate_export
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from tests.trained import FAST_MODEL
from training.pipeline import TrainingResult, train

pytestmark = pytest.mark.slow  # scheduled first: a long file started last would end alone

SMALL_GATE = {"gate": {"min_won": 10, "min_lost": 10}}
FIRMOGRAPHICS = ["industry", "employees", "annual_revenue", "country", "region", "tech_stack"]


@pytest.fixture(scope="module")
def base_export(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    generate_export(folder, n_accounts=1500, seed=11)
    return folder


@pytest.fixture(scope="module")
def plain_training(base_export) -> TrainingResult:
    """`train` on the unchanged export with the small gate, once for the module (read only): the reference the
    variants are compared with, and the first of the retrains below (logging it is `train_and_register`'s second
    half)."""
    return train(load_export(base_export).data, config())


def variant(base: Path, target: Path, accounts=None, opportunities=None, drop_tables=()) -> Path:
    """A copy of the export with its accounts or opportunities table rewritten by the given functions."""
    shutil.copytree(base, target)
    (target / "truth.csv").unlink(missing_ok=True)  # never part of an export
    for name, change in (("accounts", accounts), ("opportunities", opportunities)):
        if change is not None:
            frame = pd.read_csv(target / f"{name}.csv", dtype=str, keep_default_na=False)
            change(frame).to_csv(target / f"{name}.csv", index=False)
    for name in drop_tables:
        (target / f"{name}.csv").unlink()
    return target


def config(**model) -> TieringConfig:
    """The small gate and a fast training: what these tests judge is the tool's handling of the export's shape,
    never which of many learners the search settles on."""
    return parse_config({"model": {**SMALL_GATE, **FAST_MODEL, **model}})


def test_no_firmographics_says_which_inputs_are_missing_and_still_trains(base_export, tmp_path):
    folder = variant(base_export, tmp_path / "x", accounts=lambda f: f.drop(columns=FIRMOGRAPHICS))
    result = train(load_export(folder).data, config())
    assert (
        "revenue_potential_score is 0 for every account: the export has no annual_revenue, employees" in result.warnings
    )
    assert (
        "business_fit_score is 0 for every account: the export has no industry, employees, country, region, tech_stack"
    ) in result.warnings
    # Engagement still varies, so the rule score is not constant and the gate compares against it.
    assert result.metrics["rule_score_constant"] == 0.0


def test_constant_rule_score_is_compared_with_chance_and_tiers_never_follow_file_order(base_export, tmp_path):
    flat = variant(
        base_export,
        tmp_path / "flat",
        accounts=lambda f: f.drop(columns=FIRMOGRAPHICS),
        drop_tables=("engagement", "intent"),
    )
    result = train(load_export(flat).data, config())
    assert result.metrics["rule_score_constant"] == 1.0 and result.metrics["rule_roc_auc"] == 0.5
    assert "engagement_score is 0 for every account: the export has no engagement table" in result.warnings
    assert (
        "rule_score is the same for every account: comparisons against the rules are against a constant "
        "(chance), and rule tiers cannot rank" in result.warnings
    )
    from training.pipeline import gate

    decision = gate(result.summary, result.metrics, None, config())
    assert any(
        "the rule score is constant on the holdout, so chance is the rule reference" in text
        for _, text in decision.checks
    )
    # The same accounts in the reverse file order get the same tiers: ties are broken by the documented keys.
    reversed_folder = variant(flat, tmp_path / "reversed", accounts=lambda f: f.iloc[::-1])
    book = result.scorer.score(result.book, by_capacity=True)
    again = train(load_export(reversed_folder).data, config())
    book_again = again.scorer.score(again.book, by_capacity=True)
    assert (
        book.set_index("account_id")["learned_tier"]
        .sort_index()
        .equals(book_again.set_index("account_id")["learned_tier"].sort_index())
    )


def test_an_export_without_amounts_trains_and_ranks_on_win_probability(base_export, tmp_path):
    folder = variant(base_export, tmp_path / "x", opportunities=lambda f: f.drop(columns=["amount"]))
    result = train(load_export(folder).data, config())
    assert result.notes[0].startswith("no won deal has an amount: deal size is not learned")
    book = result.scorer.score(result.book, by_capacity=True)
    assert book["expected_deal_size"].isna().all() and book["expected_value"].isna().all()
    # Learned score follows win probability exactly where the rule score is equal.
    same_rules = book[book["rule_score"] == book["rule_score"].mode()[0]]
    ranked = same_rules.sort_values("win_probability")
    assert ranked["learned_score"].is_monotonic_increasing


def _one_deal_per_account(frame: pd.DataFrame) -> pd.DataFrame:
    closed = frame[frame["outcome"] != "open"]
    return closed.sort_values("close_date").groupby("account_id").tail(1)


def test_a_field_filled_in_after_winning_is_refused_by_name_unless_allowed(base_export, tmp_path):
    # A deals sheet: one closed deal per account, and a "signed_segment" typed in only once a deal is won.
    opportunities = _one_deal_per_account(pd.read_csv(base_export / "opportunities.csv", dtype=str))
    won_accounts = set(opportunities.loc[opportunities["outcome"] == "won", "account_id"])

    def add_segment(accounts: pd.DataFrame) -> pd.DataFrame:
        return accounts.assign(signed_segment=np.where(accounts["account_id"].isin(won_accounts), "enterprise", ""))

    folder = variant(base_export, tmp_path / "x", accounts=add_segment, opportunities=_one_deal_per_account)
    data = load_export(folder).data
    leaky = config(extra_features=["signed_segment"])
    result = train(data, leaky)
    assert [leak.column for leak in result.leaks] == ["signed_segment"]
    message = result.leaks[0].render()
    assert message.startswith(
        "feature 'signed_segment' alone separates won from lost almost perfectly (above the "
        "bound 0.95) (single-feature ROC AUC 1.000; present for 100% of won and 0% of lost deals)"
    )
    assert "list it under model.allow_features" in message
    assert "extra_signed_segment" not in result.scorer.spec.columns
    assert result.metrics["model_roc_auc"] < 0.95  # the shipped model does not see the outcome
    allowed = train(data, config(extra_features=["signed_segment"], allow_features=["signed_segment"]))
    assert allowed.leaks == [] and "extra_signed_segment" in allowed.scorer.spec.columns
    assert allowed.metrics["model_roc_auc"] > 0.95


def test_a_shifting_win_rate_is_a_warning_naming_the_slices_and_rates(base_export, plain_training, tmp_path):
    def inflate_early_wins(frame: pd.DataFrame) -> pd.DataFrame:
        closes = pd.to_datetime(frame["close_date"], errors="coerce")
        as_of = closes.max().normalize() + pd.Timedelta(days=1)
        fit_end = as_of - pd.DateOffset(months=5)  # holdout 3 months + validation 2 months, from the config
        lost_early = (frame["outcome"] == "lost") & (closes < fit_end)
        flip = lost_early & (np.random.default_rng(0).random(len(frame)) < 0.7)
        return frame.assign(outcome=np.where(flip, "won", frame["outcome"]))

    window = TieringConfig().model.window
    assert (window.holdout_months, window.calibration_months) == (3, 2)  # the slices the variant above assumes
    folder = variant(base_export, tmp_path / "x", opportunities=inflate_early_wins)
    result = train(load_export(folder).data, config())
    shifts = [w for w in result.warnings if w.startswith("the win rate shifts between the training slices")]
    assert len(shifts) == 1
    rates = {name: result.metrics[f"data_win_rate_{name}"] for name in ("fit", "validation", "holdout")}
    assert rates["fit"] > 1.5 * rates["holdout"]
    assert f"fit {rates['fit']:.1%} of" in shifts[0] and f"holdout {rates['holdout']:.1%} of" in shifts[0]
    # The unchanged export has no such warning.
    assert not [w for w in plain_training.warnings if w.startswith("the win rate shifts")]


def test_a_deal_size_of_pure_noise_is_replaced_by_a_constant(base_export, tmp_path):
    def shuffle_amounts(frame: pd.DataFrame) -> pd.DataFrame:
        won = frame["outcome"] == "won"
        amounts = frame.loc[won, "amount"].to_numpy()
        frame.loc[won, "amount"] = np.random.default_rng(1).permutation(amounts)
        return frame

    folder = variant(base_export, tmp_path / "x", opportunities=shuffle_amounts)
    result = train(load_export(folder).data, config())
    deal = result.scorer.deal_model
    assert deal.shrink == 0.0
    assert result.notes[0].startswith("deal size: the model shows no validated skill (validation R² on log amount")
    book = result.scorer.score(result.book, by_capacity=True)
    assert book["expected_deal_size"].nunique() == 1
    # The constant is the mean won amount of the window (Duan's smearing of a constant log model).
    data = load_export(folder).data
    start, end = result.window.start, result.window.as_of  # noqa: F841  (read by the query below)
    closed = data.opportunities.query("outcome == 'won' and close_date >= @start and close_date < @end")
    assert book["expected_deal_size"].iloc[0] == pytest.approx(closed["amount"][closed["amount"] > 0].mean(), rel=1e-9)


def test_the_model_part_of_the_learned_score_keeps_accounts_beyond_the_training_range_ordered():
    from scoring.scorer import Scorer

    scorer = Scorer(config=TieringConfig(), value_quantiles=np.log1p(np.linspace(100.0, 10_000.0, 201)))
    inside = scorer.model_part(np.array([100.0, 5050.0, 10_000.0]))
    assert inside.tolist() == pytest.approx([0.5, 50.0, 99.5])  # percentiles of the book, 0.5 to 99.5
    beyond = scorer.model_part(np.array([20_000.0, 40_000.0, 1e9, 50.0, 10.0, 0.0]))
    # Above the book: strictly increasing towards 100, never reaching it; below: towards 0.
    assert 99.5 < beyond[0] < beyond[1] < beyond[2] <= 100.0 and beyond[1] < 100.0
    assert 0.5 > beyond[3] > beyond[4] > beyond[5] >= 0.0


def test_an_identical_retrain_is_judged_like_for_like_gets_the_same_figure_and_is_promoted(
    base_export,
    plain_training,
    mlflow_store,  # noqa: F811
):
    import mlflow

    from scoring import registry
    from training.workflow import log_and_register, train_and_register

    data = load_export(base_export).data
    registry.configure()
    first = log_and_register(plain_training, config(), lambda step: None)
    second = train_and_register(data, config(), None, lambda step: None)  # trained again, from the files
    assert (first.version, second.version) == ("1", "2") and first.decision.promote and second.decision.promote
    # Reproducible: the same data, config and seed give the same figures and the same scores.
    assert second.result.metrics == pytest.approx(first.result.metrics, rel=0, abs=1e-9, nan_ok=True)
    stamp = pd.Timestamp("2026-01-01", tz="UTC")
    scores_one = first.result.scorer.score(first.result.book, by_capacity=True, scored_at=stamp)
    scores_two = second.result.scorer.score(second.result.book, by_capacity=True, scored_at=stamp)
    pd.testing.assert_frame_equal(scores_one, scores_two, check_exact=False, rtol=0, atol=1e-9)
    metrics = mlflow.get_run(second.run_id).data.metrics
    # The champion's recipe re-fitted on the same slices is the same model: the very same figure, to the bit.
    assert metrics["champion_refit_roc_auc"] == metrics["model_roc_auc"] == first.result.metrics["model_roc_auc"]
    tolerance = config().model.gate.champion_tolerance
    assert (
        f"within {tolerance:g} of champion version 1's {metrics['model_roc_auc']:.3f} (its recipe re-fitted on the "
        "same months)"
    ) in second.decision.reasons
    assert registry.alias_version("champion").version == "2"


def test_a_champion_from_an_earlier_window_is_also_reported_on_deals_closed_after_it(
    base_export,
    plain_training,
    mlflow_store,  # noqa: F811
):
    import mlflow

    from training.workflow import log_and_register, train_and_register

    data = load_export(base_export).data
    latest = data.opportunities["close_date"].max().normalize() + pd.Timedelta(days=1)
    earlier = latest - pd.DateOffset(months=2)
    old = train_and_register(data, config(), earlier, lambda step: None)
    new = log_and_register(plain_training, config(), lambda step: None)  # trained as of the default date
    assert old.version == "1"
    forward = [text for ok, text in new.decision.checks if text.startswith("for reference, champion version 1")]
    assert len(forward) == 1
    # By hand: the new holdout's deals that closed on or after the old window's end, scored by the old model.
    rows = new.result.holdout_rows[new.result.holdout_rows["close_date"] >= earlier]
    from sklearn.metrics import roc_auc_score

    from scoring.registry import load_model_for

    old_scorer = load_model_for("models:/abm-tiering/1").scorer
    expected = roc_auc_score(rows["won"], old_scorer.win_model.predict(old_scorer.spec.encode(rows)))
    assert forward[0] == (
        f"for reference, champion version 1 as registered scored {expected:.3f} on the {len(rows):,} "
        "holdout deals that closed after its own training window"
    )
    assert mlflow.get_run(new.run_id).data.metrics["champion_forward_roc_auc"] == pytest.approx(expected, abs=1e-12)


def test_a_thin_holdout_stops_training_with_its_dates_and_an_as_of_that_works(tmp_path):
    from tests.scoring.test_messages import closed_deals

    folder = tmp_path / "thin"
    folder.mkdir()
    for name, text in closed_deals().items():
        (folder / name).write_text(text)
    from features.errors import DataError

    with pytest.raises(DataError) as stopped:
        train(load_export(folder).data, config())
    problem = stopped.value.problems[0]
    assert problem.message == (
        "the holdout slice (2024-10-01 to 2024-12-31) has 1 won and 4 lost opportunities; at "
        "least 10 of each are needed"
    )
    assert problem.fix.startswith(
        "pass --as-of 2024-08-02 (the nearest cut-off at which every slice has enough), or "
        "lengthen model.window.holdout_months"
    )


def test_an_export_with_no_won_deal_says_no_window_can_help(tmp_path):
    folder = tmp_path / "lost"
    folder.mkdir()
    rows = "\n".join(f"O{i},A1,2024-0{1 + i % 8}-01,2024-0{2 + i % 8}-01,lost,100" for i in range(60))
    (folder / "accounts.csv").write_text("account_id\nA1\n")
    (folder / "opportunities.csv").write_text(
        "opportunity_id,account_id,created_date,close_date,outcome,amount\n" + rows + "\n"
    )
    from features.errors import DataError

    with pytest.raises(DataError) as stopped:
        train(load_export(folder).data, config())
    assert "--as-of" not in stopped.value.problems[0].fix
    assert stopped.value.problems[0].fix.startswith(
        "the whole export has only 0 won and 60 lost closed opportunities, so no window can help"
    )


def test_a_non_linear_signal_makes_the_search_choose_lightgbm_over_the_logistic_regression(base_export, tmp_path):
    # Two custom fields whose product decides the outcome (an XOR): no linear model can use them, trees can.
    rng = np.random.default_rng(3)
    accounts = pd.read_csv(base_export / "accounts.csv", dtype=str, keep_default_na=False)
    x1, x2 = rng.uniform(-1, 1, len(accounts)), rng.uniform(-1, 1, len(accounts))
    sign = pd.Series(np.sign(x1 * x2), index=accounts["account_id"])

    def add_fields(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(field_a=x1.round(4), field_b=x2.round(4))

    def outcome_from_fields(frame: pd.DataFrame) -> pd.DataFrame:
        closed = frame["outcome"] != "open"
        p_won = 1 / (1 + np.exp(-3 * frame["account_id"].map(sign).to_numpy()))
        won = np.random.default_rng(4).random(len(frame)) < p_won
        decided = frame.assign(outcome=np.where(closed, np.where(won, "won", "lost"), frame["outcome"]))
        # One deal per account, so no earlier deal of the account gives its sign away to a linear model.
        closed_only = decided[decided["outcome"] != "open"]
        return closed_only.sort_values("close_date").groupby("account_id").tail(1)

    folder = variant(base_export, tmp_path / "x", accounts=add_fields, opportunities=outcome_from_fields)
    result = train(load_export(folder).data, config(extra_features=["field_a", "field_b"]))
    chosen = next(c for c in result.selection.candidates if c.chosen)
    logistic = result.selection.candidates[0]
    assert logistic.learner == "logistic" and chosen.learner == "lightgbm"
    assert chosen.validation_auc > logistic.validation_auc + 0.1
    assert result.metrics["model_roc_auc"] > result.metrics["logreg_roc_auc"] + 0.1
    assert result.scorer.win_model.recipe.learner == "lightgbm"
