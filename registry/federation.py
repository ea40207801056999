"""Federation: a `/lookup` that finds nothing here asks the trusted partner registries.

A partner is a registry of another territory (Guadeloupe for Martinique), configured by the
operator with its registry id, base URL and Ed25519 signing public key (LAKOU_REGISTRY_PARTNERS,
registry/settings.py). When the local tables have no match:

* every partner not already visited is asked in parallel (`POST <url>/lookup` with the same
  criteria), each within `timeout` seconds;
* an answer counts only if its X-Registry-Signature verifies with *that partner's configured key*
  and names that partner's id (registry/signed_response.py); unsigned, badly signed, non-200 or
  unreadable answers are discarded and logged, never trusted;
* each result keeps every field and gains `"origin_registry": "<partner id>"` (an origin set by
  a partner further away is kept);
* a partner never speaks for a subscriber registered here (any status): otherwise a partner could
  slip a key of its own under one of our participants' ids;
* verified answers, empty ones too, are cached per partner and criteria for `cache_seconds`
  (bounded LRU); failures for a few seconds only, so that a partner down costs one timeout, not
  one per lookup;
* where a partner failed, or for an origin not configured as a live partner, the entries of an
  imported signed snapshot (registry/snapshot.py) are used instead;
* loops: the request carries `X-Lakou-Federation-Hops` (how many registries it went through)
  and `X-Lakou-Federation-Visited` (their ids). A registry asked with hops >= max_hops (1 by
  default: a registry asked by a partner never asks further) answers from its own tables only,
  and a registry never asks one already visited, nor itself.

The combined answer is then signed by this registry as usual: a node trusts its own registry,
which vouches for having verified the partner's signature.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from nacl.signing import VerifyKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.keys import KeyFormatError, load_verify_key
from beckn.settings import Settings
from beckn.signing import SignatureError
from registry.errors import bad_request
from registry.lookup import LookupFilter
from registry.settings import registry_settings
from registry.signed_response import RESPONSE_SIGNATURE_HEADER, verify_lookup_response
from registry.snapshot import SnapshotStore
from registry.tlog import RegistryLog, Trace
from registry.tables import RegistryParticipant
from registry.vocabulary import wire_time

log = structlog.get_logger(__name__)

HOPS_HEADER = "X-Lakou-Federation-Hops"
VISITED_HEADER = "X-Lakou-Federation-Visited"
ORIGIN_FIELD = "origin_registry"
FAILURE_CACHE_SECONDS = 5.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_VISITED = 16


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    url: str
    verify_key: VerifyKey


def parse_partners(text: str, source: str = "LAKOU_REGISTRY_PARTNERS") -> list[Partner]:
    """The partner list, or `ValueError` saying exactly which entry is wrong and how."""
    if not text.strip():
        return []
    example = '[{"id": "registry.glp.example", "url": "https://registry.glp.example", "signing_public_key": "<base64>"}]'
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source} is not valid JSON ({exc}); expected e.g. {example}") from None
    if not isinstance(data, list):
        raise ValueError(f"{source} must be a JSON list of partners, e.g. {example}")
    partners: list[Partner] = []
    for index, item in enumerate(data):
        where = f"{source}[{index}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be an object with id, url and signing_public_key")
        values = {}
        for name in ("id", "url", "signing_public_key"):
            value = item.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}.{name} is required and must be a non-empty string")
            values[name] = value.strip()
        url = httpx.URL(values["url"])
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{where}.url must be an absolute http(s) URL, got {values['url']!r}")
        try:
            key = load_verify_key(values["signing_public_key"])
        except KeyFormatError as exc:
            raise ValueError(f"{where}.signing_public_key: {exc} (copy signing_public_key from the partner's "
                             "GET /registry-key)") from None
        if any(p.id == values["id"] for p in partners):
            raise ValueError(f"{where}.id {values['id']!r} is listed twice")
        partners.append(Partner(values["id"], values["url"].rstrip("/"), key))
    return partners


def partners_from_settings(settings: Settings) -> list[Partner]:
    config = registry_settings(settings)
    if config.registry_partners.strip():
        return parse_partners(config.registry_partners)
    if config.registry_partners_file.strip():
        path = Path(config.registry_partners_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"LAKOU_REGISTRY_PARTNERS_FILE {str(path)!r} cannot be read: {exc.strerror}") from None
        return parse_partners(text, f"LAKOU_REGISTRY_PARTNERS_FILE {path}")
    return []


def filter_body(criteria: LookupFilter) -> dict[str, str]:
    """The criteria as a canonical `/lookup` body: only what was asked, nothing else forwarded."""
    body: dict[str, str] = {}
    for name in ("subscriber_id", "domain", "city", "country", "url", "status"):
        value = getattr(criteria, name)
        if value is not None:
            body[name] = value
    if criteria.unique_key_id is not None:
        body["ukId"] = criteria.unique_key_id
    if criteria.type is not None:
        body["type"] = criteria.type.value
    if criteria.valid_at is not None:
        body["valid_at"] = wire_time(criteria.valid_at)
    return body


def read_hops(headers: Mapping[str, str]) -> tuple[int, list[str]]:
    """The incoming hop count and visited registry ids (0 and none from a node), or a 400."""
    raw = (headers.get(HOPS_HEADER) or "0").strip()
    if not raw.isdigit() or len(raw) > 3:
        raise bad_request(f"{HOPS_HEADER} must be a small non-negative integer (the number of registries the "
                          f"lookup went through), got {raw[:20]!r}", HOPS_HEADER)
    visited = [v.strip() for v in (headers.get(VISITED_HEADER) or "").split(",") if v.strip()]
    if len(visited) > MAX_VISITED:
        raise bad_request(f"{VISITED_HEADER} lists {len(visited)} registries; at most {MAX_VISITED}", VISITED_HEADER)
    return int(raw), visited


_Failed = None  # a partner answer that could not be used
_CacheKey = tuple[str, int, tuple[str, ...], str]


class Federation:
    def __init__(
        self,
        own_id: str,
        partners: Sequence[Partner],
        sessions: async_sessionmaker[AsyncSession],
        *,
        snapshots: SnapshotStore | None = None,
        timeout: float = 2.0,
        cache_seconds: float = 60.0,
        max_hops: int = 1,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.own_id = own_id
        self.partners = list(partners)
        self._sessions = sessions
        self._snapshots = snapshots
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._max_hops = max_hops
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[_CacheKey, tuple[float, list[dict[str, Any]] | None]] = OrderedDict()
        self.partner_requests = 0  # how many HTTP lookups were sent to partners (tests, metrics)
        self.tlog: RegistryLog | None = None  # the registry's log: each lookup sent is an entry

    async def lookup(self, criteria: LookupFilter, headers: Mapping[str, str],
                     transaction_id: str | None = None) -> list[dict[str, Any]]:
        """What the partners (and imported snapshots) know for `criteria`, each marked with its origin.
        `transaction_id`: the asking request's exchange in the log, shared by the lookups sent."""
        hops, visited = read_hops(headers)
        if hops >= self._max_hops:
            return []  # asked through federation: our own tables only
        skip = {self.own_id, *visited}
        partners = [p for p in self.partners if p.id not in skip]
        body = filter_body(criteria)
        out_headers = {HOPS_HEADER: str(hops + 1), VISITED_HEADER: ",".join([*visited, self.own_id])}
        answers: list[list[dict[str, Any]] | None] = []
        if partners:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                answers = list(await asyncio.gather(
                    *(self._ask(client, p, body, out_headers, hops + 1, visited, transaction_id)
                      for p in partners)))
        by_origin: list[tuple[str, list[dict[str, Any]]]] = []
        answered: set[str] = set(skip)
        for partner, answer in zip(partners, answers, strict=True):
            if answer is not _Failed:
                answered.add(partner.id)
                by_origin.append((partner.id, answer))
        if self._snapshots is not None:
            # A partner that answered is fresher than its snapshot (revocations): only the others.
            stored = self._snapshots.lookup(criteria, datetime.now(UTC), skip_origins=answered)
            by_origin.extend(stored.items())
        return await self._merge(criteria, by_origin)

    async def _merge(self, criteria: LookupFilter,
                     by_origin: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
        candidates = [(origin, element) for origin, elements in by_origin for element in elements
                      if criteria.subscriber_id is None or element.get("subscriber_id") == criteria.subscriber_id]
        if not candidates:
            return []
        ids = {element["subscriber_id"] for _, element in candidates}
        async with self._sessions() as session:
            local = set((await session.execute(select(RegistryParticipant.subscriber_id).where(
                RegistryParticipant.subscriber_id.in_(ids)))).scalars())
        results: list[dict[str, Any]] = []
        seen: set[tuple[Any, ...]] = set()
        for origin, element in candidates:
            if element["subscriber_id"] in local:
                log.warning("registry.federation_shadowed", origin=origin, subscriber_id=element["subscriber_id"])
                continue
            identity = tuple(element.get(k) for k in ("subscriber_id", "type", "domain", "ukId", "unique_key_id"))
            if identity in seen:
                continue  # the same entry known to two partners: the first listed wins
            seen.add(identity)
            results.append({**element, ORIGIN_FIELD: element.get(ORIGIN_FIELD) or origin})
        return results

    async def _ask(self, client: httpx.AsyncClient, partner: Partner, body: dict[str, str],
                   headers: dict[str, str], hops: int, visited: list[str],
                   transaction_id: str | None = None) -> list[dict[str, Any]] | None:
        key: _CacheKey = (partner.id, hops, tuple(visited), json.dumps(body, sort_keys=True))
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            self._cache.move_to_end(key)
            return cached[1]  # nothing sent: nothing to log
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        trace, sent_at, failure = Trace(), datetime.now(UTC), None
        try:
            answer = await asyncio.wait_for(self._fetch(client, partner, raw, headers, trace), self._timeout)
        except TimeoutError:
            answer, failure = self._discard(partner, f"no answer within {self._timeout:g} s"), "timeout"
        except httpx.HTTPError as exc:
            answer, failure = self._discard(partner, f"unreachable ({type(exc).__name__})"), "unreachable"
        if self.tlog is not None:
            self._log(partner, raw, headers, trace, answer, failure, transaction_id, sent_at)
        lifetime = self._cache_seconds if answer is not _Failed else min(FAILURE_CACHE_SECONDS, self._cache_seconds)
        if lifetime > 0:
            self._cache[key] = (self._clock() + lifetime, answer)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return answer

    def _log(self, partner: Partner, body: bytes, headers: Mapping[str, str], trace: Trace,
             answer: list[dict[str, Any]] | None, failure: str | None, transaction_id: str | None,
             sent_at: datetime) -> None:
        """The lookup sent to `partner`, into the registry's log in the background (hot path)."""
        assert self.tlog is not None
        if answer is not _Failed:
            ack, code = "ACK", None
        elif trace.status is not None:
            ack, code = "NACK", str(trace.status) if trace.status != 200 else "refused"  # unverified answer
        else:
            ack, code = None, failure or "unreachable"
        try:
            self.tlog.record_soon(self.tlog.outbound(
                "lookup", peer=partner.id, transaction_id=transaction_id, body=body, headers=headers, trace=trace,
                ack=ack, code=code, seen_at=sent_at, keep_response=False))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the log never breaks a lookup
            log.error("registry.tlog_record_failed", action="lookup", error_type=type(exc).__name__)

    async def _fetch(self, client: httpx.AsyncClient, partner: Partner, body: bytes,
                     headers: dict[str, str], trace: Trace) -> list[dict[str, Any]] | None:
        self.partner_requests += 1
        async with client.stream("POST", f"{partner.url}/lookup", content=body,
                                 headers={**headers, "Content-Type": "application/json"}) as response:
            trace.status = response.status_code
            if response.status_code != 200:
                return self._discard(partner, f"HTTP {response.status_code}")
            raw = bytearray()
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    trace.response = bytes(raw)
                    return self._discard(partner, f"answer larger than {MAX_ANSWER_BYTES} bytes")
            trace.response = bytes(raw)
            signature = response.headers.get(RESPONSE_SIGNATURE_HEADER)
        try:
            verify_lookup_response(bytes(raw), signature, partner.verify_key, registry_id=partner.id)
        except SignatureError as exc:
            return self._discard(partner, f"signature refused: {exc}")
        try:
            elements = json.loads(raw)
        except ValueError:
            return self._discard(partner, "the signed answer is not JSON")
        if not isinstance(elements, list):
            return self._discard(partner, "the signed answer is not a JSON array")
        return [e for e in elements if isinstance(e, dict) and isinstance(e.get("subscriber_id"), str)]

    @staticmethod
    def _discard(partner: Partner, reason: str) -> None:
        log.warning("registry.federation_answer_discarded", partner=partner.id, url=partner.url, reason=reason)
        return _Failed


def federation_from_settings(settings: Settings, own_id: str,
                             sessions: async_sessionmaker[AsyncSession]) -> Federation:
    """The registry's federation (partners from its settings, snapshots from its data dir).
    Raises `ValueError` at start for a wrong partner list, rather than failing lookups later."""
    config = registry_settings(settings)
    return Federation(
        own_id, partners_from_settings(config), sessions, snapshots=SnapshotStore(config.data_dir),
        timeout=config.registry_federation_timeout_seconds, cache_seconds=config.registry_federation_cache_seconds,
        max_hops=config.registry_federation_max_hops,
    )


__all__ = [
    "HOPS_HEADER",
    "ORIGIN_FIELD",
    "VISITED_HEADER",
    "Federation",
    "Partner",
    "federation_from_settings",
    "filter_body",
    "parse_partners",
    "partners_from_settings",
    "read_hops",
]
