"""Anonymous citizen-app sessions: a random bearer token, stored only as its SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from bap.api.schemas import ErrorBody, SessionOut
from bap.service import ApiError, BapService, iso, session_expiry
from bap.tables import BapSession

router = APIRouter(tags=["sessions"])


def service(request: Request) -> BapService:
    return request.app.state.bap


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def current_session(request: Request) -> BapSession:
    """The session named by `Authorization: Bearer <token>`, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer token: create one with POST /api/v1/sessions "
                       "and send it as 'Authorization: Bearer <token>'")
    svc = service(request)
    async with svc.node.sessions() as db:
        session = (await db.execute(
            select(BapSession).where(BapSession.token_hash == token_hash(token.strip()))
        )).scalar_one_or_none()
    if session is None or session.expires_at <= datetime.now(UTC):
        raise ApiError(401, "unauthorized", "unknown or expired session token: create a new session")
    return session


CurrentSession = Annotated[BapSession, Depends(current_session)]


@router.post("/sessions", status_code=201, response_model=SessionOut, summary="Open an anonymous session",
             responses={201: {"description": "The bearer token (shown once)."}})
async def create_session(request: Request) -> SessionOut:
    svc = service(request)
    token = secrets.token_urlsafe(32)
    row = BapSession(token_hash=token_hash(token), expires_at=session_expiry(svc.settings))
    async with svc.node.sessions() as db:
        db.add(row)
        await db.commit()
    return SessionOut(token=token, expires_at=iso(row.expires_at) or "")


UNAUTHORIZED = {401: {"model": ErrorBody, "description": "No or unknown bearer token."}}
NOT_FOUND = {404: {"model": ErrorBody, "description": "No such transaction in this session."}}
