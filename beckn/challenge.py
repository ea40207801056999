"""The `on_subscribe` challenge: how a registry checks that a subscriber holds its encryption key.

Both sides live here, in the protocol core: the registry makes challenges (registry/subscribe.py)
and every node solves them (beckn/onboarding.py), with the same bytes.

The core spec only says the challenge is "encrypted with the subscriber's encryption public
key". Every registry that implements it (ONDC's, and the Succinct registry) does the same thing
(digest §6.1), so that is what Lakou does, byte for byte:

1. `shared = X25519(registry_encr_private, subscriber_encr_public)`: the raw 32 bytes, no KDF;
2. `challenge = base64(AES-256-ECB(PKCS#7(plaintext), key=shared))`;
3. the subscriber computes the same secret as `X25519(own_encr_private, registry_encr_public)`,
   decrypts, and answers the plaintext.

Why ECB without a KDF: interoperability. ONDC's reference `on_subscribe` servers and SDKs decrypt
exactly this (`AES.new(shared, AES.MODE_ECB)` + `unpad`), and so does every participant that has
onboarded with ONDC or a Succinct registry; anything else would make our challenge undecryptable
for them. ECB's weakness (equal blocks encrypt equally) does not matter here: the only payload is
a fresh random string used once, whose sole purpose is to prove the subscriber can compute the
shared secret. Nothing confidential is ever sent under this scheme.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from beckn.keys import load_x25519_private, load_x25519_public

__all__ = [
    "ChallengeError",
    "decrypt_challenge",
    "encrypt_challenge",
    "make_challenge",
    "shared_secret",
    "solve_challenge",
]

_BLOCK_BITS = 128
# The Succinct registry sends a 32-digit random number; 32 hex digits carry the same 128 bits of
# entropy and are printable in every language a subscriber may decrypt with.
_PLAINTEXT_BYTES = 16


class ChallengeError(ValueError):
    """A challenge could not be decrypted; the message says why, for the subscriber's operator."""


def shared_secret(own_private: str | bytes, peer_public: str | bytes) -> bytes:
    """The raw 32-byte X25519 shared secret (no KDF: see the module docstring).

    Keys are accepted in every encoding `beckn.keys` reads (raw base64, DER/ONDC, PEM)."""
    private = X25519PrivateKey.from_private_bytes(load_x25519_private(own_private))
    return private.exchange(X25519PublicKey.from_public_bytes(load_x25519_public(peer_public)))


def _cipher(key: bytes) -> Cipher:  # type: ignore[type-arg]
    # ECB on purpose: interoperability with ONDC and the Succinct registry (module docstring).
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - see above


def encrypt_challenge(plaintext: str, key: bytes) -> str:
    """base64(AES-256-ECB(PKCS#7(plaintext UTF-8), key))."""
    padder = padding.PKCS7(_BLOCK_BITS).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def decrypt_challenge(challenge: str, key: bytes) -> str:
    """The plaintext of a challenge, or `ChallengeError` saying what is wrong with it."""
    try:
        data = base64.b64decode(challenge, validate=True)
    except (binascii.Error, ValueError):
        raise ChallengeError("the challenge is not standard base64") from None
    if not data or len(data) % (_BLOCK_BITS // 8):
        raise ChallengeError(f"the challenge is {len(data)} bytes, not a whole number of AES blocks (16 bytes)")
    decryptor = _cipher(key).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    try:
        raw = unpadder.update(padded) + unpadder.finalize()
        return raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        # Bad padding after decryption almost always means another shared secret: the wrong
        # private key on our side, or the challenge was encrypted for another public key.
        raise ChallengeError(
            "the challenge does not decrypt to valid PKCS#7-padded text: the encryption key pair "
            "used is not the one registered (check the X25519 private key and the registry's "
            "encryption public key)"
        ) from None


def make_challenge(registry_encr_private: str | bytes, subscriber_encr_public: str | bytes) -> tuple[str, str]:
    """A fresh `(plaintext, challenge)` pair for one subscriber key. Keep the plaintext to
    compare with the subscriber's `answer`; send only the challenge."""
    plaintext = secrets.token_hex(_PLAINTEXT_BYTES)
    key = shared_secret(registry_encr_private, subscriber_encr_public)
    return plaintext, encrypt_challenge(plaintext, key)


def solve_challenge(challenge: str, subscriber_encr_private: str | bytes, registry_encr_public: str | bytes) -> str:
    """The subscriber's side: the `answer` to send back for `challenge`."""
    return decrypt_challenge(challenge, shared_secret(subscriber_encr_private, registry_encr_public))
