"""connect: Martinique Connect (OpenID Provider) clients, accounts, sessions, codes, tokens, keys, login attempts, upstream links.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23

Written by hand to match `did.connect.tables` (checked by tests/test_store.py on both backends);
types are spelled out so later model changes cannot rewrite history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "connect_client",
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("secret_hash", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=False),
        sa.Column("sector_identifier", sa.String(length=255), nullable=False),
        sa.Column("backchannel_logout_uri", sa.String(length=2000), nullable=True),
        sa.Column("userinfo_signed_response_alg", sa.String(length=16), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_connect_client")),
    )
    op.create_table(
        "connect_account",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("given_name", sa.String(length=200), nullable=True),
        sa.Column("family_name", sa.String(length=200), nullable=True),
        sa.Column("birthdate", sa.String(length=10), nullable=True),
        sa.Column("commune", sa.String(length=16), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_account")),
        sa.UniqueConstraint("username", name=op.f("uq_connect_account_username")),
        sa.UniqueConstraint("email", name=op.f("uq_connect_account_email")),
    )
    op.create_table(
        "connect_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("auth_time", _utc(), nullable=False),
        sa.Column("acr", sa.String(length=32), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("consents", sa.JSON(), nullable=False),
        sa.Column("clients", sa.JSON(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["connect_account.id"],
                                name=op.f("fk_connect_session_account_id_connect_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_session")),
        sa.UniqueConstraint("sid", name=op.f("uq_connect_session_sid")),
    )
    op.create_index(op.f("ix_connect_session_account_id"), "connect_session", ["account_id"])
    op.create_table(
        "connect_auth_code",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("session_sid", sa.String(length=64), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2000), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("nonce", sa.String(length=512), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=False),
        sa.Column("auth_time", _utc(), nullable=False),
        sa.Column("acr", sa.String(length=32), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("consumed_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["connect_client.client_id"],
                                name=op.f("fk_connect_auth_code_client_id_connect_client")),
        sa.ForeignKeyConstraint(["account_id"], ["connect_account.id"],
                                name=op.f("fk_connect_auth_code_account_id_connect_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_auth_code")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_connect_auth_code_code_hash")),
    )
    op.create_table(
        "connect_access_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("code_id", _big(), nullable=True),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("sub", sa.String(length=64), nullable=False),
        sa.Column("issued_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["code_id"], ["connect_auth_code.id"],
                                name=op.f("fk_connect_access_token_code_id_connect_auth_code")),
        sa.ForeignKeyConstraint(["client_id"], ["connect_client.client_id"],
                                name=op.f("fk_connect_access_token_client_id_connect_client")),
        sa.ForeignKeyConstraint(["account_id"], ["connect_account.id"],
                                name=op.f("fk_connect_access_token_account_id_connect_account")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_connect_access_token")),
    )
    op.create_index(op.f("ix_connect_access_token_code_id"), "connect_access_token", ["code_id"])
    op.create_table(
        "connect_signing_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("private_jwk_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("activated_at", _utc(), nullable=True),
        sa.Column("retired_at", _utc(), nullable=True),
        sa.CheckConstraint("state IN ('next', 'current', 'retired')", name=op.f("ck_connect_signing_key_state")),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_connect_signing_key")),
    )
    op.create_index(op.f("ix_connect_signing_key_state"), "connect_signing_key", ["state"])
    op.create_table(
        "connect_login_attempt",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("ip_key", sa.String(length=64), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_login_attempt")),
    )
    op.create_index("ix_connect_login_attempt_account_key_at", "connect_login_attempt", ["account_key", "at"])
    op.create_index("ix_connect_login_attempt_ip_key_at", "connect_login_attempt", ["ip_key", "at"])
    op.create_table(
        "connect_upstream_link",
        sa.Column("id", _big(), autoincrement=True, nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("upstream_sub", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["connect_account.id"],
                                name=op.f("fk_connect_upstream_link_account_id_connect_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_upstream_link")),
        sa.UniqueConstraint("issuer", "upstream_sub", name=op.f("uq_connect_upstream_link_issuer_upstream_sub")),
    )
    op.create_index(op.f("ix_connect_upstream_link_account_id"), "connect_upstream_link", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_connect_upstream_link_account_id"), table_name="connect_upstream_link")
    op.drop_table("connect_upstream_link")
    op.drop_index("ix_connect_login_attempt_ip_key_at", table_name="connect_login_attempt")
    op.drop_index("ix_connect_login_attempt_account_key_at", table_name="connect_login_attempt")
    op.drop_table("connect_login_attempt")
    op.drop_index(op.f("ix_connect_signing_key_state"), table_name="connect_signing_key")
    op.drop_table("connect_signing_key")
    op.drop_index(op.f("ix_connect_access_token_code_id"), table_name="connect_access_token")
    op.drop_table("connect_access_token")
    op.drop_table("connect_auth_code")
    op.drop_index(op.f("ix_connect_session_account_id"), table_name="connect_session")
    op.drop_table("connect_session")
    op.drop_table("connect_account")
    op.drop_table("connect_client")
