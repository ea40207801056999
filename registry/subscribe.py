"""`POST /subscribe`: a participant onboards itself, proven by a signature and the `on_subscribe`
challenge (registry.yaml; digest §6.1).

Request: a core `Subscription` (the fields `lakou registry add` takes, with the same aliases)
plus `nonce`, signed with a BECKN-006 `Authorization`. `status`, `created` and `updated` are the
registry's to set: sent back from a lookup answer, they are ignored.

Who may sign (proof of possession, then of authority):

* a subscriber with no key usable now (a first subscription, or all its keys expired or revoked)
  signs with the key it subscribes: keyId `{subscriber_id}|{unique_key_id}|ed25519` of the body;
* a subscriber with a usable registered key must sign with one of them: that is how a new key
  (rotation), URL or region is shown to come from the participant itself, not from whoever
  generated a fresh key pair.

What is checked, in order, each refusal a 4xx whose message says what to fix:

1. the body (400): `subscriber_id` is an FQDN; `url` is absolute http(s) and its host is in the
   subscriber_id's domain (equal, a subdomain or a parent domain; `*.localhost` ids may use a
   loopback URL, for development networks; LAKOU_REGISTRY_CHECK_URL_HOST=false turns the rule
   off); the keys parse (beckn.keys); the key window is not already over;
2. the signature (401, `WWW-Authenticate`);
3. the store (403 suspended entry, 409 key id bound to other keys or revoked);
4. the challenge (422): the registry POSTs `{subscriber_id, unique_key_id, status, challenge}`,
   signed with its own key, to `{url}/on_subscribe` and expects `{"answer": <plaintext>}`
   (registry/challenge.py). An https URL whose certificate does not verify leaves the entry
   INVALID_SSL.

Lifecycle of an entry (subscriber_id, type, domain): a new one is recorded INITIATED, becomes
UNDER_SUBSCRIPTION while the challenge is out, then SUBSCRIBED if the network policy approves
automatically (LAKOU_REGISTRY_AUTO_APPROVE, BAP and BPP only: gateways and registries always wait
for the operator) or stays UNDER_SUBSCRIPTION for the operator. A failed challenge puts it back
where it was (INITIATED if new). The key and any new URL or region are stored only once the
challenge has passed, so a failed attempt never publishes anything. An entry already SUBSCRIBED
stays in the network while its update is checked, and stays SUBSCRIBED after it.

The ONDC body (`context.operation.ops_no`, `message.entity`, `message.network_participant`) is
accepted on the same route and translated by registry/ondc_subscribe.py into one subscription per
network_participant entry, all under one subscriber and key: same checks, same signature rules,
one challenge (`{subscriber_id, challenge}` to `<callback_url>/on_subscribe`) for all its entries,
ONDC's ACK/NACK around the same error object. Personal data in `entity` is never read.
"""

from __future__ import annotations

import hmac
import json
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.keys import load_verify_key
from beckn.settings import Settings
from beckn.signing import (
    AUTHORIZATION,
    SignatureError,
    SignatureParams,
    body_digest,
    check_signature_times,
    parse_signature_header,
    verify_signature,
)
from registry.caller_auth import unauthorized
from registry.challenge import make_challenge
from registry.errors import ApiError, bad_request
from registry.lookup_routes import read_body_and_json
from registry.ondc_subscribe import ONDC_ACK, is_ondc_body, nack, translate_ondc
from registry.participants import (
    Registration,
    RegistrationConflict,
    log_vkey_conflict,
    parse_registration,
    register,
)
from registry.schemas import ErrorOut, inline_schema
from registry.settings import RegistrySettings, registry_settings
from registry.signed_response import RegistryIdentity
from registry.tables import ParticipantStatus, ParticipantType, RegistryKey, RegistryParticipant
from registry.tlog import RegistryLog, Trace, exchange_id, set_peer
from registry.vocabulary import check_url, wire_time

log = structlog.get_logger(__name__)

# What a subscriber's on_subscribe answer may weigh: `{"answer": "<32 hex digits>"}` is tiny.
ON_SUBSCRIBE_MAX_BYTES = 64 * 1024
# Fields of a lookup answer that the registry owns; a client echoing one back is not refused.
_REGISTRY_OWNED = ("status", "created", "updated")
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, at least two.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FQDN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+", re.IGNORECASE)
_FQDN_MAX = 253
# Roles a network operator vets: a gateway's X-Gateway-Authorization is trusted network-wide.
_OPERATOR_APPROVED_ONLY = (ParticipantType.BG, ParticipantType.BREG)
_SNIPPET = 200
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


class SubscribeRequest(Registration):
    """registry.yaml `Subscription` + `nonce`, as `/subscribe` takes it (documentation model)."""

    nonce: str | None = Field(None, description="A random UUID (registry.yaml); optional.")


class SubscribeOut(BaseModel):
    status: str = Field(description="SUBSCRIBED, or UNDER_SUBSCRIPTION while the operator approves.")
    subscriber_id: str
    type: str
    domain: str
    unique_key_id: str
    message: str = Field(description="What happened and what comes next, in words.")


class ChallengeFailed(ApiError):
    """The on_subscribe check failed (HTTP 422): the request was fine, the subscriber's side was not."""

    def __init__(self, message: str, path: str = "url") -> None:
        super().__init__(422, message, path=path)


@dataclass(frozen=True, slots=True)
class Subscribe:
    registration: Registration
    nonce: str | None


# ------------------------------------------------------------------ 1. the body


def parse_subscribe(payload: Any, *, check_url_host: bool, now: datetime) -> Subscribe:
    """The subscribe request, or `ApiError` 400 saying which field is wrong and how."""
    if not isinstance(payload, dict):
        raise bad_request(f"subscribe body must be a JSON object (a Subscription with a nonce), not "
                          f"{_JSON_TYPES.get(type(payload), 'that')}")
    payload = {k: v for k, v in payload.items() if k not in _REGISTRY_OWNED}
    nonce = payload.pop("nonce", None)
    if nonce is not None:
        if not isinstance(nonce, str):
            raise bad_request("nonce must be a UUID string, e.g. \"7f4e...\" from uuid4()", "nonce")
        try:
            uuid.UUID(nonce)
        except ValueError:
            raise bad_request(f"nonce {nonce[:60]!r} is not a UUID (registry.yaml: a random uuid)", "nonce") from None
    reg = parse_registration(payload)
    check_subscriber_id(reg.subscriber_id)
    if check_url_host:
        check_url_in_domain(reg.subscriber_id, reg.url)
    if reg.valid_until is not None and reg.valid_until <= now:
        raise bad_request(f"valid_until ({wire_time(reg.valid_until)}) is already past: subscribe a key that is "
                          "still valid", "valid_until")
    return Subscribe(reg, nonce)


def check_subscriber_id(subscriber_id: str) -> None:
    if len(subscriber_id) > _FQDN_MAX or not _FQDN.fullmatch(subscriber_id) or subscriber_id.rsplit(".", 1)[1].isdigit():
        raise bad_request(
            f"subscriber_id {subscriber_id[:80]!r} is not a fully qualified domain name such as bpp.example.mq "
            "(dot-separated labels of letters, digits and hyphens, not an IP address): a Beckn participant "
            "is identified by the domain it serves from", "subscriber_id")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_url_in_domain(subscriber_id: str, url: str) -> None:
    """registry.yaml: the url "should necessarily contain the same domain name as set in
    subscriber_id". Accepted: the same host, a subdomain of it (api.bpp.example.mq) or a parent
    domain of at least two labels (example.mq serves bpp.example.mq: whoever holds it holds its
    subdomains). Development: an id under `.localhost` (RFC 6761, never on the internet) may use a
    loopback host."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    sid = subscriber_id.lower()
    if host == sid or host.endswith("." + sid) or (host.count(".") >= 1 and sid.endswith("." + host)):
        return
    if sid.endswith(".localhost") and _is_loopback(host):
        return
    raise bad_request(
        f"url host {host!r} is not in the domain of subscriber_id {subscriber_id!r}: registry.yaml requires the "
        f"callback URL to be on the subscriber's domain, e.g. https://{subscriber_id}/beckn (the host may also be a "
        "subdomain or a parent domain of it). For local development use a subscriber_id ending in .localhost "
        "with a 127.0.0.1 URL", "url")


# ------------------------------------------------------------------ 2. the signature


async def authenticate(
    session: AsyncSession,
    authorization: str | None,
    raw: bytes,
    reg: Registration,
    *,
    realm: str,
    skew_seconds: int,
    digest_header: str | None = None,
) -> SignatureParams:
    """Check the subscribe's `Authorization` (rules in the module docstring), or `ApiError` 401."""
    sid = reg.subscriber_id
    first_key_id = f"{sid}|{reg.unique_key_id}|ed25519"
    if not authorization:
        raise unauthorized(
            "/subscribe needs a BECKN-006 Authorization header over the exact body bytes: "
            f'Signature keyId="{first_key_id}",algorithm="ed25519",created=...,expires=...,'
            'headers="(created) (expires) digest",signature=... (for a first subscription, sign with the key '
            "you subscribe; afterwards, with a key already registered)", realm)
    now = time.time()
    try:
        params = parse_signature_header(authorization)
        check_signature_times(params, now=now, skew_seconds=skew_seconds)
    except SignatureError as exc:
        raise unauthorized(f"Authorization refused: {exc.reason}", realm) from None
    if params.subscriber_id != sid:
        raise unauthorized(f"Authorization refused: signed by {params.subscriber_id!r} but the body subscribes "
                           f"{sid!r}; a participant can only subscribe itself", realm)

    moment = datetime.now(UTC)
    keys = (await session.execute(select(RegistryKey).where(RegistryKey.subscriber_id == sid))).scalars().all()
    usable = [k for k in keys if k.revoked_at is None and k.valid_from <= moment < k.valid_until]
    if usable:
        signer = next((k for k in usable if k.unique_key_id == params.unique_key_id), None)
        if signer is None:
            ids = ", ".join(k.unique_key_id for k in usable)
            raise unauthorized(
                f"Authorization refused: {sid} already has registered keys usable now ({ids}); sign this "
                f"subscribe with one of them (keyId \"{sid}|<one of those>|ed25519\"), not with key "
                f"{params.unique_key_id!r}, so the registry knows the change comes from you. Lost them all? "
                "Ask the network operator.", realm)
        verify_key = load_verify_key(signer.signing_public_key)
        whose = f"the registered key {sid}|{signer.unique_key_id}"
    else:
        if params.unique_key_id != reg.unique_key_id:
            raise unauthorized(
                f"Authorization refused: {sid} has no registered key usable now, so this subscribe must be signed "
                f"with the key it subscribes: keyId \"{first_key_id}\", not {params.key_id!r} (that proves you "
                "hold the private key of signing_public_key)", realm)
        verify_key = load_verify_key(reg.signing_public_key)
        whose = "the signing_public_key in the body"
    try:
        verify_signature(params, verify_key, digest_b64=body_digest(raw), digest_header=digest_header)
    except SignatureError as exc:
        raise unauthorized(f"Authorization refused (checked against {whose}): {exc.reason}", realm) from None
    return params


# ------------------------------------------------------------------ 3. the store, before the challenge


async def _entry(session: AsyncSession, reg: Registration) -> RegistryParticipant | None:
    p = RegistryParticipant
    return (await session.execute(select(p).where(
        p.subscriber_id == reg.subscriber_id, p.type == reg.type.value, p.domain == reg.domain))).scalar_one_or_none()


async def _check_key(session: AsyncSession, reg: Registration) -> None:
    """The 409s `register` would raise after the challenge, raised before bothering the subscriber."""
    key = (await session.execute(select(RegistryKey).where(
        RegistryKey.subscriber_id == reg.subscriber_id,
        RegistryKey.unique_key_id == reg.unique_key_id))).scalar_one_or_none()
    if key is None:
        return
    label = f"{reg.subscriber_id}|{reg.unique_key_id}"
    for field in ("signing_public_key", "encr_public_key"):
        if getattr(key, field) != getattr(reg, field):
            raise RegistrationConflict(
                f"key {label} is already registered with another {field}; a key id is never rebound: "
                "subscribe the new key under a new unique_key_id", field)
    if key.revoked_at is not None:
        raise RegistrationConflict(
            f"key {label} was revoked at {wire_time(key.revoked_at)}; subscribe a new key under a new unique_key_id",
            "unique_key_id")
    log_conflict = log_vkey_conflict(key, reg)
    if log_conflict:
        raise RegistrationConflict(log_conflict, "log_vkey")


async def begin(sessions: async_sessionmaker[AsyncSession], reg: Registration) -> ParticipantStatus | None:
    """Record the entry INITIATED if new, then UNDER_SUBSCRIPTION unless already SUBSCRIBED.
    Returns its previous status (None: new)."""
    now = datetime.now(UTC)
    previous: ParticipantStatus | None = None
    for attempt in range(2):
        try:
            async with sessions() as session, session.begin():
                await _check_key(session, reg)
                entry = await _entry(session, reg)
                if entry is None:
                    session.add(RegistryParticipant(
                        subscriber_id=reg.subscriber_id, type=reg.type.value, domain=reg.domain, url=reg.url,
                        city=reg.city, country=reg.country, status=ParticipantStatus.INITIATED.value,
                        created=now, updated=now))
                    log.info("registry.subscribe_initiated", subscriber_id=reg.subscriber_id, type=reg.type.value,
                             domain=reg.domain)
                else:
                    previous = ParticipantStatus(entry.status)
                    if previous is ParticipantStatus.UNSUBSCRIBED:
                        raise ApiError(403, f"the entry {reg.subscriber_id} {reg.type.value} in domain "
                                            f"{reg.domain or '(any)'} was suspended by the network operator "
                                            "(UNSUBSCRIBED); only the operator can reinstate it", path="subscriber_id")
            break
        except IntegrityError:
            if attempt == 1:
                raise
            # A concurrent subscribe inserted the same entry first: read it again.
    if previous is not ParticipantStatus.SUBSCRIBED:
        await _set_status(sessions, reg, ParticipantStatus.UNDER_SUBSCRIPTION)
    return previous


async def begin_all(sessions: async_sessionmaker[AsyncSession],
                    regs: list[Registration]) -> list[ParticipantStatus | None]:
    """`begin` for each entry of one subscribe; if one is refused (403, 409), those already begun
    are put back as they were, so a refused subscribe changes nothing."""
    previous: list[ParticipantStatus | None] = []
    for reg in regs:
        try:
            previous.append(await begin(sessions, reg))
        except ApiError:
            for done, before in zip(regs, previous, strict=False):
                if before is not ParticipantStatus.SUBSCRIBED:
                    await _set_status(sessions, done, before or ParticipantStatus.INITIATED,
                                      only_if=ParticipantStatus.UNDER_SUBSCRIPTION)
            raise
    return previous


async def _set_status(sessions: async_sessionmaker[AsyncSession], reg: Registration, status: ParticipantStatus,
                      *, only_if: ParticipantStatus | None = None) -> None:
    async with sessions() as session, session.begin():
        entry = await _entry(session, reg)
        if entry is None or entry.status == status.value:
            return
        if only_if is not None and entry.status != only_if.value:
            return  # someone (the operator) changed it meanwhile: theirs wins
        entry.status = status.value
        entry.updated = datetime.now(UTC)


# ------------------------------------------------------------------ 4. the challenge


async def call_on_subscribe(
    client: httpx.AsyncClient, url: str, body: bytes, authorization: str, *, timeout: float,
    trace: Trace | None = None,
) -> Any:
    """POST the challenge; the decoded JSON answer, or `ChallengeFailed` saying what went wrong.
    Raises `_InvalidSSL` when the certificate does not verify. `trace` gets the HTTP status and
    the answer's bytes (for the registry's log)."""
    target = f"{url}/on_subscribe"
    headers = {"Content-Type": "application/json", AUTHORIZATION: authorization}
    trace = trace if trace is not None else Trace()
    try:
        async with client.stream("POST", target, content=body, headers=headers, timeout=timeout) as response:
            trace.status = response.status_code
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > ON_SUBSCRIBE_MAX_BYTES:
                    trace.response = b"".join(chunks)
                    raise ChallengeFailed(f"POST {target} answered more than {ON_SUBSCRIBE_MAX_BYTES} bytes; the "
                                          'answer is just {"answer": "<decrypted challenge>"}')
                chunks.append(chunk)
            raw = b"".join(chunks)
            trace.response = raw
    except httpx.TimeoutException:
        raise ChallengeFailed(f"POST {target} did not answer within {timeout:g} s: check that the service is up "
                              "and reachable from the registry (firewall, reverse proxy)") from None
    except httpx.ConnectError as exc:
        raise _connect_failure(target, url, exc) from None
    except httpx.HTTPError as exc:
        raise ChallengeFailed(f"POST {target} failed: {type(exc).__name__}: {str(exc)[:_SNIPPET]}") from None

    if response.is_redirect:
        raise ChallengeFailed(f"POST {target} answered HTTP {response.status_code}, a redirect to "
                              f"{response.headers.get('location', '?')[:_SNIPPET]!r}: the registry does not follow "
                              "redirects; subscribe with the URL that serves on_subscribe itself")
    if response.status_code != 200:
        hint = " (is on_subscribe served under the subscribed url?)" if response.status_code in (404, 405) else ""
        raise ChallengeFailed(f"POST {target} answered HTTP {response.status_code}{hint}; it must answer 200 "
                              f'{{"answer": "<decrypted challenge>"}}. Its body began: {_snippet(raw)!r}')
    try:
        return json.loads(raw)
    except ValueError:
        raise ChallengeFailed(f'POST {target} answered 200 but not JSON; it must answer {{"answer": "<decrypted '
                              f'challenge>"}}. Its body began: {_snippet(raw)!r}') from None


class _InvalidSSL(ChallengeFailed):
    pass


def _connect_failure(target: str, url: str, exc: httpx.ConnectError) -> ChallengeFailed:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _InvalidSSL(f"the TLS certificate of {urlsplit(url).hostname} does not verify "
                               f"({cause.verify_message or cause.reason}): install a certificate valid for that host "
                               "from a public CA, with its full chain, then subscribe again")
        if isinstance(cause, ssl.SSLError):
            return ChallengeFailed(f"TLS handshake with {urlsplit(url).hostname} failed ({cause.reason}): check the "
                                   "server's TLS configuration, or use http:// if it does not serve TLS")
        if isinstance(cause, socket.gaierror):
            return ChallengeFailed(f"the host {urlsplit(url).hostname} of url does not resolve in DNS: publish its "
                                   "DNS record or fix the url")
        cause = cause.__cause__ or cause.__context__
    return ChallengeFailed(f"could not connect to {target} ({str(exc)[:_SNIPPET] or type(exc).__name__}): check that "
                           "the service is running and reachable from the registry at that address and port")


def _snippet(raw: bytes) -> str:
    text = raw[:_SNIPPET].decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() else " " for c in text)


def check_answer(answer: Any, plaintext: str, challenge: str, *, target: str, reg: Registration,
                 registry_encr_public: str) -> None:
    """`ChallengeFailed` unless `answer` is `{"answer": plaintext}`, with the likely mistake named."""
    if not isinstance(answer, Mapping) or "answer" not in answer:
        raise ChallengeFailed(f'POST {target} answered 200 without an "answer" field; it must answer '
                              '{"answer": "<decrypted challenge>"}')
    value = answer["answer"]
    if not isinstance(value, str):
        raise ChallengeFailed(f'POST {target}: "answer" must be the decrypted challenge as a string, not '
                              f"{type(value).__name__}")
    if hmac.compare_digest(value.encode("utf-8"), plaintext.encode("ascii")):
        return
    hint = ("it echoed the challenge back instead of decrypting it. " if value == challenge else "")
    raise ChallengeFailed(
        f"POST {target} answered, but the answer is not the challenge's plaintext: {hint}Decrypt the challenge as "
        f"base64 → AES-256-ECB with PKCS#7 padding, the key being the raw 32-byte X25519 shared secret (no KDF) of "
        f"the X25519 private key matching encr_public_key {reg.encr_public_key} (unique_key_id {reg.unique_key_id}) "
        f"and the registry's encryption public key {registry_encr_public} (GET /registry-key), and answer the "
        "plaintext as is")


# ------------------------------------------------------------------ the route


def _final_status(previous: ParticipantStatus | None, reg: Registration, policy: RegistrySettings) -> ParticipantStatus:
    if previous is ParticipantStatus.SUBSCRIBED:
        return ParticipantStatus.SUBSCRIBED  # an approved entry's checked update keeps it in the network
    if policy.registry_auto_approve and reg.type not in _OPERATOR_APPROVED_ONLY:
        return ParticipantStatus.SUBSCRIBED
    return ParticipantStatus.UNDER_SUBSCRIPTION


def subscribe_router(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                     identity: RegistryIdentity, tlog: RegistryLog | None = None) -> APIRouter:
    policy = registry_settings(settings)
    signer = identity.signer()
    realm = identity.subscriber_id
    registry_encr_public = identity.keys["encryption_public_key"]
    router = APIRouter(tags=["onboarding"])

    @router.post(
        "/subscribe",
        summary="Subscribe (or update) a participant entry, checked by the on_subscribe challenge",
        response_model=SubscribeOut,
        responses={
            400: {"model": ErrorOut, "description": "Invalid subscription (field, URL host, key, validity)."},
            401: {"model": ErrorOut, "description": "Missing or refused Authorization signature."},
            403: {"model": ErrorOut, "description": "The entry was suspended by the operator."},
            409: {"model": ErrorOut, "description": "The key id is already bound to other keys, or revoked."},
            413: {"model": ErrorOut, "description": "Body too large."},
            422: {"model": ErrorOut, "description": "The on_subscribe challenge failed: unreachable URL, HTTP "
                                                    "error, bad TLS certificate, missing or wrong answer."},
        },
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": inline_schema(SubscribeRequest)}}}},
    )
    async def subscribe(request: Request) -> JSONResponse:
        """registry.yaml `/subscribe`: a `Subscription` plus `nonce`, signed with `Authorization`
        (a first subscription with the key it subscribes, later ones with a registered key). The
        registry then POSTs `{subscriber_id, unique_key_id, status, challenge}` to
        `{url}/on_subscribe`, signed with its key (`GET /registry-key`), and expects
        `{"answer": "<decrypted challenge>"}`: AES-256-ECB, PKCS#7, keyed with the raw X25519 shared
        secret of your encryption key and the registry's. Every failure names what to fix.

        The ONDC body (`{"context": {"operation": {"ops_no"}}, "message": {"entity",
        "network_participant"}}`) is accepted too: one entry per network_participant, the
        challenge `{subscriber_id, challenge}` to `<callback_url>/on_subscribe`, answered with
        ONDC's ACK; `entity`'s personal data is never stored (registry/ondc_subscribe.py)."""
        raw, payload = await read_body_and_json(request, settings.max_body_bytes)
        now = datetime.now(UTC)
        if is_ondc_body(payload):
            try:
                await _subscribe_ondc(request, raw, payload, now)
            except ApiError as exc:
                return nack(exc)
            return JSONResponse(ONDC_ACK)

        sub = parse_subscribe(payload, check_url_host=policy.registry_check_url_host, now=now)
        reg = sub.registration

        def core_challenge(status_now: ParticipantStatus, challenge: str) -> dict[str, Any]:
            return {"subscriber_id": reg.subscriber_id, "unique_key_id": reg.unique_key_id,
                    "status": status_now.value, "challenge": challenge}

        [status] = await onboard(request, raw, [reg], reg.url, core_challenge, now)
        if status is ParticipantStatus.SUBSCRIBED:
            message = "challenge answered; the entry is SUBSCRIBED and appears in /lookup"
        else:
            message = ("challenge answered; the entry waits in UNDER_SUBSCRIPTION for the network operator's "
                       "approval (gateways and registries always do; other roles when auto-approval is off)")
        return JSONResponse({"status": status.value, "subscriber_id": reg.subscriber_id, "type": reg.type.value,
                             "domain": reg.domain, "unique_key_id": reg.unique_key_id, "message": message})

    async def _subscribe_ondc(request: Request, raw: bytes, payload: Any, now: datetime) -> None:
        ondc = translate_ondc(payload)
        subscriber_id = ondc.subscriptions[0]["subscriber_id"]
        try:
            check_subscriber_id(subscriber_id)
        except ApiError as exc:
            raise ondc.relabel(exc, 0) from None
        if policy.registry_check_url_host:
            try:
                check_url_in_domain(subscriber_id, ondc.callback_url)
            except ApiError as exc:
                raise ApiError(400, f"message.entity.callback_url: {exc.error.message}",
                               path="message.entity.callback_url") from None
        try:
            check_url(ondc.callback_url)
        except ValueError as exc:
            raise bad_request(f"message.entity.callback_url: {exc}", "message.entity.callback_url") from None

        regs: list[Registration] = []
        for index, core in enumerate(ondc.subscriptions):
            try:
                regs.append(parse_subscribe(core, check_url_host=policy.registry_check_url_host, now=now).registration)
            except ApiError as exc:
                raise ondc.relabel(exc, index) from None

        def ondc_challenge(status_now: ParticipantStatus, challenge: str) -> dict[str, Any]:  # noqa: ARG001
            return {"subscriber_id": regs[0].subscriber_id, "challenge": challenge}  # ONDC's on_subscribe body

        try:
            await onboard(request, raw, regs, ondc.callback_url, ondc_challenge, now)
        except ChallengeFailed as exc:  # the URL at fault is the callback_url the client sent
            raise ChallengeFailed(exc.error.message, path="message.entity.callback_url") from None
        except ApiError as exc:  # 403 / 409 name entity fields, the same in every entry: say them ONDC's way
            raise ondc.relabel(exc, 0) from None

    async def onboard(
        request: Request,
        raw: bytes,
        regs: list[Registration],
        callback_url: str,
        challenge_body: Callable[[ParticipantStatus, str], dict[str, Any]],
        now: datetime,
    ) -> list[ParticipantStatus]:
        """Signature, store checks, one challenge to `{callback_url}/on_subscribe`, then each
        entry's registration. `regs` share one subscriber and one key. Returns their new statuses."""
        first = regs[0]
        async with sessions() as session:
            await authenticate(session, request.headers.get(AUTHORIZATION), raw, first, realm=realm,
                               skew_seconds=settings.signature_skew_seconds,
                               digest_header=request.headers.get("digest"))
        set_peer(request, first.subscriber_id)  # its signature verified: the log's leaf may name it

        previous = await begin_all(sessions, regs)
        plaintext, challenge = make_challenge(identity.keys["encryption_private_key"], first.encr_public_key)
        status_now = (ParticipantStatus.SUBSCRIBED if previous[0] is ParticipantStatus.SUBSCRIBED
                      else ParticipantStatus.UNDER_SUBSCRIPTION)
        body = json.dumps(challenge_body(status_now, challenge), separators=(",", ":")).encode("utf-8")
        target = f"{callback_url}/on_subscribe"
        authorization = signer.sign(body)
        trace, sent_at = Trace(), datetime.now(UTC)
        try:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                answer = await call_on_subscribe(client, callback_url, body, authorization,
                                                 timeout=policy.registry_on_subscribe_timeout_seconds, trace=trace)
            check_answer(answer, plaintext, challenge, target=target, reg=first,
                         registry_encr_public=registry_encr_public)
        except ChallengeFailed as exc:
            await log_challenge(request, first.subscriber_id, body, authorization, trace, sent_at, exc)
            outcomes = []
            for reg, before in zip(regs, previous, strict=True):
                if before is not ParticipantStatus.SUBSCRIBED:
                    back = (ParticipantStatus.INVALID_SSL if isinstance(exc, _InvalidSSL)
                            else before or ParticipantStatus.INITIATED)
                    await _set_status(sessions, reg, back, only_if=ParticipantStatus.UNDER_SUBSCRIPTION)
                    outcome = f"is {back.value}"
                else:
                    outcome = "stays SUBSCRIBED as it was"
                outcomes.append(outcome if len(regs) == 1 else f"{reg.type.value} {reg.domain or '(any)'} {outcome}")
                log.info("registry.subscribe_failed", subscriber_id=reg.subscriber_id, type=reg.type.value,
                         domain=reg.domain, reason=type(exc).__name__)
            what = "the entry " + outcomes[0] if len(regs) == 1 else "entries: " + "; ".join(outcomes)
            raise ChallengeFailed(f"{exc.error.message}. Nothing was changed or published ({what}); fix this "
                                  "and subscribe again") from None
        await log_challenge(request, first.subscriber_id, body, authorization, trace, sent_at, None)

        statuses = []
        for reg, before in zip(regs, previous, strict=True):
            status = _final_status(before, reg, policy)
            result = await register(sessions, reg, now=now, status=status)
            log.info("registry.subscribed", subscriber_id=reg.subscriber_id, type=reg.type.value, domain=reg.domain,
                     unique_key_id=reg.unique_key_id, status=status.value, changed=result.changed)
            statuses.append(status)
        return statuses

    async def log_challenge(request: Request, subscriber_id: str, body: bytes, authorization: str, trace: Trace,
                            sent_at: datetime, failure: ChallengeFailed | None) -> None:
        """The on_subscribe challenge sent, with the answer (or the failure), into the log."""
        if tlog is None:
            return
        if failure is None:
            ack, code = "ACK", None
        elif trace.status is None:  # no answer at all
            ack, code = None, "invalid_ssl" if isinstance(failure, _InvalidSSL) else "no_answer"
        else:
            ack, code = "NACK", str(trace.status) if trace.status != 200 else "wrong_answer"
        try:
            await tlog.record_now(tlog.outbound(
                "on_subscribe", peer=subscriber_id, transaction_id=exchange_id(request), body=body,
                headers={AUTHORIZATION: authorization}, trace=trace, ack=ack, code=code,  # type: ignore[arg-type]
                seen_at=sent_at))
        except Exception as exc:  # noqa: BLE001 - best effort: the log never fails a subscribe
            log.error("registry.tlog_record_failed", action="on_subscribe", error_type=type(exc).__name__)

    return router


__all__ = [
    "ChallengeFailed",
    "SubscribeOut",
    "SubscribeRequest",
    "authenticate",
    "check_subscriber_id",
    "check_url_in_domain",
    "parse_subscribe",
    "subscribe_router",
]
