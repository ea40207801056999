"""The auditor API of a node's transaction log (research note audit-log.md §4.7).

Public and read-only, so auditors need to trust nothing the node says: everything served is either
signed (the checkpoint) or checkable against it (proofs, tiles, leaves):

* ``GET /tlog/checkpoint``: the latest stored signed checkpoint, with the witnesses' cosignatures
  when a cosignature source is wired in (text/plain, C2SP signed note).
* ``GET /tlog/proof/inclusion?index=&size=`` or ``?message_id=[&size=]``: an RFC 9162 audit path.
* ``GET /tlog/proof/consistency?first=&second=``: an RFC 9162 consistency proof.
* ``GET /tlog/tile/<L>/<N>[.p/<W>]`` and ``/tlog/tile/entries/<N>[.p/<W>]``: C2SP tlog-tiles, byte
  for byte, so off-the-shelf tile clients can check the log independently of our proof endpoints.
* ``GET /tlog/transactions/{txn}/sidecars``: the one private route. Authorised auditors (Bearer
  token, compared as a SHA-256 hash in constant time) get a transaction's raw bodies, signature
  headers and salts, to open the leaves' commitments. Every attempt is logged, without the token
  or any personal data.

Proofs and tiles are served only within the latest signed checkpoint: a client can check each
answer against a signature, and nothing describes a tree the log has not committed to. Nothing
here signs or writes; the node's checkpointer does that.
"""

# No `from __future__ import annotations`: FastAPI must resolve the closures in Depends(...) at
# definition time (string annotations are looked up in module globals, where they are not).
import base64
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from beckn.tlog import tiles
from beckn.tlog.note import Checkpoint, NoteError, append_signatures, parse_checkpoint, parse_note
from beckn.tlog.store import TlogError, TransactionLog
from beckn.tlog.tables import TlogEntry, TlogNode

__all__ = ["AUDITOR_REALM", "Auditor", "hash_auditor_token", "parse_auditor_tokens", "tlog_router"]

logger = structlog.get_logger(__name__)

AUDITOR_REALM = 'Bearer realm="lakou-tlog"'
# Largest size/index accepted: BIGINT columns, and tlog-checkpoint sizes are < 2**64 anyway.
_MAX_INT = 2**63 - 1
# Full tiles and proofs between fixed sizes never change: clients may cache them for good.
IMMUTABLE = "public, max-age=31536000, immutable"
# What follows the log's head (the checkpoint, partial tiles, "latest" proofs) changes each few
# seconds under traffic.
SHORT = "public, max-age=2"
NO_STORE = "no-store"

_HASHED = re.compile(r"sha256:([0-9a-f]{64})")
# Transaction ids safe to name in the access log: the leaf's token rule (ids, not free text).
_LOGGABLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")

# Given the log's stored checkpoint note: the witnesses' cosignature lines for it, or the whole
# note with them attached (beckn.tlog.witness.Cosignatures.attach fits as is).
CosignatureSource = Callable[[str], Awaitable[Sequence[str] | str]]


# ---------------------------------------------------------------- auditor tokens


@dataclass(frozen=True)
class Auditor:
    """One configured auditor: the SHA-256 of its token and the name access logs show."""

    name: str
    token_hash: bytes


def hash_auditor_token(token: str) -> str:
    """``sha256:<hex>`` of a token: what the operator's configuration holds instead of the token."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_auditor_tokens(entries: Iterable[str] | str | None) -> list[Auditor]:
    """Auditors from configuration: ``sha256:<hex>`` or ``name=sha256:<hex>``, a list or a comma-
    separated string. A plain token is accepted (hashed here and not kept), but configuration should
    hold hashes, so that a leaked config file does not leak the export."""
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = entries.split(",")
    auditors: list[Auditor] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        if not sep or not _HASHED.fullmatch(value):
            name, value = "", entry  # no name, or "=" is part of a plain token
        m = _HASHED.fullmatch(value)
        digest = bytes.fromhex(m[1]) if m else hashlib.sha256(value.encode("utf-8")).digest()
        auditors.append(Auditor(name or f"auditor-{digest.hex()[:8]}", digest))
    return auditors


def _match(auditors: Sequence[Auditor], token: str) -> Auditor | None:
    # Compare the token's hash with every configured hash, without stopping at the first match, so
    # the time taken says nothing about which (or whether a) prefix matched.
    given = hashlib.sha256(token.encode("utf-8")).digest()
    found = None
    for auditor in auditors:
        if hmac.compare_digest(given, auditor.token_hash):
            found = auditor
    return found


# ---------------------------------------------------------------- helpers


def _b64(data: bytes | str | None) -> str | None:
    if isinstance(data, str):  # a BLOB rewritten as TEXT in SQLite: serve its bytes, never a 500
        data = data.encode("utf-8")
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=message, headers=headers)


def _loggable(value: str) -> str:
    """A transaction id for the access log: as is when it is a plain id, else a hash of it (a peer
    can put anything, a name included, in an id)."""
    if _LOGGABLE_ID.fullmatch(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid parameters (the message says which)."},
    404: {"description": "Nothing of that name in the log, or no checkpoint yet."},
}

Size = Annotated[
    int | None, Query(ge=0, le=_MAX_INT, description="Tree size; default: the latest checkpoint's.")
]


def tlog_router(
    log: TransactionLog,
    *,
    auditor_tokens: Iterable[str] | str | None = (),
    cosignatures: CosignatureSource | None = None,
) -> APIRouter:
    """The ``/tlog`` routes over one node's log.

    ``auditor_tokens``: who may export sidecars (see parse_auditor_tokens); none disables the export
    (403). ``cosignatures``: given the stored checkpoint note, the witnesses' cosignature lines to
    serve with it, or the note with them attached (``witness.Cosignatures(sessions).attach``);
    without it the note is served as the log signed it.
    """
    auditors = parse_auditor_tokens(auditor_tokens)
    bearer = HTTPBearer(auto_error=False, description="An auditor token configured by the node's operator.")
    router = APIRouter(prefix="/tlog", tags=["transaction log"])

    async def latest_or_none() -> tuple[str, Checkpoint] | None:
        note = await log.latest_checkpoint()
        if note is None:
            return None
        try:
            text, _ = parse_note(note)
            return note, parse_checkpoint(text)
        except NoteError as exc:  # our own stored note: a server fault, not the client's
            raise _error(503, f"the stored checkpoint is unreadable: {exc}") from None

    async def latest() -> tuple[str, Checkpoint]:
        found = await latest_or_none()
        if found is None:
            raise _error(404, "this log has no checkpoint yet")
        return found

    async def with_cosignatures(note: str) -> str:
        if cosignatures is None:
            return note
        try:
            got = await cosignatures(note)
            if isinstance(got, str):  # the whole cosigned note (witness.Cosignatures.attach)
                return _same_note_more_signatures(note, got)
            return append_signatures(note, list(got))
        except Exception:  # noqa: BLE001 - a witness store problem must not hide the log's own note
            logger.warning("tlog.cosignatures_unavailable", exc_info=True)
            return note

    def within(size: int | None, cp: Checkpoint, name: str = "size") -> int:
        if size is None:
            return cp.size
        if size > cp.size:
            raise _error(400, f"{name} {size} is beyond the latest checkpoint (size {cp.size})")
        return size

    # ------------------------------------------------------------ checkpoint

    @router.get(
        "/checkpoint",
        response_class=PlainTextResponse,
        summary="The latest signed checkpoint (C2SP tlog-checkpoint), with cosignatures",
        responses={200: {"content": {"text/plain": {}}}, 404: _ERRORS[404]},
    )
    async def get_checkpoint() -> Response:
        note, _ = await latest()
        return PlainTextResponse(
            await with_cosignatures(note), media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": SHORT},
        )

    # ------------------------------------------------------------ proofs

    @router.get(
        "/proof/inclusion",
        summary="RFC 9162 inclusion proof of one entry, by index or by message id",
        responses=_ERRORS | {409: {"description": "The entry is not covered by a checkpoint yet."}},
    )
    async def get_inclusion(
        index: Annotated[int | None, Query(ge=0, le=_MAX_INT, description="0-based leaf index.")] = None,
        message_id: Annotated[
            str | None, Query(min_length=1, max_length=256, description="A logged message's id.")
        ] = None,
        direction: Annotated[
            str | None, Query(pattern="^(in|out)$", description="With message_id: only this direction.")
        ] = None,
        size: Size = None,
    ) -> JSONResponse:
        if (index is None) == (message_id is None):
            raise _error(400, "give exactly one of index or message_id")
        _, cp = await latest()
        tree_size = within(size, cp)
        matches: list[int] | None = None
        if message_id is not None:
            found = [e for e in await log.entries_by_message_id(message_id)
                     if direction is None or e.direction == direction]
            if not found:
                raise _error(404, "no entry of that message id in this log")
            matches = [e.idx for e in found]
            covered = [e for e in found if e.idx < tree_size]
            if not covered and size is not None:
                raise _error(400, f"no entry of that message id in the tree of size {tree_size}")
            if not covered:
                raise _error(409, f"the entry is not in the tree of size {tree_size} yet; retry after "
                                  "the next checkpoint", headers={"Retry-After": "2"})
            entry = covered[0]
        else:
            assert index is not None
            if index >= tree_size:
                raise _error(400, f"index {index} is not in the tree of size {tree_size}")
            found_entry = await log.entry(index)
            if found_entry is None:  # below a signed size: the store lost a row
                raise _error(503, f"entry {index} is missing from the store")
            entry = found_entry
        try:
            proof = await log.inclusion_proof(entry.idx, tree_size)
        except TlogError as exc:
            raise _error(400, str(exc)) from None
        body: dict[str, Any] = {
            "leaf_index": entry.idx,
            "tree_size": tree_size,
            "leaf_hash": _b64(entry.leaf_hash),
            "leaf": _b64(entry.leaf),
            "proof": [_b64(h) for h in proof],
        }
        if matches is not None:
            body["matches"] = matches  # every entry of that message id (retries, both directions)
        # Fixed index and size: the answer never changes. "The latest" does.
        cache = IMMUTABLE if size is not None and message_id is None else SHORT
        return JSONResponse(body, headers={"Cache-Control": cache})

    @router.get(
        "/proof/consistency",
        summary="RFC 9162 consistency proof between two tree sizes",
        responses={400: _ERRORS[400], 404: _ERRORS[404]},
    )
    async def get_consistency(
        first: Annotated[int, Query(ge=0, le=_MAX_INT, description="The older tree size.")],
        second: Size = None,
    ) -> JSONResponse:
        _, cp = await latest()
        new_size = within(second, cp, "second")
        if first > new_size:
            raise _error(400, f"first ({first}) must not exceed second ({new_size})")
        try:
            proof = await log.consistency_proof(first, new_size)
        except TlogError as exc:
            raise _error(400, str(exc)) from None
        cache = IMMUTABLE if second is not None else SHORT
        return JSONResponse(
            {"first": first, "second": new_size, "proof": [_b64(h) for h in proof]},
            headers={"Cache-Control": cache},
        )

    # ------------------------------------------------------------ tiles

    @router.get(
        "/tile/{tile_path:path}",
        response_class=Response,
        summary="C2SP tlog-tiles: hash tiles and entry bundles",
        responses={200: {"content": {"application/octet-stream": {}}}, 400: _ERRORS[400], 404: _ERRORS[404]},
    )
    async def get_tile(tile_path: str) -> Response:
        try:
            tile = tiles.parse_tile_path("tile/" + tile_path)
        except tiles.TileError as exc:
            raise _error(400, str(exc)) from None
        _, cp = await latest()
        if not tiles.tile_available(tile, cp.size):
            raise _error(404, f"{tile.path} is not within the latest checkpoint (size {cp.size})")
        data = await _entry_bundle(log, tile) if tile.level == tiles.ENTRIES else await _hash_tile(log, tile)
        return Response(
            data, media_type="application/octet-stream",
            headers={"Cache-Control": SHORT if tile.partial else IMMUTABLE},
        )

    # ------------------------------------------------------------ sidecars (authorised)

    async def require_auditor(
        txn: Annotated[str, Path(min_length=1, max_length=256)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Auditor:
        where = _loggable(txn)
        if not auditors:
            logger.warning("tlog.sidecar_export_refused", txn=where, reason="export disabled")
            raise _error(403, "sidecar export is disabled on this node (no auditor tokens configured)")
        if credentials is None:
            logger.warning("tlog.sidecar_export_refused", txn=where, reason="no credentials")
            raise _error(401, "send Authorization: Bearer <auditor token>",
                         headers={"WWW-Authenticate": AUDITOR_REALM})
        auditor = _match(auditors, credentials.credentials)
        if auditor is None:
            logger.warning("tlog.sidecar_export_refused", txn=where, reason="unknown token")
            raise _error(401, "this token is not an auditor's",
                         headers={"WWW-Authenticate": AUDITOR_REALM + ', error="invalid_token"'})
        return auditor

    @router.get(
        "/transactions/{txn}/sidecars",
        summary="Export one transaction's entries with their sidecars (auditors only)",
        responses={401: {"description": "Missing or unknown auditor token."},
                   403: {"description": "Export disabled on this node."}, 404: _ERRORS[404]},
    )
    async def get_sidecars(
        txn: Annotated[str, Path(min_length=1, max_length=256, description="The transaction id.")],
        auditor: Annotated[Auditor, Depends(require_auditor)],
    ) -> JSONResponse:
        entries = await log.entries_by_transaction(txn)
        # The access is logged before anything is answered, including "not found".
        logger.info("tlog.sidecar_export", auditor=auditor.name, txn=_loggable(txn), entries=len(entries))
        if not entries:
            raise _error(404, "no entry of that transaction in this log")
        note, cp = await latest_or_none() or (None, None)
        out = []
        for entry in entries:
            sidecar = await log.sidecar(entry.idx)
            erased = sidecar is None or sidecar.erased_at is not None
            covered = cp is not None and entry.idx < cp.size
            proof = await log.inclusion_proof(entry.idx, cp.size) if covered and cp else None
            out.append({
                "leaf_index": entry.idx,
                "leaf": _b64(entry.leaf),
                "leaf_hash": _b64(entry.leaf_hash),
                "message_id": entry.message_id,
                "direction": entry.direction,
                "action": entry.action,
                "peer": entry.peer,
                "seen_at": entry.seen_at.isoformat(),
                "erased": erased,
                "erased_at": sidecar.erased_at.isoformat() if sidecar and sidecar.erased_at else None,
                "body": None if erased or sidecar is None else _b64(sidecar.body),
                "headers": None if erased or sidecar is None else sidecar.headers,
                "response": None if erased or sidecar is None else _b64(sidecar.response),
                "salt": None if erased or sidecar is None else _b64(sidecar.salt),
                # Null until a checkpoint covers the entry (it was logged after the latest one).
                "proof": None if proof is None else [_b64(h) for h in proof],
            })
        return JSONResponse(
            {
                "transaction_id": txn,
                "tree_size": cp.size if cp else None,
                "checkpoint": await with_cosignatures(note) if note else None,
                "entries": out,
            },
            headers={"Cache-Control": NO_STORE},
        )

    return router


def _same_note_more_signatures(note: str, cosigned: str) -> str:
    """`cosigned` if it is `note` with signature lines added, nothing changed or dropped."""
    text, sigs = parse_note(note)
    other_text, other_sigs = parse_note(cosigned)
    if other_text != text or not {s.line() for s in sigs} <= {s.line() for s in other_sigs}:
        raise ValueError("the cosignature source changed the checkpoint or dropped its signature")
    return cosigned


# ---------------------------------------------------------------- tile reads


async def _hash_tile(log: TransactionLog, tile: tiles.Tile) -> bytes:
    """A hash tile from the stored perfect-subtree nodes (one range query)."""
    level = tiles.TILE_HEIGHT * int(tile.level)
    first = tile.index * tiles.TILE_WIDTH
    # The store's session factory: tiles are a range read the store has no method for.
    async with log._sessions() as session:  # noqa: SLF001
        rows = await session.execute(
            select(TlogNode.idx, TlogNode.hash).where(
                TlogNode.level == level, TlogNode.idx >= first, TlogNode.idx < first + tile.width
            )
        )
        nodes = {idx: bytes(h) for idx, h in rows.all()}
    try:
        return tiles.tile_bytes(tile, lambda lv, ix: nodes.get(ix) if lv == level else None)
    except LookupError as exc:
        # Below a signed size every node must exist: the store is damaged, never serve a short tile.
        raise _error(503, f"the stored tree is incomplete: {exc}") from None


async def _entry_bundle(log: TransactionLog, tile: tiles.Tile) -> bytes:
    """An entry bundle: the leaves' JCS bytes, the log's entries in the tlog-tiles sense."""
    first = tile.index * tiles.TILE_WIDTH
    async with log._sessions() as session:  # noqa: SLF001
        rows = await session.execute(
            select(TlogEntry.idx, TlogEntry.leaf)
            .where(TlogEntry.idx >= first, TlogEntry.idx < first + tile.width)
            .order_by(TlogEntry.idx)
        )
        leaves = rows.all()
    if [idx for idx, _ in leaves] != list(range(first, first + tile.width)):
        raise _error(503, f"the stored log is missing entries of {tile.path}")
    return tiles.entry_bundle([bytes(leaf) for _, leaf in leaves])
