"""W3C Bitstring Status List v1.0: encoding per the spec, and revocation through verify_credential."""

from __future__ import annotations

import base64
import gzip

import pytest
from jwcrypto import jwk

from did.status import (
    MIN_ENTRIES,
    BitstringStatusList,
    StatusListError,
    check_status,
    status_entry,
    status_list_credential,
)
from did.trust import TrustList
from did.vc import VC_V2_CONTEXT, did_key_from_jwk, issue_credential_di
from did.verify import verify_credential

LIST_URL = "https://status.lakou.example/lists/1"


def test_spec_example_encoded_list_decodes():
    # encodedList of the spec's example BitstringStatusListCredential (vc-bitstring-status-list §2.2):
    # an all-zero list of the 16 KB minimum.
    example = "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"
    decoded = BitstringStatusList.decode(example)
    assert len(decoded) == MIN_ENTRIES == 131072
    assert not any(decoded.get(i) for i in (0, 1, 94567, MIN_ENTRIES - 1))


def test_encoding_is_multibase_base64url_gzip_msb_first():
    lst = BitstringStatusList()
    lst.set(0)
    lst.set(9)
    enc = lst.encode()
    assert enc.startswith("u") and "=" not in enc and "+" not in enc and "/" not in enc
    raw = gzip.decompress(base64.urlsafe_b64decode(enc[1:] + "=" * (-len(enc[1:]) % 4)))
    assert len(raw) == 16384
    # index 0 is the left-most (most significant) bit of the first byte
    assert raw[0] == 0b1000_0000 and raw[1] == 0b0100_0000 and not any(raw[2:])
    back = BitstringStatusList.decode(enc)
    assert back.get(0) and back.get(9) and not back.get(1)
    back.clear(9)
    assert not back.get(9)


def test_bad_lists_and_indexes_rejected():
    with pytest.raises(StatusListError, match="at least"):
        BitstringStatusList(1024)
    short = "u" + base64.urlsafe_b64encode(gzip.compress(bytes(100))).rstrip(b"=").decode()
    with pytest.raises(StatusListError, match="minimum"):
        BitstringStatusList.decode(short)
    with pytest.raises(StatusListError, match="'u'"):
        BitstringStatusList.decode("z123")
    with pytest.raises(StatusListError, match="GZIP"):
        BitstringStatusList.decode("u" + base64.urlsafe_b64encode(b"not gzip").rstrip(b"=").decode())
    with pytest.raises(StatusListError, match="outside"):
        BitstringStatusList().get(MIN_ENTRIES)
    entry = status_entry(LIST_URL, 5)
    assert entry == {
        "id": f"{LIST_URL}#5",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "5",
        "statusListCredential": LIST_URL,
    }
    cred = status_list_credential(LIST_URL, "did:example:i", BitstringStatusList(), status_purpose="suspension")
    with pytest.raises(StatusListError, match="statusPurpose"):
        check_status(entry, cred)
    with pytest.raises(StatusListError, match="statusListIndex"):
        check_status(entry | {"statusListIndex": 5}, cred)


@pytest.fixture(scope="module")
def key() -> jwk.JWK:
    return jwk.JWK.generate(kty="OKP", crv="Ed25519")


def _credential(key, index):
    return issue_credential_di(
        {
            "@context": [VC_V2_CONTEXT],
            "type": ["VerifiableCredential", "ResidentCredential"],
            "validFrom": "2025-01-01T00:00:00Z",
            "credentialSubject": {"id": "did:example:citizen"},
            "credentialStatus": status_entry(LIST_URL, index),
        },
        key,
    )


def test_revocation_through_verify_credential(key):
    did = did_key_from_jwk(key)
    trust = TrustList.from_mapping({"ResidentCredential": [did]})
    lst = BitstringStatusList()
    published: dict[str, dict] = {}

    def publish():
        published[LIST_URL] = issue_credential_di(status_list_credential(LIST_URL, did, lst), key)

    publish()
    cred = _credential(key, 1234)
    result = verify_credential(cred, trust_list=trust, fetch_status_list=published.__getitem__)
    assert result.ok, result.errors
    assert "clear" in result.checks["status"].detail

    lst.set(1234)
    publish()
    result = verify_credential(cred, trust_list=trust, fetch_status_list=published.__getitem__)
    assert not result.ok and "revoked" in result.checks["status"].detail
    assert result.checks["signature"].ok and result.checks["trust"].ok

    # a credential with a status entry but no way to fetch the list fails closed
    assert not verify_credential(cred, trust_list=trust).checks["status"].ok
    # an unreachable list fails closed
    assert not verify_credential(cred, trust_list=trust, fetch_status_list=lambda url: {}[url]).checks["status"].ok


def test_status_list_must_be_signed_by_the_issuer(key):
    did = did_key_from_jwk(key)
    trust = TrustList.from_mapping({"ResidentCredential": [did]})
    cred = _credential(key, 7)
    # a list that says "not revoked" but is signed by someone else is refused
    mallory = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    fake = issue_credential_di(status_list_credential(LIST_URL, did_key_from_jwk(mallory), BitstringStatusList()), mallory)
    result = verify_credential(cred, trust_list=trust, fetch_status_list=lambda url: fake)
    assert not result.ok and "issuer" in result.checks["status"].detail
    # a tampered list (bit cleared after signing) is refused
    lst = BitstringStatusList()
    lst.set(7)
    signed = issue_credential_di(status_list_credential(LIST_URL, did, lst), key)
    signed["credentialSubject"]["encodedList"] = BitstringStatusList().encode()
    result = verify_credential(cred, trust_list=trust, fetch_status_list=lambda url: signed)
    assert not result.ok and "signature" in result.checks["status"].detail
