"""The registry publishes each participant's transaction-log key (`log_vkey`, issue 8), served for
real: operator registration, the core and ONDC subscribe flows, lookups (live and key history),
the node-side client, and a witness that learns a peer's log key from the registry.
Storage-touching tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from beckn.registry_client import RegistryClient, normalise_record
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.tlog.note import NoteSigner, NoteVerifier, verify_cosignature
from beckn.tlog.store import TransactionLog
from beckn.tlog.witness import ADD_CHECKPOINT, cosigner_vkey_for, registry_log_keys, request_cosignature, witness_router
from conftest import serve_app
from test_registry_service import (  # noqa: F401 - spec_registry is a fixture
    AUTH,
    NOW,
    running_registry,
    schema_errors,
    spec_registry,
    spec_validator,
    stamp,
)
from test_registry_service import record as admin_record
from test_registry_subscribe import body as core_body
from test_registry_subscribe import network as core_network
from test_registry_subscribe import new_subscriber, subscribe
from test_registry_subscribe_ondc import network as ondc_network
from test_registry_subscribe_ondc import new_subscriber as ondc_subscriber
from test_registry_subscribe_ondc import ondc_body, participant
from test_registry_subscribe_ondc import subscribe as ondc_subscribe
from test_tlog_witness import record as log_record


def log_signer(name: str, first_seed_byte: int = 0) -> NoteSigner:
    """A log key whose vkey's base64 holds a "+" (a vkey is split on its first two "+" only):
    the first such seed from `first_seed_byte` on, so the test is deterministic."""
    for n in range(first_seed_byte, first_seed_byte + 256):
        signer = NoteSigner.from_seed(name, bytes([n % 256]) * 32)
        if signer.vkey.count("+") > 2:
            return signer
    raise AssertionError("no seed gives a vkey with '+' in its base64")


BAD_VKEYS = {
    "not a vkey": "hello",
    "two parts": "bpp.example.mq/tlog+0011aabb",
    "key ID not hex": "bpp.example.mq/tlog+zzzzzzzz+AQ" + "A" * 42 + "=",
    "key ID of another key": None,  # filled below
    "cosigner key (0x04)": None,
    "short key": "bpp.example.mq/tlog+00000000+AQID",
}


def bad_vkeys() -> dict[str, Any]:
    good = log_signer("bpp.example.mq/tlog")
    name, kid, key = good.vkey.split("+", 2)
    other_kid = f"{(int(kid, 16) ^ 1):08x}"
    return {**BAD_VKEYS, "key ID of another key": f"{name}+{other_kid}+{key}",
            "cosigner key (0x04)": good.cosigner_vkey, "not a string": 42}


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


async def test_operators_publish_a_log_key_and_lookups_keep_its_history(
    db_url: str, tmp_path: Path, http: httpx.AsyncClient, spec_registry: Any,  # noqa: F811
) -> None:
    first, second = log_signer("bpp.fdf.mq/tlog"), log_signer("bpp.fdf.mq/tlog", 100)
    assert first.vkey != second.vkey
    old = admin_record("bpp.fdf.mq", valid_from=stamp(NOW - timedelta(days=10)), log_vkey=first.vkey)
    plain = admin_record("bap.lakou.mq", "BAP")
    with running_registry(db_url, tmp_path) as registry:
        for rec in (old, plain):
            answer = await http.post(f"{registry}/admin/participants", json=rec, headers=AUTH)
            assert answer.status_code == 201, answer.text
        assert answer.json().get("log_vkey") is None
        [found] = (await http.post(f"{registry}/lookup", json={"subscriber_id": "bpp.fdf.mq"})).json()
        assert found["log_vkey"] == first.vkey
        # A participant without a log key keeps the exact shape every dialect's client expects.
        [bare] = (await http.post(f"{registry}/lookup", json={"subscriber_id": "bap.lakou.mq"})).json()
        assert "log_vkey" not in bare
        element_schema = spec_validator(spec_registry, "/components/schemas/Subscription")
        assert schema_errors(element_schema, found) == []

        # A node re-posting its record at start without the field keeps the published key...
        again = {k: v for k, v in old.items() if k != "log_vkey"}
        assert (await http.post(f"{registry}/admin/participants", json=again, headers=AUTH)).status_code == 200
        # ... but a key id is never rebound to another log key.
        rebind = await http.post(f"{registry}/admin/participants", json={**old, "log_vkey": second.vkey}, headers=AUTH)
        assert rebind.status_code == 409, rebind.text
        assert rebind.json()["error"]["path"] == "log_vkey"
        assert "new unique_key_id" in rebind.json()["error"]["message"]

        # Rotation: a new Beckn key with a new log key, from yesterday on.
        rotated = admin_record("bpp.fdf.mq", valid_from=stamp(NOW - timedelta(days=1)), log_vkey=second.vkey)
        assert (await http.post(f"{registry}/admin/participants", json=rotated, headers=AUTH)).status_code == 201
        [now_found] = (await http.post(f"{registry}/lookup", json={"subscriber_id": "bpp.fdf.mq"})).json()
        assert now_found["log_vkey"] == second.vkey
        # An auditor finds the log key valid at a past moment through the key history.
        [then] = (await http.post(f"{registry}/lookup", json={"subscriber_id": "bpp.fdf.mq",
                                                              "valid_at": stamp(NOW - timedelta(days=5))})).json()
        assert (then["ukId"], then["log_vkey"]) == (old["unique_key_id"], first.vkey)
        listed = (await http.get(f"{registry}/admin/participants", headers=AUTH,
                                 params={"subscriber_id": "bpp.fdf.mq"})).json()
        assert {k["unique_key_id"]: k["log_vkey"] for k in listed[0]["keys"]} == {
            old["unique_key_id"]: first.vkey, rotated["unique_key_id"]: second.vkey}

        # Nodes read peers' log keys through the core client.
        client = RegistryClient(registry, http=http)
        [peer] = await client.lookup(subscriber_id="bpp.fdf.mq")
        assert peer.log_vkey == second.vkey
        [other] = await client.lookup(subscriber_id="bap.lakou.mq")
        assert other.log_vkey is None


def test_the_client_ignores_an_unreadable_log_key_but_keeps_the_record() -> None:
    rec = admin_record("bpp.fdf.mq", status="SUBSCRIBED")
    for bad in bad_vkeys().values():
        parsed = normalise_record({**rec, "log_vkey": bad})
        assert parsed.log_vkey is None and parsed.usable_at(NOW) is None


async def test_malformed_log_keys_are_refused_naming_the_field(
    sqlite_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    with running_registry(sqlite_url, tmp_path / "admin") as registry:
        for why, bad in bad_vkeys().items():
            answer = await http.post(f"{registry}/admin/participants", json=admin_record("bpp.fdf.mq", log_vkey=bad),
                                     headers=AUTH)
            assert answer.status_code == 400, (why, answer.text)
            error = answer.json()["error"]
            assert error["path"] == "log_vkey" and "log_vkey" in error["message"], (why, error)
        listed = (await http.get(f"{registry}/admin/participants", headers=AUTH)).json()
        assert listed == []

    with core_network(sqlite_url.replace("lakou.db", "core.db"), tmp_path / "core") as n:
        sub = new_subscriber(n)
        answer = await subscribe(http, n, core_body(n, sub, log_vkey="hello"), sub.signer)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["path"] == "log_vkey"
        assert n.peer.calls == []  # refused before any challenge

    with ondc_network(sqlite_url.replace("lakou.db", "ondc.db"), tmp_path / "ondc") as n:
        sub = ondc_subscriber(n)
        payload = ondc_body(n, sub, 2, [participant(n, "sellerApp")])
        payload["message"]["entity"]["key_pair"]["log_vkey"] = "hello"
        answer = await ondc_subscribe(http, n, payload, sub.signer)
        assert answer.status_code == 400, answer.text
        assert answer.json()["message"] == {"ack": {"status": "NACK"}}
        assert answer.json()["error"]["path"] == "message.entity.key_pair.log_vkey"
        assert "log_vkey" in answer.json()["error"]["message"]


async def test_subscribers_publish_their_log_key_in_both_dialects(
    db_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    with core_network(db_url, tmp_path / "core") as n:
        sub = new_subscriber(n)
        key = log_signer(f"{sub.subscriber_id}/tlog")
        answer = await subscribe(http, n, core_body(n, sub, log_vkey=key.vkey), sub.signer)
        assert answer.status_code == 200, answer.text
        [found] = (await http.post(f"{n.registry}/lookup", json={"subscriber_id": sub.subscriber_id})).json()
        assert found["log_vkey"] == key.vkey
        # A second subscribe of the same key id with another log key is refused before the challenge.
        calls = len(n.peer.calls)
        other = log_signer(f"{sub.subscriber_id}/tlog", 100)
        payload = core_body(n, sub, log_vkey=other.vkey)
        answer = await subscribe(http, n, payload, sub.signer)
        assert answer.status_code == 409 and answer.json()["error"]["path"] == "log_vkey", answer.text
        assert len(n.peer.calls) == calls

    if "postgres" in db_url:
        return  # the ONDC translation is storage-independent; the core flow covered PostgreSQL
    with ondc_network(db_url.replace("lakou.db", "ondc.db"), tmp_path / "ondc") as n:
        sub = ondc_subscriber(n)
        key = log_signer(f"{sub.subscriber_id}/tlog")
        payload = ondc_body(n, sub, 4, [participant(n, "buyerApp"), participant(n, "sellerApp")])
        payload["message"]["entity"]["key_pair"]["log_vkey"] = key.vkey
        answer = await ondc_subscribe(http, n, payload, sub.signer)
        assert answer.status_code == 200, answer.text
        found = (await http.post(f"{n.registry}/lookup", json={"subscriber_id": sub.subscriber_id})).json()
        assert sorted(e["type"] for e in found) == ["BAP", "BPP"]
        assert {e["log_vkey"] for e in found} == {key.vkey}


async def test_a_witness_learns_the_peers_log_key_from_the_registry(
    sqlite_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    peer_key = log_signer("bpp.fdf.mq/tlog")
    witness_key = log_signer("bap.lakou.mq/tlog", 50)
    log_url = f"sqlite+aiosqlite:///{tmp_path / 'log.db'}"
    witness_url = f"sqlite+aiosqlite:///{tmp_path / 'witness.db'}"
    await upgrade(log_url)
    await upgrade(witness_url)
    log_engine = create_engine(log_url)
    log = TransactionLog(session_factory(log_engine), peer_key, peer_key.name)
    await log.append_batch([log_record(n) for n in range(3)])
    note = await log.checkpoint()
    with running_registry(sqlite_url, tmp_path / "registry") as registry:
        for rec in (admin_record("bpp.fdf.mq", log_vkey=peer_key.vkey),
                    admin_record("bap.lakou.mq", "BAP", log_vkey=witness_key.vkey),
                    admin_record("bg.lakou.mq", "BG")):  # on the network, but publishes no log key
            assert (await http.post(f"{registry}/admin/participants", json=rec, headers=AUTH)).status_code == 201

        engine: dict[str, Any] = {}

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI):  # noqa: ARG001 - the engine and client live in the server's loop
            engine["e"] = create_engine(witness_url)
            engine["client"] = RegistryClient(registry)
            yield
            await engine["client"].aclose()
            await engine["e"].dispose()

        app = FastAPI(lifespan=lifespan)

        async def resolve(origin: str) -> Any:
            return await engine.setdefault("resolver", registry_log_keys(engine["client"]))(origin)

        app.include_router(witness_router(lambda: session_factory(engine["e"])(), witness_key, resolve))  # type: ignore[arg-type]
        with serve_app(app) as witness:
            # The auditor's side: the witness's cosigner key, derived from its registry record.
            [wrec] = (await http.post(f"{registry}/lookup", json={"subscriber_id": "bap.lakou.mq"})).json()
            cosigner = NoteVerifier.from_vkey(cosigner_vkey_for(wrec["log_vkey"]))
            lines = await request_cosignature(witness, note, 0, [], witness=cosigner)
            assert verify_cosignature(note + lines, cosigner) > 0

            # A participant without a log key, and one unknown to the registry: 404, nothing stored.
            for name in ("bg.lakou.mq", "nobody.example.mq"):
                stranger = log_signer(f"{name}/tlog", 7)
                slog_url = f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
                await upgrade(slog_url)
                slog_engine = create_engine(slog_url)
                slog = TransactionLog(session_factory(slog_engine), stranger, stranger.name)
                await slog.append_batch([log_record(1)])
                answer = await http.post(witness + ADD_CHECKPOINT,
                                         content=("old 0\n\n" + await slog.checkpoint()).encode())
                await slog_engine.dispose()
                assert answer.status_code == 404, answer.text
                assert name in answer.text
    await log_engine.dispose()


def test_the_operator_cli_adds_a_log_key_and_refuses_a_bad_one(sqlite_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from beckn.cli import app as cli_app
    from beckn.keys import generate_key_pairs
    from registry.app import create_app
    from beckn.settings import Settings

    runner = CliRunner()
    keys = generate_key_pairs()
    key = log_signer("bpp.fdf.mq/tlog")
    base = ["registry", "add", "--subscriber-id", "bpp.fdf.mq", "--type", "BPP", "--url", "https://bpp.fdf.mq/beckn",
            "--db", sqlite_url, "--signing-public-key", keys.signing_public_key,
            "--encr-public-key", keys.encryption_public_key, "--unique-key-id", "k1"]
    bad = runner.invoke(cli_app, [*base, "--log-vkey", "hello"])
    assert bad.exit_code == 2 and "log_vkey" in bad.output, bad.output
    added = runner.invoke(cli_app, [*base, "--log-vkey", key.vkey])
    assert added.exit_code == 0, added.output
    with serve_app(create_app(Settings(data_dir=tmp_path / "registry", database_url=sqlite_url))) as registry:
        [found] = httpx.post(f"{registry}/lookup", json={"subscriber_id": "bpp.fdf.mq"}).json()
    assert found["log_vkey"] == key.vkey
