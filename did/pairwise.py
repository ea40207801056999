"""Pairwise holder DIDs: one unlinkable did:key per verifier, derived from the wallet's secret.

A citizen's wallet presents credentials to many merchants (BPPs). If it showed the same holder DID
everywhere, any two merchants could join their records on it. Instead the wallet keeps one random
32-byte master secret (`new_master_secret()`, stored encrypted with `did.keys.encrypt_secret`) and
derives, for each verifier, an Ed25519 key and its did:key:

    seed = HKDF-SHA256(ikm = master secret,
                       salt = "lakou/did/pairwise/v1",
                       info = "lakou/did/pairwise/v1" || len(verifier id) (4 bytes, big-endian)
                              || verifier id (UTF-8, NFC) || rotation (4 bytes, big-endian),
                       length = 32)
    key  = Ed25519 private key with that seed (RFC 8032)
    DID  = did:key of its public key

Why HKDF (RFC 5869, `cryptography`'s implementation) with the verifier id in `info`:
- HKDF-Expand is a pseudorandom function keyed by the extracted master key; `info` is exactly the
  "context and application specific information" RFC 5869 section 3.2 provides to bind an output
  to its use. Outputs for different `info` values are computationally independent, so without
  the master secret nobody — not even two verifiers pooling what they saw — can tell that two
  pairwise DIDs belong to the same wallet, or derive one from the other.
- It is deterministic: the same verifier always gets the same DID (a returning customer is
  recognised by that merchant alone), and the wallet stores no per-verifier keys — restoring the
  master secret from a backup restores every pairwise DID.
- The verifier id is length-prefixed so that no two (verifier, rotation) pairs share an `info`
  string; it is NFC-normalised so that visually identical ids give the same DID; it is otherwise
  used as given (Beckn subscriber ids are case-sensitive strings).
- `rotation` (0 by default) lets the wallet replace the key it uses with one verifier (after a
  suspected leak, or on the user's request) without touching the others; the wallet records the
  current rotation per verifier.
- The fixed salt is a domain separator: the same master secret used elsewhere with HKDF (another
  label) yields unrelated keys.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto import jwk as jwk_mod

from did.keys import ed25519_from_seed
from did.methods import did_key_from_jwk

__all__ = ["PairwiseIdentity", "new_master_secret", "pairwise_key", "pairwise_did"]

_LABEL = b"lakou/did/pairwise/v1"
MASTER_SECRET_BYTES = 32
_MAX_VERIFIER_ID = 1024


@dataclass(frozen=True)
class PairwiseIdentity:
    verifier_id: str
    rotation: int
    did: str
    key: jwk_mod.JWK  # private; kid = the DID URL of its verification method

    @property
    def kid(self) -> str:
        return self.key.get("kid")


def new_master_secret() -> bytes:
    """A fresh random wallet master secret (32 bytes from the OS CSPRNG)."""
    return os.urandom(MASTER_SECRET_BYTES)


def _info(verifier_id: str, rotation: int) -> bytes:
    if not isinstance(verifier_id, str) or not verifier_id.strip():
        raise ValueError("verifier id must be a non-empty string")
    if not isinstance(rotation, int) or not (0 <= rotation < 2**32):
        raise ValueError("rotation must be an integer in 0..2**32-1")
    vid = unicodedata.normalize("NFC", verifier_id).encode("utf-8")
    if len(vid) > _MAX_VERIFIER_ID:
        raise ValueError(f"verifier id longer than {_MAX_VERIFIER_ID} bytes")
    return _LABEL + len(vid).to_bytes(4, "big") + vid + rotation.to_bytes(4, "big")


def pairwise_key(master_secret: bytes, verifier_id: str, *, rotation: int = 0) -> PairwiseIdentity:
    """The holder key and did:key this wallet uses with `verifier_id` (deterministic)."""
    if not isinstance(master_secret, (bytes, bytearray)) or len(master_secret) < MASTER_SECRET_BYTES:
        raise ValueError(f"the master secret must be at least {MASTER_SECRET_BYTES} random bytes")
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=_LABEL,
                info=_info(verifier_id, rotation)).derive(bytes(master_secret))
    key = ed25519_from_seed(seed)
    did = did_key_from_jwk(key)
    kid = f"{did}#{did.removeprefix('did:key:')}"
    key = jwk_mod.JWK(**{**key.export_private(as_dict=True), "kid": kid})
    return PairwiseIdentity(verifier_id=verifier_id, rotation=rotation, did=did, key=key)


def pairwise_did(master_secret: bytes, verifier_id: str, *, rotation: int = 0) -> str:
    """Only the DID of `pairwise_key`."""
    return pairwise_key(master_secret, verifier_id, rotation=rotation).did
