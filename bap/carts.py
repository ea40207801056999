"""Carts: what a citizen picks from one provider of a search, checked out and ordered.

A cart is a Beckn transaction of its own (`BapTransaction` with `search_id`, the search it came
from), owned by the session that made it. Each change of its items sends a `select` to the BPP,
whose `on_select` is the quote; checkout sends `init` with the citizen's billing, fulfillment and
payment choice, and `on_init` states exactly what they will pay; the order sends `confirm` with
that `on_init` order as the BPP stated it, only when the citizen accepted that very total.

The cart's state is read from what was sent and what came back (`bap_request`, `bap_callback`),
never from a guess: the newest select/init/confirm decides the status, and the quote shown is the
BPP's latest successful answer since the items last changed. Names, prices and terms are the
BPP's own; the catalogue (the search's `on_search`) adds the provider's pickup points, delivery
terms and payment options the app chooses from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bap.orders import cancellation_terms as plain_cancellation_terms
from bap.orders import return_terms as plain_return_terms
from bap.service import ApiError, BapService, Outcome, iso
from bap.tables import BapCallback, BapRequest, BapTransaction, CallbackStatus
from bap.wire import as_dict, descriptor, dicts

# The API's words ↔ the Lakou network's Beckn codes (specs/network-policy.md).
FULFILLMENT_CODES = {"pickup": "Self-Pickup", "delivery": "Delivery"}
FULFILLMENT_WORDS = {"self-pickup": "pickup", "pickup": "pickup", "delivery": "delivery"}
PAYMENT_CODES = {"on_fulfillment": "ON-FULFILLMENT", "prepay": "PRE-ORDER"}
PAYMENT_WORDS = {code: word for word, code in PAYMENT_CODES.items()}
CART_ACTIONS = ("select", "init", "confirm")
# Item-less quote lines are named by the BPP; these are the Lakou BPP's titles for its delivery
# fee (bpp.fulfilment.FEE_TITLE) and cancellation fee (bpp.lifecycle), in the network's languages,
# so the app can tell them apart. Another BPP's extra lines show as "other".
DELIVERY_TITLES = {"frais de livraison", "delivery fee", "gastos de envío", "liefergebühr"}
CANCELLATION_TITLES = {"frais d'annulation", "cancellation fee", "gastos de cancelación", "stornogebühr"}


def _price(value: Any) -> dict[str, Any] | None:
    price = as_dict(value)
    return {"currency": price.get("currency"), "value": price.get("value")} if price else None


def _count(item: dict[str, Any]) -> int | None:
    count = as_dict(as_dict(item.get("quantity")).get("selected")).get("count")
    return count if isinstance(count, int) else None


def decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


# ------------------------------------------------------------------------------ the catalogue


async def catalogue_provider(
    session: AsyncSession, search_id: str, bpp_id: str, provider_id: str,
) -> dict[str, Any] | None:
    """The provider as the BPP described it in this search's on_search, pages merged (a large
    answer comes in several callbacks; the latest word on an item wins)."""
    rows = (await session.execute(
        select(BapCallback.message).where(
            BapCallback.transaction_id == search_id, BapCallback.action == "on_search",
            BapCallback.status == CallbackStatus.ACCEPTED.value, BapCallback.bpp_id == bpp_id,
        ).order_by(BapCallback.id)
    )).scalars().all()
    merged: dict[str, Any] | None = None
    items: dict[str, dict[str, Any]] = {}
    for message in rows:
        for provider in dicts(as_dict(as_dict(message).get("catalog")).get("providers")):
            if provider.get("id") != provider_id:
                continue
            merged = merged or {"id": provider_id}
            for key in ("descriptor", "locations", "fulfillments", "payments"):
                if provider.get(key):
                    merged[key] = provider[key]
            for item in dicts(provider.get("items")):
                if isinstance(item.get("id"), str):
                    items[item["id"]] = item
    if merged is not None:
        merged["items"] = items
    return merged


def _location(location: dict[str, Any]) -> dict[str, Any]:
    city = as_dict(location.get("city"))
    return {"id": location.get("id"), "name": descriptor(location).get("name"),
            "address": location.get("address"), "gps": location.get("gps"),
            "city": city.get("name") or city.get("code")}


def _delivery_terms(fulfillment: dict[str, Any]) -> dict[str, Any]:
    """The `lakou:delivery` tag group (zone radius, fee, free_above) of a catalogue fulfillment."""
    for group in dicts(fulfillment.get("tags")):
        if descriptor(group).get("code") == "lakou:delivery":
            return {descriptor(tag)["code"]: tag.get("value") for tag in dicts(group.get("list"))
                    if isinstance(descriptor(tag).get("code"), str)}
    return {}


def fulfillment_options(provider: dict[str, Any] | None, order: dict[str, Any] | None) -> list[dict[str, Any]]:
    """How the citizen may get the goods: pickup (with its pickup points) and/or delivery (with
    its zone and fee), from the catalogue; else what the BPP's last answer offered."""
    offered = dicts(as_dict(provider).get("fulfillments")) or dicts(as_dict(order).get("fulfillments"))
    currency = next((i["price"].get("currency") for i in as_dict(as_dict(provider).get("items")).values()
                     if isinstance(i.get("price"), dict)), None) or "EUR"
    out = []
    for fulfillment in offered:
        word = FULFILLMENT_WORDS.get(str(fulfillment.get("type") or "").lower())
        if word is None:
            continue
        option: dict[str, Any] = {"type": word, "id": fulfillment.get("id")}
        if word == "pickup":
            stops = [as_dict(stop.get("location")) | ({"id": stop["id"]} if stop.get("id") and not
                                                     as_dict(stop.get("location")).get("id") else {})
                     for stop in dicts(fulfillment.get("stops")) if str(stop.get("type", "")).lower() == "start"]
            locations = [_location(location) for location in stops if location]
            if not locations:  # no stops listed: the provider's locations are its pickup points
                locations = [_location(location) for location in dicts(as_dict(provider).get("locations"))]
            option["locations"] = locations
        else:
            terms = _delivery_terms(fulfillment)
            option["radius_km"] = terms.get("radius_km")
            option["fee"] = {"currency": currency, "value": terms["fee"]} if terms.get("fee") else None
            option["free_above"] = ({"currency": currency, "value": terms["free_above"]}
                                    if terms.get("free_above") else None)
            option["needs_gps"] = bool(terms.get("radius_km"))
        out.append(option)
    return out


def payment_options(provider: dict[str, Any] | None, order: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The payment terms offered: on_select's `payments` (what this BPP can take for this
    merchant), else the catalogue's."""
    offered = dicts(as_dict(order).get("payments")) or dicts(as_dict(provider).get("payments"))
    out = []
    for payment in offered:
        code = payment.get("type")
        if isinstance(code, str) and code in PAYMENT_WORDS:
            out.append({"type": PAYMENT_WORDS[code], "id": payment.get("id"), "collected_by": payment.get("collected_by")})
    return out


# ------------------------------------------------------------------------------ the quote


def quote_view(order: dict[str, Any] | None) -> dict[str, Any] | None:
    """The BPP's quote in plain fields: the total and every line, each line of a kind the app can
    style (item, delivery fee, cancellation fee, other)."""
    quote = as_dict(as_dict(order).get("quote"))
    if not quote:
        return None
    breakup = []
    for line in dicts(quote.get("breakup")):
        item = as_dict(line.get("item"))
        title = line.get("title")
        if item:
            kind = "item"
        elif isinstance(title, str) and title.strip().lower() in DELIVERY_TITLES:
            kind = "delivery"
        elif isinstance(title, str) and title.strip().lower() in CANCELLATION_TITLES:
            kind = "cancellation_fee"
        else:
            kind = "other"
        breakup.append({
            "kind": kind, "item_id": item.get("id"), "title": title,
            "quantity": _count(item) if item else None,
            "unit_price": _price(item.get("price")) if item else None,
            "price": _price(line.get("price")),
        })
    return {"id": quote.get("id"), "total": _price(quote.get("price")), "breakup": breakup, "ttl": quote.get("ttl")}


def cancellation_terms(order: dict[str, Any] | None) -> dict[str, Any]:
    raw = dicts(as_dict(order).get("cancellation_terms"))
    return {"terms": plain_cancellation_terms(as_dict(order)), "raw": raw}


def return_terms(order: dict[str, Any] | None) -> dict[str, Any]:
    raw = dicts(as_dict(order).get("return_terms"))
    plain = plain_return_terms(as_dict(order)) or {"returnable": False, "within_days": None}
    return {"returnable": plain.get("returnable"), "within_days": plain.get("within_days"),
            "managed_by": plain.get("managed_by"), "raw": raw}


def payment_view(order: dict[str, Any] | None) -> dict[str, Any] | None:
    payments = dicts(as_dict(order).get("payments"))
    if not payments:
        return None
    payment = payments[0]
    params = as_dict(payment.get("params"))
    code = payment.get("type")
    status = payment.get("status")
    return {
        "type": PAYMENT_WORDS.get(code, code) if isinstance(code, str) else None,
        "status": {"PAID": "paid", "NOT-PAID": "not_paid"}.get(status, status) if isinstance(status, str) else None,
        "amount": ({"currency": params.get("currency"), "value": params.get("amount")}
                   if params.get("amount") is not None else None),
        "url": payment.get("url"),
        "reference": params.get("transaction_id"),
    }


def fulfillment_view(order: dict[str, Any] | None) -> dict[str, Any] | None:
    fulfillments = dicts(as_dict(order).get("fulfillments"))
    if not fulfillments:
        return None
    first = fulfillments[0]
    out: dict[str, Any] = {"type": FULFILLMENT_WORDS.get(str(first.get("type") or "").lower()),
                           "id": first.get("id"), "pickup": None, "delivery": None}
    for stop in dicts(first.get("stops")):
        location = as_dict(stop.get("location"))
        kind = str(stop.get("type") or "").lower()
        if kind == "start" and location and out["type"] == "pickup":
            out["pickup"] = _location(location)
        elif kind == "end" and location:
            out["delivery"] = {"address": location.get("address"), "gps": location.get("gps")}
    return out


# ------------------------------------------------------------------------------ the cart's state


@dataclass
class CartState:
    """What was sent for this cart and what came back, read in one go."""

    tx: BapTransaction
    provider: dict[str, Any] | None
    requests: list[BapRequest] = field(default_factory=list)  # select/init/confirm, oldest first
    answers: dict[int, BapCallback] = field(default_factory=dict)  # request id → accepted callback
    latest_outcome: Outcome | None = None

    @property
    def latest(self) -> BapRequest | None:
        return self.requests[-1] if self.requests else None

    def _since_items(self) -> list[BapRequest]:
        """The requests since the items last changed (the newest select and what followed)."""
        start = max((i for i, r in enumerate(self.requests) if r.action == "select"), default=0)
        return self.requests[start:]

    def good_answer(self, *actions: str) -> tuple[BapRequest, dict[str, Any]] | None:
        """The newest successful answer (an order, no error) to one of `actions` since the items changed."""
        for request in reversed(self._since_items()):
            callback = self.answers.get(request.id or 0)
            if request.action in actions and callback is not None and callback.error is None \
                    and isinstance(as_dict(callback.message).get("order"), dict):
                return request, callback.message["order"]  # type: ignore[index]
        return None

    def checked_out(self) -> tuple[BapRequest, dict[str, Any]] | None:
        """The on_init order to confirm: the newest init's, if it succeeded and nothing changed since."""
        inits = [r for r in self._since_items() if r.action == "init"]
        if not inits:
            return None
        found = self.good_answer("init")
        return found if found is not None and found[0] is inits[-1] else None

    @property
    def status(self) -> str:
        if self.tx.order_id or self.tx.confirmed_at:
            return "ordered"
        latest, outcome = self.latest, self.latest_outcome
        if latest is None or outcome is None:
            return "quoting"
        pending = outcome.status == 202
        ok = outcome.status == 200
        if latest.action == "select":
            return "quoting" if pending else "quoted" if ok else "error"
        if latest.action == "init":
            return "checking_out" if pending else "checked_out" if ok else self._fallback()
        if latest.action == "confirm":
            return "ordering" if pending else "ordered" if ok else self._fallback()
        return "ordered"

    def _fallback(self) -> str:
        """After a failed init or confirm, the cart is back where it was before it."""
        if self.checked_out() is not None:
            return "checked_out"
        return "quoted" if self.good_answer("select") is not None else "error"

    @property
    def error(self) -> dict[str, Any] | None:
        """The newest request's failure (the BPP's error, a NACK, a timeout), raw as the BPP said it."""
        outcome = self.latest_outcome
        if outcome is None or outcome.status in (200, 202):
            return None
        return as_dict(outcome.body.get("error")) or None


async def load(svc: BapService, session: AsyncSession, tx: BapTransaction) -> CartState:
    provider = await catalogue_provider(session, tx.search_id or "", tx.bpp_id or "", tx.provider_id or "")
    requests = list((await session.execute(
        select(BapRequest).where(BapRequest.transaction_id == tx.id, BapRequest.action.in_(CART_ACTIONS))
        .order_by(BapRequest.id)
    )).scalars())
    latest_outcome = await svc.outcome(requests[-1], wait_ms=0) if requests else None
    callbacks = (await session.execute(
        select(BapCallback).where(BapCallback.transaction_id == tx.id,
                                  BapCallback.status == CallbackStatus.ACCEPTED.value,
                                  BapCallback.request_id.is_not(None)).order_by(BapCallback.id)
    )).scalars()
    answers: dict[int, BapCallback] = {}
    for callback in callbacks:
        answers.setdefault(callback.request_id or 0, callback)  # the first answer counts, as in BapService.outcome
    if latest_outcome is not None and latest_outcome.status != 202 and (requests[-1].id or 0) not in answers:
        # The outcome was read in a newer snapshot than `session`'s (SQLite keeps a read
        # transaction's snapshot): fetch the answer it saw, so status and quote always agree.
        async with svc.node.sessions() as fresh:
            seen = (await fresh.execute(
                select(BapCallback).where(BapCallback.request_id == requests[-1].id,
                                          BapCallback.status == CallbackStatus.ACCEPTED.value)
                .order_by(BapCallback.id).limit(1))).scalar_one_or_none()
        if seen is not None:
            answers[requests[-1].id or 0] = seen
    return CartState(tx=tx, provider=provider, requests=requests, answers=answers, latest_outcome=latest_outcome)


def _items(state: CartState, order: dict[str, Any] | None, quote: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The cart's lines: the requested quantities, with the BPP's names and prices (its answer,
    else the catalogue's), and line totals once the BPP quoted them."""
    # Only string ids: a BPP's malformed answer must not break the cart (an unhashable id would).
    stated = {item["id"]: item for item in dicts(as_dict(order).get("items")) if isinstance(item.get("id"), str)}
    catalogue = as_dict(as_dict(state.provider).get("items"))
    totals = {line["item_id"]: line["price"] for line in (quote or {}).get("breakup", [])
              if line["kind"] == "item" and isinstance(line["item_id"], str)}
    out = []
    for requested in state.tx.items or []:
        item_id = requested.get("id")
        source = stated.get(item_id) or catalogue.get(item_id) or {}
        out.append({
            "id": item_id,
            "name": descriptor(source).get("name"),
            "quantity": requested.get("quantity"),
            "unit_price": _price(source.get("price")),
            "line_total": totals.get(item_id),
        })
    return out


def cart_view(state: CartState) -> dict[str, Any]:
    """The API's cart JSON (`GET /carts/{id}`)."""
    tx = state.tx
    status = state.status
    if status == "ordered" and tx.order:
        order: dict[str, Any] | None = tx.order
    elif status in ("checked_out", "ordering", "ordered"):
        found = state.checked_out() or state.good_answer("init", "select")
        order = found[1] if found else None
    elif status in ("quoted", "checking_out"):
        found = state.good_answer("select")
        order = found[1] if found else None
    else:
        order = None  # quoting, or the newest select failed: there is no valid quote
    terms_source = order or (state.good_answer("select") or (None, None))[1]
    quote = quote_view(order)
    provider = as_dict(state.provider)
    stated_provider = as_dict(as_dict(order).get("provider"))
    latest = state.latest
    view: dict[str, Any] = {
        "id": tx.id,
        "search_id": tx.search_id,
        "bpp_id": tx.bpp_id,
        "provider": {
            "id": tx.provider_id,
            "name": descriptor(stated_provider).get("name") or descriptor(provider).get("name"),
            "locations": [_location(location) for location in dicts(provider.get("locations"))],
        },
        "status": status,
        "items": _items(state, order, quote),
        "quote": quote,
        "fulfillment_options": fulfillment_options(state.provider, terms_source),
        "payment_options": payment_options(state.provider, terms_source),
        "cancellation_terms": cancellation_terms(terms_source),
        "return_terms": return_terms(terms_source),
        "checkout": None,
        "order_id": tx.order_id,
        "error": state.error,
        "pending": ({"action": latest.action, "message_id": latest.message_id, "expires_at": iso(latest.expires_at)}
                    if latest is not None and state.latest_outcome is not None
                    and state.latest_outcome.status == 202 else None),
        "lang": tx.lang,
        "created_at": iso(tx.created_at),
        "updated_at": iso(tx.updated_at),
    }
    checked = state.checked_out()
    if checked is not None and status != "quoting":
        view["checkout"] = checkout_view(tx, checked[1])
    return view


def checkout_view(tx: BapTransaction, order: dict[str, Any]) -> dict[str, Any]:
    """What the citizen will pay and how, exactly as the BPP stated it in on_init."""
    return {
        "cart_id": tx.id,
        "quote": quote_view(order),
        "payment": payment_view(order),
        "fulfillment": fulfillment_view(order),
        "cancellation_terms": cancellation_terms(order),
        "return_terms": return_terms(order),
        "billing": tx.billing,  # the citizen's own details, shown only to their session
    }


# ------------------------------------------------------------------------------ changes


def merge_items(current: list[dict[str, Any]], changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply `changes` (id, quantity; 0 removes) to the cart's lines, keeping their order."""
    wanted = {change["id"]: change["quantity"] for change in changes}
    out = []
    for item in current:
        quantity = wanted.pop(item["id"], item["quantity"])
        if quantity > 0:
            out.append({"id": item["id"], "quantity": quantity})
    out.extend({"id": item_id, "quantity": quantity} for item_id, quantity in wanted.items() if quantity > 0)
    return out


def check_items(provider: dict[str, Any] | None, provider_id: str, items: list[dict[str, Any]]) -> None:
    """Every item must be an offer of that provider in that search."""
    if provider is None:
        raise ApiError(422, "unknown_provider",
                       f"provider {provider_id!r} is not among this BPP's answers to the search; "
                       "use an offer's provider.id", provider_id=provider_id)
    unknown = [item["id"] for item in items if item["id"] not in as_dict(provider.get("items"))]
    if unknown:
        raise ApiError(422, "unknown_item",
                       f"item(s) {', '.join(unknown)} are not offers of provider {provider_id!r} in this search",
                       items=unknown)


def now() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "CartState", "PAYMENT_CODES", "FULFILLMENT_CODES", "cart_view", "catalogue_provider", "check_items",
    "checkout_view", "decimal", "fulfillment_options", "load", "merge_items", "payment_options", "quote_view",
]
