"""compose.yaml: no Docker engine runs here, so check what can be checked without one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
import uvicorn
from typer.testing import CliRunner

from beckn.cli import app as cli_app
import beckn.cli.serve as serve_module
from beckn.cli.serve import Service

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def _parse_lakou(args: list[str]) -> dict[str, Any]:
    """Run argv through the real `lakou` command line, stopping just before a server would start.

    Returns what `lakou serve` would run: the service, host, port and the settings it resolved."""
    assert args[0] == "lakou", f"command must start with the lakou console script: {args}"
    seen: dict[str, Any] = {}

    def fake_build_app(service: Service, settings: Any, *, host: str, port: int) -> str:
        seen.update(service=Service(service), host=host, port=port, settings=settings)
        return "app"

    def fake_run(app: str, **kwargs: Any) -> None:
        seen["run"] = kwargs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serve_module, "build_app", fake_build_app)
        patch.setattr(uvicorn, "run", fake_run)
        result = CliRunner().invoke(cli_app, args[1:])
    if result.exit_code != 0:
        raise ValueError(f"{' '.join(args)} is not a valid lakou invocation: {result.output}")
    assert seen["run"]["port"] == seen["port"]
    return seen


@pytest.mark.parametrize("service", list(Service), ids=[s.value for s in Service])
def test_each_service_is_a_valid_lakou_serve_on_its_own_postgres_database(service: Service) -> None:
    spec = SERVICES[service.value]
    params = _parse_lakou(spec["command"])
    assert params["service"] == service
    port = params["port"]
    assert params["host"] == "0.0.0.0"
    assert f"{port}:{port}" in spec["ports"]
    # The healthcheck probes the port the service listens on, at /health.
    probe = " ".join(spec["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/health" in probe
    env = spec["environment"]
    assert env["LAKOU_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert spec["depends_on"]["postgres"]["condition"] == "service_healthy"
    if service is not Service.registry:
        assert env["LAKOU_REGISTRY_URL"] == f"http://registry:{_port_of(Service.registry)}"
        assert env["LAKOU_PUBLIC_URL"] == f"http://{service.value}:{port}"
        assert spec["depends_on"]["registry"]["condition"] == "service_healthy"


def _port_of(service: Service) -> int:
    return int(_parse_lakou(SERVICES[service.value]["command"])["port"])


def test_services_never_share_a_database_and_every_database_is_created() -> None:
    databases = [SERVICES[s.value]["environment"]["LAKOU_DATABASE_URL"].rsplit("/", 1)[1] for s in Service]
    assert len(set(databases)) == len(databases), "a shared database would mix the nodes' outboxes"
    init_sql = (ROOT / "deploy" / "postgres-init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql))
    assert set(databases) <= created
    assert "healthcheck" in SERVICES["postgres"]


def test_unknown_commands_are_caught_by_the_parser() -> None:
    # The check above would be worthless if the parser accepted anything.
    with pytest.raises(ValueError, match="No such option"):
        _parse_lakou(["lakou", "serve", "registry", "--prot", "8100"])
    with pytest.raises(ValueError, match="wallet"):
        _parse_lakou(["lakou", "serve", "wallet"])
    with pytest.raises(ValueError):
        _parse_lakou(["lakou", "serve", "bpp", "--port", "eighty"])
