"""Key loading: every encoding peers publish loads to the same key; bad input says what to fix."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from nacl.public import PrivateKey as NaclX25519PrivateKey
from nacl.signing import SigningKey, VerifyKey

from beckn.keys import (
    KeyFormatError,
    KeyPairs,
    generate_key_pairs,
    load_signing_key,
    load_verify_key,
    load_x25519_private,
    load_x25519_public,
    raw_public_b64,
)

# BECKN-006 worked example keys (digest §5.6).
EXAMPLE_PUBLIC = "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk="
EXAMPLE_PRIVATE_64 = (
    "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ=="
)
# ONDC's published X25519 example keys (ONDC-Official/developer-docs:registry/
# encryption_and_decryption.md; digest §5.4, §6.1): PKCS#8 version=1 privates, SPKI publics.
ONDC_NP1_PRIVATE = "MC4CAQEwBQYDK2VuBCIEIMCU0uKQ36pRs4d9Jm0aUD9Pn6qq+747AY2Kv4UhE/94"
ONDC_NP2_PUBLIC = "MCowBQYDK2VuAyEA2qqMXULrFHhJCJEI38WnTtwojAtf9cZ3BsUid5Goah4="
ONDC_NP2_PRIVATE = "MC4CAQEwBQYDK2VuBCIEICDWXCT+/VoLE8TJ5nYbtGv5vI+sqXBtdYgrBMjD73Vz"
ONDC_NP1_PUBLIC = "MCowBQYDK2VuAyEAmb/MUSKXvtgsPJuEQUM/imlDJ7oe9uPL/m4ta9e8Z1o="
ONDC_SHARED_SECRET = "QA/NKFuipEETWgau17M+Y61tYLsyqe/2lbjyzJ1bGGI="
ONDC_PROD_REGISTRY_ENCRYPTION = "MCowBQYDK2VuAyEAvVEyZY91O2yV8w8/CAwVDAnqIZDJJUPdLUUKwLo3K0M="


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def example_crypto_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(EXAMPLE_PRIVATE_64)[:32])


def signing_encodings() -> dict[str, str | bytes]:
    raw64 = base64.b64decode(EXAMPLE_PRIVATE_64)
    key = example_crypto_key()
    der = key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    return {
        "base64 64-byte libsodium": EXAMPLE_PRIVATE_64,
        "base64 32-byte seed": b64(raw64[:32]),
        "base64 PKCS#8 DER": b64(der),
        "PEM str": pem.decode(),
        "PEM bytes (key file)": pem,
        "raw 32 bytes": raw64[:32],
        "raw 64 bytes": raw64,
        "base64 bytes with newline (key file)": EXAMPLE_PRIVATE_64.encode() + b"\n",
        # ONDC-style PKCS#8 with version=1 and no public key, for Ed25519 too.
        "base64 PKCS#8 v1 without public key": b64(bytes.fromhex("302e020101300506032b657004220420") + raw64[:32]),
    }


@pytest.mark.parametrize("name", list(signing_encodings()))
def test_every_signing_key_encoding_loads_the_same_key(name: str) -> None:
    key = load_signing_key(signing_encodings()[name])
    assert isinstance(key, SigningKey)
    assert raw_public_b64(key) == EXAMPLE_PUBLIC


def public_encodings() -> dict[str, str | bytes]:
    pub = example_crypto_key().public_key()
    der = pub.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    pem = pub.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    return {
        "base64 raw": EXAMPLE_PUBLIC,
        "base64 SPKI DER": b64(der),
        "PEM str": pem.decode(),
        "PEM bytes": pem,
        "raw bytes": base64.b64decode(EXAMPLE_PUBLIC),
        "base64url without padding": EXAMPLE_PUBLIC.replace("+", "-").replace("/", "_").rstrip("="),
    }


@pytest.mark.parametrize("name", list(public_encodings()))
def test_every_verify_key_encoding_loads_the_same_key(name: str) -> None:
    key = load_verify_key(public_encodings()[name])
    assert isinstance(key, VerifyKey)
    assert raw_public_b64(key) == EXAMPLE_PUBLIC
    assert raw_public_b64(public_encodings()[name]) == EXAMPLE_PUBLIC


def test_spki_der_has_the_documented_prefix() -> None:
    assert public_encodings()["base64 SPKI DER"].startswith("MCowBQYDK2VwAyEA")


def test_libsodium_key_with_mismatched_public_half_is_rejected() -> None:
    raw = base64.b64decode(EXAMPLE_PRIVATE_64)
    other_public = SigningKey.generate().verify_key.encode()
    with pytest.raises(KeyFormatError, match="second half is not the public key of its first half"):
        load_signing_key(b64(raw[:32] + other_public))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "signing private key: empty value; accepted: base64 of a 32-byte Ed25519 seed"),
        ("not*base64", "signing private key: not valid base64"),
        (b64(bytes(16)), "signing private key: got 16 bytes; accepted:"),
        (ONDC_PROD_REGISTRY_ENCRYPTION, "signing private key: this is a public key (SPKI DER)"),
        (
            b64(x25519.X25519PrivateKey.generate().private_bytes(
                ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())),
            "signing private key: PKCS#8 holds key type X25519, not Ed25519",
        ),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode(),
            "signing private key: PKCS#8 holds key type EC, not Ed25519",
        ),
        (
            example_crypto_key().private_bytes(
                ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")).decode(),
            "signing private key: encrypted PEM; decrypt it first",
        ),
        (
            example_crypto_key().public_key().public_bytes(
                ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo).decode(),
            "signing private key: this PEM is a public key",
        ),
        (b"\x01\x02\x03", "signing private key: got 3 bytes"),
        (12345, "a key must be str or bytes, got int"),
    ],
    # Named by the expected message: some values are keys generated at import, and test ids must be
    # the same in every process (pytest-xdist workers compare their collections).
    ids=lambda param: param if isinstance(param, str) and param.startswith(("signing", "a key")) else "key",
)
def test_bad_signing_keys_say_what_is_wrong(value: object, expected: str) -> None:
    with pytest.raises(KeyFormatError) as info:
        load_signing_key(value)  # type: ignore[arg-type]
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EXAMPLE_PRIVATE_64, "signing public key: got 64 bytes, which looks like a libsodium private key"),
        (ONDC_NP1_PUBLIC, "signing public key: this is an X25519 encryption public key"),
        (b64(bytes(31)), "signing public key: got 31 bytes; accepted: base64 of the raw 32-byte"),
        ("%%%", "signing public key: not valid base64"),
        (
            signing_encodings()["PEM str"],
            "signing public key: this PEM is a private key (PRIVATE KEY); pass the public key",
        ),
    ],
)
def test_bad_verify_keys_say_what_is_wrong(value: str, expected: str) -> None:
    with pytest.raises(KeyFormatError) as info:
        load_verify_key(value)
    assert str(info.value).startswith(expected)


# --------------------------------------------------------------------------- X25519


def exchange(private_raw: bytes, public_raw: bytes) -> str:
    shared = x25519.X25519PrivateKey.from_private_bytes(private_raw).exchange(
        x25519.X25519PublicKey.from_public_bytes(public_raw)
    )
    return b64(shared)


def test_cryptography_alone_rejects_ondc_private_keys() -> None:
    # The reason the ONDC fallback exists; if this starts passing, the fallback can go.
    with pytest.raises(ValueError):
        ser.load_der_private_key(base64.b64decode(ONDC_NP1_PRIVATE), password=None)


def test_ondc_published_x25519_keys_agree_on_the_shared_secret() -> None:
    np1 = exchange(load_x25519_private(ONDC_NP1_PRIVATE), load_x25519_public(ONDC_NP2_PUBLIC))
    np2 = exchange(load_x25519_private(ONDC_NP2_PRIVATE), load_x25519_public(ONDC_NP1_PUBLIC))
    assert np1 == np2 == ONDC_SHARED_SECRET


def test_ondc_private_key_in_pem_also_loads() -> None:
    pem = f"-----BEGIN PRIVATE KEY-----\n{ONDC_NP1_PRIVATE}\n-----END PRIVATE KEY-----\n"
    assert load_x25519_private(pem) == base64.b64decode(ONDC_NP1_PRIVATE)[-32:]


def test_ondc_registry_encryption_key_loads() -> None:
    assert len(load_x25519_public(ONDC_PROD_REGISTRY_ENCRYPTION)) == 32


def x25519_encodings() -> tuple[bytes, bytes, dict[str, str | bytes], dict[str, str | bytes]]:
    key = x25519.X25519PrivateKey.generate()
    priv_raw = key.private_bytes_raw()
    pub_raw = key.public_key().public_bytes_raw()
    privates: dict[str, str | bytes] = {
        "base64 raw": b64(priv_raw),
        "raw bytes": priv_raw,
        "base64 PKCS#8 DER": b64(key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())),
        "PEM": key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()).decode(),
        "ONDC PKCS#8 v1": b64(bytes.fromhex("302e020101300506032b656e04220420") + priv_raw),
    }
    publics: dict[str, str | bytes] = {
        "base64 raw": b64(pub_raw),
        "raw bytes": pub_raw,
        "base64 SPKI DER": b64(key.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)),
        "PEM": key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo),
    }
    return priv_raw, pub_raw, privates, publics


def test_every_x25519_encoding_loads_the_same_raw_key() -> None:
    priv_raw, pub_raw, privates, publics = x25519_encodings()
    for name, value in privates.items():
        assert load_x25519_private(value) == priv_raw, name
    for name, value in publics.items():
        assert load_x25519_public(value) == pub_raw, name


def test_x25519_loaders_refuse_signing_keys() -> None:
    with pytest.raises(KeyFormatError, match="this is an Ed25519 signing public key, not an X25519"):
        load_x25519_public(public_encodings()["base64 SPKI DER"])
    with pytest.raises(KeyFormatError, match="PKCS#8 holds key type Ed25519, not X25519"):
        load_x25519_private(signing_encodings()["base64 PKCS#8 DER"])
    with pytest.raises(KeyFormatError, match="encryption private key: got 64 bytes"):
        load_x25519_private(EXAMPLE_PRIVATE_64)


# --------------------------------------------------------------------------- generation


def test_generated_key_pairs_are_usable_raw_base64() -> None:
    pairs = generate_key_pairs()
    assert isinstance(pairs, KeyPairs)
    signing = load_signing_key(pairs.signing_private_key)
    assert len(base64.b64decode(pairs.signing_private_key)) == 64
    assert raw_public_b64(signing) == pairs.signing_public_key
    message = b"(created): 1\n(expires): 2\ndigest: BLAKE-512=x"
    load_verify_key(pairs.signing_public_key).verify(signing.sign(message))
    enc_priv = load_x25519_private(pairs.encryption_private_key)
    assert bytes(NaclX25519PrivateKey(enc_priv).public_key) == base64.b64decode(pairs.encryption_public_key)
    assert json.loads(json.dumps(pairs.to_json())) == {
        "signing_private_key": pairs.signing_private_key,
        "signing_public_key": pairs.signing_public_key,
        "encryption_private_key": pairs.encryption_private_key,
        "encryption_public_key": pairs.encryption_public_key,
    }
    assert generate_key_pairs() != pairs
