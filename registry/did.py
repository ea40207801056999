"""Participants as `did:web` DIDs: the registry serves each subscriber's DID document.

`did:web:<registry host, port as %3A>[:<path prefix>]:participants:<subscriber_id>` resolves (W3C
did:web method) to `https://<registry host>[/<path prefix>]/participants/<subscriber_id>/did.json`,
which lists the subscriber's Beckn signing keys as Ed25519 verification methods. DID tooling can
then check a BECKN-006 signature: the keyId `<subscriber_id>|<unique_key_id>|ed25519` names the
verification method `<did>#<unique_key_id>`.

Choices, and why:

* **Key representation: `JsonWebKey2020` with an OKP/Ed25519 `publicKeyJwk`** (RFC 8037), not
  `Ed25519VerificationKey2020`/`Multikey` with `publicKeyMultibase`. A Beckn signature is raw
  Ed25519 over a signing string, not a Linked Data proof, so the verifier needs the raw key; a JWK
  hands it to every JOSE library (jwcrypto, node:crypto, WebCrypto, Nimbus, jose) as well as to the
  DID stacks (did-jwt/did-resolver, SpruceID ssi/didkit, Veramo, Credo, walt.id, the Universal
  Resolver), while multibase needs multicodec-aware code that plain JOSE verifiers lack, and
  archived-but-deployed tooling (didkit 0.3) does not know `Multikey`. One verification method may
  carry only one form of key material, so we publish exactly one.
* **Validity.** Every listed key carries `expires` (its Beckn `valid_until`; the security
  vocabulary's `sec:expiration`, defined for verification methods by the jws-2020 context and by
  W3C Controlled Identifiers 1.0). Keys valid now are also referenced from `assertionMethod` and
  `authentication`. Expired keys stay in `verificationMethod` only: an auditor can still
  dereference `<did>#<ukid>` and verify a signature whose `created` predates `expires` (key history
  is kept forever), while DID tooling that checks a proof purpose refuses them for new signatures.
  Revoked keys are left out entirely: a revoked key may be compromised, so nothing signed with it
  is trustworthy whatever its date. Keys not valid yet are left out until they are (a Beckn
  signature under them would be refused by `/lookup` too).
* **Who is published.** A subscriber with at least one SUBSCRIBED entry gets its current keys in
  the relationships and one `BecknSubscriber` service per entry. One whose entries are all
  retired (UNSUBSCRIBED, EXPIRED, INVALID_SSL, or any other non-pending status) keeps its key
  history but has no relationships and no services. One still onboarding (INITIATED,
  UNDER_SUBSCRIPTION) or unknown is 404: the registry has not vouched for it.
* **`controller` is the participant's own DID**: changes to the document (rotation, revocation)
  are authorised by the participant's own key through signed subscribe; the registry only hosts
  the document, as any web server hosts a did:web. Naming the registry as controller would let
  the registry's keys authenticate *as* the merchant.
* **Host.** The DID is built from `LAKOU_PUBLIC_URL` when set (the registry's canonical public
  address; set it in production, behind TLS, since did:web always resolves over https). Unset
  (development, tests), it follows the request's own host and port, so the document's `id`
  always matches the URL it was fetched from.
* No personal data: the document carries the subscriber id (an FQDN), public keys, and the Beckn
  callback URLs that `/lookup` already publishes.

The registry's own DID, `did:web:<host>`, is served at `/.well-known/did.json` (and `/did.json`
for a registry published under a path prefix) when the registry has a key pair in its data
directory (`beckn.keyfile.KEY_FILE`); otherwise 404.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.keyfile import KEY_FILE
from beckn.keys import KeyFormatError, load_verify_key
from beckn.settings import Settings
from registry.errors import ApiError
from registry.schemas import ErrorOut
from registry.tables import ParticipantStatus, RegistryKey, RegistryParticipant
from registry.vocabulary import MAX_SUBSCRIBER_ID, check_identifier, wire_time

MEDIA_TYPE = "application/did+json"
DID_CONTEXT = "https://www.w3.org/ns/did/v1"
JWS_2020_CONTEXT = "https://w3id.org/security/suites/jws-2020/v1"
VERIFICATION_METHOD_TYPE = "JsonWebKey2020"
SERVICE_TYPE = "BecknSubscriber"
REGISTRY_SERVICE_TYPE = "BecknRegistry"
PARTICIPANTS = "participants"

# Not vouched for yet: such a subscriber has no DID document.
_PENDING = frozenset({ParticipantStatus.INITIATED.value, ParticipantStatus.UNDER_SUBSCRIPTION.value})
# Characters kept as they are in a URI fragment (RFC 3986 pchar, plus / and ?) when a key id
# becomes a verification method id; anything else is percent-encoded.
_FRAGMENT_SAFE = "!$&'()*+,;=:@/?"


# ------------------------------------------------------------------ did:web identifiers


def _idchars(text: str) -> str:
    """`text` as DID method-specific-id characters: ALPHA / DIGIT / . - _ / pct-encoded."""
    return quote(text, safe="").replace("~", "%7E")  # quote() keeps "~", which a DID may not


def did_web(base_url: str, *segments: str) -> str:
    """The did:web DID of `base_url` followed by path `segments` (did:web §3.2 "Create").

    `https://reg.example:8443/lakou` + (`participants`, `bpp.mq`) →
    `did:web:reg.example%3A8443:lakou:participants:bpp.mq`. A scheme's default port is dropped;
    any other port is kept, its colon percent-encoded as the method requires."""
    parts = urlsplit(base_url)
    host = parts.hostname
    if not host:
        raise ValueError(f"cannot make a did:web from {base_url!r}: it has no host")
    try:
        host = host.encode("idna").decode("ascii")  # internationalised names as punycode
    except UnicodeError:
        pass
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets, so its colons are not read as the port's
    authority = _idchars(host)
    if parts.port is not None and parts.port != {"https": 443, "http": 80}.get(parts.scheme):
        authority += f"%3A{parts.port}"
    prefix = [unquote(s) for s in parts.path.split("/") if s]
    return ":".join(["did", "web", authority, *(_idchars(s) for s in (*prefix, *segments))])


def participant_did(base_url: str, subscriber_id: str) -> str:
    return did_web(base_url, PARTICIPANTS, subscriber_id)


def method_id(did: str, unique_key_id: str) -> str:
    """The verification method id of a Beckn key: `<did>#<unique_key_id>`."""
    return f"{did}#{quote(unique_key_id, safe=_FRAGMENT_SAFE)}"


# ------------------------------------------------------------------ documents


def ed25519_jwk(signing_public_key: str) -> dict[str, str]:
    """An Ed25519 public key (raw base64, as stored) as an RFC 8037 OKP JWK."""
    raw = load_verify_key(signing_public_key).encode()
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")}


def _method(did: str, unique_key_id: str, signing_public_key: str, expires: datetime | None) -> dict[str, Any]:
    method: dict[str, Any] = {
        "id": method_id(did, unique_key_id),
        "type": VERIFICATION_METHOD_TYPE,
        "controller": did,
        "publicKeyJwk": ed25519_jwk(signing_public_key),
    }
    if expires is not None:
        method["expires"] = wire_time(expires)
    return method


def _document(did: str, methods: Sequence[dict[str, Any]], current: Sequence[str],
              services: Sequence[dict[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "@context": [DID_CONTEXT, JWS_2020_CONTEXT],
        "id": did,
        "controller": did,
        "verificationMethod": list(methods),
        # Beckn keys sign messages (assertions) and authenticate the sender of each request.
        "assertionMethod": list(current),
        "authentication": list(current),
    }
    if services:
        document["service"] = list(services)
    return document


def _service_id(did: str, participant: RegistryParticipant) -> str:
    domain = quote(participant.domain, safe=_FRAGMENT_SAFE) or "any"
    return f"{did}#beckn-{participant.type.lower()}-{domain}"


def participant_document(did: str, entries: Iterable[RegistryParticipant], keys: Iterable[RegistryKey],
                         now: datetime) -> dict[str, Any] | None:
    """The DID document of one subscriber, or None if it has no published entry (module doc)."""
    entries = [e for e in entries if e.status not in _PENDING]
    if not entries:
        return None
    active = [e for e in entries if e.status == ParticipantStatus.SUBSCRIBED.value]
    # Newest first, the order an operator reads a key history in.
    listed = sorted((k for k in keys if k.revoked_at is None and k.valid_from <= now),
                    key=lambda k: (k.valid_from, k.created), reverse=True)
    methods = [_method(did, k.unique_key_id, k.signing_public_key, k.valid_until) for k in listed]
    current = [method_id(did, k.unique_key_id) for k in listed if now < k.valid_until] if active else []
    services = [{"id": _service_id(did, e), "type": SERVICE_TYPE, "serviceEndpoint": e.url}
                for e in sorted(active, key=lambda e: (e.type, e.domain))]
    return _document(did, methods, current, services)


def registry_document(did: str, base_url: str, unique_key_id: str, signing_public_key: str) -> dict[str, Any]:
    """The registry's own DID document: its signing key, and where its `/lookup` answers."""
    key = method_id(did, unique_key_id)
    service = {"id": f"{did}#beckn-registry", "type": REGISTRY_SERVICE_TYPE,
               "serviceEndpoint": f"{base_url}/lookup"}
    return _document(did, [_method(did, unique_key_id, signing_public_key, None)], [key], [service])


def registry_key_from_file(data_dir: Path) -> tuple[str, str] | None:
    """(unique_key_id, signing_public_key) of the registry's key file, or None if it has none.

    Read, never created: a registry that does not sign has no DID key to show."""
    path = data_dir / KEY_FILE
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
        return str(keys["unique_key_id"]), str(keys["signing_public_key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------ HTTP


class DidDocumentResponse(JSONResponse):
    media_type = MEDIA_TYPE


def _did_response(document: Mapping[str, Any], cache_seconds: int) -> DidDocumentResponse:
    return DidDocumentResponse(dict(document), headers={
        # Bounded like a node's key cache, so a revocation reaches DID resolvers as fast as nodes.
        "Cache-Control": f"public, max-age={cache_seconds}",
        # Public, credential-free data: browser-side resolvers (web-did-resolver) may fetch it.
        "Access-Control-Allow-Origin": "*",
    })


_DOC_EXAMPLE = {
    "@context": [DID_CONTEXT, JWS_2020_CONTEXT],
    "id": "did:web:registry.lakou.mq:participants:bpp.fdf.mq",
    "controller": "did:web:registry.lakou.mq:participants:bpp.fdf.mq",
    "verificationMethod": [{
        "id": "did:web:registry.lakou.mq:participants:bpp.fdf.mq#0b6b0a4e-5f1c-4f2a-9d0e-1c2b3a4d5e6f",
        "type": VERIFICATION_METHOD_TYPE,
        "controller": "did:web:registry.lakou.mq:participants:bpp.fdf.mq",
        "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": "Fhjwaka1Za-ld-7Nms7S0C675r24mZoyWVn8JbYTjSs"},
        "expires": "2027-11-23T10:00:00.000Z",
    }],
    "assertionMethod": ["did:web:registry.lakou.mq:participants:bpp.fdf.mq#0b6b0a4e-5f1c-4f2a-9d0e-1c2b3a4d5e6f"],
    "authentication": ["did:web:registry.lakou.mq:participants:bpp.fdf.mq#0b6b0a4e-5f1c-4f2a-9d0e-1c2b3a4d5e6f"],
    "service": [{"id": "did:web:registry.lakou.mq:participants:bpp.fdf.mq#beckn-bpp-lakou:retail",
                 "type": SERVICE_TYPE, "serviceEndpoint": "https://bpp.fdf.mq/beckn"}],
}
_DOC_RESPONSE = {"description": "The DID document (W3C DID Core, JSON representation).",
                 "content": {MEDIA_TYPE: {"example": _DOC_EXAMPLE}}}


def _error(description: str) -> dict[str, Any]:
    # Spelled out rather than `"model": ErrorOut`: with a did+json route, FastAPI would list the
    # model under application/did+json, but refusals are the registry's usual application/json.
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ErrorOut.__name__}"}}}}


def did_router(sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
               registry_key: Callable[[], tuple[str, str] | None] | None = None) -> APIRouter:
    """`GET /participants/{subscriber_id}/did.json` and the registry's own `/.well-known/did.json`.

    `registry_key` returns the registry's (unique_key_id, signing_public_key), or None if it has
    no key pair; by default it reads the key file in `settings.data_dir`."""
    router = APIRouter(tags=["did"])
    public_url = settings.public_url.rstrip("/") if settings.public_url else None
    cache_seconds = settings.lookup_cache_seconds
    own_key = registry_key or (lambda: registry_key_from_file(settings.data_dir))

    def base_url(request: Request) -> str:
        return public_url or str(request.base_url).rstrip("/")

    @router.get(
        "/participants/{subscriber_id}/did.json",
        summary="A participant's did:web DID document (its Beckn signing keys)",
        response_class=DidDocumentResponse,
        responses={200: _DOC_RESPONSE,
                   400: _error("The subscriber id is malformed."),
                   404: _error("No such participant on this registry, or its onboarding is not finished.")},
    )
    async def participant(subscriber_id: str, request: Request) -> DidDocumentResponse:
        """The document `did:web:<registry host>:participants:<subscriber_id>` resolves to. Its
        verification methods are the subscriber's Beckn signing keys (`#<unique_key_id>`,
        JsonWebKey2020, Ed25519), each with its `expires`; those valid now are also its
        `assertionMethod` and `authentication`. Revoked keys are absent."""
        try:
            subscriber_id = check_identifier(subscriber_id, "subscriber_id", MAX_SUBSCRIBER_ID)
        except ValueError as exc:
            raise ApiError(400, str(exc), path="subscriber_id") from None
        async with sessions() as session:
            entries = (await session.execute(select(RegistryParticipant).where(
                RegistryParticipant.subscriber_id == subscriber_id))).scalars().all()
            keys = (await session.execute(select(RegistryKey).where(
                RegistryKey.subscriber_id == subscriber_id))).scalars().all() if entries else []
        document = participant_document(participant_did(base_url(request), subscriber_id), entries, keys,
                                        datetime.now(UTC))
        if document is None:
            raise ApiError(404, f"no participant {subscriber_id!r} is registered on this registry "
                                "(check the subscriber id, or finish its onboarding)", path="subscriber_id")
        return _did_response(document, cache_seconds)

    async def registry_did(request: Request) -> DidDocumentResponse:
        """The registry's own DID (`did:web:<registry host>`): the key it signs with."""
        key = own_key()
        if key is None:
            raise ApiError(404, "this registry has no signing key pair, so it has no DID document")
        try:
            load_verify_key(key[1])
        except KeyFormatError:
            raise ApiError(404, "this registry's signing key is unreadable, so it has no DID document") from None
        base = base_url(request)
        return _did_response(registry_document(did_web(base), base, *key), cache_seconds)

    for path in ("/.well-known/did.json", "/did.json"):  # /did.json: a registry under a path prefix
        router.add_api_route(path, registry_did, methods=["GET"], response_class=DidDocumentResponse,
                             summary="The registry's own did:web DID document",
                             responses={200: {"description": "The registry's DID document.",
                                              "content": {MEDIA_TYPE: {}}},
                                        404: _error("The registry has no key pair.")},
                             include_in_schema=path == "/.well-known/did.json")
    return router


__all__ = [
    "MEDIA_TYPE",
    "did_router",
    "did_web",
    "ed25519_jwk",
    "method_id",
    "participant_did",
    "participant_document",
    "registry_document",
    "registry_key_from_file",
]
