"""tlog: the signed transaction log (issue 8): entries, Merkle nodes, head, checkpoints, sidecars.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-23

Written by hand to match `beckn.tlog.tables` (checked by tests/test_store.py on both backends);
types are spelled out so later model changes cannot rewrite history. Also creates the head's one
row (size 0), which every append locks, and triggers that refuse UPDATE and DELETE on the
append-only tables (entries, nodes, checkpoints): a guard against accidents, not against the
database owner, whom the Merkle tree and the signed checkpoints catch instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = ("tlog_entry", "tlog_node", "tlog_checkpoint")


def _big() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tlog_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_tlog_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tlog_head")),
    )
    op.create_table(
        "tlog_entry",
        sa.Column("idx", _big(), autoincrement=False, nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("peer", sa.String(), nullable=True),
        sa.Column("seen_at", _utc(), nullable=False),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_tlog_entry_direction")),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_tlog_entry")),
    )
    op.create_index(op.f("ix_tlog_entry_leaf_hash"), "tlog_entry", ["leaf_hash"])
    op.create_index(op.f("ix_tlog_entry_message_id"), "tlog_entry", ["message_id"])
    op.create_index("ix_tlog_entry_transaction_id_idx", "tlog_entry", ["transaction_id", "idx"])
    op.create_table(
        "tlog_node",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_tlog_node")),
    )
    op.create_table(
        "tlog_checkpoint",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_tlog_checkpoint")),
    )
    op.create_table(
        "tlog_sidecar",
        sa.Column("idx", _big(), autoincrement=False, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("salt", sa.LargeBinary(length=32), nullable=True),
        sa.Column("erased_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["idx"], ["tlog_entry.idx"], name=op.f("fk_tlog_sidecar_idx_tlog_entry")),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_tlog_sidecar")),
    )
    op.execute(
        sa.text("INSERT INTO tlog_head (id, size, frontier, updated_at) VALUES (1, 0, :empty, CURRENT_TIMESTAMP)")
        .bindparams(sa.bindparam("empty", b"", type_=sa.LargeBinary()))
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION tlog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION tlog_append_only()"
            )
    else:
        for table in _APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS tlog_append_only()")
    else:
        for table in _APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
    op.drop_table("tlog_sidecar")
    op.drop_table("tlog_checkpoint")
    op.drop_table("tlog_node")
    op.drop_index("ix_tlog_entry_transaction_id_idx", table_name="tlog_entry")
    op.drop_index(op.f("ix_tlog_entry_message_id"), table_name="tlog_entry")
    op.drop_index(op.f("ix_tlog_entry_leaf_hash"), table_name="tlog_entry")
    op.drop_table("tlog_entry")
    op.drop_table("tlog_head")
