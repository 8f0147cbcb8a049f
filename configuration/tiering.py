"""The whole `tiering.yaml`: the model's configuration (features/config.py, frozen with a registered model) plus
the settings only commands read (validation of exports, alerts, review), and where a command's file comes from.

Which file a command uses: `--config FILE` when given, else `./tiering.yaml`, else the built-in defaults; every
command says which (`ConfigChoice.label`). Keys keep their place in the YAML; docs/configuration.md says which part
each belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from features.config import ConfigError, ModelConfig, Strict, describe_problems

DEFAULT_FILE = Path("tiering.yaml")


class Validation(Strict):
    """What a row-level problem in the export does (a missing column or an unreadable file always stops)."""

    invalid_rows: Literal["stop", "drop"] = Field(
        "stop",
        description="stop: the run stops and lists every problem; drop: the row is dropped, counted in every "
        "summary and listed with its reason in rejected_rows.csv.",
    )


class Alerts(Strict):
    """`tiering alerts`: which changes between two scorings become events, and how they are delivered."""

    tiers: list[Literal["tier_1", "tier_2", "tier_3"]] = Field(
        default=["tier_1", "tier_2"], description="Entering or leaving one of these tiers is an event."
    )
    win_probability_jump: float = Field(
        0.15, gt=0, le=1, description="A win probability change this large is an event."
    )
    learned_score_jump: float = Field(
        15, gt=0, le=100, description="A learned score change (0-100) this large is an event."
    )
    webhook_url: str | None = Field(
        None, description="Where events are POSTed (https unless loopback); --webhook overrides."
    )
    secret_env: str = Field(
        "TIERING_WEBHOOK_SECRET", description="Environment variable holding the HMAC-SHA256 secret."
    )
    timeout_seconds: float = Field(5, gt=0, description="One attempt waits this long for an answer.")
    max_attempts: int = Field(5, ge=1, description="Attempts per event on 5xx, 429, timeouts and refused connections.")
    backoff_seconds: float = Field(0.5, ge=0, description="First wait between attempts; doubles each time.")
    max_total_seconds: float = Field(
        60, gt=0, description="Delivery stops after this long; the rest stays in the outbox."
    )


class Review(Strict):
    """`tiering review`: when a past scoring's period can be judged, and when the model should be retrained."""

    min_days: int = Field(60, ge=1, description="A period shorter than this many days is too short to judge.")
    min_won: int = Field(20, ge=1, description="Won deals (created and closed in the period) needed to judge.")
    min_lost: int = Field(20, ge=1, description="Lost deals (created and closed in the period) needed to judge.")
    auc_margin: float = Field(
        0.0,
        ge=0,
        description="Retrain when the field ROC AUC is below the holdout's beyond chance (95%) by more than this.",
    )
    calibration_tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Retrain when the field calibration error's 95% lower bound exceeds the holdout's by more.",
    )
    psi_threshold: float = Field(
        0.25, gt=0, description="A feature whose population stability index exceeds this has drifted (0.25: major)."
    )
    max_drifted_features: int = Field(
        0, ge=0, description="Retrain when more features than this have drifted past psi_threshold."
    )
    max_unseen_share: float = Field(
        0.05, ge=0, le=1, description="Retrain when more accounts than this share carry categories the model never saw."
    )
    max_months_since_training: float = Field(
        6.0, gt=0, description="Retrain when the period ends this many months or more after the training cut-off."
    )


class PilotSettings(Strict):
    """`tiering pilot design|readout` and the campaign's side of a running pilot (business configuration)."""

    exclude_control_from: list[Literal["alerts", "export"]] = Field(
        default=["alerts", "export"],
        description="Where the control accounts of an active pilot are left out of activation (and counted).",
    )
    tiers: list[Literal["tier_1", "tier_2", "tier_3"]] = Field(
        default=["tier_1", "tier_2"], description="The tiers a design draws its accounts from unless --tiers says."
    )
    horizon_days: int = Field(90, ge=7, le=730, description="A pilot's length unless --horizon-days says.")
    max_standardised_difference: float = Field(
        0.1, gt=0, description="A draw whose score or history columns differ by more (in pooled SDs) is re-drawn."
    )
    max_draws: int = Field(20, ge=1, le=1000, description="Draws tried before keeping the best and saying so.")


class WhatIf(Strict):
    """`tiering whatif`: the suggested scenario's limits."""

    max_suggested_changes: int = Field(
        3, ge=0, description="At most this many ICP edits (industries or size range) in a suggested scenario."
    )


class TieringConfig(ModelConfig):
    """Everything `tiering.yaml` holds. The business part read at scoring time is the model's `rule_weights`,
    `model.blend`, `tiers` and `budget` (see `ModelConfig.with_business`) plus the sections below."""

    validation: Validation = Validation()
    alerts: Alerts = Alerts()
    review: Review = Review()
    pilot: PilotSettings = PilotSettings()
    whatif: WhatIf = WhatIf()


@dataclass(frozen=True)
class ConfigChoice:
    """The configuration a command runs with and where it came from."""

    config: TieringConfig
    path: Path | None  # None: the built-in defaults

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else "built-in defaults"


def parse_config(raw: dict | None, source: str = "config") -> TieringConfig:
    try:
        return TieringConfig.model_validate(raw or {})
    except ValidationError as error:
        raise ConfigError(describe_problems(error, source)) from None


def choose_config(path: str | Path | None = None) -> ConfigChoice:
    """`path` when given, else `./tiering.yaml` when present, else the built-in defaults."""
    if path is None:
        if not DEFAULT_FILE.exists():
            return ConfigChoice(TieringConfig(), None)
        path = DEFAULT_FILE
    path = Path(path)
    return ConfigChoice(parse_config(read_mapping(path), str(path)), path)


def read_mapping(path: Path) -> dict | None:
    """A YAML file's top-level mapping (None when empty); ConfigError naming the file otherwise."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found: pass an existing file with --config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error.__class__.__name__}): fix the syntax") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error.__class__.__name__}): pass a readable UTF-8 file") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def load_config(path: str | Path | None = None) -> TieringConfig:
    """Read a `tiering.yaml`; with no path, `./tiering.yaml` when present, else the built-in defaults."""
    return choose_config(path).config


def config_to_yaml(config: TieringConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# The business configuration: read at scoring time, published and restored in the workspace. The rest of the file
# (feature settings, learners, window, rank_on) is the model's configuration and travels with a registered model.
BUSINESS_KEYS = (
    "rule_weights",
    "model.blend",
    "hierarchy.tier_by",
    "tiers",
    "budget",
    "alerts",
    "review",
    "whatif",
    "pilot",
)


def _leaves(raw: object, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value for every leaf of a nested mapping (lists are leaves)."""
    if not isinstance(raw, dict) or not raw:
        return {prefix: raw}
    found: dict[str, object] = {}
    for key, value in raw.items():
        found.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


def is_business_key(key: str) -> bool:
    return any(key == part or key.startswith(f"{part}.") for part in BUSINESS_KEYS)


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` laid over it, mapping by mapping (a list or value in `changes` replaces the base's)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_draft(base: TieringConfig, changes: dict | None, source: str) -> TieringConfig:
    """A draft holding only the keys it changes, applied over `base` and validated as a whole file would be;
    ConfigError naming `source` and the key otherwise. Changing both a whole section and a key inside it is fine."""
    return parse_config(merged(base.model_dump(mode="json"), changes or {}), source)


def config_changes(before: TieringConfig, after: TieringConfig) -> dict[str, dict[str, object]]:
    """Every key whose value differs, dotted (`tiers.tier_1.max_accounts`), with its value before and after."""
    return dict_changes(before.model_dump(mode="json"), after.model_dump(mode="json"))


def dict_changes(before: dict, after: dict) -> dict[str, dict[str, object]]:
    """`config_changes` of two configurations as JSON."""
    old, new = _leaves(before), _leaves(after)
    return {
        key: {"before": old.get(key), "after": new.get(key)}
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    }


def model_knobs(changes: dict[str, dict[str, object]]) -> list[str]:
    """The changed keys that feed the learners (the model's configuration): these need a retrain to reach the
    learned tiers."""
    return [key for key in changes if not is_business_key(key)]


def business_part(config: TieringConfig) -> dict:
    """The business keys of a configuration (what a published version changes), as nested JSON."""
    full = config.model_dump(mode="json")
    part: dict = {}
    for key in BUSINESS_KEYS:
        section, _, leaf = key.partition(".")
        if leaf:
            part.setdefault(section, {})[leaf] = full[section][leaf]
        else:
            part[section] = full[section]
    return part
