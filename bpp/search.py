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

How it runs (and scales): the provider-level criteria (provider id and name, commune, fulfilment
type, GPS circle) are resolved first on the providers table alone, in one light query; a merchant
matches a commune or a circle through any of its locations (main shop or `other_locations`).
Then one query on the items, restricted to those providers (`provider_id IN (...)`) and to the
item-level criteria in SQL (words as a search for " word" in the folded `search_text`, category id on
the `category_ids` JSON text), ordered and capped with LIMIT at `bpp_search_max_items` items:
a GPS search lists the nearest merchants first, any other merchant id then item id. The
providers of the answer, and their merchant profiles, are loaded once.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Integer, Text, case, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from beckn.errors import BecknError, ErrorCode, error_callback_payload
from beckn.models import Context, Intent, TagGroup
from bpp.catalogue import FULFILLMENT_TYPES, item_json, load_profiles, provider_json
from bpp.geo import distance_km, parse_gps, radius_km
from bpp.payments import payments_of
from bpp.settings import BppSettings
from bpp.tables import BppItem, BppProvider, BppProviderProfile
from bpp.text import DEFAULT_LANGUAGE, indexed_text, matches, pick_language, search_terms

log = structlog.get_logger(__name__)

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


class _Position(FunctionElement[int]):
    """Where `needle` first occurs in `text`, from 1; 0 when it does not: `_Position(text, needle)`.

    `instr()` on SQLite, `strpos()` on PostgreSQL. A plain substring search, about twice as fast
    on PostgreSQL as the equivalent `LIKE '%needle%'` over a table scan, and as fast on SQLite.
    """

    type = Integer()
    name = "position"
    inherit_cache = True


@compiles(_Position)
def _instr(element: _Position, compiler: Any, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(_Position, "postgresql")
def _strpos(element: _Position, compiler: Any, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


def _word_start(column: Any, term: str) -> Any:
    # search_text is wrapped in spaces with single spaces between words (bpp.text.indexed_text),
    # so " term" occurs exactly where a word starts with the term.
    return _Position(column, f" {term}") > 0


def _json_holds_string(column: Any, value: str) -> Any:
    """The JSON column's text contains the JSON string `value` (quotes included).

    Portable: SQLite stores JSON as text, PostgreSQL's `json` type keeps the text as written, and
    a cast to text gives it back on both. Exact for the values this is used with (category ids
    `^[a-z0-9][a-z0-9-]{0,63}$`, fulfilment types, commune codes): they hold no LIKE wildcard, no
    character JSON escapes, and the surrounding quotes rule out prefixes and suffixes
    ("fruits" does not match "fruits-secs").
    """
    return cast(column, Text).like(f'%"{value}"%')


# The default of the `bpp_search_max_items` setting, for callers without settings (the public
# catalogue listing, the benchmark).
DEFAULT_MAX_ITEMS: int = BppSettings.model_fields["bpp_search_max_items"].default
_ID_CHUNK = 500  # provider ids per IN (...): well below every driver's bound-parameter limit


@dataclass
class _Providers:
    """The outcome of the provider-level criteria: which providers may answer, in which order."""

    ids: list[str] | None  # None: every provider (nothing narrowed the search)
    by_distance: bool = False  # ids are ordered nearest first (GPS search), else by id


def _has_provider_criteria(wanted: Criteria) -> bool:
    return bool(wanted.provider_id or wanted.provider_terms or wanted.city_code or wanted.fulfillment_type
                or wanted.center is not None)


async def _matching_providers(session: AsyncSession, wanted: Criteria) -> _Providers:
    """Resolve provider id and name, commune, fulfilment type and GPS circle on the providers table.

    One light query (ids plus, when needed, the locations); never one row per item. A provider
    matches a commune or a circle through any of its locations (`bpp.catalogue.all_locations`).
    """
    if not _has_provider_criteria(wanted):
        return _Providers(ids=None)
    columns: list[Any] = [BppProvider.id]
    conditions: list[Any] = []
    if wanted.provider_id:
        conditions.append(BppProvider.id == wanted.provider_id)
    for term in wanted.provider_terms:
        conditions.append(_word_start(BppProvider.search_text, term))
    if wanted.fulfillment_type:
        conditions.append(_json_holds_string(BppProvider.fulfillment_types, wanted.fulfillment_type))
    needs_locations = wanted.city_code is not None or wanted.center is not None
    if needs_locations:
        columns += [BppProvider.location, BppProvider.other_locations]
    if wanted.city_code:
        # The main shop's commune is a column; the other locations' only in JSON (prefiltered
        # here, checked exactly below).
        conditions.append(or_(BppProvider.city_code == wanted.city_code,
                              _json_holds_string(BppProvider.other_locations, wanted.city_code)))
    rows = (await session.execute(select(*columns).where(*conditions).order_by(BppProvider.id))).all()

    kept: list[tuple[float, str]] = []
    for row in rows:
        locations = [row.location, *(row.other_locations or ())] if needs_locations else []
        if wanted.city_code and not any(loc["city"]["code"] == wanted.city_code for loc in locations):
            continue
        distance = 0.0
        if wanted.center is not None and wanted.radius_km is not None:
            distance = min(distance_km(wanted.center, parse_gps(loc["gps"])) for loc in locations)
            if distance > wanted.radius_km:
                continue
        kept.append((distance, row.id))
    if wanted.center is not None:
        kept.sort()  # nearest first; ties by id, for a stable answer
        return _Providers(ids=[provider_id for _, provider_id in kept], by_distance=True)
    return _Providers(ids=[provider_id for _, provider_id in kept])


def _item_conditions(wanted: Criteria) -> list[Any]:
    """The item-level criteria as SQL (category names only prefiltered: see `_category_names_match`)."""
    conditions: list[Any] = []
    for term in wanted.free_terms:
        # A free word matches the item's texts or its merchant's name: a subquery on the
        # providers' names, not a join per item row.
        named = select(BppProvider.id).where(_word_start(BppProvider.search_text, term))
        conditions.append(or_(_word_start(BppItem.search_text, term), BppItem.provider_id.in_(named)))
    for term in wanted.item_terms:
        conditions.append(_word_start(BppItem.search_text, term))
    if wanted.item_id:
        conditions.append(BppItem.id == wanted.item_id)
    if wanted.category_id:
        conditions.append(_json_holds_string(BppItem.category_ids, wanted.category_id))
    for term in wanted.category_terms:
        # The item's search_text holds its categories' names in every language, so this keeps
        # every true match (and maybe an item whose own name has the word: checked afterwards).
        conditions.append(_word_start(BppItem.search_text, term))
    return conditions


def _category_names_match(item: BppItem, provider: BppProvider, wanted: Criteria) -> bool:
    """The exact check of `intent.category.descriptor.name`: the words name one of the item's categories."""
    if not wanted.category_terms:
        return True
    names = [
        text
        for category in provider.categories if category["id"] in item.category_ids
        for language in category["descriptor"].values()
        for text in [language.get("name")] if text
    ]
    return matches(wanted.category_terms, indexed_text(names))


async def _load_providers(session: AsyncSession, ids: Sequence[str],
                          into: dict[str, BppProvider]) -> None:
    missing = sorted(set(ids) - into.keys())
    for start in range(0, len(missing), _ID_CHUNK):
        chunk = missing[start:start + _ID_CHUNK]
        rows = (await session.execute(select(BppProvider).where(BppProvider.id.in_(chunk)))).scalars()
        into.update((row.id, row) for row in rows)


async def find(session: AsyncSession, wanted: Criteria, *,
               max_items: int = DEFAULT_MAX_ITEMS) -> list[tuple[BppProvider, list[BppItem]]]:
    """Matching providers with their matching items: at most `max_items` items in all.

    Order: for a GPS search the nearest providers first (distance from the circle's centre to the
    provider's nearest location), otherwise by provider id; items by id within a provider. When
    more items match than `max_items`, the first `max_items` in that order are kept (SQL LIMIT)
    and the capping is logged.
    """
    scope = await _matching_providers(session, wanted)
    if scope.ids is not None and not scope.ids:
        return []
    conditions = _item_conditions(wanted)
    providers: dict[str, BppProvider] = {}
    want = max_items + 1  # one more than the cap tells a capped answer from an exact fit
    items: list[BppItem] = []

    # Provider scopes go by chunks of ids, in the scope's order, until the cap is reached.
    chunks: list[list[str] | None] = [None] if scope.ids is None else [
        scope.ids[start:start + _ID_CHUNK] for start in range(0, len(scope.ids), _ID_CHUNK)]
    for chunk in chunks:
        query = select(BppItem).where(*conditions)
        if chunk is None:
            query = query.order_by(BppItem.provider_id, BppItem.id)
        else:
            query = query.where(BppItem.provider_id.in_(chunk))
            if scope.by_distance and len(chunk) > 1:
                rank = case({provider_id: index for index, provider_id in enumerate(chunk)},
                            value=BppItem.provider_id)
                query = query.order_by(rank, BppItem.id)
            else:
                query = query.order_by(BppItem.provider_id, BppItem.id)
        items += await _fetch(session, query, want - len(items), wanted, providers)
        if len(items) >= want:
            break

    capped = len(items) > max_items
    items = items[:max_items]
    if capped:
        log.info("bpp.search.capped", max_items=max_items, by_distance=scope.by_distance)
    await _load_providers(session, [item.provider_id for item in items], providers)
    grouped: dict[str, tuple[BppProvider, list[BppItem]]] = {}
    for item in items:
        grouped.setdefault(item.provider_id, (providers[item.provider_id], []))[1].append(item)
    return list(grouped.values())


async def _fetch(session: AsyncSession, query: Any, want: int, wanted: Criteria,
                 providers: dict[str, BppProvider]) -> list[BppItem]:
    """Up to `want` items of `query` (already ordered) that pass the exact category-name check.

    Without category names, one query with LIMIT. With them, the SQL prefilter may let through an
    item whose own name holds the word: such items are dropped and the next rows fetched, so the
    cap still counts only true matches.
    """
    if not wanted.category_terms:
        return list((await session.execute(query.limit(want))).scalars())
    out: list[BppItem] = []
    offset = 0
    while len(out) < want:
        rows = list((await session.execute(query.offset(offset).limit(want))).scalars())
        await _load_providers(session, [row.provider_id for row in rows], providers)
        out += [row for row in rows if _category_names_match(row, providers[row.provider_id], wanted)]
        if len(rows) < want:
            break
        offset += len(rows)
    return out[:want]


def catalog_json(found: list[tuple[BppProvider, list[BppItem]]], lang: str,
                 profiles: Mapping[str, BppProviderProfile] | None = None,
                 offered_payments: Callable[[BppProvider], Sequence[str]] | None = None) -> dict[str, Any]:
    """The Beckn Catalog of a search answer; `profiles` (provider id -> merchant profile, from
    `bpp.catalogue.load_profiles`) add opening hours and business contact to their providers;
    `offered_payments` (`bpp.payments.payments_of(session).offered`) leaves out the payment types
    this BPP cannot take (PRE-ORDER without a payment processor)."""
    providers = []
    for provider, items in found:
        payment_types = offered_payments(provider) if offered_payments is not None else None
        entry = provider_json(provider, lang, profile=(profiles or {}).get(provider.id), payment_types=payment_types)
        entry["items"] = [item_json(item, provider, lang, payment_types) for item in items]
        providers.append(entry)
    return {"descriptor": {"name": CATALOG_NAMES.get(lang, CATALOG_NAMES[DEFAULT_LANGUAGE])}, "providers": providers}


async def on_search_message(session: AsyncSession, context: Context, intent: Intent | None, *,
                            max_items: int = DEFAULT_MAX_ITEMS) -> dict[str, Any]:
    """The whole answer's `message` (one catalog); raises SearchProblem for an unusable intent."""
    wanted = criteria(context, intent)
    found = await find(session, wanted, max_items=max_items)
    profiles = await load_profiles(session, [provider.id for provider, _ in found])  # once per answer
    return {"catalog": catalog_json(found, wanted.lang, profiles, payments_of(session).offered)}


async def search_answer(session: AsyncSession, context: Context, intent: Intent | None, *,
                        max_items: int = DEFAULT_MAX_ITEMS) -> dict[str, Any]:
    """The on_search body without its context: `{"message": ...}`, or `{"error": ...}`.

    `max_items` is the `bpp_search_max_items` setting: the most items the answer lists."""
    try:
        return {"message": await on_search_message(session, context, intent, max_items=max_items)}
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


__all__ = ["DEFAULT_MAX_ITEMS", "Criteria", "SearchProblem", "catalog_json", "criteria", "find", "on_search_message", "search_answer",
           "split_answer", "tag_value"]
