"""`lakou registry add|list`: the operator's hands on the registry database, without the server.

`add` goes through the same `registry.participants.register` as `POST /admin/participants`.
Exit codes: 0 done, 2 bad input (message on stderr), 1 anything else.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

BAD_INPUT = 2


def _fail(message: str, code: int = BAD_INPUT) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _database_url(db: str | None, data_dir: Path | None) -> str:
    from beckn.settings import get_settings

    settings = get_settings()
    if data_dir is not None:
        settings.data_dir = data_dir
    if db is not None:
        settings.database_url = db
    url = settings.resolved_database_url()
    from beckn.store.db import database_url

    database_url(url)  # a ValueError saying which URL to write instead
    return url


async def _open(url: str) -> Any:
    """Migrate the store (creating a SQLite file's directory) and return (engine, sessions)."""
    from beckn.store.db import create_engine, session_factory, sqlite_path, upgrade

    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    await upgrade(url)
    engine = create_engine(url)
    return engine, session_factory(engine)


def _read_keys_file(path: Path) -> dict[str, str]:
    """The public half of a node key file (`lakou init`'s node-keys.json); private keys are not read out."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(f"keys file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"keys file {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(f"keys file {path} must hold a JSON object")
    wanted = {"unique_key_id": ("unique_key_id", "ukId", "key_id"),
              "signing_public_key": ("signing_public_key",),
              "encr_public_key": ("encr_public_key", "encryption_public_key")}
    keys: dict[str, str] = {}
    for field, names in wanted.items():
        value = next((data[n] for n in names if isinstance(data.get(n), str)), None)
        if value is None:
            raise _fail(f"keys file {path} has no {' or '.join(names)}")
        keys[field] = value
    return keys


def register(app: typer.Typer) -> None:
    registry_app = typer.Typer(help="Manage the network registry's participants (operator).", no_args_is_help=True)
    app.add_typer(registry_app, name="registry")

    @registry_app.command("add")
    def add(
        subscriber_id: str = typer.Option(..., help="The participant's FQDN, e.g. bpp.example.mq."),
        type_: str = typer.Option(..., "--type", help="BAP, BPP, BG or BREG."),
        url: str = typer.Option(..., help="Its Beckn callback base URL, e.g. https://bpp.example.mq/beckn."),
        domain: str = typer.Option(None, help="Domain (default: $LAKOU_DOMAIN or lakou:retail; '' for any)."),
        city: str = typer.Option("", help="City code, e.g. insee:97209 (default: blank, the whole country)."),
        country: str = typer.Option(None, help="Country code (default: $LAKOU_COUNTRY or MTQ; '' for any)."),
        keys_file: Path = typer.Option(None, help="A node's node-keys.json (its public keys and key id are used)."),
        signing_public_key: str = typer.Option(None, help="Ed25519 public key (instead of --keys-file)."),
        encr_public_key: str = typer.Option(None, help="X25519 public key (instead of --keys-file)."),
        unique_key_id: str = typer.Option(None, help="Key id (instead of --keys-file)."),
        valid_days: int = typer.Option(365, min=1, help="Key validity from now, in days."),
        db: str = typer.Option(None, help="Database URL (default: $LAKOU_DATABASE_URL or SQLite in the data dir)."),
        data_dir: Path = typer.Option(None, help="Data directory (default: $LAKOU_DATA_DIR or ./data)."),
    ) -> None:
        """Add (or update) a participant entry and its key, approved (SUBSCRIBED)."""
        from pydantic import ValidationError

        from beckn.settings import get_settings
        from registry.errors import ApiError
        from registry.participants import Registration, register as register_participant, validation_errors
        from registry.vocabulary import wire_time

        explicit = {"signing_public_key": signing_public_key, "encr_public_key": encr_public_key,
                    "unique_key_id": unique_key_id}
        if keys_file is not None:
            if any(v is not None for v in explicit.values()):
                raise _fail("give either --keys-file or --signing-public-key/--encr-public-key/--unique-key-id, "
                            "not both")
            keys = _read_keys_file(keys_file)
        else:
            missing = [f"--{k.replace('_', '-')}" for k, v in explicit.items() if v is None]
            if missing:
                raise _fail(f"missing {', '.join(missing)} (or give --keys-file)")
            keys = {k: v for k, v in explicit.items() if v is not None}

        settings = get_settings()
        now = datetime.now(UTC)
        record = {
            "subscriber_id": subscriber_id, "type": type_, "url": url,
            "domain": settings.domain if domain is None else domain,
            "city": city,
            "country": settings.country if country is None else country,
            **keys,
            "valid_from": now.isoformat(), "valid_until": (now + timedelta(days=valid_days)).isoformat(),
        }
        try:
            registration = Registration.model_validate(record)
        except ValidationError as exc:
            for error in validation_errors(exc):
                typer.echo(f"error: {error.message}", err=True)
            raise typer.Exit(BAD_INPUT) from None
        try:
            url_db = _database_url(db, data_dir)
        except ValueError as exc:
            raise _fail(str(exc)) from None

        async def run() -> Any:
            engine, sessions = await _open(url_db)
            try:
                return await register_participant(sessions, registration, now=now)
            finally:
                await engine.dispose()

        try:
            result = asyncio.run(run())
        except ApiError as exc:  # a conflict with what the registry holds: the operator's input
            raise _fail(exc.error.message) from None
        what = "added" if result.created else ("updated" if result.changed else "unchanged")
        typer.echo(f"{what}: {result.participant.subscriber_id} {result.participant.type} "
                   f"domain={result.participant.domain or '(any)'} key {result.key.unique_key_id} "
                   f"valid until {wire_time(result.key.valid_until)}")

    @registry_app.command("list")
    def list_participants(
        subscriber_id: str = typer.Option(None, help="Only this subscriber's entries."),
        db: str = typer.Option(None, help="Database URL (default: $LAKOU_DATABASE_URL or SQLite in the data dir)."),
        data_dir: Path = typer.Option(None, help="Data directory (default: $LAKOU_DATA_DIR or ./data)."),
    ) -> None:
        """List every participant entry with its keys."""
        from rich.console import Console
        from rich.table import Table

        from registry.participants import key_state, list_entries

        try:
            url_db = _database_url(db, data_dir)
        except ValueError as exc:
            raise _fail(str(exc)) from None

        async def run() -> Any:
            engine, sessions = await _open(url_db)
            try:
                async with sessions() as session:
                    return await list_entries(session, subscriber_id=subscriber_id)
            finally:
                await engine.dispose()

        entries = asyncio.run(run())
        now = datetime.now(UTC)
        table = Table(title=f"Registry participants ({len(entries)})")
        for column in ("subscriber_id", "type", "domain", "city", "country", "url", "status", "keys"):
            table.add_column(column, overflow="fold")
        for participant, keys in entries:
            key_lines = "\n".join(f"{k.unique_key_id} ({key_state(k, now)}, until {k.valid_until:%Y-%m-%d})"
                                  for k in keys) or "(none)"
            table.add_row(participant.subscriber_id, participant.type, participant.domain or "(any)",
                          participant.city or "(any)", participant.country or "(any)", participant.url,
                          participant.status, key_lines)
        Console(width=200).print(table)
