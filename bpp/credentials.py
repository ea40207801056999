"""Merchants' business credentials (issue 7): upload, publish, and advertise in on_search.

A merchant uploads the `MartiniqueMerchantCredential` (did.merchant_credential) it got from the
network operator or its chamber of commerce for one of its providers:

- `PUT /api/v1/merchant/providers/{id}/credential` (merchant API key; JSON body = the VC): checked
  here for shape only — it must be a VC 2.0 `MartiniqueMerchantCredential` with a proof, name this
  provider id and this provider's SIRET, and its subject must be this BPP's own participant did:web
  (LAKOU_BPP_PARTICIPANT_DID, else `registry.did.participant_did(LAKOU_REGISTRY_URL, subscriber_id)`:
  the DID whose verification methods are this BPP's registered Beckn keys). The issuer's signature and trust are the BAP's
  business (did.verify), not ours. 422 with the reason otherwise; another merchant's provider 404.
- `DELETE` the same path removes it (204).
- `GET /credentials/providers/{id}.json` (public, no auth): the credential as uploaded.

Stored in `bpp_provider_profile.business_credential` as `{"credential": <VC>, "url": <public URL>,
"holder": <subject DID>}` (the URL is fixed at upload from this node's public base URL, so the
catalogue can name it without knowing the request). `provider_json` (bpp.catalogue) then adds the
TagGroup of :func:`credential_tags` to the provider (identity.md 5.4)::

    {"descriptor": {"code": "verifiable-credentials"},
     "list": [{"descriptor": {"code": "business-credential"}, "value": "<url>"},
              {"descriptor": {"code": "holder-did"}, "value": "did:web:..."}]}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bpp import merchants
from bpp.settings import BppSettings
from bpp.tables import BppProviderProfile
from did.merchant_credential import subject_of
from did.vc import VCError
from registry.did import participant_did

log = structlog.get_logger(__name__)

TAG_GROUP = "verifiable-credentials"
TAG_CREDENTIAL = "business-credential"
TAG_HOLDER = "holder-did"
MAX_CREDENTIAL_BYTES = 32 * 1024

IdPath = Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")


def credential_url(base_url: str, provider_id: str) -> str:
    return f"{base_url.rstrip('/')}/credentials/providers/{provider_id}.json"


def credential_tags(profile: BppProviderProfile | None) -> dict[str, Any] | None:
    """The provider's `verifiable-credentials` TagGroup, or None without a credential."""
    stored = profile.business_credential if profile is not None else None
    if not isinstance(stored, dict) or not stored.get("url"):
        return None
    return {"descriptor": {"code": TAG_GROUP, "name": "Verifiable credentials"},
            "list": [{"descriptor": {"code": TAG_CREDENTIAL}, "value": stored["url"]},
                     {"descriptor": {"code": TAG_HOLDER}, "value": stored["holder"]}]}


def check_credential(credential: Any, *, provider_id: str, siret: str, own_did: str) -> str:
    """The subject DID of an acceptable credential for this provider; HTTPException 422 otherwise."""
    def refuse(message: str) -> HTTPException:
        return HTTPException(422, [{"loc": ["body"], "msg": message, "type": "value_error"}])

    try:
        subject = subject_of(credential)
    except VCError as exc:
        raise refuse(f"not a usable MartiniqueMerchantCredential: {exc}") from None
    if subject.provider_id != provider_id:
        raise refuse(f"the credential is for provider {subject.provider_id[:64]!r}, not {provider_id!r}")
    if subject.siret.replace(" ", "") != siret:
        raise refuse("the credential's SIRET is not this provider's SIRET")
    if subject.did != own_did:
        raise refuse(f"the credential's subject must be this BPP's participant DID {own_did}")
    return subject.did


def own_participant_did(settings: BppSettings, subscriber_id: str) -> str:
    """This BPP's participant did:web (LAKOU_BPP_PARTICIPANT_DID, else as the registry builds it)."""
    return settings.bpp_participant_did or participant_did(settings.registry_url, subscriber_id)


def credential_routes(sessions: async_sessionmaker[AsyncSession], *, own_did: str, base_url: str) -> APIRouter:
    router = APIRouter()
    current_merchant = merchants.merchant_auth(sessions)
    own = {"tags": ["merchant catalogue"],
           "responses": {401: {"description": "Missing, unknown or revoked API key"},
                         404: {"description": "No such provider among this merchant's"},
                         422: {"description": "Not a credential for this provider, SIRET and BPP"}}}

    async def owned(session: AsyncSession, merchant_id: str, provider_id: str) -> BppProviderProfile:
        profile = await session.get(BppProviderProfile, provider_id)
        if profile is None or profile.merchant_id != merchant_id:
            raise HTTPException(404, f"provider {provider_id!r} not found")
        return profile

    @router.put("/api/v1/merchant/providers/{provider_id}/credential", **own,
                summary="Upload the provider's business credential (a MartiniqueMerchantCredential)")
    async def put_credential(provider_id: str = IdPath, credential: dict[str, Any] = Body(...),
                             merchant_id: str = Depends(current_merchant)) -> dict[str, Any]:
        # Bounded: a credential is a few kB; the body was parsed already, its re-serialisation is cheap.
        if len(JSONResponse(credential).body) > MAX_CREDENTIAL_BYTES:
            raise HTTPException(413, f"a credential is at most {MAX_CREDENTIAL_BYTES} bytes")
        async with sessions() as session:
            profile = await owned(session, merchant_id, provider_id)
            holder = check_credential(credential, provider_id=provider_id, siret=profile.siret, own_did=own_did)
            url = credential_url(base_url, provider_id)
            profile.business_credential = {"credential": credential, "url": url, "holder": holder}
            profile.updated_at = datetime.now(UTC)
            session.add(profile)
            await session.commit()
        log.info("bpp.credential_uploaded", provider_id=provider_id, merchant_id=merchant_id)
        return {"provider_id": provider_id, "url": url, "holder_did": holder}

    @router.delete("/api/v1/merchant/providers/{provider_id}/credential", status_code=204, **own,
                   summary="Remove the provider's business credential")
    async def delete_credential(provider_id: str = IdPath, merchant_id: str = Depends(current_merchant)) -> Response:
        async with sessions() as session:
            profile = await owned(session, merchant_id, provider_id)
            profile.business_credential = None
            profile.updated_at = datetime.now(UTC)
            session.add(profile)
            await session.commit()
        return Response(status_code=204)

    @router.get("/credentials/providers/{provider_id}.json", tags=["credentials"],
                summary="A provider's business credential (public)",
                responses={404: {"description": "No such provider, or it has no credential"}})
    async def get_credential(provider_id: str = IdPath) -> JSONResponse:
        async with sessions() as session:
            profile = await session.get(BppProviderProfile, provider_id)
        stored = profile.business_credential if profile is not None else None
        if not isinstance(stored, dict):
            raise HTTPException(404, f"provider {provider_id!r} has no business credential")
        return JSONResponse(stored["credential"], headers={"Cache-Control": "public, max-age=300"})

    return router


__all__ = ["check_credential", "credential_routes", "credential_tags", "credential_url", "own_participant_did"]
