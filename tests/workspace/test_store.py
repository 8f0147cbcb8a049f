"""The workspace store on SQLite and PostgreSQL: schema and migrations, publishing at full precision, the book's
filters against a brute-force pandas filter, pins, flags and their audit, users, and SQL-injection text."""

from __future__ import annotations

import math
import threading
from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from tests.workspace.conftest import PASSWORD, TIERS, accounts_frame, scores_frame
from workspace import (
    SORTABLE,
    BookFilter,
    InvalidInput,
    NotAllowed,
    Role,
    SchemaMismatch,
    StoreMissing,
    StoreUnavailable,
    WorkspaceStore,
)
from workspace.migrate import alembic_config, head_revision, known_revisions, upgrade
from workspace.store import STORED_COLUMNS, now
from workspace.tables import Base

INJECTIONS = (
    "'; DROP TABLE scored_accounts; --",
    "' OR '1'='1",
    '" OR 1=1 --',
    "%",
    "_",
    "\\",
    "ACC-0000%' UNION SELECT password_hash FROM users --",
    "Robert'); DELETE FROM audit_events; --",
)


def same(left, right) -> bool:
    """Equal, missing values equal to each other, floats bit for bit."""
    left_missing = left is None or (isinstance(left, float) and math.isnan(left))
    right_missing = right is None or (isinstance(right, float) and math.isnan(right))
    if left_missing or right_missing:
        return left_missing and right_missing
    if isinstance(left, float) or isinstance(right, float):
        return float(left) == float(right)
    return left == right


# ---- schema and migrations --------------------------------------------------------------------------------------


def test_a_new_store_is_created_at_this_versions_schema_and_matches_the_models(database_url):
    with WorkspaceStore.open(database_url) as store:
        status = store.schema_status()
        assert (status.current, status.up_to_date) == (head_revision(), True)
        with store.engine.connect() as connection:
            # The migrations build exactly the tables the models declare: no column, index or type differs.
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []


def test_every_earlier_revision_is_refused_naming_the_command_and_upgrades_to_head(database_url):
    for revision in [None, *known_revisions()[:-1]]:  # from empty, then from each revision before head
        engine = create_engine(database_url)
        with engine.begin() as connection:  # back to an empty database through every downgrade
            command.downgrade(alembic_config(connection), "base")
        if revision is not None:
            upgrade(engine, revision)
            with pytest.raises(SchemaMismatch, match="tiering db upgrade"):
                WorkspaceStore.open(database_url)
        engine.dispose()
        store = WorkspaceStore.open_for_upgrade(database_url)
        assert store.upgrade() == (revision, head_revision())
        store.close()
        with WorkspaceStore.open(database_url) as opened:
            opened.add_user("after-upgrade", "viewer", PASSWORD)
            assert [user.name for user in opened.users()] == ["after-upgrade"]


def test_a_store_from_before_open_pipeline_upgrades_keeping_its_scorings_with_the_new_column_empty(database_url):
    before_open_pipeline = known_revisions()[known_revisions().index("0004") - 1]
    scores = scores_frame(8)
    with WorkspaceStore.open(database_url) as store:
        scoring_id = store.publish(
            scores, accounts_frame(scores), as_of="2026-07-01", model_version="7", configuration={}, published_by="x"
        )
        published = store.scores_frame(scoring_id)
    engine = create_engine(database_url)
    with engine.begin() as connection:  # the store as the version before wrote it
        command.downgrade(alembic_config(connection), before_open_pipeline)
    with engine.connect() as connection:
        assert "open_pipeline" not in {c["name"] for c in inspect(connection).get_columns("scored_accounts")}
    engine.dispose()
    with pytest.raises(SchemaMismatch, match="tiering db upgrade"):
        WorkspaceStore.open(database_url)
    with WorkspaceStore.open_for_upgrade(database_url) as store:
        assert store.upgrade() == (before_open_pipeline, head_revision())
    with WorkspaceStore.open(database_url) as store:
        upgraded = store.scores_frame(scoring_id)
        assert upgraded["open_pipeline"].isna().all()
        kept = [c for c in published.columns if c != "open_pipeline"]
        pd.testing.assert_frame_equal(upgraded[kept], published[kept])
        ids = scores["account_id"]
        later = store.publish(
            scores,
            None,
            as_of="2026-08-01",
            model_version="7",
            configuration={},
            published_by="x",
            open_pipeline=pd.Series([1_250.5, 0.0], index=ids[:2]),  # two accounts the export holds
        )
        stored = store.scores_frame(later).set_index("account_id")["open_pipeline"]
    assert stored[ids[:2]].tolist() == [1_250.5, 0.0]
    assert stored[ids[2:]].isna().all()  # accounts the export does not hold stay empty, not 0


def test_a_schema_this_version_does_not_know_is_refused_and_not_migrated(database_url):
    WorkspaceStore.open(database_url).close()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match="does not know.*tiering db upgrade"):
        WorkspaceStore.open(database_url)
    with pytest.raises(SchemaMismatch, match="does not know"):
        WorkspaceStore.open_for_upgrade(database_url).upgrade()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    engine.dispose()


def test_a_database_holding_other_tables_is_not_taken_over(database_url):
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE someone_elses (id INTEGER)"))
    engine.dispose()
    with pytest.raises(SchemaMismatch, match="no workspace schema version"):
        WorkspaceStore.open(database_url)


def test_open_without_create_never_makes_a_sqlite_file(tmp_path):
    target = tmp_path / "sub" / "workspace.db"
    with pytest.raises(StoreMissing, match="no workspace store"):
        WorkspaceStore.open(f"sqlite:///{target}", create=False)
    assert not target.exists() and not target.parent.exists()


def test_an_unreachable_server_is_one_clear_message_without_the_password():
    from tests.postgres import free_port

    url = f"postgresql+psycopg://tiering:s3cret-pw@127.0.0.1:{free_port()}/tiering"
    with pytest.raises(StoreUnavailable) as caught:
        WorkspaceStore.open(url)
    message = str(caught.value)
    assert "cannot reach the workspace store" in message and "TIERING_DATABASE_URL" in message
    assert "s3cret-pw" not in message


def test_the_audit_refuses_updates_and_deletes_whoever_connects(store, people):
    with store.engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM audit_events")).scalar()
    assert before == 3  # one user_add per role
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
            connection.execute(text(statement))
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_events WHERE action = 'x'")).scalar() == 0
        assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar() == before


# ---- publishing -------------------------------------------------------------------------------------------------


def test_a_published_scoring_reads_back_every_value_at_full_precision(store, published):
    scoring_id, frame = published
    info = store.latest_scoring()
    assert info is not None and info.id == scoring_id
    assert (info.model_version, info.published_by, info.account_count) == ("7", "ann", len(frame))
    assert info.as_of == pd.Timestamp("2026-07-01").to_pydatetime()
    assert info.configuration == {"tiers": {"a": 1}}
    stored = store.scores_frame(scoring_id).set_index("account_id")
    assert sorted(stored.index) == sorted(frame["account_id"])
    for row in frame.to_dict("records"):
        back = stored.loc[row["account_id"]]
        for column in STORED_COLUMNS:
            if column == "account_id":
                continue
            expected = row.get(column)
            if column == "intent_surge":
                assert bool(back[column]) is bool(expected)
            else:
                assert same(back[column], expected), (row["account_id"], column, back[column], expected)


def test_publishing_a_bad_frame_writes_nothing(store):
    scores = scores_frame(5)
    cases = {
        "repeats": pd.concat([scores, scores.head(1)]),
        "not a tier": scores.assign(tier=["tier_1", "tier_9", "tier_2", "tier_3", "untiered"]),
        "lack column": scores.drop(columns=["tier"]),
        "not a number": scores.assign(win_probability=["0.5", "high", "0.1", "0.2", "0.3"]),
        "no accounts": scores.head(0),
        "longer than the store keeps": scores.assign(reason_1="x", model_version=["7"] * 4 + ["v" * 201]),
        "more than the store indexes": scores.assign(
            account_id=[f"{'𝒳' * 190}{i}" for i in range(5)], owner="𝒳" * 190, industry="𝒳" * 190
        ),
    }
    for message, frame in cases.items():
        with pytest.raises(InvalidInput, match=message):
            store.publish(frame, None, as_of="2026-07-01", model_version="1", configuration={}, published_by="x")
    assert store.scorings() == []
    assert store.audit()[1] == 0


def test_the_rows_a_publish_would_store_are_read_without_writing_anything(store):
    scores = scores_frame(4)
    accounts = accounts_frame(scores)
    rows = store.scored_rows(scores, accounts)
    assert rows["account_id"] == scores["account_id"].tolist()
    assert rows["account_name"] == accounts["account_name"].tolist()  # filled from the accounts frame
    assert rows["tier"] == scores["tier"].tolist()
    with pytest.raises(InvalidInput, match="not a tier"):
        store.scored_rows(scores.assign(tier=["tier_1", "tier_9", "tier_2", "tier_3"]), None)
    assert store.scorings() == [] and store.audit()[1] == 0


def test_the_longest_values_the_store_keeps_publish_on_every_database(store):
    scores = scores_frame(3).assign(account_id=[f"{'é' * 190}{i}" for i in range(3)], owner="ø" * 200)
    accounts = pd.DataFrame({"account_id": scores["account_id"], "account_name": "N" * 400, "industry": "i" * 200})
    scoring_id = store.publish(
        scores, accounts, as_of="2026-07-01", model_version="v" * 200, configuration={}, published_by="x"
    )
    stored = store.scores_frame(scoring_id)
    assert stored["account_id"].tolist() == sorted(scores["account_id"])
    assert set(stored["account_name"]) == {"N" * 400} and set(stored["owner"]) == {"ø" * 200}
    assert store.book_page(BookFilter(q="éé")).total == 3  # searched within the first 300 characters


def test_the_account_fields_come_from_the_accounts_frame_and_history_spans_scorings(store):
    first = scores_frame(10, seed=1)
    second = scores_frame(10, seed=2)
    accounts = accounts_frame(first)
    ids = [
        store.publish(s, accounts, as_of=d, model_version="7", configuration={}, published_by="ann")
        for s, d in ((first, "2026-04-01"), (second, "2026-07-01"))
    ]
    history = store.tier_history("ACC-00003")
    assert history["scoring_id"].tolist() == ids
    assert history["tier"].tolist() == [first.loc[3, "tier"], second.loc[3, "tier"]]
    assert history["scoring_as_of"].tolist() == [pd.Timestamp("2026-04-01"), pd.Timestamp("2026-07-01")]
    assert history["account_name"].tolist() == [accounts.loc[3, "account_name"]] * 2
    assert store.tier_history("nobody").empty
    assert [s.id for s in store.scorings()] == ids[::-1]


# ---- the book ---------------------------------------------------------------------------------------------------


def brute_force(frame: pd.DataFrame, where: BookFilter, active_pins: set[str], flagged: set[str]) -> pd.DataFrame:
    """The book's filter, written again in pandas, row by row."""

    def keep(row) -> bool:
        def among(value, wanted):
            return wanted is None or value in ([wanted] if isinstance(wanted, str) else wanted)

        if not (among(row.tier, where.tier) and among(row.learned_tier, where.learned_tier)):
            return False
        if not among(row.rule_tier, where.rule_tier):
            return False
        if where.q and where.q.strip().casefold() not in f"{row.account_id} {row.account_name}".casefold():
            return False
        if where.industry and row.industry != where.industry:
            return False
        if where.owner and row.owner != where.owner:
            return False
        if where.disagree is not None and (row.learned_tier != row.rule_tier) != where.disagree:
            return False
        if where.surge is not None and bool(row.intent_surge) != where.surge:
            return False
        if where.pinned is not None and (row.account_id in active_pins) != where.pinned:
            return False
        return where.flagged is None or (row.account_id in flagged) == where.flagged

    return frame[[keep(row) for row in frame.itertuples()]]


def ascending(frame: pd.DataFrame, sort: str) -> list[str]:
    """Ids by `sort` ascending, ties by id, missing values last."""
    present = frame[frame[sort].notna()].sort_values([sort, "account_id"], kind="stable")
    missing = frame[frame[sort].isna()].sort_values("account_id")
    return [*present["account_id"], *missing["account_id"]]


FILTERS = [
    BookFilter(),
    BookFilter(tier="tier_1"),
    BookFilter(tier=["tier_2", "tier_3"]),
    BookFilter(q="acc-0001"),
    BookFilter(q="gmbh_%"),
    BookFilter(q="straße"),
    BookFilter(q="STRASSE"),
    BookFilter(industry="Finance & Banking"),
    BookFilter(owner="chloé"),
    BookFilter(disagree=True),
    BookFilter(disagree=False, surge=True),
    BookFilter(surge=False, tier="untiered"),
    BookFilter(pinned=True),
    BookFilter(pinned=False, flagged=False),
    BookFilter(flagged=True),
    BookFilter(learned_tier="tier_1", rule_tier="tier_3"),
]


def test_every_filter_and_sort_matches_a_brute_force_filter_of_the_published_frame(store, published, people):
    scoring_id, frame = published
    store.pin("ACC-00004", "tier_1", "renewal", None, people["editor"])
    store.pin("ACC-00009", "tier_3", "churning", (now().date() + timedelta(days=3)).isoformat(), people["admin"])
    store.pin("ACC-00011", "tier_2", "x", None, people["editor"])
    store.unpin("ACC-00011", people["editor"])
    store.flag("ACC-00005", "too low", people["viewer"])
    store.flag("ACC-00009", "too high", people["viewer"])
    pins, flags = {"ACC-00004", "ACC-00009"}, {"ACC-00005", "ACC-00009"}
    for where in FILTERS:
        expected = brute_force(frame, where, pins, flags)
        for sort, direction in (("learned_score", "desc"), ("account_name", "asc"), ("budget", "asc")):
            want = ascending(expected, sort) if direction == "asc" else None
            pages = []
            for page in (1, 2, 3):
                result = store.book_page(where, sort=sort, direction=direction, page=page, page_size=7)
                pages.extend(row["account_id"] for row in result.rows)
            everything = store.book_page(where, sort=sort, direction=direction, page=1, page_size=1000)
            got = [row["account_id"] for row in everything.rows]
            assert sorted(got) == sorted(expected["account_id"]), where
            assert pages == got[:21]
            if want is not None:
                assert got == want, (where, sort)
            else:  # descending: values never increase, missing last, ties by id
                values = [(frame.set_index("account_id").loc[i, sort], i) for i in got]
                present = [(v, i) for v, i in values if not pd.isna(v)]
                assert present == sorted(present, key=lambda pair: (-pair[0], pair[1]))
                assert all(pd.isna(v) for v, _ in values[len(present) :])
            assert everything.total == len(expected)
            counts = expected["tier"].value_counts()
            assert everything.tier_counts == {tier: int(counts.get(tier, 0)) for tier in TIERS}
            for tier in TIERS:
                assert everything.budget_by_tier[tier] == pytest.approx(
                    expected.loc[expected["tier"] == tier, "budget"].sum(), rel=1e-12
                )
    rows = {row["account_id"]: row for row in store.book_page(page_size=1000).rows}
    assert (rows["ACC-00004"]["pinned"], rows["ACC-00011"]["pinned"], rows["ACC-00009"]["flags"]) == ("tier_1", None, 1)


def test_the_csv_download_is_the_filtered_book(store, published):
    _, frame = published
    where = BookFilter(tier="tier_2", surge=True)
    download = store.scores_frame(where=where)
    assert download["account_id"].tolist() == sorted(brute_force(frame, where, set(), set())["account_id"])
    assert list(download.columns) == list(STORED_COLUMNS)


def test_the_filter_menus_list_each_value_once(store, published):
    _, frame = published
    for column in ("industry", "owner", "country"):
        assert store.filter_values(column) == sorted(frame[column].dropna().unique())
    with pytest.raises(InvalidInput, match="no value list"):
        store.filter_values("password_hash")


def test_paging_and_sorting_refuse_what_they_do_not_know(store, published):
    for bad in (
        {"sort": "password_hash"},
        {"sort": "tier; DROP TABLE users"},
        {"direction": "sideways"},
        {"page": 0},
        {"page_size": 0},
        {"page_size": 5000},
    ):
        with pytest.raises(InvalidInput):
            store.book_page(**bad)
    assert store.book_page(page=99, page_size=50).rows == []
    assert set(SORTABLE) <= set(STORED_COLUMNS)


def test_sql_injection_text_in_every_filter_is_only_text(store, published, people):
    scoring_id, frame = published
    for attempt in INJECTIONS:
        for where in (BookFilter(q=attempt), BookFilter(industry=attempt), BookFilter(owner=attempt)):
            expected = brute_force(frame, where, set(), set())
            assert store.book_page(where, page_size=1000).total == len(expected), (where, attempt)
        for field in ("tier", "learned_tier", "rule_tier"):
            with pytest.raises(InvalidInput, match="unknown tier"):
                store.book_page(BookFilter(**{field: attempt}))
        assert store.account(attempt) is None
        assert store.tier_history(attempt).empty
        assert store.audit(user=attempt, account_id=attempt) == ([], 0)
        with pytest.raises(InvalidInput, match="not in the latest"):
            store.pin(attempt, "tier_1", "because", None, people["editor"])
        assert store.authenticate(attempt, attempt) is None
    # Text that looks like SQL is stored and read back as written.
    injected = INJECTIONS[0]
    store.pin("ACC-00001", "tier_1", injected, None, people["editor"])
    store.flag("ACC-00001", injected, people["viewer"])
    store.add_user(injected, "viewer", PASSWORD)
    assert store.active_pins()["reason"].tolist() == [injected]
    assert store.flags("ACC-00001")[0].comment == injected
    assert store.authenticate(injected, PASSWORD) is not None
    assert len(store.scores_frame(scoring_id)) == len(frame)  # the table is still there, whole
    assert store.book_page(BookFilter(q="O'Brien; DROP")).total == 1


def test_the_agreement_matrix_and_map_points_count_what_was_published(store, published):
    _, frame = published
    matrix = store.agreement_matrix()
    expected = pd.crosstab(frame["learned_tier"], frame["rule_tier"]).reindex(index=TIERS, columns=TIERS, fill_value=0)
    assert (matrix.to_numpy() == expected.to_numpy()).all() and matrix.to_numpy().sum() == len(frame)
    points = store.map_points(tier=["tier_1", "tier_2"])
    chosen = frame[frame["tier"].isin(["tier_1", "tier_2"])].sort_values("account_id")
    assert points["account_id"] == chosen["account_id"].tolist()
    assert points["fit"] == chosen["business_fit_score"].tolist()
    assert points["engagement"] == chosen["engagement_score"].tolist()
    assert points["surge"] == chosen["intent_surge"].tolist()
    assert points["account_name"] == chosen["account_name"].tolist()


# ---- pins, flags and the audit ----------------------------------------------------------------------------------


def test_pins_supersede_expire_and_unpin_each_step_audited(store, published, people):
    editor, admin = people["editor"], people["admin"]
    today = now().date()
    revisions = [store.pins_revision()]
    first = store.pin("ACC-00002", "tier_1", "strategic", None, editor)
    revisions.append(store.pins_revision())
    store.flag("ACC-00002", "not a pin", people["viewer"])
    assert store.pins_revision() == revisions[-1]  # a flag leaves the pins' cache fresh
    second = store.pin("ACC-00002", "tier_3", "budget cut", today + timedelta(days=10), admin)
    detail = store.account("ACC-00002")
    assert detail is not None and detail.pin == second and [p.id for p in detail.pins] == [second.id, first.id]
    assert detail.pins[1].removed_by == admin
    pins_on = {
        day: store.active_pins(day)["account_id"].tolist()
        for day in (today, today + timedelta(days=10), today + timedelta(days=11))
    }
    assert pins_on == {today: ["ACC-00002"], today + timedelta(days=10): ["ACC-00002"], today + timedelta(days=11): []}
    active = store.active_pins(today)
    assert active.loc[0, ["tier", "reason", "owner"]].tolist() == ["tier_3", "budget cut", admin]
    revisions.append(store.pins_revision())
    removed = store.unpin("ACC-00002", editor)
    assert removed == second and store.active_pins(today).empty
    revisions.append(store.pins_revision())
    assert revisions == sorted(set(revisions)) and len(revisions) == 4
    assert store.unpin("ACC-00002", editor) is None  # nothing held: nothing audited
    events, total = store.audit(account_id="ACC-00002")
    assert total == 4 and [e.action for e in events] == ["unpin", "pin", "flag", "pin"]
    unpin, repin, _, pin = events
    assert pin.before is None and pin.after == {
        "pin_id": first.id,
        "tier": "tier_1",
        "reason": "strategic",
        "owner": editor,
        "expires": None,
    }
    assert repin.before == pin.after and repin.after["tier"] == "tier_3"
    assert repin.after["expires"] == (today + timedelta(days=10)).isoformat()
    assert unpin.before == repin.after and unpin.after is None and unpin.user == editor
    assert [e.user for e in store.audit(user=admin)[0]] == [admin]


def test_pins_and_flags_refuse_bad_input_and_users_without_the_role(store, published, people):
    today = now().date()
    bad = [
        (("ACC-00001", "tier_7", "why", None), "not a tier"),
        (("ACC-00001", "tier_1", "   ", None), "reason"),
        (("ACC-00001", "tier_1", "why", today - timedelta(days=1)), "in the past"),
        (("ACC-00001", "tier_1", "why", "31/12/2030"), "YYYY-MM-DD"),
        (("NOT-AN-ACCOUNT", "tier_1", "why", None), "not in the latest"),
    ]
    for arguments, message in bad:
        with pytest.raises(InvalidInput, match=message):
            store.pin(*arguments, people["editor"])
    with pytest.raises(NotAllowed, match="viewer"):
        store.pin("ACC-00001", "tier_1", "why", None, people["viewer"])
    with pytest.raises(NotAllowed):
        store.unpin("ACC-00001", people["viewer"])
    with pytest.raises(NotAllowed, match="unknown or disabled"):
        store.flag("ACC-00001", "hm", "nobody")
    with pytest.raises(InvalidInput, match="comment"):
        store.flag("ACC-00001", "  ", people["viewer"])
    store.disable_user(people["editor"])
    with pytest.raises(NotAllowed, match="disabled"):
        store.pin("ACC-00001", "tier_1", "why", None, people["editor"])
    assert store.active_pins().empty and store.flags() == []
    assert [e.action for e in store.audit()[0]][:1] == ["user_disable"]


def test_two_editors_pinning_one_account_at_once_both_land_in_the_audit(store, published, people):
    store.add_user("second-editor", "editor", PASSWORD)
    editors = [people["editor"], "second-editor"]
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def pin(user: str, tier: str) -> None:
        barrier.wait()
        try:
            store.pin("ACC-00006", tier, f"{user} says so", None, user)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=pin, args=(user, tier)) for user, tier in zip(editors, ("tier_1", "tier_2"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    events, total = store.audit(account_id="ACC-00006")
    assert total == 2 and sorted(e.user for e in events) == sorted(editors)
    holding = store.account("ACC-00006").pin
    latest = max(events, key=lambda e: e.after["pin_id"])
    assert holding is not None and holding.id == latest.after["pin_id"] and holding.owner == latest.user
    assert store.active_pins()["account_id"].tolist() == ["ACC-00006"]


def test_flags_are_listed_per_account_and_counted_in_the_book(store, published, people):
    store.flag("ACC-00003", "should be tier 1", people["viewer"])
    store.flag("ACC-00003", "agree", people["editor"])
    flags = store.flags("ACC-00003")
    assert [f.comment for f in flags] == ["agree", "should be tier 1"]
    assert flags[0].scoring_id == published[0]
    assert store.book_page(BookFilter(flagged=True)).total == 1
    assert [e.after["comment"] for e in store.audit(account_id="ACC-00003")[0]] == ["agree", "should be tier 1"]


# ---- users ------------------------------------------------------------------------------------------------------


def test_users_sign_in_with_their_password_only_while_enabled(store):
    store.add_user("dana", "editor", PASSWORD)
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT password_hash FROM users WHERE name = 'dana'")).scalar()
    assert PASSWORD not in stored and stored.startswith("$argon2id$")
    assert store.authenticate("dana", "wrong password") is None
    assert store.authenticate("dana", "wrong again") is None
    dana = store.user("dana")
    assert dana is not None and dana.failed_logins == 2 and dana.last_failed_at is not None
    signed_in = store.authenticate("dana", PASSWORD)
    assert signed_in is not None and signed_in.role == "editor" and signed_in.failed_logins == 0
    assert signed_in.last_login_at is not None
    assert store.authenticate("nobody", PASSWORD) is None
    with pytest.raises(InvalidInput, match="taken"):
        store.add_user("dana", "viewer", PASSWORD)
    with pytest.raises(InvalidInput, match="role"):
        store.add_user("erin", "superuser", PASSWORD)
    with pytest.raises(InvalidInput, match="8 characters"):
        store.add_user("erin", "viewer", "short")
    store.set_password("dana", "a new passphrase", by="dana")
    assert store.authenticate("dana", PASSWORD) is None and store.authenticate("dana", "a new passphrase")
    with pytest.raises(InvalidInput, match="8 characters"):
        store.set_password("dana", "short", by="dana")
    with pytest.raises(InvalidInput, match="no user named"):
        store.set_password("erin", "long enough", by="admin")
    assert store.audit(user="dana")[0][0].after == {"user": "dana"}  # no password in the audit
    store.set_password("dana", PASSWORD, by="dana")
    store.disable_user("dana")
    assert store.authenticate("dana", PASSWORD) is None
    assert [(u.name, u.role, u.disabled) for u in store.users()] == [("dana", "editor", True)]
    with pytest.raises(InvalidInput, match="no user named"):
        store.disable_user("erin")


def test_dates_compare_as_dates_on_both_databases(store, published, people):
    expiry = date(2099, 1, 31)
    store.pin("ACC-00007", "tier_2", "long", expiry, people["editor"])
    assert store.active_pins(date(2099, 1, 31))["expires"].tolist() == [expiry]
    assert store.active_pins(date(2099, 2, 1)).empty


def test_upgrading_a_store_made_at_0001_keeps_its_users_and_scorings_and_adds_local_only(database_url):
    engine = create_engine(database_url)
    upgrade(engine, "0001")
    scores = scores_frame(count=12)
    with engine.begin() as connection:  # rows as a 0001 store holds them, written without today's models
        connection.execute(
            text(
                "INSERT INTO users (name, role, password_hash, disabled, created_at, failed_logins) "
                "VALUES ('old-editor', 'editor', :hash, false, :at, 2)"
            ),
            {"hash": PasswordHasher().hash(PASSWORD), "at": datetime(2026, 1, 2)},
        )
        connection.execute(
            text(
                "INSERT INTO scorings (as_of, model_version, configuration, published_by, published_at, "
                "account_count, source) VALUES (:at, '6', '{}', 'ann', :at, 12, 'old.csv')"
            ),
            {"at": datetime(2026, 1, 2)},
        )
        for account_id, tier in zip(scores["account_id"], scores["tier"], strict=True):
            connection.execute(
                text(
                    "INSERT INTO scored_accounts (scoring_id, account_id, search_text, tier, intent_surge) "
                    "VALUES (1, :id, :search, :tier, false)"
                ),
                {"id": account_id, "search": account_id.lower(), "tier": tier},
            )
    engine.dispose()
    with pytest.raises(SchemaMismatch, match=r"older schema \(0001.*tiering db upgrade"):
        WorkspaceStore.open(database_url)
    store = WorkspaceStore.open_for_upgrade(database_url)
    assert store.upgrade() == ("0001", head_revision())
    store.close()
    with WorkspaceStore.open(database_url) as upgraded:
        old = upgraded.user("old-editor")
        assert old is not None and (old.role, old.failed_logins, old.local_only) == (Role.editor, 2, False)
        assert upgraded.authenticate("old-editor", PASSWORD, from_loopback=False) is not None
        frame = upgraded.scores_frame().set_index("account_id")
        assert frame["tier"].to_dict() == dict(zip(scores["account_id"], scores["tier"], strict=True))


def test_a_local_only_user_signs_in_only_when_the_client_is_on_this_machine(store):
    store.add_user("local", "editor", PASSWORD, local_only=True)
    assert store.user("local").local_only is True
    assert store.authenticate("local", PASSWORD, from_loopback=False) is None
    assert store.authenticate("local", PASSWORD) is None  # not said to be local: refused
    assert store.user("local").failed_logins == 2  # counted as wrong passwords are
    signed_in = store.authenticate("local", PASSWORD, from_loopback=True)
    assert signed_in is not None and signed_in.failed_logins == 0
    store.add_user("anywhere", "viewer", PASSWORD)
    assert store.authenticate("anywhere", PASSWORD, from_loopback=False) is not None
    added = [event.after for event in store.audit()[0] if event.action == "user_add"]
    assert {"user": "local", "role": "editor", "local_only": True} in added


def test_a_store_url_is_shown_without_its_credentials():
    from workspace.location import shown

    assert shown("postgresql+psycopg://ana:s3cret@db.example:5432/tiering") == (
        "postgresql+psycopg://***@db.example:5432/tiering"
    )
    assert shown("postgresql+psycopg://ana@db/tiering?password=s3cret") == "postgresql+psycopg://***@db/tiering?***"
    assert shown("sqlite:///models/workspace.db") == "sqlite:///models/workspace.db"


@pytest.mark.timeout(60)
def test_a_server_that_accepts_and_never_answers_is_unavailable_not_a_hang():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # the kernel completes the handshake; nothing ever answers PostgreSQL's greeting
    try:
        url = f"postgresql+psycopg://tiering@127.0.0.1:{listener.getsockname()[1]}/tiering"
        with pytest.raises(StoreUnavailable):
            WorkspaceStore.open(url)
    finally:
        listener.close()
