"""registry audit: the operator's lifecycle decisions (approve, suspend, revoke), kept forever.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Written by hand to match `registry.tables.RegistryAudit` (checked by tests/test_store.py on both
backends); types are spelled out so later model changes cannot rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "registry_audit",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subscriber_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=True),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("unique_key_id", sa.String(length=128), nullable=True),
        sa.Column("from_state", sa.String(length=24), nullable=True),
        sa.Column("to_state", sa.String(length=24), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_audit")),
    )
    op.create_index(op.f("ix_registry_audit_subscriber_id"), "registry_audit", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_registry_audit_subscriber_id"), table_name="registry_audit")
    op.drop_table("registry_audit")
