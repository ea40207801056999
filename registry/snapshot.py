"""Signed registry snapshots: a partner's directory carried offline, verifiably.

`lakou registry export --out F` writes every SUBSCRIBED entry of this registry with its whole key
history (keys are never deleted: a partner can verify old signatures too), signed by the
registry's own key; `lakou registry import F --partner-key K` checks that signature against the
partner's published key (GET /registry-key) and stores the snapshot, verbatim, under
`<data_dir>/federation/snapshots/<registry id>.json`.

File format (`lakou-registry-snapshot/1`), one JSON object:

    {"snapshot": {"format": "lakou-registry-snapshot/1", "registry_id": "...", "created": "...",
                  "participants": [{subscriber_id, type, domain, city, country, url, status,
                                    created, updated, "keys": [{unique_key_id, signing_public_key,
                                    encr_public_key, valid_from, valid_until, created,
                                    revoked_at}]}]},
     "signature": "Signature keyId=\"<registry id>|<ukId>|ed25519\",algorithm=\"ed25519\",created=...,
                   expires=...,headers=\"(created) (expires) digest\",signature=\"...\""}

`signature` is a detached BECKN-006 signature (the same as a lookup answer's
X-Registry-Signature) over the canonical JSON of `snapshot`: keys sorted, no whitespace, UTF-8
(`json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`). Any change
to any value breaks it. `expires` bounds how long the snapshot may be imported (export
`--valid-days`, 30 by default); a stored snapshot is then used until replaced.

Why files and not rows: an imported entry must stay marked with its origin and must never
overwrite a local participant. The registry tables have no origin column (this change adds no
migration), so imported entries live beside them, and `/lookup` reads them only as a federation
fallback (registry/federation.py), after local entries and after live partners that answered.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import typer
from nacl.signing import VerifyKey

from beckn.signing import SignatureError, Signer, body_digest, check_signature_times, parse_signature_header, verify_signature
from registry.lookup import LookupFilter, subscription_json
from registry.tables import ParticipantStatus, RegistryKey, RegistryParticipant
from registry.vocabulary import parse_time, wire_time

log = structlog.get_logger(__name__)

FORMAT = "lakou-registry-snapshot/1"
SNAPSHOT_DIR = Path("federation") / "snapshots"
DEFAULT_VALID_DAYS = 30
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class SnapshotError(ValueError):
    """A snapshot file that cannot be trusted or read; the message says what is wrong."""


def canonical(snapshot: Mapping[str, Any]) -> bytes:
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ------------------------------------------------------------------ export


def entry_json(participant: RegistryParticipant, keys: Sequence[RegistryKey]) -> dict[str, Any]:
    return {
        "subscriber_id": participant.subscriber_id, "type": participant.type, "domain": participant.domain,
        "city": participant.city, "country": participant.country, "url": participant.url,
        "status": participant.status, "created": wire_time(participant.created),
        "updated": wire_time(participant.updated),
        "keys": [{"unique_key_id": k.unique_key_id, "signing_public_key": k.signing_public_key,
                  "encr_public_key": k.encr_public_key, "valid_from": wire_time(k.valid_from),
                  "valid_until": wire_time(k.valid_until), "created": wire_time(k.created),
                  "revoked_at": wire_time(k.revoked_at) if k.revoked_at else None,
                  # The log key (issue 8) only when published, so older snapshots keep their shape.
                  **({"log_vkey": k.log_vkey} if k.log_vkey else {})} for k in keys],
    }


def build_snapshot(registry_id: str, entries: Sequence[tuple[RegistryParticipant, Sequence[RegistryKey]]],
                   now: datetime | None = None) -> dict[str, Any]:
    """The unsigned snapshot: SUBSCRIBED entries only (the others are not on the network)."""
    return {
        "format": FORMAT,
        "registry_id": registry_id,
        "created": wire_time(now or datetime.now(UTC)),
        "participants": [entry_json(p, keys) for p, keys in entries if p.status == ParticipantStatus.SUBSCRIBED],
    }


def sign_snapshot(snapshot: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    return {"snapshot": dict(snapshot), "signature": signer.sign(canonical(snapshot))}


# ------------------------------------------------------------------ import


def verify_snapshot(document: Any, partner_key: VerifyKey, *, partner_id: str | None = None,
                    check_times: bool = True, now: float | None = None) -> dict[str, Any]:
    """The verified `snapshot` object of a signed snapshot file, or `SnapshotError` saying why."""
    if not isinstance(document, Mapping) or not isinstance(document.get("snapshot"), Mapping):
        raise SnapshotError(f"not a registry snapshot: expected an object with \"snapshot\" and \"signature\" "
                            f"({FORMAT}, written by `lakou registry export`)")
    header = document.get("signature")
    if not isinstance(header, str) or not header:
        raise SnapshotError("the snapshot has no signature: it cannot be trusted; ask the partner for the file "
                            "`lakou registry export` wrote")
    snapshot = document["snapshot"]
    try:
        params = parse_signature_header(header)
        if check_times:
            check_signature_times(params, now=time.time() if now is None else now)
        verify_signature(params, partner_key, digest_b64=body_digest(canonical(snapshot)))
    except SignatureError as exc:
        raise SnapshotError(f"snapshot signature refused: {exc}") from None
    if snapshot.get("format") != FORMAT:
        raise SnapshotError(f"unknown snapshot format {snapshot.get('format')!r}; this registry reads {FORMAT!r}")
    registry_id = snapshot.get("registry_id")
    if registry_id != params.subscriber_id:
        raise SnapshotError(f"the snapshot says it is from {registry_id!r} but is signed by {params.subscriber_id!r}")
    if partner_id is not None and registry_id != partner_id:
        raise SnapshotError(f"the snapshot is from {registry_id!r}, not from the partner {partner_id!r}")
    participants = snapshot.get("participants")
    if not isinstance(participants, list):
        raise SnapshotError("snapshot.participants must be a list")
    for index, entry in enumerate(participants):
        _check_entry(entry, f"participants[{index}]")
    return dict(snapshot)


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, Mapping):
        raise SnapshotError(f"{where} must be an object")
    for name in ("subscriber_id", "type", "domain", "city", "country", "url", "status"):
        if not isinstance(entry.get(name), str):
            raise SnapshotError(f"{where}.{name} must be a string")
    keys = entry.get("keys")
    if not isinstance(keys, list):
        raise SnapshotError(f"{where}.keys must be a list")
    for index, key in enumerate(keys):
        if not isinstance(key, Mapping):
            raise SnapshotError(f"{where}.keys[{index}] must be an object")
        for name in ("unique_key_id", "signing_public_key", "encr_public_key"):
            if not isinstance(key.get(name), str):
                raise SnapshotError(f"{where}.keys[{index}].{name} must be a string")
        for name in ("valid_from", "valid_until"):
            try:
                parse_time(key.get(name), f"{where}.keys[{index}].{name}")
            except ValueError as exc:
                raise SnapshotError(str(exc)) from None


def snapshot_path(data_dir: Path, registry_id: str) -> Path:
    return data_dir / SNAPSHOT_DIR / f"{_SAFE_NAME.sub('_', registry_id)}.json"


def store_snapshot(data_dir: Path, document: Mapping[str, Any], snapshot: Mapping[str, Any]) -> Path:
    """Write the signed file verbatim (it stays verifiable), atomically, replacing an older one."""
    path = snapshot_path(data_dir, snapshot["registry_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".import-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, ensure_ascii=False, indent=1)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ lookups in imported snapshots


@dataclass(frozen=True, slots=True)
class ImportedEntry:
    origin: str
    participant: RegistryParticipant
    keys: tuple[RegistryKey, ...]


def _entries(snapshot: Mapping[str, Any]) -> list[ImportedEntry]:
    out = []
    for raw in snapshot["participants"]:
        participant = RegistryParticipant(
            subscriber_id=raw["subscriber_id"], type=raw["type"], domain=raw["domain"], city=raw["city"],
            country=raw["country"], url=raw["url"], status=raw["status"],
            created=_time_or_now(raw.get("created")), updated=_time_or_now(raw.get("updated")))
        keys = tuple(RegistryKey(
            subscriber_id=raw["subscriber_id"], unique_key_id=k["unique_key_id"],
            signing_public_key=k["signing_public_key"], encr_public_key=k["encr_public_key"],
            valid_from=parse_time(k["valid_from"], "valid_from"), valid_until=parse_time(k["valid_until"], "valid_until"),
            created=parse_time(k.get("created") or k["valid_from"], "created"),
            revoked_at=parse_time(k["revoked_at"], "revoked_at") if k.get("revoked_at") else None,
            log_vkey=k["log_vkey"] if isinstance(k.get("log_vkey"), str) else None)
            for k in raw["keys"])
        out.append(ImportedEntry(snapshot["registry_id"], participant, keys))
    return out


def _time_or_now(value: Any) -> datetime:
    try:
        return parse_time(value, "created")
    except ValueError:
        return datetime.now(UTC)  # informational only in a lookup answer


def _matches(entry: ImportedEntry, criteria: LookupFilter) -> bool:
    p = entry.participant
    if p.status != ParticipantStatus.SUBSCRIBED or (criteria.status not in (None, ParticipantStatus.SUBSCRIBED)):
        return False
    exact = ((criteria.subscriber_id, p.subscriber_id), (criteria.url, p.url),
             (criteria.type.value if criteria.type else None, p.type))
    if any(wanted is not None and wanted != value for wanted, value in exact):
        return False
    # domain, city and country: registered blank means "any", as in registry/lookup.py.
    blanks = ((criteria.domain, p.domain), (criteria.city, p.city), (criteria.country, p.country))
    return all(wanted is None or value in ("", wanted) for wanted, value in blanks)


def _usable_key(entry: ImportedEntry, criteria: LookupFilter, now: datetime) -> RegistryKey | None:
    """The requested (or latest) key valid now, or at `valid_at` (then also one revoked later)."""
    at = criteria.valid_at or now
    keys = [k for k in entry.keys
            if k.valid_from <= at < k.valid_until
            and (k.revoked_at is None if criteria.valid_at is None else (k.revoked_at is None or k.revoked_at > at))
            and (criteria.unique_key_id is None or k.unique_key_id == criteria.unique_key_id)]
    keys.sort(key=lambda k: (k.valid_from, k.created), reverse=True)
    return keys[0] if keys else None


class SnapshotStore:
    """The imported snapshots of a data dir, re-read when a file changes (an import while serving)."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / SNAPSHOT_DIR
        self._seen: dict[Path, tuple[float, list[ImportedEntry]]] = {}

    def _load(self) -> dict[str, list[ImportedEntry]]:
        by_origin: dict[str, list[ImportedEntry]] = {}
        if not self.directory.is_dir():
            return by_origin
        current: dict[Path, tuple[float, list[ImportedEntry]]] = {}
        for path in sorted(self.directory.glob("*.json")):
            mtime = path.stat().st_mtime
            cached = self._seen.get(path)
            if cached is None or cached[0] != mtime:
                # Verified at import; re-read as the trusted local copy it now is.
                try:
                    document = json.loads(path.read_text(encoding="utf-8"))
                    cached = (mtime, _entries(document["snapshot"]))
                except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                    # A file edited by hand must not break lookups: skipped, and said once per change.
                    log.warning("registry.snapshot_unreadable", path=str(path), error=type(exc).__name__)
                    cached = (mtime, [])
            current[path] = cached
            for entry in cached[1]:
                by_origin.setdefault(entry.origin, []).append(entry)
        self._seen = current
        return by_origin

    def lookup(self, criteria: LookupFilter, now: datetime, *, skip_origins: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Matching imported entries per origin registry, as lookup elements."""
        found: dict[str, list[dict[str, Any]]] = {}
        for origin, entries in self._load().items():
            if origin in skip_origins:
                continue
            for entry in entries:
                if not _matches(entry, criteria):
                    continue
                key = _usable_key(entry, criteria, now)
                if key is not None:
                    found.setdefault(origin, []).append(subscription_json(entry.participant, key))
        return found


# ------------------------------------------------------------------ CLI


def register_snapshot_commands(registry_app: typer.Typer) -> None:
    """`lakou registry export` and `lakou registry import` (called from registry/cli.py)."""

    @registry_app.command("export")
    def export(
        out: Path = typer.Option(..., "--out", help="Where to write the signed snapshot (JSON)."),
        valid_days: int = typer.Option(DEFAULT_VALID_DAYS, min=1, max=365,
                                       help="How long a partner may import this file."),
        db: str = typer.Option(None, help="Database URL (default: $LAKOU_DATABASE_URL or SQLite in the data dir)."),
        data_dir: Path = typer.Option(None, help="Data directory (default: $LAKOU_DATA_DIR or ./data)."),
    ) -> None:
        """Write every SUBSCRIBED participant and its key history, signed by this registry's key."""
        import asyncio

        from beckn.keyfile import KEY_FILE
        from beckn.settings import get_settings
        from registry.cli import _database_url, _fail, _open
        from registry.participants import list_entries
        from registry.signed_response import load_registry_identity

        settings = get_settings()
        directory = data_dir or settings.data_dir
        if not (directory / KEY_FILE).exists():
            raise _fail(f"no registry key in {directory} ({KEY_FILE}): run this where the registry runs, or give "
                        "--data-dir")
        identity = load_registry_identity(directory, settings.subscriber_id)
        try:
            url = _database_url(db, directory)
        except ValueError as exc:
            raise _fail(str(exc)) from None

        async def run() -> Any:
            engine, sessions = await _open(url)
            try:
                async with sessions() as session:
                    return await list_entries(session)
            finally:
                await engine.dispose()

        snapshot = build_snapshot(identity.subscriber_id, asyncio.run(run()))
        document = sign_snapshot(snapshot, identity.signer(validity_seconds=valid_days * 86400))
        out.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        typer.echo(f"exported {len(snapshot['participants'])} participants of {identity.subscriber_id} to {out} "
                   f"(signed with key {identity.unique_key_id}; verify with GET /registry-key)")

    @registry_app.command("import")
    def import_(
        file: Path = typer.Argument(..., help="A snapshot written by a partner's `lakou registry export`."),
        partner_key: str = typer.Option(..., help="The partner registry's Ed25519 signing public key "
                                                  "(signing_public_key of its GET /registry-key)."),
        partner_id: str = typer.Option(None, help="The partner registry's id; the snapshot must be its."),
        db: str = typer.Option(None, help="Database URL (default: $LAKOU_DATABASE_URL or SQLite in the data dir)."),
        data_dir: Path = typer.Option(None, help="Data directory (default: $LAKOU_DATA_DIR or ./data)."),
    ) -> None:
        """Verify a partner's signed snapshot and keep it as a lookup fallback (local entries win)."""
        import asyncio

        from sqlalchemy import select

        from beckn.keys import KeyFormatError, load_verify_key
        from beckn.settings import get_settings
        from registry.cli import _database_url, _fail, _open
        from registry.signed_response import DEFAULT_REGISTRY_ID

        settings = get_settings()
        directory = data_dir or settings.data_dir
        try:
            key = load_verify_key(partner_key)
        except KeyFormatError as exc:
            raise _fail(f"--partner-key: {exc}") from None
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _fail(f"snapshot file {file} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise _fail(f"snapshot file {file} is not readable JSON: {exc}") from None
        try:
            snapshot = verify_snapshot(document, key, partner_id=partner_id)
        except SnapshotError as exc:
            raise _fail(str(exc)) from None
        own_id = settings.subscriber_id or DEFAULT_REGISTRY_ID
        if snapshot["registry_id"] == own_id:
            raise _fail(f"the snapshot is this registry's own ({own_id}); import partners' snapshots only")
        try:
            url = _database_url(db, directory)
        except ValueError as exc:
            raise _fail(str(exc)) from None

        async def local_ids() -> set[str]:
            engine, sessions = await _open(url)
            try:
                async with sessions() as session:
                    return set((await session.execute(select(RegistryParticipant.subscriber_id))).scalars())
            finally:
                await engine.dispose()

        local = asyncio.run(local_ids())
        shadowed = sorted({p["subscriber_id"] for p in snapshot["participants"]} & local)
        path = store_snapshot(directory, document, snapshot)
        served = len(snapshot["participants"]) - sum(p["subscriber_id"] in local for p in snapshot["participants"])
        typer.echo(f"imported {served} participants from {snapshot['registry_id']} (snapshot of {snapshot['created']}) "
                   f"into {path}")
        if shadowed:
            typer.echo(f"not served (registered locally, local entries win): {', '.join(shadowed)}")


__all__ = [
    "FORMAT",
    "SnapshotError",
    "SnapshotStore",
    "build_snapshot",
    "canonical",
    "register_snapshot_commands",
    "sign_snapshot",
    "store_snapshot",
    "verify_snapshot",
]
