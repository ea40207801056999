"""The BAP's own settings, on top of every node's (`LAKOU_BAP_*`)."""

from __future__ import annotations

from pydantic import Field

from beckn.settings import Settings


class BapSettings(Settings):
    bap_gateway_url: str | None = Field(
        None,
        description="Beckn base URL of the gateway searches are sent to (its subscriber_url, e.g. "
        "http://127.0.0.1:8200/beckn; a bare http://host:port gets /beckn appended). Unset: the "
        "registry is asked for a BG of this domain.",
    )
    bap_session_ttl_seconds: int = Field(
        7 * 86400, gt=0, description="Lifetime of an anonymous citizen-app session token."
    )
    bap_request_ttl_seconds: int = Field(
        30, gt=0, le=3600,
        description="ttl of select/init/confirm/status requests: callbacks arriving later are dropped as late.",
    )
    bap_poll_interval_seconds: float = Field(
        0.25, gt=0, description="How often a waiting API call re-checks the store (several BAP processes)."
    )
    bap_gateway_cache_seconds: int = Field(
        60, ge=0, description="How long a gateway found in the registry is reused."
    )
    bap_trusted_merchant_issuers: str = Field(
        "",
        description="Issuer DIDs (comma-separated, e.g. the network operator's or a chamber of commerce's "
        "did:key) trusted to issue MartiniqueMerchantCredential business credentials; offers of a provider "
        "whose credential verifies against one of them show provider.verified = true. Empty: none is verified.",
    )
    bap_merchant_verification_ttl_seconds: int = Field(
        3600, ge=1,
        description="How long a merchant credential's verdict is reused before it is checked again "
        "(also how long a revocation can take to show).",
    )

    bap_connect_issuer: str | None = Field(
        None,
        description="Issuer URL of the Martinique Connect OpenID Provider citizens log in with (e.g. "
        "https://connect.lakou.mq). Unset (or any of the client settings unset): login is not offered.",
    )
    bap_connect_client_id: str | None = Field(None, description="This BAP's client id at Martinique Connect.")
    bap_connect_client_secret: str | None = Field(
        None, description="This BAP's client secret at Martinique Connect (never logged).")
    bap_connect_redirect_uri: str | None = Field(
        None,
        description="The redirect URI registered at Martinique Connect: this BAP's "
        "{public URL}/api/v1/auth/callback.",
    )
    bap_connect_app_url: str | None = Field(
        None,
        description="Where the browser goes after a login (the citizen app, e.g. a universal link), "
        "with the answer in the fragment: `#login_code=<code>` (the app redeems it with POST "
        "/api/v1/auth/complete) or `#login=failed&error=<code>`. Unset: the callback answers the code "
        "as JSON, or as a page showing it.",
    )
    bap_identity_secret: str | None = Field(
        None,
        description="A long random secret (>= 32 characters) from which the BAP derives, per logged-in "
        "account, the master secret of its pairwise DIDs (one did:key per merchant, sent as "
        "fulfillment.customer.person.id in init/confirm), and the key protecting login state. "
        "Unset: no pairwise DIDs are sent. Changing it changes every citizen's DIDs.",
    )

    def connect_configured(self) -> bool:
        return bool(self.bap_connect_issuer and self.bap_connect_client_id and self.bap_connect_client_secret
                    and self.bap_connect_redirect_uri)

    def trusted_merchant_issuers(self) -> list[str]:
        return [d.strip() for d in self.bap_trusted_merchant_issuers.split(",") if d.strip()]


def bap_settings(settings: Settings) -> BapSettings:
    """A `BapSettings` from any `Settings` (explicit values win; LAKOU_BAP_* fill the rest)."""
    if isinstance(settings, BapSettings):
        return settings
    return BapSettings(**settings.model_dump(exclude_unset=True))
