"""Carts, checkout and ordering: the app's side of select → init → confirm with one merchant.

- `POST /carts` makes a cart from a search's offers (one provider) and asks the merchant for a quote;
- `PUT /carts/{id}/items` changes quantities (0 removes) and asks again;
- `POST /carts/{id}/checkout` gives billing, fulfillment and payment: the answer is what the
  citizen will pay (and, to prepay, where);
- `POST /carts/{id}/order` places the order on exactly those terms, if the citizen accepted that total.

Each call waits up to `wait_ms` for the merchant: 200/201 with the answer, 202 with the cart still
pending (poll `GET /carts/{id}?wait_ms=`), or the merchant's refusal, localised, with the cart.
A cart is visible only to the session that made it (404 for anyone else).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from bap import carts, messages
from bap.api.cart_schemas import CartErrorOut, CartIn, CartItemsIn, CartOut, CheckoutIn, CheckoutOut, OrderIn
from bap.api.schemas import ErrorBody
from bap.api.sessions import UNAUTHORIZED, CurrentSession, service
from bap.auth import customer_did
from bap.i18n import citizen_message, request_language
from bap.orders import order_view
from bap.service import ApiError, BapService, Outcome
from bap.tables import BapRequest, BapTransaction

router = APIRouter(tags=["carts"])

NOT_FOUND = {404: {"model": ErrorBody, "description": "No such cart in this session."}}
MERCHANT_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": CartErrorOut, "description": "Invalid input (`invalid_request`, `unknown_item`, ...), or the "
          "merchant's refusal (`error.code` its Beckn code, e.g. 40002 not enough stock), with the cart."},
    502: {"model": CartErrorOut, "description": "The merchant refused the request or could not be reached."},
    504: {"model": CartErrorOut, "description": "The merchant did not answer in time."},
    **UNAUTHORIZED, **NOT_FOUND,
}
PENDING = {202: {"model": CartOut, "description": "The merchant has not answered yet: poll GET /carts/{id}."}}
CONFLICT = {409: {"model": ErrorBody, "description": "Not possible in the cart's state (see `error.code`)."}}


# ------------------------------------------------------------------------------ helpers


async def _cart(svc: BapService, session_id: int, cart_id: str) -> BapTransaction:
    async with svc.node.sessions() as db:
        tx = await svc.transaction(db, session_id, cart_id)
    if tx.search_id is None:
        # A search is a transaction too, but not a cart.
        raise ApiError(404, "not_found", f"no cart {cart_id!r} in this session")
    return tx


async def _state(svc: BapService, cart_id: str) -> carts.CartState:
    async with svc.node.sessions() as db:
        tx = await db.get(BapTransaction, cart_id, populate_existing=True)
        assert tx is not None  # noqa: S101 - read just before, and carts are never deleted
        return await carts.load(svc, db, tx)


async def _send(svc: BapService, tx: BapTransaction, action: str, message: dict[str, Any], *,
                new: bool = False, **changes: Any) -> BapRequest:
    """Queue `action` to the cart's BPP with the cart's changes, in one DB transaction."""
    async with svc.node.sessions() as db:
        if new:
            db.add(tx)
            await db.flush()
        else:
            tx = await db.merge(tx)
        for name, value in changes.items():
            setattr(tx, name, value)
        tx.updated_at = carts.now()
        request = await svc.send(db, tx, action, message, destination=tx.bpp_uri or "",
                                 ttl_seconds=svc.settings.bap_request_ttl_seconds,
                                 bpp_id=tx.bpp_id, bpp_uri=tx.bpp_uri)
        await db.commit()
    svc.node.wake()
    return request


def _merchant_error(outcome: Outcome, lang: str, cart: dict[str, Any] | None, **extra: Any) -> JSONResponse:
    """The merchant's refusal (or silence) for the citizen, in their language, with the cart."""
    raw = outcome.body.get("error") or {}
    code = str(raw.get("code") or ("timeout" if outcome.status == 504 else "bpp_unreachable"))
    error = {"code": code, "message": citizen_message(code, lang), "detail": raw.get("detail") or raw.get("message"),
             "source": "bpp", **({"path": raw["path"]} if raw.get("path") else {}), **extra}
    return JSONResponse({"error": error, "cart": cart}, status_code=outcome.status)


async def _answer(svc: BapService, request: Request, tx: BapTransaction, sent: BapRequest, wait_ms: int,
                  ok_status: int = 200) -> JSONResponse:
    """Wait for the merchant's answer to `sent`, then the cart as it stands (or the refusal)."""
    outcome = await svc.outcome(sent, wait_ms=wait_ms)
    view = carts.cart_view(await _state(svc, tx.id))
    if outcome.status == 200:
        return JSONResponse(view, status_code=ok_status)
    if outcome.status == 202:
        return JSONResponse(view, status_code=202)
    return _merchant_error(outcome, request_language(request, fallback=tx.lang), view)


# ------------------------------------------------------------------------------ routes


@router.post("/carts", status_code=201, response_model=CartOut, summary="Make a cart and get the merchant's quote",
             responses={201: {"description": "The cart, quoted by the merchant."}, **PENDING, **MERCHANT_ERRORS})
async def create_cart(body: CartIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    """Picks items of one provider among a search's offers; the merchant prices them (`select`)."""
    svc = service(request)
    async with svc.node.sessions() as db:
        search = await svc.transaction(db, citizen.id, body.search_id)
        if search.search_id is not None:
            raise ApiError(422, "invalid_request", "search_id names a cart, not a search", field="search_id")
        await svc.search_request(db, search.id)
        bpp_uri = await svc.bpp_uri_from_search(db, search.id, body.bpp_id)
        provider = await carts.catalogue_provider(db, search.id, body.bpp_id, body.provider_id)
    lang = search.lang or (search.search or {}).get("lang") or "fr"
    items = [item.model_dump() for item in body.items]
    carts.check_items(provider, body.provider_id, items)
    tx = BapTransaction(
        id=messages.new_id(), session_id=citizen.id, city=search.city,
        # What was searched (no personal data): the country routes the cart as it routed the search.
        search=dict(search.search or {}), search_id=search.id, lang=lang,
        bpp_id=body.bpp_id, bpp_uri=bpp_uri, provider_id=body.provider_id, items=items, last_action="select",
    )
    sent = await _send(svc, tx, "select", messages.select_message(body.provider_id, items, lang), new=True)
    return await _answer(svc, request, tx, sent, body.wait_ms, ok_status=201)


@router.get("/carts/{cart_id}", response_model=CartOut, summary="A cart as it stands",
            responses={**UNAUTHORIZED, **NOT_FOUND})
async def get_cart(
    cart_id: str, request: Request, citizen: CurrentSession,
    wait_ms: int = Query(0, ge=0, le=30000, description="If a request is pending, wait up to this long for it."),
) -> JSONResponse:
    """The poll path after a 202: returns as soon as the pending request is answered, or after `wait_ms`."""
    svc = service(request)
    tx = await _cart(svc, citizen.id, cart_id)
    state = await _state(svc, tx.id)
    if wait_ms and state.latest is not None and state.latest_outcome is not None \
            and state.latest_outcome.status == 202:
        await svc.outcome(state.latest, wait_ms=wait_ms)
        state = await _state(svc, tx.id)
    # As the other routes: the BPP's values are passed on as sent, not re-validated into a 500.
    return JSONResponse(carts.cart_view(state))


@router.put("/carts/{cart_id}/items", response_model=CartOut, summary="Change quantities and get a new quote",
            responses={**PENDING, **CONFLICT, **MERCHANT_ERRORS})
async def change_items(cart_id: str, body: CartItemsIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    """Sets the quantity of each listed item (0 removes it; a new item of the same provider is added);
    the merchant quotes the new cart. A checkout made before is void: check out again."""
    svc = service(request)
    tx = await _cart(svc, citizen.id, cart_id)
    state = await _state(svc, tx.id)
    if state.status in ("ordering", "ordered"):
        raise ApiError(409, "already_confirmed", "this cart is already ordered; its items cannot change",
                       lang=tx.lang)
    items = carts.merge_items(tx.items or [], [change.model_dump() for change in body.items])
    if not items:
        raise ApiError(422, "empty_cart", "the cart would have no items left: keep at least one", lang=tx.lang)
    carts.check_items(state.provider, tx.provider_id or "", items)
    sent = await _send(svc, tx, "select", messages.select_message(tx.provider_id or "", items, tx.lang),
                       items=items, checkout=None, quote=None, order=None, state=None, last_action="select")
    return await _answer(svc, request, tx, sent, body.wait_ms)


def _option(options: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((option for option in options if option["type"] == kind), None)


@router.post("/carts/{cart_id}/checkout", response_model=CheckoutOut,
             summary="Give billing, fulfillment and payment: see exactly what you will pay",
             responses={200: {"description": "The merchant's final terms: total, breakup, payment (with the "
                                             "payment link to prepay), fulfillment."},
                        **PENDING, **CONFLICT, **MERCHANT_ERRORS})
async def checkout(cart_id: str, body: CheckoutIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    """Sends `init` to the merchant. The billing details go to this merchant only. Checking out
    again (another pickup point, delivery, payment) replaces the earlier checkout."""
    svc = service(request)
    tx = await _cart(svc, citizen.id, cart_id)
    state = await _state(svc, tx.id)
    if state.status in ("ordering", "ordered"):
        raise ApiError(409, "already_confirmed", "this cart is already ordered", lang=tx.lang)
    quoted = state.good_answer("select")
    if quoted is None:
        if state.status == "quoting":
            raise ApiError(409, "pending", "the merchant has not quoted this cart yet: wait for its quote "
                           "(GET /carts/{id}?wait_ms=5000), then check out", lang=tx.lang)
        raise ApiError(409, "select_first", "this cart has no valid quote (see its error): change its items first",
                       lang=tx.lang)
    choice = body.fulfillment.model_dump()
    option = _option(carts.fulfillment_options(state.provider, quoted[1]), choice["type"])
    if option is None:
        raise ApiError(422, "fulfillment_unavailable", f"this merchant does not offer {choice['type']}; "
                       "choose one of the cart's fulfillment_options", lang=tx.lang, field="fulfillment.type")
    if choice["type"] == "pickup" and choice.get("location_id"):
        known = [location["id"] for location in option.get("locations") or []]
        if known and choice["location_id"] not in known:
            raise ApiError(422, "unknown_location", f"{choice['location_id']!r} is not a pickup point of this "
                           f"merchant; choose one of {', '.join(known)}", lang=tx.lang, field="fulfillment.location_id")
    if choice["type"] == "delivery":
        choice["address"] = choice.get("address") or body.billing.address
        if option.get("needs_gps") and not choice.get("gps"):
            raise ApiError(422, "gps_required", f"this merchant delivers within {option.get('radius_km')} km of its "
                           "shop: give fulfillment.gps, the drop-off point", lang=tx.lang, field="fulfillment.gps")
    payment = body.payment.type if body.payment is not None else None
    if payment is not None:
        offered = [option["type"] for option in carts.payment_options(state.provider, quoted[1])]
        if offered and payment not in offered:
            raise ApiError(422, "payment_unavailable", f"this merchant does not take {payment}; "
                           f"choose one of {', '.join(offered)}", lang=tx.lang, field="payment.type")
    choice["id"] = option.get("id")
    billing = body.billing.model_dump(exclude_none=True)
    message = messages.init_message(tx.provider_id or "", tx.items or [], billing, choice, quoted[1],
                                    payment_type=carts.PAYMENT_CODES[payment] if payment else None, lang=tx.lang,
                                    person_id=customer_did(svc.settings, citizen.account_id, tx.bpp_id),
                                    offer_id=body.offer_id, resident_presentation=body.resident_presentation)
    sent = await _send(svc, tx, "init", message, billing=billing, last_action="init",
                       checkout={"fulfillment": {k: v for k, v in choice.items() if v is not None},
                                 "payment": {"type": payment} if payment else None,
                                 # kept for confirm: the merchant checks the presentation again there
                                 **({"offer_id": body.offer_id} if body.offer_id else {}),
                                 **({"resident_presentation": body.resident_presentation}
                                    if body.resident_presentation else {})})
    outcome = await svc.outcome(sent, wait_ms=body.wait_ms)
    state = await _state(svc, tx.id)
    view = carts.cart_view(state)
    if outcome.status == 200 and view["checkout"] is not None:
        return JSONResponse({**view["checkout"], "status": view["status"]})
    if outcome.status in (200, 202):
        return JSONResponse(view, status_code=202)
    return _merchant_error(outcome, request_language(request, fallback=tx.lang), view)


@router.post("/carts/{cart_id}/order", summary="Place the order on the checkout's terms",
             responses={201: {"description": "The order (as GET /orders/{id} shows it)."},
                        200: {"description": "Already ordered: the order."},
                        402: {"model": CartErrorOut, "description": "Prepay first: pay at `error.payment.url`, "
                              "then order again."},
                        409: {"model": ErrorBody, "description": "`not_checked_out`, or `price_changed` (with "
                              "`error.quote`, the merchant's current quote)."},
                        **PENDING, **MERCHANT_ERRORS})
async def place_order(cart_id: str, body: OrderIn, request: Request, citizen: CurrentSession) -> JSONResponse:
    """Sends `confirm` with the order exactly as the merchant stated it at checkout, only if
    `accept_total` is its total: the citizen never pays a price they did not see."""
    svc = service(request)
    tx = await _cart(svc, citizen.id, cart_id)
    state = await _state(svc, tx.id)
    lang = request_language(request, fallback=tx.lang)
    if tx.order_id:
        return JSONResponse(order_view(tx), status_code=200)  # a retried request: the order it made
    if state.status == "ordering" and state.latest is not None:
        sent = state.latest  # a confirm is on its way: wait for it rather than send a second one
    else:
        checked = state.checked_out()
        if checked is None:
            raise ApiError(409, "not_checked_out", "check out first (POST /carts/{id}/checkout) and wait for the "
                           "merchant's terms", lang=tx.lang, cart_status=state.status)
        order = checked[1]
        quote = carts.quote_view(order)
        total = carts.decimal(((quote or {}).get("total") or {}).get("value"))
        if total is None or total != carts.decimal(body.accept_total):
            raise ApiError(409, "price_changed", f"the merchant's total is {(quote or {}).get('total')}, not "
                           f"{body.accept_total}: show it to the citizen and order again with that total",
                           lang=tx.lang, quote=quote)
        sent = await _send(svc, tx, "confirm", messages.confirm_message(
            order, tx.lang, person_id=customer_did(svc.settings, citizen.account_id, tx.bpp_id),
            resident_presentation=(tx.checkout or {}).get("resident_presentation")), last_action="confirm")
    outcome = await svc.outcome(sent, wait_ms=body.wait_ms)
    if outcome.status == 200:
        return JSONResponse(order_view(await _confirmed(svc, tx.id, outcome)), status_code=201)
    view = carts.cart_view(await _state(svc, tx.id))
    if outcome.status == 202:
        return JSONResponse(view, status_code=202)
    payment = (view.get("checkout") or {}).get("payment") or {}
    raw = outcome.body.get("error") or {}
    if str(raw.get("code")) == "40000" and payment.get("type") == "prepay" and payment.get("status") != "paid" \
            and payment.get("url"):
        # The merchant has not been paid: the citizen pays at the link, then orders again.
        error = {"code": "payment_required", "message": citizen_message("payment_required", lang),
                 "detail": raw.get("detail") or raw.get("message"), "source": "bpp", "bpp_code": "40000",
                 "payment": {"url": payment["url"], "amount": payment.get("amount")}}
        return JSONResponse({"error": error, "cart": view}, status_code=402)
    if str(raw.get("code")) == "40003":
        # The merchant's prices moved since checkout and it refused the old quote (nothing was
        # ordered): the same answer as a wrong accept_total, so the app has one path: check out again.
        error = {"code": "price_changed", "message": citizen_message("price_changed", lang),
                 "detail": raw.get("detail") or raw.get("message"), "source": "bpp", "bpp_code": "40003",
                 "quote": None}
        return JSONResponse({"error": error, "cart": view}, status_code=409)
    return _merchant_error(outcome, lang, view)


async def _confirmed(svc: BapService, cart_id: str, outcome: Outcome) -> BapTransaction:
    """The cart once the merchant confirmed: `order_id` and `confirmed_at` set (the correlator
    folds the on_confirm in; should it not have marked the time, the answer's arrival is it)."""
    async with svc.node.sessions() as db:
        tx = await db.get(BapTransaction, cart_id, populate_existing=True)
        assert tx is not None  # noqa: S101 - the cart exists
        changed = False
        if tx.order_id is None and outcome.body.get("order_id"):
            tx.order_id, changed = outcome.body["order_id"], True
        if tx.confirmed_at is None:
            tx.confirmed_at, changed = carts.now(), True
        if changed:
            await db.commit()
            await db.refresh(tx)
        return tx
