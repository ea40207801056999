"""Merchant accounts and their API keys, and the FastAPI dependency that authenticates a merchant.

An API key reads `lkm_<key id>_<secret>`. The key id is public (it names the key in listings and
revocations); only the SHA-256 of the secret is stored, so a stolen database gives no usable
key. A secret has 256 random bits, so a plain (unsalted, fast) hash is enough: there is nothing
to brute-force. The comparison is constant-time, and an unknown key id costs the same hash and
comparison as a known one, so timing tells nothing about which ids exist.

A key is shown once, when it is made (merchant creation or rotation); revoking a key ends it at
once. Keys are looked up in the database on every request: no cache, so a revocation has no delay.

A merchant session token (`lkms_<session id>_<secret>`, opened by a Martinique Connect login, see
bpp.merchant_login) is accepted wherever an API key is, the same way (hash only, constant time, no
cache), until it expires or is revoked (logout, unlinking).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bpp.tables import BppMerchant, BppMerchantKey, BppMerchantSession

KEY_PREFIX = "lkm"
_KEY = re.compile(r"^lkm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
SESSION_PREFIX = "lkms"
_SESSION = re.compile(r"^lkms_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()
REALM = 'Bearer realm="lakou-merchant"'


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    api_key: str  # the full key: returned to the caller once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(merchant_id: str) -> tuple[BppMerchantKey, IssuedKey]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)  # 43 characters of the URL-safe alphabet
    row = BppMerchantKey(id=key_id, merchant_id=merchant_id, secret_sha256=_hash(secret))
    return row, IssuedKey(key_id, f"{KEY_PREFIX}_{key_id}_{secret}")


async def create_merchant(session: AsyncSession, name: str) -> tuple[BppMerchant, IssuedKey]:
    merchant = BppMerchant(id=f"mch_{secrets.token_hex(8)}", name=name)
    session.add(merchant)
    await session.flush()  # the merchant before its key: the foreign key wants it
    row, issued = new_key(merchant.id)
    session.add(row)
    return merchant, issued


async def add_key(session: AsyncSession, merchant_id: str) -> IssuedKey:
    row, issued = new_key(merchant_id)
    session.add(row)
    return issued


async def live_keys(session: AsyncSession, merchant_id: str) -> list[BppMerchantKey]:
    query = select(BppMerchantKey).where(BppMerchantKey.merchant_id == merchant_id,
                                         BppMerchantKey.revoked_at.is_(None))  # type: ignore[union-attr]
    return list((await session.execute(query.order_by(BppMerchantKey.created_at))).scalars())


async def revoke_key(session: AsyncSession, merchant_id: str, key_id: str) -> bool:
    """Revoke one live key of this merchant; False when there is no such live key."""
    row = await session.get(BppMerchantKey, key_id)
    if row is None or row.merchant_id != merchant_id or row.revoked_at is not None:
        return False
    row.revoked_at = datetime.now(UTC)
    return True


def new_session_token(merchant_id: str, issuer: str, sub: str, ttl: timedelta) -> tuple[BppMerchantSession, str]:
    """A session row and its token (returned to the merchant once, never stored)."""
    session_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = BppMerchantSession(id=session_id, merchant_id=merchant_id, secret_sha256=_hash(secret), issuer=issuer,
                             sub=sub, expires_at=datetime.now(UTC) + ttl)
    return row, f"{SESSION_PREFIX}_{session_id}_{secret}"


async def live_session(session: AsyncSession, token: str) -> BppMerchantSession | None:
    """The live (known, unexpired, unrevoked) session of a session token, or None."""
    match = _SESSION.match(token)
    row = await session.get(BppMerchantSession, match.group(1)) if match else None
    live = row is not None and row.revoked_at is None and row.expires_at > datetime.now(UTC)
    expected = row.secret_sha256 if row is not None and live else _DUMMY_HASH
    given = _hash(match.group(2)) if match else _hash(token)
    return row if secrets.compare_digest(given, expected) and live else None


async def authenticate(session: AsyncSession, api_key: str) -> str | None:
    """The merchant id an API key (or a merchant session token) belongs to, or None (malformed,
    unknown, revoked or expired)."""
    if api_key.startswith(SESSION_PREFIX + "_"):
        row = await live_session(session, api_key)
        return row.merchant_id if row is not None else None
    match = _KEY.match(api_key)
    row = await session.get(BppMerchantKey, match.group(1)) if match else None
    expected = row.secret_sha256 if row is not None and row.revoked_at is None else _DUMMY_HASH
    given = _hash(match.group(2)) if match else _hash(api_key)
    if secrets.compare_digest(given, expected) and row is not None and row.revoked_at is None:
        return row.merchant_id
    return None


def merchant_auth(sessions: async_sessionmaker[AsyncSession]):  # noqa: ANN201 (a FastAPI dependency)
    """A dependency giving the authenticated merchant's id, from `Authorization: Bearer <key>` or
    `X-API-Key: <key>` (an API key or a merchant session token); 401 with `WWW-Authenticate` otherwise."""
    bearer = HTTPBearer(auto_error=False, scheme_name="MerchantKey",
                        description="A merchant API key (lkm_...) or a merchant session token from a Martinique "
                        "Connect login (lkms_...), as `Authorization: Bearer <key>`.")
    header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="MerchantKeyHeader",
                          description="A merchant API key (lkm_...), the same as the bearer form.")

    async def current_merchant(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        x_api_key: str | None = Depends(header),
    ) -> str:
        api_key = credentials.credentials if credentials is not None else x_api_key
        merchant_id = None
        if api_key:
            async with sessions() as session:
                merchant_id = await authenticate(session, api_key.strip())
        if merchant_id is None:
            raise HTTPException(401, "a valid merchant API key (or session token) is required, as "
                                     "'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                                headers={"WWW-Authenticate": REALM})
        return merchant_id

    return current_merchant


__all__ = ["IssuedKey", "add_key", "authenticate", "create_merchant", "live_keys", "live_session", "merchant_auth",
           "new_session_token", "revoke_key"]
