"""`lakou registry add|list`: the operator writes the registry store directly; the served
registry then answers lookups with what was added."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.keyfile import ensure_node_keys
from beckn.keys import generate_key_pairs
from beckn.settings import Settings
from conftest import serve_app
from registry.app import create_app

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

runner = CliRunner()


def add_args(db_url: str, *extra: str, subscriber_id: str = "bpp.fdf.mq", type_: str = "bpp") -> list[str]:
    return ["registry", "add", "--subscriber-id", subscriber_id, "--type", type_,
            "--url", f"https://{subscriber_id}/beckn", "--city", "insee:97209", "--db", db_url, *extra]


def test_add_from_a_node_key_file_then_list_and_look_up(db_url: str, tmp_path: Path) -> None:
    keys = ensure_node_keys(tmp_path / "bpp")
    added = runner.invoke(cli_app, add_args(db_url, "--keys-file", str(tmp_path / "bpp" / "node-keys.json")))
    assert added.exit_code == 0, added.output
    assert "added: bpp.fdf.mq BPP" in added.output and keys["unique_key_id"] in added.output
    assert keys["signing_private_key"] not in added.output

    again = runner.invoke(cli_app, add_args(db_url, "--keys-file", str(tmp_path / "bpp" / "node-keys.json")))
    assert again.exit_code == 0, again.output

    other = generate_key_pairs()
    bap = runner.invoke(cli_app, add_args(
        db_url, "--signing-public-key", other.signing_public_key, "--encr-public-key", other.encryption_public_key,
        "--unique-key-id", "bap-key-1", "--valid-days", "30", subscriber_id="bap.lakou.mq", type_="buyerApp"))
    assert bap.exit_code == 0, bap.output

    listed = runner.invoke(cli_app, ["registry", "list", "--db", db_url])
    assert listed.exit_code == 0, listed.output
    for text in ("bpp.fdf.mq", "bap.lakou.mq", "BAP", "BPP", "insee:97209", "SUBSCRIBED", "lakou:retail",
                 keys["unique_key_id"], "bap-key-1", "valid"):
        assert text in listed.output, text
    assert "Registry participants (2)" in listed.output

    # What the operator added is what the registry serves.
    settings = Settings(data_dir=tmp_path / "registry", database_url=db_url)
    with serve_app(create_app(settings)) as base:
        answer = httpx.post(f"{base}/lookup", json={"subscriber_id": "bpp.fdf.mq"}).json()
        assert [(e["ukId"], e["signing_public_key"], e["city"]) for e in answer] == [
            (keys["unique_key_id"], keys["signing_public_key"], "insee:97209")]
        [bap_entry] = httpx.post(f"{base}/lookup", json={"type": "BAP"}).json()
        assert bap_entry["ukId"] == "bap-key-1" and bap_entry["country"] == "MTQ"


def test_default_store_is_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKOU_DATABASE_URL", raising=False)
    keys = generate_key_pairs()
    data_dir = tmp_path / "fresh" / "data"
    result = runner.invoke(cli_app, [
        "registry", "add", "--subscriber-id", "gw.lakou.mq", "--type", "BG", "--url", "http://127.0.0.1:8200/beckn",
        "--signing-public-key", keys.signing_public_key, "--encr-public-key", keys.encryption_public_key,
        "--unique-key-id", "gw-1", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert (data_dir / "lakou.db").is_file()
    listed = runner.invoke(cli_app, ["registry", "list", "--data-dir", str(data_dir)])
    assert "gw.lakou.mq" in listed.output


KEYS = generate_key_pairs()
KEY_ARGS = ["--signing-public-key", KEYS.signing_public_key, "--encr-public-key", KEYS.encryption_public_key,
            "--unique-key-id", "k1"]


@pytest.mark.parametrize(
    ("args", "with_keys", "needle"),
    [
        (["--type", "merchant"], True, "unknown participant type"),
        (["--url", "bpp.fdf.mq/beckn"], True, "absolute http"),
        (["--city", "Fort de France"], True, "whitespace"),
        (["--valid-days", "0"], True, "--valid-days"),
        (["--db", "mysql://x/y"], True, "unsupported database"),
        (["--signing-public-key", "abc", "--encr-public-key", "abc", "--unique-key-id", "k"], False,
         "signing public key"),
        (["--signing-public-key", "abc"], False, "missing --encr-public-key, --unique-key-id"),
        ([], False, "missing --signing-public-key"),
        (["--keys-file", "/nonexistent/node-keys.json"], False, "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_message(sqlite_url: str, args: list[str], with_keys: bool, needle: str) -> None:
    base = ["registry", "add", "--subscriber-id", "bpp.fdf.mq", "--type", "BPP", "--url", "https://bpp.fdf.mq/beckn",
            "--db", sqlite_url, *(KEY_ARGS if with_keys else [])]
    # Later options win in click, so the parametrised ones override the base ones.
    result = runner.invoke(cli_app, base + args)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_keys_file_and_explicit_keys_conflict_and_bad_files_exit_2(sqlite_url: str, tmp_path: Path) -> None:
    keys_file = tmp_path / "node-keys.json"
    keys_file.write_text(json.dumps({"unique_key_id": "k1"}))
    incomplete = runner.invoke(cli_app, add_args(sqlite_url, "--keys-file", str(keys_file)))
    assert incomplete.exit_code == 2 and "has no signing_public_key" in incomplete.output
    keys_file.write_text("{not json")
    broken = runner.invoke(cli_app, add_args(sqlite_url, "--keys-file", str(keys_file)))
    assert broken.exit_code == 2 and "not readable JSON" in broken.output
    both = runner.invoke(cli_app, add_args(sqlite_url, "--keys-file", str(keys_file), "--unique-key-id", "k2"))
    assert both.exit_code == 2 and "not both" in both.output


def test_rebinding_a_key_id_exits_2(sqlite_url: str) -> None:
    first, second = generate_key_pairs(), generate_key_pairs()
    ok = runner.invoke(cli_app, add_args(sqlite_url, "--signing-public-key", first.signing_public_key,
                                         "--encr-public-key", first.encryption_public_key, "--unique-key-id", "k1"))
    assert ok.exit_code == 0, ok.output
    rebound = runner.invoke(cli_app, add_args(sqlite_url, "--signing-public-key", second.signing_public_key,
                                              "--encr-public-key", second.encryption_public_key, "--unique-key-id", "k1"))
    assert rebound.exit_code == 2
    assert "never rebound" in rebound.output
