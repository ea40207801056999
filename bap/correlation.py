"""Matching callbacks to the requests the BAP sent, and waking whoever waits for them.

A callback (already verified and stored by the node's pipeline) is *accepted* when a request of
ours has its message_id, its transaction_id, the action it answers (on_select ← select), the BPP
it was sent to (any BPP for a broadcast search), and it arrived before the request's timestamp +
ttl. Otherwise it is recorded as *late* or *unsolicited* and never shown.

One exception: after confirm, the BPP speaks first when the order changes at its end (the merchant
moves it on, cancels it, changes it): an `on_status`, `on_update` or `on_cancel` with a message id
we never sent is *accepted* without a request when its transaction is a confirmed order of ours
(it has an order id), its sender is that order's BPP, and it carries that order (same id).
Order callbacks are folded in by the order's `updated_at`, so an older state never replaces a newer one.

Waiting: API calls wait on an in-process event per transaction, set by the handler, and re-check
the store every poll interval anyway, so that behind a load balancer a callback handled by another
BAP process is still seen.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bap.offers import order_state, quote_of
from bap.tables import BapCallback, BapRequest, BapTransaction, CallbackStatus
from beckn.inbound import AcceptedMessage
from beckn.store.tables import InboundMessage

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The callbacks that carry a confirmed order's news, which its BPP may also send unasked.
ORDER_PUSHES = ("on_status", "on_update", "on_cancel")


@dataclass
class _Slot:
    event: asyncio.Event
    waiters: int = 0


class Waiters:
    """In-process wake-ups per transaction id; a slot lives only while someone waits on it."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def notify(self, transaction_id: str) -> None:
        slot = self._slots.pop(transaction_id, None)
        if slot is not None:
            slot.event.set()

    async def wait(self, transaction_id: str, timeout: float) -> None:
        """Return when `transaction_id` is notified or after `timeout` seconds, whichever first."""
        slot = self._slots.setdefault(transaction_id, _Slot(asyncio.Event()))
        slot.waiters += 1
        try:
            await asyncio.wait_for(slot.event.wait(), timeout=max(timeout, 0))
        except TimeoutError:
            pass
        finally:
            slot.waiters -= 1
            if slot.waiters == 0 and self._slots.get(transaction_id) is slot:
                del self._slots[transaction_id]

    async def until(
        self, transaction_id: str, check: Callable[[], Awaitable[T | None]], *, deadline: float, poll: float,
    ) -> T | None:
        """Run `check` until it returns something, or `deadline` (loop time) passes; last result."""
        loop = asyncio.get_running_loop()
        while True:
            result = await check()
            remaining = deadline - loop.time()
            if result is not None or remaining <= 0:
                return result
            await self.wait(transaction_id, min(poll, remaining))


class Correlator:
    """The node's message handler for on_* callbacks."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], waiters: Waiters) -> None:
        self._sessions = sessions
        self._waiters = waiters
        # Since this process started; the store has the full history (bap_callback.status).
        self.counts: Counter[str] = Counter({status.value: 0 for status in CallbackStatus})

    async def handle(self, message: AcceptedMessage) -> None:
        if not message.action.startswith("on_"):
            return
        context = message.envelope.context  # type: ignore[attr-defined]
        transaction_id, message_id = context.transaction_id, context.message_id
        raw = json.loads(message.body)
        async with self._sessions() as session:
            received_at = (await session.execute(
                select(InboundMessage.received_at).where(InboundMessage.id == message.id)
            )).scalar_one_or_none() or datetime.now(UTC)
            request = (await session.execute(
                select(BapRequest).where(BapRequest.message_id == message_id)
            )).scalar_one_or_none()
            status = _verdict(request, message, transaction_id, received_at)
            if status is CallbackStatus.UNSOLICITED and request is None:
                status = await _order_push_verdict(session, message, transaction_id, raw)
            accepted = status is CallbackStatus.ACCEPTED
            try:
                session.add(BapCallback(
                    inbound_id=message.id,
                    request_id=request.id if request is not None and request.transaction_id == transaction_id else None,
                    transaction_id=transaction_id,
                    message_id=message_id,
                    action=message.action,
                    bpp_id=message.sender_id,
                    bpp_uri=context.bpp_uri,
                    received_at=received_at,
                    status=status.value,
                    message=raw.get("message") if accepted and isinstance(raw.get("message"), dict) else None,
                    error=raw.get("error") if accepted and isinstance(raw.get("error"), dict) else None,
                ))
                await session.flush()
                if accepted and message.action != "on_search" and request is not None:
                    await _update_transaction(session, request, message.action, raw, received_at)
                elif accepted and request is None:
                    await _fold_order(session, transaction_id, message.action, raw, received_at)
                await session.commit()
            except IntegrityError:
                # Already judged (an inbox replay after a crash): nothing more to do.
                await session.rollback()
                return
        self.counts[status.value] += 1
        if not accepted:
            # ids only: the body may carry personal data.
            log.info("bap.callback_dropped", status=status.value, action=message.action,
                     transaction_id=transaction_id, message_id=message_id, sender=message.sender_id)
        self._waiters.notify(transaction_id)


def _verdict(
    request: BapRequest | None, message: AcceptedMessage, transaction_id: str, received_at: datetime,
) -> CallbackStatus:
    if (
        request is None
        or request.transaction_id != transaction_id
        or f"on_{request.action}" != message.action
        or (request.bpp_id is not None and request.bpp_id != message.sender_id)
    ):
        return CallbackStatus.UNSOLICITED
    if received_at > request.expires_at:
        return CallbackStatus.LATE
    return CallbackStatus.ACCEPTED


async def _order_push_verdict(
    session: AsyncSession, message: AcceptedMessage, transaction_id: str, raw: dict[str, Any],
) -> CallbackStatus:
    """ACCEPTED for a BPP's own news about a confirmed order of ours (see the module docstring)."""
    if message.action not in ORDER_PUSHES:
        return CallbackStatus.UNSOLICITED
    transaction = await session.get(BapTransaction, transaction_id)
    order = _order_of(raw)
    if (
        transaction is None
        or not transaction.order_id
        or transaction.bpp_id != message.sender_id
        or order is None
        or order.get("id") != transaction.order_id
    ):
        return CallbackStatus.UNSOLICITED
    return CallbackStatus.ACCEPTED


def _order_of(raw: dict[str, Any]) -> dict[str, Any] | None:
    order = (raw.get("message") or {}).get("order") if isinstance(raw.get("message"), dict) else None
    return order if isinstance(order, dict) else None


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _is_older(order: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Whether `order` is an older state than `current` (callbacks may arrive out of order)."""
    new, old = _moment(order.get("updated_at")), _moment((current or {}).get("updated_at"))
    return new is not None and old is not None and new < old


async def _fold_order(
    session: AsyncSession, transaction_id: str, action: str, raw: dict[str, Any], received_at: datetime,
) -> None:
    """Fold a confirmed order's news (solicited or not) into the transaction, unless it is older."""
    transaction = await session.get(BapTransaction, transaction_id)
    order = _order_of(raw)
    if transaction is None or order is None or raw.get("error") is not None or _is_older(order, transaction.order):
        return
    _apply(transaction, action, order, received_at)


async def _update_transaction(
    session: AsyncSession, request: BapRequest, action: str, raw: dict[str, Any], received_at: datetime,
) -> None:
    """Fold a BPP's answer into the transaction's state, unless a newer request superseded it."""
    if action in ORDER_PUSHES:
        # After confirm, requests do not supersede each other (a track sent after a status does not
        # make its on_status stale): the order's own updated_at decides.
        await _fold_order(session, request.transaction_id, action, raw, received_at)
        return
    newest = (await session.execute(
        select(func.max(BapRequest.id)).where(BapRequest.transaction_id == request.transaction_id)
    )).scalar_one()
    if newest != request.id or raw.get("error") is not None:
        return
    transaction = await session.get(BapTransaction, request.transaction_id)
    order = _order_of(raw)
    if transaction is None or order is None:
        return
    _apply(transaction, action, order, received_at)


def _apply(transaction: BapTransaction, action: str, order: dict[str, Any], received_at: datetime) -> None:
    transaction.order = order
    transaction.last_action = action
    transaction.updated_at = received_at
    quote = quote_of(order)
    if quote is not None:
        transaction.quote = quote
    if isinstance(order.get("id"), str) and order["id"]:
        transaction.order_id = order["id"]
        if action == "on_confirm" and transaction.confirmed_at is None:
            transaction.confirmed_at = received_at
    transaction.state = order_state(order) or transaction.state
