"""The merchant's orders: list and read them, and move their fulfillment on (`/api/v1/merchant/orders`).

A merchant sees only the orders of its own providers (ownership: `BppProviderProfile`); another
merchant's order answers 404 exactly like a missing one. The detail shows the buyer's billing and
fulfillment contact: it is the merchant's own customer, who gave them to be served.

Fulfillment states and the moves a merchant may make (anything else is refused with 409, naming
the current state and the allowed ones):

    RECEIVED          -> PACKED
    PACKED            -> READY_FOR_PICKUP (a Self-Pickup order) | OUT_FOR_DELIVERY (a Delivery order)
    READY_FOR_PICKUP  -> COMPLETED
    OUT_FOR_DELIVERY  -> COMPLETED

COMPLETED also completes the order (status COMPLETE, the value the order table allows). A
cancelled or completed order does not move. Whether the buyer may still cancel, and at what fee,
depends on the state and the merchant's cancellation terms (bpp.terms, bpp.lifecycle).

Each move sends an unsolicited `on_status` to the buyer app that placed the order (its `bap_uri`
is on the order row): same transaction_id, a new message_id, queued in the outbox in the same
database transaction as the change, so the buyer app hears of every committed change and of no
other.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.node import BecknNode, wire_timestamp
from beckn.store.tables import OutboxMessage
from bpp import orders
from bpp.catalogue import money
from bpp.merchants import merchant_auth
from bpp.tables import BppOrder, BppProviderProfile
from bpp.webhooks import webhook_routes

log = structlog.get_logger(__name__)

RECEIVED, PACKED, READY, OUT, COMPLETED = "RECEIVED", "PACKED", "READY_FOR_PICKUP", "OUT_FOR_DELIVERY", "COMPLETED"
State = Literal["PACKED", "READY_FOR_PICKUP", "OUT_FOR_DELIVERY", "COMPLETED"]

STATE_NAMES: dict[str, dict[str, str]] = {
    PACKED: {"fr": "Commande préparée", "en": "Order packed", "es": "Pedido preparado", "de": "Bestellung gepackt"},
    READY: {"fr": "Prête à retirer", "en": "Ready for pickup", "es": "Listo para recoger", "de": "Abholbereit"},
    OUT: {"fr": "En cours de livraison", "en": "Out for delivery", "es": "En reparto", "de": "In Zustellung"},
    COMPLETED: {"fr": "Commande terminée", "en": "Order completed", "es": "Pedido completado",
                "de": "Bestellung abgeschlossen"},
}
# The unsolicited on_status is retried for this long (and the buyer app may act on it that long).
STATUS_TTL = "PT10M"
_STATUS_TTL_SECONDS = 600


def allowed_next(row: BppOrder) -> list[str]:
    """The states this order may move to now (none once cancelled or complete)."""
    if row.status != "ACTIVE":
        return []
    state = current_state(row)
    if state == RECEIVED:
        return [PACKED]
    if state == PACKED:
        return [OUT if row.fulfillment.get("type") == "Delivery" else READY]
    if state in (READY, OUT):
        return [COMPLETED]
    return []


def current_state(row: BppOrder) -> str:
    return ((row.fulfillment.get("state") or {}).get("descriptor") or {}).get("code") or RECEIVED


# ------------------------------------------------------------------------------ API models


class OrderSummary(BaseModel):
    id: str
    status: str = Field(description="ACTIVE, COMPLETE or CANCELLED")
    fulfillment_state: str
    fulfillment_type: str | None
    provider_id: str
    total: str = Field(examples=["12.50"])
    currency: str
    created_at: str
    updated_at: str


class OrderPage(BaseModel):
    orders: list[OrderSummary]
    total: int = Field(description="How many orders the merchant has in all")
    limit: int
    offset: int


class StateChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fulfillment_state: State


def _summary(row: BppOrder) -> OrderSummary:
    return OrderSummary(id=row.id, status=row.status, fulfillment_state=current_state(row),
                        fulfillment_type=row.fulfillment.get("type"), provider_id=row.provider_id,
                        total=money(row.total), currency=row.currency, created_at=wire_timestamp(row.created_at),
                        updated_at=wire_timestamp(row.updated_at))


def _owned_orders(merchant_id: str) -> Any:
    return select(BppOrder).join(BppProviderProfile, BppProviderProfile.provider_id == BppOrder.provider_id) \
        .where(BppProviderProfile.merchant_id == merchant_id)


async def _owned_order(session: AsyncSession, merchant_id: str, order_id: str) -> BppOrder:
    row = (await session.execute(_owned_orders(merchant_id).where(BppOrder.id == order_id))).scalar_one_or_none()
    if row is None:
        raise HTTPException(404, f"order {order_id!r} not found")
    return row


async def _detail(session: AsyncSession, row: BppOrder) -> dict[str, Any]:
    return {"order": await orders.order_json(session, row), "fulfillment_state": current_state(row),
            "allowed_next_states": allowed_next(row)}


# ------------------------------------------------------------------------------ unsolicited on_status


async def _status_context(session: AsyncSession, node: BecknNode, row: BppOrder) -> dict[str, Any]:
    """A new on_status context in the order's transaction. Domain, version and location are those
    of our on_confirm (what the buyer app used) when it is still in the outbox, else ours."""
    confirmed = (await session.execute(
        select(OutboxMessage.body).where(OutboxMessage.transaction_id == row.transaction_id,
                                         OutboxMessage.message_id == row.confirm_message_id,
                                         OutboxMessage.action == "on_confirm").limit(1))).scalar_one_or_none()
    base: dict[str, Any] = {}
    if confirmed is not None:
        base = json.loads(confirmed).get("context") or {}
    settings = node.settings
    return {
        "domain": base.get("domain") or settings.domain,
        "location": base.get("location") or {"country": {"code": settings.country},
                                             "city": {"code": settings.city or "*"}},
        "action": "on_status",
        "version": base.get("version") or "1.1.0",
        "bap_id": row.bap_id,
        "bap_uri": row.bap_uri,
        "bpp_id": node.subscriber_id,
        "bpp_uri": node.subscriber_url,
        "transaction_id": row.transaction_id,
        "message_id": str(uuid.uuid4()),
        "timestamp": wire_timestamp(),
        "ttl": STATUS_TTL,
    }


async def send_status(session: AsyncSession, node: BecknNode, row: BppOrder) -> str:
    """Queue an unsolicited on_status of `row` to its buyer app, in the caller's transaction; the
    caller commits and wakes the node. Returns the new message_id."""
    context = await _status_context(session, node, row)
    await node.send(session, row.bap_uri, {"context": context,
                                           "message": {"order": await orders.order_json(session, row)}})
    return context["message_id"]


# ------------------------------------------------------------------------------ routes


def merchant_order_routes(node: BecknNode) -> APIRouter:
    """The merchant's order routes, and its webhook routes (bpp.webhooks)."""
    router = APIRouter(prefix="/api/v1/merchant", tags=["merchant orders"],
                       responses={401: {"description": "Missing, unknown or revoked API key"}})
    current_merchant = merchant_auth(node.sessions)

    @router.get("/orders", response_model=OrderPage, summary="The orders of the merchant's providers, newest first")
    async def list_orders(limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0),
                          merchant_id: str = Depends(current_merchant)) -> OrderPage:
        async with node.sessions() as session:
            owned = _owned_orders(merchant_id)
            total = (await session.execute(select(func.count()).select_from(owned.subquery()))).scalar_one()
            rows = (await session.execute(owned.order_by(BppOrder.created_at.desc(), BppOrder.id.desc())
                                          .limit(limit).offset(offset))).scalars().all()
            return OrderPage(orders=[_summary(row) for row in rows], total=total, limit=limit, offset=offset)

    @router.get("/orders/{order_id}", summary="One order, with the buyer's billing and fulfillment contact",
                responses={404: {"description": "No such order among the merchant's"}})
    async def get_order(order_id: str, merchant_id: str = Depends(current_merchant)) -> dict[str, Any]:
        async with node.sessions() as session:
            return await _detail(session, await _owned_order(session, merchant_id, order_id))

    @router.post("/orders/{order_id}/state", summary="Move the order's fulfillment on; the buyer app is told",
                 responses={404: {"description": "No such order among the merchant's"},
                            409: {"description": "Not an allowed move from the current state"}})
    async def change_state(order_id: str, body: StateChange,
                           merchant_id: str = Depends(current_merchant)) -> dict[str, Any]:
        target = body.fulfillment_state
        async with node.sessions() as session:
            row = await _owned_order(session, merchant_id, order_id)
            allowed = allowed_next(row)
            if target not in allowed:
                _refuse(row, target, allowed)
            now = datetime.now(UTC)
            fulfillment = {
                **row.fulfillment,
                "state": {"descriptor": {"code": target, "name": STATE_NAMES[target][row.lang]},
                          "updated_at": wire_timestamp(now)},
            }
            # Conditional on what we read: a concurrent cancel (status) or another move (updated_at)
            # committed in between makes this change nothing, and the merchant is told to look again.
            changed = await session.execute(
                update(BppOrder)
                .where(BppOrder.id == row.id, BppOrder.status == "ACTIVE", BppOrder.updated_at == row.updated_at)
                .values(fulfillment=fulfillment, updated_at=now,
                        status="COMPLETE" if target == COMPLETED else "ACTIVE")
                .execution_options(synchronize_session=False))
            if changed.rowcount != 1:
                await session.rollback()
                fresh = await _owned_order(session, merchant_id, order_id)
                _refuse(fresh, target, allowed_next(fresh))
            await session.flush()
            await session.refresh(row)
            message_id = await send_status(session, node, row)
            detail = await _detail(session, row)
            await session.commit()
        node.wake()
        log.info("bpp.order_state_changed", order_id=row.id, provider_id=row.provider_id, state=target,
                 status_message_id=message_id)
        return detail

    # The webhook routes come along (and their delivery loop, through the router's lifespan).
    both = APIRouter()
    both.include_router(router)
    both.include_router(webhook_routes(node.sessions))
    return both


def _refuse(row: BppOrder, target: str, allowed: list[str]) -> None:
    if row.status != "ACTIVE":
        why = f"order {row.id!r} is {row.status.lower()}: it cannot move to {target}"
    else:
        why = f"order {row.id!r} cannot move from {current_state(row)} to {target}"
    raise HTTPException(409, {"message": why, "status": row.status, "fulfillment_state": current_state(row),
                              "allowed_next_states": allowed})


__all__ = ["STATE_NAMES", "allowed_next", "current_state", "merchant_order_routes", "send_status"]
