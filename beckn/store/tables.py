"""The core tables: received messages, outgoing messages and their delivery attempts.

Migrations own the schema (`beckn.store.migrations`); these models describe it for queries, and a
test checks that both agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

# Alembic's batch mode (SQLite) recreates tables and must name every constraint it carries over,
# so names are derived, never left to the backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Our own registry: tables of unrelated SQLModel code imported in the same process must not leak
# into Lakou's migrations.
metadata = MetaData(naming_convention=NAMING_CONVENTION)
_registry = registry(metadata=metadata)


class StoreModel(SQLModel, registry=_registry):
    """Base of every Lakou table; its `metadata` is what Alembic migrates."""


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so values are stored as naive UTC
    text (which still sorts and compares correctly) and read back as aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; Lakou stores aware UTC datetimes only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# BIGINT keys on PostgreSQL (message tables grow without bound); SQLite only auto-assigns rowids to
# a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    EXPIRED = "expired"


class InboundMessage(StoreModel, table=True):
    """A verified message exactly as received, and the answer we gave to it."""

    __tablename__ = "inbound_message"
    __table_args__ = (
        # One row per (sender, message_id, action), except where a callback may legitimately come in
        # several parts under one message_id (on_search pages): there `dedupe_key` is the body digest.
        UniqueConstraint("sender_id", "message_id", "action", "dedupe_key"),
        # The inbox replays unprocessed rows oldest first; processed rows are the vast majority,
        # so the index holds only the ones still to do.
        Index(
            "ix_inbound_message_unprocessed",
            "id",
            sqlite_where=text("processed_at IS NULL"),
            postgresql_where=text("processed_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    sender_id: str = Field(sa_column=Column(String, nullable=False))
    message_id: str = Field(sa_column=Column(String, nullable=False))
    action: str = Field(sa_column=Column(String, nullable=False))
    transaction_id: str = Field(sa_column=Column(String, nullable=False, index=True))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    body_digest: str = Field(sa_column=Column(String, nullable=False))
    dedupe_key: str = Field(default="", sa_column=Column(String, nullable=False, server_default=text("''")))
    headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    response_status: int = Field(sa_column=Column(Integer, nullable=False))
    response_body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    processed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    process_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class OutboxMessage(StoreModel, table=True):
    """A message to send, committed with the business rows that caused it (transactional outbox)."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_message_status_next_attempt_at", "status", "next_attempt_at"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed', 'expired')", name="status"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    destination_url: str = Field(sa_column=Column(String, nullable=False))
    destination_key: str = Field(sa_column=Column(String, nullable=False))
    action: str = Field(sa_column=Column(String, nullable=False))
    transaction_id: str = Field(sa_column=Column(String, nullable=False, index=True))
    message_id: str = Field(sa_column=Column(String, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signature_header: str = Field(default="Authorization", sa_column=Column(String, nullable=False))
    extra_headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    status: str = Field(
        default=OutboxStatus.PENDING.value,
        sa_column=Column(String(16), nullable=False, server_default=OutboxStatus.PENDING.value),
    )
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    claimed_by: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    claimed_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    response_status: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    response_body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class DeliveryAttempt(StoreModel, table=True):
    """One HTTP attempt to deliver an outbox message, whatever its result."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (
        CheckConstraint("outcome IN ('delivered', 'retry', 'failed', 'expired')", name="outcome"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    outbox_id: int = Field(
        sa_column=Column(BigId, ForeignKey("outbox_message.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    attempt_no: int = Field(sa_column=Column(Integer, nullable=False))
    started_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    duration_ms: float = Field(sa_column=Column(Float, nullable=False))
    status_code: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    outcome: str = Field(sa_column=Column(String(16), nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


__all__ = [
    "AttemptOutcome",
    "DeliveryAttempt",
    "InboundMessage",
    "OutboxMessage",
    "OutboxStatus",
    "StoreModel",
    "UTCDateTime",
    "metadata",
]
