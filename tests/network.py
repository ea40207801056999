"""Run Lakou services as real processes on free ports, the way `lakou up` and operators do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from conftest import CHEAP_ARGON2_ENV, free_port, migrated_sqlite_copy


@dataclass
class ServiceProcess:
    name: str
    service: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "lakou.db"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def rows(self, sql: str) -> list[tuple]:
        """Read the service's SQLite store (WAL lets us read while it runs)."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql).fetchall()


class Network:
    """Starts services under one directory; every node registers itself at the registry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry_port = free_port()
        self.admin_token = "test-registry-admin-token"
        self.bpp_admin_token = "test-bpp-admin-token"
        self.services: list[ServiceProcess] = []

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    def start(self, service: str, *, name: str | None = None, port: int | None = None,
              extra_env: dict[str, str] | None = None) -> ServiceProcess:
        name = name or service
        port = port or (self.registry_port if service == "registry" else free_port())
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKOU_") or k in CHEAP_ARGON2_ENV}
        env.update(
            LAKOU_DATA_DIR=str(data_dir),
            LAKOU_REGISTRY_URL=self.registry_url,
            LAKOU_REGISTRY_ADMIN_TOKEN=self.admin_token,
            LAKOU_PUBLIC_URL=f"http://127.0.0.1:{port}",
            LAKOU_SUBSCRIBER_ID=f"{name}.lakou.localhost",
            LAKOU_BPP_ADMIN_TOKEN=self.bpp_admin_token,
        )
        env.update(extra_env or {})
        store = data_dir / "lakou.db"
        if "LAKOU_DATABASE_URL" not in env and not store.exists():
            migrated_sqlite_copy(store)  # its start-up upgrade is then a no-op, as on a restart
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "beckn.cli", "serve", service, "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        running = ServiceProcess(name, service, port, data_dir, process, log_path, env)
        self.services.append(running)
        return running

    def wait_ready(self, *services: ServiceProcess, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for running in services:
            while True:
                if running.process.poll() is not None:
                    raise AssertionError(f"{running.name} exited with {running.process.returncode}:\n{running.log()[-3000:]}")
                try:
                    response = httpx.get(running.url + "/health", timeout=2)
                    if response.status_code == 200 and response.json().get("registered", True):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{running.name} not ready in {timeout} s:\n{running.log()[-3000:]}")
                time.sleep(0.2)

    def stop_all(self) -> None:
        for running in reversed(self.services):
            running.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {s.name}\n{s.log()[-4000:]}" for s in self.services)


def running_network(root: Path) -> Iterator[Network]:
    network = Network(root)
    try:
        yield network
    finally:
        network.stop_all()


class DelayingProxy:
    """A slow network link: an HTTP/1.1 proxy on 127.0.0.1 that holds chosen requests before passing
    them on, unchanged. Real bytes, real sockets, real (signed) requests: only time is added.

    It serves two directions at once. Requests in origin form (`POST /beckn/search`) go to `upstream`:
    register the proxy's `url` as a service's public URL and the network reaches the service through
    it. Requests in absolute form (`POST http://host:port/beckn/on_search`) go to that host: set the
    proxy as a process's `HTTP_PROXY` and the process's outgoing calls go through it (httpx honours it).
    `delays` maps a path suffix (`/search`, `/on_search`) to seconds; it may change at any time.
    `holds` maps a path suffix to an event: such requests wait until the test sets it, which orders
    them after what the test waited for, however slow the machine. `seen` lists (method, url, delay)
    of every request received, `held` the URLs of those held, `relayed` (method, url, status) of
    every request whose answer went back.
    """

    def __init__(self, upstream_port: int | None = None, delays: dict[str, float] | None = None) -> None:
        self.upstream_port = upstream_port
        self.delays: dict[str, float] = dict(delays or {})
        self.holds: dict[str, threading.Event] = {}
        self.seen: list[tuple[str, str, float]] = []
        self.held: list[str] = []
        self.relayed: list[tuple[str, str, int]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DelayingProxy:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="delaying-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return

        def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_later(0.05, self._loop.stop)

        self._loop.call_soon_threadsafe(close)
        self._thread.join(5)
        self._thread = None

    def _delay_for(self, path: str) -> float:
        bare = path.split("?", 1)[0]
        return next((seconds for suffix, seconds in list(self.delays.items()) if bare.endswith(suffix)), 0.0)

    def _hold_for(self, path: str) -> threading.Event | None:
        bare = path.split("?", 1)[0]
        return next((event for suffix, event in list(self.holds.items()) if bare.endswith(suffix)), None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length) if length else b""
                if target.startswith("http://"):
                    parts = urlsplit(target)
                    host, port = parts.hostname or "127.0.0.1", parts.port or 80
                    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                else:
                    host, port, path = "127.0.0.1", self.upstream_port or 0, target
                delay, hold, url = self._delay_for(path), self._hold_for(path), f"http://{host}:{port}{path}"
                self.seen.append((method, url, delay))
                if delay:
                    await asyncio.sleep(delay)
                if hold is not None:
                    self.held.append(url)
                    while not hold.is_set():
                        await asyncio.sleep(0.02)
                kept = [(k, v) for k, v in headers
                        if k.lower() not in ("host", "connection", "proxy-connection", "keep-alive")]
                out = "".join([f"{method} {path} HTTP/1.1\r\n", f"Host: {host}:{port}\r\n",
                               *(f"{k}: {v}\r\n" for k, v in kept), "Connection: close\r\n\r\n"])
                try:
                    up_reader, up_writer = await asyncio.open_connection(host, port)
                except OSError:
                    writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    await writer.drain()
                    return
                up_writer.write(out.encode("latin-1") + body)
                await up_writer.drain()
                response = await up_reader.read()  # the upstream closes: we asked for Connection: close
                up_writer.close()
                # Recorded before answering: the sender may have given up waiting meanwhile.
                status = response.split(b" ", 2)[1] if response.startswith(b"HTTP/") else b"0"
                self.relayed.append((method, url, int(status) if status.isdigit() else 0))
                writer.write(response)
                await writer.drain()
                if b"connection: close" in response.split(b"\r\n\r\n", 1)[0].lower():
                    return
        except (ConnectionError, OSError, asyncio.CancelledError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()
