"""Lookup answers signed by the registry, so that a partner can cache and relay them verifiably.

The registry has its own key pair (`node-keys.json` in its data dir, made on first start like
every node's) under its own subscriber id (`LAKOU_SUBSCRIBER_ID`, default
`registry.lakou.localhost`). Every successful lookup answer (`/lookup`, `/v2.0/lookup`,
`/vlookup`) carries

    X-Registry-Signature: Signature keyId="{registry id}|{ukId}|ed25519",algorithm="ed25519",
        created="{unix}",expires="{unix}",headers="(created) (expires) digest",signature="{b64}"

exactly a BECKN-006 `Authorization` value (beckn/signing.py) over the response body bytes:
Ed25519 over `(created)`, `(expires)` and the BLAKE2b-512 digest of the body. Not the
`Authorization` header itself (that is a request header), and not `Signature` (RFC 9421 owns that
name with another format). Whoever holds the body bytes and this header can check them offline
against the registry's public key, published at `GET /registry-key`; relaying both keeps the
proof. `expires` is `created` + RESPONSE_VALIDITY_SECONDS: as long as a node may reuse a lookup.
An auditor checking an old answer verifies without the time check (`check_times=False`): the
signature then proves what the registry answered at `created`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.responses import Response
from nacl.signing import SigningKey, VerifyKey

from beckn.keyfile import ensure_node_keys, load_log_key
from beckn.keys import load_signing_key
from beckn.signing import (
    ALGORITHM,
    SignatureError,
    SignatureParams,
    Signer,
    body_digest,
    check_signature_times,
    parse_signature_header,
    verify_signature,
)
from beckn.tlog.note import NoteSigner

RESPONSE_SIGNATURE_HEADER = "X-Registry-Signature"
RESPONSE_VALIDITY_SECONDS = 300  # the default lookup cache lifetime of a node (LAKOU_LOOKUP_CACHE_SECONDS)
DEFAULT_REGISTRY_ID = "registry.lakou.localhost"


@dataclass(frozen=True, slots=True)
class RegistryIdentity:
    """The registry's own subscriber id and keys (signing for answers, X25519 for challenges, and
    the separate log key that signs its transaction log's checkpoints, issue 8)."""

    subscriber_id: str
    keys: dict[str, str]  # node-keys.json: unique_key_id, signing/encryption/log private and public keys
    log_origin: str = ""  # the log's checkpoint origin (LAKOU_TLOG_ORIGIN); default <subscriber_id>/tlog

    @property
    def tlog_origin(self) -> str:
        return self.log_origin or f"{self.subscriber_id}/tlog"

    @property
    def log_signer(self) -> NoteSigner:
        """The log key, named after the log's origin (never the signing key)."""
        return NoteSigner(self.tlog_origin, load_log_key(self.keys))

    @property
    def unique_key_id(self) -> str:
        return self.keys["unique_key_id"]

    @property
    def signing_key(self) -> SigningKey:
        return load_signing_key(self.keys["signing_private_key"])

    @property
    def verify_key(self) -> VerifyKey:
        return self.signing_key.verify_key

    def signer(self, validity_seconds: int = RESPONSE_VALIDITY_SECONDS) -> Signer:
        return Signer(self.subscriber_id, self.unique_key_id, self.signing_key, validity_seconds=validity_seconds)

    def public_json(self) -> dict[str, Any]:
        """What `GET /registry-key` publishes: enough to verify answers, nothing private."""
        return {
            "subscriber_id": self.subscriber_id,
            "unique_key_id": self.unique_key_id,
            "ukId": self.unique_key_id,
            "key_id": f"{self.subscriber_id}|{self.unique_key_id}|{ALGORITHM}",
            "algorithm": ALGORITHM,
            "signing_public_key": self.keys["signing_public_key"],
            "encr_public_key": self.keys["encryption_public_key"],
            "response_signature_header": RESPONSE_SIGNATURE_HEADER,
            "signature_validity_seconds": RESPONSE_VALIDITY_SECONDS,
            # Where partners and auditors learn the key of the registry's transaction log.
            "log_vkey": self.log_signer.vkey,
            "log_origin": self.tlog_origin,
        }


def load_registry_identity(data_dir: Path, subscriber_id: str | None,
                           log_origin: str | None = None) -> RegistryIdentity:
    """The registry's keys, generated (0600) on first start, like every node's; a key file made
    before the transaction log existed gets its log key added once (beckn/keyfile.py)."""
    return RegistryIdentity(subscriber_id or DEFAULT_REGISTRY_ID, ensure_node_keys(data_dir), log_origin or "")


def signed_json(payload: Any, signer: Signer, *, status_code: int = 200) -> Response:
    """`payload` serialised once, sent as those exact bytes, with the registry's signature over them."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status_code, media_type="application/json",
                    headers={RESPONSE_SIGNATURE_HEADER: signer.sign(body)})


def verify_lookup_response(
    body: bytes,
    header: str | None,
    verify_key: VerifyKey,
    *,
    registry_id: str | None = None,
    check_times: bool = True,
    now: float | None = None,
    skew_seconds: int = 5,
) -> SignatureParams:
    """Check a registry answer as a partner or an auditor would; raises `SignatureError` saying why.

    `body` is the exact response bytes (not re-serialised JSON), `header` the
    X-Registry-Signature value, `verify_key` the registry's published signing key. With
    `registry_id`, the signature must also name that registry. `check_times=False` checks an old
    answer kept for audit: the signature stays valid, only its freshness has passed."""
    if not header:
        raise SignatureError(f"the answer has no {RESPONSE_SIGNATURE_HEADER} header: it was not signed by a "
                             "Lakou registry, or a proxy dropped the header")
    params = parse_signature_header(header)
    if registry_id is not None and params.subscriber_id != registry_id:
        raise SignatureError(f"the answer is signed by {params.subscriber_id!r}, not by the registry "
                             f"{registry_id!r}")
    if check_times:
        check_signature_times(params, now=time.time() if now is None else now, skew_seconds=skew_seconds)
    verify_signature(params, verify_key, digest_b64=body_digest(body))
    return params


__all__ = [
    "DEFAULT_REGISTRY_ID",
    "RESPONSE_SIGNATURE_HEADER",
    "RESPONSE_VALIDITY_SECONDS",
    "RegistryIdentity",
    "load_registry_identity",
    "signed_json",
    "verify_lookup_response",
]
