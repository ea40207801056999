"""Transactional outbox: outgoing Beckn messages and the worker that delivers them.

A handler that must send a message (an `on_select`, a forwarded `search`, ...) calls `enqueue()`
inside the transaction that stores its business change, so both commit together or not at all.
`DeliveryWorker` then POSTs each row, signed afresh at every attempt, until the receiver ACKs, it
refuses for good, or the message's ttl runs out. Delivery is at least once: a worker killed
after sending but before recording the outcome sends again once its lease runs out, and the
receiver deduplicates on (sender, message_id, action) as Beckn requires.

With a transaction log (`tlog`), every attempt is logged (direction "out", best effort): the bytes
and signature sent, the receiver's answer (ACK, NACK and its code, an HTTP status, or no answer:
"timeout" / "transport"), and in the entry's private sidecar the attempt number and the log
receipt the receiver returned (`X-Lakou-Log-Receipt`), the sender's evidence that it was logged.

Given the receivers' log keys (`receipt_keys`, the registry's `log_vkey`s, cached), the receipt of
every ACK is checked before it is kept: signed by a log key the receiver's registry record
publishes, by the receiver (the participant the message's context names, or the one whose
registered subscriber URL the message was posted under), over exactly the bytes sent. The outcome goes in the
attempt's sidecar as `x-lakou-log-receipt-status` ("valid", "missing", "unverified" when the
registry could not be asked, or "invalid-format" / "invalid-receiver" / "invalid-signature" /
"invalid-body"), is counted in `DeliveryWorker.receipts`, and anything but "valid" is a warning.
The delivery outcome never changes: the ACK is the protocol's answer, the receipt our evidence.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import hashlib
import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.signing import AUTHORIZATION, GATEWAY_AUTHORIZATION, body_digest
from beckn.store.tables import AttemptOutcome, DeliveryAttempt, OutboxMessage, OutboxStatus
from beckn.tlog.leaf import LogRecord
from beckn.tlog.note import NoteError, parse_note
from beckn.tlog.receipt import RECEIPT_HEADER, ReceiptError, verify_receipt
from beckn.tlog.recorder import LogRecorder
from beckn.tlog.witness import LogKeys, RegistryLogKeys, WitnessUnavailable, subscriber_of

log = structlog.get_logger(__name__)

SIGNATURE_HEADERS = (AUTHORIZATION, GATEWAY_AUTHORIZATION)
# Headers the worker sets itself; letting extra_headers replace them would break the signature
# or the framing.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Printable ASCII, space and tab: what every HTTP stack sends unchanged (RFC 9110 §5.5).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
# Statuses that say "not now" rather than "never": RFC 9110 408, RFC 8470 425, RFC 6585 429.
_RETRYABLE_4XX = frozenset({408, 425, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# The attempt's sidecar metadata saying how the receiver's log receipt checked out.
RECEIPT_STATUS = "x-lakou-log-receipt-status"
# Beckn answers are a few hundred bytes; keep enough of anything else to diagnose it.
MAX_STORED_RESPONSE = 64 * 1024
_MAX_ERROR = 2000


class SignerLike(Protocol):
    def sign(self, body: bytes, *, digest_b64: str | None = None) -> str: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- enqueue


def destination_key(url: str) -> str:
    """`scheme://host:port` of an absolute http(s) URL: the unit of per-destination concurrency.

    Raises ValueError naming what is wrong with the URL.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"destination_url must be a non-empty string, got {url!r}")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"destination_url {url!r} contains whitespace; percent-encode it or fix the URL")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"destination_url {url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(
            f"destination_url must be an absolute http:// or https:// URL with a host "
            f"(e.g. a bap_uri + '/on_select'), got {url!r}"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise ValueError(f"destination_url {url!r} has port {port}, outside 1-65535")
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    return f"{parsed.scheme}://{host}:{port}"


def _checked_extra_headers(extra: Mapping[str, str] | None, signature_header: str) -> dict[str, str]:
    if extra is None:
        return {}
    out: dict[str, str] = {}
    for name, value in extra.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"extra_headers has an invalid header name {name!r}")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"extra_headers[{name!r}] must be a string of printable ASCII, got {value!r}")
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or lowered == signature_header.lower():
            raise ValueError(
                f"extra_headers must not set {name!r}: the worker sets it (the {signature_header} "
                "signature is made afresh at each attempt)"
            )
        out[name] = value
    return out


async def enqueue(
    session: AsyncSession,
    *,
    destination_url: str,
    action: str,
    body: bytes,
    transaction_id: str,
    message_id: str,
    expires_at: datetime,
    signature_header: str = AUTHORIZATION,
    extra_headers: dict[str, str] | None = None,
) -> OutboxMessage:
    """Add a message to send to the caller's transaction; it is sent only if that commits.

    `body` is sent (and signed) byte for byte. `expires_at` (aware) ends the retries, normally
    the message's context timestamp + ttl. The row gets its id when the session flushes.
    Call the worker's `wake()` after commit for the lowest latency.
    """
    key = destination_key(destination_url)
    if not isinstance(body, bytes) or not body:
        raise ValueError("body must be the non-empty bytes to send (serialise the JSON once, then enqueue)")
    for name, value in (("action", action), ("transaction_id", transaction_id), ("message_id", message_id)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValueError(f"expires_at must be a timezone-aware datetime, got {expires_at!r}")
    now = _utcnow()
    if expires_at <= now:
        raise ValueError(
            f"expires_at {expires_at.isoformat()} is already past: the receiver would refuse the message "
            "as stale; build a new message with a fresh timestamp and ttl"
        )
    if signature_header not in SIGNATURE_HEADERS:
        raise ValueError(f"signature_header must be one of {', '.join(SIGNATURE_HEADERS)}, got {signature_header!r}")
    row = OutboxMessage(
        created_at=now,
        destination_url=destination_url,
        destination_key=key,
        action=action,
        transaction_id=transaction_id,
        message_id=message_id,
        body=body,
        signature_header=signature_header,
        extra_headers=_checked_extra_headers(extra_headers, signature_header),
        expires_at=expires_at.astimezone(UTC),
        status=OutboxStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now,
    )
    session.add(row)
    return row


# --------------------------------------------------------------------------- delivery


@dataclass(slots=True)
class _Claimed:
    id: int
    destination_url: str
    destination_key: str
    body: bytes
    signature_header: str
    extra_headers: dict[str, str]
    expires_at: datetime
    attempts: int
    claimed_until: datetime
    action: str = ""
    transaction_id: str = ""
    message_id: str = ""


@dataclass(slots=True)
class _Result:
    outcome: AttemptOutcome
    status_code: int | None = None
    body: bytes | None = None
    error: str | None = None
    retry_after: float | None = None
    sent_headers: dict[str, str] | None = None  # None: nothing was sent (signing failed)
    receipt: str | None = None  # the receiver's log receipt header, if any
    no_answer: str | None = None  # "timeout" / "transport": no HTTP answer at all


_CLAIM_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.destination_url,
    OutboxMessage.destination_key,
    OutboxMessage.body,
    OutboxMessage.signature_header,
    OutboxMessage.extra_headers,
    OutboxMessage.expires_at,
    OutboxMessage.attempts,
    OutboxMessage.claimed_until,
    OutboxMessage.action,
    OutboxMessage.transaction_id,
    OutboxMessage.message_id,
)


class DeliveryWorker:
    """Delivers pending outbox rows; several workers (processes) may share one database.

    Each worker leases the rows it claims for `lease_seconds`, so the rows of a crashed worker
    come back to the others once the lease runs out. On PostgreSQL the claim uses
    `FOR UPDATE SKIP LOCKED`; on SQLite a conditional UPDATE under its single write lock.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        signer: SignerLike,
        *,
        http: httpx.AsyncClient | None = None,
        per_destination_limit: int = 8,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
        request_timeout: float = 10.0,
        poll_interval: float = 0.5,
        batch_size: int = 64,
        lease_seconds: float = 30.0,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        tlog: LogRecorder | None = None,
        receipt_keys: LogKeys | None = None,
    ) -> None:
        if per_destination_limit < 1:
            raise ValueError(f"per_destination_limit must be at least 1, got {per_destination_limit}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 < base_backoff <= max_backoff:
            raise ValueError(f"need 0 < base_backoff <= max_backoff, got {base_backoff} and {max_backoff}")
        if request_timeout <= 0 or poll_interval <= 0:
            raise ValueError(f"request_timeout and poll_interval must be positive, got {request_timeout}, {poll_interval}")
        if lease_seconds < 2 * request_timeout:
            # A row may wait for one round of sends to its destination, then take one request:
            # a shorter lease would let another worker send it while this one still is.
            raise ValueError(
                f"lease_seconds ({lease_seconds}) must be at least twice request_timeout ({request_timeout})"
            )
        self._sessions = sessions
        self._signer = signer
        self._tlog = tlog
        # origin -> the receiver's registered log keys (beckn.tlog.witness.registry_log_keys, cached).
        self._receipt_keys = receipt_keys
        # How the receipts of ACKs checked out (module docstring); "invalid" sums every invalid-*.
        self.receipts: dict[str, int] = {"valid": 0, "missing": 0, "unverified": 0, "invalid": 0}
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=request_timeout,
            limits=httpx.Limits(max_connections=batch_size, max_keepalive_connections=batch_size),
        )
        self.per_destination_limit = per_destination_limit
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._wake = asyncio.Event()
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._inflight: dict[str, int] = {}
        self._saturated = False
        self._left_behind = False

    # ----------------------------------------------------------------- public

    def wake(self) -> None:
        """Make `run()` look for due messages now instead of at the next poll."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim the due messages, send them concurrently, record each attempt.

        Returns how many HTTP attempts were made (messages found already expired are closed
        without a request and not counted)."""
        claimed = await self._claim(self.batch_size - sum(self._inflight.values()))
        if not claimed:
            return 0
        sent = await asyncio.gather(*(self._deliver(message) for message in claimed))
        return sum(sent)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until `stop` is set, then let the sends under way finish and record them.

        Sends run as tasks, so a slow destination holds only its own slots while the loop keeps
        claiming messages for the others."""
        stop = stop or asyncio.Event()
        watcher = asyncio.create_task(self._wake_on(stop))
        tasks: set[asyncio.Task[bool]] = set()
        try:
            while not stop.is_set():
                self._wake.clear()
                capacity = self.batch_size - sum(self._inflight.values())
                claimed: list[_Claimed] = []
                if capacity > 0:
                    try:
                        claimed = await self._claim(capacity)
                    except Exception as exc:  # noqa: BLE001 - a database outage must not end the loop
                        log.error("outbox.claim_failed", worker=self.worker_id, error=_describe(exc))
                # Rows were left behind for want of slots: look again as soon as a send ends.
                self._saturated = capacity <= 0 or len(claimed) == capacity or self._left_behind
                for message in claimed:
                    task = asyncio.create_task(self._deliver(message))
                    tasks.add(task)
                    task.add_done_callback(self._task_done(tasks))
                if claimed and self._saturated:
                    continue  # more may be due right now
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        finally:
            watcher.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> DeliveryWorker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- claiming

    def _due(self, now: datetime) -> Any:
        return and_(
            OutboxMessage.status == OutboxStatus.PENDING.value,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until <= now),
        )

    async def _claim(self, capacity: int) -> list[_Claimed]:
        if capacity <= 0:
            return []
        now = self._clock()
        due = self._due(now)
        # Oldest first, but never more rows per destination than it has free slots: a destination
        # with a backlog must not fill the batch and starve the others.
        rank = func.row_number().over(
            partition_by=OutboxMessage.destination_key,
            order_by=(OutboxMessage.next_attempt_at, OutboxMessage.id),
        )
        ranked = (
            select(OutboxMessage.id, OutboxMessage.destination_key, OutboxMessage.next_attempt_at, rank.label("rank"))
            .where(due)
            .subquery()
        )
        candidates = (
            select(ranked.c.id, ranked.c.destination_key)
            .where(ranked.c.rank <= self.per_destination_limit)
            .order_by(ranked.c.next_attempt_at, ranked.c.id)
            .limit(self.batch_size)  # capacity + rows trimmed below (at most what is in flight)
        )
        async with self._sessions() as session:
            rows = (await session.execute(candidates)).all()
            self._left_behind = False
            free = {key: self.per_destination_limit - count for key, count in self._inflight.items()}
            ids: list[int] = []
            for row_id, key in rows:
                if len(ids) >= capacity:
                    break
                if free.get(key, self.per_destination_limit) > 0:
                    free[key] = free.get(key, self.per_destination_limit) - 1
                    ids.append(row_id)
            self._left_behind = len(ids) < len(rows)
            if not ids:
                return []
            target: Any = OutboxMessage.id.in_(ids)
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # Rows another worker is claiming right now are skipped, not waited for.
                target = OutboxMessage.id.in_(
                    select(OutboxMessage.id).where(OutboxMessage.id.in_(ids), due).with_for_update(skip_locked=True)
                )
            lease = now + timedelta(seconds=self.lease_seconds)
            result = await session.execute(
                update(OutboxMessage)
                .where(target, due)
                .values(claimed_by=self.worker_id, claimed_until=lease)
                .returning(*_CLAIM_COLUMNS)
                .execution_options(synchronize_session=False)
            )
            claimed = [_Claimed(*row) for row in result.all()]
            await session.commit()
        for message in claimed:
            self._inflight[message.destination_key] = self._inflight.get(message.destination_key, 0) + 1
        return claimed

    async def _keep_lease(self, message: _Claimed, now: datetime) -> bool:
        """Extend the lease if it might run out during the request. False: the row is no longer ours."""
        # The claim's lease is at least twice the request timeout; it runs short only when the row
        # waited long for a slot to its destination.
        if (message.claimed_until - now).total_seconds() >= 1.5 * self.request_timeout:
            return True
        lease = now + timedelta(seconds=self.lease_seconds)
        async with self._sessions() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == message.id,
                    OutboxMessage.status == OutboxStatus.PENDING.value,
                    OutboxMessage.claimed_by == self.worker_id,
                )
                .values(claimed_until=lease)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        message.claimed_until = lease
        return True

    # ----------------------------------------------------------------- sending

    async def _deliver(self, message: _Claimed) -> bool:
        """Send one claimed message and record the outcome. Never raises (but for cancellation)."""
        key = message.destination_key
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = asyncio.Semaphore(self.per_destination_limit)
        try:
            async with semaphore:
                now = self._clock()
                if message.expires_at <= now:
                    await self._close_expired(message)
                    return False
                if not await self._keep_lease(message, now):
                    return False
                started = self._clock()
                t0 = time.perf_counter()
                result = await self._post(message)
                duration_ms = (time.perf_counter() - t0) * 1000
                if self._tlog is not None and result.sent_headers is not None:
                    await self._log_attempt(message, result, started)
                await self._record(message, result, started, duration_ms)
                return True
        except Exception as exc:  # noqa: BLE001 - one message must not take the worker down
            # The outcome may be unrecorded: the lease runs out and the message is sent again.
            log.error("outbox.record_failed", outbox_id=message.id, worker=self.worker_id, error=_describe(exc))
            return False
        finally:
            remaining = self._inflight.get(key, 1) - 1
            if remaining > 0:
                self._inflight[key] = remaining
            else:
                self._inflight.pop(key, None)
                self._semaphores.pop(key, None)

    async def _post(self, message: _Claimed) -> _Result:
        try:
            # Fresh at every attempt: a retry must not carry a signature that has expired.
            signature = self._signer.sign(message.body, digest_b64=body_digest(message.body))
        except Exception as exc:  # noqa: BLE001 - a signer fault is ours; keep the message for later
            return _Result(AttemptOutcome.RETRY, error=f"signing failed: {_describe(exc)}")
        headers = {"Content-Type": "application/json", **message.extra_headers, message.signature_header: signature}
        try:
            # asyncio.timeout bounds the whole exchange: httpx's timeouts are per read, and a
            # trickling server could otherwise outlast the lease.
            async with asyncio.timeout(self.request_timeout):
                async with self._http.stream(
                    "POST", message.destination_url, content=message.body, headers=headers,
                    timeout=self.request_timeout,
                ) as response:
                    body = await _read_capped(response, MAX_STORED_RESPONSE)
        except (TimeoutError, httpx.TimeoutException):
            return _Result(AttemptOutcome.RETRY, error=f"no answer within {self.request_timeout}s",
                           sent_headers=headers, no_answer="timeout")
        except httpx.HTTPError as exc:
            return _Result(AttemptOutcome.RETRY, error=_describe(exc), sent_headers=headers, no_answer="transport")
        except Exception as exc:  # noqa: BLE001 - e.g. a row written without enqueue()'s checks
            # Retried like a network error: the ttl still bounds it, and nothing is dropped unseen.
            return _Result(AttemptOutcome.RETRY, error=f"could not send: {_describe(exc)}",
                           sent_headers=headers, no_answer="transport")
        result = _classify(response.status_code, body, response.headers.get("Retry-After"), self._clock())
        result.sent_headers = headers
        receipt = response.headers.get(RECEIPT_HEADER)
        result.receipt = receipt if receipt and len(receipt) <= 4096 else None
        return result

    async def _log_attempt(self, message: _Claimed, result: _Result, started: datetime) -> None:
        """Log one attempt, best effort (the recorder never raises)."""
        assert self._tlog is not None and result.sent_headers is not None
        try:
            ack: str | None = None
            code: str | None = result.no_answer
            if result.status_code is not None:
                status, _ = _ack(result.body or b"")
                ack = status
                code = None if status == "ACK" else (_nack_code(result.body or b"") or str(result.status_code))
            context = _context(message.body)
            metadata = {"x-lakou-attempt": str(message.attempts + 1)}
            if result.receipt is not None:
                metadata["x-lakou-log-receipt"] = result.receipt
            if ack == "ACK" and self._receipt_keys is not None:
                metadata[RECEIPT_STATUS] = await self._check_receipt(message, result.receipt, context)
            record = LogRecord(
                direction="out", action=message.action, node=self._tlog.node_id,
                peer=_receiver_id(message.action, context), transaction_id=message.transaction_id,
                message_id=message.message_id, body=message.body, seen_at=started,
                headers={**result.sent_headers, **metadata},
                context_timestamp=context.get("timestamp") if isinstance(context.get("timestamp"), str) else None,
                ack=ack,  # type: ignore[arg-type]
                error_code=code, response=result.body,
            )
        except Exception as exc:  # noqa: BLE001 - logging must never stop a delivery
            log.error("outbox.log_record_failed", outbox_id=message.id, error=_describe(exc))
            return
        await self._tlog.append(record)

    async def _check_receipt(self, message: _Claimed, receipt: str | None, context: Mapping[str, Any]) -> str:
        """The receipt status of an ACK (module docstring): counted, and warned about unless valid."""
        receiver = _receiver_id(message.action, context)
        if receipt is None:
            status, reason = "missing", "the ACK carried no log receipt"
        else:
            try:
                status, reason = await self._verify_receipt(receipt, message, receiver)
            except Exception as exc:  # noqa: BLE001 - the check must never cost the attempt its log entry
                status, reason = "unverified", f"check failed: {type(exc).__name__}"
        self.receipts[status.split("-", 1)[0]] += 1
        if status != "valid":
            # Ids and the reason only: never the body, nor the receipt (it holds the body's hash).
            log.warning("outbox.log_receipt_" + status.split("-", 1)[0], status=status, reason=reason,
                        outbox_id=message.id, destination=message.destination_key, receiver=receiver,
                        action=message.action)
        return status

    async def _verify_receipt(self, value: str, message: _Claimed, receiver: str | None) -> tuple[str, str]:
        assert self._receipt_keys is not None
        origin = _receipt_origin(value)
        if origin is None:
            return "invalid-format", "not a signed log receipt"
        urls: Sequence[str] | None = None
        try:
            # Cached per receiver (a lookup a minute at most); bounded, so a slow registry costs at
            # most one request timeout and the receipt is kept as "unverified".
            async with asyncio.timeout(self.request_timeout):
                if isinstance(self._receipt_keys, RegistryLogKeys):
                    registered = await self._receipt_keys.registered(origin)
                    keys, urls = registered.keys, registered.urls
                else:
                    keys = await self._receipt_keys(origin)
        except (WitnessUnavailable, TimeoutError):
            return "unverified", "the registry could not be asked for the receiver's log key"
        # The receipt's log must be the receiver's: the participant the message names, or the one
        # whose registered subscriber URL we posted to (a gateway relaying a callback, a search
        # broadcast that names no BPP yet).
        if subscriber_of(origin) != receiver and not _under(message.destination_url, urls or ()):
            if receiver is not None or urls is not None:
                return "invalid-receiver", f"receipt from log {origin!r}, not the receiver's"
        keys = [k for k in keys if k.name == origin]
        if not keys:
            return "invalid-signature", f"no log key for {origin!r} in the registry"
        for key in keys:
            try:
                receipt = verify_receipt(value, key)
            except ReceiptError:
                continue
            if receipt.body_sha256 != hashlib.sha256(message.body).digest():
                return "invalid-body", "the receipt is for another body than the one sent"
            return "valid", ""
        return "invalid-signature", "not signed by the receiver's registered log key"

    async def _record(self, message: _Claimed, result: _Result, started: datetime, duration_ms: float) -> None:
        now = self._clock()
        outcome = result.outcome
        error = result.error
        values: dict[str, Any] = {
            "attempts": OutboxMessage.attempts + 1,
            "claimed_by": None,
            "claimed_until": None,
            "last_error": error,
            "response_status": result.status_code,
            "response_body": result.body,
        }
        condition = and_(OutboxMessage.id == message.id, OutboxMessage.status == OutboxStatus.PENDING.value)
        delay = 0.0
        if outcome is AttemptOutcome.RETRY:
            if result.retry_after is not None:
                delay = result.retry_after
            else:
                # Full jitter: retries of many messages to one recovering peer spread out.
                delay = random.uniform(0, min(self.max_backoff, self.base_backoff * 2**message.attempts))
            next_at = now + timedelta(seconds=delay)
            if next_at > message.expires_at:
                outcome = AttemptOutcome.EXPIRED
                error = f"{error}; no retry: the next attempt would be after expires_at"
                values["last_error"] = error
            else:
                values.update(status=OutboxStatus.PENDING.value, next_attempt_at=next_at)
                # Only release our own lease: if it ran out and another worker took the row, that
                # worker's claim stands.
                condition = and_(condition, OutboxMessage.claimed_by == self.worker_id)
        if outcome is AttemptOutcome.DELIVERED:
            values.update(status=OutboxStatus.DELIVERED.value, delivered_at=now)
        elif outcome is AttemptOutcome.FAILED:
            values.update(status=OutboxStatus.FAILED.value)
        elif outcome is AttemptOutcome.EXPIRED:
            values.update(status=OutboxStatus.EXPIRED.value)
        async with self._sessions() as session:
            session.add(DeliveryAttempt(
                outbox_id=message.id,
                attempt_no=message.attempts + 1,
                started_at=started,
                duration_ms=duration_ms,
                status_code=result.status_code,
                outcome=outcome.value,
                error=error,
            ))
            await session.execute(
                update(OutboxMessage).where(condition).values(**values).execution_options(synchronize_session=False)
            )
            await session.commit()
        event = {"outbox_id": message.id, "destination": message.destination_key, "status_code": result.status_code}
        if outcome is AttemptOutcome.DELIVERED:
            log.debug("outbox.delivered", **event)
        elif outcome is AttemptOutcome.RETRY:
            log.info("outbox.retry", delay=round(delay, 3), error=error, **event)
            if delay < self.poll_interval:
                asyncio.get_running_loop().call_later(delay, self.wake)
        else:
            log.warning(f"outbox.{outcome.value}", error=error, **event)

    async def _close_expired(self, message: _Claimed) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.id, OutboxMessage.status == OutboxStatus.PENDING.value)
                .values(
                    status=OutboxStatus.EXPIRED.value,
                    claimed_by=None,
                    claimed_until=None,
                    last_error=f"expired at {message.expires_at.isoformat()} before "
                    + ("the next attempt" if message.attempts else "it could be sent"),
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        log.warning("outbox.expired", outbox_id=message.id, destination=message.destination_key, status_code=None)

    # ----------------------------------------------------------------- helpers

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake()

    def _task_done(self, tasks: set[asyncio.Task[bool]]) -> Callable[[asyncio.Task[bool]], None]:
        def done(task: asyncio.Task[bool]) -> None:
            tasks.discard(task)
            if self._saturated:
                self.wake()  # a slot is free and more rows were waiting

        return done


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _classify(status: int, body: bytes, retry_after: str | None, now: datetime) -> _Result:
    if 200 <= status < 300:
        ack, reason = _ack(body)
        if ack == "ACK":
            return _Result(AttemptOutcome.DELIVERED, status, body)
        if ack == "NACK":
            return _Result(AttemptOutcome.FAILED, status, body, _clip(f"NACK: {reason}"))
        # The receiver did not confirm it stored the message, so it may not have.
        return _Result(AttemptOutcome.RETRY, status, body, _clip(f"HTTP {status} without an ACK/NACK body"))
    delay = _retry_after_seconds(retry_after, now) if status in _RETRY_AFTER_STATUSES else None
    if status >= 500 or status in _RETRYABLE_4XX:
        return _Result(AttemptOutcome.RETRY, status, body, _clip(f"HTTP {status}: {_snippet(body)}"), delay)
    if 300 <= status < 400:
        return _Result(AttemptOutcome.FAILED, status, body,
                       f"HTTP {status}: redirects are not followed; the signed message must go to the registered URL")
    _, reason = _ack(body)
    return _Result(AttemptOutcome.FAILED, status, body, _clip(f"HTTP {status}: {reason or _snippet(body)}"))


def _ack(body: bytes) -> tuple[str | None, str]:
    """(ACK/NACK or None, the error the receiver gave, if any)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(payload, dict):
        return None, ""
    message = payload.get("message")
    ack = message.get("ack") if isinstance(message, dict) else None
    status = ack.get("status") if isinstance(ack, dict) else None
    error = payload.get("error")
    reason = ""
    if isinstance(error, dict):
        reason = " ".join(str(error[k]) for k in ("code", "message") if error.get(k) is not None)
    return (status if status in ("ACK", "NACK") else None), reason or "no error given"


def _nack_code(body: bytes) -> str | None:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and re.fullmatch(r"[A-Za-z0-9._:-]{1,32}", code) else None


def _context(body: bytes) -> dict[str, Any]:
    try:
        context = json.loads(body).get("context")
    except (ValueError, AttributeError):
        return {}
    return context if isinstance(context, dict) else {}


def _under(url: str, bases: Sequence[str]) -> bool:
    """Whether `url` is below one of the subscriber URLs `bases` (same scheme, host and port)."""
    return any(url.startswith(base.rstrip("/") + "/") for base in bases if base)


def _receipt_origin(value: str) -> str | None:
    """The log origin a receipt claims (unverified: only to find the key that must have signed it)."""
    if len(value) > 4096:
        return None
    try:
        text, _ = parse_note(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, NoteError):
        return None
    lines = text.split("\n")
    return lines[1] if len(lines) > 2 and lines[1] else None


def _receiver_id(action: str, context: Mapping[str, Any]) -> str | None:
    """Who the message is for, as its context names it: the BAP for a callback, the BPP for a
    request (None for a search broadcast through a gateway: no bpp_id yet)."""
    value = context.get("bap_id" if action.startswith("on_") else "bpp_id")
    return value if isinstance(value, str) and value else None


def _retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace") if body else "(empty body)"


def _clip(text: str) -> str:
    return text[:_MAX_ERROR]


def _describe(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}")


__all__ = ["RECEIPT_STATUS", "DeliveryWorker", "SignerLike", "destination_key", "enqueue"]
