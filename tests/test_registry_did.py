"""Participants resolve as did:web DID documents served by the registry.

Everything a DID client does is done here without Lakou's own code: the did:web → URL
transformation is written out from the W3C did:web method, the JWK is read with jwcrypto and by
hand with `cryptography`, the BECKN-006 signing string is rebuilt from the header with hashlib,
and pydid (an independent DID document library) checks the document's shape. Only the signature
itself is made with Lakou's `beckn.signing.Signer`, as a real node makes it.
Storage-touching tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pydid
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID
from jwcrypto.jwk import JWK
from sqlalchemy import text

from beckn.keyfile import ensure_node_keys
from beckn.keys import KeyPairs, generate_key_pairs, load_signing_key
from beckn.settings import Settings
from beckn.signing import Signer
from beckn.store.db import create_engine
from conftest import free_port, serve_app
from registry.app import create_app

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

TOKEN = "did-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.now(UTC)
BODY = json.dumps({"context": {"action": "on_search", "bpp_id": "bpp.fdf.mq"},
                   "message": {"catalog": {"descriptor": {"name": "Bokit é jus maracudja"}}}},
                  ensure_ascii=False, separators=(",", ":")).encode()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------ independent DID client


def did_web_to_url(did: str, scheme: str = "http") -> str:
    """W3C did:web §3.2 "Read": ':' → '/', percent-decode the port colon, append /did.json
    (or /.well-known/did.json for a bare domain). Loopback serves http, not https."""
    assert did.startswith("did:web:"), did
    host, *path = did.removeprefix("did:web:").split(":")
    host = host.replace("%3A", ":").replace("%3a", ":")
    return f"{scheme}://{host}/{'/'.join(path)}/did.json" if path else f"{scheme}://{host}/.well-known/did.json"


def key_from_jwk(jwk: dict[str, Any]) -> Ed25519PublicKey:
    """The Ed25519 key of an OKP JWK, read twice, by jwcrypto and by hand, which must agree."""
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519"), jwk
    assert "d" not in jwk, "a DID document must never carry the private key"
    by_jwcrypto = JWK(**jwk).get_op_key("verify")
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    assert len(raw) == 32
    assert by_jwcrypto.public_bytes_raw() == raw
    return Ed25519PublicKey.from_public_bytes(raw)


def beckn_verify(header: str, body: bytes, key: Ed25519PublicKey) -> dict[str, str]:
    """Check a BECKN-006 signature header over `body` from first principles; returns its fields.
    Raises `InvalidSignature` if it does not verify."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', header))
    digest = base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode()
    signing_string = f"(created): {fields['created']}\n(expires): {fields['expires']}\ndigest: BLAKE-512={digest}"
    key.verify(base64.b64decode(fields["signature"]), signing_string.encode())
    return fields


def method_for(document: dict[str, Any], key_id: str) -> dict[str, Any]:
    """The verification method a BECKN-006 keyId `subscriber|ukid|ed25519` names in a document."""
    _subscriber, unique_key_id, _algorithm = key_id.split("|")
    wanted = f"{document['id']}#{unique_key_id}"
    [method] = [m for m in document["verificationMethod"] if m["id"] == wanted]
    return method


def relationship_ids(document: dict[str, Any], name: str) -> set[str]:
    return {r if isinstance(r, str) else r["id"] for r in document.get(name, [])}


# ------------------------------------------------------------------ servers and records


@contextlib.contextmanager
def running_registry(db_url: str, data_dir: Path, **settings: Any) -> Iterator[str]:
    values: dict[str, Any] = {"data_dir": data_dir, "database_url": db_url, "registry_admin_token": TOKEN}
    values.update(settings)
    with serve_app(create_app(Settings(**values))) as url:
        yield url


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[str]:
    with running_registry(db_url, tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_registry(sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    with running_registry(sqlite_url, tmp_path) as url:
        yield url


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def record(subscriber_id: str, keys: KeyPairs, unique_key_id: str, *, type_: str = "BPP",
           domain: str = "lakou:retail", valid_from: datetime = NOW - timedelta(days=1),
           valid_until: datetime = NOW + timedelta(days=365)) -> dict[str, Any]:
    return {"subscriber_id": subscriber_id, "type": type_, "url": f"https://{subscriber_id}/beckn",
            "domain": domain, "city": "insee:97209", "country": "MTQ", "unique_key_id": unique_key_id,
            "signing_public_key": keys.signing_public_key, "encr_public_key": keys.encryption_public_key,
            "valid_from": stamp(valid_from), "valid_until": stamp(valid_until)}


async def add(http: httpx.AsyncClient, base: str, rec: dict[str, Any]) -> None:
    response = await http.post(f"{base}/admin/participants", json=rec, headers=AUTH)
    assert response.status_code in (200, 201), response.text


async def execute(db_url: str, sql: str, **params: Any) -> None:
    """Change the store directly, as revocation and the onboarding lifecycle will."""
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def resolve(http: httpx.AsyncClient, did: str) -> dict[str, Any]:
    response = await http.get(did_web_to_url(did))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/did+json"
    document = response.json()
    assert document["id"] == did  # what every did:web resolver checks
    return document


def did_of(base: str, subscriber_id: str) -> str:
    """The participant's DID, as a client derives it from the registry's address (did:web "Create")."""
    return f"did:web:{base.removeprefix('http://').replace(':', '%3A')}:participants:{subscriber_id}"


def check_shape(document: dict[str, Any]) -> None:
    """pydid, strict: DID syntax, verification methods of known types, resolvable references."""
    doc = pydid.deserialize_document(document, strict=True)
    assert str(doc.id) == document["id"]
    for method in doc.verification_method or []:
        assert type(method).__name__ == "JsonWebKey2020"
        assert str(method.controller) == document["id"]
    for name in ("assertion_method", "authentication"):
        for reference in getattr(doc, name) or []:
            assert doc.dereference(reference).id == reference


# ------------------------------------------------------------------ tests


async def test_a_registered_participant_resolves_and_its_beckn_signature_verifies(
    registry: str, http: httpx.AsyncClient,
) -> None:
    keys, ukid = generate_key_pairs(), str(uuid.uuid4())
    await add(http, registry, record("bpp.fdf.mq", keys, ukid))

    did = did_of(registry, "bpp.fdf.mq")
    response = await http.get(f"{registry}/participants/bpp.fdf.mq/did.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/did+json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "max-age=" in response.headers["cache-control"]
    document = response.json()
    assert document["id"] == document["controller"] == did
    assert did_web_to_url(document["id"]) == f"{registry}/participants/bpp.fdf.mq/did.json"
    assert document["@context"][0] == "https://www.w3.org/ns/did/v1"
    check_shape(document)

    # A BPP signs a body exactly as it does on the wire ...
    header = Signer("bpp.fdf.mq", ukid, load_signing_key(keys.signing_private_key)).sign(BODY)
    key_id = re.search(r'keyId="([^"]+)"', header).group(1)
    # ... and a DID client finds the key its keyId names, usable for assertions now.
    method = method_for(document, key_id)
    assert method["type"] == "JsonWebKey2020"
    assert method["controller"] == did
    assert method["id"] in relationship_ids(document, "assertionMethod")
    assert method["id"] in relationship_ids(document, "authentication")
    assert datetime.fromisoformat(method["expires"]) > datetime.now(UTC)
    key = key_from_jwk(method["publicKeyJwk"])
    beckn_verify(header, BODY, key)
    with pytest.raises(InvalidSignature):  # the check can fail: one changed byte
        beckn_verify(header, BODY.replace(b"Bokit", b"Bokiy"), key)
    other = Signer("bpp.fdf.mq", ukid, load_signing_key(generate_key_pairs().signing_private_key)).sign(BODY)
    with pytest.raises(InvalidSignature):  # ... or a signature by someone else's key
        beckn_verify(other, BODY, key)

    assert document["service"] == [{"id": f"{did}#beckn-bpp-lakou:retail", "type": "BecknSubscriber",
                                     "serviceEndpoint": "https://bpp.fdf.mq/beckn"}]
    # No personal data, and nothing beyond the lookup's public fields: no city, no private key.
    assert "insee" not in response.text and "private" not in response.text


async def test_key_history_several_keys_expired_kept_revoked_and_future_absent(
    registry: str, db_url: str, http: httpx.AsyncClient,
) -> None:
    sid = "bpp.robert.mq"
    pairs = {name: (generate_key_pairs(), f"{name}-{uuid.uuid4()}") for name in
             ("current", "rotated_in", "expired", "revoked", "future")}
    windows = {
        "current": (NOW - timedelta(days=200), NOW + timedelta(days=165)),
        "rotated_in": (NOW - timedelta(days=1), NOW + timedelta(days=364)),
        "expired": (NOW - timedelta(days=600), NOW - timedelta(days=200)),
        "revoked": (NOW - timedelta(days=30), NOW + timedelta(days=300)),
        "future": (NOW + timedelta(days=10), NOW + timedelta(days=400)),
    }
    for name, (keys, ukid) in pairs.items():
        await add(http, registry, record(sid, keys, ukid, valid_from=windows[name][0], valid_until=windows[name][1]))
    await execute(db_url, "UPDATE registry_key SET revoked_at = :at WHERE unique_key_id = :ukid",
                  at=NOW - timedelta(days=1), ukid=pairs["revoked"][1])

    did = did_of(registry, sid)
    document = await resolve(http, did)
    check_shape(document)
    listed = {m["id"] for m in document["verificationMethod"]}
    assert listed == {f"{did}#{pairs[n][1]}" for n in ("current", "rotated_in", "expired")}
    current = {f"{did}#{pairs[n][1]}" for n in ("current", "rotated_in")}
    assert relationship_ids(document, "assertionMethod") == current
    assert relationship_ids(document, "authentication") == current
    assert pairs["revoked"][0].signing_public_key[:20] not in json.dumps(document)

    # An auditor verifies a signature made last year under the now expired key: the key is still
    # published, and the signature's `created` precedes the key's `expires`.
    keys, ukid = pairs["expired"]
    created = int((NOW - timedelta(days=300)).timestamp())
    old = Signer(sid, ukid, load_signing_key(keys.signing_private_key)).sign(BODY, created=created)
    method = method_for(document, re.search(r'keyId="([^"]+)"', old).group(1))
    fields = beckn_verify(old, BODY, key_from_jwk(method["publicKeyJwk"]))
    assert datetime.fromtimestamp(int(fields["created"]), UTC) < datetime.fromisoformat(method["expires"])
    assert datetime.fromisoformat(method["expires"]) < datetime.now(UTC)
    # A signature under the revoked key finds no verification method at all.
    keys, ukid = pairs["revoked"]
    revoked = Signer(sid, ukid, load_signing_key(keys.signing_private_key)).sign(BODY)
    with pytest.raises(ValueError):
        method_for(document, re.search(r'keyId="([^"]+)"', revoked).group(1))


async def test_one_service_per_subscribed_entry(sqlite_registry: str, http: httpx.AsyncClient) -> None:
    keys, ukid = generate_key_pairs(), str(uuid.uuid4())
    await add(http, sqlite_registry, record("lakou.mq", keys, ukid, type_="BPP"))
    await add(http, sqlite_registry, record("lakou.mq", keys, ukid, type_="buyerApp", domain=""))
    did = did_of(sqlite_registry, "lakou.mq")
    document = await resolve(http, did)
    assert document["service"] == [
        {"id": f"{did}#beckn-bap-any", "type": "BecknSubscriber", "serviceEndpoint": "https://lakou.mq/beckn"},
        {"id": f"{did}#beckn-bpp-lakou:retail", "type": "BecknSubscriber", "serviceEndpoint": "https://lakou.mq/beckn"},
    ]
    assert len(document["verificationMethod"]) == 1  # keys belong to the subscriber, not to an entry


async def test_unknown_pending_and_retired_participants(
    sqlite_registry: str, sqlite_url: str, http: httpx.AsyncClient,
) -> None:
    missing = await http.get(f"{sqlite_registry}/participants/nobody.mq/did.json")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")
    assert "nobody.mq" in missing.json()["error"]["message"]

    bad = await http.get(f"{sqlite_registry}/participants/a%7Cb/did.json")  # '|' cannot be in a keyId
    assert bad.status_code == 400
    assert "subscriber_id" in bad.json()["error"]["message"]

    keys, ukid = generate_key_pairs(), str(uuid.uuid4())
    await add(http, sqlite_registry, record("bpp.diamant.mq", keys, ukid))
    did = did_of(sqlite_registry, "bpp.diamant.mq")

    # Still onboarding: the registry has not vouched for it yet.
    await execute(sqlite_url, "UPDATE registry_participant SET status = 'INITIATED'")
    assert (await http.get(did_web_to_url(did))).status_code == 404

    # Unsubscribed: the key history stays for auditors, but nothing is usable for new proofs.
    await execute(sqlite_url, "UPDATE registry_participant SET status = 'UNSUBSCRIBED'")
    document = await resolve(http, did)
    check_shape(document)
    assert [m["id"] for m in document["verificationMethod"]] == [f"{did}#{ukid}"]
    assert document["assertionMethod"] == document["authentication"] == []
    assert "service" not in document


async def test_public_url_names_the_did_host(sqlite_url: str, tmp_path: Path, http: httpx.AsyncClient) -> None:
    for public_url, expected in (
        ("https://registry.lakou.mq", "did:web:registry.lakou.mq:participants:bpp.fdf.mq"),
        ("https://lakou.mq:8443/reg/", "did:web:lakou.mq%3A8443:reg:participants:bpp.fdf.mq"),
    ):
        with running_registry(sqlite_url, tmp_path, public_url=public_url) as base:
            keys, ukid = generate_key_pairs(), str(uuid.uuid4())
            await add(http, base, record("bpp.fdf.mq", keys, ukid))
            document = (await http.get(f"{base}/participants/bpp.fdf.mq/did.json")).json()
            assert document["id"] == expected
            assert did_web_to_url(expected, "https") == public_url.rstrip("/") + "/participants/bpp.fdf.mq/did.json"
            assert all(m["id"].startswith(expected + "#") for m in document["verificationMethod"])


async def test_the_registry_publishes_its_own_did(sqlite_url: str, tmp_path: Path, http: httpx.AsyncClient) -> None:
    own = ensure_node_keys(tmp_path)  # the registry's key pair, made on its first start
    with running_registry(sqlite_url, tmp_path) as base:
        did = f"did:web:{base.removeprefix('http://').replace(':', '%3A')}"
        document = await resolve(http, did)  # /.well-known/did.json
        check_shape(document)
        method = method_for(document, f"registry|{own['unique_key_id']}|ed25519")
        assert method["id"] in relationship_ids(document, "assertionMethod")
        assert "private" not in json.dumps(document)
        signature = Signer("registry.lakou.localhost", own["unique_key_id"],
                           load_signing_key(own["signing_private_key"])).sign(BODY)
        beckn_verify(signature, BODY, key_from_jwk(method["publicKeyJwk"]))
        assert {"id": f"{did}#beckn-registry", "type": "BecknRegistry",
                "serviceEndpoint": f"{base}/lookup"} in document["service"]


# ------------------------------------------------------------------ a real DID resolver, over https

INTEROP = Path(__file__).resolve().parent / "interop"


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js (`node`) is not installed; install it and run `make test`")
    if not (INTEROP / "node_modules" / "web-did-resolver").is_dir():
        pytest.fail("tests/interop/node_modules lacks web-did-resolver: run `make test` "
                    "(it runs `npm ci` in tests/interop first)")
    return exe


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (did:web resolvers speak https only), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakou test registry")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@contextlib.contextmanager
def serve_tls(app: Any, cert: Path, key: Path) -> Iterator[str]:
    """conftest.serve_app, over TLS."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
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


def node_resolve(node: str, cert: Path, did: str, key_id: str) -> dict[str, Any]:
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(cert))
    out = subprocess.run([node, "resolve-did.js", did, key_id], cwd=INTEROP, capture_output=True, text=True,
                         timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def sdk_verify(node: str, body_file: Path, public_key: str, header: str) -> bool:
    """ondc-crypto-sdk-nodejs's isHeaderValid (tests/interop/verify.js), a real Beckn peer."""
    out = subprocess.run([node, "verify.js", str(body_file), public_key, header], cwd=INTEROP,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "true"


@pytest.mark.node
async def test_did_resolver_resolves_over_https_and_a_beckn_peer_verifies_with_the_key(
    node: str, sqlite_url: str, tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    keys, ukid = generate_key_pairs(), str(uuid.uuid4())
    settings = Settings(data_dir=tmp_path / "registry", database_url=sqlite_url, registry_admin_token=TOKEN)
    with serve_tls(create_app(settings), cert, key) as base:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
            await add(client, base, record("bpp.fdf.mq", keys, ukid))
        header = Signer("bpp.fdf.mq", ukid, load_signing_key(keys.signing_private_key)).sign(BODY)
        key_id = re.search(r'keyId="([^"]+)"', header).group(1)
        did = f"did:web:127.0.0.1%3A{base.rsplit(':', 1)[1]}:participants:bpp.fdf.mq"

        resolved = node_resolve(node, cert, did, key_id)
        assert "error" not in resolved["metadata"], resolved["metadata"]
        assert resolved["document"]["id"] == did
        assert resolved["method"]["id"] == f"{did}#{ukid}"
        assert resolved["purposes"] == ["assertionMethod", "authentication"]
        assert resolved["publicKey"] == keys.signing_public_key

        body_file = tmp_path / "body.json"
        body_file.write_bytes(BODY)
        assert sdk_verify(node, body_file, resolved["publicKey"], header)
        body_file.write_bytes(BODY.replace(b"Bokit", b"Bokiy"))
        assert not sdk_verify(node, body_file, resolved["publicKey"], header)

        unknown = node_resolve(node, cert, did.replace("bpp.fdf.mq", "nobody.mq"), key_id)
        assert unknown["metadata"]["error"] == "notFound"

    # The resolver's id check can fail: a registry published under another name serves documents
    # whose id is not the DID asked for at this address.
    elsewhere = Settings(data_dir=tmp_path / "registry", database_url=sqlite_url, registry_admin_token=TOKEN,
                         public_url="https://registry.lakou.mq")
    with serve_tls(create_app(elsewhere), cert, key) as base:
        did = f"did:web:127.0.0.1%3A{base.rsplit(':', 1)[1]}:participants:bpp.fdf.mq"
        mismatch = node_resolve(node, cert, did, key_id)
        assert "does not match" in mismatch["metadata"]["message"]
