"""MLflow: where runs and models live, what a training run logs, and the registry aliases.

Nothing here runs at import time; `configure()` is called by the commands that need MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.redact import redact

if TYPE_CHECKING:
    from features.config import ModelConfig
    from scoring.pyfunc import TieringModel

MODEL_NAME = "abm-tiering"
EXPERIMENT = "abm-tiering"
CHAMPION, CHALLENGER = "champion", "challenger"
DEFAULT_STORE = Path("models")
HOLDOUT_PREDICTIONS = "holdout_predictions.csv"  # under tables/ in the training run
HOLDOUT_BOOK = "holdout_book.csv"


class TrackingError(Exception):
    """The MLflow store or registry cannot do what was asked; the message says why and what to do."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE / 'mlflow.db'}"


def configure() -> str:
    """Point MLflow at the team server (MLFLOW_TRACKING_URI) or the local SQLite store under models/."""
    import mlflow

    # A team server that is down should fail in seconds with a clear message, not retry for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    warnings.filterwarnings("ignore", module="mlflow")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        # Under the store's lock: the first command on a fresh SQLite file creates and migrates it, and two commands
        # started at once would otherwise both run the migrations and one would stop on the clash.
        with store_lock("creating the MLflow store"):
            if mlflow.get_experiment_by_name(EXPERIMENT) is None:
                _create_experiment(uri)
            mlflow.set_experiment(EXPERIMENT)
    except TrackingError:
        raise
    except Exception as error:  # MLflow raises many types for a locked or unreachable store
        raise TrackingError(
            f"cannot use the MLflow store at {redact(uri)}: {first_line(error)}. "
            "Check MLFLOW_TRACKING_URI, that the server is up, and that no other process holds "
            "the SQLite file"
        ) from None
    return uri


def _create_experiment(uri: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    artifacts = None
    if uri.startswith("sqlite:///"):
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    try:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    except MlflowException as error:  # another command (on a team server) created it a moment ago
        if error.error_code != "RESOURCE_ALREADY_EXISTS" and mlflow.get_experiment_by_name(EXPERIMENT) is None:
            raise


def store_failure(error: BaseException) -> str | None:
    """The message for an MLflow store that failed in the middle of a command (a tracking server stopped or
    unreachable, a connection reset); None for any other error."""
    texts: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(texts) < 5:
        texts.append(f"{type(seen).__module__}.{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    joined = " ".join(texts)
    markers = (
        "API request to",
        "Max retries exceeded",
        "Connection refused",
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "RemoteDisconnected",
        "Connection aborted",
        "NewConnectionError",
    )
    if not any(marker in joined for marker in markers):
        return None
    run = None
    try:
        import mlflow

        active = mlflow.active_run()
        run = active.info.run_id if active else None
        if run is None:  # the run ended while the server was gone: MLflow remembers it, but could not mark it
            from mlflow.tracking.fluent import _last_active_run_id

            run = _last_active_run_id.get()
    except Exception:
        pass
    left = (
        f" The run {run} is left unfinished on the server; mark it failed in the MLflow UI, or leave it." if run else ""
    )
    return (
        f"the MLflow store at {redact(tracking_uri())} stopped answering: {first_line(error)}. Aliases move only "
        f"once a command has finished cleanly, so this command did not change the champion.{left} Run it again once "
        "the server answers (check MLFLOW_TRACKING_URI and that the server is up)."
    )


def first_line(error: BaseException) -> str:
    """An error's first line, for a message or a log: short, and with the secrets of any URL in it masked."""
    text = redact(str(error)).strip().splitlines()
    return text[0][:300] if text else error.__class__.__name__


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: list[str]
    run_id: str
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{MODEL_NAME}/{self.version}"


def client():
    from mlflow import MlflowClient

    return MlflowClient()


NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})  # no model, or no such alias


def _ask_registry(question, when_absent):
    """The registry's answer, or `when_absent` when the model or alias does not exist. A store that cannot
    be asked raises TrackingError: a locked or unreachable registry must not pass for an empty one."""
    from mlflow.exceptions import MlflowException

    try:
        return question()
    except MlflowException as error:
        if error.error_code in NOT_FOUND:
            return when_absent
        raise TrackingError(
            f"cannot read the MLflow registry at {redact(tracking_uri())}: {first_line(error)}"
        ) from None


def _info(version) -> VersionInfo:
    return VersionInfo(str(version.version), list(version.aliases), version.run_id, dict(version.tags))


def registered_version(version: str) -> VersionInfo | None:
    """The registered version `version` of the model; None when the registry has no such version."""
    found = _ask_registry(lambda: client().get_model_version(MODEL_NAME, version), None)
    return None if found is None else _info(found)


def alias_version(alias: str) -> VersionInfo | None:
    """The version holding `alias`; None when there is none."""
    found = _ask_registry(lambda: client().get_model_version_by_alias(MODEL_NAME, alias), None)
    return None if found is None else _info(found)


def versions() -> list[VersionInfo]:
    found = _ask_registry(lambda: client().search_model_versions(f"name='{MODEL_NAME}'"), [])
    return sorted((_info(v) for v in found), key=lambda v: int(v.version))


ALIAS_ATTEMPTS = 5


def set_alias(alias: str, version: str) -> None:
    """Point `alias` at `version`. A team server whose store upserts aliases without a lock answers two
    commands setting the same alias at once with a unique-constraint error for one of them: that one
    tries again (the alias then holds the later of the two, as the champion history expects)."""
    from mlflow.exceptions import MlflowException

    for attempt in range(ALIAS_ATTEMPTS):
        try:
            client().set_registered_model_alias(MODEL_NAME, alias, version)
            return
        except MlflowException as error:
            if "UNIQUE constraint" not in str(error) or attempt == ALIAS_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


# --- the champion's history, safe under concurrent promotions ------------------------------------------
#
# Every move of the champion alias is one new registered-model tag, `champion_event.<time>.<random>`, never
# rewritten: two commands moving the alias at once each add their own event, so no move is lost (a single JSON
# tag rewritten by both lost one). The history is those events replayed in key order; after writing its event a
# command sets the alias to the history's latest champion and checks again until the two agree, so the alias
# always ends on the version of the latest event. On a local SQLite store the whole move also runs under a lock
# file next to the store, so local commands are strictly one after the other.

LEGACY_HISTORY = "champion_history"  # the JSON list kept by earlier versions: the base the events replay onto
EVENT_PREFIX = "champion_event."
MAX_EVENTS = 200  # older events are folded into the base
LOCK_SECONDS = 120.0


@dataclass(frozen=True)
class ChampionEvent:
    key: str
    kind: str  # "promote" or "rollback"
    version: str  # promoted, or the version rolled back to
    previous: str | None  # the champion the command saw before it moved the alias


def _registered_tags() -> dict[str, str]:
    model = _ask_registry(lambda: client().get_registered_model(MODEL_NAME), None)
    return {} if model is None else dict(model.tags)


def champion_events(tags: dict[str, str] | None = None) -> list[ChampionEvent]:
    tags = _registered_tags() if tags is None else tags
    events = []
    for key in sorted(k for k in tags if k.startswith(EVENT_PREFIX)):
        try:
            fields = json.loads(tags[key])
            events.append(ChampionEvent(key, fields["kind"], str(fields["version"]), fields.get("previous")))
        except (ValueError, KeyError, TypeError):
            continue  # not one of ours
    return events


def replay(base: list[str], events: list[ChampionEvent]) -> list[str]:
    """The champion history (oldest first) after `events`: a promotion appends its version; a rollback removes the
    champion it rolled back from, if that was still the latest (a second concurrent rollback of the same champion
    changes nothing)."""
    history = list(base)
    for event in events:
        if event.kind == "promote":
            history.append(event.version)
        elif event.kind == "rollback" and history and history[-1] == event.previous:
            while history and history[-1] == event.previous:
                history.pop()
    return history


def champion_history() -> list[str]:
    """Versions that have been champion and not rolled back, oldest first."""
    tags = _registered_tags()
    return replay(json.loads(tags.get(LEGACY_HISTORY, "[]")), champion_events(tags))


def ever_champion() -> list[str]:
    """Every version that has ever been champion, in the order they first were."""
    tags = _registered_tags()
    seen = json.loads(tags.get(LEGACY_HISTORY, "[]")) + [
        e.version for e in champion_events(tags) if e.kind == "promote"
    ]
    return list(dict.fromkeys(seen))


def _store_file() -> Path | None:
    uri = tracking_uri()
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


_held: dict[str, int] = {}  # lock file -> depth in this process (the lock is re-entrant)


@contextlib.contextmanager
def store_lock(purpose: str) -> Iterator[None]:
    """An exclusive lock file next to a local SQLite store (`mlflow.db.lock`), re-entrant within a process; nothing
    for a tracking server, which serialises its own writes."""
    import fcntl

    store = _store_file()
    if store is None:
        yield
        return
    path = store.with_name(store.name + ".lock")
    key = str(path.resolve()) if path.parent.exists() else str(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + LOCK_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(
                        f"another tiering command has held {path} for {LOCK_SECONDS:.0f} s while "
                        f"{purpose}: wait for it to finish, or stop it"
                    ) from None
                time.sleep(0.05)
        _held[key] = 1
        try:
            yield
        finally:
            _held[key] = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


def _add_event(kind: str, version: str, previous: str | None) -> None:
    key = f"{EVENT_PREFIX}{time.time_ns():020d}.{uuid.uuid4().hex[:8]}"
    value = json.dumps({"kind": kind, "version": version, "previous": previous})
    client().set_registered_model_tag(MODEL_NAME, key, value)


def _fold_old_events() -> None:
    """Keep the tag list short: the oldest events are folded into the base history (best effort)."""
    tags = _registered_tags()
    events = champion_events(tags)
    if len(events) <= MAX_EVENTS:
        return
    old = events[: len(events) - MAX_EVENTS]
    base = replay(json.loads(tags.get(LEGACY_HISTORY, "[]")), old)
    client().set_registered_model_tag(MODEL_NAME, LEGACY_HISTORY, json.dumps(base[-100:]))
    for event in old:
        client().delete_registered_model_tag(MODEL_NAME, event.key)


def settle_champion() -> str | None:
    """Set the champion alias to the history's latest version, and check again until alias and history agree (another
    command may move it meanwhile); the champion it settled on, None when the history is empty."""
    for _ in range(20):
        history = champion_history()
        wanted = history[-1] if history else None
        current = alias_version(CHAMPION)
        if wanted is None or (current is not None and current.version == wanted):
            return wanted
        set_alias(CHAMPION, wanted)
    return wanted


def record_champion(version: str) -> str | None:
    """Make `version` champion: one promotion event, then the alias settled; the champion it ended on."""
    with store_lock(f"promoting version {version}"):
        current = alias_version(CHAMPION)
        _add_event("promote", version, current.version if current else None)
        settled = settle_champion()
        _fold_old_events()
        return settled


def record_rollback(current: str, target: str) -> str | None:
    """Roll the champion back from `current` (towards `target`); the champion it ended on."""
    with store_lock(f"rolling back version {current}"):
        _add_event("rollback", target, current)
        settled = settle_champion()
        _fold_old_events()
        return settled


def load_problem(info: VersionInfo, error: Exception, role: str = "champion") -> str:
    """Why a registered version cannot be loaded, naming it and, when its model files are gone, where they should be."""
    from urllib.parse import unquote, urlparse

    try:
        location = client().get_model_version_download_uri(MODEL_NAME, info.version)
    except Exception:
        location = None
    parsed = urlparse(location or "")
    if location and parsed.scheme in ("", "file"):  # a local folder: say whether it is there
        folder = Path(unquote(parsed.path))
        if not (folder / "MLmodel").is_file():
            return (
                f"{role} version {info.version} cannot be loaded: its model files are missing from {folder} "
                f"({'no such folder' if not folder.exists() else 'no MLmodel file in it'}). Restore them, or make "
                "another version champion: tiering rollback, or tiering promote VERSION"
            )
    return f"{role} version {info.version} cannot be loaded from {redact(location or info.uri)}: {first_line(error)}"


def write_frame_artifact(frame: pd.DataFrame, name: str, folder: str = "tables") -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), folder)


def load_model_for(model_uri: str) -> TieringModel:
    """The logged model, loaded by MLflow (with its own code on the path, its scoring-code digest checked)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()


def resolve_model(model_uri: str | None, config: ModelConfig) -> tuple[TieringModel, str]:
    """The model to score with and the version label to print: the given URI, else the champion, else rules only;
    it scores with the business knobs of `config` (rule weights, blend, tiers, budget), whatever it was trained with.

    A version that cannot be loaded is named, with the folder its model files should be in when they are missing."""
    configure()
    if model_uri:
        try:
            model = load_model_for(model_uri)
        except Exception as error:
            version = model_uri.removeprefix(f"models:/{MODEL_NAME}/")
            if version.isdigit():
                info = VersionInfo(version, [], "", {})
                raise TrackingError(f"cannot load {model_uri!r}: {load_problem(info, error, 'model')}") from None
            raise TrackingError(
                f"cannot load model {redact(model_uri)!r}: {first_line(error)}. "
                "Use models:/abm-tiering/<version> or models:/abm-tiering@champion"
            ) from None
        return model.with_business(config), model_uri.rsplit("/", 1)[-1]
    champion = alias_version(CHAMPION)
    if champion is None:
        from scoring.pyfunc import TieringModel
        from scoring.scorer import RULES_ONLY

        return TieringModel.rules_only(config), RULES_ONLY
    try:
        return load_model_for(champion.uri).with_business(config), champion.version
    except Exception as error:  # missing or corrupt artifacts: name the version and where its files should be
        raise TrackingError(load_problem(champion, error)) from None


CONFIG_EXPERIMENT = "abm-tiering-configurations"


def log_config_version(
    version: int, configuration: dict, changes: dict, published_by: str, note: str, restored_from: int | None = None
) -> None:
    """A published business configuration as an MLflow run of its own experiment: what changed, by whom, why."""
    import mlflow

    configure()
    experiment = mlflow.get_experiment_by_name(CONFIG_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(CONFIG_EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"configuration version {version}"):
        mlflow.set_tags(
            {
                "config_version": str(version),
                "published_by": published_by,
                "note": note[:500],
                "restored_from": str(restored_from or ""),
            }
        )
        mlflow.log_dict(configuration, "business_configuration.json")
        mlflow.log_dict(changes, "changes.json")
