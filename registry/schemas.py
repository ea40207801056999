"""Response shapes of the registry API, for the published OpenAPI (the routes build plain JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_KEY_ID = "0b6b0a4e-5f1c-4f2a-9d0e-1c2b3a4d5e6f"


class Code(BaseModel):
    code: str


class SubscriptionLocation(BaseModel):
    city: Code
    country: Code


class Subscription(BaseModel):
    """registry.yaml's `Subscription`, with the aliases other dialects read (`subscriber_url`,
    flat `city`/`country`, `ukId`, `unique_key_id`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "subscriber_id": "bpp.lakou.localhost", "subscriber_url": "http://127.0.0.1:8300/beckn",
        "url": "http://127.0.0.1:8300/beckn", "type": "BPP", "domain": "lakou:retail", "city": "",
        "country": "MTQ", "location": {"city": {"code": ""}, "country": {"code": "MTQ"}},
        "signing_public_key": "Fhjwaka1Za+ld+7Nms7S0C675r24mZoyWVn8JbYTjSs=",
        "encr_public_key": "2qqMXvKp4hMcWsUpGF5Lrj3Cs7jxUeXNA6wXfEwiah4=",
        "valid_from": "2026-11-23T10:00:00.000Z", "valid_until": "2027-11-23T10:00:00.000Z",
        "status": "SUBSCRIBED", "created": "2026-11-23T10:00:00.000Z", "updated": "2026-11-23T10:00:00.000Z",
        "ukId": _KEY_ID, "unique_key_id": _KEY_ID, "key_id": _KEY_ID,
    }]})

    subscriber_id: str
    subscriber_url: str
    url: str
    type: str = Field(description="BAP, BPP, BG or BREG (upper case).")
    domain: str = Field(description="Blank: any domain.")
    city: str = Field(description="Blank: the whole country.")
    country: str = Field(description="Blank: any country.")
    location: SubscriptionLocation
    signing_public_key: str = Field(description="Ed25519, raw base64.")
    encr_public_key: str = Field(description="X25519, raw base64.")
    valid_from: str
    valid_until: str
    status: str
    created: str
    updated: str
    ukId: str
    unique_key_id: str
    key_id: str
    revoked_at: str | None = Field(None, description="Only in `valid_at` lookups, for a key revoked after that "
                                                     "moment (it still verifies signatures made before).")
    log_vkey: str | None = Field(None, description="The subscriber's transaction-log key (C2SP note verifier key, "
                                                   "Ed25519), only when published with this key.")


class LookupRequest(BaseModel):
    """A partial `Subscription` used as a filter. Every field is optional; blank, null or `*`
    means any. Aliases: `ukId`/`unique_key_id`/`key_id`/`pub_key_id`, `url`/`subscriber_url`,
    flat `city`/`country` or `location.city.code`/`location.country.code`."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"subscriber_id": "bpp.lakou.localhost", "ukId": _KEY_ID},
        {"type": "BPP", "domain": "lakou:retail", "country": "MTQ", "city": "insee:97209"},
    ]})

    subscriber_id: str | None = None
    ukId: str | None = None
    type: str | None = Field(None, description="BAP, BPP, BG, BREG, any case; ONDC buyerApp/sellerApp/gateway.")
    domain: str | None = None
    city: str | None = None
    country: str | None = None
    location: dict[str, Any] | None = None
    url: str | None = None
    valid_at: str | None = Field(None, description="RFC 3339 date-time: the keys valid at that moment instead of "
                                                   "now, including keys since expired, superseded or revoked later.")


class KeyOut(BaseModel):
    unique_key_id: str
    signing_public_key: str
    encr_public_key: str
    valid_from: str
    valid_until: str
    created: str
    revoked_at: str | None
    log_vkey: str | None = Field(None, description="Transaction-log key published with this key, if any.")
    state: str = Field(description="valid, expired, not yet valid or revoked (now).")


class EntryOut(BaseModel):
    """A participant entry with its subscriber's whole key history (operator view)."""

    subscriber_id: str
    type: str
    domain: str
    city: str
    country: str
    url: str
    status: str
    created: str
    updated: str
    keys: list[KeyOut]


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    paths: str | None = None
    path: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


class TlogHealth(BaseModel):
    enabled: bool = Field(description="Whether the registry logs its protocol messages (LAKOU_TLOG_ENABLED).")
    origin: str | None = Field(None, description="The log's checkpoint origin.")
    dropped: int = Field(0, description="Lookup records dropped since start because the log's queue was full.")
    failed: int = Field(0, description="Lookup records the store could not write since start (database errors).")
    checkpoints: str | None = Field(None, description="ok, or halted (the stored log disagrees with a signed "
                                                      "checkpoint: an operator must investigate).")


class Health(BaseModel):
    status: str
    service: str
    database: str
    participants: int | None
    admin_api: bool = Field(description="Whether the admin API is enabled (LAKOU_REGISTRY_ADMIN_TOKEN set).")
    tlog: TlogHealth | None = Field(None, description="The registry's transaction log.")


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined, for `openapi_extra` request bodies
    (FastAPI does not hoist the `$defs` of a schema it did not generate itself)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)
