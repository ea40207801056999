"""bpp items: tags (local origin, organic), shown as Beckn TagGroups in on_search.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

`bpp_item.tags` is a JSON list of tag codes (`["local", "organic"]`); existing items get NULL, read as none.
Delivery zones and fees need no column: they live in `bpp_provider.location` (bpp.fulfilment).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bpp_item") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bpp_item") as batch:
        batch.drop_column("tags")
