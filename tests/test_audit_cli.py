"""`lakou audit` against a real node log served over HTTP (tests/tlog_api_support.py): what passes
on an honest log, and that a rewritten leaf, a forged or inconsistent checkpoint, a missing witness
and an altered sidecar body are each caught with exit code 1. Usage and network problems exit 2."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from beckn.cli import app
from beckn.tlog import merkle
from beckn.tlog.note import Checkpoint, NoteSigner, append_signatures, checkpoint_text, sign_note
from conftest import free_port
from tlog_api_support import (
    AUDITOR_TOKEN,
    NAME,
    ORIGIN,
    SIGNER,
    VKEY,
    append,
    log_server,
    migrated_template,
    new_db,
    record,
    run_with_log,
    tamper,
)

runner = CliRunner()
WITNESS = NoteSigner.from_seed("witness.example.mq", b"\x07" * 32)


def audit(*args: str):  # noqa: ANN201
    # The server runs in this process and logs with structlog to sys.stdout, which CliRunner
    # captures as the command's output: keep its lines (sidecar access) out of the JSON lines.
    with capture_logs():
        return runner.invoke(app, ["audit", *args])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("audit-cli"))


@pytest.fixture
def url(template: Path, tmp_path: Path) -> str:
    """A log of 270 entries (past one full tile) with a checkpoint."""
    url = new_db(template, tmp_path)
    append(url, [record(n, txn=f"txn-{n % 5}") for n in range(270)])
    return url


def forged(size: int, root: bytes, signer: NoteSigner = SIGNER) -> str:
    return sign_note(checkpoint_text(Checkpoint(ORIGIN, size, root)), [signer])


def test_verify_passes_then_follows_the_log(url: str, tmp_path: Path) -> None:
    saved = tmp_path / "cp.txt"
    with log_server(url) as node:
        first = audit("verify", "--node", node, "--vkey", VKEY, "--full", "--save", str(saved))
        assert first.exit_code == 0, first.output + first.stderr
        assert "signed by " + ORIGIN in first.stdout and "recomputed the whole tree from 270" in first.stdout
        assert saved.read_text().startswith(f"{ORIGIN}\n270\n")

        append(url, [record(n, txn="txn-9") for n in range(270, 300)])
        second = audit("verify", "--node", node, "--vkey", VKEY, "--since", str(saved), "--save", str(saved),
                       "--full")
        assert second.exit_code == 0, second.stderr
        assert "consistent with the saved checkpoint (size 270 -> 300)" in second.stdout
        assert saved.read_text().startswith(f"{ORIGIN}\n300\n")


def test_a_rewritten_stored_leaf_is_detected(url: str) -> None:
    with log_server(url) as node:
        assert audit("verify", "--node", node, "--vkey", VKEY, "--full").exit_code == 0
        # Someone with database rights rewrites entry 3's leaf (say, to change its body commitment).
        tamper(url, "UPDATE tlog_entry SET leaf = CAST(replace(leaf, 'sha256:', 'sha256:0') AS BLOB) WHERE idx = 3")
        result = audit("verify", "--node", node, "--vkey", VKEY, "--full")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "FAILED" in result.stderr and "entry 3" in result.stderr


def test_an_inconsistent_checkpoint_is_detected(url: str, tmp_path: Path) -> None:
    saved = tmp_path / "cp.txt"
    with log_server(url) as node:
        assert audit("verify", "--node", node, "--vkey", VKEY, "--save", str(saved)).exit_code == 0
        # The log key signs a bigger tree that does not extend the saved one (history rewritten),
        # and the node serves it as its latest checkpoint.
        append(url, [record(n) for n in range(270, 280)], checkpoint=False)
        other = merkle.root([merkle.leaf_hash(b"rewritten %d" % i) for i in range(280)])
        tamper(url, "INSERT INTO tlog_checkpoint (size, root, note, created_at) "
                    "VALUES (280, :root, :note, '2026-11-23 12:00:00')", root=other, note=forged(280, other))
        result = audit("verify", "--node", node, "--vkey", VKEY, "--since", str(saved), "--save", str(saved))
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "not consistent with the saved checkpoint 270" in result.stderr
    assert saved.read_text().startswith(f"{ORIGIN}\n270\n")  # the trusted state did not move


def test_offline_checks_from_files(url: str, tmp_path: Path) -> None:
    """No node: signature, quorum and same-size forks are decided from files alone."""
    note = run_with_log(url, lambda log: log.latest_checkpoint())
    good, saved = tmp_path / "good.txt", tmp_path / "saved.txt"
    saved.write_text(note)
    cosigned = append_signatures(note, [WITNESS.cosign(note[: note.rfind("\n\n") + 1], 1_790_000_000)])
    good.write_text(cosigned)
    witness = WITNESS.cosigner_vkey
    ok = audit("verify", "--checkpoint", str(good), "--vkey", VKEY, "--witness", witness, "--since", str(saved))
    assert ok.exit_code == 0, ok.stderr
    assert "cosigned by witness.example.mq" in ok.stdout and "same tree" in ok.stdout

    def fails(path: Path, text: str, *extra: str) -> str:
        path.write_text(text)
        result = audit("verify", "--checkpoint", str(path), "--vkey", VKEY, *extra)
        assert result.exit_code == 1, (result.stdout, result.stderr)
        return result.stderr

    cp_root = merkle.leaf_hash(b"fork")
    # Same size, another root, both signed by the log key: a split view, proven by two notes.
    assert "two checkpoints of size 270" in fails(tmp_path / "fork.txt", forged(270, cp_root), "--since", str(saved))
    # Signed by someone else, or altered after signing.
    intruder = NoteSigner.from_seed(ORIGIN, b"\x09" * 32)
    assert "checkpoint" in fails(tmp_path / "intruder.txt", forged(270, cp_root, intruder))
    assert "checkpoint" in fails(tmp_path / "edited.txt", note.replace("\n270\n", "\n271\n"))
    # The quorum needs the witness's cosignature, which the bare note lacks.
    assert "quorum is 1" in fails(tmp_path / "bare.txt", note, "--witness", witness)
    # A smaller tree than the one saved: the log was rolled back.
    small = run_with_log(url, lambda log: log.root(100))
    assert "shrank" in fails(tmp_path / "small.txt", forged(100, small), "--since", str(saved))

    # Consistency offline, from a proof file (the JSON of /tlog/proof/consistency).
    old = tmp_path / "old.txt"
    old.write_text(forged(100, small))  # what the log signed at size 100
    proof = run_with_log(url, lambda log: log.consistency_proof(100, 270))
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps({"proof": [base64.b64encode(h).decode() for h in proof]}))
    args = ("verify", "--checkpoint", str(good), "--vkey", VKEY, "--since", str(old), "--proof", str(proof_file))
    consistent = audit(*args)
    assert consistent.exit_code == 0 and "size 100 -> 270" in consistent.stdout, consistent.stderr
    proof_file.write_text(json.dumps({"proof": [base64.b64encode(h).decode() for h in proof[::-1]]}))
    assert audit(*args).exit_code == 1


@pytest.mark.parametrize(("args", "message"), [
    (["verify", "--vkey", VKEY], "give --node URL or --checkpoint FILE"),
    (["verify", "--vkey", "not-a-vkey", "--checkpoint", "x"], "not a valid vkey"),
    (["verify", "--vkey", VKEY, "--checkpoint", "/nonexistent/cp.txt"], "cannot read"),
    (["verify", "--vkey", WITNESS.cosigner_vkey, "--checkpoint", "x"], "witness key"),
    (["verify", "--vkey", VKEY, "--node", "ftp://x"], "http(s) URL"),
    (["verify", "--vkey", VKEY, "--checkpoint", "x", "--witness", VKEY], "not a cosignature/v1"),
    (["verify", "--vkey", VKEY, "--checkpoint", "x", "--quorum", "1"], "--quorum 1 is more than"),
], ids=["no-source", "bad-vkey", "missing-file", "witness-as-log-key", "bad-url", "log-key-as-witness", "quorum"])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = audit(*args)
    assert result.exit_code == 2 and message in result.stderr, (result.stdout, result.stderr)


def test_unreachable_node_exits_2() -> None:
    result = audit("verify", "--vkey", VKEY, "--node", f"http://127.0.0.1:{free_port()}", "--timeout", "2")
    assert result.exit_code == 2 and "GET /tlog/checkpoint" in result.stderr


# ---------------------------------------------------------------- lakou audit messages


def test_messages_prints_checked_json_lines(url: str) -> None:
    append(url, [record(270, txn="txn-2")], checkpoint=False)  # not in a checkpoint yet
    assert run_with_log(url, lambda log: log.erase_sidecar(7)) is True  # GDPR erasure
    with log_server(url) as node:
        result = audit("messages", "--node", node, "--txn", "txn-2", "--token", AUDITOR_TOKEN, "--vkey", VKEY)
        unchecked = audit("messages", "--node", node, "--txn", "txn-2", "--token", AUDITOR_TOKEN)
        wrong = audit("messages", "--node", node, "--txn", "txn-2", "--token", "nope")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["leaf_index"] for line in lines] == [*range(2, 270, 5), 270]
    for line in lines:
        assert line["ok"] and line["checks"]["inclusion"] in ("ok: in checkpoint size 270",
                                                                "pending: not in a checkpoint yet")
        if line["leaf_index"] == 7:
            assert line["erased"] and line["body"] is None and line["checks"]["commitments"] == "erased"
        else:
            n = line["leaf_index"]
            assert line["body"] == record(n, txn="txn-2").body.decode() and NAME in line["body"]
            assert line["checks"]["commitments"] == "ok"
    assert lines[-1]["checks"]["inclusion"].startswith("pending")
    assert unchecked.exit_code == 0 and "unchecked: give --vkey" in unchecked.stdout
    assert wrong.exit_code == 2 and "HTTP 401" in wrong.stderr


def test_messages_detects_an_altered_body(url: str) -> None:
    # The stored raw body of entry 12 is changed: it no longer opens the leaf's commitment.
    tamper(url, "UPDATE tlog_sidecar SET body = CAST(replace(body, 'Marie', 'Maria') AS BLOB) WHERE idx = 12")
    with log_server(url) as node:
        result = audit("messages", "--node", node, "--txn", "txn-2", "--token", AUDITOR_TOKEN, "--vkey", VKEY)
    assert result.exit_code == 1, result.stdout + result.stderr
    by_index = {line["leaf_index"]: line for line in map(json.loads, result.stdout.splitlines())}
    assert not by_index[12]["ok"] and by_index[12]["checks"]["commitments"].startswith("FAILED")
    assert all(line["ok"] for n, line in by_index.items() if n != 12)
    assert "1 of 54 message(s) failed" in result.stderr


def test_messages_detects_a_left_out_entry_and_a_foreign_checkpoint(url: str) -> None:
    # An export that skips an entry breaks the `prev` chain; a checkpoint that the expected log
    # key did not sign is refused before any proof is trusted.
    tamper(url, "UPDATE tlog_entry SET transaction_id = 'elsewhere' WHERE idx = 12")
    other = NoteSigner.from_seed(ORIGIN, b"\x09" * 32)
    with log_server(url) as node:
        gap = audit("messages", "--node", node, "--txn", "txn-2", "--token", AUDITOR_TOKEN)
        foreign = audit("messages", "--node", node, "--txn", "txn-3", "--token", AUDITOR_TOKEN,
                        "--vkey", other.vkey)
    assert gap.exit_code == 1 and "entry 17: prev" in gap.stderr, gap.stderr
    assert foreign.exit_code == 1 and "checkpoint" in foreign.stderr and foreign.stdout == ""


def test_token_prints_a_token_and_its_hash() -> None:
    from beckn.tlog.api import hash_auditor_token

    result = audit("token", "--name", "cour-des-comptes")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["config"] == f"cour-des-comptes={hash_auditor_token(out['token'])}"
    assert audit("token", "--name", "a=b").exit_code == 2
