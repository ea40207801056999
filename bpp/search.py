"""search -> on_search: which items of the catalogue answer an intent, in which language.

What an intent can ask (all optional, combined with AND):
- free text in `intent.descriptor.name`: each word must start a word of the item's texts (name,
  description, category names) or of its merchant's name, in any of the four languages, accents
  and case ignored;
- `intent.item.descriptor.name` (item texts only), `intent.item.id`;
- `intent.category.id`, `intent.category.descriptor.name`;
- `intent.provider.id`, `intent.provider.descriptor.name`;
- the commune: the city of a stop in `intent.fulfillment`, else `context.location.city.code`.
  Only a commune code (`insee:97xxx`) narrows the search; "*" or any wider code means the whole
  network, since the search was already routed by the gateway;
- `intent.fulfillment.type` ("Self-Pickup", "Delivery"): merchants offering that fulfilment;
- a GPS circle, `intent.fulfillment.stops[].location.circle` (`{"gps": "lat, lon", "radius":
  {"value": "5", "unit": "km"}}`): merchants whose shop lies within it (great-circle distance).

A malformed circle or an unknown fulfilment type is answered with an `on_search` error (30000 or
30008, with the path of the culprit), not an empty catalog, so the buyer app can tell the shopper.

A large answer is split across several `on_search` callbacks (`split_answer`), each a complete
catalog of at most `bpp_search_page_items` items; they all carry the search's message_id, as every
BPP's answer to one search does, and the BAP shows their union.

The answer's language comes from the intent tag group `search` with a `lang` tag (fr, en, es, de;
French by default). No match is still an answer: an `on_search` whose catalog lists no provider.
BECKN-005 has no "nothing found" code (40004 is "Payment not supported"), and an ACKed search
must be answered, so an empty catalog is the spec-shaped way to say it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.errors import BecknError, ErrorCode, error_callback_payload
from beckn.models import Context, Intent, TagGroup
from bpp.catalogue import FULFILLMENT_TYPES, item_json, provider_json
from bpp.geo import distance_km, parse_gps, radius_km
from bpp.tables import BppItem, BppProvider
from bpp.text import DEFAULT_LANGUAGE, indexed_text, matches, pick_language, search_terms

_COMMUNE = re.compile(r"^insee:\d{5}$")

CATALOG_NAMES = {
    "fr": "Marché Lakou", "en": "Lakou market", "es": "Mercado Lakou", "de": "Lakou-Markt",
}


@dataclass
class Criteria:
    lang: str = DEFAULT_LANGUAGE
    free_terms: list[str] = field(default_factory=list)
    item_terms: list[str] = field(default_factory=list)
    item_id: str | None = None
    category_id: str | None = None
    category_terms: list[str] = field(default_factory=list)
    provider_id: str | None = None
    provider_terms: list[str] = field(default_factory=list)
    city_code: str | None = None
    fulfillment_type: str | None = None
    center: tuple[float, float] | None = None  # (latitude, longitude) of the GPS circle
    radius_km: float | None = None


class SearchProblem(Exception):
    """An intent the BPP cannot search with; answered as an on_search error."""

    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.error = BecknError(code, message, path)


def tag_value(groups: Sequence[TagGroup] | None, code: str, *, group_code: str | None = None) -> str | None:
    """The value of the tag `code`, preferring the group `group_code`, else in any group."""
    found: str | None = None
    for group in groups or ():
        in_group = group.descriptor is not None and group.descriptor.code == group_code
        for tag in group.list_ or ():
            if tag.descriptor is not None and tag.descriptor.code == code and tag.value:
                if in_group:
                    return tag.value
                found = found or tag.value
    return found


def criteria(context: Context, intent: Intent | None) -> Criteria:
    intent = intent or Intent()
    out = Criteria(lang=pick_language(tag_value(intent.tags, "lang", group_code="search")))
    if intent.descriptor and intent.descriptor.name:
        out.free_terms = search_terms(intent.descriptor.name)
    if intent.item:
        out.item_id = intent.item.id
        if intent.item.descriptor and intent.item.descriptor.name:
            out.item_terms = search_terms(intent.item.descriptor.name)
    if intent.category:
        out.category_id = intent.category.id
        if intent.category.descriptor and intent.category.descriptor.name:
            out.category_terms = search_terms(intent.category.descriptor.name)
    if intent.provider:
        out.provider_id = intent.provider.id
        if intent.provider.descriptor and intent.provider.descriptor.name:
            out.provider_terms = search_terms(intent.provider.descriptor.name)
    city = _fulfillment_city(intent) or (
        context.location.city.code if context.location and context.location.city else None)
    out.city_code = city if city and _COMMUNE.match(city) else None
    _fulfillment_criteria(intent, out)
    return out


def _fulfillment_criteria(intent: Intent, out: Criteria) -> None:
    fulfillment = intent.fulfillment
    if fulfillment is None:
        return
    if fulfillment.type:
        if fulfillment.type not in FULFILLMENT_TYPES:
            raise SearchProblem(ErrorCode.FULFILLMENT_UNAVAILABLE,
                                f"fulfillment type {fulfillment.type!r} is not offered on this network; "
                                f"use {' or '.join(FULFILLMENT_TYPES)}", "message.intent.fulfillment.type")
        out.fulfillment_type = fulfillment.type
    for index, stop in enumerate(fulfillment.stops or ()):
        circle = stop.location.circle if stop.location else None
        if circle is None:
            continue
        path = f"message.intent.fulfillment.stops[{index}].location.circle"
        if not circle.gps:
            raise SearchProblem(ErrorCode.INVALID_REQUEST, "a search circle needs its centre in gps", f"{path}.gps")
        if circle.radius is None:
            raise SearchProblem(ErrorCode.INVALID_REQUEST, "a search circle needs a radius", f"{path}.radius")
        try:
            out.radius_km = radius_km(circle.radius.value, circle.radius.unit)
        except ValueError as exc:
            raise SearchProblem(ErrorCode.INVALID_REQUEST, str(exc), f"{path}.radius") from None
        out.center = parse_gps(circle.gps)
        return  # one circle: a search is about one place


def _fulfillment_city(intent: Intent) -> str | None:
    fulfillment = intent.fulfillment
    if fulfillment is None:
        return None
    for stop in fulfillment.stops or ():
        if stop.location and stop.location.city and stop.location.city.code:
            return stop.location.city.code
    return None


def _word_start(column: Any, term: str) -> Any:
    # Terms are folded to [0-9a-z] only, so they hold no LIKE wildcard to escape.
    return column.like(f"% {term}%")


async def find(session: AsyncSession, wanted: Criteria) -> list[tuple[BppProvider, list[BppItem]]]:
    """Matching providers with their matching items, in a stable order."""
    query = select(BppItem, BppProvider).join(BppProvider, BppItem.provider_id == BppProvider.id)
    conditions: list[Any] = []
    for term in wanted.free_terms:
        conditions.append(or_(_word_start(BppItem.search_text, term), _word_start(BppProvider.search_text, term)))
    for term in wanted.item_terms:
        conditions.append(_word_start(BppItem.search_text, term))
    for term in wanted.provider_terms:
        conditions.append(_word_start(BppProvider.search_text, term))
    if wanted.item_id:
        conditions.append(BppItem.id == wanted.item_id)
    if wanted.provider_id:
        conditions.append(BppProvider.id == wanted.provider_id)
    if wanted.city_code:
        conditions.append(BppProvider.city_code == wanted.city_code)
    if conditions:
        query = query.where(and_(*conditions))
    rows = (await session.execute(query.order_by(BppProvider.id, BppItem.id))).all()

    grouped: dict[str, tuple[BppProvider, list[BppItem]]] = {}
    for item, provider in rows:
        if not _provider_matches(provider, wanted) or not _category_matches(item, provider, wanted):
            continue
        grouped.setdefault(provider.id, (provider, []))[1].append(item)
    return list(grouped.values())


def _provider_matches(provider: BppProvider, wanted: Criteria) -> bool:
    # Fulfilment types (a JSON list) and the shop's GPS (in the location JSON) are checked here,
    # like categories, to stay portable across SQLite and PostgreSQL.
    if wanted.fulfillment_type and wanted.fulfillment_type not in provider.fulfillment_types:
        return False
    if wanted.center is not None and wanted.radius_km is not None:
        return distance_km(wanted.center, parse_gps(provider.location["gps"])) <= wanted.radius_km
    return True


def _category_matches(item: BppItem, provider: BppProvider, wanted: Criteria) -> bool:
    # Categories live in a JSON list on the provider: filtered here rather than in SQL, which
    # would need backend-specific JSON operators.
    if wanted.category_id and wanted.category_id not in item.category_ids:
        return False
    if wanted.category_terms:
        names = [
            text
            for category in provider.categories if category["id"] in item.category_ids
            for language in category["descriptor"].values()
            for text in [language.get("name")] if text
        ]
        if not matches(wanted.category_terms, indexed_text(names)):
            return False
    return True


def catalog_json(found: list[tuple[BppProvider, list[BppItem]]], lang: str) -> dict[str, Any]:
    providers = []
    for provider, items in found:
        entry = provider_json(provider, lang)
        entry["items"] = [item_json(item, provider, lang) for item in items]
        providers.append(entry)
    return {"descriptor": {"name": CATALOG_NAMES.get(lang, CATALOG_NAMES[DEFAULT_LANGUAGE])}, "providers": providers}


async def on_search_message(session: AsyncSession, context: Context, intent: Intent | None) -> dict[str, Any]:
    """The whole answer's `message` (one catalog); raises SearchProblem for an unusable intent."""
    wanted = criteria(context, intent)
    return {"catalog": catalog_json(await find(session, wanted), wanted.lang)}


async def search_answer(session: AsyncSession, context: Context, intent: Intent | None) -> dict[str, Any]:
    """The on_search body without its context: `{"message": ...}`, or `{"error": ...}`."""
    try:
        return {"message": await on_search_message(session, context, intent)}
    except SearchProblem as problem:
        return {"error": error_callback_payload(problem.error)}


def split_answer(answer: dict[str, Any], page_items: int) -> list[dict[str, Any]]:
    """One on_search answer cut into several of at most `page_items` items each, in order.

    Every page is a complete catalog: its descriptor, and each provider it lists with all of the
    provider's details (locations, fulfillments, payments) next to the page's share of its items,
    so that a page can be shown and ordered from on its own. A provider whose items span pages
    appears in each of them. Errors and answers that fit in one page are left whole.
    """
    catalog = (answer.get("message") or {}).get("catalog")
    if catalog is None or page_items < 1:
        return [answer]
    providers = catalog.get("providers") or []
    if sum(len(p.get("items") or []) for p in providers) <= page_items:
        return [answer]
    pages: list[list[dict[str, Any]]] = [[]]
    room = page_items
    for provider in providers:
        items = provider.get("items") or []
        start = 0
        while start < len(items):
            if room == 0:
                pages.append([])
                room = page_items
            chunk = items[start:start + room]
            pages[-1].append({**provider, "items": chunk})
            start += len(chunk)
            room -= len(chunk)
    return [{"message": {"catalog": {**catalog, "providers": page}}} for page in pages]


__all__ = ["Criteria", "SearchProblem", "catalog_json", "criteria", "find", "on_search_message", "search_answer",
           "split_answer", "tag_value"]
