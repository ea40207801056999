"""bpp: a merchant's business credential per provider (issue 7).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23

`bpp_provider_profile.business_credential`: the `MartiniqueMerchantCredential` (a VC 2.0 JSON
document, did.merchant_credential) the merchant uploaded for this provider, or NULL. Served at
`/credentials/providers/{id}.json` and referenced from the provider's tags in on_search.

Written by hand to match `bpp.tables` (checked by tests/test_store.py on both backends).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bpp_provider_profile") as batch:
        batch.add_column(sa.Column("business_credential", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bpp_provider_profile") as batch:
        batch.drop_column("business_credential")
