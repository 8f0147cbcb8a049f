"""`tiering serve` and the workspace store: a schema this version does not know stops it, naming the fix."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cli.main import app
from tests.serving.conftest import free_port
from workspace.migrate import VERSION_TABLE


def test_serve_refuses_a_store_written_by_a_newer_version(tmp_path, monkeypatch):
    from workspace.store import WorkspaceStore

    url = f"sqlite:///{tmp_path / 'workspace.db'}"
    WorkspaceStore.open(url).close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999_from_the_future'"))
    engine.dispose()
    monkeypatch.setenv("TIERING_DATABASE_URL", url)
    monkeypatch.delenv("TIERING_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port())])
    assert result.exit_code != 0
    assert "9999_from_the_future" in result.output and "tiering db upgrade" in result.output


def test_serve_creates_no_store_when_there_is_none(tmp_path, monkeypatch):
    from serving.launch import check_store

    monkeypatch.setenv("TIERING_DATABASE_URL", f"sqlite:///{tmp_path / 'absent.db'}")
    check_store()
    assert not (tmp_path / "absent.db").exists()


def test_serve_refuses_a_store_at_an_older_schema_naming_the_upgrade(tmp_path, monkeypatch):
    from workspace.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'workspace.db'}"
    engine = create_engine(url)
    upgrade(engine, "0001")
    engine.dispose()
    monkeypatch.setenv("TIERING_DATABASE_URL", url)
    monkeypatch.delenv("TIERING_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port())])
    assert result.exit_code != 0
    output = " ".join(result.output.split())
    assert "older schema (0001" in output and "tiering db upgrade" in output
