"""bap: the session's pending login, so a login code is single use (login CSRF fix).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-23

`bap_session.login_nonce`: a random value set by `POST /api/v1/auth/login`, carried (sealed) in the
login state and then in the login code the callback hands to the browser, and cleared by
`POST /api/v1/auth/complete`. A code applies only while it matches: once, and only for the latest
login the session started.

Written by hand to match `bap.tables` (checked by tests/test_store.py on both backends).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bap_session") as batch:
        batch.add_column(sa.Column("login_nonce", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bap_session") as batch:
        batch.drop_column("login_nonce")
