"""C2SP signed notes, checkpoints, cosignatures and tlog-proofs (beckn/tlog/note.py).

Oracles: the C2SP signed-note spec example; checkpoints signed by Go's golang.org/x/mod/sumdb/note
with the published test seeds (we must reproduce them byte for byte); the spec-derived cosignature and
tlog-proof vectors (../shared/research/tlog-vectors.json, from shared/research/audit-log.md §3). Then the parser's
rejection rules, and a fuzz: whatever the input, the parser answers NoteError, never another exception.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from beckn.tlog.merkle import EMPTY_ROOT, leaf_hash, root
from beckn.tlog.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    TlogProof,
    append_signatures,
    checkpoint_text,
    cosign,
    format_tlog_proof,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_tlog_proof,
    sign_note,
    verify_cosignature,
    verify_tlog_proof,
)
from conftest import TLOG_VECTORS

VECTORS = json.loads(TLOG_VECTORS.read_text())
SIGNED = VECTORS["signed_checkpoints"]
SPEC = SIGNED["c2sp_signed_note_spec_example"]
LOG = NoteSigner.from_seed(SIGNED["log_key"]["name"], bytes.fromhex(SIGNED["log_key"]["ed25519_seed_hex"]))
WITNESS = NoteSigner.from_seed(
    SIGNED["witness_key"]["name"], bytes.fromhex(SIGNED["witness_key"]["ed25519_seed_hex"])
)
LOG_V = NoteVerifier.from_vkey(SIGNED["log_key"]["vkey"])
WITNESS_V = NoteVerifier.from_vkey(SIGNED["witness_key"]["vkey_cosignature_v1"])
LEAF_HASHES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves_hex"]]
FUZZ = settings(max_examples=150, deadline=None, derandomize=True)


def _signer(name: str = "example.com/other", seed: int = 1) -> NoteSigner:
    return NoteSigner.from_seed(name, bytes([seed]) * 32)


# --- published vectors --------------------------------------------------------------------------


def test_spec_example_verifies_with_its_vkey() -> None:
    v = NoteVerifier.from_vkey(SPEC["vkey"])
    assert (v.name, v.sig_type, v.vkey) == ("example.com/foo", ED25519, SPEC["vkey"])
    assert open_note(SPEC["note"], [v]) == ("This is an example message.\n", ["example.com/foo"])
    assert open_note(SPEC["note"].encode(), [v])[1] == ["example.com/foo"]


def test_spec_example_one_letter_change_is_rejected() -> None:
    v = NoteVerifier.from_vkey(SPEC["vkey"])
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(SPEC["note"].replace("example message", "exbmple message"), [v])


def test_test_keys_derive_the_published_vkeys() -> None:
    assert LOG.vkey == SIGNED["log_key"]["vkey"]
    assert WITNESS.cosigner_vkey == SIGNED["witness_key"]["vkey_cosignature_v1"]
    assert LOG.verifier() == LOG_V
    assert WITNESS.cosigner_verifier() == WITNESS_V


@pytest.mark.parametrize("size", [4, 8], ids=lambda n: f"n{n}")
def test_checkpoints_reproduced_byte_for_byte(size: int) -> None:
    """Go's note.Sign output, rebuilt from the RFC 6962 leaves, our Merkle root and the test seed."""
    cp = Checkpoint(SIGNED["log_key"]["name"], size, root(LEAF_HASHES[:size]))
    assert sign_note(checkpoint_text(cp), [LOG]) == SIGNED[f"checkpoint_size_{size}"]
    got, text, names = open_checkpoint(SIGNED[f"checkpoint_size_{size}"], LOG_V)
    assert got == cp and names == [LOG.name] and text == checkpoint_text(cp)


def test_cosigned_checkpoint_reproduced_byte_for_byte() -> None:
    text, _ = parse_note(SIGNED["checkpoint_size_8"])
    line = cosign(text, WITNESS, 1700000000)
    assert append_signatures(SIGNED["checkpoint_size_8"], [line]) == SIGNED["checkpoint_size_8_cosigned"]
    assert verify_cosignature(SIGNED["checkpoint_size_8_cosigned"], WITNESS_V) == 1700000000
    _, names = open_note(SIGNED["checkpoint_size_8_cosigned"], [LOG_V, WITNESS_V])
    assert names == [LOG.name, WITNESS.name]


def test_log_verifier_ignores_the_cosignature_line() -> None:
    # signed-note: unknown keys are ignored, so adding a witness never breaks the log's readers.
    cp, _, names = open_checkpoint(SIGNED["checkpoint_size_8_cosigned"], LOG_V)
    assert cp.size == 8 and names == [LOG.name]


def test_tlog_proof_vector() -> None:
    text = SIGNED["tlog_proof_leaf_5_of_8"]
    p = parse_tlog_proof(text)
    assert p.index == 5 and p.extra is None and p.checkpoint == SIGNED["checkpoint_size_8_cosigned"]
    assert format_tlog_proof(p) == text
    cp, _ = verify_tlog_proof(text, LEAF_HASHES[5], LOG_V, witnesses=[WITNESS_V], quorum=1)
    assert cp.size == 8
    with pytest.raises(NoteError, match="inclusion"):
        verify_tlog_proof(text, LEAF_HASHES[4], LOG_V)
    with pytest.raises(NoteError, match="required"):
        witnesses = [WITNESS_V, _signer().cosigner_verifier()]
        verify_tlog_proof(text, LEAF_HASHES[5], LOG_V, witnesses=witnesses, quorum=2)


# --- signing and opening ------------------------------------------------------------------------


def test_sign_and_open_with_several_signers() -> None:
    a, b = _signer("a.example/log", 2), _signer("b.example/log", 3)
    note = sign_note("hello\n\nworld\n", [a, b])  # blank lines inside the text are allowed
    assert open_note(note, [b.verifier()]) == ("hello\n\nworld\n", ["b.example/log"])
    assert open_note(note, [a.verifier(), b.verifier()])[1] == ["a.example/log", "b.example/log"]


def test_sign_note_refuses_bad_text() -> None:
    for text in ["no newline", "tab\there\n", "cr\r\n", "\ud800\n"]:
        with pytest.raises(NoteError):
            sign_note(text, [LOG])
    with pytest.raises(NoteError):
        sign_note("x\n", [])


def test_unknown_keys_are_ignored_but_alone_are_not_enough() -> None:
    other = _signer()
    note = sign_note("text\n", [other, LOG])
    assert open_note(note, [LOG_V])[1] == [LOG.name]
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, [_signer("example.com/third", 9).verifier()])
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(note, [])


def test_same_name_other_key_is_unknown_not_invalid() -> None:
    # signed-note: a signature that shares a name (but not the ID) with a known key is ignored.
    impostor = NoteSigner.from_seed(LOG.name, b"\x07" * 32)
    note = sign_note("text\n", [impostor, LOG])
    assert open_note(note, [LOG_V])[1] == [LOG.name]


def test_bad_signature_from_a_known_key_rejects_the_note() -> None:
    good = LOG.sign("text\n")
    forged = LOG.sign("other\n")  # right key ID, signature over another text
    note = "text\n\n" + good + "\n" + forged + "\n"
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note, [LOG_V])


def test_repeated_signature_counts_once() -> None:
    note = sign_note("text\n", [LOG, LOG])
    assert open_note(note, [LOG_V])[1] == [LOG.name]


def test_at_least_16_signatures_are_accepted() -> None:
    signers = [_signer(f"w{i}.example", i + 10) for i in range(16)]
    note = sign_note("text\n", [*signers, LOG])
    assert open_note(note, [LOG_V])[1] == [LOG.name]


def test_too_many_signatures_are_rejected() -> None:
    line = _signer().sign("text\n")
    note = "text\n\n" + (line + "\n") * MAX_SIGNATURES + LOG.sign("text\n") + "\n"
    with pytest.raises(NoteError, match="more than"):
        open_note(note, [LOG_V])


def test_cross_type_confusion() -> None:
    """A cosignature can't pass as a note signature, nor the reverse: different key IDs (the type
    byte is hashed in) and different signed messages."""
    text = checkpoint_text(Checkpoint(WITNESS.name, 1, LEAF_HASHES[0]))
    cosig = cosign(text, WITNESS, 5)
    as_note_key = NoteVerifier(WITNESS.name, ED25519, WITNESS.public_key)
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(text + "\n" + cosig + "\n", [as_note_key])
    with pytest.raises(NoteError, match="no cosignature"):
        verify_cosignature(sign_note(text, [WITNESS]), WITNESS_V)
    # Even with the key ID forced to match, the bytes are not a valid signature of the other kind.
    raw = base64.b64decode(cosig.split(" ")[-1])
    relabelled = f"— {WITNESS.name} " + base64.b64encode(WITNESS.key_id + raw[12:]).decode()
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(text + "\n" + relabelled + "\n", [WITNESS.verifier()])


def test_signer_repr_hides_the_private_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
    shown = repr(NoteSigner("k.example", key))
    assert "k.example" in shown and "050505" not in shown and "BQUF" not in shown


# --- vkeys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo+530d903a",  # two parts
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # ID does not match
        "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # uppercase hex
        "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # other name
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",  # bad base64
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv",  # short key
        "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # type 0x02
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # empty name
        "a b+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # space in name
    ],
    ids=["parts", "id-mismatch", "uppercase", "renamed", "base64", "short", "type", "empty-name", "space"],
)
def test_bad_vkeys_are_rejected(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(vkey)


def test_cosigner_vkey_has_type_4() -> None:
    v = NoteVerifier.from_vkey(WITNESS.cosigner_vkey)
    assert v.sig_type == COSIGNATURE_V1 and v.key_id == WITNESS.cosigner_key_id != WITNESS.key_id


# --- malformed notes ----------------------------------------------------------------------------

_GOOD = sign_note("text\n", [LOG])
_B64 = _GOOD.split(" ")[-1].rstrip("\n")


@pytest.mark.parametrize(
    "note",
    [
        "text\n— example.com/beckn-test-log " + _B64 + "\n",  # no blank line
        "text\n\n",  # blank line, no signatures
        "text\n\n— example.com/beckn-test-log " + _B64,  # last line not newline-terminated
        "text\n\n- example.com/beckn-test-log " + _B64 + "\n",  # hyphen, not em dash
        "text\n\n—example.com/beckn-test-log " + _B64 + "\n",  # no space after the dash
        "text\n\n— example.com/beckn-test-log\n",  # no signature
        "text\n\n— example.com/beckn-test-log  " + _B64 + "\n",  # two spaces
        "text\n\n—  " + _B64 + "\n",  # empty name
        "text\n\n— example.com/beckn+log " + _B64 + "\n",  # "+" in name
        "text\n\n— example.com/beckn-test-log " + _B64[:-2] + "\n",  # truncated base64
        "text\n\n— example.com/beckn-test-log " + _B64.replace("=", "") + "\n",  # unpadded
        "text\n\n— example.com/beckn-test-log " + _B64 + " \n",  # trailing space
        "text\n\n— example.com/beckn-test-log AAAA\n",  # 3 bytes: no room for key ID + signature
        "text\n\n— example.com/beckn-test-log 0m4dAw==\n",  # key ID only
        "text\n\n— example.com/beckn-test-log " + _B64.replace("+", "-").replace("/", "_") + "\n",  # URL-safe
        "te\rxt\n\n— example.com/beckn-test-log " + _B64 + "\n",  # control character
        "text\n\n" + _GOOD.split("\n\n")[1] + "\n",  # a blank line after the signatures
        _GOOD.replace("\n\n", "\n\n\n"),  # the signed text gains a blank line: signature fails
        # Malformed lines are fatal even from unknown keys (as in Go's note.Open): a note that
        # doesn't parse is not a note, whoever signed the rest.
        _GOOD + "— example.com/other AAAAAA==\n",  # key ID without a signature
        _GOOD + "— example.com/a\u2003b " + _B64 + "\n",  # Unicode space in the key name
        _GOOD + "— example.com/other " + _B64 + "=\n",  # bad padding
    ],
    ids=[
        "no-blank-line", "no-signatures", "no-final-newline", "hyphen", "no-space", "no-sig",
        "two-spaces", "empty-name", "plus-in-name", "truncated-b64", "unpadded-b64", "trailing-space",
        "too-short", "id-only", "urlsafe-b64", "control-char", "trailing-blank", "extra-blank",
        "unknown-id-only", "unicode-space-name", "unknown-bad-padding",
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [LOG_V])


def test_non_canonical_base64_is_rejected() -> None:
    # Flip the unused pad bits of the last base64 character: same bytes, different text.
    assert _B64.endswith("=") and not _B64.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = _B64[-2]
    twin = alphabet[alphabet.index(last) ^ 1]
    assert base64.b64decode(_B64[:-2] + twin + "=") == base64.b64decode(_B64)
    with pytest.raises(NoteError, match="non-canonical"):
        open_note(_GOOD.replace(_B64, _B64[:-2] + twin + "="), [LOG_V])


def test_oversized_note_is_rejected_before_parsing() -> None:
    huge = "x" * MAX_NOTE_SIZE + "\n\n" + LOG.sign("x" * MAX_NOTE_SIZE + "\n") + "\n"
    with pytest.raises(NoteError, match="longer than"):
        open_note(huge, [LOG_V])
    with pytest.raises(NoteError, match="longer than"):
        open_note(huge.encode(), [LOG_V])


def test_non_utf8_is_rejected() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"caf\xe9\n\n" + _GOOD.split("\n\n")[1].encode(), [LOG_V])
    with pytest.raises(NoteError, match="UTF-8"):
        open_note("\udcff\n\n" + _GOOD.split("\n\n")[1], [LOG_V])


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes_only_raise_note_error(data: bytes) -> None:
    for f in (lambda: open_note(data, [LOG_V]), lambda: parse_tlog_proof(data)):
        try:
            f()
        except NoteError:
            pass


_PIECES = st.sampled_from(
    ["\n", "\n\n", "— ", "—", " ", "+", "=", "/", "example.com/beckn-test-log", _B64, _B64[:8], "AAAA",
     "text", "\t", "\r", "\x00", "\u2003", "é", "\udc80", "index 5", "c2sp.org/tlog-proof@v1", "8"]
)


@FUZZ
@given(st.lists(_PIECES | st.text(max_size=5), max_size=30))
def test_fuzz_structured_text_only_raises_note_error(pieces: list[str]) -> None:
    note = "".join(pieces)
    for f in (
        lambda: open_note(note, [LOG_V]),
        lambda: parse_checkpoint(note),
        lambda: parse_tlog_proof(note),
        lambda: NoteVerifier.from_vkey(note),
    ):
        try:
            f()
        except NoteError:
            pass


@FUZZ
@given(st.integers(0, len(_GOOD) - 1), st.sampled_from(["insert", "delete", "replace"]), st.characters())
def test_fuzz_every_one_character_edit_is_rejected(pos: int, op: str, ch: str) -> None:
    """No single-character edit of a signed note still verifies (canonical base64 makes this hold
    for the signature too)."""
    if op == "insert":
        note = _GOOD[:pos] + ch + _GOOD[pos:]
    elif op == "delete":
        note = _GOOD[:pos] + _GOOD[pos + 1 :]
    else:
        if ch == _GOOD[pos]:
            return
        note = _GOOD[:pos] + ch + _GOOD[pos + 1 :]
    with pytest.raises(NoteError):
        open_note(note, [LOG_V])


# --- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_round_trip_with_extensions_and_size_zero() -> None:
    cp = Checkpoint("example.com/log", 0, EMPTY_ROOT, ("ext one", "ext2"))
    text = checkpoint_text(cp)
    assert text == f"example.com/log\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\next one\next2\n"
    assert parse_checkpoint(text) == cp


_ROOT64 = base64.b64encode(LEAF_HASHES[0]).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"example.com/log\n8\n{_ROOT64}",  # no final newline
        "example.com/log\n8\n",  # two lines
        f"\n8\n{_ROOT64}\n",  # empty origin
        f"example.com/log\n08\n{_ROOT64}\n",  # leading zero
        f"example.com/log\n+8\n{_ROOT64}\n",  # sign
        f"example.com/log\n-1\n{_ROOT64}\n",  # negative
        f"example.com/log\n٨\n{_ROOT64}\n",  # non-ASCII digit
        f"example.com/log\n18446744073709551616\n{_ROOT64}\n",  # 2^64
        f"example.com/log\n8\n{base64.b64encode(b'x' * 31).decode()}\n",  # short root
        f"example.com/log\n8\n{_ROOT64.rstrip('=')}\n",  # unpadded root
        f"example.com/log\n8\n{_ROOT64}\n\n",  # empty extension line
    ],
    ids=["no-newline", "two-lines", "empty-origin", "leading-zero", "sign", "negative", "arabic-digit",
         "too-big", "short-root", "unpadded", "empty-extension"],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_open_checkpoint_checks_the_origin() -> None:
    note = sign_note(checkpoint_text(Checkpoint("example.com/elsewhere", 1, LEAF_HASHES[0])), [LOG])
    with pytest.raises(NoteError, match="origin"):
        open_checkpoint(note, LOG_V)
    assert open_checkpoint(note, LOG_V, origin="example.com/elsewhere")[0].size == 1


def test_open_checkpoint_needs_the_log_signature() -> None:
    text = checkpoint_text(Checkpoint(LOG.name, 1, LEAF_HASHES[0]))
    with pytest.raises(NoteError):
        open_checkpoint(sign_note(text, [_signer()]), LOG_V)


# --- cosignatures -------------------------------------------------------------------------------


def test_cosignature_binds_timestamp_and_checkpoint() -> None:
    note = SIGNED["checkpoint_size_8_cosigned"]
    line = note.rstrip("\n").split("\n")[-1]
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[11] ^= 1  # timestamp's last byte
    moved = note.replace(line, f"— {WITNESS.name} {base64.b64encode(bytes(raw)).decode()}")
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(moved, WITNESS_V)
    other = sign_note(SIGNED["checkpoint_size_8"].split("\n\n")[0].replace("\n8\n", "\n9\n") + "\n", [LOG])
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(append_signatures(other, [line]), WITNESS_V)


def test_cosign_refuses_bad_input() -> None:
    text = checkpoint_text(Checkpoint(LOG.name, 1, LEAF_HASHES[0]))
    with pytest.raises(NoteError):
        cosign(text, WITNESS, 2**63)  # tlog-cosignature: MUST NOT exceed 2^63 - 1
    with pytest.raises(NoteError):
        cosign(text, WITNESS, -1)
    with pytest.raises(NoteError):
        cosign("not a checkpoint\n", WITNESS, 1)
    with pytest.raises(NoteError):
        verify_cosignature(SIGNED["checkpoint_size_8_cosigned"], LOG_V)  # a 0x01 key is no cosigner


def test_append_signatures_skips_repeats() -> None:
    text = checkpoint_text(Checkpoint(LOG.name, 1, LEAF_HASHES[0]))
    line = cosign(text, WITNESS, 7)
    once = append_signatures(sign_note(text, [LOG]), [line])
    assert append_signatures(once, [line]) == once
    with pytest.raises(NoteError):
        append_signatures(once, ["not a signature line"])


# --- tlog-proof ---------------------------------------------------------------------------------


def test_tlog_proof_with_extra_round_trips() -> None:
    rng = random.Random(1)
    p = TlogProof(3, tuple(rng.randbytes(32) for _ in range(3)), SIGNED["checkpoint_size_8"], b"ctx")
    text = format_tlog_proof(p)
    assert text.split("\n")[1] == "extra " + base64.b64encode(b"ctx").decode()
    assert parse_tlog_proof(text) == p


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        lambda t: t.replace("index 5", "index 05"),
        lambda t: t.replace("index 5\n", ""),
        lambda t: t.replace("vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=", "vBoGQ7Eu"),
        lambda t: t.replace("\n\n", "\n", 1),
    ],
    ids=["version", "leading-zero", "no-index", "short-hash", "no-blank-line"],
)
def test_malformed_tlog_proofs_are_rejected(mutate: Callable[[str], str]) -> None:
    with pytest.raises(NoteError):
        parse_tlog_proof(mutate(SIGNED["tlog_proof_leaf_5_of_8"]))
