"""Operator configuration, read from `LAKOU_*` environment variables (and `.env` if present)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'lakou.db').resolve()}"


def get_settings() -> Settings:
    return Settings()
