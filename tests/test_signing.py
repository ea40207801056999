"""BECKN-006 signatures: the published worked example byte for byte, parsing, and refusals."""

from __future__ import annotations

import base64
import time

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from beckn.keys import load_signing_key, load_verify_key
from beckn.signing import (
    SIGNED_HEADERS,
    SignatureError,
    SignatureParams,
    Signer,
    authenticate_challenge,
    body_digest,
    build_signature_header,
    check_signature_times,
    parse_signature_header,
    signing_string,
    verify_signature,
)

# BECKN-006 step 1 worked example (digest §5.6): 496 body bytes, no trailing newline.
EXAMPLE_BODY = (
    b'{"context":{"domain":"nic2004:60212","country":"IND","city":"Kochi","action":"search",'
    b'"core_version":"0.9.1","bap_id":"bap.stayhalo.in",'
    b'"bap_uri":"https://8f9f-49-207-209-131.ngrok.io/protocol/",'
    b'"transaction_id":"e6d9f908-1d26-4ff3-a6d1-3af3d3721054",'
    b'"message_id":"a2fe6d52-9fe4-4d1a-9d0b-dccb8b48522d","timestamp":"2022-01-04T09:17:55.971Z",'
    b'"ttl":"P1M"},"message":{"intent":{"fulfillment":{"start":{"location":'
    b'{"gps":"10.108768, 76.347517"}},"end":{"location":{"gps":"10.102997, 76.353480"}}}}}}'
)
EXAMPLE_PUBLIC = "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk="
EXAMPLE_PRIVATE = (
    "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ=="
)
EXAMPLE_DIGEST = "b6lf6lRgOweajukcvcLsagQ2T60+85kRh/Rd2bdS+TG/5ALebOEgDJfyCrre/1+BMu5nA94o4DT3pTFXuUg7sw=="
EXAMPLE_CREATED, EXAMPLE_EXPIRES = 1641287875, 1641291475
EXAMPLE_SIGNATURE = "cjbhP0PFyrlSCNszJM1F/YmHDVAWsZqJUPzojnE/7TJU3fJ/rmIlgaUHEr5E0/2PIyf0tpSnWtT6cyNNlpmoAQ=="
EXAMPLE_SUBSCRIBER, EXAMPLE_UKID = "example-bap.com", "ae3ea24b-cfec-495e-81f8-044aaef164ac"
EXAMPLE_HEADER = (
    'Signature keyId="example-bap.com|ae3ea24b-cfec-495e-81f8-044aaef164ac|ed25519",'
    'algorithm="ed25519",created="1641287875",expires="1641291475",'
    'headers="(created) (expires) digest",'
    'signature="cjbhP0PFyrlSCNszJM1F/YmHDVAWsZqJUPzojnE/7TJU3fJ/rmIlgaUHEr5E0/2PIyf0tpSnWtT6cyNNlpmoAQ=="'
)
# Erratum (b) corrected: the BG seed is the first half of the BG key BECKN-006 publishes.
BG_SEED = "hJ5sCmbe7s9Wateq6QAdBGloVSkLuLHWOXcRkzrMcVI="
BG_PUBLIC = "7YRZXVeIJ0/Va56vYgzT1Uirg6mnq3FY0MBZY9DJft0="
BG_CREATED, BG_EXPIRES = 1641287885, 1641291485
BG_SIGNATURE = "kUgvyU+bdXXkNuYKygbv0gkjArHKyF9Eg4pdCyxb+J1bMyQ6n4G1RVSM97qqKmgw04mgOkbhyz5chnD3PP1lDQ=="

NOW = EXAMPLE_CREATED + 60  # a receiver clock at which the example header is fresh


def example_signer() -> Signer:
    return Signer(EXAMPLE_SUBSCRIBER, EXAMPLE_UKID, load_signing_key(EXAMPLE_PRIVATE))


def reason_of(fn, *args, **kwargs) -> str:
    with pytest.raises(SignatureError) as info:
        fn(*args, **kwargs)
    return info.value.reason


def full_verify(header: str, body: bytes, public: str = EXAMPLE_PUBLIC, now: float = NOW) -> SignatureParams:
    params = parse_signature_header(header)
    check_signature_times(params, now=now)
    verify_signature(params, load_verify_key(public), digest_b64=body_digest(body))
    return params


# --------------------------------------------------------------------------- published vectors


def test_blake2b_512_sanity_vector() -> None:
    assert body_digest(b"The quick brown fox jumps over the lazy dog") == (
        "qK3Uvd39k+SHfSdG5igXsRY2Sh+nvBSNlQkLxzM7NnP4JAHPeqLkyx7NkCluPxTLVBP47Xe+cwRbE5FM3NapGA=="
    )


def test_worked_example_digest_and_signing_string_bytes() -> None:
    assert len(EXAMPLE_BODY) == 496
    assert body_digest(EXAMPLE_BODY) == EXAMPLE_DIGEST
    assert signing_string(EXAMPLE_CREATED, EXAMPLE_EXPIRES, EXAMPLE_DIGEST) == (
        b"(created): 1641287875\n(expires): 1641291475\ndigest: BLAKE-512=" + EXAMPLE_DIGEST.encode()
    )


def test_worked_example_signature_and_header_byte_for_byte() -> None:
    header = example_signer().sign(EXAMPLE_BODY, created=EXAMPLE_CREATED, expires=EXAMPLE_EXPIRES)
    assert header == EXAMPLE_HEADER
    assert parse_signature_header(header).signature == base64.b64decode(EXAMPLE_SIGNATURE)


def test_worked_example_published_header_verifies() -> None:
    params = full_verify(EXAMPLE_HEADER, EXAMPLE_BODY)
    assert (params.subscriber_id, params.unique_key_id) == (EXAMPLE_SUBSCRIBER, EXAMPLE_UKID)
    assert params.key_id == f"{EXAMPLE_SUBSCRIBER}|{EXAMPLE_UKID}|ed25519"
    assert build_signature_header(params) == EXAMPLE_HEADER


def test_corrected_gateway_signature_from_erratum_b() -> None:
    bg = Signer("example-bg.com", "dfb974ea-9113-4089-9a2d-77552b50624e", load_signing_key(BG_SEED))
    header = bg.sign(EXAMPLE_BODY, created=BG_CREATED, expires=BG_EXPIRES)
    params = parse_signature_header(header)
    assert base64.b64encode(params.signature).decode() == BG_SIGNATURE
    verify_signature(params, load_verify_key(BG_PUBLIC), digest_b64=EXAMPLE_DIGEST)


def test_signing_string_form_without_spaces_does_not_verify() -> None:
    # Erratum (e): ONDC's prose drops the space after each colon; the real signature disagrees.
    params = parse_signature_header(EXAMPLE_HEADER)
    unspaced = f"(created):{EXAMPLE_CREATED}\n(expires):{EXAMPLE_EXPIRES}\ndigest:BLAKE-512={EXAMPLE_DIGEST}"
    with pytest.raises(BadSignatureError):
        load_verify_key(EXAMPLE_PUBLIC).verify(unspaced.encode(), params.signature)


# --------------------------------------------------------------------------- round trips


def test_sign_defaults_to_now_and_one_hour() -> None:
    before = int(time.time())
    params = parse_signature_header(example_signer().sign(b"{}"))
    after = int(time.time())
    assert before <= params.created <= after
    assert params.expires == params.created + 3600
    check_signature_times(params, now=time.time())


def test_sign_with_precomputed_digest_equals_hashing_the_body() -> None:
    signer = example_signer()
    body = b'{"message":{"intent":{"item":{"descriptor":{"name":"accras de morue"}}}}}'
    direct = signer.sign(body, created=1700000000, expires=1700003600)
    reused = signer.sign(b"", created=1700000000, expires=1700003600, digest_b64=body_digest(body))
    assert direct == reused


def test_one_digest_checks_authorization_and_gateway_headers() -> None:
    bap = example_signer()
    bg = Signer("example-bg.com", "bg-key-1", load_signing_key(BG_SEED))
    digest = body_digest(EXAMPLE_BODY)
    for header, public in (
        (bap.sign(EXAMPLE_BODY, created=NOW), EXAMPLE_PUBLIC),
        (bg.sign(EXAMPLE_BODY, created=NOW), BG_PUBLIC),
    ):
        params = parse_signature_header(header)
        check_signature_times(params, now=NOW)
        verify_signature(params, load_verify_key(public), digest_b64=digest)


def test_escaped_and_raw_unicode_are_different_bodies() -> None:
    signer = example_signer()
    escaped = b'{"name":"caf\\u00e9"}'
    raw = '{"name":"café"}'.encode()
    assert body_digest(escaped) != body_digest(raw)
    header = signer.sign(raw, created=NOW)
    full_verify(header, raw)
    assert "body differs" in reason_of(full_verify, header, escaped)


# --------------------------------------------------------------------------- tolerant parsing


@pytest.mark.parametrize(
    "variant",
    [
        EXAMPLE_HEADER.replace('",', '", '),  # spaces after commas (BECKN-006 BG example)
        EXAMPLE_HEADER.replace("(created) (expires) digest", "(created)(expires)digest"),  # ONDC doc
        EXAMPLE_HEADER.replace("keyId=", "KEYID=").replace("algorithm=", "Algorithm="),
        EXAMPLE_HEADER.replace('created="1641287875"', "created=1641287875"),  # draft-cavage style
        '"' + EXAMPLE_HEADER + '"',  # ONDC cryptic_utils' stray outer quotes
        "  " + EXAMPLE_HEADER + "  ",
        "signature " + EXAMPLE_HEADER.removeprefix("Signature "),
        EXAMPLE_HEADER.replace(',headers="(created) (expires) digest"', ""),  # headers omitted
        EXAMPLE_HEADER + ',extension="ignored"',
    ],
)
def test_tolerant_parsing_accepts_peer_spellings(variant: str) -> None:
    assert parse_signature_header(variant) == parse_signature_header(EXAMPLE_HEADER)
    full_verify(variant, EXAMPLE_BODY)


def test_built_header_has_no_space_after_commas() -> None:
    header = example_signer().sign(EXAMPLE_BODY)
    assert ", " not in header
    assert f'headers="{SIGNED_HEADERS}"' in header


# --------------------------------------------------------------------------- refusals


def test_tampered_body_is_refused() -> None:
    tampered = EXAMPLE_BODY.replace(b"Kochi", b"Kochj")
    reason = reason_of(full_verify, EXAMPLE_HEADER, tampered)
    assert "body differs from the bytes the signer hashed" in reason
    assert "sign the exact bytes you send" in reason


def test_wrong_key_is_refused() -> None:
    other = base64.b64encode(SigningKey.generate().verify_key.encode()).decode()
    reason = reason_of(full_verify, EXAMPLE_HEADER, EXAMPLE_BODY, public=other)
    assert f"signature does not verify for {EXAMPLE_SUBSCRIBER}|{EXAMPLE_UKID}|ed25519" in reason


def test_digest_header_tells_tampered_body_from_wrong_key() -> None:
    params = parse_signature_header(EXAMPLE_HEADER)
    sent = "BLAKE-512=" + EXAMPLE_DIGEST
    tampered = body_digest(EXAMPLE_BODY + b" ")
    reason = reason_of(
        verify_signature, params, load_verify_key(EXAMPLE_PUBLIC), digest_b64=tampered, digest_header=sent
    )
    assert reason.startswith("digest mismatch: the body was changed after signing")
    assert "no re-serialisation" in reason
    reason = reason_of(
        verify_signature, params, load_verify_key(BG_PUBLIC), digest_b64=EXAMPLE_DIGEST, digest_header=sent
    )
    assert reason.startswith("signature does not verify with the public key registered for example-bap.com|")
    assert "another private key" in reason


def test_expired_signature_is_refused() -> None:
    params = parse_signature_header(EXAMPLE_HEADER)
    check_signature_times(params, now=EXAMPLE_EXPIRES)  # the last valid second
    assert reason_of(check_signature_times, params, now=1641300000) == (
        "signature expired at 1641291475 (now 1641300000)"
    )


def test_created_in_the_future_beyond_skew_is_refused_within_skew_accepted() -> None:
    params = parse_signature_header(EXAMPLE_HEADER)
    check_signature_times(params, now=EXAMPLE_CREATED - 5, skew_seconds=5)
    reason = reason_of(check_signature_times, params, now=EXAMPLE_CREATED - 6, skew_seconds=5)
    assert reason.startswith("signature created in the future: created=1641287875, now=1641287869")
    assert "skew 5s" in reason
    check_signature_times(params, now=EXAMPLE_CREATED - 60, skew_seconds=60)


def test_expires_equal_to_created_is_parsed_but_valid_for_that_second_only() -> None:
    header = example_signer().sign(EXAMPLE_BODY, created=BG_CREATED, expires=BG_CREATED)
    params = parse_signature_header(header)
    check_signature_times(params, now=BG_CREATED)
    assert "expired" in reason_of(check_signature_times, params, now=BG_CREATED + 1)


def test_expires_before_created_is_malformed() -> None:
    header = EXAMPLE_HEADER.replace('expires="1641291475"', 'expires="1641287874"')
    assert reason_of(parse_signature_header, header) == "expires (1641287874) is before created (1641287875)"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            EXAMPLE_HEADER.replace("|ed25519", "|rsa-sha256"),
            "keyId algorithm 'rsa-sha256' differs from algorithm parameter 'ed25519'",
        ),
        (
            EXAMPLE_HEADER.replace('algorithm="ed25519"', 'algorithm="rsa"'),
            "keyId algorithm 'ed25519' differs from algorithm parameter 'rsa'",
        ),
        (
            EXAMPLE_HEADER.replace('algorithm="ed25519"', 'algorithm="rsa"').replace("|ed25519", "|rsa"),
            "unsupported signature algorithm 'rsa': only 'ed25519' is accepted",
        ),
        (
            EXAMPLE_HEADER.replace("example-bap.com|", ""),
            "keyId must be 'subscriber_id|unique_key_id|ed25519', got "
            "'ae3ea24b-cfec-495e-81f8-044aaef164ac|ed25519'",
        ),
        (
            EXAMPLE_HEADER.replace(EXAMPLE_UKID, ""),
            "keyId must be 'subscriber_id|unique_key_id|ed25519', got 'example-bap.com||ed25519'",
        ),
        (
            EXAMPLE_HEADER.replace("|ed25519", "|ed25519|extra"),
            "keyId must be 'subscriber_id|unique_key_id|ed25519', got "
            "'example-bap.com|ae3ea24b-cfec-495e-81f8-044aaef164ac|ed25519|extra'",
        ),
        (
            EXAMPLE_HEADER.replace('created="1641287875"', 'created="1641287875.5"'),
            "created must be an integer Unix timestamp in seconds, got '1641287875.5'",
        ),
        (
            EXAMPLE_HEADER.replace('expires="1641291475"', 'expires="soon"'),
            "expires must be an integer Unix timestamp in seconds, got 'soon'",
        ),
        (
            EXAMPLE_HEADER.replace(',algorithm="ed25519"', "").replace(',expires="1641291475"', ""),
            "signature header lacks required parameter(s): algorithm, expires "
            "(need keyId, algorithm, created, expires, signature)",
        ),
        (
            EXAMPLE_HEADER.replace('keyId="example-bap.com|ae3ea24b-cfec-495e-81f8-044aaef164ac|ed25519",', ""),
            "signature header lacks required parameter(s): keyId "
            "(need keyId, algorithm, created, expires, signature)",
        ),
        (
            EXAMPLE_HEADER.replace("(created) (expires) digest", "(created) (expires)"),
            "headers must list exactly \"(created) (expires) digest\" in that order, got '(created) (expires)'",
        ),
        (
            EXAMPLE_HEADER.replace("(created) (expires) digest", "(created) (expires) digest host"),
            "headers must list exactly \"(created) (expires) digest\" in that order, "
            "got '(created) (expires) digest host'",
        ),
        (
            EXAMPLE_HEADER.replace("Signature ", "Bearer ", 1),
            "authorization scheme must be 'Signature', got 'Bearer'",
        ),
        ("", "empty signature header"),
        (
            EXAMPLE_HEADER + ',signature="x"',
            "duplicate signature parameter 'signature'",
        ),
        (
            EXAMPLE_HEADER + " trailing",
            "unexpected text after parameter 'signature': 'trailing' (parameters are separated by commas)",
        ),
    ],
)
def test_malformed_headers_are_refused_with_specific_reasons(header: str, expected: str) -> None:
    assert reason_of(parse_signature_header, header) == expected


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ("not base64!", "signature is not standard padded base64"),
        (EXAMPLE_SIGNATURE.replace("+", "-").replace("/", "_"), "signature is not standard padded base64"),
        (EXAMPLE_SIGNATURE.rstrip("="), "signature is not standard padded base64"),
        (base64.b64encode(bytes(63)).decode(), "signature must be 64 bytes (an Ed25519 signature), got 63 bytes"),
        (base64.b64encode(bytes(65)).decode(), "signature must be 64 bytes (an Ed25519 signature), got 65 bytes"),
        ("", "signature must be 64 bytes (an Ed25519 signature), got 0 bytes"),
    ],
)
def test_bad_signature_values_are_refused(signature: str, expected: str) -> None:
    header = EXAMPLE_HEADER.replace(EXAMPLE_SIGNATURE, signature)
    assert reason_of(parse_signature_header, header).startswith(expected)


# --------------------------------------------------------------------------- signer and 401


@pytest.mark.parametrize("subscriber_id", ["", "a|b", 'a"b', "a,b", "a b"])
def test_signer_refuses_ids_that_would_corrupt_key_id(subscriber_id: str) -> None:
    with pytest.raises(ValueError, match="subscriber_id must be non-empty"):
        Signer(subscriber_id, "k1", load_signing_key(EXAMPLE_PRIVATE))


def test_authenticate_challenges() -> None:
    assert authenticate_challenge("example-bg.com", gateway=False) == (
        "WWW-Authenticate",
        'Signature realm="example-bg.com",headers="(created) (expires) digest"',
    )
    assert authenticate_challenge("example-bpp.com", gateway=True) == (
        "Proxy-Authenticate",
        'Signature realm="example-bpp.com",headers="(created) (expires) digest"',
    )
