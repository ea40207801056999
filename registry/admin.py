"""The operator's admin API: add participants and keys, list them, and decide their lifecycle
(approve, suspend, revoke a key, revoke a participant: registry/lifecycle.py), with an audit trail.

Enabled only when `LAKOU_REGISTRY_ADMIN_TOKEN` is set; every call then needs
`Authorization: Bearer <token>`, compared in constant time. Nodes use it at start to register
their own key (BecknNode._register_until_done) until the subscribe flow lands, so a re-post of an
unchanged record is cheap and changes nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry import lifecycle
from registry.errors import ApiError, read_json
from registry.lookup import subscription_json
from registry.participants import (
    Registration,
    entry_json,
    key_state,
    list_entries,
    parse_registration,
    register,
    validation_errors,
)
from registry.schemas import EntryOut, ErrorOut, Subscription, inline_schema
from registry.tables import ParticipantStatus, RegistryParticipant
from registry.vocabulary import MAX_DOMAIN, check_code, parse_type

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


class LifecycleRequest(BaseModel):
    """An operator decision's optional details (the body may also be empty)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"type": "BPP", "domain": "lakou:retail", "actor": "marie@registry-ops", "reason": "documents checked"}]})

    type: StrictStr | None = Field(None, description="Only the entry of this role (approve/suspend); default all.")
    domain: StrictStr | None = Field(None, description="Only the entry of this domain ('' is the any-domain "
                                     "entry); default all.")
    actor: StrictStr = Field("admin-api", min_length=1, max_length=128,
                             description="Who decides, recorded in the audit trail (the token is shared, so "
                             "this is a declaration).")
    reason: StrictStr = Field("", max_length=500, description="Why, recorded in the audit trail.")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        return None if value is None else parse_type(value).value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return None if value is None else check_code(value, "domain", MAX_DOMAIN)

    @field_validator("actor", "reason")
    @classmethod
    def _printable(cls, value: str, info: Any) -> str:
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
            raise ValueError(f"{info.field_name} contains a control character")
        return value.strip()


async def _decision_body(request: Request, max_body_bytes: int) -> LifecycleRequest:
    """The optional body of a lifecycle call: nothing, or a `LifecycleRequest` object."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise ApiError(413, f"request body is larger than {max_body_bytes} bytes")
    raw = await request.body()  # cached: read_json below reads the same bytes again, size-checked
    if not raw.strip():
        return LifecycleRequest()
    payload = await read_json(request, max_body_bytes)
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object like {\"actor\": ..., \"reason\": ...} or empty")
    try:
        return LifecycleRequest.model_validate(payload)
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise ApiError(400, errors[0].message, path=errors[0].path, details=errors[1:]) from None


def _status_for_post(current: str | None) -> ParticipantStatus:
    """POST /admin/participants approves, except that it never lifts a suspension (UNSUBSCRIBED):
    nodes re-post their record at every start with the operator token, and a restart must not
    undo the operator's decision. Only /approve reinstates."""
    if current == ParticipantStatus.UNSUBSCRIBED.value:
        return ParticipantStatus.UNSUBSCRIBED
    return ParticipantStatus.SUBSCRIBED


async def current_status(session: AsyncSession, registration: Registration) -> str | None:
    return (await session.execute(select(RegistryParticipant.status).where(
        RegistryParticipant.subscriber_id == registration.subscriber_id,
        RegistryParticipant.type == registration.type.value,
        RegistryParticipant.domain == registration.domain))).scalar_one_or_none()


async def post_status(sessions: async_sessionmaker[AsyncSession], registration: Registration) -> ParticipantStatus:
    """The status an operator's add/update gives the entry (see `_status_for_post`)."""
    async with sessions() as session:
        return _status_for_post(await current_status(session, registration))


def operator_entry_json(participant: RegistryParticipant, keys: list[Any], now: datetime) -> dict[str, Any]:
    """`entry_json` with the status the operator should see: EXPIRED when every key expired
    (`recorded_status` then keeps what is stored)."""
    body = entry_json(participant, keys, now)
    shown = lifecycle.effective_status(participant.status, (key_state(k, now) for k in keys))
    if shown != participant.status:
        body["status"], body["recorded_status"] = shown, participant.status
    return body


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
        other key material, and a revoked one is never re-added (409). A suspended entry
        (UNSUBSCRIBED) stays suspended: only `/approve` reinstates it."""
        registration = parse_registration(await read_json(request, max_body_bytes))
        result = await register(sessions, registration, status=await post_status(sessions, registration))
        return JSONResponse(subscription_json(result.participant, result.key),
                            status_code=201 if result.created else 200)

    @router.get("/participants", summary="List every entry with its key history", response_model=list[EntryOut])
    async def list_participants(
        subscriber_id: str | None = Query(None, description="Only this subscriber's entries."),
    ) -> JSONResponse:
        """All entries, whatever their status, each with all its subscriber's keys (valid, expired,
        not yet valid or revoked). A SUBSCRIBED entry whose keys have all expired shows as
        EXPIRED (lookups no longer return it), with `recorded_status` SUBSCRIBED."""
        now = datetime.now(UTC)
        async with sessions() as session:
            entries = await list_entries(session, subscriber_id=subscriber_id)
        return JSONResponse([operator_entry_json(p, keys, now) for p, keys in entries])

    async def _answer(outcome: lifecycle.Outcome) -> JSONResponse:
        now = datetime.now(UTC)
        async with sessions() as session:
            entries = await list_entries(session, subscriber_id=outcome.subscriber_id)
        return JSONResponse({
            "action": outcome.action.value, "subscriber_id": outcome.subscriber_id, "changed": outcome.changed,
            "changes": [lifecycle.audit_json(row) for row in outcome.audit],
            "entries": [operator_entry_json(p, keys, now) for p, keys in entries],
        })

    subscriber = Path(..., max_length=255, description="The participant's subscriber_id.")
    lifecycle_doc: dict[str, Any] = {
        "responses": {
            200: {"description": "Done (or nothing to do: `changed` false); the subscriber's entries after it."},
            404: {"model": ErrorOut, "description": "No such participant (or entry, or key)."},
            409: {"model": ErrorOut, "description": "Not allowed from the current state (the message names it "
                                                    "and the states the decision applies to)."},
        },
        "openapi_extra": {"requestBody": {"required": False, "content": {"application/json": {
            "schema": inline_schema(LifecycleRequest)}}}},
    }

    @router.post("/participants/{subscriber_id}/approve", summary="Approve: entries become SUBSCRIBED",
                 **lifecycle_doc)
    async def approve(request: Request, subscriber_id: str = subscriber) -> JSONResponse:
        """INITIATED, UNDER_SUBSCRIPTION or suspended (UNSUBSCRIBED) entries become SUBSCRIBED, all
        of the subscriber's entries or those of `type`/`domain`. Needs a key valid now."""
        body = await _decision_body(request, max_body_bytes)
        return await _answer(await lifecycle.change_status(
            sessions, lifecycle.Action.APPROVE, subscriber_id, lifecycle.Decision(body.actor, body.reason),
            type_=body.type, domain=body.domain))

    @router.post("/participants/{subscriber_id}/suspend", summary="Suspend: entries become UNSUBSCRIBED",
                 **lifecycle_doc)
    async def suspend(request: Request, subscriber_id: str = subscriber) -> JSONResponse:
        """Entries leave every lookup (UNSUBSCRIBED) but keep their keys; `/approve` reinstates
        them. Nodes stop accepting the participant's signatures within LAKOU_LOOKUP_CACHE_SECONDS."""
        body = await _decision_body(request, max_body_bytes)
        return await _answer(await lifecycle.change_status(
            sessions, lifecycle.Action.SUSPEND, subscriber_id, lifecycle.Decision(body.actor, body.reason),
            type_=body.type, domain=body.domain))

    @router.post("/participants/{subscriber_id}/revoke", summary="Revoke a participant: out, every key revoked",
                 **lifecycle_doc)
    async def revoke_participant(request: Request, subscriber_id: str = subscriber) -> JSONResponse:
        """Every entry UNSUBSCRIBED and every key revoked now, for ever (the key history is kept
        for auditors). Coming back needs a new key id and `/approve`."""
        body = await _decision_body(request, max_body_bytes)
        if body.type is not None or body.domain is not None:
            raise ApiError(400, "revoke applies to the whole participant: type and domain are not accepted "
                                "(use /suspend for one entry)")
        return await _answer(await lifecycle.revoke_participant(
            sessions, subscriber_id, lifecycle.Decision(body.actor, body.reason)))

    @router.post("/participants/{subscriber_id}/keys/{unique_key_id}/revoke", summary="Revoke one key, for ever",
                 **lifecycle_doc)
    async def revoke_key(request: Request, subscriber_id: str = subscriber,
                         unique_key_id: str = Path(..., max_length=128, description="The key id (ukId).")) -> JSONResponse:
        """Sets the key's `revoked_at` to now. Final: never cleared, and the key id cannot be
        registered again. Signatures it made before stay verifiable in `valid_at` lookups."""
        body = await _decision_body(request, max_body_bytes)
        if body.type is not None or body.domain is not None:
            raise ApiError(400, "a key belongs to the subscriber, not to one entry: type and domain are not accepted")
        return await _answer(await lifecycle.revoke_key(
            sessions, subscriber_id, unique_key_id, lifecycle.Decision(body.actor, body.reason)))

    @router.get("/audit", summary="The operator's decisions, most recent first")
    async def audit(
        subscriber_id: str | None = Query(None, description="Only this subscriber's."),
        limit: int = Query(1000, ge=1, le=10_000, description="At most this many."),
    ) -> JSONResponse:
        """Every approve, suspend and revoke: when, who (as declared), what, from which state to
        which, and why."""
        async with sessions() as session:
            rows = await lifecycle.audit_trail(session, subscriber_id=subscriber_id, limit=limit)
        return JSONResponse([lifecycle.audit_json(row) for row in rows])

    return router
