"""Cross-node witnessing (beckn.tlog.witness, C2SP tlog-witness / tlog-cosignature), served for
real: a witness server on 127.0.0.1 with its state in SQLite or PostgreSQL, and a real
TransactionLog whose checkpoints and consistency proofs it checks.

Cosignatures are checked with beckn.tlog.note.verify_cosignature and the cosigner key an auditor
derives from the witness's published log key, never with the witness's own answer about itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from beckn.store.db import create_engine, session_factory, upgrade
from beckn.tlog.leaf import LogRecord
from beckn.tlog.note import NoteSigner, NoteVerifier, open_checkpoint, parse_note, verify_cosignature
from beckn.tlog.store import TransactionLog
from beckn.tlog.witness import (
    ADD_CHECKPOINT,
    Cosignatures,
    TlogWitnessed,
    WitnessConflict,
    WitnessRefused,
    cosigner_vkey_for,
    request_cosignature,
    static_log_keys,
    witness_router,
)
from conftest import serve_app

PEER = "bpp.example.mq"
ORIGIN = f"{PEER}/tlog"
LOG_SIGNER = NoteSigner.from_seed(ORIGIN, bytes(range(32)))
WITNESS_SIGNER = NoteSigner.from_seed("bap.example.mq/tlog", bytes(range(1, 33)))
# What an auditor does: take the witness node's log_vkey from the registry, derive its cosigner key.
WITNESS_KEY = NoteVerifier.from_vkey(cosigner_vkey_for(WITNESS_SIGNER.vkey))
NOW = 1_795_000_000
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def record(n: int, txn: str = "txn-a") -> LogRecord:
    body = json.dumps({"context": {"action": "confirm", "transaction_id": txn, "message_id": f"m-{n}"},
                       "message": {"n": n}}).encode()
    return LogRecord(
        direction="in", action="confirm", node=PEER, peer="bap.example.mq", transaction_id=txn,
        message_id=f"00000000-0000-4000-8000-{n:012d}", body=body, seen_at=T0 + timedelta(milliseconds=n),
        headers={"Authorization": f'Signature keyId="bap.example.mq|k1|ed25519",signature="sig{n}"'},
        context_timestamp="2026-11-23T14:00:00.250+04:00", ack="ACK", response=b"{}",
    )


@contextlib.contextmanager
def witness_server(url: str, keys: Mapping[str, Sequence[str]]) -> Iterator[str]:
    """A witness node's router on a real server; its engine lives in the server's event loop."""
    engine = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ARG001
        engine["e"] = create_engine(url)
        yield
        await engine["e"].dispose()

    def sessions():  # the session factory, resolved once the server's loop has made the engine
        return session_factory(engine["e"])()

    app = FastAPI(lifespan=lifespan)
    app.include_router(witness_router(sessions, WITNESS_SIGNER, static_log_keys(keys), clock=lambda: NOW))  # type: ignore[arg-type]
    with serve_app(app) as base:
        yield base


_ENGINES: list = []


@pytest.fixture(autouse=True)
async def _dispose_log_engines():
    yield
    while _ENGINES:
        await _ENGINES.pop().dispose()


async def new_log(path: Path, signer: NoteSigner = LOG_SIGNER, origin: str = ORIGIN) -> TransactionLog:
    """A node's log in its own SQLite database (the witness's state is in another one)."""
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    engine = create_engine(url)
    _ENGINES.append(engine)
    return TransactionLog(session_factory(engine), signer, origin)


async def grow(log: TransactionLog, start: int, count: int, txn: str = "txn-a") -> str:
    await log.append_batch([record(n, txn) for n in range(start, start + count)])
    return await log.checkpoint()


def body(note: str, old: int, proof: Sequence[bytes] = ()) -> bytes:
    return ("\n".join([f"old {old}", *(base64.b64encode(h).decode() for h in proof)]) + "\n\n" + note).encode()


async def witnessed(url: str) -> tuple[int, bytes] | None:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            row = await session.scalar(select(TlogWitnessed).where(TlogWitnessed.origin == ORIGIN))
            return (row.size, bytes(row.root)) if row else None
    finally:
        await engine.dispose()


async def test_witness_cosigns_a_growing_log_and_never_a_fork(db_url: str, tmp_path: Path) -> None:
    await upgrade(db_url)
    log = await new_log(tmp_path / "log.db")
    fork = await new_log(tmp_path / "fork.db")  # same origin and key, other entries: a split view
    cosignatures = Cosignatures(log._sessions)  # noqa: SLF001 - the log node's own database
    with witness_server(db_url, {PEER: [LOG_SIGNER.vkey]}) as base:
        # First contact: old 0, no proof.
        first = await grow(log, 0, 3)
        lines = await request_cosignature(base, first, 0, [], witness=WITNESS_KEY)
        assert await cosignatures.add(first, lines) == 1
        published = await cosignatures.attach(first)
        assert verify_cosignature(published, WITNESS_KEY) == NOW
        open_checkpoint(published, LOG_SIGNER.verifier())  # the log's own signature still verifies
        cp3 = parse_note(first)[0]
        assert await witnessed(db_url) == (3, base64.b64decode(cp3.split("\n")[2]))

        # Growth: a stale old size is answered 409 with the size the witness holds.
        second = await grow(log, 3, 4)
        async with httpx.AsyncClient() as http:
            stale = await http.post(base + ADD_CHECKPOINT, content=body(second, 0))
            assert stale.status_code == 409
            assert stale.headers["content-type"].startswith("text/x.tlog.size")
            assert stale.text.strip() == "3"
        with pytest.raises(WitnessConflict) as conflict:
            await request_cosignature(base, second, 1, [])
        assert conflict.value.size == 3
        # ... and the log resubmits from there with a real consistency proof.
        proof = await log.consistency_proof(3, 7)
        lines = await request_cosignature(base, second, 3, proof, witness=WITNESS_KEY)
        await cosignatures.add(second, lines)
        assert verify_cosignature(await cosignatures.attach(second), WITNESS_KEY) == NOW
        assert await cosignatures.lines(3) != await cosignatures.lines(7)
        assert (await witnessed(db_url))[0] == 7  # type: ignore[index]

        # A fork signed by the same key: same size, other root; then a bigger fork whose proof
        # comes from its own history. Both 422, and the witness stays at 7.
        await grow(fork, 100, 7, txn="txn-fork")
        fork7 = await fork.checkpoint()
        fork9 = await grow(fork, 200, 2, txn="txn-fork")
        async with httpx.AsyncClient() as http:
            same_size = await http.post(base + ADD_CHECKPOINT, content=body(fork7, 7))
            assert same_size.status_code == 422, same_size.text
            bigger = await http.post(base + ADD_CHECKPOINT, content=body(fork9, 7, await fork.consistency_proof(7, 9)))
            assert bigger.status_code == 422, bigger.text
            # A real checkpoint with a corrupted proof: 422 too.
            third = await grow(log, 7, 2)
            good = await log.consistency_proof(7, 9)
            bad = [good[0][:-1] + bytes([good[0][-1] ^ 1]), *good[1:]]
            corrupted = await http.post(base + ADD_CHECKPOINT, content=body(third, 7, bad))
            assert corrupted.status_code == 422, corrupted.text
            assert (await witnessed(db_url))[0] == 7  # type: ignore[index]
            # The honest log still moves on from 7.
            ok = await http.post(base + ADD_CHECKPOINT, content=body(third, 7, good))
            assert ok.status_code == 200, ok.text
            assert verify_cosignature(third + ok.text, WITNESS_KEY) == NOW
            # Re-submitting the same size (a freshness re-cosign) is fine with an empty proof.
            again = await http.post(base + ADD_CHECKPOINT, content=body(third, 9))
            assert again.status_code == 200, again.text
    assert (await witnessed(db_url))[0] == 9  # type: ignore[index]


async def test_witness_refuses_unknown_origins_foreign_keys_and_malformed_bodies(
    sqlite_url: str, tmp_path: Path
) -> None:
    await upgrade(sqlite_url)
    log = await new_log(tmp_path / "log.db")
    note = await grow(log, 0, 2)
    impostor = NoteSigner.from_seed(ORIGIN, bytes(range(2, 34)))  # the origin's name, not its key
    other = await new_log(tmp_path / "other.db", impostor)
    forged = await grow(other, 0, 2)
    stranger = NoteSigner.from_seed("bg.example.mq/tlog", bytes(range(3, 35)))
    stranger_note = await grow(await new_log(tmp_path / "s.db", stranger, stranger.name), 0, 1)
    proof_line = base64.b64encode(bytes(32)).decode()
    with witness_server(sqlite_url, {PEER: [LOG_SIGNER.vkey]}) as base:
        http = httpx.AsyncClient()

        async def post(content: bytes) -> httpx.Response:
            return await http.post(base + ADD_CHECKPOINT, content=content)

        unknown = await post(body(stranger_note, 0))
        assert unknown.status_code == 404 and "bg.example.mq" in unknown.text
        wrong_key = await post(body(forged, 0))
        assert wrong_key.status_code == 403, wrong_key.text

        malformed = {
            "no old line": note.encode(),
            "old not a number": body(note, 0).replace(b"old 0", b"old x"),
            "old leading zero": body(note, 0).replace(b"old 0", b"old 00"),
            "old negative": body(note, 0).replace(b"old 0", b"old -1"),
            "old beyond the checkpoint": body(note, 5),
            "proof not base64": body(note, 0).replace(b"old 0\n", b"old 0\n%%%%\n"),
            "proof not 32 bytes": body(note, 0).replace(b"old 0\n", b"old 0\nAAAA\n"),
            "too many proof lines": body(note, 0).replace(b"old 0\n", b"old 0\n" + (proof_line + "\n").encode() * 64),
            "no blank line": b"old 0\n" + note.replace("\n\n", "\n").encode(),
            "checkpoint without signature": body(parse_note(note)[0] + "\n", 0),
            "not a checkpoint": body("hello\n\n" + note.split("\n\n")[1], 0),
            "not UTF-8": b"old 0\n\n\xff\xfe",
            "empty": b"",
            "huge": b"old 0\n\n" + b"x" * 70_000,
        }
        for name, content in malformed.items():
            answer = await post(content)
            assert answer.status_code == 400, (name, answer.status_code, answer.text)
            assert answer.text.strip(), name  # says what is wrong
        # None of that moved the witness: the first real checkpoint is still first contact.
        assert (await post(body(note, 0))).status_code == 200
        with pytest.raises(WitnessRefused) as refused:
            await request_cosignature(base, forged, 2, [])
        assert refused.value.status == 403
        await http.aclose()



async def test_registry_log_keys_are_cached_and_one_lookup_serves_concurrent_callers(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The key source the witness endpoint and the outbox's receipt checks share: a burst of callers
    for one subscriber costs one registry lookup, unknown subscribers are cached too, and an entry
    expires after max_age. Counted on the wire, through a proxy in front of the real registry."""
    from network import DelayingProxy
    from test_registry_service import AUTH, running_registry
    from test_registry_service import record as admin_record

    from beckn.registry_client import RegistryClient
    from beckn.tlog.witness import registry_log_keys

    with running_registry(sqlite_url, tmp_path / "registry") as registry:
        async with httpx.AsyncClient(timeout=10) as http:
            added = await http.post(registry + "/admin/participants", headers=AUTH,
                                    json=admin_record(PEER, log_vkey=LOG_SIGNER.vkey, url=f"https://{PEER}/beckn"))
            assert added.status_code in (200, 201), added.text
        # The lookups are held a little, so the callers below overlap (if they did not, the cache
        # would answer them: one lookup either way).
        proxy = DelayingProxy(upstream_port=int(registry.rsplit(":", 1)[1]), delays={"/lookup": 0.2}).start()
        client = RegistryClient(proxy.url)
        now = [0.0]
        keys = registry_log_keys(client, max_age=60, clock=lambda: now[0])
        try:
            answers = await asyncio.gather(*(keys(ORIGIN) for _ in range(20)))
            assert all([k.vkey for k in answer] == [LOG_SIGNER.vkey] for answer in answers)
            assert len(proxy.seen) == 1
            registered = await keys.registered(f"{PEER}/tlog/2026h2")  # same subscriber, other origin
            assert registered.urls == (f"https://{PEER}/beckn",) and len(proxy.seen) == 1
            assert list(await keys("nobody.example.mq/tlog")) == []
            assert list(await keys("nobody.example.mq/tlog")) == [] and len(proxy.seen) == 2
            now[0] = 61.0  # past max_age: asked again
            assert [k.vkey for k in await keys(ORIGIN)] == [LOG_SIGNER.vkey] and len(proxy.seen) == 3
        finally:
            await client.aclose()
            proxy.stop()
