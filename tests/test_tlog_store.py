"""The transaction log store (beckn.tlog.store) on SQLite and PostgreSQL: sequencing, proofs,
checkpoints, tamper detection, crash safety, concurrent writers and GDPR erasure.

Every proof and checkpoint is checked with the independent verifiers of beckn.tlog.merkle and
beckn.tlog.note (what an auditor runs), never with the store's own answer about itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from beckn.store.db import create_engine, is_sqlite, session_factory, upgrade
from beckn.tlog import merkle
from beckn.tlog.leaf import LogRecord, SidecarMismatch, build_leaf, check_sidecar
from beckn.tlog.note import NoteSigner, open_checkpoint
from beckn.tlog.store import LogIntegrityError, TlogError, TransactionLog, check_log_origin
from beckn.tlog.tables import TlogCheckpoint, TlogEntry, TlogNode, TlogSidecar
import conftest
from conftest import POSTGRES_URL, _pg_execute

ORIGIN = "bpp.example.mq/tlog/2026h2"
SIGNER = NoteSigner.from_seed(ORIGIN, bytes(range(32)))
VERIFIER = SIGNER.verifier()
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
# What a confirm carries and a leaf must never show.
NAME, PHONE = "Marie-Josée Louis-Joseph", "+596696123456"


def record(n: int, txn: str = "txn-a", *, direction: str = "in", action: str = "confirm",
           ack: str | None = "ACK", message_id: str | None = None) -> LogRecord:
    body = json.dumps({
        "context": {"action": action, "transaction_id": txn, "message_id": f"m-{n}",
                    "timestamp": "2026-11-23T14:00:00.250+04:00"},
        "message": {"order": {"billing": {"name": NAME, "phone": PHONE}, "n": n}},
    }, ensure_ascii=False).encode()
    return LogRecord(
        direction=direction,  # type: ignore[arg-type]
        action=action,
        node="bpp.example.mq",
        peer="bap.example.mq",
        transaction_id=txn,
        message_id=message_id or f"00000000-0000-4000-8000-{n:012d}",
        body=body,
        seen_at=T0 + timedelta(milliseconds=n),
        headers={"Authorization": f'Signature keyId="bap.example.mq|k1|ed25519",signature="sig{n}"',
                 "Content-Type": "application/json"},
        context_timestamp="2026-11-23T14:00:00.250+04:00",
        ack=ack,  # type: ignore[arg-type]
        response=b'{"message":{"ack":{"status":"ACK"}}}',
    )


# ---------------------------------------------------------------- fixtures: migrated once, copied


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per test session (per xdist worker), copied for each test:
    migrating from scratch costs a second or two per test."""
    template = tmp_path_factory.mktemp("tlog-template") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{template}"))
    assert not Path(f"{template}-wal").exists() or Path(f"{template}-wal").stat().st_size == 0
    return template


@pytest.fixture(scope="session")
def _postgres_log_db() -> Iterator[str]:
    """One migrated PostgreSQL database per test session (per xdist worker); each test empties the
    log's tables first (creating a database per test costs seconds on a loaded machine). Skips,
    or fails under LAKOU_REQUIRE_POSTGRES, as conftest's `postgres_url` does."""
    name = f"lakou_tlog_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "no server"
        reason = f"PostgreSQL not reachable at {POSTGRES_URL}: {exc!r}"
        if os.environ.get("LAKOU_REQUIRE_POSTGRES"):
            pytest.fail(reason + " (LAKOU_REQUIRE_POSTGRES is set)")
        conftest._postgres_skip_reason = reason  # the loud banner at the end of the run
        pytest.skip("SKIPPING POSTGRESQL TEST: " + reason)
    url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    try:
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty_postgres_log(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            # TRUNCATE fires no row triggers: the append-only guards stay in place.
            await conn.exec_driver_sql("TRUNCATE tlog_sidecar, tlog_entry, tlog_node, tlog_checkpoint")
            await conn.exec_driver_sql(
                "UPDATE tlog_head SET size = 0, frontier = ''::bytea, origin = NULL, updated_at = now()"
            )
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at the head migration with an empty log, once on each backend."""
    if request.param == "sqlite":
        target = tmp_path / "lakou.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), target)
        return f"sqlite+aiosqlite:///{target}"
    url = request.getfixturevalue("_postgres_log_db")
    asyncio.run(_empty_postgres_log(url))
    return url


@pytest.fixture
async def engine(log_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(log_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def log(engine: AsyncEngine) -> TransactionLog:
    return TransactionLog(session_factory(engine), SIGNER, ORIGIN)


async def tamper(engine: AsyncEngine, sql: str, **params: object) -> None:
    """Change the log's tables behind its back, as someone with the database owner's rights would:
    past the append-only triggers."""
    async with engine.begin() as conn:
        if is_sqlite(engine):
            for table in ("tlog_entry", "tlog_node", "tlog_checkpoint"):
                await conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_update")
        else:
            await conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        await conn.execute(text(sql), params)


async def stored_leaves(engine: AsyncEngine) -> list[bytes]:
    async with engine.connect() as conn:
        return [bytes(leaf) for leaf in (await conn.execute(select(TlogEntry.leaf).order_by(TlogEntry.idx))).scalars()]


def opened(note: str):  # noqa: ANN201
    checkpoint, _, names = open_checkpoint(note, VERIFIER)
    assert names == [ORIGIN]
    return checkpoint


# ---------------------------------------------------------------- the leaf


def test_leaf_is_canonical_json_without_personal_data() -> None:
    salt = bytes(32)
    rec = record(7)
    leaf = build_leaf(rec, salt=salt, prev=None)
    fields = json.loads(leaf)
    assert rfc8785.dumps(fields) == leaf  # JCS: anyone re-derives the exact bytes
    assert set(fields) == {"v", "dir", "action", "node", "peer", "txn", "msg", "ctx_ts", "seen", "ack", "code",
                           "body", "auth", "prev"}
    assert fields["ctx_ts"] == "2026-11-23T10:00:00.250Z" and fields["seen"] == "2026-11-23T10:00:00.007Z"
    assert fields["prev"] is None and fields["msg"] == rec.message_id
    for secret in (NAME, PHONE, "sig7", "Signature keyId"):
        assert secret.encode() not in leaf and secret not in leaf.decode()
    check_sidecar(leaf, body=rec.body, headers=rec.headers, salt=salt)
    # Header order and case do not matter; the body's bytes, the signature and the salt do.
    check_sidecar(leaf, body=rec.body, headers={"authorization": rec.headers["Authorization"]}, salt=salt)
    for wrong in (dict(body=rec.body + b" ", headers=rec.headers, salt=salt),
                  dict(body=rec.body, headers={"Authorization": "Signature other"}, salt=salt),
                  dict(body=rec.body, headers=rec.headers, salt=b"\x01" * 32)):
        with pytest.raises(SidecarMismatch):
            check_sidecar(leaf, **wrong)  # type: ignore[arg-type]

    # Free text a peer put where an id belongs is committed to, not copied.
    odd = build_leaf(record(8, txn=f"{NAME} {PHONE}", message_id=NAME), salt=salt, prev=b"\x11" * 32)
    odd_fields = json.loads(odd)
    assert NAME.encode() not in odd and PHONE.encode() not in odd
    assert odd_fields["txn"].startswith("sha256:") and odd_fields["msg"].startswith("sha256:")
    assert odd_fields["prev"] == "11" * 32
    with pytest.raises(ValueError, match="aware"):
        LogRecord(direction="in", action="confirm", node="n", peer=None, transaction_id="t", message_id="m",
                  body=b"", seen_at=datetime(2026, 1, 1))


# ---------------------------------------------------------------- appends, proofs, checkpoints


async def test_appends_prove_and_checkpoints_stay_consistent(log: TransactionLog, engine: AsyncEngine) -> None:
    assert opened(await log.checkpoint()).size == 0  # an empty log still has a signed state
    notes: list[str] = []
    returned: list[tuple[int, bytes]] = []
    n = 0
    for batch in (1, 2, 5, 9):
        returned += await log.append_batch([record(n + i, txn=f"txn-{(n + i) % 3}") for i in range(batch)])
        n += batch
        notes.append(await log.checkpoint())
    assert [index for index, _ in returned] == list(range(17))

    leaves = await stored_leaves(engine)
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    assert [h for _, h in returned] == hashes
    checkpoints = [opened(note) for note in notes]
    assert [cp.size for cp in checkpoints] == [1, 3, 8, 17]
    for cp in checkpoints:
        assert cp.root_hash == merkle.root(hashes[: cp.size])  # recomputed from the leaves alone
        for index in range(cp.size):
            merkle.verify_inclusion(hashes[index], index, cp.size, await log.inclusion_proof(index, cp.size),
                                    cp.root_hash)
    for old in checkpoints:
        for new in checkpoints:
            if old.size <= new.size:
                merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                                          await log.consistency_proof(old.size, new.size))
    # Same size, same checkpoint: nothing new is signed, and the stored one is what is served.
    assert await log.checkpoint() == notes[-1] == await log.latest_checkpoint()

    # `prev` chains each transaction's entries in log order.
    last: dict[str, str | None] = {}
    for index, leaf in enumerate(leaves):
        fields = json.loads(leaf)
        assert fields["prev"] == last.get(fields["txn"])
        last[fields["txn"]] = hashes[index].hex()

    found = await log.entries_by_message_id(record(11).message_id)
    assert [(e.idx, bytes(e.leaf_hash)) for e in found] == [(11, hashes[11])]
    assert [e.idx for e in await log.entries_by_transaction("txn-1")] == list(range(1, 17, 3))


async def test_bad_ranges_and_a_second_origin_are_refused(log: TransactionLog, engine: AsyncEngine) -> None:
    await log.append_batch([record(i) for i in range(3)])
    for call in (log.inclusion_proof(3, 3), log.inclusion_proof(0, 4), log.inclusion_proof(-1, 2),
                 log.consistency_proof(2, 1), log.consistency_proof(1, 4)):
        with pytest.raises(TlogError):
            await call
    other = TransactionLog(session_factory(engine), NoteSigner.from_seed("other/tlog", bytes(32)), "other/tlog")
    with pytest.raises(TlogError, match="origin"):
        await other.append_batch([record(9)])
    with pytest.raises(TlogError, match="origin"):
        await other.checkpoint()
    assert await log.size() == 3
    # A service configured with the other origin refuses to start, and says how to fix it.
    await check_log_origin(session_factory(engine), ORIGIN, "this node's")
    with pytest.raises(RuntimeError, match="started under origin .* set LAKOU_TLOG_ORIGIN back"):
        await check_log_origin(session_factory(engine), "other/tlog", "this node's")


# ---------------------------------------------------------------- tampering


async def test_a_modified_stored_leaf_is_detected(log: TransactionLog, engine: AsyncEngine) -> None:
    await log.append_batch([record(i, ack="NACK" if i == 3 else "ACK") for i in range(6)])
    cp = opened(await log.checkpoint())
    for index in range(6):
        assert await log.verify_stored(index) == 6

    # The triggers refuse ordinary UPDATEs of the append-only tables.
    async with engine.begin() as conn:
        with pytest.raises((IntegrityError, DBAPIError), match="append-only"):
            await conn.execute(text("UPDATE tlog_entry SET action = 'x' WHERE idx = 3"))

    # Someone with the owner's rights turns the NACK of entry 3 into an ACK.
    original = (await stored_leaves(engine))[3]
    forged = original.replace(b'"ack":"NACK"', b'"ack":"ACK"')
    assert forged != original
    await tamper(engine, "UPDATE tlog_entry SET leaf = :leaf WHERE idx = 3", leaf=forged)
    with pytest.raises(LogIntegrityError, match="entry 3"):
        await log.verify_stored(3)
    assert await log.verify_stored(2) == 6
    # An auditor holding the signed checkpoint sees the same, whatever the store says.
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(forged), 3, 6, await log.inclusion_proof(3, 6), cp.root_hash)

    # A thorough forger also rewrites the recorded hash and the leaf node: still caught, since the
    # signed root does not move.
    await tamper(engine, "UPDATE tlog_entry SET leaf_hash = :h WHERE idx = 3", h=merkle.leaf_hash(forged))
    await tamper(engine, "UPDATE tlog_node SET hash = :h WHERE level = 0 AND idx = 3", h=merkle.leaf_hash(forged))
    with pytest.raises(LogIntegrityError, match="not in the tree"):
        await log.verify_stored(3)
    # The interior nodes still hold the honest history, so the next checkpoint signs the true root
    # and the forged entry stays unprovable against it too.
    await log.append_batch([record(6)])
    later = opened(await log.checkpoint())
    merkle.verify_consistency(6, 7, cp.root_hash, later.root_hash, await log.consistency_proof(6, 7))
    assert later.root_hash == merkle.root([merkle.leaf_hash(leaf) for leaf in (await stored_leaves(engine))[:3]]
                                          + [merkle.leaf_hash(original)]
                                          + [merkle.leaf_hash(leaf) for leaf in (await stored_leaves(engine))[4:]])
    with pytest.raises(LogIntegrityError, match="not in the tree of size 7"):
        await log.verify_stored(3)


async def test_no_checkpoint_is_signed_over_a_rewritten_history(log: TransactionLog, engine: AsyncEngine) -> None:
    await log.append_batch([record(i) for i in range(4)])
    first = opened(await log.checkpoint())
    await log.append_batch([record(i) for i in range(4, 7)])

    # Rewrite entry 1 and every stored hash above it, head frontier included, so that the stored
    # tree agrees with itself: only the signed checkpoint of size 4 still knows the old history.
    leaves = await stored_leaves(engine)
    leaves[1] = leaves[1].replace(b'"action":"confirm"', b'"action":"cancel"')
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    await tamper(engine, "UPDATE tlog_entry SET leaf = :leaf, leaf_hash = :h WHERE idx = 1", leaf=leaves[1],
                 h=hashes[1])
    rebuilt = merkle.CompactRange()
    for node_level, node_index, node in rebuilt.extend(hashes):
        await tamper(engine, "UPDATE tlog_node SET hash = :h WHERE level = :l AND idx = :i", h=node, l=node_level,
                     i=node_index)
    await tamper(engine, "UPDATE tlog_head SET frontier = :f", f=b"".join(rebuilt.frontier))

    with pytest.raises(LogIntegrityError, match="not consistent with checkpoint 4"):
        await log.checkpoint()
    assert opened(await log.latest_checkpoint()).size == 4  # nothing was signed or stored
    with pytest.raises(LogIntegrityError):
        await log.verify_stored(1)  # against the signed checkpoint of size 4
    assert first.root_hash != merkle.root(hashes[:4])


async def test_a_same_size_checkpoint_is_not_re_signed_over_a_changed_tree(
    log: TransactionLog, engine: AsyncEngine
) -> None:
    await log.append_batch([record(i) for i in range(3)])
    note = await log.checkpoint()
    await tamper(engine, "UPDATE tlog_node SET hash = :h WHERE level = 0 AND idx = 2", h=b"\x07" * 32)
    with pytest.raises(LogIntegrityError):
        await log.checkpoint()
    # Nor is a checkpoint row whose root was swapped trusted as the base of the next one.
    await tamper(engine, "UPDATE tlog_node SET hash = :h WHERE level = 0 AND idx = 2",
                 h=merkle.leaf_hash((await stored_leaves(engine))[2]))
    assert await log.checkpoint() == note
    await tamper(engine, "UPDATE tlog_checkpoint SET root = :r", r=b"\x08" * 32)
    with pytest.raises(LogIntegrityError, match="disagrees with its signed note"):
        await log.checkpoint()


# ---------------------------------------------------------------- crashes and concurrency


class _CrashBeforeCommit(TransactionLog):
    """Dies after every row of the batch, head included, is written, before the commit."""

    async def _write_head(self, session, old_size, tree):  # type: ignore[no-untyped-def]
        await super()._write_head(session, old_size, tree)
        raise RuntimeError("power cut")


async def count(engine: AsyncEngine, model: type) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(model))).scalar_one()


async def test_a_crash_mid_append_leaves_nothing_and_loses_nothing_acknowledged(
    log: TransactionLog, engine: AsyncEngine
) -> None:
    acknowledged = await log.append_batch([record(i, txn="txn-a") for i in range(5)])
    before = opened(await log.checkpoint())
    nodes_before = await count(engine, TlogNode)

    crashing = _CrashBeforeCommit(session_factory(engine), SIGNER, ORIGIN)
    with pytest.raises(RuntimeError, match="power cut"):
        await crashing.append_batch([record(i, txn="txn-a") for i in range(5, 9)])
    assert await log.size() == 5
    assert (await count(engine, TlogEntry), await count(engine, TlogSidecar)) == (5, 5)
    assert await count(engine, TlogNode) == nodes_before

    acknowledged += await log.append_batch([record(i, txn="txn-a") for i in range(5, 8)])
    # The crashed batch's indexes are given again: nobody was ever told about them.
    assert [index for index, _ in acknowledged] == list(range(8))
    after = opened(await log.checkpoint())
    merkle.verify_consistency(5, 8, before.root_hash, after.root_hash, await log.consistency_proof(5, 8))
    for index, leaf_hash in acknowledged:
        merkle.verify_inclusion(leaf_hash, index, 8, await log.inclusion_proof(index, 8), after.root_hash)
    # The chain of the transaction goes from entry 4 straight to entry 5: the crashed batch left no link.
    assert json.loads((await stored_leaves(engine))[5])["prev"] == acknowledged[4][1].hex()


async def test_concurrent_writers_never_share_an_index(log_url: str, engine: AsyncEngine) -> None:
    other_engine = create_engine(log_url)
    try:
        logs = [TransactionLog(session_factory(e), SIGNER, ORIGIN) for e in (engine, other_engine)]

        async def writer(w: int) -> list[tuple[int, bytes]]:
            out: list[tuple[int, bytes]] = []
            for b in range(8):
                out += await logs[w].append_batch(
                    [record(100 * w + 10 * b + i, txn=f"txn-{i}") for i in range(3)]
                )
            return out

        async def checkpointer() -> list[str]:
            notes = []
            for _ in range(4):
                notes.append(await logs[1].checkpoint())
                await asyncio.sleep(0)
            return notes

        first, second, notes = await asyncio.gather(writer(0), writer(1), checkpointer())
        indexes = sorted(index for index, _ in first + second)
        assert indexes == list(range(48))  # none reused, none skipped

        final = opened(await logs[0].checkpoint())
        assert final.size == 48
        leaves = await stored_leaves(engine)
        hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
        assert dict(first + second) == dict(enumerate(hashes))
        assert final.root_hash == merkle.root(hashes)
        for cp_note in notes:
            cp = opened(cp_note)
            merkle.verify_consistency(cp.size, 48, cp.root_hash, final.root_hash,
                                      await logs[0].consistency_proof(cp.size, 48))
        # Each transaction's chain is linear in log order, across both writers.
        last: dict[str, str | None] = {}
        for index, leaf in enumerate(leaves):
            fields = json.loads(leaf)
            assert fields["prev"] == last.get(fields["txn"]), index
            last[fields["txn"]] = hashes[index].hex()
    finally:
        await other_engine.dispose()


# ---------------------------------------------------------------- GDPR erasure


async def test_gdpr_erasure_keeps_every_proof_valid(log: TransactionLog, engine: AsyncEngine) -> None:
    records = [record(i, txn="txn-gdpr" if i % 2 else "txn-other") for i in range(6)]
    appended = await log.append_batch(records)
    note = await log.checkpoint()
    cp = opened(note)
    leaves_before = await stored_leaves(engine)
    kept = await log.sidecar(1)
    assert kept is not None and kept.body == records[1].body and kept.salt is not None
    check_sidecar(leaves_before[1], body=kept.body, headers=kept.headers or {}, salt=kept.salt)

    assert await log.erase_sidecar(1) is True
    assert await log.erase_sidecar(1) is False
    assert await log.erase_transaction("txn-gdpr") == 2  # entries 3 and 5; 1 was already erased
    with pytest.raises(TlogError):
        await log.erase_sidecar(99)

    for index in (1, 3, 5):
        gone = await log.sidecar(index)
        assert gone is not None and gone.erased_at is not None
        assert (gone.body, gone.headers, gone.response, gone.salt) == (None, None, None, None)
    untouched = await log.sidecar(2)
    assert untouched is not None and untouched.body == records[2].body and untouched.erased_at is None
    async with engine.connect() as conn:
        raw = b"".join(bytes(b or b"") for b in (await conn.execute(select(TlogSidecar.body))).scalars())
    assert NAME.encode() in raw  # the other transaction's data is still there...
    assert raw.count(NAME.encode()) == 3  # ... and only its three entries

    assert await stored_leaves(engine) == leaves_before
    for index, leaf_hash in appended:
        merkle.verify_inclusion(leaf_hash, index, 6, await log.inclusion_proof(index, 6), cp.root_hash)
        assert await log.verify_stored(index) == 6
    assert await log.checkpoint() == note
    await log.append_batch([record(6, txn="txn-gdpr")])
    later = opened(await log.checkpoint())
    merkle.verify_consistency(6, 7, cp.root_hash, later.root_hash, await log.consistency_proof(6, 7))
    # The chain goes on from the erased entry's leaf hash, which erasure did not touch.
    assert json.loads((await stored_leaves(engine))[6])["prev"] == appended[5][1].hex()


async def test_checkpoint_rows_are_written_before_they_are_returned(log: TransactionLog, engine: AsyncEngine) -> None:
    await log.append_batch([record(0)])
    note = await log.checkpoint()
    async with engine.connect() as conn:
        row = (await conn.execute(select(TlogCheckpoint.size, TlogCheckpoint.root, TlogCheckpoint.note))).one()
    assert (row.size, bytes(row.root), row.note) == (1, opened(note).root_hash, note)
