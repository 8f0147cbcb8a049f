"""The workspace store: the system of record for published scorings, pins, flags, their audit, and users.

A database adapter (SQLAlchemy 2 and Alembic; SQLite by default, PostgreSQL for a team). It knows tier names
from the model's code and nothing of the service, training, reports or the CLI, which all reach the store here.
"""

from typing import TYPE_CHECKING

from workspace.errors import InvalidInput, NotAllowed, SchemaMismatch, StoreError, StoreMissing, StoreUnavailable
from workspace.location import DEFAULT_URL, database_url, store_exists
from workspace.roles import Role

if TYPE_CHECKING:
    from workspace.store import (
        MAX_PAGE_SIZE,
        SORTABLE,
        AccountDetail,
        AuditInfo,
        BookFilter,
        BookPage,
        ConfigVersionInfo,
        FlagInfo,
        PinInfo,
        ScenarioInfo,
        ScoringInfo,
        SortDirection,
        UserInfo,
        WorkspaceStore,
        generated_password,
    )


def __getattr__(name: str):
    """The store's names, imported on first use: SQLAlchemy and Alembic load only when the store is used."""
    if name in __all__:  # the names not imported above
        from workspace import store

        return getattr(store, name)
    raise AttributeError(f"module 'workspace' has no attribute {name!r}")


__all__ = [
    "DEFAULT_URL",
    "MAX_PAGE_SIZE",
    "SORTABLE",
    "AccountDetail",
    "AuditInfo",
    "BookFilter",
    "BookPage",
    "ConfigVersionInfo",
    "FlagInfo",
    "InvalidInput",
    "NotAllowed",
    "PinInfo",
    "Role",
    "ScenarioInfo",
    "SchemaMismatch",
    "ScoringInfo",
    "SortDirection",
    "StoreError",
    "StoreMissing",
    "StoreUnavailable",
    "UserInfo",
    "WorkspaceStore",
    "database_url",
    "generated_password",
    "store_exists",
]
