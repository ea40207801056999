"""`lakou`: the single operator entry point. Each sub-module registers its own commands."""

from __future__ import annotations

import typer

from beckn.cli import audit, connect, crypto, db, did, network, node, openapi, serve
from registry import cli as registry_cli

app = typer.Typer(
    name="lakou",
    help="Lakou: a Beckn network server for local commerce and identity in Martinique.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

crypto.register(app)
db.register(app)
node.register(app)
registry_cli.register(app)
serve.register(app)
network.register(app)
openapi.register(app)
connect.register(app)
did.register(app)
audit.register(app)


def main() -> None:
    app()
