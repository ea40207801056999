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


def search_message(query: str, lang: str, category: str | None) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "item": {"descriptor": {"name": query}},
        # BECKN-009 reserves `lang`: BPPs answer in that language when they can.
        "tags": [{"descriptor": {"code": "search"}, "list": [{"descriptor": {"code": "lang"}, "value": lang}]}],
    }
    if category:
        # A code-like value is a category id; free text is a category name.
        intent["category"] = {"id": category} if _looks_like_id(category) else {"descriptor": {"name": category}}
    return {"intent": intent}


def _looks_like_id(value: str) -> bool:
    return _CATEGORY_ID.fullmatch(value) is not None


def order_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": item["id"], "quantity": {"selected": {"count": item["quantity"]}}} for item in items]


def select_message(provider_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"order": {"provider": {"id": provider_id}, "items": order_items(items)}}


def init_message(
    provider_id: str, items: list[dict[str, Any]], billing: dict[str, Any], fulfillment: dict[str, Any],
    selected_order: dict[str, Any] | None,
) -> dict[str, Any]:
    beckn_billing = {k: billing[k] for k in ("name", "phone", "email", "address") if billing.get(k)}
    # The Lakou network's fulfillment type codes (specs/network-policy.md), as in ONDC retail.
    kind = "Delivery" if fulfillment["type"] == "delivery" else "Self-Pickup"
    beckn_fulfillment: dict[str, Any] = {
        "type": kind,
        "customer": {
            "person": {"name": billing["name"]},
            "contact": {k: billing[k] for k in ("phone", "email") if billing.get(k)},
        },
    }
    # Keep the fulfillment id the BPP offered in on_select, so it knows which option was taken.
    for offered in (selected_order or {}).get("fulfillments") or []:
        if isinstance(offered, dict) and offered.get("id") and str(offered.get("type", "")).lower() == kind.lower():
            beckn_fulfillment["id"] = offered["id"]
            break
    if fulfillment.get("address"):
        beckn_fulfillment["stops"] = [{"type": "end", "location": {"address": fulfillment["address"]}}]
    return {"order": {
        "provider": {"id": provider_id},
        "items": order_items(items),
        "billing": beckn_billing,
        "fulfillments": [beckn_fulfillment],
    }}


def confirm_message(initialised_order: dict[str, Any]) -> dict[str, Any]:
    """confirm carries the order exactly as the BPP last stated it in on_init (terms accepted)."""
    return {"order": initialised_order}


def status_message(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id}
