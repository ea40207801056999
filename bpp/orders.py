"""select, init, confirm and status: quotes, payment terms and orders (the rest: bpp.lifecycle).

Every step re-prices the order from the catalogue (a BAP's prices and totals are never trusted)
with exact decimal arithmetic. `confirm` is the only step that changes anything: it decrements
stock with a conditional UPDATE (never below zero, even under concurrent confirms) and creates
one order per (bap_id, transaction_id), so a confirm retried under a new message_id, or replayed
after a crash, finds the order it already made instead of making a second one.

Each function returns either the callback's `message` or a `BecknError` for its `error`.
Texts shown to the shopper follow an optional `lang` tag in `order.tags`; error messages are in
English, for the developers who read them.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.errors import BecknError, ErrorCode
from beckn.models import Fulfillment, Order
from beckn.node import wire_timestamp
from bpp.catalogue import fulfillment_id, location_json, money, payment_terms
from bpp.fulfilment import FEE_TITLE, delivery_terms, fee_for, outside_zone
from bpp.search import tag_value
from bpp.tables import BppItem, BppOrder, BppOrderLine, BppProvider
from bpp.text import localised, pick_language

log = structlog.get_logger(__name__)

QUOTE_TTL = "PT15M"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ORDER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U to misread

# The order's fulfillment JSON keeps, under this key, what Beckn's fulfillment has no place for and
# the order table has no column for yet: the cancellation record and the ratings (bpp.lifecycle).
PRIVATE_KEY = "lakou"
# Cancelling is free until the merchant moves the fulfillment past this state (bpp.lifecycle.cancel).
FREE_CANCEL_STATE = "RECEIVED"

STATE_RECEIVED = {
    "fr": "Commande reçue", "en": "Order received", "es": "Pedido recibido", "de": "Bestellung eingegangen",
}


class OrderProblem(Exception):
    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.error = BecknError(code, message, path)


@dataclass
class Line:
    item: BppItem
    count: int
    path: str  # where the item sits in the request, for error paths

    @property
    def total(self) -> Decimal:
        return self.item.price * self.count


@dataclass
class Priced:
    provider: BppProvider
    lines: list[Line]
    lang: str
    fee: Decimal | None = None  # the delivery fee, once a Delivery is agreed (0 when waived)

    @property
    def items_total(self) -> Decimal:
        return sum((line.total for line in self.lines), Decimal("0"))

    @property
    def total(self) -> Decimal:
        return self.items_total + (self.fee or Decimal("0"))

    def agree(self, fulfillment_json: dict[str, Any]) -> dict[str, Any]:
        """Price the agreed fulfillment: a Delivery costs the provider's fee (bpp.fulfilment)."""
        if fulfillment_json["type"] == "Delivery":
            self.fee = fee_for(delivery_terms(self.provider.location), self.items_total)
        return fulfillment_json

    @property
    def currency(self) -> str:
        return self.lines[0].item.currency


def order_language(order: Order) -> str:
    return pick_language(tag_value(order.tags, "lang", group_code="search"))


# ------------------------------------------------------------------------------ pricing


async def price(session: AsyncSession, order: Order, *, check_stock: bool = True) -> Priced:
    """The order's provider and lines, re-priced from the catalogue; raises OrderProblem."""
    if not order.items:
        raise OrderProblem(ErrorCode.INVALID_REQUEST, "the order has no items: list what to buy in message.order.items",
                           "message.order.items")
    provider = await _provider(session, order)
    counts: dict[str, tuple[int, str]] = {}
    for index, requested in enumerate(order.items):
        path = f"message.order.items[{index}]"
        if not requested.id:
            raise OrderProblem(ErrorCode.INVALID_REQUEST, f"{path}.id is required", f"{path}.id")
        count = 1
        if requested.quantity and requested.quantity.selected and requested.quantity.selected.count is not None:
            count = requested.quantity.selected.count
        if count < 1:
            raise OrderProblem(ErrorCode.INVALID_REQUEST, f"{path}.quantity.selected.count must be at least 1",
                               f"{path}.quantity.selected.count")
        previous = counts.get(requested.id)
        # The same item twice is one line with both quantities.
        counts[requested.id] = (count + (previous[0] if previous else 0), previous[1] if previous else path)

    rows = (await session.execute(
        select(BppItem).where(BppItem.provider_id == provider.id, BppItem.id.in_(list(counts)))
    )).scalars().all()
    by_id = {row.id: row for row in rows}
    lines = []
    for item_id, (count, path) in counts.items():
        item = by_id.get(item_id)
        if item is None:
            raise OrderProblem(ErrorCode.ITEM_NOT_FOUND, f"item {item_id!r} is not sold by provider {provider.id!r}",
                               f"{path}.id")
        if check_stock and count > item.stock:
            raise OrderProblem(
                ErrorCode.ITEM_QUANTITY_UNAVAILABLE,
                f"only {item.stock} of item {item_id!r} available, {count} requested",
                f"{path}.quantity.selected.count")
        lines.append(Line(item, count, path))
    return Priced(provider, lines, order_language(order))


async def _provider(session: AsyncSession, order: Order) -> BppProvider:
    provider_id = order.provider.id if order.provider else None
    if provider_id:
        provider = await session.get(BppProvider, provider_id)
        if provider is None:
            raise OrderProblem(ErrorCode.PROVIDER_NOT_FOUND, f"provider {provider_id!r} is not in this catalogue",
                               "message.order.provider.id")
        return provider
    # No provider named: accept it when the items belong to exactly one provider.
    item_ids = [item.id for item in order.items or () if item.id]
    owners = set((await session.execute(
        select(BppItem.provider_id).where(BppItem.id.in_(item_ids)))).scalars().all())
    if len(owners) != 1:
        raise OrderProblem(ErrorCode.INVALID_REQUEST,
                           "message.order.provider.id is required: name the provider whose items are ordered",
                           "message.order.provider.id")
    provider = await session.get(BppProvider, owners.pop())
    assert provider is not None  # noqa: S101 - the item's foreign key guarantees it
    return provider


def quote_json(priced: Priced) -> dict[str, Any]:
    breakup = []
    for line in priced.lines:
        name = localised(line.item.descriptor, priced.lang)["name"]
        breakup.append({
            "item": {
                "id": line.item.id,
                "quantity": {"selected": {"count": line.count}},
                "price": {"currency": line.item.currency, "value": money(line.item.price)},
            },
            "title": f"{name} × {line.count}",
            "price": {"currency": line.item.currency, "value": money(line.total)},
        })
    if priced.fee is not None:
        # An item-less line: Quotation.breakup allows it (title + price), and a BAP sums every line.
        breakup.append({"title": FEE_TITLE[priced.lang],
                        "price": {"currency": priced.currency, "value": money(priced.fee)}})
    return {
        "id": str(uuid.uuid4()),
        "price": {"currency": priced.currency, "value": money(priced.total)},
        "breakup": breakup,
        "ttl": QUOTE_TTL,
    }


def items_json(priced: Priced) -> list[dict[str, Any]]:
    return [{
        "id": line.item.id,
        "descriptor": {"name": localised(line.item.descriptor, priced.lang)["name"]},
        "price": {"currency": line.item.currency, "value": money(line.item.price)},
        "quantity": {"selected": {"count": line.count}},
    } for line in priced.lines]


def provider_ref(provider: BppProvider, lang: str) -> dict[str, Any]:
    return {"id": provider.id, "descriptor": {"name": localised(provider.descriptor, lang)["name"]},
            "locations": [{"id": provider.location["id"]}]}


# ------------------------------------------------------------------------------ terms


def fulfillment(provider: BppProvider, order: Order, *, need_address: bool) -> dict[str, Any]:
    """The fulfillment we agree to: the one asked for if this merchant offers it, else its first."""
    requested: Fulfillment | None = order.fulfillments[0] if order.fulfillments else None
    offered = {fulfillment_id(provider.id, kind): kind for kind in provider.fulfillment_types}
    kind = provider.fulfillment_types[0]
    if requested is not None:
        if requested.type:
            if requested.type not in provider.fulfillment_types:
                raise OrderProblem(
                    ErrorCode.FULFILLMENT_UNAVAILABLE,
                    f"fulfillment type {requested.type!r} is not offered by {provider.id!r}; "
                    f"offered: {', '.join(provider.fulfillment_types)}",
                    "message.order.fulfillments[0].type")
            kind = requested.type
        elif requested.id in offered:
            kind = offered[requested.id]
    out: dict[str, Any] = {"id": fulfillment_id(provider.id, kind), "type": kind}
    stops: list[dict[str, Any]] = [{"type": "start", "location": location_json(provider)}]
    if kind == "Delivery":
        end = next((stop for stop in (requested.stops or ()) if stop.type in ("end", "END")), None) \
            if requested is not None else None
        if end is not None and end.location is not None:
            _check_zone(provider, end.location.gps, need_address=need_address)
            stops.append({"type": "end", "location": end.location.to_wire()})
        elif need_address:
            raise OrderProblem(ErrorCode.INVALID_REQUEST,
                               "a Delivery needs an end stop with the delivery location",
                               "message.order.fulfillments[0].stops")
    out["stops"] = stops
    if requested is not None and requested.customer is not None:
        out["customer"] = requested.customer.to_wire()
    return out


def _check_zone(provider: BppProvider, gps: str | None, *, need_address: bool) -> None:
    """Refuse a drop-off outside the provider's delivery zone (30008, as Beckn's "fulfillment
    unavailable"); a zone can only be checked on a GPS point, which init therefore requires."""
    terms = delivery_terms(provider.location)
    if terms is None:
        return
    path = "message.order.fulfillments[0].stops"
    if gps is None:
        if need_address:
            raise OrderProblem(ErrorCode.INVALID_REQUEST,
                               f"{provider.id!r} delivers within {terms.radius_km} km of its shop: "
                               "give the GPS of the delivery location", f"{path}.location.gps")
        return
    distance = outside_zone(terms, provider.location["gps"], gps)
    if distance is not None:
        raise OrderProblem(ErrorCode.FULFILLMENT_UNAVAILABLE,
                           f"{provider.id!r} delivers within {terms.radius_km} km of its shop; "
                           f"this location is {distance:.1f} km away", f"{path}.location.gps")


def billing(order: Order) -> dict[str, Any]:
    if order.billing is None or not order.billing.name:
        raise OrderProblem(ErrorCode.INVALID_REQUEST, "message.order.billing with at least a name is required",
                           "message.order.billing.name")
    email = order.billing.email
    if email is not None and not _EMAIL.match(email):
        raise OrderProblem(ErrorCode.INVALID_REQUEST, "message.order.billing.email is not an e-mail address",
                           "message.order.billing.email")
    return order.billing.to_wire()


def payment(order: Order, priced: Priced) -> dict[str, Any]:
    """Pay the merchant on pickup or delivery: the only terms Lakou merchants take for now."""
    for index, requested in enumerate(order.payments or ()):
        path = f"message.order.payments[{index}]"
        if requested.type and requested.type != "ON-FULFILLMENT":
            raise OrderProblem(ErrorCode.PAYMENT_NOT_SUPPORTED,
                               f"payment type {requested.type!r} is not supported: pay ON-FULFILLMENT "
                               "(at pickup or delivery), collected by the merchant", f"{path}.type")
        if requested.collected_by and requested.collected_by.upper() != "BPP":
            raise OrderProblem(ErrorCode.PAYMENT_NOT_SUPPORTED,
                               "payment is collected by the merchant (BPP) at pickup or delivery",
                               f"{path}.collected_by")
    return {**payment_terms(), "status": "NOT-PAID",
            "params": {"amount": money(priced.total), "currency": priced.currency}}


# ------------------------------------------------------------------------------ actions


async def on_select(session: AsyncSession, order: Order) -> dict[str, Any]:
    priced = await price(session, order)
    fulfillment_json = priced.agree(fulfillment(priced.provider, order, need_address=False))
    return {"order": {
        "provider": provider_ref(priced.provider, priced.lang),
        "items": items_json(priced),
        "fulfillments": [fulfillment_json],
        "quote": quote_json(priced),
        "payments": [{**payment_terms(), "params": {"amount": money(priced.total), "currency": priced.currency}}],
    }}


async def on_init(session: AsyncSession, order: Order) -> dict[str, Any]:
    priced = await price(session, order)
    billing_json = billing(order)
    fulfillment_json = priced.agree(fulfillment(priced.provider, order, need_address=True))
    return {"order": {
        "provider": provider_ref(priced.provider, priced.lang),
        "items": items_json(priced),
        "billing": billing_json,
        "fulfillments": [fulfillment_json],
        "quote": quote_json(priced),
        "payments": [payment(order, priced)],
    }}


def new_order_id() -> str:
    return "LKU-" + "".join(secrets.choice(_ORDER_ALPHABET) for _ in range(10))


async def existing_order(session: AsyncSession, bap_id: str, transaction_id: str) -> BppOrder | None:
    return (await session.execute(
        select(BppOrder).where(BppOrder.bap_id == bap_id, BppOrder.transaction_id == transaction_id)
    )).scalar_one_or_none()


async def confirm(session: AsyncSession, order: Order, *, bap_id: str, bap_uri: str, transaction_id: str,
                  message_id: str) -> BppOrder:
    """Create the order and take its items out of stock, in the caller's transaction.

    Raises OrderProblem (nothing written) or IntegrityError when a concurrent confirm of the same
    transaction won the race (the caller rolls back and answers with that order)."""
    priced = await price(session, order, check_stock=False)  # the UPDATE below is the real check
    billing_json = billing(order)
    fulfillment_json = priced.agree(fulfillment(priced.provider, order, need_address=True))
    payment_json = payment(order, priced)
    for line in priced.lines:
        taken = await session.execute(
            update(BppItem)
            .where(BppItem.provider_id == line.item.provider_id, BppItem.id == line.item.id,
                   BppItem.stock >= line.count)
            .values(stock=BppItem.stock - line.count)
        )
        if taken.rowcount != 1:
            await session.refresh(line.item)
            raise OrderProblem(
                ErrorCode.ITEM_QUANTITY_UNAVAILABLE,
                f"only {line.item.stock} of item {line.item.id!r} available, {line.count} requested",
                f"{line.path}.quantity.selected.count")
    now_wire = wire_timestamp()
    fulfillment_json["state"] = {
        "descriptor": {"code": "RECEIVED", "name": STATE_RECEIVED[priced.lang]},
        "updated_at": now_wire,
    }
    row = BppOrder(
        id=new_order_id(),
        transaction_id=transaction_id,
        confirm_message_id=message_id,
        bap_id=bap_id,
        bap_uri=bap_uri,
        provider_id=priced.provider.id,
        status="ACTIVE",
        lang=priced.lang,
        currency=priced.currency,
        total=priced.total,
        billing=billing_json,
        fulfillment=fulfillment_json,
        payment=payment_json,
        quote=quote_json(priced),
    )
    session.add(row)
    await session.flush()
    session.add_all([
        BppOrderLine(order_id=row.id, line_no=number, provider_id=line.item.provider_id, item_id=line.item.id,
                     name=localised(line.item.descriptor, priced.lang)["name"], quantity=line.count,
                     unit_price=line.item.price, line_total=line.total)
        for number, line in enumerate(priced.lines, start=1)
    ])
    await session.flush()
    # ids and amounts only: billing holds personal data.
    log.info("bpp.order_confirmed", order_id=row.id, provider_id=row.provider_id, total=money(row.total),
             lines=len(priced.lines), bap_id=bap_id)
    return row


async def order_lines(session: AsyncSession, order_id: str) -> list[BppOrderLine]:
    return list((await session.execute(
        select(BppOrderLine).where(BppOrderLine.order_id == order_id).order_by(BppOrderLine.line_no)
    )).scalars().all())


def private(row: BppOrder) -> dict[str, Any]:
    """What `bpp.lifecycle` keeps on the order (its cancellation, its ratings)."""
    return dict(row.fulfillment.get(PRIVATE_KEY) or {})


def cancellation_terms() -> list[dict[str, Any]]:
    """Every Lakou order's terms: cancelled free while its fulfillment is RECEIVED, with a reason."""
    return [{
        "fulfillment_state": {"descriptor": {"code": FREE_CANCEL_STATE}},
        "reason_required": True,
        "cancellation_fee": {"percentage": "0"},
    }]


async def order_json(session: AsyncSession, row: BppOrder) -> dict[str, Any]:
    """The order as Beckn shows it in on_confirm, on_status and on_cancel."""
    provider = await session.get(BppProvider, row.provider_id)
    assert provider is not None  # noqa: S101 - foreign key
    lines = await order_lines(session, row.id)
    cancellation = private(row).get("cancellation")
    return {
        "id": row.id,
        "status": row.status,
        "provider": provider_ref(provider, row.lang),
        "items": [{
            "id": line.item_id,
            "descriptor": {"name": line.name},
            "price": {"currency": row.currency, "value": money(line.unit_price)},
            "quantity": {"selected": {"count": line.quantity}},
        } for line in lines],
        "billing": row.billing,
        "fulfillments": [{key: value for key, value in row.fulfillment.items() if key != PRIVATE_KEY}],
        "quote": row.quote,
        "payments": [row.payment],
        **({"cancellation": cancellation} if cancellation else {}),
        "cancellation_terms": cancellation_terms(),
        "created_at": wire_timestamp(row.created_at),
        "updated_at": wire_timestamp(row.updated_at),
    }


async def find_order(session: AsyncSession, order_id: str, bap_id: str) -> BppOrder:
    """The order `order_id` if it belongs to `bap_id`: a buyer app sees only its own orders."""
    row = await session.get(BppOrder, order_id)
    if row is None or row.bap_id != bap_id:
        raise OrderProblem(ErrorCode.ORDER_NOT_FOUND, f"order {order_id!r} not found", "message.order_id")
    return row


__all__ = [
    "FREE_CANCEL_STATE", "PRIVATE_KEY", "OrderProblem", "Priced", "cancellation_terms", "confirm", "existing_order",
    "find_order", "new_order_id", "on_init", "on_select", "order_json", "order_lines", "price", "private", "quote_json",
]
