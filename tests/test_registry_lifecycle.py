"""The operator's lifecycle decisions, served for real: approve, suspend, revoke a key, revoke a
participant, their audit trail, the refusals of illegal transitions, and `lakou registry
list|approve|suspend|revoke|audit` over the admin API. Storage-touching tests run on SQLite and
PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from beckn.cli import app as cli_app
from beckn.keys import generate_key_pairs
from test_registry_subscribe import ADMIN, TOKEN, body, network, new_subscriber, subscribe
from test_registry_subscribe import entries as admin_entries
from test_registry_subscribe import lookup as registry_lookup

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

NOW = datetime.now(UTC)
runner = CliRunner()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(subscriber_id: str, type_: str = "BPP", **over: Any) -> dict[str, Any]:
    keys = generate_key_pairs()
    base = {
        "subscriber_id": subscriber_id, "type": type_, "url": f"https://{subscriber_id}/beckn",
        "domain": "lakou:retail", "city": "", "country": "MTQ", "unique_key_id": str(uuid.uuid4()),
        "signing_public_key": keys.signing_public_key, "encr_public_key": keys.encryption_public_key,
        "valid_from": stamp(NOW - timedelta(days=1)), "valid_until": stamp(NOW + timedelta(days=365)),
    }
    return base | over


@contextlib.contextmanager
def registry_at(db_url: str, data_dir: Path, **settings: Any) -> Iterator[Any]:
    with network(db_url, data_dir, **settings) as n:
        yield n


@pytest.fixture
def reg(db_url: str, tmp_path: Path) -> Iterator[Any]:
    with registry_at(db_url, tmp_path) as n:
        yield n


@pytest.fixture
def sqlite_reg(sqlite_url: str, tmp_path: Path) -> Iterator[Any]:
    with registry_at(sqlite_url, tmp_path) as n:
        yield n


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


async def add(http: httpx.AsyncClient, n: Any, entry: dict[str, Any]) -> httpx.Response:
    response = await http.post(f"{n.registry}/admin/participants", json=entry, headers=ADMIN)
    assert response.status_code in (200, 201), response.text
    return response


async def decide(http: httpx.AsyncClient, n: Any, path: str, *, status: int = 200, **payload: Any) -> dict[str, Any]:
    response = await http.post(f"{n.registry}/admin/participants/{path}", json=payload or None, headers=ADMIN)
    assert response.status_code == status, response.text
    return response.json()


async def audit(http: httpx.AsyncClient, n: Any, subscriber_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"{n.registry}/admin/audit", params={"subscriber_id": subscriber_id}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


# ------------------------------------------------------------------ the admin API


async def test_the_operator_approves_a_subscriber_waiting_for_it(
    db_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    with registry_at(db_url, tmp_path, registry_auto_approve=False) as n:
        sub = new_subscriber(n)
        assert (await subscribe(http, n, body(n, sub), sub.signer)).json()["status"] == "UNDER_SUBSCRIPTION"
        assert await registry_lookup(http, n, subscriber_id=sub.subscriber_id) == []

        done = await decide(http, n, f"{sub.subscriber_id}/approve", actor="marie", reason="papers checked")

        assert done["changed"] is True
        [change] = done["changes"]
        assert (change["action"], change["from"], change["to"], change["actor"], change["reason"]) == (
            "approve", "UNDER_SUBSCRIPTION", "SUBSCRIBED", "marie", "papers checked")
        assert [e["status"] for e in done["entries"]] == ["SUBSCRIBED"]
        [found] = await registry_lookup(http, n, subscriber_id=sub.subscriber_id)
        assert found["ukId"] == sub.key_id
        # Repeating a decision is harmless and records nothing new.
        again = await decide(http, n, f"{sub.subscriber_id}/approve")
        assert again["changed"] is False and again["changes"] == []
        [row] = await audit(http, n, sub.subscriber_id)
        assert row["actor"] == "marie" and row["at"].endswith("Z")


async def test_a_suspension_is_reversible_and_survives_the_node_reposting_its_record(
    reg: Any, http: httpx.AsyncClient
) -> None:
    entry = record("bpp.suspendu.mq")
    await add(http, reg, entry)

    done = await decide(http, reg, "bpp.suspendu.mq/suspend", reason="complaint under review")
    assert [(c["from"], c["to"]) for c in done["changes"]] == [("SUBSCRIBED", "UNSUBSCRIBED")]
    assert await registry_lookup(http, reg, subscriber_id="bpp.suspendu.mq") == []
    # A node re-posts its record at every start with the operator token: that must not undo it.
    reposted = await add(http, reg, entry)
    assert reposted.json()["status"] == "UNSUBSCRIBED"
    assert await registry_lookup(http, reg, subscriber_id="bpp.suspendu.mq") == []
    # Nor can the participant subscribe itself back (registry/subscribe.py), but approve can.
    await decide(http, reg, "bpp.suspendu.mq/approve")
    [found] = await registry_lookup(http, reg, subscriber_id="bpp.suspendu.mq")
    assert found["ukId"] == entry["unique_key_id"]
    assert [(r["action"], r["from"], r["to"]) for r in await audit(http, reg, "bpp.suspendu.mq")] == [
        ("approve", "UNSUBSCRIBED", "SUBSCRIBED"), ("suspend", "SUBSCRIBED", "UNSUBSCRIBED")]


async def test_suspend_and_approve_can_target_one_entry(sqlite_reg: Any, http: httpx.AsyncClient) -> None:
    first = record("bpp.deux.mq", domain="lakou:retail")
    await add(http, sqlite_reg, first)
    await add(http, sqlite_reg, first | {"domain": "lakou:mobility"})
    await decide(http, sqlite_reg, "bpp.deux.mq/suspend", domain="lakou:mobility", type="sellerApp")
    statuses = {e["domain"]: e["status"] for e in await admin_entries(http, sqlite_reg, "bpp.deux.mq")}
    assert statuses == {"lakou:retail": "SUBSCRIBED", "lakou:mobility": "UNSUBSCRIBED"}
    [left] = await registry_lookup(http, sqlite_reg, subscriber_id="bpp.deux.mq")
    assert left["domain"] == "lakou:retail"


async def test_revoking_a_key_is_final_and_keeps_its_history(reg: Any, http: httpx.AsyncClient) -> None:
    entry = record("bap.revoque.mq", "BAP")
    await add(http, reg, entry)
    key_id = entry["unique_key_id"]
    before = datetime.now(UTC) - timedelta(seconds=1)

    done = await decide(http, reg, f"bap.revoque.mq/keys/{key_id}/revoke", reason="leaked")

    [change] = done["changes"]
    assert (change["unique_key_id"], change["from"], change["to"]) == (key_id, "valid", "revoked")
    [listed] = done["entries"][0]["keys"]
    assert listed["state"] == "revoked" and listed["revoked_at"]
    assert await registry_lookup(http, reg, subscriber_id="bap.revoke.mq") == []
    assert await registry_lookup(http, reg, subscriber_id="bap.revoque.mq") == []
    # Auditors still verify what it signed before the revocation.
    [then] = await registry_lookup(http, reg, subscriber_id="bap.revoque.mq", valid_at=stamp(before))
    assert then["ukId"] == key_id and then["revoked_at"] == listed["revoked_at"]
    # Never un-revoked, never re-added, never re-dated.
    twice = await decide(http, reg, f"bap.revoque.mq/keys/{key_id}/revoke", status=409)
    assert "already revoked" in twice["error"]["message"]
    readd = await http.post(f"{reg.registry}/admin/participants", json=entry, headers=ADMIN)
    assert readd.status_code == 409 and "revoked" in readd.json()["error"]["message"]
    # A new key id brings the participant back.
    fresh = record("bap.revoque.mq", "BAP")
    await add(http, reg, fresh)
    [found] = await registry_lookup(http, reg, subscriber_id="bap.revoque.mq")
    assert found["ukId"] == fresh["unique_key_id"]


async def test_revoking_a_participant_takes_out_every_entry_and_key(reg: Any, http: httpx.AsyncClient) -> None:
    first = record("bpp.banni.mq")
    await add(http, reg, first)
    await add(http, reg, first | {"domain": "lakou:mobility"})
    second = record("bpp.banni.mq")
    await add(http, reg, second)

    done = await decide(http, reg, "bpp.banni.mq/revoke", actor="ops", reason="fraud")

    assert sorted((c["action"], c["to"]) for c in done["changes"]) == [
        ("revoke_participant", "UNSUBSCRIBED")] * 2 + [("revoke_participant", "revoked")] * 2
    for entry in done["entries"]:
        assert entry["status"] == "UNSUBSCRIBED"
        assert {k["state"] for k in entry["keys"]} == {"revoked"}
    assert await registry_lookup(http, reg, subscriber_id="bpp.banni.mq") == []
    assert (await decide(http, reg, "bpp.banni.mq/revoke"))["changed"] is False
    # Approving it again needs a key that is not revoked.
    refused = await decide(http, reg, "bpp.banni.mq/approve", status=409)
    assert "no key valid now" in refused["error"]["message"]
    # A new key added by the operator (or a restarted node) does not lift the revocation by itself.
    fresh = record("bpp.banni.mq")
    assert (await add(http, reg, fresh)).json()["status"] == "UNSUBSCRIBED"
    await decide(http, reg, "bpp.banni.mq/approve", type="BPP", domain="lakou:retail")
    [found] = await registry_lookup(http, reg, subscriber_id="bpp.banni.mq")
    assert found["ukId"] == fresh["unique_key_id"]


@pytest.mark.parametrize(("status", "action", "allowed"), [
    ("INVALID_SSL", "approve", "/subscribe again"),
    ("EXPIRED", "approve", "add a new key"),
    ("UNSUBSCRIBED", "suspend", None),
])
async def test_illegal_transitions_are_refused_with_the_current_state(
    sqlite_reg: Any, http: httpx.AsyncClient, status: str, action: str, allowed: str | None
) -> None:
    from test_registry_did import execute

    await add(http, sqlite_reg, record("bpp.etat.mq"))
    await execute(sqlite_reg.db_url, "UPDATE registry_participant SET status = :s", s=status)
    response = await http.post(f"{sqlite_reg.registry}/admin/participants/bpp.etat.mq/{action}", headers=ADMIN)
    if allowed is None:  # already there: nothing to do, not an error
        assert response.status_code == 200 and response.json()["changed"] is False
        return
    assert response.status_code == 409, response.text
    message = response.json()["error"]["message"]
    assert f"it is {status}" in message and allowed in message
    assert "INITIATED, UNDER_SUBSCRIPTION, UNSUBSCRIBED" in message
    assert [e["status"] for e in await admin_entries(http, sqlite_reg, "bpp.etat.mq")] == [status]
    assert await audit(http, sqlite_reg, "bpp.etat.mq") == []


async def test_bad_requests_say_what_is_wrong(sqlite_reg: Any, http: httpx.AsyncClient) -> None:
    await add(http, sqlite_reg, record("bpp.ok.mq"))
    base = f"{sqlite_reg.registry}/admin/participants"
    cases = [
        ("bpp.inconnu.mq/approve", {}, 404, "no entry for subscriber_id 'bpp.inconnu.mq'"),
        ("bpp.ok.mq/keys/nope/revoke", {}, 404, "no key 'nope'"),
        ("bpp.ok.mq/approve", {"type": "merchant"}, 400, "unknown participant type"),
        ("bpp.ok.mq/approve", {"colour": "red"}, 400, "unknown field 'colour'"),
        ("bpp.ok.mq/suspend", {"actor": ""}, 400, "actor"),
        ("bpp.ok.mq/suspend", {"reason": "x\u0007"}, 400, "control character"),
        ("bpp.ok.mq/revoke", {"domain": "lakou:retail"}, 400, "use /suspend for one entry"),
        ("bpp.ok.mq/approve", {"type": "BAP"}, 404, "type='BAP'"),
    ]
    for path, payload, status, needle in cases:
        response = await http.post(f"{base}/{path}", json=payload, headers=ADMIN)
        assert response.status_code == status, (path, response.text)
        assert needle in response.json()["error"]["message"], (path, response.text)
    not_json = await http.post(f"{base}/bpp.ok.mq/approve", content=b"[1]", headers=ADMIN)
    assert not_json.status_code == 400
    anonymous = await http.post(f"{base}/bpp.ok.mq/revoke")
    assert anonymous.status_code == 401
    wrong = await http.post(f"{base}/bpp.ok.mq/revoke", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert [e["status"] for e in await admin_entries(http, sqlite_reg, "bpp.ok.mq")] == ["SUBSCRIBED"]


async def test_a_subscribed_entry_whose_keys_all_expired_shows_as_expired(reg: Any, http: httpx.AsyncClient) -> None:
    await add(http, reg, record("bpp.perime.mq", valid_from=stamp(NOW - timedelta(days=30)),
                                valid_until=stamp(NOW - timedelta(days=1))))
    await add(http, reg, record("bpp.vivant.mq"))
    statuses = {e["subscriber_id"]: (e["status"], e.get("recorded_status"))
                for e in (await http.get(f"{reg.registry}/admin/participants", headers=ADMIN)).json()}
    assert statuses == {"bpp.perime.mq": ("EXPIRED", "SUBSCRIBED"), "bpp.vivant.mq": ("SUBSCRIBED", None)}
    assert await registry_lookup(http, reg, subscriber_id="bpp.perime.mq") == []


# ------------------------------------------------------------------ the command line


def cli(*args: str, token: str | None = TOKEN, input_: str | None = None) -> Any:
    env = {"LAKOU_REGISTRY_ADMIN_TOKEN": token} if token is not None else {"LAKOU_REGISTRY_ADMIN_TOKEN": ""}
    return runner.invoke(cli_app, ["registry", *args], env=env, input=input_)


def test_cli_lists_approves_suspends_and_revokes_over_the_admin_api(sqlite_reg: Any, tmp_path: Path) -> None:
    url = ["--registry-url", sqlite_reg.registry]
    entry = record("bpp.cli.mq")
    assert httpx.post(f"{sqlite_reg.registry}/admin/participants", json=entry, headers=ADMIN).status_code == 201

    suspended = cli("suspend", "bpp.cli.mq", "--reason", "test", "--actor", "jo", *url)
    assert suspended.exit_code == 0, suspended.output
    assert "suspended: bpp.cli.mq BPP domain=lakou:retail SUBSCRIBED -> UNSUBSCRIBED" in suspended.output
    listed = cli("list", *url)
    assert listed.exit_code == 0, listed.output
    assert "Registry participants (1)" in listed.output and "UNSUBSCRIBED" in listed.output
    assert entry["unique_key_id"] in listed.output

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    approved = cli("approve", "bpp.cli.mq", "--token-file", str(token_file), *url, token=None)
    assert approved.exit_code == 0, approved.output
    assert "UNSUBSCRIBED -> SUBSCRIBED" in approved.output
    again = cli("approve", "bpp.cli.mq", *url)
    assert again.exit_code == 0 and "unchanged" in again.output

    # Revocation is final, so it asks first.
    declined = cli("revoke", "bpp.cli.mq", "--key", entry["unique_key_id"], *url, input_="n\n")
    assert declined.exit_code == 1 and "not revoked" in declined.output
    revoked = cli("revoke", "bpp.cli.mq", "--key", entry["unique_key_id"], "--yes", *url)
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked: bpp.cli.mq key {entry['unique_key_id']} valid -> revoked" in revoked.output
    assert httpx.post(f"{sqlite_reg.registry}/lookup", json={"subscriber_id": "bpp.cli.mq"}).json() == []

    trail = cli("audit", "bpp.cli.mq", *url)
    assert trail.exit_code == 0, trail.output
    for text in ("Registry decisions (3)", "revoke_key", "approve", "suspend", "jo", "test"):
        assert text in trail.output, text


def test_cli_refusals_exit_1_and_bad_input_exits_2(sqlite_reg: Any) -> None:
    url = ["--registry-url", sqlite_reg.registry]
    entry = record("bpp.refus.mq")
    httpx.post(f"{sqlite_reg.registry}/admin/participants", json=entry, headers=ADMIN)
    assert cli("revoke", "bpp.refus.mq", "--yes", *url).exit_code == 0

    illegal = cli("approve", "bpp.refus.mq", *url)
    assert illegal.exit_code == 1 and "refused (409)" in illegal.output and "no key valid now" in illegal.output
    twice = cli("revoke", "bpp.refus.mq", "--key", entry["unique_key_id"], "--yes", *url)
    assert twice.exit_code == 1 and "already revoked" in twice.output
    wrong_token = cli("list", *url, token="not-the-token")
    assert wrong_token.exit_code == 1 and "wrong Bearer token" in wrong_token.output
    dead = cli("list", "--registry-url", "http://127.0.0.1:9")
    assert dead.exit_code == 1 and "cannot reach the registry" in dead.output

    unknown = cli("suspend", "bpp.nulle-part.mq", *url)
    assert unknown.exit_code == 2 and "no entry for subscriber_id" in unknown.output
    bad_type = cli("suspend", "bpp.refus.mq", "--type", "merchant", *url)
    assert bad_type.exit_code == 2 and "unknown participant type" in bad_type.output
    no_token = cli("list", *url, token=None)
    assert no_token.exit_code == 2 and "LAKOU_REGISTRY_ADMIN_TOKEN" in no_token.output
    bad_url = cli("list", "--registry-url", "registry.lakou.mq")
    assert bad_url.exit_code == 2 and "http://" in bad_url.output
