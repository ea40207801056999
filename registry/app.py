"""The registry's composition root: `lakou serve registry` runs `create_app`.

The registry does not send Beckn messages, so it needs no `BecknNode`: only its store, the
lookups, `/subscribe`, the operator's admin API, `/health`, and its own signed transaction log
(registry/tlog.py: LAKOU_TLOG_ENABLED, the auditor API under /tlog, a checkpointer in the lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from beckn.settings import Settings
from beckn.store.db import create_engine, session_factory, sqlite_path, upgrade
from registry.admin import admin_router
from registry.did import did_router
from registry.errors import install_handlers
from registry.lookup_routes import lookup_router
from registry.ratelimit import install_rate_limits
from registry.schemas import ErrorOut, Health
from registry.settings import registry_settings
from registry.signed_response import load_registry_identity
from registry.subscribe import subscribe_router
from registry.tables import RegistryParticipant
from registry.tlog import RegistryLog, RegistryLogMiddleware, vkey_router

log = structlog.get_logger(__name__)

VERSION = "0.3.0"
DEFAULT_PORT = 8100


def create_app(settings: Settings, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> FastAPI:
    database_url = settings.resolved_database_url()
    # No connection is made here: the engine connects in the server's event loop.
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    token = settings.registry_admin_token or None  # an empty token would be a door left open
    # The registry's own keys (node-keys.json in data_dir): they sign every lookup answer; its log
    # key, in the same file, signs only its transaction log's checkpoints.
    identity = load_registry_identity(settings.data_dir, settings.subscriber_id, settings.tlog_origin)
    tlog: RegistryLog | None = None
    if settings.tlog_enabled:
        tlog = RegistryLog(sessions, identity.log_signer, identity.subscriber_id,
                           checkpoint_interval=settings.tlog_checkpoint_interval_seconds,
                           max_pending=registry_settings(settings).registry_tlog_max_pending,
                           max_body_bytes=settings.max_body_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:  # noqa: ARG001 - FastAPI's signature
        path = sqlite_path(database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        await upgrade(database_url)
        if tlog is not None:
            await tlog.start()
        log.info("registry.started", url=f"http://{host}:{port}", admin_api=token is not None,
                 tlog=tlog.origin if tlog is not None else None)
        try:
            yield
        finally:
            if tlog is not None:
                await tlog.stop()
            await engine.dispose()

    app = FastAPI(
        title="Lakou Registry",
        version=VERSION,
        description="The network registry of the Lakou Beckn network: who participates, in which role, "
        "domain and region, and with which keys (Beckn core 1.1 registry.yaml `/lookup`), plus the "
        "operator's admin API.",
        lifespan=lifespan,
        # Declared on every route (registry/ratelimit.py limits all but /health).
        responses={429: {"model": ErrorOut, "description": "Rate limit of this caller reached; retry after "
                                                            "the `Retry-After` seconds."}},
    )
    install_handlers(app)
    install_rate_limits(app, settings)  # per caller, per route class (registry/ratelimit.py)
    if tlog is not None:
        # Outside the rate limiter: a refused (429) request was received too, and is logged.
        app.add_middleware(RegistryLogMiddleware, registry_log=tlog)
    app.state.registry_identity = identity
    app.state.registry_tlog = tlog
    app.include_router(lookup_router(sessions, identity, settings, tlog))

    @app.get("/health", tags=["operations"], summary="Liveness and readiness", response_model=Health,
             responses={503: {"model": Health, "description": "The database is unreachable."}})
    async def health() -> JSONResponse:
        database, participants = "ok", None
        try:
            async with sessions() as session:
                participants = (await session.execute(
                    select(func.count()).select_from(RegistryParticipant))).scalar_one()
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health probe
            database = f"unavailable: {type(exc).__name__}"
        healthy = database == "ok"
        body = {"status": "ok" if healthy else "degraded", "service": "registry", "database": database,
                "participants": participants, "admin_api": token is not None,
                "tlog": tlog.health() if tlog is not None else {"enabled": False}}
        return JSONResponse(body, status_code=200 if healthy else 503)

    app.include_router(admin_router(sessions, token=token, max_body_bytes=settings.max_body_bytes))
    app.include_router(subscribe_router(sessions, settings, identity, tlog))
    app.include_router(did_router(sessions, settings))
    # The log key is published even with the log off (as the nodes do); the auditor API needs a log.
    app.include_router(tlog.routes(settings.tlog_auditor_tokens) if tlog is not None
                       else vkey_router(identity.log_signer))
    return app


__all__ = ["create_app"]
