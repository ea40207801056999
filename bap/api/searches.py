"""Searches: a broadcast Beckn `search` through the gateway, and the offers that come back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from bap import messages
from bap.api.schemas import ErrorBody, ResultsOut, SearchIn, SearchOut
from bap.api.sessions import NOT_FOUND, UNAUTHORIZED, CurrentSession, service
from bap.offers import flatten_catalog
from bap.service import ApiError, BapService, iso
from bap.tables import BapTransaction

router = APIRouter(tags=["searches"])

# A comment line now and then keeps proxies from closing an idle event stream.
HEARTBEAT_SECONDS = 15.0


@router.post("/searches", status_code=202, response_model=SearchOut, summary="Search the network",
             responses={**UNAUTHORIZED, 503: {"model": ErrorBody, "description": "No gateway reachable."}})
async def create_search(body: SearchIn, request: Request, citizen: CurrentSession) -> SearchOut:
    """Broadcasts a Beckn `search` to the gateway; offers arrive at .../results and .../events."""
    svc = service(request)
    destination = await svc.gateway_url()
    city = body.city or svc.settings.city or "*"  # "*": the whole country, as ONDC writes it
    transaction = BapTransaction(
        id=messages.new_id(), session_id=citizen.id, city=city,
        search={"query": body.query, "lang": body.lang, "city": city, "category": body.category,
                "ttl_seconds": body.ttl_seconds, **({"country": body.country} if body.country else {})},
    )
    async with svc.node.sessions() as db:
        db.add(transaction)
        await db.flush()
        request_row = await svc.send(db, transaction, "search",
                                     messages.search_message(body.query, body.lang, body.category),
                                     destination=destination, ttl_seconds=body.ttl_seconds)
        await db.commit()
    svc.node.wake()
    return SearchOut(transaction_id=transaction.id, message_id=request_row.message_id,
                     expires_at=iso(request_row.expires_at) or "")


def _cursor(after: str | None) -> int:
    if after in (None, ""):
        return 0
    if not after.isdigit() or len(after) > 18:
        raise ApiError(422, "invalid_request", f"after: {after!r} is not a cursor returned by this API")
    return int(after)


@router.get("/searches/{transaction_id}/results", response_model=ResultsOut, summary="Offers received so far",
            responses={**UNAUTHORIZED, **NOT_FOUND})
async def search_results(
    transaction_id: str, request: Request, citizen: CurrentSession,
    wait_ms: int = Query(0, ge=0, le=30000, description="Wait up to this long for a callback newer than `after`."),
    after: str | None = Query(None, description="The cursor of the results already seen."),
) -> dict:
    """All offers received so far; with `wait_ms`, returns as soon as a newer answer lands or the search ends."""
    return await service(request).search_results(citizen.id, transaction_id, after=_cursor(after), wait_ms=wait_ms)


@router.get("/searches/{transaction_id}/events", summary="Offers as a server-sent event stream",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`offers` events (one per BPP answer), then `end`."},
                       **UNAUTHORIZED, **NOT_FOUND})
async def search_events(
    transaction_id: str, request: Request, citizen: CurrentSession,
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """One `offers` event per on_search callback (`id` = its cursor), then `end` when the ttl passes.
    Reconnecting with `Last-Event-ID` resumes after that event."""
    svc = service(request)
    after = _cursor(last_event_id)
    async with svc.node.sessions() as db:
        await svc.transaction(db, citizen.id, transaction_id)
        search = await svc.search_request(db, transaction_id)
    return StreamingResponse(
        _events(svc, request, transaction_id, search.expires_at, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _events(
    svc: BapService, request: Request, transaction_id: str, expires_at: datetime, after: int,
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    yield ": stream open\n\n"
    while True:
        ended = datetime.now(UTC) >= expires_at  # read before fetching: nothing accepted is missed
        for callback in await svc.search_callbacks(transaction_id, after):
            after = callback.id or after
            offers = flatten_catalog(callback.bpp_id, callback.bpp_uri, callback.message)
            yield _event("offers", {"transaction_id": transaction_id, "bpp_id": callback.bpp_id,
                                    "bpp_uri": callback.bpp_uri, "cursor": str(after), "offers": offers}, after)
            last_sent = loop.time()
        if ended:
            yield _event("end", {"transaction_id": transaction_id, "cursor": str(after), "complete": True})
            return
        if await request.is_disconnected():
            return
        if loop.time() - last_sent >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = loop.time()
        remaining = (expires_at - datetime.now(UTC)).total_seconds()
        await svc.waiters.wait(transaction_id, max(0.0, min(svc.settings.bap_poll_interval_seconds, remaining)))
