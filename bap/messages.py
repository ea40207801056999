"""The Beckn requests the BAP sends, built as wire dicts from the citizen app's choices.

Only what a request needs goes in: a broadcast search carries the query and the place, never
anything about the citizen; billing and contact details go only in init, to the chosen BPP.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from beckn.node import wire_timestamp

VERSION = "1.1.0"
# Lower-case codes such as "fruits" or "lakou:epicerie" are category ids; anything else is a name.
_CATEGORY_ID = re.compile(r"[a-z0-9][a-z0-9_:.-]*")


def new_id() -> str:
    return str(uuid.uuid4())


def context(
    *, action: str, domain: str, country: str, city: str, bap_id: str, bap_uri: str,
    transaction_id: str, message_id: str, ttl_seconds: int, now: datetime | None = None,
    bpp_id: str | None = None, bpp_uri: str | None = None,
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "domain": domain,
        "location": {"country": {"code": country}, "city": {"code": city}},
        "action": action,
        "version": VERSION,
        "bap_id": bap_id,
        "bap_uri": bap_uri,
        "transaction_id": transaction_id,
        "message_id": message_id,
        "timestamp": wire_timestamp(now or datetime.now(UTC)),
        "ttl": f"PT{ttl_seconds}S",
    }
    if bpp_id is not None:
        ctx["bpp_id"] = bpp_id
        ctx["bpp_uri"] = bpp_uri
    return ctx


def expires_at(sent_at: datetime, ttl_seconds: int) -> datetime:
    return sent_at + timedelta(seconds=ttl_seconds)


def search_message(
    query: str | None, lang: str, category: str | None, *,
    near: tuple[str, str] | None = None, fulfillment: str | None = None,
) -> dict[str, Any]:
    """The intent of a broadcast search: what (query, category), where (`near`: the centre "lat, lon"
    and the radius in km of a circle) and how (`fulfillment`: "pickup" or "delivery"), and the
    answer's language. Nothing about the citizen: their position is only the circle's centre."""
    intent: dict[str, Any] = {
        # BECKN-009 reserves `lang`: BPPs answer in that language when they can.
        "tags": [{"descriptor": {"code": "search"}, "list": [{"descriptor": {"code": "lang"}, "value": lang}]}],
    }
    if query:
        intent["item"] = {"descriptor": {"name": query}}
    if category:
        # A code-like value is a category id; free text is a category name.
        intent["category"] = {"id": category} if _looks_like_id(category) else {"descriptor": {"name": category}}
    if near is not None or fulfillment is not None:
        wanted: dict[str, Any] = {}
        if fulfillment is not None:
            # The Lakou network's fulfillment type codes (specs/network-policy.md).
            wanted["type"] = "Delivery" if fulfillment == "delivery" else "Self-Pickup"
        if near is not None:
            gps, radius_km = near
            wanted["stops"] = [{"location": {"circle": {"gps": gps, "radius": {"value": radius_km, "unit": "km"}}}}]
        intent["fulfillment"] = wanted
    return {"intent": intent}


def _looks_like_id(value: str) -> bool:
    return _CATEGORY_ID.fullmatch(value) is not None


def order_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": item["id"], "quantity": {"selected": {"count": item["quantity"]}}} for item in items]


def lang_tags(lang: str) -> list[dict[str, Any]]:
    """The `search` tag group with `lang` (specs/network-policy.md): sent in `order.tags` too, so
    the BPP names items and quote lines in the citizen's language at every step."""
    return [{"descriptor": {"code": "search"}, "list": [{"descriptor": {"code": "lang"}, "value": lang}]}]


def select_message(provider_id: str, items: list[dict[str, Any]], lang: str | None = None) -> dict[str, Any]:
    order: dict[str, Any] = {"provider": {"id": provider_id}, "items": order_items(items)}
    if lang:
        order["tags"] = lang_tags(lang)
    return {"order": order}


def init_message(
    provider_id: str, items: list[dict[str, Any]], billing: dict[str, Any], fulfillment: dict[str, Any],
    selected_order: dict[str, Any] | None, *, payment_type: str | None = None, lang: str | None = None,
    person_id: str | None = None, offer_id: str | None = None, resident_presentation: str | None = None,
) -> dict[str, Any]:
    """`fulfillment`: {type: pickup|delivery, location_id? (the pickup point), address?, gps?, id?};
    `payment_type`: a Beckn Payment.type (ON-FULFILLMENT, PRE-ORDER), else the BPP's default;
    `person_id`: the logged-in citizen's pairwise DID for this BPP (bap.auth.customer_did), sent as
    Beckn 1.1 `Person.id` in `fulfillment.customer.person.id`; `offer_id`: an offer of the provider
    (`order.offers`); `resident_presentation`: the SD-JWT VC presentation the citizen's wallet made
    for this BPP and transaction, sent in `customer.person.creds[0]` (see `with_presentation`)."""
    beckn_billing = {k: billing[k] for k in ("name", "phone", "email", "address") if billing.get(k)}
    # The Lakou network's fulfillment type codes (specs/network-policy.md), as in ONDC retail.
    kind = "Delivery" if fulfillment["type"] == "delivery" else "Self-Pickup"
    beckn_fulfillment: dict[str, Any] = {
        "type": kind,
        "customer": {
            "person": {"name": billing["name"], **({"id": person_id} if person_id else {})},
            "contact": {k: billing[k] for k in ("phone", "email") if billing.get(k)},
        },
    }
    # Keep the fulfillment id the BPP offered in on_select, so it knows which option was taken.
    for offered in (selected_order or {}).get("fulfillments") or []:
        if isinstance(offered, dict) and offered.get("id") and str(offered.get("type", "")).lower() == kind.lower():
            beckn_fulfillment["id"] = offered["id"]
            break
    if fulfillment.get("id"):
        beckn_fulfillment["id"] = fulfillment["id"]
    if kind == "Self-Pickup" and fulfillment.get("location_id"):
        # The pickup point: the start stop's location id, as the BPP's catalogue lists its stops.
        beckn_fulfillment["stops"] = [{"type": "start", "location": {"id": fulfillment["location_id"]}}]
    elif fulfillment.get("address"):
        end: dict[str, Any] = {"address": fulfillment["address"]}
        if fulfillment.get("gps"):
            end["gps"] = fulfillment["gps"]
        beckn_fulfillment["stops"] = [{"type": "end", "location": end}]
    order: dict[str, Any] = {
        "provider": {"id": provider_id},
        "items": order_items(items),
        "billing": beckn_billing,
        "fulfillments": [beckn_fulfillment],
    }
    if payment_type:
        # Lakou merchants always collect the money themselves (specs/network-policy.md).
        order["payments"] = [{"type": payment_type, "collected_by": "BPP"}]
    if lang:
        order["tags"] = lang_tags(lang)
    if offer_id:
        order["offers"] = [{"id": offer_id}]
    if resident_presentation:
        order = with_presentation(order, resident_presentation)
    return {"order": order}


def with_presentation(order: dict[str, Any], presentation: str) -> dict[str, Any]:
    """A copy of `order` whose first fulfillment's customer carries the credential presentation as a
    Beckn Credential (`person.creds[0]`, a `data:application/dc+sd-jwt,` URL): bpp.offers checks it."""
    fulfillments = list(order.get("fulfillments") or [{}])
    first = fulfillments[0] if isinstance(fulfillments[0], dict) else {}
    customer = first.get("customer") if isinstance(first.get("customer"), dict) else {}
    person = customer.get("person") if isinstance(customer.get("person"), dict) else {}
    cred = {"id": f"urn:uuid:{uuid.uuid4()}", "type": "VerifiableCredential",
            "url": f"data:application/dc+sd-jwt,{presentation}"}
    fulfillments[0] = {**first, "customer": {**customer, "person": {**person, "creds": [cred]}}}
    return {**order, "fulfillments": fulfillments}


def confirm_message(initialised_order: dict[str, Any], lang: str | None = None, *,
                    person_id: str | None = None, resident_presentation: str | None = None) -> dict[str, Any]:
    """confirm carries the order exactly as the BPP last stated it in on_init (terms accepted);
    `lang` adds the language tag when the BPP's order has none, so the order keeps the cart's language;
    `person_id` (the citizen's pairwise DID for this BPP) fills `customer.person.id` of fulfillments
    whose customer the BPP echoed without it."""
    if person_id:
        initialised_order = with_person_id(initialised_order, person_id)
    if resident_presentation:
        initialised_order = with_presentation(initialised_order, resident_presentation)
    if lang and not initialised_order.get("tags"):
        return {"order": {**initialised_order, "tags": lang_tags(lang)}}
    return {"order": initialised_order}


def with_person_id(order: dict[str, Any], person_id: str) -> dict[str, Any]:
    """A copy of `order` whose fulfillments' customers carry `person.id` (an id already there is kept)."""
    fulfillments = []
    for fulfillment in order.get("fulfillments") or []:
        if isinstance(fulfillment, dict) and isinstance(fulfillment.get("customer"), dict):
            customer = fulfillment["customer"]
            person = customer.get("person") if isinstance(customer.get("person"), dict) else {}
            if not person.get("id"):
                fulfillment = {**fulfillment, "customer": {**customer, "person": {**person, "id": person_id}}}
        fulfillments.append(fulfillment)
    return {**order, "fulfillments": fulfillments} if order.get("fulfillments") else order


def status_message(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id}


# ------------------------------------------------------------------ after the order (B3: bap.api.orders)

# The API's rating categories → Beckn's `rating_category` values (those Lakou BPPs rate).
RATING_CATEGORIES = {"order": "Order", "item": "Item", "provider": "Provider", "fulfillment": "Fulfillment"}


def cancel_message(order_id: str, reason_id: str, comment: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"order_id": order_id, "cancellation_reason_id": reason_id}
    if comment:
        message["descriptor"] = {"short_desc": comment}
    return message


def track_message(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id}


def support_message(order_id: str) -> dict[str, Any]:
    return {"support": {"ref_id": order_id}}


def rating_message(ratings: list[dict[str, Any]]) -> dict[str, Any]:
    """`ratings`: [{category, id, value}]; Beckn rating values are strings ("1".."5")."""
    return {"ratings": [{"rating_category": RATING_CATEGORIES[r["category"]], "id": r["id"], "value": str(r["value"])}
                        for r in ratings]}


def update_message(
    order_id: str, *, billing: dict[str, Any] | None, delivery: dict[str, Any] | None,
    fulfillment_id: str | None,
) -> dict[str, Any]:
    """An `update` naming only what changes: the billing (the fields given replace the BPP's) and/or
    a Delivery's drop-off (its `end` stop). Items are never sent: they cannot change."""
    targets: list[str] = []
    order: dict[str, Any] = {"id": order_id}
    if billing:
        targets.append("billing")
        order["billing"] = {k: billing[k] for k in ("name", "phone", "email", "address") if billing.get(k)}
    if delivery:
        targets.append("fulfillment")
        location = {k: delivery[k] for k in ("address", "gps") if delivery.get(k)}
        fulfillment: dict[str, Any] = {"stops": [{"type": "end", "location": location}]}
        if fulfillment_id:
            fulfillment["id"] = fulfillment_id
        order["fulfillments"] = [fulfillment]
    return {"update_target": ",".join(targets), "order": order}
