"""A residents' discount: an Offer that needs a Martinique resident credential (issue 7).

A provider's catalogue entry may set `resident_discount_percent`; it is stored under the provider's
`location` JSON (as delivery terms are: no migration). on_search lists it as a Beckn Offer on the
provider (`residents-<provider>`, tagged `lakou:requires-credential`). A BAP asks for it with
`order.offers[{"id": ...}]`: select quotes the discount (a negative breakup line); init and confirm
apply it only with a valid SD-JWT VC presentation of a `MartiniqueResidentCredential` in
`order.fulfillments[0].customer.person.creds[0].url` (`data:application/dc+sd-jwt,<presentation>`),
issued by a trusted issuer (`LAKOU_BPP_TRUSTED_RESIDENT_ISSUERS`), key-bound to this BPP
(`aud` = its subscriber id) and to the transaction (`nonce` = transaction_id), whose
`commune_insee` is a Martinique commune (972xx), within its validity dates (`iat`/`nbf`/`exp`, did.sdjwt),
and not revoked nor suspended. Anything else: 40000, and no order.

Status: the credential's `status.bitstring_status_list_entry` (Martinique Connect's, a W3C Bitstring
Status List entry) names the issuer's status list; :class:`StatusLists` fetches it (https only; plain
http to a loopback host in test mode), bounded in time and size, cached per its Cache-Control max-age
(at most `LAKOU_BPP_STATUS_LIST_CACHE_SECONDS`); did.verify.check_status_entries verifies it (signed by
the credential's issuer, within its dates) and reads the bit. When the status cannot be checked (list
unreachable, badly signed, another issuer's, an unsupported status mechanism) the offer is refused
("could not check ... status"): fail closed. A credential with no `status` claim at all is accepted,
as did.verify accepts a W3C credential without credentialStatus: the claim is under the issuer's
signature, so only the (trusted) issuer can leave it out, making a credential it cannot revoke.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import structlog

from beckn.errors import ErrorCode
from beckn.models import Order
from bpp.settings import BppSettings
from bpp.tables import BppProvider
from did import methods, sdjwt
from did import status as status_mod
from did import verify
from did.vc import VCError

log = structlog.get_logger(__name__)

RESIDENTS_KEY = "resident_discount_percent"  # under the provider's location JSON
RESIDENT_VCT = "MartiniqueResidentCredential"
CREDS_PATH = "message.order.fulfillments[0].customer.person.creds"
DATA_URL_PREFIX = "data:application/dc+sd-jwt,"
MARTINIQUE_COMMUNE = re.compile(r"^972[0-9]{2}$")
CANNOT_CHECK_STATUS = "could not check the resident credential's status"

# Status list fetches: they happen while an init or confirm waits, so they are short and small.
STATUS_TIMEOUT_SECONDS = 3.0  # the whole fetch, connection to last byte
STATUS_MAX_BYTES = 512 * 1024  # a 16 KB bitstring gzips and base64-encodes to far less
STATUS_DEFAULT_CACHE_SECONDS = 60  # when the issuer says nothing (no max-age)
STATUS_MAX_CACHED = 64  # lists kept: one per trusted issuer's list, so a handful

OFFER_NAME = {
    "fr": "Remise résidents : -{pct} %", "en": "Residents' discount: -{pct}%",
    "es": "Descuento para residentes: -{pct} %", "de": "Rabatt für Einwohner: -{pct} %",
}
OFFER_LONG = {
    "fr": "Pour les résidents de Martinique, sur présentation de l'attestation de résidence (Martinique Connect).",
    "en": "For residents of Martinique, on presenting the resident credential (Martinique Connect).",
    "es": "Para residentes de Martinica, presentando la credencial de residente (Martinique Connect).",
    "de": "Für Einwohner Martiniques, gegen Vorlage des Einwohnernachweises (Martinique Connect).",
}
DISCOUNT_TITLE = {
    "fr": "Remise résidents", "en": "Residents' discount", "es": "Descuento para residentes",
    "de": "Rabatt für Einwohner",
}


class OfferProblem(Exception):
    """A refused offer: `bpp.orders` turns it into an OrderProblem (a refused credential: 40000;
    an offer the provider does not make: 30000)."""

    def __init__(self, message: str, path: str = CREDS_PATH, code: str = ErrorCode.BUSINESS_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path


class StatusUnavailable(Exception):
    """A status list could not be fetched (refused URL, network, HTTP status, size, not JSON)."""


def cache_seconds(cache_control: str | None, cap: int) -> int:
    """How long a fetched list may be reused: max-age (or a default), never more than `cap`."""
    directives: dict[str, str] = {}
    for part in (cache_control or "").lower().split(","):
        name, _, value = part.strip().partition("=")
        directives[name] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0
    if "max-age" not in directives:
        return min(STATUS_DEFAULT_CACHE_SECONDS, cap)
    value = directives["max-age"]
    return min(int(value), cap) if value.isdigit() else 0


class StatusLists:
    """Fetches status list credentials for the residents' check, and keeps them for their max-age.

    Only https URLs, with did.methods' SSRF pre-check (a host resolving to a non-public address is
    refused), no redirects, `timeout` seconds in all, at most `max_bytes`. `allow_loopback_http` (test
    mode) also allows plain http to a loopback host. What is cached is the document as fetched: it is
    verified at every check (cheap), so a cached copy is never trusted more than a fresh one. Concurrent
    checks of one list share one fetch; failures are not cached (the next order tries again)."""

    def __init__(self, *, allow_loopback_http: bool = False, max_cache_seconds: int = 300,
                 timeout: float = STATUS_TIMEOUT_SECONDS, max_bytes: int = STATUS_MAX_BYTES) -> None:
        self.allow_loopback_http = allow_loopback_http
        self.max_cache_seconds = max_cache_seconds
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._cache: dict[str, tuple[float, Any]] = {}  # url -> (monotonic expiry, document)
        self._inflight: dict[str, asyncio.Future] = {}

    @classmethod
    def for_settings(cls, settings: BppSettings) -> StatusLists:
        # Test mode as in bap.merchant_verification: a plain-http registry means tests or local development.
        return cls(allow_loopback_http=settings.registry_url.startswith("http://"),
                   max_cache_seconds=settings.bpp_status_list_cache_seconds)

    def cached_until(self, url: str) -> float | None:
        """The monotonic time the cached copy of `url` expires, None when none is kept."""
        found = self._cache.get(url)
        return found[0] if found is not None else None

    async def get(self, url: str) -> Any:
        found = self._cache.get(url)
        if found is not None and found[0] > time.monotonic():
            return found[1]
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.ensure_future(self._refresh(url))
            self._inflight[url] = task
            task.add_done_callback(lambda done: self._forget(url, done))
        return await asyncio.shield(task)  # one cancelled order does not cancel the others' fetch

    def _forget(self, url: str, done: asyncio.Future) -> None:
        self._inflight.pop(url, None)
        if not done.cancelled():
            done.exception()  # marks it retrieved: every waiting order gets it from its own await

    async def _refresh(self, url: str) -> Any:
        try:
            document, ttl = await asyncio.wait_for(self._fetch(url), self.timeout)
        except asyncio.TimeoutError:
            raise StatusUnavailable(f"fetching the status list {url} timed out") from None
        self._cache.pop(url, None)
        if ttl > 0:
            if len(self._cache) >= STATUS_MAX_CACHED:
                now = time.monotonic()
                for stale in [u for u, (until, _) in self._cache.items() if until <= now] or list(self._cache)[:1]:
                    self._cache.pop(stale, None)
            self._cache[url] = (time.monotonic() + ttl, document)
        return document

    async def _check_url(self, url: str) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise StatusUnavailable("the status list URL is not a valid URL") from None
        if parsed.scheme not in ("https", "http"):
            raise StatusUnavailable("the status list URL must be https")
        host = parsed.host
        if not host or parsed.userinfo:
            raise StatusUnavailable("the status list URL must be an absolute URL without credentials")
        test_loopback = self.allow_loopback_http and methods._is_loopback(host)  # noqa: SLF001 - did:web's rule
        if parsed.scheme == "https":
            if not test_loopback:
                try:
                    await methods.refuse_internal_host(host)  # best-effort SSRF guard, as for did:web
                except methods.DIDError:
                    raise StatusUnavailable(f"the status list host {host!r} does not resolve to a public "
                                            "address") from None
        elif parsed.scheme != "http" or not test_loopback:
            raise StatusUnavailable("the status list URL must be https")

    async def _fetch(self, url: str) -> tuple[Any, int]:
        await self._check_url(url)
        body = bytearray()
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
                async with http.stream("GET", url, headers={"Accept": "application/vc+ld+json, application/json"}) \
                        as response:
                    if response.status_code != 200:
                        raise StatusUnavailable(f"fetching the status list {url} gave HTTP {response.status_code}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise StatusUnavailable(f"the status list {url} exceeds {self.max_bytes} bytes")
                    async for chunk in response.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > self.max_bytes:
                            raise StatusUnavailable(f"the status list {url} exceeds {self.max_bytes} bytes")
                    ttl = cache_seconds(response.headers.get("cache-control"), self.max_cache_seconds)
        except httpx.HTTPError as exc:
            raise StatusUnavailable(f"fetching the status list {url} failed ({type(exc).__name__})") from None
        try:
            document = json.loads(bytes(body))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StatusUnavailable(f"the status list {url} is not JSON") from None
        return document, ttl


@dataclass(frozen=True)
class ResidentCheck:
    """What init/confirm check a presentation against: the trusted issuers, this BPP, this transaction,
    and where its status lists come from (None: a credential with a `status` is refused)."""

    trusted_issuers: Sequence[str]
    aud: str
    nonce: str
    status_lists: StatusLists | None = None


def offer_id(provider_id: str) -> str:
    return f"residents-{provider_id}"


def discount_percent(provider: BppProvider) -> int | None:
    value = (provider.location or {}).get(RESIDENTS_KEY)
    return int(value) if value else None


def offer_json(provider: BppProvider, lang: str) -> dict[str, Any] | None:
    """The provider's residents' offer as a Beckn Offer, or None when it has none."""
    pct = discount_percent(provider)
    if pct is None:
        return None
    return {
        "id": offer_id(provider.id),
        "descriptor": {"code": "residents", "name": OFFER_NAME[lang].format(pct=pct), "short_desc": OFFER_LONG[lang]},
        "tags": [{
            "descriptor": {"code": "lakou:requires-credential"},
            "list": [{"descriptor": {"code": "vct"}, "value": RESIDENT_VCT},
                     {"descriptor": {"code": "claim"}, "value": "commune_insee"}],
        }],
    }


def requested(order: Order, provider: BppProvider) -> bool:
    """Whether the order asks for the provider's residents' offer; an unknown offer id is refused."""
    for index, offer in enumerate(order.offers or ()):
        if offer.id != offer_id(provider.id) or discount_percent(provider) is None:
            raise OfferProblem(f"offer {offer.id!r} is not offered by provider {provider.id!r}",
                               f"message.order.offers[{index}].id", ErrorCode.INVALID_REQUEST)
    return bool(order.offers)


def discount(provider: BppProvider, items_total: Decimal) -> Decimal:
    pct = discount_percent(provider) or 0
    return (items_total * pct / Decimal(100)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def presentation_of(order: Order) -> str:
    """The SD-JWT presentation the BAP put in the order's first fulfilment's customer's creds."""
    fulfillment = (order.fulfillments or [None])[0]
    customer = fulfillment.customer if fulfillment is not None else None
    person = customer.person if customer is not None else None
    creds = (person.creds if person is not None else None) or []
    if not creds:
        raise OfferProblem("the residents' offer needs a MartiniqueResidentCredential presentation in "
                           f"{CREDS_PATH}[0].url")
    url = str(creds[0].url or "")
    if not url.startswith(DATA_URL_PREFIX) or len(url) == len(DATA_URL_PREFIX):
        raise OfferProblem(f"{CREDS_PATH}[0].url must be a {DATA_URL_PREFIX}<presentation> URL")
    return url[len(DATA_URL_PREFIX):]


async def check(order: Order, resident: ResidentCheck) -> dict[str, Any]:
    """Verify the order's resident credential presentation; return its disclosed claims or raise OfferProblem.

    did.sdjwt.verify checks the signature, the KB-JWT (aud, nonce, sd_hash, age) and the validity
    dates (iat/nbf/exp, 60 s leeway); then the commune, and last the status (the one network call)."""
    presentation = presentation_of(order)
    trusted = {did.strip() for did in resident.trusted_issuers if did.strip()}

    def issuer_key(iss: Any, header: dict) -> Any:
        if iss not in trusted:
            raise sdjwt.SdJwtError("the credential's issuer is not trusted by this BPP for resident credentials")
        return sdjwt._issuer_key(iss, header, None)  # noqa: SLF001 - did.methods resolution (did:jwk, did:key)

    try:
        verified = sdjwt.verify(presentation, issuer_key=issuer_key, nonce=resident.nonce, aud=resident.aud,
                                vct=RESIDENT_VCT)
    except sdjwt.SdJwtError as exc:
        raise OfferProblem(f"the resident credential was refused: {exc}") from None
    claims = verified.claims
    commune = str(claims.get("commune_insee") or "")
    if not MARTINIQUE_COMMUNE.match(commune):
        raise OfferProblem("the resident credential's commune_insee is not a Martinique commune (972xx)")
    await check_status(claims, resident)
    return claims


async def check_status(claims: dict[str, Any], resident: ResidentCheck) -> None:
    """Refuse a revoked or suspended credential, and one whose status cannot be checked (fail closed)."""
    status = claims.get("status")
    if status is None:
        return  # no status: a credential its issuer cannot revoke (see the module docstring)
    entry = status.get("bitstring_status_list_entry") if isinstance(status, dict) else None
    if entry is None:
        raise OfferProblem(f"{CANNOT_CHECK_STATUS}: this BPP reads only a W3C Bitstring Status List entry "
                           "(status.bitstring_status_list_entry)")
    if resident.status_lists is None:
        raise OfferProblem(f"{CANNOT_CHECK_STATUS}: this BPP cannot fetch status lists")
    try:
        url = status_mod.parse_entry(entry)[0]
        document = await resident.status_lists.get(url)
        verify.check_status_entries(entry, issuer=claims.get("iss"), fetch_status_list=lambda _url: document)
    except verify.CredentialRevoked as exc:
        withdrawn = {"revocation": "has been revoked", "suspension": "is suspended"}.get(
            exc.purpose, f"has its {exc.purpose} status bit set")
        raise OfferProblem(f"the resident credential {withdrawn} by its issuer") from None
    except (VCError, StatusUnavailable) as exc:
        # The reason goes to the BAP only: it may name the credential's index (a pseudonymous identifier).
        log.info("bpp.resident_status_unchecked", error=type(exc).__name__)
        raise OfferProblem(f"{CANNOT_CHECK_STATUS}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed list must be a refusal (40000), never a 500
        log.warning("bpp.resident_status_error", error=type(exc).__name__)
        raise OfferProblem(f"{CANNOT_CHECK_STATUS}: the status list is malformed") from None
