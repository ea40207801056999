"""bap tables: citizen-app sessions, transactions, requests sent, callbacks received.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Written by hand to match `bap.tables` (checked by tests/test_bap_service.py on both backends);
types are spelled out so later model changes cannot rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bap_session",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bap_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_bap_session_token_hash")),
    )
    op.create_index(op.f("ix_bap_session_account_id"), "bap_session", ["account_id"])

    op.create_table(
        "bap_transaction",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", _big_id(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("search", sa.JSON(), nullable=False),
        sa.Column("city", sa.String(), nullable=False),
        sa.Column("bpp_id", sa.String(), nullable=True),
        sa.Column("bpp_uri", sa.String(), nullable=True),
        sa.Column("provider_id", sa.String(), nullable=True),
        sa.Column("items", sa.JSON(), nullable=True),
        sa.Column("quote", sa.JSON(), nullable=True),
        sa.Column("order", sa.JSON(), nullable=True),
        sa.Column("order_id", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=True),
        sa.Column("last_action", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["bap_session.id"],
                                name=op.f("fk_bap_transaction_session_id_bap_session"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bap_transaction")),
    )
    op.create_index(op.f("ix_bap_transaction_session_id"), "bap_transaction", ["session_id"])

    op.create_table(
        "bap_request",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("bpp_id", sa.String(), nullable=True),
        sa.Column("sent_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["transaction_id"], ["bap_transaction.id"],
                                name=op.f("fk_bap_request_transaction_id_bap_transaction"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bap_request")),
        sa.UniqueConstraint("message_id", name=op.f("uq_bap_request_message_id")),
    )
    op.create_index(op.f("ix_bap_request_transaction_id"), "bap_request", ["transaction_id"])

    op.create_table(
        "bap_callback",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("inbound_id", _big_id(), nullable=False),
        sa.Column("request_id", _big_id(), nullable=True),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("bpp_id", sa.String(), nullable=False),
        sa.Column("bpp_uri", sa.String(), nullable=True),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.CheckConstraint("status IN ('accepted', 'late', 'unsolicited')", name=op.f("ck_bap_callback_status")),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_message.id"],
                                name=op.f("fk_bap_callback_inbound_id_inbound_message"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["request_id"], ["bap_request.id"],
                                name=op.f("fk_bap_callback_request_id_bap_request"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bap_callback")),
        sa.UniqueConstraint("inbound_id", name=op.f("uq_bap_callback_inbound_id")),
    )
    op.create_index("ix_bap_callback_transaction_id_message_id", "bap_callback", ["transaction_id", "message_id"])


def downgrade() -> None:
    op.drop_index("ix_bap_callback_transaction_id_message_id", table_name="bap_callback")
    op.drop_table("bap_callback")
    op.drop_index(op.f("ix_bap_request_transaction_id"), table_name="bap_request")
    op.drop_table("bap_request")
    op.drop_index(op.f("ix_bap_transaction_session_id"), table_name="bap_transaction")
    op.drop_table("bap_transaction")
    op.drop_index(op.f("ix_bap_session_account_id"), table_name="bap_session")
    op.drop_table("bap_session")
