"""The ONDC-shaped `/subscribe` (digest §6.2), served for real: the registry and an ONDC-style
subscriber answering `{subscriber_id, challenge}` at `<callback_url>/on_subscribe`, on loopback.

Development ids end in `.localhost`, so the subscriber's URLs are absolute loopback URLs here (an
`https://<subscriber_id>` base cannot reach a test server); relative ONDC URLs are checked on the
translation itself. Storage-touching tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from beckn.keyfile import ensure_node_keys
from beckn.keys import KeyPairs, generate_key_pairs, load_signing_key, load_verify_key
from beckn.signing import Signer, body_digest, parse_signature_header, verify_signature
from conftest import serve_app
from registry.app import create_app
from registry.challenge import solve_challenge
from registry.errors import ApiError
from registry.ondc_subscribe import ONDC_ACK, translate_ondc
from registry.settings import RegistrySettings

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

TOKEN = "ondc-subscribe-test-operator-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

# What an ONDC subscribe carries about the company and its signatory: none of it may come out.
PII = {
    "gst": {"legal_entity_name": "Ti Kaz Kréyol SARL", "business_address": "12 rue Victor Hugo, Fort-de-France",
            "city_code": ["std:0596"], "gst_no": "29ABCDE1234F1Z5"},
    "pan": {"name_as_per_pan": "Marie-Josée Lapierre", "pan_no": "ABCDE1234F", "date_of_incorporation": "01/01/2020"},
    "name_of_authorised_signatory": "Marie-Josée Lapierre",
    "address_of_authorised_signatory": "7 chemin des Flamboyants, Le Lamentin",
    "email_id": "marie.lapierre@tikaz.example",
    "mobile_no": 596696123456,
}
PII_STRINGS = ("Ti Kaz Kréyol", "Victor Hugo", "29ABCDE1234F1Z5", "Lapierre", "ABCDE1234F", "Flamboyants",
               "tikaz.example", "596696123456")


@dataclass
class OndcPeer:
    """An ONDC participant's on_subscribe (ONDC's reference server: decrypt with the one key)."""

    registry_keys: dict[str, str]
    encr_private: str = ""
    mode: str = "solve"
    calls: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/ondc/on_subscribe")
        async def on_subscribe(request: Request) -> JSONResponse:
            raw = await request.body()
            params = parse_signature_header(request.headers["authorization"])
            verify_signature(params, load_verify_key(self.registry_keys["signing_public_key"]),
                             digest_b64=body_digest(raw))
            payload = json.loads(raw)
            self.calls.append(payload)
            if self.mode == "wrong":
                return JSONResponse({"answer": "0" * 32})
            return JSONResponse({"answer": solve_challenge(payload["challenge"], self.encr_private,
                                                           self.registry_keys["encryption_public_key"])})

        return app


@dataclass
class Net:
    registry: str
    peer: OndcPeer
    peer_url: str


@contextlib.contextmanager
def network(db_url: str, data_dir: Path, **settings: Any) -> Iterator[Net]:
    peer = OndcPeer(ensure_node_keys(data_dir))  # the registry reads the same key file at start
    values: dict[str, Any] = {"data_dir": data_dir, "database_url": db_url, "registry_admin_token": TOKEN,
                              "registry_on_subscribe_timeout_seconds": 3.0,
                              # many subscribes per test from one caller: registry/ratelimit.py is tested apart
                              "registry_rate_subscribe_per_minute": 0}
    values.update(settings)
    with serve_app(create_app(RegistrySettings(**values))) as registry, serve_app(peer.app()) as peer_url:
        yield Net(registry, peer, peer_url)


@pytest.fixture
def net(db_url: str, tmp_path: Path) -> Iterator[Net]:
    with network(db_url, tmp_path) as n:
        yield n


@pytest.fixture
def sqlite_net(sqlite_url: str, tmp_path: Path) -> Iterator[Net]:
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


def new_subscriber(n: Net) -> Subscriber:
    sub = Subscriber(f"ondc-{uuid.uuid4().hex[:8]}.lakou.localhost", str(uuid.uuid4()), generate_key_pairs())
    n.peer.encr_private = sub.keys.encryption_private_key
    return sub


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def participant(n: Net, role: str, domain: str = "ONDC:RET10", cities: Any = ("std:0596",)) -> dict[str, Any]:
    return {"subscriber_url": f"{n.peer_url}/beckn", "domain": domain, "type": role, "msn": False,
            "city_code": list(cities)}


def ondc_body(n: Net, sub: Subscriber, ops_no: Any, participants: list[dict[str, Any]],
              **entity_over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    entity = {**PII, "country": "IND", "subscriber_id": sub.subscriber_id, "unique_key_id": sub.key_id,
              "callback_url": f"{n.peer_url}/ondc",
              "key_pair": {"signing_public_key": sub.keys.signing_public_key,
                           "encryption_public_key": sub.keys.encryption_public_key,
                           "valid_from": _time(now - timedelta(minutes=1)),
                           "valid_until": _time(now + timedelta(days=365))}}
    entity.update(entity_over)
    return {"context": {"operation": {"ops_no": ops_no}},
            "message": {"request_id": str(uuid.uuid4()), "timestamp": _time(now),
                        "entity": {k: v for k, v in entity.items() if v is not None},
                        "network_participant": participants}}


async def subscribe(http: httpx.AsyncClient, n: Net, payload: Any, signer: Signer | None) -> httpx.Response:
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signer is not None:
        headers["Authorization"] = signer.sign(raw)
    return await http.post(f"{n.registry}/subscribe", content=raw, headers=headers)


async def lookup(http: httpx.AsyncClient, n: Net, **criteria: Any) -> httpx.Response:
    response = await http.post(f"{n.registry}/lookup", json=criteria)
    assert response.status_code == 200, response.text
    return response


async def entries(http: httpx.AsyncClient, n: Net, subscriber_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{n.registry}/admin/participants", headers=ADMIN,
                              params={"subscriber_id": subscriber_id})
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: httpx.Response, status: int, path: str | None, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] == {"ack": {"status": "NACK"}}, body  # ONDC clients read the ack...
    assert body["error"].get("path") == path, body  # ...and the error names the ONDC path at fault
    for fragment in fragments:
        assert fragment in body["error"]["message"], body


# ------------------------------------------------------------------ success


ROLES = {1: [("buyerApp", "BAP")], 2: [("sellerApp", "BPP")], 4: [("buyerApp", "BAP"), ("sellerApp", "BPP")]}


@pytest.mark.parametrize("ops_no", [1, 2, 4])
async def test_an_ondc_subscribe_lists_one_entry_per_role_and_domain(net: Net, http: httpx.AsyncClient,
                                                                    ops_no: int) -> None:
    sub = new_subscriber(net)
    nps = [participant(net, role) for role, _ in ROLES[ops_no]]

    response = await subscribe(http, net, ondc_body(net, sub, ops_no, nps), sub.signer)

    assert response.status_code == 200, response.text
    assert response.json() == ONDC_ACK
    # One challenge, in ONDC's shape, to <callback_url>/on_subscribe (the peer checked the signature).
    [call] = net.peer.calls
    assert set(call) == {"subscriber_id", "challenge"} and call["subscriber_id"] == sub.subscriber_id
    found = (await lookup(http, net, subscriber_id=sub.subscriber_id)).json()
    assert sorted(e["type"] for e in found) == sorted(t for _, t in ROLES[ops_no])
    for entry in found:
        assert entry["status"] == "SUBSCRIBED"
        assert (entry["domain"], entry["city"], entry["country"]) == ("ONDC:RET10", "std:0596", "IND")
        assert entry["subscriber_url"] == f"{net.peer_url}/beckn"
        assert entry["ukId"] == sub.key_id
        assert entry["signing_public_key"] == sub.keys.signing_public_key
        assert entry["encr_public_key"] == sub.keys.encryption_public_key


async def test_personal_data_is_neither_published_nor_logged(net: Net, http: httpx.AsyncClient,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    sub = new_subscriber(net)
    nps = [participant(net, "buyerApp"), participant(net, "sellerApp", "ONDC:RET11", ["std:080", "std:0596"])]
    with capture_logs() as logs:
        response = await subscribe(http, net, ondc_body(net, sub, 4, nps), sub.signer)
        assert response.status_code == 200, response.text
        # A refused body carrying the same data does not echo it either.
        bad = await subscribe(http, net, ondc_body(net, sub, 3, nps), sub.signer)
        assert bad.status_code == 400, bad.text
        published = (await lookup(http, net, subscriber_id=sub.subscriber_id)).text
        operator_view = json.dumps(await entries(http, net, sub.subscriber_id), ensure_ascii=False)
        did = await http.get(f"{net.registry}/participants/{sub.subscriber_id}/did.json")
    captured = "".join(capfd.readouterr())
    logged = json.dumps(logs, ensure_ascii=False, default=str)

    assert any(e.get("event") == "registry.subscribed" for e in logs)  # the capture did see the registry
    assert sub.subscriber_id in published and sub.subscriber_id in logged
    for text in (published, operator_view, did.text, bad.text, logged, captured):
        for secret in PII_STRINGS:
            assert secret not in text
    # Several cities → one entry registered for any city (blank), matched by a lookup for any city.
    [seller] = (await lookup(http, net, subscriber_id=sub.subscriber_id, type="BPP", city="std:022")).json()
    assert (seller["domain"], seller["city"]) == ("ONDC:RET11", "")


async def test_without_auto_approval_an_ondc_subscriber_is_acked_and_waits(
    sqlite_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    with network(sqlite_url, tmp_path, registry_auto_approve=False) as n:
        sub = new_subscriber(n)
        response = await subscribe(http, n, ondc_body(n, sub, 1, [participant(n, "buyerApp")]), sub.signer)
        assert response.json() == ONDC_ACK
        assert (await lookup(http, n, subscriber_id=sub.subscriber_id)).json() == []
        assert [e["status"] for e in await entries(http, n, sub.subscriber_id)] == ["UNDER_SUBSCRIPTION"]


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(("ops_no", "fragment"), [
    (3, "ops_no 3 (MSN seller) is deprecated by ONDC"),
    (5, "ops_no 5 (buyer app and MSN seller) is deprecated by ONDC"),
    (7, "ops_no 7 is unknown"),
    ("1", "must be the number"),
])
async def test_deprecated_or_unknown_ops_no_is_a_clear_400(net: Net, http: httpx.AsyncClient, ops_no: Any,
                                                          fragment: str) -> None:
    sub = new_subscriber(net)
    response = await subscribe(http, net, ondc_body(net, sub, ops_no, [participant(net, "sellerApp")]), sub.signer)
    refused(response, 400, "context.operation.ops_no", fragment, "1 (buyer app: BAP), 2 (seller app: BPP) or 4")
    assert net.peer.calls == []
    assert await entries(http, net, sub.subscriber_id) == []


async def test_bad_ondc_bodies_get_a_400_naming_the_ondc_path(sqlite_net: Net, http: httpx.AsyncClient) -> None:
    n = sqlite_net
    sub = new_subscriber(n)
    seller = [participant(n, "sellerApp")]
    cases: list[tuple[dict[str, Any], str, str]] = [
        (ondc_body(n, sub, 2, seller, key_pair=None), "message.entity.key_pair", "message.entity.key_pair is required"),
        (ondc_body(n, sub, 2, seller, key_pair={"signing_public_key": sub.keys.signing_public_key}),
         "message.entity.key_pair.encryption_public_key", "encryption_public_key is required"),
        (ondc_body(n, sub, 2, seller, key_pair={"signing_public_key": "bm90IGEga2V5",
                                                "encryption_public_key": sub.keys.encryption_public_key}),
         "message.entity.key_pair.signing_public_key", "got 9 bytes"),
        (ondc_body(n, sub, 2, seller, unique_key_id=None), "message.entity.unique_key_id", "is required"),
        (ondc_body(n, sub, 2, seller, callback_url="on_subscribe"), "message.entity.callback_url",
         "neither a path starting with"),
        (ondc_body(n, sub, 2, seller, callback_url="http://127.0.0.2:9/ondc", subscriber_id="shop.example.mq"),
         "message.entity.callback_url", "not in the domain of subscriber_id"),
        (ondc_body(n, sub, 1, seller), "message.network_participant[0].type",
         "'sellerApp' does not match context.operation.ops_no 1"),
        (ondc_body(n, sub, 2, [participant(n, "gateway")]), "message.network_participant[0].type", "does not match"),
        (ondc_body(n, sub, 2, []), "message.network_participant", "non-empty list"),
        (ondc_body(n, sub, 2, seller + seller), "message.network_participant[1]", "one entry per (type, domain)"),
        (ondc_body(n, sub, 2, [{**seller[0], "subscriber_url": "http://127.0.0.1:9/x"}], subscriber_id="shop.example.mq",
                    callback_url="/ondc"),
         "message.network_participant[0].subscriber_url", "is not in the domain of subscriber_id"),
        (ondc_body(n, sub, 2, [{**seller[0], "city_code": "std:080 std:022"}]),
         "message.network_participant[0].city_code", "contains whitespace"),
        ({"message": {}}, "context", "context is required"),
        (ondc_body(n, sub, 2, seller, subscriber_id="localhost", callback_url="/ondc"), "message.entity.subscriber_id",
         "message.entity.subscriber_id 'localhost' is not a fully qualified domain name"),
    ]
    for payload, path, fragment in cases:
        sid = payload.get("message", {}).get("entity", {}).get("subscriber_id", sub.subscriber_id)
        response = await subscribe(http, n, payload, Subscriber(sid, sub.key_id, sub.keys).signer)
        refused(response, 400, path, fragment)
    assert n.peer.calls == []
    assert await entries(http, n, sub.subscriber_id) == []


async def test_signature_rules_are_those_of_the_core_flow(net: Net, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    payload = ondc_body(net, sub, 2, [participant(net, "sellerApp")])
    refused(await subscribe(http, net, payload, None), 401, None, "needs a BECKN-006 Authorization header",
            f'keyId="{sub.subscriber_id}|{sub.key_id}|ed25519"')
    impostor = Subscriber(sub.subscriber_id, sub.key_id, generate_key_pairs())
    refused(await subscribe(http, net, payload, impostor.signer), 401, None, "signature does not verify",
            "signing_public_key in the body")
    assert net.peer.calls == [] and await entries(http, net, sub.subscriber_id) == []

    assert (await subscribe(http, net, payload, sub.signer)).json() == ONDC_ACK
    # A new key, now in the buyer role too: signed by the new key alone it could come from anyone.
    new = Subscriber(sub.subscriber_id, str(uuid.uuid4()), generate_key_pairs())
    rotation = ondc_body(net, new, 4, [participant(net, "sellerApp"), participant(net, "buyerApp")])
    response = await subscribe(http, net, rotation, new.signer)
    refused(response, 401, None, "already has registered keys", sub.key_id)
    assert "WWW-Authenticate" in response.headers
    net.peer.encr_private = new.keys.encryption_private_key
    assert (await subscribe(http, net, rotation, sub.signer)).json() == ONDC_ACK
    found = (await lookup(http, net, subscriber_id=sub.subscriber_id, ukId=new.key_id)).json()
    assert sorted(e["type"] for e in found) == ["BAP", "BPP"]
    # A key id is never rebound to other key material: 409, on the ONDC field the client sent.
    rebound = ondc_body(net, new, 2, [participant(net, "sellerApp")])
    rebound["message"]["entity"]["key_pair"]["encryption_public_key"] = generate_key_pairs().encryption_public_key
    refused(await subscribe(http, net, rebound, sub.signer), 409, "message.entity.key_pair.encryption_public_key",
            "never rebound")


async def test_a_failed_challenge_names_the_callback_url_and_publishes_nothing(net: Net,
                                                                              http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    net.peer.mode = "wrong"
    nps = [participant(net, "buyerApp"), participant(net, "sellerApp")]
    response = await subscribe(http, net, ondc_body(net, sub, 4, nps), sub.signer)
    refused(response, 422, "message.entity.callback_url", f"POST {net.peer_url}/ondc/on_subscribe answered",
            "not the challenge's plaintext", "BAP ONDC:RET10 is INITIATED", "BPP ONDC:RET10 is INITIATED")
    assert (await lookup(http, net, subscriber_id=sub.subscriber_id)).json() == []
    assert sorted((e["type"], e["status"], e["keys"] == []) for e in await entries(http, net, sub.subscriber_id)) == [
        ("BAP", "INITIATED", True), ("BPP", "INITIATED", True)]


async def test_a_suspended_entry_refuses_the_whole_ondc_subscribe(net: Net, http: httpx.AsyncClient) -> None:
    sub = new_subscriber(net)
    assert (await subscribe(http, net, ondc_body(net, sub, 2, [participant(net, "sellerApp")]), sub.signer)
            ).json() == ONDC_ACK
    suspend = await http.post(f"{net.registry}/admin/participants/{sub.subscriber_id}/suspend", headers=ADMIN,
                              json={"reason": "test"})
    assert suspend.status_code == 200, suspend.text
    # A new buyer entry comes first in the body: it must not stay half-begun when the seller is refused.
    nps = [participant(net, "buyerApp"), participant(net, "sellerApp")]
    response = await subscribe(http, net, ondc_body(net, sub, 4, nps), sub.signer)
    refused(response, 403, "message.entity.subscriber_id", "suspended by the network operator")
    assert len(net.peer.calls) == 1
    statuses = {e["type"]: e["status"] for e in await entries(http, net, sub.subscriber_id)}
    assert statuses["BPP"] == "UNSUBSCRIBED" and statuses.get("BAP", "INITIATED") == "INITIATED"


# ------------------------------------------------------------------ the translation itself


def test_relative_ondc_urls_are_resolved_against_https_subscriber_id() -> None:
    sid = "bpp.example.mq"
    keys = generate_key_pairs()
    payload = {"context": {"operation": {"ops_no": 4}},
               "message": {"entity": {**PII, "subscriber_id": sid, "unique_key_id": "k1", "callback_url": "/",
                                      "country": "IND",
                                      "key_pair": {"signing_public_key": keys.signing_public_key,
                                                   "encryption_public_key": keys.encryption_public_key}},
                           "network_participant": [
                               {"subscriber_url": "/beckn/bap", "domain": "ONDC:RET10", "type": "buyerApp",
                                "city_code": ["*"]},
                               {"subscriber_url": "/beckn/bpp/", "domain": "ONDC:RET10", "type": "sellerApp",
                                "city_code": ["std:080"]}]}}
    ondc = translate_ondc(payload)
    assert ondc.callback_url == "https://bpp.example.mq"  # challenge → https://bpp.example.mq/on_subscribe
    bap, bpp = ondc.subscriptions
    assert (bap["type"], bap["url"], bap["city"]) == ("BAP", "https://bpp.example.mq/beckn/bap", "")
    assert (bpp["type"], bpp["url"], bpp["city"]) == ("BPP", "https://bpp.example.mq/beckn/bpp/", "std:080")
    # Only what the registry needs was read: nothing of entity's personal data.
    assert not any(secret in json.dumps(ondc.subscriptions, ensure_ascii=False) for secret in PII_STRINGS)
    with pytest.raises(ApiError, match="protocol|neither a path"):
        translate_ondc({**payload, "message": {**payload["message"],
                                               "entity": {**payload["message"]["entity"],
                                                          "callback_url": "//evil.example/x"}}})


# ------------------------------------------------------------------ hostile bodies

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=6)
# (container path, key) pairs of the ONDC body that the fuzz may remove or replace.
_SPOTS = [((), "context"), (("context",), "operation"), (("context", "operation"), "ops_no"), ((), "message"),
          (("message",), "entity"), (("message",), "network_participant"), (("message",), "timestamp"),
          (("message",), "request_id"), (("message", "entity"), "subscriber_id"),
          (("message", "entity"), "unique_key_id"), (("message", "entity"), "callback_url"),
          (("message", "entity"), "country"), (("message", "entity"), "key_pair"),
          (("message", "entity", "key_pair"), "signing_public_key"),
          (("message", "entity", "key_pair"), "encryption_public_key"),
          (("message", "entity", "key_pair"), "valid_from"), (("message", "entity", "key_pair"), "valid_until")]
_ENTRY_KEYS = ["subscriber_url", "domain", "type", "msn", "city_code"]


@fuzz_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_ondc_bodies_get_a_4xx_never_a_500(sqlite_net: Net, data: st.DataObject) -> None:
    sub = new_subscriber(sqlite_net)
    body = ondc_body(sqlite_net, sub, data.draw(st.sampled_from([1, 2, 4])), [participant(sqlite_net, "buyerApp")])
    for parents, key in data.draw(st.lists(st.sampled_from(_SPOTS), max_size=3, unique=True)):
        container: Any = body
        for name in parents:
            container = container.get(name) if isinstance(container, dict) else None
        if isinstance(container, dict):
            if data.draw(st.booleans()):
                container.pop(key, None)
            else:
                container[key] = data.draw(_JSON)
    entries_ = body.get("message", {}).get("network_participant") if isinstance(body.get("message"), dict) else None
    if isinstance(entries_, list) and entries_ and isinstance(entries_[0], dict) and data.draw(st.booleans()):
        entries_[0][data.draw(st.sampled_from(_ENTRY_KEYS))] = data.draw(_JSON)
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": sub.signer.sign(raw)}
    response = httpx.post(f"{sqlite_net.registry}/subscribe", content=raw, headers=headers, timeout=15)
    assert 200 <= response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
