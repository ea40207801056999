"""Log receipts: the receiver's signed promise, in the ACK, that it logged the sender's message.

Research note audit-log.md §4.6 (a CT SCT / Rekor SET in spirit). The receiver's log key signs,
as a C2SP signed note, a statement with a fixed first line so it can never pass for a checkpoint
(a checkpoint's second line is a decimal size; here it is the origin):

    lakou.dev/tlog-receipt/v1
    <origin>                     the receiver's log origin, e.g. "bpp.example.mq/tlog"
    <index>                      the leaf index in that log
    <base64 leaf hash>           RFC 9162 leaf hash of the entry
    <base64 SHA-256(raw body)>   the body the receiver logged, so the sender can check at once
    <unix seconds>               when the receiver logged it

The header `X-Lakou-Log-Receipt` carries base64url (no padding) of the whole signed note. The
sender checks it against the receiver's log vkey (from the registry or `GET /tlog/vkey`) and keeps
it; later, an inclusion proof of (index, leaf hash) against a signed checkpoint turns the promise
into proof, and a receiver that cannot produce one has broken a signed promise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from beckn.tlog.note import NoteSigner, NoteVerifier, open_note, sign_note

__all__ = ["RECEIPT_HEADER", "RECEIPT_TYPE", "Receipt", "ReceiptError", "make_receipt", "verify_receipt"]

RECEIPT_HEADER = "X-Lakou-Log-Receipt"
RECEIPT_TYPE = "lakou.dev/tlog-receipt/v1"
# A receipt is ~250 bytes; anything far bigger is not one (and bounds work on peer input).
_MAX_HEADER = 4096
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class ReceiptError(ValueError):
    """A receipt is malformed, signed by another key, or says something other than expected."""


@dataclass(frozen=True, slots=True)
class Receipt:
    origin: str
    index: int
    leaf_hash: bytes
    body_sha256: bytes
    timestamp: int

    def text(self) -> str:
        b64 = base64.b64encode
        return (f"{RECEIPT_TYPE}\n{self.origin}\n{self.index}\n{b64(self.leaf_hash).decode()}\n"
                f"{b64(self.body_sha256).decode()}\n{self.timestamp}\n")


def make_receipt(signer: NoteSigner, *, origin: str, index: int, leaf_hash: bytes, body: bytes,
                 timestamp: int) -> str:
    """The header value: base64url of the signed note (the log key's name should be the origin)."""
    receipt = Receipt(origin, index, leaf_hash, hashlib.sha256(body).digest(), timestamp)
    note = sign_note(receipt.text(), [signer])
    return base64.urlsafe_b64encode(note.encode()).decode().rstrip("=")


def _parse(text: str) -> Receipt:
    lines = text[:-1].split("\n") if text.endswith("\n") else []
    if len(lines) != 6 or lines[0] != RECEIPT_TYPE:
        raise ReceiptError(f"not a {RECEIPT_TYPE} statement")
    _, origin, index_s, leaf_s, body_s, time_s = lines
    if not origin or not _DECIMAL.fullmatch(index_s) or not _DECIMAL.fullmatch(time_s):
        raise ReceiptError("malformed receipt origin, index or time")
    try:
        leaf_hash = base64.b64decode(leaf_s, validate=True)
        body_hash = base64.b64decode(body_s, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError("receipt hashes are not base64") from None
    if len(leaf_hash) != 32 or len(body_hash) != 32:
        raise ReceiptError("receipt hashes must be 32 bytes")
    return Receipt(origin, int(index_s), leaf_hash, body_hash, int(time_s))


def verify_receipt(value: str, log_key: NoteVerifier | str, *, origin: str | None = None,
                   body: bytes | None = None) -> Receipt:
    """Check a receipt header against the receiver's log vkey; return what it promises.

    `origin` defaults to the key's name. With `body`, the receipt must be for exactly these bytes.
    Raises ReceiptError.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_HEADER:
        raise ReceiptError("receipt missing or too long")
    try:
        verifier = NoteVerifier.from_vkey(log_key) if isinstance(log_key, str) else log_key
        note = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        text, _ = open_note(note, [verifier])
    except (binascii.Error, ValueError) as exc:  # NoteError is a ValueError
        raise ReceiptError(f"receipt does not verify: {exc}") from None
    receipt = _parse(text)
    if receipt.origin != (origin if origin is not None else verifier.name):
        raise ReceiptError(f"receipt origin {receipt.origin!r} is not the expected one")
    if body is not None and hashlib.sha256(body).digest() != receipt.body_sha256:
        raise ReceiptError("receipt is for another body")
    return receipt

