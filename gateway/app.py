"""Composition root of the Lakou gateway (BG): `create_app(settings)`.

The gateway holds no business data. Its node verifies, stores and ACKs each `search` and
`on_search`; `GatewayRelay` then forwards the stored bytes through the outbox.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from beckn.inbound import Role
from beckn.node import BecknNode
from beckn.settings import Settings
from gateway.directory import Directory
from gateway.relay import GatewayRelay
from gateway.settings import GatewaySettings

TITLE = "Lakou Gateway"
VERSION = "0.3.0"
DEFAULT_PORT = 8200

_DESCRIPTION = """\
The search gateway (BG) of the Lakou Beckn network.

A buyer app (BAP) sends its `search` here instead of to each seller app. The gateway verifies the
BAP's signature, answers ACK at once, looks up in the registry every BPP serving the search's
domain, city (`context.location.city.code`, e.g. `insee:97213`) and country, and forwards the
**unchanged** body to each, with the BAP's `Authorization` and its own `X-Gateway-Authorization`
(BECKN-006). A search naming `context.bpp_id` goes to that BPP only.

BPPs may send their `on_search` back through the gateway: it is relayed, unchanged, to the BAP's
registered URL only.
"""

_ACK_EXAMPLE = {"message": {"ack": {"status": "ACK"}}}
_NACK_EXAMPLE = {
    "message": {"ack": {"status": "NACK"}},
    "error": {"code": "10001", "message": "Authorization: signature does not verify"},
}
_SEARCH_EXAMPLE = {
    "context": {
        "domain": "lakou:retail", "action": "search", "version": "1.1.0",
        "location": {"city": {"code": "insee:97213"}, "country": {"code": "MTQ"}},
        "bap_id": "bap.example.mq", "bap_uri": "https://bap.example.mq/beckn",
        "transaction_id": "6d5f4b4e-8a0e-4a5c-9b1e-2f3c4d5e6f70", "message_id": "0b7c1a52-3f4d-4e6a-8b9c-1d2e3f4a5b6c",
        "timestamp": "2025-06-03T08:00:00.000Z", "ttl": "PT30S",
    },
    "message": {"intent": {"item": {"descriptor": {"name": "ananas"}}}},
}

_ROUTE_DOCS: dict[str, dict[str, Any]] = {
    "/beckn/search": {
        "summary": "Search: multicast to the matching BPPs",
        "description": "Signed by the BAP (`Authorization`, BECKN-006). ACK once stored; the search is then "
        "forwarded byte for byte to every registered BPP matching domain, city and country (or only to "
        "`context.bpp_id`). Results come back as `on_search` callbacks to the BAP, from the BPPs directly or "
        "relayed by this gateway.",
        "example": _SEARCH_EXAMPLE,
    },
    "/beckn/on_search": {
        "summary": "on_search: relay a BPP's catalogue to the BAP",
        "description": "Signed by the BPP named in `context.bpp_id`. ACK once stored; relayed unchanged to the "
        "registered URL of `context.bap_id` with the gateway's `X-Gateway-Authorization`. A `bap_uri` on "
        "another host than the BAP's registration is not relayed.",
        "example": None,
    },
}


def create_app(settings: Settings, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> FastAPI:
    gateway_settings = GatewaySettings.from_settings(settings)
    node = BecknNode(gateway_settings, service="gateway", role=Role.GATEWAY, actions=["search", "on_search"],
                     host=host, port=port)
    directory = Directory(
        node.registry,
        own_subscriber_id=node.subscriber_id,
        # Never reuse a lookup longer than the network's key cache would: revocation must propagate.
        cache_seconds=min(gateway_settings.gateway_lookup_cache_seconds, float(gateway_settings.lookup_cache_seconds)),
        max_entries=gateway_settings.gateway_lookup_cache_entries,
    )
    relay = GatewayRelay(node, directory)
    node.on_message(relay.handle)

    app = FastAPI(title=TITLE, version=VERSION, description=_DESCRIPTION, lifespan=node.lifespan,
                  openapi_tags=[
                      {"name": "beckn", "description": "Beckn 1.1 endpoints, signed with BECKN-006."},
                      {"name": "operations", "description": "Health and counters for operators."},
                  ])
    app.include_router(node.health_routes(extra=lambda: {"gateway": relay.stats.as_dict()}))
    app.include_router(_documented(node.beckn_routes()))
    app.state.node = node
    app.state.relay = relay
    return app


def _documented(router: APIRouter) -> APIRouter:
    """The node's generic Beckn routes, described for this service's OpenAPI (user documentation)."""
    for route in router.routes:
        docs = _ROUTE_DOCS.get(route.path) if isinstance(route, APIRoute) else None
        if docs is None:
            continue
        route.summary = docs["summary"]
        route.description = docs["description"]
        if docs["example"] is not None:
            route.openapi_extra = {"requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object"}, "example": docs["example"]}}}}
        route.responses = {
            200: {"description": "ACK: the message is stored and will be forwarded",
                  "content": {"application/json": {"example": _ACK_EXAMPLE}}},
            400: {"description": "NACK: invalid message (code and path of each problem)"},
            401: {"description": "NACK: missing or invalid signature",
                  "content": {"application/json": {"example": _NACK_EXAMPLE}}},
            409: {"description": "NACK: message_id already used with another body"},
            503: {"description": "NACK: cannot verify or store now; retry (Retry-After)"},
        }
    return router


__all__ = ["DEFAULT_PORT", "TITLE", "VERSION", "create_app"]
