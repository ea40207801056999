"""`lakou serve <service>`: run one service on its own."""

from __future__ import annotations

import importlib
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from fastapi import FastAPI

    from beckn.settings import Settings


class Service(StrEnum):
    registry = "registry"
    gateway = "gateway"
    bpp = "bpp"
    bap = "bap"
    connect = "connect"  # Martinique Connect, the OpenID Provider (did.connect)


DEFAULT_PORTS = {Service.registry: 8100, Service.gateway: 8200, Service.bpp: 8300, Service.bap: 8400,
                 Service.connect: 8500}
# Where a service's composition root lives when it is not `<service>.app`.
APP_MODULES = {Service.connect: "did.connect.app"}


def build_app(service: Service | str, settings: Settings, *, host: str, port: int) -> FastAPI:
    """The service's app from its own composition root, `<service>.app.create_app`."""
    service = Service(service)
    module = importlib.import_module(APP_MODULES.get(service, f"{service.value}.app"))
    return module.create_app(settings, host=host, port=port)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        service: Service = typer.Argument(..., help="Which service to run."),
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(None, help="Port (default: registry 8100, gateway 8200, bpp 8300, bap 8400, connect 8500)."),
        db: str = typer.Option(None, help="Database URL (default: $LAKOU_DATABASE_URL or SQLite in the data dir)."),
        data_dir: Path = typer.Option(None, help="Data directory (default: $LAKOU_DATA_DIR or ./data)."),
        log_level: str = typer.Option("info", help="uvicorn log level."),
    ) -> None:
        """Run one Lakou service (registry, gateway, bpp, bap or connect) in the foreground."""
        import uvicorn

        from beckn.settings import get_settings

        settings = get_settings()
        if data_dir is not None:
            settings.data_dir = data_dir
        if db is not None:
            settings.database_url = db
        chosen_port = port if port is not None else DEFAULT_PORTS[service]
        application = build_app(service, settings, host=host, port=chosen_port)
        uvicorn.run(application, host=host, port=chosen_port, log_level=log_level,
                    # Keep-alive connections from peers would hold shutdown for their whole idle time.
                    timeout_graceful_shutdown=5)
