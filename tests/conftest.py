"""Shared fixtures: both storage backends, and real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sys
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
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    global _postgres_skip_reason
    name = f"lakou_t_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no server"
        reason = f"PostgreSQL not reachable at {_admin_dsn()}: {exc!r}"
        if os.environ.get("LAKOU_REQUIRE_POSTGRES"):
            pytest.fail(reason + " (LAKOU_REQUIRE_POSTGRES is set)")
        _postgres_skip_reason = reason
        warnings.warn(reason)
        pytest.skip("SKIPPING POSTGRESQL TEST: " + reason)
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
