"""Nodes witness each other's transaction logs (C2SP tlog-witness, tlog-cosignature; issue 8).

Witness side: `witness_router(...)` serves ``POST /tlog/witness/add-checkpoint``. The body is
exactly tlog-witness's::

    old <size the log believes we last cosigned>
    <consistency proof hash, base64>      (0 to 63 lines)
    <blank line>
    <the signed checkpoint note>

The witness verifies the log's Ed25519 signature with the log key the registry publishes for the
checkpoint's origin, checks the RFC 9162 consistency proof from the (size, root) it cosigned last
for that origin, stores the new (size, root) with a compare-and-swap *before* answering (a race
must never roll the log back), then answers 200 with its cosignature line(s). Answers:

* 200 ``text/plain``: ``— <witness name> <base64 cosignature>`` lines, cosignature/v1 with the time;
* 400: malformed body, origin too long, old size larger than the checkpoint's;
* 403: the origin's owner is known but no signature on the note verifies with its log key;
* 404: unknown origin (no subscriber, or one that publishes no log key), as tlog-witness says;
* 409 ``text/x.tlog.size``: ``old`` is not the size we hold; the body is our size, the log resends
  a proof from there;
* 422: the proof does not prove consistency (a fork, a same-size other root, a bad proof): the
  witness does not advance;
* 503: the registry cannot be reached to learn the log key (our problem, not the log's).

Authentication is the checkpoint itself: only the holder of the origin's registered log key can
move the witness, and only forward along a consistent tree, so the endpoint needs no other
credential (which is how tlog-witness is meant to be deployed).

Origin ↔ participant: an origin is ``<subscriber_id>`` or ``<subscriber_id>/<anything>`` (the node
uses ``<subscriber_id>/tlog``, optionally with a period suffix); the text before the first ``/`` is
the subscriber whose registry record's ``log_vkey`` must have signed it.

Witness key: the witnessing node's own log key, used as a cosigner (type 0x04). The key ID and the
signed message differ from the log signatures' (note.NoteSigner), so one key serves both safely,
and an auditor derives the witness's cosigner vkey from the ``log_vkey`` the registry already
publishes (`cosigner_vkey_for`): no second key to publish, rotate or trust.

Log side: `request_cosignature(...)` submits one checkpoint to one witness; `Cosignatures` keeps
the returned lines per checkpoint size (table ``tlog_cosignature``) and `attach`es them to the
published note. beckn/tlog/cosigning.py decides whom to ask, when, and from which size.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import BigInteger, Column, LargeBinary, PrimaryKeyConstraint, String, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import Field

from beckn.store.tables import StoreModel, UTCDateTime
from beckn.tlog import merkle
from beckn.tlog.note import (
    COSIGNATURE_V1,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    append_signatures,
    cosign,
    open_note,
    parse_checkpoint,
    parse_note,
)

if TYPE_CHECKING:
    from beckn.registry_client import RegistryClient

__all__ = [
    "ADD_CHECKPOINT",
    "Cosignatures",
    "LogKeys",
    "RegisteredLog",
    "RegistryLogKeys",
    "TlogCosignature",
    "TlogWitnessed",
    "WitnessConflict",
    "WitnessError",
    "WitnessRefused",
    "WitnessUnavailable",
    "attach",
    "cosigner_vkey_for",
    "parse_add_checkpoint",
    "registry_log_keys",
    "request_cosignature",
    "static_log_keys",
    "subscriber_of",
    "witness_router",
]

ADD_CHECKPOINT = "/tlog/witness/add-checkpoint"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63  # tlog-witness: a consistency proof never needs more (2^63 leaves)
MAX_BODY = 64 * 1024  # a checkpoint with a few hundred signatures and a full proof fits
MAX_ORIGIN = 255  # tlog_witnessed.origin
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")


# ------------------------------------------------------------------ tables (migration 0019)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TlogWitnessed(StoreModel, table=True):
    """As a witness: the latest checkpoint cosigned per origin (a peer's log). Only the latest is
    kept (tlog-witness): every later checkpoint must extend it."""

    __tablename__ = "tlog_witnessed"

    origin: str = Field(sa_column=Column(String(255), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    updated: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class TlogCosignature(StoreModel, table=True):
    """As a log: a witness's cosignature line on our checkpoint of `size` (one checkpoint per size,
    so the size names the checkpoint). The latest line per witness is kept."""

    __tablename__ = "tlog_cosignature"
    __table_args__ = (PrimaryKeyConstraint("size", "witness"),)

    size: int = Field(sa_column=Column(BigInteger, nullable=False, autoincrement=False))
    witness: str = Field(sa_column=Column(String(255), nullable=False))
    line: str = Field(sa_column=Column(Text, nullable=False))
    created: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


# ------------------------------------------------------------------ keys


def subscriber_of(origin: str) -> str:
    """The participant owning a checkpoint origin: the text before the first ``/``."""
    return origin.split("/", 1)[0]


def cosigner_vkey_for(log_vkey: str) -> str:
    """The cosigner (type 0x04) vkey of the witness whose log key is ``log_vkey``: how an auditor
    turns a registry record into the key that checks that node's cosignatures."""
    v = NoteVerifier.from_vkey(log_vkey)
    return NoteVerifier(v.name, COSIGNATURE_V1, v.public_key).vkey


class WitnessUnavailable(RuntimeError):
    """A dependency (the registry, the witness) could not be reached."""


# origin -> the log keys trusted for it ([] = unknown origin). Raises WitnessUnavailable.
LogKeys = Callable[[str], Awaitable[Sequence[NoteVerifier]]]


def static_log_keys(keys: Mapping[str, Sequence[str]]) -> LogKeys:
    """Trusted log keys from configuration: subscriber_id -> vkeys (tests, closed networks)."""
    parsed = {sid: [NoteVerifier.from_vkey(v) for v in vkeys] for sid, vkeys in keys.items()}

    async def resolve(origin: str) -> Sequence[NoteVerifier]:
        return parsed.get(subscriber_of(origin), [])

    return resolve


@dataclass(frozen=True)
class RegisteredLog:
    """What the registry says of one subscriber's log: its SUBSCRIBED records' log keys and the
    subscriber URLs of those records."""

    keys: tuple[NoteVerifier, ...]
    urls: tuple[str, ...]


class RegistryLogKeys:
    """Log keys from the registry: the ``log_vkey`` of the origin's subscriber's SUBSCRIBED records
    (beckn.registry_client.RegistryClient). A `LogKeys`: ``await keys(origin)``. Answers are cached
    for ``max_age`` seconds, unknown subscribers too, so a flood of add-checkpoints costs one lookup
    per origin per minute; and one lookup per subscriber runs at a time, so a burst of ACKs to
    check after the cache expired (the outbox checks every receipt with these keys) costs one too.
    `registered(origin)` also gives the records' subscriber URLs (where that log's node is)."""

    def __init__(self, client: RegistryClient, *, max_age: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._max_age = max_age
        self._clock = clock
        self._cache: dict[str, tuple[float, RegisteredLog]] = {}
        self._inflight: dict[str, asyncio.Future[RegisteredLog]] = {}

    async def __call__(self, origin: str) -> Sequence[NoteVerifier]:
        return (await self.registered(origin)).keys

    async def registered(self, origin: str) -> RegisteredLog:
        """Raises WitnessUnavailable when the registry cannot be asked."""
        sid = subscriber_of(origin)
        hit = self._cache.get(sid)
        if hit is not None and self._clock() - hit[0] < self._max_age:
            return hit[1]
        pending = self._inflight.get(sid)
        if pending is None:
            pending = self._inflight[sid] = asyncio.ensure_future(self._fetch(sid))

            def done(future: asyncio.Future[RegisteredLog]) -> None:
                self._inflight.pop(sid, None)
                if not future.cancelled():
                    future.exception()  # retrieved here too: every waiter may have gone

            pending.add_done_callback(done)
        # shield: one waiter cancelled (e.g. its request timed out) must not cancel the others'.
        return await asyncio.shield(pending)

    async def _fetch(self, sid: str) -> RegisteredLog:
        from beckn.registry_client import SUBSCRIBED, RegistryUnavailable

        try:
            records = await self._client.lookup(subscriber_id=sid)
        except RegistryUnavailable as exc:
            raise WitnessUnavailable(str(exc)) from None
        keys: dict[str, NoteVerifier] = {}
        urls: list[str] = []
        for r in records:
            if r.subscriber_id == sid and r.status == SUBSCRIBED and r.log_vkey:
                keys[r.log_vkey] = NoteVerifier.from_vkey(r.log_vkey)  # parsed by normalise_record
                if r.url and r.url not in urls:
                    urls.append(r.url)
        if len(self._cache) > 10_000:
            self._cache.clear()
        found = RegisteredLog(tuple(keys.values()), tuple(urls))
        self._cache[sid] = (self._clock(), found)
        return found


def registry_log_keys(client: RegistryClient, *, max_age: float = 60.0,
                      clock: Callable[[], float] = time.monotonic) -> RegistryLogKeys:
    """The registry's log keys as a `LogKeys` (see RegistryLogKeys)."""
    return RegistryLogKeys(client, max_age=max_age, clock=clock)


# ------------------------------------------------------------------ the request body


class WitnessError(Exception):
    """A refusal, with the HTTP status tlog-witness prescribes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: list[bytes]
    note: str


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint body (format only); WitnessError 400 on any malformation."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessError(400, "body is not valid UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessError(400, "body must be 'old <size>', proof lines, a blank line, then the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if not match or int(match.group(1)) >= 2**63:
        raise WitnessError(400, "first line must be 'old <size>' (decimal, no leading zeroes)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessError(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof: list[bytes] = []
    for i, line in enumerate(lines[1:], start=1):
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise WitnessError(400, f"proof line {i} is not base64") from None
        if len(h) != merkle.HASH_SIZE or base64.b64encode(h).decode() != line:
            raise WitnessError(400, f"proof line {i} must be the canonical base64 of a 32-byte hash")
        proof.append(h)
    return AddCheckpoint(int(match.group(1)), proof, note)


def format_add_checkpoint(note: str, old_size: int, proof: Sequence[bytes]) -> bytes:
    lines = [f"old {old_size}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n" + note).encode()


# ------------------------------------------------------------------ the witness


class Witness:
    """The add-checkpoint logic, storage-backed; `witness_router` wraps it in HTTP."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], signer: NoteSigner, log_keys: LogKeys,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._sessions = sessions
        self.signer = signer
        self._log_keys = log_keys
        self._clock = clock

    async def last(self, origin: str) -> TlogWitnessed | None:
        async with self._sessions() as session:
            return await session.get(TlogWitnessed, origin)

    async def add_checkpoint(self, body: bytes) -> str:
        """Cosign the checkpoint in an add-checkpoint body; the cosignature line(s), newline-ended."""
        req = parse_add_checkpoint(body)
        try:
            text, _ = parse_note(req.note)
            cp = parse_checkpoint(text)
        except NoteError as exc:
            raise WitnessError(400, f"checkpoint: {exc}") from None
        if len(cp.origin) > MAX_ORIGIN:
            raise WitnessError(400, f"origin longer than {MAX_ORIGIN} characters")
        if req.old_size > cp.size:
            raise WitnessError(400, f"old size {req.old_size} is larger than the checkpoint size {cp.size}")
        keys = await self._log_keys(cp.origin)
        if not keys:
            raise WitnessError(404, f"unknown origin {cp.origin!r}: {subscriber_of(cp.origin)!r} publishes no log key "
                                    "in the registry")
        try:
            open_note(req.note, keys)
        except NoteError as exc:
            raise WitnessError(403, f"checkpoint not signed by a log key of {subscriber_of(cp.origin)!r}: {exc}") from None

        last = await self.last(cp.origin)
        last_size, last_root = (last.size, bytes(last.root)) if last else (0, merkle.EMPTY_ROOT)
        if req.old_size != last_size:
            raise WitnessConflict(last_size)
        try:
            merkle.verify_consistency(last_size, cp.size, last_root, cp.root_hash, req.proof)
        except merkle.ProofError as exc:
            raise WitnessError(422, f"checkpoint {cp.size} is not consistent with the one cosigned at size "
                                    f"{last_size}: {exc}") from None
        await self._advance(cp, last)
        return cosign(text, self.signer, int(self._clock())) + "\n"

    async def _advance(self, cp: Checkpoint, last: TlogWitnessed | None) -> None:
        """Store (size, root) with a compare-and-swap on what we verified against, before the
        cosignature leaves: a concurrent request for the same origin that got in first wins, and
        this one gets a 409 with the new size instead of rolling the witness back."""
        now = datetime.now(UTC)
        try:
            async with self._sessions() as session, session.begin():
                if last is None:
                    await session.execute(insert(TlogWitnessed).values(
                        origin=cp.origin, size=cp.size, root=cp.root_hash, updated=now))
                    return
                done = await session.execute(
                    update(TlogWitnessed)
                    .where(TlogWitnessed.origin == cp.origin, TlogWitnessed.size == last.size,
                           TlogWitnessed.root == bytes(last.root))
                    .values(size=cp.size, root=cp.root_hash, updated=now)
                    .execution_options(synchronize_session=False))
                if done.rowcount == 1:  # type: ignore[attr-defined]
                    return
        except IntegrityError:
            pass  # another request inserted the first row meanwhile
        current = await self.last(cp.origin)
        raise WitnessConflict(current.size if current else 0)


class WitnessConflict(WitnessError):
    """409: the witness holds another size for this origin (in `size`)."""

    def __init__(self, size: int) -> None:
        super().__init__(409, f"{size}\n")
        self.size = size


def witness_router(sessions: async_sessionmaker[AsyncSession], signer: NoteSigner, log_keys: LogKeys,
                   *, clock: Callable[[], float] = time.time) -> APIRouter:
    """``POST /tlog/witness/add-checkpoint`` (module docstring). `signer` is the node's log key,
    cosigning as type 0x04; `log_keys` resolves an origin to its log keys (registry_log_keys)."""
    witness = Witness(sessions, signer, log_keys, clock=clock)
    router = APIRouter(tags=["tlog"])

    @router.post(
        ADD_CHECKPOINT,
        summary="Cosign a peer's checkpoint (C2SP tlog-witness)",
        response_class=PlainTextResponse,
        openapi_extra={"requestBody": {"required": True, "content": {"text/plain": {"schema": {
            "type": "string", "example": "old 0\n\nbap.example.mq/tlog\n3\n<base64 root>\n\n— bap.example.mq/tlog <sig>\n"}}}}},
        responses={
            200: {"content": {"text/plain": {}}, "description": "The witness's cosignature line(s)."},
            400: {"description": "Malformed body or checkpoint."},
            403: {"description": "Not signed by the origin's registered log key."},
            404: {"description": "Unknown origin (no log key published for it)."},
            409: {"content": {SIZE_CONTENT_TYPE: {}}, "description": "Old size mismatch; body: the witness's size."},
            422: {"description": "Consistency proof does not verify (the witness did not advance)."},
            503: {"description": "The registry could not be reached."},
        },
    )
    async def add_checkpoint(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return PlainTextResponse(f"body larger than {MAX_BODY} bytes\n", status_code=400)
        try:
            lines = await witness.add_checkpoint(bytes(body))
        except WitnessConflict as exc:
            return Response(f"{exc.size}\n", status_code=409, media_type=SIZE_CONTENT_TYPE)
        except WitnessError as exc:
            return PlainTextResponse(exc.message.rstrip("\n") + "\n", status_code=exc.status)
        except WitnessUnavailable as exc:
            return PlainTextResponse(f"cannot learn the origin's log key now: {exc}\n", status_code=503)
        return PlainTextResponse(lines)

    return router


# ------------------------------------------------------------------ the log side


class WitnessRefused(Exception):
    """The witness answered with an error status other than 409 (message: its body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"witness refused ({status}): {message}")
        self.status = status
        self.message = message


async def request_cosignature(witness_url: str, note: str, old_size: int, proof: Sequence[bytes], *,
                              http: httpx.AsyncClient | None = None, timeout: float = 5.0,
                              witness: NoteVerifier | None = None) -> str:
    """Submit ``note`` (our signed checkpoint) to one witness; its cosignature line(s), each
    newline-ended. ``witness_url`` is the witness's base URL (``/tlog/witness/add-checkpoint`` is
    appended) or that full URL. ``old_size``/``proof``: the size the witness last cosigned for us
    (0 the first time) and the consistency proof from it to the note's size.

    Raises WitnessConflict (409: resubmit from ``.size``; a size we never signed is evidence of
    misbehaviour), WitnessRefused (other statuses, e.g. 422), WitnessUnavailable (transport).
    With ``witness`` (its cosigner key) the answer is checked: only verifying lines are returned.
    """
    url = witness_url.rstrip("/")
    if not url.endswith(ADD_CHECKPOINT):
        url += ADD_CHECKPOINT
    body = format_add_checkpoint(note, old_size, proof)
    owns = http is None
    client = http or httpx.AsyncClient()
    try:
        response = await client.post(url, content=body, timeout=timeout,
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    except httpx.HTTPError as exc:
        raise WitnessUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
    finally:
        if owns:
            await client.aclose()
    if response.status_code == 409 and response.headers.get("content-type", "").startswith(SIZE_CONTENT_TYPE):
        size = response.text.strip()
        if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size):
            raise WitnessRefused(409, f"unreadable size {size[:40]!r}")
        raise WitnessConflict(int(size))
    if response.status_code != 200:
        raise WitnessRefused(response.status_code, response.text[:500])
    lines = [line for line in response.text.split("\n") if line]
    try:
        cosigned = append_signatures(note, lines)  # format check of every line
    except NoteError as exc:
        raise WitnessRefused(200, f"unreadable cosignature: {exc}") from None
    if witness is not None:
        from beckn.tlog.note import verify_cosignature

        try:
            verify_cosignature(cosigned, witness)
        except NoteError as exc:
            raise WitnessRefused(200, f"cosignature does not verify: {exc}") from None
    return "".join(line + "\n" for line in lines)


def attach(note: str, lines: Sequence[str] | str) -> str:
    """The note with cosignature lines added (exact repeats skipped; format-checked only)."""
    if isinstance(lines, str):
        lines = [line for line in lines.split("\n") if line]
    return append_signatures(note, list(lines))


class Cosignatures:
    """Witnesses' cosignatures on our checkpoints (table ``tlog_cosignature``), one line per
    (checkpoint size, witness name), the latest kept, so the published checkpoint carries them."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, note: str, lines: Sequence[str] | str) -> int:
        """Store the cosignature lines returned for ``note`` (our signed checkpoint); returns how
        many. Lines are format-checked; verify them first (request_cosignature's ``witness``)."""
        if isinstance(lines, str):
            lines = [line for line in lines.split("\n") if line]
        text, _ = parse_note(note)
        size = parse_checkpoint(text).size
        _, sigs = parse_note(attach(note, lines))
        wanted = {line.strip() for line in lines}
        rows = {s.name: s.line() for s in sigs if s.line() in wanted}
        if not rows:
            return 0
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            await session.execute(delete(TlogCosignature).where(
                TlogCosignature.size == size, TlogCosignature.witness.in_(list(rows))))
            await session.execute(insert(TlogCosignature), [
                {"size": size, "witness": name, "line": line, "created": now} for name, line in rows.items()])
        return len(rows)

    async def lines(self, size: int) -> list[str]:
        async with self._sessions() as session:
            result = await session.scalars(select(TlogCosignature.line)
                                           .where(TlogCosignature.size == size).order_by(TlogCosignature.witness))
            return list(result.all())

    async def attach(self, note: str) -> str:
        """``note`` with every stored cosignature for its size (what /checkpoint should serve)."""
        text, _ = parse_note(note)
        return attach(note, await self.lines(parse_checkpoint(text).size))
