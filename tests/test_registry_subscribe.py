"""Onboarding through `/subscribe` and the `on_subscribe` challenge, served for real: the registry
and a subscriber peer (a FastAPI app answering on_subscribe with its X25519 key) on loopback.

The challenge crypto is checked against the ONDC round-trip vector of the digest (§6.1); the
flow against its lifecycle and its failures, each of which must say what to fix and leave the
participant out of the network. Storage-touching tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from beckn.keyfile import ensure_node_keys
from beckn.keys import KeyPairs, generate_key_pairs, load_signing_key, load_verify_key
from beckn.signing import Signer, body_digest, parse_signature_header, verify_signature
from conftest import free_port, serve_app
from registry.app import create_app
from registry.challenge import (
    ChallengeError,
    decrypt_challenge,
    encrypt_challenge,
    make_challenge,
    shared_secret,
    solve_challenge,
)
from registry.settings import RegistrySettings
from registry.signed_response import DEFAULT_REGISTRY_ID
from test_registry_service import execute

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

TOKEN = "subscribe-test-operator-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

# ------------------------------------------------------------------ the challenge crypto

# ONDC's published X25519 example keys (ONDC-Official/developer-docs:registry/
# encryption_and_decryption.md), as in tests/test_keys.py; the digest's round-trip vector (§6.1).
ONDC_NP1_PRIVATE = "MC4CAQEwBQYDK2VuBCIEIMCU0uKQ36pRs4d9Jm0aUD9Pn6qq+747AY2Kv4UhE/94"
ONDC_NP1_PUBLIC = "MCowBQYDK2VuAyEAmb/MUSKXvtgsPJuEQUM/imlDJ7oe9uPL/m4ta9e8Z1o="
ONDC_NP2_PRIVATE = "MC4CAQEwBQYDK2VuBCIEICDWXCT+/VoLE8TJ5nYbtGv5vI+sqXBtdYgrBMjD73Vz"
ONDC_NP2_PUBLIC = "MCowBQYDK2VuAyEA2qqMXULrFHhJCJEI38WnTtwojAtf9cZ3BsUid5Goah4="
VECTOR_SHARED = "QA/NKFuipEETWgau17M+Y61tYLsyqe/2lbjyzJ1bGGI="
VECTOR_PLAINTEXT = "ONDC is a Great Initiative!!"
VECTOR_CIPHERTEXT = "VEbQhlRRruSYHfMQuxuqpLFH56XrnB0ZAno89Xkwzng="


def test_challenge_crypto_reproduces_the_ondc_round_trip_vector() -> None:
    # Both sides agree on the raw X25519 secret (no KDF)...
    assert base64.b64encode(shared_secret(ONDC_NP1_PRIVATE, ONDC_NP2_PUBLIC)).decode() == VECTOR_SHARED
    assert base64.b64encode(shared_secret(ONDC_NP2_PRIVATE, ONDC_NP1_PUBLIC)).decode() == VECTOR_SHARED
    # ...AES-256-ECB with PKCS#7 under it gives exactly the vector's ciphertext...
    key = base64.b64decode(VECTOR_SHARED)
    assert encrypt_challenge(VECTOR_PLAINTEXT, key) == VECTOR_CIPHERTEXT
    # ...and the subscriber's side decrypts it with the other half of each pair.
    assert solve_challenge(VECTOR_CIPHERTEXT, ONDC_NP2_PRIVATE, ONDC_NP1_PUBLIC) == VECTOR_PLAINTEXT
    assert solve_challenge(VECTOR_CIPHERTEXT, ONDC_NP1_PRIVATE, ONDC_NP2_PUBLIC) == VECTOR_PLAINTEXT


def test_a_fresh_challenge_is_solved_only_with_the_right_key() -> None:
    registry, subscriber, stranger = generate_key_pairs(), generate_key_pairs(), generate_key_pairs()
    plaintext, challenge = make_challenge(registry.encryption_private_key, subscriber.encryption_public_key)
    again, other = make_challenge(registry.encryption_private_key, subscriber.encryption_public_key)
    assert plaintext != again and challenge != other  # fresh each time
    assert len(plaintext) == 32
    assert solve_challenge(challenge, subscriber.encryption_private_key, registry.encryption_public_key) == plaintext
    # Under another key the plaintext is random bytes: bad PKCS#7 padding, or (about 1 in 256)
    # good padding but not UTF-8 text (all but certain for 16+ random bytes). Both are refused.
    with pytest.raises(ChallengeError, match="encryption key pair used is not the one registered"):
        solve_challenge(challenge, stranger.encryption_private_key, registry.encryption_public_key)
    with pytest.raises(ChallengeError, match="not standard base64"):
        decrypt_challenge("not base64!", b"\0" * 32)
    with pytest.raises(ChallengeError, match="not a whole number of AES blocks"):
        decrypt_challenge(base64.b64encode(b"short").decode(), b"\0" * 32)


def test_challenge_keys_are_read_in_every_published_encoding() -> None:
    # ONDC publishes DER (SPKI / PKCS#8); Lakou nodes publish raw base64: both give the same secret.
    raw_public = base64.b64decode(ONDC_NP2_PUBLIC)[-32:]
    assert shared_secret(ONDC_NP1_PRIVATE, base64.b64encode(raw_public).decode()) == base64.b64decode(VECTOR_SHARED)
    key = x25519.X25519PrivateKey.generate()
    raw_private = key.private_bytes_raw()
    assert shared_secret(base64.b64encode(raw_private).decode(), ONDC_NP1_PUBLIC) == key.exchange(
        x25519.X25519PublicKey.from_public_bytes(base64.b64decode(ONDC_NP1_PUBLIC)[-32:]))


# ------------------------------------------------------------------ a subscriber, for real


@dataclass
class Peer:
    """A subscriber's on_subscribe endpoint. `mode` says how it answers: solve, wrong, echo, 404."""

    registry_keys: dict[str, str]
    encr_private: dict[str, str] = field(default_factory=dict)  # unique_key_id -> X25519 private
    mode: str = "solve"
    registry_url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/beckn/on_subscribe")
        async def on_subscribe(request: Request) -> JSONResponse:
            raw = await request.body()
            payload = json.loads(raw)
            call: dict[str, Any] = {"payload": payload, "signature_ok": self._registry_signed(request, raw)}
            if self.registry_url:  # what the registry says about us while it waits for our answer
                async with httpx.AsyncClient(timeout=5) as http:
                    listed = await http.get(f"{self.registry_url}/admin/participants", headers=ADMIN,
                                            params={"subscriber_id": payload["subscriber_id"]})
                call["status_during_challenge"] = [e["status"] for e in listed.json()]
            self.calls.append(call)
            if self.mode == "404":
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            if self.mode == "echo":
                return JSONResponse({"answer": payload["challenge"]})
            if self.mode == "wrong":
                return JSONResponse({"answer": "0" * 32})
            private = self.encr_private[payload["unique_key_id"]]
            return JSONResponse({"answer": solve_challenge(payload["challenge"], private,
                                                           self.registry_keys["encryption_public_key"])})

        return app

    def _registry_signed(self, request: Request, raw: bytes) -> bool:
        params = parse_signature_header(request.headers["authorization"])
        verify_signature(params, load_verify_key(self.registry_keys["signing_public_key"]),
                         digest_b64=body_digest(raw))
        return params.subscriber_id == DEFAULT_REGISTRY_ID and params.expires > time.time()


@dataclass
class Network:
    registry: str
    peer: Peer
    peer_url: str
    db_url: str


@contextlib.contextmanager
def network(db_url: str, data_dir: Path, **settings: Any) -> Iterator[Network]:
    registry_keys = ensure_node_keys(data_dir)  # the registry reads the same file at start
    peer = Peer(registry_keys)
    values: dict[str, Any] = {"data_dir": data_dir, "database_url": db_url, "registry_admin_token": TOKEN,
                              "registry_on_subscribe_timeout_seconds": 3.0}
    values.update(settings)
    with serve_app(create_app(RegistrySettings(**values))) as registry, serve_app(peer.app()) as peer_url:
        yield Network(registry, peer, peer_url, db_url)


@pytest.fixture
def net(db_url: str, tmp_path: Path) -> Iterator[Network]:
    with network(db_url, tmp_path) as n:
        yield n


@pytest.fixture
def sqlite_net(sqlite_url: str, tmp_path: Path) -> Iterator[Network]:
    """For tests of input handling and of the subscriber's mistakes: one backend is enough."""
    with network(sqlite_url, tmp_path) as n:
        yield n


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


@dataclass
class Subscriber:
    subscriber_id: str
    key_id: str
    keys: KeyPairs

    @property
    def signer(self) -> Signer:
        return Signer(self.subscriber_id, self.key_id, load_signing_key(self.keys.signing_private_key))


def new_subscriber(n: Network, name: str = "shop") -> Subscriber:
    sub = Subscriber(f"{name}-{uuid.uuid4().hex[:8]}.lakou.localhost", str(uuid.uuid4()), generate_key_pairs())
    n.peer.encr_private[sub.key_id] = sub.keys.encryption_private_key
    return sub


def new_key(n: Network, sub: Subscriber) -> Subscriber:
    rotated = Subscriber(sub.subscriber_id, str(uuid.uuid4()), generate_key_pairs())
    n.peer.encr_private[rotated.key_id] = rotated.keys.encryption_private_key
    return rotated


def body(n: Network, sub: Subscriber, **over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "subscriber_id": sub.subscriber_id,
        "url": f"{n.peer_url}/beckn",
        "type": "BPP",
        "domain": "lakou:retail",
        "location": {"city": {"code": "insee:97209"}, "country": {"code": "MTQ"}},
        "key_id": sub.key_id,
        "signing_public_key": sub.keys.signing_public_key,
        "encr_public_key": sub.keys.encryption_public_key,
        "valid_from": (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "valid_until": (now + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "nonce": str(uuid.uuid4()),
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


async def subscribe(http: httpx.AsyncClient, n: Network, payload: Any, signer: Signer | None) -> httpx.Response:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signer is not None:
        headers["Authorization"] = signer.sign(raw)
    return await http.post(f"{n.registry}/subscribe", content=raw, headers=headers)


async def entries(http: httpx.AsyncClient, n: Network, subscriber_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{n.registry}/admin/participants", headers=ADMIN,
                              params={"subscriber_id": subscriber_id})
    assert response.status_code == 200, response.text
    return response.json()


async def lookup(http: httpx.AsyncClient, n: Network, **criteria: Any) -> list[dict[str, Any]]:
    response = await http.post(f"{n.registry}/lookup", json=criteria)
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response) -> str:
    return response.json()["error"]["message"]


# ------------------------------------------------------------------ the lifecycle


async def test_subscribe_runs_the_challenge_and_lists_the_participant(net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    net.peer.registry_url = net.registry
    assert await lookup(http, net, subscriber_id=sub.subscriber_id) == []

    response = await subscribe(http, net, body(net, sub), sub.signer)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SUBSCRIBED"
    # One on_subscribe call, signed by the registry, carrying the core fields; while it was out,
    # the entry was UNDER_SUBSCRIPTION (recorded INITIATED just before).
    [call] = net.peer.calls
    assert call["signature_ok"]
    assert call["payload"]["subscriber_id"] == sub.subscriber_id
    assert isinstance(call["payload"]["challenge"], str)
    assert call["status_during_challenge"] == ["UNDER_SUBSCRIPTION"]
    # Now the network sees it, with the subscribed key and region.
    [found] = await lookup(http, net, subscriber_id=sub.subscriber_id)
    assert found["status"] == "SUBSCRIBED"
    assert found["ukId"] == sub.key_id
    assert found["signing_public_key"] == sub.keys.signing_public_key
    assert found["encr_public_key"] == sub.keys.encryption_public_key
    assert found["subscriber_url"] == f"{net.peer_url}/beckn"
    assert (found["city"], found["country"]) == ("insee:97209", "MTQ")


async def test_without_auto_approval_a_subscriber_waits_for_the_operator(
    db_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    with network(db_url, tmp_path, registry_auto_approve=False) as n:
        sub = new_subscriber(n)
        response = await subscribe(http, n, body(n, sub), sub.signer)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "UNDER_SUBSCRIPTION"
        assert "operator" in response.json()["message"]
        assert len(n.peer.calls) == 1  # the challenge was still checked
        assert await lookup(http, n, subscriber_id=sub.subscriber_id) == []
        [entry] = await entries(http, n, sub.subscriber_id)
        assert entry["status"] == "UNDER_SUBSCRIPTION"
        assert [k["unique_key_id"] for k in entry["keys"]] == [sub.key_id]  # kept for the approval


async def test_a_gateway_always_waits_for_the_operator(sqlite_net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(sqlite_net, "bg")
    response = await subscribe(http, sqlite_net, body(sqlite_net, sub, type="BG"), sub.signer)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "UNDER_SUBSCRIPTION"
    assert await lookup(http, sqlite_net, subscriber_id=sub.subscriber_id) == []


async def test_key_rotation_is_signed_with_the_registered_key(net: Network, http: httpx.AsyncClient) -> None:
    old = new_subscriber(net)
    assert (await subscribe(http, net, body(net, old), old.signer)).status_code == 200
    new = new_key(net, old)
    rotation = body(net, new)

    # Signed with the new key alone, it could come from anyone: refused, nothing stored.
    refused = await subscribe(http, net, rotation, new.signer)
    assert refused.status_code == 401, refused.text
    assert "already has registered keys" in error(refused) and old.key_id in error(refused)
    assert "WWW-Authenticate" in refused.headers
    assert len(net.peer.calls) == 1

    # Signed with the registered key: the challenge goes to the new encryption key, and it is stored.
    accepted = await subscribe(http, net, rotation, old.signer)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "SUBSCRIBED"
    assert net.peer.calls[-1]["payload"]["unique_key_id"] == new.key_id
    [entry] = await entries(http, net, old.subscriber_id)
    assert sorted(k["unique_key_id"] for k in entry["keys"]) == sorted([old.key_id, new.key_id])
    [by_new] = await lookup(http, net, subscriber_id=old.subscriber_id, ukId=new.key_id)
    assert by_new["signing_public_key"] == new.keys.signing_public_key


# ------------------------------------------------------------------ failures: precise, and nothing published


async def test_a_wrong_answer_is_refused_and_leaves_the_entry_initiated(net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    net.peer.mode = "wrong"
    response = await subscribe(http, net, body(net, sub), sub.signer)
    assert response.status_code == 422, response.text
    message = error(response)
    assert "not the challenge's plaintext" in message
    assert "AES-256-ECB" in message and sub.keys.encryption_public_key in message  # how to fix it
    assert "INITIATED" in message
    assert await lookup(http, net, subscriber_id=sub.subscriber_id) == []
    [entry] = await entries(http, net, sub.subscriber_id)
    assert entry["status"] == "INITIATED"
    assert entry["keys"] == []  # an unproven key is never stored

    # Fixed on the subscriber's side, the same request then goes through.
    net.peer.mode = "solve"
    retried = await subscribe(http, net, body(net, sub), sub.signer)
    assert retried.status_code == 200, retried.text
    assert [e["status"] for e in await lookup(http, net, subscriber_id=sub.subscriber_id)] == ["SUBSCRIBED"]


async def test_an_unreachable_on_subscribe_url_is_named(net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    dead = f"http://127.0.0.1:{free_port()}/beckn"
    response = await subscribe(http, net, body(net, sub, url=dead), sub.signer)
    assert response.status_code == 422, response.text
    assert f"could not connect to {dead}/on_subscribe" in error(response)
    assert response.json()["error"]["path"] == "url"
    [entry] = await entries(http, net, sub.subscriber_id)
    assert entry["status"] == "INITIATED"
    assert await lookup(http, net, subscriber_id=sub.subscriber_id) == []


async def test_a_bad_signature_is_refused_before_anything_is_recorded(net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    impostor = Subscriber(sub.subscriber_id, sub.key_id, generate_key_pairs())  # same keyId, other private key
    response = await subscribe(http, net, body(net, sub), impostor.signer)
    assert response.status_code == 401, response.text
    assert "signature does not verify" in error(response)
    assert "signing_public_key in the body" in error(response)
    assert response.headers["WWW-Authenticate"].startswith("Signature ")
    assert net.peer.calls == []
    assert await entries(http, net, sub.subscriber_id) == []
    assert await lookup(http, net, subscriber_id=sub.subscriber_id) == []


async def test_a_failed_update_keeps_the_subscribed_entry_as_it_was(net: Network, http: httpx.AsyncClient) -> None:
    old = new_subscriber(net)
    assert (await subscribe(http, net, body(net, old), old.signer)).status_code == 200
    new = new_key(net, old)
    net.peer.mode = "wrong"
    response = await subscribe(http, net, body(net, new), old.signer)
    assert response.status_code == 422, response.text
    assert "stays SUBSCRIBED" in error(response)
    [found] = await lookup(http, net, subscriber_id=old.subscriber_id)
    assert found["ukId"] == old.key_id  # the unproven key was not published
    assert await lookup(http, net, subscriber_id=old.subscriber_id, ukId=new.key_id) == []


async def test_a_suspended_entry_cannot_subscribe_itself_back(net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    assert (await subscribe(http, net, body(net, sub), sub.signer)).status_code == 200
    await execute(net.db_url, "UPDATE registry_participant SET status = 'UNSUBSCRIBED' WHERE subscriber_id = :s",
                  s=sub.subscriber_id)
    response = await subscribe(http, net, body(net, sub), sub.signer)
    assert response.status_code == 403, response.text
    assert "suspended by the network operator" in error(response)
    assert len(net.peer.calls) == 1
    [entry] = await entries(http, net, sub.subscriber_id)
    assert entry["status"] == "UNSUBSCRIBED"


async def test_a_key_id_is_never_rebound(sqlite_net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(sqlite_net)
    assert (await subscribe(http, sqlite_net, body(sqlite_net, sub), sub.signer)).status_code == 200
    other = generate_key_pairs()
    response = await subscribe(http, sqlite_net, body(sqlite_net, sub, encr_public_key=other.encryption_public_key),
                               sub.signer)
    assert response.status_code == 409, response.text
    assert "never rebound" in error(response) and response.json()["error"]["path"] == "encr_public_key"
    assert len(sqlite_net.peer.calls) == 1


@pytest.mark.parametrize(("mode", "expected"), [
    ("404", "answered HTTP 404 (is on_subscribe served under the subscribed url?)"),
    ("echo", "echoed the challenge back instead of decrypting it"),
])
async def test_subscriber_mistakes_are_named(sqlite_net: Network, http: httpx.AsyncClient, mode: str,
                                             expected: str) -> None:
    sub = new_subscriber(sqlite_net)
    sqlite_net.peer.mode = mode
    response = await subscribe(http, sqlite_net, body(sqlite_net, sub), sub.signer)
    assert response.status_code == 422, response.text
    assert expected in error(response)
    assert [e["status"] for e in await entries(http, sqlite_net, sub.subscriber_id)] == ["INITIATED"]


def _bad_bodies(n: Network, sub: Subscriber) -> list[tuple[dict[str, Any] | list[Any], int, str, str | None]]:
    return [
        ([], 400, "subscribe body must be a JSON object", None),
        (body(n, sub, url="http://127.0.0.1:9/beckn", subscriber_id="shop.example.mq"), 400,
         "url host '127.0.0.1' is not in the domain of subscriber_id 'shop.example.mq'", "url"),
        (body(n, sub, subscriber_id="localhost"), 400, "is not a fully qualified domain name", "subscriber_id"),
        (body(n, sub, subscriber_id="shop_1.lakou.localhost"), 400, "is not a fully qualified domain name",
         "subscriber_id"),
        (body(n, sub, url="ftp://shop.lakou.localhost/beckn"), 400, "must be an absolute http:// or https:// URL",
         "url"),
        (body(n, sub, encr_public_key="bm90IGEga2V5"), 400, "encryption public key: got 9 bytes", "encr_public_key"),
        (body(n, sub, nonce="12345"), 400, "nonce '12345' is not a UUID", "nonce"),
        (body(n, sub, type="merchant"), 400, "unknown participant type 'merchant'", "type"),
        (body(n, sub, valid_until="2020-01-01T00:00:00Z", valid_from="2019-01-01T00:00:00Z"), 400,
         "is already past", "valid_until"),
        (body(n, sub, colour="blue"), 400, "unknown field 'colour'", "colour"),
    ]


async def test_bad_subscribe_bodies_get_a_precise_400(sqlite_net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(sqlite_net)
    for payload, status, message, path in _bad_bodies(sqlite_net, sub):
        signer = sub.signer
        if isinstance(payload, dict) and payload.get("subscriber_id") != sub.subscriber_id:
            signer = Subscriber(payload["subscriber_id"], sub.key_id, sub.keys).signer
        response = await subscribe(http, sqlite_net, payload, signer)
        assert response.status_code == status, (payload, response.text)
        assert message in error(response), (payload, response.text)
        assert response.json()["error"].get("path") == path, (payload, response.text)
    assert sqlite_net.peer.calls == []
    assert await entries(http, sqlite_net, sub.subscriber_id) == []


async def test_signature_problems_are_named(sqlite_net: Network, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(sqlite_net)
    payload = body(sqlite_net, sub)

    missing = await subscribe(http, sqlite_net, payload, None)
    assert missing.status_code == 401
    assert "needs a BECKN-006 Authorization header" in error(missing)
    assert f'keyId="{sub.subscriber_id}|{sub.key_id}|ed25519"' in error(missing)

    other_key_id = Subscriber(sub.subscriber_id, str(uuid.uuid4()), sub.keys)
    wrong_id = await subscribe(http, sqlite_net, payload, other_key_id.signer)
    assert wrong_id.status_code == 401
    assert "must be signed with the key it subscribes" in error(wrong_id)

    someone_else = Subscriber("other.lakou.localhost", sub.key_id, sub.keys)
    foreign = await subscribe(http, sqlite_net, payload, someone_else.signer)
    assert foreign.status_code == 401
    assert "a participant can only subscribe itself" in error(foreign)

    raw = json.dumps(payload).encode()
    expired = sub.signer.sign(raw, created=int(time.time()) - 7200, expires=int(time.time()) - 3600)
    stale = await http.post(f"{sqlite_net.registry}/subscribe", content=raw,
                            headers={"Authorization": expired, "Content-Type": "application/json"})
    assert stale.status_code == 401 and "signature expired" in error(stale)

    tampered = await http.post(f"{sqlite_net.registry}/subscribe", content=raw.replace(b"lakou:retail", b"lakou:foods"),
                               headers={"Authorization": sub.signer.sign(raw), "Content-Type": "application/json"})
    assert tampered.status_code == 401 and "signature does not verify" in error(tampered)

    assert sqlite_net.peer.calls == []
    assert await entries(http, sqlite_net, sub.subscriber_id) == []


async def test_the_url_host_rule_accepts_the_subscribers_domain_and_can_be_turned_off(
    sqlite_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    from registry.subscribe import check_url_in_domain

    for url in ("https://bpp.example.mq/beckn", "https://api.bpp.example.mq/x", "https://example.mq/bpp"):
        check_url_in_domain("bpp.example.mq", url)
    for url in ("https://example.org/beckn", "https://mq/beckn", "https://xbpp.example.mq/", "http://127.0.0.1/"):
        with pytest.raises(Exception, match="is not in the domain of subscriber_id"):
            check_url_in_domain("bpp.example.mq", url)

    with network(sqlite_url, tmp_path, registry_check_url_host=False) as n:
        sub = new_subscriber(n)
        sub = Subscriber("shop.example.mq", sub.key_id, sub.keys)
        response = await subscribe(http, n, body(n, sub), sub.signer)
        assert response.status_code == 200, response.text  # 127.0.0.1 serves shop.example.mq here


# ------------------------------------------------------------------ TLS, and hostile bodies


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no public CA vouches for, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed subscriber")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "peer-cert.pem", directory / "peer-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@contextlib.contextmanager
def _serve_tls(app: Any, cert: Path, key: Path) -> Iterator[str]:
    """conftest.serve_app, over TLS."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ssl_certfile=str(cert), ssl_keyfile=str(key)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("TLS test server did not start")
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_an_untrusted_tls_certificate_leaves_the_entry_invalid_ssl(
    sqlite_net: Network, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    sub = new_subscriber(sqlite_net)
    cert, key = _self_signed(tmp_path)
    with _serve_tls(sqlite_net.peer.app(), cert, key) as tls_url:
        response = await subscribe(http, sqlite_net, body(sqlite_net, sub, url=f"{tls_url}/beckn"), sub.signer)
    assert response.status_code == 422, response.text
    assert "the TLS certificate of 127.0.0.1 does not verify" in error(response)
    assert "INVALID_SSL" in error(response)
    assert sqlite_net.peer.calls == []  # no challenge went over a connection we could not trust
    [entry] = await entries(http, sqlite_net, sub.subscriber_id)
    assert entry["status"] == "INVALID_SSL"
    assert entry["keys"] == []
    assert await lookup(http, sqlite_net, subscriber_id=sub.subscriber_id) == []


_FIELDS = ("subscriber_id", "url", "subscriber_url", "type", "domain", "city", "country", "location", "key_id",
           "ukId", "unique_key_id", "signing_public_key", "encr_public_key", "valid_from", "valid_until", "nonce",
           "status")
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=6)


@fuzz_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_subscribe_bodies_get_a_4xx_never_a_500(sqlite_net: Network, data: st.DataObject) -> None:
    sub = new_subscriber(sqlite_net)
    valid = body(sqlite_net, sub)
    # Start from a valid body and break some fields, so that the fuzz gets past the first check.
    broken = dict(valid)
    for name in data.draw(st.lists(st.sampled_from(_FIELDS), max_size=4, unique=True)):
        if data.draw(st.booleans()):
            broken.pop(name, None)
        else:
            broken[name] = data.draw(_JSON)
    raw = json.dumps(broken).encode()
    headers = {"Content-Type": "application/json", "Authorization": sub.signer.sign(raw)}
    response = httpx.post(f"{sqlite_net.registry}/subscribe", content=raw, headers=headers, timeout=15)
    assert 200 <= response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
