"""Gateway settings: the shared node settings plus the gateway's own (env prefix LAKOU_GATEWAY_...)."""

from __future__ import annotations

from pydantic import Field

from beckn.settings import Settings


class GatewaySettings(Settings):
    gateway_lookup_cache_seconds: float = Field(
        5.0, ge=0,
        description="How long the gateway reuses a registry lookup of BPPs/BAPs (0: no cache). Kept short so a "
        "newly subscribed or revoked participant is seen within seconds; never longer than lookup_cache_seconds.",
    )
    gateway_lookup_cache_entries: int = Field(
        256, ge=1, description="Most lookups kept in the gateway's cache (one per domain/city/country asked)."
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewaySettings:
        """A `GatewaySettings` from plain node settings (as `lakou serve` builds them)."""
        if isinstance(settings, cls):
            return settings
        return cls(**settings.model_dump())
