"""Training rows built one group of accounts at a time are the rows of one builder over the whole book."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from configuration.tiering import parse_config
from features.groups import account_groups, grouped_build
from features.pointintime import FeatureBuilder, snapshot, training_rows
from features.schema import TABLES, CrmData
from tests.factories import random_crm
from training.propensity import snapshot_cutoffs
from training.rows import rows_digest, sample_training_rows, training_features
from training.window import WindowDates

# An extra feature read as text on the whole book (one account says "gold") though most groups hold numbers only.
CONFIG = parse_config({"model": {"extra_features": ["plan_code"], "window": {"months": 12}}})


@pytest.fixture(scope="module")
def book() -> CrmData:
    data = random_crm(n_accounts=120, seed=3, days=700)
    codes = np.arange(len(data.accounts)).astype(str).astype(object)
    codes[7] = "Gold "
    data.accounts["plan_code"] = codes
    return data


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame, key: list[str]) -> None:
    actual = actual.sort_values(key, kind="stable").reset_index(drop=True)
    expected = expected.sort_values(key, kind="stable").reset_index(drop=True)
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected) > 0
    for column in expected.columns:
        left, right = actual[column], expected[column]
        if pd.api.types.is_float_dtype(right):
            np.testing.assert_allclose(left.to_numpy(float), right.to_numpy(float), rtol=0, atol=1e-9, err_msg=column)
        else:
            assert left.tolist() == right.tolist(), column


def test_group_wise_rows_are_the_whole_book_rows(book):
    window = WindowDates.for_data(book, CONFIG, None)
    whole = FeatureBuilder(book, CONFIG)
    built = training_features(book, CONFIG, window, grouped_build(book, CONFIG, groups=5))

    assert len(np.unique(account_groups(book.accounts["account_id"], 5))) == 5  # five real groups, not one
    expected = training_rows(book, whole, window.start, window.as_of)
    assert_same_rows(built.rows, expected, ["opportunity_id"])
    assert built.rows["extra_plan_code"].iloc[0] is not None and "gold" in set(built.book["extra_plan_code"])
    assert_same_rows(built.book, snapshot(book, whole, window.as_of), ["account_id"])
    assert_same_rows(built.holdout_book, snapshot(book, whole, window.holdout_start), ["account_id"])


def test_group_wise_snapshots_are_every_account_at_every_cutoff_with_its_creations(book):
    window = WindowDates.for_data(book, CONFIG, None)
    whole = FeatureBuilder(book, CONFIG)
    snapshots = training_features(book, CONFIG, window, grouped_build(book, CONFIG, groups=4)).snapshots
    horizon = pd.Timedelta(days=CONFIG.model.horizon_days)
    cutoffs = snapshot_cutoffs(window.as_of, window.start, CONFIG.model.horizon_days)
    assert len(cutoffs) > 2 and len(snapshots) == len(cutoffs) * len(book.accounts)  # no sampling at this size
    opps = book.opportunities
    for number, cutoff in enumerate(cutoffs):
        mine = snapshots[snapshots["snapshot"] == number]
        expected = snapshot(book, whole, cutoff)
        assert_same_rows(mine[expected.columns], expected, ["account_id"])
        for account, count in zip(mine["account_id"], mine["count"]):  # by brute force
            created = opps.loc[opps["account_id"] == account, "created_date"]
            assert count == ((created >= cutoff) & (created < cutoff + horizon)).sum()
        assert (mine["label"] == (mine["count"] > 0)).all()


def test_group_wise_rows_come_back_in_the_queries_order(book):
    # Queries in no order, accounts repeated at several cut-offs: row i answers query i, as one builder's rows do.
    ids = book.accounts["account_id"].astype("str")
    queries = pd.DataFrame(
        {
            "account_id": pd.concat([ids, ids.iloc[::3]], ignore_index=True),
            "cutoff": [pd.Timestamp("2025-01-01") + pd.Timedelta(days=7 * i) for i in range(len(ids) + len(ids[::3]))],
        }
    ).sample(frac=1, random_state=2)
    queries.index = queries.index * 10  # an index of its own, which the rows do not keep
    built = grouped_build(book, CONFIG, groups=5)(queries)
    expected = FeatureBuilder(book, CONFIG).build(
        queries["account_id"].reset_index(drop=True), queries["cutoff"].reset_index(drop=True)
    )

    assert len(np.unique(account_groups(queries["account_id"], 5))) == 5
    assert built["account_id"].tolist() == queries["account_id"].tolist()
    assert built["cutoff"].tolist() == queries["cutoff"].tolist()
    pd.testing.assert_frame_equal(built, expected, check_exact=False, rtol=0, atol=1e-9)


def test_an_account_keeps_its_group_whatever_the_order_and_table():
    ids = pd.Series([f"acct-{i}" for i in range(2000)])
    groups = account_groups(ids, 7)
    shuffled = ids.sample(frac=1, random_state=1)
    assert (account_groups(shuffled, 7) == groups[shuffled.index]).all()
    assert (account_groups(pd.Series(ids.tolist() * 2), 7)[:2000] == groups).all()
    counts = np.bincount(groups, minlength=7)
    assert counts.min() > 2000 / 7 * 0.8 and counts.max() < 2000 / 7 * 1.2  # spread evenly


def test_too_many_rows_are_sampled_by_outcome_and_month_keeping_each_share():
    # 2 outcomes x 3 months: 600, 300, 100 lost and 1200, 600, 200 won rows (3,000 in all).
    sizes = {(0, "2025-01"): 600, (0, "2025-02"): 300, (0, "2025-03"): 100}
    sizes |= {(1, "2025-01"): 1200, (1, "2025-02"): 600, (1, "2025-03"): 200}
    rows = pd.concat(
        [
            pd.DataFrame({"won": won, "close_date": pd.Timestamp(f"{month}-10"), "x": np.arange(n)})
            for (won, month), n in sizes.items()
        ],
        ignore_index=True,
    )
    rows["opportunity_id"] = [f"O{i}" for i in range(len(rows))]
    sample = sample_training_rows(rows, 1000, seed=3)

    assert len(sample) == 1000
    counts = sample.groupby(["won", sample["close_date"].dt.strftime("%Y-%m")]).size().to_dict()
    # A third of each stratum; the one row the floors leave over goes to the largest remainder (200 / 3 won).
    assert counts == {
        (0, "2025-01"): 200,
        (0, "2025-02"): 100,
        (0, "2025-03"): 33,
        (1, "2025-01"): 400,
        (1, "2025-02"): 200,
        (1, "2025-03"): 67,
    }
    order = sample["opportunity_id"].str[1:].astype(int)
    assert order.is_monotonic_increasing  # kept in the rows' order
    assert sample.equals(sample_training_rows(rows, 1000, seed=3))  # seeded
    assert sample_training_rows(rows, 5000, seed=3) is rows  # all rows when they fit


def test_the_rows_digest_ignores_order_and_noise_below_nine_digits_but_not_a_real_change():
    rows = pd.DataFrame(
        {
            "opportunity_id": ["O2", "O1", "O3"],
            "cutoff": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"]),
            "amount": [1234.5678, 0.1, np.nan],
            "industry": ["software", None, "retail"],
            "won": [1, 0, 1],
        }
    )
    noisy = rows.iloc[[2, 0, 1]].copy()
    noisy["amount"] = noisy["amount"] * (1 + 1e-13)
    changed = rows.copy()
    changed.loc[0, "amount"] = 1234.5679

    assert rows_digest(noisy) == rows_digest(rows)
    assert rows_digest(changed) != rows_digest(rows)
    assert len(rows_digest(rows)) == 64


def test_a_window_beyond_max_training_rows_is_fitted_on_a_sample_the_run_reports(tmp_path):
    from ingest.io import load_export
    from sources.synthetic import generate_export
    from training.pipeline import train

    generate_export(tmp_path, n_accounts=300, seed=8)
    data = load_export(tmp_path).data
    config = parse_config({"model": {"max_training_rows": 1000, "gate": {"min_won": 10, "min_lost": 10}}})
    result = train(data, config)

    window = result.window
    closed = data.opportunities[data.opportunities["outcome"].isin(["won", "lost"])]
    in_window = int(((closed["close_date"] >= window.start) & (closed["close_date"] < window.as_of)).sum())
    in_holdout = int(((closed["close_date"] >= window.holdout_start) & (closed["close_date"] < window.as_of)).sum())
    assert in_window > 1000
    assert result.summary["closed_opportunities"] == in_window  # what the window holds, before the sample
    assert result.summary["training_rows_fitted"] == 1000
    assert any(f"fitted on 1,000 of the window's {in_window:,} training rows" in note for note in result.notes)
    # Fitted on the sample's development share (by month, to within one row per outcome and month) ...
    strata = 2 * (window.as_of.to_period("M").ordinal - window.start.to_period("M").ordinal + 1)
    assert abs(len(result.development) - 1000 * (in_window - in_holdout) / in_window) <= strata
    # ... and judged on the whole holdout, as a run on all the rows would be.
    assert len(result.holdout_rows) == len(result.holdout) == in_holdout
    won = result.holdout["won"].to_numpy()
    sample_auc = roc_auc_score(won, result.holdout["win_probability"].to_numpy())
    assert result.metrics["model_roc_auc"] == pytest.approx(sample_auc, abs=1e-12)

    # The sample's effect on holdout AUC, measured on the learning curve: the nested half's AUC on the same deals,
    # the gain of the last doubling, and at most that gain per doubling still to go up to all the window's rows.
    metrics = result.metrics
    assert metrics["sample_rows"] == 1000
    assert metrics["sample_half_development_rows"] == len(result.development) // 2
    half_auc = metrics["sample_half_holdout_roc_auc"]
    assert 0.5 < half_auc < 1 and half_auc != sample_auc
    assert metrics["sample_doubling_auc_gain"] == pytest.approx(sample_auc - half_auc, abs=1e-12)
    assert 0 < metrics["sample_doubling_auc_gain_se"] < 0.1
    doublings = np.log2(in_window / 1000)
    gain, error = sample_auc - half_auc, metrics["sample_doubling_auc_gain_se"]
    assert metrics["sample_auc_effect_estimate"] == pytest.approx(max(gain, 0) * doublings, abs=1e-12)
    assert metrics["sample_auc_effect_high"] == pytest.approx(max(gain + 2 * error, 0) * doublings, abs=1e-12)
    effect = next(note for note in result.notes if "effect on holdout ROC AUC" in note)
    assert f"scores {half_auc:.4f} against the sample's {sample_auc:.4f}" in effect
    assert f"all {in_window:,} rows ({doublings:.2f} doublings more)" in effect


def test_group_wise_rows_keep_a_family_together(book):
    # Families of four consecutive accounts, whose members an account hash would put in different groups.
    config = parse_config({"model": {"window": {"months": 12}}, "hierarchy": {"roll_up": "family"}})
    ids = book.accounts["account_id"].astype("str").to_numpy()
    linked = book.accounts.copy()
    linked["parent_account_id"] = [None if i % 4 == 0 else ids[i - i % 4] for i in range(len(ids))]
    families = CrmData(**{**{name: getattr(book, name) for name in TABLES}, "accounts": linked}, present=book.present)
    by_account = account_groups(pd.Series(ids), 5).reshape(-1, 4)
    assert (by_account != by_account[:, :1]).any(axis=1).sum() > 10  # most families span several account groups

    window = WindowDates.for_data(families, config, None)
    whole = FeatureBuilder(families, config)
    built = training_features(families, config, window, grouped_build(families, config, groups=5))
    expected = training_rows(families, whole, window.start, window.as_of)
    assert "family_size" in expected.columns  # the family features are there to be split
    assert_same_rows(built.rows, expected, ["opportunity_id"])
    # A book at one date sums the family's own rows (another path, its columns in another order): the same values.
    at_end = snapshot(families, whole, window.as_of)
    assert set(at_end.columns) == set(built.book.columns)
    assert_same_rows(built.book, at_end[list(built.book.columns)], ["account_id"])
