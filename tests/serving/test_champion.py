"""Following the champion alias: swaps, broken versions, no champion, an unreachable registry."""

import pytest

from scoring import registry
from scoring.scorer import RULES_ONLY
from serving import champion as champion_module
from serving.champion import ChampionFollower, reload_seconds

from .conftest import register_copy_of

pytestmark = pytest.mark.slow  # scheduled first: a long file started last would end alone


def register_missing() -> str:
    missing = registry.client().create_model_version(registry.MODEL_NAME, source="/nonexistent/model", run_id=None)
    return str(missing.version)


@pytest.fixture
def follower(champion_store):
    registry.configure()
    follower = ChampionFollower(interval_seconds=3600)
    follower.refresh()
    return follower


def test_a_moved_alias_swaps_the_model_while_earlier_requests_keep_theirs(follower, trained):
    before = follower.serving
    assert before.version == trained.version and follower.ready
    newer = register_copy_of(trained.version)
    registry.set_alias(registry.CHAMPION, newer)

    follower.refresh()

    assert follower.serving.version == newer and follower.ready
    assert before.version == trained.version and before.model.is_learned  # untouched for requests holding it


def test_a_broken_champion_is_reported_and_the_last_good_model_keeps_answering(follower, trained):
    broken = register_missing()
    registry.set_alias(registry.CHAMPION, broken)
    follower.refresh()
    assert not follower.ready and f"champion version {broken} cannot be loaded" in follower.problem
    assert follower.serving.version == trained.version

    registry.set_alias(registry.CHAMPION, trained.version)  # rolled back
    follower.refresh()
    assert follower.ready and follower.serving.version == trained.version


def test_without_a_champion_it_falls_back_to_the_rules(follower):
    registry.client().delete_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION)
    follower.refresh()
    assert follower.serving.version == RULES_ONLY and not follower.serving.model.is_learned and follower.ready


def test_an_unreachable_registry_is_no_reason_to_drop_a_loaded_model(follower, monkeypatch, trained):
    def unreachable():
        raise OSError("connection refused")

    monkeypatch.setattr(champion_module, "registered_champion", unreachable)
    follower.refresh()
    assert follower.ready and follower.serving.version == trained.version

    starting = ChampionFollower(interval_seconds=3600)
    starting.refresh()
    assert starting.serving is None and "cannot read the MLflow registry" in starting.problem


def test_the_background_thread_stops_promptly(follower):
    follower.start()
    follower.stop()
    assert not follower._thread.is_alive()


@pytest.mark.parametrize("raw, seconds", [(None, 10.0), ("1", 1.0), ("0.5", 0.5)])
def test_reload_interval_comes_from_the_environment(monkeypatch, raw, seconds):
    if raw is None:
        monkeypatch.delenv("TIERING_RELOAD_SECONDS", raising=False)
    else:
        monkeypatch.setenv("TIERING_RELOAD_SECONDS", raw)
    assert reload_seconds() == seconds


@pytest.mark.parametrize("raw", ["soon", "0", "-3", "nan"])
def test_a_bad_reload_interval_is_refused_with_its_name(monkeypatch, raw):
    monkeypatch.setenv("TIERING_RELOAD_SECONDS", raw)
    with pytest.raises(ValueError, match="TIERING_RELOAD_SECONDS"):
        reload_seconds()


def test_a_published_business_configuration_is_served_and_a_restore_goes_back(follower, trained, tmp_path, monkeypatch):
    from workspace import WorkspaceStore

    monkeypatch.delenv("TIERING_CONFIG", raising=False)
    monkeypatch.setenv("TIERING_DATABASE_URL", f"sqlite:///{tmp_path / 'workspace.db'}")
    assert follower.serving.config_version is None
    default_capacity = follower.serving.model.config.tiers.tier_1.max_accounts
    with WorkspaceStore.open() as store:
        first = store.publish_config({"tiers": {"tier_1": {"max_accounts": 3}}}, "three", "cli:test", check_role=False)
    follower.refresh()  # the same champion, a new configuration: loaded
    assert follower.serving.version == trained.version and follower.serving.config_version == first.id
    assert follower.serving.model.config.tiers.tier_1.max_accounts == 3
    with WorkspaceStore.open() as store:
        restored = store.publish_config(
            {"tiers": {"tier_1": {"max_accounts": default_capacity}}}, "back", "cli:test", check_role=False
        )
    follower.refresh()
    assert follower.serving.config_version == restored.id
    assert follower.serving.model.config.tiers.tier_1.max_accounts == default_capacity
