"""Schema status and upgrades with Alembic's command API, configured in code (the migrations ship in the package)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The schema revision this version of abm-tiering writes."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships its migrations"
    return head


def known_revisions() -> list[str]:
    """Every revision this version knows, oldest first."""
    return [
        script.revision for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    ]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: `current` is None for a database without the workspace tables."""

    current: str | None
    head: str
    known: bool  # this version has `current` among its revisions
    empty: bool  # no tables at all: safe to create

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(engine: Engine) -> SchemaStatus:
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        tables = inspect(connection).get_table_names()
    # A database migrated down to nothing keeps Alembic's own (empty) version table.
    return SchemaStatus(current, head_revision(), current in known_revisions(), not set(tables) - {VERSION_TABLE})


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate to `revision` (default this version's schema) in one transaction; (revision before, after)."""
    before = schema_status(engine).current
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
    after = schema_status(engine).current
    assert after is not None
    return before, after
