"""Flattening on_search catalogs into the citizen app's offer list, and shaping BPP answers.

Names and descriptions are passed on as the BPP sent them (in the language it chose).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from bap.wire import as_dict, descriptor, dicts


def _list(obj: Any, key: str) -> list[dict[str, Any]]:
    return dicts(as_dict(obj).get(key))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _provider_city(provider: dict[str, Any]) -> tuple[str | None, str | None]:
    """The (code, name) of the provider's first located city, e.g. ("insee:97222", "Le Robert")."""
    for location in _list(provider, "locations"):
        city = location.get("city")
        if isinstance(city, dict) and (city.get("code") or city.get("name")):
            return city.get("code") or city.get("name"), city.get("name")
    return None, None


# The network's Beckn codes (specs/network-policy.md) as the API's words, the same the app sends
# back at checkout; a code this BAP does not know is passed on as the BPP wrote it.
FULFILLMENT_WORDS = {"Self-Pickup": "pickup", "Delivery": "delivery"}
FULFILLMENT_CODES = {word: code for code, word in FULFILLMENT_WORDS.items()}
PAYMENT_WORDS = {"ON-FULFILLMENT": "on_fulfillment", "PRE-ORDER": "prepay"}


def flat_tags(obj: Any) -> list[dict[str, Any]]:
    """Beckn TagGroups flattened to one entry per tag: {group, group_name, code, name, value}."""
    out = []
    for group in _list(obj, "tags"):
        head = descriptor(group)
        for tag in _list(group, "list"):
            text = descriptor(tag)
            out.append({"group": _text(head.get("code")), "group_name": _text(head.get("name")),
                        "code": _text(text.get("code")), "name": _text(text.get("name")),
                        "value": tag.get("value") if isinstance(tag.get("value"), str) else None})
    return out


def _location(location: dict[str, Any]) -> dict[str, Any]:
    city = location.get("city") if isinstance(location.get("city"), dict) else {}
    return {"id": _text(location.get("id")), "name": _text(descriptor(location).get("name")),
            "address": _text(location.get("address")),
            "city": _text(city.get("code")) or _text(city.get("name")), "city_name": _text(city.get("name")),
            "gps": _text(location.get("gps"))}


def _delivery_terms(fulfillments: list[dict[str, Any]]) -> dict[str, str] | None:
    """The `lakou:delivery` terms (radius_km, fee, free_above) a Lakou BPP puts on its Delivery."""
    for fulfillment in fulfillments:
        for group in _list(fulfillment, "tags"):
            if descriptor(group).get("code") == "lakou:delivery":
                return {descriptor(t).get("code"): t.get("value") for t in _list(group, "list")
                        if isinstance(descriptor(t).get("code"), str) and isinstance(t.get("value"), str)}
    return None


def _provider_view(provider: dict[str, Any]) -> dict[str, Any]:
    city_code, city_name = _provider_city(provider)
    time = provider.get("time") if isinstance(provider.get("time"), dict) else {}
    return {
        "id": provider.get("id"),
        "name": descriptor(provider).get("name"),
        "city": city_code,
        "city_name": city_name,
        "locations": [_location(location) for location in _list(provider, "locations")],
        "opening_hours": _text(time.get("label")),
        "delivery": _delivery_terms(_list(provider, "fulfillments")),
        "tags": flat_tags(provider),
    }


def _words(kinds: list[Any], words: dict[str, str]) -> list[str]:
    out: list[str] = []
    for kind in kinds:
        if isinstance(kind, str) and words.get(kind, kind) not in out:
            out.append(words.get(kind, kind))
    return out


def _offered(item: dict[str, Any], terms: list[dict[str, Any]], ids_key: str, words: dict[str, str]) -> list[str]:
    """The types of the provider's fulfillments/payments the item names (all of them if it names none)."""
    ids = [i for i in item.get(ids_key) or [] if isinstance(i, str)]
    chosen = [t for t in terms if t.get("id") in ids] if ids else terms
    return _words([t.get("type") for t in chosen], words)


def _count(value: Any) -> int | None:
    count = value.get("count") if isinstance(value, dict) else None
    return count if type(count) is int else None


def _item_view(item: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    text = descriptor(item)
    price = item.get("price") if isinstance(item.get("price"), dict) else {}
    quantity = item.get("quantity") if isinstance(item.get("quantity"), dict) else {}
    unitized = quantity.get("unitized") if isinstance(quantity.get("unitized"), dict) else {}
    measure = unitized.get("measure") if isinstance(unitized.get("measure"), dict) else {}
    category_ids = [c for c in item.get("category_ids") or [] if isinstance(c, str)]
    names = {c.get("id"): descriptor(c).get("name") for c in _list(provider, "categories")}
    return {
        "id": item.get("id"),
        "name": text.get("name"),
        "description": text.get("short_desc") or text.get("long_desc"),
        "price": {"currency": price.get("currency"), "value": price.get("value")},
        "category_ids": category_ids,
        "categories": [{"id": c, "name": _text(names.get(c))} for c in category_ids],
        "images": [i.get("url") for i in _list(text, "images") if i.get("url")],
        "available": _count(quantity.get("available")),
        "unit": _text(measure.get("unit")),
        "unit_value": _text(measure.get("value")),
        "tags": flat_tags(item),
        "fulfillment_types": _offered(item, _list(provider, "fulfillments"), "fulfillment_ids", FULFILLMENT_WORDS),
        "payment_types": _offered(item, _list(provider, "payments"), "payment_ids", PAYMENT_WORDS),
    }


def flatten_catalog(bpp_id: str, bpp_uri: str | None, message: dict[str, Any] | None, *,
                    merchants: Any = None) -> list[dict[str, Any]]:
    """One offer per item of every provider in an on_search `message.catalog`, in the BPP's order.
    `merchants` (bap.merchant_verification.MerchantVerifier) adds `provider.verified` (true, false,
    or null: not checked yet; it schedules the check) and `verified_siret`/`verified_name` when true."""
    catalog = (message or {}).get("catalog")
    offers: list[dict[str, Any]] = []
    for provider in _list(catalog, "providers"):
        provider_out = _provider_view(provider)
        provider_out.update(merchants.view(bpp_id, provider) if merchants is not None else {"verified": None})
        for item in _list(provider, "items"):
            offers.append({"bpp_id": bpp_id, "bpp_uri": bpp_uri, "provider": provider_out,
                           "item": _item_view(item, provider), "distance_km": None})
    return offers


# ------------------------------------------------------------------ a search's result list

OfferKey = tuple[Any, Any, Any]


def offer_key(offer: dict[str, Any]) -> OfferKey:
    """What makes an offer one: the BPP, its provider and the item."""
    return offer["bpp_id"], offer["provider"].get("id"), offer["item"].get("id")


def deduplicated(offers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One offer per key, in the order first received, with the content of the latest answer
    (a BPP answering in several parts, or twice, updates its offers in place)."""
    latest: dict[OfferKey, dict[str, Any]] = {}
    for offer in offers:
        latest[offer_key(offer)] = offer  # a dict keeps a key's first position
    return list(latest.values())


EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG), as bpp.geo: the BAP must not import the BPP


def parse_gps(value: Any) -> tuple[float, float] | None:
    """"14.6097, -60.9967" -> (14.6097, -60.9967); None when it is not a usable point."""
    try:
        latitude, longitude = (float(part) for part in str(value).split(","))
    except ValueError:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return latitude, longitude


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle (haversine) distance between two (latitude, longitude) points, in km."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def with_distance(offers: list[dict[str, Any]], center: tuple[float, float] | None) -> list[dict[str, Any]]:
    """Each offer with `distance_km` from `center` to the nearest of its provider's locations
    (None when no location has a usable gps, or when the search had no centre)."""
    out = []
    for offer in offers:
        points = [p for p in (parse_gps(loc.get("gps")) for loc in offer["provider"].get("locations") or []) if p]
        nearest = min((distance_km(center, p) for p in points), default=None) if center else None
        out.append({**offer, "distance_km": None if nearest is None else round(nearest, 3)})
    return out


def _price(offer: dict[str, Any]) -> Decimal | None:
    try:
        value = Decimal(str(offer["item"]["price"].get("value")))
    except (InvalidOperation, AttributeError, TypeError):
        return None
    return value if value.is_finite() else None


SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "price": _price,
    "distance": lambda offer: offer.get("distance_km"),
}


def sorted_offers(offers: list[dict[str, Any]], by: str, descending: bool = False) -> list[dict[str, Any]]:
    """`relevance` keeps the BPPs' order as received (reversed when descending); `price` compares
    decimals and `distance` kilometres, equal ones in received order, offers without one last."""
    if by == "relevance":
        return list(reversed(offers)) if descending else list(offers)
    key = SORT_KEYS[by]
    known = [(key(offer), offer) for offer in offers if key(offer) is not None]
    known.sort(key=lambda pair: pair[0], reverse=descending)  # stable, also when reversed
    return [offer for _, offer in known] + [offer for offer in offers if key(offer) is None]


def page_of(offers: list[dict[str, Any]], page: int, page_size: int) -> list[dict[str, Any]]:
    start = (page - 1) * page_size
    return offers[start:start + page_size]


def changed_offers(seen: dict[OfferKey, dict[str, Any]], offers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The offers that are new or differ from what `seen` holds; `seen` is updated with them."""
    fresh = [offer for offer in deduplicated(offers) if seen.get(offer_key(offer)) != offer]
    seen.update((offer_key(offer), offer) for offer in fresh)
    return fresh


def quote_of(order: dict[str, Any] | None) -> dict[str, Any] | None:
    quote = (order or {}).get("quote")
    if not isinstance(quote, dict):
        return None
    price = quote.get("price") if isinstance(quote.get("price"), dict) else {}
    return {
        "id": quote.get("id"),
        "total": {"currency": price.get("currency"), "value": price.get("value")},
        "breakup": [
            {
                "item_id": (b.get("item") or {}).get("id") if isinstance(b.get("item"), dict) else None,
                "title": b.get("title"),
                "price": b.get("price"),
            }
            for b in _list(quote, "breakup")
        ],
        "ttl": quote.get("ttl"),
    }


def order_state(order: dict[str, Any] | None) -> str | None:
    """The most specific state the BPP gave: its fulfillment's state code, else the order status."""
    for fulfillment in _list(order, "fulfillments"):
        state = fulfillment.get("state")
        code = descriptor(state).get("code") if isinstance(state, dict) else None
        if code:
            return code
    status = (order or {}).get("status")
    return status if isinstance(status, str) else None


def payments_of(order: dict[str, Any] | None) -> list[dict[str, Any]]:
    return _list(order, "payments")


def error_of(error: Any) -> dict[str, Any] | None:
    if not isinstance(error, dict):
        return None
    return {"code": error.get("code"), "message": error.get("message"),
            "path": error.get("paths") or error.get("path")}
