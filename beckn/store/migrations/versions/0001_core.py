"""Core tables: inbound messages, the outbox and its delivery attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Hand-checked against autogenerate. Types are spelled out here rather than imported from
`beckn.store.tables`, so that later changes to the models cannot rewrite history:
`UTCDateTime` is `DateTime(timezone=True)` in DDL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    # BIGINT on PostgreSQL; SQLite only auto-assigns ids to an INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_message",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("sender_id", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_digest", sa.String(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.LargeBinary(), nullable=False),
        sa.Column("processed_at", _utc(), nullable=True),
        sa.Column("process_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_message")),
        sa.UniqueConstraint(
            "sender_id", "message_id", "action", name=op.f("uq_inbound_message_sender_id_message_id_action")
        ),
    )
    op.create_index(op.f("ix_inbound_message_transaction_id"), "inbound_message", ["transaction_id"])
    op.create_index(
        "ix_inbound_message_unprocessed",
        "inbound_message",
        ["id"],
        sqlite_where=sa.text("processed_at IS NULL"),
        postgresql_where=sa.text("processed_at IS NULL"),
    )

    op.create_table(
        "outbox_message",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("destination_url", sa.String(), nullable=False),
        sa.Column("destination_key", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("signature_header", sa.String(), nullable=False),
        sa.Column("extra_headers", sa.JSON(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_until", _utc(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("delivered_at", _utc(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'expired')", name=op.f("ck_outbox_message_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_message")),
    )
    op.create_index(
        op.f("ix_outbox_message_status_next_attempt_at"), "outbox_message", ["status", "next_attempt_at"]
    )
    op.create_index(op.f("ix_outbox_message_transaction_id"), "outbox_message", ["transaction_id"])

    op.create_table(
        "delivery_attempt",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", _big_id(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'retry', 'failed', 'expired')", name=op.f("ck_delivery_attempt_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox_message.id"],
            name=op.f("fk_delivery_attempt_outbox_id_outbox_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
    )
    op.create_index(op.f("ix_delivery_attempt_outbox_id"), "delivery_attempt", ["outbox_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_attempt_outbox_id"), table_name="delivery_attempt")
    op.drop_table("delivery_attempt")
    op.drop_index(op.f("ix_outbox_message_transaction_id"), table_name="outbox_message")
    op.drop_index(op.f("ix_outbox_message_status_next_attempt_at"), table_name="outbox_message")
    op.drop_table("outbox_message")
    op.drop_index(op.f("ix_inbound_message_transaction_id"), table_name="inbound_message")
    op.drop_index("ix_inbound_message_unprocessed", table_name="inbound_message")
    op.drop_table("inbound_message")
