"""Martinique Connect's settings, on top of every node's (`LAKOU_CONNECT_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, model_validator

from beckn.settings import Settings


class ConnectSettings(Settings):
    connect_issuer: str | None = Field(
        None,
        description="The issuer URL, exactly as it appears in tokens and discovery (https in production). "
        "Default: http://<host>:<port>.",
    )
    connect_secret: str | None = Field(
        None,
        description="Server secret (pairwise `sub`, key encryption at rest, CSRF). Unset: a random one is "
        "created once in <data_dir>/connect-secret (mode 0600). Changing it changes every pairwise sub.",
    )
    connect_code_seconds: int = Field(60, ge=5, le=600, description="Authorization code lifetime.")
    connect_access_token_seconds: int = Field(60, ge=10, le=3600, description="Access token lifetime (FC: 60).")
    connect_id_token_seconds: int = Field(60, ge=10, le=3600, description="ID token lifetime (FC: 60).")
    connect_session_minutes: int = Field(30, ge=1, le=1440, description="Browser session at the provider (FC: 30).")
    connect_min_state_length: int = Field(
        32, ge=8, le=128, description="Shortest accepted `state` and `nonce` (FranceConnect: 32)."
    )
    connect_max_failures_per_account: int = Field(
        5, ge=1, description="Failed logins for one account within the window before it is locked out."
    )
    connect_max_failures_per_ip: int = Field(
        20, ge=1, description="Failed logins from one IP address within the window before it is locked out."
    )
    connect_lockout_minutes: int = Field(15, ge=1, description="The brute-force window.")
    # ---- Argon2id cost of new password and client-secret hashes. The defaults are RFC 9106's
    # second recommended option (argon2-cffi's own defaults, ~0.2 s per hash on one core). Existing
    # hashes keep their own parameters and still verify after a change; a password hashed at another
    # cost is re-hashed at the configured one at its next successful login.
    connect_password_time_cost: int = Field(
        3, ge=1, le=20, description="Argon2id passes for password and client-secret hashes (RFC 9106: 3)."
    )
    connect_password_memory_kib: int = Field(
        65536, ge=8, le=1_048_576, description="Argon2id memory in KiB (RFC 9106: 65536 = 64 MiB)."
    )
    connect_password_parallelism: int = Field(4, ge=1, le=16, description="Argon2id lanes (RFC 9106: 4).")
    # ---- upstream identity provider (FranceConnect), brokered: Martinique Connect is its relying party
    connect_upstream_issuer: str | None = Field(
        None, description="Issuer of the upstream OpenID Provider (e.g. FranceConnect's); unset: none offered."
    )
    connect_upstream_client_id: str | None = Field(None, description="Our client_id at the upstream provider.")
    connect_upstream_client_secret: str | None = Field(None, description="Our client secret there.")
    connect_upstream_name: str = Field("FranceConnect", description="Name of the upstream on the login page.")
    connect_upstream_scope: str = Field("openid profile email", description="Scopes asked upstream.")
    connect_upstream_acr_values: str | None = Field(None, description='acr_values sent upstream (FC: "eidas1").')


    @model_validator(mode="after")
    def _argon2_memory_per_lane(self) -> ConnectSettings:
        # Argon2 needs at least 8 KiB per lane; refused at start, not at the first login.
        if self.connect_password_memory_kib < 8 * self.connect_password_parallelism:
            raise ValueError(
                "LAKOU_CONNECT_PASSWORD_MEMORY_KIB must be at least 8 x LAKOU_CONNECT_PASSWORD_PARALLELISM"
            )
        return self


def connect_settings(settings: Settings) -> ConnectSettings:
    if isinstance(settings, ConnectSettings):
        return settings
    return ConnectSettings(**settings.model_dump())
