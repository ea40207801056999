"""Accepted messages reach the business handler even when the process died right after the ACK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from nacl.signing import SigningKey
from sqlalchemy import select

from beckn.inbound import AcceptedMessage
from beckn.inbox import InboxDispatcher
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.store.tables import InboundMessage
from tests.beckn_examples import example_callback, example_request

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[object]:
    await upgrade(db_url)
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def store_acked(sessions, action: str, body: dict, headers: dict[str, str] | None = None) -> int:
    """What the pipeline leaves behind when the process dies between its ACK and the handler."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    row = InboundMessage(sender_id=body["context"]["bap_id"], message_id=body["context"]["message_id"],
                         action=action, transaction_id=body["context"]["transaction_id"], body=raw,
                         body_digest="x", headers=headers or {}, received_at=datetime.now(UTC),
                         response_status=200, response_body=b"ack")
    async with sessions() as session:
        session.add(row)
        await session.commit()
    return row.id


async def rows(sessions) -> list[InboundMessage]:
    async with sessions() as session:
        return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())


async def test_recover_runs_the_handler_once_for_each_unprocessed_message(sessions) -> None:
    first = await store_acked(sessions, "search", example_request("search"))
    second = await store_acked(sessions, "on_select", example_callback("on_select"))
    seen: list[AcceptedMessage] = []

    async def handler(message: AcceptedMessage) -> None:
        seen.append(message)

    dispatcher = InboxDispatcher(sessions, handler)
    assert await dispatcher.recover() == 2
    assert [(m.id, m.action) for m in seen] == [(first, "search"), (second, "on_select")]
    assert seen[1].envelope.message.order is not None  # type: ignore[attr-defined]
    assert all(r.processed_at is not None and r.process_error is None for r in await rows(sessions))
    assert await dispatcher.recover() == 0  # processed messages are not replayed
    assert len(seen) == 2


async def test_a_failing_handler_is_recorded_and_retried_up_to_a_limit(sessions) -> None:
    await store_acked(sessions, "search", example_request("search"))
    calls = 0

    async def handler(message: AcceptedMessage) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("stock service down")

    dispatcher = InboxDispatcher(sessions, handler, max_attempts=3)
    for _ in range(5):
        await dispatcher.recover()
    [row] = await rows(sessions)
    assert calls == 3 and row.attempts == 3 and row.processed_at is None
    assert row.process_error == "RuntimeError: stock service down"


async def test_the_gateway_that_relayed_a_message_is_restored(sessions) -> None:
    body = example_request("search")
    raw = json.dumps(body, ensure_ascii=False).encode()
    gateway_header = Signer("bg.lakou.test", "k1", SigningKey.generate()).sign(raw)
    await store_acked(sessions, "search", body, {"x-gateway-authorization": gateway_header})
    seen: list[AcceptedMessage] = []

    async def handler(message: AcceptedMessage) -> None:
        seen.append(message)

    await InboxDispatcher(sessions, handler).recover()
    assert seen[0].gateway_id == "bg.lakou.test"
