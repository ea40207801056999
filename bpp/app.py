"""Composition root of the BPP (merchant side): `create_app(settings)`.

It wires a `BecknNode` (store, keys, inbound pipeline, outbox) answering search, select, init,
confirm, status, cancel, update, track, support and rating from the catalogue and order tables,
seeds the catalogue on first start when asked (LAKOU_BPP_CATALOGUE), and adds the JSON API of
`bpp.api` and `/health`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI

from beckn.inbound import Role
from beckn.node import BecknNode
from beckn.settings import Settings
from bpp.api import api_routes
from bpp.bulk_api import bulk_routes
from bpp.catalogue import counts, load_catalogue, seed_if_empty
from bpp.credentials import credential_routes, own_participant_did
from bpp.merchant_api import merchant_routes
from bpp.merchant_login import merchant_login_routes, relying_party
from bpp.merchant_orders import merchant_order_routes
from bpp.payments import Payments, attach, load_processor
from bpp.payments.sandbox import SandboxProcessor, sandbox_routes
from bpp.service import BppService
from bpp.settings import bpp_settings

log = structlog.get_logger(__name__)

ACTIONS = ("search", "select", "init", "confirm", "status", "cancel", "update", "track", "support", "rating")
VERSION = "0.3.0"


def create_app(settings: Settings, *, host: str = "127.0.0.1", port: int = 8300) -> FastAPI:
    config = bpp_settings(settings)
    # Read the catalogue now: a wrong path or a malformed file stops the start with its reason.
    catalogue = load_catalogue(config.bpp_catalogue)
    node = BecknNode(config, service="bpp", role=Role.BPP, actions=ACTIONS, host=host, port=port)
    # The payment processor, loaded once (a bad dotted path stops the start with its reason) and
    # handed to every session of the node: bpp.payments.payments_of(session).
    processor = load_processor(config.bpp_payment_processor, config,
                               sandbox=lambda: SandboxProcessor(node.base_url))
    attach(node.sessions, Payments(processor, link_ttl=timedelta(minutes=config.bpp_payment_link_minutes)))
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
    app.include_router(merchant_login_routes(node.sessions, config, relying_party(config, node.http)))
    app.include_router(bulk_routes(node.sessions, config))
    app.include_router(merchant_order_routes(node))
    app.include_router(credential_routes(node.sessions, own_did=own_participant_did(config, node.subscriber_id),
                                         base_url=node.base_url))
    if isinstance(processor, SandboxProcessor):
        app.include_router(sandbox_routes(node.sessions))
    return app
