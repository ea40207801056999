"""The public leaf of a logged protocol message, and the private sidecar that opens it.

A leaf is RFC 8785 (JCS) canonical JSON, so anyone can re-derive its bytes, and its RFC 9162
hash, from the same fields:

    {"v":1,"dir":"in","action":"on_confirm","node":"bap.example.mq","peer":"bpp.example.mq",
     "txn":"<transaction_id>","msg":"<message_id>","ctx_ts":"2026-05-01T10:00:00.123Z",
     "seen":"2026-05-01T10:00:00.180Z","ack":"ACK","code":null,
     "body":"sha256:<hex SHA-256(salt || raw body)>",
     "auth":"sha256:<hex SHA-256(salt || JCS of the signature headers)>",
     "prev":"<hex leaf hash of this node's previous entry of the same transaction, or null>"}

Privacy (research note audit-log.md §4.3): the leaf holds ids, the action, the direction, the
subscriber ids of both nodes, two timestamps, the ACK/NACK and error code, and salted
commitments; never a body, a header or anything a person typed. The 32-byte random salt lives
only in the sidecar, so a low-entropy body (a short order) cannot be brute-forced from its
commitment, and erasing the sidecar crypto-shreds the entry while the tree stays intact.

Ids come from peers, and a malformed message is logged too (its NACK is evidence): an id, peer
or action that is not a plain token (say, a name or a phone number in `message_id`) is not copied
into the leaf but replaced by its salted commitment, `sha256:<hex SHA-256(salt || utf-8 value)>`.
`context.timestamp` is normalised to UTC RFC 3339 (null if it does not parse), for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785

__all__ = [
    "LEAF_VERSION",
    "SALT_SIZE",
    "SIGNATURE_HEADERS",
    "LogRecord",
    "SidecarMismatch",
    "build_leaf",
    "check_sidecar",
    "commit",
    "leaf_fields",
    "signature_headers",
]

LEAF_VERSION = 1
SALT_SIZE = 32
# The BECKN-006 signature headers, lower-cased: what the `auth` commitment covers.
SIGNATURE_HEADERS = ("authorization", "x-gateway-authorization")

# UUIDs, subscriber ids (domain names, URLs' hosts) and action names all fit; free text does not.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
_ACTION = re.compile(r"[a-z][a-z_]{0,63}")
_CODE = re.compile(r"[A-Za-z0-9._:-]{1,32}")


class SidecarMismatch(ValueError):
    """A sidecar's bytes do not open the commitments of its leaf."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One protocol message a node sent or received, as the log takes it.

    `node` is this node's subscriber id; `peer` the counterparty's (the verified signer of an
    inbound message, the receiver of an outbound one; None when unknown, e.g. an unsigned request).
    `body` is the raw HTTP body exactly as on the wire; of `headers` only the signature headers are
    kept. `ack` is "ACK", "NACK" or None (no Beckn answer: a transport error or a timeout), and
    `error_code` the BECKN error code or HTTP status that came with it.
    """

    direction: Literal["in", "out"]
    action: str
    node: str
    peer: str | None
    transaction_id: str
    message_id: str
    body: bytes
    seen_at: datetime
    headers: Mapping[str, str] = field(default_factory=dict)
    context_timestamp: str | None = None
    ack: Literal["ACK", "NACK"] | None = None
    error_code: str | None = None
    response: bytes | None = None

    def __post_init__(self) -> None:
        # Our own code fills these; a wrong value is a bug to surface, not peer input to tolerate.
        if self.direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {self.direction!r}")
        if self.ack not in ("ACK", "NACK", None):
            raise ValueError(f"ack must be 'ACK', 'NACK' or None, not {self.ack!r}")
        if self.error_code is not None and not _CODE.fullmatch(self.error_code):
            raise ValueError(f"error code {self.error_code!r} is not a short token")
        if self.seen_at.tzinfo is None or self.seen_at.utcoffset() is None:
            raise ValueError("seen_at must be an aware datetime")
        if not isinstance(self.body, (bytes, bytearray)):
            raise TypeError("body must be the raw bytes")


def commit(salt: bytes, data: bytes) -> str:
    """The salted commitment `sha256:<hex SHA-256(salt || data)>`."""
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes")
    return "sha256:" + hashlib.sha256(salt + data).hexdigest()


def signature_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The signature headers present in `headers`, keyed by lower-cased name."""
    wanted = {name: None for name in SIGNATURE_HEADERS}
    return {name.lower(): value for name, value in headers.items() if name.lower() in wanted}


def _auth_bytes(sig_headers: Mapping[str, str]) -> bytes:
    # JCS of the lower-cased signature headers that were present ({} when unsigned): one canonical
    # byte string, whatever the header order or case on the wire.
    return rfc8785.dumps(dict(sig_headers))


def _token(value: str | None, salt: bytes, pattern: re.Pattern[str] = _TOKEN) -> str | None:
    if value is None:
        return None
    if pattern.fullmatch(value):
        return value
    return commit(salt, value.encode("utf-8", "surrogatepass"))


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _context_time(value: str | None) -> str | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return _rfc3339(parsed)


def leaf_fields(record: LogRecord, *, salt: bytes, prev: bytes | None) -> dict[str, Any]:
    """The leaf as a dict (before canonicalisation)."""
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes")
    if prev is not None and len(prev) != 32:
        raise ValueError("prev must be a 32-byte leaf hash")
    return {
        "v": LEAF_VERSION,
        "dir": record.direction,
        "action": _token(record.action, salt, _ACTION),
        "node": _token(record.node, salt),
        "peer": _token(record.peer, salt),
        "txn": _token(record.transaction_id, salt),
        "msg": _token(record.message_id, salt),
        "ctx_ts": _context_time(record.context_timestamp),
        "seen": _rfc3339(record.seen_at),
        "ack": record.ack,
        "code": record.error_code,
        "body": commit(salt, bytes(record.body)),
        "auth": commit(salt, _auth_bytes(signature_headers(record.headers))),
        "prev": prev.hex() if prev is not None else None,
    }


def build_leaf(record: LogRecord, *, salt: bytes, prev: bytes | None) -> bytes:
    """The public leaf's JCS bytes (what the Merkle tree hashes, as `leaf_hash(bytes)`)."""
    return rfc8785.dumps(leaf_fields(record, salt=salt, prev=prev))


def check_sidecar(leaf: bytes, *, body: bytes, headers: Mapping[str, str], salt: bytes) -> None:
    """Check that a sidecar opens its leaf: the body and auth commitments recompute.

    What an auditor does with an exported sidecar before trusting its bytes as the logged message.
    Raises SidecarMismatch.
    """
    fields = json.loads(leaf)
    if fields.get("body") != commit(salt, bytes(body)):
        raise SidecarMismatch("the body does not match the leaf's commitment")
    if fields.get("auth") != commit(salt, _auth_bytes(signature_headers(headers))):
        raise SidecarMismatch("the signature headers do not match the leaf's commitment")
