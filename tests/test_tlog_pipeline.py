"""The transaction log in the node's pipelines (issue 8), over real HTTP on 127.0.0.1.

Inbound: an ACK carries a receipt signed by the node's log key, whose leaf is provably in a later
signed checkpoint; a NACK is logged with its code; a failure between the log append and the commit
loses nothing acknowledged. Outbound: every attempt is logged with the peer's answer, and the
receipt the peer gave is kept in the sender's sidecar.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from nacl.signing import SigningKey
from sqlalchemy import func, select

from beckn.errors import ErrorCode
from beckn.http import beckn_router
from beckn.inbound import InboundPipeline, Role
from beckn.keyfile import KEY_FILE
from beckn.models import CALLBACK_ACTIONS, REQUEST_ACTIONS
from beckn.node import BecknNode
from beckn.outbox import DeliveryWorker, enqueue
from beckn.registry_client import KeyResolver, RegistryClient
from beckn.settings import Settings
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.store.tables import InboundMessage
from beckn.tlog import merkle
from beckn.tlog.note import NoteSigner, NoteVerifier, open_checkpoint
from beckn.tlog.receipt import RECEIPT_HEADER, ReceiptError, verify_receipt
from beckn.tlog.recorder import Checkpointer, Logged, LogRecorder
from beckn.tlog.store import TransactionLog
from beckn.tlog.tables import TlogEntry, TlogSidecar
from tests.conftest import free_port, serve_app
from tests.test_inbound import BAP, BG, BPP, RECEIVER, FakeRegistry, search_body


BAD_SIG = ErrorCode.BPP_INVALID_SIGNATURE.value  # what a BPP answers to a bad signature


def _reader(sessions, origin: str) -> TransactionLog:
    """The test's own view of a node's log: reads and proofs only (its throwaway key signs nothing)."""
    return TransactionLog(sessions, NoteSigner(origin, Ed25519PrivateKey.generate()), origin)


def _leaf(entry: TlogEntry) -> dict:
    return json.loads(bytes(entry.leaf))


@pytest.fixture
def registry() -> Iterator[tuple[FakeRegistry, str]]:
    fake = FakeRegistry([BAP, BPP, BG])
    with serve_app(fake.app()) as url:
        yield fake, url


@dataclass
class RunningNode:
    url: str
    node: BecknNode
    sessions: object
    log: TransactionLog


@pytest.fixture
async def bpp_node(db_url: str, registry: tuple[FakeRegistry, str], tmp_path: Path) -> AsyncIterator[RunningNode]:
    """A real BPP node (BecknNode: pipeline, outbox, checkpointer) with its log on."""
    _, registry_url = registry
    settings = Settings(data_dir=tmp_path / "bpp", database_url=db_url, subscriber_id=RECEIVER,
                        registry_url=registry_url, tlog_checkpoint_interval_seconds=0.1)
    node = BecknNode(settings, service="bpp", role=Role.BPP, actions=REQUEST_ACTIONS)
    app = FastAPI(lifespan=node.lifespan)
    app.include_router(node.health_routes())
    app.include_router(node.beckn_routes())
    engine = create_engine(db_url)  # the test's own connection to the node's store
    with serve_app(app) as url:
        yield RunningNode(url + "/beckn", node, session_factory(engine), _reader(session_factory(engine),
                                                                               node.tlog_origin))
    await engine.dispose()


async def _post(url: str, action: str, body: bytes, signer: Signer) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{url}/{action}", content=body,
                               headers={"Content-Type": "application/json", "Authorization": signer.sign(body)})


async def _checkpoint_covering(log: TransactionLog, index: int) -> str:
    """Wait (ordering, not a margin: up to 30 s) for the node's checkpointer to cover `index`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        note = await log.latest_checkpoint()
        if note is not None and int(note.split("\n")[1]) > index:
            return note
        await asyncio.sleep(0.05)
    raise AssertionError(f"no checkpoint covered entry {index}")


async def test_ack_carries_a_receipt_whose_leaf_is_proven_in_a_later_checkpoint(bpp_node: RunningNode) -> None:
    body = search_body()
    message_id = json.loads(body)["context"]["message_id"]
    response = await _post(bpp_node.url, "search", body, BAP.signer)
    assert response.status_code == 200 and response.json() == {"message": {"ack": {"status": "ACK"}}}

    async with httpx.AsyncClient() as http:
        vkey = (await http.get(bpp_node.url.removesuffix("/beckn") + "/tlog/vkey")).text.strip()
    assert vkey.startswith(f"{RECEIVER}/tlog+")
    # The log key is not the Beckn signing key.
    keys = json.loads((bpp_node.node.settings.data_dir / KEY_FILE).read_text())
    assert base64.b64decode(vkey.split("+", 2)[2])[1:] != base64.b64decode(keys["signing_public_key"])

    receipt = verify_receipt(response.headers[RECEIPT_HEADER], vkey, body=body)
    assert receipt.origin == f"{RECEIVER}/tlog"
    with pytest.raises(ReceiptError):
        verify_receipt(response.headers[RECEIPT_HEADER], vkey, body=body + b" ")
    with pytest.raises(ReceiptError):  # another key
        verify_receipt(response.headers[RECEIPT_HEADER], NoteSigner(receipt.origin, Ed25519PrivateKey.generate()).vkey)

    [entry] = await bpp_node.log.entries_by_message_id(message_id)
    assert entry.idx == receipt.index and bytes(entry.leaf_hash) == receipt.leaf_hash
    leaf = _leaf(entry)
    assert (leaf["dir"], leaf["action"], leaf["ack"], leaf["peer"], leaf["node"]) == (
        "in", "search", "ACK", BAP.subscriber_id, RECEIVER)
    # The stored message and its log entry committed together.
    async with bpp_node.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(InboundMessage)
                                    .where(InboundMessage.message_id == message_id)) == 1

    note = await _checkpoint_covering(bpp_node.log, receipt.index)
    checkpoint, _, _ = open_checkpoint(note, NoteVerifier.from_vkey(vkey))
    proof = await bpp_node.log.inclusion_proof(receipt.index, checkpoint.size)
    merkle.verify_inclusion(receipt.leaf_hash, receipt.index, checkpoint.size, proof, checkpoint.root_hash)
    # The same, as a sender would do it: over the node's auditor API, trusting only the log key.
    async with httpx.AsyncClient() as http:
        base = bpp_node.url.removesuffix("/beckn")
        served = (await http.get(f"{base}/tlog/checkpoint")).text
        latest, _, _ = open_checkpoint(served, NoteVerifier.from_vkey(vkey))
        answer = (await http.get(f"{base}/tlog/proof/inclusion",
                                 params={"index": receipt.index, "size": latest.size})).json()
    assert base64.b64decode(answer["leaf_hash"]) == receipt.leaf_hash
    merkle.verify_inclusion(receipt.leaf_hash, receipt.index, latest.size,
                            [base64.b64decode(h) for h in answer["proof"]], latest.root_hash)

    # A byte-identical retransmission gets the same ACK, is logged too, and carries a receipt.
    again = await _post(bpp_node.url, "search", body, BAP.signer)
    assert again.status_code == 200 and again.content == response.content
    second = verify_receipt(again.headers[RECEIPT_HEADER], vkey, body=body)
    assert second.index != receipt.index
    assert [_leaf(e)["ack"] for e in await bpp_node.log.entries_by_message_id(message_id)] == ["ACK", "ACK"]


async def test_nacks_are_logged_with_their_code_and_get_no_receipt(bpp_node: RunningNode) -> None:
    body = search_body()
    message_id = json.loads(body)["context"]["message_id"]
    forged = Signer(BAP.subscriber_id, BAP.ukid, SigningKey.generate())  # right keyId, wrong key
    response = await _post(bpp_node.url, "search", body, forged)
    assert response.status_code == 401 and response.json()["error"]["code"] == BAD_SIG
    assert RECEIPT_HEADER not in response.headers
    [entry] = await bpp_node.log.entries_by_message_id(message_id)
    leaf = _leaf(entry)
    assert (leaf["dir"], leaf["ack"], leaf["code"], leaf["peer"]) == ("in", "NACK", BAD_SIG, None)
    async with bpp_node.sessions() as session:
        sidecar = await session.get(TlogSidecar, entry.idx)
        assert sidecar is not None and bytes(sidecar.body) == body
        assert json.loads(bytes(sidecar.response))["message"]["ack"]["status"] == "NACK"
        assert sidecar.headers["authorization"].startswith(f'Signature keyId="{BAP.subscriber_id}|')

    # Not even JSON: still logged (ids unknown), still a clean 400.
    before = await bpp_node.log.size()
    junk = await _post(bpp_node.url, "search", b"{not json", BAP.signer)
    assert junk.status_code == 400
    assert await bpp_node.log.size() == before + 1
    last = _leaf(await bpp_node.log.entry(before))
    assert (last["ack"], last["code"], last["txn"].startswith("sha256:")) == ("NACK", "30000", True)


async def test_outbound_attempts_are_logged_with_answers_and_the_peer_receipt(
    bpp_node: RunningNode, tmp_path: Path
) -> None:
    """A BAP-side outbox (its own store and log) sends to the running BPP node."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bap.db'}"
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    bap_log = TransactionLog(sessions, NoteSigner(f"{BAP.subscriber_id}/tlog", Ed25519PrivateKey.generate()),
                             f"{BAP.subscriber_id}/tlog")
    worker = DeliveryWorker(sessions, BAP.signer, tlog=LogRecorder(bap_log, BAP.subscriber_id),
                            base_backoff=0.01, max_backoff=0.02, request_timeout=2.0, lease_seconds=5.0,
                            poll_interval=0.05)
    dead = f"http://127.0.0.1:{free_port()}/beckn/search"  # nothing listens there
    delivered_body, refused_body = search_body(), search_body()
    context = json.loads(delivered_body)["context"]
    async with sessions() as session:
        for destination, body in ((dead, search_body()), (bpp_node.url + "/search", delivered_body)):
            ctx = json.loads(body)["context"]
            await enqueue(session, destination_url=destination, action="search", body=body,
                          transaction_id=ctx["transaction_id"], message_id=ctx["message_id"],
                          expires_at=datetime.now(UTC) + timedelta(seconds=60))
        await session.commit()
    try:
        assert await worker.run_once() == 2
        # And one the receiver refuses (it is signed by a key the registry does not know).
        refusing = DeliveryWorker(sessions, Signer(BAP.subscriber_id, "unknown-key", SigningKey.generate()),
                                  tlog=LogRecorder(bap_log, BAP.subscriber_id), request_timeout=2.0,
                                  lease_seconds=5.0)
        ctx = json.loads(refused_body)["context"]
        async with sessions() as session:
            await enqueue(session, destination_url=bpp_node.url + "/search", action="search", body=refused_body,
                          transaction_id=ctx["transaction_id"], message_id=ctx["message_id"],
                          expires_at=datetime.now(UTC) + timedelta(seconds=60))
            await session.commit()
        assert await refusing.run_once() >= 1  # (it may also retry the unreachable one: same outbox)
        await refusing.aclose()

        async with sessions() as session:
            rows = (await session.execute(select(TlogEntry, TlogSidecar).join(TlogSidecar, TlogSidecar.idx == TlogEntry.idx)
                                          .order_by(TlogEntry.idx))).all()
        by_message = {entry.message_id: (_leaf(entry), sidecar) for entry, sidecar in rows}
        assert {leaf["dir"] for leaf, _ in by_message.values()} == {"out"}

        leaf, sidecar = by_message[context["message_id"]]
        assert (leaf["ack"], leaf["code"], leaf["action"]) == ("ACK", None, "search")
        assert sidecar.headers["x-lakou-attempt"] == "1" and bytes(sidecar.body) == delivered_body
        assert sidecar.headers["authorization"].startswith(f'Signature keyId="{BAP.subscriber_id}|')
        # The sender keeps the receiver's signed receipt, and it verifies against the receiver's key.
        receipt = verify_receipt(sidecar.headers["x-lakou-log-receipt"], bpp_node.node.log_signer.vkey,
                                 body=delivered_body)
        [logged] = await bpp_node.log.entries_by_message_id(context["message_id"])
        assert (logged.idx, bytes(logged.leaf_hash)) == (receipt.index, receipt.leaf_hash)

        refused_leaf, refused_sidecar = by_message[ctx["message_id"]]
        assert (refused_leaf["ack"], refused_leaf["code"]) == ("NACK", BAD_SIG)
        assert "x-lakou-log-receipt" not in refused_sidecar.headers

        [(dead_leaf, dead_sidecar)] = [v for m, v in by_message.items() if m not in (context["message_id"], ctx["message_id"])]
        assert (dead_leaf["ack"], dead_leaf["code"]) == (None, "transport")

        # Every retry of the unreachable message is logged with its attempt number.
        dead_id = json.loads(dead_sidecar.body)["context"]["message_id"]

        async def dead_attempts() -> list[str]:
            async with sessions() as session:
                return [h["x-lakou-attempt"] for h in (await session.execute(
                    select(TlogSidecar.headers).join(TlogEntry, TlogSidecar.idx == TlogEntry.idx)
                    .where(TlogEntry.message_id == dead_id).order_by(TlogEntry.idx))).scalars().all()]

        deadline = time.monotonic() + 30
        while len(await dead_attempts()) < 2 and time.monotonic() < deadline:
            await worker.run_once()
            await asyncio.sleep(0.01)
        attempts = await dead_attempts()
        assert len(attempts) >= 2 and attempts == [str(n) for n in range(1, len(attempts) + 1)]
    finally:
        await worker.aclose()
        await engine.dispose()


class CrashingRecorder(LogRecorder):
    """Fails once right after the log append, before the message's transaction commits."""

    crashes = 1

    async def append_in(self, session, record) -> Logged:  # type: ignore[no-untyped-def]
        logged = await super().append_in(session, record)
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("injected crash between the log append and the commit")
        return logged


@pytest.fixture
async def crashing_node(db_url: str, registry: tuple[FakeRegistry, str]) -> AsyncIterator[tuple[str, object, TransactionLog]]:
    _, registry_url = registry
    await upgrade(db_url)
    origin = f"{RECEIVER}/tlog"
    signer = NoteSigner(origin, Ed25519PrivateKey.generate())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(db_url)
        client = RegistryClient(registry_url)
        recorder = CrashingRecorder(TransactionLog(session_factory(engine), signer, origin), RECEIVER)
        pipeline = InboundPipeline(sessions=session_factory(engine), resolver=KeyResolver(client),
                                   receiver_id=RECEIVER, role=Role.BPP, tlog=recorder)
        app.include_router(beckn_router(pipeline, REQUEST_ACTIONS + CALLBACK_ACTIONS))
        yield
        await client.aclose()
        await engine.dispose()

    engine = create_engine(db_url)
    with serve_app(FastAPI(lifespan=lifespan)) as url:
        yield url, session_factory(engine), TransactionLog(session_factory(engine), signer, origin)
    await engine.dispose()


async def test_a_crash_between_log_append_and_commit_loses_nothing_acknowledged(
    crashing_node: tuple[str, object, TransactionLog]
) -> None:
    url, sessions, log = crashing_node
    body = search_body()
    message_id = json.loads(body)["context"]["message_id"]

    failed = await _post(url, "search", body, BAP.signer)
    assert failed.status_code == 503 and failed.json()["message"]["ack"]["status"] == "NACK"
    assert RECEIPT_HEADER not in failed.headers
    async with sessions() as session:  # type: ignore[operator]
        assert await session.scalar(select(func.count()).select_from(InboundMessage)) == 0
    # The rolled-back ACK entry is gone; only the (best-effort) record of the 503 remains.
    assert [(_leaf(e)["ack"], _leaf(e)["code"]) for e in await log.entries_by_message_id(message_id)] == [
        ("NACK", "30000")]

    # The sender retries: stored, logged and acknowledged once, with a receipt for that entry.
    retried = await _post(url, "search", body, BAP.signer)
    assert retried.status_code == 200
    receipt = verify_receipt(retried.headers[RECEIPT_HEADER], log.signer.vkey, body=body)
    entries = await log.entries_by_message_id(message_id)
    assert [_leaf(e)["ack"] for e in entries] == ["NACK", "ACK"]
    assert (entries[1].idx, bytes(entries[1].leaf_hash)) == (receipt.index, receipt.leaf_hash)
    async with sessions() as session:  # type: ignore[operator]
        assert await session.scalar(select(func.count()).select_from(InboundMessage)) == 1

    # The sequencer's head rolled back with the failed transaction: the tree is whole.
    checkpoint = await log.checkpoint()
    size = int(checkpoint.split("\n")[1])
    assert size == await log.size() == 2
    for index in range(size):
        assert await log.verify_stored(index) == size


async def test_checkpointer_signs_only_when_the_log_grew_and_halts_on_integrity_errors(sqlite_url: str) -> None:
    await upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    origin = "bpp.lakou.test/tlog"
    log = TransactionLog(session_factory(engine), NoteSigner(origin, Ed25519PrivateKey.generate()), origin)
    checkpointer = Checkpointer(log, 0.05)
    try:
        assert await checkpointer.tick() is None  # empty log: nothing to sign
        recorder = LogRecorder(log, "bpp.lakou.test")
        from beckn.tlog.leaf import LogRecord

        record = LogRecord(direction="in", action="search", node="bpp.lakou.test", peer=None,
                           transaction_id=str(uuid.uuid4()), message_id=str(uuid.uuid4()), body=b"{}",
                           seen_at=datetime.now(UTC), ack="NACK", error_code="30000")
        results = await asyncio.gather(*(recorder.append(record) for _ in range(20)))  # group commit
        assert sorted(r.index for r in results if r is not None) == list(range(20))
        first = await checkpointer.tick()
        assert first is not None and first.split("\n")[1] == "20"
        assert await checkpointer.tick() is None  # no growth, no new checkpoint

        # A log whose checkpoint was signed by another key cannot be extended: the store says so,
        # and the checkpointer stops for good.
        other = TransactionLog(session_factory(engine), NoteSigner(origin, Ed25519PrivateKey.generate()), origin)
        await LogRecorder(other, "bpp.lakou.test").append(record)
        halted = Checkpointer(other, 0.05)
        await asyncio.wait_for(halted.run(asyncio.Event()), timeout=30)  # returns: it halted
        assert halted.halted and "does not verify" in halted.halted
    finally:
        await engine.dispose()


def test_the_log_key_is_made_with_the_node_keys_and_added_once_to_an_older_key_file(tmp_path: Path) -> None:
    import os
    import stat

    from beckn.keyfile import ensure_node_keys, load_log_key

    keys = ensure_node_keys(tmp_path / "new")
    assert load_log_key(keys).public_key().public_bytes_raw() == base64.b64decode(keys["log_public_key"])
    assert keys["log_public_key"] != keys["signing_public_key"]

    # A key file written before the log existed keeps its Beckn keys and gains a log key, once.
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    old = {k: v for k, v in keys.items() if not k.startswith("log_")}
    path = old_dir / KEY_FILE
    path.write_text(json.dumps(old))
    os.chmod(path, 0o600)
    upgraded = ensure_node_keys(old_dir)
    assert {k: upgraded[k] for k in old} == old and "log_private_key" in upgraded
    assert upgraded["log_private_key"] != keys["log_private_key"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_node_keys(old_dir) == upgraded == json.loads(path.read_text())


class BrokenLog(TransactionLog):
    async def append_batch(self, records):  # type: ignore[no-untyped-def]
        raise RuntimeError("the log's database is gone")


async def test_a_nack_stays_the_same_nack_when_logging_it_fails(sqlite_url: str) -> None:
    await upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    origin = f"{RECEIVER}/tlog"
    recorder = LogRecorder(BrokenLog(session_factory(engine), NoteSigner(origin, Ed25519PrivateKey.generate()), origin),
                           RECEIVER)
    pipeline = InboundPipeline(sessions=session_factory(engine), resolver=None,  # type: ignore[arg-type]
                               receiver_id=RECEIVER, role=Role.BPP, tlog=recorder)
    try:
        result = await pipeline.handle("search", b"[1, 2", {"Content-Type": "application/json"})
        assert result.response.status_code == 400 and b"malformed JSON" in result.response.body
        assert RECEIPT_HEADER not in result.response.headers and result.accepted is None
    finally:
        await engine.dispose()


async def test_a_node_publishes_its_log_key_in_the_registry(sqlite_url: str, tmp_path: Path) -> None:
    from registry.app import create_app

    token = "operator-token"
    with serve_app(create_app(Settings(data_dir=tmp_path / "registry", database_url=sqlite_url,
                                       registry_admin_token=token))) as registry_url:
        settings = Settings(data_dir=tmp_path / "bpp", database_url=f"sqlite+aiosqlite:///{tmp_path / 'bpp.db'}",
                            registry_url=registry_url, registry_admin_token=token, subscriber_id="bpp.fdf.mq",
                            public_url="https://bpp.fdf.mq")
        node = BecknNode(settings, service="bpp", role=Role.BPP, actions=["search"])
        try:
            await node.register()
            [found] = await RegistryClient(registry_url, http=node.http).lookup(
                subscriber_id="bpp.fdf.mq", unique_key_id=node.signer.unique_key_id)
            assert found.log_vkey == node.log_signer.vkey
            assert NoteVerifier.from_vkey(found.log_vkey).name == "bpp.fdf.mq/tlog"
        finally:
            await node.http.aclose()
            await node.engine.dispose()
