"""Wallet keys: generation/import, encryption at rest (Argon2id + SecretBox), pairwise DIDs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwcrypto import jwk, jws

from did.keys import (
    DEFAULT_ARGON2,
    Argon2Params,
    KeyError_,
    TamperedBlob,
    WrongPassphrase,
    decrypt_private_key,
    decrypt_secret,
    ed25519_from_seed,
    encrypt_private_key,
    encrypt_secret,
    generate_key,
    import_key,
    jws_alg,
)
from did.methods import resolve, verification_key
from did.pairwise import new_master_secret, pairwise_did, pairwise_key

# Lowered for speed, passed explicitly: the defaults are never lowered.
FAST = Argon2Params(time_cost=1, memory_kib=8 * 1024, parallelism=1)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ------------------------------------------------------------------ keys


def test_generate_and_alg() -> None:
    ed, p256 = generate_key(), generate_key("P-256")
    assert (ed.get("kty"), ed.get("crv"), jws_alg(ed)) == ("OKP", "Ed25519", "EdDSA")
    assert (p256.get("kty"), p256.get("crv"), jws_alg(p256)) == ("EC", "P-256", "ES256")
    assert ed.has_private and p256.has_private
    assert generate_key().thumbprint() != ed.thumbprint()
    with pytest.raises(KeyError_, match="unsupported key kind"):
        generate_key("RSA")


def test_ed25519_from_seed_rfc8032_vector() -> None:
    """RFC 8032 section 7.1, TEST 1: secret key → public key."""
    key = ed25519_from_seed(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert base64.urlsafe_b64decode(key.get("x") + "=").hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    with pytest.raises(KeyError_, match="32 bytes"):
        ed25519_from_seed(b"short")


def test_import_jwk_and_pem() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())
    imported = import_key(pem)
    assert imported.thumbprint() == jwk.JWK.from_pyca(ed).thumbprint() and imported.has_private
    p256 = ec.generate_private_key(ec.SECP256R1())
    encrypted_pem = p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pw"))
    assert import_key(encrypted_pem, password=b"pw").get("crv") == "P-256"
    public_pem = p256.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not import_key(public_pem).has_private
    as_json = generate_key().export_private()
    assert import_key(as_json).export_private() == as_json
    assert import_key(json.loads(as_json)).export_private() == as_json


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (jwk.JWK.generate(kty="EC", crv="P-384").export_private(), "unsupported key type EC/P-384"),
        (jwk.JWK.generate(kty="oct", size=256).export(), "unsupported key type oct"),
        ("not a key", "cannot import key"),
        (b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", "cannot import key"),
        (42, "expected a JWK or PEM"),
    ],
    ids=["p384-jwk", "oct-jwk", "text", "garbage-pem", "int"],  # the same in every xdist worker
)
def test_import_refuses_bad_or_unsupported_keys(data, message: str) -> None:
    with pytest.raises(KeyError_, match=message):
        import_key(data)


# ------------------------------------------------------------------ encryption at rest


def test_default_argon2_parameters_are_rfc9106() -> None:
    """RFC 9106 §4 second recommended option; written into the blob so they can evolve."""
    assert DEFAULT_ARGON2 == Argon2Params(time_cost=3, memory_kib=65536, parallelism=4)
    blob = encrypt_secret(b"wallet master secret", "correct horse")  # defaults: ~0.2 s
    header = json.loads(blob)
    assert (header["kdf"], header["t"], header["m"], header["p"]) == ("argon2id", 3, 65536, 4)
    assert (header["fmt"], header["v"], header["enc"]) == ("lakou-secretbox", 1, "xsalsa20-poly1305")
    assert len(base64.urlsafe_b64decode(header["salt"] + "==")) == 16
    assert len(base64.urlsafe_b64decode(header["nonce"] + "==")) == 24
    assert b"wallet master secret" not in blob.encode()
    assert decrypt_secret(blob, "correct horse") == b"wallet master secret"


def test_round_trip_and_randomised() -> None:
    secret = new_master_secret()
    a, b = encrypt_secret(secret, "pässphrase", params=FAST), encrypt_secret(secret, "pässphrase", params=FAST)
    assert a != b  # fresh salt and nonce each time
    assert decrypt_secret(a, "pässphrase") == decrypt_secret(b.encode(), "pässphrase".encode()) == secret
    with pytest.raises(ValueError, match="must not be empty"):
        encrypt_secret(secret, "", params=FAST)


def test_private_key_round_trip() -> None:
    for kind in ("Ed25519", "P-256"):
        key = generate_key(kind)
        blob = encrypt_private_key(key, "s3cret", params=FAST)
        assert key.get("d") not in blob
        back = decrypt_private_key(blob, "s3cret")
        assert back.export_private() == key.export_private()
    with pytest.raises(KeyError_, match="not a private key"):
        encrypt_private_key(jwk.JWK(**generate_key().export_public(as_dict=True)), "s3cret", params=FAST)


def test_wrong_passphrase_is_a_clear_error() -> None:
    blob = encrypt_secret(b"x" * 32, "right", params=FAST)
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        decrypt_secret(blob, "wrong")
    with pytest.raises(WrongPassphrase):
        decrypt_private_key(encrypt_private_key(generate_key(), "right", params=FAST), "Right")


def _tamper(blob: str, field: str, value) -> str:
    data = json.loads(blob)
    data[field] = value
    return json.dumps(data)


def _flip(text: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw[0] ^= 1
    return _b64u(bytes(raw))


def test_tampering_is_detected() -> None:
    blob = encrypt_secret(b"x" * 32, "pw", params=FAST)
    data = json.loads(blob)
    # The ciphertext: the passphrase is right (check passes) but Poly1305 fails.
    with pytest.raises(TamperedBlob, match="altered or corrupted"):
        decrypt_secret(_tamper(blob, "ct", _flip(data["ct"])), "pw")
    with pytest.raises(TamperedBlob, match="altered or corrupted"):
        decrypt_secret(_tamper(blob, "ct", data["ct"][:-4]), "pw")
    # The header (salt, nonce, parameters): detected, and reported with the wrong passphrase
    # because the two cannot be told apart.
    for field, value in [("salt", _flip(data["salt"])), ("nonce", _flip(data["nonce"])), ("t", 2)]:
        with pytest.raises(WrongPassphrase, match="header was altered"):
            decrypt_secret(_tamper(blob, field, value), "pw")
    # Structure and version.
    for bad, message in [
        ("{not json", "invalid JSON"),
        (json.dumps({"fmt": "other"}), "not a Lakou encrypted blob"),
        (_tamper(blob, "v", 2), "unsupported encrypted blob version"),
        (_tamper(blob, "kdf", "scrypt"), "unsupported KDF"),
        (_tamper(blob, "m", 4 * 1024 * 1024), "memory out of bounds"),  # no 4 GiB allocation
        (_tamper(blob, "t", "x"), "invalid Argon2id parameters"),
        (_tamper(blob, "nonce", "AAAA"), "wrong size"),
        (_tamper(blob, "salt", 5), "not a string"),
    ]:
        with pytest.raises(TamperedBlob, match=message):
            decrypt_secret(bad, "pw")


# ------------------------------------------------------------------ pairwise DIDs


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, to pin our derivation independently of `cryptography`."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_pairwise_derivation_is_pinned() -> None:
    """A restored backup must give the same DIDs forever: the derivation is fixed by this test."""
    master = bytes(range(32))
    verifier = "bpp.lakou.mq"
    label = b"lakou/did/pairwise/v1"
    info = label + len(verifier).to_bytes(4, "big") + verifier.encode() + (0).to_bytes(4, "big")
    seed = _hkdf_sha256(master, label, info, 32)
    expected = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    ident = pairwise_key(master, verifier)
    assert ident.key.get("x") == jwk.JWK.from_pyca(expected.public_key()).get("x")
    assert ident.did == pairwise_did(master, verifier)
    assert ident.kid == f"{ident.did}#{ident.did.removeprefix('did:key:')}"


def test_pairwise_properties() -> None:
    master = new_master_secret()
    a1, a2 = pairwise_key(master, "bpp.alpha.mq"), pairwise_key(master, "bpp.alpha.mq")
    b = pairwise_key(master, "bpp.beta.mq")
    assert a1.did == a2.did and a1.key.export_private() == a2.key.export_private()  # stable
    assert a1.did != b.did and a1.key.get("d") != b.key.get("d")  # one DID per verifier
    assert pairwise_did(new_master_secret(), "bpp.alpha.mq") != a1.did  # per wallet
    rotated = pairwise_key(master, "bpp.alpha.mq", rotation=1)
    assert rotated.did not in (a1.did, b.did)
    # Length-prefixing: ids that would collide if concatenated naively do not.
    assert pairwise_did(master, "ab") != pairwise_did(master, "a") != pairwise_did(master, "b")
    # NFC normalisation: "é" composed and decomposed are the same verifier.
    assert pairwise_did(master, "caf\u00e9.mq") == pairwise_did(master, "cafe\u0301.mq")
    # Case is significant (Beckn subscriber ids are compared as strings).
    assert pairwise_did(master, "BPP.alpha.mq") != a1.did


def test_pairwise_key_signs_for_its_did() -> None:
    ident = pairwise_key(new_master_secret(), "bpp.alpha.mq")
    assert resolve(ident.did)["authentication"] == [ident.kid]
    token = jws.JWS(b"presentation")
    token.add_signature(ident.key, "EdDSA", protected={"alg": "EdDSA", "kid": ident.kid})
    checked = jws.JWS()
    checked.deserialize(token.serialize(compact=True))
    checked.verify(verification_key(ident.kid, purpose="authentication"))


@pytest.mark.parametrize(
    ("master", "verifier", "rotation", "message"),
    [
        (b"short", "bpp", 0, "at least 32"),
        (bytes(32), "", 0, "non-empty"),
        (bytes(32), "   ", 0, "non-empty"),
        (bytes(32), "x" * 2000, 0, "longer than"),
        (bytes(32), "bpp", -1, "rotation"),
    ],
)
def test_pairwise_bad_input(master: bytes, verifier: str, rotation: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pairwise_key(master, verifier, rotation=rotation)
