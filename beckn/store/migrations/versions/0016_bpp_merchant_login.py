"""bpp merchant login: Martinique Connect identities linked to merchants, and merchant sessions.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-23

Written by hand to match `bpp.tables` (BppMerchantLogin, BppMerchantSession; checked by
tests/test_store.py on both backends); types are spelled out so later model changes cannot
rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _merchant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["merchant_id"], ["bpp_merchant.id"],
                                   name=op.f(f"fk_{table}_merchant_id_bpp_merchant"), ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "bpp_merchant_login",
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("linked_at", _utc(), nullable=False),
        _merchant_fk("bpp_merchant_login"),
        sa.PrimaryKeyConstraint("issuer", "sub", name=op.f("pk_bpp_merchant_login")),
    )
    op.create_index(op.f("ix_bpp_merchant_login_merchant_id"), "bpp_merchant_login", ["merchant_id"])
    op.create_table(
        "bpp_merchant_session",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        _merchant_fk("bpp_merchant_session"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bpp_merchant_session")),
    )
    op.create_index(op.f("ix_bpp_merchant_session_merchant_id"), "bpp_merchant_session", ["merchant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bpp_merchant_session_merchant_id"), table_name="bpp_merchant_session")
    op.drop_table("bpp_merchant_session")
    op.drop_index(op.f("ix_bpp_merchant_login_merchant_id"), table_name="bpp_merchant_login")
    op.drop_table("bpp_merchant_login")
