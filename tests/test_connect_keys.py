"""Martinique Connect: signing-key rotation (mirrors oidcc-server-rotate-keys), keys sealed at rest,
single-use codes on both storage backends, and the operator CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.store.db import create_engine, session_factory
from did.connect.tables import ConnectAccessToken, ConnectClient, ConnectSigningKey
from tests.connect_support import code_flow, provider, verify_id_token

import httpx

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store


async def _jwks(url: str) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/jwks")).json()


def _kid(id_token: str) -> str:
    import base64

    return json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "=="))["kid"]


async def _rows(db_url: str, model: type) -> list:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            return list((await s.execute(select(model))).scalars())
    finally:
        await engine.dispose()


def test_rotation_and_single_use_codes_on_both_backends(tmp_path: Path, db_url: str) -> None:
    with provider(tmp_path, db_url) as op:
        before = asyncio.run(_jwks(op.url))["keys"]
        current, upcoming = before[0]["kid"], before[1]["kid"]
        old = asyncio.run(code_flow(op))
        assert _kid(old["token"]["id_token"]) == current

        result = CliRunner().invoke(cli_app, ["connect", "keys", "rotate", "--data-dir", str(tmp_path),
                                              "--db", db_url], env={"LAKOU_CONNECT_SECRET": "s" * 40})
        assert result.exit_code == 0, result.output
        assert f"current: {upcoming}" in result.output and f"retired: {current}" in result.output

        after = asyncio.run(_jwks(op.url))["keys"]
        kids = [k["kid"] for k in after]
        assert kids[0] == upcoming and current in kids and len(set(kids)) == 3
        # A token signed before the rotation still verifies against the new JWKS...
        claims = asyncio.run(verify_id_token(op, old["token"]["id_token"], "shop", old["nonce"]))
        assert claims["nonce"] == old["nonce"]
        # ...and new tokens use the key that was published as "next".
        new = asyncio.run(code_flow(op))
        assert _kid(new["token"]["id_token"]) == upcoming

        # Private keys are sealed at rest: the stored bytes do not hold the private scalar.
        stored = asyncio.run(_rows(db_url, ConnectSigningKey))
        assert {r.state for r in stored} == {"current", "next", "retired"}
        for row in stored:
            assert "d" not in row.public_jwk and b'"d"' not in row.private_jwk_sealed
        # Access tokens are stored hashed.
        tokens = asyncio.run(_rows(db_url, ConnectAccessToken))
        assert tokens and all(new["token"]["access_token"] not in t.token_hash for t in tokens)

        # Code reuse on this backend: refused, and the tokens it gave are revoked.
        reuse = httpx.post(f"{op.url}/token", auth=httpx.BasicAuth("shop", op.clients["shop"]), data={
            "grant_type": "authorization_code", "code": new["callback"]["code"],
            "redirect_uri": "http://127.0.0.1:9/cb", "code_verifier": new["verifier"]})
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        info = httpx.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {new['token']['access_token']}"})
        assert info.status_code == 401


def test_cli_client_and_user(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}"
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "--db", db]
    added = runner.invoke(cli_app, ["connect", "client", "add", "--client-id", "mairie-fdf",
                                    "--redirect-uri", "https://mairie.example.mq/cb",
                                    "--backchannel-logout-uri", "https://mairie.example.mq/bcl", *base])
    assert added.exit_code == 0, added.output
    secret = next(line.split(": ", 1)[1] for line in added.stdout.splitlines() if line.startswith("client_secret"))
    assert len(secret) >= 40
    listed = runner.invoke(cli_app, ["connect", "client", "list", *base])
    row = json.loads(listed.stdout.splitlines()[0])
    assert row["client_id"] == "mairie-fdf" and row["sector_identifier"] == "mairie.example.mq"
    assert secret not in listed.stdout and "secret_hash" not in row
    stored = asyncio.run(_rows(db, ConnectClient))[0]
    assert stored.secret_hash.startswith("$argon2id$")

    # plain http is only for loopback; several hosts need an explicit sector
    refused = runner.invoke(cli_app, ["connect", "client", "add", "--client-id", "bad-1",
                                      "--redirect-uri", "http://example.mq/cb", *base])
    assert refused.exit_code == 2 and "https is required" in refused.output
    hosts = runner.invoke(cli_app, ["connect", "client", "add", "--client-id", "bad-2", "--redirect-uri",
                                    "https://a.mq/cb", "--redirect-uri", "https://b.mq/cb", *base])
    assert hosts.exit_code == 2 and "--sector" in hosts.output

    user = runner.invoke(cli_app, ["connect", "user", "add", "--username", "lea", "--email", "lea@example.mq",
                                   "--commune", "insee:97213", *base], input="a long passphrase\n")
    assert user.exit_code == 0, user.output
    bad = runner.invoke(cli_app, ["connect", "user", "add", "--username", "paul", "--commune", "insee:75056",
                                  *base], input="a long passphrase\n")
    assert bad.exit_code == 2 and "insee:972xx" in bad.output
    short = runner.invoke(cli_app, ["connect", "user", "add", "--username", "paul", *base], input="short\n")
    assert short.exit_code == 2 and "at least 10" in short.output


def test_server_secret_file_is_private(tmp_path: Path) -> None:
    from did.connect.keys import load_server_secret, pairwise_sub

    first = load_server_secret(None, tmp_path)
    assert (tmp_path / "connect-secret").stat().st_mode & 0o777 == 0o600
    assert load_server_secret(None, tmp_path) == first  # reused across restarts
    assert pairwise_sub(first, "a.mq", "1") != pairwise_sub(first, "b.mq", "1")
    assert pairwise_sub(first, "a.mq", "1") == pairwise_sub(first, "a.mq", "1")
