"""`lakou connect ...`: operate Martinique Connect (clients, local accounts, signing keys)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

connect_app = typer.Typer(help="Martinique Connect (the OpenID Provider): clients, accounts, keys.",
                          no_args_is_help=True)
client_app = typer.Typer(help="Relying parties (OpenID clients).", no_args_is_help=True)
user_app = typer.Typer(help="Local accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="ID token signing keys.", no_args_is_help=True)
connect_app.add_typer(client_app, name="client")
connect_app.add_typer(user_app, name="user")
connect_app.add_typer(keys_app, name="keys")

DataDir = typer.Option(None, help="Data directory (default: $LAKOU_DATA_DIR or ./data).")
Db = typer.Option(None, help="Database URL (default: $LAKOU_DATABASE_URL or SQLite in the data dir).")


def _settings(data_dir: Path | None, db: str | None):  # noqa: ANN202
    from did.connect.settings import ConnectSettings

    settings = ConnectSettings()
    if data_dir is not None:
        settings.data_dir = data_dir
    if db is not None:
        settings.database_url = db
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return settings


def _run(coroutine):  # noqa: ANN001, ANN202
    from did.connect.admin import AdminError

    try:
        return asyncio.run(coroutine)
    except AdminError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@client_app.command("add")
def client_add(
    client_id: str = typer.Option(..., "--client-id", help="The client's identifier."),
    redirect_uri: list[str] = typer.Option(..., "--redirect-uri", help="A redirect URI (exact match; repeatable)."),
    name: str = typer.Option(None, help="Name shown on the consent page (default: the client id)."),
    post_logout_redirect_uri: list[str] = typer.Option([], "--post-logout-redirect-uri", help="Repeatable."),
    sector: str = typer.Option(None, "--sector", help="Pairwise sector (default: the redirect URIs' host)."),
    backchannel_logout_uri: str = typer.Option(None, "--backchannel-logout-uri"),
    userinfo_jwt: bool = typer.Option(False, "--userinfo-jwt", help="UserInfo as a signed JWT (ES256)."),
    data_dir: Path = DataDir,
    db: str = Db,
) -> None:
    """Register a relying party and print its client secret (shown once, stored hashed)."""
    from did.connect.admin import add_client

    secret = _run(add_client(_settings(data_dir, db), client_id=client_id, redirect_uris=redirect_uri, name=name,
                             post_logout_redirect_uris=post_logout_redirect_uri, sector=sector,
                             backchannel_logout_uri=backchannel_logout_uri, userinfo_signed=userinfo_jwt))
    typer.echo(f"client_id: {client_id}")
    typer.echo(f"client_secret: {secret}")
    typer.echo("Keep the secret now: it is stored hashed and cannot be shown again.", err=True)


@client_app.command("list")
def client_list(data_dir: Path = DataDir, db: str = Db) -> None:
    """List the registered relying parties as JSON lines (never their secrets)."""
    from did.connect.admin import list_clients

    for row in _run(list_clients(_settings(data_dir, db))):
        typer.echo(json.dumps(row, ensure_ascii=False))


@user_app.command("add")
def user_add(
    username: str = typer.Option(..., "--username"),
    email: str = typer.Option(None, "--email"),
    given_name: str = typer.Option(None, "--given-name"),
    family_name: str = typer.Option(None, "--family-name"),
    birthdate: str = typer.Option(None, "--birthdate", help="YYYY-MM-DD"),
    commune: str = typer.Option(None, "--commune", help="insee:972xx"),
    data_dir: Path = DataDir,
    db: str = Db,
) -> None:
    """Create a local account. The password is read from a prompt, or from stdin when it is not a terminal."""
    from did.connect.admin import add_user

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    account_id = _run(add_user(_settings(data_dir, db), username=username, password=password, email=email,
                               given_name=given_name, family_name=family_name, birthdate=birthdate,
                               commune=commune))
    typer.echo(f"account {account_id} created for {username}")


@keys_app.command("rotate")
def keys_rotate(data_dir: Path = DataDir, db: str = Db) -> None:
    """next → current (signs from now on), current → retired (still published), and a new next key."""
    from did.connect.admin import rotate_keys

    kids = _run(rotate_keys(_settings(data_dir, db)))
    for state in ("current", "next", "retired"):
        typer.echo(f"{state}: {kids[state]}")


def register(app: typer.Typer) -> None:
    app.add_typer(connect_app, name="connect")
