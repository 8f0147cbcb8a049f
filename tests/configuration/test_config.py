from pathlib import Path

import pytest
import yaml

from configuration.tiering import TieringConfig, load_config, parse_config
from features.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_tiering_yaml_is_the_built_in_default():
    assert load_config(REPO / "tiering.yaml") == TieringConfig()
    raw = yaml.safe_load((REPO / "tiering.yaml").read_text())
    assert raw["rule_weights"] == {"revenue_potential": 0.40, "business_fit": 0.35, "engagement": 0.25}
    assert raw["budget"]["split"] == {"tier_1": 0.6, "tier_2": 0.3, "tier_3": 0.1}


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tiers:\n  tier_1: {max_accounts: 20, min_score: 60, capacity: 3}\nmodle: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "unknown key 'tiers.tier_1.capacity'" in message and "unknown key 'modle'" in message
    assert str(path) in message


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"rule_weights": {"revenue_potential": 0.5}}, "rule weights must sum to 1"),
        ({"budget": {"split": {"tier_1": 0.5, "tier_4": 0.5}}}, "unknown tiers ['tier_4']"),
        ({"engagement": {"half_life_days": "soon"}}, "'engagement.half_life_days'"),
    ],
)
def test_invalid_values_say_what_is_wrong(raw, expected):
    with pytest.raises(ConfigError, match=None) as caught:
        parse_config(raw, "x.yaml")
    assert expected in str(caught.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
