"""The auditor API (beckn.tlog.api) over HTTP against a real server and a real SQLite log.

Every answer is checked the way an auditor would: proofs with beckn.tlog.merkle's verifiers against
the signed checkpoint, tiles by rebuilding proofs and roots from them, sidecars by reopening the
leaves' commitments. Never with the store's own view of itself.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from beckn.tlog import merkle, tiles
from beckn.tlog.api import hash_auditor_token, parse_auditor_tokens
from beckn.tlog.leaf import check_sidecar
from beckn.tlog.note import NoteSigner, append_signatures, open_checkpoint, sign_note, verify_cosignature
from tlog_api_support import (
    AUDITOR_TOKEN,
    NAME,
    ORIGIN,
    PHONE,
    SIGNER,
    append,
    log_server,
    migrated_template,
    new_db,
    record,
    run_with_log,
    stored_leaves,
)

VERIFIER = SIGNER.verifier()


def b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("tlog-api"))


@pytest.fixture(scope="module")
def filled(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One log shared by the read-only tests: 5 entries, a checkpoint, 295 more (across the first
    tile boundary, 256), a checkpoint, then 7 entries no checkpoint covers yet."""
    url = new_db(template, tmp_path_factory.mktemp("filled"))
    first = append(url, [record(n, txn=f"txn-{n % 4}") for n in range(5)])
    second = append(url, [record(n, txn=f"txn-{n % 4}") for n in range(5, 300)])
    append(url, [record(n, txn="txn-late") for n in range(300, 307)], checkpoint=False)
    leaves = stored_leaves(url)
    with log_server(url) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield {"url": url, "client": client, "notes": [first, second], "leaves": leaves,
               "hashes": [merkle.leaf_hash(leaf) for leaf in leaves]}


def test_checkpoint_is_the_signed_note(filled: dict) -> None:
    r = filled["client"].get("/tlog/checkpoint")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == filled["notes"][1]
    cp, _, names = open_checkpoint(r.text, VERIFIER)
    assert names == [ORIGIN] and cp.size == 300
    # The root is the RFC 9162 root of the stored leaves, recomputed here from their bytes.
    assert cp.root_hash == merkle.root(filled["hashes"][:300])
    assert "max-age" in r.headers["cache-control"]


@pytest.mark.parametrize("index", [0, 4, 255, 256, 299])
def test_inclusion_proofs_verify_against_the_checkpoint(filled: dict, index: int) -> None:
    client, hashes = filled["client"], filled["hashes"]
    cp, _, _ = open_checkpoint(filled["notes"][1], VERIFIER)
    r = client.get("/tlog/proof/inclusion", params={"index": index})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["leaf_index"], body["tree_size"]) == (index, 300)
    assert b64(body["leaf"]) == filled["leaves"][index]
    assert b64(body["leaf_hash"]) == merkle.leaf_hash(b64(body["leaf"])) == hashes[index]
    merkle.verify_inclusion(hashes[index], index, 300, [b64(h) for h in body["proof"]], cp.root_hash)

    # By message id, and into an older checkpoint's tree.
    message_id = f"00000000-0000-4000-8000-{index:012d}"
    by_msg = client.get("/tlog/proof/inclusion", params={"message_id": message_id}).json()
    assert by_msg["leaf_index"] == index and by_msg["matches"] == [index]
    assert by_msg["proof"] == body["proof"]
    if index < 5:
        old, _, _ = open_checkpoint(filled["notes"][0], VERIFIER)
        r = client.get("/tlog/proof/inclusion", params={"index": index, "size": 5})
        assert r.headers["cache-control"].endswith("immutable")
        merkle.verify_inclusion(hashes[index], index, 5, [b64(h) for h in r.json()["proof"]], old.root_hash)


def test_consistency_proof_links_the_checkpoints(filled: dict) -> None:
    old, _, _ = open_checkpoint(filled["notes"][0], VERIFIER)
    new, _, _ = open_checkpoint(filled["notes"][1], VERIFIER)
    r = filled["client"].get("/tlog/proof/consistency", params={"first": 5, "second": 300})
    assert r.status_code == 200 and r.headers["cache-control"].endswith("immutable")
    proof = [b64(h) for h in r.json()["proof"]]
    merkle.verify_consistency(5, 300, old.root_hash, new.root_hash, proof)
    latest = filled["client"].get("/tlog/proof/consistency", params={"first": 5}).json()
    assert latest == {"first": 5, "second": 300, "proof": r.json()["proof"]}
    with pytest.raises(merkle.ProofError):  # the proof is for these roots, not any others
        merkle.verify_consistency(5, 300, merkle.leaf_hash(b"x"), new.root_hash, proof)


def test_entry_not_yet_checkpointed_is_not_proved(filled: dict) -> None:
    r = filled["client"].get("/tlog/proof/inclusion", params={"message_id": f"00000000-0000-4000-8000-{303:012d}"})
    assert r.status_code == 409 and "checkpoint" in r.json()["detail"]


def test_tiles_are_byte_exact_and_rebuild_proofs(filled: dict) -> None:
    client, hashes, leaves = filled["client"], filled["hashes"], filled["leaves"]
    cp, _, _ = open_checkpoint(filled["notes"][1], VERIFIER)
    fetched: list[str] = []

    def fetch(tile: tiles.Tile) -> bytes:
        fetched.append(tile.path)
        r = client.get("/tlog/" + tile.path)
        assert r.status_code == 200, (tile.path, r.text)
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["cache-control"] == ("public, max-age=2" if tile.partial else
                                              "public, max-age=31536000, immutable")
        return r.content

    # tlog-tiles byte for byte: level 0 holds the leaf hashes, entry bundles the leaves.
    assert fetch(tiles.Tile(0, 0)) == b"".join(hashes[:256])
    assert fetch(tiles.Tile(0, 1, 44)) == b"".join(hashes[256:300])
    assert fetch(tiles.Tile(1, 0, 1)) == merkle.root(hashes[:256])
    assert fetch(tiles.Tile(tiles.ENTRIES, 1, 44)) == tiles.entry_bundle(leaves[256:300])
    assert tiles.parse_entry_bundle(fetch(tiles.Tile(tiles.ENTRIES, 0))) == leaves[:256]
    # An older, smaller partial tile stays available (clients may hold an older checkpoint).
    assert fetch(tiles.Tile(0, 1, 10)) == b"".join(hashes[256:266])

    # A client rebuilds any proof and the root from tiles alone.
    sub = merkle.subtree_from_nodes(tiles.node_getter_from_tiles(cp.size, fetch))
    assert sub(0, cp.size) == cp.root_hash
    for index in (3, 256, 299):
        proof = merkle.inclusion_proof(index, cp.size, sub)
        api = client.get("/tlog/proof/inclusion", params={"index": index}).json()["proof"]
        assert [base64.b64encode(h).decode() for h in proof] == api
        merkle.verify_inclusion(hashes[index], index, cp.size, proof, cp.root_hash)
    merkle.verify_consistency(5, 300, open_checkpoint(filled["notes"][0], VERIFIER)[0].root_hash, cp.root_hash,
                              merkle.consistency_proof(5, 300, sub))


@pytest.mark.parametrize("path", [
    "tile/0/001",  # full tile 1 needs 512 entries
    "tile/0/001.p/45",  # 301 entries: beyond the checkpoint (the log has 307, unsigned)
    "tile/entries/001.p/50",
    "tile/1/000.p/2",
    "tile/2/000.p/1",
], ids=["full-beyond", "partial-beyond", "entries-unsigned", "level1-beyond", "level2-beyond"])
def test_tiles_beyond_the_checkpoint_are_not_served(filled: dict, path: str) -> None:
    r = filled["client"].get("/tlog/" + path)
    assert r.status_code == 404 and "checkpoint" in r.json()["detail"]


BAD_REQUESTS = [
    ("/tlog/proof/inclusion", {}, 400),
    ("/tlog/proof/inclusion", {"index": 1, "message_id": "x"}, 400),
    ("/tlog/proof/inclusion", {"index": -1}, 422),
    ("/tlog/proof/inclusion", {"index": "abc"}, 422),
    ("/tlog/proof/inclusion", {"index": "1e3"}, 422),
    ("/tlog/proof/inclusion", {"index": 300}, 400),  # == size
    ("/tlog/proof/inclusion", {"index": 1, "size": 301}, 400),  # beyond the checkpoint
    ("/tlog/proof/inclusion", {"index": 1, "size": 0}, 400),
    ("/tlog/proof/inclusion", {"index": 2**70}, 422),
    ("/tlog/proof/inclusion", {"message_id": "no-such-message"}, 404),
    ("/tlog/proof/inclusion", {"message_id": "x" * 300}, 422),
    ("/tlog/proof/inclusion", {"message_id": "00000000-0000-4000-8000-000000000001", "direction": "up"}, 422),
    ("/tlog/proof/inclusion", {"message_id": "00000000-0000-4000-8000-000000000001", "direction": "out"}, 404),
    ("/tlog/proof/inclusion", {"message_id": "00000000-0000-4000-8000-000000000009", "size": 5}, 400),
    ("/tlog/proof/consistency", {}, 422),
    ("/tlog/proof/consistency", {"first": 10, "second": 5}, 400),
    ("/tlog/proof/consistency", {"first": 1, "second": 400}, 400),
    ("/tlog/proof/consistency", {"first": "x"}, 422),
    ("/tlog/tile/0/1", {}, 400),
    ("/tlog/tile/0/x000/001", {}, 400),
    ("/tlog/tile/64/000", {}, 400),
    ("/tlog/tile/0/000.p/256", {}, 400),
    ("/tlog/tile/0/000.p/0", {}, 400),
    ("/tlog/tile/entries/000.p/", {}, 400),
    ("/tlog/tile/0/%2e%2e", {}, 400),
    ("/tlog/tile/0/000.p/1x", {}, 400),
    ("/tlog/tile/", {}, 400),
]


@pytest.mark.parametrize(("path", "params", "status"), BAD_REQUESTS, ids=[f"bad-{i}" for i in range(len(BAD_REQUESTS))])
def test_bad_input_is_a_clear_4xx(filled: dict, path: str, params: dict, status: int) -> None:
    r = filled["client"].get(path, params=params)
    assert r.status_code == status, (path, params, r.status_code, r.text)
    assert r.json()["detail"]  # a message, not an empty error


def test_empty_log_has_no_checkpoint(template: Path, tmp_path: Path) -> None:
    with log_server(new_db(template, tmp_path)) as base:
        for path in ("/tlog/checkpoint", "/tlog/proof/inclusion?index=0", "/tlog/proof/consistency?first=0",
                     "/tlog/tile/0/000.p/1"):
            r = httpx.get(base + path)
            assert r.status_code == 404 and "no checkpoint" in r.json()["detail"], path


def test_checkpoint_is_served_with_cosignatures(template: Path, tmp_path: Path) -> None:
    url = new_db(template, tmp_path)
    note = append(url, [record(n) for n in range(3)])
    witness = NoteSigner.from_seed("witness.example.mq", b"\x07" * 32)
    asked: list[str] = []

    async def cosignatures(n: str) -> list[str]:
        asked.append(n)
        text = n[: n.rfind("\n\n") + 1]
        return [witness.cosign(text, 1_790_000_000)]

    with log_server(url, cosignatures=cosignatures) as base:
        served = httpx.get(base + "/tlog/checkpoint").text
    assert asked == [note]
    open_checkpoint(served, VERIFIER)
    assert verify_cosignature(served, witness.cosigner_verifier()) == 1_790_000_000

    async def whole_note(n: str) -> str:  # the other form: the note with the lines attached
        return append_signatures(n, [witness.cosign(n[: n.rfind("\n\n") + 1], 1_790_000_001)])

    with log_server(url, cosignatures=whole_note) as base:
        served = httpx.get(base + "/tlog/checkpoint").text
    assert verify_cosignature(served, witness.cosigner_verifier()) == 1_790_000_001

    async def broken(n: str) -> list[str]:
        raise RuntimeError("witness store down")

    async def rewriting(n: str) -> str:  # a source that swaps the note is ignored, not served
        return sign_note(n[: n.rfind("\n\n") + 1].replace("\n3\n", "\n4\n"), [witness])

    for source in (broken, rewriting):
        with log_server(url, cosignatures=source) as base:
            r = httpx.get(base + "/tlog/checkpoint")
        assert r.status_code == 200 and r.text == note  # the log's own note still served


# ---------------------------------------------------------------- sidecar export


def test_sidecar_export_needs_an_auditor_token(template: Path, tmp_path: Path) -> None:
    url = new_db(template, tmp_path)
    append(url, [record(n, txn="txn-a" if n % 2 else "txn-b") for n in range(6)])
    append(url, [record(6, txn="txn-a")], checkpoint=False)  # logged after the checkpoint
    assert run_with_log(url, lambda log: log.erase_sidecar(3)) is True
    path = "/tlog/transactions/txn-a/sidecars"

    with capture_logs() as logs, log_server(url) as base:
        no_header = httpx.get(base + path)
        wrong = httpx.get(base + path, headers={"Authorization": "Bearer not-the-token"})
        basic = httpx.get(base + path, headers={"Authorization": "Basic YTpi"})
        ok = httpx.get(base + path, headers={"Authorization": f"Bearer {AUDITOR_TOKEN}"})
        unknown = httpx.get(base + "/tlog/transactions/txn-zzz/sidecars",
                            headers={"Authorization": f"Bearer {AUDITOR_TOKEN}"})
        checkpoint = httpx.get(base + "/tlog/checkpoint").text
    assert no_header.status_code == 401 and no_header.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401 and basic.status_code == 401
    assert unknown.status_code == 404
    assert ok.status_code == 200, ok.text
    assert ok.headers["cache-control"] == "no-store"

    export = ok.json()
    assert export["checkpoint"] == checkpoint and export["tree_size"] == 6
    cp, _, _ = open_checkpoint(export["checkpoint"], VERIFIER)
    entries = export["entries"]
    assert [e["leaf_index"] for e in entries] == [1, 3, 5, 6]
    for e in entries:
        n = e["leaf_index"]
        leaf = b64(e["leaf"])
        assert b64(e["leaf_hash"]) == merkle.leaf_hash(leaf)
        if n == 3:  # erased (GDPR): shown as erased, nothing private left, the proof still holds
            assert e["erased"] and e["erased_at"] and e["body"] is e["salt"] is e["headers"] is None
        else:
            rec = record(n, txn="txn-a")
            assert not e["erased"] and b64(e["body"]) == rec.body
            assert e["headers"] == {"authorization": rec.headers["Authorization"]}
            check_sidecar(leaf, body=b64(e["body"]), headers=e["headers"], salt=b64(e["salt"]))
        if n == 6:
            assert e["proof"] is None  # not in a checkpoint yet
        else:
            merkle.verify_inclusion(merkle.leaf_hash(leaf), n, cp.size, [b64(h) for h in e["proof"]], cp.root_hash)

    # Every attempt is logged; no token, body or personal data in the lines.
    events = [(line["event"], line.get("reason"), line.get("auditor")) for line in logs
              if line["event"].startswith("tlog.sidecar_export")]
    assert events == [
        ("tlog.sidecar_export_refused", "no credentials", None),
        ("tlog.sidecar_export_refused", "unknown token", None),
        ("tlog.sidecar_export_refused", "no credentials", None),
        ("tlog.sidecar_export", None, "cour-des-comptes"),
        ("tlog.sidecar_export", None, "cour-des-comptes"),
    ]
    dumped = json.dumps(logs, default=str)
    for secret in (AUDITOR_TOKEN, "not-the-token", NAME, PHONE, "sig1"):
        assert secret not in dumped


def test_sidecar_export_is_off_without_auditors(template: Path, tmp_path: Path) -> None:
    url = new_db(template, tmp_path)
    append(url, [record(0)])
    with log_server(url, auditor_tokens=[]) as base:
        r = httpx.get(base + "/tlog/transactions/txn-a/sidecars", headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]


def test_auditor_token_configuration() -> None:
    h = hash_auditor_token("s3cret")
    assert h.startswith("sha256:") and len(h) == 71 and "s3cret" not in h
    named, anonymous, plain = parse_auditor_tokens(f"alice={h}, {h} ,s3cret=x")
    assert named.name == "alice" and named.token_hash.hex() == h[7:]
    assert anonymous.name == f"auditor-{h[7:15]}"
    # Not a hash: taken as a plain token (with its '='), hashed at once.
    assert plain.token_hash.hex() == hash_auditor_token("s3cret=x")[7:]
    assert parse_auditor_tokens(None) == parse_auditor_tokens("") == parse_auditor_tokens(" , ") == []
