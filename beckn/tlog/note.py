"""C2SP signed notes, checkpoints and Ed25519 cosignatures.

Specs implemented (github.com/C2SP/C2SP):

* ``signed-note`` (c2sp.org/signed-note@v1.0.0): UTF-8 text ending in a newline, a blank line, then
  one or more lines ``— <key name> base64(key ID ‖ signature)``. Key ID =
  ``SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]``; type 0x01 = Ed25519 over the note text. Verifier
  keys ("vkeys") are ``<name>+<hex key ID>+base64(type ‖ public key)`` (golang.org/x/mod/sumdb/note).
* ``tlog-checkpoint`` (c2sp.org/tlog-checkpoint@v1.0.0): the note text ``origin\\nsize\\nbase64(root)\\n``
  plus optional, non-empty extension lines.
* ``tlog-cosignature`` (c2sp.org/tlog-cosignature), Ed25519 form only: type 0x04, message
  ``"cosignature/v1\\ntime <t>\\n" ‖ checkpoint text``, signature = u64 big-endian t ‖ 64-byte Ed25519.
  (The ML-DSA-44 0x06 form can be added beside it: verifiers ignore signature types they don't know.)
* ``tlog-proof`` (c2sp.org/tlog-proof@v1): the offline receipt (index, inclusion proof, checkpoint).

Why hand-written: no general-purpose Python C2SP note library with known provenance exists
(research audit-log.md §2.2); sigstore's parser is tied to Rekor keyrings. The Ed25519 itself comes
from ``cryptography``; this module is only the text format around it.

Parsing rules follow the spec and golang.org/x/mod/sumdb/note (the reference verifier): a note is
rejected (NoteError, never another exception) if it is not valid UTF-8, holds a control character
other than newline, lacks the blank line, has a malformed signature line, carries more than
MAX_SIGNATURES lines, has a signature from a known key that fails, or has no signature from a known
key. Signatures from unknown keys are ignored, which is what lets witnesses cosign and keys rotate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .merkle import HASH_SIZE

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Checkpoint",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "Signature",
    "TLOG_PROOF_HEADER",
    "TlogProof",
    "append_signatures",
    "checkpoint_text",
    "cosign",
    "cosigned_message",
    "format_tlog_proof",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "parse_tlog_proof",
    "sign_note",
    "verify_cosignature",
    "verify_tlog_proof",
]

ED25519 = 0x01  # signed-note §Signature types: Ed25519 over the note text
COSIGNATURE_V1 = 0x04  # tlog-cosignature: timestamped Ed25519 witness cosignature

# signed-note: verifiers SHOULD cap the number of signatures but MUST accept at least 16. 100 is
# golang.org/x/mod/sumdb/note's cap; it bounds the work an attacker can make us do per note.
MAX_SIGNATURES = 100
# tlog-cosignature: the timestamp "MUST NOT exceed 2^63 - 1".
MAX_TIMESTAMP = 2**63 - 1

# Bounds the work per note before any parsing: 100 post-quantum signature lines (~5 kB each)
# still fit; a checkpoint is ~100 bytes.
MAX_NOTE_SIZE = 1 << 20

_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
_SIG_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE
_COSIG_HEADER = "cosignature/v1\n"


class NoteError(ValueError):
    """A note, checkpoint, signature or key is malformed or does not verify."""


@dataclass(frozen=True)
class Signature:
    """One parsed signature line: key name, 4-byte key ID and the signature bytes after the ID."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, without its newline."""
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}"


def _check_name(name: str) -> None:
    # signed-note §Format: key names are non-empty with no Unicode spaces and no "+". str.split()
    # splits on exactly the Unicode whitespace set, so a name survives it intact iff it has none.
    if not isinstance(name, str) or not name or "+" in name or name.split() != [name]:
        raise NoteError(f"invalid key name {name!r}")
    _check_chars(name)


def _check_chars(s: str) -> None:
    # signed-note §Format: valid UTF-8 (no lone surrogates in a str) and no ASCII control
    # characters other than newline.
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError("not valid UTF-8") from None
    bad = _CONTROL.search(s)
    if bad:
        raise NoteError(f"control character U+{ord(bad.group()):04X} in note")


def _check_text(text: str) -> None:
    """A note text: valid characters, ends in a newline (signed-note §Format)."""
    if not isinstance(text, str):
        raise NoteError("note text must be str")
    _check_chars(text)
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """signed-note §Signatures: SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _b64decode(s: str) -> bytes:
    # Strict standard base64 (RFC 4648 §4, padded): validate=True rejects URL-safe characters,
    # whitespace and junk instead of skipping them, so two different texts never decode to the same
    # signature.
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("invalid base64") from None
    # RFC 4648 §3.5: non-zero pad bits would let one signature have several spellings; we only
    # produce canonical base64, and line-equality dedup (append_signatures) relies on it.
    if base64.b64encode(raw).decode() != s:
        raise NoteError("non-canonical base64")
    return raw


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def cosigned_message(text: str, timestamp: int) -> bytes:
    """tlog-cosignature §Ed25519 signed message: ``cosignature/v1\\ntime <t>\\n`` ‖ checkpoint text."""
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp out of range: {timestamp!r}")
    return f"{_COSIG_HEADER}time {timestamp}\n{text}".encode()


class NoteSigner:
    """An Ed25519 note signer (signed-note type 0x01) that can also cosign (tlog-cosignature 0x04).

    The two uses get different key IDs (the type byte is hashed in) and different signed messages
    (the cosignature/v1 header), so one key can serve both without a signature of one kind passing
    as the other. A witness operator running several cosigners must still give each its own key:
    cosignature/v1 does not commit to the cosigner's name.
    """

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = key
        self.public_key: bytes = _raw_public(key.public_key())
        self.key_id: bytes = key_id(name, ED25519, self.public_key)
        self.cosigner_key_id: bytes = key_id(name, COSIGNATURE_V1, self.public_key)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        """A signer from a 32-byte RFC 8032 private key (seed)."""
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def vkey(self) -> str:
        """The verifier key for log signatures: ``name+<key ID hex>+base64(0x01 ‖ public key)``."""
        return _vkey(self.name, ED25519, self.public_key)

    @property
    def cosigner_vkey(self) -> str:
        """The verifier key for this key's cosignatures (type 0x04)."""
        return _vkey(self.name, COSIGNATURE_V1, self.public_key)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, ED25519, self.public_key)

    def cosigner_verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, COSIGNATURE_V1, self.public_key)

    def sign(self, text: str) -> str:
        """The signature line (no trailing newline) for a note text (Ed25519 over its UTF-8 bytes)."""
        _check_text(text)
        sig = self._key.sign(text.encode())
        return Signature(self.name, self.key_id, sig).line()

    def cosign(self, text: str, timestamp: int) -> str:
        """The tlog-cosignature/v1 signature line (no trailing newline) over a checkpoint text."""
        _check_text(text)
        sig = self._key.sign(cosigned_message(text, timestamp))
        return Signature(self.name, self.cosigner_key_id, struct.pack(">Q", timestamp) + sig).line()

    def __repr__(self) -> str:  # never show the private key
        return f"NoteSigner({self.vkey!r})"


def _vkey(name: str, sig_type: int, public_key: bytes) -> str:
    kid = key_id(name, sig_type, public_key)
    return f"{name}+{kid.hex()}+{base64.b64encode(bytes([sig_type]) + public_key).decode()}"


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted key: name, signature type (0x01 note signature or 0x04 cosignature) and the raw
    32-byte Ed25519 public key. ``key_id`` is derived, as signed-note recommends and
    tlog-cosignature requires."""

    name: str
    sig_type: int
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type not in (ED25519, COSIGNATURE_V1):
            raise NoteError(f"unsupported signature type 0x{self.sig_type:02x}")
        if len(self.public_key) != 32:
            raise NoteError("Ed25519 public keys are 32 bytes")
        object.__setattr__(self, "key_id", key_id(self.name, self.sig_type, self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<8 hex key ID>+base64(type ‖ key)``; the ID must match the key."""
        # Split at the first two "+" only, as golang.org/x/mod/sumdb/note does: the base64 key
        # may itself contain "+" (names may not).
        parts = vkey.split("+", 2) if isinstance(vkey, str) else []
        if len(parts) != 3:
            raise NoteError("a vkey is name+keyid+key")
        name, kid_hex, key_b64 = parts
        if not re.fullmatch(r"[0-9a-f]{8}", kid_hex):
            raise NoteError("vkey key ID must be 8 lowercase hex digits")
        raw = _b64decode(key_b64)
        if len(raw) != 33:
            raise NoteError("vkey must hold a type byte and a 32-byte Ed25519 key")
        v = cls(name, raw[0], raw[1:])
        if v.key_id.hex() != kid_hex:
            raise NoteError("vkey key ID does not match its key")
        return v

    @property
    def vkey(self) -> str:
        return _vkey(self.name, self.sig_type, self.public_key)

    def verify(self, text: str, signature: bytes) -> bool:
        """Check ``signature`` (the bytes after the key ID) over the note ``text``.

        For a cosigner (0x04) the signature starts with the 8-byte timestamp, and the signed
        message is the cosignature/v1 form of the text.
        """
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
            if self.sig_type == ED25519:
                if len(signature) != 64:
                    return False
                key.verify(signature, text.encode())
            else:
                if len(signature) != 8 + 64:
                    return False
                (ts,) = struct.unpack(">Q", signature[:8])
                key.verify(signature[8:], cosigned_message(text, ts))
        except (InvalidSignature, NoteError, ValueError):
            return False
        return True


def parse_note(note: str | bytes) -> tuple[str, list[Signature]]:
    """Split a signed note into its text and signature lines, checking the format only.

    No signature is verified here; use open_note. Raises NoteError on any malformation.
    """
    if isinstance(note, (bytes, bytearray)):
        if len(note) > MAX_NOTE_SIZE:
            raise NoteError(f"note longer than {MAX_NOTE_SIZE} bytes")
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("note is not valid UTF-8") from None
    if not isinstance(note, str):
        raise NoteError("note must be str or bytes")
    if len(note) > MAX_NOTE_SIZE:
        raise NoteError(f"note longer than {MAX_NOTE_SIZE} characters")
    _check_chars(note)
    # The text is separated from the signatures by the *last* blank line: the text itself may
    # contain blank lines, a signature line never does.
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("signature block missing or not newline-terminated")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures")
    sigs: list[Signature] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("signature line must start with an em dash and a space")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not b64:
            raise NoteError("signature line must be '— <name> <base64>'")
        _check_name(name)
        raw = _b64decode(b64)
        if len(raw) < 5:
            raise NoteError("signature too short")
        sigs.append(Signature(name, raw[:4], raw[4:]))
    return text, sigs


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> tuple[str, list[str]]:
    """Verify a signed note against trusted keys; return its text and the names of the keys whose
    signatures verified, in note order.

    signed-note §Signatures: signatures from unknown keys (name *and* ID must both match) are
    ignored; a known key's signature that fails rejects the whole note (the spec's SHOULD, taken
    as a MUST here: a forged line next to a good one is an attack, not noise); a repeated line from
    the same key counts once; no verified signature rejects the note.
    """
    text, sigs = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in sigs:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            continue
        if not v.verify(text, sig.signature):
            raise NoteError(f"invalid signature by {sig.name}")
        if (sig.name, sig.key_id) in seen:
            continue
        seen.add((sig.name, sig.key_id))
        verified.append(sig.name)
    if not verified:
        raise NoteError("no signature from a known key")
    return text, verified


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """A signed note: the text, a blank line, one Ed25519 signature line per signer."""
    if not signers:
        raise NoteError("a note needs at least one signer")
    _check_text(text)
    return text + "\n" + "".join(s.sign(text) + "\n" for s in signers)


def append_signatures(note: str, lines: Sequence[str]) -> str:
    """Add signature lines (e.g. witness cosignatures) to a signed note, skipping exact repeats.

    The note and each line are format-checked; nothing is verified.
    """
    _, existing = parse_note(note)
    have = {s.line() for s in existing}
    out = note
    for line in lines:
        _, (sig,) = parse_note("x\n\n" + line + "\n")  # format check of the line alone
        if sig.line() not in have:
            have.add(sig.line())
            out += sig.line() + "\n"
    parse_note(out)  # still under MAX_SIGNATURES
    return out


# --- tlog-checkpoint --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """tlog-checkpoint §Note text: origin, tree size, RFC 6962 root hash, optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def checkpoint_text(cp: Checkpoint) -> str:
    """The note text of a checkpoint; validated so that we never sign something we can't parse."""
    text = (
        f"{cp.origin}\n{cp.size}\n{base64.b64encode(cp.root_hash).decode()}\n"
        + "".join(e + "\n" for e in cp.extensions)
    )
    if parse_checkpoint(text) != cp:
        raise NoteError("checkpoint does not round-trip")  # pragma: no cover - parse raises first
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text (tlog-checkpoint §Note text). Raises NoteError."""
    _check_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has at least three lines")
    origin, size_s, root_s, *ext = lines
    if not origin:
        raise NoteError("empty checkpoint origin")
    # ASCII decimal, no leading zeroes (except "0"); int() alone would also take "+1", " 1", "١".
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size_s) or int(size_s) >= 2**64:
        raise NoteError("invalid checkpoint tree size")
    root = _b64decode(root_s)
    if len(root) != HASH_SIZE:
        raise NoteError("checkpoint root must be the base64 of 32 bytes")
    if any(not e for e in ext):
        raise NoteError("checkpoint extension lines must be non-empty")
    return Checkpoint(origin, int(size_s), root, tuple(ext))


def open_checkpoint(
    note: str | bytes, log: NoteVerifier, *, origin: str | None = None
) -> tuple[Checkpoint, str, list[str]]:
    """Verify a signed checkpoint: the log's own signature must be there and valid.

    ``origin`` defaults to the log key's name (tlog-checkpoint: the key name SHOULD match the
    origin line). Other signatures are ignored here; check witnesses with verify_cosignature or
    open_note. Returns (checkpoint, text, names verified).
    """
    text, names = open_note(note, [log])
    cp = parse_checkpoint(text)
    if cp.origin != (origin if origin is not None else log.name):
        raise NoteError(f"checkpoint origin {cp.origin!r} is not the expected one")
    return cp, text, names


# --- tlog-cosignature ---------------------------------------------------------------------------


def cosign(text: str, signer: NoteSigner, timestamp: int) -> str:
    """A witness's cosignature/v1 line (no newline) over a checkpoint text, at POSIX ``timestamp``.

    The text is parsed first: a witness signs checkpoints, never arbitrary notes.
    """
    parse_checkpoint(text)
    return signer.cosign(text, timestamp)


def verify_cosignature(note: str | bytes, witness: NoteVerifier) -> int:
    """Find and verify ``witness``'s cosignature on a signed checkpoint; return its timestamp.

    The log's own signature is not checked here (use open_checkpoint for that). Raises NoteError if
    the witness did not cosign or its cosignature is invalid.
    """
    if witness.sig_type != COSIGNATURE_V1:
        raise NoteError("not a cosignature/v1 verifier key")
    text, sigs = parse_note(note)
    parse_checkpoint(text)
    for sig in sigs:
        if (sig.name, sig.key_id) == (witness.name, witness.key_id):
            if not witness.verify(text, sig.signature):
                raise NoteError(f"invalid cosignature by {witness.name}")
            return int(struct.unpack(">Q", sig.signature[:8])[0])
    raise NoteError(f"no cosignature by {witness.name}")


# --- tlog-proof ---------------------------------------------------------------------------------

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class TlogProof:
    """C2SP tlog-proof (c2sp.org/tlog-proof@v1): an offline receipt that entry ``index`` is in the
    tree of a (cosigned) checkpoint. ``extra`` is opaque and unauthenticated by the spec."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed checkpoint note, verbatim
    extra: bytes | None = None


def format_tlog_proof(p: TlogProof) -> str:
    """tlog-proof §Format: header, optional ``extra``, ``index N``, proof hashes, blank line, note."""
    parse_note(p.checkpoint)
    if p.index < 0 or any(len(h) != HASH_SIZE for h in p.proof):
        raise NoteError("bad index or proof hash")
    lines = [TLOG_PROOF_HEADER]
    if p.extra is not None:
        if not p.extra:
            raise NoteError("extra data must be non-empty when present")
        lines.append("extra " + base64.b64encode(p.extra).decode())
    lines.append(f"index {p.index}")
    lines += [base64.b64encode(h).decode() for h in p.proof]
    return "\n".join(lines) + "\n\n" + p.checkpoint


def parse_tlog_proof(text: str | bytes) -> TlogProof:
    """Parse a tlog-proof; checks the format of every part (signatures are not verified here)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("tlog-proof is not valid UTF-8") from None
    if not isinstance(text, str):
        raise NoteError("tlog-proof must be str or bytes")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise NoteError("tlog-proof has no blank line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise NoteError(f"tlog-proof must start with {TLOG_PROOF_HEADER}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = _b64decode(rest.pop(0)[len("extra ") :])
    if not rest or not re.fullmatch(r"index (0|[1-9][0-9]{0,19})", rest[0]):
        raise NoteError("tlog-proof needs an 'index N' line")
    index = int(rest.pop(0)[len("index ") :])
    proof = tuple(_b64decode(line) for line in rest)
    if any(len(h) != HASH_SIZE for h in proof):
        raise NoteError("tlog-proof hashes must be 32 bytes")
    parse_note(note)
    return TlogProof(index, proof, note, extra)


def verify_tlog_proof(
    text: str | bytes,
    leaf: bytes,
    log: NoteVerifier,
    *,
    origin: str | None = None,
    witnesses: Sequence[NoteVerifier] = (),
    quorum: int = 0,
) -> tuple[Checkpoint, TlogProof]:
    """Verify a tlog-proof offline for the leaf hash ``leaf``: the log's signature on the checkpoint,
    at least ``quorum`` valid cosignatures from ``witnesses``, and the inclusion proof (RFC 9162)."""
    from .merkle import ProofError, verify_inclusion  # local: keep the note layer importable alone

    p = parse_tlog_proof(text)
    cp, _, _ = open_checkpoint(p.checkpoint, log, origin=origin)
    cosigned = 0
    for w in witnesses:
        try:
            verify_cosignature(p.checkpoint, w)
        except NoteError:
            continue
        cosigned += 1
    if cosigned < quorum:
        raise NoteError(f"{cosigned} witness cosignatures, {quorum} required")
    try:
        verify_inclusion(leaf, p.index, cp.size, p.proof, cp.root_hash)
    except ProofError as e:
        raise NoteError(f"inclusion proof: {e}") from None
    return cp, p
