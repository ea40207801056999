"""Key history at a time (`valid_at`), registry-signed lookup answers, ONDC's signed
`/v2.0/lookup` and `/vlookup`: served for real, storage-touching tests on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from referencing import Registry

from beckn.keys import generate_key_pairs, load_signing_key, load_verify_key
from beckn.signing import SignatureError, Signer
from registry.signed_response import RESPONSE_SIGNATURE_HEADER, verify_lookup_response
from test_registry_service import (  # helpers and fixtures only: its tests stay collected there alone
    AUTH,
    NOW,
    add,
    execute,
    running_registry,
    schema_errors,
    spec_registry,  # noqa: F401 - a fixture
    spec_validator,
    stamp,
)

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

DAY = timedelta(days=1)
REGISTRY_ID = "registry.lakou.localhost"


@dataclass
class Participant:
    record: dict[str, Any]
    signer: Signer
    signing_key: Any

    @property
    def subscriber_id(self) -> str:
        return self.record["subscriber_id"]

    @property
    def key_id(self) -> str:
        return self.record["unique_key_id"]


def participant(subscriber_id: str, type_: str = "BAP", **over: Any) -> Participant:
    """A registration with fresh keys, and the signer its node would sign with."""
    keys = generate_key_pairs()
    rec = {
        "subscriber_id": subscriber_id, "type": type_, "url": f"https://{subscriber_id}/beckn",
        "domain": "lakou:retail", "city": "", "country": "MTQ", "unique_key_id": str(uuid.uuid4()),
        "signing_public_key": keys.signing_public_key, "encr_public_key": keys.encryption_public_key,
        "valid_from": stamp(NOW - DAY), "valid_until": stamp(NOW + 365 * DAY),
    }
    rec.update(over)
    signing_key = load_signing_key(keys.signing_private_key)
    return Participant(rec, Signer(subscriber_id, rec["unique_key_id"], signing_key), signing_key)


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[str]:
    with running_registry(db_url, tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_registry(sqlite_url: str, tmp_path: Path) -> Iterator[str]:
    with running_registry(sqlite_url, tmp_path) as url:
        yield url


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def post_lookup(http: httpx.AsyncClient, base: str, body: Any) -> list[dict[str, Any]]:
    response = await http.post(f"{base}/lookup", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def registry_key(http: httpx.AsyncClient, base: str) -> Any:
    published = (await http.get(f"{base}/registry-key")).json()
    return load_verify_key(published["signing_public_key"])


async def signed_post(http: httpx.AsyncClient, url: str, body: dict[str, Any], signer: Signer | None,
                      **sign_args: Any) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if signer is not None:
        headers["Authorization"] = signer.sign(raw, **sign_args)
    return await http.post(url, content=raw, headers=headers)


# ------------------------------------------------------------------ key history: valid_at


async def test_valid_at_returns_the_keys_of_that_moment(registry: str, http: httpx.AsyncClient, db_url: str,
                                                        spec_registry: Registry) -> None:  # noqa: F811
    old = participant("bpp.hist.mq", "BPP", valid_from=stamp(NOW - 400 * DAY), valid_until=stamp(NOW - 30 * DAY))
    revoked = participant("bpp.hist.mq", "BPP", valid_from=stamp(NOW - 40 * DAY))
    current = participant("bpp.hist.mq", "BPP", valid_from=stamp(NOW - 5 * DAY))
    for p in (old, revoked, current):
        await add(http, registry, p.record)
    revoked_at = NOW - 10 * DAY
    await execute(db_url, "UPDATE registry_key SET revoked_at = :t WHERE unique_key_id = :k",
                  t=revoked_at, k=revoked.key_id)

    # Now: only the current key; the expired one is not served, even by name.
    [live] = await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq"})
    assert live["ukId"] == current.key_id
    assert await post_lookup(http, registry, {"ukId": old.key_id}) == []

    # A year ago: the key valid then, since expired and superseded.
    [then] = await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq", "valid_at": stamp(NOW - 365 * DAY)})
    assert (then["ukId"], then["signing_public_key"]) == (old.key_id, old.record["signing_public_key"])
    assert "revoked_at" not in then
    # Before its revocation, a revoked key still verifies what it signed, and says it was revoked.
    [before] = await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq", "valid_at": stamp(NOW - 20 * DAY)})
    assert before["ukId"] == revoked.key_id
    assert before["revoked_at"] == stamp(revoked_at)[:23] + "Z"
    # After it, no more (the current key is not valid yet then, the old one has expired).
    assert await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq",
                                              "valid_at": stamp(NOW - 8 * DAY)}) == []
    # Named by ukId at a time it was valid, in any time zone spelling.
    martinique = (NOW - 100 * DAY).astimezone(timezone(timedelta(hours=-4))).isoformat()
    assert [e["ukId"] for e in await post_lookup(http, registry, {"ukId": old.key_id, "valid_at": martinique})] == [
        old.key_id]

    # An entry that has since left stays verifiable in history lookups, with its current status;
    # one never confirmed (INITIATED) is not.
    await execute(db_url, "UPDATE registry_participant SET status = 'UNSUBSCRIBED' WHERE subscriber_id = :s",
                  s="bpp.hist.mq")
    assert await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq"}) == []
    [gone] = await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq", "valid_at": stamp(NOW - 365 * DAY)})
    assert (gone["ukId"], gone["status"]) == (old.key_id, "UNSUBSCRIBED")
    assert await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq", "valid_at": stamp(NOW - 365 * DAY),
                                              "status": "SUBSCRIBED"}) == []
    await execute(db_url, "UPDATE registry_participant SET status = 'INITIATED' WHERE subscriber_id = :s",
                  s="bpp.hist.mq")
    assert await post_lookup(http, registry, {"subscriber_id": "bpp.hist.mq", "valid_at": stamp(NOW - DAY)}) == []

    # History answers are registry.yaml Subscriptions too.
    element_schema = spec_validator(spec_registry, "/components/schemas/Subscription")
    for element in (then, before, gone):
        assert schema_errors(element_schema, element) == []

    # The history itself is all still there for the operator.
    [entry] = (await http.get(f"{registry}/admin/participants", headers=AUTH)).json()
    assert {k["unique_key_id"]: k["state"] for k in entry["keys"]} == {
        old.key_id: "expired", revoked.key_id: "revoked", current.key_id: "valid"}


@pytest.mark.parametrize(("valid_at", "needle"), [
    ("2026-01-01T00:00:00", "no time zone"),
    ("last year", "not an RFC 3339 date-time"),
    (1700000000, "must be an RFC 3339 date-time string"),
])
async def test_a_bad_valid_at_is_400(sqlite_registry: str, http: httpx.AsyncClient, valid_at: Any, needle: str) -> None:
    response = await http.post(f"{sqlite_registry}/lookup", json={"valid_at": valid_at})
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]["message"]
    assert response.json()["error"]["path"] == "valid_at"


# ------------------------------------------------------------------ signed answers


async def test_lookup_answers_are_signed_by_the_registry(sqlite_url: str, tmp_path: Path,
                                                         http: httpx.AsyncClient) -> None:
    with running_registry(sqlite_url, tmp_path) as base:
        await add(http, base, participant("bpp.fdf.mq", "BPP", city="insee:97209").record)
        published = (await http.get(f"{base}/registry-key")).json()
        assert published["subscriber_id"] == REGISTRY_ID
        assert published["key_id"] == f"{REGISTRY_ID}|{published['ukId']}|ed25519"
        assert published["response_signature_header"] == RESPONSE_SIGNATURE_HEADER
        assert not any("private" in name for name in published)
        key = load_verify_key(published["signing_public_key"])

        response = await http.post(f"{base}/lookup", json={"type": "BPP"})
        assert response.status_code == 200
        assert [e["subscriber_id"] for e in response.json()] == ["bpp.fdf.mq"]
        header = response.headers[RESPONSE_SIGNATURE_HEADER]
        params = verify_lookup_response(response.content, header, key, registry_id=REGISTRY_ID)
        assert params.unique_key_id == published["ukId"]
        assert params.expires - params.created == published["signature_validity_seconds"]
        assert abs(params.created - time.time()) < 10
        # An empty answer is signed too: "nobody matches" is worth proving as well.
        empty = await http.post(f"{base}/lookup", json={"subscriber_id": "bpp.nowhere.mq"})
        verify_lookup_response(empty.content, empty.headers[RESPONSE_SIGNATURE_HEADER], key)

        # A changed body, another key, another registry name, no header: refused, each saying why.
        tampered = response.content.replace(b"insee:97209", b"insee:97213")
        with pytest.raises(SignatureError, match="body differs"):
            verify_lookup_response(tampered, header, key)
        with pytest.raises(SignatureError, match="does not verify"):
            verify_lookup_response(response.content, header, load_verify_key(generate_key_pairs().signing_public_key))
        with pytest.raises(SignatureError, match="not by the registry"):
            verify_lookup_response(response.content, header, key, registry_id="registry.guadeloupe.gp")
        with pytest.raises(SignatureError, match=RESPONSE_SIGNATURE_HEADER):
            verify_lookup_response(response.content, None, key)
        # Relayed after its expiry it is stale; an auditor can still check what the registry said.
        later = params.expires + 1
        with pytest.raises(SignatureError, match="expired"):
            verify_lookup_response(response.content, header, key, now=later)
        verify_lookup_response(response.content, header, key, now=later, check_times=False)

    # The registry keeps its key across restarts (same data dir): cached answers stay verifiable.
    with running_registry(sqlite_url, tmp_path) as base:
        assert (await http.get(f"{base}/registry-key")).json() == published
        again = await http.post(f"{base}/lookup", json={})
        verify_lookup_response(again.content, again.headers[RESPONSE_SIGNATURE_HEADER], key)


# ------------------------------------------------------------------ ONDC /v2.0/lookup


async def test_v2_lookup_needs_a_registered_participants_signature(registry: str, http: httpx.AsyncClient,
                                                                   spec_registry: Registry) -> None:  # noqa: F811
    bap = participant("bap.lakou.mq", "BAP")
    bpp = participant("bpp.fdf.mq", "BPP", city="insee:97209")
    await add(http, registry, bap.record)
    await add(http, registry, bpp.record)
    url = f"{registry}/v2.0/lookup"
    body = {"country": "MTQ", "domain": "lakou:retail", "type": "sellerApp"}

    unsigned = await signed_post(http, url, body, None)
    assert unsigned.status_code == 401
    assert "Authorization: Signature" in unsigned.json()["error"]["message"]
    assert unsigned.headers["WWW-Authenticate"].startswith(f'Signature realm="{REGISTRY_ID}"')

    stranger = participant("bap.stranger.mq")
    refused = await signed_post(http, url, body, stranger.signer)
    assert refused.status_code == 401
    assert "'bap.stranger.mq' is not a SUBSCRIBED participant" in refused.json()["error"]["message"]

    wrong_key = Signer(bap.subscriber_id, str(uuid.uuid4()), bap.signing_key)
    refused = await signed_post(http, url, body, wrong_key)
    assert refused.status_code == 401 and "no key bap.lakou.mq|" in refused.json()["error"]["message"]

    impostor = Signer(bap.subscriber_id, bap.key_id, stranger.signing_key)  # the right keyId, another key
    refused = await signed_post(http, url, body, impostor)
    assert refused.status_code == 401 and "does not verify" in refused.json()["error"]["message"]

    stale = await signed_post(http, url, body, bap.signer, created=int(time.time()) - 7200,
                              expires=int(time.time()) - 3600)
    assert stale.status_code == 401 and "expired" in stale.json()["error"]["message"]

    # Signed over other bytes than those sent.
    raw = json.dumps(body).encode()
    moved = await http.post(url, content=raw.replace(b"MTQ", b"GLP"),
                            headers={"Authorization": bap.signer.sign(raw), "Content-Type": "application/json"})
    assert moved.status_code == 401 and "body differs" in moved.json()["error"]["message"]

    garbled = await http.post(url, content=raw, headers={"Authorization": "Signature keyId=bap.lakou.mq"})
    assert garbled.status_code == 401 and "lacks required parameter(s): algorithm" in garbled.json()["error"]["message"]

    # ONDC's rule: at least two parameters.
    too_broad = await signed_post(http, url, {"country": "MTQ", "city": "*"}, bap.signer)
    assert too_broad.status_code == 400 and "at least 2 search parameters" in too_broad.json()["error"]["message"]

    ok = await signed_post(http, url, body, bap.signer)
    assert ok.status_code == 200, ok.text
    [found] = ok.json()
    assert (found["subscriber_id"], found["type"], found["ukId"]) == ("bpp.fdf.mq", "BPP", bpp.key_id)
    verify_lookup_response(ok.content, ok.headers[RESPONSE_SIGNATURE_HEADER], await registry_key(http, registry))
    element_schema = spec_validator(spec_registry, "/components/schemas/Subscription")
    assert schema_errors(element_schema, found) == []

    by_key = await signed_post(http, url, {"subscriber_id": "bpp.fdf.mq", "ukId": bpp.key_id}, bap.signer)
    assert [e["ukId"] for e in by_key.json()] == [bpp.key_id]


async def test_v2_lookup_refuses_a_revoked_or_not_yet_valid_key(registry: str, http: httpx.AsyncClient,
                                                                 db_url: str) -> None:
    bap = participant("bap.lakou.mq")
    future = participant("bap.lakou.mq", valid_from=stamp(NOW + 2 * DAY))
    await add(http, registry, bap.record)
    await add(http, registry, future.record)
    url = f"{registry}/v2.0/lookup"
    body = {"country": "MTQ", "type": "BAP"}

    early = await signed_post(http, url, body, Signer(bap.subscriber_id, future.key_id, future.signing_key))
    assert early.status_code == 401 and "not at the signature's created" in early.json()["error"]["message"]

    assert (await signed_post(http, url, body, bap.signer)).status_code == 200
    await execute(db_url, "UPDATE registry_key SET revoked_at = CURRENT_TIMESTAMP WHERE unique_key_id = :k",
                  k=bap.key_id)
    revoked = await signed_post(http, url, body, bap.signer)
    assert revoked.status_code == 401 and "was revoked at" in revoked.json()["error"]["message"]


# ------------------------------------------------------------------ ONDC /vlookup


def vlookup_body(sender: Participant, parameters: dict[str, str], *, sign_with: Any = None,
                 signed: str | None = None) -> dict[str, Any]:
    message = signed if signed is not None else "|".join(
        parameters.get(n, "") for n in ("country", "domain", "type", "city", "subscriber_id"))
    signature = (sign_with or sender.signing_key).sign(message.encode()).signature
    return {"sender_subscriber_id": sender.subscriber_id, "request_id": str(uuid.uuid4()),
            "timestamp": stamp(datetime.now(UTC)), "signature": base64.b64encode(signature).decode(),
            "search_parameters": parameters}


async def test_vlookup_checks_the_signed_search_parameters(registry: str, http: httpx.AsyncClient) -> None:
    bap = participant("bap.lakou.mq", "BAP")
    bpp = participant("bpp.fdf.mq", "BPP", city="insee:97209")
    gateway = participant("gw.lakou.mq", "BG")
    for p in (bap, bpp, gateway):
        await add(http, registry, p.record)
    url = f"{registry}/vlookup"
    parameters = {"country": "MTQ", "domain": "lakou:retail", "type": "sellerApp", "city": "insee:97209",
                  "subscriber_id": ""}

    ok = await http.post(url, json=vlookup_body(bap, parameters))
    assert ok.status_code == 200, ok.text
    assert [(e["subscriber_id"], e["type"]) for e in ok.json()] == [("bpp.fdf.mq", "BPP")]
    verify_lookup_response(ok.content, ok.headers[RESPONSE_SIGNATURE_HEADER], await registry_key(http, registry))
    gateways = await http.post(url, json=vlookup_body(bpp, {"country": "MTQ", "type": "gateway"}))
    assert [e["subscriber_id"] for e in gateways.json()] == ["gw.lakou.mq"]

    # Signed with another key, or over other parameters than those sent: 401 naming the string to sign.
    stranger = participant("bap.stranger.mq")
    forged = await http.post(url, json=vlookup_body(bap, parameters, sign_with=stranger.signing_key))
    assert forged.status_code == 401
    assert "'MTQ|lakou:retail|sellerApp|insee:97209|'" in forged.json()["error"]["message"]
    assert forged.headers["WWW-Authenticate"].startswith("Signature realm=")
    swapped = await http.post(url, json=vlookup_body(bap, parameters, signed="MTQ|lakou:retail|buyerApp|insee:97209|"))
    assert swapped.status_code == 401
    unknown = await http.post(url, json=vlookup_body(stranger, parameters))
    assert unknown.status_code == 401 and "'bap.stranger.mq' is not a SUBSCRIBED" in unknown.json()["error"]["message"]


@pytest.mark.parametrize(("change", "status", "needle"), [
    ({"signature": "not base64!"}, 400, "base64"),
    ({"signature": base64.b64encode(b"short").decode()}, 400, "64-byte"),
    ({"sender_subscriber_id": None}, 400, "sender_subscriber_id is required"),
    ({"timestamp": "yesterday"}, 400, "RFC 3339"),
    ({"search_parameters": "MTQ"}, 400, "search_parameters is required and must be an object"),
    ({"search_parameters": {"country": ["MTQ"]}}, 400, "search_parameters.country must be a string"),
])
async def test_bad_vlookup_bodies_are_400(sqlite_registry: str, http: httpx.AsyncClient, change: dict[str, Any],
                                          status: int, needle: str) -> None:
    bap = participant("bap.lakou.mq")
    await add(http, sqlite_registry, bap.record)
    body = {**vlookup_body(bap, {"country": "MTQ", "domain": "lakou:retail"}), **change}
    response = await http.post(f"{sqlite_registry}/vlookup", json=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]
    not_an_object = await http.post(f"{sqlite_registry}/vlookup", json=[1])
    assert not_an_object.status_code == 400


async def test_openapi_documents_the_signed_lookups(sqlite_registry: str, http: httpx.AsyncClient) -> None:
    document = (await http.get(f"{sqlite_registry}/openapi.json")).json()
    paths = document["paths"]
    for path in ("/lookup", "/v2.0/lookup", "/vlookup"):
        answer = paths[path]["post"]["responses"]["200"]
        assert RESPONSE_SIGNATURE_HEADER in answer["headers"], path
        assert "requestBody" in paths[path]["post"]
    assert "401" in paths["/v2.0/lookup"]["post"]["responses"] and "401" in paths["/vlookup"]["post"]["responses"]
    assert "valid_at" in json.dumps(paths["/lookup"]["post"]["requestBody"])
    schema = paths["/registry-key"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    key_schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert {"subscriber_id", "key_id", "signing_public_key"} <= set(key_schema["properties"])
