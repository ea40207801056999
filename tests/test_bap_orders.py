"""The citizen's orders through the BAP's API, against real Lakou processes (registry, gateway, BPP,
BAP as `lakou serve`): list and detail, live updates over Server-Sent Events read with a real HTTP
client while the merchant moves the order on through the BPP's merchant API, cancel under the
merchant's terms (the fee), track, rating, support, update, and what the BAP refuses to believe.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from beckn.node import wire_timestamp
from conftest import scratch_postgres_database
from network import Network, ServiceProcess
from test_bap_service import Identity, callback_request
from test_bpp_merchant_api import item, profile
from test_bpp_merchant_orders import net_query

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

PROVIDER = "panier-lea"
ITEM = f"{PROVIDER}-panier"
PRICE = Decimal("4.50")
BILLING = {"name": "Marie Joseph", "phone": "+596696000001", "email": "marie@example.mq"}


class World:
    def __init__(self, net: Network, bpp: ServiceProcess, bap: ServiceProcess, bap_db: str, merchant_key: str,
                 intruder: Identity) -> None:
        self.net, self.bpp, self.bap, self.bap_db = net, bpp, bap, bap_db
        self.merchant_key = merchant_key
        self.intruder = intruder
        self.bpp_id = bpp.env["LAKOU_SUBSCRIBER_ID"]

    def citizen(self, lang: str | None = None) -> httpx.Client:
        token = httpx.post(self.bap.url + "/api/v1/sessions", timeout=10).json()["token"]
        client = httpx.Client(base_url=self.bap.url + "/api/v1", timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
        if lang:
            client.headers["Accept-Language"] = lang
        return client

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Read the BAP's store (SQLite or PostgreSQL) while it runs."""
        return net_query(self.bap_db, text(sql).bindparams(**params))

    def move(self, order_id: str, state: str) -> None:
        """The merchant moves the order on (the BPP then sends an unsolicited on_status)."""
        moved = httpx.post(f"{self.bpp.url}/api/v1/merchant/orders/{order_id}/state",
                           json={"fulfillment_state": state},
                           headers={"Authorization": f"Bearer {self.merchant_key}"}, timeout=10)
        assert moved.status_code == 200, moved.text

    def search(self, client: httpx.Client) -> str:
        """A search that found the merchant's basket; its id."""
        search = client.post("/searches", json={"query": "Panier péi", "lang": "fr", "city": "insee:97213",
                                                "ttl_seconds": 5})
        assert search.status_code == 202, search.text
        tx = search.json()["id"]
        deadline = time.monotonic() + 20
        while True:
            results = client.get(f"/searches/{tx}/results", params={"wait_ms": 2000}).json()
            if any(o["provider"]["id"] == PROVIDER for o in results["offers"]):
                return tx
            assert time.monotonic() < deadline, results

    def place_delivery(self, client: httpx.Client, address: str, gps: str) -> dict[str, Any]:
        """A delivery order through the app's cart → checkout → order API."""
        return self.order_cart(client, {"type": "delivery", "address": address, "gps": gps})

    def order_cart(self, client: httpx.Client, fulfillment: dict[str, Any], payment: str | None = None,
                   count: int = 1) -> dict[str, Any]:
        """An order through the app's cart → checkout → (pay →) order API."""
        cart = client.post("/carts", json={"search_id": self.search(client), "bpp_id": self.bpp_id,
                                           "provider_id": PROVIDER, "items": [{"id": ITEM, "quantity": count}],
                                           "wait_ms": 10000})
        assert cart.status_code == 201, cart.text
        cart_id = cart.json()["id"]
        checkout = client.post(f"/carts/{cart_id}/checkout", json={
            "billing": BILLING, "fulfillment": fulfillment, "wait_ms": 10000,
            **({"payment": {"type": payment}} if payment else {})})
        assert checkout.status_code == 200, checkout.text
        if payment == "prepay":
            charge_id = checkout.json()["payment"]["url"].rsplit("/", 1)[-1]
            paid = httpx.post(f"{self.bpp.url}/sandbox/api/charges/{charge_id}/pay", timeout=10)
            assert paid.status_code == 200, paid.text
        ordered = client.post(f"/carts/{cart_id}/order", json={
            "accept_total": checkout.json()["quote"]["total"]["value"], "wait_ms": 10000})
        assert ordered.status_code == 201, ordered.text
        return ordered.json()

    def place(self, client: httpx.Client, count: int = 1) -> dict[str, Any]:
        """Search, select, init (pickup), confirm through the BAP's low-level transaction API."""
        tx = self.search(client)
        steps = [
            ("select", {"bpp_id": self.bpp_id, "provider_id": PROVIDER, "items": [{"id": ITEM, "quantity": count}],
                        "wait_ms": 10000}),
            ("init", {"billing": BILLING, "fulfillment": {"type": "pickup"}, "wait_ms": 10000}),
            ("confirm", {"wait_ms": 10000}),
        ]
        answer: dict[str, Any] = {}
        for step, body in steps:
            response = client.post(f"/transactions/{tx}/{step}", json=body)
            assert response.status_code == 200, (step, response.text)
            answer = response.json()
        assert answer["order_id"], answer
        return {"id": tx, "order_id": answer["order_id"]}


@contextmanager
def bap_database(backend: str, root: Path) -> Iterator[str]:
    """The BAP's database: SQLite in its data dir, or a fresh PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{root / 'bap' / 'lakou.db'}"
        return
    with scratch_postgres_database() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Registry, gateway, BPP and BAP as real processes; the BAP's store on each backend."""
    root = tmp_path_factory.mktemp("orders")
    net = Network(root)
    with bap_database(request.param, root) as bap_db:
        try:
            yield from _world(net, bap_db)
        finally:
            net.stop_all()


def _world(net: Network, bap_db: str) -> Iterator[World]:
    registry = net.start("registry")
    net.wait_ready(registry)
    gateway = net.start("gateway")
    bpp = net.start("bpp", extra_env={"LAKOU_BPP_ON_SEARCH_VIA": "direct", "LAKOU_BPP_PAYMENT_PROCESSOR": "sandbox"})
    bap = net.start("bap", extra_env={"LAKOU_DATABASE_URL": bap_db})
    net.wait_ready(gateway, bpp, bap)
    admin = {"Authorization": f"Bearer {net.bpp_admin_token}"}
    created = httpx.post(f"{bpp.url}/api/v1/admin/merchants", json={"name": "Le Panier de Léa"}, headers=admin)
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    merchant = {"Authorization": f"Bearer {key}"}
    # Free cancellation while RECEIVED; once packed, the merchant keeps 20 %.
    body = profile(PROVIDER, descriptor={"fr": {"name": "Le Panier de Léa"}, "en": {"name": "Lea's basket"}},
                   cancellation_terms=[{"state": "RECEIVED", "fee_percent": "0"},
                                       {"state": "PACKED", "fee_percent": "20"}],
                   fulfillment_types=["Self-Pickup", "Delivery"],
                   delivery={"radius_km": "15", "fee": "2.00"},
                   payment_types=["ON-FULFILLMENT", "PRE-ORDER"])
    made = httpx.post(f"{bpp.url}/api/v1/merchant/providers", json=body, headers=merchant)
    assert made.status_code == 201, made.text
    put = httpx.put(f"{bpp.url}/api/v1/merchant/providers/{PROVIDER}/items/{ITEM}",
                    json=item("Panier péi", "Local basket", price=str(PRICE), stock=500), headers=merchant)
    assert put.status_code == 201, put.text
    # A BPP of the network that has nothing to do with the citizen's orders.
    intruder = Identity("intrus.bpp.test", "BPP")
    admitted = httpx.post(f"{registry.url}/admin/participants", json=intruder.record("http://127.0.0.1:9/beckn"),
                          headers={"Authorization": f"Bearer {net.admin_token}"})
    assert admitted.status_code == 201, admitted.text
    yield World(net, bpp, bap, bap_db, key, intruder)


class Stream:
    """Reads a BAP event stream with httpx in a thread: parsed events land in `events`."""

    def __init__(self, client: httpx.Client, path: str, last_event_id: str | None = None) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.comments: list[str] = []
        self.status: int | None = None
        self._client = httpx.Client(base_url=str(client.base_url), headers=dict(client.headers),
                                    timeout=httpx.Timeout(30, read=60))
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, headers), daemon=True)
        self._thread.start()

    def _run(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    self.events.put({"status": response.status_code, "body": response.read().decode()})
                    return
                event: dict[str, Any] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line.startswith("id: "):
                        event["id"] = line[4:]
                    elif line.startswith("event: "):
                        event["event"] = line[7:]
                    elif line.startswith("data: "):
                        event["data"] = json.loads(line[6:])
                    elif line == "" and event:
                        self.events.put(event)
                        event = {}
        except httpx.HTTPError:
            return

    def next(self, timeout: float = 15) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self._stop.set()
        self._client.close()


def _callbacks(world: World, transaction_id: str) -> list[tuple[Any, ...]]:
    return world.rows("SELECT action, status, bpp_id FROM bap_callback WHERE transaction_id = :tx ORDER BY id",
                      tx=transaction_id)


# ------------------------------------------------------------------------------------------ tests


def test_orders_are_listed_newest_first_and_detailed_in_plain_fields(world: World) -> None:
    with world.citizen() as client:
        assert client.get("/orders").json() == {"page": 1, "page_size": 20, "total": 0, "orders": []}
        first = world.place(client, 1)
        second = world.place(client, 2)
        listed = client.get("/orders").json()
        assert listed["total"] == 2 and [o["id"] for o in listed["orders"]] == [second["id"], first["id"]]
        paged = client.get("/orders", params={"page": 2, "page_size": 1}).json()
        assert paged["total"] == 2 and [o["id"] for o in paged["orders"]] == [first["id"]]

        order = client.get(f"/orders/{second['id']}").json()
        assert order["id"] == second["id"] and order["order_id"] == second["order_id"]
        assert order["bpp_id"] == world.bpp_id
        assert order["provider"] == {"id": PROVIDER, "name": "Le Panier de Léa"}
        assert order["items"] == [{"id": ITEM, "name": "Panier péi", "quantity": 2,
                                   "unit_price": {"currency": "EUR", "value": "4.50"}}]
        assert order["quote"]["total"] == {"currency": "EUR", "value": "9.00"}
        assert order["status"] == "ACTIVE" and order["state"]["code"] == "RECEIVED"
        assert order["fulfillment"]["type"] == "pickup"
        assert order["fulfillment"]["pickup"]["address"] and order["fulfillment"]["pickup"]["gps"]
        assert order["payment"]["type"] == "on_fulfillment" and order["payment"]["status"] == "not_paid"
        assert order["payment"]["amount"] == {"currency": "EUR", "value": "9.00"}
        assert order["cancellation"] is None
        assert [(t["state"], t["fee_percent"]) for t in order["cancellation_terms"]] == [("RECEIVED", "0"),
                                                                                        ("PACKED", "20")]
        assert order["return_terms"]["returnable"] is False
        assert order["confirmed_at"] and order["created_at"]
        # A cart not yet confirmed (here a bare search) is not an order.
        search = client.post("/searches", json={"query": "ananas", "ttl_seconds": 1}).json()
        assert client.get(f"/orders/{search['id']}").status_code == 404


def test_the_merchant_moving_the_order_on_reaches_the_app_over_sse(world: World) -> None:
    with world.citizen() as client:
        placed = world.place(client)
        stream = Stream(client, f"/orders/{placed['id']}/events")
        try:
            confirmed = stream.next()
            assert stream.status == 200
            assert confirmed["event"] == "order" and confirmed["data"]["update"] == "on_confirm"
            assert confirmed["data"]["solicited"] is True
            assert confirmed["data"]["order"]["state"]["code"] == "RECEIVED"

            world.move(placed["order_id"], "PACKED")
            packed = stream.next()
            assert packed["data"]["update"] == "on_status" and packed["data"]["solicited"] is False
            assert packed["data"]["order"]["state"]["code"] == "PACKED"
            assert packed["data"]["order"]["state"]["label"]  # the merchant's localised name of the state
            world.move(placed["order_id"], "READY_FOR_PICKUP")
            ready = stream.next()
            assert ready["data"]["order"]["state"]["code"] == "READY_FOR_PICKUP"
            assert int(ready["id"]) > int(packed["id"]) > int(confirmed["id"])
            assert stream.comments  # the stream opens with a comment (heartbeats are comments too)
        finally:
            stream.close()

        # The BPP retransmitting its first on_status (the same signed bytes) changes nothing.
        body, headers = world.rows(
            "SELECT body, headers FROM inbound_message WHERE action = 'on_status' AND transaction_id = :tx "
            "ORDER BY id LIMIT 1", tx=placed["id"])[0]
        headers = json.loads(headers) if isinstance(headers, str) else headers
        auth = {k.lower(): v for k, v in headers.items()}["authorization"]
        replayed = httpx.post(f"{world.bap.url}/beckn/on_status", content=body, timeout=10,
                              headers={"Content-Type": "application/json", "Authorization": auth})
        assert replayed.status_code == 200, replayed.text

        # The order itself follows; the unsolicited callbacks were accepted, once each.
        assert client.get(f"/orders/{placed['id']}").json()["state"]["code"] == "READY_FOR_PICKUP"
        assert [row for row in _callbacks(world, placed["id"]) if row[0] == "on_status"] == [
            ("on_status", "accepted", world.bpp_id)] * 2

        # Reconnecting with Last-Event-ID resumes after that event.
        resumed = Stream(client, f"/orders/{placed['id']}/events", last_event_id=packed["id"])
        try:
            again = resumed.next()
            assert again["id"] == ready["id"] and again["data"]["order"]["state"]["code"] == "READY_FOR_PICKUP"
            world.move(placed["order_id"], "COMPLETED")
            done = resumed.next()
            assert done["data"]["order"]["state"]["code"] == "COMPLETED"
            assert done["data"]["order"]["status"] == "COMPLETE"
        finally:
            resumed.close()


def test_refresh_asks_the_merchant_for_the_state(world: World) -> None:
    with world.citizen() as client:
        placed = world.place(client)
        world.move(placed["order_id"], "PACKED")
        refreshed = client.post(f"/orders/{placed['id']}/refresh", json={"wait_ms": 10000})
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["status"] == "answered"
        assert refreshed.json()["order"]["state"]["code"] == "PACKED"
        # Without waiting: 202 pending, and the answer can be polled by its message id.
        world.move(placed["order_id"], "READY_FOR_PICKUP")
        pending = client.post(f"/orders/{placed['id']}/refresh", json={"wait_ms": 0})
        assert pending.status_code in (200, 202), pending.text
        if pending.status_code == 202:
            assert pending.json()["status"] == "pending" and pending.json()["error"] is None
            polled = client.get(f"/transactions/{placed['id']}/messages/{pending.json()['message_id']}",
                                params={"wait_ms": 10000})
            assert polled.status_code == 200 and polled.json()["state"] == "READY_FOR_PICKUP", polled.text
        assert client.get(f"/orders/{placed['id']}").json()["state"]["code"] == "READY_FOR_PICKUP"


def test_cancel_follows_the_merchants_terms_and_shows_the_fee(world: World) -> None:
    with world.citizen() as client:
        free = world.place(client)
        cancelled = client.post(f"/orders/{free['id']}/cancel", json={"reason_id": "002", "wait_ms": 10000})
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["order"]["status"] == "CANCELLED" and body["order"]["state"]["code"] == "CANCELLED"
        assert body["result"]["cancellation"]["fee"] == {"currency": "EUR", "value": "0.00"}
        assert body["result"]["cancellation"]["reason"] == {"id": "002", "name": "Commande passée par erreur"}

        packed = world.place(client, 2)
        world.move(packed["order_id"], "PACKED")
        stream = Stream(client, f"/orders/{packed['id']}/events")
        try:
            assert stream.next()["data"]["update"] == "on_confirm"
            assert stream.next()["data"]["order"]["state"]["code"] == "PACKED"
            cancelled = client.post(f"/orders/{packed['id']}/cancel",
                                    json={"reason_id": "004", "comment": "Trop tard pour moi", "wait_ms": 10000})
            assert cancelled.status_code == 200, cancelled.text
            cancellation = cancelled.json()["result"]["cancellation"]
            assert cancellation["fee"] == {"currency": "EUR", "value": "1.80"}  # 20 % of 9.00
            assert cancellation["fee_percent"] == "20" and cancellation["comment"] == "Trop tard pour moi"
            assert cancelled.json()["order"]["quote"]["total"]["value"] == "1.80"
            pushed = stream.next()
            assert pushed["data"]["update"] == "on_cancel" and pushed["data"]["order"]["status"] == "CANCELLED"
        finally:
            stream.close()

        # Cancelling again: the merchant refuses (50001), in the citizen's language.
        again = client.post(f"/orders/{packed['id']}/cancel", json={"reason_id": "001", "wait_ms": 10000},
                            headers={"Accept-Language": "en"})
        assert again.status_code == 422, again.text
        assert again.json()["status"] == "error" and again.json()["error"]["code"] == "50001"
        assert again.json()["error"]["message"] and "cancelled" in again.json()["error"]["detail"]
        assert again.json()["order"]["status"] == "CANCELLED"

        # A reason the network does not know: refused by the merchant (30011), nothing changes.
        active = world.place(client)
        unknown = client.post(f"/orders/{active['id']}/cancel", json={"reason_id": "999", "wait_ms": 10000})
        assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "30011"
        assert client.get(f"/orders/{active['id']}").json()["status"] == "ACTIVE"
        assert client.post(f"/orders/{active['id']}/cancel", json={}).status_code == 422


def test_cancelling_a_prepaid_order_shows_the_fee_kept_and_the_refund(world: World) -> None:
    with world.citizen() as client:
        order = world.order_cart(client, {"type": "pickup"}, payment="prepay", count=2)
        assert order["payment"]["type"] == "prepay" and order["payment"]["status"] == "paid"
        assert order["payment"]["url"] is None
        world.move(order["order_id"], "PACKED")
        cancelled = client.post(f"/orders/{order['id']}/cancel", json={"reason_id": "003", "wait_ms": 10000})
        assert cancelled.status_code == 200, cancelled.text
        cancellation = cancelled.json()["result"]["cancellation"]
        assert cancellation["fee"] == {"currency": "EUR", "value": "1.80"}  # 20 % of 9.00, kept
        assert cancellation["refunded"] == {"currency": "EUR", "value": "7.20"}  # the rest, given back
        assert cancelled.json()["order"]["payment"]["refunded"]["value"] == "7.20"


def test_cancellation_reasons_in_each_language(world: World) -> None:
    with world.citizen() as client:
        names = {}
        for lang in ("fr", "en", "es", "de"):
            answer = client.get("/cancellation-reasons", params={"lang": lang})
            assert answer.status_code == 200 and answer.json()["lang"] == lang
            reasons = answer.json()["reasons"]
            assert [r["id"] for r in reasons] == ["001", "002", "003", "004", "005"]
            names[lang] = reasons[1]["name"]
        assert names == {"fr": "Commande passée par erreur", "en": "Ordered by mistake",
                         "es": "Pedido hecho por error", "de": "Versehentlich bestellt"}
        by_header = client.get("/cancellation-reasons", headers={"Accept-Language": "de-DE,de;q=0.9"}).json()
        assert by_header["lang"] == "de"
        bad = client.get("/cancellation-reasons", params={"lang": "it"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_track_support_and_rating(world: World) -> None:
    with world.citizen() as client:
        placed = world.place(client)
        tracked = client.post(f"/orders/{placed['id']}/track", json={"wait_ms": 10000})
        assert tracked.status_code == 200, tracked.text
        assert tracked.json()["result"]["tracking"]["status"] == "active"
        assert tracked.json()["result"]["tracking"]["location"]["gps"]

        support = client.post(f"/orders/{placed['id']}/support", json={"wait_ms": 10000})
        assert support.status_code == 200, support.text
        assert support.json()["result"]["support"] == {"phone": "+596596123456", "email": "contact@panier-lea.mq",
                                                       "url": "https://panier-lea.mq"}

        rated = client.post(f"/orders/{placed['id']}/rating", json={"ratings": [
            {"category": "order", "value": 5}, {"category": "item", "id": ITEM, "value": 4},
            {"category": "provider", "value": 5}], "wait_ms": 10000})
        assert rated.status_code == 200, rated.text
        assert rated.json()["result"]["ratings"][0] == {"category": "order", "id": placed["order_id"], "value": 5}
        # Stars are 1-5; an item needs its id; an item not in the order is the merchant's refusal.
        assert client.post(f"/orders/{placed['id']}/rating",
                           json={"ratings": [{"category": "order", "value": 6}]}).status_code == 422
        assert client.post(f"/orders/{placed['id']}/rating",
                           json={"ratings": [{"category": "item", "value": 3}]}).status_code == 422
        foreign = client.post(f"/orders/{placed['id']}/rating", json={
            "ratings": [{"category": "item", "id": "pas-dans-la-commande", "value": 3}], "wait_ms": 10000})
        assert foreign.status_code == 422 and foreign.json()["error"]["code"] == "30014", foreign.text


def test_update_billing_and_delivery_address(world: World) -> None:
    with world.citizen() as client:
        placed = world.place(client)
        updated = client.patch(f"/orders/{placed['id']}", json={
            "billing": {"phone": "+596696112233", "email": "marie.joseph@example.mq"}, "wait_ms": 10000})
        assert updated.status_code == 200, updated.text
        assert updated.json()["result"] == {"updated": ["billing"]}
        billing = client.get(f"/orders/{placed['id']}").json()["billing"]
        assert billing["phone"] == "+596696112233" and billing["email"] == "marie.joseph@example.mq"
        assert billing["name"] == BILLING["name"]

        # A pickup order has no drop-off: the merchant refuses, in the citizen's language.
        moved = client.patch(f"/orders/{placed['id']}", json={
            "delivery": {"address": "12 rue Victor Hugo, 97200 Fort-de-France", "gps": "14.6160, -61.0588"},
            "wait_ms": 10000}, headers={"Accept-Language": "es"})
        assert moved.status_code == 422, moved.text
        assert moved.json()["error"]["code"] == "30013"
        assert moved.json()["order"]["fulfillment"]["delivery"] is None

        # A delivery (ordered through the cart API): the drop-off moves while the order is not yet out.
        delivery = world.place_delivery(client, "Marché couvert, 97232 Le Lamentin", "14.6100, -60.9970")
        assert delivery["fulfillment"]["type"] == "delivery"
        assert delivery["fulfillment"]["delivery"]["address"] == "Marché couvert, 97232 Le Lamentin"
        assert delivery["quote"]["total"]["value"] == "6.50"  # 4.50 + the 2.00 delivery fee
        assert client.get("/orders").json()["orders"][0]["id"] == delivery["id"]
        moved = client.patch(f"/orders/{delivery['id']}", json={
            "delivery": {"address": "12 rue Victor Hugo, 97200 Fort-de-France", "gps": "14.6160, -61.0588"},
            "wait_ms": 10000})
        assert moved.status_code == 200, moved.text
        assert moved.json()["result"] == {"updated": ["delivery"]}
        assert moved.json()["order"]["fulfillment"]["delivery"] == {
            "address": "12 rue Victor Hugo, 97200 Fort-de-France", "gps": "14.6160, -61.0588"}
        # Too far for the merchant's delivery zone: refused, nothing changes.
        far = client.patch(f"/orders/{delivery['id']}", json={
            "delivery": {"address": "Grand-Rivière", "gps": "14.8700, -61.1800"}, "wait_ms": 10000})
        assert far.status_code == 422 and far.json()["error"]["code"] == "30008", far.text
        assert client.get(f"/orders/{delivery['id']}").json()["fulfillment"]["delivery"]["gps"] == "14.6160, -61.0588"

        assert client.patch(f"/orders/{placed['id']}", json={}).status_code == 422
        assert client.patch(f"/orders/{placed['id']}", json={"billing": {"email": "pas-un-mail"}}).status_code == 422


def _push(world: World, transaction_id: str, order: dict[str, Any]) -> tuple[str, httpx.Response]:
    """An on_status signed by the intruder BPP, posted to the BAP as a BPP would."""
    context = {
        "domain": "lakou:retail", "location": {"country": {"code": "MTQ"}, "city": {"code": "insee:97213"}},
        "action": "status", "version": "1.1.0", "bap_id": world.bap.env["LAKOU_SUBSCRIBER_ID"],
        "bap_uri": world.bap.url + "/beckn", "transaction_id": transaction_id, "message_id": str(uuid.uuid4()),
        "timestamp": wire_timestamp(), "ttl": "PT30S",
    }
    url, body, headers = callback_request(world.intruder, "http://127.0.0.1:9", context, "on_status",
                                          {"message": {"order": order}})
    return context["message_id"], httpx.post(url, content=body, headers=headers, timeout=10)


def test_an_on_status_from_another_bpp_or_for_an_unknown_transaction_is_not_accepted(world: World) -> None:
    with world.citizen() as client:
        placed = world.place(client)
        beckn_order = client.get(f"/transactions/{placed['id']}").json()["order"]
        forged = {**beckn_order, "status": "CANCELLED"}
        forged["fulfillments"] = [{**beckn_order["fulfillments"][0],
                                   "state": {"descriptor": {"code": "CANCELLED"}}}]
        pushes = [_push(world, placed["id"], forged), _push(world, str(uuid.uuid4()), forged)]
        for message_id, answer in pushes:
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 10
        while True:
            verdicts = [world.rows("SELECT status FROM bap_callback WHERE message_id = :mid", mid=mid)
                        for mid, _ in pushes]
            if all(verdicts):
                break
            assert time.monotonic() < deadline, "the BAP recorded no verdict"
            time.sleep(0.05)
        assert verdicts == [[("unsolicited",)], [("unsolicited",)]]
        order = client.get(f"/orders/{placed['id']}").json()
        assert order["status"] == "ACTIVE" and order["state"]["code"] == "RECEIVED"


def test_another_session_sees_none_of_the_orders(world: World) -> None:
    with world.citizen() as owner, world.citizen() as other:
        placed = world.place(owner)
        assert other.get("/orders").json()["total"] == 0
        oid = placed["id"]
        for method, path, body in [
            ("GET", f"/orders/{oid}", None), ("GET", f"/orders/{oid}/events", None),
            ("POST", f"/orders/{oid}/refresh", {}), ("POST", f"/orders/{oid}/cancel", {"reason_id": "001"}),
            ("POST", f"/orders/{oid}/track", {}), ("POST", f"/orders/{oid}/support", {}),
            ("POST", f"/orders/{oid}/rating", {"ratings": [{"category": "order", "value": 1}]}),
            ("PATCH", f"/orders/{oid}", {"billing": {"name": "Intrus"}}),
        ]:
            answer = other.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
        # Nothing was sent on the other session's behalf: the owner's order is untouched.
        assert owner.get(f"/orders/{oid}").json()["status"] == "ACTIVE"
        assert owner.get("/orders").json()["total"] == 1
        assert other.get("/orders/unknown").status_code == 404
        assert httpx.get(f"{world.bap.url}/api/v1/orders", timeout=5).status_code == 401
