"""The BAP's tables: citizen-app sessions, their transactions, the requests sent and the callbacks.

Raw callbacks (bytes and signatures) stay in the core `inbound_message` table; `bap_callback`
records what the BAP made of each one (matched, late or unsolicited) and, for matched ones, the
parsed `message`/`error` the API serves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Index, String
from sqlmodel import Field

from beckn.store.tables import BigId, StoreModel, UTCDateTime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CallbackStatus(StrEnum):
    ACCEPTED = "accepted"  # matched to a request we sent, within its ttl: shown to the citizen
    LATE = "late"  # matched, but arrived after the request's timestamp + ttl: dropped
    UNSOLICITED = "unsolicited"  # no request of ours with this transaction/message id and action


class BapSession(StoreModel, table=True):
    """A citizen-app session, anonymous until a login through Martinique Connect sets `account_id`
    ("<issuer> <sub>"). Only the token's SHA-256 is stored: a database leak must not hand out live
    sessions."""

    __tablename__ = "bap_session"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    account_id: str | None = Field(default=None, sa_column=Column(String, nullable=True, index=True))
    # How and when the citizen logged in (the ID token's `acr` and `auth_time`): set with account_id
    # when the app completes the login (/auth/complete), cleared with it at logout; /auth/me reads
    # them from here (any process).
    acr: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    auth_time: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The pending login of this session (bap.api.auth): a random value set by POST /auth/login and
    # sealed into its state and then its login code; cleared when a code is used. So a login code
    # works once, and only for the latest login the session started. Not a secret on its own: a
    # code cannot be made without the BAP's key.
    login_nonce: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class BapTransaction(StoreModel, table=True):
    """One Beckn transaction of one session: a search, or a cart (select → init → confirm → order)."""

    __tablename__ = "bap_transaction"
    __table_args__ = (Index("ix_bap_transaction_session_id_confirmed_at", "session_id", "confirmed_at"),)

    id: str = Field(sa_column=Column(String(36), primary_key=True))  # the Beckn transaction_id
    session_id: int = Field(
        sa_column=Column(BigId, ForeignKey("bap_session.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    # What was searched (no personal data): query, lang, city, category.
    search: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    city: str = Field(sa_column=Column(String, nullable=False))
    bpp_id: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    bpp_uri: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    provider_id: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    items: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    quote: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The latest order the BPP sent (on_select, on_init, on_confirm, on_status), as received.
    order: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    order_id: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    state: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    last_action: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    # A cart is a transaction of its own, made from a search (`search_id`: that search's transaction):
    # one order per transaction, so two carts from one search never become one order at the BPP.
    search_id: str | None = Field(default=None, sa_column=Column(String(36), nullable=True, index=True))
    lang: str | None = Field(default=None, sa_column=Column(String(8), nullable=True))
    # What the citizen gave at checkout, kept to send again (update) and to show in the app. Personal
    # data: it goes only to the chosen BPP, is never logged, and only this session can read it.
    billing: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    checkout: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    confirmed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class BapRequest(StoreModel, table=True):
    """A Beckn request this BAP sent; callbacks are matched to it by transaction and message id."""

    __tablename__ = "bap_request"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    transaction_id: str = Field(
        sa_column=Column(String(36), ForeignKey("bap_transaction.id", ondelete="CASCADE"), nullable=False,
                         index=True)
    )
    message_id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    action: str = Field(sa_column=Column(String(16), nullable=False))
    bpp_id: str | None = Field(default=None, sa_column=Column(String, nullable=True))  # None: broadcast search
    sent_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class BapCallback(StoreModel, table=True):
    """What became of one stored callback (`inbound_message` row)."""

    __tablename__ = "bap_callback"
    __table_args__ = (
        CheckConstraint("status IN ('accepted', 'late', 'unsolicited')", name="status"),
        Index("ix_bap_callback_transaction_id_message_id", "transaction_id", "message_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    # One verdict per stored message, so an inbox replay after a crash cannot count it twice.
    inbound_id: int = Field(
        sa_column=Column(BigId, ForeignKey("inbound_message.id", ondelete="CASCADE"), nullable=False, unique=True)
    )
    request_id: int | None = Field(
        default=None, sa_column=Column(BigId, ForeignKey("bap_request.id", ondelete="SET NULL"), nullable=True)
    )
    transaction_id: str = Field(sa_column=Column(String, nullable=False))
    message_id: str = Field(sa_column=Column(String, nullable=False))
    action: str = Field(sa_column=Column(String(16), nullable=False))
    bpp_id: str = Field(sa_column=Column(String, nullable=False))
    bpp_uri: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    received_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    # Kept only for accepted callbacks; the raw message stays in inbound_message for audit.
    message: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


__all__ = ["BapCallback", "BapRequest", "BapSession", "BapTransaction", "CallbackStatus"]
