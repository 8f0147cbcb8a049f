"""The synthetic export: the data contract, realism, determinism and, above all, the truth."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cli.main import app
from features.config import CHANNELS
from features.schema import TABLES, columns
from sources import synthetic as generator
from sources.synthetic import HALF_LIFE_DAYS, LOOKBACK_DAYS, TRUTH_CHANNEL_WEIGHTS, WIN_MODEL, generate_export

END_DATE = pd.Timestamp("2026-06-30")
FILES = [f"{table}.csv" for table in TABLES] + ["truth.csv", "truth_creation.csv"]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> dict[str, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("export")
    generate_export(folder, n_accounts=2000, seed=11)
    dates = {"opportunities": ["created_date", "close_date"], "engagement": ["timestamp"], "intent": ["date"]}
    frames = {table: pd.read_csv(folder / f"{table}.csv", parse_dates=dates.get(table, False)) for table in TABLES}
    frames["truth"] = pd.read_csv(folder / "truth.csv")
    return frames


@pytest.fixture(scope="module")
def closed(export) -> pd.DataFrame:
    """Closed opportunities with their true probability and outcome."""
    opportunities = export["opportunities"].merge(export["truth"], on=["opportunity_id", "account_id"])
    closed = opportunities[opportunities["outcome"] != "open"].copy()
    closed["won"] = closed["outcome"] == "won"
    return closed


def decayed_sum(events: pd.DataFrame, opportunities: pd.DataFrame, time_column: str, weight: pd.Series) -> pd.Series:
    """Per opportunity: weight * 0.5 ** (age / half-life) over the look-back before created_date (plain pandas)."""
    pairs = opportunities[["opportunity_id", "account_id", "created_date"]].merge(
        events.assign(weight=weight)[["account_id", time_column, "weight"]], on="account_id"
    )
    age_days = (pairs["created_date"] - pairs[time_column]).dt.total_seconds() / 86_400
    pairs = pairs[(age_days > 0) & (age_days <= LOOKBACK_DAYS)]
    decayed = pairs["weight"] * 0.5 ** (age_days[pairs.index] / HALF_LIFE_DAYS)
    return decayed.groupby(pairs["opportunity_id"]).sum().reindex(opportunities["opportunity_id"], fill_value=0.0)


def test_writes_every_table_with_the_contract_columns(export):
    for table in TABLES:
        assert set(columns(table)) <= set(export[table].columns), table
    assert "segment_hint" in export["accounts"].columns
    assert list(export["truth"].columns) == [
        "opportunity_id",
        "account_id",
        "true_win_probability",
        "true_expected_deal_size",
    ]
    assert export["accounts"]["account_id"].is_unique
    assert export["opportunities"]["opportunity_id"].is_unique
    known = set(export["accounts"]["account_id"])
    for table in ("opportunities", "engagement", "intent"):
        assert set(export[table]["account_id"]) <= known, table
    assert set(export["accounts"]["parent_account_id"].dropna()) <= known


def test_creates_the_folder_and_leaves_no_temporary_files(tmp_path):
    folder = tmp_path / "new" / "export"
    summary = generate_export(folder, n_accounts=50, seed=1)
    assert sorted(path.name for path in folder.iterdir()) == sorted(FILES)
    assert summary.rows["opportunities.csv"] == len(pd.read_csv(folder / "opportunities.csv"))


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_export(tmp_path / name, n_accounts=150, seed=seed)
    for file in FILES:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    assert (tmp_path / "a" / "opportunities.csv").read_bytes() != (tmp_path / "c" / "opportunities.csv").read_bytes()


def test_parquet_holds_the_same_export_and_replaces_the_csv_tables(tmp_path):
    generate_export(tmp_path, n_accounts=150, seed=5)
    from_csv = {table: pd.read_csv(tmp_path / f"{table}.csv") for table in TABLES}
    generate_export(tmp_path, n_accounts=150, seed=5, file_format="parquet")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"{table}.parquet" for table in TABLES] + ["truth.csv", "truth_creation.csv"]
    )
    for table in TABLES:
        from_parquet = pd.read_parquet(tmp_path / f"{table}.parquet")
        assert list(from_parquet.columns) == list(from_csv[table].columns), table
        assert list(from_parquet["account_id"]) == list(from_csv[table]["account_id"]), table
    engagement = pd.read_parquet(tmp_path / "engagement.parquet")
    assert pd.api.types.is_datetime64_any_dtype(engagement["timestamp"])
    assert list(engagement["channel"]) == list(from_csv["engagement"]["channel"])


def test_a_failure_leaves_no_file_behind(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generator, "_draw_outcomes", fail)
    with pytest.raises(RuntimeError):
        generate_export(tmp_path, n_accounts=50)
    assert list(tmp_path.iterdir()) == []


def test_rejects_unknown_format_and_bad_end_date(tmp_path):
    with pytest.raises(ValueError, match="file_format"):
        generate_export(tmp_path, n_accounts=20, file_format="xlsx")
    with pytest.raises(ValueError, match="end_date"):
        generate_export(tmp_path, n_accounts=20, end_date="June 2026")


def test_opportunities_close_after_creation_and_open_ones_only_at_the_end(export):
    opportunities = export["opportunities"]
    assert set(opportunities["outcome"]) == {"won", "lost", "open"}
    is_open = opportunities["outcome"] == "open"
    assert opportunities.loc[is_open, "close_date"].isna().all()
    assert opportunities.loc[~is_open, "close_date"].notna().all()
    closed = opportunities[~is_open]
    cycle = (closed["close_date"] - closed["created_date"]).dt.days
    assert cycle.between(generator.MIN_SALES_CYCLE_DAYS, generator.MAX_SALES_CYCLE_DAYS).all()
    assert (closed["close_date"] <= END_DATE).all()
    assert (
        opportunities.loc[is_open, "created_date"] > END_DATE - pd.Timedelta(days=generator.MAX_SALES_CYCLE_DAYS)
    ).all()
    assert opportunities["created_date"].min() >= END_DATE - pd.Timedelta(days=generator.HISTORY_DAYS)
    assert (opportunities["amount"] >= 0).all() and opportunities["amount"].notna().all()
    assert opportunities["product"].nunique() >= 5


def test_opportunity_counts_are_heavy_tailed(export):
    per_account = (
        export["opportunities"].groupby("account_id").size().reindex(export["accounts"]["account_id"], fill_value=0)
    )
    assert 8 <= per_account.mean() <= 12
    assert 0.05 <= (per_account == 0).mean() <= 0.25
    assert per_account.max() >= 5 * per_account.mean()


def test_engagement_covers_every_channel_with_realistic_frequencies(export):
    engagement = export["engagement"]
    share = engagement["channel"].value_counts(normalize=True)
    assert set(share.index) == set(CHANNELS)
    assert share["web_visit"] > share["demo_request"] * 5 and share["email_open"] > share["sales_meeting"] * 2
    assert 150 <= len(engagement) / len(export["accounts"]) <= 250
    assert (engagement["count"] >= 1).all() and (engagement["count"] == 1).mean() > 0.8
    assert engagement["timestamp"].max() < END_DATE + pd.Timedelta(days=1)
    intent = export["intent"]
    assert set(generator.INTENT_TOPICS.to_pylist()) == set(intent["topic"])
    assert intent["score"].between(0, 100).all()


def test_messy_strings_and_missing_values_are_present(export):
    accounts = export["accounts"]
    industry = accounts["industry"].dropna()
    assert (industry != industry.str.strip().str.lower()).mean() > 0.01
    assert set(industry.str.strip().str.lower()) == set(generator.INDUSTRIES)
    assert 0.03 <= accounts["annual_revenue"].isna().mean() <= 0.15
    assert 0.01 <= accounts["industry"].isna().mean() <= 0.06
    assert accounts["country"].isna().any() and accounts["segment_hint"].isna().any()
    assert accounts["parent_account_id"].notna().mean() > 0.005
    size = np.log(accounts[["employees", "annual_revenue"]].dropna())
    assert size["employees"].max() > size["employees"].median() + np.log(50)  # heavy tail
    assert size["employees"].corr(size["annual_revenue"]) > 0.7


def test_truth_covers_every_opportunity_and_account(export):
    truth, opportunities = export["truth"], export["opportunities"]
    per_opportunity = truth.dropna(subset=["opportunity_id"])
    assert list(per_opportunity["opportunity_id"]) == list(opportunities["opportunity_id"])
    without = set(export["accounts"]["account_id"]) - set(opportunities["account_id"])
    assert set(truth.loc[truth["opportunity_id"].isna(), "account_id"]) == without
    assert set(truth["account_id"]) == set(export["accounts"]["account_id"])
    is_open = (opportunities["outcome"] == "open").to_numpy()
    assert per_opportunity["true_win_probability"].isna().to_numpy().tolist() == is_open.tolist()
    assert per_opportunity["true_win_probability"].dropna().between(0, 1).all()
    assert (truth["true_expected_deal_size"] > 0).all()
    assert (truth.groupby("account_id")["true_expected_deal_size"].nunique() == 1).all()


def test_win_rate_and_oracle_auc_are_in_band(closed):
    assert 0.2 <= closed["won"].mean() <= 0.4
    assert abs(closed["won"].mean() - closed["true_win_probability"].mean()) < 0.02
    assert 0.72 <= roc_auc_score(closed["won"], closed["true_win_probability"]) <= 0.88


def test_true_deal_size_is_the_mean_won_amount(closed):
    won = closed[closed["won"]]
    assert (won["amount"] / won["true_expected_deal_size"]).mean() == pytest.approx(1.0, abs=0.06)


def test_win_probability_rises_with_demo_requests_before_creation(export, closed):
    demos = export["engagement"][export["engagement"]["channel"] == "demo_request"]
    weighted_demos = decayed_sum(demos, closed, "timestamp", demos["count"]).to_numpy()
    many, none = weighted_demos >= 0.5, weighted_demos == 0
    assert many.sum() > 200 and none.sum() > 200
    assert closed["true_win_probability"][many].mean() > closed["true_win_probability"][none].mean() + 0.1
    assert closed["won"][many].mean() > closed["won"][none].mean() + 0.1


def test_truth_is_the_documented_function_of_what_the_export_shows(export, closed):
    """Recompute the win probability from the files alone, for accounts whose firmographics are complete."""
    accounts = export["accounts"].dropna(subset=["industry", "employees", "region", "tech_stack"])
    sample = closed[closed["account_id"].isin(accounts["account_id"][:300])].reset_index(drop=True)
    firmographics = accounts.set_index("account_id").loc[sample["account_id"]]
    tech = firmographics["tech_stack"].str.lower().str.strip().str.split(";")
    engagement, intent, opportunities = export["engagement"], export["intent"], export["opportunities"]

    channel_weight = engagement["channel"].map(TRUTH_CHANNEL_WEIGHTS) * engagement["count"]
    history = sample[["opportunity_id", "account_id", "created_date"]].merge(
        opportunities[opportunities["outcome"] != "open"][["account_id", "close_date", "outcome"]], on="account_id"
    )
    history = history[history["close_date"] < history["created_date"]]
    prior = (
        history.groupby(["opportunity_id", "outcome"])
        .size()
        .unstack(fill_value=0)
        .reindex(index=sample["opportunity_id"], columns=["won", "lost"], fill_value=0)
    )

    expected = WIN_MODEL.probability(
        industry_fit=firmographics["industry"].str.strip().str.lower().isin(generator.ICP_INDUSTRIES).to_numpy(float),
        size_fit=firmographics["employees"].between(*generator.ICP_EMPLOYEES).to_numpy(float),
        geography_fit=firmographics["region"].str.strip().str.lower().isin(generator.ICP_REGIONS).to_numpy(float),
        tech_matches=tech.apply(lambda tools: len(set(tools) & set(generator.ICP_TECH))).to_numpy(float),
        engagement_points=decayed_sum(engagement, sample, "timestamp", channel_weight).to_numpy(),
        intent_points=decayed_sum(intent, sample, "date", intent["score"] / 100).to_numpy(),
        prior_won=prior["won"].to_numpy(),
        prior_lost=prior["lost"].to_numpy(),
    )
    assert len(sample) > 500
    np.testing.assert_allclose(expected, sample["true_win_probability"], atol=2e-6)


def test_cli_generate_writes_the_export(tmp_path):
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path), "--accounts", "300", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(FILES)
    assert "opportunities.csv" in result.output
    assert len(pd.read_csv(tmp_path / "accounts.csv")) == 300
