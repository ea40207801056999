"""The signed trust list: issuer DIDs per credential type, checked offline against the operator DID."""

from __future__ import annotations

import json

from datetime import datetime, timedelta, timezone

import pytest
from jwcrypto import jwk

from did.trust import TrustList, TrustListError
from did.vc import VC_V2_CONTEXT, did_key_from_jwk, issue_credential_di
from did.verify import CredentialVerificationError, verify_credential


@pytest.fixture(scope="module")
def keys():
    return {name: jwk.JWK.generate(kty="OKP", crv="Ed25519") for name in ("operator", "ctm", "commune", "mallory")}


def test_sign_load_and_check(keys):
    operator = did_key_from_jwk(keys["operator"])
    ctm, commune = did_key_from_jwk(keys["ctm"]), did_key_from_jwk(keys["commune"])
    tl = TrustList.from_mapping({"TransportPassCredential": [ctm], "ResidentCredential": [commune]})
    token = tl.sign(keys["operator"])
    loaded = TrustList.load(token, operator_did=operator)
    assert loaded.issuer == operator
    assert loaded.check_issuer("ResidentCredential", commune)
    assert not loaded.check_issuer("ResidentCredential", ctm)
    assert loaded.check_issuer("TransportPassCredential", ctm)
    assert not loaded.check_issuer("UnknownCredential", ctm)


def test_load_refuses_wrong_signer_tamper_and_expiry(keys):
    operator = did_key_from_jwk(keys["operator"])
    tl = TrustList.from_mapping({"ResidentCredential": [did_key_from_jwk(keys["commune"])]})
    # signed by someone other than the pinned operator
    with pytest.raises(TrustListError, match="operator"):
        TrustList.load(tl.sign(keys["mallory"]), operator_did=operator)
    # payload swapped under the operator's signature
    good = tl.sign(keys["operator"])
    evil_payload = jwk.base64url_encode(json.dumps(
        {"iss": operator, "version": 2, "trusted_issuers": {"ResidentCredential": [did_key_from_jwk(keys["mallory"])]}}
    ))
    h, _, s = good.split(".")
    with pytest.raises(TrustListError, match="signature"):
        TrustList.load(".".join([h, evil_payload, s]), operator_did=operator)
    # expired
    token = tl.sign(keys["operator"], ttl_seconds=60)
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    with pytest.raises(TrustListError, match="expired"):
        TrustList.load(token, operator_did=operator, now=later)
    with pytest.raises(TrustListError):
        TrustList.load("nonsense", operator_did=operator)


def _resident(key, types=("VerifiableCredential", "ResidentCredential")):
    return issue_credential_di(
        {"@context": [VC_V2_CONTEXT], "type": list(types), "credentialSubject": {"id": "did:example:c"}}, key
    )


def test_verify_credential_untrusted_issuer(keys):
    operator = did_key_from_jwk(keys["operator"])
    commune = did_key_from_jwk(keys["commune"])
    tl = TrustList.load(
        TrustList.from_mapping({"ResidentCredential": [commune], "TransportPassCredential": [did_key_from_jwk(keys["ctm"])]}).sign(keys["operator"]),
        operator_did=operator,
    )
    assert verify_credential(_resident(keys["commune"]), trust_list=tl).ok
    assert verify_credential(_resident(keys["commune"]), trust_list=tl, expected_type="ResidentCredential").ok

    # a validly signed credential from an issuer not on the list
    result = verify_credential(_resident(keys["mallory"]), trust_list=tl)
    assert result.checks["signature"].ok and not result.checks["trust"].ok and not result.ok
    with pytest.raises(CredentialVerificationError, match="trust list"):
        verify_credential(_resident(keys["mallory"]), trust_list=tl, raise_on_failure=True)

    # a trusted commune cannot vouch for a type it is not trusted for by adding it to `type`
    mixed = _resident(keys["commune"], ("VerifiableCredential", "ResidentCredential", "TransportPassCredential"))
    assert not verify_credential(mixed, trust_list=tl).ok
    # the verifier asked for another type than the credential has
    assert not verify_credential(_resident(keys["commune"]), trust_list=tl, expected_type="TransportPassCredential").ok
    # only the generic type: nothing to check the issuer against
    assert not verify_credential(_resident(keys["commune"], ("VerifiableCredential",)), trust_list=tl).ok
