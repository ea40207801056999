"""Runs the business handler for accepted messages, from their stored rows.

The pipeline ACKs once a message is stored; a crash between that ACK and the handler must not
lose it, so `recover()` replays every stored message that was never marked processed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.inbound import AcceptedMessage
from beckn.models import EnvelopeInvalid, parse_envelope
from beckn.signing import SignatureError, parse_signature_header
from beckn.store.tables import InboundMessage

log = structlog.get_logger(__name__)

Handler = Callable[[AcceptedMessage], Awaitable[None]]


class InboxDispatcher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], handler: Handler, *, max_attempts: int = 5) -> None:
        self._sessions = sessions
        self._handler = handler
        self._max_attempts = max_attempts

    async def dispatch(self, message: AcceptedMessage) -> bool:
        """Run the handler once; record the outcome. Returns True when processed."""
        error: str | None = None
        try:
            await self._handler(message)
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the dispatcher
            error = f"{type(exc).__name__}: {exc}"[:2000]
            # ids only: message bodies may carry personal data
            log.error("inbox.handler_failed", action=message.action, inbound_id=message.id,
                      error_type=type(exc).__name__)
        async with self._sessions() as session:
            values: dict[str, object] = {"attempts": InboundMessage.attempts + 1, "process_error": error}
            if error is None:
                values["processed_at"] = datetime.now(UTC)
            await session.execute(update(InboundMessage).where(InboundMessage.id == message.id).values(**values))
            await session.commit()
        return error is None

    async def recover(self) -> int:
        """Dispatch every stored message not yet processed (oldest first). Returns how many ran."""
        async with self._sessions() as session:
            rows = (await session.execute(
                select(InboundMessage)
                .where(InboundMessage.processed_at.is_(None), InboundMessage.attempts < self._max_attempts)
                .order_by(InboundMessage.id)
            )).scalars().all()
        done = 0
        for row in rows:
            message = _rebuild(row)
            if message is None:
                continue
            if await self.dispatch(message):
                done += 1
        return done


def _rebuild(row: InboundMessage) -> AcceptedMessage | None:
    import json

    try:
        envelope = parse_envelope(row.action, json.loads(row.body))
    except (EnvelopeInvalid, ValueError):
        log.error("inbox.unparseable_stored_message", inbound_id=row.id)
        return None
    gateway_id = None
    gateway_header = row.headers.get("x-gateway-authorization") or row.headers.get("proxy-authorization")
    if gateway_header:
        try:
            gateway_id = parse_signature_header(gateway_header).subscriber_id
        except SignatureError:
            gateway_id = None
    return AcceptedMessage(id=row.id, action=row.action, sender_id=row.sender_id, gateway_id=gateway_id,
                           envelope=envelope, body=row.body)
