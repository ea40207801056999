"""After the order: `cancel`, `track`, `support` and `rating`, answered from the order tables.

Cancellation follows the merchant's own terms as they were when the order was confirmed
(`BppOrder.terms`, `bpp.terms.order_cancellation_terms`; shown in every order as
`cancellation_terms`, see `bpp.orders.cancellation_terms`): the buyer app that placed an
order may cancel it while its fulfillment is in one of the states the merchant lists, and the
merchant keeps that state's fee, a percentage of the order total rounded to the cent (half up).
In a state the merchant does not list, once the order is complete, or when it is already
cancelled, `cancel` is refused with 50001 (naming the state and the merchant's terms). A reason
from `CANCELLATION_REASONS` is required (30011).

Cancelling writes, in the request's transaction: the order's new status and fulfillment state,
its cancellation record (`BppOrder.cancellation`: time, reason, fee, amount refunded), a quote
that now charges only the fee (Beckn's Quotation, with a "Frais d'annulation" line in the order's
language), the items back in stock, and the refund of what was prepaid less the fee
(`bpp.payments.refund_order`). The order leaves ACTIVE by a conditional UPDATE, and only the
request that made that change returns the stock and refunds, whatever the retries; the UPDATE is
also conditional on the order being unchanged since it was read, so a merchant moving the
fulfillment on at the same moment cannot make the buyer pay the fee of the wrong state.

Ratings are kept in `BppOrder.ratings` (one per rated thing, the latest replacing the previous).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.errors import ErrorCode
from beckn.node import wire_timestamp
from bpp import orders
from bpp.catalogue import money
from bpp.orders import OrderProblem
from bpp.tables import BppItem, BppOrder, BppProvider, BppProviderProfile
from bpp.terms import CancellationTerm, order_cancellation_terms
from bpp.text import localised

log = structlog.get_logger(__name__)

CANCELLED_STATE = "CANCELLED"
CENT = Decimal("0.01")
# A cancel that finds the order changed under it (the merchant moved it on) reads it again this often.
_CHANGED_RETRIES = 3

# Buyer cancellation reasons of the Lakou network (Option ids, numbered as ONDC apps expect).
CANCELLATION_REASONS: dict[str, dict[str, dict[str, str]]] = {
    "001": {"fr": {"name": "Je ne souhaite plus cette commande"}, "en": {"name": "I no longer want this order"},
            "es": {"name": "Ya no quiero este pedido"}, "de": {"name": "Ich möchte diese Bestellung nicht mehr"}},
    "002": {"fr": {"name": "Commande passée par erreur"}, "en": {"name": "Ordered by mistake"},
            "es": {"name": "Pedido hecho por error"}, "de": {"name": "Versehentlich bestellt"}},
    "003": {"fr": {"name": "Trouvé moins cher ailleurs"}, "en": {"name": "Found a better price elsewhere"},
            "es": {"name": "Encontré un mejor precio"}, "de": {"name": "Anderswo günstiger gefunden"}},
    "004": {"fr": {"name": "Délai de retrait ou de livraison trop long"}, "en": {"name": "Pickup or delivery too late"},
            "es": {"name": "Recogida o entrega demasiado tarde"}, "de": {"name": "Abholung oder Lieferung zu spät"}},
    "005": {"fr": {"name": "Autre raison"}, "en": {"name": "Other reason"},
            "es": {"name": "Otro motivo"}, "de": {"name": "Anderer Grund"}},
}
STATE_CANCELLED = {"fr": "Commande annulée", "en": "Order cancelled", "es": "Pedido cancelado",
                   "de": "Bestellung storniert"}
# The quote line of the fee the merchant keeps, in the network's languages.
CANCELLATION_FEE_TITLE = {"fr": "Frais d'annulation", "en": "Cancellation fee", "es": "Gastos de cancelación",
                          "de": "Stornogebühr"}

# What a buyer may rate, and how: a whole number of stars.
RATEABLE = ("Order", "Item", "Provider", "Fulfillment")
_STARS = re.compile(r"^[1-5]$")


# ------------------------------------------------------------------------------ cancel


def fulfillment_state(row: BppOrder) -> str:
    return ((row.fulfillment.get("state") or {}).get("descriptor") or {}).get("code") or "RECEIVED"


def cancellation_fee(total: Decimal, term: CancellationTerm) -> Decimal:
    """The share of `total` the merchant keeps under `term`, rounded to the cent, half up."""
    return (total * Decimal(term.fee_percent) / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def describe_terms(terms: list[CancellationTerm]) -> str:
    if not terms:
        return "this merchant does not accept cancellations"
    return "this merchant accepts cancellations in " + ", ".join(
        f"{term.state} ({'free' if Decimal(term.fee_percent) == 0 else term.fee_percent + ' % fee'})"
        for term in terms)


def cancelled_quote(row: BppOrder, fee: Decimal) -> dict[str, Any]:
    """The order's quote once cancelled: nothing is due for the items nor the delivery, only the fee.
    Item lines stay (count 0) so the buyer still sees what the order was; the lines sum to the price."""
    zero = {"currency": row.currency, "value": money(Decimal("0"))}
    breakup = []
    for line in row.quote.get("breakup") or ():
        if "item" in line:
            breakup.append({**line, "item": {**line["item"], "quantity": {"selected": {"count": 0}}}, "price": zero})
        else:
            breakup.append({**line, "price": zero})
    breakup.append({"title": CANCELLATION_FEE_TITLE[row.lang], "price": {"currency": row.currency,
                                                                          "value": money(fee)}})
    return {**row.quote, "price": {"currency": row.currency, "value": money(fee)}, "breakup": breakup}


async def cancel(session: AsyncSession, message: Any, *, bap_id: str) -> BppOrder:
    """Cancel the order for its buyer app under its merchant's terms; raises OrderProblem."""
    for _ in range(_CHANGED_RETRIES):
        row = await orders.find_order(session, message.order_id, bap_id)
        done = await _cancel_once(session, row, message, bap_id=bap_id)
        if done:
            return row
        # The order changed between our read and our write: read it again (a fresh transaction).
        await session.rollback()
    raise OrderProblem(ErrorCode.CANCELLATION_NOT_POSSIBLE,
                       f"order {message.order_id!r} keeps changing; try again", "message.order_id")


async def _cancel_once(session: AsyncSession, row: BppOrder, message: Any, *, bap_id: str) -> bool:
    if row.status == "CANCELLED":
        raise OrderProblem(ErrorCode.CANCELLATION_NOT_POSSIBLE, f"order {row.id!r} is already cancelled",
                           "message.order_id")
    if row.status != "ACTIVE":
        raise OrderProblem(ErrorCode.CANCELLATION_NOT_POSSIBLE,
                           f"order {row.id!r} is {row.status.lower()} and can no longer be cancelled",
                           "message.order_id")
    provider = await session.get(BppProvider, row.provider_id)
    assert provider is not None  # noqa: S101 - foreign key
    terms = order_cancellation_terms(row, provider)
    state = fulfillment_state(row)
    term = next((term for term in terms if term.state == state), None)
    if term is None:
        raise OrderProblem(ErrorCode.CANCELLATION_NOT_POSSIBLE,
                           f"order {row.id!r} is {state}, a state in which it can no longer be cancelled: "
                           f"{describe_terms(terms)}; contact the merchant (support)", "message.order_id")
    reason_id = message.cancellation_reason_id
    if not reason_id:
        raise OrderProblem(ErrorCode.INVALID_CANCELLATION_REASON,
                           f"a cancellation reason is required; use one of {', '.join(CANCELLATION_REASONS)}",
                           "message.cancellation_reason_id")
    if reason_id not in CANCELLATION_REASONS:
        raise OrderProblem(ErrorCode.INVALID_CANCELLATION_REASON,
                           f"unknown cancellation reason {reason_id!r}; use one of {', '.join(CANCELLATION_REASONS)}",
                           "message.cancellation_reason_id")

    fee = cancellation_fee(row.total, term)
    now = wire_timestamp()
    cancellation: dict[str, Any] = {
        "time": now, "cancelled_by": "CONSUMER",
        "reason": {"id": reason_id, "descriptor": {
            "code": reason_id, "name": localised(CANCELLATION_REASONS[reason_id], row.lang)["name"]}},
        "fee": {"percentage": term.fee_percent, "amount": {"currency": row.currency, "value": money(fee)}},
        "state": state,  # the fulfillment state it was cancelled in (kept, not shown)
    }
    if message.descriptor is not None and message.descriptor.short_desc:
        cancellation["additional_description"] = {"short_desc": message.descriptor.short_desc[:500]}
    fulfillment = {
        **row.fulfillment,
        "state": {"descriptor": {"code": CANCELLED_STATE, "name": STATE_CANCELLED[row.lang]}, "updated_at": now},
    }
    # Only the request that moves the order out of ACTIVE returns the stock and refunds: a retried or
    # concurrent cancel finds nothing to update. The order must also be as we read it (updated_at):
    # a merchant's move committed in between would change the state, hence the fee.
    changed = await session.execute(
        update(BppOrder).where(BppOrder.id == row.id, BppOrder.status == "ACTIVE",
                               BppOrder.updated_at == row.updated_at)
        .values(status="CANCELLED", fulfillment=fulfillment, cancellation=cancellation,
                quote=cancelled_quote(row, fee), updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False))
    if changed.rowcount != 1:
        return False
    for line in await orders.order_lines(session, row.id):
        await session.execute(
            update(BppItem).where(BppItem.provider_id == line.provider_id, BppItem.id == line.item_id)
            .values(stock=BppItem.stock + line.quantity).execution_options(synchronize_session=False))
    await session.flush()
    await session.refresh(row)
    from bpp.payments import refund_order  # bpp.payments imports the order modules: import when used

    refunded = await refund_order(session, row, fee)
    if refunded:
        await session.execute(
            update(BppOrder).where(BppOrder.id == row.id)
            .values(cancellation={**cancellation, "refunded": {"currency": row.currency, "value": money(refunded)}})
            .execution_options(synchronize_session=False))
        await session.flush()
        await session.refresh(row)
    log.info("bpp.order_cancelled", order_id=row.id, provider_id=row.provider_id, reason_id=reason_id,
             state=state, fee=money(fee), refunded=money(refunded), bap_id=bap_id)
    return True


# ------------------------------------------------------------------------------ track


async def tracking(session: AsyncSession, order_id: str, *, bap_id: str) -> dict[str, Any]:
    """Lakou merchants have no live courier positions: tracking is active while the order is open,
    and shows where the order is collected from (a pickup) or leaves from (a delivery)."""
    row = await orders.find_order(session, order_id, bap_id)
    out: dict[str, Any] = {"id": row.id, "status": "active" if row.status == "ACTIVE" else "inactive"}
    start = next((stop for stop in row.fulfillment.get("stops") or () if stop.get("type") == "start"), None)
    if row.status == "ACTIVE" and start and start.get("location"):
        out["location"] = start["location"]
    return out


# ------------------------------------------------------------------------------ support


async def support(session: AsyncSession, message: Any, *, bap_id: str) -> dict[str, Any]:
    """The merchant's business contact, for an order (`ref_id` = order id) or a provider (its id)."""
    requested = message.support
    ref_id = requested.ref_id if requested is not None else None
    if not ref_id:
        raise OrderProblem(ErrorCode.INVALID_REQUEST,
                           "message.support.ref_id is required: an order id or a provider id", "message.support.ref_id")
    provider = await session.get(BppProvider, ref_id)
    if provider is None:
        try:
            row = await orders.find_order(session, ref_id, bap_id)
        except OrderProblem:
            raise OrderProblem(ErrorCode.ORDER_NOT_FOUND, f"no order or provider {ref_id!r} here",
                               "message.support.ref_id") from None
        provider_id = row.provider_id
    else:
        provider_id = provider.id
    profile = await session.get(BppProviderProfile, provider_id)
    contact = profile.contact if profile is not None else {}
    out = {"ref_id": ref_id, **{key: contact[key] for key in ("phone", "email", "url") if contact.get(key)}}
    if len(out) == 1:
        raise OrderProblem(ErrorCode.SUPPORT_UNAVAILABLE,
                           f"provider {provider_id!r} has no support contact on file", "message.support.ref_id")
    if "phone" in out:
        out["phone"] = out["phone"].replace(" ", "")  # the spec's phone format has no spaces
    return out


# ------------------------------------------------------------------------------ rating


async def rate(session: AsyncSession, ratings: list[Any] | None, *, bap_id: str, transaction_id: str) -> BppOrder:
    """Store the ratings of one order (named by an Order rating, else the transaction's order)."""
    if not ratings:
        raise OrderProblem(ErrorCode.INVALID_REQUEST, "message.ratings is empty: give at least one rating",
                           "message.ratings")
    order_rating = next(((i, r) for i, r in enumerate(ratings) if r.rating_category == "Order"), None)
    if order_rating is not None:
        index, rating = order_rating
        try:
            row = await orders.find_order(session, rating.id or "", bap_id)
        except OrderProblem:
            raise OrderProblem(ErrorCode.ENTITY_TO_RATE_NOT_FOUND, f"order {rating.id!r} not found",
                               f"message.ratings[{index}].id") from None
    else:
        found = await orders.existing_order(session, bap_id, transaction_id)
        if found is None:
            raise OrderProblem(ErrorCode.ENTITY_TO_RATE_NOT_FOUND,
                               "no order in this transaction: rate an order of this transaction, or give an "
                               "Order rating with the order id", "message.ratings")
        row = found

    lines = await orders.order_lines(session, row.id)
    rateable_ids = {"Order": {row.id}, "Item": {line.item_id for line in lines},
                    "Provider": {row.provider_id}, "Fulfillment": {row.fulfillment.get("id")}}
    stored = {(r["rating_category"], r["id"]): r for r in row.ratings or ()}
    now = wire_timestamp()
    for index, rating in enumerate(ratings):
        path = f"message.ratings[{index}]"
        if rating.rating_category not in RATEABLE:
            raise OrderProblem(ErrorCode.UNSUPPORTED_RATING_CATEGORY,
                               f"rating_category {rating.rating_category!r} is not rated here; use one of "
                               f"{', '.join(RATEABLE)}", f"{path}.rating_category")
        if not rating.id or rating.id not in rateable_ids[rating.rating_category]:
            raise OrderProblem(ErrorCode.ENTITY_TO_RATE_NOT_FOUND,
                               f"{rating.rating_category} {rating.id!r} is not part of order {row.id!r}", f"{path}.id")
        value = (rating.value or "").strip()
        if not _STARS.match(value):
            raise OrderProblem(ErrorCode.INVALID_RATING_VALUE,
                               f"rating value {rating.value!r} is not a whole number from 1 to 5", f"{path}.value")
        # A new rating of the same thing replaces the previous one.
        stored[(rating.rating_category, rating.id)] = {
            "rating_category": rating.rating_category, "id": rating.id, "value": value, "time": now}
    row.ratings = list(stored.values())
    await session.flush()
    log.info("bpp.order_rated", order_id=row.id, ratings=len(ratings), bap_id=bap_id)
    return row


__all__ = ["CANCELLATION_FEE_TITLE", "CANCELLATION_REASONS", "RATEABLE", "cancel", "cancellation_fee",
           "fulfillment_state", "rate", "support", "tracking"]
