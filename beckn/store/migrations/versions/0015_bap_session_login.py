"""bap: how and when the session's citizen logged in (issue 7).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-23

`bap_session.acr` (the ID token's `acr`: mq:local, eidas1, mq:wallet) and `bap_session.auth_time`
(the ID token's `auth_time`), set when the app completes the login (POST /auth/complete) and
cleared at logout, so /auth/me answers from the row (any BAP process, after a restart) rather
than from one process's memory.

Written by hand to match `bap.tables` (checked by tests/test_store.py on both backends).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bap_session") as batch:
        batch.add_column(sa.Column("acr", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("auth_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bap_session") as batch:
        batch.drop_column("auth_time")
        batch.drop_column("acr")
