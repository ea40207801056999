"""Who the gateway may talk to: registry lookups of BPPs and BAPs, filtered and briefly cached.

The registry is the only source of destinations: a search goes to the registered `url` of each
matching BPP, an `on_search` to the registered `url` of its BAP, never to an address a message
names. Results are re-filtered here because a registry may ignore criteria it does not know
(`RegistryClient` does not filter), and only records usable now (SUBSCRIBED, valid key, within
validity) with a URL are kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from beckn.registry_client import RegistryClient, SubscriberRecord

# Registered values that mean "any": blank (the registry's own convention) and the common "*".
_WILDCARDS = frozenset({"", "*"})

_CacheKey = tuple[tuple[str, str], ...]


def field_matches(registered: str | None, wanted: str | None) -> bool:
    """A registered domain/city/country matches when it is blank (serves everything) or equal; a
    wanted "*" (ONDC's "the whole country", sent by a search that names no commune, e.g. "near
    me") matches every registration."""
    if registered is None or registered.strip() in _WILDCARDS or wanted is None or wanted.strip() in _WILDCARDS:
        return True
    return registered.strip() == wanted.strip()


def _criterion(wanted: str | None) -> str | None:
    """A lookup criterion: "*" asks for every registration, which a registry spells as no criterion."""
    return None if wanted is None or wanted.strip() in _WILDCARDS else wanted


def url_host(url: str | None) -> str:
    try:
        return (urlsplit(url or "").hostname or "").lower()
    except ValueError:
        return ""


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


class Directory:
    """Registry lookups for routing, with a short bounded cache and one lookup per key at a time.

    The cache is only about load: a few seconds of reuse turns a burst of searches for the same
    commune into one registry call. Failures (`RegistryUnavailable`) are never cached.
    """

    def __init__(
        self,
        registry: RegistryClient,
        *,
        own_subscriber_id: str,
        cache_seconds: float = 5.0,
        max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._own_id = own_subscriber_id
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[_CacheKey, tuple[float, tuple[SubscriberRecord, ...]]] = OrderedDict()
        self._inflight: dict[_CacheKey, asyncio.Future[tuple[SubscriberRecord, ...]]] = {}
        self.lookups = 0

    # ------------------------------------------------------------------ routing questions

    async def bpps_for_search(
        self, *, domain: str | None, city: str | None, country: str | None,
        bpp_id: str | None = None, bpp_uri: str | None = None,
    ) -> list[SubscriberRecord]:
        """The BPPs a search goes to: every usable BPP serving its domain, city and country, or,
        when the search names a BPP, only that one (if registered for the domain)."""
        if bpp_id:
            records = await self._lookup(type="BPP", subscriber_id=bpp_id)
            return _unique([r for r in records if r.subscriber_id == bpp_id and field_matches(r.domain, domain)
                            and self._routable(r, "BPP")])
        records = await self._lookup(type="BPP", domain=domain, city=_criterion(city), country=_criterion(country))
        matching = [
            r for r in records
            if self._routable(r, "BPP") and field_matches(r.domain, domain) and field_matches(r.city, city)
            and field_matches(r.country, country)
        ]
        if bpp_uri:  # addressed by URI only: the registered BPP at that address, if any
            matching = [r for r in matching if r.url and _same_url(r.url, bpp_uri)]
        return _unique(matching)

    async def bap(self, bap_id: str) -> list[SubscriberRecord]:
        """The usable registry records of one BAP (several if it has several keys)."""
        records = await self._lookup(type="BAP", subscriber_id=bap_id)
        return [r for r in records if r.subscriber_id == bap_id and self._routable(r, "BAP")]

    # ------------------------------------------------------------------ internals

    def _routable(self, record: SubscriberRecord, role: str) -> bool:
        return (
            record.type == role
            and bool(record.url)
            and record.subscriber_id != self._own_id  # never loop a message back to ourselves
            and record.usable_at(datetime.now(UTC)) is None
        )

    async def _lookup(self, **criteria: str | None) -> tuple[SubscriberRecord, ...]:
        key: _CacheKey = tuple(sorted((k, v) for k, v in criteria.items() if v is not None))
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            self._cache.move_to_end(key)
            return cached[1]
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fetch(key))
            self._inflight[key] = future
            future.add_done_callback(lambda f: self._done(key, f))
        # shield: one caller going away must not cancel the lookup others wait for.
        return await asyncio.shield(future)

    async def _fetch(self, key: _CacheKey) -> tuple[SubscriberRecord, ...]:
        self.lookups += 1
        records = tuple(await self._registry.lookup(**dict(key)))
        if self._cache_seconds > 0:
            self._cache[key] = (self._clock() + self._cache_seconds, records)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return records

    def _done(self, key: _CacheKey, future: asyncio.Future[tuple[SubscriberRecord, ...]]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            future.exception()  # mark retrieved: every waiter may have gone


def _unique(records: list[SubscriberRecord]) -> list[SubscriberRecord]:
    """One destination per subscriber (several keys mean several records) and per URL (the same
    bytes sent twice to one address would only be refused as a duplicate)."""
    seen_ids: set[str] = set()
    seen_urls: set[str] = set()
    out: list[SubscriberRecord] = []
    for record in records:
        url = (record.url or "").rstrip("/").lower()
        if record.subscriber_id in seen_ids or url in seen_urls:
            continue
        seen_ids.add(record.subscriber_id)
        seen_urls.add(url)
        out.append(record)
    return out
