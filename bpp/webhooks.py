"""Merchant webhooks: a merchant registers a URL and is POSTed a signed JSON event when an order is
placed, cancelled or changed by its buyer.

Registering (`PUT /api/v1/merchant/webhook {"url": ...}`) answers a new secret, shown once; putting
again replaces the URL and the secret; `DELETE` stops the events. The URL is https, or http to a
loopback host (127.0.0.1, ::1, localhost) for development.

Event (the body, JSON): `{"id": "evt_...", "type": "order.created", "created": <unix seconds>,
"data": {"order_id", "provider_id", "status", "total", "currency", "fulfillment_type"}}`. Types:
`order.created` (confirmed), `order.cancelled` (by the buyer; `data` adds `fee`, what the merchant
keeps) and `order.updated` (the buyer changed it through Beckn `update`; `data` adds `changed`,
the parts changed: `billing`, `fulfillment`). Events name ids and amounts, never the buyer's
personal data: the merchant reads the order with its API key (`GET /api/v1/merchant/orders/{order_id}`).

Signature, Stripe-style: header `X-Lakou-Signature: t=<unix seconds>,v1=<hex>` where `v1` is
HMAC-SHA256, keyed with the secret, of `"<t>." + body` (the exact bytes). A receiver recomputes it,
compares in constant time, and rejects a `t` older than a few minutes (replays); `verify()` below
does this. The event id is stable across retries, so a receiver can ignore duplicates.

Delivery: the event is queued in the database transaction that made the change (a rolled-back
confirm, cancel or update sends nothing) and a small loop here posts it; any 2xx is success, anything else is
retried with exponential backoff (1 s, 2 s, 4 s ... up to 1 h) for MAX_ATTEMPTS attempts. The Beckn
outbox (beckn/outbox.py) is not reused: it adds the Beckn Authorization signature to every post,
counts a 2xx as delivered only with a Beckn ACK body (a plain webhook receiver answers none, so
every event would be retried until it expired), and a signature made once at enqueue time would
carry a stale `t` on retries, failing receivers' replay window. Each attempt here signs afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bpp.catalogue import money
from bpp.merchants import merchant_auth
from bpp.tables import BppMerchantWebhook, BppOrder, BppProviderProfile, BppWebhookDelivery

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Lakou-Signature"
MAX_ATTEMPTS = 12  # 1 s + 2 s + ... + 1 h: about two and a half hours of retries
MAX_BACKOFF_SECONDS = 3600
POLL_SECONDS = 0.5
REQUEST_TIMEOUT = 10.0
LEASE_SECONDS = 60  # another BPP process leaves a claimed event alone this long
TOLERANCE_SECONDS = 300
_LOOPBACK_NAMES = {"localhost"}


# ------------------------------------------------------------------------------ signing


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Lakou-Signature` value for `body`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """True when `header` signs `body` with `secret` and is at most `tolerance` seconds old."""
    parts: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


# ------------------------------------------------------------------------------ events


async def order_created(session: AsyncSession, row: BppOrder) -> None:
    """Queue the `order.created` event for the order's merchant, if it has a webhook, in the
    caller's transaction. Orders of operator-owned providers (no merchant) have none."""
    await order_event(session, row, "order.created")


async def order_event(session: AsyncSession, row: BppOrder, event_type: str, **extra: Any) -> None:
    """Queue an `order.*` event about `row` for its merchant, if it has a webhook, in the caller's
    transaction. `extra` joins `data`: ids, amounts and names only, never personal data."""
    profile = await session.get(BppProviderProfile, row.provider_id)
    hook = await session.get(BppMerchantWebhook, profile.merchant_id) if profile is not None else None
    if hook is None:
        return
    event_id = "evt_" + secrets.token_hex(16)
    event = {"id": event_id, "type": event_type, "created": int(time.time()), "data": {
        "order_id": row.id, "provider_id": row.provider_id, "status": row.status, "total": money(row.total),
        "currency": row.currency, "fulfillment_type": row.fulfillment.get("type"), **extra}}
    session.add(BppWebhookDelivery(merchant_id=hook.merchant_id, event_id=event_id, url=hook.url, status="PENDING",
                                   body=json.dumps(event, separators=(",", ":")).encode()))
    await session.flush()


# ------------------------------------------------------------------------------ delivery


class WebhookWorker:
    """Posts due events until stopped; several BPP processes may run one (claims are leased)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._http = httpx.AsyncClient(follow_redirects=False, timeout=REQUEST_TIMEOUT)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end deliveries
                log.warning("webhook.loop_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)

    async def run_once(self) -> int:
        now = datetime.now(UTC)
        async with self.sessions() as session:
            due = (await session.execute(
                select(BppWebhookDelivery).where(BppWebhookDelivery.status == "PENDING",
                                                 BppWebhookDelivery.next_attempt_at <= now)
                .order_by(BppWebhookDelivery.next_attempt_at).limit(20))).scalars().all()
            claimed = []
            for event in due:
                # Claim by a conditional UPDATE: only one process wins an event's attempt.
                won = await session.execute(
                    update(BppWebhookDelivery)
                    .where(BppWebhookDelivery.id == event.id, BppWebhookDelivery.status == "PENDING",
                           BppWebhookDelivery.attempts == event.attempts)
                    .values(attempts=event.attempts + 1, next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
                    .execution_options(synchronize_session=False))
                if won.rowcount == 1:
                    claimed.append((event.id, event.merchant_id, event.url, event.body, event.attempts + 1))
            await session.commit()
        for claim in claimed:
            await self._deliver(*claim)
        return len(claimed)

    async def _deliver(self, event_id: int, merchant_id: str, url: str, body: bytes, attempt: int) -> None:
        async with self.sessions() as session:
            hook = await session.get(BppMerchantWebhook, merchant_id)
        error: str | None
        if hook is None:
            error = "the merchant removed its webhook"
            attempt = MAX_ATTEMPTS
        else:
            try:
                response = await self._http.post(url, content=body, headers={
                    "Content-Type": "application/json", SIGNATURE_HEADER: sign(hook.secret, body)})
                error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
        values: dict[str, Any] = {"last_error": error}
        if error is None:
            values["status"] = "DELIVERED"
        elif attempt >= MAX_ATTEMPTS:
            values["status"] = "FAILED"
        else:
            backoff = min(2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            values["next_attempt_at"] = datetime.now(UTC) + timedelta(seconds=backoff)
        async with self.sessions() as session:
            await session.execute(update(BppWebhookDelivery).where(BppWebhookDelivery.id == event_id).values(**values))
            await session.commit()
        log.info("webhook.attempt", event=event_id, merchant_id=merchant_id, attempt=attempt,
                 outcome=values.get("status", "RETRY"), error=error)

    async def aclose(self) -> None:
        await self._http.aclose()


# ------------------------------------------------------------------------------ API


def url_allowed(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=500, examples=["https://panier-lea.mq/lakou/webhook"],
                     description="https, or http to a loopback host for development.")

    @field_validator("url")
    @classmethod
    def _allowed(cls, value: str) -> str:
        if not url_allowed(value):
            raise ValueError("the webhook URL must be https (or http to 127.0.0.1, ::1 or localhost)")
        return value


class WebhookOut(BaseModel):
    url: str
    created_at: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Signs every event (HMAC-SHA256); shown once, only now.")
    signature_header: str = SIGNATURE_HEADER


def webhook_routes(sessions: async_sessionmaker[AsyncSession]) -> APIRouter:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:  # noqa: ARG001 - FastAPI's signature
        worker, stop = WebhookWorker(sessions), asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task
            await worker.aclose()

    router = APIRouter(prefix="/api/v1/merchant", tags=["merchant webhooks"], lifespan=lifespan,
                       responses={401: {"description": "Missing, unknown or revoked API key"}})
    current_merchant = merchant_auth(sessions)

    @router.put("/webhook", response_model=WebhookCreated, summary="Register (or replace) the webhook; new secret")
    async def put_webhook(body: WebhookIn, merchant_id: str = Depends(current_merchant)) -> WebhookCreated:
        secret = "whsec_" + secrets.token_urlsafe(32)
        async with sessions() as session:
            hook = await session.get(BppMerchantWebhook, merchant_id)
            if hook is None:
                hook = BppMerchantWebhook(merchant_id=merchant_id, url=body.url, secret=secret)
                session.add(hook)
            else:
                hook.url, hook.secret, hook.created_at = body.url, secret, datetime.now(UTC)
            await session.commit()
            return WebhookCreated(url=hook.url, created_at=hook.created_at.isoformat(), secret=secret)

    @router.get("/webhook", response_model=WebhookOut, summary="The registered webhook (not its secret)",
                responses={404: {"description": "No webhook registered"}})
    async def get_webhook(merchant_id: str = Depends(current_merchant)) -> WebhookOut:
        async with sessions() as session:
            hook = await session.get(BppMerchantWebhook, merchant_id)
        if hook is None:
            raise HTTPException(404, "no webhook registered")
        return WebhookOut(url=hook.url, created_at=hook.created_at.isoformat())

    @router.delete("/webhook", status_code=204, summary="Stop the events")
    async def delete_webhook(merchant_id: str = Depends(current_merchant)) -> Response:
        async with sessions() as session:
            hook = await session.get(BppMerchantWebhook, merchant_id)
            if hook is not None:
                await session.delete(hook)
                await session.commit()
        return Response(status_code=204)

    return router


__all__ = ["SIGNATURE_HEADER", "WebhookWorker", "order_created", "order_event", "sign", "url_allowed", "verify",
           "webhook_routes"]
