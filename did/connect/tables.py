"""Martinique Connect's tables: clients, local accounts, browser sessions, codes, tokens, keys, login attempts.

Secrets are never stored in the clear: client secrets and passwords are Argon2id hashes, codes and
access tokens are SHA-256 digests (they are random 256-bit values, so a fast hash is enough),
signing keys' private JWKs are encrypted with a key derived from the server secret
(`did.connect.keys`). Migration 0012 creates them; tests/test_store.py checks both agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Column, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field

from beckn.store.tables import BigId, StoreModel, UTCDateTime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ConnectClient(StoreModel, table=True):
    """A relying party registered by the operator (`lakou connect client add`)."""

    __tablename__ = "connect_client"

    client_id: str = Field(sa_column=Column(String(128), primary_key=True))
    secret_hash: str = Field(sa_column=Column(String(256), nullable=False))  # Argon2id
    name: str = Field(sa_column=Column(String(200), nullable=False))
    redirect_uris: list[str] = Field(sa_column=Column(JSON, nullable=False))
    post_logout_redirect_uris: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The sector of its pairwise `sub`: the registered one, else the host of its redirect URIs.
    sector_identifier: str = Field(sa_column=Column(String(255), nullable=False))
    backchannel_logout_uri: str | None = Field(default=None, sa_column=Column(String(2000), nullable=True))
    userinfo_signed_response_alg: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ConnectAccount(StoreModel, table=True):
    """A local account (password login, `acr` mq:local)."""

    __tablename__ = "connect_account"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    username: str = Field(sa_column=Column(String(100), nullable=False, unique=True))
    email: str | None = Field(default=None, sa_column=Column(String(320), nullable=True, unique=True))
    password_hash: str = Field(sa_column=Column(String(256), nullable=False))  # Argon2id
    given_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    family_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    birthdate: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))  # YYYY-MM-DD
    commune: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))  # "insee:97209"
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ConnectSession(StoreModel, table=True):
    """A browser session at the provider (cookie holds the id; its SHA-256 is stored)."""

    __tablename__ = "connect_session"

    id: str = Field(sa_column=Column(String(64), primary_key=True))  # sha256 hex of the cookie value
    account_id: str = Field(sa_column=Column(String(36), ForeignKey("connect_account.id"), nullable=False, index=True))
    sid: str = Field(sa_column=Column(String(64), nullable=False, unique=True))  # public id (logout tokens)
    auth_time: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    acr: str = Field(sa_column=Column(String(32), nullable=False))
    amr: list[str] = Field(sa_column=Column(JSON, nullable=False))
    consents: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # client -> scopes
    clients: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # got a code
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ConnectAuthCode(StoreModel, table=True):
    """An authorization code: single use (`consumed_at`); a second use revokes its tokens."""

    __tablename__ = "connect_auth_code"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    code_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    client_id: str = Field(sa_column=Column(String(128), ForeignKey("connect_client.client_id"), nullable=False))
    account_id: str = Field(sa_column=Column(String(36), ForeignKey("connect_account.id"), nullable=False))
    session_sid: str = Field(sa_column=Column(String(64), nullable=False))
    redirect_uri: str = Field(sa_column=Column(String(2000), nullable=False))
    scope: str = Field(sa_column=Column(Text, nullable=False))
    nonce: str = Field(sa_column=Column(String(512), nullable=False))
    code_challenge: str = Field(sa_column=Column(String(128), nullable=False))
    code_challenge_method: str = Field(sa_column=Column(String(8), nullable=False))
    auth_time: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    acr: str = Field(sa_column=Column(String(32), nullable=False))
    amr: list[str] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    consumed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ConnectAccessToken(StoreModel, table=True):
    """A bearer access token (its SHA-256), with the code it came from (revoked on code reuse)."""

    __tablename__ = "connect_access_token"

    token_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    code_id: int | None = Field(
        default=None, sa_column=Column(BigId, ForeignKey("connect_auth_code.id"), nullable=True, index=True)
    )
    client_id: str = Field(sa_column=Column(String(128), ForeignKey("connect_client.client_id"), nullable=False))
    account_id: str = Field(sa_column=Column(String(36), ForeignKey("connect_account.id"), nullable=False))
    scope: str = Field(sa_column=Column(Text, nullable=False))
    sub: str = Field(sa_column=Column(String(64), nullable=False))
    issued_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ConnectSigningKey(StoreModel, table=True):
    """An ES256 signing key: `next` (published, unused), `current` (signs), `retired` (published, verifies)."""

    __tablename__ = "connect_signing_key"
    __table_args__ = (CheckConstraint("state IN ('next', 'current', 'retired')", name="state"),)

    kid: str = Field(sa_column=Column(String(64), primary_key=True))  # RFC 7638 thumbprint
    alg: str = Field(sa_column=Column(String(16), nullable=False))
    state: str = Field(sa_column=Column(String(8), nullable=False, index=True))
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    private_jwk_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # SecretBox(nonce+ct)
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    activated_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    retired_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ConnectLoginAttempt(StoreModel, table=True):
    """A login attempt, for the brute-force limits (per account and per IP; both are SHA-256 digests)."""

    __tablename__ = "connect_login_attempt"
    __table_args__ = (
        Index("ix_connect_login_attempt_account_key_at", "account_key", "at"),
        Index("ix_connect_login_attempt_ip_key_at", "ip_key", "at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    account_key: str = Field(sa_column=Column(String(64), nullable=False))
    ip_key: str = Field(sa_column=Column(String(64), nullable=False))
    success: bool = Field(sa_column=Column(Boolean, nullable=False))
    at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))



class ConnectUpstreamLink(StoreModel, table=True):
    """A local account known to an upstream provider (FranceConnect) by that provider's `sub`."""

    __tablename__ = "connect_upstream_link"
    __table_args__ = (UniqueConstraint("issuer", "upstream_sub"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    issuer: str = Field(sa_column=Column(String(255), nullable=False))
    upstream_sub: str = Field(sa_column=Column(String(255), nullable=False))
    account_id: str = Field(sa_column=Column(String(36), ForeignKey("connect_account.id"), nullable=False, index=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class ConnectCredentialOffer(StoreModel, table=True):
    """An OpenID4VCI pre-authorized code (its SHA-256): single use, short-lived; the access token it
    was exchanged for (its SHA-256) is kept on the same row, scoped to the resident credential."""

    __tablename__ = "connect_credential_offer"

    code_hash: str = Field(sa_column=Column(String(64), primary_key=True))
    account_id: str = Field(sa_column=Column(String(36), ForeignKey("connect_account.id"), nullable=False, index=True))
    tx_code_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    consumed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    token_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True, unique=True))
    token_expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ConnectIssuedCredential(StoreModel, table=True):
    """A credential issued to a wallet; `id` is its index in the status list `/status/1`."""

    __tablename__ = "connect_issued_credential"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    account_id: str = Field(sa_column=Column(String(36), ForeignKey("connect_account.id"), nullable=False, index=True))
    vct: str = Field(sa_column=Column(String(200), nullable=False))
    holder_thumbprint: str = Field(sa_column=Column(String(64), nullable=False, index=True))  # RFC 7638
    issued_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ConnectConsent(StoreModel, table=True):
    """One release of claims: to a client (ID token / UserInfo) or to the citizen's wallet (client_id NULL)."""

    __tablename__ = "connect_consent"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    account_id: str = Field(sa_column=Column(String(36), ForeignKey("connect_account.id"), nullable=False, index=True))
    client_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    credential_id: int | None = Field(default=None, sa_column=Column(BigId, nullable=True))  # wallet issuance
    claims: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    purpose: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class ConnectWalletRequest(StoreModel, table=True):
    """An OpenID4VP presentation request for a wallet login; bound to the browser that started it
    (`browser_hash`: SHA-256 of a cookie), answered by the wallet (`account_id` or `error`), used once."""

    __tablename__ = "connect_wallet_request"

    state: str = Field(sa_column=Column(String(64), primary_key=True))
    nonce: str = Field(sa_column=Column(String(64), nullable=False))
    browser_hash: str = Field(sa_column=Column(String(64), nullable=False))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # the OIDC request
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    account_id: str | None = Field(default=None, sa_column=Column(String(36), ForeignKey("connect_account.id"),
                                                                  nullable=True))
    error: str | None = Field(default=None, sa_column=Column(String(300), nullable=True))
    answered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
