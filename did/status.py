"""W3C Bitstring Status List v1.0 (https://www.w3.org/TR/vc-bitstring-status-list/).

A status list credential (``BitstringStatusListCredential``) publishes one bit per issued credential;
a credential points at its bit with a ``BitstringStatusListEntry`` in ``credentialStatus``.

* ``encodedList`` = multibase base64url, no padding (prefix ``u``), of the GZIP-compressed
  (RFC 1952) bitstring (spec §2.2 "BitstringStatusListCredential" and §3.3 "Bitstring Generation
  Algorithm").
* Index 0 is the left-most bit: the most significant bit of the first byte (§3.3/§3.4).
* The bitstring is at least 16 KB, i.e. 131,072 entries, for group privacy (§2.2, §6.1).
* ``statusListIndex`` is a string holding a non-negative integer (§2.1).

Hand-written: there is no maintained Python package for it, and the format is a gzip'd byte array.
Only ``statusSize`` 1 (one bit per credential, the default) is implemented.
"""

from __future__ import annotations

import base64
import copy
import gzip
import zlib
from typing import Any

from did.vc import VC_V2_CONTEXT, VCError, _contexts

MIN_ENTRIES = 131_072  # 16 KB of bits (spec minimum)
# Refuse to inflate more than this (decompression-bomb guard), 16 MB like the ssi crate.
MAX_DECODED_BYTES = 16 * 1024 * 1024

STATUS_PURPOSES = ("revocation", "suspension", "refresh", "message")


class StatusListError(VCError):
    """A status list or status entry is malformed (spec STATUS_VERIFICATION_ERROR / MALFORMED_VALUE_ERROR)."""


class BitstringStatusList:
    """A mutable bitstring; ``encode()``/``decode()`` give the spec's ``encodedList``."""

    def __init__(self, size: int = MIN_ENTRIES, *, _bits: bytearray | None = None) -> None:
        if _bits is None:
            if size < MIN_ENTRIES or size % 8:
                raise StatusListError(f"a status list needs at least {MIN_ENTRIES} entries, a multiple of 8")
            _bits = bytearray(size // 8)
        self._bits = _bits

    def __len__(self) -> int:
        return len(self._bits) * 8

    def _locate(self, index: int) -> tuple[int, int]:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self):
            raise StatusListError(f"status index {index!r} is outside the list (0..{len(self) - 1})")
        return index // 8, 0x80 >> (index % 8)

    def get(self, index: int) -> bool:
        byte, mask = self._locate(index)
        return bool(self._bits[byte] & mask)

    def set(self, index: int, value: bool = True) -> None:
        byte, mask = self._locate(index)
        if value:
            self._bits[byte] |= mask
        else:
            self._bits[byte] &= ~mask & 0xFF

    def clear(self, index: int) -> None:
        self.set(index, False)

    def encode(self) -> str:
        # mtime=0 so the same bits always give the same encodedList.
        compressed = gzip.compress(bytes(self._bits), mtime=0)
        return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode()

    @classmethod
    def decode(cls, encoded_list: Any) -> "BitstringStatusList":
        if not isinstance(encoded_list, str) or not encoded_list.startswith("u"):
            raise StatusListError("encodedList must be multibase base64url (start with 'u')")
        body = encoded_list[1:]
        try:
            compressed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError) as exc:
            raise StatusListError("encodedList is not valid base64url") from exc
        try:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip container only
            bits = inflater.decompress(compressed, MAX_DECODED_BYTES + 1)
        except zlib.error as exc:
            raise StatusListError("encodedList is not GZIP-compressed") from exc
        if len(bits) > MAX_DECODED_BYTES:
            raise StatusListError("encodedList inflates beyond the size limit")
        if len(bits) * 8 < MIN_ENTRIES:
            raise StatusListError(f"the status list is shorter than the {MIN_ENTRIES}-entry minimum")
        return cls(_bits=bytearray(bits))


def status_list_credential(
    list_id: str,
    issuer: str,
    status_list: BitstringStatusList,
    *,
    status_purpose: str = "revocation",
    valid_from: str | None = None,
    valid_until: str | None = None,
) -> dict:
    """An unsigned ``BitstringStatusListCredential`` (spec §2.2); secure it with did.vc.add_proof."""
    if status_purpose not in STATUS_PURPOSES:
        raise StatusListError(f"statusPurpose must be one of {STATUS_PURPOSES}")
    cred: dict[str, Any] = {
        "@context": [VC_V2_CONTEXT],
        "id": list_id,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer,
        "credentialSubject": {
            "id": f"{list_id}#list",
            "type": "BitstringStatusList",
            "statusPurpose": status_purpose,
            "encodedList": status_list.encode(),
        },
    }
    if valid_from:
        cred["validFrom"] = valid_from
    if valid_until:
        cred["validUntil"] = valid_until
    return cred


def status_entry(list_credential_id: str, index: int, *, status_purpose: str = "revocation") -> dict:
    """A ``BitstringStatusListEntry`` for a credential's ``credentialStatus`` (spec §2.1)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise StatusListError("statusListIndex must be a non-negative integer")
    return {
        "id": f"{list_credential_id}#{index}",
        "type": "BitstringStatusListEntry",
        "statusPurpose": status_purpose,
        "statusListIndex": str(index),
        "statusListCredential": list_credential_id,
    }


def parse_entry(entry: Any) -> tuple[str, int, str]:
    """Validate a ``BitstringStatusListEntry``; return (statusListCredential, index, statusPurpose)."""
    if not isinstance(entry, dict) or entry.get("type") != "BitstringStatusListEntry":
        raise StatusListError("credentialStatus must be a BitstringStatusListEntry")
    purpose = entry.get("statusPurpose")
    if purpose not in STATUS_PURPOSES:
        raise StatusListError(f"unsupported statusPurpose {purpose!r}")
    raw = entry.get("statusListIndex")
    if not isinstance(raw, str) or not raw.isdigit():
        raise StatusListError("statusListIndex must be a string holding a non-negative integer")
    if entry.get("statusSize", 1) != 1:
        raise StatusListError("only statusSize 1 is supported")
    url = entry.get("statusListCredential")
    if not isinstance(url, str) or not url:
        raise StatusListError("statusListCredential must be a URL")
    return url, int(raw), purpose


def check_status(entry: dict, list_credential: dict) -> bool:
    """True when the credential's bit is set (revoked/suspended) in an already VERIFIED status list
    credential. Checks the list's type and that its statusPurpose matches the entry's (spec §3.2)."""
    url, index, purpose = parse_entry(entry)
    list_credential = copy.deepcopy(list_credential)
    if "BitstringStatusListCredential" not in _contexts(list_credential.get("type")):
        raise StatusListError("the status list credential is not a BitstringStatusListCredential")
    if list_credential.get("id") not in (None, url):
        raise StatusListError("the status list credential id does not match statusListCredential")
    subject = list_credential.get("credentialSubject")
    if not isinstance(subject, dict) or subject.get("type") != "BitstringStatusList":
        raise StatusListError("the status list credentialSubject must be a BitstringStatusList")
    purposes = subject.get("statusPurpose")
    if purpose not in (purposes if isinstance(purposes, list) else [purposes]):
        raise StatusListError("the status list's statusPurpose does not match the entry's")
    return BitstringStatusList.decode(subject.get("encodedList")).get(index)
