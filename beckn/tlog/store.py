"""The node's transaction log on SQLite or PostgreSQL: sequenced appends, signed checkpoints, proofs.

One log per node database. Every append runs in one DB transaction under a single sequencer:
the one-row `tlog_head` is locked (PostgreSQL `SELECT ... FOR UPDATE`; on SQLite the first
statement is a write, which takes the database's single write lock), indexes continue from the
head's size, and the entry rows, their sidecars, the Merkle nodes the batch completes and the new
head (size + right frontier) commit together or not at all. A crash before commit leaves nothing;
an index returned to a caller is committed. The head update is also a compare-and-swap on the
size, so a second sequencer that somehow got past the lock fails loudly instead of forking the log.

Checkpoints are computed from the stored nodes (not from memory), checked against the frontier
and, by a consistency proof, against the last stored checkpoint, then signed and stored in the
same transaction before they are returned: the log never hands out two inconsistent checkpoints.
A store whose nodes were altered refuses to sign (LogIntegrityError).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.tlog import merkle
from beckn.tlog.leaf import SALT_SIZE, LogRecord, build_leaf, signature_headers
from beckn.tlog.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    checkpoint_text,
    open_checkpoint,
    sign_note,
)
from beckn.tlog.tables import TlogCheckpoint, TlogEntry, TlogHead, TlogNode, TlogSidecar

__all__ = ["LogIntegrityError", "TlogError", "TransactionLog"]

_HEAD_ID = 1


class TlogError(RuntimeError):
    """The log cannot do what was asked (bad range, wrong origin, a second sequencer...)."""


class LogIntegrityError(TlogError):
    """The stored log disagrees with itself or with a checkpoint it signed: evidence of tampering
    or corruption. Nothing is signed while this holds."""


async def check_log_origin(sessions: async_sessionmaker[AsyncSession], origin: str, whose: str) -> None:
    """Refuse to start under another origin than the log was started with: every append would be
    refused, so a service fails loudly at start instead. `whose` names the log in the message."""
    async with sessions() as session:
        started_as = await session.scalar(select(TlogHead.origin))
    if started_as is not None and started_as != origin:
        raise RuntimeError(
            f"{whose} transaction log was started under origin {started_as!r}, not {origin!r}: "
            "set LAKOU_TLOG_ORIGIN back (a log never changes its name) or start a new database")


def _head_tree(head: TlogHead) -> merkle.CompactRange:
    """The head's compact range (size + frontier); a frontier that does not fit the size is corruption."""
    data = bytes(head.frontier)
    hashes = [data[i : i + merkle.HASH_SIZE] for i in range(0, len(data), merkle.HASH_SIZE)]
    try:
        return merkle.CompactRange(head.size, hashes)
    except ValueError as exc:
        raise LogIntegrityError(f"stored head is corrupt: {exc}") from None


# Besides the signature headers, the sidecar keeps these (lower-cased) metadata entries of a
# record's headers: the sender's delivery attempt number, the log receipt the receiver gave
# (beckn.tlog.receipt) and what the sender found when it checked that receipt. They are not
# covered by the leaf's `auth` commitment.
SIDECAR_METADATA = ("x-lakou-attempt", "x-lakou-log-receipt", "x-lakou-log-receipt-status")


def _sidecar_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = signature_headers(headers)
    kept.update({k.lower(): v for k, v in headers.items() if k.lower() in SIDECAR_METADATA})
    return kept


# What the first pass of TransactionLog._subtree answers for a node it has not fetched yet.
_PLACEHOLDER = b"\x00" * merkle.HASH_SIZE
_T = TypeVar("_T")


class TransactionLog:
    """One node's append-only log of the protocol messages it sends and receives.

    `sessions` is the node's session factory (beckn.store.db.session_factory); `signer` the log's
    Ed25519 note key (separate from the Beckn signing key); `origin` the checkpoint origin, e.g.
    "bap.example.mq/tlog/2026h2", by convention also the key's name.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], signer: NoteSigner, origin: str) -> None:
        self._sessions = sessions
        self.signer = signer
        self.origin = origin
        self.verifier = signer.verifier()

    # ------------------------------------------------------------------ sequencing

    async def _lock_head(self, session: AsyncSession) -> TlogHead:
        """Take the sequencer lock and return the head row; must be the transaction's first statement."""
        assert session.bind is not None
        if session.bind.dialect.name == "sqlite":
            # A write as first statement: SQLite grants the one write lock (waiting up to the busy
            # timeout) before anything is read, so the head read next cannot be stale.
            await session.execute(
                update(TlogHead).where(TlogHead.id == _HEAD_ID).values(size=TlogHead.size)
                .execution_options(synchronize_session=False)
            )
            head = await session.scalar(select(TlogHead).where(TlogHead.id == _HEAD_ID))
        else:
            head = await session.scalar(select(TlogHead).where(TlogHead.id == _HEAD_ID).with_for_update())
        if head is None:
            raise TlogError("tlog_head row missing: run the migrations (lakou db upgrade)")
        if head.origin is not None and head.origin != self.origin:
            raise TlogError(f"this log was started under origin {head.origin!r}, not {self.origin!r}")
        return head

    async def append_batch(self, records: Sequence[LogRecord]) -> list[tuple[int, bytes]]:
        """Log `records` in order, in one transaction; return (index, leaf hash) for each.

        When this returns, every entry is committed (durable as the backend's commit is) and will
        be covered by every later checkpoint.
        """
        if not records:
            return []
        async with self._sessions() as session, session.begin():
            return await self.append_in(session, records)

    async def append_in(self, session: AsyncSession, records: Sequence[LogRecord]) -> list[tuple[int, bytes]]:
        """Log `records` inside the caller's open transaction (which must commit for them to count).

        For a caller that must commit its own rows and the log entries together (the inbound
        pipeline: "ACK" means the message is stored AND logged). The sequencer lock is taken here
        and held until the caller commits or rolls back, so keep the rest of that transaction short.
        On SQLite the transaction must already hold the write lock (a write came first) or this
        must be its first statement; a read before it could see a stale head.
        """
        if not records:
            return []
        head = await self._lock_head(session)
        tree = _head_tree(head)
        prevs = await self._last_leaf_hashes(session, {r.transaction_id for r in records})
        entries: list[dict[str, object]] = []
        sidecars: list[dict[str, object]] = []
        nodes: list[dict[str, object]] = []
        result: list[tuple[int, bytes]] = []
        for record in records:
            salt = secrets.token_bytes(SALT_SIZE)
            leaf = build_leaf(record, salt=salt, prev=prevs.get(record.transaction_id))
            leaf_hash = merkle.leaf_hash(leaf)
            index = tree.size
            nodes.extend({"level": lv, "idx": ix, "hash": h} for lv, ix, h in tree.append(leaf_hash))
            prevs[record.transaction_id] = leaf_hash
            entries.append({
                "idx": index, "leaf": leaf, "leaf_hash": leaf_hash, "message_id": record.message_id,
                "transaction_id": record.transaction_id, "direction": record.direction,
                "action": record.action, "peer": record.peer, "seen_at": record.seen_at,
            })
            sidecars.append({
                "idx": index, "body": bytes(record.body), "headers": _sidecar_headers(record.headers),
                "response": record.response, "salt": salt,
            })
            result.append((index, leaf_hash))
        await self._write_rows(session, entries, sidecars, nodes)
        await self._write_head(session, head.size, tree)
        return result

    async def _last_leaf_hashes(self, session: AsyncSession, transaction_ids: set[str]) -> dict[str, bytes]:
        """The leaf hash of this log's latest entry for each transaction id (for `prev`)."""
        latest = (
            select(func.max(TlogEntry.idx))
            .where(TlogEntry.transaction_id.in_(transaction_ids))
            .group_by(TlogEntry.transaction_id)
        )
        rows = await session.execute(
            select(TlogEntry.transaction_id, TlogEntry.leaf_hash).where(TlogEntry.idx.in_(latest))
        )
        return {txn: bytes(h) for txn, h in rows.all()}

    async def _write_rows(
        self, session: AsyncSession, entries: list[dict[str, object]], sidecars: list[dict[str, object]],
        nodes: list[dict[str, object]],
    ) -> None:
        await session.execute(insert(TlogEntry), entries)
        await session.execute(insert(TlogSidecar), sidecars)
        await session.execute(insert(TlogNode), nodes)

    async def _write_head(self, session: AsyncSession, old_size: int, tree: merkle.CompactRange) -> None:
        # Compare-and-swap on the size: under the lock it always matches; if it does not, another
        # sequencer wrote meanwhile and this transaction must not commit a forked tree.
        done = await session.execute(
            update(TlogHead)
            .where(TlogHead.id == _HEAD_ID, TlogHead.size == old_size)
            .values(size=tree.size, frontier=b"".join(tree.frontier), origin=self.origin,
                    updated_at=datetime.now(UTC))
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise TlogError(f"log head moved from size {old_size} under the sequencer lock: a second sequencer?")

    # ------------------------------------------------------------------ the stored tree

    @staticmethod
    async def _subtree(session: AsyncSession, compute: Callable[[merkle.SubtreeHash], _T]) -> _T:
        """Run `compute(subtree)`, a pure computation over merkle.subtree_from_nodes, fetching the
        stored nodes it needs: a pass with placeholders learns which nodes it asks for, one query
        fetches them, and the next pass uses them. Proofs touch O(log n) nodes, so this is two
        passes and one query (more only if a node is missing and must be rebuilt from children).
        """
        known: dict[tuple[int, int], bytes | None] = {}
        while True:
            missing: set[tuple[int, int]] = set()

            def get(level: int, index: int) -> bytes | None:
                key = (level, index)
                if key in known:
                    return known[key]  # None: not stored, subtree_from_nodes descends
                missing.add(key)
                return _PLACEHOLDER

            try:
                result = compute(merkle.subtree_from_nodes(get))
            except LookupError as exc:
                raise LogIntegrityError(f"stored tree incomplete: {exc}") from None
            if not missing:
                return result
            fetched = await TransactionLog._fetch_nodes(session, missing)
            for key in missing:
                known[key] = fetched.get(key)

    @staticmethod
    async def _fetch_nodes(session: AsyncSession, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        by_level: dict[int, list[int]] = {}
        for level, index in keys:
            by_level.setdefault(level, []).append(index)
        rows = await session.execute(
            select(TlogNode.level, TlogNode.idx, TlogNode.hash).where(
                or_(*(and_(TlogNode.level == level, TlogNode.idx.in_(ixs)) for level, ixs in by_level.items()))
            )
        )
        return {(level, ix): bytes(h) for level, ix, h in rows.all()}

    async def _head(self, session: AsyncSession) -> TlogHead:
        head = await session.scalar(select(TlogHead).where(TlogHead.id == _HEAD_ID))
        if head is None:
            raise TlogError("tlog_head row missing: run the migrations (lakou db upgrade)")
        return head

    async def size(self) -> int:
        async with self._sessions() as session:
            return (await self._head(session)).size

    async def root(self, size: int) -> bytes:
        """The RFC 9162 root of the first `size` entries, from the stored nodes."""
        async with self._sessions() as session:
            await self._check_size(session, size)
            return await self._subtree(session, lambda sub: sub(0, size))

    async def _check_size(self, session: AsyncSession, size: int) -> int:
        head_size = (await self._head(session)).size
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= head_size:
            raise TlogError(f"size {size!r} outside 0..{head_size}")
        return head_size

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 audit path of entry `index` in the tree of `size` entries (index < size <= log size)."""
        async with self._sessions() as session:
            await self._check_size(session, size)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
                raise TlogError(f"index {index!r} outside 0..{size - 1}")
            return await self._subtree(session, lambda sub: merkle.inclusion_proof(index, size, sub))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from `old_size` to `new_size` (0 <= old <= new <= log size;
        old 0 or old == new give [], see beckn.tlog.merkle)."""
        async with self._sessions() as session:
            await self._check_size(session, new_size)
            if not isinstance(old_size, int) or isinstance(old_size, bool) or not 0 <= old_size <= new_size:
                raise TlogError(f"old size {old_size!r} outside 0..{new_size}")
            return await self._subtree(session, lambda sub: merkle.consistency_proof(old_size, new_size, sub))

    # ------------------------------------------------------------------ checkpoints

    def _open(self, note: str) -> Checkpoint:
        try:
            cp, _, _ = open_checkpoint(note, self.verifier, origin=self.origin)
        except NoteError as exc:
            raise LogIntegrityError(f"stored checkpoint does not verify: {exc}") from None
        return cp

    async def _last_checkpoint(self, session: AsyncSession, below: int | None = None) -> TlogCheckpoint | None:
        """The latest checkpoint (of a size above `below`, i.e. covering entry `below`, if given)."""
        query = select(TlogCheckpoint).order_by(TlogCheckpoint.size.desc()).limit(1)
        if below is not None:
            query = query.where(TlogCheckpoint.size > below)
        return await session.scalar(query)

    async def checkpoint(self) -> str:
        """The signed checkpoint (C2SP signed note) for the log's current size, stored first.

        Same size as the last checkpoint: that checkpoint, unchanged (one checkpoint per size;
        its root is re-checked against the stored tree). Otherwise the new root must extend the
        last checkpoint's by a consistency proof over the stored nodes; if it does not, or the
        stored tree disagrees with the head's frontier, nothing is signed (LogIntegrityError).
        """
        async with self._sessions() as session, session.begin():
            # The sequencer lock: no append moves the head while we compute and sign.
            head = await self._lock_head(session)
            size = head.size
            root = await self._subtree(session, lambda sub: sub(0, size))
            if root != _head_tree(head).root():
                raise LogIntegrityError(f"the stored tree's root at size {size} disagrees with the head")
            last = await self._last_checkpoint(session)
            if last is not None:
                previous = self._open(last.note)
                if previous.size != last.size or previous.root_hash != bytes(last.root):
                    raise LogIntegrityError(f"checkpoint row {last.size} disagrees with its signed note")
                if previous.size > size:
                    raise LogIntegrityError(f"head size {size} is behind the last checkpoint ({previous.size})")
                if previous.size == size:
                    if previous.root_hash != root:
                        raise LogIntegrityError(f"the stored tree's root at size {size} is not the one signed")
                    return last.note
                proof = await self._subtree(
                    session, lambda sub: merkle.consistency_proof(previous.size, size, sub)
                )
                try:
                    merkle.verify_consistency(previous.size, size, previous.root_hash, root, proof)
                except merkle.ProofError as exc:
                    raise LogIntegrityError(
                        f"the stored tree at size {size} is not consistent with checkpoint {previous.size}: {exc}"
                    ) from None
            note = sign_note(checkpoint_text(Checkpoint(self.origin, size, root)), [self.signer])
            session.add(TlogCheckpoint(size=size, root=root, note=note, created_at=datetime.now(UTC)))
            if head.origin is None:
                await session.execute(update(TlogHead).where(TlogHead.id == _HEAD_ID).values(origin=self.origin))
        return note

    async def latest_checkpoint(self) -> str | None:
        """The last signed checkpoint as stored (None before the first)."""
        async with self._sessions() as session:
            last = await self._last_checkpoint(session)
            return last.note if last is not None else None

    # ------------------------------------------------------------------ reading and auditing

    async def entry(self, index: int) -> TlogEntry | None:
        async with self._sessions() as session:
            return await session.get(TlogEntry, index)

    async def entries_by_message_id(self, message_id: str) -> list[TlogEntry]:
        """Every entry of `message_id` (request and callback share none, but retries and both
        directions of a relayed message do), oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(TlogEntry).where(TlogEntry.message_id == message_id).order_by(TlogEntry.idx)
            )
            return list(rows.all())

    async def entries_by_transaction(self, transaction_id: str) -> list[TlogEntry]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(TlogEntry).where(TlogEntry.transaction_id == transaction_id).order_by(TlogEntry.idx)
            )
            return list(rows.all())

    async def sidecar(self, index: int) -> TlogSidecar | None:
        """The private half of entry `index` (for authorised auditors only)."""
        async with self._sessions() as session:
            return await session.get(TlogSidecar, index)

    async def erase_sidecar(self, index: int) -> bool:
        """GDPR erasure of one entry: its body, signature headers, answer and salt are dropped; the
        leaf (commitments only) and so every proof stay as they were. True if it erased something,
        False if it was already erased; TlogError if there is no such entry."""
        async with self._sessions() as session, session.begin():
            done = await session.execute(
                update(TlogSidecar)
                .where(TlogSidecar.idx == index, TlogSidecar.erased_at.is_(None))
                .values(body=None, headers=None, response=None, salt=None, erased_at=datetime.now(UTC))
                .execution_options(synchronize_session=False)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return True
            if await session.get(TlogSidecar, index) is None:
                raise TlogError(f"no log entry {index}")
            return False

    async def erase_transaction(self, transaction_id: str) -> int:
        """Erase the sidecars of every entry of a transaction; returns how many were erased now."""
        async with self._sessions() as session, session.begin():
            done = await session.execute(
                update(TlogSidecar)
                .where(
                    TlogSidecar.idx.in_(select(TlogEntry.idx).where(TlogEntry.transaction_id == transaction_id)),
                    TlogSidecar.erased_at.is_(None),
                )
                .values(body=None, headers=None, response=None, salt=None, erased_at=datetime.now(UTC))
                .execution_options(synchronize_session=False)
            )
            return int(done.rowcount)  # type: ignore[attr-defined]

    async def verify_stored(self, index: int) -> int:
        """Re-check entry `index` as an auditor would: hash the stored leaf bytes and prove them
        into the latest signed checkpoint that covers the entry (its signature checked too), or,
        before any checkpoint covers it, into the head's root. Returns the size checked against;
        raises LogIntegrityError if the stored leaf, its hash or the tree was altered."""
        async with self._sessions() as session:
            entry = await session.get(TlogEntry, index)
            if entry is None:
                raise TlogError(f"no log entry {index}")
            leaf_hash = merkle.leaf_hash(bytes(entry.leaf))
            if leaf_hash != bytes(entry.leaf_hash):
                raise LogIntegrityError(f"entry {index}: the stored leaf does not hash to its recorded hash")
            last = await self._last_checkpoint(session, below=index)
            if last is not None:
                cp = self._open(last.note)
                size, root = cp.size, cp.root_hash
            else:
                head = await self._head(session)
                size = head.size
                root = _head_tree(head).root()
            proof = await self._subtree(session, lambda sub: merkle.inclusion_proof(index, size, sub))
        try:
            merkle.verify_inclusion(leaf_hash, index, size, proof, root)
        except merkle.ProofError as exc:
            raise LogIntegrityError(f"entry {index} is not in the tree of size {size}: {exc}") from None
        return size
