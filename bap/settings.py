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


def bap_settings(settings: Settings) -> BapSettings:
    """A `BapSettings` from any `Settings` (explicit values win; LAKOU_BAP_* fill the rest)."""
    if isinstance(settings, BapSettings):
        return settings
    return BapSettings(**settings.model_dump(exclude_unset=True))
