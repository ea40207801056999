"""The transaction log's tables (migration 0018): entries, Merkle nodes, head, checkpoints, sidecars.

Public (what auditors may see): `tlog_entry.leaf` (the JCS leaf, no personal data), the Merkle
nodes and the signed checkpoints. Private: `tlog_sidecar`, the raw bytes and the salt that open
the leaf's commitments; erasable (GDPR) without touching the tree.

`tlog_entry`, `tlog_node` and `tlog_checkpoint` are append-only: the migration adds triggers that
refuse UPDATE and DELETE. They only make accidents harder; the Merkle tree is what makes tampering
evident (`TransactionLog.verify_stored`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
)
from sqlmodel import Field

from beckn.store.tables import BigId, StoreModel, UTCDateTime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TlogHead(StoreModel, table=True):
    """The sequencer's state, one row (id 1, created by the migration): the tree size and its right
    frontier (the roots of the perfect subtrees covering [0, size), largest first, 32 bytes each).
    Appends lock this row (SELECT ... FOR UPDATE on PostgreSQL), so exactly one writer assigns
    indexes at a time."""

    __tablename__ = "tlog_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: int = Field(default=1, sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # The checkpoint origin this log was started under; a process configured with another origin
    # is refused rather than signing checkpoints of the same tree under two names.
    origin: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    frontier: bytes = Field(default=b"", sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class TlogEntry(StoreModel, table=True):
    """One logged protocol message: its public leaf (JCS bytes) and the columns to find it by."""

    __tablename__ = "tlog_entry"
    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        # `prev` (the node's previous entry of the same transaction) and per-transaction exports.
        Index("ix_tlog_entry_transaction_id_idx", "transaction_id", "idx"),
    )

    idx: int = Field(sa_column=Column(BigId, primary_key=True, autoincrement=False))
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, index=True))
    message_id: str = Field(sa_column=Column(String, nullable=False, index=True))
    transaction_id: str = Field(sa_column=Column(String, nullable=False))
    direction: str = Field(sa_column=Column(String(3), nullable=False))
    action: str = Field(sa_column=Column(String(64), nullable=False))
    peer: str | None = Field(default=None, sa_column=Column(String, nullable=True))
    seen_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class TlogNode(StoreModel, table=True):
    """A complete perfect subtree: level 0 is a leaf hash, (level, idx) covers leaves
    [idx * 2^level, (idx + 1) * 2^level). Written once, when it becomes complete."""

    __tablename__ = "tlog_node"
    __table_args__ = (PrimaryKeyConstraint("level", "idx"),)

    level: int = Field(sa_column=Column(SmallInteger, nullable=False, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, nullable=False, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class TlogCheckpoint(StoreModel, table=True):
    """A signed checkpoint (C2SP signed note), stored before anyone sees it: at most one per size."""

    __tablename__ = "tlog_checkpoint"

    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class TlogSidecar(StoreModel, table=True):
    """The private half of an entry: raw body, signature headers, our answer and the salt.
    Erasure (GDPR) sets body, headers, response and salt to NULL and stamps `erased_at`."""

    __tablename__ = "tlog_sidecar"

    idx: int = Field(
        sa_column=Column(BigId, ForeignKey("tlog_entry.idx"), primary_key=True, autoincrement=False)
    )
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    headers: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    response: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    salt: bytes | None = Field(default=None, sa_column=Column(LargeBinary(32), nullable=True))
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


__all__ = ["TlogCheckpoint", "TlogEntry", "TlogHead", "TlogNode", "TlogSidecar"]
