"""The operator's admin API: add participants and keys, list them.

Enabled only when `LAKOU_REGISTRY_ADMIN_TOKEN` is set; every call then needs
`Authorization: Bearer <token>`, compared in constant time. Nodes use it at start to register
their own key (BecknNode._register_until_done) until the subscribe flow lands, so a re-post of an
unchanged record is cheap and changes nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.errors import ApiError, read_json
from registry.lookup import subscription_json
from registry.participants import Registration, entry_json, list_entries, parse_registration, register
from registry.schemas import EntryOut, ErrorOut, Subscription, inline_schema

REALM = 'Bearer realm="lakou-registry"'
_bearer = HTTPBearer(auto_error=False, description="The registry operator token (LAKOU_REGISTRY_ADMIN_TOKEN).")

_ERRORS = {
    400: {"model": ErrorOut, "description": "Invalid participant record (every problem is listed)."},
    401: {"model": ErrorOut, "description": "Missing or wrong Bearer token."},
    403: {"model": ErrorOut, "description": "The admin API is disabled on this registry."},
}


def _guard(token: str | None) -> Callable[..., Awaitable[None]]:
    expected = token.encode() if token else None

    async def require_operator(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if expected is None:
            raise ApiError(403, "the admin API is disabled on this registry: set LAKOU_REGISTRY_ADMIN_TOKEN "
                                "on the registry (and the same value on the nodes that register themselves)")
        if credentials is None:
            raise ApiError(401, "admin API: send Authorization: Bearer <LAKOU_REGISTRY_ADMIN_TOKEN>",
                           headers={"WWW-Authenticate": REALM})
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise ApiError(401, "admin API: wrong Bearer token",
                           headers={"WWW-Authenticate": REALM + ', error="invalid_token"'})

    return require_operator


def admin_router(sessions: async_sessionmaker[AsyncSession], *, token: str | None, max_body_bytes: int) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(_guard(token))], responses=_ERRORS)

    @router.post(
        "/participants",
        summary="Add or update a participant entry and its key (approved: SUBSCRIBED)",
        response_model=Subscription,
        status_code=201,
        responses={
            200: {"model": Subscription, "description": "Already registered; updated if anything changed."},
            201: {"model": Subscription, "description": "A new entry or a new key was added."},
            409: {"model": ErrorOut, "description": "The key id is already bound to other keys, or revoked."},
            413: {"model": ErrorOut, "description": "Body too large."},
        },
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": inline_schema(Registration)}}}},
    )
    async def add_participant(request: Request) -> JSONResponse:
        """Upsert the entry (subscriber_id, type, domain) and the key (subscriber_id, unique_key_id)
        from the record a node's `registration()` produces. Idempotent: a re-post changes nothing.
        A new `unique_key_id` adds a key and keeps the old ones; a known one is never rebound to
        other key material (409)."""
        registration = parse_registration(await read_json(request, max_body_bytes))
        result = await register(sessions, registration)
        return JSONResponse(subscription_json(result.participant, result.key),
                            status_code=201 if result.created else 200)

    @router.get("/participants", summary="List every entry with its key history", response_model=list[EntryOut])
    async def list_participants(
        subscriber_id: str | None = Query(None, description="Only this subscriber's entries."),
    ) -> JSONResponse:
        """All entries, whatever their status, each with all its subscriber's keys (valid, expired,
        not yet valid or revoked)."""
        now = datetime.now(UTC)
        async with sessions() as session:
            entries = await list_entries(session, subscriber_id=subscriber_id)
        return JSONResponse([entry_json(p, keys, now) for p, keys in entries])

    return router
