"""Verified merchants (issue 7): check the business credential a provider advertises in on_search.

A Lakou BPP tags a provider with a `verifiable-credentials` TagGroup (bpp.credentials):
`business-credential` = the URL of its `MartiniqueMerchantCredential` (did.merchant_credential),
`holder-did` = the credential's subject. :class:`MerchantVerifier` decides whether to show the
merchant as verified:

1. fetch the credential (httpx; at most ``max_bytes``, ``timeout`` seconds, no redirects);
2. :func:`did.verify.verify_credential_async`: signature, validity dates, status list, and the
   issuer on a trust list made of ``LAKOU_BAP_TRUSTED_MERCHANT_ISSUERS`` for this credential type;
3. the subject names this provider id, equals the advertised `holder-did`, and is a registry
   participant DID *of this BPP* (`...:participants:<bpp_id>`);
4. the subject did:web resolves (the registry's `participants/<bpp_id>/did.json`) to a document
   whose current keys (assertionMethod/authentication) include an Ed25519 key the registry lists,
   right now, as a valid signing key of `bpp_id` — the keys its on_search signatures are checked
   against. A credential copied by another BPP, or issued to a DID with other keys, fails here.

It runs off the request path: :meth:`MerchantVerifier.view` (called while flattening an on_search
into offers) returns the cached verdict, or ``None`` ("not checked yet") after scheduling a check in
the background; verdicts are cached per (bpp, provider, URL) for ``ttl_seconds`` (failures for
``failure_ttl_seconds``, so a transient network error is retried soon). ``allow_http`` (plain http
and loopback hosts for the credential, status lists and did:web) is on only when the registry URL
itself is http, i.e. tests and local development; in production everything is https, and hosts
resolving to internal addresses are refused (did.methods' SSRF pre-check).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from did import methods
from did.merchant_credential import CREDENTIAL_TYPE, subject_of
from did.trust import TrustList
from did.vc import VCError
from did.verify import verify_credential_async

log = structlog.get_logger(__name__)

TAG_GROUP = "verifiable-credentials"
TAG_CREDENTIAL = "business-credential"
TAG_HOLDER = "holder-did"

RegisteredKeys = Callable[[str], Awaitable[list[bytes]]]


@dataclass(frozen=True)
class Verdict:
    verified: bool
    reason: str
    siret: str | None = None
    name: str | None = None
    commune: str | None = None


class VerificationFailed(Exception):
    pass


def advertised(provider: dict[str, Any]) -> tuple[str, str | None] | None:
    """(credential URL, holder DID) from a Beckn provider's tags, or None."""
    tags = provider.get("tags") if isinstance(provider, dict) else None
    for group in tags if isinstance(tags, list) else []:
        if not isinstance(group, dict) or (group.get("descriptor") or {}).get("code") != TAG_GROUP:
            continue
        values = {(t.get("descriptor") or {}).get("code"): t.get("value")
                  for t in group.get("list") or [] if isinstance(t, dict) and isinstance(t.get("descriptor"), dict)}
        url = values.get(TAG_CREDENTIAL)
        if isinstance(url, str) and url:
            holder = values.get(TAG_HOLDER)
            return url, holder if isinstance(holder, str) else None
    return None


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def current_ed25519_keys(document: dict[str, Any]) -> set[bytes]:
    """The raw Ed25519 keys of a DID document's current verification methods (those referenced from
    assertionMethod or authentication: the registry leaves expired keys out of both)."""
    did = document.get("id", "")
    current = set()
    for relation in ("assertionMethod", "authentication"):
        for ref in document.get(relation) or []:
            if isinstance(ref, str):
                current.add(did + ref if ref.startswith("#") else ref)
    keys: set[bytes] = set()
    for vm in document.get("verificationMethod") or []:
        if not isinstance(vm, dict) or vm.get("id") not in current:
            continue
        jwk = vm.get("publicKeyJwk")
        try:
            if isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                keys.add(_b64u_decode(jwk["x"]))
            elif isinstance(vm.get("publicKeyMultibase"), str):
                key = methods.jwk_from_multikey(vm["publicKeyMultibase"])
                if key.get("crv") == "Ed25519":
                    keys.add(_b64u_decode(key.get("x")))
        except (KeyError, ValueError, TypeError):
            continue
    return keys


def participant_suffix(bpp_id: str) -> str:
    """`:participants:<bpp_id as did:web characters>` (registry.did.participant_did)."""
    from registry.did import participant_did

    return ":participants:" + participant_did("http://h", bpp_id).rsplit(":", 1)[1]


class MerchantVerifier:
    def __init__(self, *, trusted_issuers: Iterable[str], registered_keys: RegisteredKeys, allow_http: bool = False,
                 ttl_seconds: float = 3600, failure_ttl_seconds: float = 60, max_bytes: int = 64 * 1024,
                 timeout: float = 5.0, max_concurrent: int = 4, max_pending: int = 256,
                 max_cached: int = 10000) -> None:
        self.trust_list = TrustList.from_mapping({CREDENTIAL_TYPE: list(trusted_issuers)})
        self.registered_keys = registered_keys
        self.allow_http = allow_http
        self.ttl = ttl_seconds
        self.failure_ttl = failure_ttl_seconds
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_cached = max_cached
        self._cache: dict[tuple[str, str, str], tuple[float, Verdict]] = {}
        self._pending: dict[tuple[str, str, str], asyncio.Task] = {}
        self._slots = asyncio.Semaphore(max_concurrent)

    @classmethod
    def for_node(cls, node: Any, settings: Any) -> MerchantVerifier:
        """The verifier of a BAP node: its registry client for the BPPs' keys, its settings' trust list."""
        registry_url = settings.registry_url

        async def registered_keys(bpp_id: str) -> list[bytes]:
            now = datetime.now(UTC)
            records = await node.registry.lookup(subscriber_id=bpp_id)
            return [r.verify_key.encode() for r in records
                    if r.subscriber_id == bpp_id and r.usable_at(now) is None and r.verify_key is not None]

        return cls(trusted_issuers=settings.trusted_merchant_issuers(), registered_keys=registered_keys,
                   allow_http=registry_url.startswith("http://"),
                   ttl_seconds=settings.bap_merchant_verification_ttl_seconds)

    # ------------------------------------------------------------------ the offers' view

    def view(self, bpp_id: str, provider: dict[str, Any]) -> dict[str, Any]:
        """`verified` (True/False, None = not checked yet) and, when True, `verified_siret`/`verified_name`.
        Schedules a check when there is no fresh verdict; never waits for one."""
        found = advertised(provider)
        provider_id = provider.get("id") if isinstance(provider, dict) else None
        if found is None or not isinstance(provider_id, str) or not self.trust_list.trusted_issuers[CREDENTIAL_TYPE]:
            return {"verified": False}  # nothing to check, or no issuer to trust: fetch nothing
        url, holder = found
        key = (bpp_id, provider_id, url)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            verdict = cached[1]
            if verdict.verified:
                return {"verified": True, "verified_siret": verdict.siret, "verified_name": verdict.name}
            return {"verified": False}
        self._schedule(key, holder)
        return {"verified": cached[1].verified if cached is not None else None}  # a stale verdict until renewed

    def _schedule(self, key: tuple[str, str, str], holder: str | None) -> None:
        if key in self._pending or len(self._pending) >= self.max_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._run(key, holder))
        self._pending[key] = task
        task.add_done_callback(lambda _t: self._pending.pop(key, None))

    async def _run(self, key: tuple[str, str, str], holder: str | None) -> None:
        bpp_id, provider_id, url = key
        async with self._slots:
            verdict = await self.verify(bpp_id, provider_id, url, holder)
        ttl = self.ttl if verdict.verified or "network:" not in verdict.reason else self.failure_ttl
        if len(self._cache) >= self.max_cached:
            now = time.monotonic()
            for stale in [k for k, (until, _v) in self._cache.items() if until <= now] or list(self._cache)[:1]:
                self._cache.pop(stale, None)
        self._cache[key] = (time.monotonic() + ttl, verdict)
        log.info("bap.merchant_verified", bpp_id=bpp_id, provider_id=provider_id, verified=verdict.verified,
                 reason=verdict.reason[:200])

    async def settled(self) -> None:
        """Wait for the checks under way (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending.values()), return_exceptions=True)

    # ------------------------------------------------------------------ the check itself

    async def verify(self, bpp_id: str, provider_id: str, url: str, holder: str | None = None) -> Verdict:
        try:
            return await self._verify(bpp_id, provider_id, url, holder)
        except VerificationFailed as exc:
            return Verdict(False, str(exc))
        except Exception as exc:  # noqa: BLE001 - fail closed, never break a search
            log.warning("bap.merchant_verification_error", bpp_id=bpp_id, error=type(exc).__name__)
            return Verdict(False, f"network: {type(exc).__name__}")

    async def _verify(self, bpp_id: str, provider_id: str, url: str, holder: str | None) -> Verdict:
        credential = await self.fetch_json(url)
        result = await verify_credential_async(
            credential, trust_list=self.trust_list, fetch_status_list=self.fetch_json,
            allow_http=self.allow_http, expected_type=CREDENTIAL_TYPE)
        if not result.ok:
            raise VerificationFailed("; ".join(result.errors))
        try:
            subject = subject_of(credential)
        except VCError as exc:
            raise VerificationFailed(str(exc)) from None
        if subject.provider_id != provider_id:
            raise VerificationFailed(f"the credential is for provider {subject.provider_id[:64]!r}")
        if holder is not None and holder != subject.did:
            raise VerificationFailed("holder-did differs from the credential's subject")
        if not subject.did.endswith(participant_suffix(bpp_id)):
            raise VerificationFailed(f"the subject is not the participant DID of {bpp_id}")
        try:
            document = await methods.resolve_async(subject.did, allow_http=self.allow_http, timeout=self.timeout)
        except methods.DIDError as exc:
            raise VerificationFailed(f"network: the subject DID does not resolve: {exc}") from None
        registered = set(await self.registered_keys(bpp_id))
        if not registered & current_ed25519_keys(document):
            raise VerificationFailed(f"the subject DID's keys are not {bpp_id}'s registered signing keys")
        return Verdict(True, "verified", siret=subject.siret, name=subject.legal_name, commune=subject.commune)

    async def fetch_json(self, url: str) -> Any:
        """GET a JSON document: https (http only with allow_http), bounded in size and time, no redirects."""
        parsed = httpx.URL(url)
        if parsed.scheme != "https" and not (self.allow_http and parsed.scheme == "http"):
            raise VerificationFailed(f"refusing to fetch {parsed.scheme!r} URL (https only)")
        if not self.allow_http:
            # Best-effort SSRF check shared with did:web resolution (see did.methods).
            await methods.refuse_internal_host(parsed.host)
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
            try:
                async with http.stream("GET", url, headers={"Accept": "application/json"}) as resp:
                    if resp.status_code != 200:
                        raise VerificationFailed(f"network: fetching the credential failed: HTTP {resp.status_code}")
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > self.max_bytes:
                            raise VerificationFailed(f"the document exceeds {self.max_bytes} bytes")
            except httpx.HTTPError as exc:
                raise VerificationFailed(f"network: {type(exc).__name__}") from None
        try:
            return json.loads(bytes(body))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise VerificationFailed("the document is not JSON") from None


__all__ = ["MerchantVerifier", "Verdict", "advertised", "current_ed25519_keys"]
