"""select → init → confirm → status with the BPP the citizen chose, and polling their answers.

Each call sends one Beckn request straight to the BPP (its bpp_uri from this search's on_search),
then waits up to `wait_ms` for the callback: 200 with the answer, 422 with the BPP's error,
502 if the BPP refused or could not be reached, 202 if nothing came yet (poll
`.../messages/{message_id}`), 504 once the request's ttl passed without an answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from bap import messages
from bap.api.schemas import ActionOut, ErrorBody, InitIn, PendingOut, SelectIn, WaitIn
from bap.api.sessions import NOT_FOUND, UNAUTHORIZED, CurrentSession, service
from bap.auth import customer_did
from bap.service import ApiError, BapService, Outcome, iso
from bap.tables import BapRequest, BapTransaction

router = APIRouter(tags=["transactions"])

OUTCOMES: dict[int | str, dict[str, Any]] = {
    200: {"model": ActionOut, "description": "The BPP's answer."},
    202: {"model": PendingOut, "description": "No answer yet: poll .../messages/{message_id}."},
    409: {"model": ErrorBody, "description": "This step needs an earlier one first."},
    422: {"model": ActionOut, "description": "Invalid input, or the BPP's error (`error.code`, `error.message`)."},
    502: {"model": ActionOut, "description": "The BPP refused the request (NACK) or could not be reached."},
    504: {"model": ActionOut, "description": "The BPP did not answer within the request's ttl."},
    **UNAUTHORIZED, **NOT_FOUND,
}


def _json(outcome: Outcome) -> JSONResponse:
    return JSONResponse(outcome.body, status_code=outcome.status)


async def _send_and_wait(
    svc: BapService, transaction: BapTransaction, action: str, message: dict[str, Any], wait_ms: int,
    **changes: Any,
) -> JSONResponse:
    """Queue the request to the chosen BPP with the transaction's changes, then wait for its answer."""
    async with svc.node.sessions() as db:
        transaction = await db.merge(transaction)
        for name, value in changes.items():
            setattr(transaction, name, value)
        transaction.updated_at = datetime.now(UTC)
        request = await svc.send(db, transaction, action, message, destination=transaction.bpp_uri or "",
                                 ttl_seconds=svc.settings.bap_request_ttl_seconds,
                                 bpp_id=transaction.bpp_id, bpp_uri=transaction.bpp_uri)
        await db.commit()
    svc.node.wake()
    return _json(await svc.outcome(request, wait_ms=wait_ms))


async def _owned(svc: BapService, citizen_id: int, transaction_id: str) -> BapTransaction:
    async with svc.node.sessions() as db:
        return await svc.transaction(db, citizen_id, transaction_id)


@router.post("/transactions/{transaction_id}/select", summary="Choose items from one BPP and get a quote",
             response_model=ActionOut, responses=OUTCOMES)
async def select(transaction_id: str, body: SelectIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    svc = service(request)
    async with svc.node.sessions() as db:
        transaction = await svc.transaction(db, citizen.id, transaction_id)
        bpp_uri = await svc.bpp_uri_from_search(db, transaction_id, body.bpp_id)
    items = [item.model_dump() for item in body.items]
    return await _send_and_wait(
        svc, transaction, "select", messages.select_message(body.provider_id, items), body.wait_ms,
        bpp_id=body.bpp_id, bpp_uri=bpp_uri, provider_id=body.provider_id, items=items,
        quote=None, order=None, order_id=None, state=None, last_action="select",
    )


@router.post("/transactions/{transaction_id}/init", summary="Give billing and fulfillment details, get the terms",
             response_model=ActionOut, responses=OUTCOMES)
async def init(transaction_id: str, body: InitIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    svc = service(request)
    transaction = await _owned(svc, citizen.id, transaction_id)
    if not (transaction.bpp_id and transaction.provider_id and transaction.items):
        raise ApiError(409, "select_first", "select items from a BPP before init")
    if transaction.order_id:
        raise ApiError(409, "already_confirmed", f"order {transaction.order_id} is already confirmed")
    fulfillment = body.fulfillment.model_dump()
    if fulfillment["type"] == "delivery" and not fulfillment.get("address"):
        fulfillment["address"] = body.billing.address
    message = messages.init_message(transaction.provider_id, transaction.items, body.billing.model_dump(),
                                    fulfillment, transaction.order,
                                    person_id=customer_did(svc.settings, citizen.account_id, transaction.bpp_id))
    return await _send_and_wait(svc, transaction, "init", message, body.wait_ms, last_action="init")


@router.post("/transactions/{transaction_id}/confirm", summary="Place the order on the terms of on_init",
             response_model=ActionOut, responses=OUTCOMES)
async def confirm(
    transaction_id: str, request: Request, citizen: CurrentSession, body: WaitIn | None = None,
) -> JSONResponse:
    svc = service(request)
    body = body or WaitIn()
    transaction = await _owned(svc, citizen.id, transaction_id)
    if transaction.order_id:
        raise ApiError(409, "already_confirmed", f"order {transaction.order_id} is already confirmed")
    if transaction.last_action != "on_init" or not transaction.order:
        raise ApiError(409, "init_first", "init must be answered by the BPP (on_init) before confirm")
    return await _send_and_wait(svc, transaction, "confirm", messages.confirm_message(
        transaction.order, person_id=customer_did(svc.settings, citizen.account_id, transaction.bpp_id)),
                                body.wait_ms, last_action="confirm")


@router.post("/transactions/{transaction_id}/status", summary="Ask the BPP for the order's state",
             response_model=ActionOut, responses=OUTCOMES)
async def status(
    transaction_id: str, request: Request, citizen: CurrentSession, body: WaitIn | None = None,
) -> JSONResponse:
    svc = service(request)
    body = body or WaitIn()
    transaction = await _owned(svc, citizen.id, transaction_id)
    if not transaction.order_id:
        raise ApiError(409, "confirm_first", "there is no confirmed order in this transaction yet")
    return await _send_and_wait(svc, transaction, "status", messages.status_message(transaction.order_id),
                                body.wait_ms)


@router.get("/transactions/{transaction_id}/messages/{message_id}", summary="The answer to an earlier request",
            response_model=ActionOut, responses=OUTCOMES)
async def message_outcome(
    transaction_id: str, message_id: str, request: Request, citizen: CurrentSession,
    wait_ms: int = Query(0, ge=0, le=30000),
) -> JSONResponse:
    """The poll path after a 202: same shape as the select/init/confirm/status answer."""
    svc = service(request)
    async with svc.node.sessions() as db:
        await svc.transaction(db, citizen.id, transaction_id)
        sent = await svc.request(db, transaction_id, message_id)
    return _json(await svc.outcome(sent, wait_ms=wait_ms))


@router.get("/transactions/{transaction_id}", summary="The transaction's state",
            responses={**UNAUTHORIZED, **NOT_FOUND})
async def get_transaction(transaction_id: str, request: Request, citizen: CurrentSession) -> dict[str, Any]:
    svc = service(request)
    async with svc.node.sessions() as db:
        transaction = await svc.transaction(db, citizen.id, transaction_id)
        sent = list((await db.execute(
            BapRequest.__table__.select().where(BapRequest.transaction_id == transaction_id).order_by(BapRequest.id)
        )).mappings())
    return {
        "transaction_id": transaction.id,
        "created_at": iso(transaction.created_at),
        "updated_at": iso(transaction.updated_at),
        "search": transaction.search,
        "bpp_id": transaction.bpp_id,
        "bpp_uri": transaction.bpp_uri,
        "provider_id": transaction.provider_id,
        "items": transaction.items,
        "quote": transaction.quote,
        "order": transaction.order,
        "order_id": transaction.order_id,
        "state": transaction.state,
        "last_action": transaction.last_action,
        "messages": [{"message_id": r["message_id"], "action": r["action"], "bpp_id": r["bpp_id"],
                      "sent_at": iso(r["sent_at"]), "expires_at": iso(r["expires_at"])} for r in sent],
    }
