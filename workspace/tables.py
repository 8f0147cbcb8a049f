"""The workspace schema: SQLAlchemy 2 declarative models, one class per table.

Every time is naive UTC. Scores keep full double precision (`Double`), and the per-account row of a published
scoring holds every scores-file column plus the account fields the pages show. Tables for business-configuration
versions, scenarios, pilots and families exist already so later features add rows, not a redesign. Changing a
model here needs a new Alembic revision in `workspace/migrations/versions`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so a migration can name what it alters on SQLite and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(200)  # account ids and names as CRMs export them
NAME = String(400)
SEARCH_LENGTH = 300


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, float: Double}


class Scoring(Base):
    """One published scoring: what was scored, with which model and configuration, by whom and when."""

    __tablename__ = "scorings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    as_of: Mapped[datetime] = mapped_column(DateTime)
    model_version: Mapped[str] = mapped_column(String(200))
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_by: Mapped[str] = mapped_column(String(200))
    published_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    account_count: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(1000), default="")  # the scores file or "tiering score"


class ScoredAccount(Base):
    """One account of a published scoring: every scores-file column at full precision, and who the account is."""

    __tablename__ = "scored_accounts"

    scoring_id: Mapped[int] = mapped_column(ForeignKey("scorings.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_name: Mapped[str | None] = mapped_column(NAME)
    industry: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(200))
    employees: Mapped[float | None]
    owner: Mapped[str | None] = mapped_column(String(200))
    # Lower-cased "account_id account_name" (its first SEARCH_LENGTH characters): text search with one portable
    # LIKE on every database, short enough for a PostgreSQL index entry.
    search_text: Mapped[str] = mapped_column(String(SEARCH_LENGTH))
    revenue_potential_score: Mapped[float | None]
    business_fit_score: Mapped[float | None]
    engagement_score: Mapped[float | None]
    rule_score: Mapped[float | None]
    rule_tier: Mapped[str | None] = mapped_column(String(20))
    win_probability: Mapped[float | None]
    expected_deal_size: Mapped[float | None]
    expected_value: Mapped[float | None]
    learned_score: Mapped[float | None]
    learned_tier: Mapped[str | None] = mapped_column(String(20))
    tier: Mapped[str] = mapped_column(String(20))
    override_reason: Mapped[str | None] = mapped_column(Text)
    budget: Mapped[float | None]
    intent_surge: Mapped[bool] = mapped_column(Boolean)
    reason_1: Mapped[str | None] = mapped_column(Text)
    reason_2: Mapped[str | None] = mapped_column(Text)
    reason_3: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(String(200))
    scored_at: Mapped[str | None] = mapped_column(String(40))  # as the scores file writes it (ISO text)
    as_of: Mapped[str | None] = mapped_column(String(40))
    surge_channels: Mapped[str | None] = mapped_column(Text)
    pipeline_probability: Mapped[float | None]
    expected_revenue: Mapped[float | None]
    pilot_group: Mapped[str | None] = mapped_column(String(20))
    family_id: Mapped[str | None] = mapped_column(ID)
    family_tier: Mapped[str | None] = mapped_column(String(20))
    family_learned_score: Mapped[float | None]
    family_expected_revenue: Mapped[float | None]
    family_engagement_share: Mapped[float | None]
    # The amount of the account's deals open at as_of, from the export the scoring was published with (None without
    # one): not a scores-file column.
    open_pipeline: Mapped[float | None]

    __table_args__ = (
        # Covering the book's filters (text search included), its tier counts and budget, and its most used sort
        # columns, so those read the index alone and never the wide rows.
        Index(
            "ix_scored_accounts_book",
            "scoring_id",
            "tier",
            "learned_score",
            "industry",
            "owner",
            "learned_tier",
            "rule_tier",
            "intent_surge",
            "budget",
            "rule_score",
            "win_probability",
            "expected_value",
            "expected_revenue",
            "account_id",
            "search_text",
        ),
        Index("ix_scored_accounts_learned_score", "scoring_id", "learned_score"),
        Index("ix_scored_accounts_rule_score", "scoring_id", "rule_score"),
        Index("ix_scored_accounts_industry", "scoring_id", "industry"),
        Index("ix_scored_accounts_owner", "scoring_id", "owner"),
        Index("ix_scored_accounts_account", "account_id", "scoring_id"),  # an account's history
    )


class Pin(Base):
    """An editor's pin of an account to a tier. The latest pin not removed holds; unpinning sets `removed_at`."""

    __tablename__ = "pins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ID)
    tier: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(200))  # the user who pinned
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires: Mapped[date | None] = mapped_column(Date)  # the last day the pin holds
    removed_at: Mapped[datetime | None] = mapped_column(DateTime)
    removed_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_pins_account", "account_id", "removed_at"),)


class Flag(Base):
    """'This score looks wrong': anyone signed in may raise one, with a comment."""

    __tablename__ = "flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ID, index=True)
    comment: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    scoring_id: Mapped[int | None] = mapped_column(ForeignKey("scorings.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(200))


class AuditEvent(Base):
    """One change, never updated or deleted (database triggers refuse both)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    user: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str | None] = mapped_column(ID, index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class User(Base):
    """A workspace user; the password is stored only as an Argon2 hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(400))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Signs in only from a loopback client (the demo's login): a password that works from this machine alone.
    local_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Raised by signing out, a new password and disabling: a session cookie carrying an older one has ended.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ConfigVersion(Base):
    """A published business configuration (rule weights, blend, tiers, budget, alerts, review, pilot)."""

    __tablename__ = "config_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    published_by: Mapped[str] = mapped_column(String(200))
    published_at: Mapped[datetime] = mapped_column(DateTime)
    restored_from: Mapped[int | None] = mapped_column(ForeignKey("config_versions.id"))


class Scenario(Base):
    """A draft business configuration and, once run, its what-if result against the active one."""

    __tablename__ = "scenarios"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("config_versions.id"))
    scoring_id: Mapped[int | None] = mapped_column(ForeignKey("scorings.id", ondelete="SET NULL"))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Pilot(Base):
    """A treatment/control pilot: its design (pilot.json) and where its assignments came from."""

    __tablename__ = "pilots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pilot_key: Mapped[str] = mapped_column(String(100), unique=True)
    seed: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[date] = mapped_column(Date)
    horizon_days: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(100))
    design: Mapped[dict[str, Any]] = mapped_column(JSON)  # tiers, strata, size or share, power
    scoring_id: Mapped[int | None] = mapped_column(ForeignKey("scorings.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default="running")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    readout: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class PilotAssignment(Base):
    """One account's group in a pilot."""

    __tablename__ = "pilot_assignments"

    pilot_id: Mapped[int] = mapped_column(ForeignKey("pilots.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    group: Mapped[str] = mapped_column(String(20))  # treatment or control
    stratum: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (Index("ix_pilot_assignments_account", "account_id"),)


class FamilyMember(Base):
    """An account's place in its family as of a published scoring (parent links, the top account)."""

    __tablename__ = "family_members"

    scoring_id: Mapped[int] = mapped_column(ForeignKey("scorings.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ID, primary_key=True)
    parent_account_id: Mapped[str | None] = mapped_column(ID)
    family_id: Mapped[str] = mapped_column(ID)
    depth: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_family_members_family", "scoring_id", "family_id"),)
