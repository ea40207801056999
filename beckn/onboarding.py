"""The subscriber's side of registry onboarding (Beckn core registry.yaml; digest §6.1).

Two halves, both run by every node (beckn/node.py):

* `POST {subscriber_url}/on_subscribe`: the registry sends `{subscriber_id, unique_key_id,
  status, challenge}`, signed with its own key (BECKN-006 `Authorization`). The node checks that
  signature against the registry's key, decrypts the challenge with its X25519 private key and
  the registry's X25519 public key (beckn/challenge.py) and answers `{"answer": <plaintext>}`.
  Unsigned or wrongly signed challenges are refused with 401: answering them would let anyone
  learn whether this node holds a key, and a registry always signs.
* `POST {registry}/subscribe`: a core `Subscription` plus a fresh `nonce`, signed with the
  node's key, retried with backoff until the registry answers SUBSCRIBED or
  UNDER_SUBSCRIPTION. While UNDER_SUBSCRIPTION (gateways always, other roles when the network
  does not auto-approve) the node watches `/lookup` for the operator's approval.

Trust in the registry's key. Preferred: configured out of band
(`LAKOU_REGISTRY_SIGNING_PUBLIC_KEY`, plus `LAKOU_REGISTRY_ENCR_PUBLIC_KEY` and
`LAKOU_REGISTRY_SUBSCRIBER_ID`), as registry.yaml asks ("published out of band"). Unset, the node
fetches `GET {registry}/registry-key` once per process and trusts what it gets: this is
TRUST ON FIRST USE. Whoever can answer for the registry URL at that moment (a spoofed DNS entry,
a plain-http path through a hostile network) could then sign challenges the node would accept.
The damage is bounded (a challenge only makes the node prove it holds its own key; nothing it
sends is secret) but production nodes should pin the key. The encryption key alone is not a trust
anchor (a wrong one only makes decryption fail), so fetching it next to a pinned signing key is safe.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from nacl.signing import VerifyKey

from beckn.challenge import ChallengeError, solve_challenge
from beckn.errors import BecknError, ErrorCode
from beckn.http import BodyTooLarge, read_body
from beckn.keys import KeyFormatError, load_verify_key, load_x25519_public
from beckn.registry_client import RegistryClient, RegistryUnavailable
from beckn.signing import (
    AUTHORIZATION,
    SignatureError,
    Signer,
    body_digest,
    check_signature_times,
    parse_signature_header,
    verify_signature,
)

log = structlog.get_logger(__name__)

ON_SUBSCRIBE_PATH = "/on_subscribe"
# A challenge is `{subscriber_id, unique_key_id, status, challenge}`: a few hundred bytes.
ON_SUBSCRIBE_MAX_BYTES = 64 * 1024
SUBSCRIBED = "SUBSCRIBED"
UNDER_SUBSCRIPTION = "UNDER_SUBSCRIPTION"
PENDING = "pending"
# The registry waits up to its own on_subscribe timeout (10 s by default) inside our /subscribe.
SUBSCRIBE_TIMEOUT_SECONDS = 30.0
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 60.0
_SNIPPET = 300


# ------------------------------------------------------------------ the registry's keys


class RegistryKeyUnavailable(Exception):
    """The registry's keys could not be read; the message says why."""


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    subscriber_id: str | None  # None: any keyId id is accepted if the key verifies
    verify_key: VerifyKey
    encr_public_key: str
    source: str  # "configured", or "trust-on-first-use" when read from /registry-key


class RegistryTrust:
    """The registry's signing and encryption keys: configured, else fetched once (TOFU)."""

    def __init__(
        self,
        registry_url: str,
        http: httpx.AsyncClient,
        *,
        signing_public_key: str | None = None,
        encr_public_key: str | None = None,
        subscriber_id: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.key_url = registry_url.rstrip("/") + "/registry-key"
        self._http = http
        self._timeout = timeout
        self._subscriber_id = subscriber_id or None
        # A malformed configured key stops the start here, with its reason, not at the first challenge.
        try:
            self._verify_key = load_verify_key(signing_public_key) if signing_public_key else None
            if encr_public_key:
                load_x25519_public(encr_public_key)
        except KeyFormatError as exc:
            raise ValueError(f"registry key in settings (LAKOU_REGISTRY_SIGNING_PUBLIC_KEY / "
                             f"LAKOU_REGISTRY_ENCR_PUBLIC_KEY) is unusable: {exc}") from None
        self._encr_public_key = encr_public_key or None
        self._keys: RegistryKeys | None = None
        if self._verify_key is not None and self._encr_public_key is not None:
            self._keys = RegistryKeys(self._subscriber_id, self._verify_key, self._encr_public_key, "configured")
        self._lock = asyncio.Lock()

    async def keys(self) -> RegistryKeys:
        if self._keys is not None:
            return self._keys
        async with self._lock:
            if self._keys is None:
                self._keys = await self._fetch()
        return self._keys

    async def _fetch(self) -> RegistryKeys:
        try:
            response = await self._http.get(self.key_url, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise RegistryKeyUnavailable(f"GET {self.key_url} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise RegistryKeyUnavailable(f"GET {self.key_url} answered HTTP {response.status_code}: "
                                         f"{response.text[:_SNIPPET]}")
        try:
            published = response.json()
            signing = published["signing_public_key"]
            encr = published["encr_public_key"]
            published_id = published.get("subscriber_id")
            verify_key = load_verify_key(signing)
            load_x25519_public(encr)
        except (ValueError, KeyError, TypeError, KeyFormatError) as exc:
            raise RegistryKeyUnavailable(f"GET {self.key_url} did not publish usable signing_public_key and "
                                         f"encr_public_key: {type(exc).__name__}: {str(exc)[:_SNIPPET]}") from None
        if self._verify_key is not None:
            if bytes(self._verify_key) != bytes(verify_key):
                log.warning("node.registry_key_differs", url=self.key_url,
                            detail="the registry publishes another signing key than LAKOU_REGISTRY_SIGNING_PUBLIC_KEY;"
                                   " the configured key is trusted")
            return RegistryKeys(self._subscriber_id or published_id, self._verify_key,
                                self._encr_public_key or encr, "configured")
        log.warning("node.registry_key_trusted_on_first_use", url=self.key_url, registry_id=published_id,
                    detail="set LAKOU_REGISTRY_SIGNING_PUBLIC_KEY to pin the registry's key instead")
        return RegistryKeys(self._subscriber_id or published_id, verify_key, self._encr_public_key or encr,
                            "trust-on-first-use")


# ------------------------------------------------------------------ answering on_subscribe


class OnSubscribeRefused(Exception):
    """A challenge this node will not answer: HTTP `status_code`, with what is wrong."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class ChallengeAnswerer:
    """Answers the registry's challenges for one node key."""

    trust: RegistryTrust
    subscriber_id: str
    unique_key_id: str
    encr_private_key: str
    skew_seconds: int = 5

    async def answer(self, raw: bytes, authorization: str | None, *, now: float | None = None) -> dict[str, str]:
        """`{"answer": plaintext}`, or `OnSubscribeRefused` saying why."""
        if not authorization:
            raise OnSubscribeRefused(401, "on_subscribe must be signed by the registry: a BECKN-006 Authorization "
                                          "header over the exact body bytes is missing")
        try:
            keys = await self.trust.keys()
        except RegistryKeyUnavailable as exc:
            # Not the caller's fault, and we cannot tell a registry from an impostor: refuse, retryable.
            raise OnSubscribeRefused(503, f"cannot check the registry's signature: {exc}") from None
        try:
            params = parse_signature_header(authorization)
            if keys.subscriber_id is not None and params.subscriber_id != keys.subscriber_id:
                raise SignatureError(f"signed by {params.subscriber_id!r}, not by the registry {keys.subscriber_id!r}")
            check_signature_times(params, now=time.time() if now is None else now, skew_seconds=self.skew_seconds)
            verify_signature(params, keys.verify_key, digest_b64=body_digest(raw))
        except SignatureError as exc:
            whose = ("the registry key in settings" if keys.source == "configured"
                     else f"the registry key fetched from {self.trust.key_url}")
            raise OnSubscribeRefused(401, f"on_subscribe signature refused (checked against {whose}): "
                                          f"{exc.reason}") from None
        payload = _json_object(raw)
        challenge = payload.get("challenge")
        if not isinstance(challenge, str) or not challenge:
            raise OnSubscribeRefused(400, 'on_subscribe body needs "challenge": the encrypted challenge string')
        sid = payload.get("subscriber_id")
        if sid is not None and sid != self.subscriber_id:
            raise OnSubscribeRefused(400, f"this challenge is for {str(sid)[:100]!r}; this node is "
                                          f"{self.subscriber_id!r}")
        ukid = next((payload[k] for k in ("unique_key_id", "ukId", "pub_key_id", "key_id") if k in payload), None)
        if ukid is not None and ukid != self.unique_key_id:
            raise OnSubscribeRefused(400, f"this challenge is for key {str(ukid)[:100]!r}; this node holds key "
                                          f"{self.unique_key_id!r} (a key it no longer has cannot be proven)")
        try:
            plaintext = solve_challenge(challenge, self.encr_private_key, keys.encr_public_key)
        except ChallengeError as exc:
            raise OnSubscribeRefused(400, f"cannot decrypt the challenge: {exc}") from None
        log.info("node.on_subscribe_answered", registry=params.subscriber_id, status=payload.get("status"),
                 unique_key_id=self.unique_key_id)
        return {"answer": plaintext}


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError:
        raise OnSubscribeRefused(400, "on_subscribe body is not JSON") from None
    if not isinstance(payload, dict):
        raise OnSubscribeRefused(400, "on_subscribe body must be a JSON object with a challenge")
    return payload


def on_subscribe_router(answerer: ChallengeAnswerer, *, prefix: str = "") -> APIRouter:
    router = APIRouter(prefix=prefix)

    async def on_subscribe(request: Request) -> JSONResponse:
        """registry.yaml `/on_subscribe`: the registry's signed challenge; the answer is its plaintext."""
        try:
            raw = await read_body(request, ON_SUBSCRIBE_MAX_BYTES)
            return JSONResponse(await answer_or_refuse(answerer, raw, request.headers.get(AUTHORIZATION)))
        except BodyTooLarge:
            return _refusal(OnSubscribeRefused(413, f"on_subscribe body exceeds {ON_SUBSCRIBE_MAX_BYTES} bytes"))
        except OnSubscribeRefused as exc:
            return _refusal(exc)

    router.add_api_route(ON_SUBSCRIBE_PATH, on_subscribe, methods=["POST"], name="on_subscribe",
                         summary="Answer the registry's on_subscribe challenge", tags=["onboarding"],
                         response_model=None)
    return router


async def answer_or_refuse(answerer: ChallengeAnswerer, raw: bytes, authorization: str | None) -> dict[str, str]:
    try:
        return await answerer.answer(raw, authorization)
    except OnSubscribeRefused as exc:
        log.warning("node.on_subscribe_refused", http_status=exc.status_code, reason=exc.message[:_SNIPPET])
        raise


def _refusal(exc: OnSubscribeRefused) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Signature realm="on_subscribe",headers="(created) (expires) digest"'} \
        if exc.status_code == 401 else None
    return JSONResponse({"error": BecknError(ErrorCode.INVALID_REQUEST, exc.message).to_json()},
                        status_code=exc.status_code, headers=headers)


# ------------------------------------------------------------------ subscribing


class SubscribeRefused(Exception):
    """The registry did not accept the subscription; `message` is its own words."""

    def __init__(self, status_code: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class SubscribeOutcome:
    status: str  # SUBSCRIBED or UNDER_SUBSCRIPTION
    message: str


def subscription(record: Mapping[str, Any], *, nonce: str | None = None) -> dict[str, Any]:
    """A node's registration record as a core registry.yaml `Subscription` plus `nonce`."""
    location: dict[str, Any] = {}
    if record.get("country"):
        location["country"] = {"code": record["country"]}
    if record.get("city"):
        location["city"] = {"code": record["city"]}
    body: dict[str, Any] = {
        "subscriber_id": record["subscriber_id"],
        "url": record["url"],
        "type": record["type"],
        "domain": record.get("domain", ""),
        "key_id": record["unique_key_id"],
        "signing_public_key": record["signing_public_key"],
        "encr_public_key": record["encr_public_key"],
        "valid_from": record["valid_from"],
        "valid_until": record["valid_until"],
        "nonce": nonce or str(uuid.uuid4()),
    }
    if location:
        body["location"] = location
    if record.get("log_vkey"):  # the transaction-log key (issue 8), a Lakou extension
        body["log_vkey"] = record["log_vkey"]
    return body


async def subscribe(http: httpx.AsyncClient, registry_url: str, body: Mapping[str, Any], signer: Signer, *,
                    timeout: float = SUBSCRIBE_TIMEOUT_SECONDS) -> SubscribeOutcome:
    """One signed `POST /subscribe`. Raises `SubscribeRefused` (the registry's message) or `httpx.HTTPError`."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    url = registry_url.rstrip("/") + "/subscribe"
    response = await http.post(url, content=content, timeout=timeout,
                               headers={"Content-Type": "application/json", AUTHORIZATION: signer.sign(content)})
    if response.status_code != 200:
        raise SubscribeRefused(response.status_code, _registry_message(response),
                               retry_after=_retry_after(response.headers.get("retry-after")))
    try:
        answer = response.json()
        status = answer["status"]
    except (ValueError, KeyError, TypeError):
        raise SubscribeRefused(200, f"answer without a status: {response.text[:_SNIPPET]}") from None
    if status not in (SUBSCRIBED, UNDER_SUBSCRIPTION):
        raise SubscribeRefused(200, f"answered status {str(status)[:40]!r}: {answer.get('message', '')}")
    return SubscribeOutcome(status, str(answer.get("message", "")))


def _registry_message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return str(error["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:_SNIPPET] or response.reason_phrase


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class Onboarding:
    """Subscribes one node until the registry accepts it, then waits for the operator if it must.

    `status` is PENDING, UNDER_SUBSCRIPTION or SUBSCRIBED; `last_error` the latest refusal."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        registry_url: str,
        trust: RegistryTrust,
        signer: Signer,
        record: Callable[[], Mapping[str, Any]],
        lookup: RegistryClient,
        on_change: Callable[[str], None] | None = None,
        before_first_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.http = http
        self.registry_url = registry_url
        self.trust = trust
        self.signer = signer
        self.record = record
        self.lookup = lookup
        self.on_change = on_change
        self.before_first_attempt = before_first_attempt
        self.status = PENDING
        self.last_error: str | None = None

    def _set(self, status: str) -> None:
        self.status = status
        if self.on_change is not None:
            self.on_change(status)

    async def run(self) -> None:
        if self.before_first_attempt is not None:
            await self.before_first_attempt()
        await self._subscribe_until_accepted()
        if self.status == UNDER_SUBSCRIPTION:
            await self._wait_for_approval()

    async def _subscribe_until_accepted(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            record = self.record()
            try:
                await self.trust.keys()  # a registry without its key cannot challenge us verifiably
                outcome = await subscribe(self.http, self.registry_url, subscription(record), self.signer)
            except SubscribeRefused as exc:
                self.last_error = f"registry refused /subscribe (HTTP {exc.status_code}): {exc.message}"
                wait = max(delay, exc.retry_after or 0.0)
                log.warning("node.subscribe_refused", registry=self.registry_url, http_status=exc.status_code,
                            reason=exc.message[:1000], retry_in_seconds=round(wait, 1))
            except RegistryKeyUnavailable as exc:
                self.last_error = f"registry key unavailable: {exc}"
                wait = delay
                log.warning("node.subscribe_retry", registry=self.registry_url, reason=self.last_error[:1000],
                            retry_in_seconds=round(wait, 1))
            except httpx.HTTPError as exc:
                self.last_error = f"registry unreachable: {type(exc).__name__}: {exc}"
                wait = delay
                log.warning("node.subscribe_retry", registry=self.registry_url, reason=self.last_error[:1000],
                            retry_in_seconds=round(wait, 1))
            else:
                self.last_error = None
                log.info("node.subscribed", registry=self.registry_url, subscriber_id=record["subscriber_id"],
                         unique_key_id=record["unique_key_id"], status=outcome.status, message=outcome.message)
                self._set(outcome.status)
                return
            await asyncio.sleep(wait)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def _wait_for_approval(self) -> None:
        """UNDER_SUBSCRIPTION: the operator approves out of band; /lookup shows SUBSCRIBED entries only."""
        record = self.record()
        delay = 1.0
        while self.status == UNDER_SUBSCRIPTION:
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
            try:
                found = await self.lookup.lookup(subscriber_id=record["subscriber_id"],
                                                 unique_key_id=record["unique_key_id"], type=record["type"])
            except RegistryUnavailable as exc:
                log.warning("node.approval_check_failed", registry=self.registry_url, reason=str(exc)[:_SNIPPET])
                continue
            if any(r.subscriber_id == record["subscriber_id"] and r.unique_key_id == record["unique_key_id"]
                   and (r.type or "").upper() == record["type"] and r.status == SUBSCRIBED for r in found):
                log.info("node.subscription_approved", registry=self.registry_url,
                         subscriber_id=record["subscriber_id"])
                self._set(SUBSCRIBED)


async def wait_until_listening(host: str, port: int, *, timeout: float = 10.0) -> bool:
    """True once something accepts TCP connections on (host, port): our own server, bound after
    the app's startup. The registry calls on_subscribe during /subscribe, so subscribing earlier
    would only earn a 'could not connect' refusal."""
    target = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104 - a wildcard bind is reached on loopback
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout=1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True
    return False


__all__ = [
    "ON_SUBSCRIBE_PATH",
    "PENDING",
    "SUBSCRIBED",
    "UNDER_SUBSCRIPTION",
    "ChallengeAnswerer",
    "OnSubscribeRefused",
    "Onboarding",
    "RegistryKeyUnavailable",
    "RegistryKeys",
    "RegistryTrust",
    "SubscribeOutcome",
    "SubscribeRefused",
    "on_subscribe_router",
    "subscribe",
    "subscription",
    "wait_until_listening",
]
