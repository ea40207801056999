"""The citizen journey behind `lakou demo`, as the citizen app would run it over the BAP's API:
session → search → results → cart → checkout → order → refresh. The printed steps keep the
Beckn names (select, init, confirm, status) so an operator sees what crossed the network."""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

# A demo citizen: the data the app would collect at checkout. Fictitious.
DEMO_BILLING = {
    "name": "Léa Démo",
    "phone": "+596696000000",
    "email": "lea.demo@example.invalid",
    "address": "1 rue Victor Hugo, 97200 Fort-de-France",
}


class JourneyFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def _describe_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        # The citizen's message, then the developer's detail (the merchant's own words, if any).
        detail = f" ({error['detail']})" if error.get("detail") and error.get("detail") != error.get("message") else ""
        return f"HTTP {response.status_code}: {error.get('code', '')} {error.get('message', '')}{detail}".strip()
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}: {detail or body}"


class _Journey:
    def __init__(self, client: httpx.Client, console: Console, timeout: float) -> None:
        self.client = client
        self.console = console
        self.timeout = timeout

    @property
    def wait_ms(self) -> int:
        return min(int(self.timeout * 1000), 30000)

    def call(self, step: str, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise JourneyFailed(step, f"cannot reach the BAP at {self.client.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise JourneyFailed(step, _describe_error(response))
        try:
            return response.status_code, response.json()
        except ValueError:
            raise JourneyFailed(step, f"the BAP answered non-JSON: {response.text[:200]}") from None

    def cart_until(self, step: str, cart_id: str, busy: str) -> dict[str, Any]:
        """Poll the cart while the merchant has not answered (`status` == `busy`), up to the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            _, cart = self.call(step, "GET", f"/api/v1/carts/{cart_id}", params={"wait_ms": 2000})
            if cart.get("status") != busy:
                return cart
            if time.monotonic() >= deadline:
                raise JourneyFailed(step, f"no answer from the BPP within {self.timeout:.0f} s")


def _refused(step: str, cart: dict[str, Any]) -> JourneyFailed:
    error = cart.get("error") or {}
    return JourneyFailed(step, f"the BPP refused: {error.get('code', '')} {error.get('message', '')}".strip())


def run_journey(bap_url: str, *, query: str, lang: str, quantity: int, timeout: float, console: Console,
                city: str | None = None, country: str | None = None) -> dict[str, Any]:
    """Search, pick the first offer, put it in a cart, check out, order, refresh: the app's API
    (`/searches`, `/carts`, `/orders`). Returns what happened, with the merchant's order id.
    `city`/`country` search another commune or territory than the BAP's own (e.g. insee:97120, GLP)."""
    with httpx.Client(base_url=bap_url.rstrip("/"), timeout=timeout + 10,
                      headers={"Accept-Language": lang}) as client:
        journey = _Journey(client, console, timeout)

        _, session = journey.call("session", "POST", "/api/v1/sessions")
        client.headers["Authorization"] = f"Bearer {session['token']}"

        console.rule(f"1. search «{query}» ({lang})")
        where = {name: value for name, value in (("city", city), ("country", country)) if value}
        _, started = journey.call("search", "POST", "/api/v1/searches", json={"query": query, "lang": lang, **where})
        search_id = started.get("id") or started["transaction_id"]
        console.print(f"search {search_id}")
        offers: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not offers and time.monotonic() < deadline:
            _, page = journey.call("search", "GET", f"/api/v1/searches/{search_id}/results",
                                   params={"wait_ms": 2000})
            offers = page.get("offers", [])
            if page.get("complete"):
                break
        if not offers:
            raise JourneyFailed("search", f"no offer for «{query}» within {timeout:.0f} s")
        table = Table(show_header=True)
        for column in ("merchant", "commune", "item", "price"):
            table.add_column(column)
        for offer in offers[:10]:
            price = offer["item"].get("price") or {}
            table.add_row(offer["provider"].get("name") or offer["provider"]["id"],
                          offer["provider"].get("city_name") or offer["provider"].get("city") or "",
                          offer["item"].get("name") or offer["item"]["id"],
                          f"{price.get('value', '?')} {price.get('currency', '')}")
        console.print(table)

        chosen = offers[0]
        item_name = chosen["item"].get("name") or chosen["item"]["id"]
        console.rule(f"2. select {quantity} × {item_name} (cart)")
        code, cart = journey.call("select", "POST", "/api/v1/carts", json={
            "search_id": search_id, "bpp_id": chosen["bpp_id"], "provider_id": chosen["provider"]["id"],
            "items": [{"id": chosen["item"]["id"], "quantity": quantity}], "wait_ms": journey.wait_ms})
        cart_id = cart["id"]
        if code == 202:
            cart = journey.cart_until("select", cart_id, "quoting")
        if cart.get("status") != "quoted":
            raise _refused("select", cart)
        total = (cart.get("quote") or {}).get("total") or {}
        console.print(f"cart {cart_id}, quote: {total.get('value', '?')} {total.get('currency', '')}")

        console.rule("3. init (billing and pickup: checkout)")
        code, checkout = journey.call("init", "POST", f"/api/v1/carts/{cart_id}/checkout", json={
            "billing": DEMO_BILLING, "fulfillment": {"type": "pickup"}, "wait_ms": journey.wait_ms})
        if code == 202:
            cart = journey.cart_until("init", cart_id, "checking_out")
            if cart.get("status") != "checked_out" or not cart.get("checkout"):
                raise _refused("init", cart)
            checkout = cart["checkout"]
        payment = checkout.get("payment") or {}
        quote = checkout.get("quote") or cart.get("quote") or {}
        to_pay = (quote.get("total") or {}).get("value")
        console.print(f"to pay: {to_pay} — payment: {payment.get('type', '?')} {payment.get('status', '')}".strip())
        if not to_pay:
            raise JourneyFailed("init", "the BPP stated no total to pay")

        console.rule("4. confirm (order)")
        code, order = journey.call("confirm", "POST", f"/api/v1/carts/{cart_id}/order",
                                   json={"accept_total": to_pay, "wait_ms": journey.wait_ms})
        if code == 202:
            cart = journey.cart_until("confirm", cart_id, "ordering")
            if cart.get("status") != "ordered":
                raise _refused("confirm", cart)
            _, order = journey.call("confirm", "GET", f"/api/v1/orders/{cart_id}")
        order_id = order.get("order_id")
        if not order_id:
            raise JourneyFailed("confirm", "the BPP confirmed without an order id")
        console.print(f"order [bold]{order_id}[/bold]")

        console.rule("5. status (refresh)")
        code, refreshed = journey.call("status", "POST", f"/api/v1/orders/{cart_id}/refresh",
                                       json={"wait_ms": journey.wait_ms})
        if code == 202 or refreshed.get("status") == "pending":
            raise JourneyFailed("status", f"no answer from the BPP within {timeout:.0f} s")
        status = refreshed.get("order") or {}
        state = status.get("state") if isinstance(status.get("state"), dict) else {}
        console.print(f"order {status.get('order_id', order_id)}: {state.get('code', '?')}"
                      + (f" ({state['label']})" if state.get("label") else ""))
        if status.get("order_id") not in (None, order_id):
            raise JourneyFailed("status", f"status names order {status.get('order_id')}, not {order_id}")
        console.print("[green]journey complete[/green]")
        return {"search_id": search_id, "cart_id": cart_id, "transaction_id": cart_id, "order_id": order_id,
                "status": status, "offer": chosen, "quote": quote, "order": order}
