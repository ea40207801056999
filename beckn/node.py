"""What every Beckn-speaking service (gateway, BPP, BAP) is made of, wired once.

A `BecknNode` owns the store, the node's keys and signer, the registry client and key resolver,
the inbound pipeline with its inbox dispatcher, and the outbox delivery worker. A service's
composition root builds one, mounts `node.beckn_routes()` and `node.health_routes()`, hands its
business handler to it, and runs `node.lifespan` as the app's lifespan. The node knows nothing of
what the service does with a message.

Getting into the registry, one of three ways (`registration_mode`, shown by /health):
* "admin": with LAKOU_REGISTRY_ADMIN_TOKEN the node posts its record to the operator's admin API;
* "subscribe": with LAKOU_REGISTRY_SUBSCRIBE (and no token) it onboards itself through the signed
  /subscribe and the on_subscribe challenge (beckn/onboarding.py);
* "none": the operator registers it by other means; the node does not wait for anything.
Every node answers `{subscriber_url}/on_subscribe` whatever its mode.

The signed transaction log (issue 8, LAKOU_TLOG_ENABLED, on by default): the node logs every Beckn
message it receives (beckn/inbound.py, in the same transaction as the stored message) and every
delivery attempt it makes (beckn/outbox.py), signs a checkpoint every
LAKOU_TLOG_CHECKPOINT_INTERVAL_SECONDS while the log grew, and publishes its log key (separate
from the Beckn signing key, kept in the same key file) at `GET /tlog/vkey`.

Witnessing (C2SP tlog-witness): every node cosigns its peers' checkpoints at
`POST /tlog/witness/add-checkpoint`, and (LAKOU_TLOG_COSIGN) asks the peers it recently exchanged
messages with to cosign its own, each checkpoint interval (beckn/tlog/cosigning.py); /tlog/* is
served at the public URL's root, i.e. the subscriber URL without its final /beckn. The outbox checks
the log receipt of every ACK against the receiver's registered log key (beckn/outbox.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from beckn.http import beckn_router
from beckn.inbound import AcceptedMessage, InboundPipeline, Role
from beckn.inbox import InboxDispatcher
from beckn.keyfile import KEY_FILE, ensure_node_keys, load_log_key
from beckn.keys import load_signing_key
from beckn.onboarding import (
    PENDING,
    SUBSCRIBED,
    ChallengeAnswerer,
    Onboarding,
    RegistryTrust,
    on_subscribe_router,
    wait_until_listening,
)
from beckn.outbox import GATEWAY_AUTHORIZATION, DeliveryWorker, enqueue
from beckn.policy import NetworkPolicy, message_expires_at
from beckn.registry_client import KeyResolver, RegistryClient
from beckn.settings import Settings
from beckn.signing import AUTHORIZATION, Signer
from beckn.store.db import create_engine, session_factory, sqlite_path, upgrade
from beckn.store.tables import OutboxMessage
from beckn.tlog.cosigning import Cosigning
from beckn.tlog.note import NoteSigner
from beckn.tlog.recorder import Checkpointer, LogRecorder
from beckn.tlog.store import TransactionLog, check_log_origin
from beckn.tlog.witness import registry_log_keys

log = structlog.get_logger(__name__)

# Beckn endpoints live under this prefix on every node, apart from each service's own JSON API.
BECKN_PREFIX = "/beckn"
# A reply we build ourselves lives this long unless the request said otherwise.
DEFAULT_TTL = "PT30S"

Handler = Callable[[AcceptedMessage], Awaitable[None]]


def wire_json(envelope: Mapping[str, Any]) -> bytes:
    """The one serialisation of an outgoing message: these exact bytes are signed and sent."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def wire_timestamp(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reply_context(request_context: Mapping[str, Any], action: str, **overrides: Any) -> dict[str, Any]:
    """The context of a callback to a request: same transaction and message, fresh timestamp."""
    context = dict(request_context)
    context.update(action=action, timestamp=wire_timestamp(), **overrides)
    return context


class BecknNode:
    def __init__(
        self,
        settings: Settings,
        *,
        service: str,
        role: Role,
        actions: Iterable[str],
        host: str = "127.0.0.1",
        port: int = 8000,
        registry_record: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.role = role
        self.subscriber_id = settings.subscriber_id or f"{service}.lakou.localhost"
        self.base_url = (settings.public_url or f"http://{host}:{port}").rstrip("/")
        self.subscriber_url = self.base_url + BECKN_PREFIX
        self.database_url = settings.resolved_database_url()
        self.keys = ensure_node_keys(settings.data_dir)
        self.signer = Signer(self.subscriber_id, self.keys["unique_key_id"],
                             load_signing_key(self.keys["signing_private_key"]))
        self.http = httpx.AsyncClient(timeout=settings.delivery_timeout_seconds)
        self.registry = RegistryClient(settings.registry_url, http=self.http)
        self.resolver = KeyResolver(self.registry, max_age_seconds=settings.lookup_cache_seconds)
        # No connection is made here: the engine connects in the server's event loop.
        self.engine = create_engine(self.database_url)
        self.sessions = session_factory(self.engine)
        self.policy = NetworkPolicy(timestamp_skew_seconds=settings.timestamp_skew_seconds)
        # The transaction log: its own key (never the Beckn signing key), named after its origin.
        self.tlog_origin = settings.tlog_origin or f"{self.subscriber_id}/tlog"
        self.log_signer = NoteSigner(self.tlog_origin, load_log_key(self.keys))
        self.tlog: TransactionLog | None = None
        self.recorder: LogRecorder | None = None
        self.checkpointer: Checkpointer | None = None
        self.cosigning: Cosigning | None = None
        # Peers' log keys from the registry, cached: the witness endpoint and the outbox's receipt
        # checks share one cache (and one lookup per subscriber a minute).
        self.log_keys = registry_log_keys(self.registry)
        if settings.tlog_enabled:
            self.tlog = TransactionLog(self.sessions, self.log_signer, self.tlog_origin)
            self.recorder = LogRecorder(self.tlog, self.subscriber_id)
            self.checkpointer = Checkpointer(self.tlog, settings.tlog_checkpoint_interval_seconds)
            if settings.tlog_cosign:
                # Its own loop beside the checkpointer's, reading the checkpoints it stored: a slow
                # or dead witness never delays a checkpoint.
                self.cosigning = Cosigning(
                    self.tlog, self.sessions, self.log_keys, self.subscriber_id,
                    interval=settings.tlog_checkpoint_interval_seconds, http=self.http,
                    max_peers=settings.tlog_cosign_peers_max, recent_entries=settings.tlog_cosign_recent_entries,
                    timeout=settings.tlog_cosign_timeout_seconds, concurrency=settings.tlog_cosign_concurrency)
        self.pipeline = InboundPipeline(
            sessions=self.sessions, resolver=self.resolver, receiver_id=self.subscriber_id, role=role,
            signature_skew_seconds=settings.signature_skew_seconds, max_body_bytes=settings.max_body_bytes,
            tlog=self.recorder,
        )
        self.worker = DeliveryWorker(
            self.sessions, self.signer,
            request_timeout=settings.delivery_timeout_seconds,
            lease_seconds=max(30.0, 2 * settings.delivery_timeout_seconds),
            poll_interval=0.5,
            tlog=self.recorder,
            receipt_keys=self.log_keys,
        )
        self.actions = tuple(actions)
        self._handler: Handler | None = None
        self._dispatcher = InboxDispatcher(self.sessions, self._dispatch)
        self._registry_record = dict(registry_record or {})
        # Every node answers the registry's on_subscribe challenge, whichever way it registers.
        self.registry_trust = RegistryTrust(
            settings.registry_url, self.http, signing_public_key=settings.registry_signing_public_key,
            encr_public_key=settings.registry_encr_public_key, subscriber_id=settings.registry_subscriber_id)
        self.challenge_answerer = ChallengeAnswerer(
            self.registry_trust, self.subscriber_id, self.keys["unique_key_id"],
            self.keys["encryption_private_key"], skew_seconds=settings.signature_skew_seconds)
        # How this node gets into the registry: the operator's admin API (token), its own signed
        # /subscribe, or neither (the operator registers it by other means: nothing to wait for).
        self.registration_mode = ("admin" if settings.registry_admin_token
                                  else "subscribe" if settings.registry_subscribe else "none")
        self.registration_status = PENDING if self.registration_mode != "none" else "unmanaged"
        self._host, self._port = host, port
        self.onboarding: Onboarding | None = None
        if self.registration_mode == "subscribe":
            self.onboarding = Onboarding(
                http=self.http, registry_url=settings.registry_url, trust=self.registry_trust, signer=self.signer,
                record=self.registration, lookup=self.registry, on_change=self._registration_changed,
                before_first_attempt=self._wait_listening)
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()

    # ------------------------------------------------------------------ wiring

    def on_message(self, handler: Handler) -> None:
        """Set the business handler; it runs after the ACK, from the stored message."""
        self._handler = handler

    async def _dispatch(self, message: AcceptedMessage) -> None:
        if self._handler is not None:
            await self._handler(message)

    def beckn_routes(self) -> APIRouter:
        router = beckn_router(self.pipeline, self.actions, on_accepted=self._on_accepted, prefix=BECKN_PREFIX)
        # Under the same prefix: the registry calls `{subscriber_url}/on_subscribe`.
        router.include_router(on_subscribe_router(self.challenge_answerer))
        return router

    async def _on_accepted(self, message: AcceptedMessage) -> None:
        await self._dispatcher.dispatch(message)

    def health_routes(self, extra: Callable[[], Mapping[str, Any]] | None = None) -> APIRouter:
        router = APIRouter()

        async def health() -> JSONResponse:
            body, healthy = await self.health()
            if extra is not None:
                body.update(extra())
            return JSONResponse(body, status_code=200 if healthy else 503)

        router.add_api_route("/health", health, methods=["GET"], tags=["operations"], summary="Liveness and readiness",
                             response_model=None)
        # Mounted with /health so that every service gets it without wiring of its own.
        router.include_router(self.tlog_routes())
        return router

    def tlog_routes(self) -> APIRouter:
        """`GET /tlog/vkey`, and the auditor API and witness endpoint (beckn/tlog/api.py, witness.py)."""
        router = APIRouter()
        vkey = self.log_signer.vkey

        async def log_vkey() -> PlainTextResponse:
            return PlainTextResponse(vkey + "\n")

        router.add_api_route("/tlog/vkey", log_vkey, methods=["GET"], tags=["transaction log"],
                             summary="This node's transaction-log key (C2SP note verifier key)",
                             response_class=PlainTextResponse)
        if self.tlog is not None:
            router.include_router(self._tlog_extra_routes())
        return router

    def _tlog_extra_routes(self) -> APIRouter:
        router = APIRouter()
        assert self.tlog is not None
        try:
            from beckn.tlog.api import tlog_router
        except ImportError:  # the auditor API ships separately; the log works without it
            tlog_router = None  # type: ignore[assignment]
        try:
            from beckn.tlog.witness import Cosignatures, witness_router
        except ImportError:
            witness_router = None  # type: ignore[assignment]
        if tlog_router is not None:
            source = None
            if witness_router is not None:
                from beckn.tlog.note import parse_checkpoint, parse_note

                stored = Cosignatures(self.sessions)

                async def source(note: str) -> list[str]:  # the witnesses' lines for this checkpoint
                    text, _ = parse_note(note)
                    return await stored.lines(parse_checkpoint(text).size)

            router.include_router(tlog_router(self.tlog, auditor_tokens=self.settings.tlog_auditor_tokens,
                                              cosignatures=source))
        if witness_router is not None:
            router.include_router(witness_router(self.sessions, self.log_signer, self.log_keys))
        return router

    async def health(self) -> tuple[dict[str, Any], bool]:
        database = "ok"
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health probe
            database = f"unavailable: {type(exc).__name__}"
        healthy = database == "ok"
        return {
            "status": "ok" if healthy else "degraded",
            "service": self.service,
            "subscriber_id": self.subscriber_id,
            "subscriber_url": self.subscriber_url,
            "unique_key_id": self.signer.unique_key_id,
            "database": database,
            "registered": self.registered,
            "registration": self.registration_status,
            "registration_mode": self.registration_mode,
            **({"registration_error": self.onboarding.last_error}
               if self.onboarding is not None and self.onboarding.last_error else {}),
            **({"tlog": self._tlog_health()} if self.tlog is not None else {}),
        }, healthy

    def _tlog_health(self) -> dict[str, Any]:
        """Counters only (ids of peers, no message data): receipts of ACKs, the last cosigning round."""
        body: dict[str, Any] = {"receipts": dict(self.worker.receipts)}
        if self.cosigning is not None:
            status = self.cosigning.peer_status
            body["cosigning"] = {
                "cosigned_by": sorted(p for p, s in status.items() if s == "cosigned"),
                "failing": sorted(p for p, s in status.items() if s not in ("cosigned", "skipped")),
            }
        return body

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        session: Any,
        destination_url: str,
        envelope: Mapping[str, Any],
        *,
        signature_header: str = AUTHORIZATION,
        extra_headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> OutboxMessage:
        """Queue `envelope` (or the exact `body`) for signed delivery in the caller's transaction.

        The message is retried until its context's timestamp + ttl. Call `wake()` after commit."""
        context = envelope["context"]
        expires_at = message_expires_at(context) or datetime.now(UTC) + timedelta(seconds=30)
        return await enqueue(
            session,
            destination_url=destination_url.rstrip("/") + "/" + context["action"],
            action=context["action"],
            body=body if body is not None else wire_json(envelope),
            transaction_id=context["transaction_id"],
            message_id=context["message_id"],
            expires_at=expires_at,
            signature_header=signature_header,
            extra_headers=extra_headers,
        )

    def wake(self) -> None:
        self.worker.wake()

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:  # noqa: ARG002 - FastAPI's signature
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        path = sqlite_path(self.database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        await upgrade(self.database_url)
        if self.tlog is not None:
            await check_log_origin(self.sessions, self.tlog_origin, "this node's")
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self.worker.run(self._stop), name=f"{self.service}-outbox"),
            asyncio.create_task(self._recover(), name=f"{self.service}-inbox-recover"),
        ]
        if self.checkpointer is not None:
            self._tasks.append(asyncio.create_task(self.checkpointer.run(self._stop),
                                                   name=f"{self.service}-tlog-checkpoints"))
        if self.cosigning is not None:
            self._tasks.append(asyncio.create_task(self.cosigning.run(self._stop), name=f"{self.service}-tlog-cosigning"))
        if self.registration_mode == "admin" and not self.registered:
            self._tasks.append(asyncio.create_task(self._register_until_done(), name=f"{self.service}-register"))
        elif self.onboarding is not None and self.registration_status != SUBSCRIBED:
            self._tasks.append(asyncio.create_task(self.onboarding.run(), name=f"{self.service}-subscribe"))
        log.info("node.started", service=self.service, subscriber_id=self.subscriber_id, url=self.subscriber_url)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks[1:]:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout=10)
        await self.worker.aclose()
        await self.pipeline.aclose()
        await self.http.aclose()
        await self.engine.dispose()

    async def _recover(self) -> None:
        try:
            replayed = await self._dispatcher.recover()
        except Exception as exc:  # noqa: BLE001 - a store outage at start must not stop the service
            log.error("node.inbox_recover_failed", error_type=type(exc).__name__)
            return
        if replayed:
            log.info("node.inbox_recovered", messages=replayed)

    # ------------------------------------------------------------------ registration

    @property
    def registered(self) -> bool:
        """In the network: SUBSCRIBED (by the admin API or /subscribe), or registered by other means."""
        return self.registration_status in (SUBSCRIBED, "unmanaged")

    def _registration_changed(self, status: str) -> None:
        self.registration_status = status
        if status == SUBSCRIBED:
            # A lookup cached while we were not yet in the registry must not outlive our entry.
            self.resolver.invalidate(self.subscriber_id, self.signer.unique_key_id)

    async def _wait_listening(self) -> None:
        if not await wait_until_listening(self._host, self._port):
            log.warning("node.not_listening_yet", host=self._host, port=self._port,
                        detail="subscribing anyway; the registry's on_subscribe may fail and will be retried")

    def registration(self) -> dict[str, Any]:
        """This node's participant record, as the registry's admin API takes it."""
        # Whole seconds: a BECKN-006 `created` is a whole second, so a key valid from 12:00:00.289
        # would refuse what the node signs at once (created=12:00:00) with "not valid before".
        now = datetime.now(UTC).replace(microsecond=0)
        record: dict[str, Any] = {
            "subscriber_id": self.subscriber_id,
            "type": self.role.value,
            "url": self.subscriber_url,
            "domain": self.settings.domain,
            "city": self.settings.city,
            "country": self.settings.country,
            "unique_key_id": self.keys["unique_key_id"],
            "signing_public_key": self.keys["signing_public_key"],
            "encr_public_key": self.keys["encryption_public_key"],
            # Published with the Beckn key, so peers, witnesses and auditors learn the log key
            # from the registry (the node also serves it at GET /tlog/vkey).
            "log_vkey": self.log_signer.vkey,
            "valid_from": wire_timestamp(now),
            "valid_until": wire_timestamp(now + timedelta(days=365)),
        }
        record.update(self._registry_record)
        return record

    async def register(self) -> None:
        """Register (or refresh) this node's record and key at the registry's admin API."""
        response = await self.http.post(
            self.settings.registry_url.rstrip("/") + "/admin/participants",
            json=self.registration(),
            headers={"Authorization": f"Bearer {self.settings.registry_admin_token}"},
        )
        if response.status_code >= 300:
            raise RuntimeError(f"registry refused the registration: HTTP {response.status_code} {response.text[:300]}")
        self._registration_changed(SUBSCRIBED)

    async def _register_until_done(self) -> None:
        delay = 0.2
        while not self.registered:
            try:
                await self.register()
                log.info("node.registered", subscriber_id=self.subscriber_id, registry=self.settings.registry_url)
                return
            except (httpx.HTTPError, RuntimeError) as exc:
                log.warning("node.registration_retry", registry=self.settings.registry_url, error=str(exc)[:300])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


__all__ = [
    "AUTHORIZATION",
    "BECKN_PREFIX",
    "DEFAULT_TTL",
    "GATEWAY_AUTHORIZATION",
    "BecknNode",
    "Handler",
    "KEY_FILE",
    "ensure_node_keys",
    "reply_context",
    "wire_json",
    "wire_timestamp",
]
