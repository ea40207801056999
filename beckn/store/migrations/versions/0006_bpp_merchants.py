"""bpp merchants: merchant accounts, their API keys (hashes only) and the providers they own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Written by hand to match `bpp.tables` (BppMerchant, BppMerchantKey, BppProviderProfile; checked by
tests/test_store.py on both backends); types are spelled out so later model changes cannot
rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bpp_merchant",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bpp_merchant")),
    )
    op.create_table(
        "bpp_merchant_key",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["bpp_merchant.id"],
            name=op.f("fk_bpp_merchant_key_merchant_id_bpp_merchant"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bpp_merchant_key")),
    )
    op.create_index(op.f("ix_bpp_merchant_key_merchant_id"), "bpp_merchant_key", ["merchant_id"])
    op.create_table(
        "bpp_provider_profile",
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("siret", sa.String(length=14), nullable=False),
        sa.Column("opening_hours", sa.JSON(), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["bpp_merchant.id"],
            name=op.f("fk_bpp_provider_profile_merchant_id_bpp_merchant"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["bpp_provider.id"],
            name=op.f("fk_bpp_provider_profile_provider_id_bpp_provider"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_bpp_provider_profile")),
    )
    op.create_index(op.f("ix_bpp_provider_profile_merchant_id"), "bpp_provider_profile", ["merchant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bpp_provider_profile_merchant_id"), table_name="bpp_provider_profile")
    op.drop_table("bpp_provider_profile")
    op.drop_index(op.f("ix_bpp_merchant_key_merchant_id"), table_name="bpp_merchant_key")
    op.drop_table("bpp_merchant_key")
    op.drop_table("bpp_merchant")
