"""Load and generate the two key pairs of a Beckn subscriber.

A subscriber has an Ed25519 *signing* pair (BECKN-006 signatures) and an X25519 *encryption* pair
(registry challenge, ONDC message encryption). Peers publish them in several encodings (digest
§5.4): raw base64, DER (SPKI / PKCS#8) base64, PEM, and 32- or 64-byte private keys. The loaders
here accept all of them and normalise to raw keys; everything Lakou emits is raw base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from nacl.public import PrivateKey as X25519PrivateKey
from nacl.signing import SigningKey, VerifyKey

__all__ = [
    "KeyFormatError",
    "KeyPairs",
    "generate_key_pairs",
    "load_signing_key",
    "load_verify_key",
    "load_x25519_private",
    "load_x25519_public",
    "raw_public_b64",
]


class KeyFormatError(ValueError):
    """A key could not be read; the message says what was found and what is accepted."""


# DER prefixes (everything before the 32 raw key bytes) of the fixed-size encodings.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_X25519_SPKI_PREFIX = bytes.fromhex("302a300506032b656e032100")
# PKCS#8 PrivateKeyInfo, version 0 (RFC 8410) or 1 (what ONDC's published keys carry).
_X25519_PKCS8_PREFIXES = (
    bytes.fromhex("302e020100300506032b656e04220420"),
    bytes.fromhex("302e020101300506032b656e04220420"),
)
_ED25519_PKCS8_PREFIXES = (
    bytes.fromhex("302e020100300506032b657004220420"),
    bytes.fromhex("302e020101300506032b657004220420"),
)

_SIGNING_PRIVATE_ACCEPTED = (
    "accepted: base64 of a 32-byte Ed25519 seed, base64 of a 64-byte libsodium secret key "
    "(seed followed by public key), base64 PKCS#8 DER, PEM ('-----BEGIN PRIVATE KEY-----'), "
    "or raw 32/64 bytes"
)
_SIGNING_PUBLIC_ACCEPTED = (
    "accepted: base64 of the raw 32-byte Ed25519 public key, base64 SPKI DER "
    "('MCowBQYDK2VwAyEA...'), PEM ('-----BEGIN PUBLIC KEY-----'), or raw 32 bytes"
)
_X25519_PUBLIC_ACCEPTED = (
    "accepted: base64 of the raw 32-byte X25519 public key, base64 SPKI DER "
    "('MCowBQYDK2VuAyEA...'), PEM, or raw 32 bytes"
)
_X25519_PRIVATE_ACCEPTED = (
    "accepted: base64 of the raw 32-byte X25519 private key, base64 PKCS#8 DER "
    "('MC4CAQ...'), PEM, or raw 32 bytes"
)

_B64_TEXT = re.compile(rb"[A-Za-z0-9+/=_\-\s]+")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def _text_or_raw(value: str | bytes) -> tuple[str | None, bytes | None]:
    """Split input into (text, raw). Key files are often read as bytes: bytes made only of
    base64 characters, or PEM, are text; anything else is a raw key. A random raw key made only
    of base64 characters is about a 1e-19 chance, so the rule cannot misread a real one."""
    if isinstance(value, str):
        return value.strip(), None
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise KeyFormatError(f"a key must be str or bytes, got {type(value).__name__}")
    raw = bytes(value)
    if raw.lstrip().startswith(b"-----BEGIN") or _B64_TEXT.fullmatch(raw):
        return raw.decode("ascii").strip(), None
    return None, raw


def _b64decode(text: str, what: str, accepted: str) -> bytes:
    compact = "".join(text.split())
    if not compact:
        raise KeyFormatError(f"{what}: empty value; {accepted}")
    # Also base64url and unpadded input, as JOSE-minded tools print keys; still strict about
    # the alphabet so that a typo is an error, not a different key.
    standard = compact.translate(_URLSAFE_TO_STANDARD)
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        # No snippet of the value: it may be a private key, and this message may be logged.
        raise KeyFormatError(f"{what}: not valid base64 ({len(compact)} characters); {accepted}") from None


def _pem_der(text: str, what: str, *, private: bool, accepted: str) -> bytes:
    """The DER inside a PEM block. Going through DER (not `load_pem_*`) lets PEM get the same
    rules, messages and ONDC fallback as base64 DER."""
    lines = [line.strip() for line in text.strip().splitlines()]
    label = lines[0].removeprefix("-----BEGIN").strip(" -")
    if len(lines) < 3 or not lines[-1].startswith("-----END"):
        raise KeyFormatError(f"{what}: PEM has no '-----END ...-----' line; {accepted}")
    if "ENCRYPTED" in label:
        raise KeyFormatError(f"{what}: encrypted PEM; decrypt it first (openssl pkey -in FILE)")
    if private and "PUBLIC" in label:
        raise KeyFormatError(f"{what}: this PEM is a public key ({label}); {accepted}")
    if not private and "PRIVATE" in label:
        raise KeyFormatError(f"{what}: this PEM is a private key ({label}); pass the public key")
    return _b64decode("".join(lines[1:-1]), what, accepted)


# --------------------------------------------------------------------------- Ed25519


def _signing_key_from_bytes(raw: bytes, what: str) -> SigningKey:
    if len(raw) == 32:
        return SigningKey(raw)
    if len(raw) == 64:
        key = SigningKey(raw[:32])
        if key.verify_key.encode() != raw[32:]:
            raise KeyFormatError(
                f"{what}: 64-byte libsodium secret key whose second half is not the public key "
                "of its first half (the seed); the key is corrupt or two keys were pasted together"
            )
        return key
    if len(raw) == 44 and raw[:12] in (_ED25519_SPKI_PREFIX, _X25519_SPKI_PREFIX):
        raise KeyFormatError(f"{what}: this is a public key (SPKI DER); {_SIGNING_PRIVATE_ACCEPTED}")
    if raw[:1] == b"\x30":
        return SigningKey(_ed25519_private_from_der(raw, what))
    raise KeyFormatError(f"{what}: got {len(raw)} bytes; {_SIGNING_PRIVATE_ACCEPTED}")


def _ed25519_private_from_der(der: bytes, what: str) -> bytes:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        # Same ONDC quirk as for X25519 (see _x25519_private_from_der).
        if len(der) == 48 and der[:16] in _ED25519_PKCS8_PREFIXES:
            return der[16:]
        raise KeyFormatError(f"{what}: DER is not a PKCS#8 private key; {_SIGNING_PRIVATE_ACCEPTED}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFormatError(
            f"{what}: PKCS#8 holds key type {_key_kind(key)}, not Ed25519; {_SIGNING_PRIVATE_ACCEPTED}"
        )
    return key.private_bytes_raw()


def load_signing_key(value: str | bytes) -> SigningKey:
    """An Ed25519 signing key from any encoding peers use (see `_SIGNING_PRIVATE_ACCEPTED`)."""
    what = "signing private key"
    text, raw = _text_or_raw(value)
    if raw is not None:
        return _signing_key_from_bytes(raw, what)
    assert text is not None
    if text.startswith("-----BEGIN"):
        der = _pem_der(text, what, private=True, accepted=_SIGNING_PRIVATE_ACCEPTED)
        return SigningKey(_ed25519_private_from_der(der, what))
    return _signing_key_from_bytes(_b64decode(text, what, _SIGNING_PRIVATE_ACCEPTED), what)


def _verify_key_from_bytes(raw: bytes, what: str) -> VerifyKey:
    if len(raw) == 32:
        return VerifyKey(raw)
    if len(raw) == 44 and raw[:12] == _ED25519_SPKI_PREFIX:
        return VerifyKey(raw[12:])
    if len(raw) == 44 and raw[:12] == _X25519_SPKI_PREFIX:
        raise KeyFormatError(
            f"{what}: this is an X25519 encryption public key (encr_public_key), "
            f"not an Ed25519 signing key; {_SIGNING_PUBLIC_ACCEPTED}"
        )
    if len(raw) == 64:
        raise KeyFormatError(
            f"{what}: got 64 bytes, which looks like a libsodium private key (seed + public key); "
            f"pass only the public key; {_SIGNING_PUBLIC_ACCEPTED}"
        )
    if raw[:1] == b"\x30":
        try:
            key = serialization.load_der_public_key(raw)
        except (ValueError, TypeError):
            raise KeyFormatError(f"{what}: DER is not an SPKI public key; {_SIGNING_PUBLIC_ACCEPTED}") from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise KeyFormatError(f"{what}: SPKI holds key type {_key_kind(key)}, not Ed25519")
        return VerifyKey(key.public_bytes_raw())
    raise KeyFormatError(f"{what}: got {len(raw)} bytes; {_SIGNING_PUBLIC_ACCEPTED}")


def load_verify_key(value: str | bytes) -> VerifyKey:
    """An Ed25519 public key from raw base64, SPKI DER base64, PEM or raw bytes."""
    what = "signing public key"
    text, raw = _text_or_raw(value)
    if raw is not None:
        return _verify_key_from_bytes(raw, what)
    assert text is not None
    if text.startswith("-----BEGIN"):
        return _verify_key_from_bytes(
            _pem_der(text, what, private=False, accepted=_SIGNING_PUBLIC_ACCEPTED), what
        )
    return _verify_key_from_bytes(_b64decode(text, what, _SIGNING_PUBLIC_ACCEPTED), what)


def raw_public_b64(key: SigningKey | VerifyKey | str | bytes) -> str:
    """The raw 32-byte Ed25519 public key in standard base64: the form Lakou publishes.
    A str/bytes argument is read as a public key in any accepted encoding and normalised."""
    if isinstance(key, SigningKey):
        key = key.verify_key
    elif not isinstance(key, VerifyKey):
        key = load_verify_key(key)
    return base64.b64encode(key.encode()).decode("ascii")


# --------------------------------------------------------------------------- X25519


def _x25519_private_from_der(der: bytes, what: str) -> bytes:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        # ONDC publishes PKCS#8 with version=1 and no public key, which `cryptography` rejects
        # ("Invalid key"); the fixed-size layout ends with the raw private key (digest §5.4).
        if len(der) == 48 and der[:16] in _X25519_PKCS8_PREFIXES:
            return der[16:]
        raise KeyFormatError(f"{what}: DER is not a PKCS#8 private key; {_X25519_PRIVATE_ACCEPTED}") from None
    if not isinstance(key, x25519.X25519PrivateKey):
        raise KeyFormatError(f"{what}: PKCS#8 holds key type {_key_kind(key)}, not X25519")
    return key.private_bytes_raw()


def load_x25519_private(value: str | bytes) -> bytes:
    """The raw 32-byte X25519 private key from raw base64, PKCS#8 DER base64 (ONDC's too), PEM."""
    what = "encryption private key"
    text, raw = _text_or_raw(value)
    if text is not None and text.startswith("-----BEGIN"):
        raw = _pem_der(text, what, private=True, accepted=_X25519_PRIVATE_ACCEPTED)
    elif text is not None:
        raw = _b64decode(text, what, _X25519_PRIVATE_ACCEPTED)
    assert raw is not None
    if len(raw) == 32:
        return raw
    if raw[:1] == b"\x30":
        return _x25519_private_from_der(raw, what)
    raise KeyFormatError(f"{what}: got {len(raw)} bytes; {_X25519_PRIVATE_ACCEPTED}")


def load_x25519_public(value: str | bytes) -> bytes:
    """The raw 32-byte X25519 public key from raw base64, SPKI DER base64 (ONDC's form), PEM."""
    what = "encryption public key"
    text, raw = _text_or_raw(value)
    if text is not None and text.startswith("-----BEGIN"):
        raw = _pem_der(text, what, private=False, accepted=_X25519_PUBLIC_ACCEPTED)
    elif text is not None:
        raw = _b64decode(text, what, _X25519_PUBLIC_ACCEPTED)
    assert raw is not None
    if len(raw) == 32:
        return raw
    if len(raw) == 44 and raw[:12] == _X25519_SPKI_PREFIX:
        return raw[12:]
    if len(raw) == 44 and raw[:12] == _ED25519_SPKI_PREFIX:
        raise KeyFormatError(
            f"{what}: this is an Ed25519 signing public key, not an X25519 encryption key"
        )
    if raw[:1] == b"\x30":
        try:
            key = serialization.load_der_public_key(raw)
        except (ValueError, TypeError):
            raise KeyFormatError(f"{what}: DER is not an SPKI public key; {_X25519_PUBLIC_ACCEPTED}") from None
        if not isinstance(key, x25519.X25519PublicKey):
            raise KeyFormatError(f"{what}: SPKI holds key type {_key_kind(key)}, not X25519")
        return key.public_bytes_raw()
    raise KeyFormatError(f"{what}: got {len(raw)} bytes; {_X25519_PUBLIC_ACCEPTED}")


def _key_kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "") or "other"


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class KeyPairs:
    """A subscriber's fresh keys, all standard base64 of raw bytes."""

    signing_private_key: str  # 64-byte libsodium form (seed + public): accepted by every peer seen
    signing_public_key: str  # 32 bytes
    encryption_private_key: str  # 32-byte X25519 scalar
    encryption_public_key: str  # 32 bytes

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict (callers add fields, e.g. the unique key id, before dumping)."""
        return asdict(self)


def generate_key_pairs() -> KeyPairs:
    signing = SigningKey.generate()
    public = signing.verify_key.encode()
    encryption = X25519PrivateKey.generate()
    b64 = base64.b64encode
    return KeyPairs(
        signing_private_key=b64(signing.encode() + public).decode("ascii"),
        signing_public_key=b64(public).decode("ascii"),
        encryption_private_key=b64(encryption.encode()).decode("ascii"),
        encryption_public_key=b64(encryption.public_key.encode()).decode("ascii"),
    )
