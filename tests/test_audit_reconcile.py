"""`lakou audit reconcile` over a real network (registry, gateway, BPP, BAP as `lakou serve`
processes on 127.0.0.1, each keeping its transaction log): a real search and select reconcile
cleanly; a message one side left out of its log, a body that differs between the two logs and a
signature made with a key the registry's history does not show valid are each flagged (exit 1)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785
from nacl.signing import SigningKey
from typer.testing import CliRunner

from beckn.cli import app
from beckn.keyfile import KEY_FILE, load_log_key
from beckn.keys import load_signing_key
from beckn.signing import Signer
from beckn.tlog import merkle, tiles
from beckn.tlog.note import Checkpoint, NoteSigner, checkpoint_text, sign_note
from beckn.tlog.receipt import make_receipt
from beckn.tlog.reconcile import KeyAt, LoggedMessage, NodeLog, match_logs
from conftest import scratch_postgres_database
from network import Network, ServiceProcess

runner = CliRunner()
AUDITOR_TOKEN = "reconcile-test-auditor-token"
AUDITORS = "cour-des-comptes=sha256:" + hashlib.sha256(AUDITOR_TOKEN.encode()).hexdigest()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bpp_database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The BPP's store: SQLite in its data dir, or a fresh PostgreSQL database for this module."""
    if request.param == "sqlite":
        yield {}
        return
    with scratch_postgres_database() as url:
        yield {"LAKOU_DATABASE_URL": url}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory, bpp_database: dict[str, str]
            ) -> Iterator[dict[str, ServiceProcess]]:
    net = Network(tmp_path_factory.mktemp("reconcile"))
    log_env = {"LAKOU_TLOG_AUDITOR_TOKENS": AUDITORS, "LAKOU_TLOG_CHECKPOINT_INTERVAL_SECONDS": "0.3"}
    try:
        registry = net.start("registry")
        net.wait_ready(registry)
        gateway = net.start("gateway", extra_env=log_env)
        # on_search goes through the gateway: traffic with a party whose log is not given.
        bpp = net.start("bpp", extra_env={**log_env, **bpp_database, "LAKOU_BPP_CATALOGUE": "demo",
                                          "LAKOU_BPP_ON_SEARCH_VIA": "gateway"})
        bap = net.start("bap", extra_env=log_env)
        net.wait_ready(gateway, bpp, bap)
        yield {"net": net, "registry": registry, "gateway": gateway, "bpp": bpp, "bap": bap}  # type: ignore[dict-item]
    finally:
        net.stop_all()


def _journey(bap: str) -> str:
    """Search through the gateway, then select one offer (BAP -> BPP and back): a transaction."""
    with httpx.Client(base_url=bap, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {client.post('/api/v1/sessions').json()['token']}"
        started = client.post("/api/v1/searches", json={"query": "rhum", "lang": "fr"})
        assert started.status_code == 202, started.text
        txn = started.json()["transaction_id"]
        offers: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not offers and time.monotonic() < deadline:
            offers = client.get(f"/api/v1/searches/{txn}/results", params={"wait_ms": 2000}).json()["offers"]
        assert offers, "no offer came back"
        chosen = offers[0]
        selected = client.post(f"/api/v1/transactions/{txn}/select", json={
            "bpp_id": chosen["bpp_id"], "provider_id": chosen["provider"]["id"],
            "items": [{"id": chosen["item"]["id"], "quantity": 1}], "wait_ms": 15000})
        assert selected.status_code == 200 and selected.json()["quote"]["total"]["value"], selected.text
    return txn


@pytest.fixture(scope="module")
def txn(network: dict[str, Any]) -> str:
    return _journey(network["bap"].url)


def reconcile(network: dict[str, Any], txn: str, *args: str, nodes: tuple[str, ...] = ("bap", "bpp")):  # noqa: ANN201
    urls = [a for name in nodes for a in ("--node", network[name].url)]
    return runner.invoke(app, ["audit", "reconcile", "--txn", txn, "--registry", network["registry"].url,
                               "--token", AUDITOR_TOKEN, "--wait", "30", *urls, *args])


def lines(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def flags(result: Any) -> list[dict[str, Any]]:
    return [line for line in lines(result) if line.get("flag")]


def _sid(service: ServiceProcess) -> str:
    return service.env["LAKOU_SUBSCRIBER_ID"]


def test_a_real_transaction_reconciles(network: dict[str, Any], txn: str, tmp_path: Path) -> None:
    result = reconcile(network, txn, "--json", "--save", str(tmp_path))
    assert result.exit_code == 0, result.stdout + result.stderr
    out = lines(result)
    matched = {(f["action"], f["sender"], f["receiver"]) for f in out if f["kind"] == "matched"}
    bap, bpp, gateway = (_sid(network[n]) for n in ("bap", "bpp", "gateway"))
    assert {("select", bap, bpp), ("on_select", bpp, bap)} <= matched
    # The search went through the gateway, whose log is not given: reported, not flagged.
    scope = {(f["action"], f.get("sender"), f.get("receiver")) for f in out if f["kind"] == "out_of_scope"}
    assert ("search", bap, gateway) in scope and ("on_search", gateway, bap) in scope
    assert out[-1] == {**out[-1], "kind": "summary", "reconciled": True, "flags": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{bap}.json", f"{bpp}.json"])

    # With the gateway's log too, the search and its answer are matched hop by hop.
    three = reconcile(network, txn, "--json", nodes=("bap", "bpp", "gateway"))
    assert three.exit_code == 0, three.stdout + three.stderr
    matched = {(f["action"], f["sender"], f["receiver"]) for f in lines(three) if f["kind"] == "matched"}
    assert {("search", bap, gateway), ("search", gateway, bpp), ("on_search", bpp, gateway),
            ("on_search", gateway, bap)} <= matched
    assert not [f for f in lines(three) if f["kind"] == "out_of_scope"]

    human = reconcile(network, txn)
    assert human.exit_code == 0 and "reconciled:" in human.stdout, human.stdout


def _bap_signer(network: dict[str, Any]) -> Signer:
    keys = json.loads((network["bap"].data_dir / KEY_FILE).read_text())
    return Signer(_sid(network["bap"]), keys["unique_key_id"], load_signing_key(keys["signing_private_key"]))


def _sent_body(export: dict[str, Any], action: str) -> dict[str, Any]:
    entry = next(e for e in export["entries"] if e["direction"] == "out" and e["action"] == action)
    return json.loads(base64.b64decode(entry["body"]))


def _inject(network: dict[str, Any], template: dict[str, Any], signer: Signer, *,
            created: int | None = None) -> tuple[str, httpx.Response]:
    """Send a copy of the BAP's select straight to the BPP, in a new transaction, signed by `signer`."""
    body = copy.deepcopy(template)
    txn = str(uuid.uuid4())
    body["context"].update(transaction_id=txn, message_id=str(uuid.uuid4()),
                           timestamp=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    raw = json.dumps(body, separators=(",", ":")).encode()
    url = body["context"]["bpp_uri"].rstrip("/") + "/select"
    response = httpx.post(url, content=raw, timeout=10, headers={
        "Content-Type": "application/json", "Authorization": signer.sign(raw, created=created)})
    return txn, response


@pytest.fixture(scope="module")
def exports(network: dict[str, Any], txn: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The BAP's and the BPP's exports of the transaction, saved by `reconcile --save` (it is done:
    no later message of it changes them)."""
    where = tmp_path_factory.mktemp("exports")
    result = reconcile(network, txn, "--json", "--save", str(where))
    assert result.exit_code == 0, result.stdout + result.stderr
    return {name: where / f"{_sid(network[name])}.json" for name in ("bap", "bpp")}


def _saved(exports: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """Copies of the saved exports, for a test to edit."""
    copies = {name: tmp_path / path.name for name, path in exports.items()}
    for name, path in exports.items():
        copies[name].write_bytes(path.read_bytes())
    return copies


def test_a_message_the_bap_did_not_log_is_flagged(network: dict[str, Any], exports: dict[str, Path]) -> None:
    """Signed with the BAP's real key, but not sent by the BAP service: the BAP's log lacks it."""
    template = _sent_body(json.loads(exports["bap"].read_text()), "select")
    injected, response = _inject(network, template, _bap_signer(network))
    assert response.status_code == 200 and response.json()["message"]["ack"]["status"] == "ACK", response.text
    result = reconcile(network, injected, "--json")
    assert result.exit_code == 1, result.stdout + result.stderr
    [flag] = [f for f in flags(result) if f["action"] == "select"]
    assert flag["kind"] == "left_out" and flag["node"] == _sid(network["bap"])
    assert flag["message"].startswith("left out by the BAP")
    human = reconcile(network, injected)
    assert human.exit_code == 1 and "left out by the BAP" in human.stdout and "NOT reconciled" in human.stdout


def test_a_message_left_out_of_the_bpps_export_is_flagged_with_its_receipt(
    network: dict[str, Any], txn: str, exports: dict[str, Path], tmp_path: Path
) -> None:
    files = _saved(exports, tmp_path)
    bpp_export = json.loads(files["bpp"].read_text())
    [dropped] = [e for e in bpp_export["entries"] if e["direction"] == "in" and e["action"] == "select"]
    bpp_export["entries"].remove(dropped)
    files["bpp"].write_text(json.dumps(bpp_export))
    result = runner.invoke(app, ["audit", "reconcile", "--txn", txn, "--registry", network["registry"].url,
                                 "--export", str(files["bap"]), "--export", str(files["bpp"]), "--json"])
    assert result.exit_code == 1, result.stdout + result.stderr
    [flag] = [f for f in flags(result) if f["kind"] == "left_out"]
    assert flag["node"] == _sid(network["bpp"]) and flag["action"] == "select"
    assert flag["promised_index"] == dropped["leaf_index"]
    assert flag["message"].startswith("left out by the BPP")
    assert f"the BPP {_sid(network['bpp'])} promised it at index {dropped['leaf_index']}" in flag["message"]
    # The gap also shows in the BPP's own chain of entries.
    assert any(f["kind"] == "integrity" and "prev chain" in f["message"] for f in flags(result))

    # Unchanged files reconcile, offline.
    ok = runner.invoke(app, ["audit", "reconcile", "--txn", txn, "--registry", network["registry"].url,
                             *(a for p in exports.values() for a in ("--export", str(p)))])
    assert ok.exit_code == 0, ok.stdout


def _forge(export: dict[str, Any], bpp: ServiceProcess, index: int, new_body: bytes) -> dict[str, Any]:
    """What a dishonest BPP could serve: its log rebuilt with another body for entry `index`, every
    proof recomputed and a new checkpoint signed with its real log key. Each log still verifies on
    its own; only the comparison with the BAP's log can tell."""
    forged = copy.deepcopy(export)
    entry = next(e for e in forged["entries"] if e["leaf_index"] == index)
    salt = base64.b64decode(entry["salt"])
    fields = json.loads(base64.b64decode(entry["leaf"]))
    fields["body"] = "sha256:" + hashlib.sha256(salt + new_body).hexdigest()
    leaf = rfc8785.dumps(fields)
    entry.update(leaf=base64.b64encode(leaf).decode(), body=base64.b64encode(new_body).decode(),
                 leaf_hash=base64.b64encode(merkle.leaf_hash(leaf)).decode())
    size = int(forged["checkpoint"].split("\n")[1])
    # Every leaf of its log, from its own tlog-tiles (whatever its database).
    hashes = []
    for tile in tiles.tiles_for_size(size):
        if tile.level == 0:
            bundle = httpx.get(f"{bpp.url}/tlog/{tiles.Tile(tiles.ENTRIES, tile.index, tile.width).path}", timeout=5)
            hashes += [merkle.leaf_hash(leaf) for leaf in tiles.parse_entry_bundle(bundle.content)]
    assert len(hashes) == size
    hashes[index] = merkle.leaf_hash(leaf)
    # The chain: the next entry of the transaction names this one's hash.
    later = [e for e in forged["entries"] if e["leaf_index"] > index]
    if later:
        nxt = later[0]
        nfields = json.loads(base64.b64decode(nxt["leaf"]))
        nfields["prev"] = merkle.leaf_hash(leaf).hex()
        nleaf = rfc8785.dumps(nfields)
        nxt.update(leaf=base64.b64encode(nleaf).decode(), leaf_hash=base64.b64encode(merkle.leaf_hash(nleaf)).decode())
        hashes[nxt["leaf_index"]] = merkle.leaf_hash(nleaf)
    tree = merkle.subtree_from_leaves(hashes)
    for e in forged["entries"]:
        if e["leaf_index"] < size:
            e["proof"] = [base64.b64encode(h).decode() for h in merkle.inclusion_proof(e["leaf_index"], size, tree)]
    keys = json.loads((bpp.data_dir / KEY_FILE).read_text())
    origin = forged["checkpoint"].split("\n")[0]
    forged["checkpoint"] = sign_note(checkpoint_text(Checkpoint(origin, size, merkle.root(hashes))),
                                     [NoteSigner(origin, load_log_key(keys))])
    return forged


def test_a_body_that_differs_between_the_logs_is_flagged(network: dict[str, Any], txn: str, exports: dict[str, Path],
                                                         tmp_path: Path) -> None:
    files = _saved(exports, tmp_path)
    bpp_export = json.loads(files["bpp"].read_text())
    entry = next(e for e in bpp_export["entries"] if e["direction"] == "in" and e["action"] == "select")
    body = base64.b64decode(entry["body"]).replace(b'"count":1', b'"count":9')
    assert body != base64.b64decode(entry["body"])
    files["bpp"].write_text(json.dumps(_forge(bpp_export, network["bpp"], entry["leaf_index"], body)))
    result = runner.invoke(app, ["audit", "reconcile", "--txn", txn, "--registry", network["registry"].url,
                                 "--export", str(files["bap"]), "--export", str(files["bpp"]), "--json"])
    assert result.exit_code == 1, result.stdout + result.stderr
    kinds = {(f["kind"], f.get("action")) for f in flags(result)}
    # The BPP's own log verifies (its key signed the forged checkpoint): no integrity flag ...
    assert not [f for f in flags(result) if f["kind"] in ("integrity", "checkpoint")], flags(result)
    # ... but the body differs from what the BAP sent, and the BAP's signature does not cover it.
    assert ("body_mismatch", "select") in kinds and ("signature", "select") in kinds
    [mismatch] = [f for f in flags(result) if f["kind"] == "body_mismatch"]
    assert mismatch["body_sha256"] == hashlib.sha256(base64.b64decode(
        next(e for e in json.loads(files["bap"].read_text())["entries"]
             if e["direction"] == "out" and e["action"] == "select")["body"])).hexdigest()


def test_a_signature_by_a_key_not_valid_at_its_time_is_flagged(network: dict[str, Any], txn: str,
                                                                exports: dict[str, Path]) -> None:
    """The BAP rotates to a second key, which the registry then revokes. The BPP still has the key
    in its lookup cache (LAKOU_LOOKUP_CACHE_SECONDS) and accepts a message signed after the
    revocation; the registry's key history shows the key was not valid then."""
    registry, admin = network["registry"].url, {"Authorization": f"Bearer {network['net'].admin_token}"}
    bap = _sid(network["bap"])
    [record] = [r for r in httpx.post(f"{registry}/lookup", json={"subscriber_id": bap}, timeout=5).json()]
    second, ukid = SigningKey.generate(), f"rotated-{uuid.uuid4().hex[:8]}"
    added = httpx.post(f"{registry}/admin/participants", headers=admin, timeout=5, json={
        **{k: record[k] for k in ("subscriber_id", "type", "url", "domain", "city", "country")},
        "unique_key_id": ukid, "signing_public_key": base64.b64encode(bytes(second.verify_key)).decode(),
        "encr_public_key": record["encr_public_key"]})
    assert added.status_code == 201, added.text
    # The key is valid from the moment it was added (milliseconds) and signatures carry whole
    # seconds: sign from the next whole second on, or the first message predates its key.
    time.sleep(math.ceil(time.time()) - time.time() + 0.05)
    # The BAP's current key no longer carries its log key: its log and receipts still verify, with
    # the log key published with the Beckn key valid when it signed.
    rotated = reconcile(network, txn, "--json")
    assert rotated.exit_code == 0, flags(rotated)
    signer = Signer(bap, ukid, second)
    template = _sent_body(json.loads(exports["bap"].read_text()), "select")
    before, ok = _inject(network, template, signer)  # the BPP looks the new key up and caches it
    assert ok.status_code == 200, ok.text
    revoked = httpx.post(f"{registry}/admin/participants/{bap}/keys/{ukid}/revoke", headers=admin, json={}, timeout=5)
    assert revoked.status_code == 200, revoked.text
    # Signed the second after the revocation (within the receiver's allowed clock skew).
    after, accepted = _inject(network, template, signer, created=math.ceil(time.time()) + 1)
    assert accepted.status_code == 200, accepted.text

    late = reconcile(network, after, "--json")
    assert late.exit_code == 1
    [flag] = [f for f in flags(late) if f["kind"] == "key"]
    assert flag["node"] == _sid(network["bpp"]) and flag["action"] == "select"
    assert f"{bap}|{ukid}|ed25519" in flag["message"] and "not show valid" in flag["message"]
    # The message signed while the key was valid has no key flag (it is still not in the BAP's log).
    early = reconcile(network, before, "--json")
    assert early.exit_code == 1 and not [f for f in flags(early) if f["kind"] in ("key", "signature")]
    assert [f["kind"] for f in flags(early) if f["action"] == "select"] == ["left_out"]


def test_usage_errors_exit_2(network: dict[str, Any], tmp_path: Path) -> None:
    base = ["audit", "reconcile", "--txn", "t", "--registry", network["registry"].url]
    assert runner.invoke(app, base).exit_code == 2
    assert runner.invoke(app, [*base, "--node", network["bap"].url]).exit_code == 2  # no token
    wrong = runner.invoke(app, [*base, "--node", network["bap"].url, "--token", "nope"])
    assert wrong.exit_code == 2 and "HTTP 401" in wrong.stderr
    unknown = reconcile(network, f"no-such-{uuid.uuid4()}")
    assert unknown.exit_code == 2 and "none of the logs given has an entry" in unknown.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("[]")
    assert runner.invoke(app, [*base, "--export", str(junk)]).exit_code == 2



# ---------------------------------------------------------------- the matching rules, on their own
# beckn.tlog.reconcile.match_logs over logs as verify_log leaves them: no server needed.


class _Keys:
    """A registry whose key history holds the given log keys (and no signing key)."""

    def __init__(self, log_keys: dict[str, str]) -> None:
        self._log_keys = log_keys

    def signing_key(self, subscriber_id: str, unique_key_id: str, at: datetime) -> KeyAt:
        return KeyAt(None, "not used here")

    def log_vkeys(self, subscriber_id: str, at: Any = ()) -> list[str]:
        return [self._log_keys[subscriber_id]] if subscriber_id in self._log_keys else []

    def role(self, subscriber_id: str) -> str | None:
        return None


LOG_KEYS = {name: NoteSigner.from_seed(f"{name}/tlog", bytes([n]) * 32)
            for n, name in enumerate(("bap.mq", "bpp1.mq", "bpp2.mq", "bg.mq"), start=1)}
GATEWAY_SIGNER = Signer("bg.mq", "k1", SigningKey(b"\x05" * 32))


def _m(node: str, index: int, direction: str, action: str, body: bytes, *, ack: str | None = "ACK",
       peer: str | None = None, headers: dict[str, str] | None = None, erased: bool = False) -> LoggedMessage:
    return LoggedMessage(node=node, index=index, leaf_hash=hashlib.sha256(f"{node}{index}".encode()).digest(),
                         direction=direction, action=action,  # type: ignore[arg-type]
                         message_id="m-1", ack=ack, code=None, peer=peer, seen=None,
                         body=None if erased else body, headers=headers or {}, proven=True)


def _receipt(receiver: LoggedMessage, body: bytes) -> str:
    signer = LOG_KEYS[receiver.node]
    return make_receipt(signer, origin=signer.name, index=receiver.index, leaf_hash=receiver.leaf_hash, body=body,
                        timestamp=1_790_000_000)


def _match(*logs: NodeLog) -> list[Any]:
    return match_logs(logs, _Keys({n: s.vkey for n, s in LOG_KEYS.items()}))


def test_retries_count_once_and_refused_messages_are_not_flagged() -> None:
    body, other = b'{"select":1}', b'{"init":1}'
    received = _m("bpp1.mq", 7, "in", "select", body, peer="bap.mq")
    bap = NodeLog("bap.mq", "BAP", None, [
        _m("bap.mq", 1, "out", "select", body, ack=None, peer="bpp1.mq"),  # timed out, then retried
        _m("bap.mq", 2, "out", "select", body, peer="bpp1.mq",
           headers={"x-lakou-log-receipt": _receipt(received, body)}),
        _m("bap.mq", 3, "out", "init", other, ack="NACK", peer="bpp1.mq"),
    ])
    bpp = NodeLog("bpp1.mq", "BPP", None, [received, _m("bpp1.mq", 8, "in", "init", other, ack="NACK", peer="bap.mq")])
    findings = _match(bap, bpp)
    assert [(f.kind, f.action, f.flag) for f in findings] == [("matched", "select", False),
                                                              ("not_delivered", "init", False)]
    assert findings[0].entries == (("bap.mq", 1), ("bap.mq", 2), ("bpp1.mq", 7))


def test_a_broadcast_is_one_message_per_receiver_and_receipts_name_the_receiver() -> None:
    body = b'{"search":1}'
    countersigned = {"authorization": "x", "x-gateway-authorization": GATEWAY_SIGNER.sign(body)}
    at_bpp1 = _m("bpp1.mq", 4, "in", "search", body, peer="bap.mq", headers=countersigned)
    promised_by_bpp2 = _m("bpp2.mq", 9, "in", "search", body, peer="bap.mq", headers=countersigned)
    gateway = NodeLog("bg.mq", "BG", None, [
        _m("bg.mq", 1, "out", "search", body, headers={"x-lakou-log-receipt": _receipt(at_bpp1, body)}),
        _m("bg.mq", 2, "out", "search", body, headers={"x-lakou-log-receipt": _receipt(promised_by_bpp2, body)}),
    ])
    findings = _match(gateway, NodeLog("bpp1.mq", "BPP", None, [at_bpp1]), NodeLog("bpp2.mq", "BPP", None, []))
    assert [(f.kind, f.receiver) for f in findings] == [("matched", "bpp1.mq"), ("left_out", "bpp2.mq")]
    assert findings[1].flag and findings[1].promised_index == 9 and "promised it at index 9" in findings[1].message
    # A receipt the receiver did not sign proves nothing, and says so.
    forged = make_receipt(NoteSigner.from_seed("bpp2.mq/tlog", b"\x09" * 32), origin="bpp2.mq/tlog", index=9,
                          leaf_hash=promised_by_bpp2.leaf_hash, body=body, timestamp=1_790_000_000)
    gateway.entries[1] = _m("bg.mq", 2, "out", "search", body, headers={"x-lakou-log-receipt": forged})
    findings = _match(gateway, NodeLog("bpp1.mq", "BPP", None, [at_bpp1]), NodeLog("bpp2.mq", "BPP", None, []))
    assert ("receipt", True) in {(f.kind, f.flag) for f in findings}


def test_an_erased_copy_is_reported_not_flagged() -> None:
    body = b'{"confirm":1}'
    bap = NodeLog("bap.mq", "BAP", None, [_m("bap.mq", 1, "out", "confirm", body, peer="bpp1.mq")])
    bpp = NodeLog("bpp1.mq", "BPP", None, [_m("bpp1.mq", 3, "in", "confirm", body, peer="bap.mq", erased=True)])
    [finding] = _match(bap, bpp)
    assert finding.kind == "erased" and not finding.flag
