"""The BPP's small JSON API beside Beckn: a public catalogue listing and a read-only order view.

The order view is for operators and end-to-end tests ("does the merchant have this order, with
these items and this total?"). It is behind a bearer token (LAKOU_BPP_ADMIN_TOKEN) and shows
no personal data: no billing, no customer.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.node import wire_timestamp
from bpp import orders
from bpp.catalogue import load_profiles, money
from bpp.payments import payments_of
from bpp.search import Criteria, catalog_json, find
from bpp.settings import BppSettings
from bpp.tables import BppOrder
from bpp.text import search_terms

Language = Literal["fr", "en", "es", "de"]


class OrderLineView(BaseModel):
    id: str = Field(description="Item id in the merchant's catalogue.", examples=["christophine-kg"])
    name: str = Field(description="Item name when ordered, in the order's language.", examples=["Christophine"])
    quantity: int = Field(examples=[3])
    unit_price: str = Field(description="Beckn decimal string.", examples=["2.80"])
    line_total: str = Field(examples=["8.40"])


class OrderView(BaseModel):
    id: str = Field(examples=["LKU-7F3K9Q2M4T"])
    status: str = Field(examples=["ACTIVE"])
    transaction_id: str
    bap_id: str = Field(description="The buyer app that placed the order.")
    provider_id: str = Field(examples=["jardin-lamentin"])
    currency: str = Field(examples=["EUR"])
    total: str = Field(examples=["12.40"])
    items: list[OrderLineView]
    created_at: str


class CatalogueView(BaseModel):
    lang: Language
    catalog: dict[str, Any] = Field(description="A Beckn 1.1 Catalog, as on_search sends it.")


def api_routes(sessions: async_sessionmaker[AsyncSession], settings: BppSettings) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    bearer = HTTPBearer(auto_error=False, description="LAKOU_BPP_ADMIN_TOKEN")

    def require_admin(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        expected = settings.bpp_admin_token
        if not expected:
            raise HTTPException(403, "the operator API is disabled: set LAKOU_BPP_ADMIN_TOKEN to enable it")
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
            raise HTTPException(401, "a valid 'Authorization: Bearer <LAKOU_BPP_ADMIN_TOKEN>' header is required",
                                headers={"WWW-Authenticate": 'Bearer realm="lakou-bpp"'})

    @router.get(
        "/orders/{order_id}", response_model=OrderView, tags=["operations"],
        summary="An order's items, quantities and total (operators; read-only, no personal data)",
        responses={401: {"description": "Missing or wrong bearer token"},
                   403: {"description": "Operator API disabled (no token configured)"},
                   404: {"description": "No such order"}},
        dependencies=[Depends(require_admin)],
    )
    async def get_order(order_id: str) -> OrderView:
        async with sessions() as session:
            row = await session.get(BppOrder, order_id)
            if row is None:
                raise HTTPException(404, f"order {order_id!r} not found")
            lines = await orders.order_lines(session, order_id)
        return OrderView(
            id=row.id, status=row.status, transaction_id=row.transaction_id, bap_id=row.bap_id,
            provider_id=row.provider_id, currency=row.currency, total=money(row.total),
            items=[OrderLineView(id=line.item_id, name=line.name, quantity=line.quantity,
                                 unit_price=money(line.unit_price), line_total=money(line.line_total))
                   for line in lines],
            created_at=wire_timestamp(row.created_at),
        )

    @router.get("/catalogue", response_model=CatalogueView, tags=["catalogue"],
                summary="The catalogue in one language, optionally filtered (public, read-only)")
    async def get_catalogue(
        lang: Language = Query("fr", description="Language of the texts."),
        q: str = Query("", max_length=200, description="Words to look for, in any of the four languages."),
        city: str | None = Query(None, pattern=r"^insee:\d{5}$", description='Commune, e.g. "insee:97209".'),
    ) -> CatalogueView:
        wanted = Criteria(lang=lang, free_terms=search_terms(q), city_code=city)
        async with sessions() as session:
            found = await find(session, wanted, max_items=settings.bpp_search_max_items)
            profiles = await load_profiles(session, [provider.id for provider, _ in found])
            catalog = catalog_json(found, lang, profiles, payments_of(session).offered)
        return CatalogueView(lang=lang, catalog=catalog)

    return router
