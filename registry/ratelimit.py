"""Rate limits per caller on the registry's routes (digest §6.2: ONDC allows subscribe 10/min,
lookup 7600/min, vlookup 2100/min per participant, and answers HTTP 429 beyond).

Who is a caller:

* a signed request (`Authorization: Signature keyId="<subscriber_id>|..."`) is counted for its
  claimed subscriber *and* its client address. The keyId is read, not verified (verifying costs a
  store read and an Ed25519 check, and the route does it anyway), so a forged keyId only ever
  spends a budget of the forger's own address, never the real subscriber's elsewhere;
* an unsigned request is counted for its client address (IPv6: its /64, which one host usually
  owns whole, so that a host cannot get fresh budgets by walking its own prefix);
* signed requests from one address also share a ceiling of `signed_callers_per_ip` times the
  per-caller limit, so that inventing keyIds from one address buys at most that many budgets,
  while several honest participants behind one address (a NAT, the loopback demo) each keep
  their own.

Each (route class, caller) has a token bucket holding up to one minute of requests and refilled
continuously: a caller may burst its whole minute at once, then proceeds at the steady rate.
Buckets live in this process's memory: a registry run as several processes (workers, replicas)
keeps one set per process, so a caller spread across them gets up to that many times the limit.
The client address is the ASGI peer; behind a reverse proxy, run uvicorn with
`--forwarded-allow-ips` so that it is the proxy's `X-Forwarded-For`, else every caller shares the
proxy's budget.

Why not the `limits` library: its in-memory storage has no token bucket and no bound on the number
of keys (it only expires a key after its window, so a flood of distinct callers grows it freely)
and it runs its own expiry timer; the bucket below is O(1) per request, evicts idle buckets as it
goes and never holds more than `max_buckets`.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from beckn.errors import BecknError, ErrorCode
from registry.settings import registry_settings

log = structlog.get_logger(__name__)

# Route classes. Exact paths: a dict lookup per request.
SUBSCRIBE, LOOKUP, VLOOKUP, OTHER = "subscribe", "lookup", "vlookup", "other"
_ROUTE_CLASS = {"/subscribe": SUBSCRIBE, "/lookup": LOOKUP, "/v2.0/lookup": LOOKUP, "/vlookup": VLOOKUP}
# Never limited: the liveness probe must answer even while a caller is being refused.
EXEMPT_PATHS = frozenset({"/health"})

# The subscriber part of a BECKN-006 keyId, read without parsing the rest of the header.
_KEY_ID = re.compile(r'keyid\s*=\s*"([^"|\s,\\]{1,255})\|', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests per minute per caller for each route class; 0 means unlimited."""

    subscribe: int = 10
    lookup: int = 7600
    vlookup: int = 2100
    other: int = 7600
    signed_callers_per_ip: int = 20
    max_buckets: int = 100_000

    def per_minute(self, route_class: str) -> int:
        return int(getattr(self, route_class))


class TokenBuckets:
    """Token buckets keyed by any hashable, in least-recently-used order, at most `max_buckets`.

    A bucket that has been idle long enough to be full again is the same as no bucket, so it is
    dropped (checked on the oldest bucket at each call: O(1) amortised). When the bound is hit the
    least recently used bucket goes, which can only ever give its caller a fresh, full budget."""

    def __init__(self, max_buckets: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: OrderedDict[Any, list[float]] = OrderedDict()  # key -> [tokens, last, capacity]
        self._max = max_buckets
        self._clock = clock

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, keys: Iterable[tuple[Any, int]]) -> tuple[float, int]:
        """Spend one token from each (key, per_minute) bucket if every one has a token, and return
        (0, -1); else spend nothing and return the seconds until all would have one, and the
        index of the bucket that waits longest."""
        now = self._clock()
        self._evict_idle(now)
        buckets = []
        wait, binding = 0.0, -1
        for index, (key, per_minute) in enumerate(keys):
            bucket = self._refilled(key, per_minute, now)
            buckets.append(bucket)
            if bucket[0] < 1 and (1 - bucket[0]) * 60.0 / per_minute > wait:
                wait, binding = (1 - bucket[0]) * 60.0 / per_minute, index
        if binding < 0:
            for bucket in buckets:
                bucket[0] -= 1
        return wait, binding

    def _refilled(self, key: Any, per_minute: int, now: float) -> list[float]:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(per_minute), now, float(per_minute)]
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(bucket[2], bucket[0] + (now - bucket[1]) * per_minute / 60.0)
            bucket[1] = now
        return bucket

    def _evict_idle(self, now: float) -> None:
        for _ in range(2):  # two per call outpace the one a call can add
            if not self._buckets:
                return
            key, (tokens, last, capacity) = next(iter(self._buckets.items()))
            if tokens + (now - last) * capacity / 60.0 < capacity:
                return
            del self._buckets[key]


def route_class(path: str) -> str | None:
    """The route class of a request path, None if exempt."""
    if path in EXEMPT_PATHS:
        return None
    return _ROUTE_CLASS.get(path, OTHER)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    host = client[0] if client else ""
    if ":" in host:  # IPv6: its /64
        try:
            return str(ipaddress.IPv6Network((host, 64), strict=False).network_address) + "/64"
        except ValueError:
            return host
    return host or "unknown"


def claimed_subscriber(scope: Scope) -> str | None:
    """The subscriber id an `Authorization: Signature` claims, unverified; None if unsigned."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            match = _KEY_ID.search(value[:2048].decode("latin-1"))
            return match.group(1) if match else None
    return None


class RateLimitMiddleware:
    """ASGI middleware: refuses a caller over its limit with 429, `Retry-After` and a JSON error
    naming the limit, before the route reads a byte of the body."""

    def __init__(self, app: ASGIApp, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.limits = limits
        self.buckets = TokenBuckets(limits.max_buckets, clock)
        self._warned: set[Any] = set()  # callers refused since their last success, logged once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        klass = route_class(scope["path"])
        per_minute = self.limits.per_minute(klass) if klass else 0
        if per_minute <= 0:
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        subscriber = claimed_subscriber(scope)
        if subscriber is None:
            keys = [((klass, address), per_minute)]
        else:
            ceiling = per_minute * max(1, self.limits.signed_callers_per_ip)
            keys = [((klass, address, subscriber), per_minute), ((klass, address, "*signed*"), ceiling)]
        wait, binding = self.buckets.take(keys)
        if binding < 0:
            if self._warned:
                self._warned.discard((klass, address, subscriber))
            await self.app(scope, receive, send)
            return
        await self._refuse(klass, keys[binding][1], subscriber, address, wait, ceiling=binding == 1)(
            scope, receive, send)

    def _refuse(self, klass: str, per_minute: int, subscriber: str | None, address: str,
                wait: float, *, ceiling: bool) -> JSONResponse:
        retry = max(1, math.ceil(wait))
        route = {SUBSCRIBE: "/subscribe", LOOKUP: "/lookup and /v2.0/lookup", VLOOKUP: "/vlookup"}.get(
            klass, "this registry's other routes")
        if ceiling:
            limit = (f"at most {per_minute} signed requests per minute to {route} from one address, "
                     "whatever their keyId")
        else:
            who = f"subscriber {subscriber!r} from your address" if subscriber else "your address (unsigned requests)"
            limit = f"at most {per_minute} requests per minute to {route} per caller, counted for {who}"
        message = f"rate limit exceeded: {limit}; retry in {retry} s (Retry-After)"
        # One log line per caller and bout, not per refused request: a flood must not flood the log.
        # The address is personal data: the log names the route and the claimed subscriber only.
        marker = (klass, address, subscriber)
        if marker not in self._warned:
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned.add(marker)
            log.warning("registry.rate_limited", route_class=klass, per_minute=per_minute,
                        subscriber_id=subscriber)
        error = BecknError(ErrorCode.POLICY_ERROR.value, message).to_json()
        body = {"error": error, "rate_limit": {"route_class": klass, "per_minute": per_minute,
                                               "retry_after_seconds": retry}}
        return JSONResponse(body, status_code=429, headers={"Retry-After": str(retry)})


def install_rate_limits(app: Any, settings: Any) -> None:
    """Add the middleware with the limits of `settings` (a Settings or RegistrySettings)."""
    s = registry_settings(settings)
    app.add_middleware(RateLimitMiddleware, limits=RateLimits(
        subscribe=s.registry_rate_subscribe_per_minute,
        lookup=s.registry_rate_lookup_per_minute,
        vlookup=s.registry_rate_vlookup_per_minute,
        other=s.registry_rate_other_per_minute,
        signed_callers_per_ip=s.registry_rate_signed_callers_per_ip,
        max_buckets=s.registry_rate_max_buckets,
    ))


__all__ = ["RateLimitMiddleware", "RateLimits", "TokenBuckets", "install_rate_limits", "route_class"]
