"""The workspace store: the system of record for published scorings, pins, flags, their audit, and users.

A database adapter (SQLAlchemy 2 and Alembic; SQLite by default, PostgreSQL for a team). It knows tier names
from the model's code and nothing of the service, training, reports or the CLI, which all reach the store here.
"""

from workspace.errors import InvalidInput, NotAllowed, SchemaMismatch, StoreError, StoreMissing, StoreUnavailable
from workspace.store import (
    DEFAULT_URL,
    MAX_PAGE_SIZE,
    SORTABLE,
    AccountDetail,
    AuditInfo,
    BookFilter,
    BookPage,
    FlagInfo,
    PinInfo,
    Role,
    ScoringInfo,
    SortDirection,
    UserInfo,
    WorkspaceStore,
    database_url,
    generated_password,
    store_exists,
)

__all__ = [
    "DEFAULT_URL",
    "MAX_PAGE_SIZE",
    "SORTABLE",
    "AccountDetail",
    "AuditInfo",
    "BookFilter",
    "BookPage",
    "FlagInfo",
    "InvalidInput",
    "NotAllowed",
    "PinInfo",
    "Role",
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
