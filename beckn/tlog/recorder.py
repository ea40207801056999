"""How a node feeds its transaction log: appends from the pipelines, receipts, and the checkpointer.

Two ways in:
* `append_in(session, records)`: inside the caller's transaction. The inbound pipeline logs
  accepted messages in the same transaction as their `inbound_message` rows, so a crash loses both
  or neither and an ACK always means "stored and logged". The sequencer lock is held until that
  transaction commits, so the pipeline group-commits: the messages accepted meanwhile share one
  transaction and one append (beckn/inbound_batch.py).
* `append(record)`: best effort, for NACKs, retransmissions and outbound attempts. Records wait in
  a bounded queue and are written by a group commit: while one batch is being written, the
  records that arrive meanwhile form the next one (no timer, so no added latency when idle, and a
  flood of junk requests costs one transaction per batch, not one per request). Failures are
  logged and swallowed: a NACK never turns into a 500, an outbound send never stops, because of
  the log. A full queue drops the record (logged, counted in `dropped`).

`Checkpointer.run` signs a checkpoint every `interval` seconds while the log grew. The store
refuses to sign one inconsistent with the last; when it says so (LogIntegrityError) the
checkpointer stops for good and logs loudly: that is evidence of tampering or corruption, for an
operator to look at, not something to retry past.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import overload

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.tlog.leaf import LogRecord
from beckn.tlog.receipt import make_receipt
from beckn.tlog.store import LogIntegrityError, TransactionLog

log = structlog.get_logger(__name__)

__all__ = ["Checkpointer", "GroupAppender", "LogRecorder", "Logged"]


@dataclass(frozen=True, slots=True)
class Logged:
    """Where a record landed in the log."""

    index: int
    leaf_hash: bytes
    seen_at: datetime


class LogOverloaded(RuntimeError):
    """The best-effort queue is full."""


class GroupAppender:
    """Group commit for best-effort appends (see the module docstring)."""

    def __init__(self, append_batch: Callable[[Sequence[LogRecord]], Awaitable[list[tuple[int, bytes]]]], *,
                 max_batch: int = 512, max_pending: int = 10_000) -> None:
        self._append_batch = append_batch
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._pending: list[tuple[LogRecord, asyncio.Future[tuple[int, bytes]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, record: LogRecord) -> tuple[int, bytes]:
        if len(self._pending) >= self._max_pending:
            raise LogOverloaded(f"{len(self._pending)} log records already waiting")
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="tlog-group-commit")
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
            try:
                results = await self._append_batch([record for record, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
                if len(batch) > 1:
                    # One bad record must not cost the others their entry: write them one by one.
                    for item in batch:
                        await self._one(*item)
                else:
                    _settle(batch[0][1], exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)

    async def _one(self, record: LogRecord, future: asyncio.Future[tuple[int, bytes]]) -> None:
        try:
            [result] = await self._append_batch([record])
        except Exception as exc:  # noqa: BLE001
            _settle(future, exc)
        else:
            _settle(future, result)


def _settle(future: asyncio.Future[tuple[int, bytes]], outcome: tuple[int, bytes] | BaseException) -> None:
    if future.done():  # the caller was cancelled; the entry (if any) stays in the log regardless
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class LogRecorder:
    """One node's log as its pipelines see it: `node_id` is the node's subscriber id (the leaf's
    `node`); the log's signer also signs the receipts."""

    def __init__(self, log: TransactionLog, node_id: str, *, max_pending: int = 10_000) -> None:
        self.log = log
        self.node_id = node_id
        self.origin = log.origin
        self.vkey = log.signer.vkey
        self.dropped = 0
        self._group = GroupAppender(log.append_batch, max_pending=max_pending)

    @overload
    async def append_in(self, session: AsyncSession, record: LogRecord) -> Logged: ...

    @overload
    async def append_in(self, session: AsyncSession, record: Sequence[LogRecord]) -> list[Logged]: ...

    async def append_in(self, session: AsyncSession, record: LogRecord | Sequence[LogRecord]) -> Logged | list[Logged]:
        """Append inside the caller's transaction; raises whatever the store raises.

        One record, or several in order (a group commit: beckn.inbound_batch), in one append, so
        under one sequencer lock and one head update."""
        records = [record] if isinstance(record, LogRecord) else list(record)
        entries = await self.log.append_in(session, records)
        logged = [Logged(index, leaf_hash, r.seen_at) for r, (index, leaf_hash) in zip(records, entries, strict=True)]
        return logged[0] if isinstance(record, LogRecord) else logged

    async def append(self, record: LogRecord) -> Logged | None:
        """Best effort: the entry, or None if it could not be logged (the failure is logged)."""
        try:
            index, leaf_hash = await self._group.append(record)
        except LogOverloaded:
            self.dropped += 1
            log.error("tlog.append_dropped", reason="queue full", action=record.action, direction=record.direction,
                      dropped=self.dropped)
            return None
        except Exception as exc:  # noqa: BLE001 - best effort by contract
            log.error("tlog.append_failed", action=record.action, direction=record.direction,
                      error_type=type(exc).__name__, error=str(exc)[:300])
            return None
        return Logged(index, leaf_hash, record.seen_at)

    def receipt(self, logged: Logged, body: bytes) -> str:
        """The signed receipt header value for an entry holding `body`."""
        return make_receipt(self.log.signer, origin=self.origin, index=logged.index, leaf_hash=logged.leaf_hash,
                            body=body, timestamp=int(logged.seen_at.timestamp()))


class Checkpointer:
    """Signs a checkpoint every `interval` seconds while the log grew (see the module docstring)."""

    def __init__(self, log: TransactionLog, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval}")
        self.log = log
        self.interval = interval
        self.halted: str | None = None  # why checkpoints stopped for good, if they did
        self.last_size: int | None = None
        self.last_signed_at: float | None = None

    async def tick(self) -> str | None:
        """One round: sign if the log grew since the last checkpoint. Returns the new note, if any."""
        size = await self.log.size()
        if size == 0 or size == self.last_size:
            return None
        note = await self.log.checkpoint()
        self.last_size = size  # the checkpoint covers at least this size
        self.last_signed_at = time.time()
        return note

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except LogIntegrityError as exc:
                self.halted = str(exc)[:500]
                log.critical("tlog.checkpoints_halted", origin=self.log.origin, error=self.halted,
                             detail="the stored log disagrees with itself or a signed checkpoint; "
                                    "no further checkpoint will be signed until an operator investigates")
                return
            except Exception as exc:  # noqa: BLE001 - a database outage must not end the loop
                log.error("tlog.checkpoint_failed", origin=self.log.origin, error_type=type(exc).__name__,
                          error=str(exc)[:300])
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
