"""The BAP service end to end over real HTTP: a citizen-app client, the BAP, the Lakou registry, and a
peer playing the gateway and two BPPs that verifies what the BAP sends and signs its callbacks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nacl.public
import nacl.signing
import pytest
import yaml
from conftest import TRANSACTION_YAML, free_port, serve_app
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Table, select
from starlette.background import BackgroundTask
from test_conformance import Spec

from bap.app import create_app
from bap.settings import BapSettings
from registry.app import create_app as create_registry
from bap.tables import BapCallback, BapSession
from beckn.errors import ACK_BODY
from beckn.node import reply_context, wire_json
from beckn.registry_client import KeyResolver, RegistryClient
from beckn.settings import Settings
from beckn.signing import Signer, body_digest, parse_signature_header, verify_signature
from beckn.store.db import create_engine, session_factory
from beckn.store.tables import OutboxMessage
from beckn_examples import example_callback

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

DOMAIN = "lakou:retail"


@pytest.fixture(scope="module")
def spec() -> Spec:
    with TRANSACTION_YAML.open(encoding="utf-8") as f:
        return Spec(yaml.safe_load(f))


REGISTRY_TOKEN = "test-registry-token"


# ---------------------------------------------------------------------------------------------
# The peer: gateway + two BPPs on one host.
# ---------------------------------------------------------------------------------------------


@dataclass
class Identity:
    subscriber_id: str
    type: str
    key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    encryption_key: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)
    unique_key_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def signer(self) -> Signer:
        return Signer(self.subscriber_id, self.unique_key_id, self.key)

    def record(self, url: str) -> dict[str, Any]:
        return {
            "subscriber_id": self.subscriber_id, "type": self.type, "url": url, "domain": DOMAIN,
            "country": "MTQ", "city": "", "unique_key_id": self.unique_key_id,
            "signing_public_key": base64.b64encode(bytes(self.key.verify_key)).decode(),
            "encr_public_key": base64.b64encode(bytes(self.encryption_key.public_key)).decode(),
            "valid_from": "2020-01-01T00:00:00.000Z", "valid_until": "2099-01-01T00:00:00.000Z",
        }


@dataclass
class Peer:
    """Receives what the BAP sends; answers select/init/confirm/status by itself per `mode`."""

    resolver: KeyResolver
    spec: Spec
    bpp_a: Identity = field(default_factory=lambda: Identity("ferme.bpp.test", "BPP"))
    bpp_b: Identity = field(default_factory=lambda: Identity("epicerie.bpp.test", "BPP"))
    gateway: Identity = field(default_factory=lambda: Identity("gw.test", "BG"))
    received: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    mode: dict[str, str] = field(default_factory=dict)  # action -> "ok" | "error" | "nack" | "silent"
    delay: float = 0.05
    url: str = ""

    def identity(self, subscriber_id: str) -> Identity:
        return next(i for i in (self.bpp_a, self.bpp_b, self.gateway) if i.subscriber_id == subscriber_id)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/beckn/{action}")
        async def receive(action: str, request: Request) -> Response:
            body = await request.body()
            await self._check(action, body, request.headers)
            data = json.loads(body)
            self.received.append((action, data, dict(request.headers)))
            mode = self.mode.get(action, "ok")
            if mode == "nack":
                return JSONResponse({"message": {"ack": {"status": "NACK"}},
                                     "error": {"code": "30004", "message": "Item not found"}}, status_code=400)
            task = None if action == "search" or mode == "silent" else BackgroundTask(self._answer, action, data, mode)
            return Response(ACK_BODY, media_type="application/json", background=task)

        return app

    async def _check(self, action: str, body: bytes, headers: Any) -> None:
        """Verify the BAP's signature with the key the registry holds for it, and the body against the spec."""
        try:
            params = parse_signature_header(headers["authorization"])
            record = await self.resolver.resolve(params.subscriber_id, params.unique_key_id, at=params.created)
            verify_signature(params, record.verify_key, digest_b64=body_digest(body))
        except Exception as exc:  # noqa: BLE001 - recorded, asserted by the tests
            self.problems.append(f"{action}: signature: {exc!r}")
        errors = [e.message for e in self.spec.request_validator(action).iter_errors(json.loads(body))]
        if errors:
            self.problems.append(f"{action}: spec: {errors[:3]}")

    async def _answer(self, action: str, request: dict[str, Any], mode: str) -> None:
        await asyncio.sleep(self.delay)
        callback = f"on_{action}"
        if mode == "error":
            payload = {"error": {"code": "40002", "message": "Plus que 2 ananas en stock"}}
        else:
            payload = {"message": example_callback(callback)["message"]}
        bpp = self.identity(request["context"]["bpp_id"])
        async with httpx.AsyncClient() as client:
            await post_callback(client, bpp, self.url, request["context"], callback, payload)

    def sent(self, action: str) -> list[dict[str, Any]]:
        return [data for a, data, _ in self.received if a == action]


def callback_request(identity: Identity, peer_url: str, request_context: dict[str, Any], action: str,
                     payload: dict[str, Any], **overrides: Any) -> tuple[str, bytes, dict[str, str]]:
    context = reply_context(request_context, action, bpp_id=identity.subscriber_id, bpp_uri=f"{peer_url}/beckn",
                            **overrides)
    body = wire_json({"context": context, **payload})
    headers = {"Authorization": identity.signer().sign(body), "Content-Type": "application/json"}
    return context["bap_uri"].rstrip("/") + "/" + action, body, headers


async def post_callback(client: httpx.AsyncClient, identity: Identity, peer_url: str, request_context: dict[str, Any],
                        action: str, payload: dict[str, Any], **overrides: Any) -> httpx.Response:
    url, body, headers = callback_request(identity, peer_url, request_context, action, payload, **overrides)
    return await client.post(url, content=body, headers=headers)


def send_on_search(peer: Peer, bpp: Identity, search_context: dict[str, Any], **overrides: Any) -> httpx.Response:
    """A BPP's catalog for this search, signed and posted to the BAP (from the test thread)."""
    payload = {"message": example_callback("on_search")["message"]}
    if bpp is peer.bpp_b:
        provider = payload["message"]["catalog"]["providers"][0]
        provider["id"] = "epicerie-robert"
        provider["descriptor"]["name"] = "Épicerie du Robert"
    url, body, headers = callback_request(bpp, peer.url, search_context, "on_search", payload, **overrides)
    return httpx.post(url, content=body, headers=headers, timeout=10)


# ---------------------------------------------------------------------------------------------
# The network under test
# ---------------------------------------------------------------------------------------------


@dataclass
class Network:
    bap_url: str
    peer: Peer
    db_url: str
    client: httpx.Client

    def session(self) -> dict[str, str]:
        response = self.client.post(f"{self.bap_url}/api/v1/sessions")
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def search(self, auth: dict[str, str], **body: Any) -> dict[str, Any]:
        response = self.client.post(f"{self.bap_url}/api/v1/searches", json={"query": "ananas", **body}, headers=auth)
        assert response.status_code == 202, response.text
        return response.json()

    def search_context(self, transaction_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for data in self.peer.sent("search"):
                if data["context"]["transaction_id"] == transaction_id:
                    return data["context"]
            time.sleep(0.02)
        raise AssertionError("the search never reached the gateway")

    def api(self, method: str, path: str, auth: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        headers = {**(auth or {}), **kwargs.pop("headers", {})}
        return self.client.request(method, f"{self.bap_url}/api/v1{path}", headers=headers, **kwargs)

    def callbacks(self) -> list[BapCallback]:
        async def read() -> list[BapCallback]:
            engine = create_engine(self.db_url)
            try:
                async with session_factory(engine)() as s:
                    return list((await s.execute(select(BapCallback).order_by(BapCallback.id))).scalars())
            finally:
                await engine.dispose()
        return asyncio.run(read())


def start_network(db_url: str, data_dir: Path, spec: Spec, **bap_settings: Any) -> Iterator[Network]:
    registry = create_registry(Settings(data_dir=data_dir / "registry", database_url=db_url,
                                        registry_admin_token=REGISTRY_TOKEN))
    with serve_app(registry) as registry_url:
        peer = Peer(resolver=KeyResolver(RegistryClient(registry_url), max_age_seconds=0), spec=spec)
        yield from _with_peer(peer, registry_url, db_url, data_dir, **bap_settings)


def _with_peer(peer: Peer, registry_url: str, db_url: str, data_dir: Path, **bap_settings: Any) -> Iterator[Network]:
    with serve_app(peer.app()) as peer_url:
        peer.url = peer_url
        for identity in (peer.bpp_a, peer.bpp_b, peer.gateway):
            admitted = httpx.post(f"{registry_url}/admin/participants", json=identity.record(f"{peer_url}/beckn"),
                                  headers={"Authorization": f"Bearer {REGISTRY_TOKEN}"})
            assert admitted.status_code == 201, admitted.text
        port = free_port()
        settings = BapSettings(data_dir=data_dir, database_url=db_url, registry_url=registry_url,
                            registry_admin_token=REGISTRY_TOKEN, city="insee:97209", **bap_settings)
        with serve_app(create_app(settings, port=port), port=port) as bap_url, httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 10
            while not client.get(f"{bap_url}/health").json()["registered"]:
                assert time.monotonic() < deadline, "the BAP never registered"
                time.sleep(0.05)
            yield Network(bap_url, peer, db_url, client)
    assert peer.problems == [], peer.problems


@pytest.fixture
def net(sqlite_url: str, tmp_path: Path, spec: Spec) -> Iterator[Network]:
    yield from start_network(sqlite_url, tmp_path / "bap", spec)


@pytest.fixture
def net_both(db_url: str, tmp_path: Path, spec: Spec) -> Iterator[Network]:
    """The same network on SQLite and on PostgreSQL."""
    yield from start_network(db_url, tmp_path / "bap", spec)


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------


def test_api_needs_a_session_and_a_session_sees_only_its_own(net: Network) -> None:
    assert net.api("POST", "/searches", json={"query": "ananas"}).status_code == 401
    refused = net.api("POST", "/searches", {"Authorization": "Bearer not-a-token"}, json={"query": "ananas"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["www-authenticate"].startswith("Bearer")

    alice, bob = net.session(), net.session()
    assert alice != bob
    txn = net.search(alice)["transaction_id"]
    for path in (f"/searches/{txn}/results", f"/transactions/{txn}", f"/searches/{txn}/events"):
        assert net.api("GET", path, bob).status_code == 404, path
        assert net.api("GET", path).status_code == 401, path
    chosen = {"bpp_id": "ferme.bpp.test", "provider_id": "p", "items": [{"id": "i", "quantity": 1}]}
    assert net.api("POST", f"/transactions/{txn}/select", bob, json=chosen).status_code == 404
    assert net.api("GET", f"/transactions/{txn}", alice).status_code == 200


def test_only_the_token_hash_is_stored(net: Network) -> None:
    token = net.session()["Authorization"].removeprefix("Bearer ")

    async def hashes() -> list[str]:
        engine = create_engine(net.db_url)
        try:
            async with session_factory(engine)() as s:
                return list((await s.execute(select(BapSession.token_hash))).scalars())
        finally:
            await engine.dispose()

    stored = asyncio.run(hashes())
    assert stored and token not in stored


# ---------------------------------------------------------------------------------------------
# Searching
# ---------------------------------------------------------------------------------------------


def test_search_goes_to_the_registry_gateway_without_personal_data(net: Network) -> None:
    auth = net.session()
    started = net.search(auth, query="ananas", lang="en", city="insee:97213", category="fruits", ttl_seconds=5)
    uuid.UUID(started["transaction_id"])
    context = net.search_context(started["transaction_id"])
    (search,) = [d for d in net.peer.sent("search") if d["context"]["transaction_id"] == started["transaction_id"]]
    assert context["message_id"] == started["message_id"]
    assert context["version"] == "1.1.0" and context["domain"] == DOMAIN and context["ttl"] == "PT5S"
    assert context["location"] == {"country": {"code": "MTQ"}, "city": {"code": "insee:97213"}}
    assert context["bap_uri"] == f"{net.bap_url}/beckn" and "bpp_id" not in context
    intent = search["message"]["intent"]
    assert intent["item"]["descriptor"]["name"] == "ananas"
    assert intent["category"] == {"id": "fruits"}
    assert intent["tags"] == [{"descriptor": {"code": "search"},
                               "list": [{"descriptor": {"code": "lang"}, "value": "en"}]}]
    assert set(search["message"]) == {"intent"} and set(intent) == {"item", "category", "tags"}
    # The default city is the node's.
    other = net.search(auth)
    assert net.search_context(other["transaction_id"])["location"]["city"]["code"] == "insee:97209"


def test_results_poll_and_wait_for_callbacks(net_both: Network) -> None:
    net = net_both
    auth = net.session()
    # The search's ttl (20 s) is shorter than the last wait below (30 s): see there.
    txn = net.search(auth, ttl_seconds=20)["transaction_id"]
    context = net.search_context(txn)

    empty = net.api("GET", f"/searches/{txn}/results", auth).json()
    assert empty["offers"] == [] and empty["responses"] == 0 and empty["complete"] is False

    assert send_on_search(net.peer, net.peer.bpp_a, context).status_code == 200
    first = net.api("GET", f"/searches/{txn}/results", auth, params={"wait_ms": 5000}).json()
    assert first["responses"] == 1
    names = {(o["bpp_id"], o["provider"]["name"], o["item"]["name"]) for o in first["offers"]}
    assert ("ferme.bpp.test", "Ferme Bellevue", "Ananas Victoria") in names
    pineapple = next(o for o in first["offers"] if o["item"]["id"] == "ananas-victoria")
    assert pineapple["item"]["price"] == {"currency": "EUR", "value": "4.50"}
    assert pineapple["item"]["category_ids"] == ["fruits"]
    assert {k: pineapple["provider"][k] for k in ("id", "name", "city", "city_name")} == {
        "id": "ferme-bellevue-lamentin", "name": "Ferme Bellevue", "city": "97213", "city_name": "Le Lamentin"}
    assert pineapple["bpp_uri"] == f"{net.peer.url}/beckn"

    # Nothing newer than the cursor: the wait runs its course.
    began = time.monotonic()
    same = net.api("GET", f"/searches/{txn}/results", auth, params={"wait_ms": 400, "after": first["cursor"]}).json()
    assert time.monotonic() - began >= 0.35 and same["responses"] == 1

    # A callback landing during the wait ends it. The wait (30 s) outlasts the search's ttl, so an
    # answer that is not yet `complete` ended neither by the wait nor by the ttl: by the callback.
    threading.Timer(0.3, send_on_search, (net.peer, net.peer.bpp_b, context)).start()
    second = net.api("GET", f"/searches/{txn}/results", auth,
                     params={"wait_ms": 30000, "after": first["cursor"]}, timeout=60).json()
    assert second["complete"] is False
    assert second["responses"] == 2 and int(second["cursor"]) > int(first["cursor"])
    assert {o["provider"]["name"] for o in second["offers"]} == {"Ferme Bellevue", "Épicerie du Robert"}


def test_a_catalogue_paged_over_several_on_search_shows_whole(net: Network) -> None:
    auth = net.session()
    txn = net.search(auth)["transaction_id"]
    context = net.search_context(txn)
    full = example_callback("on_search")["message"]
    provider = full["catalog"]["providers"][0]
    pages = [{"message": {"catalog": {**full["catalog"], "providers": [{**provider, "items": [item]}]}}}
             for item in provider["items"]]
    assert len(pages) >= 2, "the example catalogue needs several items for this test"
    for payload in pages:  # same transaction_id and message_id, one item per callback
        url, body, headers = callback_request(net.peer.bpp_a, net.peer.url, context, "on_search", payload)
        assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200
    # Each ACKed part is handled after its ACK: wait (with the cursor) until every part is in.
    results: dict[str, Any] = {"responses": 0, "cursor": None}
    deadline = time.monotonic() + 10
    while results["responses"] < len(pages) and time.monotonic() < deadline:
        params = {"wait_ms": 1000, **({"after": results["cursor"]} if results["cursor"] else {})}
        results = net.api("GET", f"/searches/{txn}/results", auth, params=params).json()
    assert results["responses"] == len(pages)
    assert sorted(o["item"]["id"] for o in results["offers"]) == sorted(i["id"] for i in provider["items"])


def test_results_complete_when_the_ttl_passes(net: Network) -> None:
    auth = net.session()
    txn = net.search(auth, ttl_seconds=1)["transaction_id"]
    # Waiting up to 30 s, with no callback coming: the client gives up after 20 s, so an answer at
    # all means the search's ttl (1 s) ended the wait, not the wait running out.
    done = net.api("GET", f"/searches/{txn}/results", auth, params={"wait_ms": 30000}, timeout=20).json()
    assert done["complete"] is True and done["responses"] == 0


def _read_events(response: httpx.Response) -> list[tuple[str | None, str, dict[str, Any]]]:
    events: list[tuple[str | None, str, dict[str, Any]]] = []
    event_id, name = None, None
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((event_id, name or "message", json.loads(line[6:])))
            event_id, name = None, None
    return events


def test_offers_stream_as_server_sent_events(net: Network) -> None:
    auth = net.session()
    txn = net.search(auth, ttl_seconds=3)["transaction_id"]
    context = net.search_context(txn)
    assert send_on_search(net.peer, net.peer.bpp_a, context).status_code == 200
    threading.Timer(0.8, send_on_search, (net.peer, net.peer.bpp_b, context)).start()

    with net.client.stream("GET", f"{net.bap_url}/api/v1/searches/{txn}/events", headers=auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _read_events(response)
    assert [name for _, name, _ in events] == ["offers", "offers", "end"]
    assert [data["bpp_id"] for _, _, data in events[:2]] == ["ferme.bpp.test", "epicerie.bpp.test"]
    assert events[0][2]["offers"][0]["item"]["name"] == "Ananas Victoria"

    # Reconnecting after the first event replays only what followed it.
    resumed_headers = {**auth, "Last-Event-ID": events[0][0] or ""}
    with net.client.stream("GET", f"{net.bap_url}/api/v1/searches/{txn}/events", headers=resumed_headers) as again:
        replay = _read_events(again)
    assert [(name, data.get("bpp_id")) for _, name, data in replay] == [("offers", "epicerie.bpp.test"),
                                                                        ("end", None)]


# ---------------------------------------------------------------------------------------------
# Correlation
# ---------------------------------------------------------------------------------------------


def test_late_and_unsolicited_callbacks_are_dropped_and_recorded(net_both: Network) -> None:
    net = net_both
    auth = net.session()
    txn = net.search(auth, ttl_seconds=1)["transaction_id"]
    context = net.search_context(txn)
    # Unknown message id in a known transaction, and an unknown transaction: ACKed but never shown.
    assert send_on_search(net.peer, net.peer.bpp_a, context, message_id=str(uuid.uuid4())).status_code == 200
    assert send_on_search(net.peer, net.peer.bpp_a, context, transaction_id=str(uuid.uuid4())).status_code == 200
    time.sleep(1.3)
    # After the search's ttl, with a fresh timestamp of its own: late.
    assert send_on_search(net.peer, net.peer.bpp_b, context).status_code == 200

    deadline = time.monotonic() + 5
    while len(net.callbacks()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    results = net.api("GET", f"/searches/{txn}/results", auth).json()
    assert results["offers"] == [] and results["responses"] == 0 and results["complete"] is True
    assert sorted(cb.status for cb in net.callbacks()) == ["late", "unsolicited", "unsolicited"]
    assert all(cb.message is None for cb in net.callbacks())
    counts = net.client.get(f"{net.bap_url}/health").json()["callbacks"]
    assert counts == {"accepted": 0, "late": 1, "unsolicited": 2}


# ---------------------------------------------------------------------------------------------
# select → init → confirm → status
# ---------------------------------------------------------------------------------------------


def _searched(net: Network, auth: dict[str, str]) -> str:
    txn = net.search(auth, ttl_seconds=30)["transaction_id"]
    assert send_on_search(net.peer, net.peer.bpp_a, net.search_context(txn)).status_code == 200
    assert net.api("GET", f"/searches/{txn}/results", auth, params={"wait_ms": 5000}).json()["responses"] == 1
    return txn


SELECTION = {"bpp_id": "ferme.bpp.test", "provider_id": "ferme-bellevue-lamentin",
             "items": [{"id": "ananas-victoria", "quantity": 3}, {"id": "christophine", "quantity": 2}]}
BILLING = {"name": "Léa Marie-Sainte", "phone": "+596696123456", "email": "lea@example.mq",
           "address": "12 rue Victor Hugo, 97200 Fort-de-France"}


def test_order_round_trip(net_both: Network) -> None:
    net = net_both
    auth = net.session()
    txn = _searched(net, auth)

    selected = net.api("POST", f"/transactions/{txn}/select", auth, json=SELECTION)
    assert selected.status_code == 200, selected.text
    body = selected.json()
    assert body["action"] == "on_select" and body["error"] is None
    assert body["quote"]["total"] == {"currency": "EUR", "value": "19.10"}
    assert [b["title"] for b in body["quote"]["breakup"]] == ["Ananas Victoria × 3", "Christophine × 2"]
    assert body["order"]["provider"]["id"] == "ferme-bellevue-lamentin"
    (select_sent,) = net.peer.sent("select")
    assert select_sent["context"]["bpp_id"] == "ferme.bpp.test"
    assert select_sent["context"]["bpp_uri"] == f"{net.peer.url}/beckn"
    assert select_sent["context"]["transaction_id"] == txn
    assert select_sent["context"]["message_id"] == body["message_id"]
    assert select_sent["message"]["order"]["items"] == [
        {"id": "ananas-victoria", "quantity": {"selected": {"count": 3}}},
        {"id": "christophine", "quantity": {"selected": {"count": 2}}}]

    initialised = net.api("POST", f"/transactions/{txn}/init", auth,
                          json={"billing": BILLING, "fulfillment": {"type": "delivery"}})
    assert initialised.status_code == 200, initialised.text
    assert initialised.json()["action"] == "on_init"
    assert initialised.json()["payment"]["type"] == "ON-FULFILLMENT"
    (init_sent,) = net.peer.sent("init")
    order = init_sent["message"]["order"]
    assert order["billing"]["email"] == "lea@example.mq"
    assert order["fulfillments"][0]["type"] == "Delivery"
    assert order["fulfillments"][0]["stops"][0]["location"]["address"] == BILLING["address"]
    # Personal data went only to the chosen BPP, never through the gateway's search.
    assert all("lea@example.mq" not in json.dumps(d) for a, d, _ in net.peer.received if a == "search")

    confirmed = net.api("POST", f"/transactions/{txn}/confirm", auth, json={})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["action"] == "on_confirm" and confirmed.json()["order_id"] == "CMD-2025-000417"
    (confirm_sent,) = net.peer.sent("confirm")
    assert confirm_sent["message"]["order"]["billing"]["name"] == "Léa Marie-Sainte"

    state = net.api("POST", f"/transactions/{txn}/status", auth, json={"wait_ms": 5000})
    assert state.status_code == 200, state.text
    assert state.json()["action"] == "on_status" and state.json()["state"] == "OUT_FOR_DELIVERY"
    assert net.peer.sent("status")[0]["message"] == {"order_id": "CMD-2025-000417"}

    summary = net.api("GET", f"/transactions/{txn}", auth).json()
    assert summary["bpp_id"] == "ferme.bpp.test" and summary["order_id"] == "CMD-2025-000417"
    assert summary["state"] == "OUT_FOR_DELIVERY" and summary["quote"]["total"]["value"] == "19.10"
    assert [m["action"] for m in summary["messages"]] == ["search", "select", "init", "confirm", "status"]
    # Everything matched; nothing was late.
    assert net.client.get(f"{net.bap_url}/health").json()["callbacks"]["late"] == 0


def test_slow_answer_is_pending_then_polled(net: Network) -> None:
    auth = net.session()
    txn = _searched(net, auth)
    net.peer.delay = 1.0
    pending = net.api("POST", f"/transactions/{txn}/select", auth, json={**SELECTION, "wait_ms": 100})
    assert pending.status_code == 202
    assert pending.json()["status"] == "pending"
    message_id = pending.json()["message_id"]
    polled = net.api("GET", f"/transactions/{txn}/messages/{message_id}", auth, params={"wait_ms": 5000})
    assert polled.status_code == 200 and polled.json()["action"] == "on_select"
    assert polled.json()["quote"]["total"]["value"] == "19.10"
    assert net.api("GET", f"/transactions/{txn}/messages/{uuid.uuid4()}", auth).status_code == 404


def test_bpp_errors_are_surfaced(net: Network) -> None:
    auth = net.session()
    txn = _searched(net, auth)
    net.peer.mode["select"] = "error"
    refused = net.api("POST", f"/transactions/{txn}/select", auth, json=SELECTION)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "40002"
    # The citizen reads a message in their language (French by default); the BPP's words are the detail.
    assert refused.json()["error"]["detail"] == "Plus que 2 ananas en stock"
    assert refused.json()["error"]["message"].startswith("Stock insuffisant")

    net.peer.mode["select"] = "nack"
    nacked = net.api("POST", f"/transactions/{txn}/select", auth, json=SELECTION)
    assert nacked.status_code == 502
    assert nacked.json()["error"]["code"] == "30004"
    assert "Item not found" in nacked.json()["error"]["detail"]
    assert nacked.json()["error"]["message"] == "Cet article n'est plus proposé par le commerçant."


def test_bad_input_is_refused_with_4xx(net: Network) -> None:
    auth = net.session()
    txn = _searched(net, auth)
    searches = [{"query": ""}, {"query": "   "}, {"query": "a", "lang": "xx"}, {"query": "a", "ttl_seconds": 61},
                {"query": "a", "ttl_seconds": 0}, {"query": "a", "city": "Fort-de-France"}, {}]
    for body in searches:
        response = net.api("POST", "/searches", auth, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["message"], body
    malformed = net.api("POST", "/searches", auth, content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    assert net.api("GET", f"/searches/{txn}/results", auth, params={"after": "abc"}).status_code == 422
    assert net.api("GET", f"/searches/{txn}/results", auth, params={"wait_ms": 30001}).status_code == 422

    bad_selections = [{**SELECTION, "items": []}, {**SELECTION, "items": [{"id": "x", "quantity": 0}]},
                      {**SELECTION, "items": [{"id": "x", "quantity": 1}, {"id": "x", "quantity": 2}]},
                      {**SELECTION, "bpp_id": ""}]
    for body in bad_selections:
        assert net.api("POST", f"/transactions/{txn}/select", auth, json=body).status_code == 422, body
    unknown_bpp = net.api("POST", f"/transactions/{txn}/select", auth, json={**SELECTION, "bpp_id": "epicerie.bpp.test"})
    assert unknown_bpp.status_code == 422 and unknown_bpp.json()["error"]["code"] == "unknown_bpp"

    # Steps out of order.
    init = {"billing": BILLING, "fulfillment": {"type": "pickup"}}
    assert net.api("POST", f"/transactions/{txn}/init", auth, json=init).json()["error"]["code"] == "select_first"
    assert net.api("POST", f"/transactions/{txn}/confirm", auth).status_code == 409
    assert net.api("POST", f"/transactions/{txn}/status", auth).status_code == 409
    for billing in ({**BILLING, "email": "nope"}, {**BILLING, "phone": "call me"}, {"name": "x"}):
        assert net.api("POST", f"/transactions/{txn}/init", auth,
                       json={"billing": billing, "fulfillment": {"type": "pickup"}}).status_code == 422
    no_address = {"billing": {**BILLING, "address": None}, "fulfillment": {"type": "delivery"}}
    assert net.api("POST", f"/transactions/{txn}/init", auth, json=no_address).status_code == 422
    assert net.peer.sent("select") == [] and net.peer.sent("init") == []


def test_a_configured_gateway_url_is_used(sqlite_url: str, tmp_path: Path, spec: Spec) -> None:
    # LAKOU_BAP_GATEWAY_URL wins over the registry's BG; a bare host:port gets the /beckn prefix.
    network = start_network(sqlite_url, tmp_path / "bap", spec, bap_gateway_url="http://127.0.0.1:1")
    net = next(network)
    try:
        assert net.api("POST", "/searches", net.session(), json={"query": "ananas"}).status_code == 202

        async def destinations() -> list[str]:
            engine = create_engine(net.db_url)
            try:
                async with session_factory(engine)() as s:
                    return list((await s.execute(select(OutboxMessage.destination_url))).scalars())
            finally:
                await engine.dispose()

        assert asyncio.run(destinations()) == ["http://127.0.0.1:1/beckn/search"]
        assert net.peer.sent("search") == []
    finally:
        network.close()


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------


async def test_bap_migration_matches_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import bap.tables  # noqa: F401
    from beckn.store.db import upgrade
    from beckn.store.tables import metadata

    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            def diff(sync_conn: Any) -> list[Any]:
                context = MigrationContext.configure(
                    sync_conn, opts={"compare_type": True, "compare_server_default": True})
                return compare_metadata(context, metadata)
            changes = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert [c for c in changes if _table_of(c).startswith("bap_")] == []


def _table_of(change: Any) -> str:
    """The table an Alembic autogenerate difference is about (others' tables are not ours to check)."""
    if isinstance(change, list):
        change = change[0]
    for part in change[1:]:
        if isinstance(part, Table):
            return part.name
        if isinstance(getattr(part, "table", None), Table):
            return part.table.name
    return change[2] if len(change) > 2 and isinstance(change[2], str) else ""


def test_bap_settings_come_from_a_plain_settings_and_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from bap.settings import bap_settings

    monkeypatch.setenv("LAKOU_BAP_GATEWAY_URL", "http://gateway.example.mq/beckn")
    config = bap_settings(Settings(data_dir=tmp_path, city="insee:97222"))
    assert config.bap_gateway_url == "http://gateway.example.mq/beckn"
    assert config.city == "insee:97222" and config.data_dir == tmp_path
