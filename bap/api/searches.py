"""Searches: a broadcast Beckn `search` through the gateway, and the offers that come back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from bap import messages
from bap.api.schemas import ErrorBody, ResultsOut, SearchIn, SearchOut
from bap.api.sessions import NOT_FOUND, UNAUTHORIZED, CurrentSession, service
from bap.i18n import LANGUAGES, request_language
from bap.offers import (
    OfferKey,
    changed_offers,
    deduplicated,
    flatten_catalog,
    page_of,
    parse_gps,
    sorted_offers,
    with_distance,
)
from bap.service import ApiError, BapService, iso
from bap.tables import BapCallback, BapTransaction

router = APIRouter(tags=["searches"])

# A comment line now and then keeps proxies from closing an idle event stream.
HEARTBEAT_SECONDS = 15.0

# The citizen's words for this API's own refusals (fr, en, es, de); `detail` keeps the English.
_MESSAGES: dict[str, tuple[str, str, str, str]] = {
    "empty_search": (
        "Dites ce que vous cherchez : un produit, une catégorie, une commune ou un lieu.",
        "Say what you are looking for: a product, a category, a town or a place.",
        "Indique lo que busca: un producto, una categoría, un municipio o un lugar.",
        "Sagen Sie, was Sie suchen: ein Produkt, eine Kategorie, einen Ort oder eine Umgebung.",
    ),
    "distance_needs_near": (
        "Le tri par distance demande une recherche autour d'un lieu.",
        "Sorting by distance needs a search around a place.",
        "Ordenar por distancia requiere una búsqueda alrededor de un lugar.",
        "Die Sortierung nach Entfernung braucht eine Suche rund um einen Ort.",
    ),
}


def _refusal(request: Request, code: str, detail: str, lang: str | None) -> ApiError:
    """A 422 of this API's own, in the citizen's language (Accept-Language, else the search's)."""
    chosen = request_language(request, fallback=lang)
    return ApiError(422, code, detail, lang=lang, citizen=_MESSAGES[code][LANGUAGES.index(chosen)])


@router.post("/searches", status_code=202, response_model=SearchOut, summary="Search the network",
             responses={**UNAUTHORIZED, 422: {"model": ErrorBody, "description": "Invalid or empty search."},
                        503: {"model": ErrorBody, "description": "No gateway reachable."}})
async def create_search(body: SearchIn, request: Request, citizen: CurrentSession) -> SearchOut:
    """Broadcasts a Beckn `search` to the gateway; offers arrive at .../results and .../events.

    Give at least one of `query`, `category`, `city` or `near`. The search carries no personal data:
    with `near`, BPPs learn only the circle's centre and radius."""
    if not body.narrowed():
        raise _refusal(request, "empty_search",
                       "say what to search: give at least one of query, category, city or near", body.lang)
    lang = body.lang or request_language(request)
    svc = service(request)
    destination = await svc.gateway_url()
    # "*": the whole country, as ONDC writes it. A circle needs no commune: the node's default one
    # would keep merchants just across a commune's border out of a "near me" search.
    city = body.city or ("*" if body.near is not None else svc.settings.city) or "*"
    near = (body.near.gps, body.near.radius_km) if body.near is not None else None
    search = {"query": body.query, "lang": lang, "city": city, "category": body.category,
              "ttl_seconds": body.ttl_seconds, **({"country": body.country} if body.country else {}),
              **({"near": body.near.model_dump()} if body.near is not None else {}),
              **({"fulfillment": body.fulfillment} if body.fulfillment else {})}
    transaction = BapTransaction(id=messages.new_id(), session_id=citizen.id, city=city, search=search,
                                 lang=lang)
    async with svc.node.sessions() as db:
        db.add(transaction)
        await db.flush()
        request_row = await svc.send(db, transaction, "search",
                                     messages.search_message(body.query, lang, body.category,
                                                             near=near, fulfillment=body.fulfillment),
                                     destination=destination, ttl_seconds=body.ttl_seconds)
        await db.commit()
    svc.node.wake()
    return SearchOut(id=transaction.id, transaction_id=transaction.id, message_id=request_row.message_id,
                     expires_at=iso(request_row.expires_at) or "")


def _cursor(after: str | None) -> int:
    if after in (None, ""):
        return 0
    if not after.isdigit() or len(after) > 18:
        raise ApiError(422, "invalid_request", f"after: {after!r} is not a cursor returned by this API")
    return int(after)


def _center(transaction: BapTransaction) -> tuple[float, float] | None:
    """The centre of the search's `near` circle, if it had one."""
    near = (transaction.search or {}).get("near")
    return parse_gps(near.get("gps")) if isinstance(near, dict) else None


@router.get("/searches/{transaction_id}/results", response_model=ResultsOut, summary="Offers received so far",
            responses={**UNAUTHORIZED, **NOT_FOUND,
                       422: {"model": ErrorBody, "description": "Invalid cursor, sort or page."}})
async def search_results(
    transaction_id: str, request: Request, citizen: CurrentSession,
    wait_ms: int = Query(0, ge=0, le=30000, description="Wait up to this long for a callback newer than `after`."),
    after: str | None = Query(None, description="The cursor of the results already seen."),
    sort: Literal["relevance", "price", "distance"] = Query(
        "relevance", description="`relevance`: the BPPs' own order, as their answers arrived; `price`; "
        "`distance` (only for a search with `near`). Offers without a price or a distance come last."),
    order: Literal["asc", "desc"] = Query("asc", description="`desc`: dearest or farthest first."),
    page: int = Query(1, ge=1, le=100000, description="Which page, from 1."),
    page_size: int = Query(20, ge=1, le=100, description="Offers per page."),
) -> dict:
    """All offers received so far, one per BPP, provider and item (the latest answer wins), sorted and
    paginated; with `wait_ms`, returns as soon as a newer answer lands or the search ends."""
    svc = service(request)
    cursor = _cursor(after)
    async with svc.node.sessions() as db:
        transaction = await svc.transaction(db, citizen.id, transaction_id)
    center = _center(transaction)
    if sort == "distance" and center is None:
        raise _refusal(request, "distance_needs_near",
                       "sort=distance needs a search made with `near` (a gps point and a radius)",
                       (transaction.search or {}).get("lang"))
    results = await svc.search_results(citizen.id, transaction_id, after=cursor, wait_ms=wait_ms)
    offers = sorted_offers(with_distance(deduplicated(results["offers"]), center), sort, descending=order == "desc")
    return {**results, "id": transaction_id, "total": len(offers), "page": page, "page_size": page_size,
            "offers": page_of(offers, page, page_size)}


@router.get("/searches/{transaction_id}/events", summary="Offers as a server-sent event stream",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`offers` events (the new or changed offers of a BPP answer), "
                                      "then `end`."},
                       **UNAUTHORIZED, **NOT_FOUND})
async def search_events(
    transaction_id: str, request: Request, citizen: CurrentSession,
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """An `offers` event per on_search callback that brings new or changed offers (`id` = its cursor;
    an offer is one per `bpp_id`, `provider.id` and `item.id`: replace the one you hold), then `end`
    when the ttl passes. Reconnecting with `Last-Event-ID` resumes after that event."""
    svc = service(request)
    after = _cursor(last_event_id)
    async with svc.node.sessions() as db:
        transaction = await svc.transaction(db, citizen.id, transaction_id)
        search = await svc.search_request(db, transaction_id)
    return StreamingResponse(
        _events(svc, request, transaction_id, search.expires_at, after, _center(transaction)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(
    svc: BapService, request: Request, transaction_id: str, expires_at: datetime, after: int,
    center: tuple[float, float] | None,
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    # What the client already holds: on a resumed stream, the offers of the events before `after`.
    seen: dict[OfferKey, dict] = {}
    if after:
        earlier = [cb for cb in await svc.search_callbacks(transaction_id) if (cb.id or 0) <= after]
        changed_offers(seen, with_distance(_offers_of(earlier, svc.merchants), center))
    yield ": stream open\n\n"
    while True:
        ended = datetime.now(UTC) >= expires_at  # read before fetching: nothing accepted is missed
        for callback in await svc.search_callbacks(transaction_id, after):
            after = callback.id or after
            fresh = changed_offers(seen, with_distance(_offers_of([callback], svc.merchants), center))
            if not fresh:
                continue  # a retransmission, or a part that repeats what was sent: nothing to show
            yield _event("offers", {"transaction_id": transaction_id, "bpp_id": callback.bpp_id,
                                    "bpp_uri": callback.bpp_uri, "cursor": str(after), "total": len(seen),
                                    "offers": fresh}, after)
            last_sent = loop.time()
        if ended:
            yield _event("end", {"transaction_id": transaction_id, "cursor": str(after), "total": len(seen),
                                 "complete": True})
            return
        if await request.is_disconnected():
            return
        if loop.time() - last_sent >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = loop.time()
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        await svc.waiters.wait(transaction_id, max(0.0, min(svc.settings.bap_poll_interval_seconds, remaining)))


def _offers_of(callbacks: list[BapCallback], merchants: Any = None) -> list[dict]:
    return [offer for cb in callbacks
            for offer in flatten_catalog(cb.bpp_id, cb.bpp_uri, cb.message, merchants=merchants)]
