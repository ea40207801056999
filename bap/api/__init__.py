"""The citizen-app JSON API, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from bap.api import searches, sessions, transactions

PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    router.include_router(sessions.router)
    router.include_router(searches.router)
    router.include_router(transactions.router)
    return router
