"""The citizen-app JSON API, mounted under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from bap.api import auth, carts, orders, searches, sessions, transactions

PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    router.include_router(sessions.router)
    router.include_router(searches.router)
    router.include_router(transactions.router)
    router.include_router(orders.router)
    router.include_router(carts.router)
    router.include_router(auth.router)
    return router
