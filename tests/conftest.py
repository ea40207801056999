"""Shared fixtures: both storage backends, and real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_SPECS = ROOT.parent / "shared" / "specs"
TRANSACTION_YAML = SHARED_SPECS / "beckn-core-1.1.1" / "transaction.yaml"
TLOG_VECTORS = ROOT.parent / "shared" / "research" / "tlog-vectors.json"  # RFC 6962/9162 known answers

POSTGRES_URL = os.environ.get(
    "LAKOU_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
_postgres_skip_reason: str | None = None

# Martinique Connect hashes every password and client secret with Argon2id at RFC 9106's cost:
# ~0.2 s of CPU per hash or check, several per provider started and per login, which made the
# login-heavy modules CPU-bound. The tests use the cheapest valid cost (the same code path, other
# parameters); tests/test_connect_passwords.py proves the production default and cost changes.
# Set in the environment (not only passed to ConnectSettings) so that in-process providers, `lakou
# connect` commands and `lakou serve connect` processes (tests/network.py passes it on) all get it.
CHEAP_ARGON2_ENV = {
    "LAKOU_CONNECT_PASSWORD_TIME_COST": "1",
    "LAKOU_CONNECT_PASSWORD_MEMORY_KIB": "8",
    "LAKOU_CONNECT_PASSWORD_PARALLELISM": "1",
}
for _name, _value in CHEAP_ARGON2_ENV.items():
    os.environ.setdefault(_name, _value)  # already set: someone runs the suite at another cost


# pytest imports this file as `conftest`, and some modules import it as `tests.conftest`: two
# module objects. They must share one set of handed-out ports, or the second copy hands out the
# ports the first one already promised to servers that have not bound them yet.
_OTHER_COPY = sys.modules.get("tests.conftest" if __name__ == "conftest" else "conftest")
_SHARED: set[int] | None = getattr(_OTHER_COPY, "_HANDED_OUT", None)
_HANDED_OUT: set[int] = _SHARED if _SHARED is not None else set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port for a server that will bind it later.

    Chosen below the kernel's ephemeral range: a port from bind(0) lies inside it, and an outgoing
    connection of any test may take it as its local port before our server binds it ("address
    already in use"). Never the same port twice in one run; the pytest-xdist worker id spreads runs.
    """
    low, _ = _ephemeral_range()
    top = min(low - 1, 32767)
    bottom = max(1024, top - 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    rng = random.Random(os.getpid() * 7919 + (int(worker) if worker.isdigit() else 0) + len(_HANDED_OUT))
    for _ in range(200):
        port = rng.randint(bottom, top)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port found between {bottom} and {top}")


@contextlib.contextmanager
def serve_app(app, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn server on 127.0.0.1 in a thread; yield its base URL."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # Only a guard against a hang: on a loaded two-core machine a start (migrations included)
    # once took more than 10 s.
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


_template_db: Path | None = None
_pg_template: str | None = None
_PG_MIGRATED: set[str] = set()


def _migrate(url: str) -> None:
    """`upgrade(url)` in a thread of its own: the caller may be inside a running event loop."""
    from beckn.store.db import upgrade

    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(upgrade(url))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def migrated_sqlite_copy(target: Path) -> None:
    """Put an SQLite store already at the newest migration at `target`.

    A service at start upgrades its store; on a new file that runs every migration (~0.3 s of CPU,
    more on a loaded machine) at each of the suite's many service starts. The tests that are about
    migrations use empty files; the others start from a copy of one store migrated once per process
    (the service's own upgrade then finds it at head, as on every restart in production).
    """
    global _template_db
    if _template_db is None:
        template = Path(tempfile.mkdtemp(prefix="lakou-template-")) / "lakou.db"
        atexit.register(shutil.rmtree, template.parent, True)
        _migrate(f"sqlite+aiosqlite:///{template}")
        with contextlib.closing(sqlite3.connect(template)) as conn:
            # Everything in the one file: no -wal to copy along; the services switch WAL back on.
            conn.execute("PRAGMA journal_mode=DELETE")
        _template_db = template
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template_db, target)


def _admin_dsn() -> str:
    # asyncpg speaks plain postgresql:// DSNs.
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def scratch_postgres_database(prefix: str = "lakou_t") -> Iterator[str]:
    """A fresh, empty PostgreSQL database for a server a test starts (module-scoped fixtures use it),
    dropped afterwards. Skipped as `postgres_url` is when no server answers, failed in CI."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no server"
        if os.environ.get("LAKOU_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL not reachable: {exc!r} (LAKOU_REQUIRE_POSTGRES is set)")
        pytest.skip(f"SKIPPING POSTGRESQL TEST: PostgreSQL not reachable: {exc!r}")
    try:
        yield f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _drop_pg_template(name: str) -> None:
    with contextlib.suppress(Exception):
        asyncio.run(_pg_execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false'))
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _pg_template_database() -> tuple[str, bool]:
    """The name of this process's template database, created (empty) on first use, and whether it
    is migrated yet. Raises if the server cannot be reached."""
    global _pg_template
    if _pg_template is None:
        name = f"lakou_tpl_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
        atexit.register(_drop_pg_template, name)
        _pg_template = name
    return _pg_template, _pg_template in _PG_MIGRATED


def _migrate_pg_template(name: str) -> None:
    _migrate(f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}")  # a failing migration fails the test
    # No connections, autovacuum's included: a clone fails while anyone is connected to it.
    asyncio.run(_pg_execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'))
    _PG_MIGRATED.add(name)


def _store_migrated(request: pytest.FixtureRequest) -> bool:
    """Marked `migrated_store`: the module's tests get stores already at the newest migration.

    Migrating a new store is slow (seconds on PostgreSQL on a loaded machine) and every server a
    test starts does it. Modules that are not about migrations opt in; unmarked tests, the ones
    about migrations and first starts among them, get empty stores as before.
    """
    return request.node.get_closest_marker("migrated_store") is not None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "migrated_store: sqlite_url, postgres_url and db_url start at the newest migration")


@pytest.fixture
def sqlite_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    path = tmp_path / "lakou.db"
    if _store_migrated(request):
        migrated_sqlite_copy(path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (empty, or migrated: see `migrated_store`), dropped
    afterwards."""
    global _postgres_skip_reason
    name = f"lakou_t_{uuid.uuid4().hex[:12]}"
    migrated = _store_migrated(request)
    try:
        if migrated:
            template, ready = _pg_template_database()
        else:
            asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no server"
        reason = f"PostgreSQL not reachable at {_admin_dsn()}: {exc!r}"
        if os.environ.get("LAKOU_REQUIRE_POSTGRES"):
            pytest.fail(reason + " (LAKOU_REQUIRE_POSTGRES is set)")
        _postgres_skip_reason = reason
        warnings.warn(reason)
        pytest.skip("SKIPPING POSTGRESQL TEST: " + reason)
    if migrated:
        if not ready:
            _migrate_pg_template(template)
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a storage test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if _postgres_skip_reason:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS WERE SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_postgres_skip_reason, red=True)
