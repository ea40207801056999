"""bpp tables: the catalogue (providers, items) and confirmed orders (orders, lines).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Written by hand to match `bpp/tables.py` (a test compares them on SQLite and PostgreSQL). Types
are spelled out rather than imported, so later model changes cannot rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _money() -> sa.Numeric:
    return sa.Numeric(12, 2)


def upgrade() -> None:
    op.create_table(
        "bpp_provider",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("descriptor", sa.JSON(), nullable=False),
        sa.Column("location", sa.JSON(), nullable=False),
        sa.Column("city_code", sa.String(length=32), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("fulfillment_types", sa.JSON(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bpp_provider")),
    )
    op.create_index(op.f("ix_bpp_provider_city_code"), "bpp_provider", ["city_code"])

    op.create_table(
        "bpp_item",
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("descriptor", sa.JSON(), nullable=False),
        sa.Column("category_ids", sa.JSON(), nullable=False),
        sa.Column("price", _money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("unit_value", sa.String(length=16), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_bpp_item_stock_not_negative")),
        sa.CheckConstraint("price >= 0", name=op.f("ck_bpp_item_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["bpp_provider.id"],
            name=op.f("fk_bpp_item_provider_id_bpp_provider"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider_id", "id", name=op.f("pk_bpp_item")),
    )

    op.create_table(
        "bpp_order",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("confirm_message_id", sa.String(), nullable=False),
        sa.Column("bap_id", sa.String(), nullable=False),
        sa.Column("bap_uri", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", _money(), nullable=False),
        sa.Column("billing", sa.JSON(), nullable=False),
        sa.Column("fulfillment", sa.JSON(), nullable=False),
        sa.Column("payment", sa.JSON(), nullable=False),
        sa.Column("quote", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint("status IN ('ACTIVE', 'COMPLETE', 'CANCELLED')", name=op.f("ck_bpp_order_status")),
        sa.ForeignKeyConstraint(["provider_id"], ["bpp_provider.id"], name=op.f("fk_bpp_order_provider_id_bpp_provider")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bpp_order")),
        sa.UniqueConstraint("bap_id", "transaction_id", name=op.f("uq_bpp_order_bap_id_transaction_id")),
    )
    op.create_index(op.f("ix_bpp_order_provider_id"), "bpp_order", ["provider_id"])

    op.create_table(
        "bpp_order_line",
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("line_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", _money(), nullable=False),
        sa.Column("line_total", _money(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_bpp_order_line_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["bpp_order.id"], name=op.f("fk_bpp_order_line_order_id_bpp_order"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id", "item_id"], ["bpp_item.provider_id", "bpp_item.id"],
            name=op.f("fk_bpp_order_line_provider_id_bpp_item"),
        ),
        sa.PrimaryKeyConstraint("order_id", "line_no", name=op.f("pk_bpp_order_line")),
    )
    op.create_index("ix_bpp_order_line_provider_id_item_id", "bpp_order_line", ["provider_id", "item_id"])


def downgrade() -> None:
    op.drop_index("ix_bpp_order_line_provider_id_item_id", table_name="bpp_order_line")
    op.drop_table("bpp_order_line")
    op.drop_index(op.f("ix_bpp_order_provider_id"), table_name="bpp_order")
    op.drop_table("bpp_order")
    op.drop_table("bpp_item")
    op.drop_index(op.f("ix_bpp_provider_city_code"), table_name="bpp_provider")
    op.drop_table("bpp_provider")
