"""DID methods: did:key and did:jwk offline (spec test vectors), did:web over a loopback server,
and a cross-check with didkit (SpruceID ssi 0.6, run in a subprocess: it may crash at exit)."""

from __future__ import annotations

import json
import subprocess
import sys

import base58
import httpx
import pydid
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwk, jws
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from conftest import serve_app
from did import methods
from did.keys import generate_key
from did.methods import (
    DIDNotFound,
    InvalidDID,
    MethodNotSupported,
    ResolutionError,
    VerificationMethodNotFound,
    did_jwk_from_jwk,
    did_key_from_jwk,
    did_web_url,
    resolve,
    resolve_async,
    verification_key,
    verification_key_async,
)

# ------------------------------------------------------------------ spec test vectors

# w3c-ccg/did-method-key test-vectors/ed25519-x25519.json: the Ed25519 key with the given seed
# (RFC 8032 private key) and its publicKeyBase58 map to the DID.
ED25519_VECTORS = [
    ("0000000000000000000000000000000000000000000000000000000000000000",
     "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
     "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"),
    ("0000000000000000000000000000000000000000000000000000000000000001",
     "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt",
     "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG"),
    ("0000000000000000000000000000000000000000000000000000000000000002",
     "8pM1DN3RiT8vbom5u1sNryaNT1nyL8CTTW3b5PwWXRBH",
     "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf"),
    ("0000000000000000000000000000000000000000000000000000000000000003",
     "HPYVwAQmskwT1qEEeRzhoomyfyupJGASQQtCXSNG8XS2",
     "did:key:z6MkvqoYXQfDDJRv8L4wKzxYeuKyVZBfi9Qo6Ro8MiLH3kDQ"),
    ("0000000000000000000000000000000000000000000000000000000000000004",
     "J3qYF7YJMKCqQke47UQwiHizgFUXapHxRxKmxbkar89x",
     "did:key:z6MkwW6aqMnjgrhJXFUko3NnZPGzVpkNzhYK7yEhnsibmLwL"),
]

# w3c-ccg/did-method-key test-vectors/nist-curves.json (P-256 entries): publicKeyJwk ↔ DID.
P256_VECTORS = [
    ({"kty": "EC", "crv": "P-256", "x": "igrFmi0whuihKnj9R3Om1SoMph72wUGeFaBbzG2vzns",
      "y": "efsX5b10x8yjyrj4ny3pGfLcY7Xby1KzgqOdqnsrJIM"},
     "did:key:zDnaerx9CtbPJ1q36T5Ln5wYt3MQYeGRG5ehnPAmxcf5mDZpv"),
    ({"kty": "EC", "crv": "P-256", "x": "fyNYMN0976ci7xqiSdag3buk-ZCwgXU4kz9XNkBlNUI",
      "y": "hW2ojTNfH7Jbi8--CJUo3OCbH3y5n91g-IMA9MLMbTU"},
     "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169"),
]

# quartzjer/did-jwk spec.md, "Examples / P-256".
DID_JWK_P256 = (
    "did:jwk:eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6ImFjYklRaXVNczNpOF91c3pFakoydHBUdFJNNEVVM3l6OTFQSDZDZEgy"
    "VjAiLCJ5IjoiX0tjeUxqOXZXTXB0bm1LdG00NkdxRHo4d2Y3NEk1TEtncmwyR3pIM25TRSJ9"
)
DID_JWK_P256_KEY = {"crv": "P-256", "kty": "EC", "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0",
                    "y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE"}
# Same spec, "Examples / X25519": a `use: enc` key appears under keyAgreement only.
DID_JWK_X25519 = (
    "did:jwk:eyJrdHkiOiJPS1AiLCJjcnYiOiJYMjU1MTkiLCJ1c2UiOiJlbmMiLCJ4IjoiM3A3YmZYdDl3YlRUVzJIQzdPUTFOei1EUThoYmVH"
    "ZE5yZngtRkctSUswOCJ9"
)


def _seed_jwk(seed_hex: str) -> tuple[jwk.JWK, bytes]:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return jwk.JWK.from_pyca(private), raw


@pytest.mark.parametrize(("seed", "public_b58", "did"), ED25519_VECTORS)
def test_did_key_ed25519_spec_vectors(seed: str, public_b58: str, did: str) -> None:
    key, raw = _seed_jwk(seed)
    assert base58.b58encode(raw).decode() == public_b58
    assert did_key_from_jwk(key) == did
    ident = did.removeprefix("did:key:")
    doc = resolve(did)
    vm_id = f"{did}#{ident}"
    assert doc["id"] == did
    assert doc["verificationMethod"] == [
        {"id": vm_id, "type": "Multikey", "controller": did, "publicKeyMultibase": ident}
    ]
    for rel in ("authentication", "assertionMethod", "capabilityInvocation", "capabilityDelegation"):
        assert doc[rel] == [vm_id]
    key_back = verification_key(vm_id)
    assert key_back.get("kid") == vm_id
    assert key_back.get("x") == jwk.JWK.from_pyca(
        ed25519.Ed25519PublicKey.from_public_bytes(raw)).get("x")
    assert not key_back.has_private


@pytest.mark.parametrize(("public_jwk", "did"), P256_VECTORS)
def test_did_key_p256_spec_vectors(public_jwk: dict, did: str) -> None:
    assert did_key_from_jwk(public_jwk) == did
    ident = did.removeprefix("did:key:")
    assert base58.b58decode(ident[1:])[:2] == b"\x80\x24"  # p256-pub varint
    assert len(base58.b58decode(ident[1:])) == 2 + 33  # compressed point
    # The spec's vectors use JsonWebKey2020; our default is Multikey, both are supported.
    doc = resolve(did, public_key_format="JsonWebKey2020")
    assert doc["verificationMethod"][0]["publicKeyJwk"] == {"crv": "P-256", **public_jwk}
    assert doc["verificationMethod"][0]["type"] == "JsonWebKey2020"
    key = verification_key(f"{did}#{ident}", purpose="assertionMethod")
    assert {k: key.get(k) for k in ("kty", "crv", "x", "y")} == public_jwk


def test_did_jwk_spec_vector() -> None:
    assert did_jwk_from_jwk(DID_JWK_P256_KEY) == DID_JWK_P256
    doc = resolve(DID_JWK_P256)
    vm_id = DID_JWK_P256 + "#0"
    assert doc["@context"] == ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"]
    assert doc["verificationMethod"] == [
        {"id": vm_id, "type": "JsonWebKey2020", "controller": DID_JWK_P256, "publicKeyJwk": DID_JWK_P256_KEY}
    ]
    for rel in ("assertionMethod", "authentication", "capabilityInvocation", "capabilityDelegation",
                "keyAgreement"):
        assert doc[rel] == [vm_id]
    x25519 = resolve(DID_JWK_X25519)
    assert x25519["keyAgreement"] == [DID_JWK_X25519 + "#0"]
    assert "assertionMethod" not in x25519 and "authentication" not in x25519
    with pytest.raises(VerificationMethodNotFound, match="not authorised for assertionMethod"):
        verification_key(DID_JWK_X25519 + "#0", purpose="assertionMethod")


def test_documents_are_valid_did_core() -> None:
    """pydid (an independent DID Core library) parses our documents and finds the key."""
    for did in (ED25519_VECTORS[0][2], P256_VECTORS[0][1], DID_JWK_P256):
        doc = pydid.deserialize_document(resolve(did))
        assert str(doc.id) == did
        assert len(doc.verification_method) == 1
        assert doc.dereference(str(doc.assertion_method[0])) is not None


# ------------------------------------------------------------------ round trips and signatures


@pytest.mark.parametrize("kind", ["Ed25519", "P-256"])
def test_round_trip_and_signature(kind: str) -> None:
    """A signature made with a wallet key verifies under the key its DIDs resolve to."""
    private = generate_key(kind)
    alg = "EdDSA" if kind == "Ed25519" else "ES256"
    token = jws.JWS(b"lakou")
    token.add_signature(private, alg, protected={"alg": alg})
    compact = token.serialize(compact=True)
    for did in (did_key_from_jwk(private), did_jwk_from_jwk(private)):
        assert private.get("d") not in json.dumps(resolve(did))  # never the private half
        key = verification_key(did)  # single method: no fragment needed
        checked = jws.JWS()
        checked.deserialize(compact)
        checked.verify(key)
        assert checked.payload == b"lakou"
        other = generate_key(kind)
        with pytest.raises(jws.InvalidJWSSignature):
            checked.verify(verification_key(did_key_from_jwk(other)))
    assert did_key_from_jwk(private) == did_key_from_jwk(private.export_public(as_dict=True))


def test_verification_key_relative_and_wrong_fragment() -> None:
    did = ED25519_VECTORS[1][2]
    with pytest.raises(VerificationMethodNotFound, match="no verification method"):
        verification_key(did + "#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")
    with pytest.raises(VerificationMethodNotFound, match="not authorised for keyAgreement"):
        verification_key(did + "#" + did.removeprefix("did:key:"), purpose="keyAgreement")


@pytest.mark.parametrize(
    ("did", "error", "message"),
    [
        ("", InvalidDID, "not a DID"),
        ("did:key", InvalidDID, "not a DID"),
        ("DID:key:z6Mk", InvalidDID, "not a DID"),
        ("did:key:6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", InvalidDID, "base58btc"),
        ("did:key:z0OIl", InvalidDID, "base58"),
        ("did:key:z" + base58.b58encode(b"\xed\x01" + bytes(31)).decode(), InvalidDID, "32 key bytes"),
        # secp256k1 (0xe7) test vector from the same suite: a valid did:key we do not support.
        ("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", InvalidDID, "unsupported did:key multicodec"),
        ("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp?service=x", InvalidDID, "query"),
        ("did:jwk:!!!", InvalidDID, "base64url"),
        ("did:jwk:bm90IGpzb24", InvalidDID, "JSON"),
        ("did:jwk:WzFd", InvalidDID, "JSON object"),
        ("did:example:123", MethodNotSupported, "not supported"),
        ("did:web:example.com", MethodNotSupported, "resolve_async"),
        ("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp#frag", InvalidDID, "not a DID URL"),
        ("did:key:" + "z" * 5000, InvalidDID, "longer than"),
    ],
)
def test_malformed_dids_refused(did: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        resolve(did)


def test_did_jwk_with_private_key_refused() -> None:
    private = generate_key("Ed25519").export_private(as_dict=True)
    import base64

    ident = base64.urlsafe_b64encode(json.dumps(private).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidDID, match="private key material"):
        resolve("did:jwk:" + ident)
    # Building a did:jwk from a private key publishes only its public half.
    assert private["d"] not in json.dumps(resolve(did_jwk_from_jwk(private)))


def test_p256_uncompressed_did_key_refused() -> None:
    x, y = (jwk.JWK(**P256_VECTORS[0][0]).get(c) for c in ("x", "y"))
    import base64

    raw = b"\x04" + base64.urlsafe_b64decode(x + "=") + base64.urlsafe_b64decode(y + "=")
    did = "did:key:z" + base58.b58encode(b"\x80\x24" + raw).decode()
    with pytest.raises(InvalidDID, match="compressed"):
        resolve(did)


def test_unsupported_key_types_refused() -> None:
    with pytest.raises(InvalidDID, match="only Ed25519"):
        did_key_from_jwk(jwk.JWK.generate(kty="EC", crv="P-384"))
    with pytest.raises(InvalidDID, match="only Ed25519"):
        did_jwk_from_jwk(jwk.JWK.generate(kty="RSA", size=2048))


# ------------------------------------------------------------------ did:web


def test_did_web_url_transformation() -> None:
    """W3C did:web §3.2 examples, and the %3A port encoding."""
    assert did_web_url("did:web:w3c-ccg.github.io") == "https://w3c-ccg.github.io/.well-known/did.json"
    assert did_web_url("did:web:w3c-ccg.github.io:user:alice") == "https://w3c-ccg.github.io/user/alice/did.json"
    assert did_web_url("did:web:example.com%3A3000:user:alice") == "https://example.com:3000/user/alice/did.json"
    assert did_web_url("did:web:127.0.0.1%3A8000", allow_http=True) == "http://127.0.0.1:8000/.well-known/did.json"
    for bad, message in [
        ("did:web:localhost%3A8000", "test mode"),
        ("did:web:127.0.0.1", "test mode"),
        ("did:web:%5B%3A%3A1%5D", "test mode"),  # [::1]
        ("did:web:[::1]", "empty segment"),  # an unencoded ':' splits the host
        ("did:web:10.0.0.1", "not an IP"),
        ("did:web:example.com::alice", "empty segment"),
        ("did:web:exa mple.com", "invalid host"),
        ("did:web:example.com:..", "invalid path segment"),
        ("did:web:example.com:a%2Fb", "invalid path segment"),
    ]:
        with pytest.raises((InvalidDID, ResolutionError), match=message):
            did_web_url(bad)


@pytest.fixture(scope="module")
def web_server():
    """A loopback web server hosting did:web documents; yields (base URL, DID prefix, keys)."""
    state: dict = {}
    issuer = generate_key("Ed25519")
    rotated = generate_key("P-256")

    def document(did: str) -> dict:
        return {
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"],
            "id": did,
            "verificationMethod": [
                {"id": f"{did}#k1", "type": "JsonWebKey2020", "controller": did,
                 "publicKeyJwk": issuer.export_public(as_dict=True)},
                {"id": "#k2", "type": "Multikey", "controller": did,
                 "publicKeyMultibase": did_key_from_jwk(rotated).removeprefix("did:key:")},
                # The legacy form of the spec's first Ed25519 test vector.
                {"id": f"{did}#legacy", "type": "Ed25519VerificationKey2018", "controller": did,
                 "publicKeyBase58": ED25519_VECTORS[0][1]},
                {"id": f"{did}#other", "type": "JsonWebKey2020", "controller": "did:web:elsewhere.example",
                 "publicKeyJwk": issuer.export_public(as_dict=True)},
                {"id": f"{did}#nokey", "type": "Multikey", "controller": did},
            ],
            "assertionMethod": [f"{did}#k1", "#k2", f"{did}#legacy", f"{did}#other", f"{did}#nokey"],
            "authentication": [f"{did}#k1"],
        }

    async def well_known(request):
        return JSONResponse(document(state["prefix"]), media_type="application/did+json")

    async def issuer_doc(request):
        return JSONResponse(document(state["prefix"] + ":issuers:ctm"))

    async def wrong_id(request):
        return JSONResponse(document("did:web:evil.example"))

    async def huge(request):
        return Response(b'{"id": "' + b"x" * (100 * 1024) + b'"}', media_type="application/json")

    async def redirect(request):
        return RedirectResponse(state["base"] + "/.well-known/did.json")

    async def not_json(request):
        return Response(b"<html>", media_type="text/html")

    app = Starlette(routes=[
        Route("/.well-known/did.json", well_known),
        Route("/issuers/ctm/did.json", issuer_doc),
        Route("/wrong/did.json", wrong_id),
        Route("/huge/did.json", huge),
        Route("/moved/did.json", redirect),
        Route("/html/did.json", not_json),
    ])
    with serve_app(app) as base:
        state["base"] = base
        state["prefix"] = "did:web:" + base.removeprefix("http://").replace(":", "%3A")
        yield base, state["prefix"], issuer, rotated


async def test_did_web_resolves_over_loopback_in_test_mode(web_server) -> None:
    base, prefix, issuer, rotated = web_server
    doc = await resolve_async(prefix, allow_http=True)
    assert doc["id"] == prefix
    did = prefix + ":issuers:ctm"
    key = await verification_key_async(did + "#k1", purpose="assertionMethod", allow_http=True)
    assert key.thumbprint() == issuer.thumbprint()
    assert key.get("kid") == did + "#k1"
    # A relative verification method id ("#k2") with a Multikey P-256 key.
    key2 = await verification_key_async(did + "#k2", purpose="assertionMethod", allow_http=True)
    assert key2.thumbprint() == rotated.thumbprint()
    with pytest.raises(VerificationMethodNotFound, match="not authorised for authentication"):
        await verification_key_async(did + "#k2", purpose="authentication", allow_http=True)
    legacy = await verification_key_async(did + "#legacy", purpose="assertionMethod", allow_http=True)
    assert legacy.get("x") == verification_key(ED25519_VECTORS[0][2]).get("x")
    with pytest.raises(VerificationMethodNotFound, match="controlled by another DID"):
        await verification_key_async(did + "#other", allow_http=True)
    with pytest.raises(ResolutionError, match="no supported key"):
        await verification_key_async(did + "#nokey", allow_http=True)
    with pytest.raises(VerificationMethodNotFound, match="5 usable verification methods"):
        await verification_key_async(did, allow_http=True)
    # Without a fragment, the purpose may single the method out.
    only = await verification_key_async(did, purpose="authentication", allow_http=True)
    assert only.get("kid") == did + "#k1"


async def test_did_web_refused_without_test_mode(web_server) -> None:
    _, prefix, _, _ = web_server
    with pytest.raises(ResolutionError, match="only in test mode"):
        await resolve_async(prefix)
    with pytest.raises(ResolutionError, match="only in test mode"):
        await verification_key_async(prefix + "#k1")


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("wrong", ResolutionError, "expected"),
        ("huge", ResolutionError, "exceeds"),
        ("moved", ResolutionError, "HTTP 307"),
        ("html", ResolutionError, "not JSON"),
        ("absent", DIDNotFound, "not found"),
    ],
)
async def test_did_web_bad_documents(web_server, path: str, error: type, message: str) -> None:
    _, prefix, _, _ = web_server
    with pytest.raises(error, match=message):
        await resolve_async(f"{prefix}:{path}", allow_http=True)


async def test_did_web_domain_resolving_to_internal_address_refused(monkeypatch) -> None:
    """SSRF guard: a public-looking domain whose DNS answer is internal is not fetched."""
    import asyncio
    import socket

    for address in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"):
        async def fake_getaddrinfo(host, port, *args, _address=address, **kwargs):
            family = socket.AF_INET6 if ":" in _address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (_address, port))]

        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
        with pytest.raises(ResolutionError, match="non-public address"):
            await resolve_async("did:web:issuer.example.com")


async def test_did_web_unreachable_and_timeout() -> None:
    from conftest import free_port

    with pytest.raises(ResolutionError, match="failed"):
        await resolve_async(f"did:web:127.0.0.1%3A{free_port()}", allow_http=True)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(ResolutionError, match="timed out"):
            await resolve_async("did:web:issuer.example", client=client)


async def test_resolve_async_handles_offline_methods() -> None:
    did = ED25519_VECTORS[0][2]
    assert await resolve_async(did) == resolve(did)
    key = await verification_key_async(did)
    assert key.thumbprint() == verification_key(did).thumbprint()


# ------------------------------------------------------------------ didkit cross-check

_DIDKIT_SCRIPT = r"""
import asyncio, json, sys, didkit
async def main():
    req = json.loads(sys.stdin.read())
    out = {"resolved": {}, "key_to_did": []}
    for did in req["dids"]:
        out["resolved"][did] = json.loads(await didkit.resolve_did(did, "{}"))
    for key in req["keys"]:
        out["key_to_did"].append([didkit.key_to_did("key", key), didkit.key_to_did("jwk", key)])
    print(json.dumps(out), flush=True)
asyncio.run(main())
"""


def test_didkit_resolves_our_dids_to_the_same_keys() -> None:
    """didkit (an independent implementation) agrees with us on DIDs and keys.

    Representation differs: didkit 0.3.3 emits legacy `Ed25519VerificationKey2018` /
    `EcdsaSecp256r1VerificationKey2019` methods with `publicKeyJwk`, and only `authentication`
    and `assertionMethod`; we emit the spec's `Multikey` with `publicKeyMultibase` and all four
    signing relationships. Same verification method id, same key material.
    """
    keys = [generate_key("Ed25519"), generate_key("P-256")]
    ours = [did_key_from_jwk(k) for k in keys] + [ED25519_VECTORS[0][2], P256_VECTORS[0][1]]
    jwk_dids = [did_jwk_from_jwk(k) for k in keys]
    request = {"dids": ours + jwk_dids, "keys": [k.export_private() for k in keys]}
    run = subprocess.run([sys.executable, "-c", _DIDKIT_SCRIPT], input=json.dumps(request),
                         capture_output=True, text=True, timeout=60)
    # Judge by the printed output: didkit may crash at interpreter exit after printing.
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for did in ours:
        theirs = out["resolved"][did]
        assert theirs["id"] == did
        (their_vm,) = theirs["verificationMethod"]
        (our_vm,) = resolve(did)["verificationMethod"]
        assert their_vm["id"] == our_vm["id"]
        assert methods.jwk_from_multikey(our_vm["publicKeyMultibase"]).export_public(as_dict=True) == {
            k: v for k, v in their_vm["publicKeyJwk"].items() if k in ("kty", "crv", "x", "y")
        }
        assert set(theirs["assertionMethod"]) == {our_vm["id"]}
    for did in jwk_dids:
        theirs = out["resolved"][did]
        (their_vm,) = theirs["verificationMethod"]
        (our_vm,) = resolve(did)["verificationMethod"]
        assert their_vm["id"] == our_vm["id"] == did + "#0"
        assert their_vm["publicKeyJwk"] == our_vm["publicKeyJwk"]
    # didkit derives the same did:key from the private JWK; its did:jwk serialises the JWK
    # differently (did:jwk is not canonical by design), but decodes to the same key.
    for key, (their_key_did, their_jwk_did) in zip(keys, out["key_to_did"], strict=True):
        assert their_key_did == did_key_from_jwk(key)
        assert verification_key(their_jwk_did).thumbprint() == key.thumbprint()
