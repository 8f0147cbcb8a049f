"""What can go wrong with the workspace store, each a message the user can act on (never the URL's password)."""

from __future__ import annotations

UPGRADE_COMMAND = "tiering db upgrade"


class StoreError(Exception):
    """A workspace-store problem the user can fix; its message says how."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (the pages answer 503, the CLI one message); nothing was written."""


class StoreMissing(StoreError):
    """No store exists there, and the caller asked not to create one."""


class SchemaMismatch(StoreError):
    """The store's schema is older than, or unknown to, this version of abm-tiering; the message names the fix."""


class InvalidInput(StoreError, ValueError):
    """A value refused before anything is written (the pages answer 400), naming the field and the fix."""


class NotAllowed(StoreError):
    """The user may not do this: unknown, disabled, or without the role (the pages answer 403)."""
