"""Flattening on_search catalogs into the citizen app's offer list, and shaping BPP answers.

Names and descriptions are passed on as the BPP sent them (in the language it chose).
"""

from __future__ import annotations

from typing import Any


def _descriptor(obj: Any) -> dict[str, Any]:
    value = obj.get("descriptor") if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _list(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _provider_city(provider: dict[str, Any]) -> tuple[str | None, str | None]:
    """The (code, name) of the provider's first located city, e.g. ("insee:97222", "Le Robert")."""
    for location in _list(provider, "locations"):
        city = location.get("city")
        if isinstance(city, dict) and (city.get("code") or city.get("name")):
            return city.get("code") or city.get("name"), city.get("name")
    return None, None


def flatten_catalog(bpp_id: str, bpp_uri: str | None, message: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One offer per item of every provider in an on_search `message.catalog`."""
    catalog = (message or {}).get("catalog")
    offers: list[dict[str, Any]] = []
    for provider in _list(catalog, "providers"):
        city_code, city_name = _provider_city(provider)
        provider_out = {
            "id": provider.get("id"),
            "name": _descriptor(provider).get("name"),
            "city": city_code,
            "city_name": city_name,
        }
        for item in _list(provider, "items"):
            descriptor = _descriptor(item)
            price = item.get("price") if isinstance(item.get("price"), dict) else {}
            images = [i.get("url") for i in _list(descriptor, "images") if i.get("url")]
            offers.append({
                "bpp_id": bpp_id,
                "bpp_uri": bpp_uri,
                "provider": provider_out,
                "item": {
                    "id": item.get("id"),
                    "name": descriptor.get("name"),
                    "description": descriptor.get("short_desc") or descriptor.get("long_desc"),
                    "price": {"currency": price.get("currency"), "value": price.get("value")},
                    "category_ids": [c for c in item.get("category_ids") or [] if isinstance(c, str)],
                    "images": images,
                },
            })
    return offers


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
        code = _descriptor(state).get("code") if isinstance(state, dict) else None
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
