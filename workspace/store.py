"""The workspace store: published scorings, pins, flags, the audit and users, in SQLite or PostgreSQL.

`WorkspaceStore.open()` is the one way in: it reads `TIERING_DATABASE_URL` through the project's settings (default
`sqlite:///models/workspace.db`), creates and migrates a new store on first use, and refuses a store whose schema
is older or unknown, naming `tiering db upgrade`. Every query is built with SQLAlchemy expressions and bound
parameters; no user text ever becomes SQL. Times are naive UTC.
"""

from __future__ import annotations

import enum
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    Table,
    and_,
    create_engine,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, NoSuchModuleError, OperationalError

from features.config import TIERS
from features.families import resolve_families
from workspace.errors import (
    UPGRADE_COMMAND,
    InvalidInput,
    NotAllowed,
    SchemaMismatch,
    StoreError,
    StoreMissing,
    StoreUnavailable,
)
from workspace.location import database_url, parsed_url, shown, sqlite_file, store_exists
from workspace.migrate import SchemaStatus, schema_status, upgrade
from workspace.roles import Role
from workspace.tables import (
    SEARCH_LENGTH,
    AuditEvent,
    ConfigVersion,
    FamilyMember,
    Flag,
    Pin,
    Scenario,
    ScoredAccount,
    Scoring,
    User,
)

SCORED: Table = ScoredAccount.__table__  # type: ignore[assignment]  # declarative tables are Tables
# The scored-account columns published from a scores file (all but the keys and the search helper).
ACCOUNT_COLUMNS: tuple[str, ...] = ("account_name", "industry", "country", "employees", "owner")
STORED_COLUMNS: tuple[str, ...] = tuple(
    column.name for column in SCORED.columns if column.name not in ("scoring_id", "search_text")
)
# Stored from the export the scores came from, when the publisher has it (never written by `tiering score`).
EXPORT_COLUMNS: tuple[str, ...] = ("open_pipeline",)
SCORE_FILE_COLUMNS: tuple[str, ...] = tuple(
    c for c in STORED_COLUMNS if c not in ACCOUNT_COLUMNS and c not in EXPORT_COLUMNS
)
REQUIRED_SCORE_COLUMNS: tuple[str, ...] = ("account_id", "tier")
# The book's sortable columns; anything else is refused, so a sort parameter never reaches SQL as text.
SORTABLE: tuple[str, ...] = (
    "account_id",
    "account_name",
    "industry",
    "country",
    "employees",
    "owner",
    "tier",
    "learned_tier",
    "rule_tier",
    "learned_score",
    "rule_score",
    "revenue_potential_score",
    "business_fit_score",
    "engagement_score",
    "win_probability",
    "expected_deal_size",
    "expected_value",
    "pipeline_probability",
    "expected_revenue",
    "budget",
    "family_id",  # sorted by it, the book lists each family's accounts together
    "family_learned_score",
)
PUBLISHED_FAMILY_COLUMNS: tuple[str, ...] = (
    "account_id",
    "family_id",
    "family_tier",
    "family_learned_score",
    "family_expected_revenue",
    "family_engagement_share",
)
MAX_PAGE_SIZE = 1000
INDEX_ENTRY_BYTES = 2000  # below PostgreSQL's largest B-tree entry (about 2,700 bytes)
# argon2-cffi's defaults (RFC 9106's low-memory profile); tests swap in a cheaper hasher.
HASHER = PasswordHasher()
AUDIT_PAGE_SIZE = 100


CAN_PIN = (Role.editor, Role.admin)
CAN_PUBLISH_CONFIG = (Role.admin,)


class SortDirection(enum.StrEnum):
    asc = "asc"
    desc = "desc"


@dataclass(frozen=True)
class BookFilter:
    """The book's filters, as the page's query parameters carry them; None means "any".

    `tier`, `learned_tier` and `rule_tier` take one tier or several; `q` matches a substring of the account id
    or name, case-insensitively; `disagree` keeps accounts whose learned and rule tiers differ (False: agree);
    `surge`, `pinned` (an active pin today) and `flagged` (an open flag) keep accounts with (True) or without
    (False) it.
    """

    tier: str | Sequence[str] | None = None
    q: str | None = None
    industry: str | None = None
    owner: str | None = None
    learned_tier: str | Sequence[str] | None = None
    rule_tier: str | Sequence[str] | None = None
    disagree: bool | None = None
    surge: bool | None = None
    pinned: bool | None = None
    flagged: bool | None = None
    family: str | None = None  # the accounts of one family (its family_id)


@dataclass(frozen=True)
class ScoringInfo:
    id: int
    as_of: datetime
    model_version: str
    configuration: dict[str, Any]
    published_by: str
    published_at: datetime
    account_count: int
    source: str


@dataclass(frozen=True)
class BookPage:
    """One page of the book: its rows (dicts of the stored columns plus `pinned` and `flags`), and for the whole
    filter the number of accounts, and the accounts and budget per tier (every tier present, zeros included)."""

    scoring: ScoringInfo
    rows: list[dict[str, Any]]
    total: int
    page: int
    page_size: int
    tier_counts: dict[str, int]
    budget_by_tier: dict[str, float]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


@dataclass(frozen=True)
class PinInfo:
    id: int
    account_id: str
    tier: str
    reason: str
    owner: str
    created_at: datetime
    expires: date | None
    removed_at: datetime | None
    removed_by: str | None

    def active_on(self, day: date) -> bool:
        return self.removed_at is None and (self.expires is None or day <= self.expires)


@dataclass(frozen=True)
class FlagInfo:
    id: int
    account_id: str
    comment: str
    created_by: str
    created_at: datetime
    scoring_id: int | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class AuditInfo:
    id: int
    at: datetime
    user: str
    action: str
    account_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class ConfigVersionInfo:
    """A published business configuration: the whole configuration, who published it, why, and what it changed
    against the version before (dotted key -> before, after)."""

    id: int
    configuration: dict[str, Any]
    note: str
    published_by: str
    published_at: datetime
    restored_from: int | None
    changes: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ScenarioInfo:
    id: int
    name: str
    configuration: dict[str, Any]  # the draft's keys only
    base_version_id: int | None
    scoring_id: int | None
    result: dict[str, Any] | None
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UserInfo:
    """A user as the pages see one; never the password hash."""

    name: str
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    failed_logins: int
    last_failed_at: datetime | None
    local_only: bool = False  # signs in only from a loopback client
    session_epoch: int = 0  # sessions carrying another epoch have ended (signed out, new password, disabled)


@dataclass(frozen=True)
class AccountDetail:
    """An account in a scoring, with its active pin (today), its pins, flags and audit events, newest first."""

    scoring: ScoringInfo
    row: dict[str, Any]
    pin: PinInfo | None
    pins: list[PinInfo] = field(default_factory=list)
    flags: list[FlagInfo] = field(default_factory=list)
    audit: list[AuditInfo] = field(default_factory=list)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


CONNECT_TIMEOUT_SECONDS = 5


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")  # two writers wait for each other instead of failing
    cursor.execute("PRAGMA mmap_size=268435456")  # a 100,000-account scoring is read from memory, not by syscalls
    cursor.close()


def _engine(url: str) -> Engine:
    parsed = parsed_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": 10})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        # An unreachable server answers within seconds rather than holding a page (or the first /score) for minutes.
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS})
    except (NoSuchModuleError, ImportError) as error:
        raise StoreError(f"cannot use the database {shown(url)}: {error}") from None


def _tiers(value: str | Sequence[str] | None, name: str) -> list[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    values = [v for v in values if v != ""]
    if not values:
        return None
    unknown = [v for v in values if v not in TIERS]
    if unknown:
        raise InvalidInput(f"{name}: unknown tier {unknown[0]!r}; use one of {', '.join(TIERS)}")
    return values


def _like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % and _ taken literally (escaped with backslash)."""
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _without_missing(values: np.ndarray) -> list[Any]:
    """An object array as a list, NaN, NaT and pandas' NA as None (NULL in the database)."""
    out = values.astype(object)
    out[pd.isna(out)] = None
    return out.tolist()


def _text_column(values: pd.Series) -> list[Any]:
    """Text as Python str (numbers or other objects written as text), missing values None."""
    listed = _without_missing(values.to_numpy(dtype=object))
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return listed
    return [None if v is None else str(v.item() if hasattr(v, "item") else v) for v in listed]


def _number_column(values: pd.Series, name: str) -> list[Any]:
    """Doubles at full precision, missing values None; InvalidInput for text that is no number."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        coerced = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & coerced.isna() & (values.astype("str").str.strip() != "")
        if bad.any():
            raise InvalidInput(f"scores column {name}: {values[bad].iloc[0]!r} is not a number (row {bad.idxmax()})")
        numbers = coerced.to_numpy(dtype="float64", na_value=np.nan)
    return _without_missing(numbers)


def _bool_column(values: pd.Series) -> list[bool]:
    if values.dtype == bool:
        return values.tolist()
    words = values.astype("str").str.strip().str.lower()
    return words.isin(["true", "1", "yes", "1.0"]).tolist()


def _scoring_info(row: Scoring) -> ScoringInfo:
    return ScoringInfo(
        row.id,
        row.as_of,
        row.model_version,
        dict(row.configuration or {}),
        row.published_by,
        row.published_at,
        row.account_count,
        row.source,
    )


def _pin_info(row: Any) -> PinInfo:
    return PinInfo(
        row.id,
        row.account_id,
        row.tier,
        row.reason,
        row.owner,
        row.created_at,
        row.expires,
        row.removed_at,
        row.removed_by,
    )


def _pin_record(pin: PinInfo | None) -> dict[str, Any] | None:
    if pin is None:
        return None
    return {
        "pin_id": pin.id,
        "tier": pin.tier,
        "reason": pin.reason,
        "owner": pin.owner,
        "expires": pin.expires.isoformat() if pin.expires else None,
    }


def _user_info(row: User) -> UserInfo:
    return UserInfo(
        row.name,
        Role(row.role),
        row.disabled,
        row.created_at,
        row.last_login_at,
        row.failed_logins,
        row.last_failed_at,
        row.local_only,
        row.session_epoch,
    )


class WorkspaceStore:
    """The store's operations; one instance per process is enough (it pools its connections)."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url

    # ---- opening and the schema -------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None, create: bool = True) -> WorkspaceStore:
        """The store at `url` (else TIERING_DATABASE_URL, else `sqlite:///models/workspace.db`), ready to use.

        A new store is created and migrated when `create` (the SQLite file's folder too); with `create=False` a
        missing store raises StoreMissing and nothing is written. A store with an older schema raises
        SchemaMismatch naming `tiering db upgrade`; one written by a newer abm-tiering raises it too. An
        unreachable database raises StoreUnavailable.
        """
        resolved = database_url(url)
        if not create and not store_exists(resolved):
            raise StoreMissing(f"no workspace store at {shown(resolved)}; publish a scoring to create one")
        path = sqlite_file(resolved)
        if path is not None and create:
            path.parent.mkdir(parents=True, exist_ok=True)
        store = cls(_engine(resolved), resolved)
        status = store.schema_status()
        if status.empty and create:
            store.upgrade()
        elif status.empty:
            store.engine.dispose()
            raise StoreMissing(f"the database {shown(resolved)} holds no workspace store; run `{UPGRADE_COMMAND}`")
        else:
            store.check_schema(status)
        return store

    @classmethod
    def open_for_upgrade(cls, url: str | None = None) -> WorkspaceStore:
        """The store at `url` whatever its schema (for `tiering db upgrade`), created if absent."""
        resolved = database_url(url)
        path = sqlite_file(resolved)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return cls(_engine(resolved), resolved)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> WorkspaceStore:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def schema_status(self) -> SchemaStatus:
        """The database's schema revision against this version's; StoreUnavailable when it cannot be reached."""
        try:
            return schema_status(self.engine)
        except OperationalError as error:
            raise self._unavailable(error) from None

    def check_schema(self, status: SchemaStatus | None = None) -> None:
        """SchemaMismatch unless the schema is exactly this version's, naming `tiering db upgrade`."""
        status = status or self.schema_status()
        if status.up_to_date:
            return
        where = shown(self.url)
        if status.current is None:
            raise SchemaMismatch(
                f"the database {where} has tables but no workspace schema version; point TIERING_DATABASE_URL at "
                f"an empty database, or run `{UPGRADE_COMMAND}` to create the workspace tables there"
            )
        if status.known:
            raise SchemaMismatch(
                f"the workspace store {where} has an older schema ({status.current}, this version needs "
                f"{status.head}); run `{UPGRADE_COMMAND}` (back it up first, see docs/workspace-store.md)"
            )
        raise SchemaMismatch(
            f"the workspace store {where} has schema {status.current}, which this version of abm-tiering does not "
            f"know (it was written by a newer version); upgrade abm-tiering, then run `{UPGRADE_COMMAND}`"
        )

    def upgrade(self) -> tuple[str | None, str]:
        """Migrate to this version's schema; (revision before, after). Refuses a schema newer than this version."""
        status = self.schema_status()
        if status.current is not None and not status.known:
            self.check_schema(status)
        try:
            return upgrade(self.engine)
        except OperationalError as error:
            raise self._unavailable(error) from None

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0] if str(error).strip() else ""
        return StoreUnavailable(
            f"cannot reach the workspace store {shown(self.url)}: {reason}; check TIERING_DATABASE_URL "
            "and that the database is running (nothing was written)"
        )

    # ---- publishing -------------------------------------------------------------------------------------------

    def publish(
        self,
        scores: pd.DataFrame,
        accounts: pd.DataFrame | None,
        *,
        as_of: datetime | date | str,
        model_version: str,
        configuration: dict[str, Any],
        published_by: str,
        source: str = "",
        open_pipeline: pd.Series | None = None,
    ) -> int:
        """Record a scoring (one row per account, every scores-file column at full precision); its id.

        `accounts` (the canonical accounts table, or None) supplies account_name, industry, country, employees and
        owner where the scores lack them; `open_pipeline` (indexed by account id, or None: left empty) each account's
        open pipeline at as_of. All or nothing: a bad frame raises InvalidInput and writes no row.
        """
        rows = self.scored_rows(scores, accounts, open_pipeline)
        stamp = pd.Timestamp(as_of)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert(None)
        scoring = {
            "as_of": stamp.to_pydatetime(),
            "model_version": str(model_version),
            "configuration": configuration,
            "published_by": str(published_by),
            "published_at": now(),
            "account_count": len(rows["account_id"]),
            "source": str(source)[:1000],
        }
        try:
            with self.engine.begin() as connection:
                scoring_id = int(connection.execute(insert(Scoring).returning(Scoring.id), scoring).scalar_one())
                columns = ["scoring_id", *rows]
                values = list(zip([scoring_id] * scoring["account_count"], *rows.values()))
                if connection.dialect.name == "postgresql":
                    self._copy_rows(connection, columns, values)
                elif connection.dialect.name == "sqlite":  # one executemany of tuples, as the driver takes them
                    marks = ", ".join("?" for _ in columns)
                    names = ", ".join(f'"{c}"' for c in columns)  # our own column names, never user text
                    connection.exec_driver_sql(f"INSERT INTO scored_accounts ({names}) VALUES ({marks})", values)
                else:
                    connection.execute(insert(SCORED), [dict(zip(columns, row)) for row in values])
                members = _family_members(scoring_id, rows, accounts)
                if members:
                    connection.execute(insert(FamilyMember), members)
                # Fresh statistics, so the planner reads a large scoring through the covering index, not row by row.
                connection.exec_driver_sql("ANALYZE scored_accounts")
                connection.execute(
                    insert(AuditEvent),
                    {
                        "at": scoring["published_at"],
                        "user": scoring["published_by"],
                        "action": "publish",
                        "account_id": None,
                        "before": None,
                        "after": {
                            "scoring_id": scoring_id,
                            "accounts": scoring["account_count"],
                            "model_version": scoring["model_version"],
                            "as_of": stamp.isoformat(),
                        },
                    },
                )
            if self.engine.dialect.name == "postgresql":
                # Marks the new rows all-visible, so book pages read the covering index alone (VACUUM cannot run
                # inside the publishing transaction); the scoring is already committed.
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.exec_driver_sql("VACUUM (ANALYZE) scored_accounts")
        except OperationalError as error:
            raise self._unavailable(error) from None
        return scoring_id

    @staticmethod
    def _copy_rows(connection, columns: list[str], values: list[tuple]) -> None:
        """PostgreSQL's COPY of the rows, through the psycopg connection SQLAlchemy holds."""
        cursor = connection.connection.driver_connection.cursor()
        names = ", ".join(f'"{c}"' for c in columns)  # our own column names, never user text
        with cursor.copy(f"COPY scored_accounts ({names}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)

    @staticmethod
    def _check_index_entries(rows: dict[str, list[Any]]) -> None:
        """InvalidInput for an account whose indexed text would not fit one PostgreSQL index entry (pathological
        lengths only: the check costs nothing unless the longest values together could exceed it)."""
        indexed = ("account_id", "industry", "owner", "search_text")
        longest = sum(max((len(v) for v in rows[name] if v), default=0) for name in indexed)
        if longest * 4 <= INDEX_ENTRY_BYTES:  # UTF-8 takes at most 4 bytes a character
            return
        for position, values in enumerate(zip(*(rows[name] for name in indexed))):
            size = sum(len(value.encode()) for value in values if value)
            if size > INDEX_ENTRY_BYTES:
                raise InvalidInput(
                    f"account {rows['account_id'][position][:60]!r}: its id, industry, owner and name take {size:,} "
                    f"bytes together, more than the store indexes ({INDEX_ENTRY_BYTES:,}); shorten them in the export"
                )

    def scored_rows(
        self, scores: pd.DataFrame, accounts: pd.DataFrame | None, open_pipeline: pd.Series | None = None
    ) -> dict[str, list[Any]]:
        """The columns `publish` stores for these scores, one Python list each, validated (InvalidInput names the
        column and the fix); nothing is written."""
        missing = [c for c in REQUIRED_SCORE_COLUMNS if c not in scores.columns]
        if missing:
            raise InvalidInput(
                f"the scores lack column(s) {', '.join(missing)}; publish a scores file written by `tiering score`"
            )
        if scores.empty:
            raise InvalidInput("the scores hold no accounts; nothing to publish")
        frame = scores.reset_index(drop=True)
        ids = frame["account_id"]
        if ids.isna().any() or (ids.astype("str").str.strip() == "").any():
            raise InvalidInput(f"scores column account_id is empty in row {int(ids.isna().idxmax()) + 2}")
        frame["account_id"] = ids.astype("str")
        duplicated = frame["account_id"][frame["account_id"].duplicated()]
        if len(duplicated):
            raise InvalidInput(f"scores column account_id repeats {duplicated.iloc[0]!r}; one row per account")
        for column in ("tier", "learned_tier", "rule_tier", "family_tier"):
            if column in frame:
                values = frame[column].where(frame[column].notna(), None)
                bad = values.notna() & ~values.isin(TIERS)
                if column == "tier":
                    bad = bad | values.isna()
                if bad.any():
                    raise InvalidInput(
                        f"scores column {column}: {values[bad].iloc[0]!r} is not a tier; use one of {', '.join(TIERS)}"
                    )
        if accounts is not None and "account_id" in accounts:
            known = [c for c in ACCOUNT_COLUMNS if c in accounts.columns and c not in frame.columns]
            if known:
                lookup = accounts.drop_duplicates("account_id").set_index(accounts["account_id"].astype("str"))
                for column in known:
                    frame[column] = frame["account_id"].map(lookup[column])
        if open_pipeline is not None:  # accounts the export does not hold stay empty, not 0
            amounts = open_pipeline[~open_pipeline.index.duplicated()]
            frame["open_pipeline"] = frame["account_id"].map(amounts.set_axis(amounts.index.astype("str")))
        rows: dict[str, list[Any]] = {}
        for name in STORED_COLUMNS:
            if name not in frame.columns:
                rows[name] = [False] * len(frame) if name == "intent_surge" else [None] * len(frame)
            elif name == "intent_surge":
                rows[name] = _bool_column(frame[name])
            elif SCORED.c[name].type.python_type is float:
                rows[name] = _number_column(frame[name], name)
            else:
                rows[name] = _text_column(frame[name])
        rows["search_text"] = [
            f"{account} {name or ''}".casefold()[:SEARCH_LENGTH]
            for account, name in zip(rows["account_id"], rows["account_name"])
        ]
        self._check_index_entries(rows)
        for name, values in rows.items():  # the same limits on every database (SQLite would store longer text)
            limit = getattr(SCORED.c[name].type, "length", None)
            texts = [value for value in values if isinstance(value, str)]
            if limit and texts and max(map(len, texts)) > limit:
                longest = max(texts, key=len)
                raise InvalidInput(
                    f"column {name}: a value of {len(longest):,} characters (starting {longest[:40]!r}) is longer "
                    f"than the store keeps ({limit}); shorten it in the export"
                )
        return rows

    # ---- reading scorings -------------------------------------------------------------------------------------

    def scorings(self) -> list[ScoringInfo]:
        """Every published scoring, newest first."""
        with self.engine.connect() as connection:
            found = connection.execute(select(Scoring).order_by(Scoring.id.desc())).all()
        return [_scoring_info(Scoring(**row._mapping)) for row in found]

    def latest_scoring(self) -> ScoringInfo | None:
        """The scoring the pages show: the last one published; None before the first."""
        return self.scoring(None)

    def scoring(self, scoring_id: int | None) -> ScoringInfo | None:
        """One published scoring by id (None: the latest); None when there is no such scoring."""
        query = select(Scoring)
        query = query.where(Scoring.id == scoring_id) if scoring_id is not None else query.order_by(Scoring.id.desc())
        with self.engine.connect() as connection:
            row = connection.execute(query.limit(1)).first()
        return None if row is None else _scoring_info(Scoring(**row._mapping))

    def _require_scoring(self, scoring_id: int | None) -> ScoringInfo:
        found = self.scoring(scoring_id)
        if found is None:
            raise InvalidInput(
                "no scoring has been published yet; run `tiering publish SCORES` or `tiering score ... --publish`"
                if scoring_id is None
                else f"no published scoring has id {scoring_id}"
            )
        return found

    def scores_frame(self, scoring_id: int | None = None, where: BookFilter | None = None) -> pd.DataFrame:
        """The scoring's accounts as a frame of the stored columns (the book's CSV download), filtered, by id."""
        scoring = self._require_scoring(scoring_id)
        columns = [SCORED.c[name] for name in STORED_COLUMNS]
        query = select(*columns).where(*self._conditions(scoring.id, where or BookFilter(), today=now().date()))
        with self.engine.connect() as connection:
            found = connection.execute(query.order_by(ScoredAccount.account_id)).all()
        return pd.DataFrame([tuple(row) for row in found], columns=list(STORED_COLUMNS))

    def _conditions(self, scoring_id: int, where: BookFilter, today: date) -> list[ColumnElement[bool]]:
        account = ScoredAccount
        conditions: list[ColumnElement[bool]] = [account.scoring_id == scoring_id]
        for column, value, name in (
            (account.tier, where.tier, "tier"),
            (account.learned_tier, where.learned_tier, "learned_tier"),
            (account.rule_tier, where.rule_tier, "rule_tier"),
        ):
            tiers = _tiers(value, name)
            if tiers is not None:
                conditions.append(column.in_(tiers))
        if where.q and where.q.strip():
            conditions.append(account.search_text.like(_like_pattern(where.q.strip()), escape="\\"))
        if where.industry:
            conditions.append(account.industry == where.industry)
        if where.owner:
            conditions.append(account.owner == where.owner)
        if where.family:
            conditions.append(account.family_id == where.family)
        if where.disagree is not None:
            differ = and_(
                account.learned_tier.is_not(None),
                account.rule_tier.is_not(None),
                account.learned_tier != account.rule_tier,
            )
            conditions.append(differ if where.disagree else ~differ)
        if where.surge is not None:
            conditions.append(account.intent_surge.is_(where.surge))
        if where.pinned is not None:
            pinned = account.account_id.in_(self._active_pins_query(today).with_only_columns(Pin.account_id))
            conditions.append(pinned if where.pinned else ~pinned)
        if where.flagged is not None:
            flagged = account.account_id.in_(select(Flag.account_id).where(Flag.resolved_at.is_(None)))
            conditions.append(flagged if where.flagged else ~flagged)
        return conditions

    def book_page(
        self,
        where: BookFilter | None = None,
        *,
        sort: str = "learned_score",
        direction: SortDirection | str = SortDirection.desc,
        page: int = 1,
        page_size: int = 50,
        scoring_id: int | None = None,
    ) -> BookPage:
        """One page of the book, filtered and sorted in the database (missing values sort last, ties by id).

        `sort` must be one of SORTABLE and `direction` asc or desc (else InvalidInput); `page` counts from 1 and
        a page past the end is empty; `page_size` is 1 to MAX_PAGE_SIZE. Rows carry `pinned` (the tier an active
        pin holds, else None) and `flags` (open flags).
        """
        if sort not in SORTABLE:
            raise InvalidInput(f"sort: {sort!r} is not a book column; use one of {', '.join(SORTABLE)}")
        try:
            direction = SortDirection(direction)
        except ValueError:
            raise InvalidInput(f"direction: {direction!r}; use asc or desc") from None
        if not isinstance(page, int) or page < 1:
            raise InvalidInput(f"page: {page!r}; use a whole number from 1")
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size: {page_size!r}; use a whole number from 1 to {MAX_PAGE_SIZE}")
        scoring = self._require_scoring(scoring_id)
        today = now().date()
        conditions = self._conditions(scoring.id, where or BookFilter(), today)
        key = SCORED.c[sort]
        order = (key.asc() if direction is SortDirection.asc else key.desc()).nulls_last()
        # The page's ids first (from the covering index where the sort allows), then only those wide rows.
        page_ids = (
            select(ScoredAccount.account_id)
            .where(*conditions)
            .order_by(order, ScoredAccount.account_id.asc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        columns = [SCORED.c[name] for name in STORED_COLUMNS]
        summary = (
            select(ScoredAccount.tier, func.count(), func.coalesce(func.sum(ScoredAccount.budget), 0.0))
            .where(*conditions)
            .group_by(ScoredAccount.tier)
        )
        with self.engine.connect() as connection:
            ids = list(connection.execute(page_ids).scalars())
            wide = select(*columns).where(ScoredAccount.scoring_id == scoring.id, ScoredAccount.account_id.in_(ids))
            by_id = {row.account_id: dict(row._mapping) for row in connection.execute(wide)} if ids else {}
            found = [by_id[account] for account in ids]
            totals = connection.execute(summary).all()
            pins = self._pins_of(connection, ids, today)
            flags = self._open_flag_counts(connection, ids)
        for row in found:
            row["pinned"] = pins.get(row["account_id"])
            row["flags"] = flags.get(row["account_id"], 0)
        counts = {tier: 0 for tier in TIERS}
        budgets = {tier: 0.0 for tier in TIERS}
        for tier, count, budget in totals:
            counts[tier] = int(count)
            budgets[tier] = float(budget or 0.0)
        return BookPage(scoring, found, sum(counts.values()), page, page_size, counts, budgets)

    def _pins_of(self, connection, account_ids: list[str], today: date) -> dict[str, str]:
        if not account_ids:
            return {}
        query = self._active_pins_query(today).where(Pin.account_id.in_(account_ids))
        return {row.account_id: row.tier for row in connection.execute(query)}

    @staticmethod
    def _open_flag_counts(connection, account_ids: list[str]) -> dict[str, int]:
        if not account_ids:
            return {}
        query = (
            select(Flag.account_id, func.count())
            .where(Flag.account_id.in_(account_ids), Flag.resolved_at.is_(None))
            .group_by(Flag.account_id)
        )
        return {account: int(count) for account, count in connection.execute(query)}

    def filter_values(self, column: str, scoring_id: int | None = None) -> list[str]:
        """The distinct values of `industry`, `owner` or `country` in a scoring, sorted (for the filter menus)."""
        if column not in ("industry", "owner", "country"):
            raise InvalidInput(f"{column!r} has no value list; use industry, owner or country")
        scoring = self._require_scoring(scoring_id)
        key = SCORED.c[column]
        query = select(key).where(ScoredAccount.scoring_id == scoring.id, key.is_not(None)).distinct().order_by(key)
        with self.engine.connect() as connection:
            return [value for (value,) in connection.execute(query)]

    def account(self, account_id: str, scoring_id: int | None = None) -> AccountDetail | None:
        """The account in a scoring (default the latest) with its pins, flags and audit; None when not in it."""
        scoring = self._require_scoring(scoring_id)
        columns = [SCORED.c[name] for name in STORED_COLUMNS]
        query = select(*columns).where(ScoredAccount.scoring_id == scoring.id, ScoredAccount.account_id == account_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        pins = self.pins(account_id)
        today = now().date()
        active = next((pin for pin in pins if pin.active_on(today)), None)
        return AccountDetail(
            scoring,
            dict(row._mapping),
            active,
            pins,
            self.flags(account_id),
            self.audit(account_id=account_id, limit=AUDIT_PAGE_SIZE)[0],
        )

    def family(self, account_id: str, scoring_id: int | None = None) -> list[dict[str, Any]]:
        """The family of an account in a scoring (default the latest), top account first, each entity below its
        parent (depth-first, by id): account_id, account_name, parent_account_id, depth, tier, engagement_score,
        expected_revenue, open_pipeline, budget. Empty when the scoring holds no families or the account is not in
        it."""
        scoring = self._require_scoring(scoring_id)
        member = FamilyMember
        family_of = select(member.family_id).where(member.scoring_id == scoring.id, member.account_id == account_id)
        query = (
            select(
                member.account_id,
                member.parent_account_id,
                member.depth,
                ScoredAccount.account_name,
                ScoredAccount.tier,
                ScoredAccount.engagement_score,
                ScoredAccount.expected_revenue,
                ScoredAccount.open_pipeline,
                ScoredAccount.budget,
            )
            .join(
                ScoredAccount,
                and_(ScoredAccount.scoring_id == member.scoring_id, ScoredAccount.account_id == member.account_id),
            )
            .where(member.scoring_id == scoring.id, member.family_id == family_of.scalar_subquery())
        )
        with self.engine.connect() as connection:
            found = [dict(row._mapping) for row in connection.execute(query)]
        children: dict[str | None, list[dict[str, Any]]] = {}
        for row in sorted(found, key=lambda row: row["account_id"]):
            children.setdefault(row["parent_account_id"], []).append(row)
        known = {row["account_id"] for row in found}
        ordered: list[dict[str, Any]] = []

        def visit(row: dict[str, Any]) -> None:
            ordered.append(row)
            for child in children.get(row["account_id"], []):
                visit(child)

        for row in found:
            if row["parent_account_id"] not in known:  # the top account (its parent link, if any, was cut)
                visit(row)
        return ordered if len(ordered) > 1 else []

    def tier_history(self, account_id: str) -> pd.DataFrame:
        """The account across every published scoring, oldest first: scoring_id, scoring_as_of, published_at and
        every stored column (so "what changed" can be said between consecutive rows)."""
        columns = [SCORED.c[name] for name in STORED_COLUMNS]
        query = (
            select(
                Scoring.id.label("scoring_id"),
                Scoring.as_of.label("scoring_as_of"),
                Scoring.published_at,
                *columns,
            )
            .join(Scoring, Scoring.id == ScoredAccount.scoring_id)
            .where(ScoredAccount.account_id == account_id)
            .order_by(Scoring.id)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query)
            names = list(found.keys())
            return pd.DataFrame([tuple(row) for row in found], columns=names)

    def agreement_matrix(self, scoring_id: int | None = None) -> pd.DataFrame:
        """Accounts by learned tier (rows) and rule tier (columns), every tier present; counts from the database."""
        scoring = self._require_scoring(scoring_id)
        query = (
            select(ScoredAccount.learned_tier, ScoredAccount.rule_tier, func.count())
            .where(ScoredAccount.scoring_id == scoring.id)
            .group_by(ScoredAccount.learned_tier, ScoredAccount.rule_tier)
        )
        matrix = pd.DataFrame(0, index=pd.Index(TIERS, name="learned_tier"), columns=pd.Index(TIERS, name="rule_tier"))
        with self.engine.connect() as connection:
            for learned, rule, count in connection.execute(query):
                if learned in TIERS and rule in TIERS:
                    matrix.loc[learned, rule] = int(count)
        return matrix

    def map_points(self, scoring_id: int | None = None, tier: str | Sequence[str] | None = None) -> dict[str, list]:
        """The priority map's points as compact columns: account_id, account_name, fit (business_fit_score),
        engagement (engagement_score), tier, surge; missing scores are 0."""
        scoring = self._require_scoring(scoring_id)
        query = select(
            ScoredAccount.account_id,
            ScoredAccount.account_name,
            func.coalesce(ScoredAccount.business_fit_score, 0.0),
            func.coalesce(ScoredAccount.engagement_score, 0.0),
            ScoredAccount.tier,
            ScoredAccount.intent_surge,
        ).where(*self._conditions(scoring.id, BookFilter(tier=tier), now().date()))
        with self.engine.connect() as connection:
            found = connection.execute(query.order_by(ScoredAccount.account_id)).all()
        names = ("account_id", "account_name", "fit", "engagement", "tier", "surge")
        points: dict[str, list] = {name: [] for name in names}
        for row in found:
            for name, value in zip(names, row):
                points[name].append(value)
        points["surge"] = [bool(value) for value in points["surge"]]
        return points

    # ---- pins and flags ---------------------------------------------------------------------------------------

    @staticmethod
    def _active_pins_query(day: date) -> Select:
        """Pins holding on `day`: not removed, not expired, and the latest of their account."""
        latest = select(func.max(Pin.id)).where(Pin.removed_at.is_(None)).group_by(Pin.account_id).scalar_subquery()
        return select(Pin).where(
            Pin.id.in_(latest), Pin.removed_at.is_(None), or_(Pin.expires.is_(None), Pin.expires >= day)
        )

    def pins_revision(self) -> int:
        """A number that changes whenever a pin is made or removed: a cache of active pins (the service's `/tier`)
        is fresh while it is unchanged and the day has not changed (pins expire at the end of their day)."""
        query = select(func.max(AuditEvent.id)).where(AuditEvent.action.in_(("pin", "unpin")))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def published_families(self) -> pd.DataFrame:
        """The family columns of the latest published scoring, for the accounts it placed in a family: account_id,
        family_id, family_tier, family_learned_score, family_expected_revenue, family_engagement_share (no rows
        when nothing is published or the scoring has no families)."""
        names = list(PUBLISHED_FAMILY_COLUMNS)
        scoring = self.latest_scoring()
        if scoring is None:
            return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
        query = select(*[SCORED.c[name] for name in names]).where(
            ScoredAccount.scoring_id == scoring.id, ScoredAccount.family_id.is_not(None)
        )
        with self.engine.connect() as connection:
            found = [tuple(row) for row in connection.execute(query)]
        return pd.DataFrame(found, columns=names)

    def active_pins(self, as_of: date | datetime | None = None) -> pd.DataFrame:
        """The pins holding on `as_of` (default today; a pin holds through its expiry date), one per account, as
        the override frame scoring applies: account_id, tier, reason, owner, plus expires and pin_id."""
        day = (as_of.date() if isinstance(as_of, datetime) else as_of) or now().date()
        with self.engine.connect() as connection:
            found = connection.execute(self._active_pins_query(day).order_by(Pin.account_id)).all()
        return pd.DataFrame(
            [(p.account_id, p.tier, p.reason, p.owner, p.expires, p.id) for p in found],
            columns=["account_id", "tier", "reason", "owner", "expires", "pin_id"],
        ).astype({"account_id": "str", "tier": "str", "reason": "str", "owner": "str"})

    def pins(self, account_id: str) -> list[PinInfo]:
        """Every pin the account ever had, newest first (removed and expired ones included)."""
        with self.engine.connect() as connection:
            found = connection.execute(select(Pin).where(Pin.account_id == account_id).order_by(Pin.id.desc())).all()
        return [_pin_info(row) for row in found]

    def pin(self, account_id: str, tier: str, reason: str, expires: date | str | None, user: str) -> PinInfo:
        """Pin an account to a tier (editor or admin). The new pin holds; the one before, if any, is superseded.

        `reason` is required; `expires` (a date or ISO text, the last day the pin holds) must not be in the past.
        The audit gets one `pin` event with the pin before and after. Two editors pinning at once both land in
        the audit; the later pin holds (AccountDetail.pin says which).
        """
        if tier not in TIERS:
            raise InvalidInput(f"tier: {tier!r} is not a tier; use one of {', '.join(TIERS)}")
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("reason: say why the account is pinned (required)")
        if len(reason) > 2000:
            raise InvalidInput("reason: keep it under 2,000 characters")
        expiry = self._expiry(expires)
        stamp = now()
        with self._writing() as connection:
            self._require_user(connection, user, CAN_PIN, "pin accounts")
            self._require_account(connection, account_id)
            before = self._current_pin(connection, account_id)
            pin_id = int(
                connection.execute(
                    insert(Pin).returning(Pin.id),
                    {
                        "account_id": account_id,
                        "tier": tier,
                        "reason": reason,
                        "owner": user,
                        "created_at": stamp,
                        "expires": expiry,
                    },
                ).scalar_one()
            )
            connection.execute(
                update(Pin)
                .where(Pin.account_id == account_id, Pin.id < pin_id, Pin.removed_at.is_(None))
                .values(removed_at=stamp, removed_by=user)
            )
            pinned = PinInfo(pin_id, account_id, tier, reason, user, stamp, expiry, None, None)
            self._audit(connection, stamp, user, "pin", account_id, _pin_record(before), _pin_record(pinned))
        return pinned

    def unpin(self, account_id: str, user: str) -> PinInfo | None:
        """Remove the account's pin (editor or admin); the pin removed, or None when none held (nothing audited)."""
        stamp = now()
        with self._writing() as connection:
            self._require_user(connection, user, CAN_PIN, "unpin accounts")
            before = self._current_pin(connection, account_id)
            if before is None:
                return None
            connection.execute(
                update(Pin)
                .where(Pin.account_id == account_id, Pin.removed_at.is_(None))
                .values(removed_at=stamp, removed_by=user)
            )
            self._audit(connection, stamp, user, "unpin", account_id, _pin_record(before), None)
        return before

    def flag(self, account_id: str, comment: str, user: str) -> FlagInfo:
        """'This score looks wrong' with a comment (any active user); audited as a `flag` event."""
        comment = (comment or "").strip()
        if not comment:
            raise InvalidInput("comment: say what looks wrong (required)")
        if len(comment) > 2000:
            raise InvalidInput("comment: keep it under 2,000 characters")
        stamp = now()
        with self._writing() as connection:
            self._require_user(connection, user, tuple(Role), "flag accounts")
            self._require_account(connection, account_id)
            latest = connection.execute(select(func.max(Scoring.id))).scalar()
            flag_id = int(
                connection.execute(
                    insert(Flag).returning(Flag.id),
                    {
                        "account_id": account_id,
                        "comment": comment,
                        "created_by": user,
                        "created_at": stamp,
                        "scoring_id": latest,
                    },
                ).scalar_one()
            )
            self._audit(connection, stamp, user, "flag", account_id, None, {"flag_id": flag_id, "comment": comment})
        return FlagInfo(flag_id, account_id, comment, user, stamp, latest, None)

    def flags(self, account_id: str | None = None, open_only: bool = False) -> list[FlagInfo]:
        """Flags, newest first: of one account, or all; only unresolved ones with `open_only`."""
        query = select(Flag).order_by(Flag.id.desc())
        if account_id is not None:
            query = query.where(Flag.account_id == account_id)
        if open_only:
            query = query.where(Flag.resolved_at.is_(None))
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
        return [
            FlagInfo(r.id, r.account_id, r.comment, r.created_by, r.created_at, r.scoring_id, r.resolved_at)
            for r in found
        ]

    def audit(
        self,
        user: str | None = None,
        account_id: str | None = None,
        limit: int = AUDIT_PAGE_SIZE,
        offset: int = 0,
    ) -> tuple[list[AuditInfo], int]:
        """Audit events, newest first, filtered by user and/or account; (one page of events, total matching)."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE or not isinstance(offset, int) or offset < 0:
            raise InvalidInput(f"limit 1 to {MAX_PAGE_SIZE} and offset from 0, not {limit!r} and {offset!r}")
        conditions = []
        if user:
            conditions.append(AuditEvent.user == user)
        if account_id:
            conditions.append(AuditEvent.account_id == account_id)
        query = select(AuditEvent).where(*conditions).order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
        with self.engine.connect() as connection:
            found = connection.execute(query).all()
            total = connection.execute(select(func.count()).select_from(AuditEvent).where(*conditions)).scalar_one()
        events = [AuditInfo(r.id, r.at, r.user, r.action, r.account_id, r.before, r.after) for r in found]
        return events, int(total)

    @staticmethod
    def _expiry(expires: date | str | None) -> date | None:
        if expires is None or expires == "":
            return None
        if isinstance(expires, datetime):
            expiry = expires.date()
        elif isinstance(expires, date):
            expiry = expires
        else:
            try:
                expiry = date.fromisoformat(str(expires).strip())
            except ValueError:
                raise InvalidInput(f"expires: {expires!r} is not a date; use YYYY-MM-DD, or leave it empty") from None
        if expiry < now().date():
            raise InvalidInput(f"expires: {expiry.isoformat()} is in the past; give a later date or none")
        return expiry

    def _current_pin(self, connection, account_id: str) -> PinInfo | None:
        query = self._active_pins_query(now().date()).where(Pin.account_id == account_id)
        row = connection.execute(query).first()
        return None if row is None else _pin_info(row)

    @staticmethod
    def _require_account(connection, account_id: str) -> None:
        latest = connection.execute(select(func.max(Scoring.id))).scalar()
        if latest is None:
            raise InvalidInput("no scoring has been published yet; publish one before pinning or flagging")
        known = connection.execute(
            select(literal(1)).where(ScoredAccount.scoring_id == latest, ScoredAccount.account_id == account_id)
        ).first()
        if known is None:
            raise InvalidInput(f"account {account_id!r} is not in the latest published scoring")

    @staticmethod
    def _require_user(connection, name: str, roles: Iterable[Role], doing: str) -> None:
        row = connection.execute(select(User.role, User.disabled).where(User.name == name)).first()
        if row is None or row.disabled:
            raise NotAllowed(f"user {name!r} is unknown or disabled and cannot {doing}")
        if Role(row.role) not in tuple(roles):
            raise NotAllowed(f"user {name!r} is a {row.role} and cannot {doing}; an editor or admin can")

    @staticmethod
    def _audit(connection, at: datetime, user: str, action: str, account_id: str | None, before, after) -> None:
        connection.execute(
            insert(AuditEvent),
            {"at": at, "user": user, "action": action, "account_id": account_id, "before": before, "after": after},
        )

    def _writing(self):
        """A transaction; an unreachable database becomes StoreUnavailable (nothing written)."""
        store = self

        class _Transaction:
            def __enter__(self):
                try:
                    self.context = store.engine.begin()
                    return self.context.__enter__()
                except OperationalError as error:
                    raise store._unavailable(error) from None

            def __exit__(self, kind, error, traceback):
                try:
                    return self.context.__exit__(kind, error, traceback)
                except OperationalError as failure:
                    raise store._unavailable(failure) from None

        return _Transaction()

    # ---- business configurations and scenarios ---------------------------------------------------------------

    def config_versions(self) -> list[ConfigVersionInfo]:
        """Every published business configuration, newest first, each with its changes against the one before."""
        from configuration.tiering import dict_changes

        with self.engine.connect() as connection:
            found = connection.execute(select(ConfigVersion).order_by(ConfigVersion.id)).all()
        versions: list[ConfigVersionInfo] = []
        previous: dict[str, Any] | None = None
        for row in found:
            changes: dict[str, dict[str, Any]] = (
                dict_changes(previous, row.configuration) if previous is not None else {}
            )
            versions.append(
                ConfigVersionInfo(
                    row.id, row.configuration, row.note, row.published_by, row.published_at, row.restored_from, changes
                )
            )
            previous = row.configuration
        return versions[::-1]

    def active_config(self) -> ConfigVersionInfo | None:
        """The business configuration in force: the latest published version; None before the first."""
        versions = self.config_versions()
        return versions[0] if versions else None

    def publish_config(
        self,
        configuration: dict[str, Any],
        note: str,
        user: str,
        *,
        check_role: bool = True,
        restored_from: int | None = None,
    ) -> ConfigVersionInfo:
        """A new active business configuration (an admin's, when `check_role`; the CLI runs as the machine's
        operator), audited with what it changed against the version before."""
        from configuration.tiering import dict_changes

        note = (note or "").strip()
        if len(note) > 2000:
            raise InvalidInput("note: keep it under 2,000 characters")
        stamp = now()
        with self._writing() as connection:
            if check_role:
                self._require_user(connection, user, CAN_PUBLISH_CONFIG, "publish configurations")
            previous = connection.execute(
                select(ConfigVersion.configuration).order_by(ConfigVersion.id.desc()).limit(1)
            ).scalar()
            version_id = int(
                connection.execute(
                    insert(ConfigVersion).returning(ConfigVersion.id),
                    {
                        "configuration": configuration,
                        "note": note,
                        "published_by": user,
                        "published_at": stamp,
                        "restored_from": restored_from,
                    },
                ).scalar_one()
            )
            changes = dict_changes(previous, configuration) if previous is not None else {}
            action = "config_restore" if restored_from is not None else "config_publish"
            after = {"version": version_id, "note": note, "changes": changes, "restored_from": restored_from}
            self._audit(connection, stamp, user, action, None, None, after)
        return ConfigVersionInfo(version_id, configuration, note, user, stamp, restored_from, changes)

    def restore_config(self, version: int, user: str, *, check_role: bool = True) -> ConfigVersionInfo:
        """Publish an earlier version again, as a new version that says which one it restores."""
        with self.engine.connect() as connection:
            row = connection.execute(select(ConfigVersion).where(ConfigVersion.id == version)).first()
        if row is None:
            known = [str(v.id) for v in self.config_versions()]
            raise InvalidInput(
                f"no published configuration has version {version}; "
                + (f"the versions are {', '.join(known)}" if known else "none has been published yet")
            )
        return self.publish_config(
            row.configuration, f"restores version {version}", user, check_role=check_role, restored_from=version
        )

    def save_scenario(
        self,
        name: str,
        configuration: dict[str, Any],
        result: dict[str, Any] | None,
        user: str,
        *,
        base_version_id: int | None = None,
        scoring_id: int | None = None,
        check_role: bool = True,
    ) -> int:
        """Record a scenario (a draft's keys) and its what-if result; an editor's or admin's, when `check_role`."""
        name = (name or "").strip()[:200] or "scenario"
        stamp = now()
        with self._writing() as connection:
            if check_role:
                self._require_user(connection, user, CAN_PIN, "save scenarios")
            scenario_id = int(
                connection.execute(
                    insert(Scenario).returning(Scenario.id),
                    {
                        "name": name,
                        "configuration": configuration,
                        "base_version_id": base_version_id,
                        "scoring_id": scoring_id,
                        "result": result,
                        "created_by": user,
                        "created_at": stamp,
                        "updated_at": stamp,
                    },
                ).scalar_one()
            )
            self._audit(connection, stamp, user, "scenario", None, None, {"scenario": scenario_id, "name": name})
        return scenario_id

    def scenarios(self) -> list[ScenarioInfo]:
        """Every saved scenario, newest first."""
        with self.engine.connect() as connection:
            found = connection.execute(select(Scenario).order_by(Scenario.id.desc())).all()
        return [
            ScenarioInfo(
                r.id,
                r.name,
                r.configuration,
                r.base_version_id,
                r.scoring_id,
                r.result,
                r.created_by,
                r.created_at,
                r.updated_at,
            )
            for r in found
        ]

    def scenario(self, scenario_id: int) -> ScenarioInfo | None:
        return next((found for found in self.scenarios() if found.id == scenario_id), None)

    # ---- users ------------------------------------------------------------------------------------------------

    def add_user(
        self, name: str, role: Role | str, password: str, by: str = "cli", local_only: bool = False
    ) -> UserInfo:
        """A new user with an Argon2-hashed password; InvalidInput for a taken or blank name or a short password.

        A `local_only` user signs in only from a loopback client (see `authenticate`)."""
        name = (name or "").strip()
        if not name or len(name) > 200 or any(not c.isprintable() for c in name):
            raise InvalidInput("user name: give 1 to 200 printable characters")
        try:
            role = Role(role)
        except ValueError:
            raise InvalidInput(f"role: {role!r}; use one of {', '.join(Role)}") from None
        if len(password or "") < 8:
            raise InvalidInput("password: use at least 8 characters")
        stamp = now()
        try:
            with self._writing() as connection:
                connection.execute(
                    insert(User),
                    {
                        "name": name,
                        "role": role.value,
                        "password_hash": HASHER.hash(password),
                        "disabled": False,
                        "local_only": local_only,
                        "created_at": stamp,
                        "failed_logins": 0,
                    },
                )
                added = {"user": name, "role": role.value, "local_only": local_only}
                self._audit(connection, stamp, by, "user_add", None, None, added)
        except IntegrityError:
            raise InvalidInput(f"user name: {name!r} is taken; choose another") from None
        return UserInfo(name, role, False, stamp, None, 0, None, local_only)

    def user(self, name: str) -> UserInfo | None:
        """The user by name (disabled ones too), or None."""
        with self.engine.connect() as connection:
            row = connection.execute(select(User).where(User.name == name)).first()
        return None if row is None else _user_info(User(**row._mapping))

    def users(self) -> list[UserInfo]:
        """Every user, by name."""
        with self.engine.connect() as connection:
            found = connection.execute(select(User).order_by(User.name)).all()
        return [_user_info(User(**row._mapping)) for row in found]

    def set_password(self, name: str, password: str, by: str) -> None:
        """Replace a user's password (the user themself, or an admin), which ends their sessions; InvalidInput for an
        unknown user or a password under 8 characters. Audited without either password."""
        if len(password or "") < 8:
            raise InvalidInput("password: use at least 8 characters")
        stamp = now()
        with self._writing() as connection:
            changed = connection.execute(
                update(User)
                .where(User.name == name)
                .values(password_hash=HASHER.hash(password), failed_logins=0, session_epoch=User.session_epoch + 1)
            ).rowcount
            if not changed:
                raise InvalidInput(f"no user named {name!r}; `tiering users list` shows them")
            self._audit(connection, stamp, by, "user_password", None, None, {"user": name})

    def end_sessions(self, name: str) -> None:
        """End every session of the user (signing out): their session cookies no longer sign anyone in."""
        with self._writing() as connection:
            connection.execute(update(User).where(User.name == name).values(session_epoch=User.session_epoch + 1))

    def disable_user(self, name: str, by: str = "cli") -> UserInfo:
        """Disable a user (they can no longer sign in or write; their sessions end); InvalidInput when there is no
        such user."""
        stamp = now()
        with self._writing() as connection:
            changed = connection.execute(
                update(User).where(User.name == name).values(disabled=True, session_epoch=User.session_epoch + 1)
            ).rowcount
            if not changed:
                raise InvalidInput(f"no user named {name!r}; `tiering users list` shows them")
            self._audit(connection, stamp, by, "user_disable", None, {"user": name}, {"user": name, "disabled": True})
        found = self.user(name)
        assert found is not None
        return found

    def authenticate(self, name: str, password: str, from_loopback: bool = False) -> UserInfo | None:
        """The user when the name and password match an enabled user, else None; a `local_only` user matches
        only when the caller says the client is on this machine (`from_loopback`), and otherwise fails exactly
        as a wrong password does.

        A failure counts against the user (`failed_logins`, `last_failed_at`, which the sign-in page uses to
        slow the next try); a success resets the count. An unknown name costs one hash too, so timing does not
        say which names exist.
        """
        hasher = HASHER
        with self.engine.connect() as connection:
            row = connection.execute(select(User).where(User.name == name)).first()
        if row is None:
            hasher.hash(password or "")
            return None
        try:
            hasher.verify(row.password_hash, password or "")
            matched = not row.disabled and (from_loopback or not row.local_only)
        except (VerificationError, InvalidHashError):
            matched = False
        stamp = now()
        with self._writing() as connection:
            if matched:
                values: dict[str, Any] = {"failed_logins": 0, "last_login_at": stamp}
                if hasher.check_needs_rehash(row.password_hash):
                    values["password_hash"] = hasher.hash(password)
            else:
                values = {"failed_logins": User.failed_logins + 1, "last_failed_at": stamp}
            connection.execute(update(User).where(User.name == name).values(**values))
        return self.user(name) if matched else None


def generated_password() -> str:
    """A password to print once: 20 URL-safe random characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def _family_members(scoring_id: int, rows: dict[str, list[Any]], accounts: pd.DataFrame | None) -> list[dict]:
    """The family_members rows of a published scoring whose scores carry family_id: each account's parent (from
    the accounts table, links that cannot be followed left out) and depth below its family's top account."""
    families = rows.get("family_id")
    if not families or not any(families):
        return []
    ids = rows["account_id"]
    parents: list[Any] = [None] * len(ids)
    if accounts is not None and "parent_account_id" in accounts:
        known = accounts.drop_duplicates("account_id")
        lookup = pd.Series(
            known["parent_account_id"].to_numpy(dtype=object), index=known["account_id"].astype("str").to_numpy()
        )
        mapped = pd.Series(ids, dtype=object).map(lookup)
        parents = [None if pd.isna(value) else str(value) for value in mapped]
    resolved = resolve_families(ids, parents)
    return [
        {
            "scoring_id": scoring_id,
            "account_id": account,
            "parent_account_id": ids[parent] if parent >= 0 else None,
            "family_id": family or account,
            "depth": int(depth),
        }
        for account, parent, family, depth in zip(ids, resolved.parent, families, resolved.depth)
    ]
