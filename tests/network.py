"""Run Lakou services as real processes on free ports, the way `lakou up` and operators do."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conftest import free_port


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
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKOU_")}
        env.update(
            LAKOU_DATA_DIR=str(data_dir),
            LAKOU_REGISTRY_URL=self.registry_url,
            LAKOU_REGISTRY_ADMIN_TOKEN=self.admin_token,
            LAKOU_PUBLIC_URL=f"http://127.0.0.1:{port}",
            LAKOU_SUBSCRIBER_ID=f"{name}.lakou.localhost",
            LAKOU_BPP_ADMIN_TOKEN=self.bpp_admin_token,
        )
        env.update(extra_env or {})
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
