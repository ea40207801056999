"""Operator configuration, read from `LAKOU_*` environment variables (and `.env` if present)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The Lakou network's own conventions (specs/network-policy.md): one retail domain, Martinique's
# ISO 3166-1 alpha-3 code, and communes as `insee:<code>` city codes.
DEFAULT_DOMAIN = "lakou:retail"
DEFAULT_COUNTRY = "MTQ"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAKOU_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the embedded SQLite store and keys live.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Unset: SQLite under data_dir. "
        "Production: postgresql+asyncpg://user@host/db.",
    )
    signature_skew_seconds: int = Field(5, ge=0, description="Tolerated clock skew for a signature's `created`.")
    timestamp_skew_seconds: int = Field(
        30, ge=0, description="Tolerated clock skew for context.timestamp in the future."
    )
    lookup_cache_seconds: int = Field(
        300, ge=0, description="Longest time a registry key lookup is reused (never past valid_until)."
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest accepted request body.")

    # ---- a network node (gateway, BPP, BAP)
    subscriber_id: str | None = Field(
        None, description="This node's subscriber_id (an FQDN). Default: <service>.lakou.localhost."
    )
    public_url: str | None = Field(
        None,
        description="Base URL other participants reach this node at (registered as its subscriber_url "
        "with /beckn appended for gateway, BPP and BAP). Default: http://<host>:<port>.",
    )
    registry_url: str = Field("http://127.0.0.1:8100", description="The network registry's base URL.")
    registry_admin_token: str | None = Field(
        None,
        description="Registry operator token. On the registry it enables the admin API; on a node it "
        "makes the node register its own keys at start through the admin API.",
    )
    registry_subscribe: bool = Field(
        False,
        description="Onboard through the registry's signed POST /subscribe and its on_subscribe challenge "
        "(beckn/onboarding.py), retried with backoff until SUBSCRIBED or UNDER_SUBSCRIPTION. Ignored when "
        "LAKOU_REGISTRY_ADMIN_TOKEN is set: the node then registers through the admin API.",
    )
    registry_signing_public_key: str | None = Field(
        None,
        description="The registry's Ed25519 public key (GET <registry>/registry-key), which signs its "
        "on_subscribe challenges. Unset: fetched once per process from the registry (trust on first use).",
    )
    registry_encr_public_key: str | None = Field(
        None,
        description="The registry's X25519 public key, to decrypt its challenges. Unset: read from "
        "GET <registry>/registry-key.",
    )
    registry_subscriber_id: str | None = Field(
        None,
        description="The registry's own subscriber_id (the keyId of its signatures). Set: an on_subscribe "
        "signed under another id is refused. Unset: the id published at /registry-key when that is fetched.",
    )
    domain: str = Field(DEFAULT_DOMAIN, description="Beckn domain this node serves.")
    country: str = Field(DEFAULT_COUNTRY, description="Country code this node serves.")
    city: str = Field("", description="City code this node serves; empty means the whole country.")
    delivery_timeout_seconds: float = Field(
        5.0, gt=0, description="Per-request timeout of outgoing Beckn calls (the gateway's per-BPP timeout)."
    )

    # ---- the node's signed transaction log (issue 8, beckn/tlog)
    tlog_enabled: bool = Field(
        True,
        description="Log every Beckn message this node sends or receives in its signed transaction log "
        "(ACKs then carry a signed log receipt, X-Lakou-Log-Receipt).",
    )
    tlog_checkpoint_interval_seconds: float = Field(
        2.0, gt=0, description="How often a checkpoint is signed while the log grew."
    )
    tlog_origin: str | None = Field(
        None,
        description="The log's checkpoint origin, also its key's name. Default: <subscriber_id>/tlog. "
        "A log keeps the origin it was started under: changing it later stops the node from logging.",
    )

    tlog_cosign: bool = Field(
        True,
        description="Ask the peers this node recently exchanged messages with to cosign its checkpoints "
        "(C2SP tlog-witness at <peer's subscriber URL without /beckn>/tlog/witness/add-checkpoint); their "
        "cosignatures are served with GET /tlog/checkpoint. Only peers publishing a log_vkey are asked.",
    )
    tlog_cosign_peers_max: int = Field(
        8, ge=0, description="At most this many peers (the most recent distinct ones) are asked per checkpoint."
    )
    tlog_cosign_recent_entries: int = Field(
        10_000, ge=1, description="Peers are taken from the log's last this-many entries."
    )
    tlog_cosign_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest wait for one witness's answer; a peer that is down is retried next round."
    )
    tlog_cosign_concurrency: int = Field(4, ge=1, description="Witnesses asked at the same time.")

    tlog_auditor_tokens: str | None = Field(
        None,
        description="Who may export a transaction's sidecars (raw bodies) from GET /tlog/transactions/{txn}/"
        "sidecars: comma-separated `name=sha256:<hex of the token>` (see beckn/tlog/api.py). Unset: nobody.",
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'lakou.db').resolve()}"


def get_settings() -> Settings:
    return Settings()
