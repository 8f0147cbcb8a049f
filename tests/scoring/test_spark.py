"""`tiering score --engine spark` scores, tiers and budgets every account exactly as the pandas path does."""

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import parse_config
from features.errors import DataError
from ingest.files import read_overrides
from ingest.io import load_export
from scoring.registry import resolve_model
from scoring.scorer import SCORE_COLUMNS
from sources.synthetic import generate_export
from tests.cli.test_hostile import words
from tests.mlflow_store import mlflow_store, mlflow_template  # noqa: F401  (fixtures)
from tests.rounding import SCORE_NUMBERS, assert_published
from tests.trained import SMALL_GATE
from training.workflow import train_and_register

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java: no `java` on PATH")
pytestmark = pytest.mark.slow

CONFIG = parse_config({"model": {"gate": {"min_won": 10, "min_lost": 10}}})  # an 800-account export passes it
BUDGET = 1_000_000.0
NUMBERS = [*SCORE_NUMBERS, "budget"]


@pytest.fixture(scope="module")
def parquet_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parquet-export")
    generate_export(folder, n_accounts=800, seed=5, file_format="parquet")
    return folder


def pandas_scores(export, budget, overrides=None):
    frame = load_export(export).data
    scorer, version = resolve_model(None, CONFIG)
    pins = read_overrides(overrides, frame.accounts["account_id"]) if overrides else None
    return scorer.score_book(frame, budget=budget, overrides=pins, model_version=version).scores


def spark_scores(spark, export, out, budget, overrides=None):
    from scoring.spark import score_export

    result = score_export(
        spark,
        str(export),
        str(out),
        model_uri=None,
        config=CONFIG,
        budget=budget,
        overrides=(lambda ids: read_overrides(overrides, ids)) if overrides else None,
    )
    return result, pd.read_parquet(out)


def assert_same_scores(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    assert list(actual.columns) == [*SCORE_COLUMNS, "pilot_group"]  # the scores file: pilot_group too
    assert set(actual["pilot_group"]) == {""}  # no pilot runs here
    actual = actual.drop(columns="pilot_group")
    expected, actual = expected.set_index("account_id").sort_index(), actual.set_index("account_id").sort_index()
    assert actual.index.equals(expected.index)
    for column in expected.columns.drop("scored_at"):
        if column in NUMBERS:  # the file holds the figures rounded as the pandas engine writes them
            assert_published(actual[column], expected[column], column)
        else:
            assert actual[column].tolist() == expected[column].tolist(), column
    assert actual["scored_at"].nunique() == 1


@needs_java
def test_spark_scores_tiers_and_budget_match_pandas_with_the_champion(spark, parquet_export, mlflow_store, tmp_path):  # noqa: F811
    outcome = train_and_register(load_export(parquet_export).data, CONFIG, None, lambda step: None)
    assert outcome.decision.promote, outcome.decision.render()
    pinned = pd.read_parquet(parquet_export / "accounts.parquet")["account_id"].iloc[0]
    overrides = tmp_path / "overrides.csv"
    overrides.write_text(f"account_id,tier,reason,owner\n{pinned},tier_1,strategic deal,ana\n")

    expected = pandas_scores(parquet_export, BUDGET, overrides)
    result, actual = spark_scores(spark, parquet_export, tmp_path / "scores.parquet", BUDGET, overrides)

    assert_same_scores(expected, actual)
    assert actual["model_version"].eq(result.version).all() and result.version.isdigit()
    assert expected["learned_tier"].nunique() == 4  # every tier and untiered occur, so capacity placement is tested
    assert actual.set_index("account_id").loc[pinned, "override_reason"].startswith("pinned to tier_1 by ana")


@needs_java
def test_a_csv_export_without_a_champion_is_scored_by_the_rules_as_pandas_does(spark, mlflow_store, tmp_path):  # noqa: F811
    export = tmp_path / "csv-export"
    generate_export(export, n_accounts=300, seed=4, file_format="csv")

    expected = pandas_scores(export, None)
    result, actual = spark_scores(spark, export, tmp_path / "scores.parquet", None)

    assert result.version == "rules-only"
    assert_same_scores(expected, actual)
    assert actual["win_probability"].isna().all()


@needs_java
def test_a_missing_required_table_stops_the_run_with_its_name(spark, parquet_export, mlflow_store, tmp_path):  # noqa: F811
    export = tmp_path / "no-opportunities"
    shutil.copytree(parquet_export, export)
    (export / "opportunities.parquet").unlink()

    with pytest.raises(DataError, match="required opportunities table not found"):
        spark_scores(spark, export, tmp_path / "scores.parquet", None)
    assert not (tmp_path / "scores.parquet").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--out", "scores.csv"], "--engine spark writes Parquet; name the output scores.parquet"),
        (["--out", "scores.parquet", "--mapping", "salesforce"], "without --mapping"),
        (["--out", "scores.parquet", "--engine", "dask"], "'dask' is not one of 'pandas', 'spark'"),
    ],
)
def test_the_spark_engine_refuses_what_it_cannot_do_before_starting(options, message, tmp_path):
    engine = [] if "--engine" in options else ["--engine", "spark"]
    result = CliRunner().invoke(app, ["score", str(tmp_path), *engine, *options])
    assert result.exit_code == 2
    assert message in words(result.output)


def test_a_spark_connect_master_is_refused_with_what_to_use_instead():
    from scoring.spark import SparkUnavailable, spark_session

    with pytest.raises(SparkUnavailable, match=r"sc://spark\.example:15002 is a Spark Connect server.*spark://"):
        with spark_session("sc://spark.example:15002"):
            pass


@needs_java
def test_a_running_session_is_used_with_the_engines_settings_and_left_running_as_it_was(spark):
    """A session this process already runs (a notebook's): used, not stopped; the SQL settings the engine needs hold
    inside the block only (one the owner set comes back, one it never set is unset again); another master is refused
    rather than silently run on this one."""
    from scoring.spark import LOCAL_SHUFFLE_PARTITIONS, SparkUnavailable, spark_session

    owner = {"spark.sql.session.timeZone": "Europe/Paris", "spark.sql.shuffle.partitions": "7"}
    never_set = "spark.sql.debug.maxToStringFields"
    kept = {key: spark.conf.get(key, None) for key in [*owner, never_set]}
    try:
        for key, value in owner.items():
            spark.conf.set(key, value)
        spark.conf.unset(never_set)
        with spark_session("local[2]", "another command") as session:
            assert session.sparkContext.applicationId == spark.sparkContext.applicationId  # the same application
            assert session.conf.get("spark.sql.session.timeZone") == "UTC"
            assert session.conf.get("spark.sql.shuffle.partitions") == str(LOCAL_SHUFFLE_PARTITIONS)
            assert session.conf.get(never_set) == "1000"
        assert {key: spark.conf.get(key) for key in owner} == owner and spark.conf.get(never_set, None) is None
        with pytest.raises(
            SparkUnavailable, match=r"local\[1\]: this process already runs a Spark session on local\[2\]"
        ):
            with spark_session("local[1]"):
                pass
        assert spark.range(3).count() == 3  # still running
    finally:
        for key, value in kept.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


@needs_java
def test_pins_kept_elsewhere_join_the_file_overrides_on_spark(spark, mlflow_store, tmp_path):  # noqa: F811
    from scoring.spark import score_export

    export = tmp_path / "csv-export"
    generate_export(export, n_accounts=300, seed=4, file_format="csv")
    overrides = tmp_path / "overrides.csv"
    seen = {}

    def add_pins(file_pins, account_ids):
        seen["file"], seen["ids"] = file_pins, sorted(account_ids)
        first, second = sorted(account_ids)[:2]
        store_pin = pd.DataFrame({"account_id": [second], "tier": ["tier_3"], "reason": ["kept"], "owner": ["erin"]})
        return pd.concat([file_pins, store_pin], ignore_index=True)

    first = pd.read_csv(export / "accounts.csv")["account_id"].sort_values().iloc[0]
    overrides.write_text(f"account_id,tier,reason,owner\n{first},tier_1,file pin,ana\n")
    result = score_export(
        spark,
        str(export),
        str(tmp_path / "s.parquet"),
        model_uri=None,
        config=CONFIG,
        overrides=lambda ids: read_overrides(overrides, ids),
        add_pins=add_pins,
    )
    scores = pd.read_parquet(tmp_path / "s.parquet").set_index("account_id")
    second = seen["ids"][1]
    assert seen["file"]["account_id"].tolist() == [first] and len(seen["ids"]) == 300
    assert (scores.loc[first, "tier"], scores.loc[second, "tier"]) == ("tier_1", "tier_3")
    assert scores.loc[second, "override_reason"].startswith("pinned to tier_3 by erin: kept (model said ")
    assert sorted(result.overrides["account_id"]) == sorted([first, second])


@needs_java
def test_spark_groups_by_family_and_gives_the_pandas_family_columns(spark, mlflow_store, tmp_path):  # noqa: F811
    """Rules only on the families export, tier_by: family: the book falls in two feature groups, and a family split
    across them would roll up only part of its signals (its family_learned_score would differ from pandas')."""
    from features.families import resolve_families
    from scoring.spark import score_export

    config = parse_config(
        {
            "hierarchy": {"roll_up": "family", "tier_by": "family"},
            "tiers": {"tier_1": {"max_accounts": 20, "min_score": 0}, "tier_2": {"max_accounts": 50, "min_score": 0}},
        }
    )
    export = tmp_path / "families"
    generate_export(export, n_accounts=300, seed=4, families=True)
    data = load_export(export).data
    expected = resolve_model(None, config)[0].score_book(data, budget=BUDGET).scores
    score_export(spark, str(export), str(tmp_path / "f.parquet"), model_uri=None, config=config, budget=BUDGET)
    actual = pd.read_parquet(tmp_path / "f.parquet")
    assert list(actual.columns[-5:]) == [
        "family_id",
        "family_tier",
        "family_learned_score",
        "family_expected_revenue",
        "family_engagement_share",
    ]
    expected, actual = expected.set_index("account_id").sort_index(), actual.set_index("account_id").sort_index()
    for column in ("family_id", "family_tier", "tier", "learned_tier"):
        assert actual[column].tolist() == expected[column].tolist(), column
    for column in ("family_learned_score", "family_engagement_share", "budget"):
        assert_published(actual[column], expected[column], column)
    families = resolve_families(data.accounts["account_id"], data.accounts["parent_account_id"])
    assert (families.depth > 0).sum() > 100  # many accounts belong to a family of several
    assert actual["family_tier"].eq("tier_1").sum() > 20  # Tier 1's 20 slots hold families of several accounts


def write_tied_families(export) -> None:
    """Two families of a parent and a subsidiary, alike in every field but the subsidiaries' engagement: with no weight
    on engagement in the rule score they tie exactly on the family score, and only the family's engagement tells them
    apart. The more engaged family has the larger id, so an id order would put the other one first."""
    export.mkdir()
    firmographics = "Software,1000,50000000,United States,north america,salesforce;aws"
    (export / "accounts.csv").write_text(
        "account_id,parent_account_id,industry,employees,annual_revenue,country,region,tech_stack\n"
        + "".join(
            f"{family}{suffix},{parent},{firmographics}\n"
            for family in ("fam-a", "fam-b")
            for suffix, parent in (("", ""), ("-sub", family))
        )
    )
    (export / "opportunities.csv").write_text(
        "opportunity_id,account_id,created_date,close_date,outcome,amount\n"
        "o-a,fam-a,2025-01-06,2025-03-03,lost,10000\no-b,fam-b,2025-01-06,2025-03-03,lost,10000\n"
    )
    visits = {"fam-a-sub": 1, "fam-b-sub": 4}
    (export / "engagement.csv").write_text(
        "account_id,timestamp,channel,count\n"
        + "".join(f"{account},2026-11-2{day},web_visit,1\n" for account, days in visits.items() for day in range(days))
    )


@needs_java
def test_families_tied_on_score_fall_at_a_boundary_as_pandas_places_them(spark, mlflow_store, tmp_path):  # noqa: F811
    """Rules only, tier_by: family, one family slot in Tier 1: pandas breaks the tie on the family's own engagement
    score (the more engaged family first), and so must Spark."""
    from scoring.spark import score_export

    config = parse_config(
        {
            "hierarchy": {"roll_up": "family", "tier_by": "family"},
            "rule_weights": {"revenue_potential": 0.5, "business_fit": 0.5, "engagement": 0.0},
            "tiers": {"tier_1": {"max_accounts": 1, "min_score": 0}, "tier_2": {"max_accounts": 1, "min_score": 0}},
        }
    )
    export, as_of = tmp_path / "tied", pd.Timestamp("2026-12-01")
    write_tied_families(export)
    expected = resolve_model(None, config)[0].score_book(load_export(export).data, as_of).scores
    score_export(spark, str(export), str(tmp_path / "t.parquet"), model_uri=None, config=config, as_of=as_of)
    actual = pd.read_parquet(tmp_path / "t.parquet")
    expected, actual = expected.set_index("account_id").sort_index(), actual.set_index("account_id").sort_index()
    # The hand-made tie: one family score for all four accounts, the engagement scores apart.
    assert expected["family_learned_score"].nunique() == 1
    assert expected.loc["fam-b-sub", "engagement_score"] > expected.loc["fam-a-sub", "engagement_score"] > 0
    tiers = {"fam-a": "tier_2", "fam-a-sub": "tier_2", "fam-b": "tier_1", "fam-b-sub": "tier_1"}
    assert expected["family_tier"].to_dict() == tiers  # the more engaged family takes Tier 1's one slot
    for column in ("family_id", "family_tier", "tier"):
        assert actual[column].tolist() == expected[column].tolist(), column


@needs_java
def test_a_family_trained_model_scores_alike_in_pandas_spark_and_the_service(
    spark,
    family_trainings,
    mlflow_store,  # noqa: F811
    tmp_path,
    tmp_path_factory,
):
    """The shared family training (hierarchy.roll_up: family) registered, then its export scored with tier_by: family
    and a budget by the pandas engine, by Spark and by the in-process service's /tier: the same records."""
    import yaml

    from features.activity import default_as_of
    from scoring.registry import configure
    from scoring.rounding import OUTPUT_DECIMALS
    from scoring.spark import score_export
    from serving.requests import account_payloads
    from tests.serving.conftest import metrics_folder, serving
    from tests.trained import FAMILY_TRAINING
    from training.workflow import log_and_register, promote

    settings = {**FAMILY_TRAINING, "hierarchy": {"roll_up": "family", "tier_by": "family"}}
    config = parse_config(settings)
    configure()
    outcome = log_and_register(family_trainings.family, config, lambda step: None)
    if not outcome.decision.promote:  # the service scores with the champion
        promote(outcome.version)
    uri, data = f"models:/abm-tiering/{outcome.version}", family_trainings.data
    as_of = default_as_of(data)

    model, version = resolve_model(uri, config)
    expected = model.score_book(data, as_of, budget=BUDGET, model_version=version).scores
    score_export(
        spark,
        str(family_trainings.folder),
        str(tmp_path / "s.parquet"),
        model_uri=uri,
        config=config,
        as_of=as_of,
        budget=BUDGET,
    )
    on_spark = pd.read_parquet(tmp_path / "s.parquet")
    (tmp_path / "tiering.yaml").write_text(yaml.safe_dump(settings))
    body = {"accounts": account_payloads(data, list(data.accounts["account_id"])), "as_of": as_of.date().isoformat()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_folder(tmp_path_factory)))  # the service tests' own
        with serving(mlflow_store, TIERING_CONFIG=str(tmp_path / "tiering.yaml")) as client:
            answer = client.post("/tier", json={**body, "budget": BUDGET})
    assert answer.status_code == 200, answer.text[:2000]
    on_api = pd.DataFrame(answer.json()["scores"])

    expected = expected.set_index("account_id").sort_index()
    assert expected["win_probability"].notna().all() and expected["family_learned_score"].notna().all()  # learned
    assert expected["family_tier"].nunique() == 4  # every tier and untiered hold families: capacities are met
    assert (expected.groupby("family_id").size() > 1).sum() > 50  # families of several accounts
    for engine, actual in (("spark", on_spark), ("api", on_api)):
        actual = actual.set_index("account_id").sort_index()
        assert actual.index.equals(expected.index), engine
        for column in expected.columns.drop("scored_at"):
            if column in OUTPUT_DECIMALS:  # both publish the figures rounded as the pandas engine writes them
                assert_published(actual[column], expected[column], column)
            else:
                assert actual[column].tolist() == expected[column].tolist(), f"{engine}: {column}"


@needs_java
def test_a_learned_model_scores_on_spark_with_the_business_configuration_as_pandas_does(
    spark, parquet_export, model_store, tmp_path
):
    """The shared model, trained with the default rule weights and blend, scored with other ones: the executors must
    score with the business configuration of the run (as the pandas engine does), not the one the model was logged
    with."""
    from scoring.spark import score_export

    weights = {"revenue_potential": 0.2, "business_fit": 0.2, "engagement": 0.6}
    config = parse_config({**SMALL_GATE, "rule_weights": weights, "model": {**SMALL_GATE["model"], "blend": 0.4}})
    trained = parse_config(SMALL_GATE)
    assert trained.rule_weights.model_dump() != weights and trained.model.blend != 0.4  # the run differs from it

    model, version = resolve_model(model_store.uri, config)
    expected = model.score_book(load_export(parquet_export).data, budget=BUDGET, model_version=version).scores
    result = score_export(
        spark, str(parquet_export), str(tmp_path / "b.parquet"), model_uri=model_store.uri, config=config, budget=BUDGET
    )
    actual = pd.read_parquet(tmp_path / "b.parquet")

    assert result.version == model_store.version and actual["model_version"].eq(model_store.version).all()
    assert_same_scores(expected, actual)
    # The rule score by hand from its components (which the weights do not change), with the run's weights.
    components = expected.set_index("account_id").sort_index()
    by_hand = sum(weight * components[f"{name}_score"] for name, weight in weights.items())
    with_trained_weights = sum(
        weight * components[f"{name}_score"] for name, weight in trained.rule_weights.model_dump().items()
    )
    assert (by_hand - with_trained_weights).abs().gt(0.01).mean() > 0.9  # the weights move almost every account
    assert_published(actual.set_index("account_id").sort_index()["rule_score"], by_hand, "rule_score")


@needs_java
def test_event_rows_travel_to_their_group_narrow(spark, parquet_export):
    from pyspark.sql import functions as F

    from scoring.spark import GROUP, TABLE_TAG, grouped_rows, read_tables

    rows, events = grouped_rows(read_tables(spark, str(parquet_export), CONFIG), groups=3)
    # An event row carries its table, its group and its own four values (account, when, what, how many), not a
    # null for each column of the accounts and opportunities, which travel apart.
    assert events is not None and len(events.columns) == 2 + 4
    assert len(rows.columns) > 2 + 4 + 4
    found = events.groupBy(TABLE_TAG).agg(F.count("*"), F.min(GROUP), F.max(GROUP)).collect()
    expected = {name: len(pd.read_parquet(parquet_export / f"{name}.parquet")) for name in ("engagement", "intent")}
    assert {tag: count for tag, count, _, _ in found} == expected
    assert all(0 <= low and high < 3 for _, _, low, high in found)
