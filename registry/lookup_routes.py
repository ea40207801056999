"""The lookup routes: Beckn `/lookup` (open), ONDC `/v2.0/lookup` (signed request) and ONDC
`/vlookup` (signed search parameters), every answer signed by the registry; and
`GET /registry-key`, the registry's public key to verify those answers with.

All three share the matching of registry/lookup.py (wildcards, blank-registered entries, the
latest valid key unless a ukId is named, `valid_at` for key history) and answer the same array
of `Subscription` with every alias.

Choices (digest §6.2):

* `/v2.0/lookup` needs an `Authorization` signed by a SUBSCRIBED participant of this registry
  (BECKN-006, over the exact body) and, as ONDC's registry and utility do, at least two search
  parameters among subscriber_id, ukId, type, domain, city, country and url, so that a client
  written against us works against ONDC's too. `valid_at` and `status` do not count.
* `/vlookup` (deprecated at ONDC, kept for its clients): `signature` is
  base64(Ed25519-sign("country|domain|type|city|subscriber_id")) over the search parameters
  exactly as sent (a missing one is an empty string and a wildcard), checked against the
  sender's keys valid now. That signature covers neither `request_id` nor `timestamp` (ONDC's
  design), so it authenticates the query, not its freshness; both are required and
  `timestamp` must be RFC 3339, but neither is checked against replay.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request as StarletteRequest

from beckn.settings import Settings
from registry.caller_auth import (
    authenticate_signed_request,
    current_verify_keys,
    unauthorized,
    verify_plain_signature,
)
from registry.errors import ApiError, bad_request, read_json
from registry.federation import federation_from_settings
from registry.lookup import LookupFilter, find, parse_filter, subscription_json
from registry.schemas import ErrorOut, LookupRequest, Subscription, inline_schema
from registry.signed_response import RESPONSE_SIGNATURE_HEADER, RegistryIdentity, signed_json
from registry.tlog import RegistryLog, exchange_id, set_peer
from registry.vocabulary import parse_time

V2_MIN_CRITERIA = 2
VLOOKUP_FIELDS = ("country", "domain", "type", "city", "subscriber_id")  # in signing-string order

_SIGNED_ANSWER = {
    "description": "The matching entries, each with its requested or latest key.",
    "headers": {RESPONSE_SIGNATURE_HEADER: {
        "description": "The registry's BECKN-006 signature over the exact body bytes: `Signature keyId="
                       "\"<registry id>|<ukId>|ed25519\",algorithm=\"ed25519\",created,expires,headers=\"(created) "
                       "(expires) digest\",signature`. Verify with the key at GET /registry-key.",
        "schema": {"type": "string"}}},
}
_BAD = {400: {"model": ErrorOut, "description": "The body is not a JSON object or a field is wrong."},
        413: {"model": ErrorOut, "description": "Body too large."}}
_UNAUTHORIZED = {401: {"model": ErrorOut, "description": "Missing or refused signature; the message says why."}}

_VLOOKUP_EXAMPLE = {
    "sender_subscriber_id": "bap.lakou.localhost",
    "request_id": "27baa06d-f90a-486c-85e5-cc621b787f04",
    "timestamp": "2026-11-23T10:00:00.000Z",
    "signature": "<base64 Ed25519 signature of MTQ|lakou:retail|sellerApp|insee:97209|>",
    "search_parameters": {"country": "MTQ", "domain": "lakou:retail", "type": "sellerApp",
                          "city": "insee:97209", "subscriber_id": ""},
}


class RegistryKeyOut(BaseModel):
    """The registry's public keys: verify its signed answers with `signing_public_key`."""

    subscriber_id: str = Field(description="The registry's own subscriber id, the first part of keyId.")
    unique_key_id: str
    ukId: str
    key_id: str = Field(description="The keyId its signatures carry: <subscriber_id>|<ukId>|ed25519.")
    algorithm: str
    signing_public_key: str = Field(description="Ed25519, raw base64.")
    encr_public_key: str = Field(description="X25519, raw base64.")
    response_signature_header: str = Field(description="The response header carrying the signature.")
    signature_validity_seconds: int = Field(description="expires - created of each answer's signature.")
    log_vkey: str = Field(description="The key of the registry's transaction log (C2SP note verifier key, "
                                      "separate from the signing key): verify its checkpoints with it "
                                      "(`lakou audit verify --vkey`). Also at GET /tlog/vkey.")
    log_origin: str = Field(description="The origin (first line) of the registry's log checkpoints.")


async def read_body_and_json(request: Request, max_bytes: int) -> tuple[bytes, Any]:
    """The exact body bytes (a signature covers them) and their JSON, with read_json's checks."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return raw, await read_json(StarletteRequest(request.scope, replay), max_bytes)  # type: ignore[arg-type]


def lookup_router(sessions: async_sessionmaker[AsyncSession], identity: RegistryIdentity,
                  settings: Settings, tlog: RegistryLog | None = None) -> APIRouter:
    router = APIRouter(tags=["registry"])
    signer = identity.signer()
    realm = identity.subscriber_id

    # Partner registries asked when /lookup finds nothing here (registry/federation.py); the
    # lookups sent to them go to the registry's log (`tlog`), under the asking request's exchange.
    federation = federation_from_settings(settings, realm, sessions)
    federation.tlog = tlog

    async def answer(criteria: LookupFilter, federated: Request | None = None) -> Response:
        async with sessions() as session:
            found = await find(session, criteria, datetime.now(UTC))
        results = [subscription_json(p, k) for p, k in found]
        if not results and federated is not None:
            results = await federation.lookup(criteria, federated.headers, transaction_id=exchange_id(federated))
        return signed_json(results, signer)

    @router.post(
        "/lookup",
        summary="Look up subscribed participants and their current keys (or those valid at a time)",
        response_model=list[Subscription],
        responses={200: _SIGNED_ANSWER, **_BAD},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": inline_schema(LookupRequest)}}}},
    )
    async def lookup(request: Request) -> Response:
        """Every SUBSCRIBED entry matching the filter, each with the requested key (if a key id is
        given) or its latest key, valid now. `type`, `domain`, `city` and `country` also match
        entries registered blank. With `valid_at` (RFC 3339), the keys valid at that moment, also
        those since expired, superseded or revoked later, for entries in any status but INITIATED
        and UNDER_SUBSCRIPTION. Open, without authentication, like the Succinct registry and
        ONDC's legacy `/lookup`. The answer is signed (header X-Registry-Signature)."""
        return await answer(parse_filter(await read_json(request, settings.max_body_bytes)), request)

    @router.post(
        "/v2.0/lookup",
        summary="ONDC's signed lookup: the same search, for an authenticated participant",
        response_model=list[Subscription],
        responses={200: _SIGNED_ANSWER, **_BAD, **_UNAUTHORIZED},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": inline_schema(LookupRequest),
            "example": {"country": "MTQ", "domain": "lakou:retail", "type": "BPP"}}}}},
    )
    async def lookup_v2(request: Request) -> Response:
        """As `/lookup`, but the request must carry a BECKN-006 `Authorization` signed by a
        SUBSCRIBED participant of this registry with a key valid at the signature's `created`,
        and name at least two search parameters (subscriber_id, ukId, type, domain, city,
        country, url), as ONDC's registry requires."""
        raw, payload = await read_body_and_json(request, settings.max_body_bytes)
        async with sessions() as session:
            caller = await authenticate_signed_request(session, request.headers.get("authorization"), raw,
                                                       realm=realm, skew_seconds=settings.signature_skew_seconds)
        set_peer(request, caller)  # the verified signer, named in the log's leaf
        criteria = parse_filter(payload)
        if criteria.criteria_count() < V2_MIN_CRITERIA:
            raise bad_request(f"/v2.0/lookup needs at least {V2_MIN_CRITERIA} search parameters among subscriber_id, "
                              "ukId, type, domain, city, country and url (as ONDC's registry does), got "
                              f"{criteria.criteria_count()}; e.g. {{\"country\": \"MTQ\", \"domain\": \"lakou:retail\"}}")
        return await answer(criteria)

    @router.post(
        "/vlookup",
        summary="ONDC's legacy vlookup: search parameters signed by the sender",
        response_model=list[Subscription],
        responses={200: _SIGNED_ANSWER, **_BAD, **_UNAUTHORIZED},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object",
                       "required": ["sender_subscriber_id", "request_id", "timestamp", "signature",
                                    "search_parameters"],
                       "properties": {
                           "sender_subscriber_id": {"type": "string"},
                           "request_id": {"type": "string"},
                           "timestamp": {"type": "string", "format": "date-time"},
                           "signature": {"type": "string", "description": "base64 Ed25519 signature of "
                                         "country|domain|type|city|subscriber_id, as sent."},
                           "search_parameters": {"type": "object", "properties": {
                               name: {"type": "string"} for name in VLOOKUP_FIELDS}},
                       }},
            "example": _VLOOKUP_EXAMPLE}}}},
    )
    async def vlookup(request: Request) -> Response:
        """The sender signs `country|domain|type|city|subscriber_id` (the search parameters as
        sent, a missing one empty) with its registered Ed25519 key, unhashed; type buyerApp,
        sellerApp and gateway mean BAP, BPP and BG. Blank parameters are wildcards."""
        payload = await read_json(request, settings.max_body_bytes)
        sender, signature, parameters = _vlookup_fields(payload)
        message = "|".join(parameters.get(name) or "" for name in VLOOKUP_FIELDS).encode("utf-8")
        async with sessions() as session:
            keys = await current_verify_keys(session, sender, datetime.now(UTC))
        if not keys:
            raise unauthorized(f"vlookup refused: {sender!r} is not a SUBSCRIBED participant of this registry with "
                               "a key valid now", realm)
        try:
            matched = verify_plain_signature(message, signature, keys)
        except ValueError as exc:
            raise bad_request(str(exc), "signature") from None
        if matched is None:
            raise unauthorized(f"vlookup refused: signature does not verify with any current key of {sender!r}; "
                               f"sign exactly {message.decode()!r} (country|domain|type|city|subscriber_id as "
                               "sent, unhashed) with your Ed25519 private key", realm)
        set_peer(request, sender)
        return await answer(parse_filter(parameters))

    @router.get("/registry-key", summary="The registry's public keys, to verify its signed answers and its log",
                response_model=RegistryKeyOut, responses={200: {"headers": _SIGNED_ANSWER["headers"]}})
    async def registry_key() -> Response:
        """The key that signs every lookup answer (header X-Registry-Signature) and its key id,
        the registry's X25519 public key, and the key of its transaction log (`log_vkey`). Signed
        like a lookup answer, so a relayed copy still shows which log key the registry vouched for."""
        return signed_json(identity.public_json(), signer)

    return router


def _vlookup_fields(payload: Any) -> tuple[str, str, dict[str, str]]:
    if not isinstance(payload, Mapping):
        raise bad_request("vlookup body must be a JSON object with sender_subscriber_id, request_id, timestamp, "
                          "signature and search_parameters")
    values: dict[str, str] = {}
    for name in ("sender_subscriber_id", "request_id", "timestamp", "signature"):
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip():
            raise bad_request(f"{name} is required and must be a non-empty string", name)
        values[name] = value.strip()
    try:
        parse_time(values["timestamp"], "timestamp")
    except ValueError as exc:
        raise bad_request(str(exc), "timestamp") from None
    search = payload.get("search_parameters")
    if not isinstance(search, Mapping):
        raise bad_request("search_parameters is required and must be an object with country, domain, type, "
                          "city and subscriber_id", "search_parameters")
    parameters: dict[str, str] = {}
    for name in VLOOKUP_FIELDS:
        value = search.get(name)
        if value is not None and not isinstance(value, str):
            raise bad_request(f"search_parameters.{name} must be a string", f"search_parameters.{name}")
        if value is not None:
            parameters[name] = value
    return values["sender_subscriber_id"], values["signature"], parameters


__all__ = ["lookup_router", "read_body_and_json"]
