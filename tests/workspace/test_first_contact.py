"""First contact: the demo publishes its book to the default store and makes a login that works on this machine
only; the pages that `make serve` mounts (the default store, from the same working folder) show that book."""

from __future__ import annotations

import csv
import io
import re
import warnings

import pandas as pd
import pytest

from cli.workspace import DEMO_USER, first_contact
from configuration.tiering import TieringConfig
from features.activity import default_as_of
from scoring.pyfunc import TieringModel
from serving.workspace.auth import LoginThrottle
from sources.synthetic import generate_export
from tests.serving.workspace.conftest import SECRET, csrf_of
from workspace import Role, WorkspaceStore
from workspace.location import DEFAULT_FILE

LOOPBACK = ("127.0.0.1", 50000)
ELSEWHERE = ("198.51.100.20", 50000)


@pytest.fixture
def demo_book(tmp_path, monkeypatch):
    """A small synthetic export scored by the rules, in a working folder of its own with no store URL set, as
    `make demo` runs from the repository root."""
    from cli.common import load_data

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERING_DATABASE_URL", raising=False)
    generate_export(tmp_path / "data", n_accounts=300, seed=5)
    frame = load_data(tmp_path / "data", None)
    as_of = default_as_of(frame)
    scores = TieringModel.rules_only(TieringConfig()).score_book(frame, as_of).scores
    return scores, frame.accounts, as_of


def publish_demo(scores, accounts, as_of, capsys) -> str | None:
    with WorkspaceStore.open() as store:
        password = first_contact(store, scores, accounts, as_of, "rules-only", TieringConfig(), "tiering demo")
    printed = " ".join(capsys.readouterr().out.split())
    if password is not None:
        shown = re.search(r"sign in as demo / (\S+) \(this login works from this machine only\)", printed)
        assert shown and shown.group(1) == password, printed
        assert "make serve" in printed and "http://127.0.0.1:3000/app/" in printed
    return password


def pages_client(client: tuple[str, int]):
    """The pages as `tiering serve` mounts them, on the store they find by themselves (no URL given)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from serving.workspace.app import Workspace, create_app

    async def no_wait(_seconds: float) -> None:
        return None

    workspace = Workspace(secret=SECRET, throttle=LoginThrottle(sleep=no_wait))
    app = Starlette(routes=[Mount("/app", create_app(workspace))])
    return TestClient(app, base_url="http://127.0.0.1", client=client)


def sign_in(client, password: str):
    token = csrf_of(client.get("/app/login").text)
    return client.post(
        "/app/login",
        data={"username": DEMO_USER, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def test_the_demo_book_is_what_the_pages_show_to_the_loopback_demo_login(demo_book, tmp_path, capsys):
    scores, accounts, as_of = demo_book
    password = publish_demo(scores, accounts, as_of, capsys)
    assert password is not None
    assert (tmp_path / DEFAULT_FILE).is_file()  # models/workspace.db, relative to where make runs

    with pages_client(LOOPBACK) as here:
        assert sign_in(here, password).status_code == 303
        rows = list(csv.DictReader(io.StringIO(here.get("/app/book.csv").text)))
    # The oracle: the generator's accounts.csv and the scores as scored, read independently of the store.
    exported = pd.read_csv(tmp_path / "data" / "accounts.csv", dtype=str, keep_default_na=False).set_index("account_id")
    shown = pd.DataFrame(rows).set_index("account_id")
    assert sorted(shown.index) == sorted(scores["account_id"].astype(str))
    expected_tiers = scores.set_index(scores["account_id"].astype(str))["tier"]
    assert shown["tier"].to_dict() == expected_tiers.to_dict()
    assert shown["account_name"].to_dict() == exported.loc[shown.index, "account_name"].to_dict()
    # The generator pads some industries with blanks, as CRM exports do; loading trims them.
    assert shown["industry"].to_dict() == exported.loc[shown.index, "industry"].str.strip().to_dict()

    with pages_client(ELSEWHERE) as away:
        refused = sign_in(away, password)
        assert refused.status_code == 401 and "Wrong user name or password." in refused.text

    with WorkspaceStore.open() as store:
        demo = store.user(DEMO_USER)
        assert demo is not None and (demo.role, demo.local_only, demo.failed_logins) == (Role.editor, True, 1)
    from typer.testing import CliRunner

    from cli.main import app

    listed = " ".join(CliRunner().invoke(app, ["users", "list"], env={"COLUMNS": "200"}).output.split())
    assert "this machine only" in listed


def test_a_rerun_publishes_again_and_replaces_the_demo_password(demo_book, capsys):
    scores, accounts, as_of = demo_book
    first = publish_demo(scores, accounts, as_of, capsys)
    second = publish_demo(scores, accounts, as_of, capsys)
    assert first and second and first != second
    with pages_client(LOOPBACK) as here:
        assert sign_in(here, first).status_code == 401
        assert sign_in(here, second).status_code == 303
    with WorkspaceStore.open() as store:
        assert [user.name for user in store.users()] == [DEMO_USER]
        assert len(store.scorings()) == 2


def test_a_demo_user_made_by_hand_is_left_alone(demo_book, capsys):
    scores, accounts, as_of = demo_book
    with WorkspaceStore.open() as store:
        store.add_user(DEMO_USER, "viewer", "my-own-password")
    assert publish_demo(scores, accounts, as_of, capsys) is None
    with WorkspaceStore.open() as store:
        mine = store.authenticate(DEMO_USER, "my-own-password")
        assert mine is not None and (mine.role, mine.local_only) == (Role.viewer, False)
        assert len(store.scorings()) == 1
