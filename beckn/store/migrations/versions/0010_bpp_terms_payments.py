"""bpp: merchants' terms and extra locations, prepayments, order cancellation and ratings columns.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

- `bpp_provider`: `other_locations` (more shops or pickup points), `payment_types`,
  `cancellation_terms`, `return_terms` (bpp.terms); NULL reads as the network default.
- `bpp_order`: `terms` (the cancellation and return terms agreed at confirm), `cancellation` and `ratings`, which until now lived in the order's fulfillment
  JSON under the private key "lakou"; they are moved out here, so that a merchant moving the
  fulfillment on and a buyer cancelling or rating no longer write the same JSON value.
- `bpp_payment` (prepayment links, bpp.payments) and `payment_sandbox_charge` (the sandbox
  payment processor's own book).

Written by hand to match `bpp.tables` (checked by tests/test_store.py on both backends).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PRIVATE_KEY = "lakou"


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _money() -> sa.Numeric:
    return sa.Numeric(12, 2)


def upgrade() -> None:
    with op.batch_alter_table("bpp_provider") as batch:
        batch.add_column(sa.Column("other_locations", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("payment_types", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("cancellation_terms", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("return_terms", sa.JSON(), nullable=True))
    with op.batch_alter_table("bpp_order") as batch:
        batch.add_column(sa.Column("cancellation", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("ratings", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("terms", sa.JSON(), nullable=True))
    _move_private_records()

    op.create_table(
        "bpp_payment",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("bap_id", sa.String(), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=True),
        sa.Column("processor", sa.String(length=32), nullable=False),
        sa.Column("processor_ref", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("refunded", _money(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("paid_at", _utc(), nullable=True),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_bpp_payment_amount_not_negative")),
        sa.CheckConstraint("refunded >= 0", name=op.f("ck_bpp_payment_refunded_not_negative")),
        sa.ForeignKeyConstraint(["provider_id"], ["bpp_provider.id"],
                                name=op.f("fk_bpp_payment_provider_id_bpp_provider")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bpp_payment")),
    )
    op.create_index("ix_bpp_payment_bap_id_transaction_id", "bpp_payment", ["bap_id", "transaction_id"])
    op.create_index(op.f("ix_bpp_payment_provider_id"), "bpp_payment", ["provider_id"])
    op.create_index(op.f("ix_bpp_payment_order_id"), "bpp_payment", ["order_id"])
    op.create_table(
        "payment_sandbox_charge",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("refunded", _money(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("paid_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_sandbox_charge")),
    )


def _move_private_records() -> None:
    """Orders cancelled or rated before this revision: their records move to the new columns."""
    orders = sa.table("bpp_order", sa.column("id", sa.String), sa.column("fulfillment", sa.JSON),
                      sa.column("cancellation", sa.JSON), sa.column("ratings", sa.JSON))
    bind = op.get_bind()
    rows = bind.execute(sa.select(orders.c.id, orders.c.fulfillment)).all()
    for order_id, fulfillment in rows:
        if isinstance(fulfillment, str):  # a driver that hands JSON back as text
            fulfillment = json.loads(fulfillment)
        private = (fulfillment or {}).get(_PRIVATE_KEY)
        if not private:
            continue
        rest = {key: value for key, value in fulfillment.items() if key != _PRIVATE_KEY}
        bind.execute(orders.update().where(orders.c.id == order_id).values(
            fulfillment=rest, cancellation=private.get("cancellation"), ratings=private.get("ratings")))


def downgrade() -> None:
    op.drop_table("payment_sandbox_charge")
    op.drop_index(op.f("ix_bpp_payment_order_id"), table_name="bpp_payment")
    op.drop_index(op.f("ix_bpp_payment_provider_id"), table_name="bpp_payment")
    op.drop_index("ix_bpp_payment_bap_id_transaction_id", table_name="bpp_payment")
    op.drop_table("bpp_payment")
    with op.batch_alter_table("bpp_order") as batch:
        batch.drop_column("terms")
        batch.drop_column("ratings")
        batch.drop_column("cancellation")
    with op.batch_alter_table("bpp_provider") as batch:
        batch.drop_column("return_terms")
        batch.drop_column("cancellation_terms")
        batch.drop_column("payment_types")
        batch.drop_column("other_locations")
