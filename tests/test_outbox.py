"""The transactional outbox and its delivery worker, against real HTTP peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nacl.signing import SigningKey, VerifyKey
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import outbox_worker_proc
from beckn.errors import ACK_BODY, BecknError, ErrorCode, nack_body
from beckn.outbox import DeliveryWorker, destination_key, enqueue
from beckn.signing import Signer, body_digest, parse_signature_header, verify_signature
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.store.tables import DeliveryAttempt, OutboxMessage
from conftest import free_port, serve_app

HERE = Path(__file__).resolve().parent
NACK_400 = nack_body(BecknError(ErrorCode.INVALID_REQUEST, "context.bpp_id is missing", "context.bpp_id"))
NACK_200 = nack_body(BecknError(ErrorCode.ITEM_NOT_FOUND, "no such item"))

Reply = tuple[int, bytes, dict[str, str]]


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class Sink:
    """A Beckn peer: records what it receives and answers as `reply` says (ACK by default)."""

    reply: Callable[[Received, int], Reply] = lambda received, n: (200, ACK_BODY, {})
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    finished: int = 0

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            received = Received(request.url.path, await request.body(), dict(request.headers), time.monotonic())
            self.received.append(received)
            n = sum(1 for r in self.received if r.path == received.path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.in_flight -= 1
                self.finished += 1
            status, body, headers = self.reply(received, n)
            return Response(body, status, headers, media_type="application/json")

        return Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])

    def message_ids(self) -> list[str]:
        return [json.loads(r.body)["context"]["message_id"] for r in self.received]


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def signer(signing_key: SigningKey) -> Signer:
    return Signer("bpp.lakou.example.mq", "k1", signing_key)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade(db_url)
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


def _body(message_id: str, action: str = "on_search") -> bytes:
    # Non-ASCII on purpose: the bytes must travel and be signed exactly as enqueued.
    return json.dumps(
        {"context": {"action": action, "message_id": message_id, "transaction_id": "t-1"},
         "message": {"catalog": {"descriptor": {"name": "Marché de Fort-de-France"}}}},
        ensure_ascii=False, separators=(",", ":"),
    ).encode()


async def _enqueue(sessions, url: str, count: int = 1, *, ttl: float = 300.0, **kwargs) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    async with sessions() as session:
        for message_id in ids:
            await enqueue(session, destination_url=url, action="on_search", body=_body(message_id),
                          transaction_id="t-1", message_id=message_id,
                          expires_at=datetime.now(UTC) + timedelta(seconds=ttl), **kwargs)
        await session.commit()
    return ids


def _worker(sessions, signer, **kwargs) -> DeliveryWorker:
    options = dict(base_backoff=0.02, max_backoff=0.1, request_timeout=2.0, lease_seconds=5.0, poll_interval=0.05)
    options.update(kwargs)
    return DeliveryWorker(sessions, signer, **options)


async def _rows(sessions) -> list[OutboxMessage]:
    async with sessions() as session:
        return list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def _attempts(sessions) -> list[DeliveryAttempt]:
    async with sessions() as session:
        return list((await session.execute(
            select(DeliveryAttempt).order_by(DeliveryAttempt.outbox_id, DeliveryAttempt.attempt_no)
        )).scalars())


async def _settled(sessions, timeout: float = 10.0) -> list[OutboxMessage]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await _rows(sessions)
        if rows and all(row.status != "pending" for row in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"still pending after {timeout}s: {[(r.id, r.attempts, r.last_error) for r in rows]}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _running(*workers: DeliveryWorker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for worker in workers:
            await worker.aclose()


def _assert_signed(received: Received, verify_key: VerifyKey, header: str = "authorization") -> int:
    params = parse_signature_header(received.headers[header])
    verify_signature(params, verify_key, digest_b64=body_digest(received.body))
    return params.created


# --------------------------------------------------------------------------- enqueue


async def test_enqueue_commits_or_rolls_back_with_the_business_transaction(sessions) -> None:
    async with sessions() as session:
        await enqueue(session, destination_url="https://bap.example.mq/beckn/on_select", action="on_select",
                      body=_body("m-rolled-back"), transaction_id="t", message_id="m-rolled-back",
                      expires_at=datetime.now(UTC) + timedelta(seconds=30))
        await session.rollback()
    assert await _rows(sessions) == []

    before = datetime.now(UTC)
    async with sessions() as session:
        row = await enqueue(session, destination_url="https://BAP.example.mq/beckn/on_select", action="on_select",
                            body=_body("m-1"), transaction_id="t", message_id="m-1",
                            expires_at=datetime.now(UTC) + timedelta(seconds=30))
        await session.commit()
    assert row.id is not None
    [stored] = await _rows(sessions)
    assert stored.status == "pending" and stored.attempts == 0
    assert stored.destination_key == "https://bap.example.mq:443"
    assert stored.body == _body("m-1")
    assert before <= stored.next_attempt_at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"destination_url": "/on_search"}, "absolute http:// or https:// URL"),
        ({"destination_url": "ftp://bap.example.mq/on_search"}, "absolute http:// or https:// URL"),
        ({"destination_url": "http:///on_search"}, "absolute http:// or https:// URL"),
        ({"destination_url": "http://bap.example.mq:99999/x"}, "outside 1-65535"),
        ({"destination_url": "http://bap.example.mq:port/x"}, "not a valid URL"),
        ({"destination_url": "http://bap example.mq/x"}, "whitespace"),
        ({"body": b""}, "non-empty bytes"),
        ({"body": '{"a":1}'}, "non-empty bytes"),
        ({"message_id": ""}, "message_id must be a non-empty string"),
        ({"expires_at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "already past"),
        ({"signature_header": "Proxy-Authorization"}, "signature_header must be one of"),
        ({"extra_headers": {"Content-Type": "text/plain"}}, "must not set 'Content-Type'"),
        ({"extra_headers": {"authorization": "x"}}, "must not set 'authorization'"),
        ({"extra_headers": {"X-Trace": "a\r\nInjected: 1"}}, "printable ASCII"),
        ({"extra_headers": {"X-Trace": "Fòrt-de-France"}}, "printable ASCII"),
        ({"extra_headers": {"Bad Name": "v"}}, "invalid header name"),
    ],
)
async def test_enqueue_refuses_bad_input_with_a_clear_reason(sqlite_url: str, overrides, message) -> None:
    await upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    arguments = dict(destination_url="https://bap.example.mq/on_search", action="on_search", body=b"{}",
                     transaction_id="t", message_id="m", expires_at=datetime.now(UTC) + timedelta(seconds=30))
    arguments.update(overrides)
    try:
        async with session_factory(engine)() as session:
            with pytest.raises(ValueError, match=message):
                await enqueue(session, **arguments)
            assert not session.new  # nothing was added to the transaction
    finally:
        await engine.dispose()


def test_destination_key_is_scheme_host_and_port() -> None:
    assert destination_key("HTTPS://BAP.Example.mq/beckn/on_search?x=1") == "https://bap.example.mq:443"
    assert destination_key("http://bap.example.mq/on_search") == "http://bap.example.mq:80"
    assert destination_key("http://127.0.0.1:8080/on_search") == "http://127.0.0.1:8080"
    assert destination_key("http://[::1]:8080/on_search") == "http://[::1]:8080"


# --------------------------------------------------------------------------- sending


async def test_delivers_exact_bytes_freshly_signed_with_extra_headers(sessions, signer, signing_key) -> None:
    sink = Sink()
    with serve_app(sink.app()) as base:
        [direct] = await _enqueue(sessions, f"{base}/on_search")
        bap_authorization = 'Signature keyId="bap.example.mq|k9|ed25519",algorithm="ed25519",signature="abc="'
        [forwarded] = await _enqueue(
            sessions, f"{base}/search", signature_header="X-Gateway-Authorization",
            extra_headers={"Authorization": bap_authorization, "X-Request-Tag": "fort-de-france 972"},
        )
        worker = _worker(sessions, signer)
        try:
            assert await worker.run_once() == 2
        finally:
            await worker.aclose()

    by_id = dict(zip(sink.message_ids(), sink.received, strict=True))
    assert sorted(by_id) == sorted([direct, forwarded])
    assert by_id[direct].path == "/on_search" and by_id[direct].body == _body(direct)
    assert by_id[direct].headers["content-type"] == "application/json"
    _assert_signed(by_id[direct], signing_key.verify_key)
    assert "x-gateway-authorization" not in by_id[direct].headers

    gateway = by_id[forwarded]
    assert gateway.body == _body(forwarded)
    _assert_signed(gateway, signing_key.verify_key, "x-gateway-authorization")
    assert gateway.headers["authorization"] == bap_authorization  # forwarded unchanged
    assert gateway.headers["x-request-tag"] == "fort-de-france 972"

    rows = await _rows(sessions)
    assert [(r.status, r.attempts, r.response_status, r.response_body) for r in rows] == [
        ("delivered", 1, 200, ACK_BODY)] * 2
    assert all(r.delivered_at is not None and r.claimed_by is None for r in rows)
    attempts = await _attempts(sessions)
    assert [(a.attempt_no, a.outcome, a.status_code) for a in attempts] == [(1, "delivered", 200)] * 2
    assert all(a.duration_ms > 0 for a in attempts)


async def test_retry_after_503_is_honoured_and_each_attempt_is_signed_afresh(sessions, signer, signing_key) -> None:
    def reply(received: Received, n: int) -> Reply:
        return (503, b"busy", {"Retry-After": "1"}) if n == 1 else (200, ACK_BODY, {})

    sink = Sink(reply=reply)
    with serve_app(sink.app()) as base:
        await _enqueue(sessions, f"{base}/on_search")
        async with _running(_worker(sessions, signer)):
            [row] = await _settled(sessions)

    assert row.status == "delivered" and row.attempts == 2
    first, second = sink.received
    assert first.body == second.body
    assert second.at - first.at >= 1.0  # jitter alone would have retried within max_backoff=0.1 s
    created = [_assert_signed(r, signing_key.verify_key) for r in sink.received]
    assert created[1] > created[0]  # a new signature, not the first one replayed
    attempts = await _attempts(sessions)
    assert [(a.attempt_no, a.outcome, a.status_code) for a in attempts] == [(1, "retry", 503), (2, "delivered", 200)]
    assert "HTTP 503" in attempts[0].error


async def test_each_status_gets_its_outcome(sessions, signer) -> None:
    replies: dict[str, Reply] = {
        "/ack": (200, ACK_BODY, {}),
        "/ack202": (202, ACK_BODY, {}),
        "/nack200": (200, NACK_200, {}),
        "/not-beckn200": (200, b"<html>ok</html>", {}),
        "/400": (400, NACK_400, {}),
        "/401": (401, nack_body(BecknError(ErrorCode.BPP_INVALID_SIGNATURE, "bad signature")), {}),
        "/404": (404, b"not found", {}),
        "/301": (301, b"", {"Location": "http://elsewhere.example.mq/"}),
        "/408": (408, b"", {}),
        "/425": (425, b"", {}),
        "/429": (429, b"", {}),
        "/500": (500, b"oops", {}),
        "/502": (502, b"", {}),
        "/504": (504, b"", {}),
    }
    expected = {
        "/ack": "delivered", "/ack202": "delivered", "/nack200": "failed", "/not-beckn200": "retry",
        "/400": "failed", "/401": "failed", "/404": "failed", "/301": "failed",
        "/408": "retry", "/425": "retry", "/429": "retry", "/500": "retry", "/502": "retry", "/504": "retry",
    }
    sink = Sink(reply=lambda received, n: replies[received.path])
    with serve_app(sink.app()) as base:
        ids = {}
        for path in replies:
            [ids[path]] = await _enqueue(sessions, f"{base}{path}")
        worker = _worker(sessions, signer, per_destination_limit=len(replies), batch_size=len(replies))
        try:
            assert await worker.run_once() == len(replies)
        finally:
            await worker.aclose()

    rows = {row.message_id: row for row in await _rows(sessions)}
    attempts = {a.outbox_id: a for a in await _attempts(sessions)}
    outcomes = {path: attempts[rows[ids[path]].id].outcome for path in replies}
    assert outcomes == expected
    status = {"delivered": "delivered", "failed": "failed", "retry": "pending"}
    assert {path: rows[ids[path]].status for path in replies} == {p: status[o] for p, o in expected.items()}
    # The refusal is kept so an operator can see why.
    assert rows[ids["/400"]].response_status == 400 and rows[ids["/400"]].response_body == NACK_400
    assert "30000" in rows[ids["/400"]].last_error and "context.bpp_id is missing" in rows[ids["/400"]].last_error
    assert rows[ids["/nack200"]].last_error.startswith("NACK: 30004")


async def test_permanent_failures_are_never_retried(sessions, signer) -> None:
    sink = Sink(reply=lambda received, n: (400, NACK_400, {}) if received.path == "/bad" else (200, NACK_200, {}))
    with serve_app(sink.app()) as base:
        await _enqueue(sessions, f"{base}/bad")
        await _enqueue(sessions, f"{base}/nack")
        async with _running(_worker(sessions, signer)):
            rows = await _settled(sessions)
            await asyncio.sleep(0.3)  # several polls and backoff periods
    assert [r.status for r in rows] == ["failed", "failed"]
    assert sorted(r.path for r in sink.received) == ["/bad", "/nack"]
    assert [a.outcome for a in await _attempts(sessions)] == ["failed", "failed"]


async def test_server_errors_and_network_errors_are_retried_with_backoff(sessions, signer, signing_key) -> None:
    statuses = {1: 500, 2: 502}
    sink = Sink(reply=lambda received, n: (statuses[n], b"", {}) if n in statuses else (200, ACK_BODY, {}))
    with serve_app(sink.app()) as base:
        await _enqueue(sessions, f"{base}/on_search")
        down = f"http://127.0.0.1:{free_port()}/on_search"  # nothing listens there
        # ttl generous enough for 3 attempts even on a loaded CI machine (3 xdist workers, PostgreSQL)
        await _enqueue(sessions, down, ttl=2.0)
        async with _running(_worker(sessions, signer, base_backoff=0.05, max_backoff=0.1)):
            rows = await _settled(sessions)
    up, dead = rows
    assert (up.status, up.attempts) == ("delivered", 3)
    assert all(_assert_signed(r, signing_key.verify_key) for r in sink.received)
    # The unreachable peer is retried until the message's ttl runs out, then given up.
    assert dead.status == "expired" and dead.attempts >= 3
    dead_attempts = [a for a in await _attempts(sessions) if a.outbox_id == dead.id]
    # Given up either at an attempt whose next retry would be too late, or when next claimed.
    assert [a.outcome for a in dead_attempts[:-1]] == ["retry"] * (len(dead_attempts) - 1)
    assert dead_attempts[-1].outcome in ("retry", "expired")
    assert all(a.status_code is None and "ConnectError" in a.error for a in dead_attempts)
    assert all(a.started_at <= dead.expires_at for a in dead_attempts)


async def test_expiry_stops_retries(sessions, signer) -> None:
    sink = Sink(reply=lambda received, n: (503, b"", {"Retry-After": "60"}) if received.path == "/later"
                else (503, b"", {}))
    with serve_app(sink.app()) as base:
        # long enough for 2 attempts at 0.1-0.2 s backoff even on a loaded CI machine
        [short] = await _enqueue(sessions, f"{base}/always-503", ttl=1.5)
        [later] = await _enqueue(sessions, f"{base}/later", ttl=10)  # Retry-After lands past its expiry
        [stale] = await _enqueue(sessions, f"{base}/stale", ttl=10)
        async with sessions() as session:  # as if the worker had been down past this message's ttl
            await session.execute(update(OutboxMessage).where(OutboxMessage.message_id == stale)
                                  .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
            await session.commit()
        async with _running(_worker(sessions, signer, base_backoff=0.1, max_backoff=0.2)):
            rows = {r.message_id: r for r in await _settled(sessions)}
            sent_when_settled = len(sink.received)
            await asyncio.sleep(0.3)
    assert len(sink.received) == sent_when_settled  # nothing after giving up
    assert {r.status for r in rows.values()} == {"expired"}
    assert not [r for r in sink.received if r.path == "/stale"]
    assert rows[stale].attempts == 0 and "before it could be sent" in rows[stale].last_error
    assert rows[later].attempts == 1 and "after expires_at" in rows[later].last_error
    short_sent = [r for r in sink.received if r.path == "/always-503"]
    assert len(short_sent) == rows[short].attempts >= 2
    attempts = await _attempts(sessions)
    assert [a.outcome for a in attempts if a.outbox_id == rows[later].id] == ["expired"]
    assert not [a for a in attempts if a.outbox_id == rows[stale].id]


# --------------------------------------------------------------------------- concurrency


async def test_per_destination_concurrency_limit_holds(sessions, signer) -> None:
    sink = Sink(delay=0.15)
    with serve_app(sink.app()) as base:
        ids = await _enqueue(sessions, f"{base}/on_search", 10)
        async with _running(_worker(sessions, signer, per_destination_limit=3)):
            rows = await _settled(sessions)
    assert {r.status for r in rows} == {"delivered"}
    assert sorted(sink.message_ids()) == sorted(ids)
    assert sink.max_in_flight == 3


async def test_a_slow_destination_does_not_delay_another(sessions, signer) -> None:
    # Ordering, not a wall-clock margin: the fast delivery must land while the slow ones are
    # still held (slow.finished == 0), which a loaded machine cannot make flaky.
    slow, fast = Sink(delay=2.5), Sink()
    with serve_app(slow.app()) as slow_base, serve_app(fast.app()) as fast_base:
        worker = _worker(sessions, signer, per_destination_limit=2, batch_size=4, request_timeout=4.0,
                         lease_seconds=10.0, poll_interval=5.0)  # long poll: only wake() brings news
        async with _running(worker):
            await _enqueue(sessions, f"{slow_base}/on_search", 3)
            worker.wake()
            deadline = time.monotonic() + 5
            while slow.in_flight < 2:
                assert time.monotonic() < deadline, "the slow destination never got its requests"
                await asyncio.sleep(0.01)
            [quick] = await _enqueue(sessions, f"{fast_base}/on_search")
            worker.wake()
            started = time.monotonic()
            while not fast.received:
                assert time.monotonic() - started < 2.0, "the fast destination waited for the slow one"
                await asyncio.sleep(0.01)
            assert slow.finished == 0  # the slow sends were still under way
            rows = await _settled(sessions)
    assert fast.message_ids() == [quick]
    assert {r.status for r in rows} == {"delivered"}
    assert slow.max_in_flight == 2


async def test_two_workers_never_send_the_same_message(sessions, signing_key) -> None:
    sink = Sink(delay=0.03)
    with serve_app(sink.app()) as base:
        ids = await _enqueue(sessions, f"{base}/on_search", 40)
        workers = [
            _worker(sessions, Signer("bpp.lakou.example.mq", key_id, signing_key), batch_size=6,
                    per_destination_limit=6, worker_id=key_id)
            for key_id in ("worker-a", "worker-b")
        ]
        async with _running(*workers):
            rows = await _settled(sessions)
    assert {r.status for r in rows} == {"delivered"}
    # Every send is ACKed, so any message sent twice would show here.
    assert sorted(sink.message_ids()) == sorted(ids)
    senders = {parse_signature_header(r.headers["authorization"]).unique_key_id for r in sink.received}
    assert senders == {"worker-a", "worker-b"}
    assert [a.attempt_no for a in await _attempts(sessions)] == [1] * 40


# --------------------------------------------------------------------------- crash


class _BlackHole:
    """Accepts TCP connections on a port and never answers: the worker is stuck mid-send."""

    def __init__(self, port: int) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._listener.settimeout(0.05)  # closing a socket does not wake a thread blocked in accept()
        self._closed = threading.Event()
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self._accepted)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._accepted.append(conn)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._accepted:
            conn.close()


def _start_worker(db_url: str, seed: bytes, worker_id: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "outbox_worker_proc.py"), db_url, base64.b64encode(seed).decode(), worker_id],
        stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


async def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_killed_worker_loses_nothing(db_url: str, sessions) -> None:
    """Destination down, then hanging, worker SIGKILLed mid-send; a new worker delivers all."""
    seed = SigningKey.generate().encode()
    verify_key = SigningKey(seed).verify_key
    port = free_port()
    ids = await _enqueue(sessions, f"http://127.0.0.1:{port}/on_search", 6)

    first = _start_worker(db_url, seed, "first")
    try:
        # 1. Nothing listens: attempts fail and are recorded as retries.
        async def attempted() -> bool:
            return any(a.outcome == "retry" for a in await _attempts(sessions))
        await _wait_for(attempted, 10, "a recorded attempt")

        # 2. The peer now accepts connections but never answers; kill the worker mid-send.
        hole = _BlackHole(port)

        async def all_in_flight() -> bool:
            return hole.connections >= len(ids)
        await _wait_for(all_in_flight, 10, "every message to be in flight")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    hole.close()

    killed_at = datetime.now(UTC)
    held = await _rows(sessions)
    # The dead worker still holds its leases: nothing was delivered, nothing was released.
    assert {(r.status, r.claimed_by) for r in held} == {("pending", "first")}
    assert all(r.claimed_until > killed_at for r in held), [(r.id, r.attempts, r.claimed_until, killed_at) for r in held]
    lease_end = {r.id: r.claimed_until for r in held}

    # 3. The peer is back; a new worker takes the messages over once the leases run out.
    sink = Sink()
    with serve_app(sink.app(), port=port):
        second = _start_worker(db_url, seed, "second")
        try:
            rows = await _settled(sessions, timeout=outbox_worker_proc.LEASE_SECONDS + 10)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=10) == 0

    assert {r.status for r in rows} == {"delivered"}
    assert sorted(sink.message_ids()) == sorted(ids)  # each exactly once
    for received in sink.received:
        assert received.body == _body(json.loads(received.body)["context"]["message_id"])
        _assert_signed(received, verify_key)
    attempts = await _attempts(sessions)
    delivered = [a for a in attempts if a.outcome == "delivered"]
    assert len(delivered) == len(ids)
    assert all(a.started_at >= lease_end[a.outbox_id] for a in delivered)
    assert any(a.outcome == "retry" and "ConnectError" in (a.error or "") for a in attempts)
