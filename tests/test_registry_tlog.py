"""The registry's own signed transaction log (issue 8, registry/tlog.py), served for real: subscribes
in both dialects with their on_subscribe challenges, lookups, the auditor API and `lakou audit
verify` against the log key the registry publishes at /registry-key, and lookups that keep
answering while the log is stuck. Storage-touching tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.keys import generate_key_pairs, load_signing_key, load_verify_key
from beckn.signing import Signer
from beckn.tlog import merkle
from beckn.tlog.api import hash_auditor_token
from beckn.tlog.note import NoteVerifier, open_checkpoint, parse_checkpoint, parse_note
from beckn.tlog.receipt import RECEIPT_HEADER, verify_receipt
from conftest import serve_app
from registry.app import create_app
from registry.settings import RegistrySettings
from registry.signed_response import DEFAULT_REGISTRY_ID, RESPONSE_SIGNATURE_HEADER, verify_lookup_response
from registry.tlog import MESSAGE_ID_HEADER
from test_registry_service import AUTH, TOKEN
from test_registry_service import record as admin_record
from test_registry_subscribe import body as core_body
from test_registry_subscribe import network as core_network
from test_registry_subscribe import new_subscriber, subscribe
from test_registry_subscribe_ondc import PII_STRINGS, ondc_body, participant
from test_registry_subscribe_ondc import network as ondc_network
from test_registry_subscribe_ondc import new_subscriber as ondc_subscriber
from test_registry_subscribe_ondc import subscribe as ondc_subscribe

AUDITOR = "registry-auditor-token"
ORIGIN = f"{DEFAULT_REGISTRY_ID}/tlog"
# Fast checkpoints, and an auditor for the sidecar export.
LOG = {"tlog_checkpoint_interval_seconds": 0.1, "tlog_auditor_tokens": f"auditor={hash_auditor_token(AUDITOR)}"}
LEAF_FIELDS = {"v", "dir", "action", "node", "peer", "txn", "msg", "ctx_ts", "seen", "ack", "code", "body", "auth",
               "prev"}
T = TypeVar("T")


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


async def wait_for(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def entry(http: httpx.AsyncClient, base: str, message_id: str, direction: str = "in") -> dict[str, Any]:
    """The inclusion proof of a logged message, once a checkpoint covers it, with its leaf decoded."""
    async def probe() -> dict[str, Any] | None:
        answer = await http.get(f"{base}/tlog/proof/inclusion",
                                params={"message_id": message_id, "direction": direction})
        if answer.status_code != 200:
            assert answer.status_code in (404, 409), answer.text  # not logged / not covered yet
            return None
        found = answer.json()
        found["fields"] = json.loads(base64.b64decode(found["leaf"]))
        return found
    return await wait_for(probe, f"message {message_id} in the log")


async def export(http: httpx.AsyncClient, base: str, txn: str) -> list[dict[str, Any]]:
    answer = await http.get(f"{base}/tlog/transactions/{txn}/sidecars",
                            headers={"Authorization": f"Bearer {AUDITOR}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def assert_no_personal_data(leaf: bytes, *values: str) -> None:
    assert set(json.loads(leaf)) == LEAF_FIELDS
    for value in values:
        assert value not in leaf.decode("utf-8"), value


async def published_log_key(http: httpx.AsyncClient, base: str) -> str:
    """The log key from the registry's signed key document, checked against its signing key."""
    answer = await http.get(f"{base}/registry-key")
    document = answer.json()
    verify_lookup_response(answer.content, answer.headers[RESPONSE_SIGNATURE_HEADER],
                           load_verify_key(document["signing_public_key"]), registry_id=document["subscriber_id"])
    assert document["log_origin"] == ORIGIN
    assert document["log_vkey"] != document["signing_public_key"]
    served = await http.get(f"{base}/tlog/vkey")
    assert served.text.strip() == document["log_vkey"]
    return document["log_vkey"]


async def test_subscribes_and_their_challenges_are_logged(db_url: str, tmp_path: Path,
                                                          http: httpx.AsyncClient) -> None:
    with core_network(db_url, tmp_path, **LOG) as n:
        vkey = await published_log_key(http, n.registry)
        sub = new_subscriber(n)
        payload = core_body(n, sub)
        raw = json.dumps(payload).encode()
        accepted = await subscribe(http, n, payload, sub.signer)
        assert accepted.status_code == 200, accepted.text
        txn = accepted.headers[MESSAGE_ID_HEADER]
        # The answer carries the signed receipt of its leaf: proof the registry logged the request.
        receipt = verify_receipt(accepted.headers[RECEIPT_HEADER], vkey, body=raw)
        found = await entry(http, n.registry, txn)
        assert (receipt.index, receipt.leaf_hash) == (found["leaf_index"], b64(found["leaf_hash"]))
        leaf = found["fields"]
        assert (leaf["dir"], leaf["action"], leaf["ack"], leaf["code"]) == ("in", "subscribe", "ACK", None)
        assert (leaf["node"], leaf["peer"], leaf["txn"]) == (DEFAULT_REGISTRY_ID, sub.subscriber_id, txn)
        assert_no_personal_data(b64(found["leaf"]), payload["url"], payload["signing_public_key"],
                                payload["encr_public_key"], payload["nonce"], "insee:97209")

        # The challenge sent, then the subscribe answered: one transaction, linked by `prev`.
        challenge, request = await export(http, n.registry, txn)
        challenge_leaf, request_leaf = json.loads(b64(challenge["leaf"])), json.loads(b64(request["leaf"]))
        assert (challenge["direction"], challenge["action"], challenge["peer"]) == ("out", "on_subscribe",
                                                                                     sub.subscriber_id)
        assert (challenge_leaf["ack"], challenge_leaf["txn"], challenge_leaf["prev"]) == ("ACK", txn, None)
        assert request_leaf["prev"] == b64(challenge["leaf_hash"]).hex()
        sent = json.loads(b64(challenge["body"]))
        assert sent["subscriber_id"] == sub.subscriber_id and "challenge" in sent
        assert set(json.loads(b64(challenge["response"]))) == {"answer"}
        assert "authorization" in challenge["headers"]  # the registry's signature over the challenge
        assert b64(request["body"]) == raw and json.loads(b64(request["response"]))["status"] == "SUBSCRIBED"
        assert request["headers"]["authorization"] == accepted.request.headers["authorization"]

        # A wrong answer to the challenge: the refusal and the failed challenge are both logged.
        n.peer.mode = "wrong"
        other = new_subscriber(n)
        refused = await subscribe(http, n, core_body(n, other), other.signer)
        assert refused.status_code == 422, refused.text
        assert RECEIPT_HEADER not in refused.headers
        refused_txn = refused.headers[MESSAGE_ID_HEADER]
        leaf = (await entry(http, n.registry, refused_txn))["fields"]
        assert (leaf["ack"], leaf["code"], leaf["peer"]) == ("NACK", "422", other.subscriber_id)
        challenge, _ = await export(http, n.registry, refused_txn)
        assert json.loads(b64(challenge["leaf"]))[("code")] == "wrong_answer"

        # Unsigned: refused before any challenge; the unverified subscriber id is not named.
        calls = len(n.peer.calls)
        unsigned = await subscribe(http, n, core_body(n, new_subscriber(n)), None)
        assert unsigned.status_code == 401
        leaf = (await entry(http, n.registry, unsigned.headers[MESSAGE_ID_HEADER]))["fields"]
        assert (leaf["ack"], leaf["code"], leaf["peer"]) == ("NACK", "401", None)
        assert len(await export(http, n.registry, unsigned.headers[MESSAGE_ID_HEADER])) == 1
        assert len(n.peer.calls) == calls


async def test_ondc_subscribes_are_logged_without_their_personal_data(sqlite_url: str, tmp_path: Path,
                                                                      http: httpx.AsyncClient) -> None:
    with ondc_network(sqlite_url, tmp_path, **LOG) as n:
        sub = ondc_subscriber(n)
        payload = ondc_body(n, sub, 2, [participant(n, "sellerApp")])
        accepted = await ondc_subscribe(http, n, payload, sub.signer)
        assert accepted.status_code == 200, accepted.text
        txn = accepted.headers[MESSAGE_ID_HEADER]
        found = await entry(http, n.registry, txn)
        assert (found["fields"]["action"], found["fields"]["ack"], found["fields"]["peer"]) == (
            "subscribe", "ACK", sub.subscriber_id)
        challenge, request = await export(http, n.registry, txn)
        assert (challenge["action"], json.loads(b64(challenge["leaf"]))["ack"]) == ("on_subscribe", "ACK")
        for leaf in (b64(challenge["leaf"]), b64(request["leaf"])):
            assert_no_personal_data(leaf, *PII_STRINGS)
        # The raw request, personal data included, is only in the erasable sidecar.
        assert b64(request["body"]) == json.dumps(payload).encode()

        nack = await ondc_subscribe(http, n, ondc_body(n, ondc_subscriber(n), 2, [participant(n, "sellerApp")]),
                                    sub.signer)  # signed by another subscriber's key
        assert nack.json()["message"] == {"ack": {"status": "NACK"}}
        leaf = (await entry(http, n.registry, nack.headers[MESSAGE_ID_HEADER]))["fields"]
        assert (leaf["ack"], leaf["code"], leaf["peer"]) == ("NACK", str(nack.status_code), None)
        assert_no_personal_data(b64((await entry(http, n.registry, nack.headers[MESSAGE_ID_HEADER]))["leaf"]),
                                *PII_STRINGS)


def audit_verify(base: str, vkey: str) -> Any:
    with capture_logs():
        return CliRunner().invoke(cli_app, ["audit", "verify", "--node", base, "--vkey", vkey, "--full"])


async def test_lookups_are_logged_and_the_log_verifies_against_the_published_key(
    db_url: str, tmp_path: Path, http: httpx.AsyncClient,
) -> None:
    with serve_app(create_app(RegistrySettings(data_dir=tmp_path, database_url=db_url, registry_admin_token=TOKEN,
                                               **LOG))) as base:
        vkey = await published_log_key(http, base)
        rec = admin_record("bpp.fdf.mq")
        assert (await http.post(f"{base}/admin/participants", json=rec, headers=AUTH)).status_code == 201
        found = await http.post(f"{base}/lookup", json={"subscriber_id": "bpp.fdf.mq"})
        assert [e["subscriber_id"] for e in found.json()] == ["bpp.fdf.mq"]
        unsigned = await http.post(f"{base}/v2.0/lookup", json={"country": "MTQ", "domain": "lakou:retail"})
        assert unsigned.status_code == 401
        bad = await http.post(f"{base}/vlookup", json={"sender_subscriber_id": "bap.lakou.mq"})
        assert bad.status_code == 400
        # A signed lookup names its verified signer as the leaf's peer.
        keys, kid = generate_key_pairs(), "k1"
        bap = admin_record("bap.lakou.mq", "BAP", unique_key_id=kid, signing_public_key=keys.signing_public_key,
                           encr_public_key=keys.encryption_public_key)
        assert (await http.post(f"{base}/admin/participants", json=bap, headers=AUTH)).status_code == 201
        raw = json.dumps({"country": "MTQ", "domain": "lakou:retail"}).encode()
        signer = Signer("bap.lakou.mq", kid, load_signing_key(keys.signing_private_key))
        signed = await http.post(f"{base}/v2.0/lookup", content=raw, headers={
            "Authorization": signer.sign(raw), "Content-Type": "application/json"})
        assert signed.status_code == 200, signed.text
        leaf = (await entry(http, base, signed.headers[MESSAGE_ID_HEADER]))["fields"]
        assert (leaf["action"], leaf["ack"], leaf["peer"]) == ("signed_lookup", "ACK", "bap.lakou.mq")

        leaves = {}
        for answer, action, ack, code in ((found, "lookup", "ACK", None), (unsigned, "signed_lookup", "NACK", "401"),
                                          (bad, "vlookup", "NACK", "400")):
            got = await entry(http, base, answer.headers[MESSAGE_ID_HEADER])
            leaf = got["fields"]
            assert (leaf["dir"], leaf["action"], leaf["ack"], leaf["code"], leaf["peer"]) == ("in", action, ack, code,
                                                                                              None)
            leaves[action] = got
        # The answer is kept as its status and hash only; the request bytes are in the sidecar.
        [side] = await export(http, base, found.headers[MESSAGE_ID_HEADER])
        assert json.loads(b64(side["response"])) == {"status": 200, "length": len(found.content),
                                                     "sha256": hashlib.sha256(found.content).hexdigest()}
        assert json.loads(b64(side["body"])) == {"subscriber_id": "bpp.fdf.mq"}

        # The checkpoint verifies with the key of /registry-key; so do the proofs, by index too.
        note = (await http.get(f"{base}/tlog/checkpoint")).text
        checkpoint, _, _ = open_checkpoint(note, NoteVerifier.from_vkey(vkey), origin=ORIGIN)
        got = leaves["lookup"]
        by_message = (await http.get(f"{base}/tlog/proof/inclusion", params={
            "message_id": found.headers[MESSAGE_ID_HEADER], "size": checkpoint.size})).json()
        merkle.verify_inclusion(b64(by_message["leaf_hash"]), by_message["leaf_index"], checkpoint.size,
                                [b64(h) for h in by_message["proof"]], checkpoint.root_hash)
        by_index = (await http.get(f"{base}/tlog/proof/inclusion",
                                   params={"index": got["leaf_index"], "size": checkpoint.size})).json()
        assert by_index["leaf_hash"] == got["leaf_hash"]
        merkle.verify_inclusion(b64(by_index["leaf_hash"]), got["leaf_index"], checkpoint.size,
                                [b64(h) for h in by_index["proof"]], checkpoint.root_hash)
        assert merkle.leaf_hash(b64(by_index["leaf"])) == b64(got["leaf_hash"])

        result = await asyncio.to_thread(audit_verify, base, vkey)
        assert result.exit_code == 0, result.output
        assert f"signed by {ORIGIN}" in result.stdout


async def test_lookups_answer_while_the_log_is_stuck_and_drops_are_counted(sqlite_url: str, tmp_path: Path,
                                                                           http: httpx.AsyncClient) -> None:
    settings = RegistrySettings(data_dir=tmp_path, database_url=sqlite_url, registry_admin_token=TOKEN,
                                registry_tlog_max_pending=1, **LOG)
    lookups = 30
    with serve_app(create_app(settings)) as base:
        rec = admin_record("bpp.fdf.mq")
        assert (await http.post(f"{base}/admin/participants", json=rec, headers=AUTH)).status_code == 201
        signing_key = load_verify_key((await http.get(f"{base}/registry-key")).json()["signing_public_key"])
        assert (await http.post(f"{base}/lookup", json={})).status_code == 200
        size_before = await wait_for(lambda: _checkpoint_size(http, base), "the first checkpoint")
        assert size_before == 1

        # Another writer holds the database's write lock: the log cannot commit anything.
        path = sqlite_url.split("///", 1)[1]
        blocker = sqlite3.connect(path, isolation_level=None, timeout=30)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            answers = await asyncio.gather(*(http.post(f"{base}/lookup", json={"subscriber_id": "bpp.fdf.mq"})
                                             for _ in range(lookups)))
            for answer in answers:  # every lookup answered, correctly and signed, log or no log
                assert answer.status_code == 200, answer.text
                assert [e["subscriber_id"] for e in answer.json()] == ["bpp.fdf.mq"]
                verify_lookup_response(answer.content, answer.headers[RESPONSE_SIGNATURE_HEADER], signing_key)

            # The log's writer is blocked with one batch, one record waits in the queue of 1: the
            # others are dropped and counted.
            assert (await http.get(f"{base}/health")).json()["tlog"]["dropped"] >= 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        # Once the database is free, the records kept are written: each lookup is in the log or
        # counted (dropped, or failed had the lock outlasted the store's busy timeout).
        async def accounted() -> int | None:
            health = (await http.get(f"{base}/health")).json()["tlog"]
            size = await _checkpoint_size(http, base)
            return size if size - size_before + health["dropped"] + health["failed"] == lookups else None
        assert await wait_for(accounted, "every lookup logged or counted") > size_before
        health = (await http.get(f"{base}/health")).json()["tlog"]
        assert (health["origin"], health["checkpoints"]) == (ORIGIN, "ok")


async def _checkpoint_size(http: httpx.AsyncClient, base: str) -> int:
    answer = await http.get(f"{base}/tlog/checkpoint")
    if answer.status_code == 404:
        return 0
    text, _ = parse_note(answer.text)
    return parse_checkpoint(text).size


async def test_the_log_can_be_turned_off_and_renamed(sqlite_url: str, tmp_path: Path,
                                                     http: httpx.AsyncClient) -> None:
    off = RegistrySettings(data_dir=tmp_path, database_url=sqlite_url, tlog_enabled=False)
    with serve_app(create_app(off)) as base:
        answer = await http.post(f"{base}/lookup", json={})
        assert answer.status_code == 200 and MESSAGE_ID_HEADER not in answer.headers
        assert (await http.get(f"{base}/tlog/checkpoint")).status_code == 404
        assert (await http.get(f"{base}/health")).json()["tlog"]["enabled"] is False
        published = await published_log_key(http, base)  # still published: the key exists
    renamed = RegistrySettings(data_dir=tmp_path / "other", database_url=sqlite_url.replace("lakou.db", "o.db"),
                               tlog_origin="registry.lakou.mq/tlog/2026h2", **LOG)
    with serve_app(create_app(renamed)) as base:
        document = (await http.get(f"{base}/registry-key")).json()
        assert document["log_origin"] == "registry.lakou.mq/tlog/2026h2"
        assert document["log_vkey"].startswith("registry.lakou.mq/tlog/2026h2+") and document["log_vkey"] != published
        answer = await http.post(f"{base}/lookup", json={})
        leaf = (await entry(http, base, answer.headers[MESSAGE_ID_HEADER]))["fields"]
        assert leaf["action"] == "lookup"
        note = (await http.get(f"{base}/tlog/checkpoint")).text
        open_checkpoint(note, NoteVerifier.from_vkey(document["log_vkey"]))


async def test_federated_lookups_sent_to_partners_are_logged(tmp_path: Path, http: httpx.AsyncClient) -> None:
    from conftest import free_port
    from test_registry_federation import GLP_ID, MTQ_ID, make_reg

    mtq, glp = make_reg(MTQ_ID, tmp_path), make_reg(GLP_ID, tmp_path)
    dead = {"id": "registry.down.test", "url": f"http://127.0.0.1:{free_port()}",
            "signing_public_key": glp.public_key}
    with mtq.serve([glp.partner(), dead], **LOG), glp.serve([], **LOG):
        assert (await http.post(f"{glp.url}/admin/participants", json=admin_record("bpp.glp.test"),
                                headers=AUTH)).status_code == 201
        answer = await http.post(f"{mtq.url}/lookup", json={"subscriber_id": "bpp.glp.test"})
        assert [e["origin_registry"] for e in answer.json()] == [GLP_ID]
        txn = answer.headers[MESSAGE_ID_HEADER]
        await entry(http, mtq.url, txn)
        *sent, received = await export(http, mtq.url, txn)
        assert (received["direction"], received["action"]) == ("in", "lookup")
        outcomes = {e["peer"]: json.loads(b64(e["leaf"])) for e in sent}
        assert {e["direction"] for e in sent} == {"out"} and {e["action"] for e in sent} == {"lookup"}
        assert (outcomes[GLP_ID]["ack"], outcomes[GLP_ID]["code"]) == ("ACK", None)
        assert (outcomes["registry.down.test"]["ack"], outcomes["registry.down.test"]["code"]) == (None, "unreachable")
        assert all(leaf["txn"] == txn for leaf in outcomes.values())
        kept = json.loads(b64(next(e for e in sent if e["peer"] == GLP_ID)["response"]))
        assert kept["status"] == 200 and len(kept["sha256"]) == 64
        # The partner logged the same lookup as received.
        assert any(e["action"] == "lookup" for e in await _all_entries(http, glp.url))


async def _all_entries(http: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    size = await wait_for(lambda: _checkpoint_size(http, base), "a checkpoint")
    out = []
    for index in range(size):
        got = (await http.get(f"{base}/tlog/proof/inclusion", params={"index": index})).json()
        out.append(json.loads(b64(got["leaf"])))
    return out
