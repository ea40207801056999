"""The citizen's orders: list, detail, live updates (SSE) and what can be done after ordering.

An order is a cart that was confirmed: its id is the cart's (the Beckn transaction id), its
`order_id` the merchant's number. Every action sends one Beckn request to the order's BPP
(status, cancel, track, rating, support, update) and waits up to `wait_ms` for its answer, as
the low-level transaction actions do: 200 answered, 422 the merchant refused (`error`, in the
citizen's language), 202 pending, 502 the BPP refused or is unreachable, 504 no answer in time.
The answer always carries the order as it now stands.

A merchant's own changes (the order is packed, ready, delivered, cancelled by the shop) reach the
BAP as unsolicited on_status/on_update/on_cancel (accepted by `bap.correlation`) and the app
as `order` events on GET /orders/{id}/events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import func, or_, select

from bap import messages
from bap.api.order_schemas import (
    CancellationReasonsOut, CancelIn, OrderActionOut, OrderOut, OrderPage, OrderPatchIn, RatingsIn, WaitOnly,
)
from bap.api.schemas import ErrorBody
from bap.api.sessions import UNAUTHORIZED, CurrentSession, service
from bap.i18n import LANGUAGES, request_language
from bap.orders import cancellation_reasons, order_view
from bap.service import ApiError, BapService, Outcome, iso, localised_error
from bap.tables import BapCallback, BapRequest, BapSession, BapTransaction, CallbackStatus

router = APIRouter(tags=["orders"])

HEARTBEAT_SECONDS = 15.0
# The callbacks that change an order, hence the `order` events of its stream.
ORDER_CALLBACKS = ("on_confirm", "on_status", "on_update", "on_cancel")

NOT_FOUND = {404: {"model": ErrorBody, "description": "No such order in this session."}}
ACTION_OUTCOMES: dict[int | str, dict[str, Any]] = {
    200: {"model": OrderActionOut, "description": "Done: the order as it now stands and the action's result."},
    202: {"model": OrderActionOut, "description": "Sent, no answer yet (`status: pending`): watch the order's "
          "events or poll /transactions/{id}/messages/{message_id}."},
    422: {"model": OrderActionOut, "description": "Invalid input, or the merchant refused (`error`, localised)."},
    502: {"model": OrderActionOut, "description": "The merchant's server refused the request or is unreachable."},
    504: {"model": OrderActionOut, "description": "The merchant did not answer in time."},
    **UNAUTHORIZED, **NOT_FOUND,
}


# ------------------------------------------------------------------ reading


async def _order(svc: BapService, citizen_id: int, order_id: str, account_id: str | None = None) -> BapTransaction:
    """The session's confirmed order `order_id` (its cart id), or 404 as for one that does not exist.
    With `account_id` (reading only), an order of another session of the same account is found too."""
    async with svc.node.sessions() as db:
        transaction = await db.get(BapTransaction, order_id)
        owner = await db.get(BapSession, transaction.session_id) if (
            transaction is not None and account_id and transaction.session_id != citizen_id) else None
    if owner is not None and owner.account_id == account_id:
        citizen_id = owner.id or citizen_id
    if transaction is None or transaction.session_id != citizen_id or not transaction.order_id:
        raise ApiError(404, "not_found", f"no order {order_id!r} in this session")
    return transaction


@router.get("/orders", summary="The session's orders, newest first", response_model=OrderPage,
            responses={**UNAUTHORIZED})
async def list_orders(
    request: Request, citizen: CurrentSession,
    page: int = Query(1, ge=1, le=10000), page_size: int = Query(20, ge=1, le=100),
) -> dict[str, Any]:
    svc = service(request)
    mine = BapTransaction.session_id == citizen.id
    if citizen.account_id:  # logged in: the orders of the account's other sessions too (bap/api/auth.py)
        mine = or_(mine, BapTransaction.session_id.in_(
            select(BapSession.id).where(BapSession.account_id == citizen.account_id).scalar_subquery()))
    confirmed = (mine, BapTransaction.order_id.is_not(None))
    async with svc.node.sessions() as db:
        total = (await db.execute(select(func.count()).select_from(BapTransaction).where(*confirmed))).scalar_one()
        rows = (await db.execute(
            select(BapTransaction).where(*confirmed)
            .order_by(func.coalesce(BapTransaction.confirmed_at, BapTransaction.created_at).desc(),
                      BapTransaction.id)
            .offset((page - 1) * page_size).limit(page_size)
        )).scalars().all()
    return {"page": page, "page_size": page_size, "total": total, "orders": [order_view(row) for row in rows]}


@router.get("/orders/{order_id}", summary="One order", response_model=OrderOut,
            responses={**UNAUTHORIZED, **NOT_FOUND})
async def get_order(order_id: str, request: Request, citizen: CurrentSession) -> dict[str, Any]:
    return order_view(await _order(service(request), citizen.id, order_id, citizen.account_id))


@router.get("/cancellation-reasons", summary="Why a citizen may cancel (the network's reasons)",
            response_model=CancellationReasonsOut)
async def reasons(request: Request, lang: str | None = Query(None, description="fr, en, es or de; default: "
                                                                               "Accept-Language, else fr")) -> dict:
    if lang is not None and lang not in LANGUAGES:
        raise ApiError(422, "invalid_request", f"lang must be one of {', '.join(LANGUAGES)}")
    chosen = lang or request_language(request)
    return {"lang": chosen, "reasons": cancellation_reasons(chosen)}


# ------------------------------------------------------------------ live updates


@router.get("/orders/{order_id}/events", summary="The order's updates as a server-sent event stream",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "An `order` event (the order view) for every update of the order."},
                       **UNAUTHORIZED, **NOT_FOUND})
async def order_events(
    order_id: str, request: Request, citizen: CurrentSession,
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """One `order` event per update the merchant sent (confirmation, state changes, updates,
    cancellation, whether the app asked or the merchant moved the order on), `id` = its position.
    Reconnecting with `Last-Event-ID` resumes after that event; a comment every 15 s keeps the
    connection open. The stream stays open until the client closes it."""
    svc = service(request)
    transaction = await _order(svc, citizen.id, order_id)
    after = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else 0
    lang = request_language(request, fallback=transaction.lang)
    return StreamingResponse(_events(svc, request, order_id, after, lang), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _order_callbacks(svc: BapService, order_id: str, after: int) -> list[BapCallback]:
    async with svc.node.sessions() as db:
        return list((await db.execute(
            select(BapCallback).where(
                BapCallback.transaction_id == order_id, BapCallback.status == CallbackStatus.ACCEPTED.value,
                BapCallback.action.in_(ORDER_CALLBACKS), BapCallback.id > after,
            ).order_by(BapCallback.id)
        )).scalars())


def _event_data(transaction: BapTransaction, callback: BapCallback, lang: str) -> dict[str, Any]:
    order = (callback.message or {}).get("order")
    return {
        "id": transaction.id,
        "update": callback.action,
        "solicited": callback.request_id is not None,
        "received_at": iso(callback.received_at),
        # An error answer (a refused cancel) changes nothing: the order as it stands.
        "order": order_view(transaction, order if isinstance(order, dict) and not callback.error else None),
        "error": localised_error(callback.error, lang),
    }


async def _events(svc: BapService, request: Request, order_id: str, after: int, lang: str) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    yield ": stream open\n\n"
    while True:
        callbacks = await _order_callbacks(svc, order_id, after)
        if callbacks:
            async with svc.node.sessions() as db:
                transaction = await db.get(BapTransaction, order_id)
            for callback in callbacks:
                after = callback.id or after
                if transaction is not None:
                    data = json.dumps(_event_data(transaction, callback, lang), ensure_ascii=False)
                    yield f"id: {after}\nevent: order\ndata: {data}\n\n"
            last_sent = loop.time()
        if await request.is_disconnected():
            return
        if loop.time() - last_sent >= HEARTBEAT_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = loop.time()
        await svc.waiters.wait(order_id, svc.settings.bap_poll_interval_seconds)


# ------------------------------------------------------------------ actions


async def _act(
    svc: BapService, transaction: BapTransaction, action: str, message: dict[str, Any], wait_ms: int,
) -> tuple[Outcome, BapRequest]:
    """Send `action` to the order's BPP and wait up to `wait_ms` for its answer."""
    async with svc.node.sessions() as db:
        request = await svc.send(db, transaction, action, message, destination=transaction.bpp_uri or "",
                                 ttl_seconds=svc.settings.bap_request_ttl_seconds,
                                 bpp_id=transaction.bpp_id, bpp_uri=transaction.bpp_uri)
        await db.commit()
    svc.node.wake()
    return await svc.outcome(request, wait_ms=wait_ms), request


async def _answer_message(svc: BapService, request: BapRequest) -> dict[str, Any]:
    async with svc.node.sessions() as db:
        callback = (await db.execute(
            select(BapCallback).where(BapCallback.request_id == request.id,
                                      BapCallback.status == CallbackStatus.ACCEPTED.value)
            .order_by(BapCallback.id).limit(1)
        )).scalar_one_or_none()
    return (callback.message or {}) if callback is not None else {}


async def _respond(
    svc: BapService, action: str, outcome: Outcome, request: BapRequest, order_id: str, result: dict[str, Any] | None,
) -> JSONResponse:
    async with svc.node.sessions() as db:
        transaction = await db.get(BapTransaction, order_id)
    assert transaction is not None  # noqa: S101 - owned and confirmed a moment ago; never deleted
    view = order_view(transaction)
    body = {
        "action": action,
        "status": outcome.body.get("status", "answered"),
        "message_id": request.message_id,
        "order": order_view(transaction),
        # A cancel's result is the order's cancellation record (fee, refund) as the merchant now states it.
        "result": (({"cancellation": view["cancellation"]} if action == "cancel" else result)
                   if outcome.status == 200 else None),
        "error": outcome.body.get("error"),
    }
    return JSONResponse(body, status_code=outcome.status)


@router.post("/orders/{order_id}/refresh", summary="Ask the merchant for the order's latest state",
             response_model=OrderActionOut, responses=ACTION_OUTCOMES)
async def refresh(
    order_id: str, request: Request, citizen: CurrentSession, body: WaitOnly | None = None,
) -> JSONResponse:
    svc, body = service(request), body or WaitOnly()
    transaction = await _order(svc, citizen.id, order_id)
    outcome, sent = await _act(svc, transaction, "status", messages.status_message(transaction.order_id or ""),
                               body.wait_ms)
    return await _respond(svc, "refresh", outcome, sent, order_id, {})


@router.post("/orders/{order_id}/cancel", summary="Cancel the order (the merchant's terms apply)",
             response_model=OrderActionOut, responses=ACTION_OUTCOMES)
async def cancel(order_id: str, body: CancelIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    """Cancels with one of GET /cancellation-reasons. The merchant's `cancellation_terms` (shown on the
    order) say in which states it may be cancelled and what share of the total it keeps: the answer's
    `result.cancellation` gives the fee and what was refunded of a prepayment. A state the terms do
    not list is refused (`error.code` 50001)."""
    svc = service(request)
    transaction = await _order(svc, citizen.id, order_id)
    outcome, sent = await _act(svc, transaction, "cancel",
                               messages.cancel_message(transaction.order_id or "", body.reason_id, body.comment),
                               body.wait_ms)
    return await _respond(svc, "cancel", outcome, sent, order_id, None)


@router.post("/orders/{order_id}/track", summary="Where the order is",
             response_model=OrderActionOut, responses=ACTION_OUTCOMES)
async def track(
    order_id: str, request: Request, citizen: CurrentSession, body: WaitOnly | None = None,
) -> JSONResponse:
    """`result.tracking`: `status` active while the order is open, and a `url` or `location` when the
    merchant gives one (Lakou shops show where the order is collected or leaves from)."""
    svc, body = service(request), body or WaitOnly()
    transaction = await _order(svc, citizen.id, order_id)
    outcome, sent = await _act(svc, transaction, "track", messages.track_message(transaction.order_id or ""),
                               body.wait_ms)
    tracking = (await _answer_message(svc, sent)).get("tracking") if outcome.status == 200 else None
    return await _respond(svc, "track", outcome, sent, order_id, {"tracking": _tracking(tracking)})


def _tracking(tracking: Any) -> dict[str, Any] | None:
    if not isinstance(tracking, dict):
        return None
    location = tracking.get("location") if isinstance(tracking.get("location"), dict) else {}
    return {"status": tracking.get("status"), "url": tracking.get("url"),
            "location": {"name": (location.get("descriptor") or {}).get("name"), "address": location.get("address"),
                         "gps": location.get("gps")} if location else None}


@router.post("/orders/{order_id}/support", summary="How to reach the merchant about this order",
             response_model=OrderActionOut, responses=ACTION_OUTCOMES)
async def support(
    order_id: str, request: Request, citizen: CurrentSession, body: WaitOnly | None = None,
) -> JSONResponse:
    """`result.support`: the merchant's `phone`, `email` and/or `url`."""
    svc, body = service(request), body or WaitOnly()
    transaction = await _order(svc, citizen.id, order_id)
    outcome, sent = await _act(svc, transaction, "support", messages.support_message(transaction.order_id or ""),
                               body.wait_ms)
    found = (await _answer_message(svc, sent)).get("support") if outcome.status == 200 else None
    contact = {k: found.get(k) for k in ("phone", "email", "url")} if isinstance(found, dict) else None
    return await _respond(svc, "support", outcome, sent, order_id, {"support": contact})


@router.post("/orders/{order_id}/rating", summary="Rate the order, its items, the merchant or the fulfillment",
             response_model=OrderActionOut, responses=ACTION_OUTCOMES)
async def rating(order_id: str, body: RatingsIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    """1 to 5 stars each. Without an `id`, an `order`, `provider` or `fulfillment` rating rates this
    order's; an `item` rating needs the item's id. Rating the same thing again replaces the stars."""
    svc = service(request)
    transaction = await _order(svc, citizen.id, order_id)
    view = order_view(transaction)
    defaults = {"order": transaction.order_id, "provider": (view["provider"] or {}).get("id"),
                "fulfillment": (view["fulfillment"] or {}).get("id")}
    ratings = []
    for index, given in enumerate(body.ratings):
        rated = given.id or defaults.get(given.category)
        if not rated:
            raise ApiError(422, "invalid_request", f"ratings[{index}].id is required for a {given.category} rating",
                           lang=transaction.lang)
        ratings.append({"category": given.category, "id": rated, "value": given.value})
    outcome, sent = await _act(svc, transaction, "rating", messages.rating_message(ratings), body.wait_ms)
    return await _respond(svc, "rating", outcome, sent, order_id, {"ratings": ratings})


@router.patch("/orders/{order_id}", summary="Change the billing details or the delivery address",
              response_model=OrderActionOut, responses=ACTION_OUTCOMES)
async def update(order_id: str, body: OrderPatchIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    """A Beckn `update` of the order's billing and/or its delivery drop-off. The merchant decides:
    billing while the order is active, the drop-off until it is out for delivery and within its
    delivery zone (the delivery fee may change: see `quote`). Refusals come back in `error`."""
    svc = service(request)
    transaction = await _order(svc, citizen.id, order_id)
    billing = body.billing.model_dump(exclude_none=True) if body.billing else None
    delivery = body.delivery.model_dump(exclude_none=True) if body.delivery else None
    fulfillment = order_view(transaction)["fulfillment"] or {}
    message = messages.update_message(transaction.order_id or "", billing=billing, delivery=delivery,
                                      fulfillment_id=fulfillment.get("id"))
    outcome, sent = await _act(svc, transaction, "update", message, body.wait_ms)
    if outcome.status == 200 and billing:
        # What the citizen sees as their details follows what the merchant now holds.
        async with svc.node.sessions() as db:
            row = await db.get(BapTransaction, order_id)
            if row is not None:
                row.billing = {**(row.billing or {}), **billing}
                row.updated_at = datetime.now(UTC)
                await db.commit()
    changed = [part for part, given in (("billing", billing), ("delivery", delivery)) if given]
    return await _respond(svc, "update", outcome, sent, order_id, {"updated": changed})
