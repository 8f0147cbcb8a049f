"""Where the workspace store is: its URL (argument, else TIERING_DATABASE_URL, else the default SQLite file), and
whether one exists there, answered without creating anything (and, for the default, without loading SQLAlchemy)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DEFAULT_FILE = Path("models/workspace.db")
DEFAULT_URL = f"sqlite:///{DEFAULT_FILE.as_posix()}"


def database_url(url: str | None = None) -> str:
    """The store's URL: `url` when given, else TIERING_DATABASE_URL (through the settings), else the default."""
    if url:
        return url
    from ingest.settings import SettingsError, load_settings
    from workspace.errors import StoreError

    try:
        return load_settings().database_url or DEFAULT_URL
    except SettingsError as error:
        raise StoreError(str(error)) from None


def shown(url: str) -> str:
    """The URL as messages may print it: user, password and query (which may carry `?password=`) masked by the
    project's one redaction rule."""
    from features.redact import redact_url

    return redact_url(url)


def parsed_url(url: str) -> URL:
    """The URL parsed; StoreError naming the setting and an example when it is not a database URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from workspace.errors import StoreError

    try:
        return make_url(url)
    except ArgumentError:
        raise StoreError(
            "TIERING_DATABASE_URL is not a database URL; use e.g. sqlite:///models/workspace.db or "
            "postgresql+psycopg://user@host:5432/tiering"
        ) from None


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for in-memory SQLite and for every other database."""
    parsed = parsed_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def store_exists(url: str | None = None) -> bool:
    """Whether a store is there to read, without creating one: a SQLite file that exists, or any server URL.

    A command that needs no store (a plain `tiering score`) asks this before opening, so it never creates one.
    """
    resolved = database_url(url)
    if resolved == DEFAULT_URL:  # the common case, answered without loading SQLAlchemy
        return DEFAULT_FILE.is_file()
    if parsed_url(resolved).get_backend_name() != "sqlite":
        return True
    path = sqlite_file(resolved)
    return path is not None and path.is_file()
