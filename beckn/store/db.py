"""Engines, sessions and schema upgrades for both backends.

SQLite (embedded, the default) runs in WAL mode with `synchronous=FULL`: an ACK promises that the
message is persisted, and with NORMAL a commit acknowledged just before a power cut or kernel crash
can vanish (WAL is only synced at checkpoints). FULL costs one fsync per commit, which a small
node can afford; PostgreSQL, the production backend, is durable at commit by default.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

_HERE = Path(__file__).resolve().parent
ALEMBIC_INI = _HERE / "alembic.ini"
MIGRATIONS_DIR = _HERE / "migrations"

SQLITE_BUSY_TIMEOUT_MS = 5000
# Any constant works as long as every Lakou process uses the same one: it names the lock that
# serialises concurrent `upgrade()` calls on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x4C414B4F55  # "LAKOU"

_SYNC_DRIVER_HINTS = {
    "sqlite": "sqlite+aiosqlite:///path/to/lakou.db",
    "postgresql": "postgresql+asyncpg://user:password@host:5432/dbname",
}


def database_url(url: str | URL) -> URL:
    """Parse `url` and pick the async driver Lakou supports for its backend.

    Plain `sqlite://` and `postgresql://` (or `postgres://`) URLs get aiosqlite and asyncpg.
    Anything else gets a ValueError that says which URL to write instead.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise ValueError(
            f"invalid database URL {_safe(url)!r}: {exc}; expected e.g. "
            f"{_SYNC_DRIVER_HINTS['sqlite']} or {_SYNC_DRIVER_HINTS['postgresql']}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise ValueError(f"unsupported SQLite driver {driver!r}: use {_SYNC_DRIVER_HINTS['sqlite']}")
        if parsed.database in (None, "", ":memory:") or (parsed.query.get("mode") == "memory"):
            raise ValueError(
                "in-memory SQLite is not supported: every connection would see its own empty database, "
                f"so migrations would not be visible; give a file path, e.g. {_SYNC_DRIVER_HINTS['sqlite']}"
            )
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        if driver not in ("", "asyncpg"):
            raise ValueError(
                f"unsupported PostgreSQL driver {driver!r}: Lakou is async and uses asyncpg, "
                f"e.g. {_SYNC_DRIVER_HINTS['postgresql']}"
            )
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported database {backend!r} in {_safe(parsed)!r}: Lakou runs on SQLite "
        f"({_SYNC_DRIVER_HINTS['sqlite']}) or PostgreSQL ({_SYNC_DRIVER_HINTS['postgresql']})"
    )


def _safe(url: str | URL) -> str:
    """The URL without its password, for error messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def is_sqlite(engine_or_url: AsyncEngine | Engine | Connection | URL | str) -> bool:
    if isinstance(engine_or_url, (AsyncEngine, Engine, Connection)):
        return engine_or_url.dialect.name == "sqlite"
    return database_url(engine_or_url).get_backend_name() == "sqlite"


def create_engine(url: str | URL) -> AsyncEngine:
    """An async engine for `url`, set up for Lakou's durability and concurrency needs."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    return create_async_engine(
        parsed,
        pool_size=10,
        max_overflow=10,
        pool_timeout=10,
        # Drop connections a restarted server or a NAT closed while idle, instead of failing a request.
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"timeout": 10, "server_settings": {"application_name": "lakou"}},
    )


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:  # noqa: ARG001
    cursor = dbapi_connection.cursor()
    try:
        # First, so that the journal-mode switch below also waits for a concurrent opener.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers run while one writer commits; the mode is stored in the file, but
        # asking on every connection also converts a database created elsewhere.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Rows stay readable after commit: handlers build responses from what they just stored.
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | URL | None = None) -> Config:
    """Alembic's configuration for Lakou's packaged migrations, wherever the package is installed."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Passed as an attribute, not an ini option: ConfigParser would choke on a '%' in a password.
        config.attributes["database_url"] = database_url(url)
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(url: str | URL) -> None:
    """Bring the schema at `url` to the newest migration.

    Safe to call at every start: at head it only reads the version table. Safe when several
    processes start at once: on PostgreSQL a transaction-scoped advisory lock serialises them and
    the migration is transactional; on SQLite `BEGIN IMMEDIATE` takes the database's write lock
    for the whole upgrade (others wait up to the busy timeout). Whoever comes second finds the
    schema at head and does nothing.
    """
    engine = create_engine(url)
    config = alembic_config(url)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Batch migrations rebuild tables; with foreign keys on, dropping the old copy
                # would cascade or fail. The pragma is ignored inside a transaction, so set it first.
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                await conn.run_sync(_run_upgrade, config)
                violations = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
                if violations:
                    await conn.rollback()
                    raise RuntimeError(f"migration left foreign key violations, rolled back: {violations[:5]}")
                await conn.commit()
            else:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                await conn.run_sync(_run_upgrade, config)
                await conn.commit()
    finally:
        await engine.dispose()


# Alembic's EnvironmentContext installs module-global proxies (`context`, `op`): two upgrades
# running at once in threads of one process (servers started in threads, as tests and `lakou up`
# do) tear down each other's proxies ("KeyError: 'script'"). One upgrade at a time per process.
_UPGRADE_LOCK = threading.RLock()


def _run_upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    with _UPGRADE_LOCK:
        command.upgrade(config, "head")


async def current_revision(url: str | URL) -> str | None:
    """The migration the database at `url` is at, or None if it was never migrated."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL), e.g. to create its directory."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database is None:
        return None
    return Path(parsed.database)
