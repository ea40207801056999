"""Group commit for accepted inbound messages: many rows (and their log entries), one transaction.

Each accepted message must be committed before it is ACKed ("ACK" means stored, and with a
transaction log also logged; see beckn.inbound). One transaction per message caps a node at one
round of INSERT + log append + COMMIT per message, all of them sequenced by the log's lock. Here
messages that reach the store concurrently share a transaction: while one batch commits, the ones
that arrive meanwhile form the next (no timer, so an idle node adds no latency; at most
`max_batch` per transaction). One batch is one INSERT of its rows, one log append of their entries
(one sequencer lock, one head update) and one COMMIT; every caller in it waits for that commit.

Atomic per batch: if the transaction fails, nothing of it is stored and nobody in it gets an ACK.
What each caller gets is what it would have got alone:
* A row that conflicts with a stored one (a retransmission, a replayed message_id) is skipped by
  the INSERT (ON CONFLICT DO NOTHING) and neither logged nor counted as accepted; the caller is
  told `Stored(id=None)` and answers from the stored row (beckn.inbound `_stored_response`). Two
  rows of one batch with the same key: the first goes in, the others are duplicates of it.
* A database failure (connection lost, disk full...) fails every caller of the batch alike.
* Any other failure (an IntegrityError the INSERT did not absorb, the log refusing an entry) may
  come from one message, so a batch of several is retried one message per transaction: one bad
  message costs only itself its ACK.

A caller that goes away (client disconnect, cancellation) does not stop its batch: the batch runs
in its own task and commits for everyone else; the cancelled caller's row is stored regardless and
the inbox replays it if nobody dispatched it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.store.tables import InboundMessage
from beckn.tlog.leaf import LogRecord
from beckn.tlog.recorder import Logged, LogRecorder

log = structlog.get_logger(__name__)

__all__ = ["InboundCommitter", "Stored", "StoreInterrupted"]

# The unique key of inbound_message (sender, message_id, action, dedupe_key).
_KEY = ("sender_id", "message_id", "action", "dedupe_key")
_TABLE = InboundMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one message: its row id and log entry, or id None if it duplicated a stored
    message (nothing was written for it)."""

    id: int | None
    logged: Logged | None = None


class StoreInterrupted(RuntimeError):
    """The batch's task was cancelled (shutdown) before it could tell whether it committed."""


@dataclass(slots=True)
class _Pending:
    row: dict[str, Any]
    record: LogRecord | None
    future: asyncio.Future[Stored]


class InboundCommitter:
    """Stores accepted messages by group commit (see the module docstring)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], tlog: LogRecorder | None, *,
                 max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._sessions = sessions
        self._tlog = tlog
        self.max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed, for tests and figures
        self.largest_batch = 0

    @property
    def waiting(self) -> int:
        """Messages waiting for the next batch (not the one committing now)."""
        return len(self._pending)

    async def store(self, row: dict[str, Any], record: LogRecord | None) -> Stored:
        """Store `row` (inbound_message column values) and log `record` in the next batch; returns
        once that batch committed. Raises what the store raised if it did not."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A pipeline reused in a new event loop (a restarted server, a test): the old loop's
            # task and futures are dead, start afresh.
            self._loop, self._pending, self._flusher = loop, [], None
        future: asyncio.Future[Stored] = loop.create_future()
        self._pending.append(_Pending(row, record, future))
        if self._flusher is None or self._flusher.done():
            # Not awaited by any caller: a caller's cancellation must not cancel everyone's commit.
            self._flusher = loop.create_task(self._flush(), name="inbound-group-commit")
        return await future

    async def aclose(self) -> None:
        """Wait for the batches under way (call before disposing of the engine)."""
        if self._flusher is not None and self._loop is asyncio.get_running_loop():
            await asyncio.wait([self._flusher])  # its outcome went to the callers; never raises here

    async def _flush(self) -> None:
        batch: list[_Pending] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                await self._commit(batch)
                batch = []
        except asyncio.CancelledError:
            # Shutdown: whether the last commit happened is unknown, so nobody gets an ACK (a
            # NACKed message that was in fact stored is answered as a retransmission next time).
            for item in [*batch, *self._pending]:
                _settle(item.future, StoreInterrupted("the server stopped while storing the message"))
            self._pending = []
            raise

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._write(batch)
        except IntegrityError as exc:
            await self._fallback(batch, exc)
        except (SQLAlchemyError, OSError) as exc:
            # The database itself failed: the same for everyone, and retrying each message alone
            # would only hammer it. Nothing committed, so nobody is ACKed.
            for item in batch:
                _settle(item.future, exc)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting callers (or retried alone)
            await self._fallback(batch, exc)
        else:
            for item, outcome in zip(batch, outcomes, strict=True):
                _settle(item.future, outcome)

    async def _fallback(self, batch: list[_Pending], exc: Exception) -> None:
        """One message per transaction, so a message that breaks the batch only fails itself."""
        if len(batch) == 1:
            _settle(batch[0].future, exc)
            return
        log.warning("inbound.batch_retried_alone", size=len(batch), error_type=type(exc).__name__)
        for item in batch:
            try:
                [outcome] = await self._write([item])
            except Exception as one:  # noqa: BLE001
                _settle(item.future, one)
            else:
                _settle(item.future, outcome)

    async def _write(self, batch: Sequence[_Pending]) -> list[Stored]:
        """One transaction: the rows that are new, then their log entries, then the commit."""
        first: dict[tuple[Any, ...], int] = {}  # key -> position of its first row in the batch
        for position, item in enumerate(batch):
            first.setdefault(tuple(item.row[k] for k in _KEY), position)
        # In key order: two processes inserting overlapping batches (a retransmission sent to
        # both) then take the unique index's row locks in the same order and cannot deadlock.
        rows = [batch[first[key]].row for key in sorted(first)]
        async with self._sessions() as session:
            assert session.bind is not None
            dialect = session.bind.dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            # The INSERT first: on SQLite it takes the write lock before the log reads its head;
            # a row that is already stored (or in flight in another process, on PostgreSQL the
            # INSERT waits for it) is skipped, not an error that would fail the whole batch.
            statement = (insert(_TABLE).on_conflict_do_nothing()
                         .returning(_TABLE.c.id, *(_TABLE.c[k] for k in _KEY)))
            inserted = {tuple(r[1:]): r[0] for r in (await session.execute(statement, rows)).all()}
            ids: list[int | None] = [None] * len(batch)
            for key, position in first.items():
                ids[position] = inserted.get(key)
            logged: dict[int, Logged] = {}
            if self._tlog is not None:
                new = [p for p, row_id in enumerate(ids) if row_id is not None and batch[p].record is not None]
                if new:
                    entries = await self._tlog.append_in(session, [batch[p].record for p in new])  # type: ignore[misc]
                    logged = dict(zip(new, entries, strict=True))
            await session.commit()
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        return [Stored(row_id, logged.get(p)) for p, row_id in enumerate(ids)]


def _settle(future: asyncio.Future[Stored], outcome: Stored | BaseException) -> None:
    if future.done():  # the caller was cancelled; what was committed stays committed
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
