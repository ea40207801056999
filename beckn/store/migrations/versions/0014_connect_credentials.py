"""connect: OpenID4VCI credential offers, issued credentials (status list indexes), consent records,
OpenID4VP wallet-login requests.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23

Written by hand to match `did.connect.tables` (checked by tests/test_store.py on both backends).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["account_id"], ["connect_account.id"],
                                   name=op.f(f"fk_{table}_account_id_connect_account"))


def upgrade() -> None:
    op.create_table(
        "connect_credential_offer",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("tx_code_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("consumed_at", _utc(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("token_expires_at", _utc(), nullable=True),
        _account_fk("connect_credential_offer"),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_connect_credential_offer")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_connect_credential_offer_token_hash")),
    )
    op.create_index(op.f("ix_connect_credential_offer_account_id"), "connect_credential_offer", ["account_id"])
    op.create_table(
        "connect_issued_credential",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("vct", sa.String(length=200), nullable=False),
        sa.Column("holder_thumbprint", sa.String(length=64), nullable=False),
        sa.Column("issued_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        _account_fk("connect_issued_credential"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_issued_credential")),
    )
    op.create_index(op.f("ix_connect_issued_credential_account_id"), "connect_issued_credential", ["account_id"])
    op.create_index(op.f("ix_connect_issued_credential_holder_thumbprint"), "connect_issued_credential",
                    ["holder_thumbprint"])
    op.create_table(
        "connect_consent",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("credential_id", _big(), nullable=True),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        _account_fk("connect_consent"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_consent")),
    )
    op.create_index(op.f("ix_connect_consent_account_id"), "connect_consent", ["account_id"])
    op.create_table(
        "connect_wallet_request",
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("answered_at", _utc(), nullable=True),
        sa.Column("used_at", _utc(), nullable=True),
        _account_fk("connect_wallet_request"),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_connect_wallet_request")),
    )


def downgrade() -> None:
    op.drop_table("connect_wallet_request")
    op.drop_index(op.f("ix_connect_consent_account_id"), table_name="connect_consent")
    op.drop_table("connect_consent")
    op.drop_index(op.f("ix_connect_issued_credential_holder_thumbprint"), table_name="connect_issued_credential")
    op.drop_index(op.f("ix_connect_issued_credential_account_id"), table_name="connect_issued_credential")
    op.drop_table("connect_issued_credential")
    op.drop_index(op.f("ix_connect_credential_offer_account_id"), table_name="connect_credential_offer")
    op.drop_table("connect_credential_offer")
