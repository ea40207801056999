"""`lakou init`: prepare a node's data directory (migrated store and key material)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from beckn.settings import get_settings

from beckn.keyfile import KEY_FILE, ensure_node_keys


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        data_dir: Path = typer.Option(None, help="Data directory (default: $LAKOU_DATA_DIR or ./data)."),
        db: str = typer.Option(None, help="Database URL (default: $LAKOU_DATABASE_URL or SQLite in the data dir)."),
    ) -> None:
        """Create the data directory, migrate the store to the latest schema and generate node keys."""
        from beckn.store.db import upgrade  # deferred: SQLAlchemy/Alembic slow every other command's start

        settings = get_settings()
        if data_dir is not None:
            settings.data_dir = data_dir
        if db is not None:
            settings.database_url = db
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        url = settings.resolved_database_url()
        asyncio.run(upgrade(url))
        keys = ensure_node_keys(settings.data_dir)

        table = Table(title="Lakou node ready", show_header=False)
        table.add_row("data directory", str(settings.data_dir.resolve()))
        table.add_row("database", url.split("@")[-1] if "@" in url else url)
        table.add_row("key file", str((settings.data_dir / KEY_FILE).resolve()))
        table.add_row("unique_key_id (ukId)", keys["unique_key_id"])
        table.add_row("signing_public_key", keys["signing_public_key"])
        table.add_row("encr_public_key", keys["encryption_public_key"])
        Console().print(table)
