"""Several on_search parts under one message_id: inbound_message.dedupe_key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

A BPP may answer one search with several on_search callbacks (pages of its catalogue) sharing
the search's message_id. The unique key (sender, message_id, action) refused every page after the
first; it now includes `dedupe_key`, which is empty for every action but on_search, where it is
the body digest. Existing rows get '' and keep their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "uq_inbound_message_sender_id_message_id_action"
_NEW = "uq_inbound_message_sender_id_message_id_action_dedupe_key"


def upgrade() -> None:
    with op.batch_alter_table("inbound_message") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(), server_default=sa.text("''"), nullable=False))
        batch.drop_constraint(_OLD, type_="unique")
        batch.create_unique_constraint(_NEW, ["sender_id", "message_id", "action", "dedupe_key"])


def downgrade() -> None:
    # Only possible while no message has several parts; otherwise the old key cannot hold.
    with op.batch_alter_table("inbound_message") as batch:
        batch.drop_constraint(_NEW, type_="unique")
        batch.create_unique_constraint(_OLD, ["sender_id", "message_id", "action"])
        batch.drop_column("dedupe_key")
