"""What the citizen-app API does, apart from HTTP: send requests, read what came back.

`BapService` holds the node, the settings, the correlator and the waiters. Every read is scoped
to the session that owns the transaction, so the API cannot leak one citizen's data to another.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bap import messages
from bap.correlation import Correlator, Waiters
from bap.i18n import citizen_message, request_language
from bap.offers import error_of, flatten_catalog, order_state, payments_of, quote_of
from bap.settings import BapSettings
from bap.tables import BapCallback, BapRequest, BapTransaction, CallbackStatus
from beckn.node import BECKN_PREFIX, BecknNode, wire_timestamp
from beckn.registry_client import RegistryUnavailable
from beckn.store.tables import OutboxMessage, OutboxStatus


class ApiError(Exception):
    """A refusal the API reports as `{"error": {"code", "message", "detail", ...}}` with `status`.

    `message` in the body is for the citizen, in their language (`bap.i18n.citizen_message` of
    `code`); `detail` is English for developers: the `message` given here, unless `detail` is.
    `lang` is the cart's or search's language, used when the request has no Accept-Language;
    `citizen` overrides the catalogue's text with one already localised.
    """

    def __init__(self, status: int, code: str, message: str, *, lang: str | None = None,
                 detail: str | None = None, citizen: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message  # English, for developers
        self.detail = detail if detail is not None else message
        self.lang = lang
        self.citizen = citizen
        self.extra = extra

    def body(self, lang: str | None = None) -> dict[str, Any]:
        language = lang or request_language(None, fallback=self.lang)
        return {"error": {"code": self.code, "message": self.citizen or citizen_message(self.code, language),
                          "detail": self.detail, **self.extra}}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The HTTP answer to a select/init/confirm/status, now or when polled later."""

    status: int
    body: dict[str, Any]


def iso(moment: datetime | None) -> str | None:
    return wire_timestamp(moment) if moment is not None else None


class BapService:
    def __init__(self, node: BecknNode, settings: BapSettings) -> None:
        self.node = node
        self.settings = settings
        self.waiters = Waiters()
        self.correlator = Correlator(node.sessions, self.waiters)
        self._gateway: tuple[str, float] | None = None
        self.merchants: Any = None  # bap.merchant_verification.MerchantVerifier, set by create_app

    # ------------------------------------------------------------------ gateway

    async def gateway_url(self) -> str:
        """Where broadcast searches go: the configured gateway, else a BG of our domain from the registry."""
        if self.settings.bap_gateway_url:
            return _beckn_base(self.settings.bap_gateway_url)
        if self._gateway is not None and self._gateway[1] > time.monotonic():
            return self._gateway[0]
        try:
            records = await self.node.registry.lookup(type="BG", domain=self.settings.domain)
        except RegistryUnavailable as exc:
            raise ApiError(503, "registry_unavailable",
                           f"cannot find a gateway: the registry is unreachable ({exc}); retry later") from None
        now = datetime.now(UTC)
        for record in records:
            if record.type == "BG" and record.url and record.usable_at(now) is None:
                self._gateway = (record.url, time.monotonic() + self.settings.bap_gateway_cache_seconds)
                return record.url
        raise ApiError(503, "no_gateway",
                       f"no gateway (BG) is registered for domain {self.settings.domain!r}; "
                       "set LAKOU_BAP_GATEWAY_URL or register one")

    # ------------------------------------------------------------------ sending

    async def send(
        self, session: AsyncSession, transaction: BapTransaction, action: str, message: dict[str, Any], *,
        destination: str, ttl_seconds: int, bpp_id: str | None = None, bpp_uri: str | None = None,
    ) -> BapRequest:
        """Record the request and queue it in the outbox, in the caller's DB transaction."""
        now = datetime.now(UTC)
        message_id = messages.new_id()
        context = messages.context(
            action=action, domain=self.settings.domain, city=transaction.city,
            # A search may name another territory's country (federation); the transaction keeps it.
            country=(transaction.search or {}).get("country") or self.settings.country,
            bap_id=self.node.subscriber_id, bap_uri=self.node.subscriber_url, transaction_id=transaction.id,
            message_id=message_id, ttl_seconds=ttl_seconds, now=now, bpp_id=bpp_id, bpp_uri=bpp_uri,
        )
        request = BapRequest(
            transaction_id=transaction.id, message_id=message_id, action=action, bpp_id=bpp_id,
            sent_at=now, expires_at=messages.expires_at(now, ttl_seconds),
        )
        session.add(request)
        await self.node.send(session, destination, {"context": context, "message": message})
        return request

    # ------------------------------------------------------------------ reading

    async def transaction(self, session: AsyncSession, session_id: int, transaction_id: str) -> BapTransaction:
        transaction = await session.get(BapTransaction, transaction_id)
        if transaction is None or transaction.session_id != session_id:
            # The same answer whether it does not exist or belongs to someone else.
            raise ApiError(404, "not_found", f"no transaction {transaction_id!r} in this session")
        return transaction

    async def search_request(self, session: AsyncSession, transaction_id: str) -> BapRequest:
        request = (await session.execute(
            select(BapRequest).where(BapRequest.transaction_id == transaction_id, BapRequest.action == "search")
            .order_by(BapRequest.id.desc()).limit(1)
        )).scalar_one_or_none()
        if request is None:
            raise ApiError(404, "not_found", f"transaction {transaction_id!r} has no search")
        return request

    async def search_callbacks(self, transaction_id: str, after: int = 0) -> list[BapCallback]:
        async with self.node.sessions() as session:
            return list((await session.execute(
                select(BapCallback).where(
                    BapCallback.transaction_id == transaction_id, BapCallback.action == "on_search",
                    BapCallback.status == CallbackStatus.ACCEPTED.value, BapCallback.id > after,
                ).order_by(BapCallback.id)
            )).scalars())

    async def search_results(
        self, session_id: int, transaction_id: str, *, after: int, wait_ms: int,
    ) -> dict[str, Any]:
        async with self.node.sessions() as session:
            await self.transaction(session, session_id, transaction_id)
            search = await self.search_request(session, transaction_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000

        async def news() -> bool | None:
            if datetime.now(UTC) >= search.expires_at:
                return True
            return True if await self.search_callbacks(transaction_id, after) else None

        if wait_ms > 0:
            await self.waiters.until(transaction_id, news, deadline=deadline,
                                     poll=self.settings.bap_poll_interval_seconds)
        callbacks = await self.search_callbacks(transaction_id)
        offers = [offer for cb in callbacks
                  for offer in flatten_catalog(cb.bpp_id, cb.bpp_uri, cb.message, merchants=self.merchants)]
        return {
            "transaction_id": transaction_id,
            "message_id": search.message_id,
            "complete": datetime.now(UTC) >= search.expires_at,
            "expires_at": iso(search.expires_at),
            "cursor": str(callbacks[-1].id if callbacks else max(after, 0)),
            "responses": len(callbacks),
            "offers": offers,
        }

    async def bpp_uri_from_search(self, session: AsyncSession, transaction_id: str, bpp_id: str) -> str:
        """The bpp_uri a BPP gave in its on_search of this transaction (only those can be chosen)."""
        row = (await session.execute(
            select(BapCallback.bpp_uri).where(
                BapCallback.transaction_id == transaction_id, BapCallback.action == "on_search",
                BapCallback.status == CallbackStatus.ACCEPTED.value, BapCallback.bpp_id == bpp_id,
            ).order_by(BapCallback.id.desc()).limit(1)
        )).first()
        if row is None or not row.bpp_uri:
            raise ApiError(422, "unknown_bpp",
                           f"BPP {bpp_id!r} did not answer this search; choose one of the offers' bpp_id")
        return row.bpp_uri

    async def request(self, session: AsyncSession, transaction_id: str, message_id: str) -> BapRequest:
        request = (await session.execute(
            select(BapRequest).where(BapRequest.transaction_id == transaction_id, BapRequest.message_id == message_id)
        )).scalar_one_or_none()
        if request is None or request.action == "search":
            raise ApiError(404, "not_found", f"no select/init/confirm/status message {message_id!r} in this transaction")
        return request

    async def outcome(self, request: BapRequest, *, wait_ms: int) -> Outcome:
        """The answer to `request`: wait up to `wait_ms` for its callback or its delivery failure."""
        loop = asyncio.get_running_loop()
        result = await self.waiters.until(
            request.transaction_id, lambda: self._outcome_now(request),
            deadline=loop.time() + wait_ms / 1000, poll=self.settings.bap_poll_interval_seconds,
        )
        if result is not None:
            return result
        return Outcome(202, {"action": f"on_{request.action}", "message_id": request.message_id,
                             "status": "pending", "expires_at": iso(request.expires_at)})

    async def _outcome_now(self, request: BapRequest) -> Outcome | None:
        async with self.node.sessions() as session:
            callback = (await session.execute(
                select(BapCallback).where(BapCallback.request_id == request.id,
                                          BapCallback.status == CallbackStatus.ACCEPTED.value)
                .order_by(BapCallback.id).limit(1)
            )).scalar_one_or_none()
            if callback is not None:
                lang = await _language(session, request.transaction_id) if callback.error else None
                return _answer(request, callback, lang)
            outbox = (await session.execute(
                select(OutboxMessage.status, OutboxMessage.response_status, OutboxMessage.response_body,
                       OutboxMessage.last_error)
                .where(OutboxMessage.message_id == request.message_id, OutboxMessage.action == request.action)
            )).first()
            base = {"action": f"on_{request.action}", "message_id": request.message_id}
            if outbox is not None and outbox.status in (OutboxStatus.FAILED.value, OutboxStatus.EXPIRED.value):
                code, text = _nack_error(outbox.response_body)
                reason = text or outbox.last_error or "the BPP could not be reached"
                code = code or "bpp_unreachable"
                lang = await _language(session, request.transaction_id)
                return Outcome(502, {**base, "status": "failed", "error": {
                    "code": code, "message": citizen_message(code, lang),
                    "detail": f"the BPP did not accept the {request.action}: {reason}",
                    "http_status": outbox.response_status}})
            if datetime.now(UTC) > request.expires_at:
                # Late answers are still recorded (bap_callback.status = late) but never shown.
                lang = await _language(session, request.transaction_id)
                return Outcome(504, {**base, "status": "expired", "error": {
                    "code": "timeout", "message": citizen_message("timeout", lang),
                    "detail": f"the BPP did not answer the {request.action} within its ttl "
                              f"(until {iso(request.expires_at)})"}})
        return None


async def _language(session: AsyncSession, transaction_id: str) -> str:
    """The citizen's language for an answer: Accept-Language, else the cart's or its search's."""
    transaction = await session.get(BapTransaction, transaction_id)
    fallback = None
    if transaction is not None:
        fallback = transaction.lang or (transaction.search or {}).get("lang")
        if not fallback and transaction.search_id:
            search = await session.get(BapTransaction, transaction.search_id)
            fallback = (search.search or {}).get("lang") if search is not None else None
    return request_language(None, fallback=fallback)


def localised_error(error: Any, lang: str | None) -> dict[str, Any] | None:
    """A BPP's callback `error` for the citizen: `message` in their language from the code,
    the BPP's own words in `detail`."""
    found = error_of(error)
    if found is None:
        return None
    code = str(found.get("code") or "")
    return {"code": found.get("code"), "message": citizen_message(code, lang or request_language(None)),
            "detail": found.get("message"), "path": found.get("path")}


def _answer(request: BapRequest, callback: BapCallback, lang: str | None = None) -> Outcome:
    message = callback.message or {}
    order = message.get("order") if isinstance(message.get("order"), dict) else None
    body: dict[str, Any] = {
        "action": callback.action,
        "message_id": request.message_id,
        "status": "answered",
        "bpp_id": callback.bpp_id,
        "received_at": iso(callback.received_at),
        "quote": quote_of(order),
        "order": order,
        "error": localised_error(callback.error, lang),
    }
    if request.action == "init":
        payments = payments_of(order)
        body["payment"] = payments[0] if payments else None
        body["payments"] = payments
    if request.action in ("confirm", "status"):
        body["order_id"] = order.get("id") if order else None
        body["state"] = order_state(order)
        body["order_status"] = order.get("status") if order else None
    if body["error"] is not None:
        body["status"] = "error"
        return Outcome(422, body)
    return Outcome(200, body)


def _nack_error(response_body: bytes | None) -> tuple[str | None, str | None]:
    try:
        error = json.loads(response_body or b"").get("error") or {}
        return error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        return None, None


def _beckn_base(url: str) -> str:
    # A bare http://host:port is a Lakou node, whose Beckn endpoints live under /beckn.
    url = url.rstrip("/")
    return url + BECKN_PREFIX if urlsplit(url).path in ("", "/") else url


def session_expiry(settings: BapSettings) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=settings.bap_session_ttl_seconds)
