"""The inbound pipeline end to end over real HTTP: verify, bind, validate, dedupe, persist, ACK."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from nacl.signing import SigningKey
from sqlalchemy import select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from beckn.http import beckn_router
from beckn.inbound import AcceptedMessage, InboundPipeline, Role
from beckn.models import CALLBACK_ACTIONS, REQUEST_ACTIONS
from beckn.registry_client import KeyResolver, RegistryClient
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.store.tables import InboundMessage
from tests.conftest import serve_app

BAP_ID, BPP_ID, BG_ID, RECEIVER = "bap.lakou.test", "bpp.lakou.test", "bg.lakou.test", "bpp.lakou.test"


@dataclass
class Participant:
    subscriber_id: str
    type: str
    url: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    ukid: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "SUBSCRIBED"

    @property
    def signer(self) -> Signer:
        return Signer(self.subscriber_id, self.ukid, self.key)

    def record(self) -> dict:
        import base64

        return {
            "subscriber_id": self.subscriber_id, "subscriber_url": self.url, "type": self.type,
            "domain": "retail", "city": "std:972", "country": "MTQ", "ukId": self.ukid,
            "signing_public_key": base64.b64encode(bytes(self.key.verify_key)).decode(),
            "valid_from": "2020-01-01T00:00:00.000Z", "valid_until": "2099-01-01T00:00:00.000Z",
            "status": self.status,
        }


class FakeRegistry:
    """Stands in for a third-party registry's lookup endpoint, counting calls."""

    def __init__(self, participants: list[Participant]) -> None:
        self.participants = {p.subscriber_id: p for p in participants}
        self.calls = 0
        self.down = False

    def app(self) -> Starlette:
        async def lookup(request: Request) -> JSONResponse:
            self.calls += 1
            if self.down:
                return JSONResponse({"error": "maintenance"}, status_code=503)
            criteria = await request.json()
            found = [p.record() for p in self.participants.values()
                     if p.subscriber_id == criteria.get("subscriber_id")
                     and (criteria.get("ukId") or criteria.get("unique_key_id")) in (None, p.ukid)]
            return JSONResponse(found)

        return Starlette(routes=[Route("/lookup", lookup, methods=["POST"])])


BAP = Participant(BAP_ID, "BAP", "https://bap.lakou.test/beckn")
BPP = Participant(BPP_ID, "BPP", "https://bpp.lakou.test/beckn")
BG = Participant(BG_ID, "BG", "https://bg.lakou.test")
IMPOSTOR_BG = Participant("shop.lakou.test", "BPP", "https://shop.lakou.test")


def context(action: str, **overrides: object) -> dict:
    ctx = {
        "domain": "retail", "action": action, "version": "1.1.0",
        "location": {"city": {"code": "std:972"}, "country": {"code": "MTQ"}},
        "bap_id": BAP_ID, "bap_uri": "https://bap.lakou.test/beckn",
        "transaction_id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "ttl": "PT30S",
    }
    if action != "search":
        ctx |= {"bpp_id": BPP_ID, "bpp_uri": "https://bpp.lakou.test/beckn"}
    ctx.update(overrides)
    return ctx


def search_body(**ctx: object) -> bytes:
    body = {"context": context("search", **ctx),
            "message": {"intent": {"descriptor": {"name": "ananas péi"}}}}
    return json.dumps(body, ensure_ascii=False).encode()


def on_select_body() -> bytes:
    body = {"context": context("on_select"),
            "message": {"order": {"provider": {"id": "maraicher-lamentin"},
                                  "items": [{"id": "ananas", "quantity": {"selected": {"count": 2}}}]}}}
    return json.dumps(body).encode()


@dataclass
class Node:
    url: str
    http: httpx.AsyncClient
    registry: FakeRegistry
    sessions: object
    accepted: list[AcceptedMessage]

    async def post(self, action: str, body: bytes, signer: Signer | None = None,
                   gateway: Signer | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        sent = {"Content-Type": "application/json"}
        if signer is not None:
            sent["Authorization"] = signer.sign(body)
        if gateway is not None:
            sent["X-Gateway-Authorization"] = gateway.sign(body)
        sent |= headers or {}
        return await self.http.post(f"{self.url}/{action}", content=body, headers=sent)

    async def stored(self) -> list[InboundMessage]:
        async with self.sessions() as session:  # type: ignore[operator]
            return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())


@pytest.fixture
def registry() -> Iterator[tuple[FakeRegistry, str]]:
    fake = FakeRegistry([BAP, BPP, BG, IMPOSTOR_BG])
    with serve_app(fake.app()) as url:
        yield fake, url


def build_app(db_url: str, registry_url: str, accepted: list[AcceptedMessage]) -> FastAPI:
    """The receiving node. Its engine is made in its own lifespan, so it lives in the server's loop."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(db_url)
        client = RegistryClient(registry_url)
        pipeline = InboundPipeline(sessions=session_factory(engine), resolver=KeyResolver(client),
                                   receiver_id=RECEIVER, role=Role.BPP, max_body_bytes=64 * 1024)

        async def on_accepted(message: AcceptedMessage) -> None:
            accepted.append(message)

        app.include_router(beckn_router(pipeline, REQUEST_ACTIONS + CALLBACK_ACTIONS, on_accepted=on_accepted))
        yield
        await client.aclose()
        await engine.dispose()

    return FastAPI(lifespan=lifespan)


@pytest.fixture
async def node(db_url: str, registry: tuple[FakeRegistry, str]) -> AsyncIterator[Node]:
    fake, registry_url = registry
    await upgrade(db_url)
    accepted: list[AcceptedMessage] = []
    engine = create_engine(db_url)  # the test's own view of the store
    with serve_app(build_app(db_url, registry_url, accepted)) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            yield Node(url, http, fake, session_factory(engine), accepted)
    await engine.dispose()


def nack_error(response: httpx.Response) -> dict:
    payload = response.json()
    assert payload["message"]["ack"]["status"] == "NACK"
    return payload["error"]


async def test_signed_search_is_stored_byte_for_byte_then_acked(node: Node) -> None:
    body = search_body()
    response = await node.post("search", body, BAP.signer)
    assert response.status_code == 200
    assert response.json() == {"message": {"ack": {"status": "ACK"}}}
    [row] = await node.stored()
    assert row.body == body and row.sender_id == BAP_ID and row.action == "search"
    assert row.headers["authorization"].startswith('Signature keyId="bap.lakou.test|')
    assert row.expires_at is not None
    await asyncio.sleep(0.1)  # the handler runs after the response is sent
    assert [m.id for m in node.accepted] == [row.id]


async def test_identical_retransmission_gets_same_ack_and_is_processed_once(node: Node) -> None:
    body = search_body()
    first = await node.post("search", body, BAP.signer)
    again = await node.post("search", body, BAP.signer)  # fresh signature, same bytes
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    await asyncio.sleep(0.1)
    assert len(await node.stored()) == 1
    assert len(node.accepted) == 1


async def test_concurrent_retransmissions_store_one_row(node: Node) -> None:
    body = search_body()
    responses = await asyncio.gather(*(node.post("search", body, BAP.signer) for _ in range(12)))
    assert {r.status_code for r in responses} == {200}
    assert {r.content for r in responses} == {b'{"message":{"ack":{"status":"ACK"}}}'}
    assert len(await node.stored()) == 1


async def test_same_message_id_with_other_body_is_refused_and_original_kept(node: Node) -> None:
    body = search_body()
    message_id = json.loads(body)["context"]["message_id"]
    assert (await node.post("search", body, BAP.signer)).status_code == 200
    other = search_body(message_id=message_id, transaction_id=str(uuid.uuid4()))
    response = await node.post("search", other, BAP.signer)
    assert response.status_code == 409
    error = nack_error(response)
    assert error["code"] == "30000" and error["paths"] == "context.message_id"
    [row] = await node.stored()
    assert row.body == body


async def test_on_search_may_come_in_several_parts_under_one_message_id(node: Node) -> None:
    # A BPP pages a large catalogue over several on_search sharing the search's message_id.
    shared = context("on_search")

    def page(item: str) -> bytes:
        return json.dumps({"context": shared, "message": {"catalog": {"providers": [
            {"id": "maraicher-lamentin", "items": [{"id": item}]}]}}}).encode()

    first, second = page("ananas"), page("christophine")
    assert (await node.post("on_search", first, BPP.signer)).status_code == 200
    assert (await node.post("on_search", second, BPP.signer)).status_code == 200
    again = await node.post("on_search", first, BPP.signer)  # a retransmission is still recognised
    assert again.status_code == 200
    await asyncio.sleep(0.1)
    assert sorted(row.body for row in await node.stored()) == sorted([first, second])
    assert len(node.accepted) == 2


async def test_stale_retransmission_of_accepted_message_still_gets_its_ack(node: Node) -> None:
    # Fresh for 5 s (a loaded machine may take seconds to answer), then stale: wait until it is.
    sent = (datetime.now(UTC) - timedelta(seconds=20)).replace(microsecond=0)
    past = sent.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = search_body(timestamp=past, ttl="PT25S")
    assert (await node.post("search", body, BAP.signer)).status_code == 200
    expires = sent + timedelta(seconds=25)
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)  # now older than its ttl
    again = await node.post("search", body, BAP.signer)
    assert again.status_code == 200 and again.json()["message"]["ack"]["status"] == "ACK"
    # while a new stale message is refused with the staleness code
    stale = await node.post("search", search_body(timestamp=past, ttl="PT1S"), BAP.signer)
    assert stale.status_code == 400 and nack_error(stale)["code"] == "30022"


@pytest.mark.parametrize("body, fragment", [
    (b'{"context": {', "malformed JSON"),
    (b"[1, 2, 3]", "JSON object"),
    (b"\xff\xfe not utf-8", "UTF-8"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
])
async def test_unparseable_bodies_get_a_nack_not_a_500(node: Node, body: bytes, fragment: str) -> None:
    # Sign the garbage properly, so the parse step is what refuses it.
    response = await node.post("search", body, BAP.signer)
    assert response.status_code == 400
    error = nack_error(response)
    assert error["code"] == "30000" and fragment in error["message"]
    assert await node.stored() == []


async def test_oversized_body_is_refused_with_413(node: Node) -> None:
    body = search_body()[:-1] + b',"pad":"' + b"x" * 70_000 + b'"}'
    response = await node.post("search", body, BAP.signer)
    assert response.status_code == 413 and "exceeds the limit" in nack_error(response)["message"]


async def test_missing_signature_is_401_with_challenge(node: Node) -> None:
    response = await node.post("search", search_body())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Signature realm="bpp.lakou.test",headers="(created) (expires) digest"')
    assert nack_error(response)["code"] == "30016"


async def test_tampered_body_is_401_and_not_stored(node: Node) -> None:
    body = search_body()
    header = BAP.signer.sign(body)
    tampered = body.replace("ananas".encode(), b"banane")
    response = await node.post("search", tampered, headers={"Authorization": header})
    assert response.status_code == 401
    assert "digest" in nack_error(response)["message"] or "signature" in nack_error(response)["message"]
    assert await node.stored() == []


async def test_expired_and_future_signatures_are_refused(node: Node) -> None:
    body = search_body()
    now = int(time.time())
    expired = BAP.signer.sign(body, created=now - 7200, expires=now - 3600)
    future = BAP.signer.sign(body, created=now + 120, expires=now + 3720)
    for header in (expired, future):
        response = await node.post("search", body, headers={"Authorization": header})
        assert response.status_code == 401
    assert await node.stored() == []


async def test_unknown_key_and_wrong_key_are_refused(node: Node) -> None:
    body = search_body()
    unknown = Signer(BAP_ID, str(uuid.uuid4()), BAP.key)
    wrong_key = Signer(BAP_ID, BAP.ukid, SigningKey.generate())
    for signer in (unknown, wrong_key):
        response = await node.post("search", body, signer)
        assert response.status_code == 401, response.text
    assert await node.stored() == []


async def test_signer_must_match_context(node: Node) -> None:
    # BPP signs a request that names the BAP as its sender
    response = await node.post("search", search_body(), BPP.signer)
    assert response.status_code == 401
    assert "context.bap_id" in nack_error(response)["message"]
    # a BAP cannot send a callback in the BPP's name
    response = await node.post("on_select", on_select_body(), BAP.signer)
    assert response.status_code == 401
    # the BPP can
    assert (await node.post("on_select", on_select_body(), BPP.signer)).status_code == 200


async def test_callback_uri_must_be_on_the_signers_registered_host(node: Node) -> None:
    body = search_body(bap_uri="https://evil.example/collect")
    response = await node.post("search", body, BAP.signer)
    assert response.status_code == 400 and nack_error(response)["paths"] == "context.bap_uri"


async def test_gateway_header_must_come_from_a_registered_gateway(node: Node) -> None:
    body = search_body()
    response = await node.post("search", body, BAP.signer, gateway=IMPOSTOR_BG.signer)
    assert response.status_code == 401
    assert response.headers["Proxy-Authenticate"].startswith('Signature realm="bpp.lakou.test"')
    assert "not as a gateway" in nack_error(response)["message"]
    forged = Signer(BG_ID, BG.ukid, SigningKey.generate())
    assert (await node.post("search", body, BAP.signer, gateway=forged)).status_code == 401
    assert await node.stored() == []

    response = await node.post("search", body, BAP.signer, gateway=BG.signer)
    assert response.status_code == 200
    await asyncio.sleep(0.1)
    assert node.accepted[-1].gateway_id == BG_ID


async def test_legacy_proxy_authorization_header_is_accepted(node: Node) -> None:
    body = search_body()
    response = await node.post("search", body, BAP.signer, headers={"Proxy-Authorization": BG.signer.sign(body)})
    assert response.status_code == 200


async def test_policy_violations_are_nacked_with_code_and_path(node: Node) -> None:
    response = await node.post("search", search_body(message_id="not-a-uuid"), BAP.signer)
    assert response.status_code == 400
    error = nack_error(response)
    assert error["code"] == "30000" and error["paths"] == "context.message_id"
    response = await node.post("select", json.dumps({"context": context("select")}).encode(), BAP.signer)
    assert response.status_code == 400 and nack_error(response)["paths"].startswith("message")
    assert await node.stored() == []


async def test_one_registry_call_per_key_not_per_request(node: Node) -> None:
    before = node.registry.calls
    for _ in range(10):
        assert (await node.post("search", search_body(), BAP.signer)).status_code == 200
    assert node.registry.calls - before == 1


async def test_registry_outage_is_a_503_not_a_forged_signature(node: Node) -> None:
    node.registry.down = True
    stranger = Participant("other.lakou.test", "BAP", "https://other.lakou.test")
    response = await node.post("search", search_body(bap_id=stranger.subscriber_id), stranger.signer)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert "registry is unreachable" in nack_error(response)["message"]


async def test_nothing_is_acked_when_the_store_cannot_write(node: Node) -> None:
    async with node.sessions() as session:  # type: ignore[operator]
        # Renamed rather than dropped: service tables hold foreign keys to it.
        await session.execute(text("ALTER TABLE inbound_message RENAME TO inbound_message_gone"))
        await session.commit()
    response = await node.post("search", search_body(), BAP.signer)
    assert response.status_code == 503
    assert nack_error(response)["message"].startswith("the message could not be stored")


async def test_every_action_is_routed(node: Node) -> None:
    for action in REQUEST_ACTIONS + CALLBACK_ACTIONS:
        # unsigned: every route exists and answers 401, never 404/405
        response = await node.http.post(f"{node.url}/{action}", content=b"{}")
        assert response.status_code == 401, action
