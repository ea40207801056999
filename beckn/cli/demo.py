"""The citizen journey behind `lakou demo`, as the citizen app would run it over the BAP's API."""

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
        return f"HTTP {response.status_code}: {error.get('code', '')} {error.get('message', '')}".strip()
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}: {detail or body}"


class _Journey:
    def __init__(self, client: httpx.Client, console: Console, timeout: float) -> None:
        self.client = client
        self.console = console
        self.timeout = timeout

    def call(self, step: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise JourneyFailed(step, f"cannot reach the BAP at {self.client.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise JourneyFailed(step, _describe_error(response))
        try:
            return response.json()
        except ValueError:
            raise JourneyFailed(step, f"the BAP answered non-JSON: {response.text[:200]}") from None

    def answer(self, step: str, transaction_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction step and wait for the BPP's callback (polling if the BAP says pending)."""
        wait_ms = int(self.timeout * 1000)
        result = self.call(step, "POST", f"/api/v1/transactions/{transaction_id}/{step}",
                           json={**payload, "wait_ms": min(wait_ms, 30000)})
        deadline = time.monotonic() + self.timeout
        while result.get("status") == "pending" and time.monotonic() < deadline:
            result = self.call(step, "GET", f"/api/v1/transactions/{transaction_id}/messages/{result['message_id']}",
                               params={"wait_ms": 2000})
        if result.get("status") == "pending":
            raise JourneyFailed(step, f"no answer from the BPP within {self.timeout:.0f} s")
        if result.get("error"):
            error = result["error"]
            raise JourneyFailed(step, f"the BPP refused: {error.get('code', '')} {error.get('message', '')}".strip())
        return result


def run_journey(bap_url: str, *, query: str, lang: str, quantity: int, timeout: float, console: Console,
                city: str | None = None, country: str | None = None) -> dict[str, Any]:
    """Search, pick the first offer, select, init, confirm, status. Returns the final status answer.
    `city`/`country` search another commune or territory than the BAP's own (e.g. insee:97120, GLP)."""
    with httpx.Client(base_url=bap_url.rstrip("/"), timeout=timeout + 10) as client:
        journey = _Journey(client, console, timeout)

        session = journey.call("session", "POST", "/api/v1/sessions")
        client.headers["Authorization"] = f"Bearer {session['token']}"

        console.rule(f"1. search «{query}» ({lang})")
        where = {name: value for name, value in (("city", city), ("country", country)) if value}
        started = journey.call("search", "POST", "/api/v1/searches", json={"query": query, "lang": lang, **where})
        transaction_id = started["transaction_id"]
        console.print(f"transaction {transaction_id}")
        offers: list[dict[str, Any]] = []
        cursor: str | None = None
        deadline = time.monotonic() + timeout
        while not offers and time.monotonic() < deadline:
            params: dict[str, Any] = {"wait_ms": 2000}
            if cursor:
                params["after"] = cursor
            page = journey.call("search", "GET", f"/api/v1/searches/{transaction_id}/results", params=params)
            offers, cursor = page.get("offers", []), page.get("cursor") or cursor
            if page.get("complete"):
                break
        if not offers:
            raise JourneyFailed("search", f"no offer for «{query}» within {timeout:.0f} s")
        table = Table(show_header=True)
        for column in ("merchant", "commune", "item", "price"):
            table.add_column(column)
        for offer in offers[:10]:
            price = offer["item"].get("price") or {}
            table.add_row(offer["provider"].get("name") or offer["provider"]["id"], offer["provider"].get("city_name") or offer["provider"].get("city") or "",
                          offer["item"].get("name") or offer["item"]["id"],
                          f"{price.get('value', '?')} {price.get('currency', '')}")
        console.print(table)

        chosen = offers[0]
        item_name = chosen["item"].get("name") or chosen["item"]["id"]
        console.rule(f"2. select {quantity} × {item_name}")
        selected = journey.answer("select", transaction_id, {
            "bpp_id": chosen["bpp_id"], "provider_id": chosen["provider"]["id"],
            "items": [{"id": chosen["item"]["id"], "quantity": quantity}],
        })
        total = (selected.get("quote") or {}).get("total") or {}
        console.print(f"quote: {total.get('value', '?')} {total.get('currency', '')}")

        console.rule("3. init (billing and pickup)")
        initialised = journey.answer("init", transaction_id, {
            "billing": DEMO_BILLING, "fulfillment": {"type": "pickup"},
        })
        payment = initialised.get("payment") or {}
        console.print(f"payment: {payment.get('type', '?')} {payment.get('status', '')}".strip())

        console.rule("4. confirm")
        confirmed = journey.answer("confirm", transaction_id, {})
        order_id = confirmed.get("order_id")
        if not order_id:
            raise JourneyFailed("confirm", "the BPP confirmed without an order id")
        console.print(f"order [bold]{order_id}[/bold]")

        console.rule("5. status")
        status = journey.answer("status", transaction_id, {})
        console.print(f"order {status.get('order_id', order_id)}: {status.get('state', '?')}")
        if status.get("order_id") not in (None, order_id):
            raise JourneyFailed("status", f"status names order {status.get('order_id')}, not {order_id}")
        console.print("[green]journey complete[/green]")
        return {"transaction_id": transaction_id, "order_id": order_id, "status": status, "offer": chosen,
                "quote": selected.get("quote")}
