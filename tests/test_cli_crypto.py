"""`lakou keys new`, `lakou sign`, `lakou verify`: round trip, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from beckn.cli import app
from beckn.keys import load_signing_key
from beckn.signing import Signer, parse_signature_header

LAKOU = Path(sys.executable).parent / "lakou"

EXAMPLE_PRIVATE = (
    "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ=="
)
EXAMPLE_PUBLIC = "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk="

runner = CliRunner()


def invoke(*args: str, input: bytes | None = None):
    return runner.invoke(app, list(args), input=input)


@pytest.fixture
def body_file(tmp_path: Path) -> Path:
    path = tmp_path / "body.json"
    # Bytes a text-mode reader would alter: CRLF, a BOM-less accent, a trailing newline.
    path.write_bytes('{"message":{"intent":{"descriptor":{"name":"féroce d\'avocat"}}}}\r\n'.encode())
    return path


def test_keys_new_sign_verify_round_trip_through_the_real_entry_point(body_file: Path) -> None:
    assert LAKOU.exists(), f"{LAKOU} missing: run `make test` (it installs the package)"
    keys = json.loads(subprocess.run([LAKOU, "keys", "new"], capture_output=True, check=True).stdout)
    assert set(keys) == {"signing_private_key", "signing_public_key",
                         "encryption_private_key", "encryption_public_key"}
    signed = subprocess.run(
        [LAKOU, "sign", "--subscriber-id", "bap.lakou.mq", "--key-id", "k1",
         "--private-key", keys["signing_private_key"], "--body-file", body_file],
        capture_output=True, text=True,
    )
    assert signed.returncode == 0, signed.stderr
    header = signed.stdout.strip()
    assert header.startswith('Signature keyId="bap.lakou.mq|k1|ed25519",algorithm="ed25519",')

    ok = subprocess.run(
        [LAKOU, "verify", "--public-key", keys["signing_public_key"], "--header", header,
         "--body-file", body_file],
        capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("valid: keyId=bap.lakou.mq|k1|ed25519")

    body_file.write_bytes(body_file.read_bytes().replace(b"\r\n", b"\n"))
    bad = subprocess.run(
        [LAKOU, "verify", "--public-key", keys["signing_public_key"], "--header", header,
         "--body-file", body_file],
        capture_output=True, text=True,
    )
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.startswith("invalid: signature does not verify for bap.lakou.mq|k1|ed25519")
    assert "Traceback" not in bad.stderr


def test_sign_with_fixed_times_matches_the_library(body_file: Path) -> None:
    result = invoke("sign", "--subscriber-id", "example-bap.com", "--key-id", "k1",
                    "--private-key", EXAMPLE_PRIVATE, "--body-file", str(body_file),
                    "--created", "1641287875", "--expires", "1641291475")
    assert result.exit_code == 0, result.stderr
    expected = Signer("example-bap.com", "k1", load_signing_key(EXAMPLE_PRIVATE)).sign(
        body_file.read_bytes(), created=1641287875, expires=1641291475
    )
    assert result.stdout.strip() == expected


def test_sign_reads_standard_input_as_bytes(body_file: Path) -> None:
    result = invoke("sign", "--subscriber-id", "a.mq", "--key-id", "k1", "--private-key", EXAMPLE_PRIVATE,
                    "--body-file", "-", "--created", "1700000000", input=body_file.read_bytes())
    assert result.exit_code == 0, result.stderr
    from_file = invoke("sign", "--subscriber-id", "a.mq", "--key-id", "k1", "--private-key", EXAMPLE_PRIVATE,
                       "--body-file", str(body_file), "--created", "1700000000")
    assert result.stdout == from_file.stdout


def test_sign_takes_the_private_key_from_the_environment(body_file: Path) -> None:
    result = runner.invoke(
        app, ["sign", "--subscriber-id", "a.mq", "--key-id", "k1", "--body-file", str(body_file)],
        env={"LAKOU_SIGNING_PRIVATE_KEY": EXAMPLE_PRIVATE},
    )
    assert result.exit_code == 0, result.stderr
    assert parse_signature_header(result.stdout.strip()).key_id == "a.mq|k1|ed25519"


def signed_header(body_file: Path, created: int = 1700000000, expires: int = 1700003600) -> str:
    return Signer("a.mq", "k1", load_signing_key(EXAMPLE_PRIVATE)).sign(
        body_file.read_bytes(), created=created, expires=expires
    )


def test_verify_accepts_a_pasted_header_line_and_explicit_now(body_file: Path) -> None:
    header = signed_header(body_file)
    for value in (header, f"Authorization: {header}", f"X-Gateway-Authorization: {header}"):
        result = invoke("verify", "--public-key", EXAMPLE_PUBLIC, "--header", value,
                        "--body-file", str(body_file), "--now", "1700000100")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == "valid: keyId=a.mq|k1|ed25519 created=1700000000 expires=1700003600"


def test_verify_reports_expiry_and_future_created(body_file: Path) -> None:
    header = signed_header(body_file)
    expired = invoke("verify", "--public-key", EXAMPLE_PUBLIC, "--header", header,
                     "--body-file", str(body_file), "--now", "1700003601")
    assert expired.exit_code == 1
    assert expired.stderr.strip() == "invalid: signature expired at 1700003600 (now 1700003601)"
    early = invoke("verify", "--public-key", EXAMPLE_PUBLIC, "--header", header,
                   "--body-file", str(body_file), "--now", "1699999990", "--skew", "5")
    assert early.exit_code == 1
    assert early.stderr.startswith("invalid: signature created in the future: created=1700000000")
    lenient = invoke("verify", "--public-key", EXAMPLE_PUBLIC, "--header", header,
                     "--body-file", str(body_file), "--now", "1699999990", "--skew", "10")
    assert lenient.exit_code == 0, lenient.stderr


def test_verify_reports_malformed_header(body_file: Path) -> None:
    result = invoke("verify", "--public-key", EXAMPLE_PUBLIC, "--header", 'Signature keyId="a.mq|ed25519"',
                    "--body-file", str(body_file))
    assert result.exit_code == 1
    assert result.stderr.startswith("invalid: signature header lacks required parameter(s): algorithm")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["verify", "--public-key", "not-a-key!", "--header", "x"], "error: signing public key: not valid base64"),
        (["verify", "--public-key", EXAMPLE_PRIVATE, "--header", "x"],
         "error: signing public key: got 64 bytes, which looks like a libsodium private key"),
        (["sign", "--subscriber-id", "a.mq", "--key-id", "k1", "--private-key", "c2hvcnQ="],
         "error: signing private key: got 5 bytes; accepted: base64 of a 32-byte Ed25519 seed"),
        (["sign", "--subscriber-id", "a|b", "--key-id", "k1", "--private-key", EXAMPLE_PRIVATE],
         "error: subscriber_id must be non-empty without '|'"),
    ],
)
def test_bad_input_exits_1_with_a_message_and_no_traceback(
    body_file: Path, command: list[str], expected: str
) -> None:
    result = invoke(*command, "--body-file", str(body_file))
    assert result.exit_code == 1
    assert result.stderr.startswith(expected)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_missing_body_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("verify", "--public-key", EXAMPLE_PUBLIC, "--header", "x",
                    "--body-file", str(tmp_path / "absent.json"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot read body file")
    assert "No such file or directory" in result.stderr


def test_missing_option_is_a_usage_error() -> None:
    result = invoke("sign", "--subscriber-id", "a.mq")
    assert result.exit_code == 2
    assert "--key-id" in result.stderr or "--key-id" in result.output
