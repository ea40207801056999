"""Who is asking: the signed lookups (`/v2.0/lookup`, `/vlookup`) authenticate their caller
against the registry's own store, never through a lookup over HTTP.

A caller is a subscriber with at least one SUBSCRIBED entry, signing with one of its keys that is
valid at the signature's `created` (BECKN-006) or now (vlookup, which carries no signing time)
and not revoked. Every refusal is a 401 whose message says exactly what to fix.
"""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.keys import load_verify_key
from beckn.signing import (
    SignatureError,
    authenticate_challenge,
    body_digest,
    check_signature_times,
    parse_signature_header,
    verify_signature,
)
from registry.errors import ApiError
from registry.tables import ParticipantStatus, RegistryKey, RegistryParticipant
from registry.vocabulary import wire_time


def unauthorized(message: str, realm: str) -> ApiError:
    name, value = authenticate_challenge(realm, gateway=False)
    return ApiError(401, message, headers={name: value})


async def _is_subscribed(session: AsyncSession, subscriber_id: str) -> bool:
    p = RegistryParticipant
    return bool((await session.execute(select(exists().where(
        p.subscriber_id == subscriber_id, p.status == ParticipantStatus.SUBSCRIBED.value)))).scalar())


async def authenticate_signed_request(
    session: AsyncSession,
    authorization: str | None,
    body: bytes,
    *,
    realm: str,
    skew_seconds: int,
    now: float | None = None,
) -> str:
    """The subscriber id that signed `body` with a BECKN-006 `Authorization`, or `ApiError` 401."""
    if not authorization:
        raise unauthorized("this lookup needs a BECKN-006 signature: send Authorization: Signature "
                           'keyId="<subscriber_id>|<ukId>|ed25519",... signed with a key registered here', realm)
    now = time.time() if now is None else now
    try:
        params = parse_signature_header(authorization)
        check_signature_times(params, now=now, skew_seconds=skew_seconds)
    except SignatureError as exc:
        raise unauthorized(f"Authorization refused: {exc.reason}", realm) from None

    label = f"{params.subscriber_id}|{params.unique_key_id}"
    if not await _is_subscribed(session, params.subscriber_id):
        raise unauthorized(f"Authorization refused: {params.subscriber_id!r} is not a SUBSCRIBED participant of "
                           "this registry (register it, or wait for its subscription to complete)", realm)
    key = (await session.execute(select(RegistryKey).where(
        RegistryKey.subscriber_id == params.subscriber_id,
        RegistryKey.unique_key_id == params.unique_key_id))).scalar_one_or_none()
    if key is None:
        raise unauthorized(f"Authorization refused: no key {label} is registered here (check the ukId in keyId)",
                           realm)
    created = datetime.fromtimestamp(params.created, UTC)
    if key.revoked_at is not None:
        raise unauthorized(f"Authorization refused: key {label} was revoked at {wire_time(key.revoked_at)}; "
                           "sign with a current key", realm)
    if not key.valid_from <= created < key.valid_until:
        raise unauthorized(f"Authorization refused: key {label} is valid from {wire_time(key.valid_from)} until "
                           f"{wire_time(key.valid_until)}, not at the signature's created "
                           f"({wire_time(created)})", realm)
    try:
        verify_signature(params, load_verify_key(key.signing_public_key), digest_b64=body_digest(body))
    except SignatureError as exc:
        raise unauthorized(f"Authorization refused: {exc.reason}", realm) from None
    return params.subscriber_id


async def current_verify_keys(session: AsyncSession, subscriber_id: str, now: datetime) -> list[tuple[str, VerifyKey]]:
    """The sender's keys usable now (valid and not revoked), newest first, if it is SUBSCRIBED."""
    if not await _is_subscribed(session, subscriber_id):
        return []
    k = RegistryKey
    rows = (await session.execute(select(k).where(
        k.subscriber_id == subscriber_id, k.revoked_at.is_(None), k.valid_from <= now, k.valid_until > now,
    ).order_by(k.valid_from.desc(), k.id.desc()))).scalars().all()
    return [(key.unique_key_id, load_verify_key(key.signing_public_key)) for key in rows]


def verify_plain_signature(message: bytes, signature_b64: str, keys: list[tuple[str, VerifyKey]]) -> str | None:
    """The key id whose Ed25519 signature over `message` (no hashing, ONDC's vlookup) matches,
    else None. Raises ValueError if the signature is not base64 of 64 bytes."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("signature is not standard base64") from None
    if len(signature) != 64:
        raise ValueError(f"signature must be a 64-byte Ed25519 signature, got {len(signature)} bytes")
    for key_id, verify_key in keys:
        try:
            verify_key.verify(message, signature)
            return key_id
        except BadSignatureError:
            continue
    return None


__all__ = ["authenticate_signed_request", "current_verify_keys", "unauthorized", "verify_plain_signature"]
