"""Nodes cosign each other's checkpoints (beckn.tlog.cosigning, C2SP tlog-witness) and check the log
receipts of their ACKs (beckn.outbox), served for real on 127.0.0.1: a real registry, real
BecknNode servers, and for misbehaving peers small servers of their own.

Cosignatures are checked the way an auditor does: with the cosigner key derived from the peer's
`log_vkey` in the registry (`lakou audit verify --witness`), never with a node's word about itself.
Nodes' stores run on SQLite and PostgreSQL (db_url); the registry and helper peers on SQLite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import delete, select
from structlog.testing import capture_logs
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.inbound import Role
from beckn.keys import generate_key_pairs, load_signing_key
from beckn.models import CALLBACK_ACTIONS, REQUEST_ACTIONS
from beckn.node import BecknNode
from beckn.outbox import RECEIPT_STATUS, DeliveryWorker, enqueue
from beckn.registry_client import RegistryClient
from beckn.settings import Settings
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.store.tables import OutboxMessage
from beckn.tlog.cosigning import Cosigning, witness_base_url
from beckn.tlog.leaf import LogRecord
from beckn.tlog.note import NoteSigner, NoteVerifier, open_checkpoint, parse_checkpoint, parse_note, verify_cosignature
from beckn.tlog.receipt import RECEIPT_HEADER, make_receipt
from beckn.tlog.recorder import LogRecorder
from beckn.tlog.store import TransactionLog
from beckn.tlog.tables import TlogEntry, TlogSidecar
from beckn.tlog.witness import (
    ADD_CHECKPOINT,
    Cosignatures,
    TlogCosignature,
    TlogWitnessed,
    cosigner_vkey_for,
    registry_log_keys,
    static_log_keys,
    witness_router,
)
from conftest import free_port, serve_app
from test_inbound import context
from test_registry_service import AUTH, running_registry
from tlog_api_support import migrated_template

ACK = {"message": {"ack": {"status": "ACK"}}}
PERSON = "Marie-Josée Louis-Joseph"  # what a message may carry and no log line may show


# ------------------------------------------------------------------ harness


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    """Poll until `check()` is truthy (ordering, not a margin: the timeout only bounds a failure)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store, copied for each SQLite database below: migrating is the slow part."""
    return migrated_template(tmp_path_factory.mktemp("cosign-template"))


@pytest.fixture
def sqlite_store(template: Path, tmp_path: Path) -> Callable[[str], str]:
    """A fresh migrated SQLite store under tmp_path: name -> URL."""

    def make(name: str) -> str:
        shutil.copyfile(template, tmp_path / f"{name}.db")
        return f"sqlite+aiosqlite:///{tmp_path / name}.db"

    return make


@pytest.fixture
def node_db(db_url: str, template: Path) -> str:
    """The node under test's store: SQLite (from the template) or a fresh PostgreSQL database."""
    if db_url.startswith("sqlite"):
        shutil.copyfile(template, db_url.split(":///", 1)[1])
    return db_url


@pytest.fixture
def registry(sqlite_store: Callable[[str], str], tmp_path: Path) -> Iterator[str]:
    """The real registry service (its own SQLite store)."""
    with running_registry(sqlite_store("registry"), tmp_path / "registry") as url:
        yield url


@contextlib.contextmanager
def running_node(tmp_path: Path, name: str, role: Role, db_url: str, registry_url: str,
                 **settings: Any) -> Iterator[BecknNode]:
    """A real node (BecknNode with its routes) that registers itself at the registry's admin API."""
    port = free_port()
    values: dict[str, Any] = dict(
        data_dir=tmp_path / name, database_url=db_url, subscriber_id=f"{name}.lakou.localhost",
        registry_url=registry_url, registry_admin_token=AUTH["Authorization"].removeprefix("Bearer "),
        public_url=f"http://127.0.0.1:{port}", tlog_checkpoint_interval_seconds=0.1,
        tlog_cosign_timeout_seconds=3.0)
    values.update(settings)
    node = BecknNode(Settings(**values), service=name, role=role,
                     actions=REQUEST_ACTIONS if role is Role.BPP else CALLBACK_ACTIONS, port=port)
    app = FastAPI(lifespan=node.lifespan)
    app.include_router(node.health_routes())
    app.include_router(node.beckn_routes())
    with serve_app(app, port):
        yield node


async def registered(*nodes: BecknNode) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for node in nodes:
            async def done(node: BecknNode = node) -> bool:
                return (await http.get(node.base_url + "/health")).json().get("registered") is True
            await wait_for(done, f"{node.subscriber_id} registered")


async def cosigner_key(registry_url: str, subscriber_id: str) -> NoteVerifier:
    """What an auditor does: the peer's log_vkey from the registry, turned into its cosigner key."""
    async with httpx.AsyncClient(timeout=5) as http:
        [rec] = (await http.post(registry_url + "/lookup", json={"subscriber_id": subscriber_id})).json()
    return NoteVerifier.from_vkey(cosigner_vkey_for(rec["log_vkey"]))


async def served_checkpoint(node: BecknNode) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(node.base_url + "/tlog/checkpoint")
    return response.text if response.status_code == 200 else ""


def size_of(note: str) -> int:
    return parse_checkpoint(parse_note(note)[0]).size


async def cosigned_by(node: BecknNode, witness: NoteVerifier, min_size: int = 1) -> str | None:
    """The node's served checkpoint once it is at least `min_size` and `witness` cosigned it."""
    note = await served_checkpoint(node)
    if not note or size_of(note) < min_size:
        return None
    try:
        verify_cosignature(note, witness)
    except ValueError:
        return None
    return note


def audit(*args: str) -> Any:
    # The nodes run in this process and log to stdout, which CliRunner would take as the output.
    with capture_logs():
        return CliRunner().invoke(cli_app, ["audit", *args])


async def send_select(db_url: str, sender: BecknNode, receiver: BecknNode) -> str:
    """Queue a `select` from sender to receiver in the sender's outbox (its worker delivers it)."""
    ctx = context("select", bap_id=sender.subscriber_id, bap_uri=sender.subscriber_url,
                  bpp_id=receiver.subscriber_id, bpp_uri=receiver.subscriber_url)
    body = json.dumps({"context": ctx, "message": {"order": {"items": [{"id": "ananas"}]}}}).encode()
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as session:
            await enqueue(session, destination_url=receiver.subscriber_url + "/select", action="select", body=body,
                          transaction_id=ctx["transaction_id"], message_id=ctx["message_id"],
                          expires_at=datetime.now(UTC) + timedelta(seconds=60))
            await session.commit()
    finally:
        await engine.dispose()
    return ctx["message_id"]


# ------------------------------------------------------------------ cosigning between two nodes


def test_witness_url_is_the_subscriber_url_without_beckn() -> None:
    assert witness_base_url("http://127.0.0.1:8001/beckn") == "http://127.0.0.1:8001"
    assert witness_base_url("https://bpp.example.mq/beckn/") == "https://bpp.example.mq"
    assert witness_base_url("https://bpp.example.mq/shop/beckn") == "https://bpp.example.mq/shop"
    assert witness_base_url("https://bpp.example.mq/ondc") == "https://bpp.example.mq/ondc"  # other paths kept


async def test_two_nodes_that_transact_cosign_each_others_checkpoints(
    node_db: str, registry: str, sqlite_store: Callable[[str], str], tmp_path: Path
) -> None:
    db_url = node_db
    sqlite_b = sqlite_store("bpp")
    with running_node(tmp_path, "bap-cosign", Role.BAP, db_url, registry) as bap, \
            running_node(tmp_path, "bpp-cosign", Role.BPP, sqlite_b, registry) as bpp:
        await registered(bap, bpp)
        # /tlog/* is where the rule says: the subscriber URL without /beckn.
        assert witness_base_url(bpp.subscriber_url) == bpp.base_url
        bpp_witness = await cosigner_key(registry, bpp.subscriber_id)
        bap_witness = await cosigner_key(registry, bap.subscriber_id)

        await send_select(db_url, bap, bpp)
        # Each node's checkpoint ends up cosigned by the other, and its own signature still verifies.
        bap_note = await wait_for(lambda: cosigned_by(bap, bpp_witness), "the BPP's cosignature on the BAP's log")
        bpp_note = await wait_for(lambda: cosigned_by(bpp, bap_witness), "the BAP's cosignature on the BPP's log")
        open_checkpoint(bap_note, bap.log_signer.verifier())
        open_checkpoint(bpp_note, bpp.log_signer.verifier())

        # The auditor's offline check: the log key and the witness key, both from the registry.
        first = tmp_path / "bap-first.checkpoint"
        first.write_text(bap_note)
        saved = tmp_path / "bap-saved.checkpoint"
        ok = audit("verify", "--checkpoint", str(first), "--vkey", bap.log_signer.vkey,
                   "--witness", bpp_witness.vkey, "--save", str(saved))
        assert ok.exit_code == 0, ok.output
        stranger = NoteSigner("stranger.lakou.localhost/tlog", Ed25519PrivateKey.generate())
        refused = audit("verify", "--checkpoint", str(first), "--vkey", bap.log_signer.vkey,
                        "--witness", stranger.cosigner_vkey)
        assert refused.exit_code == 1, refused.output

        # A later checkpoint: the BAP submits it from the size the BPP cosigned, with a consistency
        # proof, and the BPP (which only moves forward along a consistent tree) cosigns it again.
        size = size_of(bap_note)
        await send_select(db_url, bap, bpp)
        later = await wait_for(lambda: cosigned_by(bap, bpp_witness, size + 1), "a cosignature on a later checkpoint")
        assert bap.cosigning is not None and bap.cosigning._cosigned[bpp.subscriber_id] >= size_of(later)  # noqa: SLF001
        engine = create_engine(sqlite_b)
        try:
            async with session_factory(engine)() as session:
                held = await session.get(TlogWitnessed, bap.tlog_origin)
        finally:
            await engine.dispose()
        assert held is not None and held.size >= size_of(later)
        # The auditor checks the later one extends the saved one (consistency proof from the node).
        second = audit("verify", "--node", bap.base_url, "--vkey", bap.log_signer.vkey,
                       "--witness", bpp_witness.vkey, "--since", str(saved))
        assert second.exit_code == 0, second.output

        # Both ACKs carried a receipt signed by the BPP's registered log key, over the body sent.
        assert bap.worker.receipts["valid"] == 2 and bap.worker.receipts["invalid"] == 0
        # What the operator sees on /health: receipt counters and who cosigns the latest checkpoint.
        async with httpx.AsyncClient(timeout=5) as http:
            health = (await http.get(bap.base_url + "/health")).json()
        assert health["tlog"]["receipts"] == {"valid": 2, "missing": 0, "unverified": 0, "invalid": 0}
        assert health["tlog"]["cosigning"] == {"cosigned_by": [bpp.subscriber_id], "failing": []}
        engine = create_engine(db_url)
        try:
            async with session_factory(engine)() as session:
                sidecars = (await session.scalars(select(TlogSidecar.headers).join(TlogEntry, TlogEntry.idx == TlogSidecar.idx)
                                                  .where(TlogEntry.direction == "out"))).all()
        finally:
            await engine.dispose()
        assert len(sidecars) == 2 and all("x-lakou-log-receipt" in h for h in sidecars)
        assert {h[RECEIPT_STATUS] for h in sidecars} == {"valid"}


# ------------------------------------------------------------------ peers that cannot or will not cosign


@dataclass
class FakePeer:
    """A participant registered at the real registry, signing its own Beckn messages."""

    subscriber_id: str
    url: str  # its registered subscriber URL
    signer: Signer
    log_signer: NoteSigner

    async def register(self, registry_url: str, *, log_key: bool = True) -> None:
        keys = generate_key_pairs()
        self.signer = Signer(self.subscriber_id, self.signer.unique_key_id, load_signing_key(keys.signing_private_key))
        now = datetime.now(UTC).replace(microsecond=0)
        rec = {
            "subscriber_id": self.subscriber_id, "type": "BAP", "url": self.url, "domain": "lakou:retail",
            "city": "", "country": "MTQ", "unique_key_id": self.signer.unique_key_id,
            "signing_public_key": keys.signing_public_key, "encr_public_key": keys.encryption_public_key,
            "valid_from": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "valid_until": (now + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            **({"log_vkey": self.log_signer.vkey} if log_key else {}),
        }
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(registry_url + "/admin/participants", json=rec, headers=AUTH)
        assert response.status_code in (200, 201), response.text

    async def send_to(self, node: BecknNode) -> None:
        ctx = context("select", bap_id=self.subscriber_id, bap_uri=self.url,
                      bpp_id=node.subscriber_id, bpp_uri=node.subscriber_url)
        body = json.dumps({"context": ctx, "message": {"order": {"billing": {"name": PERSON}}}}).encode()
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(node.subscriber_url + "/select", content=body,
                                       headers={"Content-Type": "application/json",
                                                "Authorization": self.signer.sign(body)})
        assert response.status_code == 200 and response.json() == ACK, response.text


def fake_peer(name: str, port: int) -> FakePeer:
    sid = f"{name}.lakou.localhost"
    return FakePeer(sid, f"http://127.0.0.1:{port}/beckn",
                    Signer(sid, str(uuid.uuid4()), load_signing_key(generate_key_pairs().signing_private_key)),
                    NoteSigner(f"{sid}/tlog", Ed25519PrivateKey.generate()))


@contextlib.contextmanager
def witness_at(port: int, url: str, signer: NoteSigner, trusted: dict[str, list[str]],
               seen: list[str] | None = None) -> Iterator[str]:
    """A real witness (witness_router) on `port`, its state in its own (migrated) store at `url`.
    With `seen`, the first line of every request body ("old N") is appended to it."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["engine"] = create_engine(url)
        yield
        await state["engine"].dispose()

    def sessions() -> Any:
        return session_factory(state["engine"])()

    app = FastAPI(lifespan=lifespan)
    app.include_router(witness_router(sessions, signer, static_log_keys(trusted)))  # type: ignore[arg-type]

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or seen is None:
            return await app(scope, receive, send)
        first = [True]

        async def receive_recorded() -> Any:
            message = await receive()
            if message["type"] == "http.request" and first[0]:
                first[0] = False
                seen.append(message.get("body", b"").split(b"\n", 1)[0].decode())
            return message

        return await app(scope, receive_recorded, send)

    with serve_app(recording, port) as base:
        yield base


async def test_peers_that_are_down_refuse_or_forge_never_stop_checkpoints(
    node_db: str, registry: str, sqlite_store: Callable[[str], str], tmp_path: Path
) -> None:
    db_url = node_db
    down = fake_peer("down", free_port())  # nothing listens there (yet)
    refusing_port, forging_port = free_port(), free_port()
    refusing, forging = fake_peer("refusing", refusing_port), fake_peer("forging", forging_port)
    no_log = fake_peer("nolog", free_port())
    refused_calls: list[str] = []

    refuser = FastAPI()

    @refuser.post(ADD_CHECKPOINT)
    async def refuse(request: Request) -> PlainTextResponse:
        refused_calls.append((await request.body()).decode().split("\n", 1)[0])
        return PlainTextResponse("no\n", status_code=403)

    with running_node(tmp_path, "bpp-alone", Role.BPP, db_url, registry) as bpp, \
            serve_app(refuser, refusing_port):
        await registered(bpp)
        for peer in (down, refusing, forging):
            await peer.register(registry)
        await no_log.register(registry, log_key=False)
        # The forger runs a real witness, but cosigns with a key other than the one it registered.
        forger_db_url = sqlite_store("forger")
        impostor = NoteSigner(forging.log_signer.name, Ed25519PrivateKey.generate())
        with witness_at(forging_port, forger_db_url, impostor, {bpp.subscriber_id: [bpp.log_signer.vkey]}), \
                capture_logs() as logs:
            for peer in (down, refusing, forging, no_log):
                await peer.send_to(bpp)
            assert bpp.cosigning is not None

            failing = {down.subscriber_id, refusing.subscriber_id, forging.subscriber_id}

            async def all_tried() -> Any:
                status = dict(bpp.cosigning.peer_status)  # type: ignore[union-attr]
                tried = len(status) == 4 and all(status[p] not in ("cosigned", "skipped", "deferred") for p in failing)
                return status if tried else None

            status = await wait_for(all_tried, "a cosigning attempt with each of the four peers")
            assert status[no_log.subscriber_id] == "skipped"  # publishes no log key: not a witness
            assert "unreachable" in status[down.subscriber_id]
            assert "HTTP 403" in status[refusing.subscriber_id]
            assert "verifies" in status[forging.subscriber_id]
            # The forger did cosign (its witness advanced) but its line is not stored nor served.
            forger_db = create_engine(forger_db_url)
            try:
                async with session_factory(forger_db)() as session:
                    assert (await session.get(TlogWitnessed, bpp.tlog_origin)) is not None
            finally:
                await forger_db.dispose()

            # Checkpoints go on regardless, and none carries a line from the failing peers.
            size = size_of(await served_checkpoint(bpp))
            await refusing.send_to(bpp)

            async def grown() -> str | None:
                note = await served_checkpoint(bpp)
                return note if note and size_of(note) > size else None

            note = await wait_for(grown, "a later checkpoint")
            _, signatures = parse_note(note)
            assert [s.name for s in signatures] == [bpp.tlog_origin]
            assert refused_calls and set(refused_calls) == {"old 0"}  # retried, from the size it never cosigned

        # Failures are logged with peer ids and reasons only, never a message.
        failures = [e for e in logs if e["event"] == "tlog.cosigning_failed"]
        assert {e["peer"] for e in failures} >= {down.subscriber_id, refusing.subscriber_id, forging.subscriber_id}
        assert not any(PERSON in json.dumps(e, default=str) for e in logs)

        # The peer that was down comes up: it is asked again at the next round and cosigns.
        with witness_at(int(down.url.split(":")[2].split("/")[0]), sqlite_store("down"), down.log_signer,
                        {bpp.subscriber_id: [bpp.log_signer.vkey]}):
            witness = await cosigner_key(registry, down.subscriber_id)
            note = await wait_for(lambda: cosigned_by(bpp, witness), "the recovered peer's cosignature")
            _, signatures = parse_note(note)
            assert {s.name for s in signatures} == {bpp.tlog_origin, down.log_signer.name}


# ------------------------------------------------------------------ receipts of ACKs


async def test_ack_receipts_are_checked_against_the_receivers_registered_log_key(
    node_db: str, registry: str, tmp_path: Path
) -> None:
    """A receiver answering ACK with good, forged, misdirected or no receipts: every delivery stays
    delivered; only the receipts' status differs."""
    port = free_port()
    receiver = fake_peer("receiver", port)
    other = fake_peer("other-log", free_port())
    await receiver.register(registry)
    await other.register(registry)
    wrong_key = NoteSigner(receiver.log_signer.name, Ed25519PrivateKey.generate())
    modes: dict[str, str] = {}

    app = FastAPI()

    @app.post("/beckn/select")
    async def select_(request: Request) -> JSONResponse:
        body = await request.body()
        mode = modes[json.loads(body)["context"]["message_id"]]
        signer, signed = {
            "valid": (receiver.log_signer, body),
            "relayed": (receiver.log_signer, body),
            "invalid-signature": (wrong_key, body),
            "invalid-body": (receiver.log_signer, body + b" "),
            "invalid-receiver": (other.log_signer, body),
        }.get(mode, (None, body))
        headers = {}
        if signer is not None:
            headers[RECEIPT_HEADER] = make_receipt(signer, origin=signer.name, index=7, leaf_hash=bytes(32),
                                                   body=signed, timestamp=1_795_000_000)
        elif mode == "invalid-format":
            headers[RECEIPT_HEADER] = base64.urlsafe_b64encode(b"not a note").decode()
        return JSONResponse(ACK, headers=headers)

    db_url = node_db
    await upgrade(db_url)
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    sender_id = "sender.lakou.localhost"
    log = TransactionLog(sessions, NoteSigner(f"{sender_id}/tlog", Ed25519PrivateKey.generate()), f"{sender_id}/tlog")
    client = RegistryClient(registry)
    worker = DeliveryWorker(sessions, Signer(sender_id, "k1", load_signing_key(generate_key_pairs().signing_private_key)),
                            tlog=LogRecorder(log, sender_id), receipt_keys=registry_log_keys(client),
                            request_timeout=3.0, lease_seconds=6.0, poll_interval=0.05)
    # mode -> the status the sender records. "relayed": the context names another participant (as a
    # callback relayed by a gateway does) but the receipt is from the one we posted to: valid.
    expected = {"valid": "valid", "relayed": "valid", "invalid-signature": "invalid-signature",
                "invalid-body": "invalid-body", "invalid-receiver": "invalid-receiver",
                "invalid-format": "invalid-format", "missing": "missing"}
    try:
        with serve_app(app, port), capture_logs() as logs:
            async with sessions() as session:
                for mode in expected:
                    named = "elsewhere.lakou.localhost" if mode == "relayed" else receiver.subscriber_id
                    ctx = context("select", bap_id=sender_id, bpp_id=named, bpp_uri=receiver.url)
                    modes[ctx["message_id"]] = mode
                    await enqueue(session, destination_url=receiver.url + "/select", action="select",
                                  body=json.dumps({"context": ctx, "message": {}}).encode(),
                                  transaction_id=ctx["transaction_id"], message_id=ctx["message_id"],
                                  expires_at=datetime.now(UTC) + timedelta(seconds=60))
                await session.commit()
            assert await worker.run_once() == len(expected)
        async with sessions() as session:
            statuses = set((await session.scalars(select(OutboxMessage.status))).all())
            rows = (await session.execute(select(TlogEntry.message_id, TlogSidecar.headers)
                                          .join(TlogSidecar, TlogSidecar.idx == TlogEntry.idx))).all()
        # The ACK is the protocol's answer: every message is delivered, whatever its receipt.
        assert statuses == {"delivered"}
        assert worker.receipts == {"valid": 2, "invalid": 4, "missing": 1, "unverified": 0}
        warned = {e["status"] for e in logs if e["event"].startswith("outbox.log_receipt_")}
        assert warned == set(expected.values()) - {"valid"}
        assert all(e["log_level"] == "warning" for e in logs if e["event"].startswith("outbox.log_receipt_"))
        by_mode = {modes[message_id]: headers for message_id, headers in rows}
        # Kept as evidence (valid or not); a missing one is absent.
        assert "x-lakou-log-receipt" in by_mode["valid"] and "x-lakou-log-receipt" in by_mode["invalid-body"]
        assert "x-lakou-log-receipt" not in by_mode["missing"]
        assert {mode: h[RECEIPT_STATUS] for mode, h in by_mode.items()} == expected

        # The registry down: the receipt cannot be checked now, which is not "invalid".
        down_worker = DeliveryWorker(
            sessions, worker._signer, tlog=LogRecorder(log, sender_id),  # noqa: SLF001
            receipt_keys=registry_log_keys(RegistryClient(f"http://127.0.0.1:{free_port()}")),
            request_timeout=3.0, lease_seconds=6.0)
        with serve_app(app, port):
            async with sessions() as session:
                ctx = context("select", bap_id=sender_id, bpp_id=receiver.subscriber_id, bpp_uri=receiver.url)
                modes[ctx["message_id"]] = "valid"
                await enqueue(session, destination_url=receiver.url + "/select", action="select",
                              body=json.dumps({"context": ctx, "message": {}}).encode(),
                              transaction_id=ctx["transaction_id"], message_id=ctx["message_id"],
                              expires_at=datetime.now(UTC) + timedelta(seconds=60))
                await session.commit()
            assert await down_worker.run_once() == 1
        assert down_worker.receipts["unverified"] == 1
        await down_worker.aclose()
    finally:
        await worker.aclose()
        await client.aclose()
        await engine.dispose()


async def test_cosigning_resumes_from_the_size_a_peer_cosigned_and_follows_its_409(
    node_db: str, registry: str, sqlite_store: Callable[[str], str]
) -> None:
    """Driven round by round: a restarted node asks from the stored size; a node that lost its
    cosignatures is told the witness's size (409) and resends once from there."""
    me = "me.lakou.localhost"
    port = free_port()
    peer = fake_peer("steady-witness", port)
    await peer.register(registry)
    await upgrade(node_db)
    engine = create_engine(node_db)
    sessions = session_factory(engine)
    log = TransactionLog(sessions, NoteSigner(f"{me}/tlog", Ed25519PrivateKey.generate()), f"{me}/tlog")
    client = RegistryClient(registry)
    witness = NoteVerifier.from_vkey(peer.log_signer.cosigner_vkey)
    seen: list[str] = []
    n = 0

    async def grow(count: int) -> str:
        nonlocal n
        await log.append_batch([LogRecord(
            direction="in", action="select", node=me, peer=peer.subscriber_id, transaction_id="txn-1",
            message_id=str(uuid.uuid4()), body=b"{}", seen_at=datetime.now(UTC)) for _ in range(count)])
        n += count
        return await log.checkpoint()

    def cosigning() -> Cosigning:  # a fresh one each time: what a restarted node has
        return Cosigning(log, sessions, registry_log_keys(client), me, interval=1.0, timeout=5.0)

    try:
        with witness_at(port, sqlite_store("steady"), peer.log_signer, {me: [log.signer.vkey]}, seen):
            first = await grow(3)
            report = await cosigning().round()
            assert (report.cosigned, seen) == ([peer.subscriber_id], ["old 0"])
            # Restarted: the size the peer cosigned comes from the stored cosignatures.
            second = await grow(2)
            report = await cosigning().round()
            assert (report.cosigned, seen[-1]) == ([peer.subscriber_id], "old 3")
            # Nothing new: nobody is asked.
            again = cosigning()
            assert (await again.round()).cosigned == [] and len(seen) == 2
            # Our cosignatures lost (say, a restore from an old backup): the witness answers 409
            # with the size it holds, and the node resends from there, once.
            async with sessions() as session, session.begin():
                await session.execute(delete(TlogCosignature))
            third = await grow(1)
            report = await cosigning().round()
            assert report.cosigned == [peer.subscriber_id]
            assert seen[-2:] == ["old 0", "old 5"]
            stored = Cosignatures(sessions)
            assert verify_cosignature(await stored.attach(third), witness)
            assert (size_of(first), size_of(second), size_of(third)) == (3, 5, 6)
            assert await stored.lines(5) == []  # deleted, and an old checkpoint is not resubmitted
    finally:
        await client.aclose()
        await engine.dispose()
