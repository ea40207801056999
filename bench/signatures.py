"""BECKN-006 signature throughput: sign, full header verify, and a bare PyNaCl verify.

The full verify is what a receiver pays per header (parse + BLAKE2b-512 of the body + time check
+ Ed25519); the bare verify in the same run is the floor it is compared with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from nacl.signing import SigningKey

from beckn.signing import (
    Signer,
    body_digest,
    check_signature_times,
    parse_signature_header,
    signing_string,
    verify_signature,
)

_BATCH = 50  # operations between clock reads, so timing overhead stays out of the figures


def typical_body() -> bytes:
    """A ~1 KB compact `on_search` from a Martinique bakery, as a BPP would send it."""
    payload = {
        "context": {
            "domain": "retail", "action": "on_search", "version": "1.1.0",
            "location": {"country": {"code": "MTQ"}, "city": {"code": "97209"}},
            "bap_id": "bap.lakou.mq", "bap_uri": "https://bap.lakou.mq/beckn",
            "bpp_id": "bpp.boulangerie-lamentin.mq", "bpp_uri": "https://bpp.boulangerie-lamentin.mq/beckn",
            "transaction_id": "6f3c2a1e-8b7d-4e2f-9a10-5c4d3b2a1f00",
            "message_id": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
            "timestamp": "2025-06-01T10:00:00.000Z", "ttl": "PT30S",
        },
        "message": {
            "catalog": {
                "descriptor": {"name": "Boulangerie du Lamentin"},
                "providers": [{
                    "id": "boulangerie-lamentin",
                    "descriptor": {"name": "Boulangerie du Lamentin", "short_desc": "Pain au beurre, kassav"},
                    "items": [
                        {"id": f"item-{i}", "descriptor": {"name": name},
                         "price": {"currency": "EUR", "value": price}}
                        for i, (name, price) in enumerate([
                            ("Pain au beurre", "3.50"), ("Kassav coco", "2.00"),
                            ("Tourment d'amour", "2.80"), ("Sorbet coco", "4.00"),
                            ("Chodo", "3.20"), ("Pâté salé", "2.50"),
                        ])
                    ],
                }],
            }
        },
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _rate(op: Callable[[], object], seconds: float) -> float:
    """Operations per second of `op`, run for about `seconds`."""
    op()  # warm up
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(_BATCH):
            op()
        count += _BATCH
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def run(seconds: float = 2.0) -> dict[str, float | int]:
    """Measure for about `seconds` in total, split evenly between the three figures."""
    each = seconds / 3
    body = typical_body()
    key = SigningKey.generate()
    verify_key = key.verify_key
    signer = Signer("bpp.boulangerie-lamentin.mq", "k-2025", key)
    header = signer.sign(body)
    now = time.time()

    def full_verify() -> None:
        params = parse_signature_header(header)
        check_signature_times(params, now=now)
        verify_signature(params, verify_key, digest_b64=body_digest(body))

    params = parse_signature_header(header)
    message = signing_string(params.created, params.expires, body_digest(body))
    signature = params.signature

    return {
        "body_bytes": len(body),
        "sign_per_second": _rate(lambda: signer.sign(body), each),
        "verify_per_second": _rate(full_verify, each),
        "nacl_verify_per_second": _rate(lambda: verify_key.verify(message, signature), each),
    }


def main() -> None:
    figures = run()
    print(f"BECKN-006 signatures, {figures['body_bytes']}-byte body")
    print(f"{'operation':<34}{'per second':>12}{'µs each':>10}")
    for label, name in (
        ("sign (digest + Ed25519 + header)", "sign_per_second"),
        ("verify (parse + digest + Ed25519)", "verify_per_second"),
        ("bare PyNaCl Ed25519 verify", "nacl_verify_per_second"),
    ):
        rate = float(figures[name])
        print(f"{label:<34}{rate:>12,.0f}{1e6 / rate:>10.1f}")
    ratio = float(figures["nacl_verify_per_second"]) / float(figures["verify_per_second"])
    print(f"full verify costs {ratio:.2f}x a bare Ed25519 verify")


if __name__ == "__main__":
    main()
