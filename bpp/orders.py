"""select, init, confirm and status: quotes, payment terms and orders (the rest: bpp.lifecycle).

Every step re-prices the order from the catalogue (a BAP's prices and totals are never trusted)
with exact decimal arithmetic. `confirm` is the only step that changes anything: it decrements
stock with a conditional UPDATE (never below zero, even under concurrent confirms) and creates
one order per (bap_id, transaction_id), so a confirm retried under a new message_id, or replayed
after a crash, finds the order it already made instead of making a second one. (Besides, `init`
with a PRE-ORDER payment records the payment link it hands out, bpp.payments.)

Payment terms: each merchant accepts ON-FULFILLMENT, PRE-ORDER or both (bpp.terms); the buyer picks
one at init by `payments[0].type` or `.id` (default: the merchant's first). PRE-ORDER gives a
payment link of the BPP's payment processor, and `confirm` makes the order only once the processor
says it is paid; should the stock run out in between, the payment is refunded in full (40002).

Each function returns either the callback's `message` or a `BecknError` for its `error`.
Texts shown to the shopper follow an optional `lang` tag in `order.tags`; error messages are in
English, for the developers who read them.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.errors import BecknError, ErrorCode
from beckn.models import Fulfillment, Order
from beckn.node import wire_timestamp
from bpp.catalogue import all_locations, find_location, fulfillment_id, location_json, money, payment_terms
from bpp import offers
from bpp.fulfilment import FEE_TITLE, delivery_terms, fee_for, outside_zone
from bpp.search import tag_value
from bpp.payments import (
    PAYMENT_IDS,
    PRE_ORDER,
    PaymentProblem,
    paid_payment,
    payment_link,
    payments_of,
    refresh_status,
    refund_payment,
)
from bpp.payments import payment_json as prepaid_json
from bpp.tables import BppItem, BppOrder, BppOrderLine, BppPayment, BppProvider
from bpp.terms import agreed_terms, order_cancellation_terms, order_return_terms, payment_types_of
from bpp.text import localised, pick_language

log = structlog.get_logger(__name__)

QUOTE_TTL = "PT15M"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ORDER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U to misread

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
    discount: Decimal | None = None  # the residents' discount, when the order asks for it (bpp.offers)

    @property
    def items_total(self) -> Decimal:
        return sum((line.total for line in self.lines), Decimal("0"))

    @property
    def total(self) -> Decimal:
        return self.items_total + (self.fee or Decimal("0")) - (self.discount or Decimal("0"))

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
    priced = Priced(provider, lines, order_language(order))
    try:
        if offers.requested(order, provider):
            priced.discount = offers.discount(provider, priced.items_total)
    except offers.OfferProblem as problem:
        raise OrderProblem(problem.code, problem.message, problem.path) from None
    return priced


async def check_resident(order: Order, priced: Priced, resident: offers.ResidentCheck | None) -> None:
    """At init and confirm, a residents' discount needs a valid resident credential presentation."""
    if priced.discount is None:
        return
    try:
        if resident is None:
            raise offers.OfferProblem("this BPP cannot check resident credentials")
        await offers.check(order, resident)
    except offers.OfferProblem as problem:
        raise OrderProblem(problem.code, problem.message, problem.path) from None


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
    if priced.discount is not None:
        breakup.append({"title": offers.DISCOUNT_TITLE[priced.lang],
                        "price": {"currency": priced.currency, "value": money(-priced.discount)}})
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


def provider_ref(provider: BppProvider, lang: str, fulfillment_json: dict[str, Any] | None = None) -> dict[str, Any]:
    """The order's provider, its location the agreed start stop's (the pickup place), else the main shop."""
    start = next((stop for stop in (fulfillment_json or {}).get("stops") or () if stop.get("type") == "start"), None)
    location_id = (start or {}).get("location", {}).get("id") or provider.location["id"]
    return {"id": provider.id, "descriptor": {"name": localised(provider.descriptor, lang)["name"]},
            "locations": [{"id": location_id}]}


# ------------------------------------------------------------------------------ terms


def start_location(provider: BppProvider, order: Order) -> dict[str, Any]:
    """Where the buyer collects the order: the location named by the fulfillment's start stop
    (`stops[i].location.id`, or the stop's `id`, which on_search sets to it), else by
    `provider.locations[0].id`, else the main shop. An id the provider does not have is 30002."""
    requested = order.fulfillments[0] if order.fulfillments else None
    chosen: tuple[str, str] | None = None
    for index, stop in enumerate((requested.stops or ()) if requested is not None else ()):
        if stop.type in ("start", "START"):
            path = f"message.order.fulfillments[0].stops[{index}]"
            if stop.location is not None and stop.location.id:
                chosen = (stop.location.id, f"{path}.location.id")
            elif stop.id:
                chosen = (stop.id, f"{path}.id")
            break
    if chosen is None and order.provider is not None and order.provider.locations:
        if order.provider.locations[0].id:
            chosen = (order.provider.locations[0].id, "message.order.provider.locations[0].id")
    if chosen is None:
        return provider.location
    location = find_location(provider, chosen[0])
    if location is None:
        known = ", ".join(location["id"] for location in all_locations(provider))
        raise OrderProblem(ErrorCode.PROVIDER_LOCATION_NOT_FOUND,
                           f"provider {provider.id!r} has no location {chosen[0]!r}; its locations: {known}", chosen[1])
    return location


def fulfillment(provider: BppProvider, order: Order, *, need_address: bool) -> dict[str, Any]:
    """The fulfillment we agree to: the one asked for if this merchant offers it, else its first.
    A pickup starts at the location the buyer picked (start_location); a delivery always leaves
    from the main shop, which its zone is measured from."""
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
    start = start_location(provider, order)  # checked for every kind: an unknown location is an error
    shown = location_json(provider, start if kind == "Self-Pickup" else None)
    stops: list[dict[str, Any]] = [{"id": shown["id"], "type": "start", "location": shown}]
    if kind == "Delivery":
        end = next((stop for stop in (requested.stops or ()) if stop.type in ("end", "END")), None) \
            if requested is not None else None
        if end is not None and end.location is not None:
            check_zone(provider, end.location.gps, need_address=need_address)
            stops.append({"type": "end", "location": end.location.to_wire()})
        elif need_address:
            raise OrderProblem(ErrorCode.INVALID_REQUEST,
                               "a Delivery needs an end stop with the delivery location",
                               "message.order.fulfillments[0].stops")
    out["stops"] = stops
    if requested is not None and requested.customer is not None:
        out["customer"] = without_credentials(requested.customer.to_wire())
    return out


def without_credentials(customer: dict[str, Any]) -> dict[str, Any]:
    """The customer as this BPP keeps and echoes it: without `person.creds`. A resident credential
    presentation is checked once (bpp.offers) and then dropped: keeping it in the order would store
    the citizen's disclosed claims for as long as the order lives, and echo them back in on_init,
    on_confirm and on_status for no purpose (data minimisation)."""
    person = customer.get("person")
    if isinstance(person, dict) and "creds" in person:
        return {**customer, "person": {k: v for k, v in person.items() if k != "creds"}}
    return customer


def check_zone(provider: BppProvider, gps: str | None, *, need_address: bool) -> None:
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


class AlreadyConfirmed(Exception):
    """A concurrent confirm of the same transaction made the order: answer with it (bpp.service)."""


def payment_type(session: AsyncSession, order: Order, provider: BppProvider) -> str:
    """The payment type the buyer picks by `payments[0].type` or `.id` among those the merchant
    accepts and this BPP can take (`bpp.payments.Payments.offered`); default: the first of them."""
    offered = payments_of(session).offered(provider)
    for index, requested in enumerate(order.payments or ()):
        if requested.collected_by and requested.collected_by.upper() != "BPP":
            # Beckn lets a BAP collect and settle to the BPP; Lakou has no settlement between apps
            # and merchants, so the merchant (or its payment processor) always takes the money.
            raise OrderProblem(ErrorCode.PAYMENT_NOT_SUPPORTED,
                               "collected_by BAP is not supported: Lakou has no settlement between buyer apps and "
                               "merchants, so the merchant collects every payment itself (collected_by BPP), at "
                               "pickup or delivery or through its payment link",
                               f"message.order.payments[{index}].collected_by")
    requested = order.payments[0] if order.payments else None
    kind, path = None, "message.order.payments[0].type"
    if requested is not None and requested.type:
        kind = requested.type
    elif requested is not None and requested.id:
        path = "message.order.payments[0].id"
        kind = next((known for known, known_id in PAYMENT_IDS.items() if known_id == requested.id), requested.id)
    if kind is None:
        if not offered:
            raise OrderProblem(ErrorCode.PAYMENT_NOT_SUPPORTED,
                               f"{provider.id!r} takes only online prepayment and this BPP has no payment processor",
                               path)
        return offered[0]
    if kind not in offered:
        why = ("this BPP has no payment processor for online prepayment" if kind == PRE_ORDER
               and kind in payment_types_of(provider) else f"{provider.id!r} does not accept it")
        raise OrderProblem(ErrorCode.PAYMENT_NOT_SUPPORTED,
                           f"payment {kind!r} is not possible: {why}; accepted: "
                           f"{', '.join(f'{k} (id {PAYMENT_IDS[k]})' for k in offered) or 'none'}", path)
    return kind


def payment(kind: str, priced: Priced) -> dict[str, Any]:
    """The payment term `kind` for this order's amount, not paid yet."""
    return {**payment_terms(kind), "status": "NOT-PAID",
            "params": {"amount": money(priced.total), "currency": priced.currency}}


async def prepayment_link(session: AsyncSession, priced: Priced, *, bap_id: str, transaction_id: str) -> dict[str, Any]:
    """init's PRE-ORDER payment: the link the buyer pays at (reused while open for the same amount)."""
    try:
        row = await payment_link(session, bap_id=bap_id, transaction_id=transaction_id, provider=priced.provider,
                                 amount=priced.total, currency=priced.currency,
                                 description=localised(priced.provider.descriptor, priced.lang)["name"])
    except PaymentProblem as problem:
        raise OrderProblem(problem.code, problem.message, problem.path) from problem
    return prepaid_json(row, paid=row.status == "PAID")


# ------------------------------------------------------------------------------ actions


async def on_select(session: AsyncSession, order: Order) -> dict[str, Any]:
    priced = await price(session, order)
    fulfillment_json = priced.agree(fulfillment(priced.provider, order, need_address=False))
    return {"order": {
        "provider": provider_ref(priced.provider, priced.lang, fulfillment_json),
        "items": items_json(priced),
        "fulfillments": [fulfillment_json],
        "quote": quote_json(priced),
        # Every term this merchant accepts and this BPP can take; the buyer picks one at init.
        "payments": [{**payment_terms(kind), "params": {"amount": money(priced.total), "currency": priced.currency}}
                     for kind in payments_of(session).offered(priced.provider)],
        "cancellation_terms": cancellation_terms(priced.provider),
        "return_terms": return_terms(priced.provider),
        **offers_ref(priced),
    }}


def offers_ref(priced: Priced) -> dict[str, Any]:
    """The offer applied, echoed so that a BAP confirming the on_init order keeps it."""
    return {"offers": [{"id": offers.offer_id(priced.provider.id)}]} if priced.discount is not None else {}


async def on_init(session: AsyncSession, order: Order, *, bap_id: str, transaction_id: str,
                  resident: offers.ResidentCheck | None = None) -> dict[str, Any]:
    priced = await price(session, order)
    await check_resident(order, priced, resident)
    billing_json = billing(order)
    fulfillment_json = priced.agree(fulfillment(priced.provider, order, need_address=True))
    kind = payment_type(session, order, priced.provider)
    # Last: the payment link is the one thing init writes, and only for an order it accepts.
    payment_json = (await prepayment_link(session, priced, bap_id=bap_id, transaction_id=transaction_id)
                    if kind == PRE_ORDER else payment(kind, priced))
    return {"order": {
        "provider": provider_ref(priced.provider, priced.lang, fulfillment_json),
        "items": items_json(priced),
        "billing": billing_json,
        "fulfillments": [fulfillment_json],
        "quote": quote_json(priced),
        "payments": [payment_json],
        "cancellation_terms": cancellation_terms(priced.provider),
        "return_terms": return_terms(priced.provider),
        **offers_ref(priced),
    }}


def new_order_id() -> str:
    return "LKU-" + "".join(secrets.choice(_ORDER_ALPHABET) for _ in range(10))


async def existing_order(session: AsyncSession, bap_id: str, transaction_id: str) -> BppOrder | None:
    return (await session.execute(
        select(BppOrder).where(BppOrder.bap_id == bap_id, BppOrder.transaction_id == transaction_id)
    )).scalar_one_or_none()


async def confirm(session: AsyncSession, order: Order, *, bap_id: str, bap_uri: str, transaction_id: str,
                  message_id: str, resident: offers.ResidentCheck | None = None) -> BppOrder:
    """Create the order and take its items out of stock, in the caller's transaction.

    Raises OrderProblem (nothing written) or IntegrityError when a concurrent confirm of the same
    transaction won the race (the caller rolls back and answers with that order)."""
    priced = await price(session, order, check_stock=False)  # the UPDATE below is the real check
    await check_resident(order, priced, resident)
    billing_json = billing(order)
    fulfillment_json = priced.agree(fulfillment(priced.provider, order, need_address=True))
    check_accepted_total(order, priced)
    kind = payment_type(session, order, priced.provider)
    prepaid = await _paid(session, order, priced, bap_id=bap_id, transaction_id=transaction_id) \
        if kind == PRE_ORDER else None
    payment_json = prepaid_json(prepaid, paid=True) if prepaid is not None else payment(kind, priced)
    for line in priced.lines:
        taken = await session.execute(
            update(BppItem)
            .where(BppItem.provider_id == line.item.provider_id, BppItem.id == line.item.id,
                   BppItem.stock >= line.count)
            .values(stock=BppItem.stock - line.count)
        )
        if taken.rowcount != 1:
            await session.refresh(line.item)
            problem = OrderProblem(
                ErrorCode.ITEM_QUANTITY_UNAVAILABLE,
                f"only {line.item.stock} of item {line.item.id!r} available, {line.count} requested",
                f"{line.path}.quantity.selected.count")
            if prepaid is not None:
                problem = await _refund_unfulfillable(session, prepaid.id, problem, bap_id=bap_id,
                                                      transaction_id=transaction_id)
            raise problem
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
        terms=agreed_terms(priced.provider),
    )
    session.add(row)
    await session.flush()
    if prepaid is not None:
        # Conditional: a payment pays for one order, and never one refunded in the meantime.
        claimed = await session.execute(
            update(BppPayment).where(BppPayment.id == prepaid.id, BppPayment.order_id.is_(None),
                                     BppPayment.status == "PAID")
            .values(order_id=row.id, updated_at=datetime.now(UTC)))
        if claimed.rowcount != 1:
            raise OrderProblem(ErrorCode.BUSINESS_ERROR, f"payment {prepaid.id} can no longer be used: "
                               "send init again for a new payment link", "message.order.payments[0]")
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


def check_accepted_total(order: Order, priced: Priced) -> None:
    """The buyer confirms the quote it was shown: if the order's `quote.price` (what on_init said,
    sent back by the BAP) is no longer what the order costs (a price or fee changed since), the
    confirm is refused with 40003 rather than placing the order at a price nobody accepted. A
    confirm without a quote is priced afresh, as before (the BAP then accepts whatever on_confirm says)."""
    quoted = order.quote.price if order.quote is not None else None
    if quoted is None or quoted.value is None:
        return
    try:
        accepted = Decimal(str(quoted.value))
    except ArithmeticError:
        raise OrderProblem(ErrorCode.INVALID_REQUEST, f"quote price {quoted.value!r} is not a decimal amount",
                           "message.order.quote.price.value") from None
    if accepted != priced.total or (quoted.currency and quoted.currency != priced.currency):
        raise OrderProblem(
            ErrorCode.QUOTE_UNAVAILABLE,
            f"the quote of {quoted.value} {quoted.currency or priced.currency} no longer holds: the order now "
            f"costs {money(priced.total)} {priced.currency}; send init again for the current terms",
            "message.order.quote.price.value")


async def _paid(session: AsyncSession, order: Order, priced: Priced, *, bap_id: str,
                transaction_id: str) -> BppPayment:
    """confirm's PRE-ORDER check: the transaction's payment link, paid (asked of the processor)."""
    requested = order.payments[0] if order.payments else None
    ref = requested.params.transaction_id if requested is not None and requested.params is not None else None
    try:
        return await paid_payment(session, bap_id=bap_id, transaction_id=transaction_id,
                                  provider_id=priced.provider.id, payment_ref=ref, amount=priced.total,
                                  currency=priced.currency)
    except PaymentProblem as problem:
        raise OrderProblem(problem.code, problem.message, problem.path) from problem


async def _refund_unfulfillable(session: AsyncSession, payment_id: str, problem: OrderProblem, *, bap_id: str,
                                transaction_id: str) -> OrderProblem:
    """The items ran out between payment and confirm: refund the buyer in full, committed at once
    (the money went back whatever happens next), and say so in the refusal."""
    await session.rollback()  # the stock taken for the earlier lines goes back
    if await existing_order(session, bap_id, transaction_id) is not None:
        raise AlreadyConfirmed  # a concurrent confirm of this transaction made the order with this payment
    row = await session.get(BppPayment, payment_id)
    assert row is not None  # noqa: S101 - read in this confirm
    try:
        await refresh_status(session, row)  # PAID again: the rollback undid what this confirm wrote
        refunded = await refund_payment(session, row, row.amount)
    except PaymentProblem as failed:
        raise OrderProblem(failed.code, f"{problem.error.message}; and {failed.message}",
                           problem.error.path) from failed
    await session.commit()
    return OrderProblem(problem.error.code, f"{problem.error.message}: the prepayment of {money(refunded)} "
                        f"{row.currency} ({row.id}) was refunded in full", problem.error.path)


async def order_lines(session: AsyncSession, order_id: str) -> list[BppOrderLine]:
    return list((await session.execute(
        select(BppOrderLine).where(BppOrderLine.order_id == order_id).order_by(BppOrderLine.line_no)
    )).scalars().all())


# What Beckn's Cancellation shows of the order's cancellation record (bpp.lifecycle keeps more).
_CANCELLATION_FIELDS = ("time", "cancelled_by", "reason", "additional_description", "fee")


def cancellation_terms(provider: BppProvider, order: BppOrder | None = None) -> list[dict[str, Any]]:
    """The merchant's cancellation terms (bpp.terms) as Beckn `CancellationTerm`s: one per
    fulfillment state in which the buyer may cancel, with the fee kept as a share of the total.
    A reason is always required (bpp.lifecycle.CANCELLATION_REASONS). A confirmed `order` keeps
    the terms it was confirmed under."""
    return [{
        "fulfillment_state": {"descriptor": {"code": term.state}},
        "reason_required": True,
        "cancellation_fee": {"percentage": term.fee_percent},
    } for term in order_cancellation_terms(order, provider)]


def return_terms(provider: BppProvider, order: BppOrder | None = None) -> list[dict[str, Any]]:
    """The merchant's return terms (bpp.terms) as one Beckn `ReturnTerm` for a COMPLETED order:
    how many days the buyer has (an ISO 8601 duration), who carries the goods back, and where to."""
    terms = order_return_terms(order, provider)
    out: dict[str, Any] = {"fulfillment_state": {"descriptor": {"code": "COMPLETED"}},
                           "return_eligible": terms.returnable}
    if terms.returnable:
        out["return_time"] = {"duration": f"P{terms.within_days}D"}
        out["fulfillment_managed_by"] = terms.managed_by
        out["return_location"] = location_json(provider)
    return [out]


async def order_json(session: AsyncSession, row: BppOrder) -> dict[str, Any]:
    """The order as Beckn shows it in on_confirm, on_status and on_cancel."""
    provider = await session.get(BppProvider, row.provider_id)
    assert provider is not None  # noqa: S101 - foreign key
    lines = await order_lines(session, row.id)
    cancellation = {key: value for key, value in (row.cancellation or {}).items() if key in _CANCELLATION_FIELDS}
    return {
        "id": row.id,
        "status": row.status,
        "provider": provider_ref(provider, row.lang, row.fulfillment),
        "items": [{
            "id": line.item_id,
            "descriptor": {"name": line.name},
            "price": {"currency": row.currency, "value": money(line.unit_price)},
            "quantity": {"selected": {"count": line.quantity}},
        } for line in lines],
        "billing": row.billing,
        "fulfillments": [row.fulfillment],
        "quote": row.quote,
        "payments": [row.payment],
        **({"cancellation": cancellation} if cancellation else {}),
        "cancellation_terms": cancellation_terms(provider, row),
        "return_terms": return_terms(provider, row),
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
    "AlreadyConfirmed", "OrderProblem", "Priced", "payment_type",
    "cancellation_terms", "confirm", "existing_order", "find_order", "new_order_id",
    "on_init", "on_select", "order_json", "order_lines", "price", "quote_json", "return_terms",
]
