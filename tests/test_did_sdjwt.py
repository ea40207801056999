"""SD-JWT (RFC 9901) + SD-JWT VC: did/sdjwt.py.

RFC vectors (section 4.2 disclosures and digests; the section 5.1 issued SD-JWT, whose signature
checks with the Appendix A.5 issuer key), issue → present → verify round trips, every rejection
path, a MartiniqueResidentCredential, DID issuers, and a two-way cross-check with the `sd-jwt`
reference implementation (0.10.4).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from jwcrypto import jwk, jws

from did import methods, sdjwt
from did.sdjwt import SD, SdJwtError

NOW = 1_800_000_000  # fixed clock for every test
NONCE, AUD = "n-0S6_WzA2Mj", "https://verifier.example.mq"
VCT = "https://connect.lakou.mq/vct/MartiniqueResidentCredential"
ISS = "https://connect.lakou.mq"


def _key(kind: str) -> jwk.JWK:
    if kind == "ES256":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    return jwk.JWK.generate(kty="OKP", crv="Ed25519")


@pytest.fixture(scope="module")
def keys():
    return {k: _key(k) for k in ("ES256", "EdDSA")} | {
        "holder": _key("ES256"),
        "holder_ed": _key("EdDSA"),
        "other": _key("ES256"),
    }


def _resident(keys, issuer="ES256", holder="holder", **kw):
    claims = {
        "commune_insee": "97209",  # Fort-de-France, always visible
        "age_over_18": True,
        "given_name": SD("Marie-Josée"),
        "family_name": SD("Lagrange"),
        "birthdate": SD("1990-04-22"),
        "evidence": {"source": "franceconnect", "acr": "eidas1", "verified_at": NOW - 10},
    }
    args = dict(
        issuer_key=keys[issuer], iss=ISS, vct=VCT, holder_jwk=keys[holder], iat=NOW - 60,
        status=sdjwt.status_list_reference("https://connect.lakou.mq/status/1", 42),
    )
    args.update(kw)
    return sdjwt.issue(claims, **args)


def _verify(presentation, keys, issuer="ES256", **kw):
    args = dict(issuer_key=keys[issuer], nonce=NONCE, aud=AUD, now=NOW)
    args.update(kw)
    return sdjwt.verify(presentation, **args)


def _present(cred, keys, disclose=(), holder="holder", **kw):
    args = dict(holder_key=keys[holder], nonce=NONCE, aud=AUD, iat=NOW - 5)
    args.update(kw)
    return sdjwt.present(cred, disclose, **args)


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _payload(jwt: str) -> dict:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _sign_raw(payload: dict, key: jwk.JWK, header: dict) -> str:
    token = jws.JWS(json.dumps(payload).encode())
    token.add_signature(key, alg=None, protected=json.dumps(header))
    return token.serialize(compact=True)


# --- RFC 9901's own examples --------------------------------------------------------------------


def test_rfc_disclosure_and_digest_vectors():
    # RFC 9901 4.2.1 (object property) and 4.2.2 (array element), digests per 4.2.3.
    prop = "WyJfMjZiYzRMVC1hYzZxMktJNmNCVzVlcyIsICJmYW1pbHlfbmFtZSIsICJNw7ZiaXVzIl0"
    elem = "WyJsa2x4RjVqTVlsR1RQVW92TU5JdkNBIiwgIkZSIl0"
    assert sdjwt.make_disclosure("Möbius", "family_name", salt="_26bc4LT-ac6q2KI6cBW5es") == prop
    assert sdjwt.make_disclosure("FR", salt="lklxF5jMYlGTPUovMNIvCA") == elem
    assert sdjwt.decode_disclosure(prop) == ["_26bc4LT-ac6q2KI6cBW5es", "family_name", "Möbius"]
    assert sdjwt.digest(prop) == "X9yH0Ajrdm1Oij4tWso9UzzKJvPoDxwmuEcO3XAdRC0"
    assert sdjwt.digest(elem) == "w0I8EKcdCtUPkGCNUrfwVp2xEgNjtoIDlOxc9-PlOhs"


# RFC 9901 section 5.1: the issued SD-JWT, signed with the Appendix A.5 example issuer key.
RFC_ISSUER_KEY = {"kty": "EC", "crv": "P-256", "x": "b28d4MwZMjw8-00CG4xfnn9SLMVMM19SlqZpVb_uNtQ",
                  "y": "Xv5zWwuoaTgdS6hV43yI6gBwTnjukmFQQnJ_kCxzqk8"}
RFC_SD_JWT = "".join("""
eyJhbGciOiAiRVMyNTYiLCAidHlwIjogImV4YW1wbGUrc2Qtand0In0.eyJfc2QiOiBb
IkNyUWU3UzVrcUJBSHQtbk1ZWGdjNmJkdDJTSDVhVFkxc1VfTS1QZ2tqUEkiLCAiSnpZ
akg0c3ZsaUgwUjNQeUVNZmVadTZKdDY5dTVxZWhabzdGN0VQWWxTRSIsICJQb3JGYnBL
dVZ1Nnh5bUphZ3ZrRnNGWEFiUm9jMkpHbEFVQTJCQTRvN2NJIiwgIlRHZjRvTGJnd2Q1
SlFhSHlLVlFaVTlVZEdFMHc1cnREc3JaemZVYW9tTG8iLCAiWFFfM2tQS3QxWHlYN0tB
TmtxVlI2eVoyVmE1TnJQSXZQWWJ5TXZSS0JNTSIsICJYekZyendzY002R242Q0pEYzZ2
Vks4QmtNbmZHOHZPU0tmcFBJWmRBZmRFIiwgImdiT3NJNEVkcTJ4Mkt3LXc1d1BFemFr
b2I5aFYxY1JEMEFUTjNvUUw5Sk0iLCAianN1OXlWdWx3UVFsaEZsTV8zSmx6TWFTRnpn
bGhRRzBEcGZheVF3TFVLNCJdLCAiaXNzIjogImh0dHBzOi8vaXNzdWVyLmV4YW1wbGUu
Y29tIiwgImlhdCI6IDE2ODMwMDAwMDAsICJleHAiOiAxODgzMDAwMDAwLCAic3ViIjog
InVzZXJfNDIiLCAibmF0aW9uYWxpdGllcyI6IFt7Ii4uLiI6ICJwRm5kamtaX1ZDem15
VGE2VWpsWm8zZGgta284YUlLUWM5RGxHemhhVllvIn0sIHsiLi4uIjogIjdDZjZKa1B1
ZHJ5M2xjYndIZ2VaOGtoQXYxVTFPU2xlclAwVmtCSnJXWjAifV0sICJfc2RfYWxnIjog
InNoYS0yNTYiLCAiY25mIjogeyJqd2siOiB7Imt0eSI6ICJFQyIsICJjcnYiOiAiUC0y
NTYiLCAieCI6ICJUQ0FFUjE5WnZ1M09IRjRqNFc0dmZTVm9ISVAxSUxpbERsczd2Q2VH
ZW1jIiwgInkiOiAiWnhqaVdXYlpNUUdIVldLVlE0aGJTSWlyc1ZmdWVjQ0U2dDRqVDlG
MkhaUSJ9fX0.XaB1KmNGBE-uKjT8M3VSu65QVWdNMjuhJI1sIEM4TIEs6Ae2f0DfWP80
TAg79QIhbz04IIrrXyrEbzkeZLoVHQ~WyIyR0xDNDJzS1F2ZUNmR2ZyeU5STjl3IiwgI
mdpdmVuX25hbWUiLCAiSm9obiJd~WyJlbHVWNU9nM2dTTklJOEVZbnN4QV9BIiwgImZh
bWlseV9uYW1lIiwgIkRvZSJd~WyI2SWo3dE0tYTVpVlBHYm9TNXRtdlZBIiwgImVtYWl
sIiwgImpvaG5kb2VAZXhhbXBsZS5jb20iXQ~WyJlSThaV205UW5LUHBOUGVOZW5IZGhR
IiwgInBob25lX251bWJlciIsICIrMS0yMDItNTU1LTAxMDEiXQ~WyJRZ19PNjR6cUF4Z
TQxMmExMDhpcm9BIiwgInBob25lX251bWJlcl92ZXJpZmllZCIsIHRydWVd~WyJBSngt
MDk1VlBycFR0TjRRTU9xUk9BIiwgImFkZHJlc3MiLCB7InN0cmVldF9hZGRyZXNzIjog
IjEyMyBNYWluIFN0IiwgImxvY2FsaXR5IjogIkFueXRvd24iLCAicmVnaW9uIjogIkFu
eXN0YXRlIiwgImNvdW50cnkiOiAiVVMifV0~WyJQYzMzSk0yTGNoY1VfbEhnZ3ZfdWZR
IiwgImJpcnRoZGF0ZSIsICIxOTQwLTAxLTAxIl0~WyJHMDJOU3JRZmpGWFE3SW8wOXN5
YWpBIiwgInVwZGF0ZWRfYXQiLCAxNTcwMDAwMDAwXQ~WyJsa2x4RjVqTVlsR1RQVW92T
U5JdkNBIiwgIlVTIl0~WyJuUHVvUW5rUkZxM0JJZUFtN0FuWEZBIiwgIkRFIl0~
""".split())


def test_rfc_example_sd_jwt_verifies_and_processes():
    key = jwk.JWK(**RFC_ISSUER_KEY)
    out = sdjwt.verify(RFC_SD_JWT, issuer_key=key, require_kb=False, now=1_700_000_000,
                       vc_profile=False)
    assert out.claims == {  # the processed payload of RFC 9901 section 5.1
        "iss": "https://issuer.example.com", "iat": 1683000000, "exp": 1883000000,
        "sub": "user_42", "nationalities": ["US", "DE"],
        "cnf": {"jwk": {"kty": "EC", "crv": "P-256",
                        "x": "TCAER19Zvu3OHF4j4W4vfSVoHIP1ILilDls7vCeGemc",
                        "y": "ZxjiWWbZMQGHVWKVQ4hbSIirsVfuecCE6t4jT9F2HZQ"}},
        "given_name": "John", "family_name": "Doe", "email": "johndoe@example.com",
        "phone_number": "+1-202-555-0101", "phone_number_verified": True,
        "address": {"street_address": "123 Main St", "locality": "Anytown",
                    "region": "Anystate", "country": "US"},
        "birthdate": "1940-01-01", "updated_at": 1570000000,
    }
    # Holder side: keep only given_name and the second nationality; the rest stays hidden.
    presented = sdjwt.present(RFC_SD_JWT, ["given_name", ("nationalities", 1)])
    out = sdjwt.verify(presented, issuer_key=key, require_kb=False, now=1_700_000_000,
                       vc_profile=False)
    assert out.claims["given_name"] == "John" and out.claims["nationalities"] == ["DE"]
    assert "family_name" not in out.claims and "address" not in out.claims
    # The SD-JWT VC profile refuses it: typ example+sd-jwt and no vct.
    with pytest.raises(SdJwtError, match="typ must be dc\\+sd-jwt"):
        sdjwt.verify(RFC_SD_JWT, issuer_key=key, require_kb=False, now=1_700_000_000)


# --- issue → present → verify -------------------------------------------------------------------


@pytest.mark.parametrize("issuer,holder", [("ES256", "holder"), ("EdDSA", "holder_ed")])
def test_issue_present_verify_subsets(keys, issuer, holder):
    cred = _resident(keys, issuer=issuer, holder=holder)
    header, payload = sdjwt._unverified_jwt(cred.split("~")[0], "x")
    assert header["typ"] == "dc+sd-jwt" and header["alg"] == issuer
    assert payload["_sd_alg"] == "sha-256" and payload["vct"] == VCT and payload["iss"] == ISS
    assert payload["exp"] == NOW - 60 + 365 * 24 * 3600
    assert payload["cnf"]["jwk"] == keys[holder].export_public(as_dict=True)
    assert payload["status"] == {"status_list": {"idx": 42, "uri": "https://connect.lakou.mq/status/1"}}
    assert "given_name" not in payload and "Marie" not in json.dumps(payload)

    for disclose in ([], ["given_name"], ["given_name", "family_name", "birthdate"]):
        out = _verify(_present(cred, keys, disclose, holder=holder), keys, issuer=issuer)
        assert out.claims["commune_insee"] == "97209" and out.claims["age_over_18"] is True
        shown = {k for k in ("given_name", "family_name", "birthdate") if k in out.claims}
        assert shown == set(disclose)
        assert out.holder_jwk.thumbprint() == keys[holder].thumbprint()
        assert out.key_binding["nonce"] == NONCE and out.key_binding["aud"] == AUD
        assert "_sd" not in json.dumps(out.claims)


def test_martinique_resident_credential(keys):
    cred = _resident(keys)
    assert sdjwt.disclosures_by_path(cred) == {
        ("given_name",): "Marie-Josée", ("family_name",): "Lagrange", ("birthdate",): "1990-04-22",
    }
    # A bakery checking age and residency learns nothing else.
    out = _verify(_present(cred, keys, []), keys, vct=VCT)
    assert {k: out.claims[k] for k in ("commune_insee", "age_over_18")} == {
        "commune_insee": "97209", "age_over_18": True}
    assert out.claims["commune_insee"].startswith("972")
    assert out.disclosed == []
    out = _verify(_present(cred, keys, ["family_name"]), keys)
    assert out.claims["family_name"] == "Lagrange" and out.disclosed == [("family_name",)]
    with pytest.raises(SdJwtError, match="unexpected vct"):
        _verify(_present(cred, keys), keys, vct="urn:other")


def test_nested_and_array_disclosures(keys):
    claims = {
        "nationalities": [SD("FR"), "BR", SD("DE")],
        "address": SD({"locality": SD("Le Lamentin"), "country": "FR"}),
    }
    cred = sdjwt.issue(claims, issuer_key=keys["EdDSA"], iss=ISS, vct=VCT,
                       holder_jwk=keys["holder"], iat=NOW)
    assert set(sdjwt.disclosures_by_path(cred)) == {
        ("nationalities", 0), ("nationalities", 2), ("address",), ("address", "locality")}
    # Disclosing the nested locality also discloses its enclosing address (and nothing more).
    out = _verify(_present(cred, keys, [("address", "locality"), ("nationalities", 2)]),
                  keys, issuer="EdDSA")
    assert out.claims["address"] == {"locality": "Le Lamentin", "country": "FR"}
    assert out.claims["nationalities"] == ["BR", "DE"]
    out = _verify(_present(cred, keys, ["address"]), keys, issuer="EdDSA")
    assert out.claims["address"] == {"country": "FR"} and out.claims["nationalities"] == ["BR"]
    with pytest.raises(SdJwtError, match="no disclosure for claim nationalities/1"):
        _present(cred, keys, [("nationalities", 1)])
    # A nested disclosure without its parent matches no reachable digest.
    jwt, discs, _ = sdjwt.split(cred)
    child = [d for d in discs if sdjwt.decode_disclosure(d)[1:2] == ["locality"]]
    bare = jwt + "~" + child[0] + "~"
    with pytest.raises(SdJwtError, match="does not match any digest"):
        _verify(bare, keys, issuer="EdDSA", require_kb=False)


def test_decoys(keys):
    cred = _resident(keys, decoys=3)
    payload = _payload(cred.split("~")[0])
    assert len(payload["_sd"]) == 3 + 3 and payload["_sd"] == sorted(payload["_sd"])
    cred = _resident(keys, decoys=0)
    assert len(_payload(cred.split("~")[0])["_sd"]) == 3
    cred = sdjwt.issue({"n": [SD(1)]}, issuer_key=keys["ES256"], iss=ISS, vct=VCT, decoys=2)
    assert len(_payload(cred.split("~")[0])["n"]) == 3
    assert sdjwt.verify(cred, issuer_key=keys["ES256"], require_kb=False).claims["n"] == [1]


def test_salts_are_128_bit_and_unique(keys):
    discs = sdjwt.split(_resident(keys))[1] + sdjwt.split(_resident(keys))[1]
    salts = [sdjwt.decode_disclosure(d)[0] for d in discs]
    assert len(set(salts)) == len(salts)
    assert all(len(base64.urlsafe_b64decode(s + "==")) == 16 for s in salts)


def test_issue_refuses_bad_input(keys):
    base = dict(issuer_key=keys["ES256"], iss=ISS, vct=VCT)
    with pytest.raises(SdJwtError, match="'vct' is set by issue"):
        sdjwt.issue({"vct": "x"}, **base)
    with pytest.raises(SdJwtError, match="reserved by SD-JWT"):
        sdjwt.issue({"_sd": []}, **base)
    with pytest.raises(SdJwtError, match="holder_jwk must be a public key"):
        sdjwt.issue({}, holder_jwk=keys["holder"].export(as_dict=True), **base)
    with pytest.raises(SdJwtError, match="has no private part"):
        sdjwt.issue({}, **{**base, "issuer_key": jwk.JWK(**keys["ES256"].export_public(as_dict=True))})
    with pytest.raises(SdJwtError, match="unsupported key type"):
        sdjwt.issue({}, **{**base, "issuer_key": jwk.JWK.generate(kty="EC", crv="P-384")})


# --- rejections ---------------------------------------------------------------------------------


def test_tampered_signature(keys):
    cred = _resident(keys)
    jwt, rest = cred.split("~", 1)
    h, p, s = jwt.split(".")
    forged = _payload(jwt) | {"age_over_18": False}
    with pytest.raises(SdJwtError, match="SD-JWT signature is invalid"):
        _verify(_present(f"{h}.{_b64(forged)}.{s}~{rest}", keys), keys)
    with pytest.raises(SdJwtError, match="SD-JWT signature is invalid"):
        _verify(_present(cred, keys), keys, issuer_key=keys["other"])


def _with_kb(presented: str, key: jwk.JWK) -> str:
    """What a holder (or an attacker holding the key) signs over an arbitrary presentation."""
    kb = {"iat": NOW, "nonce": NONCE, "aud": AUD, "sd_hash": sdjwt.sd_hash(presented)}
    return presented + _sign_raw(kb, key, {"alg": "ES256", "typ": "kb+jwt"})


def test_tampered_foreign_and_repeated_disclosures(keys):
    cred = _resident(keys)
    jwt, discs, _ = sdjwt.split(cred)
    assert _verify(_with_kb(f"{jwt}~{discs[0]}~", keys["holder"]), keys).disclosed
    salt, name, _ = sdjwt.decode_disclosure(discs[0])
    tampered = sdjwt.make_disclosure("Someone Else", name, salt=salt)
    with pytest.raises(SdJwtError, match="does not match any digest"):
        _verify(_with_kb(f"{jwt}~{tampered}~", keys["holder"]), keys)
    foreign = sdjwt.split(_resident(keys))[1][0]
    with pytest.raises(SdJwtError, match="does not match any digest"):
        _verify(_with_kb(f"{jwt}~{foreign}~", keys["holder"]), keys)
    with pytest.raises(SdJwtError, match="presented more than once"):
        _verify(_with_kb(f"{jwt}~{discs[0]}~{discs[0]}~", keys["holder"]), keys)
    with pytest.raises(SdJwtError, match="not base64url-encoded JSON"):
        _verify(f"{jwt}~bm90IGpzb24~", keys, require_kb=False)


def _crafted(keys, payload_extra: dict, disclosures: list[str]) -> str:
    payload = {"iss": ISS, "vct": VCT, "iat": NOW, "_sd_alg": "sha-256"} | payload_extra
    jwt = _sign_raw(payload, keys["ES256"], {"alg": "ES256", "typ": "dc+sd-jwt"})
    return "~".join([jwt, *disclosures]) + "~"


def test_structural_attacks_by_a_bad_issuer(keys):
    dup = sdjwt.make_disclosure("Eve", "given_name")
    with pytest.raises(SdJwtError, match="disclosed claim 'given_name' already exists"):
        _verify(_crafted(keys, {"given_name": "Marie", "_sd": [sdjwt.digest(dup)]}, [dup]),
                keys, require_kb=False)
    with pytest.raises(SdJwtError, match="a digest appears more than once"):
        _verify(_crafted(keys, {"_sd": [sdjwt.digest(dup)], "o": {"_sd": [sdjwt.digest(dup)]}},
                         [dup]), keys, require_kb=False)
    reserved = sdjwt.b64url_encode(json.dumps(["salt", "_sd", ["x"]]).encode())
    with pytest.raises(SdJwtError, match="reserved claim name '_sd'"):
        _verify(_crafted(keys, {"_sd": [sdjwt.digest(reserved)]}, [reserved]), keys,
                require_kb=False)
    elem = sdjwt.make_disclosure("FR")
    with pytest.raises(SdJwtError, match="array-element disclosure is referenced from an object"):
        _verify(_crafted(keys, {"_sd": [sdjwt.digest(elem)]}, [elem]), keys, require_kb=False)
    prop = sdjwt.make_disclosure("FR", "n")
    with pytest.raises(SdJwtError, match="object-property disclosure is referenced from an array"):
        _verify(_crafted(keys, {"a": [{"...": sdjwt.digest(prop)}]}, [prop]), keys,
                require_kb=False)
    hidden_exp = sdjwt.make_disclosure(NOW + 10, "exp")
    with pytest.raises(SdJwtError, match="'exp' must not be selectively disclosable"):
        _verify(_crafted(keys, {"_sd": [sdjwt.digest(hidden_exp)]}, [hidden_exp]), keys,
                require_kb=False)
    with pytest.raises(SdJwtError, match="'vct#integrity' must not be selectively disclosable"):
        sdjwt.issue({"x": {"status": SD(1)}, "vct#integrity": SD("sha256-x")},
                    issuer_key=keys["ES256"], iss=ISS, vct=VCT)
    with pytest.raises(SdJwtError, match="unsupported _sd_alg 'sha-512'"):
        _verify(_crafted(keys, {"_sd_alg": "sha-512"}, []), keys, require_kb=False)
    with pytest.raises(SdJwtError, match="SD-JWT VC has no vct"):
        _verify(_crafted(keys, {"vct": None}, []), keys, require_kb=False)
    off_curve = {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}
    with pytest.raises(SdJwtError, match="cnf.jwk is not a valid key"):
        _verify(_crafted(keys, {"cnf": {"jwk": off_curve}}, []), keys, require_kb=False)
    with pytest.raises(SdJwtError, match="cnf.jwk contains a private key"):
        _verify(_crafted(keys, {"cnf": {"jwk": keys["holder"].export(as_dict=True)}}, []), keys,
                require_kb=False)


def test_header_checks(keys):
    payload = {"iss": ISS, "vct": VCT, "iat": NOW}
    for typ in ("JWT", "example+sd-jwt", None):
        header = {"alg": "ES256"} | ({"typ": typ} if typ else {})
        with pytest.raises(SdJwtError, match="typ must be dc\\+sd-jwt"):
            _verify(_sign_raw(payload, keys["ES256"], header) + "~", keys, require_kb=False)
    legacy = _sign_raw(payload, keys["ES256"], {"alg": "ES256", "typ": "vc+sd-jwt"}) + "~"
    assert _verify(legacy, keys, require_kb=False, accept_legacy_typ=True).claims["vct"] == VCT
    hs = jwk.JWK.generate(kty="oct", size=256)
    token = _sign_raw(payload, hs, {"alg": "HS256", "typ": "dc+sd-jwt"}) + "~"
    with pytest.raises(SdJwtError, match="alg 'HS256' is not allowed"):
        _verify(token, keys, require_kb=False, issuer_key=hs)
    none = f"{_b64({'alg': 'none', 'typ': 'dc+sd-jwt'})}.{_b64(payload)}.~"
    with pytest.raises(SdJwtError, match="alg 'none' is not allowed"):
        _verify(none, keys, require_kb=False)
    with pytest.raises(SdJwtError, match="alg ES256 does not match the key type"):
        _verify(_resident(keys), keys, require_kb=False, issuer_key=keys["EdDSA"])
    with pytest.raises(SdJwtError, match="no '~' separator"):
        _verify(_resident(keys).split("~")[0], keys, require_kb=False)


@pytest.mark.parametrize("kw,now,message", [
    ({"exp": NOW - 120}, NOW, "SD-JWT has expired"),
    ({"nbf": NOW + 120}, NOW, "SD-JWT is not yet valid"),
    ({"iat": NOW + 600}, NOW, "SD-JWT is issued in the future"),
])
def test_validity_dates(keys, kw, now, message):
    cred = _resident(keys, **kw)
    with pytest.raises(SdJwtError, match=message):
        _verify(_present(cred, keys), keys, now=now)


def test_validity_dates_allow_small_clock_skew(keys):
    cred = _resident(keys, exp=NOW - 30, nbf=NOW + 30)
    assert _verify(_present(cred, keys), keys).claims["exp"] == NOW - 30
    with pytest.raises(SdJwtError, match="SD-JWT has expired"):
        _verify(_present(cred, keys), keys, leeway=0)


def test_key_binding_failures(keys):
    cred = _resident(keys)
    with pytest.raises(SdJwtError, match="key binding JWT is missing"):
        _verify(sdjwt.present(cred, ["given_name"]), keys)
    assert _verify(sdjwt.present(cred, ["given_name"]), keys, require_kb=False).key_binding is None
    with pytest.raises(SdJwtError, match="expected nonce and aud are required"):
        _verify(_present(cred, keys), keys, nonce=None)
    with pytest.raises(SdJwtError, match="KB-JWT nonce does not match"):
        _verify(_present(cred, keys, nonce="replayed"), keys)
    with pytest.raises(SdJwtError, match="KB-JWT aud does not match"):
        _verify(_present(cred, keys, aud="https://other.example"), keys)
    with pytest.raises(SdJwtError, match="KB-JWT signature is invalid"):
        _verify(_present(cred, keys, holder="other"), keys)
    with pytest.raises(SdJwtError, match="KB-JWT alg EdDSA does not match the key type"):
        _verify(_present(cred, keys, holder="holder_ed"), keys)
    with pytest.raises(SdJwtError, match="KB-JWT is too old"):
        _verify(_present(cred, keys, iat=NOW - 3600), keys)
    with pytest.raises(SdJwtError, match="KB-JWT is issued in the future"):
        _verify(_present(cred, keys, iat=NOW + 3600), keys)
    # sd_hash binds the disclosures: dropping or adding one after signing is detected.
    full = _present(cred, keys, ["given_name", "birthdate"])
    jwt, discs, kb = sdjwt.split(full)
    with pytest.raises(SdJwtError, match="sd_hash does not match"):
        _verify(f"{jwt}~{discs[0]}~{kb}", keys)
    extra = sdjwt.split(cred)[1]
    with pytest.raises(SdJwtError, match="sd_hash does not match"):
        _verify("~".join([jwt, *extra]) + "~" + kb, keys)
    # A KB-JWT with the wrong typ, and a credential without cnf.
    kb_payload = {"iat": NOW, "nonce": NONCE, "aud": AUD, "sd_hash": sdjwt.sd_hash(f"{jwt}~")}
    bad_kb = _sign_raw(kb_payload, keys["holder"], {"alg": "ES256", "typ": "JWT"})
    with pytest.raises(SdJwtError, match="KB-JWT typ must be kb\\+jwt"):
        _verify(f"{jwt}~{bad_kb}", keys)
    unbound = _resident(keys, holder_jwk=None)
    with pytest.raises(SdJwtError, match="has no cnf.jwk"):
        _verify(_present(unbound, keys), keys)
    with pytest.raises(SdJwtError, match="needs the verifier's nonce and aud"):
        sdjwt.present(cred, [], holder_key=keys["holder"])
    with pytest.raises(SdJwtError, match="already a presentation"):
        sdjwt.present(full, [], holder_key=keys["holder"], nonce=NONCE, aud=AUD)


# --- DID issuers (did.methods, C2) --------------------------------------------------------------


def test_did_key_issuer_resolved_through_did_methods(keys):
    did = methods.did_key_from_jwk(keys["EdDSA"])
    kid = f"{did}#{did.split(':')[-1]}"
    cred = _resident(keys, issuer="EdDSA", iss=did, kid=kid)
    out = sdjwt.verify(_present(cred, keys, ["given_name"]), nonce=NONCE, aud=AUD, now=NOW)
    assert out.claims["iss"] == did and out.claims["given_name"] == "Marie-Josée"
    out = asyncio.run(sdjwt.verify_async(_present(cred, keys), nonce=NONCE, aud=AUD, now=NOW))
    assert out.claims["iss"] == did
    # The key of another DID (even a valid one) is not the issuer's.
    other = methods.did_key_from_jwk(keys["other"])
    cred = _resident(keys, issuer="EdDSA", iss=did, kid=f"{other}#{other.split(':')[-1]}")
    with pytest.raises(SdJwtError, match="kid does not belong to the issuer DID"):
        sdjwt.verify(_present(cred, keys), nonce=NONCE, aud=AUD, now=NOW)
    # Signed by a key other than the DID's.
    cred = _resident(keys, issuer="ES256", iss=did, kid=kid)
    with pytest.raises(SdJwtError, match="alg ES256 does not match the key type"):
        sdjwt.verify(_present(cred, keys), nonce=NONCE, aud=AUD, now=NOW)
    with pytest.raises(SdJwtError, match="iss is not a DID"):
        sdjwt.verify(_present(_resident(keys), keys), nonce=NONCE, aud=AUD, now=NOW)


# --- cross-check with the `sd-jwt` reference implementation -------------------------------------


def test_reference_implementation_verifies_ours(keys):
    from sd_jwt.verifier import SDJWTVerifier

    cred = _resident(keys, issuer="ES256", iat=None)  # the reference checks no dates, but be real
    presentation = sdjwt.present(cred, ["given_name", "birthdate"], holder_key=keys["holder"],
                                 nonce=NONCE, aud=AUD)
    theirs = SDJWTVerifier(presentation, lambda iss, header: keys["ES256"],
                           expected_aud=AUD, expected_nonce=NONCE).get_verified_payload()
    ours = sdjwt.verify(presentation, issuer_key=keys["ES256"], nonce=NONCE, aud=AUD).claims
    assert theirs == ours
    assert theirs["given_name"] == "Marie-Josée" and "family_name" not in theirs
    # And it rejects our presentation for another verifier.
    with pytest.raises(ValueError, match="Invalid audience"):
        SDJWTVerifier(presentation, lambda iss, header: keys["ES256"],
                      expected_aud="https://other.example", expected_nonce=NONCE)


def test_we_verify_the_reference_implementation(keys):
    from sd_jwt.common import SDObj
    from sd_jwt.holder import SDJWTHolder
    from sd_jwt.issuer import SDJWTIssuer

    now = int(time.time())  # the reference holder stamps its KB-JWT with the real clock
    user_claims = {
        "iss": ISS, "vct": VCT, "iat": now - 60, "exp": now + 3600,
        "commune_insee": "97213", "age_over_18": True,
        SDObj("given_name"): "Jean", SDObj("family_name"): "Dupont",
        "nationalities": [SDObj("FR"), "BR"],
    }
    issuer = SDJWTIssuer(user_claims, keys["EdDSA"], holder_key=keys["holder"], sign_alg="EdDSA",
                         add_decoy_claims=True, extra_header_parameters={"typ": "dc+sd-jwt"})
    holder = SDJWTHolder(issuer.sd_jwt_issuance)
    holder.create_presentation({"given_name": True, "nationalities": [True, True]},
                               nonce=NONCE, aud=AUD, holder_key=keys["holder"], sign_alg="ES256")
    presented = holder.sd_jwt_presentation
    out = sdjwt.verify(presented, issuer_key=keys["EdDSA"], nonce=NONCE, aud=AUD)
    assert out.claims["given_name"] == "Jean" and "family_name" not in out.claims
    assert out.claims["nationalities"] == ["FR", "BR"] and out.claims["commune_insee"] == "97213"
    assert out.key_binding["sd_hash"] == sdjwt.sd_hash(presented[: presented.rindex("~") + 1])
    # Our holder code can also present the reference implementation's credential.
    ours = sdjwt.present(issuer.sd_jwt_issuance, ["family_name"], holder_key=keys["holder"],
                         nonce=NONCE, aud=AUD)
    assert sdjwt.verify(ours, issuer_key=keys["EdDSA"], nonce=NONCE,
                        aud=AUD).claims["family_name"] == "Dupont"
