"""The gateway service end to end over real HTTP on 127.0.0.1.

A registry, the gateway (gateway.app.create_app) and fake BAP/BPP peers each run under uvicorn.
The peers sign with their own keys and record the raw bytes and headers they receive, so the
tests check what a real BPP or BAP would see: byte-identical bodies, the original sender's
`Authorization` and the gateway's `X-Gateway-Authorization`, both verifiable against the keys the
registry publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from beckn.keys import generate_key_pairs, load_signing_key, load_verify_key
from beckn.settings import Settings
from beckn.signing import Signer, body_digest, parse_signature_header, verify_signature
from beckn.store.db import create_engine, session_factory
from beckn.store.tables import InboundMessage, OutboxMessage
from gateway.app import create_app
from gateway.settings import GatewaySettings
from registry.app import create_app as create_registry_app
from tests.conftest import free_port, serve_app

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

ADMIN_TOKEN = "test-admin-token"
GATEWAY_ID = "gateway.lakou.test"
DOMAIN = "lakou:retail"
LAMENTIN, FORT_DE_FRANCE, ROBERT = "insee:97213", "insee:97209", "insee:97222"
ACK = {"message": {"ack": {"status": "ACK"}}}


# --------------------------------------------------------------------------- the registry


@dataclass
class LocalRegistry:
    """A third-party registry answering `/lookup` from the records given to `/admin/participants`.

    Used where a test needs a registry behaving unlike Lakou's own (which `running_registry` runs).
    """

    records: dict[tuple[str, str], dict] = field(default_factory=dict)
    lookups: int = 0
    ignore_criteria: bool = False  # some third-party registries answer every record, whatever was asked

    def app(self) -> Starlette:
        async def admin(request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {ADMIN_TOKEN}":
                return JSONResponse({"detail": "admin token required"}, status_code=401)
            record = await request.json()
            self.records[(record["subscriber_id"], record["type"])] = record
            return JSONResponse({"status": "SUBSCRIBED"}, status_code=201)

        async def lookup(request: Request) -> JSONResponse:
            self.lookups += 1
            wanted = await request.json()
            found = []
            for record in self.records.values():
                if self.ignore_criteria:
                    pass
                elif any(wanted.get(k) not in (None, record[k]) for k in ("subscriber_id", "type", "unique_key_id")):
                    continue
                elif any(record.get(k) and wanted.get(k) not in (None, record[k]) for k in ("domain", "city", "country")):
                    continue
                found.append(record | {"subscriber_url": record["url"], "ukId": record["unique_key_id"],
                                       "status": "SUBSCRIBED"})
            return JSONResponse(found)

        return Starlette(routes=[Route("/admin/participants", admin, methods=["POST"]),
                                 Route("/lookup", lookup, methods=["POST"])])


@contextlib.contextmanager
def running_registry(tmp_path: Path) -> Iterator[str]:
    """Lakou's own registry service, with its own embedded store, the admin API enabled."""
    settings = Settings(data_dir=tmp_path / "registry", registry_admin_token=ADMIN_TOKEN)
    with serve_app(create_registry_app(settings)) as url:
        yield url


# --------------------------------------------------------------------------- peers


@dataclass
class Received:
    action: str
    body: bytes
    headers: dict[str, str]
    at: float


@dataclass
class Peer:
    """A fake BAP or BPP: signs what it sends, records what it receives, answers ACK."""

    subscriber_id: str
    type: str
    city: str = ""
    domain: str = DOMAIN
    country: str = "MTQ"
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    released: threading.Event = field(default_factory=threading.Event)  # ends any delay at once
    url: str = ""  # its /beckn base, once served
    keys: object = field(default_factory=generate_key_pairs)
    ukid: str = field(default_factory=lambda: f"k-{uuid.uuid4().hex[:8]}")

    @property
    def signer(self) -> Signer:
        return Signer(self.subscriber_id, self.ukid, load_signing_key(self.keys.signing_private_key))

    def app(self) -> Starlette:
        async def receive(request: Request) -> JSONResponse:
            self.in_flight += 1
            try:
                body = await request.body()
                self.received.append(Received(request.path_params["action"], body,
                                              {k.lower(): v for k, v in request.headers.items()}, time.monotonic()))
                until = time.monotonic() + self.delay
                while time.monotonic() < until and not self.released.is_set():
                    await asyncio.sleep(0.02)
                return JSONResponse(ACK)
            finally:
                self.in_flight -= 1

        return Starlette(routes=[Route("/beckn/{action}", receive, methods=["POST"])])

    def registration(self) -> dict:
        now = datetime.now(UTC)
        return {
            "subscriber_id": self.subscriber_id, "type": self.type, "url": self.url,
            "domain": self.domain, "city": self.city, "country": self.country,
            "unique_key_id": self.ukid, "signing_public_key": self.keys.signing_public_key,
            "encr_public_key": self.keys.encryption_public_key,
            "valid_from": _wire(now - timedelta(minutes=1)), "valid_until": _wire(now + timedelta(days=1)),
        }


def _wire(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def register(registry_url: str, peer: Peer, http: httpx.AsyncClient) -> None:
    response = await http.post(f"{registry_url}/admin/participants", json=peer.registration(),
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code < 300, response.text


# --------------------------------------------------------------------------- the network


@dataclass
class Network:
    registry_url: str
    gateway_url: str
    db_url: str
    http: httpx.AsyncClient
    stack: contextlib.ExitStack
    registry_stack: contextlib.ExitStack
    peers: list[Peer] = field(default_factory=list)

    def stop_registry(self) -> None:
        self.registry_stack.close()

    async def add(self, peer: Peer, *, serve: bool = True) -> Peer:
        """Serve `peer` (or give it a dead address) and register it."""
        if serve:
            base = self.stack.enter_context(serve_app(peer.app()))
        else:  # nothing listens there: connections are refused
            base = f"http://127.0.0.1:{free_port()}"
        peer.url = peer.url or f"{base}/beckn"
        await register(self.registry_url, peer, self.http)
        self.peers.append(peer)
        return peer

    async def post(self, action: str, body: bytes, signer: Signer) -> httpx.Response:
        return await self.http.post(f"{self.gateway_url}/beckn/{action}", content=body,
                                    headers={"Content-Type": "application/json", "Authorization": signer.sign(body)})

    async def gateway_key(self):
        response = await self.http.post(f"{self.registry_url}/lookup", json={"subscriber_id": GATEWAY_ID})
        [record] = response.json()
        assert record["type"] == "BG"
        return load_verify_key(record["signing_public_key"])

    async def stats(self) -> dict:
        response = await self.http.get(f"{self.gateway_url}/health")
        assert response.status_code == 200
        return response.json()["gateway"]

    async def outbox(self) -> list[OutboxMessage]:
        engine = create_engine(self.db_url)
        try:
            async with session_factory(engine)() as session:
                return list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())
        finally:
            await engine.dispose()

    async def inbound(self) -> list[InboundMessage]:
        engine = create_engine(self.db_url)
        try:
            async with session_factory(engine)() as session:
                return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())
        finally:
            await engine.dispose()

    async def handled(self, count: int = 1, timeout: float = 5.0) -> list[InboundMessage]:
        """Wait until the gateway's handler has run (processed or failed) on `count` messages."""
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.inbound()
            done = [r for r in rows if r.processed_at is not None or r.process_error is not None]
            if len(done) >= count:
                return rows
            assert time.monotonic() < deadline, f"the gateway handled {len(done)} of {count} messages"
            await asyncio.sleep(0.05)


def gateway_settings(tmp_path: Path, db_url: str, registry_url: str, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "gateway", "database_url": db_url, "registry_url": registry_url,
        "registry_admin_token": ADMIN_TOKEN, "subscriber_id": GATEWAY_ID, "delivery_timeout_seconds": 1.0,
        "lookup_cache_seconds": 300,
    }
    return GatewaySettings(**(values | overrides))


@contextlib.asynccontextmanager
async def network(tmp_path: Path, db_url: str, *, registry: LocalRegistry | None = None,
                  **overrides: object) -> AsyncIterator[Network]:
    """A registry, the gateway registered there, and room for peers (`Network.add`)."""
    with contextlib.ExitStack() as registry_stack, contextlib.ExitStack() as stack:
        registry_url = registry_stack.enter_context(
            serve_app(registry.app()) if registry is not None else running_registry(tmp_path))
        port = free_port()
        app = create_app(gateway_settings(tmp_path, db_url, registry_url, **overrides), port=port)
        gateway_url = stack.enter_context(serve_app(app, port=port))
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 10
            while not (await http.get(f"{gateway_url}/health")).json()["registered"]:
                assert time.monotonic() < deadline, "the gateway never registered at the registry"
                await asyncio.sleep(0.05)
            yield Network(registry_url, gateway_url, db_url, http, stack, registry_stack)


# --------------------------------------------------------------------------- messages


def search_body(bap: Peer, *, city: str = LAMENTIN, domain: str = DOMAIN, country: str = "MTQ",
                **context: str) -> bytes:
    """A search serialised the way no re-serialiser would: indented, non-ASCII kept, odd key order,
    so byte-identical forwarding is really tested."""
    body = {
        "message": {"intent": {"item": {"descriptor": {"name": "christophine péi"}}}},
        "context": {
            "ttl": "PT30S", "domain": domain, "action": "search", "version": "1.1.0",
            "location": {"country": {"code": country}, "city": {"code": city}},
            "bap_id": bap.subscriber_id, "bap_uri": bap.url,
            "transaction_id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()),
            "timestamp": _wire(datetime.now(UTC)),
        } | context,
    }
    return json.dumps(body, ensure_ascii=False, indent=1).encode()


def on_search_body(search: bytes, bpp: Peer, **context: str) -> bytes:
    request = json.loads(search)["context"]
    reply = request | {"action": "on_search", "bpp_id": bpp.subscriber_id, "bpp_uri": bpp.url,
                       "timestamp": _wire(datetime.now(UTC))} | context
    body = {"context": reply, "message": {"catalog": {"descriptor": {"name": "Ferme Bellevue"}, "providers": [
        {"id": "ferme-bellevue", "descriptor": {"name": "Ferme Bellevue"},
         "items": [{"id": "christophine", "descriptor": {"name": "Christophine"},
                    "price": {"currency": "EUR", "value": "2.10"}}]}]}}}
    return json.dumps(body, ensure_ascii=False, separators=(", ", ": ")).encode()


async def received_by(*peers: Peer, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.received for p in peers):
        missing = [p.subscriber_id for p in peers if not p.received]
        assert time.monotonic() < deadline, f"nothing reached {missing}"
        await asyncio.sleep(0.01)


def assert_signed_by(header: str, signer_id: str, key, body: bytes) -> None:
    params = parse_signature_header(header)
    assert params.subscriber_id == signer_id
    verify_signature(params, key, digest_b64=body_digest(body))  # raises if it does not verify


# --------------------------------------------------------------------------- tests: search


async def test_search_reaches_matching_bpps_unchanged_with_both_signatures(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        lamentin = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        everywhere = await net.add(Peer("livraison.lakou.test", "BPP", city=""))  # blank: the whole island
        robert = await net.add(Peer("peche.lakou.test", "BPP", city=ROBERT))
        other_domain = await net.add(Peer("taxi.lakou.test", "BPP", city=LAMENTIN, domain="lakou:mobility"))
        other_country = await net.add(Peer("gp.lakou.test", "BPP", city=LAMENTIN, country="GLP"))
        another_bap = await net.add(Peer("bap2.lakou.test", "BAP", city=LAMENTIN))

        body = search_body(bap)
        response = await net.post("search", body, bap.signer)
        assert response.status_code == 200 and response.json() == ACK
        await received_by(lamentin, everywhere)
        await net.handled()
        gateway_key = await net.gateway_key()
        bap_key = load_verify_key(bap.keys.signing_public_key)
        for bpp in (lamentin, everywhere):
            [got] = bpp.received
            assert got.action == "search"
            assert got.body == body  # byte for byte
            assert got.headers["authorization"] == response.request.headers["authorization"]
            assert_signed_by(got.headers["authorization"], bap.subscriber_id, bap_key, got.body)
            assert_signed_by(got.headers["x-gateway-authorization"], GATEWAY_ID, gateway_key, got.body)
        # exactly one forward per matching BPP, none to the others
        rows = await net.outbox()
        assert sorted(r.destination_url for r in rows) == sorted(f"{p.url}/search" for p in (lamentin, everywhere))
        for peer in (robert, other_domain, other_country, another_bap, bap):
            assert peer.received == []
        stats = await net.stats()
        assert stats["searches_received"] == 1 and stats["forwards_queued"] == 2

        # the BAP retransmits the same bytes: same ACK, nothing forwarded twice
        again = await net.post("search", body, bap.signer)
        assert again.status_code == 200 and again.json() == ACK
        await asyncio.sleep(0.3)
        assert len(await net.outbox()) == 2 and len(lamentin.received) == len(everywhere.received) == 1


async def test_a_search_for_the_whole_island_reaches_every_commune(tmp_path: Path, db_url: str) -> None:
    """city "*" (a "near me" search names no commune): every BPP of the domain and country gets it,
    through Lakou's own registry (which reads "*" as no criterion)."""
    async with network(tmp_path, db_url) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        lamentin = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        robert = await net.add(Peer("peche.lakou.test", "BPP", city=ROBERT))
        everywhere = await net.add(Peer("livraison.lakou.test", "BPP", city=""))
        other_country = await net.add(Peer("gp.lakou.test", "BPP", city=LAMENTIN, country="GLP"))
        assert (await net.post("search", search_body(bap, city="*"), bap.signer)).json() == ACK
        await received_by(lamentin, robert, everywhere)
        await net.handled()
        assert sorted(r.destination_url for r in await net.outbox()) == sorted(
            f"{p.url}/search" for p in (lamentin, robert, everywhere))
        assert other_country.received == []


async def test_matching_holds_with_a_registry_that_ignores_criteria(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url, registry=LocalRegistry(ignore_criteria=True)) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        lamentin = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        everywhere = await net.add(Peer("livraison.lakou.test", "BPP", city=""))
        fdf = await net.add(Peer("boulangerie.lakou.test", "BPP", city=FORT_DE_FRANCE))
        other_domain = await net.add(Peer("taxi.lakou.test", "BPP", domain="lakou:mobility"))
        other_country = await net.add(Peer("gp.lakou.test", "BPP", country="GLP"))
        assert (await net.post("search", search_body(bap, city=FORT_DE_FRANCE), bap.signer)).json() == ACK
        await received_by(fdf, everywhere)
        await net.handled()
        assert sorted(r.destination_url for r in await net.outbox()) == sorted(
            f"{p.url}/search" for p in (fdf, everywhere))
        for peer in (lamentin, other_domain, other_country, bap):  # the BAP is no BPP, nor the gateway
            assert peer.received == []


async def test_search_naming_a_bpp_goes_to_that_bpp_only(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        chosen = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        other = await net.add(Peer("marche.lakou.test", "BPP", city=LAMENTIN))
        body = search_body(bap, bpp_id=chosen.subscriber_id, bpp_uri=chosen.url)
        assert (await net.post("search", body, bap.signer)).json() == ACK
        await received_by(chosen)
        await net.handled()
        assert [r.body for r in chosen.received] == [body]
        assert [r.destination_url for r in await net.outbox()] == [f"{chosen.url}/search"]
        assert other.received == []

        # a BPP the registry does not know gets nothing, and nothing goes anywhere else
        unknown = search_body(bap, bpp_id="inconnu.lakou.test", bpp_uri="http://127.0.0.1:9/beckn")
        assert (await net.post("search", unknown, bap.signer)).json() == ACK
        await net.handled(2)
        assert len(await net.outbox()) == 1
        assert (await net.stats())["searches_without_bpp"] == 1


async def test_search_with_a_bad_signature_is_refused_and_not_forwarded(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        bpp = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        impostor = Signer(bap.subscriber_id, bap.ukid, load_signing_key(generate_key_pairs().signing_private_key))
        response = await net.post("search", search_body(bap), impostor)
        assert response.status_code == 401
        assert response.json()["message"]["ack"]["status"] == "NACK"
        assert response.json()["error"]["code"] == "10001"
        assert "WWW-Authenticate" in response.headers

        # unsigned: refused too
        unsigned = await net.http.post(f"{net.gateway_url}/beckn/search", content=search_body(bap),
                                       headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401

        # signed by the BAP but over other bytes than those sent
        body = search_body(bap)
        tampered = await net.http.post(f"{net.gateway_url}/beckn/search", content=body.replace(b"christophine", b"igname"),
                                       headers={"Content-Type": "application/json", "Authorization": bap.signer.sign(body)})
        assert tampered.status_code == 401

        await asyncio.sleep(0.3)
        assert bpp.received == [] and await net.outbox() == [] and await net.inbound() == []
        assert (await net.stats())["searches_received"] == 0


async def test_slow_or_dead_bpp_does_not_delay_the_others(tmp_path: Path, db_url: str) -> None:
    # Ordering, not wall-clock margins: the slow BPP holds every request far longer than the
    # gateway's per-BPP timeout, so "nothing waited for it" means "it happened before the gateway
    # gave up on the slow BPP" (its outbox row has no finished attempt yet). A loaded CI machine
    # can stretch every step without making this flaky.
    timeout = 3.0  # the gateway's per-BPP timeout (delivery_timeout_seconds)
    async with network(tmp_path, db_url, delivery_timeout_seconds=timeout) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        slow = await net.add(Peer("lent.lakou.test", "BPP", city=LAMENTIN, delay=60.0))
        dead = await net.add(Peer("mort.lakou.test", "BPP", city=LAMENTIN), serve=False)
        good = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))

        def slow_attempts(rows: list) -> int:
            return next((r.attempts for r in rows if r.destination_url == f"{slow.url}/search"), 0)

        body = search_body(bap)
        response = await net.post("search", body, bap.signer)
        assert response.json() == ACK
        assert slow_attempts(await net.outbox()) == 0  # the BAP's ACK waited for no BPP
        await received_by(good, slow)
        # the good BPP had the search while the slow one was still holding its request
        assert [r.body for r in good.received] == [body]
        assert slow.in_flight == 1 and slow_attempts(await net.outbox()) == 0

        # the slow BPP's attempt is cut at the timeout, the dead one's fails fast; both are retried
        deadline = time.monotonic() + 10 * timeout
        while True:
            rows = {r.destination_url: r for r in await net.outbox()}
            slow_row, dead_row = rows[f"{slow.url}/search"], rows[f"{dead.url}/search"]
            if slow_row.attempts >= 1 and dead_row.attempts >= 1:
                break
            assert time.monotonic() < deadline, "the slow and dead BPPs were never attempted"
            await asyncio.sleep(0.05)
        assert rows[f"{good.url}/search"].status == "delivered"
        assert slow_row.status == "pending" and f"no answer within {timeout}s" in slow_row.last_error
        assert dead_row.status == "pending" and dead_row.last_error
        slow.released.set()  # so that its server stops without waiting out the hold


async def test_registry_outage_during_routing_is_recorded(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url, gateway_lookup_cache_seconds=0) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        bpp = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        assert (await net.post("search", search_body(bap), bap.signer)).json() == ACK  # caches the BAP's key
        await received_by(bpp)

        net.stop_registry()
        # the BAP's key is still cached, so the search is verified and ACKed; routing then fails
        assert (await net.post("search", search_body(bap), bap.signer)).json() == ACK
        rows = await net.handled(2)
        assert rows[1].processed_at is None and "registry unavailable" in rows[1].process_error
        assert (await net.stats())["registry_failures"] == 1
        assert len(await net.outbox()) == 1 and len(bpp.received) == 1


# --------------------------------------------------------------------------- tests: on_search


async def test_on_search_is_relayed_to_the_registered_bap(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        bpp = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        search = search_body(bap)
        assert (await net.post("search", search, bap.signer)).json() == ACK
        await received_by(bpp)

        body = on_search_body(search, bpp)
        response = await net.post("on_search", body, bpp.signer)
        assert response.status_code == 200 and response.json() == ACK
        await received_by(bap)
        [got] = bap.received
        assert got.action == "on_search" and got.body == body
        assert_signed_by(got.headers["authorization"], bpp.subscriber_id,
                         load_verify_key(bpp.keys.signing_public_key), got.body)
        assert_signed_by(got.headers["x-gateway-authorization"], GATEWAY_ID, await net.gateway_key(), got.body)
        assert (await net.stats())["on_search_relayed"] == 1


async def test_on_search_to_an_unregistered_address_is_not_relayed(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        bpp = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        search = search_body(bap)
        # bap_uri elsewhere than the BAP's registered host: ACKed (the BPP did nothing wrong
        # cryptographically) but never relayed there, nor to the BAP
        elsewhere = on_search_body(search, bpp, bap_uri="https://attacker.example/beckn")
        assert (await net.post("on_search", elsewhere, bpp.signer)).json() == ACK
        # a bap_id the registry does not know: dropped as well
        unknown = on_search_body(search, bpp, bap_id="fantome.lakou.test", message_id=str(uuid.uuid4()))
        assert (await net.post("on_search", unknown, bpp.signer)).json() == ACK
        await net.handled(2)
        assert await net.outbox() == []
        assert bap.received == []
        stats = await net.stats()
        assert stats["on_search_received"] == 2 and stats["on_search_dropped"] == 2 and stats["on_search_relayed"] == 0


async def test_on_search_must_be_signed_by_its_bpp(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url) as net:
        bap = await net.add(Peer("bap.lakou.test", "BAP"))
        bpp = await net.add(Peer("ferme.lakou.test", "BPP", city=LAMENTIN))
        other = await net.add(Peer("marche.lakou.test", "BPP", city=LAMENTIN))
        body = on_search_body(search_body(bap), bpp)
        response = await net.post("on_search", body, other.signer)  # another BPP posing as this one
        assert response.status_code == 401
        await asyncio.sleep(0.2)
        assert bap.received == [] and await net.outbox() == []


# --------------------------------------------------------------------------- operations


async def test_health_and_openapi_describe_the_gateway(tmp_path: Path, db_url: str) -> None:
    async with network(tmp_path, db_url) as net:
        health = await net.http.get(f"{net.gateway_url}/health")
        assert health.status_code == 200
        payload = health.json()
        assert payload["status"] == "ok" and payload["service"] == "gateway" and payload["registered"] is True
        assert payload["subscriber_id"] == GATEWAY_ID
        assert payload["gateway"]["searches_received"] == 0
        spec = (await net.http.get(f"{net.gateway_url}/openapi.json")).json()
        assert spec["info"]["title"] == "Lakou Gateway" and spec["info"]["version"] == "0.3.0"
        for path in ("/beckn/search", "/beckn/on_search", "/health"):
            [operation] = spec["paths"][path].values()
            assert operation["summary"] and operation["tags"]


def test_lakou_serve_builds_the_gateway(tmp_path: Path) -> None:
    from beckn.cli.serve import build_app

    app = build_app("gateway", GatewaySettings(data_dir=tmp_path), host="127.0.0.1", port=8200)
    assert app.title == "Lakou Gateway"
    assert app.state.node.subscriber_url == "http://127.0.0.1:8200/beckn"
