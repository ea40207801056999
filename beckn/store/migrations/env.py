"""Alembic environment for Lakou's core schema.

`beckn.store.db.upgrade()` hands us an open connection (already holding the migration lock);
the `alembic` command line gets none, and we connect to the configured database ourselves.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from beckn.store.tables import metadata

config = context.config
target_metadata = metadata

# Only the alembic command line configures logging: a service calling upgrade() keeps its own.
if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name)


def _url() -> str:
    from beckn.settings import get_settings
    from beckn.store.db import database_url

    url = config.attributes.get("database_url") or get_settings().resolved_database_url()
    return database_url(url).render_as_string(hide_password=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online_async() -> None:
    from beckn.store.db import create_engine

    engine = create_engine(_url())
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_online_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
