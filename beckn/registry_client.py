"""Registry lookups and the cached key resolver every node uses to verify signatures.

Two layers:

* `RegistryClient` speaks to one registry's `/lookup` and turns whatever dialect it emits (Beckn
  core, ONDC, Succinct, 0.9.x; digest §6.1/§6.2) into `SubscriberRecord`s.
* `KeyResolver` answers "which key is `subscriber_id|ukId`, and may I use it now?" with one
  registry call per key, not per request (implementations.md §3, pain point 1).

Caching rules (the guarantees callers rely on):

* A positive entry is reused until `min(fetched_at + max_age, valid_until)`; a key is never
  served from cache past its `valid_until`.
* Status is part of the cached record, so a key revoked at the registry (status no longer
  SUBSCRIBED) is refused once its entry ages out: revocation propagates within `max_age`.
* "Not found", conflicting records and records unusable when fetched are cached only for
  `negative_max_age`, which shields the registry from floods of unknown keyIds without delaying a
  new participant's first SUBSCRIBED key for long.
* Registry failures are never cached; they surface as `RegistryUnavailable`, which is our
  problem (answer 5xx/retry), not the sender's (answer 401).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import nacl.signing

from beckn.keys import KeyFormatError, load_verify_key
from beckn.tlog.note import ED25519, NoteError, NoteVerifier

__all__ = [
    "InvalidRecord",
    "KeyNotFound",
    "KeyResolutionError",
    "KeyResolver",
    "KeyUnusable",
    "RegistryClient",
    "RegistryUnavailable",
    "SubscriberRecord",
    "normalise_record",
]

log = logging.getLogger(__name__)

SUBSCRIBED = "SUBSCRIBED"

# Role names seen in the wild (digest §6.1): core BAP/BPP/BG, protocol-server's BREG, ONDC's
# buyerApp/sellerApp/gateway, and 0.9.x lowercase roles where `bppr`/`bgr` are the BPP and BG
# registries, i.e. registries.
_TYPE_ALIASES: dict[str, str] = {
    "bap": "BAP",
    "buyerapp": "BAP",
    "bpp": "BPP",
    "sellerapp": "BPP",
    "bg": "BG",
    "gateway": "BG",
    "breg": "BREG",
    "registry": "BREG",
    "bppr": "BREG",
    "bgr": "BREG",
}

# First present name wins; order puts the core spelling first, then the most common variants.
_URL_FIELDS = ("url", "subscriber_url")
_KEY_ID_FIELDS = ("key_id", "ukId", "unique_key_id", "pub_key_id")
_ENCR_KEY_FIELDS = ("encr_public_key", "encryption_public_key")
_VALID_UNTIL_FIELDS = ("valid_until", "valid_to")  # `valid_to`: Succinct's Java model name


class InvalidRecord(ValueError):
    """A lookup result element that cannot describe a subscriber at all (not an object, or no
    `subscriber_id`). Such elements are skipped; records with merely bad fields are kept."""


@dataclass(frozen=True, slots=True)
class SubscriberRecord:
    """One registry entry, normalised. `signing_public_key` is kept as received; `verify_key`
    is that key parsed once. `defects` lists field problems that make the key unusable."""

    subscriber_id: str
    unique_key_id: str | None
    type: str | None
    domain: str | None
    city: str | None
    country: str | None
    url: str | None
    signing_public_key: str | None
    verify_key: nacl.signing.VerifyKey | None
    encr_public_key: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    status: str | None
    created: datetime | None
    updated: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    defects: tuple[str, ...] = ()
    # The subscriber's transaction-log key (issue 8), a C2SP note vkey, when the registry publishes
    # one; None if absent or unparseable (a bad log key must not make the Beckn key unusable).
    log_vkey: str | None = None

    def usable_at(self, at: datetime) -> str | None:
        """None if this key may verify a signature made at `at`, else why not.

        Missing `valid_from`/`valid_until` mean "no bound": the core spec does not mark them
        required. A missing or non-SUBSCRIBED status is refused.
        """
        if self.defects:
            return self.defects[0]
        if self.verify_key is None:
            return f"registry record for {self._label()} has no signing_public_key"
        if self.status != SUBSCRIBED:
            shown = self.status if self.status is not None else "missing"
            return f"key {self._label()} has status {shown}, not {SUBSCRIBED}"
        at = _as_utc(at)
        if self.valid_from is not None and at < self.valid_from:
            return (f"key {self._label()} is not valid before {self.valid_from.isoformat()} "
                    f"(checked at {at.isoformat()})")
        if self.valid_until is not None and at > self.valid_until:
            return (f"key {self._label()} expired at {self.valid_until.isoformat()} "
                    f"(checked at {at.isoformat()})")
        return None

    def _label(self) -> str:
        return f"{self.subscriber_id}|{self.unique_key_id or '?'}"


def normalise_record(raw: Mapping[str, Any]) -> SubscriberRecord:
    """Build a `SubscriberRecord` from any registry dialect of digest §6.1.

    Raises `InvalidRecord` only when the element cannot name a subscriber. A bad signing key or
    validity timestamp does not raise: the record is kept and reports itself unusable.
    """
    if not isinstance(raw, Mapping):
        raise InvalidRecord(f"lookup result element is a {type(raw).__name__}, not an object")
    subscriber_id = raw.get("subscriber_id")
    if not isinstance(subscriber_id, str) or not subscriber_id:
        raise InvalidRecord("lookup result element has no subscriber_id")

    defects: list[str] = []
    key_id = _first_str(raw, _KEY_ID_FIELDS)
    label = f"{subscriber_id}|{key_id or '?'}"

    signing_public_key = raw.get("signing_public_key")
    if not isinstance(signing_public_key, str) or not signing_public_key.strip():
        signing_public_key = None  # kept as received otherwise: it is what the registry publishes
    verify_key: nacl.signing.VerifyKey | None = None
    if signing_public_key is not None:
        try:
            verify_key = load_verify_key(signing_public_key)
        except KeyFormatError as exc:
            defects.append(f"registry record for {label} has an unreadable signing_public_key: {exc}")

    location = raw.get("location") if isinstance(raw.get("location"), Mapping) else {}
    city = _code(raw.get("city")) or _code(location.get("city"))
    country = _code(raw.get("country")) or _code(location.get("country"))

    valid_from = _validity(raw, ("valid_from",), label, defects)
    valid_until = _validity(raw, _VALID_UNTIL_FIELDS, label, defects)

    status = _first_str(raw, ("status",))
    return SubscriberRecord(
        subscriber_id=subscriber_id,
        unique_key_id=key_id,
        type=_role(raw.get("type")),
        domain=_first_str(raw, ("domain",)),
        city=city,
        country=country,
        url=_first_str(raw, _URL_FIELDS),
        signing_public_key=signing_public_key,
        verify_key=verify_key,
        encr_public_key=_first_str(raw, _ENCR_KEY_FIELDS),
        valid_from=valid_from,
        valid_until=valid_until,
        status=status.strip().upper() if status is not None else None,
        created=_lenient_time(raw.get("created")),
        updated=_lenient_time(raw.get("updated")),
        raw=raw,
        defects=tuple(defects),
        log_vkey=_log_vkey(raw.get("log_vkey")),
    )


def _log_vkey(value: Any) -> str | None:
    """A published log key if it parses as an Ed25519 note verifier key (type 0x01), else None."""
    if not isinstance(value, str):
        return None
    try:
        verifier = NoteVerifier.from_vkey(value)
    except NoteError:
        return None
    return value if verifier.sig_type == ED25519 else None


def _first_str(raw: Mapping[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        value = raw.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # some registries use numeric key ids
    return None


def _code(value: Any) -> str | None:
    """A city/country given as a plain code string or as a core `{code, name}` object."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Mapping):
        code = value.get("code")
        if isinstance(code, str) and code.strip():
            return code.strip()
    return None


def _role(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    # Unknown roles are kept (upper-cased) rather than rejected: the role is not needed to verify.
    return _TYPE_ALIASES.get(text.lower(), text.upper())


def _parse_time(value: Any) -> datetime:
    """ISO 8601 (with or without Z, any fraction) or Unix seconds/milliseconds. Naive means UTC."""
    if isinstance(value, bool):
        raise ValueError("not a date-time")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value  # >1e11 s is year 5138: it is millis
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str) and value.strip():
        return _as_utc(datetime.fromisoformat(value.strip()))
    raise ValueError("not a date-time")


def _validity(raw: Mapping[str, Any], names: Iterable[str], label: str,
              defects: list[str]) -> datetime | None:
    for name in names:
        value = raw.get(name)
        if value is None or value == "":
            continue
        try:
            return _parse_time(value)
        except (ValueError, OverflowError, OSError):
            # An unreadable bound cannot be checked, so the key is refused rather than trusted.
            defects.append(f"registry record for {label} has an unreadable {name}: {value!r} "
                           "is not an ISO 8601 date-time")
            return None
    return None


def _lenient_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return _parse_time(value)
    except (ValueError, OverflowError, OSError):
        return None  # informational only; never a reason to refuse a key


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# --------------------------------------------------------------------------------------------
# Registry client
# --------------------------------------------------------------------------------------------


class RegistryUnavailable(Exception):
    """The registry gave no usable answer: network error, timeout, non-2xx status, non-JSON or
    an unrecognisable body. Distinct from "no such subscriber", which is an empty list."""

    def __init__(self, url: str, cause: str, *, status_code: int | None = None) -> None:
        super().__init__(f"registry lookup at {url} failed: {cause}")
        self.url = url
        self.cause = cause
        self.status_code = status_code


# Wrappers tolerated around lookup results, searched in this order: `{"message": ...}`
# (Beckn-style envelopes), `{"data": [...]}`, `{"subscribers": [...]}` and similar. The spec
# says a bare array; proxies and home-grown registries wrap it.
_WRAPPER_KEYS = ("message", "data", "subscribers", "result", "results", "records", "response")


def _extract_elements(payload: Any, url: str, depth: int = 0) -> list[Any]:
    """The list of record-like elements inside a lookup response body.

    Accepted: a bare array (the spec); an object wrapping the array or a single record under one
    of `_WRAPPER_KEYS` (up to two levels, e.g. `{"message": {"subscribers": [...]}}`); a single
    record object. An explicit error body (`error` set, or a NACK) is a registry failure.
    """
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, Mapping):
        raise RegistryUnavailable(url, f"unexpected JSON {type(payload).__name__} in lookup response")
    if "subscriber_id" in payload:
        return [payload]
    error = payload.get("error")
    ack = payload.get("message", {}).get("ack") if isinstance(payload.get("message"), Mapping) else None
    if error or (isinstance(ack, Mapping) and ack.get("status") == "NACK"):
        raise RegistryUnavailable(url, f"registry refused the lookup: {json.dumps(error)[:300]}")
    if depth < 2:
        for key in _WRAPPER_KEYS:
            inner = payload.get(key)
            if isinstance(inner, list | Mapping):
                return _extract_elements(inner, url, depth + 1)
    if not payload:
        return []  # `{}` carries no records: read as "nothing matches"
    raise RegistryUnavailable(
        url, f"unrecognised lookup response object with keys {sorted(payload)[:10]}")


class RegistryClient:
    """Client for one registry's lookup endpoint.

    Request field names: the core request is a partial `Subscription` (`key_id`), but
    protocol-server and ONDC `/v2.0/lookup` send `ukId` and Succinct reads `unique_key_id`. We
    send the key id under all three names: the core schema is open (no additionalProperties:
    false) and the Succinct registry ignores fields it does not know, while sending only one name
    makes registries reading another ignore the filter. City and country go flat (`city`,
    `country`), which ONDC, Succinct and protocol-server read; Succinct also reads core `location`,
    no registry seen reads only `location`. `type` is sent as given: networks differ (BPP vs
    sellerApp) and the caller knows its network. Only the criteria given are sent (no nulls).

    Results are not filtered here: a registry may ignore criteria, and `KeyResolver` re-checks.

    `auth_headers`, if given, is called with the exact request body bytes and returns headers to
    add (ONDC `/v2.0/lookup` wants a signed `Authorization`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        lookup_path: str = "/lookup",
        auth_headers: Callable[[bytes], Mapping[str, str]] | None = None,
    ) -> None:
        parsed = httpx.URL(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"registry base_url must be an absolute http(s) URL, got {base_url!r}")
        self.lookup_url = base_url.rstrip("/") + "/" + lookup_path.lstrip("/")
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._auth_headers = auth_headers

    async def lookup(
        self,
        *,
        subscriber_id: str | None = None,
        unique_key_id: str | None = None,
        type: str | None = None,  # noqa: A002 - the Beckn field name
        domain: str | None = None,
        city: str | None = None,
        country: str | None = None,
    ) -> list[SubscriberRecord]:
        """Records matching the criteria; `[]` if none. Raises `RegistryUnavailable`."""
        body: dict[str, str] = {}
        if subscriber_id is not None:
            body["subscriber_id"] = subscriber_id
        if unique_key_id is not None:
            body["ukId"] = body["unique_key_id"] = body["key_id"] = unique_key_id
        for name, value in (("type", type), ("domain", domain), ("city", city), ("country", country)):
            if value is not None:
                body[name] = value
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._auth_headers is not None:
            headers.update(self._auth_headers(content))

        url = self.lookup_url
        try:
            response = await self._http.post(url, content=content, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise RegistryUnavailable(url, f"timed out after {self._timeout} s ({_type_name(exc)})") from exc
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(url, f"{_type_name(exc)}: {exc}") from exc

        if not 200 <= response.status_code < 300:
            raise RegistryUnavailable(
                url, f"HTTP {response.status_code}: {_snippet(response.text)}",
                status_code=response.status_code)
        try:
            payload = response.json()
        except ValueError as exc:
            ctype = response.headers.get("content-type", "no content-type")
            raise RegistryUnavailable(
                url, f"response is not JSON ({ctype}): {_snippet(response.text)}",
                status_code=response.status_code) from exc

        records: list[SubscriberRecord] = []
        for element in _extract_elements(payload, url):
            try:
                records.append(normalise_record(element))
            except InvalidRecord as exc:
                # One broken element must not hide the others (e.g. a lookup by domain).
                log.warning("skipping lookup result from %s: %s", url, exc)
        return records

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


def _type_name(exc: BaseException) -> str:
    return exc.__class__.__name__


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------------------------
# Key resolver
# --------------------------------------------------------------------------------------------


class KeyResolutionError(Exception):
    """The sender's key cannot be used; `reason` says why, in words fit for a NACK."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyNotFound(KeyResolutionError):
    """The registry has no record for this subscriber_id and key id."""


class KeyUnusable(KeyResolutionError):
    """The registry has the key, but it may not be used (status, validity, bad or conflicting
    records)."""


@dataclass(slots=True)
class _Entry:
    records: tuple[SubscriberRecord, ...]  # sorted deterministically; empty means "not found"
    refusal: str | None  # set when the records as a whole are unusable (conflict)
    fresh_until: float


_CacheKey = tuple[str, str]


class KeyResolver:
    """Resolves `subscriber_id|unique_key_id` to a usable `SubscriberRecord`, with a bounded LRU
    cache, negative caching and single-flight lookups (see the module docstring)."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        max_age_seconds: float = 300,
        negative_max_age_seconds: float = 30,
        clock: Callable[[], float] = time.time,
        max_entries: int = 10_000,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._client = client
        self._max_age = max_age_seconds
        self._negative_max_age = min(negative_max_age_seconds, max_age_seconds)
        self._clock = clock
        self._max_entries = max_entries
        self._cache: OrderedDict[_CacheKey, _Entry] = OrderedDict()
        self._inflight: dict[_CacheKey, asyncio.Task[_Entry]] = {}
        self._hits = 0
        self._negative_hits = 0
        self._misses = 0
        self._lookups = 0

    @property
    def stats(self) -> dict[str, int]:
        return {
            "hits": self._hits,
            "negative_hits": self._negative_hits,
            "misses": self._misses,
            "lookups": self._lookups,
            "entries": len(self._cache),
        }

    async def resolve(self, subscriber_id: str, unique_key_id: str, *,
                      at: float | None = None) -> SubscriberRecord:
        """The record whose key verifies a signature by `subscriber_id|unique_key_id` made at
        `at` (Unix seconds; default now, pass the signature's `created`).

        The key must be SUBSCRIBED, valid at `at`, and not expired now: a signature's `expires`
        may not exceed the key's `valid_until`, so a key past `valid_until` verifies nothing.
        Raises `KeyNotFound`, `KeyUnusable`, or `RegistryUnavailable` (propagated, never cached).
        """
        key = (subscriber_id, unique_key_id)
        now = self._clock()
        entry = self._cache.get(key)
        if entry is not None and now < entry.fresh_until:
            self._cache.move_to_end(key)
            if entry.records and entry.refusal is None:
                self._hits += 1
            else:
                self._negative_hits += 1
        else:
            self._misses += 1
            entry = await self._fetch(key)
            now = self._clock()
        return self._decide(entry, subscriber_id, unique_key_id, now if at is None else at, now)

    def invalidate(self, subscriber_id: str, unique_key_id: str | None = None) -> None:
        """Forget one key, or every key of a subscriber (e.g. on an `on_subscribe` status push)."""
        if unique_key_id is not None:
            doomed = [(subscriber_id, unique_key_id)]
        else:
            doomed = [k for k in (*self._cache, *self._inflight) if k[0] == subscriber_id]
        for k in doomed:
            self._cache.pop(k, None)
            # A lookup already in flight may carry pre-invalidation data: detach it so its result
            # is not stored, and let the next resolve start a fresh one.
            self._inflight.pop(k, None)

    async def _fetch(self, key: _CacheKey) -> _Entry:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._lookup(key))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._lookup_done(key, t))
        # shield: one waiter being cancelled (client went away) must not cancel the shared lookup.
        return await asyncio.shield(task)

    def _lookup_done(self, key: _CacheKey, task: asyncio.Task[_Entry]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: waiters may all have gone

    async def _lookup(self, key: _CacheKey) -> _Entry:
        subscriber_id, unique_key_id = key
        self._lookups += 1
        records = await self._client.lookup(subscriber_id=subscriber_id, unique_key_id=unique_key_id)
        entry = self._build_entry(subscriber_id, unique_key_id, records, self._clock())
        if self._inflight.get(key) is asyncio.current_task():  # not invalidated meanwhile
            self._store(key, entry)
        return entry

    def _store(self, key: _CacheKey, entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)

    def _build_entry(self, subscriber_id: str, unique_key_id: str,
                     records: list[SubscriberRecord], fetched_at: float) -> _Entry:
        # Registries may ignore criteria they do not know, so re-check both identifiers here;
        # otherwise another subscriber's record could be taken for the sender's.
        mine = [r for r in records if r.subscriber_id == subscriber_id]
        matching = [r for r in mine if r.unique_key_id == unique_key_id]
        if not matching and not any(r.unique_key_id for r in mine):
            # The registry does not echo key ids at all; it was asked for this one, and the
            # records are the subscriber's own keys, so a wrong one merely fails verification.
            matching = mine
        negative_until = fetched_at + self._negative_max_age
        if not matching:
            return _Entry((), None, negative_until)

        matching.sort(key=_record_order)
        keys = {r.verify_key.encode() if r.verify_key is not None else r.signing_public_key
                for r in matching}
        if len(keys) > 1:
            reason = (f"registry returned {len(matching)} records for {subscriber_id}|{unique_key_id} "
                      f"with {len(keys)} different signing keys; refusing to guess")
            return _Entry(tuple(matching), reason, negative_until)

        fetched_dt = datetime.fromtimestamp(fetched_at, tz=UTC)
        usable = [r for r in matching if r.usable_at(fetched_dt) is None]
        if not usable:
            return _Entry(tuple(matching), None, negative_until)
        fresh_until = fetched_at + self._max_age
        ends = [r.valid_until.timestamp() for r in usable if r.valid_until is not None]
        if ends:
            fresh_until = min(fresh_until, min(ends))
        return _Entry(tuple(matching), None, fresh_until)

    def _decide(self, entry: _Entry, subscriber_id: str, unique_key_id: str,
                at: float, now: float) -> SubscriberRecord:
        if not entry.records:
            raise KeyNotFound(f"registry at {self._client.lookup_url} has no key "
                              f"{unique_key_id!r} for subscriber {subscriber_id!r}")
        if entry.refusal is not None:
            raise KeyUnusable(entry.refusal)
        at_dt = datetime.fromtimestamp(at, tz=UTC)
        first_reason: str | None = None
        for record in entry.records:
            reason = record.usable_at(at_dt)
            if reason is None and record.valid_until is not None and now > record.valid_until.timestamp():
                reason = (f"key {subscriber_id}|{unique_key_id} expired at "
                          f"{record.valid_until.isoformat()}")
            if reason is None:
                return record
            first_reason = first_reason or reason
        raise KeyUnusable(first_reason or "key unusable")


def _record_order(record: SubscriberRecord) -> tuple[str, ...]:
    return tuple(v or "" for v in (record.domain, record.city, record.country, record.type, record.url))
