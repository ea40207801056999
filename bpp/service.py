"""The BPP's business handler: one accepted request in, one callback out, in one transaction.

For each stored request the handler computes the answer, queues the `on_<action>` callback in
the outbox inside the same database transaction as any change it makes (an order and its stock),
commits, and wakes the delivery worker. A request already answered (the inbox replaying it
after a crash) finds its callback in the outbox and is not answered twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.errors import error_callback_payload
from beckn.inbound import AcceptedMessage
from beckn.node import BecknNode, reply_context
from beckn.registry_client import RegistryUnavailable
from beckn.store.tables import OutboxMessage
from bpp import lifecycle, orders, webhooks
from bpp import update as order_update
from bpp.search import search_answer, split_answer
from bpp.offers import ResidentCheck, StatusLists
from bpp.settings import BppSettings

log = structlog.get_logger(__name__)

# SQLite reports a lost race between two writers as "database is locked"; the work is redone.
_BUSY_RETRIES = 5


class BppService:
    def __init__(self, node: BecknNode, settings: BppSettings) -> None:
        self.node = node
        self.settings = settings
        self.status_lists = StatusLists.for_settings(settings)  # resident credentials' status lists, cached

    async def handle(self, accepted: AcceptedMessage) -> None:
        for attempt in range(_BUSY_RETRIES):
            try:
                await self._handle_once(accepted)
                return
            except OperationalError:
                if attempt == _BUSY_RETRIES - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _handle_once(self, accepted: AcceptedMessage) -> None:
        envelope: Any = accepted.envelope
        context = envelope.context
        callback = "on_" + accepted.action
        async with self.node.sessions() as session:
            if await self._already_answered(session, context.transaction_id, context.message_id, callback):
                return
            if accepted.action == "confirm":
                answer = await self._confirm(session, envelope)
            else:
                answer = await self._answer(session, accepted.action, envelope)
            destination = await self._destination(accepted)
            # A large on_search goes as several callbacks of one search (bpp.search.split_answer).
            pages = split_answer(answer, self.settings.bpp_search_page_items) if callback == "on_search" else [answer]
            for page in pages:
                body = {
                    "context": reply_context(context.to_wire(), callback, bpp_id=self.node.subscriber_id,
                                             bpp_uri=self.node.subscriber_url),
                    **page,
                }
                await self.node.send(session, destination, body)
            await session.commit()
        self.node.wake()
        log.info("bpp.answered", action=accepted.action, transaction_id=context.transaction_id,
                 message_id=context.message_id, error=answer.get("error", {}).get("code"))

    async def _already_answered(self, session: AsyncSession, transaction_id: str, message_id: str,
                                callback: str) -> bool:
        found = await session.execute(
            select(OutboxMessage.id).where(OutboxMessage.transaction_id == transaction_id,
                                           OutboxMessage.message_id == message_id,
                                           OutboxMessage.action == callback).limit(1))
        return found.first() is not None

    async def _answer(self, session: AsyncSession, action: str, envelope: Any) -> dict[str, Any]:
        message = envelope.message
        try:
            match action:
                case "search":
                    return await search_answer(session, envelope.context, message.intent,
                                               max_items=self.settings.bpp_search_max_items)
                case "select":
                    return {"message": await orders.on_select(session, message.order)}
                case "init":
                    return {"message": await orders.on_init(session, message.order, bap_id=envelope.context.bap_id,
                                                            transaction_id=envelope.context.transaction_id,
                                                            resident=self._resident(envelope.context))}
                case "status":
                    row = await orders.find_order(session, message.order_id, envelope.context.bap_id)
                    return {"message": {"order": await orders.order_json(session, row)}}
                case "cancel":
                    row = await lifecycle.cancel(session, message, bap_id=envelope.context.bap_id)
                    fee = (row.cancellation or {}).get("fee", {}).get("amount", {}).get("value")
                    await webhooks.order_event(session, row, "order.cancelled", fee=fee)  # same transaction
                    return {"message": {"order": await orders.order_json(session, row)}}
                case "update":
                    row, changed = await order_update.apply(session, message, bap_id=envelope.context.bap_id)
                    await webhooks.order_event(session, row, "order.updated", changed=changed)  # same transaction
                    return {"message": {"order": await orders.order_json(session, row)}}
                case "track":
                    return {"message": {"tracking": await lifecycle.tracking(
                        session, message.order_id, bap_id=envelope.context.bap_id)}}
                case "support":
                    return {"message": {"support": await lifecycle.support(
                        session, message, bap_id=envelope.context.bap_id)}}
                case "rating":
                    await lifecycle.rate(session, message.ratings, bap_id=envelope.context.bap_id,
                                         transaction_id=envelope.context.transaction_id)
                    return {"message": {}}  # no feedback form: the stars are all Lakou asks for
        except orders.OrderProblem as problem:
            await session.rollback()  # a refused cancel, update or rating changes nothing
            refusal: dict[str, Any] = {"error": error_callback_payload(problem.error)}
            return {"message": {}, **refusal} if action == "rating" else refusal  # on_rating needs a message
        raise ValueError(f"no handler for {action!r}")

    async def _confirm(self, session: AsyncSession, envelope: Any) -> dict[str, Any]:
        context = envelope.context
        existing = await orders.existing_order(session, context.bap_id, context.transaction_id)
        if existing is None:
            try:
                existing = await orders.confirm(
                    session, envelope.message.order, bap_id=context.bap_id, bap_uri=context.bap_uri,
                    transaction_id=context.transaction_id, message_id=context.message_id,
                    resident=self._resident(context))
                await webhooks.order_created(session, existing)  # the merchant's event, same transaction
            except orders.OrderProblem as problem:
                await session.rollback()  # no stock taken, no order
                return {"error": error_callback_payload(problem.error)}
            except (IntegrityError, orders.AlreadyConfirmed):
                # A concurrent confirm of this transaction committed first: answer with its order.
                await session.rollback()
                existing = await orders.existing_order(session, context.bap_id, context.transaction_id)
                if existing is None:
                    raise
        return {"message": {"order": await orders.order_json(session, existing)}}

    def _resident(self, context: Any) -> ResidentCheck:
        """What a resident credential must be bound to: this BPP and this transaction (bpp.offers)."""
        issuers = [did for did in self.settings.bpp_trusted_resident_issuers.split(",") if did.strip()]
        return ResidentCheck(trusted_issuers=issuers, aud=self.node.subscriber_id, nonce=context.transaction_id,
                             status_lists=self.status_lists)

    async def _destination(self, accepted: AcceptedMessage) -> str:
        """Where the callback goes: the BAP, or for on_search possibly the gateway that forwarded it."""
        bap_uri: str = accepted.envelope.context.bap_uri  # type: ignore[attr-defined]
        if accepted.action != "search" or self.settings.bpp_on_search_via != "gateway" or not accepted.gateway_id:
            return bap_uri
        try:
            records = await self.node.registry.lookup(subscriber_id=accepted.gateway_id, type="BG")
        except RegistryUnavailable as exc:
            log.warning("bpp.gateway_lookup_failed", gateway_id=accepted.gateway_id, error=str(exc)[:200])
            return bap_uri
        for record in records:
            if record.subscriber_id == accepted.gateway_id and record.url:
                return record.url
        log.warning("bpp.gateway_not_registered", gateway_id=accepted.gateway_id)
        return bap_uri
