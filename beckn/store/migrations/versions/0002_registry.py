"""registry tables: participant entries (one per role and domain) and their key history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Matches `registry.tables`; as in 0001, types are spelled out here so later model changes cannot
rewrite history (`UTCDateTime` is `DateTime(timezone=True)` in DDL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    # BIGINT on PostgreSQL; SQLite only auto-assigns ids to an INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_participant",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("subscriber_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("city", sa.String(length=64), nullable=False),
        sa.Column("country", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("status", sa.String(length=24), server_default="INITIATED", nullable=False),
        sa.Column("created", _utc(), nullable=False),
        sa.Column("updated", _utc(), nullable=False),
        sa.CheckConstraint("type IN ('BAP', 'BPP', 'BG', 'BREG')", name=op.f("ck_registry_participant_type")),
        sa.CheckConstraint(
            "status IN ('INITIATED', 'UNDER_SUBSCRIPTION', 'SUBSCRIBED', 'INVALID_SSL', 'EXPIRED', "
            "'UNSUBSCRIBED')",
            name=op.f("ck_registry_participant_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_participant")),
        sa.UniqueConstraint(
            "subscriber_id", "type", "domain", name=op.f("uq_registry_participant_subscriber_id_type_domain")
        ),
    )

    op.create_table(
        "registry_key",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("subscriber_id", sa.String(length=255), nullable=False),
        sa.Column("unique_key_id", sa.String(length=128), nullable=False),
        sa.Column("signing_public_key", sa.String(length=64), nullable=False),
        sa.Column("encr_public_key", sa.String(length=64), nullable=False),
        sa.Column("valid_from", _utc(), nullable=False),
        sa.Column("valid_until", _utc(), nullable=False),
        sa.Column("created", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_key")),
        sa.UniqueConstraint(
            "subscriber_id", "unique_key_id", name=op.f("uq_registry_key_subscriber_id_unique_key_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("registry_key")
    op.drop_table("registry_participant")
