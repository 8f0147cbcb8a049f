"""Events spilled to disk by group of accounts give the very rows, digests and scores of the tables held whole.

The oracle is always the brute-force computation: one `FeatureBuilder` over the whole book, in memory."""

import copy
import tempfile

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from configuration.tiering import parse_config
from features import groups
from features.activity import default_as_of
from features.pointintime import FeatureBuilder, snapshot, training_rows
from features.schema import CrmData
from ingest.io import load_export
from ingest.spill import events_by_group, spill_events
from scoring.pyfunc import TieringModel
from tests.factories import random_crm
from training.rows import pandas_engine, rows_digest, training_features
from training.window import WindowDates

CONFIG = parse_config({"model": {"window": {"months": 12}}})
runner = CliRunner()


def whole_copy(data: CrmData) -> CrmData:
    return CrmData(**{name: data.table(name).copy() for name in groups.TABLES}, present=data.present)


@pytest.fixture()
def book() -> CrmData:
    data = random_crm(n_accounts=150, seed=5, days=700)
    ids = data.accounts["account_id"].to_numpy()
    # Families of three consecutive accounts, so the spill keeps families together.
    data.accounts["parent_account_id"] = [None if i % 3 == 0 else ids[i - i % 3] for i in range(len(ids))]
    return data


def test_the_spill_moves_every_event_row_once_keeping_each_account_and_family_in_one_group(book, tmp_path):
    whole = whole_copy(book)
    spill_events(book, tmp_path, groups=4)

    assert book.grouped is not None and len(book.engagement) == 0 and len(book.intent) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{table}-{group}.parquet" for table in ("engagement", "intent") for group in range(4)
    )
    assert book.event_rows("engagement") == len(whole.engagement) and book.event_rows("intent") == len(whole.intent)
    accounts = book.accounts
    family = dict(zip(accounts["account_id"], accounts["parent_account_id"].fillna(accounts["account_id"])))
    for table in ("engagement", "intent"):
        parts = [book.grouped.read(group)[table].assign(group=group) for group in range(4)]
        assert all(len(part) for part in parts)  # four real groups
        spilled = pd.concat(parts, ignore_index=True)
        # Every account's rows, in the table's order, and every family, in exactly one group.
        assert spilled.groupby("account_id")["group"].nunique().max() == 1
        assert spilled.groupby(spilled["account_id"].map(family))["group"].nunique().max() == 1
        by_account = spilled.drop(columns="group").sort_values("account_id", kind="stable").reset_index(drop=True)
        expected = whole.table(table).sort_values("account_id", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(by_account, expected)
    assert default_as_of(book) == default_as_of(whole)


def test_training_rows_from_spilled_events_are_the_whole_book_rows_bit_for_bit(book, tmp_path):
    whole = whole_copy(book)
    window = WindowDates.for_data(whole, CONFIG, None)
    spill_events(book, tmp_path, groups=3)

    built = training_features(book, CONFIG, window, pandas_engine(book, CONFIG).build)
    expected = training_rows(whole, FeatureBuilder(whole, CONFIG), window.start, window.as_of)
    assert len(expected) > 100
    pd.testing.assert_frame_equal(built.rows, expected)
    assert rows_digest(built.rows) == rows_digest(expected)
    pd.testing.assert_frame_equal(built.book, snapshot(whole, FeatureBuilder(whole, CONFIG), window.as_of))


def test_a_book_scored_from_spilled_events_has_the_scores_of_the_whole_book(family_trainings, tmp_path):
    # Trained with roll_up: family, so a family split across groups would change its family features.
    data = copy.copy(family_trainings.data)
    scorer = family_trainings.family.scorer
    whole = whole_copy(data)
    as_of = default_as_of(whole)
    book = snapshot(whole, FeatureBuilder(whole, scorer.config), as_of)
    expected = scorer.score(book, by_capacity=True, as_of=as_of)
    spill_events(data, tmp_path, groups=4)

    scores = TieringModel.around(scorer).score_book(data, as_of).scores
    assert len(scores) == len(whole.accounts) and scores["family_id"].notna().all()
    pd.testing.assert_frame_equal(scores.drop(columns="scored_at"), expected.drop(columns="scored_at"))


def test_commands_spill_their_events_and_remove_them_whatever_happens(tmp_path, monkeypatch):
    from sources.synthetic import generate_export

    export = tmp_path / "export"
    generate_export(export, n_accounts=300, seed=4)
    spills = tmp_path / "tmp"
    spills.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spills))
    monkeypatch.setattr(groups, "ACCOUNTS_PER_GROUP", 100)  # three groups
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # no champion: rules only
    seen: list[int] = []
    reading = groups.build_group

    def build_group(data, *args):
        seen.append(len(data.engagement))
        assert len(list(spills.glob("tiering-events-*/*.parquet"))) == 6  # spilled while the rows are built
        return reading(data, *args)

    monkeypatch.setattr(groups, "build_group", build_group)
    import ingest.io as io

    read_whole: list[str] = []
    read_table = io._read_table
    monkeypatch.setattr(
        io, "_read_table", lambda folder, name, *rest: read_whole.append(name) or read_table(folder, name, *rest)
    )
    out = tmp_path / "scores.csv"
    scored = runner.invoke(app, ["score", str(export), "--out", str(out)])
    assert scored.exit_code == 0, scored.output
    assert len(seen) == 3 and 0 < max(seen) < sum(seen)  # one group's events at a time
    assert read_whole == ["accounts", "opportunities"]  # the events were read in batches, never whole
    assert not list(spills.iterdir())  # the spill is removed
    whole = CrmData(**{name: getattr(load_export(export).data, name) for name in groups.TABLES})
    expected = TieringModel.rules_only(parse_config({})).scorer.score(
        snapshot(whole, FeatureBuilder(whole, parse_config({})), default_as_of(whole)), by_capacity=True
    )
    written = pd.read_csv(out)
    assert written["account_id"].tolist() == expected["account_id"].tolist()
    assert written["tier"].tolist() == expected["tier"].tolist()

    refused = runner.invoke(app, ["train", str(export), "--as-of", "2020-01-01"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert not list(spills.iterdir())  # removed after a refusal as well


def test_events_by_group_leaves_a_one_group_book_as_it_is():
    data = random_crm(n_accounts=30, seed=1)
    engagement = data.engagement
    with events_by_group(data) as held:
        assert held.grouped is None and held.engagement is engagement
    assert np.array_equal(groups.account_groups(pd.Series(["a", "b"]), 1), [0, 0])


def test_a_rows_group_found_through_its_account_is_the_hash_of_its_own_key(book):
    for by_family in (False, True):
        key = groups.grouping_keys(book.accounts, by_family)
        ids = pd.concat([book.engagement["account_id"], pd.Series(["not-an-account", None], dtype="str")])
        expected = groups.account_groups(key(ids), 5)
        assert np.array_equal(groups.row_groups(ids, book.accounts, key, 5), expected)
        assert len(np.unique(expected)) == 5


def test_training_rows_from_an_import_in_batches_are_the_whole_book_rows_bit_for_bit(tmp_path, monkeypatch):
    import ingest.io as io
    from ingest.validation import EventChecks
    from sources.synthetic import generate_export

    generate_export(tmp_path / "export", n_accounts=300, seed=11, file_format="parquet", families=True)
    monkeypatch.setattr(groups, "ACCOUNTS_PER_GROUP", 100)  # three groups
    monkeypatch.setattr(io, "BATCH_ROWS", 5_000)
    batches: list[int] = []
    check = EventChecks.check

    def checking(self, table):
        batches.append(len(table.frame))
        return check(self, table)

    monkeypatch.setattr(EventChecks, "check", checking)
    whole = load_export(tmp_path / "export").data
    batches.clear()
    (tmp_path / "spill").mkdir()
    book = load_export(tmp_path / "export", spill=tmp_path / "spill").data
    assert book.grouped is not None and len(batches) > 10 and max(batches) <= 5_000
    config = parse_config({"model": {"window": {"months": 12}}, "hierarchy": {"roll_up": "family"}})
    window = WindowDates.for_data(whole, config, None)
    assert WindowDates.for_data(book, config, None) == window

    built = training_features(book, config, window, pandas_engine(book, config).build)
    expected = training_rows(whole, FeatureBuilder(whole, config), window.start, window.as_of)
    assert len(expected) > 100 and expected["family_id"].nunique() < expected["account_id"].nunique()
    pd.testing.assert_frame_equal(built.rows, expected)
    assert rows_digest(built.rows) == rows_digest(expected)
    book_rows = snapshot(whole, FeatureBuilder(whole, config), window.as_of)
    # The family columns of a book built by group come in another order than one builder's (as with events
    # spilled from whole tables): the columns and every value are the same.
    assert sorted(built.book.columns) == sorted(book_rows.columns)
    pd.testing.assert_frame_equal(built.book, book_rows[list(built.book.columns)])
