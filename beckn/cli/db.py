"""`lakou db`: schema migrations."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from beckn.settings import get_settings

# beckn.store.db is imported inside the commands: SQLAlchemy and Alembic would slow the start of
# every other `lakou` command.

db_app = typer.Typer(help="Database schema: upgrade to the newest migration, show the current one.",
                     no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="SQLAlchemy URL. Default: LAKOU_DATABASE_URL, else SQLite under LAKOU_DATA_DIR."),
]


def _url(db: str | None) -> str:
    from beckn.store.db import database_url

    url = db or get_settings().resolved_database_url()
    try:
        database_url(url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    return url


def _shown(url: str) -> str:
    from beckn.store.db import database_url

    return database_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def upgrade_command(db: DbOption = None) -> None:
    """Migrate the database to the newest schema (safe to run again, or from several processes)."""
    from beckn.store.db import head_revision, sqlite_path, upgrade

    url = _url(db)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(upgrade(url))
    typer.echo(f"{_shown(url)}: at revision {head_revision()} (head)")


@db_app.command("current")
def current_command(db: DbOption = None) -> None:
    """Show the database's migration and whether it is the newest."""
    from beckn.store.db import current_revision, head_revision, sqlite_path

    url = _url(db)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        typer.echo(f"{_shown(url)}: no database file yet; run `lakou db upgrade`", err=True)
        raise typer.Exit(1)
    current = asyncio.run(current_revision(url))
    head = head_revision()
    if current is None:
        typer.echo(f"{_shown(url)}: not migrated (head is {head}); run `lakou db upgrade`")
        raise typer.Exit(1)
    state = "head" if current == head else f"behind head {head}; run `lakou db upgrade`"
    typer.echo(f"{_shown(url)}: at revision {current} ({state})")
    if current != head:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
