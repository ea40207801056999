"""BECKN-006 HTTP message signatures: Ed25519 over a BLAKE2b-512 digest of the exact body bytes.

Wire format (digest §5.1-5.2):

    Signature keyId="{subscriber_id}|{unique_key_id}|ed25519",algorithm="ed25519",
    created="{unix}",expires="{unix}",headers="(created) (expires) digest",signature="{b64}"

signed over the three LF-joined lines `(created): C`, `(expires): E`, `digest: BLAKE-512=D` with no
trailing newline. There is no JSON canonicalisation: sign and verify the bytes on the wire.

Parsing is tolerant of the spellings peers emit (spaces after commas, `(created)(expires)digest`,
any case of parameter names, unquoted integers, ONDC's stray outer quotes); the checks on the
values are strict. `expires < created` is refused as malformed; `expires == created` is parsed
(BECKN-006's own gateway examples carry it) and then fails the time check a second later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

__all__ = [
    "ALGORITHM",
    "AUTHORIZATION",
    "GATEWAY_AUTHORIZATION",
    "PROXY_AUTHORIZATION",
    "SIGNED_HEADERS",
    "SignatureError",
    "SignatureParams",
    "Signer",
    "authenticate_challenge",
    "body_digest",
    "build_signature_header",
    "check_signature_times",
    "parse_signature_header",
    "signing_string",
    "verify_signature",
]

AUTHORIZATION = "Authorization"
GATEWAY_AUTHORIZATION = "X-Gateway-Authorization"
PROXY_AUTHORIZATION = "Proxy-Authorization"  # 0.9.x name of the gateway header; accept, never emit
ALGORITHM = "ed25519"
SIGNED_HEADERS = "(created) (expires) digest"

_SIGNED_HEADER_LIST = ("(created)", "(expires)", "digest")
_SIGNATURE_BYTES = 64
# Unix seconds; the cap keeps absurd values (and huge-int parsing) out.
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
# One `name=value` auth-param: quoted-string (RFC 7230, with backslash escapes) or a bare token
# (draft-cavage prints created/expires unquoted), with optional whitespace around `=`.
_PARAM = re.compile(r'[ \t]*([A-Za-z][A-Za-z0-9_-]*)[ \t]*=[ \t]*(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^",\s]*))[ \t]*')
_HEADER_ITEM = re.compile(r"\([^()\s]*\)|[^()\s]+")
_UNESCAPE = re.compile(r"\\(.)")
_REQUIRED = ("keyid", "algorithm", "created", "expires", "signature")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class SignatureError(Exception):
    """A signature header was refused; `.reason` tells the sender what to fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignatureParams:
    subscriber_id: str
    unique_key_id: str
    algorithm: str
    created: int
    expires: int
    headers: str
    signature: bytes

    @property
    def key_id(self) -> str:
        return f"{self.subscriber_id}|{self.unique_key_id}|{self.algorithm}"


def body_digest(body: bytes) -> str:
    """Standard base64 of BLAKE2b-512 over the exact body bytes."""
    return base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode("ascii")


def signing_string(created: int, expires: int, digest_b64: str) -> bytes:
    return f"(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest_b64}".encode("ascii")


# --------------------------------------------------------------------------- parsing


def parse_signature_header(value: str) -> SignatureParams:
    """Parse and validate a `Signature ...` header value. Raises SignatureError."""
    text = value.strip()
    # ONDC's Python builder wraps the whole value in one more pair of quotes (digest §10.13).
    if text.startswith('"'):
        text = text[1:]
        if text.endswith('""'):
            text = text[:-1]
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "signature":
        raise SignatureError(
            f"authorization scheme must be 'Signature', got {scheme[:20]!r}"
            if scheme
            else "empty signature header"
        )
    params = _parse_params(rest)
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        spelled = ", ".join("keyId" if m == "keyid" else m for m in missing)
        raise SignatureError(
            f"signature header lacks required parameter(s): {spelled} "
            "(need keyId, algorithm, created, expires, signature)"
        )

    key_id = params["keyid"]
    parts = key_id.split("|")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise SignatureError(
            f"keyId must be 'subscriber_id|unique_key_id|ed25519', got {key_id[:200]!r}"
        )
    subscriber_id, unique_key_id, key_alg = parts
    algorithm = params["algorithm"]
    if key_alg.lower() != algorithm.lower():
        raise SignatureError(
            f"keyId algorithm {key_alg!r} differs from algorithm parameter {algorithm!r}"
        )
    if algorithm.lower() != ALGORITHM:
        raise SignatureError(f"unsupported signature algorithm {algorithm[:40]!r}: only 'ed25519' is accepted")

    created = _unix_seconds(params["created"], "created")
    expires = _unix_seconds(params["expires"], "expires")
    if expires < created:
        raise SignatureError(f"expires ({expires}) is before created ({created})")

    # BECKN-006 always signs these three; a peer that omits `headers` means the same.
    headers = params.get("headers", SIGNED_HEADERS)
    items = tuple(item.lower() for item in _HEADER_ITEM.findall(headers))
    if items != _SIGNED_HEADER_LIST:
        raise SignatureError(
            f'headers must list exactly "{SIGNED_HEADERS}" in that order, got {headers[:100]!r}'
        )

    return SignatureParams(
        subscriber_id=subscriber_id,
        unique_key_id=unique_key_id,
        algorithm=ALGORITHM,
        created=created,
        expires=expires,
        headers=SIGNED_HEADERS,
        signature=_signature_bytes(params["signature"]),
    )


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        m = _PARAM.match(text, pos)
        if m is None:
            raise SignatureError(
                f"malformed signature parameters near {text[pos:pos + 40]!r}: "
                'expected name="value" pairs separated by commas'
            )
        name = m.group(1).lower()
        if name in params:
            raise SignatureError(f"duplicate signature parameter {m.group(1)!r}")
        quoted = m.group(2)
        if quoted is None:
            params[name] = m.group(3)
        else:
            params[name] = _UNESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = m.end()
        if pos < end:
            if text[pos] != ",":
                raise SignatureError(
                    f"unexpected text after parameter {m.group(1)!r}: {text[pos:pos + 40]!r} "
                    "(parameters are separated by commas)"
                )
            pos += 1
    return params


def _unix_seconds(raw: str, name: str) -> int:
    if not _UNIX_SECONDS.fullmatch(raw):
        raise SignatureError(f"{name} must be an integer Unix timestamp in seconds, got {raw[:40]!r}")
    return int(raw)


def _signature_bytes(raw: str) -> bytes:
    if not _B64.fullmatch(raw) or len(raw) % 4:
        raise SignatureError(
            f"signature is not standard padded base64 (got {raw[:24]!r}...); "
            "encode the 64-byte Ed25519 signature with base64 (not base64url, not hex)"
        )
    try:
        sig = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise SignatureError(f"signature is not valid base64 (got {raw[:24]!r}...)") from None
    if len(sig) != _SIGNATURE_BYTES:
        raise SignatureError(
            f"signature must be 64 bytes (an Ed25519 signature), got {len(sig)} bytes"
        )
    return sig


# --------------------------------------------------------------------------- building


def build_signature_header(params: SignatureParams) -> str:
    # No spaces after commas: the v2 header regex forbids them and every 1.x parser accepts it.
    sig = base64.b64encode(params.signature).decode("ascii")
    return (
        f'Signature keyId="{params.key_id}",algorithm="{params.algorithm}",'
        f'created="{params.created}",expires="{params.expires}",'
        f'headers="{params.headers}",signature="{sig}"'
    )


def authenticate_challenge(realm: str, *, gateway: bool) -> tuple[str, str]:
    """The header for a 401: `Proxy-Authenticate` for a bad gateway signature, else
    `WWW-Authenticate` (BECKN-006 steps 2 and 4). `realm` is the receiver's subscriber id."""
    name = "Proxy-Authenticate" if gateway else "WWW-Authenticate"
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return name, f'Signature realm="{quoted}",headers="{SIGNED_HEADERS}"'


# --------------------------------------------------------------------------- checking


def check_signature_times(params: SignatureParams, *, now: float, skew_seconds: int = 5) -> None:
    """`created` may be at most `skew_seconds` ahead of our clock; `expires` must not be past."""
    if params.created > now + skew_seconds:
        raise SignatureError(
            f"signature created in the future: created={params.created}, now={int(now)} "
            f"(allowed clock skew {skew_seconds}s); check the sender's clock (NTP)"
        )
    if now > params.expires:
        raise SignatureError(f"signature expired at {params.expires} (now {int(now)})")


def verify_signature(
    params: SignatureParams,
    verify_key: VerifyKey,
    *,
    digest_b64: str,
    digest_header: str | None = None,
) -> None:
    """Check the Ed25519 signature over the signing string built from `digest_b64`, the
    receiver's own BLAKE2b-512 of the received body (hash once, check every header).

    A wrong body and a wrong key fail the same way cryptographically. If the sender also sent
    an HTTP `Digest` header, pass it as `digest_header` to tell the two apart in the reason."""
    message = signing_string(params.created, params.expires, digest_b64)
    try:
        verify_key.verify(message, params.signature)
        return
    except BadSignatureError:
        pass
    if digest_header is not None:
        sent = digest_header.strip()
        if sent[:10].upper() == "BLAKE-512=":
            sent = sent[10:]
        if sent != digest_b64:
            raise SignatureError(
                "digest mismatch: the body was changed after signing, or the signer hashed "
                "different bytes (no re-serialisation: sign the exact bytes you send)"
            )
        raise SignatureError(
            f"signature does not verify with the public key registered for {params.key_id} "
            "(the body digest matches, so the signer used another private key)"
        )
    raise SignatureError(
        f"signature does not verify for {params.key_id}: either the body differs from the bytes "
        "the signer hashed (changed in transit, or re-serialised: sign the exact bytes you send), "
        "or it was signed with a private key other than the one registered for this keyId"
    )


# --------------------------------------------------------------------------- signing


_FORBIDDEN_IN_KEY_ID = re.compile(r'[|",\\\s]')


class Signer:
    """Signs outgoing bodies for one subscriber key."""

    def __init__(
        self,
        subscriber_id: str,
        unique_key_id: str,
        signing_key: SigningKey,
        *,
        validity_seconds: int = 3600,
    ) -> None:
        for name, part in (("subscriber_id", subscriber_id), ("unique_key_id", unique_key_id)):
            if not part or _FORBIDDEN_IN_KEY_ID.search(part):
                raise ValueError(
                    f"{name} must be non-empty without '|', '\"', ',', '\\' or whitespace "
                    f"(it goes into keyId), got {part!r}"
                )
        if validity_seconds <= 0:
            raise ValueError(f"validity_seconds must be positive, got {validity_seconds}")
        self.subscriber_id = subscriber_id
        self.unique_key_id = unique_key_id
        self.validity_seconds = validity_seconds
        self._signing_key = signing_key
        self._key_id = f"{subscriber_id}|{unique_key_id}|{ALGORITHM}"

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(
        self,
        body: bytes,
        *,
        created: int | None = None,
        expires: int | None = None,
        digest_b64: str | None = None,
    ) -> str:
        """The header value signing `body` exactly. Pass `digest_b64` if already computed."""
        if created is None:
            created = int(time.time())
        if expires is None:
            expires = created + self.validity_seconds
        if expires < created:
            raise ValueError(f"expires ({expires}) is before created ({created})")
        if digest_b64 is None:
            digest_b64 = body_digest(body)
        signature = self._signing_key.sign(signing_string(created, expires, digest_b64)).signature
        return build_signature_header(
            SignatureParams(
                subscriber_id=self.subscriber_id,
                unique_key_id=self.unique_key_id,
                algorithm=ALGORITHM,
                created=created,
                expires=expires,
                headers=SIGNED_HEADERS,
                signature=signature,
            )
        )
