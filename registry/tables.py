"""The registry's tables: network participants (one entry per role and domain) and their keys.

Shaped for the full onboarding flow (subscribe / on_subscribe) without a later reshape:

* `registry_participant` is one *entry*: a subscriber in one role (BAP, BPP, BG, BREG) for one
  domain, with its callback URL, region and lifecycle status. The spec says a subscriber working
  in several domains has one entry per domain. Blank `domain`, `city` or `country` mean
  "any": lookups match them as wildcards.
* `registry_key` is the subscriber's key history. Keys belong to the subscriber, not to one entry
  (a BPP signs every domain's messages with the same key), are never rebound to other key
  material, and are never deleted: a signature made last year must stay verifiable against the
  key that was valid then. Retiring a key shortens its `valid_until` or sets `revoked_at`.

The schema is owned by migration 0002; a test checks that both agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, String, UniqueConstraint
from sqlmodel import Field

from beckn.store.tables import BigId, StoreModel, UTCDateTime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ParticipantType(StrEnum):
    """A participant's role: the core's three, plus protocol-server's BREG for registries."""

    BAP = "BAP"
    BPP = "BPP"
    BG = "BG"
    BREG = "BREG"


class ParticipantStatus(StrEnum):
    """The lifecycle of registry.yaml's `Subscription.status` (digest §6.1)."""

    INITIATED = "INITIATED"
    UNDER_SUBSCRIPTION = "UNDER_SUBSCRIPTION"
    SUBSCRIBED = "SUBSCRIBED"
    INVALID_SSL = "INVALID_SSL"
    EXPIRED = "EXPIRED"
    UNSUBSCRIBED = "UNSUBSCRIBED"


def _sql_in(values: type[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


TYPE_CHECK = f"type IN ({_sql_in(ParticipantType)})"
STATUS_CHECK = f"status IN ({_sql_in(ParticipantStatus)})"


class RegistryParticipant(StoreModel, table=True):
    """One subscriber entry: a role in a domain, where to reach it, and where it operates."""

    __tablename__ = "registry_participant"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "type", "domain"),
        CheckConstraint(TYPE_CHECK, name="type"),
        CheckConstraint(STATUS_CHECK, name="status"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    subscriber_id: str = Field(sa_column=Column(String(255), nullable=False))
    type: str = Field(sa_column=Column(String(8), nullable=False))
    # '' (not NULL) means "registered as blank", so the unique constraint holds for it too
    # (NULLs never collide in a unique constraint).
    domain: str = Field(default="", sa_column=Column(String(255), nullable=False))
    city: str = Field(default="", sa_column=Column(String(64), nullable=False))
    country: str = Field(default="", sa_column=Column(String(64), nullable=False))
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    status: str = Field(
        default=ParticipantStatus.INITIATED.value,
        sa_column=Column(String(24), nullable=False, server_default=ParticipantStatus.INITIATED.value),
    )
    created: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class RegistryKey(StoreModel, table=True):
    """One signing + encryption key pair of a subscriber, with its validity window. Kept forever."""

    __tablename__ = "registry_key"
    __table_args__ = (UniqueConstraint("subscriber_id", "unique_key_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    subscriber_id: str = Field(sa_column=Column(String(255), nullable=False))
    unique_key_id: str = Field(sa_column=Column(String(128), nullable=False))
    # Normalised to raw base64 on the way in, whatever encoding the participant sent.
    signing_public_key: str = Field(sa_column=Column(String(64), nullable=False))
    encr_public_key: str = Field(sa_column=Column(String(64), nullable=False))
    valid_from: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    valid_until: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    created: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The subscriber's transaction-log key (issue 8), a C2SP note verifier key
    # "<name>+<hex key ID>+<base64(0x01 || Ed25519 key)>", published beside the Beckn key it was
    # registered with (migration 0019). Bound to this key id like the rest of the key material, so
    # the key history also tells an auditor which log key was valid at a given time.
    log_vkey: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))


class RegistryAudit(StoreModel, table=True):
    """One operator decision (approve, suspend, revoke), kept forever: who, when, what, from which
    state to which. Owned by migration 0005; written by registry/lifecycle.py."""

    __tablename__ = "registry_audit"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    # Declared by the operator (the admin token is shared, so it cannot prove who): e.g. a login.
    actor: str = Field(sa_column=Column(String(128), nullable=False))
    action: str = Field(sa_column=Column(String(32), nullable=False))
    subscriber_id: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    # The entry (type, domain) or the key (unique_key_id) acted on; NULL when not applicable.
    type: str | None = Field(default=None, sa_column=Column(String(8), nullable=True))
    domain: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    unique_key_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    from_state: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))
    to_state: str | None = Field(default=None, sa_column=Column(String(24), nullable=True))
    reason: str = Field(default="", sa_column=Column(String(500), nullable=False))


__all__ = [
    "ParticipantStatus",
    "ParticipantType",
    "RegistryAudit",
    "RegistryKey",
    "RegistryParticipant",
]
