"""The registry's own signed transaction log (issue 8): every protocol message it receives or sends.

The nodes log through `BecknNode` (beckn/node.py); the registry is a separate app and logs here,
with the same log (beckn/tlog: leaves, sidecars, checkpoints, auditor API) under its own Ed25519
log key (`log_private_key` in its `node-keys.json`, never its signing key) and origin
`<registry id>/tlog` (LAKOU_TLOG_ORIGIN).

What is logged, one leaf per message (the leaf's `node` is the registry's id):

* every request to a protocol route (`POST /subscribe` in both dialects, `/lookup`,
  `/v2.0/lookup`, `/vlookup`), direction `in`, with the answer given: `ack` ACK for a 2xx, NACK
  otherwise with the HTTP status as `code` (a 429 of the rate limiter too). `peer` is the
  caller's subscriber id once its signature verified (the routes say so with `set_peer`), else
  null: an unverified claim is never written into a leaf;
* the on_subscribe challenge sent to a subscriber (`out`, action `on_subscribe`): ACK when the
  answer was right, NACK with the HTTP status or `wrong_answer`, no ack with `no_answer` or
  `invalid_ssl` when no answer came;
* each federated lookup sent to a partner registry (`out`, action `lookup`, peer the partner's id):
  ACK for a verified answer, NACK with the HTTP status or `refused` (unverifiable answer), no ack
  with `timeout` or `unreachable`.

Each exchange gets a fresh id, used as the leaf's transaction and message id and answered in the
`X-Lakou-Log-Message-Id` response header, so a caller can ask `/tlog/proof/inclusion?message_id=`
later; the challenge and federated lookups an exchange causes share its transaction id (their
leaves are linked by `prev`). The raw request bytes and signature headers go to the erasable
sidecar; so does the answer for a subscribe, but a lookup answer (large, and signed by the
registry anyway) is kept only as `{"status", "length", "sha256"}` of its body.

Subscribe requests are logged before the answer leaves (awaited group commit, best effort: a log
failure is logged, never turned into an error), and an accepted subscribe's answer carries the
signed receipt (X-Lakou-Log-Receipt) of its leaf. The entry's state change and its leaf are two
transactions: a subscribe may register several entries, each in its own transaction, before the
answer is known. Lookups are the hot path: their records go to a bounded queue that a background
writer empties, one transaction per batch (it lingers LINGER_SECONDS first, so that sequential
lookups share a commit and its fsync); the answer never waits for it. When the queue is full the
record is dropped and counted (`/health` `tlog.dropped`; store errors in `tlog.failed`). The
operator's admin API is not a protocol message and is not logged here (it has its own audit table).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beckn.tlog.api import tlog_router
from beckn.tlog.leaf import LogRecord, signature_headers
from beckn.tlog.note import NoteSigner
from beckn.tlog.receipt import RECEIPT_HEADER
from beckn.tlog.recorder import Checkpointer, LogRecorder
from beckn.tlog.store import TransactionLog, check_log_origin

log = structlog.get_logger(__name__)

# Path -> the leaf's action (the leaf takes [a-z_] actions only: `/v2.0/lookup` is `signed_lookup`).
PROTOCOL_ROUTES: dict[str, str] = {
    "/subscribe": "subscribe",
    "/lookup": "lookup",
    "/v2.0/lookup": "signed_lookup",
    "/vlookup": "vlookup",
}
# Actions logged before the answer is sent; the others (lookups) in the background.
AWAITED_ACTIONS = frozenset({"subscribe"})
MESSAGE_ID_HEADER = "X-Lakou-Log-Message-Id"
# Keys in the request's ASGI state (shared with `request.state`).
_EXCHANGE = "tlog_exchange"
_PEER = "tlog_peer"
# A subscribe answer is an ACK or an error object: kept whole up to this size, hashed beyond.
# The background writer waits this long before writing a batch, and writes at most this many at once.
LINGER_SECONDS = 0.25
MAX_BATCH = 512
_KEEP_RESPONSE_BYTES = 64 * 1024


@dataclass
class Trace:
    """What came back from an outbound request: filled in by the code that sends it."""

    status: int | None = None
    response: bytes | None = None


def set_peer(request: Any, subscriber_id: str) -> None:
    """Name the verified signer of the current request as the leaf's peer."""
    request.scope.setdefault("state", {})[_PEER] = subscriber_id


def exchange_id(request: Any) -> str | None:
    """The current exchange's transaction id, for the outbound messages it causes (None: not logged)."""
    state = request.scope.get("state")
    return state.get(_EXCHANGE) if isinstance(state, Mapping) else None


def response_summary(status: int, length: int, digest: str) -> bytes:
    """What the sidecar keeps of a lookup answer instead of its body."""
    return json.dumps({"status": status, "length": length, "sha256": digest}, separators=(",", ":")).encode()


class RegistryLog:
    """The registry's log, its recorder and checkpointer, and the background appends of lookups."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], signer: NoteSigner, node_id: str, *,
                 checkpoint_interval: float, max_pending: int = 10_000, max_body_bytes: int = 1 << 20) -> None:
        self.sessions = sessions
        self.node_id = node_id
        self.origin = signer.name
        self.log = TransactionLog(sessions, signer, signer.name)
        self.recorder = LogRecorder(self.log, node_id, max_pending=max_pending)
        self.checkpointer = Checkpointer(self.log, checkpoint_interval)
        self.max_body_bytes = max_body_bytes
        self.dropped = 0  # background records refused because the queue was full
        self.failed = 0  # background records the store refused (database errors)
        self._max_pending = max_pending
        self._queue: deque[LogRecord] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await check_log_origin(self.sessions, self.origin, "the registry's")
        self._stop, self._wake, self._closing = asyncio.Event(), asyncio.Event(), False
        self._writer = asyncio.create_task(self._write_queued(), name="registry-tlog-writer")
        self._runner = asyncio.create_task(self.checkpointer.run(self._stop), name="registry-tlog-checkpoints")

    async def stop(self, timeout: float = 10.0) -> None:
        """Let queued appends finish (bounded), sign a last checkpoint, stop the checkpointer."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._writer, timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._writer.cancel()
        self._stop.set()
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner, timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._runner.cancel()
        try:
            await self.checkpointer.tick()  # what was logged since the last round is covered too
        except Exception as exc:  # noqa: BLE001 - shutting down: report, do not raise
            log.warning("registry.tlog_final_checkpoint_failed", error_type=type(exc).__name__)

    # ------------------------------------------------------------------ appends

    async def record_now(self, record: LogRecord) -> Any:
        """Best effort, awaited: the entry (`Logged`) or None."""
        return await self.recorder.append(record)

    def record_soon(self, record: LogRecord) -> None:
        """Best effort, never waited for: queued for the background writer. A full queue drops the
        record and counts it: the caller (a lookup) must not slow down because the log is stuck."""
        if len(self._queue) >= self._max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # a flood must not flood the logs as well
                log.error("registry.tlog_append_dropped", reason="queue full", action=record.action,
                          dropped=self.dropped, max_pending=self._max_pending)
            return
        self._queue.append(record)
        self._wake.set()

    async def _write_queued(self) -> None:
        """The background writer: one transaction per batch of queued records. It lingers a moment
        before each batch so that sequential lookups share a commit (one fsync) instead of paying
        one each; entries stay in arrival order."""
        while True:
            await self._wake.wait()
            if not self._closing and len(self._queue) < MAX_BATCH:
                await asyncio.sleep(LINGER_SECONDS)
            self._wake.clear()
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            if batch:
                try:
                    await self.log.append_batch(batch)
                except Exception as exc:  # noqa: BLE001 - best effort by contract: count, report, go on
                    self.failed += len(batch)
                    log.error("registry.tlog_append_failed", records=len(batch), failed=self.failed,
                              error_type=type(exc).__name__, error=str(exc)[:300])
            if self._queue:
                self._wake.set()  # what arrived meanwhile: the next round (lingering again)
            elif self._closing:
                return

    def outbound(self, action: str, *, peer: str | None, transaction_id: str | None, body: bytes,
                 headers: Mapping[str, str], trace: Trace, ack: Literal["ACK", "NACK"] | None,
                 code: str | None, seen_at: datetime, keep_response: bool = True) -> LogRecord:
        """The record of a message this registry sent, with what came back."""
        response = trace.response
        if response is not None and not keep_response:
            response = response_summary(trace.status or 0, len(response), hashlib.sha256(response).hexdigest())
        return LogRecord(
            direction="out", action=action, node=self.node_id, peer=peer,
            transaction_id=transaction_id or str(uuid.uuid4()), message_id=str(uuid.uuid4()), body=body,
            seen_at=seen_at, headers=dict(headers), ack=ack, error_code=code, response=response)

    def health(self) -> dict[str, Any]:
        return {"enabled": True, "origin": self.origin, "dropped": self.dropped + self.recorder.dropped,
                "failed": self.failed, "checkpoints": "halted" if self.checkpointer.halted else "ok"}

    # ------------------------------------------------------------------ routes

    def routes(self, auditor_tokens: str | None) -> APIRouter:
        """`GET /tlog/vkey` and the auditor API (beckn/tlog/api.py) over this log."""
        router = vkey_router(self.log.signer)
        router.include_router(tlog_router(self.log, auditor_tokens=auditor_tokens))
        return router


def vkey_router(signer: NoteSigner) -> APIRouter:
    router = APIRouter()
    vkey = signer.vkey

    async def log_vkey() -> PlainTextResponse:
        return PlainTextResponse(vkey + "\n")

    router.add_api_route("/tlog/vkey", log_vkey, methods=["GET"], tags=["transaction log"],
                         summary="The registry's transaction-log key (C2SP note verifier key)",
                         response_class=PlainTextResponse)
    return router


class RegistryLogMiddleware:
    """Logs every request to a protocol route with the answer given (see the module docstring).

    Pure ASGI, so it sees the exact request bytes the route reads and the exact status it answers,
    refusals raised as exceptions included, without the route having to log on every exit."""

    def __init__(self, app: ASGIApp, registry_log: RegistryLog) -> None:
        self.app = app
        self.tlog = registry_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        action = PROTOCOL_ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if action is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self.tlog, scope, action)
        try:
            await self.app(scope, exchange.receive(receive), exchange.send(send))
        except BaseException:
            if not exchange.logged:  # a 500 on the way out: it was still received and refused
                exchange.status = exchange.status or 500
                exchange.log_in_background()
            raise
        await exchange.finish(send)


class _Exchange:
    """One protocol request passing through `RegistryLogMiddleware`."""

    def __init__(self, tlog: RegistryLog, scope: Scope, action: str) -> None:
        self.tlog = tlog
        self.scope = scope
        self.action = action
        self.id = str(uuid.uuid4())
        self.seen_at = datetime.now(UTC)
        self.awaited = action in AWAITED_ACTIONS
        self.request = bytearray()
        self.status: int | None = None
        self.length = 0
        self.digest = hashlib.sha256()
        self.kept = bytearray()
        self.held: list[Message] = []  # an awaited exchange's answer, sent once logged
        self.logged = False
        scope.setdefault("state", {})[_EXCHANGE] = self.id

    def receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(self.request) <= self.tlog.max_body_bytes:
                # Up to the routes' own limit: beyond it the request is refused (413) anyway.
                self.request += message.get("body", b"")[: self.tlog.max_body_bytes + 1 - len(self.request)]
            return message
        return wrapped

    def send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                headers = [*message.get("headers", []), (MESSAGE_ID_HEADER.lower().encode(), self.id.encode())]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                self.length += len(chunk)
                self.digest.update(chunk)
                if self.awaited and len(self.kept) <= _KEEP_RESPONSE_BYTES:  # lookups: the hash is enough
                    self.kept += chunk[: _KEEP_RESPONSE_BYTES + 1 - len(self.kept)]
            if self.awaited:
                self.held.append(message)  # sent by `finish`, after the log
            else:
                await send(message)
        return wrapped

    def record(self) -> LogRecord:
        state = self.scope.get("state") or {}
        status = self.status or 500
        ok = 200 <= status < 300
        small = self.length <= _KEEP_RESPONSE_BYTES
        if self.awaited and small:
            response = bytes(self.kept)
        else:
            response = response_summary(status, self.length, self.digest.hexdigest())
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope.get("headers", [])}
        return LogRecord(
            direction="in", action=self.action, node=self.tlog.node_id, peer=state.get(_PEER),
            transaction_id=self.id, message_id=self.id, body=bytes(self.request), seen_at=self.seen_at,
            headers=signature_headers(headers), ack="ACK" if ok and not _ondc_nack(response) else "NACK",
            error_code=None if ok else str(status), response=response)

    def log_in_background(self) -> None:
        self.logged = True
        try:
            self.tlog.record_soon(self.record())
        except Exception as exc:  # noqa: BLE001 - the log never breaks an answer
            log.error("registry.tlog_record_failed", action=self.action, error_type=type(exc).__name__)

    async def finish(self, send: Send) -> None:
        if not self.awaited:
            self.log_in_background()
            return
        self.logged = True
        logged, record = None, None
        try:
            record = self.record()
            logged = await self.tlog.record_now(record)
        except Exception as exc:  # noqa: BLE001 - best effort: the answer goes out regardless
            log.error("registry.tlog_record_failed", action=self.action, error_type=type(exc).__name__)
        for message in self.held:
            if message["type"] == "http.response.start" and logged is not None and record and record.ack == "ACK":
                # The subscriber can prove the registry logged its accepted subscribe.
                receipt = self.tlog.recorder.receipt(logged, record.body)
                message = {**message, "headers": [*message.get("headers", []),
                                                  (RECEIPT_HEADER.lower().encode(), receipt.encode())]}
            await send(message)


def _ondc_nack(response: bytes) -> bool:
    """An ONDC-shaped answer saying NACK (ONDC answers some refusals with a 2xx)."""
    if b"NACK" not in response:
        return False
    try:
        body = json.loads(response)
    except ValueError:
        return False
    message = body.get("message") if isinstance(body, dict) else None
    ack = message.get("ack") if isinstance(message, dict) else None
    return isinstance(ack, dict) and ack.get("status") == "NACK"


__all__ = [
    "MESSAGE_ID_HEADER",
    "PROTOCOL_ROUTES",
    "RegistryLog",
    "RegistryLogMiddleware",
    "Trace",
    "exchange_id",
    "set_peer",
    "response_summary",
]
