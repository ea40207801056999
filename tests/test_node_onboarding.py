"""Our own nodes onboard through the registry's real `/subscribe` and answer its `on_subscribe`.

Everything is served for real on loopback: the registry (registry.app) and a BPP, BAP or gateway
node app, exactly as `lakou serve` builds them, with LAKOU_REGISTRY_SUBSCRIBE and no admin token.
The registry's storage runs on SQLite and PostgreSQL where it matters."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bap.app import create_app as create_bap
from beckn.challenge import make_challenge
from beckn.keys import generate_key_pairs, load_signing_key, load_verify_key
from beckn.node import BecknNode
from beckn.onboarding import subscription
from beckn.settings import Settings
from beckn.signing import Signer, body_digest, parse_signature_header, verify_signature
from bpp.app import create_app as create_bpp
from conftest import free_port, serve_app
from gateway.app import create_app as create_gateway
from registry.app import create_app as create_registry
from registry.settings import RegistrySettings
from registry.signed_response import RegistryIdentity

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

TOKEN = "onboarding-test-operator-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CREATE = {"bpp": create_bpp, "bap": create_bap, "gateway": create_gateway}


@contextlib.contextmanager
def registry(data_dir: Path, database_url: str, **values: Any) -> Iterator[tuple[str, RegistryIdentity]]:
    settings = RegistrySettings(data_dir=data_dir / "registry", database_url=database_url,
                                registry_admin_token=TOKEN, **values)
    app = create_registry(settings)
    with serve_app(app) as url:
        yield url, app.state.registry_identity


@contextlib.contextmanager
def node(kind: str, data_dir: Path, registry_url: str, **values: Any) -> Iterator[tuple[str, BecknNode]]:
    """A node app as `lakou serve <kind>` builds it, on its own free port."""
    port = free_port()
    settings = Settings(data_dir=data_dir / kind, registry_url=registry_url,
                        subscriber_id=f"{kind}.lakou.localhost", **values)
    extra = {"bpp_catalogue": ""} if kind == "bpp" else {}
    if extra:
        from bpp.settings import BppSettings

        settings = BppSettings(**(settings.model_dump() | extra))
    app = CREATE[kind](settings, port=port)
    with serve_app(app, port=port) as url:
        yield url, app.state.node


def health_until(url: str, done: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(url + "/health", timeout=5).json()
        if done(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"health never reached the expected state; last: {body}")


def lookup(registry_url: str, **criteria: str) -> list[dict[str, Any]]:
    response = httpx.post(registry_url + "/lookup", json=criteria, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


# ------------------------------------------------------------------ subscribing


def test_a_bpp_subscribes_itself_and_its_signatures_verify_through_lookup(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As an operator configures it: the environment variable, no admin token anywhere on the node.
    monkeypatch.setenv("LAKOU_REGISTRY_SUBSCRIBE", "true")
    with registry(tmp_path, db_url) as (registry_url, _), node("bpp", tmp_path, registry_url) as (bpp_url, bpp):
        assert bpp.settings.registry_admin_token is None
        health = health_until(bpp_url, lambda h: h["registration"] == "SUBSCRIBED")
        assert health["registered"] is True
        assert health["registration_mode"] == "subscribe"
        assert "registration_error" not in health

        records = lookup(registry_url, subscriber_id=bpp.subscriber_id)
        assert len(records) == 1
        record = records[0]
        assert record["status"] == "SUBSCRIBED"
        assert record["type"] == "BPP"
        assert record["url"] == bpp.subscriber_url == bpp_url + "/beckn"
        assert record["ukId"] == bpp.signer.unique_key_id
        # What the node signs verifies with the key the registry publishes for it, as any peer checks.
        body = json.dumps({"context": {"action": "on_search"}}).encode()
        params = parse_signature_header(bpp.signer.sign(body))
        assert (params.subscriber_id, params.unique_key_id) == (record["subscriber_id"], record["ukId"])
        verify_signature(params, load_verify_key(record["signing_public_key"]), digest_b64=body_digest(body))


def test_a_restarted_node_subscribes_again_with_its_registered_key(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    with registry(tmp_path, db) as (registry_url, _):
        for _ in range(2):  # the second start re-subscribes the same key, signed with the registered key
            with node("bap", tmp_path, registry_url, registry_subscribe=True) as (bap_url, bap):
                health_until(bap_url, lambda h: h["registration"] == "SUBSCRIBED")
        records = lookup(registry_url, subscriber_id="bap.lakou.localhost")
        assert [r["ukId"] for r in records] == [bap.signer.unique_key_id]


def test_a_gateway_waits_under_subscription_until_the_operator_approves(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    with registry(tmp_path, db) as (registry_url, _), \
            node("gateway", tmp_path, registry_url, registry_subscribe=True) as (gateway_url, gateway):
        health = health_until(gateway_url, lambda h: h["registration"] != "pending")
        # The network policy keeps gateways for the operator: answered, but not yet in the network.
        assert health["registration"] == "UNDER_SUBSCRIPTION"
        assert health["registered"] is False
        assert lookup(registry_url, subscriber_id=gateway.subscriber_id) == []

        approved = httpx.post(registry_url + "/admin/participants", json=gateway.registration(), headers=ADMIN)
        assert approved.status_code in (200, 201), approved.text
        health = health_until(gateway_url, lambda h: h["registration"] == "SUBSCRIBED", timeout=20)
        assert health["registered"] is True


def test_a_refused_subscription_stays_pending_and_health_shows_the_registrys_reason(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    impostor = generate_key_pairs().signing_public_key  # pinned by mistake: not the registry's key
    with registry(tmp_path, db) as (registry_url, _), \
            node("bpp", tmp_path, registry_url, registry_subscribe=True,
                 registry_signing_public_key=impostor) as (bpp_url, bpp):
        health = health_until(bpp_url, lambda h: bool(h.get("registration_error")))
        assert health["registration"] == "pending"
        assert health["registered"] is False
        error = health["registration_error"]
        # The registry's own words (HTTP 422, the challenge failed) carry the node's 401 reason.
        assert "HTTP 422" in error
        assert "401" in error and "signature refused" in error
        assert lookup(registry_url, subscriber_id=bpp.subscriber_id) == []


def test_a_node_with_an_admin_token_still_registers_through_the_admin_api(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    with registry(tmp_path, db) as (registry_url, _), \
            node("bap", tmp_path, registry_url, registry_admin_token=TOKEN,
                 registry_subscribe=True) as (bap_url, _bap):
        health = health_until(bap_url, lambda h: h["registration"] == "SUBSCRIBED")
        assert health["registration_mode"] == "admin"
        assert health["registered"] is True


# ------------------------------------------------------------------ answering on_subscribe


def _challenge(node: BecknNode, registry_encr_private: str, **overrides: Any) -> tuple[str, bytes]:
    plaintext, challenge = make_challenge(registry_encr_private, node.keys["encryption_public_key"])
    body = {"subscriber_id": node.subscriber_id, "unique_key_id": node.signer.unique_key_id,
            "status": "UNDER_SUBSCRIPTION", "challenge": challenge} | overrides
    return plaintext, json.dumps(body).encode()


def _post(node: BecknNode, body: bytes, authorization: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"} | ({"Authorization": authorization} if authorization else {})
    return httpx.post(node.subscriber_url + "/on_subscribe", content=body, headers=headers, timeout=5)


def test_on_subscribe_answers_the_registry_and_refuses_unsigned_or_forged_challenges(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    # No admin token, no subscribe: every node answers on_subscribe anyway (key fetched from the registry).
    with registry(tmp_path, db) as (registry_url, identity), \
            node("bpp", tmp_path, registry_url) as (_, bpp):
        registry_private = identity.keys["encryption_private_key"]
        plaintext, body = _challenge(bpp, registry_private)
        answered = _post(bpp, body, identity.signer().sign(body))
        assert answered.status_code == 200, answered.text
        assert answered.json() == {"answer": plaintext}

        unsigned = _post(bpp, body, None)
        assert unsigned.status_code == 401
        assert "must be signed by the registry" in unsigned.json()["error"]["message"]
        assert unsigned.headers["WWW-Authenticate"].startswith("Signature")

        # Someone else's key, claiming to be the registry's key id.
        forger = Signer(identity.subscriber_id, identity.unique_key_id, load_signing_key(
            generate_key_pairs().signing_private_key))
        forged = _post(bpp, body, forger.sign(body))
        assert forged.status_code == 401
        assert "does not verify" in forged.json()["error"]["message"]

        # Signed under another id than the registry's, even with a valid signature of its own.
        other = generate_key_pairs()
        stranger = Signer("bap.example.mq", "k1", load_signing_key(other.signing_private_key))
        refused = _post(bpp, body, stranger.sign(body))
        assert refused.status_code == 401
        assert "not by the registry 'registry.lakou.localhost'" in refused.json()["error"]["message"]

        # The registry's signature, but over other bytes than those received.
        tampered = _post(bpp, body.replace(b"UNDER_SUBSCRIPTION", b"SUBSCRIBED"), identity.signer().sign(body))
        assert tampered.status_code == 401

        # Signed by the registry, but for a key this node does not hold.
        _, other_key = _challenge(bpp, registry_private, unique_key_id=str(uuid.uuid4()))
        wrong_key = _post(bpp, other_key, identity.signer().sign(other_key))
        assert wrong_key.status_code == 400
        assert "this node holds key" in wrong_key.json()["error"]["message"]

        # Encrypted with another registry key than the one it signs with: cannot be decrypted.
        _, undecryptable = _challenge(bpp, generate_key_pairs().encryption_private_key)
        bad = _post(bpp, undecryptable, identity.signer().sign(undecryptable))
        assert bad.status_code == 400
        assert "cannot decrypt" in bad.json()["error"]["message"]


def test_a_pinned_registry_key_is_used_without_asking_the_registry(tmp_path: Path) -> None:
    registry_keys = generate_key_pairs()
    dead_registry = f"http://127.0.0.1:{free_port()}"  # nothing there: /registry-key is never fetched
    with node("bap", tmp_path, dead_registry, registry_subscriber_id="registry.example.mq",
              registry_signing_public_key=registry_keys.signing_public_key,
              registry_encr_public_key=registry_keys.encryption_public_key) as (_, bap):
        plaintext, body = _challenge(bap, registry_keys.encryption_private_key)
        signer = Signer("registry.example.mq", "r1", load_signing_key(registry_keys.signing_private_key))
        answered = _post(bap, body, signer.sign(body))
        assert answered.status_code == 200, answered.text
        assert answered.json() == {"answer": plaintext}
        # The same key under another registry id is not the pinned registry.
        renamed = Signer("registry.lakou.localhost", "r1", load_signing_key(registry_keys.signing_private_key))
        assert _post(bap, body, renamed.sign(body)).status_code == 401


def test_the_subscription_is_the_core_shape_with_a_fresh_nonce() -> None:
    record = {"subscriber_id": "bpp.example.mq", "url": "https://bpp.example.mq/beckn", "type": "BPP",
              "domain": "lakou:retail", "city": "insee:97209", "country": "MTQ", "unique_key_id": "k1",
              "signing_public_key": "s", "encr_public_key": "e", "valid_from": "2026-01-01T00:00:00.000Z",
              "valid_until": "2027-01-01T00:00:00.000Z"}
    first, second = subscription(record), subscription(record)
    assert first["location"] == {"country": {"code": "MTQ"}, "city": {"code": "insee:97209"}}
    assert first["key_id"] == "k1" and "city" not in first and "unique_key_id" not in first
    assert uuid.UUID(first["nonce"]) and first["nonce"] != second["nonce"]


def test_lakou_up_lets_bap_and_bpp_subscribe_and_registers_the_gateway_as_operator(tmp_path: Path) -> None:
    from beckn.cli.network import network_environment
    from beckn.cli.serve import DEFAULT_PORTS, Service

    local = network_environment(tmp_path / "local", "127.0.0.1", dict(DEFAULT_PORTS), "demo")
    for service in (Service.bpp, Service.bap):
        assert local[service]["LAKOU_REGISTRY_SUBSCRIBE"] == "true"
        assert "LAKOU_REGISTRY_ADMIN_TOKEN" not in local[service]  # no operator power in a participant
    for service in (Service.registry, Service.gateway):
        assert local[service]["LAKOU_REGISTRY_ADMIN_TOKEN"]
        assert "LAKOU_REGISTRY_SUBSCRIBE" not in local[service]
    # On another interface the registry would refuse a *.localhost id with that URL: admin API for all.
    lan = network_environment(tmp_path / "lan", "192.0.2.10", dict(DEFAULT_PORTS), "demo")
    assert all(env.get("LAKOU_REGISTRY_ADMIN_TOKEN") and "LAKOU_REGISTRY_SUBSCRIBE" not in env
               for service, env in lan.items() if service is not Service.connect)
    # Martinique Connect is no Beckn participant: no operator token, no subscription.
    assert not {"LAKOU_REGISTRY_ADMIN_TOKEN", "LAKOU_REGISTRY_SUBSCRIBE"} & set(lan[Service.connect])
    assert local[Service.connect]["LAKOU_CONNECT_ISSUER"] == f"http://127.0.0.1:{DEFAULT_PORTS[Service.connect]}"
