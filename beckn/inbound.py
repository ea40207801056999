"""The inbound pipeline every node runs on every Beckn message it receives.

Data flows one way: raw bytes -> JSON -> signatures (through the registry key resolver) -> signer
bound to the context -> models and network policy -> duplicate/replay check -> persist -> ACK.

An ACK is returned only after the raw message is committed, so "ACK" always means "durably
stored"; the business handler runs afterwards, from the stored row (see `beckn.inbox`). Messages
accepted concurrently are committed together, one transaction per batch (group commit,
beckn/inbound_batch.py): each is ACKed only once its batch committed.

With a transaction log (`tlog`, beckn/tlog/recorder.py) every message received is logged with the
answer given. An accepted message's log entry is appended in the same database transaction as its
`inbound_message` row (one log append per batch), so "ACK" also means "logged": a crash before
the commit loses both, and the sender, having no ACK, sends again. The ACK then carries a signed log receipt
(`X-Lakou-Log-Receipt`, beckn/tlog/receipt.py). Refusals (NACKs) and retransmissions are logged
best effort, after the answer is decided: a logging failure never changes the answer.

The pipeline is transport-agnostic: `beckn.http` adapts it to Starlette/FastAPI.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.errors import ACK_BODY, BecknError, ErrorCode, nack_body
from beckn.inbound_batch import InboundCommitter, Stored, StoreInterrupted
from beckn.models import BecknModel, EnvelopeInvalid, is_callback, parse_envelope
from beckn.policy import NetworkPolicy, message_expires_at
from beckn.registry_client import KeyResolutionError, RegistryUnavailable, SubscriberRecord
from beckn.signing import (
    AUTHORIZATION,
    GATEWAY_AUTHORIZATION,
    SignatureError,
    SignatureParams,
    authenticate_challenge,
    body_digest,
    check_signature_times,
    parse_signature_header,
    verify_signature,
)
from beckn.store.tables import InboundMessage
from beckn.tlog.leaf import LogRecord
from beckn.tlog.receipt import RECEIPT_HEADER
from beckn.tlog.recorder import Logged, LogRecorder

log = structlog.get_logger(__name__)

# Callbacks that may come in several parts under one message_id, each its own message: a BPP may
# page a large catalogue over several on_search. For these a different body is a new part, not a
# replay; a byte-identical one is still a retransmission.
MULTI_PART_ACTIONS = frozenset({"on_search"})

# Headers worth keeping with the raw message: an auditor needs the signatures to re-verify it.
_KEPT_HEADERS = ("authorization", "x-gateway-authorization", "proxy-authorization", "content-type")


class Role(StrEnum):
    BAP = "BAP"
    BPP = "BPP"
    GATEWAY = "BG"
    REGISTRY = "BREG"


# BECKN-005 has no signature or staleness codes; ONDC's are keyed by the receiver's role.
_SIGNATURE_CODE = {
    Role.BAP: ErrorCode.BAP_INVALID_SIGNATURE,
    Role.BPP: ErrorCode.BPP_INVALID_SIGNATURE,
    Role.GATEWAY: ErrorCode.GATEWAY_INVALID_SIGNATURE,
    Role.REGISTRY: ErrorCode.INVALID_REQUEST,
}
_STALE_CODE = {Role.BAP: ErrorCode.BAP_STALE_REQUEST}


class KeyResolverLike(Protocol):
    async def resolve(
        self, subscriber_id: str, unique_key_id: str, *, at: float | None = None
    ) -> SubscriberRecord: ...


@dataclass(frozen=True, slots=True)
class InboundResponse:
    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def acked(self) -> bool:
        return self.status_code == 200 and self.body == ACK_BODY


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """A message that was stored and ACKed, ready for the business handler."""

    id: int
    action: str
    sender_id: str
    gateway_id: str | None
    envelope: BecknModel
    body: bytes


@dataclass(frozen=True, slots=True)
class InboundResult:
    response: InboundResponse
    accepted: AcceptedMessage | None = None  # None for NACKs and for retransmissions


class _Refusal(Exception):
    """Internal: stops the pipeline with a ready response."""

    def __init__(self, response: InboundResponse) -> None:
        self.response = response


@dataclass(slots=True)
class _Trace:
    """What one request revealed so far, for its log record."""

    seen: datetime
    headers: dict[str, str]
    context: dict[str, Any] | None = None
    sender: str | None = None  # set once the signature verified


@dataclass(frozen=True, slots=True)
class _Verified:
    sender: SubscriberRecord
    sender_params: SignatureParams
    gateway: SubscriberRecord | None


class InboundPipeline:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        resolver: KeyResolverLike,
        receiver_id: str,
        role: Role,
        policy: NetworkPolicy | None = None,
        signature_skew_seconds: int = 5,
        max_body_bytes: int = 1_048_576,
        bind_uri_host: bool = True,
        clock: Callable[[], float] = time.time,
        tlog: LogRecorder | None = None,
        max_batch: int = 256,
    ) -> None:
        self._sessions = sessions
        self._tlog = tlog
        # Accepted messages are stored (and logged) by group commit, at most `max_batch` a transaction.
        self.committer = InboundCommitter(sessions, tlog, max_batch=max_batch)
        self._resolver = resolver
        self._receiver_id = receiver_id
        self._role = role
        self._policy = policy or NetworkPolicy(stale_code=_STALE_CODE.get(role, ErrorCode.BPP_STALE_REQUEST))
        self._skew = signature_skew_seconds
        self.max_body_bytes = max_body_bytes
        self._bind_uri_host = bind_uri_host
        self._clock = clock
        self._signature_code = _SIGNATURE_CODE[role]

    async def aclose(self) -> None:
        """Wait for the group commit under way, if any (before the engine is disposed of)."""
        await self.committer.aclose()

    async def handle(self, action: str, body: bytes, headers: Mapping[str, str]) -> InboundResult:
        trace = _Trace(seen=datetime.now(UTC), headers={k.lower(): v for k, v in headers.items()})
        try:
            return await self._handle(action, body, trace)
        except _Refusal as refusal:
            response = refusal.response
            if self._tlog is not None:
                response = await self._log_answer(action, body, trace, response)
            return InboundResult(response)

    async def _handle(self, action: str, body: bytes, trace: _Trace) -> InboundResult:
        if len(body) > self.max_body_bytes:
            raise _Refusal(_nack(413, ErrorCode.INVALID_REQUEST,
                                 f"body of {len(body)} bytes exceeds the limit of {self.max_body_bytes} bytes"))
        data = _parse_json(body)
        lowered = trace.headers
        now = self._clock()
        digest = body_digest(body)
        context = data.get("context")
        trace.context = context if isinstance(context, dict) else None
        verified = await self._verify_signatures(lowered, digest, now)
        trace.sender = verified.sender.subscriber_id
        self._bind_signer(action, context, verified.sender)

        try:
            envelope = parse_envelope(action, data)
        except EnvelopeInvalid as invalid:
            raise _Refusal(_nack_errors(400, invalid.errors)) from None
        problems = self._policy.check(action, envelope, now=datetime.fromtimestamp(now, UTC))
        if problems:
            # A retransmission of something we already accepted deserves the same ACK even if
            # it has gone stale in the meantime; only look that up on this (rare) path.
            previous = await self._stored_response(verified.sender.subscriber_id, context, action, digest)
            raise _Refusal(previous or _nack_errors(400, problems))

        return await self._persist(action, body, digest, lowered, envelope, verified, now, trace)

    async def _verify_signatures(self, headers: dict[str, str], digest: str, now: float) -> _Verified:
        value = headers.get("authorization")
        if not value:
            raise self._unauthorized("missing Authorization header: sign the request as BECKN-006 requires",
                                     gateway=False)
        sender, params = await self._verify_one(value, digest, now, gateway=False)

        gateway: SubscriberRecord | None = None
        gateway_value = headers.get("x-gateway-authorization") or headers.get("proxy-authorization")
        if gateway_value:
            gateway, _ = await self._verify_one(gateway_value, digest, now, gateway=True)
            if gateway.type != "BG":
                raise self._unauthorized(
                    f"{GATEWAY_AUTHORIZATION} signed by {gateway.subscriber_id!r}, which is registered as "
                    f"{gateway.type or 'no type'}, not as a gateway (BG)", gateway=True)
        return _Verified(sender, params, gateway)

    async def _verify_one(
        self, value: str, digest: str, now: float, *, gateway: bool
    ) -> tuple[SubscriberRecord, SignatureParams]:
        header = GATEWAY_AUTHORIZATION if gateway else AUTHORIZATION
        try:
            params = parse_signature_header(value)
            check_signature_times(params, now=now, skew_seconds=self._skew)
        except SignatureError as exc:
            raise self._unauthorized(f"{header}: {exc.reason}", gateway=gateway) from None
        try:
            record = await self._resolver.resolve(params.subscriber_id, params.unique_key_id, at=params.created)
        except KeyResolutionError as exc:
            raise self._unauthorized(f"{header}: key {params.key_id!r}: {exc.reason}", gateway=gateway) from None
        except RegistryUnavailable as exc:
            # Our side cannot check the key right now: not the sender's fault, so ask for a retry.
            raise _Refusal(_nack(503, ErrorCode.INVALID_REQUEST,
                                 f"cannot verify the signature now, the registry is unreachable ({exc}); retry later",
                                 headers={"Retry-After": "5"})) from None
        if record.verify_key is None:
            raise self._unauthorized(f"{header}: the registry holds no usable signing key for {params.key_id!r}",
                                     gateway=gateway)
        try:
            verify_signature(params, record.verify_key, digest_b64=digest)
        except SignatureError as exc:
            raise self._unauthorized(f"{header}: {exc.reason}", gateway=gateway) from None
        return record, params

    def _bind_signer(self, action: str, context: Any, sender: SubscriberRecord) -> None:
        """The signer must be the participant the context names, and its callback URI must be its own."""
        id_field, uri_field = ("bpp_id", "bpp_uri") if is_callback(action) else ("bap_id", "bap_uri")
        if not isinstance(context, dict) or not context.get(id_field):
            raise _Refusal(_nack(400, ErrorCode.INVALID_REQUEST,
                                 f"context.{id_field} is required: it names the signer", path=f"context.{id_field}"))
        named = context[id_field]
        if named != sender.subscriber_id:
            raise self._unauthorized(
                f"signed by {sender.subscriber_id!r} but context.{id_field} is {named!r}: "
                f"a {'callback' if is_callback(action) else 'request'} must be signed by its {id_field}",
                gateway=False)
        uri = context.get(uri_field)
        if self._bind_uri_host and sender.url and isinstance(uri, str):
            if _host(uri) != _host(sender.url):
                raise _Refusal(_nack(400, ErrorCode.INVALID_REQUEST,
                                     f"context.{uri_field} host {_host(uri)!r} is not the host registered for "
                                     f"{sender.subscriber_id!r} ({_host(sender.url)!r})", path=f"context.{uri_field}"))

    async def _persist(
        self, action: str, body: bytes, digest: str, headers: dict[str, str], envelope: BecknModel,
        verified: _Verified, now: float, trace: _Trace,
    ) -> InboundResult:
        context = envelope.context  # type: ignore[attr-defined]
        sender_id = verified.sender.subscriber_id
        row: dict[str, Any] = {
            "sender_id": sender_id,
            "message_id": context.message_id,
            "action": action,
            "transaction_id": context.transaction_id,
            "body": body,
            "body_digest": digest,
            "dedupe_key": _dedupe_key(action, digest),
            "headers": {k: headers[k] for k in _KEPT_HEADERS if k in headers},
            "received_at": datetime.fromtimestamp(now, UTC),
            "expires_at": message_expires_at(context),
            "response_status": 200,
            "response_body": ACK_BODY,
        }
        try:
            record = None if self._tlog is None else self._record(action, body, trace, ACK_BODY, ack="ACK")
            # Group commit: returns once the batch holding this row (and its log entry) committed.
            stored = await self.committer.store(row, record)
        except IntegrityError:
            stored = Stored(None)  # taken as a duplicate: the stored row (if any) decides, below
        except (SQLAlchemyError, OSError, StoreInterrupted) as exc:
            # Nothing was stored, so we must not ACK; a 503 tells the sender to retry.
            raise _Refusal(_nack(503, ErrorCode.INVALID_REQUEST,
                                 f"the message could not be stored ({type(exc).__name__}); retry later",
                                 headers={"Retry-After": "2"})) from None
        except Exception as exc:  # noqa: BLE001 - e.g. the log refused the append: nothing committed
            log.error("inbound.persist_failed", action=action, error_type=type(exc).__name__, error=str(exc)[:300])
            raise _Refusal(_nack(503, ErrorCode.INVALID_REQUEST,
                                 f"the message could not be stored and logged ({type(exc).__name__}); retry later",
                                 headers={"Retry-After": "2"})) from None
        if stored.id is None:  # already stored: a retransmission or a replayed message_id
            previous = await self._stored_response(sender_id, {"message_id": context.message_id}, action, digest)
            if previous is None:  # the conflicting row vanished: should not happen, but never 500
                raise _Refusal(_nack(503, ErrorCode.INVALID_REQUEST, "concurrent duplicate; retry"))
            raise _Refusal(previous)  # the answer already given (logged as a retransmission)
        accepted = AcceptedMessage(
            id=stored.id, action=action, sender_id=sender_id,
            gateway_id=verified.gateway.subscriber_id if verified.gateway else None,
            envelope=envelope, body=body,
        )
        answer_headers: dict[str, str] = {}
        if stored.logged is not None:
            answer_headers = self._receipt_headers(stored.logged, body)
        return InboundResult(InboundResponse(200, ACK_BODY, answer_headers), accepted)

    # ------------------------------------------------------------------ the transaction log

    def _record(self, action: str, body: bytes, trace: _Trace, answer: bytes, *, ack: str,
                code: str | None = None) -> LogRecord:
        assert self._tlog is not None
        context = trace.context or {}

        def text(name: str) -> str | None:
            value = context.get(name)
            return value if isinstance(value, str) else None

        return LogRecord(
            direction="in", action=action, node=self._tlog.node_id, peer=trace.sender,
            transaction_id=text("transaction_id") or "", message_id=text("message_id") or "",
            body=body, seen_at=trace.seen, headers=trace.headers, context_timestamp=text("timestamp"),
            ack=ack,  # type: ignore[arg-type]
            error_code=code, response=answer,
        )

    def _receipt_headers(self, logged: Logged, body: bytes) -> dict[str, str]:
        assert self._tlog is not None
        try:
            return {RECEIPT_HEADER: self._tlog.receipt(logged, body)}
        except Exception as exc:  # noqa: BLE001 - the message is logged; only the promise is missing
            log.error("inbound.receipt_failed", error_type=type(exc).__name__)
            return {}

    async def _log_answer(self, action: str, body: bytes, trace: _Trace, response: InboundResponse) -> InboundResponse:
        """Log a refusal or a retransmission's answer, best effort; an ACK gets its receipt."""
        try:
            acked = response.acked
            record = self._record(action, body, trace, response.body, ack="ACK" if acked else "NACK",
                                  code=None if acked else _error_code(response))
        except Exception as exc:  # noqa: BLE001 - never let logging change the answer
            log.error("inbound.log_record_failed", action=action, error_type=type(exc).__name__)
            return response
        assert self._tlog is not None
        logged = await self._tlog.append(record)
        if logged is None or not acked:
            return response
        return InboundResponse(response.status_code, response.body,
                               {**response.headers, **self._receipt_headers(logged, body)})

    async def _stored_response(
        self, sender_id: str, context: Any, action: str, digest: str
    ) -> InboundResponse | None:
        """The answer already given to this (sender, message_id, action), if any.

        Byte-identical retransmission: the same answer. Same message_id, other body: a replay
        or a sender bug, refused without touching what was accepted.
        """
        message_id = context.get("message_id") if isinstance(context, dict) else None
        if not isinstance(message_id, str):
            return None
        try:
            async with self._sessions() as session:
                stored = (await session.execute(
                    select(InboundMessage.body_digest, InboundMessage.response_status, InboundMessage.response_body)
                    .where(InboundMessage.sender_id == sender_id, InboundMessage.message_id == message_id,
                           InboundMessage.action == action,
                           InboundMessage.dedupe_key == _dedupe_key(action, digest))
                )).first()
        except (SQLAlchemyError, OSError):
            return None
        if stored is None:
            return None
        if stored.body_digest == digest:
            return InboundResponse(stored.response_status, stored.response_body, {})
        return _nack(409, ErrorCode.INVALID_REQUEST,
                     f"message_id {message_id!r} was already used by {sender_id!r} for {action!r} with a different "
                     "body; use a new message_id for a new message", path="context.message_id")

    def _unauthorized(self, reason: str, *, gateway: bool) -> _Refusal:
        name, value = authenticate_challenge(self._receiver_id, gateway=gateway)
        return _Refusal(_nack(401, self._signature_code, reason, headers={name: value}))


_CODE = re.compile(r"[A-Za-z0-9._:-]{1,32}")


def _error_code(response: InboundResponse) -> str:
    """The BECKN error code of a NACK (its HTTP status if it has none)."""
    try:
        error = json.loads(response.body).get("error")
        code = error.get("code") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        code = None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else str(response.status_code)


def _dedupe_key(action: str, digest: str) -> str:
    return digest if action in MULTI_PART_ACTIONS else ""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(body: bytes) -> dict[str, Any]:
    # Decode first: json.loads(bytes) would guess UTF-16/32 from the first bytes, and Beckn is UTF-8.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refusal(_nack(400, ErrorCode.INVALID_REQUEST,
                             f"body is not UTF-8: {exc.reason} at byte {exc.start}")) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _Refusal(_nack(400, ErrorCode.INVALID_REQUEST,
                             f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")) from None
    except ValueError as exc:  # NaN / Infinity: Python accepts them, JSON does not
        raise _Refusal(_nack(400, ErrorCode.INVALID_REQUEST, f"malformed JSON: {exc}")) from None
    except RecursionError:
        raise _Refusal(_nack(400, ErrorCode.INVALID_REQUEST, "JSON nested too deeply")) from None
    if not isinstance(data, dict):
        raise _Refusal(_nack(400, ErrorCode.INVALID_REQUEST,
                             f"body must be a JSON object with context and message, got {type(data).__name__}"))
    return data


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _nack(status: int, code: str, message: str, *, path: str | None = None,
          headers: dict[str, str] | None = None) -> InboundResponse:
    return InboundResponse(status, nack_body(BecknError(code, message, path)), headers or {})


def _nack_errors(status: int, errors: list[BecknError]) -> InboundResponse:
    return InboundResponse(status, nack_body(errors[0], details=errors[1:] or None), {})
