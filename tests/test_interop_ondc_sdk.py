"""Interop with ondc-crypto-sdk-nodejs 2.1.1, a real peer run under Node (tests/interop/*.js).

What its source (node_modules/ondc-crypto-sdk-nodejs/lib/utility/index.js) does:
- `body` is a string; it hashes `sodium.from_string(body)`, the UTF-8 encoding of that string
  (no JSON.stringify in 2.1.1). tests/interop/read-body.js decodes the body file strictly and
  checks the round trip, so the SDK hashes exactly the file's bytes, as Lakou does.
- The private key must be the 64-byte libsodium form (`crypto_sign_detached`); a 32-byte seed
  throws. This is why Lakou's `KeyPairs.signing_private_key` is the 64-byte form.
- `isHeaderValid` checks only Ed25519 over the rebuilt signing string: it ignores
  created/expires and the algorithm fields, so time and algorithm checks are Lakou's alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from beckn.keys import generate_key_pairs, load_signing_key, load_verify_key
from beckn.signing import (
    SignatureError,
    Signer,
    body_digest,
    check_signature_times,
    parse_signature_header,
    verify_signature,
)

pytestmark = pytest.mark.node

INTEROP = Path(__file__).resolve().parent / "interop"
SDK_DIR = INTEROP / "node_modules" / "ondc-crypto-sdk-nodejs"

# BECKN-006 worked example (digest §5.6): the same vector test_signing.py checks in Python.
from tests.test_signing import (  # noqa: E402
    EXAMPLE_BODY,
    EXAMPLE_HEADER,
    EXAMPLE_PRIVATE,
    EXAMPLE_PUBLIC,
    EXAMPLE_UKID,
)


def _compact(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _nested(depth: int) -> object:
    node: object = {"code": "leaf", "value": "Sainte-Anne (97229) – plage des Salines ☀"}
    for level in range(depth):
        node = {"level": level, "list": [node, level, None, True]} if level % 2 else {"tag": [node]}
    return node


SEARCH = {
    "context": {
        "domain": "retail", "action": "search", "version": "1.1.0",
        "bap_id": "bap.lakou.mq", "bap_uri": "https://bap.lakou.mq/beckn",
        "location": {"country": {"code": "MTQ"}, "city": {"code": "97209"}},
        "transaction_id": "6f3c2a1e-8b7d-4e2f-9a10-5c4d3b2a1f00",
        "message_id": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
        "timestamp": "2025-06-01T10:00:00.000Z", "ttl": "PT30S",
    },
    "message": {"intent": {"item": {"descriptor": {"name": "ananas"}}}},
}

BODIES: dict[str, bytes] = {
    "ascii search": _compact(SEARCH),
    "french accents": _compact(
        {"descriptor": {"name": "Crème brûlée à la vanille", "short_desc": "Pâtisserie près du marché, "
                        "ouverte l'été à Fort-de-France; œufs frais, façon grand-mère"}}
    ),
    "creole": _compact(
        {"descriptor": {"name": "Bokit ek lanmori", "long_desc": "Sé pou manjé asou plas-la. Mèsi anpil, "
                        "an ka vini dèmen bonnè! Lanmè-a bèl jodi-a."}}
    ),
    "emoji and flag": _compact({"descriptor": {"name": "🍍 Ananas Bouteille 🥥🌴🇲🇶", "code": "𝄞"}}),
    "escaped \\u00e9": b'{"name":"caf\\u00e9 cr\\u00e8me"}',
    "raw é": '{"name":"café crème"}'.encode(),
    "escaped surrogate pair": b'{"name":"\\ud83c\\udf4d ananas"}',
    "deeply nested": _compact(_nested(120)),
    "pretty CRLF trailing newline": json.dumps(SEARCH, indent="\t", ensure_ascii=False)
    .replace("\n", "\r\n")
    .encode()
    + b"\r\n",
    "UTF-8 BOM": b"\xef\xbb\xbf" + _compact(SEARCH),
}


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js (`node`) is not installed; install it and run `make test`")
    if not SDK_DIR.is_dir():
        pytest.fail(
            "tests/interop/node_modules is missing: run `make test` "
            "(it runs `npm ci` in tests/interop first)"
        )
    return exe


@pytest.fixture(scope="module")
def keys():
    return generate_key_pairs()


def sdk_sign(node: str, body_file: Path, private_key: str, subscriber_id: str, ukid: str,
             created: int, expires: int) -> str:
    out = subprocess.run(
        [node, "sign.js", str(body_file), private_key, subscriber_id, ukid, str(created), str(expires)],
        cwd=INTEROP, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def sdk_verify(node: str, body_file: Path, public_key: str, header: str) -> bool:
    out = subprocess.run(
        [node, "verify.js", str(body_file), public_key, header],
        cwd=INTEROP, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("true", "false"), out.stdout
    return out.stdout.strip() == "true"


def lakou_verify(header: str, body: bytes, public_key: str, *, now: float | None = None) -> None:
    params = parse_signature_header(header)
    check_signature_times(params, now=time.time() if now is None else now)
    verify_signature(params, load_verify_key(public_key), digest_b64=body_digest(body))


def write(tmp_path: Path, body: bytes, name: str = "body") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


# --------------------------------------------------------------------------- published example


def test_sdk_reproduces_the_published_header(node: str, tmp_path: Path) -> None:
    header = sdk_sign(node, write(tmp_path, EXAMPLE_BODY), EXAMPLE_PRIVATE, "example-bap.com",
                      EXAMPLE_UKID, 1641287875, 1641291475)
    assert header == EXAMPLE_HEADER
    signer = Signer("example-bap.com", EXAMPLE_UKID, load_signing_key(EXAMPLE_PRIVATE))
    assert signer.sign(EXAMPLE_BODY, created=1641287875, expires=1641291475) == header


# --------------------------------------------------------------------------- both directions


@pytest.mark.parametrize("name", list(BODIES))
def test_sdk_signs_lakou_verifies(node: str, keys, tmp_path: Path, name: str) -> None:
    body = BODIES[name]
    created = int(time.time())
    header = sdk_sign(node, write(tmp_path, body), keys.signing_private_key, "bpp.lakou.mq",
                      "k-2025", created, created + 3600)
    lakou_verify(header, body, keys.signing_public_key)
    assert parse_signature_header(header).key_id == "bpp.lakou.mq|k-2025|ed25519"


@pytest.mark.parametrize("name", list(BODIES))
def test_lakou_signs_sdk_verifies(node: str, keys, tmp_path: Path, name: str) -> None:
    body = BODIES[name]
    header = Signer("bap.lakou.mq", "k-2025", load_signing_key(keys.signing_private_key)).sign(body)
    assert sdk_verify(node, write(tmp_path, body), keys.signing_public_key, header) is True


def test_escaped_and_raw_unicode_are_distinct_on_both_sides(node: str, keys, tmp_path: Path) -> None:
    escaped, raw = BODIES["escaped \\u00e9"], BODIES["raw é"]
    escaped_file, raw_file = write(tmp_path, escaped, "escaped"), write(tmp_path, raw, "raw")
    lakou_header = Signer("bap.lakou.mq", "k1", load_signing_key(keys.signing_private_key)).sign(raw)
    assert sdk_verify(node, raw_file, keys.signing_public_key, lakou_header) is True
    assert sdk_verify(node, escaped_file, keys.signing_public_key, lakou_header) is False
    created = int(time.time())
    sdk_header = sdk_sign(node, escaped_file, keys.signing_private_key, "bpp.lakou.mq", "k1",
                          created, created + 3600)
    lakou_verify(sdk_header, escaped, keys.signing_public_key)
    with pytest.raises(SignatureError, match="body differs from the bytes the signer hashed"):
        lakou_verify(sdk_header, raw, keys.signing_public_key)


# --------------------------------------------------------------------------- negatives


def test_tampered_body_is_rejected_by_both(node: str, keys, tmp_path: Path) -> None:
    body = BODIES["french accents"]
    tampered = body.replace("Crème".encode(), b"Creme")
    assert tampered != body
    body_file, tampered_file = write(tmp_path, body, "body"), write(tmp_path, tampered, "tampered")

    created = int(time.time())
    sdk_header = sdk_sign(node, body_file, keys.signing_private_key, "bpp.lakou.mq", "k1",
                          created, created + 3600)
    with pytest.raises(SignatureError, match="body differs from the bytes the signer hashed"):
        lakou_verify(sdk_header, tampered, keys.signing_public_key)

    lakou_header = Signer("bap.lakou.mq", "k1", load_signing_key(keys.signing_private_key)).sign(body)
    assert sdk_verify(node, tampered_file, keys.signing_public_key, lakou_header) is False


def test_wrong_key_is_rejected_by_both(node: str, keys, tmp_path: Path) -> None:
    body = BODIES["creole"]
    body_file = write(tmp_path, body)
    other = generate_key_pairs()
    lakou_header = Signer("bap.lakou.mq", "k1", load_signing_key(other.signing_private_key)).sign(body)
    assert sdk_verify(node, body_file, keys.signing_public_key, lakou_header) is False
    created = int(time.time())
    sdk_header = sdk_sign(node, body_file, other.signing_private_key, "bpp.lakou.mq", "k1",
                          created, created + 3600)
    with pytest.raises(SignatureError, match="signature does not verify for bpp.lakou.mq"):
        lakou_verify(sdk_header, body, keys.signing_public_key)


def test_expired_sdk_signature_is_refused_by_lakou(node: str, keys, tmp_path: Path) -> None:
    # The SDK itself would accept it (isHeaderValid ignores times): Lakou must not.
    body = BODIES["ascii search"]
    body_file = write(tmp_path, body)
    header = sdk_sign(node, body_file, keys.signing_private_key, "bpp.lakou.mq", "k1",
                      1700000000, 1700003600)
    assert sdk_verify(node, body_file, keys.signing_public_key, header) is True
    with pytest.raises(SignatureError, match=r"signature expired at 1700003600 \(now \d+\)"):
        lakou_verify(header, body, keys.signing_public_key)

