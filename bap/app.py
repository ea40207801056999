"""Composition root of the BAP (citizen side): a Beckn node for callbacks plus the citizen-app API."""

from __future__ import annotations

from fastapi import FastAPI

from bap.api import api_router
from bap.api.errors import install as install_error_handlers
from bap.auth import ConnectLogin
from bap.merchant_verification import MerchantVerifier
from bap.service import BapService
from bap.settings import bap_settings
from beckn.inbound import Role
from beckn.node import BecknNode
from beckn.settings import Settings

CALLBACKS = ["on_search", "on_select", "on_init", "on_confirm", "on_status",
             "on_cancel", "on_update", "on_track", "on_rating", "on_support"]

DESCRIPTION = """\
The citizen side of the Lakou network. A citizen app opens an anonymous session, searches the
network (a Beckn `search` broadcast through the gateway), reads the offers as they arrive (poll,
long-poll or server-sent events), then selects, initialises, confirms and follows an order with
one BPP. Beckn callbacks arrive under `/beckn`, signed (BECKN-006) and verified.
"""


def create_app(settings: Settings, *, host: str = "127.0.0.1", port: int = 8400) -> FastAPI:
    config = bap_settings(settings)
    node = BecknNode(config, service="bap", role=Role.BAP, actions=CALLBACKS, host=host, port=port)
    service = BapService(node, config)
    service.merchants = MerchantVerifier.for_node(node, config)  # verified merchants (issue 7)
    node.on_message(service.correlator.handle)

    app = FastAPI(title="Lakou BAP", version="0.3.0", description=DESCRIPTION, lifespan=node.lifespan)
    app.state.node = node
    app.state.bap = service
    # Citizen login through Martinique Connect, when configured (bap/auth.py).
    app.state.connect_login = ConnectLogin(config, http=node.http) if config.connect_configured() else None
    install_error_handlers(app)
    app.include_router(node.health_routes(extra=lambda: {"callbacks": dict(service.correlator.counts)}))
    app.include_router(node.beckn_routes())
    app.include_router(api_router())
    return app
