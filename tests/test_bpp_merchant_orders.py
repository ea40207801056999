"""Merchants' orders over real HTTP: each merchant lists and reads only its providers' orders, moves
their fulfillment on through the allowed states, and every move reaches the buyer app as an
unsolicited on_status signed by the BPP and valid against the official 1.1.1 transaction.yaml.

A new order also reaches the merchant's webhook (a real receiver app), signed with the merchant's
secret and retried after a failure; and a real Lakou BAP takes the unsolicited on_status without error.

The network (registry, recording BAP, BPP with the demo catalogue) is the one of
tests/test_bpp_service.py; orders are placed by signed Beckn confirms from that BAP.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bap.app import create_app as create_bap
from bap.settings import BapSettings
from bap.tables import BapCallback
from beckn.store.db import create_engine, session_factory
from bpp.tables import BppOrder
from bpp.webhooks import SIGNATURE_HEADER, sign, url_allowed, verify
from conftest import free_port, serve_app
from test_bpp_merchant_api import SIRET_A, SIRET_B, Merchant, item, profile
from test_bpp_service import BILLING, Network, Received, confirm_message, net, spec  # noqa: F401

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store


def shop(net: Network, name: str, provider_id: str, *, siret: str, delivery: bool = False) -> Merchant:
    """A merchant with one provider selling one item (stock 50)."""
    merchant = Merchant(net, name)
    body = profile(provider_id, siret=siret, descriptor={"fr": {"name": name}})
    if delivery:
        body["fulfillment_types"] = ["Self-Pickup", "Delivery"]
    created = merchant.request("POST", "/providers", json=body)
    assert created.status_code == 201, created.text
    put = merchant.request("PUT", f"/providers/{provider_id}/items/{provider_id}-panier",
                           json=item("Panier péi", "Local basket", stock=50))
    assert put.status_code == 201, put.text
    return merchant


def place(net: Network, provider_id: str, count: int = 1, *, delivery: bool = False) -> dict[str, Any]:
    message = confirm_message(provider_id, (f"{provider_id}-panier", count))
    if delivery:
        message["order"]["fulfillments"] = [{"type": "Delivery", "stops": [{"type": "end", "location": {
            "gps": "14.6160, -61.0588", "address": "12 rue Victor Hugo, 97200 Fort-de-France"}}]}]
    on_confirm = net.call("confirm", message)
    assert "error" not in on_confirm, on_confirm
    return on_confirm


def statuses(net: Network, transaction_id: str, count: int, timeout: float = 10) -> list[Received]:
    """The first `count` on_status callbacks of the transaction, each checked (BPP signature, spec)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in net.bap.received
                 if r.path == "/beckn/on_status" and r.json["context"]["transaction_id"] == transaction_id]
        if len(found) >= count:
            for received in found:
                net.check(received, "on_status")
            return found
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} on_status for transaction {transaction_id}")


def test_merchants_see_only_their_orders_and_move_them_on_telling_the_buyer_app(net: Network) -> None:
    lea = shop(net, "Le Panier de Léa", "panier-lea", siret=SIRET_A)
    rene = shop(net, "Poissonnerie René", "poissonnerie-rene", siret=SIRET_B)
    first = place(net, "panier-lea", 2)["message"]["order"]
    second = place(net, "panier-lea", 1)["message"]["order"]
    theirs = place(net, "poissonnerie-rene", 1)["message"]["order"]

    # Newest first, paginated, and only the merchant's own.
    page = lea.request("GET", "/orders")
    assert page.status_code == 200, page.text
    assert [o["id"] for o in page.json()["orders"]] == [second["id"], first["id"]]
    assert page.json()["total"] == 2
    assert page.json()["orders"][0] | {"created_at": "", "updated_at": ""} == {
        "id": second["id"], "status": "ACTIVE", "fulfillment_state": "RECEIVED", "fulfillment_type": "Self-Pickup",
        "provider_id": "panier-lea", "total": "4.50", "currency": "EUR", "created_at": "", "updated_at": ""}
    one = lea.request("GET", "/orders", params={"limit": 1, "offset": 1}).json()
    assert [o["id"] for o in one["orders"]] == [first["id"]] and one["total"] == 2
    assert [o["id"] for o in rene.request("GET", "/orders").json()["orders"]] == [theirs["id"]]
    assert lea.request("GET", "/orders", params={"limit": 0}).status_code == 422

    # The detail shows the merchant's own customer; another merchant's order is a 404, like a missing one.
    detail = lea.request("GET", f"/orders/{first['id']}")
    assert detail.status_code == 200
    assert detail.json()["order"]["billing"]["phone"] == BILLING["phone"]
    assert detail.json()["fulfillment_state"] == "RECEIVED" and detail.json()["allowed_next_states"] == ["PACKED"]
    for missing in (theirs["id"], "LKU-0000000000"):
        assert lea.request("GET", f"/orders/{missing}").status_code == 404
        assert lea.request("POST", f"/orders/{missing}/state",
                           json={"fulfillment_state": "PACKED"}).status_code == 404
    assert net.http.get(f"{net.bpp}/api/v1/merchant/orders").status_code == 401

    # An illegal move is refused with the current state and the allowed ones; nothing is sent.
    skipped = lea.request("POST", f"/orders/{first['id']}/state", json={"fulfillment_state": "COMPLETED"})
    assert skipped.status_code == 409
    assert skipped.json()["detail"] | {"message": ""} == {
        "message": "", "status": "ACTIVE", "fulfillment_state": "RECEIVED", "allowed_next_states": ["PACKED"]}
    # An unknown state is refused by the request's validation.
    assert lea.request("POST", f"/orders/{first['id']}/state",
                       json={"fulfillment_state": "SHIPPED"}).status_code == 422

    # RECEIVED -> PACKED -> READY_FOR_PICKUP -> COMPLETED, each told to the buyer app.

    for state in ("PACKED", "READY_FOR_PICKUP", "COMPLETED"):
        moved = lea.request("POST", f"/orders/{first['id']}/state", json={"fulfillment_state": state})
        assert moved.status_code == 200, moved.text
        assert moved.json()["fulfillment_state"] == state
    assert moved.json()["order"]["status"] == "COMPLETE" and moved.json()["allowed_next_states"] == []
    transaction_id = _transaction_of(net, first["id"])
    told = statuses(net, transaction_id, 3)
    assert [r.json["message"]["order"]["fulfillments"][0]["state"]["descriptor"]["code"] for r in told] == \
        ["PACKED", "READY_FOR_PICKUP", "COMPLETED"]
    confirm_message_id = _confirm_message_id(net, transaction_id)
    message_ids = {r.json["context"]["message_id"] for r in told}
    assert len(message_ids) == 3 and confirm_message_id not in message_ids  # unsolicited: new message ids
    last = told[-1].json
    assert last["message"]["order"]["id"] == first["id"] and last["message"]["order"]["status"] == "COMPLETE"
    assert last["context"]["bap_id"] == "bap.lakou.test" and last["context"]["domain"] == "lakou:retail"
    assert "lakou" not in last["message"]["order"]["fulfillments"][0]  # the private record stays private

    # A completed order does not move again.
    again = lea.request("POST", f"/orders/{first['id']}/state", json={"fulfillment_state": "COMPLETED"})
    assert again.status_code == 409 and again.json()["detail"]["allowed_next_states"] == []

    # Once PACKED, the buyer can no longer cancel free.
    assert lea.request("POST", f"/orders/{second['id']}/state", json={"fulfillment_state": "PACKED"}).status_code == 200
    refused = net.call("cancel", {"order_id": second["id"], "cancellation_reason_id": "001"},
                       transaction_id=_transaction_of(net, second["id"]))
    assert refused["error"]["code"] == "50001"


def test_a_cancelled_order_cannot_advance_and_delivery_goes_out_for_delivery(net: Network) -> None:
    lea = shop(net, "Le Panier de Léa", "panier-lea", siret=SIRET_A, delivery=True)
    cancelled = place(net, "panier-lea")["message"]["order"]
    transaction_id = _transaction_of(net, cancelled["id"])
    on_cancel = net.call("cancel", {"order_id": cancelled["id"], "cancellation_reason_id": "002"},
                         transaction_id=transaction_id)
    assert on_cancel["message"]["order"]["status"] == "CANCELLED"
    refused = lea.request("POST", f"/orders/{cancelled['id']}/state", json={"fulfillment_state": "PACKED"})
    assert refused.status_code == 409
    assert refused.json()["detail"] | {"message": ""} == {
        "message": "", "status": "CANCELLED", "fulfillment_state": "CANCELLED", "allowed_next_states": []}
    assert "cancelled" in refused.json()["detail"]["message"]

    delivered = place(net, "panier-lea", delivery=True)["message"]["order"]
    assert lea.request("POST", f"/orders/{delivered['id']}/state", json={"fulfillment_state": "PACKED"}).json()[
        "allowed_next_states"] == ["OUT_FOR_DELIVERY"]
    wrong = lea.request("POST", f"/orders/{delivered['id']}/state", json={"fulfillment_state": "READY_FOR_PICKUP"})
    assert wrong.status_code == 409 and wrong.json()["detail"]["allowed_next_states"] == ["OUT_FOR_DELIVERY"]
    out = lea.request("POST", f"/orders/{delivered['id']}/state", json={"fulfillment_state": "OUT_FOR_DELIVERY"})
    assert out.status_code == 200
    told = statuses(net, _transaction_of(net, delivered["id"]), 2)
    assert told[-1].json["message"]["order"]["fulfillments"][0]["state"]["descriptor"]["code"] == "OUT_FOR_DELIVERY"
    assert told[-1].json["message"]["order"]["fulfillments"][0]["type"] == "Delivery"


def _transaction_of(net: Network, order_id: str) -> str:
    return net.query(select(BppOrder.transaction_id).where(BppOrder.id == order_id))[0][0]


def _confirm_message_id(net: Network, transaction_id: str) -> str:
    return net.query(select(BppOrder.confirm_message_id).where(BppOrder.transaction_id == transaction_id))[0][0]


# ------------------------------------------------------------------------------ webhooks


@dataclass
class Receiver:
    """A merchant's webhook endpoint: records each POST; the first `failures` answer 503."""

    failures: int = 0
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    answered: int = 0
    url: str = ""

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            self.answered += 1
            if self.answered <= self.failures:
                return Response("busy", status_code=503)
            self.received.append((await request.body(), dict(request.headers)))
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", endpoint, methods=["POST"])])

    def wait(self, count: int = 1, timeout: float = 15) -> list[tuple[bytes, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} webhook(s) received, {count} expected"
            time.sleep(0.05)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(failures=1)
    with serve_app(hook.app()) as base:
        hook.url = f"{base}/hook"
        yield hook


def test_a_new_order_reaches_the_merchant_webhook_signed_and_retried(net: Network, receiver: Receiver) -> None:
    lea = shop(net, "Le Panier de Léa", "panier-lea", siret=SIRET_A)
    rene = shop(net, "Poissonnerie René", "poissonnerie-rene", siret=SIRET_B)
    assert lea.request("GET", "/webhook").status_code == 404
    refused = lea.request("PUT", "/webhook", json={"url": "http://panier-lea.mq/hook"})
    assert refused.status_code == 422 and "https" in refused.text
    registered = lea.request("PUT", "/webhook", json={"url": receiver.url})
    assert registered.status_code == 200, registered.text
    secret = registered.json()["secret"]
    assert registered.json()["signature_header"] == SIGNATURE_HEADER
    assert "secret" not in lea.request("GET", "/webhook").json()

    order = place(net, "panier-lea", 3)["message"]["order"]
    place(net, "poissonnerie-rene")  # René has no webhook: nothing is sent for his order

    # The receiver answers 503 first: the event comes again, with the same id, freshly signed.
    (body, headers), = receiver.wait(1)
    assert receiver.answered == 2
    event = json.loads(body)
    assert event["type"] == "order.created" and event["id"].startswith("evt_")
    assert event["data"] == {"order_id": order["id"], "provider_id": "panier-lea", "status": "ACTIVE",
                             "total": "13.50", "currency": "EUR", "fulfillment_type": "Self-Pickup"}
    assert "Léa Marie-Sainte" not in body.decode() and BILLING["phone"] not in body.decode()  # ids, not people
    signature = headers[SIGNATURE_HEADER.lower()]
    assert verify(secret, signature, body)
    # A wrong secret, a changed body or an old timestamp does not verify.
    assert not verify(secret + "x", signature, body)
    assert not verify(rene_secret(rene), signature, body)
    assert not verify(secret, signature, body.replace(b"13.50", b"1.35"))
    assert not verify(secret, sign(secret, body, int(time.time()) - 3600), body)
    assert not verify(secret, "v1=" + signature.split("v1=")[1], body)

    # Deleting the webhook stops the events.
    assert lea.request("DELETE", "/webhook").status_code == 204
    place(net, "panier-lea")
    time.sleep(1.5)
    assert len(receiver.received) == 1


def rene_secret(rene: Merchant) -> str:
    """Another merchant's secret, for an endpoint that is not René's own."""
    created = rene.request("PUT", "/webhook", json={"url": "https://poissonnerie-rene.mq/hook"})
    assert created.status_code == 200
    return created.json()["secret"]


@pytest.mark.parametrize("url, ok", [
    ("https://panier-lea.mq/hook", True), ("http://127.0.0.1:8080/hook", True), ("http://localhost/h", True),
    ("http://[::1]:9000/h", True), ("http://panier-lea.mq/hook", False), ("ftp://panier-lea.mq/hook", False),
    ("https://user:pw@panier-lea.mq/", False), ("http://10.0.0.1/hook", False), ("not a url", False),
])
def test_webhook_urls_are_https_or_loopback(url: str, ok: bool) -> None:
    assert url_allowed(url) is ok


def test_the_lakou_bap_takes_an_unsolicited_on_status_without_error(net: Network, tmp_path: Path) -> None:
    """The BPP's on_status, replayed byte for byte (with its signature) to a real Lakou BAP, is
    acknowledged and recorded as unsolicited (the BAP did not ask): no error, nothing shown."""
    lea = shop(net, "Le Panier de Léa", "panier-lea", siret=SIRET_A)
    order = place(net, "panier-lea")["message"]["order"]
    assert lea.request("POST", f"/orders/{order['id']}/state", json={"fulfillment_state": "PACKED"}).status_code == 200
    sent, = statuses(net, _transaction_of(net, order["id"]), 1)

    bap_db = f"sqlite+aiosqlite:///{tmp_path / 'bap.db'}"
    port = free_port()
    settings = BapSettings(data_dir=tmp_path / "bap", database_url=bap_db, registry_url=net.registry.url,
                           subscriber_id="bap.lakou.test")
    with serve_app(create_bap(settings, port=port), port=port) as bap_url:
        answer = net.http.post(f"{bap_url}/beckn/on_status", content=sent.body, headers={
            "Content-Type": "application/json", "Authorization": sent.headers["authorization"]})
        assert answer.status_code == 200 and answer.json()["message"]["ack"]["status"] == "ACK", answer.text
        deadline = time.monotonic() + 10
        while True:
            verdicts = net_query(bap_db, select(BapCallback.status, BapCallback.action, BapCallback.bpp_id))
            if verdicts:
                break
            assert time.monotonic() < deadline, "the BAP recorded no verdict for the on_status"
            time.sleep(0.05)
        assert verdicts == [("unsolicited", "on_status", net.bpp_id)]
        assert net.http.get(f"{bap_url}/health").status_code == 200


def net_query(db_url: str, statement: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(db_url)
        try:
            async with session_factory(engine)() as session:
                return [tuple(row) for row in (await session.execute(statement)).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())
