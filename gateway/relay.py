"""What the gateway does with a message the node has verified, stored and ACKed.

* `search`: look up the BPPs serving the search's domain, city and country (or the one BPP it
  names) and queue the **unchanged body bytes** to each, with the BAP's own `Authorization` and
  the gateway's `X-Gateway-Authorization` over the same digest (BECKN-006 steps 3-4). One outbox
  row per BPP: the delivery worker sends to different BPPs concurrently, each attempt bounded by
  `delivery_timeout_seconds`, so a slow or dead BPP delays no one.
* `on_search`: relay the unchanged bytes to the BAP's *registered* URL, with the BPP's
  `Authorization` and the gateway's signature. A `bap_uri` on another host than the BAP's
  registration is dropped: the gateway must not be usable to countersign traffic to arbitrary
  addresses.

The BAP or BPP already has its ACK when this runs, so nothing here answers it: problems are
logged (ids only, never message content) and counted in `GatewayStats`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from beckn.inbound import AcceptedMessage
from beckn.node import BecknNode
from beckn.policy import message_expires_at
from beckn.registry_client import RegistryUnavailable, SubscriberRecord
from beckn.signing import AUTHORIZATION, GATEWAY_AUTHORIZATION
from beckn.store.tables import InboundMessage, OutboxMessage
from gateway.directory import Directory, url_host

log = structlog.get_logger(__name__)

# A registry restart should not cost the searches received meanwhile: retry the lookup a little,
# within the message's ttl.
LOOKUP_RETRY_DELAYS = (0.2, 0.8)


class RegistryDown(RuntimeError):
    """Raised from the handler so the inbox records the failure on the stored message."""


@dataclass(slots=True)
class GatewayStats:
    """Counters since start, shown by /health: what an operator checks first."""

    searches_received: int = 0
    searches_without_bpp: int = 0
    forwards_queued: int = 0
    on_search_received: int = 0
    on_search_relayed: int = 0
    on_search_dropped: int = 0
    expired_dropped: int = 0
    registry_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class GatewayRelay:
    def __init__(self, node: BecknNode, directory: Directory) -> None:
        self.node = node
        self.directory = directory
        self.stats = GatewayStats()

    async def handle(self, message: AcceptedMessage) -> None:
        if message.action == "search":
            await self.forward_search(message)
        elif message.action == "on_search":
            await self.relay_on_search(message)

    # ------------------------------------------------------------------ search

    async def forward_search(self, message: AcceptedMessage) -> None:
        self.stats.searches_received += 1
        context = message.envelope.context  # type: ignore[attr-defined]
        ids = _ids(message)
        if self._expired(context, ids):
            return
        location = context.location
        city = location.city.code if location and location.city else None
        country = location.country.code if location and location.country else None
        bpps = await self._with_registry(
            lambda: self.directory.bpps_for_search(
                domain=context.domain, city=city, country=country, bpp_id=context.bpp_id, bpp_uri=context.bpp_uri),
            context, ids)
        if not bpps:
            self.stats.searches_without_bpp += 1
            log.info("gateway.search_no_bpp", domain=context.domain, city=city, country=country,
                     bpp_id=context.bpp_id, **ids)
            return
        queued = await self._queue(message, bpps, ids)
        if queued:
            self.stats.forwards_queued += queued
            log.info("gateway.search_forwarded", bpps=queued, **ids)

    # ------------------------------------------------------------------ on_search

    async def relay_on_search(self, message: AcceptedMessage) -> None:
        self.stats.on_search_received += 1
        context = message.envelope.context  # type: ignore[attr-defined]
        ids = _ids(message)
        if self._expired(context, ids):
            return
        bap_id, bap_uri = context.bap_id, context.bap_uri
        records = await self._with_registry(lambda: self.directory.bap(bap_id), context, ids) if bap_id else []
        if not records:
            self.stats.on_search_dropped += 1
            log.warning("gateway.on_search_unknown_bap", bap_id=bap_id, **ids)
            return
        target = next((r for r in records if url_host(r.url) == url_host(bap_uri)), None)
        if target is None:
            self.stats.on_search_dropped += 1
            log.warning("gateway.on_search_bap_uri_mismatch", bap_id=bap_id, bap_uri_host=url_host(bap_uri),
                        registered_host=url_host(records[0].url), **ids)
            return
        if await self._queue(message, [target], ids):
            self.stats.on_search_relayed += 1
            log.info("gateway.on_search_relayed", bap_id=bap_id, **ids)

    # ------------------------------------------------------------------ shared

    def _expired(self, context: Any, ids: Mapping[str, Any]) -> bool:
        expires_at = message_expires_at(context)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            # e.g. replayed by the inbox after a restart: the sender has stopped waiting.
            self.stats.expired_dropped += 1
            log.info("gateway.expired_dropped", expires_at=expires_at.isoformat(), **ids)
            return True
        return False

    async def _with_registry(
        self, lookup: Callable[[], Awaitable[list[SubscriberRecord]]], context: Any, ids: Mapping[str, Any],
    ) -> list[SubscriberRecord]:
        delays = list(LOOKUP_RETRY_DELAYS)
        while True:
            try:
                return await lookup()
            except RegistryUnavailable as exc:
                expires_at = message_expires_at(context)
                delay = delays.pop(0) if delays else None
                if delay is None or (expires_at is not None
                                     and (expires_at - datetime.now(UTC)).total_seconds() <= delay):
                    self.stats.registry_failures += 1
                    log.error("gateway.registry_unavailable", registry=self.node.settings.registry_url,
                              error=str(exc)[:300], **ids)
                    raise RegistryDown(f"registry unavailable: {exc}") from None
                await asyncio.sleep(delay)

    async def _queue(self, message: AcceptedMessage, targets: list[SubscriberRecord], ids: Mapping[str, Any]) -> int:
        """Queue the exact received bytes to each target in one transaction; returns how many."""
        envelope = json.loads(message.body)  # the wire context: action, ids, timestamp, ttl
        queued = 0
        async with self.node.sessions() as session:
            if await _already_relayed(session, message):
                # The inbox replayed a message whose forwards were committed just before a crash.
                log.info("gateway.already_relayed", **ids)
                return 0
            headers = (await session.execute(
                select(InboundMessage.headers).where(InboundMessage.id == message.id))).scalar_one_or_none() or {}
            authorization = headers.get(AUTHORIZATION.lower())
            if not authorization:  # the pipeline requires it, so the row cannot lack it; never guess one
                log.error("gateway.stored_authorization_missing", **ids)
                return 0
            for target in targets:
                try:
                    await self.node.send(session, target.url or "", envelope, body=message.body,
                                         signature_header=GATEWAY_AUTHORIZATION,
                                         extra_headers={AUTHORIZATION: authorization})
                except ValueError as exc:  # e.g. a registered URL that is not http(s): skip that one
                    log.warning("gateway.destination_refused", subscriber_id=target.subscriber_id,
                                error=str(exc)[:300], **ids)
                    continue
                queued += 1
            await session.commit()
        if queued:
            self.node.wake()
        return queued


async def _already_relayed(session: AsyncSession, message: AcceptedMessage) -> bool:
    context = message.envelope.context  # type: ignore[attr-defined]
    found = (await session.execute(
        select(OutboxMessage.id).where(
            OutboxMessage.transaction_id == context.transaction_id,
            OutboxMessage.message_id == context.message_id,
            OutboxMessage.action == message.action,
            OutboxMessage.body == message.body,
        ).limit(1)
    )).first()
    return found is not None


def _ids(message: AcceptedMessage) -> dict[str, Any]:
    context = message.envelope.context  # type: ignore[attr-defined]
    return {"inbound_id": message.id, "sender_id": message.sender_id,
            "transaction_id": context.transaction_id, "message_id": context.message_id}
