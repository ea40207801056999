"""The BPP's own settings, on top of every node's (`LAKOU_BPP_*` environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from beckn.settings import Settings


class BppSettings(Settings):
    bpp_catalogue: str = Field(
        "",
        description='Catalogue to seed on first start, when the catalogue is empty: "demo" for the built-in '
        "Martinique demo merchants, a path to a JSON file in the same format, or empty for none.",
    )
    bpp_on_search_via: Literal["direct", "gateway"] = Field(
        "direct",
        description='Where on_search goes: "direct" to context.bap_uri (ONDC, ONIX practice), or "gateway" back '
        "to the gateway that forwarded the search (beckn core diagrams); a search that came straight from a "
        "BAP is always answered directly.",
    )
    bpp_search_page_items: int = Field(
        100,
        ge=0,
        description="At most this many items in one on_search callback (0: no limit); a larger search result is "
        "sent as several on_search callbacks for the same search (same message_id), each a complete catalog.",
    )
    bpp_search_max_items: int = Field(
        500,
        ge=1,
        description="The most items one search answer lists, over all its on_search callbacks. When more items "
        "match, a GPS search keeps those of the nearest merchants, any other search the first by merchant id "
        "then item id; the shopper narrows the search to see the others. Bounds the work and the size of the "
        "answer of a broad search (an empty intent, a whole category) on a large catalogue.",
    )
    bpp_payment_processor: str = Field(
        "none",
        description='Who takes PRE-ORDER (prepaid) payments: "none" (no online payment: PRE-ORDER is left out of '
        'catalogues and refused at init with 40004, merchants are paid at pickup or delivery), "sandbox" (the '
        "built-in sandbox processor and its checkout page under /sandbox/pay: no money moves; for tests and "
        'demos), or "package.module:factory" for a third-party processor, factory(settings) returning a '
        "bpp.payments.PaymentProcessor.",
    )
    bpp_payment_link_minutes: int = Field(
        30, ge=1, le=1440,
        description="How long a PRE-ORDER payment link can be paid; an expired link is replaced at the next init.",
    )
    bpp_participant_did: str | None = Field(
        None,
        description="This BPP's participant did:web, the subject merchants' business credentials must name. Unset: "
        "built from LAKOU_REGISTRY_URL and the subscriber id as the registry builds it (set it when the registry's "
        "public URL differs from the one this node calls, e.g. an internal address in compose).",
    )
    bpp_trusted_resident_issuers: str = Field(
        "",
        description="Comma-separated DIDs (did:jwk or did:key, resolved offline) whose MartiniqueResidentCredential "
        "this BPP accepts for a residents' offer (bpp.offers), e.g. Martinique Connect's issuer DID. Empty: no "
        "resident credential is accepted, so residents' offers cannot be confirmed.",
    )
    bpp_status_list_cache_seconds: int = Field(
        300, ge=0, le=3600,
        description="The longest a fetched status list (of a resident credential, bpp.offers) is reused: the "
        "issuer's Cache-Control max-age, capped at this (Martinique Connect says 60 s), so a revocation is seen "
        "within that time; 0 fetches it at every init and confirm that uses the residents' discount.",
    )
    bpp_admin_token: str | None = Field(
        None,
        description="Bearer token of the read-only operator API (GET /api/v1/orders/{id}); unset disables it.",
    )
    bpp_connect_issuer: str | None = Field(
        None,
        description="Issuer URL of the Martinique Connect OpenID Provider merchants log in with (e.g. "
        "https://connect.lakou.mq). Unset (or any of the client settings unset): merchant login is not offered "
        "and merchants use API keys only.",
    )
    bpp_connect_client_id: str | None = Field(None, description="This BPP's client id at Martinique Connect.")
    bpp_connect_client_secret: str | None = Field(
        None, description="This BPP's client secret at Martinique Connect (never logged); also keys the login state.")
    bpp_connect_redirect_uri: str | None = Field(
        None,
        description="The redirect URI registered at Martinique Connect: this BPP's "
        "{public URL}/api/v1/merchant/auth/callback.",
    )
    bpp_connect_app_url: str | None = Field(
        None,
        description="The merchant app's page the browser goes to after a merchant login or link; the outcome is in "
        "the URL fragment (`#token=...&expires_at=...`, `#link_code=...&merchant_id=...` or `#error=<code>`), "
        "never in the query. Unset: the callback answers JSON (or a small page to a browser).",
    )
    bpp_merchant_session_hours: int = Field(
        12, ge=1, le=720,
        description="How long a merchant session opened by a Martinique Connect login lasts (hours).",
    )


def bpp_settings(settings: Settings) -> BppSettings:
    """The BPP settings from a plain `Settings` (what `lakou serve` builds), keeping every value."""
    if isinstance(settings, BppSettings):
        return settings
    # model_validate on the dumped values: the LAKOU_BPP_* variables still come from the environment
    # for fields the plain Settings does not know.
    return BppSettings(**settings.model_dump())
