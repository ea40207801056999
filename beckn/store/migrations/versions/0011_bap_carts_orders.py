"""bap: carts and orders of the citizen API.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23

A cart is a `bap_transaction` of its own made from a search (`search_id`), with the citizen's
language, what they gave at checkout (`billing`, `checkout`) and when the order was confirmed
(`confirmed_at`, indexed with the session for the order list).

Written by hand to match `bap.tables` (checked by tests/test_store.py on both backends).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bap_transaction") as batch:
        batch.add_column(sa.Column("search_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("lang", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("billing", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("checkout", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_bap_transaction_search_id"), "bap_transaction", ["search_id"])
    op.create_index("ix_bap_transaction_session_id_confirmed_at", "bap_transaction", ["session_id", "confirmed_at"])


def downgrade() -> None:
    op.drop_index("ix_bap_transaction_session_id_confirmed_at", table_name="bap_transaction")
    op.drop_index(op.f("ix_bap_transaction_search_id"), table_name="bap_transaction")
    with op.batch_alter_table("bap_transaction") as batch:
        batch.drop_column("confirmed_at")
        batch.drop_column("checkout")
        batch.drop_column("billing")
        batch.drop_column("lang")
        batch.drop_column("search_id")
