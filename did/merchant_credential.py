"""The Martinique merchant (business) credential: a VC 2.0 saying "this Beckn provider is this business".

An operator (the network operator or a chamber of commerce, identified by a did:key) issues a
``MartiniqueMerchantCredential`` secured with a Data Integrity ``eddsa-jcs-2022`` proof
(:mod:`did.vc`). Its subject is the BPP participant's did:web as the registry serves it
(:func:`registry.did.participant_did`): a DID whose verification methods are exactly the BPP's
registered Beckn Ed25519 keys, so a BAP can tie the credential to the key that signed an
``on_search``. Shape::

    {"@context": ["https://www.w3.org/ns/credentials/v2"],
     "type": ["VerifiableCredential", "MartiniqueMerchantCredential"],
     "issuer": "did:key:z6Mk...",
     "validFrom": "...", "validUntil": "...",
     "credentialSubject": {"id": "did:web:registry.lakou.mq:participants:bpp.example.mq",
                           "type": "MartiniqueMerchant",
                           "providerId": "jardin-lamentin", "siret": "94580730215736",
                           "legalName": "Le Jardin du Lamentin", "commune": "insee:97213"},
     "credentialStatus": {... BitstringStatusListEntry, optional ...},
     "proof": {... DataIntegrityProof / eddsa-jcs-2022 ...}}

The subject's properties are not in the VC 2.0 base context: eddsa-jcs-2022 signs the JSON (JCS),
not RDF, so no JSON-LD context is needed for the proof to hold; they are defined here.
:func:`subject_of` reads and checks them (used by the BPP at upload and by the BAP after
:func:`did.verify.verify_credential_async`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from jwcrypto import jwk as jwk_mod

from did.vc import VC_V2_CONTEXT, VCError, _contexts, format_datetime, issue_credential_di

CREDENTIAL_TYPE = "MartiniqueMerchantCredential"
SUBJECT_TYPE = "MartiniqueMerchant"
_SIRET_RE = re.compile(r"^[0-9]{14}$")
_COMMUNE_RE = re.compile(r"^insee:97[0-9]{3}$")
_PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class MerchantSubject:
    did: str
    provider_id: str
    siret: str
    legal_name: str
    commune: str


def siret_ok(siret: str) -> bool:
    """14 digits. (The Luhn check is bpp.merchant_api.siret_ok; the issuer is expected to check the
    SIRET against the SIRENE register before signing, which no offline check replaces.)"""
    return _SIRET_RE.fullmatch(siret) is not None


def build_merchant_credential(
    *, subject_did: str, provider_id: str, siret: str, legal_name: str, commune: str,
    valid_from: datetime | None = None, valid_days: int = 365, credential_status: dict | None = None,
    credential_id: str | None = None,
) -> dict:
    """The unsigned credential; raises ValueError on a malformed field."""
    siret = siret.replace(" ", "")
    if not subject_did.startswith("did:web:"):
        raise ValueError("the subject must be the BPP participant's did:web")
    if not _PROVIDER_RE.fullmatch(provider_id):
        raise ValueError("provider id: lowercase letters, digits and '-', at most 64")
    if not siret_ok(siret):
        raise ValueError("not a valid SIRET: 14 digits")
    if not legal_name.strip() or len(legal_name) > 200:
        raise ValueError("the legal name must be 1 to 200 characters")
    if not _COMMUNE_RE.fullmatch(commune):
        raise ValueError("the commune must be an INSEE code of Martinique, e.g. insee:97213")
    if valid_days < 1:
        raise ValueError("valid_days must be at least 1")
    start = (valid_from or datetime.now(timezone.utc)).replace(microsecond=0)
    credential: dict[str, Any] = {
        "@context": [VC_V2_CONTEXT],
        "id": credential_id or f"urn:uuid:{uuid.uuid4()}",
        "type": ["VerifiableCredential", CREDENTIAL_TYPE],
        "validFrom": format_datetime(start),
        "validUntil": format_datetime(start + timedelta(days=valid_days)),
        "credentialSubject": {
            "id": subject_did,
            "type": SUBJECT_TYPE,
            "providerId": provider_id,
            "siret": siret,
            "legalName": legal_name.strip(),
            "commune": commune,
        },
    }
    if credential_status is not None:
        credential["credentialStatus"] = credential_status
    return credential


def issue_merchant_credential(issuer_key: jwk_mod.JWK, **fields: Any) -> dict:
    """Build and sign (eddsa-jcs-2022); the issuer is the key's did:key."""
    return issue_credential_di(build_merchant_credential(**fields), issuer_key)


def subject_of(credential: Any) -> MerchantSubject:
    """The merchant subject of a credential, checking its shape (not its proof: see did.verify)."""
    if not isinstance(credential, dict):
        raise VCError("the credential must be a JSON object")
    if _contexts(credential.get("@context"))[:1] != [VC_V2_CONTEXT]:
        raise VCError(f"the credential's @context must start with {VC_V2_CONTEXT}")
    if CREDENTIAL_TYPE not in _contexts(credential.get("type")):
        raise VCError(f"the credential is not a {CREDENTIAL_TYPE}")
    if not isinstance(credential.get("proof"), (dict, list)):
        raise VCError("the credential has no proof")
    subject = credential.get("credentialSubject")
    if not isinstance(subject, dict):
        raise VCError("credentialSubject must be one JSON object")
    values = {k: subject.get(k) for k in ("id", "providerId", "siret", "legalName", "commune")}
    missing = [k for k, v in values.items() if not isinstance(v, str) or not v]
    if missing:
        raise VCError(f"credentialSubject lacks {', '.join(missing)}")
    if not values["id"].startswith("did:web:"):
        raise VCError("credentialSubject.id must be a did:web")
    return MerchantSubject(did=values["id"], provider_id=values["providerId"], siret=values["siret"],
                           legal_name=values["legalName"], commune=values["commune"])


__all__ = ["CREDENTIAL_TYPE", "MerchantSubject", "build_merchant_credential", "issue_merchant_credential",
           "siret_ok", "subject_of"]
