"""The citizen app's view of an order, built from the transaction the BAP keeps for it.

The app never sees Beckn: `order_view` turns the latest order the BPP sent (on_confirm, on_status,
on_update, on_cancel, as folded into `BapTransaction.order` by `bap.correlation`) into plain
fields: what was bought, what it costs, where it stands, how it is fulfilled and paid, and the
merchant's cancellation and return terms. Values are the BPP's own (names in the language it
answered in, prices as decimal strings); nothing here invents a state or a price.
"""

from __future__ import annotations

import re
from typing import Any

from bap.offers import quote_of
from bap.tables import BapTransaction
from bap.wire import as_dict, descriptor, dicts
from beckn.node import wire_timestamp

# Beckn codes → the API's words (the same words the checkout API takes).
FULFILLMENT_TYPES = {"delivery": "delivery", "self-pickup": "pickup", "pickup": "pickup"}
PAYMENT_TYPES = {"ON-FULFILLMENT": "on_fulfillment", "PRE-ORDER": "prepay"}
PAYMENT_STATUSES = {"PAID": "paid", "NOT-PAID": "not_paid"}
ORDER_STATUSES = ("ACTIVE", "COMPLETE", "CANCELLED")
_DAYS = re.compile(r"^P(\d+)D$")


def _iso(moment: Any) -> str | None:
    return wire_timestamp(moment) if moment is not None else None


def _price(value: Any) -> dict[str, Any] | None:
    price = as_dict(value)
    if not price:
        return None
    return {"currency": price.get("currency"), "value": price.get("value")}


def _count(item: dict[str, Any]) -> int | None:
    count = as_dict(as_dict(item.get("quantity")).get("selected")).get("count")
    return count if isinstance(count, int) else None


def _items(order: dict[str, Any], fallback: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    items = dicts(order.get("items"))
    if not items:
        return [{"id": i.get("id"), "name": None, "quantity": i.get("quantity"), "unit_price": None}
                for i in fallback or [] if isinstance(i, dict)]
    return [{
        "id": item.get("id"),
        "name": descriptor(item).get("name"),
        "quantity": _count(item),
        "unit_price": _price(item.get("price")),
    } for item in items]


def _state(fulfillment: dict[str, Any], order: dict[str, Any], fallback: str | None) -> dict[str, Any] | None:
    state = descriptor(fulfillment.get("state"))
    code = state.get("code") or fallback or (order.get("status") if isinstance(order.get("status"), str) else None)
    if not code:
        return None
    return {"code": code, "label": state.get("name"),
            "updated_at": as_dict(fulfillment.get("state")).get("updated_at")}


def _location(location: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": location.get("id"), "name": descriptor(location).get("name"),
                           "address": location.get("address"), "gps": location.get("gps")}
    city = as_dict(location.get("city"))
    if city:
        out["city"] = city.get("name") or city.get("code")
    return out


def _fulfillment(fulfillment: dict[str, Any], checkout: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fulfillment and not checkout:
        return None
    kind = str(fulfillment.get("type") or "").lower()
    out: dict[str, Any] = {
        "id": fulfillment.get("id"),
        "type": FULFILLMENT_TYPES.get(kind) or (as_dict(checkout).get("fulfillment") or {}).get("type")
        or (kind or None),
        "pickup": None,
        "delivery": None,
    }
    for stop in dicts(fulfillment.get("stops")):
        location = as_dict(stop.get("location"))
        kind_of_stop = str(stop.get("type") or "").lower()
        if kind_of_stop == "start" and location:
            out["pickup"] = _location(location)  # where the order is collected from (or leaves from)
        elif kind_of_stop == "end" and location:
            out["delivery"] = {"address": location.get("address"), "gps": location.get("gps")}
    return out


def _billing(order: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any] | None:
    """The citizen's own details as the merchant now holds them (else as given at checkout): shown
    only to their session."""
    held = as_dict(order.get("billing")) or as_dict(given)
    return {key: held[key] for key in ("name", "phone", "email", "address") if held.get(key)} or None


def _refund(payment: dict[str, Any]) -> dict[str, Any] | None:
    """The `lakou:refund` tag group a BPP adds to a refunded prepayment."""
    for tag in dicts(payment.get("tags")):
        if descriptor(tag).get("code") == "lakou:refund":
            values = {descriptor(v).get("code"): v.get("value") for v in dicts(tag.get("list"))}
            return {"currency": values.get("currency"), "value": values.get("amount"), "status": values.get("status")}
    return None


def _payment(order: dict[str, Any]) -> dict[str, Any] | None:
    payments = dicts(order.get("payments"))
    if not payments:
        return None
    payment = payments[0]
    params = as_dict(payment.get("params"))
    kind = payment.get("type")
    status = payment.get("status")
    return {
        "type": PAYMENT_TYPES.get(kind, kind) if isinstance(kind, str) else None,
        "status": PAYMENT_STATUSES.get(status, status) if isinstance(status, str) else None,
        "amount": ({"currency": params.get("currency"), "value": params.get("amount")}
                   if params.get("amount") is not None else None),
        "url": payment.get("url"),
        "refunded": _refund(payment),
    }


def _cancellation(order: dict[str, Any]) -> dict[str, Any] | None:
    cancellation = as_dict(order.get("cancellation"))
    if not cancellation and order.get("status") != "CANCELLED":
        return None
    reason = as_dict(cancellation.get("reason"))
    fee = as_dict(cancellation.get("fee"))
    payment = _payment(order) or {}
    return {
        "time": cancellation.get("time"),
        "cancelled_by": cancellation.get("cancelled_by"),
        "reason": ({"id": reason.get("id") or descriptor(reason).get("code"), "name": descriptor(reason).get("name")}
                   if reason else None),
        "comment": as_dict(cancellation.get("additional_description")).get("short_desc"),
        "fee": _price(fee.get("amount")),
        "fee_percent": fee.get("percentage"),
        "refunded": {k: v for k, v in (payment.get("refunded") or {}).items() if k != "status"} or None,
    }


def cancellation_terms(order: dict[str, Any]) -> list[dict[str, Any]]:
    """In which fulfillment states the citizen may cancel, and the share of the total the merchant keeps."""
    return [{
        "state": descriptor(term.get("fulfillment_state")).get("code"),
        "fee_percent": as_dict(term.get("cancellation_fee")).get("percentage"),
        "fee": _price(as_dict(term.get("cancellation_fee")).get("amount")),
        "reason_required": bool(term.get("reason_required")),
    } for term in dicts(order.get("cancellation_terms"))]


def return_terms(order: dict[str, Any]) -> dict[str, Any] | None:
    terms = dicts(order.get("return_terms"))
    if not terms:
        return None
    term = terms[0]
    duration = as_dict(term.get("return_time")).get("duration")
    days = _DAYS.match(duration) if isinstance(duration, str) else None
    return {
        "returnable": bool(term.get("return_eligible")),
        "within_days": int(days.group(1)) if days else None,
        "within": duration,
        "managed_by": term.get("fulfillment_managed_by"),
        "return_location": _location(as_dict(term.get("return_location"))) if term.get("return_location") else None,
    }


def order_view(tx: BapTransaction, order: dict[str, Any] | None = None) -> dict[str, Any]:
    """The API's order JSON (`GET /orders/{id}`): `id` is the cart/transaction id, `order_id` the BPP's.
    `order`: a Beckn order to show instead of the transaction's latest (an earlier callback's)."""
    order = as_dict(order if order is not None else tx.order)
    fulfillment = dicts(order.get("fulfillments"))
    first = fulfillment[0] if fulfillment else {}
    provider = as_dict(order.get("provider"))
    status = order.get("status") if order.get("status") in ORDER_STATUSES else None
    quote = quote_of(order) or tx.quote
    return {
        "id": tx.id,
        "order_id": tx.order_id,
        "bpp_id": tx.bpp_id,
        "provider": {"id": provider.get("id") or tx.provider_id, "name": descriptor(provider).get("name")},
        "items": _items(order, tx.items),
        "quote": {"total": quote.get("total"), "breakup": quote.get("breakup") or []} if quote else None,
        "status": status,
        "state": _state(first, order, tx.state),
        "fulfillment": _fulfillment(first, tx.checkout),
        "payment": _payment(order),
        "billing": _billing(order, tx.billing),
        "cancellation": _cancellation(order) if status == "CANCELLED" else None,
        "cancellation_terms": cancellation_terms(order),
        "return_terms": return_terms(order),
        "created_at": _iso(tx.created_at),
        "confirmed_at": _iso(tx.confirmed_at),
        "updated_at": order.get("updated_at") or _iso(tx.updated_at),
    }


# The network's buyer cancellation reasons (specs/network-policy.md, `cancel`), shown to the citizen
# to choose from; the id is what `cancel` sends as `cancellation_reason_id`.
CANCELLATION_REASONS: dict[str, dict[str, str]] = {
    "001": {"fr": "Je ne souhaite plus cette commande", "en": "I no longer want this order",
            "es": "Ya no quiero este pedido", "de": "Ich möchte diese Bestellung nicht mehr"},
    "002": {"fr": "Commande passée par erreur", "en": "Ordered by mistake",
            "es": "Pedido hecho por error", "de": "Versehentlich bestellt"},
    "003": {"fr": "Trouvé moins cher ailleurs", "en": "Found a better price elsewhere",
            "es": "Encontré un mejor precio", "de": "Anderswo günstiger gefunden"},
    "004": {"fr": "Délai de retrait ou de livraison trop long", "en": "Pickup or delivery too late",
            "es": "Recogida o entrega demasiado tarde", "de": "Abholung oder Lieferung zu spät"},
    "005": {"fr": "Autre raison", "en": "Other reason", "es": "Otro motivo", "de": "Anderer Grund"},
}


def cancellation_reasons(lang: str) -> list[dict[str, str]]:
    return [{"id": code, "name": names.get(lang) or names["fr"]} for code, names in CANCELLATION_REASONS.items()]


__all__ = ["CANCELLATION_REASONS", "cancellation_reasons", "cancellation_terms", "order_view", "return_terms"]
