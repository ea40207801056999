"""Composition root of the BPP (merchant side): `create_app(settings)`.

It wires a `BecknNode` (store, keys, inbound pipeline, outbox) answering search, select, init,
confirm and status from the catalogue tables, seeds the catalogue on first start when asked
(LAKOU_BPP_CATALOGUE), and adds the JSON API of `bpp.api` and `/health`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from beckn.inbound import Role
from beckn.node import BecknNode
from beckn.settings import Settings
from bpp.api import api_routes
from bpp.bulk_api import bulk_routes
from bpp.catalogue import counts, load_catalogue, seed_if_empty
from bpp.merchant_api import merchant_routes
from bpp.merchant_orders import merchant_order_routes
from bpp.service import BppService
from bpp.settings import bpp_settings

log = structlog.get_logger(__name__)

ACTIONS = ("search", "select", "init", "confirm", "status", "cancel", "track", "support", "rating")
VERSION = "0.3.0"


def create_app(settings: Settings, *, host: str = "127.0.0.1", port: int = 8300) -> FastAPI:
    config = bpp_settings(settings)
    # Read the catalogue now: a wrong path or a malformed file stops the start with its reason.
    catalogue = load_catalogue(config.bpp_catalogue)
    node = BecknNode(config, service="bpp", role=Role.BPP, actions=ACTIONS, host=host, port=port)
    service = BppService(node, config)
    node.on_message(service.handle)
    stats: dict[str, int] = {"providers": 0, "items": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with node.lifespan(app):
            if catalogue is not None and await seed_if_empty(node.sessions, catalogue):
                log.info("bpp.catalogue_seeded", source=config.bpp_catalogue, providers=len(catalogue.providers))
            stats.update(await counts(node.sessions))
            yield

    app = FastAPI(
        title="Lakou BPP",
        version=VERSION,
        summary="The merchant side of the Lakou Beckn network: catalogue, quotes and orders of Martinique shops.",
        lifespan=lifespan,
    )
    app.state.node = node
    app.include_router(node.health_routes(extra=lambda: {"catalogue": dict(stats)}))
    app.include_router(node.beckn_routes())
    app.include_router(api_routes(node.sessions, config))
    app.include_router(merchant_routes(node.sessions, config))
    app.include_router(bulk_routes(node.sessions, config))
    app.include_router(merchant_order_routes(node))
    return app
