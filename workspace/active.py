"""The active business configuration: the latest version published in the workspace store, laid over a file's.

Every command without `--config`, and the service without `TIERING_CONFIG`, reads its configuration through this:
SPEC's order is `--config`, else the store's active version (over ./tiering.yaml or the defaults), else the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from configuration.tiering import TieringConfig, apply_draft
from workspace.errors import StoreMissing
from workspace.location import store_exists

if TYPE_CHECKING:
    from workspace.store import WorkspaceStore


def active_version_over(
    config: TieringConfig, label: str, store: WorkspaceStore | None = None
) -> tuple[TieringConfig, str, int | None]:
    """`config` with the store's active business configuration over it, where it came from, and the version
    (None, and `config` as it is, when there is no store or nothing was published). `store` is the one to read (by
    default the settings' store, when it exists). An unreachable store raises StoreUnavailable: a configuration
    other than the active one is never used silently."""
    if store is not None:
        version = store.active_config()
    else:
        if not store_exists():
            return config, label, None
        from workspace.store import WorkspaceStore

        try:
            opened = WorkspaceStore.open(create=False)
        except StoreMissing:  # a configured server database that holds no store yet
            return config, label, None
        try:
            version = opened.active_config()
        finally:
            opened.close()
    if version is None:
        return config, label, None
    shown = f"workspace configuration version {version.id} over {label}"
    return apply_draft(config, version.configuration, shown), shown, version.id


def budget_to_split(asked: float | None, config: TieringConfig, scores) -> float | None:
    """The total budget a preview splits: the one asked for (`--budget`), else the configuration's `budget.total`,
    else the total the scoring itself split (a scoring made with `--budget` keeps its total, not $0)."""
    if asked is not None:
        return asked
    if config.budget.total is not None:
        return config.budget.total
    if "budget" not in scores:
        return None
    spent = scores["budget"].astype("float64")
    return float(spent.sum()) if spent.notna().any() else None
