"""`lakou registry add|list|approve|suspend|revoke|audit`: the operator's hands on the registry.

`approve`, `suspend`, `revoke` and `audit` talk to the running registry's admin API over HTTP
(`--registry-url`, default $LAKOU_REGISTRY_URL; token from $LAKOU_REGISTRY_ADMIN_TOKEN or
`--token-file`), so every decision is validated and audited in one place (registry/lifecycle.py).
`list` does too, unless `--db`/`--data-dir` point it at a database to read directly. `add` writes
the database directly, through the same `registry.participants.register` as
`POST /admin/participants`, and so works before the registry is served.
Exit codes: 0 done, 2 bad input (message on stderr), 1 refused (illegal transition, wrong token,
registry unreachable) or anything else.
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
    from registry.snapshot import register_snapshot_commands  # export/import of signed snapshots (federation)
    register_snapshot_commands(registry_app)

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
        log_vkey: str = typer.Option(None, help="Its transaction-log key, a C2SP note verifier key "
                                                "(<name>+<key ID>+<base64>), published with this key."),
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
            **({"log_vkey": log_vkey} if log_vkey is not None else {}),
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
            from registry.admin import post_status

            engine, sessions = await _open(url_db)
            try:  # as POST /admin/participants: approved, but a suspension is only lifted by approve
                return await register_participant(sessions, registration, now=now,
                                                  status=await post_status(sessions, registration))
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
        if result.participant.status != "SUBSCRIBED":
            typer.echo(f"note: the entry stays {result.participant.status} (suspended); "
                       f"`lakou registry approve {result.participant.subscriber_id}` reinstates it")

    @registry_app.command("list")
    def list_participants(
        subscriber_id: str = typer.Option(None, help="Only this subscriber's entries."),
        registry_url: str = typer.Option(None, help="The registry's base URL (default: $LAKOU_REGISTRY_URL); "
                                         "ignored with --db or --data-dir."),
        token_file: Path = typer.Option(None, help="A file holding the admin token (default: "
                                        "$LAKOU_REGISTRY_ADMIN_TOKEN)."),
        as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON instead of a table."),
        db: str = typer.Option(None, help="Read this database directly instead of the admin API."),
        data_dir: Path = typer.Option(None, help="Read the SQLite store of this data directory directly."),
    ) -> None:
        """List every participant entry with its status and keys.

        Asks the admin API, or with --db/--data-dir reads the database itself."""
        if db is not None or data_dir is not None:
            entries = _list_direct(db, data_dir, subscriber_id)
        else:
            params = {"subscriber_id": subscriber_id} if subscriber_id else None
            entries = _AdminClient(registry_url, token_file).call("GET", "/admin/participants", params=params)
        if as_json:
            typer.echo(json.dumps(entries, indent=2))
            return
        _print_entries(entries)

    def _decide(action: str, subscriber_id: str, *, token_file: Path | None, registry_url: str | None,
                path: str | None = None, **body: str | None) -> None:
        client = _AdminClient(registry_url, token_file)
        answer = client.call("POST", path or f"/admin/participants/{_segment(subscriber_id)}/{action}",
                             json={k: v for k, v in body.items() if v is not None})
        _print_outcome(answer)

    url_help = "The registry's base URL (default: $LAKOU_REGISTRY_URL)."
    token_help = "A file holding the admin token (default: $LAKOU_REGISTRY_ADMIN_TOKEN)."
    actor_help = "Who decides, for the audit trail (default: your login name)."

    @registry_app.command("approve")
    def approve(
        subscriber_id: str = typer.Argument(..., help="The participant's subscriber_id."),
        type_: str = typer.Option(None, "--type", help="Only its entry of this role (default: all its entries)."),
        domain: str = typer.Option(None, help="Only its entry of this domain (default: all)."),
        reason: str = typer.Option("", help="Why, for the audit trail."),
        actor: str = typer.Option(None, help=actor_help),
        registry_url: str = typer.Option(None, help=url_help),
        token_file: Path = typer.Option(None, help=token_help),
    ) -> None:
        """Approve a participant: its entries become SUBSCRIBED.

        Pending (INITIATED, UNDER_SUBSCRIPTION) or suspended entries become SUBSCRIBED and appear
        in lookups."""
        _decide("approve", subscriber_id, token_file=token_file, registry_url=registry_url, type=type_,
                domain=domain, reason=reason, actor=actor or _default_actor())

    @registry_app.command("suspend")
    def suspend(
        subscriber_id: str = typer.Argument(..., help="The participant's subscriber_id."),
        type_: str = typer.Option(None, "--type", help="Only its entry of this role (default: all its entries)."),
        domain: str = typer.Option(None, help="Only its entry of this domain (default: all)."),
        reason: str = typer.Option("", help="Why, for the audit trail."),
        actor: str = typer.Option(None, help=actor_help),
        registry_url: str = typer.Option(None, help=url_help),
        token_file: Path = typer.Option(None, help=token_help),
    ) -> None:
        """Suspend a participant: its entries become UNSUBSCRIBED.

        It leaves every lookup, keeps its keys, and `approve` reinstates it. Nodes refuse it
        within LAKOU_LOOKUP_CACHE_SECONDS."""
        _decide("suspend", subscriber_id, token_file=token_file, registry_url=registry_url, type=type_,
                domain=domain, reason=reason, actor=actor or _default_actor())

    @registry_app.command("revoke")
    def revoke(
        subscriber_id: str = typer.Argument(..., help="The participant's subscriber_id."),
        key: str = typer.Option(None, "--key", help="Revoke only this key id (ukId); without it, the whole "
                                "participant: every entry UNSUBSCRIBED and every key revoked."),
        reason: str = typer.Option("", help="Why, for the audit trail."),
        actor: str = typer.Option(None, help=actor_help),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
        registry_url: str = typer.Option(None, help=url_help),
        token_file: Path = typer.Option(None, help=token_help),
    ) -> None:
        """Revoke a key, or a whole participant, for ever.

        A revoked key is never valid again and its key id can never be registered again (the
        key history is kept for auditors). Nodes refuse it within LAKOU_LOOKUP_CACHE_SECONDS."""
        what = f"key {subscriber_id}|{key}" if key else f"participant {subscriber_id} (all its keys)"
        if not yes and not typer.confirm(f"Revoke {what}? This cannot be undone", default=False):
            raise _fail("not revoked", REFUSED)
        path = (f"/admin/participants/{_segment(subscriber_id)}/keys/{_segment(key)}/revoke" if key
                else f"/admin/participants/{_segment(subscriber_id)}/revoke")
        _decide("revoke", subscriber_id, token_file=token_file, registry_url=registry_url, path=path,
                reason=reason, actor=actor or _default_actor())

    @registry_app.command("audit")
    def audit(
        subscriber_id: str = typer.Argument(None, help="Only this subscriber's decisions."),
        limit: int = typer.Option(100, min=1, max=10_000, help="At most this many, most recent first."),
        registry_url: str = typer.Option(None, help=url_help),
        token_file: Path = typer.Option(None, help=token_help),
    ) -> None:
        """The operator's decisions (approve, suspend, revoke): when, who, what, why."""
        from rich.console import Console
        from rich.table import Table

        params: dict[str, Any] = {"limit": limit}
        if subscriber_id:
            params["subscriber_id"] = subscriber_id
        rows = _AdminClient(registry_url, token_file).call("GET", "/admin/audit", params=params)
        table = Table(title=f"Registry decisions ({len(rows)})")
        for column in ("at", "actor", "action", "subscriber_id", "entry or key", "from", "to", "reason"):
            table.add_column(column, overflow="fold")
        for row in rows:
            target = row["unique_key_id"] or f"{row['type']} {row['domain'] or '(any)'}"
            table.add_row(row["at"], row["actor"], row["action"], row["subscriber_id"], target,
                          row["from"] or "", row["to"] or "", row["reason"])
        Console(width=200).print(table)


# ------------------------------------------------------------------ the admin API over HTTP

REFUSED = 1


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _default_actor() -> str:
    import getpass

    try:
        return getpass.getuser()[:128] or "operator"
    except (KeyError, OSError):  # no login name (e.g. a container's anonymous uid)
        return "operator"


class _AdminClient:
    """The registry's admin API, with the CLI's error handling: every failure becomes a message on
    stderr and an exit code (2: the input is wrong, 1: the registry refused or is unreachable)."""

    def __init__(self, registry_url: str | None, token_file: Path | None) -> None:
        from beckn.settings import get_settings

        settings = get_settings()
        self.base = (registry_url or settings.registry_url).rstrip("/")
        if not self.base.startswith(("http://", "https://")):
            raise _fail(f"--registry-url {self.base!r} must be an http:// or https:// URL")
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise _fail(f"token file {token_file} is not readable: {exc}") from None
            if not token:
                raise _fail(f"token file {token_file} is empty")
        else:
            token = (settings.registry_admin_token or "").strip()
            if not token:
                raise _fail("no admin token: set LAKOU_REGISTRY_ADMIN_TOKEN or pass --token-file "
                            "(the registry's LAKOU_REGISTRY_ADMIN_TOKEN)")
        self.token = token

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        url = self.base + path
        try:
            response = httpx.request(method, url, headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=30, **kwargs)
        except httpx.HTTPError as exc:
            raise _fail(f"cannot reach the registry at {self.base}: {type(exc).__name__}: {exc} "
                        "(is it running? is --registry-url right?)", REFUSED) from None
        if response.status_code < 300:
            try:
                return response.json()
            except ValueError:
                raise _fail(f"{method} {url} answered {response.status_code} with a body that is not JSON; "
                            "is --registry-url a Lakou registry?", REFUSED) from None
        message = _error_message(response)
        code = BAD_INPUT if response.status_code in (400, 404, 413, 422) else REFUSED
        raise _fail(f"the registry refused ({response.status_code}): {message}", code)


def _error_message(response: Any) -> str:
    try:
        body = response.json()
        error = body["error"]
        details = [d.get("message", "") for d in error.get("details", [])]
        return "; ".join([error["message"], *details])
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text[:300] or response.reason_phrase


def _print_outcome(answer: dict[str, Any]) -> None:
    verbs = {"approve": "approved", "suspend": "suspended", "revoke_key": "revoked",
             "revoke_participant": "revoked"}
    if not answer.get("changed"):
        states = sorted({e["status"] for e in answer.get("entries", [])})
        typer.echo(f"unchanged: {answer['subscriber_id']} already {answer['action'].replace('_', ' ')}d "
                   f"(now {', '.join(states) or 'no entries'})")
        return
    for change in answer["changes"]:
        target = (f"key {change['unique_key_id']}" if change["unique_key_id"]
                  else f"{change['type']} domain={change['domain'] or '(any)'}")
        typer.echo(f"{verbs.get(change['action'], change['action'])}: {change['subscriber_id']} {target} "
                   f"{change['from']} -> {change['to']}")


def _list_direct(db: str | None, data_dir: Path | None, subscriber_id: str | None) -> list[dict[str, Any]]:
    from registry.admin import operator_entry_json
    from registry.participants import list_entries

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

    now = datetime.now(UTC)
    return [operator_entry_json(p, keys, now) for p, keys in asyncio.run(run())]


def _print_entries(entries: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Registry participants ({len(entries)})")
    for column in ("subscriber_id", "type", "domain", "city", "country", "url", "status", "keys"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        key_lines = "\n".join(f"{k['unique_key_id']} ({k['state']}, until {k['valid_until'][:10]})"
                              for k in entry["keys"]) or "(none)"
        table.add_row(entry["subscriber_id"], entry["type"], entry["domain"] or "(any)", entry["city"] or "(any)",
                      entry["country"] or "(any)", entry["url"], entry["status"], key_lines)
    Console(width=200).print(table)
