"""The registry's own settings: the network policy knobs only a registry has (`LAKOU_REGISTRY_*`).

`create_app` takes the shared `beckn.settings.Settings`; `registry_settings()` widens it to this
subclass, reading the registry-only fields from the environment, so a caller may pass either.
"""

from __future__ import annotations

from pydantic import Field

from beckn.settings import Settings


class RegistrySettings(Settings):
    registry_auto_approve: bool = Field(
        True,
        description="Network policy for /subscribe: a BAP or BPP that answers the on_subscribe challenge "
        "becomes SUBSCRIBED at once (true) or waits in UNDER_SUBSCRIPTION for the operator (false). "
        "Gateways (BG) and registries (BREG) always wait for the operator.",
    )
    registry_check_url_host: bool = Field(
        True,
        description="/subscribe requires the url's host to be in the subscriber_id's domain (equal, a "
        "subdomain, or a parent domain), as registry.yaml asks. Turn off only for networks whose "
        "participants host their callbacks elsewhere.",
    )
    registry_on_subscribe_timeout_seconds: float = Field(
        10.0, gt=0, description="How long the registry waits for a subscriber's on_subscribe answer."
    )

    registry_tlog_max_pending: int = Field(
        10_000, ge=1,
        description="The registry's transaction log (LAKOU_TLOG_ENABLED): how many lookup records may wait for "
        "the log's group commit. Lookups never wait for the log; when this many are waiting, a further record "
        "is dropped and counted (/health tlog.dropped).",
    )

    # ---- rate limits per caller (registry/ratelimit.py; ONDC's: digest §6.2). 0 means unlimited.
    registry_rate_subscribe_per_minute: int = Field(
        10, ge=0, description="/subscribe requests per minute per caller (ONDC allows 10)."
    )
    registry_rate_lookup_per_minute: int = Field(
        7600, ge=0, description="/lookup and /v2.0/lookup requests per minute per caller (ONDC allows 7600)."
    )
    registry_rate_vlookup_per_minute: int = Field(
        2100, ge=0, description="/vlookup requests per minute per caller (ONDC allows 2100)."
    )
    registry_rate_other_per_minute: int = Field(
        7600, ge=0, description="Requests per minute per caller to every other route (admin API, DID documents, "
        "registry key, partner routes); /health is never limited."
    )
    registry_rate_signed_callers_per_ip: int = Field(
        20, ge=1, description="Signed requests from one client address share a ceiling of this many times the "
        "per-caller limit, so that invented keyIds buy at most this many budgets."
    )
    registry_rate_max_buckets: int = Field(
        100_000, ge=100, description="Most callers tracked at once (least recently seen forgotten first)."
    )

    # ---- federation with partner registries (registry/federation.py, specs/network-policy.md)
    registry_partners: str = Field(
        "",
        description='Trusted partner registries, as a JSON list of {"id", "url", "signing_public_key"}: the '
        "partner's registry id (its LAKOU_SUBSCRIBER_ID, the keyId of its signed answers), base URL, and "
        "Ed25519 public key (GET <url>/registry-key). A /lookup that finds nothing locally asks them. "
        "Empty: no federation.",
    )
    registry_partners_file: str = Field(
        "", description="A file holding the same JSON list as LAKOU_REGISTRY_PARTNERS (used when that is empty)."
    )
    registry_federation_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="How long a federated lookup waits for each partner (asked in parallel)."
    )
    registry_federation_cache_seconds: float = Field(
        60.0, ge=0, description="How long a partner's verified answer (empty ones too) is reused."
    )
    registry_federation_max_hops: int = Field(
        1, ge=1, le=4,
        description="How far a lookup travels: 1 means a registry asked by a partner never asks further.",
    )


def registry_settings(settings: Settings) -> RegistrySettings:
    """`settings` as `RegistrySettings`: fields it already has are kept, the others come from the
    environment (LAKOU_REGISTRY_AUTO_APPROVE, ...) or their defaults."""
    if isinstance(settings, RegistrySettings):
        return settings
    return RegistrySettings(**settings.model_dump(exclude_unset=True))


__all__ = ["RegistrySettings", "registry_settings"]
