"""bpp webhooks: merchants' webhook endpoints and the queue of events to deliver to them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

Written by hand to match `bpp.tables` (BppMerchantWebhook, BppWebhookDelivery; checked by
tests/test_store.py on both backends); types are spelled out so later model changes cannot
rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bpp_merchant_webhook",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=80), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["bpp_merchant.id"],
            name=op.f("fk_bpp_merchant_webhook_merchant_id_bpp_merchant"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_bpp_merchant_webhook")),
    )
    op.create_table(
        "bpp_webhook_delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["bpp_merchant.id"],
            name=op.f("fk_bpp_webhook_delivery_merchant_id_bpp_merchant"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bpp_webhook_delivery")),
        sa.UniqueConstraint("event_id", name=op.f("uq_bpp_webhook_delivery_event_id")),
    )
    op.create_index(op.f("ix_bpp_webhook_delivery_merchant_id"), "bpp_webhook_delivery", ["merchant_id"])
    op.create_index("ix_bpp_webhook_delivery_status_next_attempt_at", "bpp_webhook_delivery",
                    ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_bpp_webhook_delivery_status_next_attempt_at", table_name="bpp_webhook_delivery")
    op.drop_index(op.f("ix_bpp_webhook_delivery_merchant_id"), table_name="bpp_webhook_delivery")
    op.drop_table("bpp_webhook_delivery")
    op.drop_table("bpp_merchant_webhook")
