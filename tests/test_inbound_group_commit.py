"""Group commit of accepted inbound messages (beckn/inbound_batch.py), on SQLite and PostgreSQL.

Messages that reach the store while a batch commits form the next batch: one transaction stores
their rows and appends their log entries. Each must still get exactly the answer it would have got
alone, an ACK only once its batch committed, and the log must stay whole.

The tests hold the first batch at its COMMIT (a session whose commit waits on a gate) until the
others are queued, so what forms the second batch is known without any timing assumption. The
pipeline runs in-process against a real registry on 127.0.0.1 and a real store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.inbound import InboundPipeline, InboundResult, Role
from beckn.registry_client import KeyResolver, RegistryClient
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.store.tables import InboundMessage
from beckn.tlog.leaf import LogRecord
from beckn.tlog.note import NoteSigner
from beckn.tlog.receipt import RECEIPT_HEADER, verify_receipt
from beckn.tlog.recorder import LogRecorder
from beckn.tlog.store import TransactionLog
from beckn.tlog.tables import TlogEntry
from tests.conftest import serve_app
from tests.test_inbound import BAP, BPP, RECEIVER, FakeRegistry, context, search_body

ORIGIN = f"{RECEIVER}/tlog"


@pytest.fixture
def registry_url() -> Iterator[str]:
    with serve_app(FakeRegistry([BAP, BPP]).app()) as url:
        yield url


@dataclass
class Gate:
    """Holds every commit of the pipeline's sessions while closed; can fail the next commits."""

    open: asyncio.Event = field(default_factory=asyncio.Event)
    at_commit: int = 0  # commits that reached the gate
    fail_at: set[int] = field(default_factory=set)  # which commits (1 = the first) fail

    def sessions(self, engine) -> async_sessionmaker[AsyncSession]:  # type: ignore[no-untyped-def]
        gate = self

        class GatedSession(AsyncSession):
            async def commit(self) -> None:
                gate.at_commit += 1
                number = gate.at_commit
                await gate.open.wait()
                if number in gate.fail_at:
                    await self.rollback()
                    raise OperationalError("COMMIT", None, OSError("injected: the disk went away"))
                await super().commit()

        return async_sessionmaker(engine, class_=GatedSession, expire_on_commit=False)


@dataclass
class Harness:
    pipeline: InboundPipeline
    gate: Gate
    sessions: async_sessionmaker[AsyncSession]  # the test's own, ungated view of the store
    log: TransactionLog  # the node's log (same key), for reads, proofs and checkpoints

    async def send(self, action: str, body: bytes, signer: Signer = BAP.signer) -> InboundResult:
        return await self.pipeline.handle(action, body, {"Authorization": signer.sign(body),
                                                         "Content-Type": "application/json"})

    async def rows(self) -> list[InboundMessage]:
        async with self.sessions() as session:
            return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())

    async def acked_entries(self) -> list[TlogEntry]:
        async with self.sessions() as session:
            entries = (await session.execute(select(TlogEntry).order_by(TlogEntry.idx))).scalars()
            return [e for e in entries if json.loads(bytes(e.leaf))["ack"] == "ACK"]

    async def hold_a_batch(self) -> tuple[asyncio.Task[InboundResult], bytes]:
        """Close the gate and send one message: its batch commits only when the gate opens, and
        whatever reaches the store meanwhile queues for the next batch."""
        self.gate.open.clear()
        before = self.gate.at_commit
        body = search_body()
        blocker = asyncio.create_task(self.send("search", body))
        await until(lambda: self.gate.at_commit > before)
        return blocker, body

    async def queue(self, sends: Sequence[Coroutine[Any, Any, InboundResult]]) -> list[asyncio.Task[InboundResult]]:
        """Start `sends` and wait until every one is queued (in this order) behind the held batch."""
        tasks: list[asyncio.Task[InboundResult]] = []
        for send in sends:  # one at a time, so the queue's order is the order given
            tasks.append(asyncio.create_task(send))
            expected = self.pipeline.committer.waiting + 1
            await until(lambda: self.pipeline.committer.waiting == expected)  # noqa: B023 - awaited here
        return tasks

    async def verify_log(self) -> int:
        """Sign a checkpoint and prove every stored entry into it; returns the log's size."""
        note = await self.log.checkpoint()
        size = int(note.split("\n")[1])
        assert size == await self.log.size()
        for index in range(size):
            assert await self.log.verify_stored(index) == size
        return size


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def harness(db_url: str, registry_url: str, *, with_log: bool = True,
                  recorder: type[LogRecorder] = LogRecorder) -> AsyncIterator[Harness]:
    await upgrade(db_url)
    engine = create_engine(db_url)
    client = RegistryClient(registry_url)
    gate = Gate()
    gate.open.set()
    log = TransactionLog(session_factory(engine), NoteSigner(ORIGIN, Ed25519PrivateKey.generate()), ORIGIN)
    pipeline = InboundPipeline(sessions=gate.sessions(engine), resolver=KeyResolver(client), receiver_id=RECEIVER,
                               role=Role.BPP, tlog=recorder(log, RECEIVER) if with_log else None)
    try:
        yield Harness(pipeline, gate, session_factory(engine), log)
    finally:
        gate.open.set()
        await pipeline.aclose()
        await client.aclose()
        await engine.dispose()


def assert_receipt(h: Harness, result: InboundResult, body: bytes) -> int:
    """The ACK's receipt is signed by the log's key, for these bytes; returns its index."""
    assert result.response.acked, result.response.body
    receipt = verify_receipt(result.response.headers[RECEIPT_HEADER], h.log.signer.vkey, body=body)
    return receipt.index


@pytest.mark.parametrize("with_log", [True, False], ids=["log", "no-log"])
async def test_concurrent_messages_share_one_commit_and_each_gets_its_ack_and_receipt(
    db_url: str, registry_url: str, with_log: bool
) -> None:
    async with harness(db_url, registry_url, with_log=with_log) as h:
        blocker, _ = await h.hold_a_batch()
        bodies = [search_body() for _ in range(30)]
        tasks = await h.queue([h.send("search", body) for body in bodies])
        h.gate.open.set()
        first = await blocker
        results = await asyncio.gather(*tasks)

        assert first.response.acked and all(r.response.acked for r in results)
        # The 30 that waited went in as one transaction, not 30.
        assert h.pipeline.committer.batches == 2 and h.pipeline.committer.largest_batch == 30
        rows = await h.rows()
        assert len(rows) == 31 and {r.body for r in rows[1:]} == set(bodies)
        # Each caller is told its own row (the handler runs from it).
        assert {r.accepted.body: r.accepted.id for r in results if r.accepted} == {row.body: row.id for row in rows[1:]}
        if not with_log:
            assert all(RECEIPT_HEADER not in r.response.headers for r in results)
            return
        # Distinct indexes, each receipt for its own entry (its message, its leaf), all provable.
        indexes = [assert_receipt(h, r, body) for r, body in zip(results, bodies, strict=True)]
        assert sorted(indexes + [assert_receipt(h, first, rows[0].body)]) == list(range(31))
        for index, body in zip(indexes, bodies, strict=True):
            entry = await h.log.entry(index)
            assert entry is not None and entry.message_id == json.loads(body)["context"]["message_id"]
        assert await h.verify_log() == 31


async def test_a_batch_with_duplicates_and_replays_answers_each_caller_as_if_alone(
    db_url: str, registry_url: str
) -> None:
    async with harness(db_url, registry_url) as h:
        stored = search_body()
        assert (await h.send("search", stored)).response.acked
        replay = json.dumps({"context": json.loads(stored)["context"],
                             "message": {"intent": {"descriptor": {"name": "christophine"}}}}).encode()
        twice = search_body()  # sent twice in the same batch: one row, the same ACK for both
        rival = json.dumps({"context": json.loads(twice)["context"],
                            "message": {"intent": {"descriptor": {"name": "dachine"}}}}).encode()
        shared = context("on_search")  # two pages of one on_search: both are new messages

        def page(item: str) -> bytes:
            return json.dumps({"context": shared, "message": {"catalog": {"providers": [
                {"id": "maraicher-lamentin", "items": [{"id": item}]}]}}}).encode()

        pages = [page("ananas"), page("giraumon")]
        fresh = [search_body() for _ in range(3)]

        blocker, held = await h.hold_a_batch()
        sends = [("search", stored, BAP.signer), ("search", replay, BAP.signer), ("search", twice, BAP.signer),
                 ("search", twice, BAP.signer), ("search", rival, BAP.signer),
                 ("on_search", pages[0], BPP.signer), ("on_search", pages[1], BPP.signer),
                 *(("search", body, BAP.signer) for body in fresh)]
        tasks = await h.queue([h.send(action, body, signer) for action, body, signer in sends])
        h.gate.open.set()
        assert (await blocker).response.acked
        stored_again, replayed, twice_a, twice_b, rivalled, page_a, page_b, *fresh_results = \
            await asyncio.gather(*tasks)
        # No per-message fallback was needed: the first send, the held batch, this batch.
        assert h.pipeline.committer.batches == 3

        # A retransmission of a stored message: the same ACK; another body under its id: 409.
        assert stored_again.response.acked and stored_again.accepted is None
        assert replayed.response.status_code == 409 and b"different body" in replayed.response.body
        # The same message twice in one batch: stored once, ACKed twice, handed to the handler
        # once. Its rival (same message_id, other body) queued after it: refused.
        assert twice_a.response.acked and twice_a.accepted is not None
        assert twice_b.response.acked and twice_b.accepted is None
        assert rivalled.response.status_code == 409 and rivalled.accepted is None
        # on_search parts under one message_id are separate messages, as without batching.
        assert page_a.accepted is not None and page_b.accepted is not None
        # Nobody else lost their message, and every new one has its receipt.
        for result, body in zip([twice_a, page_a, page_b, *fresh_results], [twice, *pages, *fresh], strict=True):
            assert_receipt(h, result, body)

        rows = [r.body for r in await h.rows()]  # by id: the batches in order, a batch's rows in any order
        assert rows[:2] == [stored, held] and sorted(rows[2:]) == sorted([twice, *pages, *fresh])
        # One ACK entry per stored row, plus the ACKs given again to the two retransmissions
        # (logged as such, best effort): nothing was logged as accepted twice or not at all.
        acked = [e.message_id for e in await h.acked_entries()]
        assert len(acked) == 8 + 2 and acked.count(json.loads(twice)["context"]["message_id"]) == 2
        assert acked.count(shared["message_id"]) == 2
        assert await h.verify_log() == await h.log.size()


async def test_a_store_failure_mid_batch_acks_nothing_of_it(db_url: str, registry_url: str) -> None:
    async with harness(db_url, registry_url) as h:
        blocker, _ = await h.hold_a_batch()
        bodies = [search_body() for _ in range(8)]
        tasks = await h.queue([h.send("search", body) for body in bodies])
        # The next commit (the queued batch's) fails, after its rows and log entries were written
        # in its transaction.
        h.gate.fail_at = {h.gate.at_commit + 1}
        h.gate.open.set()
        assert (await blocker).response.acked
        results = await asyncio.gather(*tasks)

        for result in results:
            assert result.response.status_code == 503 and result.accepted is None
            assert result.response.headers.get("Retry-After") and RECEIPT_HEADER not in result.response.headers
            assert json.loads(result.response.body)["message"]["ack"]["status"] == "NACK"
        assert len(await h.rows()) == 1
        assert len(await h.acked_entries()) == 1  # only the held message's; the NACKs are logged as such
        assert await h.verify_log() == await h.log.size()

        # Nothing of the failed batch was stored: sent again, each is a new message, ACKed with a receipt.
        again = await asyncio.gather(*(h.send("search", body) for body in bodies))
        for result, body in zip(again, bodies, strict=True):
            assert result.accepted is not None
            assert_receipt(h, result, body)
        assert len(await h.rows()) == 9 and len(await h.acked_entries()) == 9
        assert await h.verify_log() == await h.log.size()


POISON = "0badc0de-0000-4000-8000-000000000000"  # the message the log refuses


class PickyRecorder(LogRecorder):
    """A log that refuses one particular message (as a log refusing an entry would)."""

    async def append_in(self, session, record):  # type: ignore[no-untyped-def, override]
        records = [record] if isinstance(record, LogRecord) else list(record)
        if any(r.message_id == POISON for r in records):
            raise ValueError("this entry is refused")
        return await super().append_in(session, record)


async def test_a_message_that_breaks_its_batch_fails_alone(db_url: str, registry_url: str) -> None:
    async with harness(db_url, registry_url, recorder=PickyRecorder) as h:
        blocker, _ = await h.hold_a_batch()
        bodies = [search_body() for _ in range(3)]
        poison = search_body(message_id=POISON)
        tasks = await h.queue([h.send("search", b) for b in (bodies[0], poison, *bodies[1:])])
        h.gate.open.set()
        assert (await blocker).response.acked
        ok_a, refused, *ok_rest = await asyncio.gather(*tasks)
        assert refused.response.status_code == 503 and refused.accepted is None
        for result, body in zip([ok_a, *ok_rest], bodies, strict=True):
            assert_receipt(h, result, body)
        assert poison not in [r.body for r in await h.rows()] and len(await h.rows()) == 4
        assert await h.verify_log() == await h.log.size()


async def test_a_caller_that_goes_away_does_not_stop_its_batch(db_url: str, registry_url: str) -> None:
    async with harness(db_url, registry_url) as h:
        blocker, _ = await h.hold_a_batch()
        bodies = [search_body() for _ in range(3)]
        stay_a, leaves, stay_b = await h.queue([h.send("search", b) for b in bodies])
        leaves.cancel()  # the client disconnected while waiting for the commit
        await asyncio.wait([leaves])
        h.gate.open.set()
        assert (await blocker).response.acked
        for task, body in ((stay_a, bodies[0]), (stay_b, bodies[2])):
            assert_receipt(h, await task, body)
        # The batch committed for everyone, the one who left included: stored and logged.
        assert {r.body for r in await h.rows()} >= set(bodies)
        mid = json.loads(bodies[1])["context"]["message_id"]
        assert [e.message_id for e in await h.acked_entries()].count(mid) == 1
        # Sent again, it gets the ACK it would have got.
        again = await h.send("search", bodies[1])
        assert again.response.acked and again.accepted is None
        assert len(await h.rows()) == 4
        assert await h.verify_log() == await h.log.size()
