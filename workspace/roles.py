"""The workspace's roles: light to import, so the CLI can offer them as choices without loading the store."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """viewer reads and flags; editor also pins; admin also publishes configurations and manages users."""

    viewer = "viewer"
    editor = "editor"
    admin = "admin"
