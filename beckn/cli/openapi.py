"""`lakou openapi`: export (or check) each service's published OpenAPI document under specs/."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer

from beckn.cli.serve import DEFAULT_PORTS, Service

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"


def openapi_path(service: Service, specs_dir: Path = SPECS_DIR) -> Path:
    return specs_dir / f"{service.value}.openapi.json"


def service_openapi(service: Service) -> dict[str, Any]:
    """The document the service serves at /openapi.json, built without touching real data."""
    from beckn.cli.serve import build_app
    from beckn.settings import Settings

    with tempfile.TemporaryDirectory(prefix="lakou-openapi-") as scratch:
        settings = Settings(data_dir=Path(scratch), registry_admin_token=None, database_url=None)
        app = build_app(service, settings, host="127.0.0.1", port=DEFAULT_PORTS[service])
        return app.openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def register(app: typer.Typer) -> None:
    @app.command("openapi")
    def openapi(
        check: bool = typer.Option(False, "--check", help="Exit 1 if an exported copy is stale, write nothing."),
        specs_dir: Path = typer.Option(SPECS_DIR, help="Where the exported documents live."),
    ) -> None:
        """Write specs/<service>.openapi.json for every service (or check that they are current)."""
        stale: list[str] = []
        for service in Service:
            path = openapi_path(service, specs_dir)
            text = render(service_openapi(service))
            current = path.read_text() if path.exists() else None
            if current == text:
                continue
            if check:
                stale.append(str(path))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                typer.echo(f"wrote {path}")
        if stale:
            typer.echo("stale OpenAPI exports (run `lakou openapi` and commit): " + ", ".join(stale), err=True)
            raise typer.Exit(1)
