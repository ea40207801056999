"""Wallet and issuer keys: Ed25519 and P-256 as jwcrypto JWKs, and secrets encrypted at rest.

Keys
- `generate_key("Ed25519" | "P-256") -> JWK` (private; jwcrypto generates it with `cryptography`).
- `import_key(data, password=None) -> JWK`: a JWK (JWK, dict or JSON) or a PEM private/public key;
  only Ed25519 and P-256 are accepted.
- `ed25519_from_seed(seed32) -> JWK`: the deterministic Ed25519 key of a 32-byte seed
  (used by `did.pairwise`).
- `jws_alg(jwk) -> "EdDSA" | "ES256"`.

Encryption at rest (`encrypt_secret` / `decrypt_secret`, and `encrypt_private_key` /
`decrypt_private_key` for a JWK): the passphrase goes through **Argon2id** (argon2-cffi
`hash_secret_raw`, RFC 9106) with a random 16-byte salt, producing 64 bytes: the first 32 are the
key of a **`nacl.secret.SecretBox`** (XSalsa20-Poly1305, random 24-byte nonce), the last 32 key an
HMAC-SHA256 "check" over the blob header. The check lets us tell a wrong passphrase
(`WrongPassphrase`) apart from an altered ciphertext (`TamperedBlob`); it gives an attacker nothing
the Poly1305 tag did not already give (both need one Argon2id run per guess). Any change to the
header (salt, parameters, nonce) changes the derived key or the HMAC input, so it is detected too
(reported as a wrong passphrase, since the two cannot be told apart).

Default Argon2id parameters: RFC 9106 section 4 "second recommended option" — t=3 passes,
m=64 MiB, p=4 lanes, 16-byte salt, 64-byte output. They are written into every blob, so they can be
raised later without breaking old blobs. Tests may pass lower `params=` explicitly; nothing lowers
them by default. Decryption refuses parameters outside sane bounds (so a forged blob cannot make
us allocate gigabytes).

Blob (a compact JSON string, versioned and self-describing):
`{"fmt":"lakou-secretbox","v":1,"kdf":"argon2id","t":3,"m":65536,"p":4,"salt":"…",
"enc":"xsalsa20-poly1305","nonce":"…","check":"…","ct":"…"}` (binary fields base64url).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.secret
import nacl.utils
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwcrypto import jwk as jwk_mod

__all__ = [
    "KeyError_",
    "DecryptionError",
    "WrongPassphrase",
    "TamperedBlob",
    "Argon2Params",
    "DEFAULT_ARGON2",
    "generate_key",
    "import_key",
    "ed25519_from_seed",
    "jws_alg",
    "encrypt_secret",
    "decrypt_secret",
    "encrypt_private_key",
    "decrypt_private_key",
]

BLOB_FORMAT = "lakou-secretbox"
BLOB_VERSION = 1


class KeyError_(ValueError):
    """A key is of an unsupported type or could not be parsed (message safe to show)."""


class DecryptionError(ValueError):
    """An encrypted blob could not be opened."""


class WrongPassphrase(DecryptionError):
    pass


class TamperedBlob(DecryptionError):
    pass


@dataclass(frozen=True)
class Argon2Params:
    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 4

    def check(self) -> None:
        if not (1 <= self.time_cost <= 20):
            raise DecryptionError("Argon2id time cost out of bounds (1..20)")
        if not (8 <= self.memory_kib <= 1024 * 1024):
            raise DecryptionError("Argon2id memory out of bounds (8 KiB..1 GiB)")
        if not (1 <= self.parallelism <= 16):
            raise DecryptionError("Argon2id parallelism out of bounds (1..16)")
        if self.memory_kib < 8 * self.parallelism:
            raise DecryptionError("Argon2id memory must be at least 8 KiB per lane")


DEFAULT_ARGON2 = Argon2Params()


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------

_SUPPORTED = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256"}


def _check_supported(key: jwk_mod.JWK) -> jwk_mod.JWK:
    kty, crv = key.get("kty"), key.get("crv")
    if (kty, crv) not in _SUPPORTED:
        raise KeyError_(f"unsupported key type {kty}/{crv}: only Ed25519 and P-256")
    return key


def generate_key(kind: str = "Ed25519") -> jwk_mod.JWK:
    """A new private key: `Ed25519` (default) or `P-256`."""
    if kind == "Ed25519":
        return jwk_mod.JWK.generate(kty="OKP", crv="Ed25519")
    if kind in ("P-256", "ES256", "secp256r1"):
        return jwk_mod.JWK.generate(kty="EC", crv="P-256")
    raise KeyError_(f"unsupported key kind {kind!r}: use 'Ed25519' or 'P-256'")


def import_key(data: Any, password: bytes | None = None) -> jwk_mod.JWK:
    """Import an Ed25519/P-256 key from a JWK (object, dict, JSON) or PEM (private or public)."""
    try:
        if isinstance(data, jwk_mod.JWK):
            key = data
        elif isinstance(data, dict):
            key = jwk_mod.JWK(**data)
        elif isinstance(data, (str, bytes)):
            raw = data.encode() if isinstance(data, str) else data
            if raw.lstrip().startswith(b"-----BEGIN"):
                key = jwk_mod.JWK.from_pem(raw, password=password)
            else:
                key = jwk_mod.JWK.from_json(raw)
        else:
            raise KeyError_("expected a JWK or PEM")
    except KeyError_:
        raise
    except Exception as exc:  # jwcrypto/cryptography raise many types on bad input
        raise KeyError_(f"cannot import key: {type(exc).__name__}") from exc
    return _check_supported(key)


def ed25519_from_seed(seed: bytes) -> jwk_mod.JWK:
    """The Ed25519 private key whose 32-byte seed (RFC 8032 private key) is `seed`."""
    if len(seed) != 32:
        raise KeyError_("an Ed25519 seed is exactly 32 bytes")
    return jwk_mod.JWK.from_pyca(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def jws_alg(key: Any) -> str:
    """The JWS `alg` for a key: EdDSA for Ed25519, ES256 for P-256."""
    k = _check_supported(key if isinstance(key, jwk_mod.JWK) else import_key(key))
    return _SUPPORTED[(k.get("kty"), k.get("crv"))]


# --------------------------------------------------------------------------------------------
# Encryption at rest
# --------------------------------------------------------------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TamperedBlob("encrypted blob field is not a string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TamperedBlob("encrypted blob field is not base64url") from exc


def _derive(passphrase: str | bytes, salt: bytes, params: Argon2Params) -> tuple[bytes, bytes]:
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    if not secret:
        raise ValueError("the passphrase must not be empty")
    out = hash_secret_raw(
        secret=secret,
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=64,
        type=Type.ID,
    )
    return out[:32], out[32:]


def _header_bytes(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encrypt_secret(secret: bytes, passphrase: str | bytes, *, params: Argon2Params = DEFAULT_ARGON2) -> str:
    """Encrypt `secret` under `passphrase`; returns the self-describing blob (a JSON string)."""
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError("secret must be bytes")
    params.check()
    salt = os.urandom(16)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    enc_key, mac_key = _derive(passphrase, salt, params)
    header = {
        "fmt": BLOB_FORMAT,
        "v": BLOB_VERSION,
        "kdf": "argon2id",
        "t": params.time_cost,
        "m": params.memory_kib,
        "p": params.parallelism,
        "salt": _b64u(salt),
        "enc": "xsalsa20-poly1305",
        "nonce": _b64u(nonce),
    }
    check = hmac.new(mac_key, _header_bytes(header), hashlib.sha256).digest()
    ct = nacl.secret.SecretBox(enc_key).encrypt(bytes(secret), nonce).ciphertext
    return json.dumps({**header, "check": _b64u(check), "ct": _b64u(ct)}, separators=(",", ":"))


def decrypt_secret(blob: str | bytes, passphrase: str | bytes) -> bytes:
    """Open a blob from `encrypt_secret`. Raises `WrongPassphrase` or `TamperedBlob`."""
    try:
        data = json.loads(blob)
    except (TypeError, ValueError) as exc:
        raise TamperedBlob("not an encrypted blob (invalid JSON)") from exc
    if not isinstance(data, dict) or data.get("fmt") != BLOB_FORMAT:
        raise TamperedBlob("not a Lakou encrypted blob")
    if data.get("v") != BLOB_VERSION:
        raise TamperedBlob(f"unsupported encrypted blob version {data.get('v')!r}")
    if data.get("kdf") != "argon2id" or data.get("enc") != "xsalsa20-poly1305":
        raise TamperedBlob("unsupported KDF or cipher in encrypted blob")
    try:
        params = Argon2Params(int(data["t"]), int(data["m"]), int(data["p"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TamperedBlob("encrypted blob has invalid Argon2id parameters") from exc
    try:
        params.check()
    except DecryptionError as exc:
        raise TamperedBlob(str(exc)) from exc
    salt = _b64u_decode(data.get("salt"))
    nonce = _b64u_decode(data.get("nonce"))
    check = _b64u_decode(data.get("check"))
    ct = _b64u_decode(data.get("ct"))
    if len(salt) < 16 or len(nonce) != nacl.secret.SecretBox.NONCE_SIZE or len(check) != 32:
        raise TamperedBlob("encrypted blob has fields of the wrong size")
    header = {k: data[k] for k in ("fmt", "v", "kdf", "t", "m", "p", "salt", "enc", "nonce")}
    enc_key, mac_key = _derive(passphrase, salt, params)
    expected = hmac.new(mac_key, _header_bytes(header), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, check):
        raise WrongPassphrase("wrong passphrase (or the encrypted blob's header was altered)")
    try:
        return nacl.secret.SecretBox(enc_key).decrypt(ct, nonce)
    except nacl.exceptions.CryptoError as exc:
        raise TamperedBlob("encrypted data was altered or corrupted (authentication failed)") from exc


def encrypt_private_key(key: jwk_mod.JWK, passphrase: str | bytes, *,
                        params: Argon2Params = DEFAULT_ARGON2) -> str:
    """Encrypt a private JWK (its full JSON export) under `passphrase`."""
    _check_supported(key)
    if not key.has_private:
        raise KeyError_("not a private key")
    return encrypt_secret(key.export_private().encode("utf-8"), passphrase, params=params)


def decrypt_private_key(blob: str | bytes, passphrase: str | bytes) -> jwk_mod.JWK:
    """Open a blob from `encrypt_private_key`."""
    return import_key(decrypt_secret(blob, passphrase).decode("utf-8"))
