"""registry log key and tlog witnessing (issue 8): `registry_key.log_vkey`, `tlog_witnessed`,
`tlog_cosignature`.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-23

Written by hand to match `registry.tables.RegistryKey` and `beckn.tlog.witness` (checked by
tests/test_store.py on both backends); types are spelled out so later model changes cannot rewrite
history.

* `registry_key.log_vkey`: the subscriber's transaction-log key (a C2SP note verifier key), bound
  to the Beckn key it was registered with, so the key history also dates the log key.
* `tlog_witnessed`: as a witness (C2SP tlog-witness), the latest checkpoint this node cosigned
  per origin (a peer's log): the size and root every later checkpoint must be consistent with.
* `tlog_cosignature`: as a log, the cosignature lines witnesses returned for our checkpoints,
  one per (size, witness), served with the checkpoint of that size.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("registry_key", sa.Column("log_vkey", sa.String(length=512), nullable=True))
    op.create_table(
        "tlog_witnessed",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("updated", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_tlog_witnessed")),
    )
    op.create_table(
        "tlog_cosignature",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=255), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("size", "witness", name=op.f("pk_tlog_cosignature")),
    )


def downgrade() -> None:
    op.drop_table("tlog_cosignature")
    op.drop_table("tlog_witnessed")
    with op.batch_alter_table("registry_key") as batch:
        batch.drop_column("log_vkey")
