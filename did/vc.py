"""W3C Verifiable Credentials: VC 2.0 with a Data Integrity ``eddsa-jcs-2022`` proof, and VC-JWT.

Specs implemented here:

* W3C Verifiable Credential Data Integrity 1.0 (https://www.w3.org/TR/vc-data-integrity/) and
  W3C Data Integrity EdDSA Cryptosuites v1.0, section "eddsa-jcs-2022"
  (https://www.w3.org/TR/vc-di-eddsa/#eddsa-jcs-2022): the proof configuration and the document are
  each canonicalised with JCS (RFC 8785, the ``rfc8785`` package), hashed with SHA-256, and the
  Ed25519 signature covers ``sha256(proofConfig) || sha256(document)``; ``proofValue`` is multibase
  base58btc (``z...``).  Hand-written because no maintained Python library implements this suite
  (didkit 0.3.3 rejects ``DataIntegrityProof``); it is about forty lines on top of rfc8785 and
  ``cryptography``, and reproduces the W3C test vectors exactly (tests/test_did_vc.py).
* VC Data Model 1.1, section 6.3.1 "JSON Web Token" (https://www.w3.org/TR/vc-data-model-1.1/#jwt-encoding):
  a JWS (EdDSA, jwcrypto) whose ``vc`` claim holds the credential, with ``iss``/``sub``/``nbf``/
  ``exp``/``jti`` carrying issuer, subject id, issuanceDate, expirationDate and id.  We keep the
  properties inside ``vc`` as well (as didkit does), and on verification require the two to agree.

These functions check the cryptography and the shape; validity dates, status and the trust list are
checked by :func:`did.verify.verify_credential`, which is what callers should use.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Callable

import base58
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwcrypto import jwk as jwk_mod
from jwcrypto import jws as jws_mod
from jwcrypto.common import JWException, json_decode

from did import methods

VC_V2_CONTEXT = "https://www.w3.org/ns/credentials/v2"
VC_V1_CONTEXT = "https://www.w3.org/2018/credentials/v1"
CRYPTOSUITE = "eddsa-jcs-2022"
PROOF_TYPE = "DataIntegrityProof"

KeyResolver = Callable[[str], jwk_mod.JWK]


class VCError(ValueError):
    """A credential or proof is malformed or does not verify. The message says why."""


# --------------------------------------------------------------------------- keys and did:key


def _ed25519_public_bytes(key: jwk_mod.JWK) -> bytes:
    if key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
        raise VCError("eddsa-jcs-2022 and EdDSA VC-JWT need an Ed25519 (OKP) key")
    return jwk_mod.base64url_decode(key.get("x"))


def _private_key(key: jwk_mod.JWK) -> Ed25519PrivateKey:
    _ed25519_public_bytes(key)
    if not key.has_private:
        raise VCError("signing needs the private key")
    return key.get_op_key("sign")


def _public_key(key: jwk_mod.JWK) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_ed25519_public_bytes(key))


def did_key_from_jwk(key: jwk_mod.JWK) -> str:
    """did:key of an Ed25519 JWK (did.methods)."""
    _ed25519_public_bytes(key)
    return methods.did_key_from_jwk(key)


def did_key_verification_method(key: jwk_mod.JWK) -> str:
    """The did:key DID URL (``did:key:z6Mk...#z6Mk...``) to put in ``verificationMethod``/``kid``."""
    did = did_key_from_jwk(key)
    return f"{did}#{did[len('did:key:'):]}"


def resolve_verification_key(did_url: str) -> jwk_mod.JWK:
    """Public JWK of an ``assertionMethod`` verification method, resolved offline (did:key, did:jwk).

    did:web issuers need the async resolver: pass ``resolve_key`` built on
    ``did.methods.verification_key_async`` results (e.g. resolved ahead and cached).
    """
    try:
        return methods.verification_key(did_url, purpose="assertionMethod")
    except (methods.DIDError, ValueError) as exc:
        raise VCError(f"cannot resolve verification method {did_url!r}: {exc}") from exc


def _resolve(did_url: str, resolve_key: KeyResolver | None) -> jwk_mod.JWK:
    if resolve_key is None:
        return resolve_verification_key(did_url)
    try:
        return resolve_key(did_url)
    except VCError:
        raise
    except Exception as exc:  # a caller's resolver failing is a verification failure, not a crash
        raise VCError(f"cannot resolve verification method {did_url!r}: {exc}") from exc


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(timezone.utc)


def format_datetime(value: datetime) -> str:
    """XML Schema dateTimeStamp in UTC, second precision, ``Z`` suffix (as the spec examples)."""
    return value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: Any, field: str) -> datetime:
    """Parse an XML Schema dateTimeStamp; a time zone is required (VC 2.0 §4.9 / DI 1.0)."""
    if not isinstance(value, str):
        raise VCError(f"{field} must be a dateTimeStamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise VCError(f"{field} is not a valid dateTimeStamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise VCError(f"{field} must carry a time zone (e.g. 'Z'): {value!r}")
    return parsed


def _sha256_jcs(value: Any) -> bytes:
    try:
        return hashlib.sha256(rfc8785.dumps(value)).digest()
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise VCError(f"cannot canonicalise with JCS: {exc}") from exc


def _contexts(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- eddsa-jcs-2022


def jcs_hash_data(document: dict, proof_config: dict) -> bytes:
    """vc-di-eddsa 3.3.4 Hashing (eddsa-jcs-2022): sha256(JCS(proofConfig)) || sha256(JCS(document))."""
    return _sha256_jcs(proof_config) + _sha256_jcs(document)


def add_proof(
    document: dict,
    key: jwk_mod.JWK,
    verification_method: str | None = None,
    *,
    created: datetime | None = None,
    proof_purpose: str = "assertionMethod",
    expires: datetime | None = None,
) -> dict:
    """Return a copy of ``document`` secured with a ``DataIntegrityProof`` / ``eddsa-jcs-2022``.

    ``verification_method`` defaults to the did:key URL of ``key``.  Following vc-di-eddsa 3.3.1
    "Create Proof (eddsa-jcs-2022)", when the document has an ``@context`` the proof carries the same
    ``@context`` so that it is covered by the signature.
    """
    if not isinstance(document, dict):
        raise VCError("the document must be a JSON object")
    if "proof" in document:
        raise VCError("the document already has a proof (proof sets/chains are not supported)")
    private = _private_key(key)
    unsecured = copy.deepcopy(document)
    proof: dict[str, Any] = {
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": format_datetime(created or _now()),
        "verificationMethod": verification_method or did_key_verification_method(key),
        "proofPurpose": proof_purpose,
    }
    if expires is not None:
        proof["expires"] = format_datetime(expires)
    if "@context" in unsecured:
        proof["@context"] = copy.deepcopy(unsecured["@context"])
    signature = private.sign(jcs_hash_data(unsecured, proof))
    proof["proofValue"] = "z" + base58.b58encode(signature).decode()
    unsecured["proof"] = proof
    return unsecured


def verify_proof(
    secured: dict,
    *,
    expected_purpose: str = "assertionMethod",
    resolve_key: KeyResolver | None = None,
    now: datetime | None = None,
) -> dict:
    """Verify an ``eddsa-jcs-2022`` proof (vc-di-eddsa 3.3.2 "Verify Proof"); return the proof.

    Raises :class:`VCError` with the reason when it does not verify.  ``resolve_key`` maps the
    proof's ``verificationMethod`` to a public JWK (default: offline did:key/did:jwk resolution).
    The verification method must belong to the credential's issuer when the issuer is a DID.
    """
    if not isinstance(secured, dict):
        raise VCError("the credential must be a JSON object")
    proof = secured.get("proof")
    if isinstance(proof, list):
        if len(proof) != 1:
            raise VCError("proof sets are not supported: exactly one proof expected")
        proof = proof[0]
    if not isinstance(proof, dict):
        raise VCError("missing proof")
    if proof.get("type") != PROOF_TYPE or proof.get("cryptosuite") != CRYPTOSUITE:
        raise VCError(f"unsupported proof: expected {PROOF_TYPE} with cryptosuite {CRYPTOSUITE}")
    if proof.get("proofPurpose") != expected_purpose:
        raise VCError(f"proofPurpose must be {expected_purpose!r}, got {proof.get('proofPurpose')!r}")
    vm = proof.get("verificationMethod")
    if not isinstance(vm, str) or not vm:
        raise VCError("proof.verificationMethod is missing")
    proof_value = proof.get("proofValue")
    if not isinstance(proof_value, str) or not proof_value.startswith("z"):
        raise VCError("proof.proofValue must be multibase base58btc ('z...')")
    try:
        signature = base58.b58decode(proof_value[1:])
    except ValueError as exc:
        raise VCError("proof.proofValue is not valid base58btc") from exc
    if len(signature) != 64:
        raise VCError("proof.proofValue is not a 64-byte Ed25519 signature")
    # Data Integrity 1.0 §4.2 / §4.3: created and expires are dateTimeStamps; an expired proof fails.
    if "created" in proof:
        parse_datetime(proof["created"], "proof.created")
    if "expires" in proof:
        if parse_datetime(proof["expires"], "proof.expires") <= (now or _now()):
            raise VCError("the proof has expired (proof.expires)")

    unsecured = {k: v for k, v in secured.items() if k != "proof"}
    proof_config = {k: v for k, v in proof.items() if k != "proofValue"}
    # vc-di-eddsa 3.3.2 step 4: when the proof has an @context, the document's @context must start
    # with all of its values, in the same order, and the proof's @context is the one that is hashed.
    if "@context" in proof_config:
        proof_ctx = _contexts(proof_config["@context"])
        doc_ctx = _contexts(unsecured.get("@context"))
        if doc_ctx[: len(proof_ctx)] != proof_ctx:
            raise VCError("the document @context does not start with the proof's @context")
        unsecured["@context"] = proof_config["@context"]

    issuer = secured.get("issuer")
    issuer_id = issuer.get("id") if isinstance(issuer, dict) else issuer
    if isinstance(issuer_id, str) and issuer_id.startswith("did:") and vm.split("#", 1)[0] != issuer_id:
        raise VCError("the proof's verification method does not belong to the issuer")

    public = _public_key(_resolve(vm, resolve_key))
    try:
        public.verify(signature, jcs_hash_data(unsecured, proof_config))
    except InvalidSignature as exc:
        raise VCError("invalid signature: the credential or its proof was altered, or the key is wrong") from exc
    return proof


def issue_credential_di(credential: dict, key: jwk_mod.JWK, **kwargs: Any) -> dict:
    """Issue a VC 2.0 credential with an ``eddsa-jcs-2022`` proof (sets ``issuer`` to the key's DID
    when absent, checks the v2 context comes first)."""
    cred = copy.deepcopy(credential)
    if _contexts(cred.get("@context"))[:1] != [VC_V2_CONTEXT]:
        raise VCError(f"a VC 2.0 credential's @context must start with {VC_V2_CONTEXT}")
    if "VerifiableCredential" not in _contexts(cred.get("type")):
        raise VCError("type must include 'VerifiableCredential'")
    cred.setdefault("issuer", did_key_from_jwk(key))
    return add_proof(cred, key, **kwargs)


# --------------------------------------------------------------------------- VC-JWT (VC 1.1 §6.3.1)


def _numeric_date(value: datetime | str) -> int:
    if isinstance(value, str):
        value = parse_datetime(value, "date")
    return int(value.timestamp())


def issue_vc_jwt(
    credential: dict,
    key: jwk_mod.JWK,
    *,
    kid: str | None = None,
) -> str:
    """Encode a VC 1.1 credential as a JWT (``vc`` claim), signed with EdDSA.

    ``iss`` = issuer (defaults to the key's did:key), ``sub`` = credentialSubject.id,
    ``nbf`` = issuanceDate, ``exp`` = expirationDate, ``jti`` = id; ``kid`` = the did:key URL.
    """
    _private_key(key)
    vc = copy.deepcopy(credential)
    if _contexts(vc.get("@context"))[:1] != [VC_V1_CONTEXT]:
        raise VCError(f"a VC 1.1 credential's @context must start with {VC_V1_CONTEXT}")
    vc.setdefault("issuer", did_key_from_jwk(key))
    vc.setdefault("issuanceDate", format_datetime(_now()))
    issuer = vc["issuer"]
    issuer_id = issuer.get("id") if isinstance(issuer, dict) else issuer
    kid = kid or did_key_verification_method(key)
    if kid.split("#", 1)[0] != issuer_id:
        raise VCError("kid must be a verification method of the issuer")
    claims: dict[str, Any] = {"iss": issuer_id, "nbf": _numeric_date(vc["issuanceDate"]), "vc": vc}
    subject = vc.get("credentialSubject")
    if isinstance(subject, dict) and isinstance(subject.get("id"), str):
        claims["sub"] = subject["id"]
    if "expirationDate" in vc:
        claims["exp"] = _numeric_date(vc["expirationDate"])
    if isinstance(vc.get("id"), str):
        claims["jti"] = vc["id"]
    token = jws_mod.JWS(json.dumps(claims, separators=(",", ":")).encode())
    token.add_signature(key, alg="EdDSA", protected=json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": kid}))
    return token.serialize(compact=True)


def decode_vc_jwt_unverified(token: str) -> tuple[dict, dict]:
    """(header, claims) without checking anything. Only for routing/diagnostics."""
    try:
        parsed = jws_mod.JWS()
        parsed.deserialize(token)
        header = parsed.jose_header
        claims = json_decode(parsed.objects["payload"])
    except (JWException, ValueError, KeyError, TypeError) as exc:
        raise VCError(f"not a compact JWS: {exc}") from exc
    if not isinstance(claims, dict) or not isinstance(header, dict):
        raise VCError("the JWT payload and header must be JSON objects")
    return header, claims


def verify_vc_jwt(token: str, *, resolve_key: KeyResolver | None = None) -> dict:
    """Verify a VC-JWT's signature and claim/credential consistency; return the claims.

    The returned dict is the JWT claims set; ``claims["vc"]`` is the credential with ``issuer``,
    ``issuanceDate``, ``expirationDate``, ``id`` and ``credentialSubject.id`` filled from the
    registered claims (VC 1.1 §6.3.1 decoding). Dates are NOT checked here (see did.verify).
    """
    if not isinstance(token, str) or token.count(".") != 2:
        raise VCError("a VC-JWT must be a compact JWS (three base64url parts)")
    header, claims = decode_vc_jwt_unverified(token)
    if header.get("alg") != "EdDSA":
        raise VCError(f"unsupported alg {header.get('alg')!r}: only EdDSA is accepted")
    if header.get("crit"):
        raise VCError("unsupported critical header parameters")
    kid = header.get("kid")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        raise VCError("the JWT has no iss claim")
    if not isinstance(kid, str) or kid.split("#", 1)[0] != iss:
        raise VCError("the JWT kid must be a DID URL of the iss DID")
    public = _resolve(kid, resolve_key)
    _ed25519_public_bytes(public)
    try:
        parsed = jws_mod.JWS()
        parsed.deserialize(token)
        parsed.verify(public, alg="EdDSA")
    except (JWException, ValueError) as exc:
        raise VCError("invalid signature: the JWT was altered, or the key is wrong") from exc
    vc = claims.get("vc")
    if not isinstance(vc, dict):
        raise VCError("the JWT has no vc claim (object)")
    if _contexts(vc.get("@context"))[:1] != [VC_V1_CONTEXT]:
        raise VCError(f"vc.@context must start with {VC_V1_CONTEXT}")
    if "VerifiableCredential" not in _contexts(vc.get("type")):
        raise VCError("vc.type must include 'VerifiableCredential'")
    for name in ("nbf", "exp", "iat"):
        if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], (int, float))):
            raise VCError(f"{name} must be a NumericDate")
    vc = copy.deepcopy(vc)
    issuer = vc.get("issuer")
    issuer_id = issuer.get("id") if isinstance(issuer, dict) else issuer
    if issuer_id is None:
        vc["issuer"] = iss
    elif issuer_id != iss:
        raise VCError("vc.issuer and iss disagree")
    if "jti" in claims:
        if vc.setdefault("id", claims["jti"]) != claims["jti"]:
            raise VCError("vc.id and jti disagree")
    subject = vc.get("credentialSubject")
    if "sub" in claims and isinstance(subject, dict):
        if subject.setdefault("id", claims["sub"]) != claims["sub"]:
            raise VCError("vc.credentialSubject.id and sub disagree")
    for claim, field in (("nbf", "issuanceDate"), ("exp", "expirationDate")):
        if claim in claims:
            if field in vc:
                if int(parse_datetime(vc[field], f"vc.{field}").timestamp()) != int(claims[claim]):
                    raise VCError(f"vc.{field} and {claim} disagree")
            else:
                vc[field] = format_datetime(datetime.fromtimestamp(claims[claim], timezone.utc))
    claims = dict(claims)
    claims["vc"] = vc
    return claims
