"""The what-if page's side of scenarios: its form's fields as a draft, and the preview of a draft on the latest
published scoring (`scoring.scenarios`, from the scoring's full-precision parts; nothing is rebuilt or run)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from configuration.tiering import TieringConfig, apply_draft, config_changes, merged, parse_config
from features.config import TIER_NAMES, ConfigError
from scoring.scenarios import PartsMissing, ScenarioComparison, compare_scenario, in_icp_from, rescored
from workspace.active import budget_to_split
from workspace.store import ScoringInfo, WorkspaceStore

MOVERS_SHOWN = 50
# The form's fields: the business keys an editor changes on the page, by their dotted names.
WEIGHT_FIELDS = tuple(f"rule_weights.{name}" for name in ("revenue_potential", "business_fit", "engagement"))
TIER_FIELDS = tuple(f"tiers.{tier}.{key}" for tier in TIER_NAMES for key in ("max_accounts", "min_score"))
SPLIT_FIELDS = tuple(f"budget.split.{tier}" for tier in TIER_NAMES)
FIELDS = (*WEIGHT_FIELDS, "model.blend", *TIER_FIELDS, *SPLIT_FIELDS, "budget.total")
OPTIONAL = ("budget.total", *(f"tiers.{tier}.max_accounts" for tier in TIER_NAMES))  # empty = none / no limit
WHOLE = tuple(f"tiers.{tier}.max_accounts" for tier in TIER_NAMES)


class FormProblem(ValueError):
    """A field the page cannot use; the message names it."""


def field_values(config: TieringConfig) -> dict[str, Any]:
    """The form's fields as `config` sets them."""
    values: dict[str, Any] = {}
    full = config.model_dump(mode="json")
    for name in FIELDS:
        node: Any = full
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[name] = node
    return values


def _nested(name: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(name.split(".")):
        out = {part: out}
    return out


def draft_from_form(form: Mapping[str, str], active: TieringConfig) -> dict:
    """The form's fields that differ from `active`, as a draft (only the keys it changes); FormProblem naming a field
    that is not a number."""
    current = field_values(active)
    draft: dict = {}
    for name in FIELDS:
        if name not in form:
            continue
        text = str(form[name]).strip()
        if text == "" and name in OPTIONAL:
            value: Any = None
        else:
            try:
                value = int(text) if name in WHOLE else float(text)
            except ValueError:
                raise FormProblem(f"{name}: {text[:40]!r} is not a number") from None
        if value != current[name]:
            draft = merged(draft, _nested(name, value))
    return draft


@dataclass(frozen=True)
class Preview:
    scoring: ScoringInfo
    comparison: ScenarioComparison
    changes: dict[str, dict[str, Any]]


def preview(store: WorkspaceStore, active: TieringConfig, scenario: TieringConfig) -> Preview | None:
    """The latest published scoring under the active configuration and under the scenario (the store's pins applied
    to both); None before the first scoring."""
    scoring = store.latest_scoring()
    if scoring is None:
        return None
    try:
        then = parse_config(scoring.configuration, f"scoring {scoring.id}")
    except ConfigError:
        then = TieringConfig()
    parts = store.scores_frame(scoring.id)
    parts["in_icp"] = in_icp_from(parts["industry"], parts["country"], then)
    pins = store.active_pins()
    pins = pins[pins["account_id"].isin(set(parts["account_id"]))][["account_id", "tier", "reason", "owner"]]
    try:
        before = rescored(parts, then, active, budget=budget_to_split(None, active, parts), overrides=pins)
        after = rescored(parts, then, scenario, budget=budget_to_split(None, scenario, parts), overrides=pins)
    except PartsMissing as error:
        raise FormProblem(
            f"this page cannot preview the scenario from the latest scoring: {error}. Run `tiering whatif EXPORT "
            "--config DRAFT.yaml`, which scores the book with the draft"
        ) from None
    return Preview(scoring, compare_scenario(before, after), config_changes(active, scenario))


def scenario_config(active: TieringConfig, draft: dict, source: str) -> TieringConfig:
    """`draft` over `active`, validated; FormProblem with the configuration's message otherwise."""
    try:
        return apply_draft(active, draft, source)
    except ConfigError as error:
        raise FormProblem(str(error)) from None


def moves_shown(result: Preview) -> pd.DataFrame:
    return result.comparison.moves.head(MOVERS_SHOWN)
