"""The Martinique trust list: which issuer DIDs are accepted for each credential type.

The list is published as a compact JWS (EdDSA, jwcrypto) signed by the network operator's key, so a
wallet or verifier can check it offline with nothing but the operator's DID (the trust anchor, pinned
in its configuration — never taken from the list itself). Payload::

    {"iss": "<operator DID>", "iat": 1700000000, "exp": 1702592000, "version": 3,
     "trusted_issuers": {"ResidentCredential": ["did:key:z6Mk...", ...], ...}}

Header: ``{"alg": "EdDSA", "typ": "trust-list+jwt", "kid": "<operator DID URL>"}``.
No standard covers this exactly (ETSI TS 119 612 trusted lists are XML and X.509-based; the EBSI
Trusted Issuers Registry is an on-ledger API), so the format is ours and deliberately small.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from jwcrypto import jwk as jwk_mod
from jwcrypto import jws as jws_mod
from jwcrypto.common import JWException

from did.vc import (
    KeyResolver,
    VCError,
    _contexts,
    decode_vc_jwt_unverified,
    did_key_verification_method,
    _resolve,
)

TRUST_LIST_TYP = "trust-list+jwt"
GENERIC_TYPES = frozenset({"VerifiableCredential"})


class TrustListError(VCError):
    """The trust list is malformed, unsigned by the operator, or expired."""


@dataclass
class TrustList:
    """Issuer DIDs allowed per credential type."""

    trusted_issuers: dict[str, set[str]] = field(default_factory=dict)
    issuer: str | None = None  # the operator DID that signed it (set when loaded/signed)
    version: int = 1
    issued_at: int | None = None
    expires_at: int | None = None

    @classmethod
    def from_mapping(cls, mapping: dict[str, Iterable[str]], **kwargs) -> "TrustList":
        return cls({t: set(dids) for t, dids in mapping.items()}, **kwargs)

    def allow(self, credential_type: str, issuer_did: str) -> None:
        self.trusted_issuers.setdefault(credential_type, set()).add(issuer_did)

    def remove(self, credential_type: str, issuer_did: str) -> None:
        self.trusted_issuers.get(credential_type, set()).discard(issuer_did)

    def check_issuer(self, credential_type: str, issuer_did: str) -> bool:
        """True when ``issuer_did`` is trusted to issue ``credential_type``."""
        return issuer_did in self.trusted_issuers.get(credential_type, ())

    def check_credential_types(self, types: Iterable[str], issuer_did: str) -> tuple[bool, str]:
        """Every specific type of a credential (all but ``VerifiableCredential``) must trust the
        issuer, so a trusted issuer of type A cannot vouch for type B by adding B to ``type``."""
        specific = [t for t in types if t not in GENERIC_TYPES]
        if not specific:
            return False, "the credential has no specific type to check against the trust list"
        untrusted = [t for t in specific if not self.check_issuer(t, issuer_did)]
        if untrusted:
            return False, f"issuer {issuer_did} is not on the trust list for {', '.join(untrusted)}"
        return True, f"issuer trusted for {', '.join(specific)}"

    # ------------------------------------------------------------------ signing / loading

    def sign(self, operator_key: jwk_mod.JWK, *, kid: str | None = None, ttl_seconds: int | None = 30 * 86400) -> str:
        """Serialise and sign with the operator's Ed25519 key (kid defaults to its did:key URL)."""
        kid = kid or did_key_verification_method(operator_key)
        now = int(time.time())
        payload = {
            "iss": kid.split("#", 1)[0],
            "iat": now,
            "version": self.version,
            "trusted_issuers": {t: sorted(d) for t, d in sorted(self.trusted_issuers.items())},
        }
        if ttl_seconds is not None:
            payload["exp"] = now + ttl_seconds
        token = jws_mod.JWS(json.dumps(payload, separators=(",", ":")).encode())
        token.add_signature(
            operator_key, alg="EdDSA", protected=json.dumps({"alg": "EdDSA", "typ": TRUST_LIST_TYP, "kid": kid})
        )
        return token.serialize(compact=True)

    @classmethod
    def load(
        cls,
        token: str,
        *,
        operator_did: str,
        resolve_key: KeyResolver | None = None,
        now: datetime | None = None,
    ) -> "TrustList":
        """Verify a signed trust list against the pinned ``operator_did`` and return it."""
        if not isinstance(token, str) or token.count(".") != 2:
            raise TrustListError("the trust list must be a compact JWS")
        try:
            header, payload = decode_vc_jwt_unverified(token)
        except VCError as exc:
            raise TrustListError(str(exc)) from exc
        if header.get("alg") != "EdDSA" or header.get("typ") != TRUST_LIST_TYP:
            raise TrustListError(f"the trust list must be an EdDSA JWS with typ {TRUST_LIST_TYP}")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid.split("#", 1)[0] != operator_did or payload.get("iss") != operator_did:
            raise TrustListError("the trust list is not signed by the pinned network operator")
        try:
            key = _resolve(kid, resolve_key)
            parsed = jws_mod.JWS()
            parsed.deserialize(token)
            parsed.verify(key, alg="EdDSA")
        except (JWException, ValueError) as exc:
            raise TrustListError("invalid trust list signature") from exc
        at = (now.timestamp() if now else time.time())
        exp = payload.get("exp")
        if exp is not None and (not isinstance(exp, (int, float)) or at >= exp):
            raise TrustListError("the trust list has expired; fetch a fresh one")
        entries = payload.get("trusted_issuers")
        if not isinstance(entries, dict) or not all(
            isinstance(t, str) and isinstance(d, list) and all(isinstance(x, str) for x in d)
            for t, d in entries.items()
        ):
            raise TrustListError("trusted_issuers must map credential types to lists of DIDs")
        return cls(
            {t: set(d) for t, d in entries.items()},
            issuer=operator_did,
            version=payload.get("version", 1),
            issued_at=payload.get("iat"),
            expires_at=exp,
        )


def credential_types(credential: dict) -> list[str]:
    return [t for t in _contexts(credential.get("type")) if isinstance(t, str)]
