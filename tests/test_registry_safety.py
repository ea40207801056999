"""The registry's safety, served for real: rate limits per caller (429 with Retry-After),
hostile and malformed bodies fuzzed against every write and lookup route (a 4xx with a message,
never a 500, and the registry still answers afterwards), strict subscriber ids, URLs and keys,
and no personal data in what anyone can look up. The fuzz runs on SQLite and PostgreSQL (a NUL
byte is fine in SQLite and fatal in PostgreSQL); the rate limits are in memory, so one backend
is enough for them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from beckn.keys import KeyPairs, generate_key_pairs, load_signing_key
from beckn.settings import Settings
from beckn.signing import Signer
from conftest import POSTGRES_URL, _pg_execute, serve_app
from registry.app import create_app
from registry.ratelimit import TokenBuckets
from registry.settings import RegistrySettings

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

TOKEN = "safety-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.now(UTC)
UNLIMITED = {"registry_rate_subscribe_per_minute": 0, "registry_rate_lookup_per_minute": 0,
             "registry_rate_vlookup_per_minute": 0, "registry_rate_other_per_minute": 0}


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(subscriber_id: str, keys: KeyPairs | None = None, **over: Any) -> dict[str, Any]:
    keys = keys or generate_key_pairs()
    base = {
        "subscriber_id": subscriber_id,
        "type": "BPP",
        "url": f"https://{subscriber_id}/beckn",
        "domain": "lakou:retail",
        "city": "insee:97209",
        "country": "MTQ",
        "unique_key_id": str(uuid.uuid4()),
        "signing_public_key": keys.signing_public_key,
        "encr_public_key": keys.encryption_public_key,
        "valid_from": stamp(NOW - timedelta(days=1)),
        "valid_until": stamp(NOW + timedelta(days=365)),
    }
    base.update(over)
    return base


@contextlib.contextmanager
def running_registry(db_url: str, data_dir: Path, settings_class: type[Settings] = RegistrySettings,
                     **settings: Any) -> Iterator[str]:
    values: dict[str, Any] = {"data_dir": data_dir, "database_url": db_url, "registry_admin_token": TOKEN}
    values.update(settings)
    with serve_app(create_app(settings_class(**values))) as url:
        yield url


def client(local_address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose connections come from `local_address` (any 127.x.y.z is loopback on Linux):
    how these tests play several callers against one registry."""
    return httpx.AsyncClient(timeout=10, transport=httpx.AsyncHTTPTransport(local_address=local_address))


def signature_header(subscriber_id: str) -> dict[str, str]:
    """An Authorization that claims `subscriber_id` (made with a throwaway key: /lookup does not
    check it, and the rate limiter does not verify it)."""
    signer = Signer(subscriber_id, "k1", load_signing_key(generate_key_pairs().signing_private_key))
    return {"Authorization": signer.sign(b"{}")}


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"], error
    return error


# ------------------------------------------------------------------ rate limits


@pytest.fixture
def limited(sqlite_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    with running_registry(sqlite_url, tmp_path, **request.param) as url:
        yield url


@pytest.mark.parametrize("limited", [{"registry_rate_lookup_per_minute": 60}], indirect=True)
async def test_a_caller_over_its_lookup_limit_gets_429_with_retry_after_then_recovers(limited: str) -> None:
    async with client() as http:
        # The bucket holds one minute: a burst of 60 passes, plus the one-per-second refill of a
        # burst that a loaded machine takes more than a second to send.
        started, passed = time.monotonic(), 0
        while (refused := await http.post(f"{limited}/lookup", json={})).status_code == 200:
            passed += 1
            assert passed <= 61 + (time.monotonic() - started), "the limit is not enforced"
        assert passed >= 60
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"  # 60/min refills one request per second
        error = error_of(refused)
        assert "at most 60 requests per minute to /lookup" in error["message"]
        assert "retry in 1 s" in error["message"]
        assert refused.json()["rate_limit"] == {"route_class": "lookup", "per_minute": 60, "retry_after_seconds": 1}
        # /v2.0/lookup is the same class; /vlookup and /health are not.
        assert (await http.post(f"{limited}/v2.0/lookup", json={})).status_code == 429
        assert (await http.post(f"{limited}/vlookup", json={})).status_code == 400
        assert (await http.get(f"{limited}/health")).status_code == 200
        await asyncio.sleep(1.1)
        assert (await http.post(f"{limited}/lookup", json={})).status_code == 200


async def test_the_default_limits_are_ondcs(sqlite_url: str, tmp_path: Path) -> None:
    defaults = RegistrySettings()
    assert (defaults.registry_rate_subscribe_per_minute, defaults.registry_rate_lookup_per_minute,
            defaults.registry_rate_vlookup_per_minute) == (10, 7600, 2100)
    with running_registry(sqlite_url, tmp_path) as url:
        async with client() as http:
            for _ in range(10):
                answer = await http.post(f"{url}/subscribe", json={})
                assert answer.status_code in (400, 401), answer.text
            refused = await http.post(f"{url}/subscribe", json={})
            assert refused.status_code == 429, refused.text
            assert "at most 10 requests per minute to /subscribe" in error_of(refused)["message"]
            assert 1 <= int(refused.headers["retry-after"]) <= 6  # 10/min: one every 6 s
            # Another route class keeps its own budget.
            assert (await http.post(f"{url}/lookup", json={})).status_code == 200


@pytest.mark.parametrize("limited", [{"registry_rate_lookup_per_minute": 3}], indirect=True)
async def test_a_forged_key_id_spends_only_the_forgers_own_budget(limited: str) -> None:
    victim = signature_header("bpp.victim.mq")
    async with client("127.0.0.2") as forger, client("127.0.0.1") as real:
        for _ in range(3):
            assert (await forger.post(f"{limited}/lookup", json={}, headers=victim)).status_code == 200
        refused = await forger.post(f"{limited}/lookup", json={}, headers=victim)
        assert refused.status_code == 429
        assert "subscriber 'bpp.victim.mq' from your address" in error_of(refused)["message"]
        # The real subscriber, from its own address, is untouched; so is the forger's unsigned budget.
        assert (await real.post(f"{limited}/lookup", json={}, headers=victim)).status_code == 200
        assert (await forger.post(f"{limited}/lookup", json={})).status_code == 200


@pytest.mark.parametrize("limited", [{"registry_rate_lookup_per_minute": 2,
                                      "registry_rate_signed_callers_per_ip": 3}], indirect=True)
async def test_invented_key_ids_from_one_address_share_a_ceiling(limited: str) -> None:
    async with client("127.0.0.3") as inventor, client("127.0.0.4") as other:
        statuses = [(await inventor.post(f"{limited}/lookup", json={},
                                         headers=signature_header(f"bap{i}.example.mq"))).status_code
                    for i in range(4) for _ in range(2)]
        assert statuses == [200] * 6 + [429] * 2  # 3 callers x 2, then the address's ceiling
        refused = await inventor.post(f"{limited}/lookup", json={}, headers=signature_header("bap9.example.mq"))
        assert "at most 6 signed requests per minute to /lookup and /v2.0/lookup from one address" in (
            error_of(refused)["message"])
        # Honest callers behind another address each keep their own budget.
        for i in range(3):
            for _ in range(2):
                answer = await other.post(f"{limited}/lookup", json={}, headers=signature_header(f"bap{i}.example.mq"))
                assert answer.status_code == 200


async def test_limits_come_from_the_environment_and_health_is_never_limited(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKOU_REGISTRY_RATE_OTHER_PER_MINUTE", "2")
    # `lakou serve registry` passes the shared Settings: the registry reads its own fields from the environment.
    with running_registry(sqlite_url, tmp_path, settings_class=Settings) as url:
        async with client() as http:
            assert (await http.get(f"{url}/registry-key")).status_code == 200
            assert (await http.get(f"{url}/.well-known/did.json")).status_code == 200
            refused = await http.get(f"{url}/registry-key")
            assert refused.status_code == 429
            assert "at most 2 requests per minute to this registry's other routes" in error_of(refused)["message"]
            for _ in range(5):
                assert (await http.get(f"{url}/health")).status_code == 200
            assert (await http.post(f"{url}/lookup", json={})).status_code == 200


def test_buckets_refill_at_the_rate_and_stay_bounded() -> None:
    now = [1000.0]
    buckets = TokenBuckets(max_buckets=100, clock=lambda: now[0])
    assert [buckets.take([("a", 2)]) for _ in range(3)] == [(0.0, -1), (0.0, -1), (30.0, 0)]  # one every 30 s
    now[0] += 30
    assert buckets.take([("a", 2)]) == (0.0, -1)
    # Both buckets need a token, or neither is spent; the answer names the one that binds.
    assert buckets.take([("b", 5), ("a", 2)]) == (pytest.approx(30.0), 1)
    now[0] += 30
    assert buckets.take([("b", 5), ("a", 2)]) == (0.0, -1)
    for i in range(1000):  # a flood of distinct callers: never more than max_buckets
        buckets.take([(f"flood{i}", 10)])
        assert len(buckets) <= 100
    now[0] += 61  # long enough for every bucket to be full again: they are dropped as calls come
    for _ in range(60):
        buckets.take([("c", 10)])
    assert len(buckets) == 1


# ------------------------------------------------------------------ fuzz: never a 500


class Fuzz:
    """A registry on one backend, with one SUBSCRIBED participant whose key signs the fuzz's
    /v2.0/lookup and /vlookup requests, so that hostile bodies get past authentication."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys = generate_key_pairs()
        self.record = record("bap.fuzz.mq", self.keys, type="BAP")
        self.signer = Signer("bap.fuzz.mq", self.record["unique_key_id"], load_signing_key(self.keys.signing_private_key))
        self.http = httpx.Client(timeout=30)
        answer = self.http.post(f"{url}/admin/participants", json=self.record, headers=AUTH)
        assert answer.status_code == 201, answer.text

    def vlookup_signature(self, parameters: dict[str, str]) -> str:
        message = "|".join(parameters.get(n, "") for n in ("country", "domain", "type", "city", "subscriber_id"))
        return base64.b64encode(load_signing_key(self.keys.signing_private_key).sign(message.encode()).signature).decode()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    if request.param == "sqlite":
        db_url = f"sqlite+aiosqlite:///{data_dir / 'lakou.db'}"
    else:
        name = f"lakou_t_{uuid.uuid4().hex[:12]}"
        try:
            asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001 - no server: skipped, as conftest's postgres_url does
            reason = f"PostgreSQL not reachable: {exc!r}"
            if os.environ.get("LAKOU_REQUIRE_POSTGRES"):
                pytest.fail(reason + " (LAKOU_REQUIRE_POSTGRES is set)")
            pytest.skip("SKIPPING POSTGRESQL TEST: " + reason)
        db_url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    try:
        with running_registry(db_url, data_dir, max_body_bytes=65536, **UNLIMITED) as url:
            fuzz = Fuzz(url)
            yield fuzz
            fuzz.http.close()
    finally:
        if request.param == "postgres":
            asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# Strings that have broken parsers, databases and logs before.
HOSTILE_STRINGS = [
    "", " ", "\x00", "a\x00b", "\x1b[31mred", "\u202egnp.lmth", "\ud800", "\udfff", "\ufeff", "\u200b",
    "NaN", "Infinity", "-Infinity", "1e999", "-0", "null", "true", "[]", "{}",
    "javascript:alert(1)", "https://user:pass@bpp.fdf.mq/beckn", "http://", "//x", "http://[::1", "http://a:99999",
    "' OR '1'='1", "'; DROP TABLE registry_participant; --", "%00", "%s%s%s%n", "../../etc/passwd",
    "bpp|fdf.mq", 'bpp"fdf.mq', "bpp,fdf.mq", "bpp\\fdf.mq", "<script>alert(1)</script>", "Fòr-dé-Frans 🇲🇶",
    "x" * 300, "x" * 70_000,
]
hostile_text = st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["subscriber_id", "type", "url", "subscriber_url", "domain", "city", "country", "location", "ukId",
          "unique_key_id", "key_id", "pub_key_id", "signing_public_key", "encr_public_key", "encryption_public_key",
          "valid_from", "valid_until", "valid_at", "status", "nonce", "sender_subscriber_id", "request_id",
          "timestamp", "signature", "search_parameters", "context", "message"]


def _encode(value: Any) -> bytes:
    # ensure_ascii: lone surrogates travel as \\ud800 escapes, valid JSON text that decodes to them.
    return json.dumps(value).encode()


def _nest(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def hostile_bodies(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """Raw bytes, non-JSON text, deep nesting, NaN-like constants, random JSON, or `valid` with
    some fields removed or replaced by anything."""
    kind = draw(st.sampled_from(["bytes", "text", "nested", "constant", "json", "mutated", "mutated", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200) | st.just(b"\xff\xfe{\x00}") | st.just(b'{"a": "\xc3\x28"}'))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == "nested":
        return _nest(draw(st.integers(1, 20_000)), draw(st.sampled_from(["array", "object"])))
    if kind == "constant":
        return draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b'{"valid_at": NaN}', b"1e999",
                                     b'{"subscriber_id": 1e999}', b"[1,]", b"{'a': 1}", b'{"a":1}{"b":2}']))
    if kind == "json":
        return _encode(draw(json_values))
    mutated = dict(valid)
    for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True)):
        if draw(st.booleans()):
            mutated.pop(name, None)
        else:
            mutated[name] = draw(json_values)
    return _encode(mutated)


def check_refusal(response: httpx.Response, route: str, body: bytes) -> None:
    """A 4xx JSON error with a message, or a success; never a 500."""
    context = f"{route} answered {response.status_code} to {body[:300]!r}: {response.text[:500]}"
    assert response.status_code < 500, context
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), context
        error = response.json().get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"], context


FUZZ = fuzz_settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
LOOKUP_BODY = {"subscriber_id": "bap.fuzz.mq", "type": "BAP", "domain": "lakou:retail", "city": "insee:97209",
               "country": "MTQ", "ukId": "k", "url": "https://bap.fuzz.mq/beckn", "valid_at": stamp(NOW)}


@FUZZ
@given(data=st.data())
def test_hostile_lookup_bodies_get_a_4xx_never_a_500(fuzz: Fuzz, data: st.DataObject) -> None:
    body = data.draw(hostile_bodies(LOOKUP_BODY))
    response = fuzz.http.post(f"{fuzz.url}/lookup", content=body, headers={"Content-Type": "application/json"})
    check_refusal(response, "/lookup", body)
    if response.status_code == 200:
        assert isinstance(response.json(), list)


@FUZZ
@given(data=st.data())
def test_hostile_signed_v2_lookup_bodies_get_a_4xx_never_a_500(fuzz: Fuzz, data: st.DataObject) -> None:
    body = data.draw(hostile_bodies(LOOKUP_BODY))
    headers = {"Content-Type": "application/json", "Authorization": fuzz.signer.sign(body)}
    check_refusal(fuzz.http.post(f"{fuzz.url}/v2.0/lookup", content=body, headers=headers), "/v2.0/lookup", body)


@FUZZ
@given(authorization=st.sampled_from([s for s in HOSTILE_STRINGS if len(s) < 4000]) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300))
def test_hostile_authorization_headers_get_a_401_never_a_500(fuzz: Fuzz, authorization: str) -> None:
    # What HTTP allows in a header value: latin-1, no NUL/CR/LF, no surrounding spaces (anything
    # else never leaves the client). Headers over uvicorn's size limit are its own plain 400.
    value = authorization.encode("latin-1", "replace")
    value = bytes(b for b in value if b not in b"\x00\r\n").strip() or b"Signature"
    headers = [(b"Content-Type", b"application/json"), (b"Authorization", value)]
    response = fuzz.http.post(f"{fuzz.url}/v2.0/lookup", content=b'{"country": "MTQ", "domain": "lakou:retail"}',
                              headers=headers)
    check_refusal(response, "/v2.0/lookup", value)
    assert response.status_code == 401, response.text


@FUZZ
@given(data=st.data())
def test_hostile_vlookup_bodies_get_a_4xx_never_a_500(fuzz: Fuzz, data: st.DataObject) -> None:
    parameters = data.draw(st.dictionaries(st.sampled_from(["country", "domain", "type", "city", "subscriber_id"]),
                                           hostile_text, max_size=5))
    valid = {"sender_subscriber_id": "bap.fuzz.mq", "request_id": str(uuid.uuid4()), "timestamp": stamp(NOW),
             "search_parameters": parameters}
    try:
        valid["signature"] = fuzz.vlookup_signature(parameters)
    except UnicodeEncodeError:  # a lone surrogate cannot be signed: let the registry judge the rest
        valid["signature"] = base64.b64encode(bytes(64)).decode()
    body = data.draw(hostile_bodies(valid) | st.just(_encode(valid)))
    check_refusal(fuzz.http.post(f"{fuzz.url}/vlookup", content=body, headers={"Content-Type": "application/json"}),
                  "/vlookup", body)


@FUZZ
@given(data=st.data())
def test_hostile_admin_bodies_get_a_4xx_never_a_500(fuzz: Fuzz, data: st.DataObject) -> None:
    valid = record(f"bpp-{uuid.uuid4().hex[:8]}.fuzz.mq")
    body = data.draw(hostile_bodies(valid))
    response = fuzz.http.post(f"{fuzz.url}/admin/participants", content=body,
                              headers={**AUTH, "Content-Type": "application/json"})
    check_refusal(response, "/admin/participants", body)


@FUZZ
@given(subscriber_id=st.sampled_from([s for s in HOSTILE_STRINGS if len(s) < 4000]) | st.text(min_size=1, max_size=80))
def test_hostile_did_paths_get_a_4xx_never_a_500(fuzz: Fuzz, subscriber_id: str) -> None:
    path = quote(subscriber_id.encode("utf-8", "surrogatepass"), safe="")
    if not path:
        return
    response = fuzz.http.get(f"{fuzz.url}/participants/{path}/did.json")
    check_refusal(response, "/participants/{id}/did.json", path.encode())
    assert response.status_code in (400, 404), response.text


@FUZZ
@given(data=st.data())
def test_hostile_subscribe_bodies_get_a_4xx_never_a_500(fuzz: Fuzz, data: st.DataObject) -> None:
    keys = generate_key_pairs()
    subscriber_id = f"shop-{uuid.uuid4().hex[:8]}.fuzz.mq"
    valid = record(subscriber_id, keys, url="http://127.0.0.1:9/beckn", nonce=str(uuid.uuid4()))
    body = data.draw(hostile_bodies(valid))
    headers = {"Content-Type": "application/json"}
    if data.draw(st.booleans()):
        signer = Signer(subscriber_id, valid["unique_key_id"], load_signing_key(keys.signing_private_key))
        headers["Authorization"] = signer.sign(body)
    check_refusal(fuzz.http.post(f"{fuzz.url}/subscribe", content=body, headers=headers), "/subscribe", body)


def test_after_the_fuzz_the_registry_still_answers_correctly(fuzz: Fuzz) -> None:
    assert fuzz.http.get(f"{fuzz.url}/health").json()["status"] == "ok"
    found = fuzz.http.post(f"{fuzz.url}/lookup", json={"subscriber_id": "bap.fuzz.mq"})
    assert found.status_code == 200, found.text
    assert [(e["subscriber_id"], e["ukId"], e["signing_public_key"]) for e in found.json()] == [
        ("bap.fuzz.mq", fuzz.record["unique_key_id"], fuzz.keys.signing_public_key)]
    signed = json.dumps({"country": "MTQ", "subscriber_id": "bap.fuzz.mq"}).encode()
    v2 = fuzz.http.post(f"{fuzz.url}/v2.0/lookup", content=signed,
                        headers={"Content-Type": "application/json", "Authorization": fuzz.signer.sign(signed)})
    assert v2.status_code == 200 and [e["subscriber_id"] for e in v2.json()] == ["bap.fuzz.mq"], v2.text


# ------------------------------------------------------------------ strict participant records


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
X25519_SPKI_PREFIX = bytes.fromhex("302a300506032b656e032100")


@pytest.mark.parametrize(
    ("change", "needle", "path"),
    [
        ({"url": "javascript:alert(1)"}, "http:// or https://", "url"),
        ({"url": "data:text/html,<script>alert(1)</script>"}, "http:// or https://", "url"),
        ({"url": "https://user:pass@bpp.fdf.mq/beckn"}, "credentials", "url"),
        ({"url": "https://user@bpp.fdf.mq/beckn"}, "credentials", "url"),
        ({"url": "https://bpp.fdf.mq/be ckn"}, "whitespace", "url"),
        ({"url": "https://bpp.fdf.mq/beckn\x00"}, "NUL character", "url"),
        ({"url": "https://bpp.fdf.mq/beckn\x1b"}, "control character", "url"),
        ({"url": "https://bpp.fdf.mq/caf\u00e9"}, "ASCII", "url"),
        ({"url": "https://<script>/beckn"}, "host", "url"),
        ({"url": "https://bpp.fdf.mq/beckn#top"}, "fragment", "url"),
        ({"url": "https://bpp.fdf.mq/" + "a" * 3000}, "longer than 2048", "url"),
        ({"subscriber_id": "bpp fdf.mq"}, "whitespace", "subscriber_id"),
        ({"subscriber_id": "bpp|fdf.mq"}, "Authorization keyId", "subscriber_id"),
        ({"subscriber_id": 'bpp"fdf.mq'}, "Authorization keyId", "subscriber_id"),
        ({"subscriber_id": "a" * 256}, "longer than 255", "subscriber_id"),
        ({"subscriber_id": "bpp.fdf.mq\x00"}, "NUL character", "subscriber_id"),
        ({"subscriber_id": "bpp.fdf.mq\x7f"}, "control character", "subscriber_id"),
        ({"subscriber_id": "bpp.fdf.mq\ud800"}, "surrogate", "subscriber_id"),
        ({"subscriber_id": "bpp\u202e.fdf.mq"}, "ASCII", "subscriber_id"),
        ({"subscriber_id": "bpp.fdf.mq/x"}, "domain name", "subscriber_id"),
        ({"subscriber_id": "bpp.fdf.mq:8080"}, "domain name", "subscriber_id"),
        ({"subscriber_id": "<script>.fdf.mq"}, "domain name", "subscriber_id"),
        ({"subscriber_id": "../../etc/passwd"}, "domain name", "subscriber_id"),
        ({"subscriber_id": "bpp..fdf.mq"}, "domain name", "subscriber_id"),
        ({"subscriber_id": ""}, "empty", "subscriber_id"),
        ({"unique_key_id": "k|1"}, "Authorization keyId", "unique_key_id"),
        ({"unique_key_id": 'k"1'}, "Authorization keyId", "unique_key_id"),
        ({"unique_key_id": "k" * 129}, "longer than 128", "unique_key_id"),
        ({"unique_key_id": "k\x07"}, "control character", "unique_key_id"),
        ({"signing_public_key": _b64(bytes(31))}, "signing public key", "signing_public_key"),
        ({"signing_public_key": _b64(bytes(33))}, "signing public key", "signing_public_key"),
        ({"signing_public_key": _b64(bytes(64))}, "signing public key", "signing_public_key"),
        ({"signing_public_key": _b64(X25519_SPKI_PREFIX + bytes(32))}, "signing public key", "signing_public_key"),
        ({"signing_public_key": ""}, "signing public key", "signing_public_key"),
        ({"encr_public_key": _b64(bytes(31))}, "encryption public key", "encr_public_key"),
        ({"encr_public_key": _b64(ED25519_SPKI_PREFIX + bytes(32))}, "not an X25519", "encr_public_key"),
        ({"domain": "lakou:retail\x00"}, "NUL character", "domain"),
        ({"domain": "lakou:\x85retail"}, "control character", "domain"),
        ({"city": "\x1b[31m"}, "control character", "city"),
        ({"country": "M\x00Q"}, "NUL character", "country"),
        ({"country": "M\x1bQ"}, "control character", "country"),
        ({"email": "ti-jan@example.mq"}, "unknown field 'email'", "email"),
        ({"phone": "+596696000000"}, "unknown field 'phone'", "phone"),
    ],
)
async def test_hostile_participant_values_are_refused_with_a_message(
        sqlite_url: str, tmp_path: Path, change: dict[str, Any], needle: str, path: str) -> None:
    with running_registry(sqlite_url, tmp_path) as url:
        async with client() as http:
            rec = record("bpp.fdf.mq")
            rec.update(change)
            # json.dumps escapes what httpx's own encoder would refuse or replace (a lone surrogate).
            response = await http.post(f"{url}/admin/participants", content=json.dumps(rec).encode(),
                                       headers={**AUTH, "Content-Type": "application/json"})
            assert response.status_code == 400, response.text
            error = error_of(response)
            assert needle in error["message"], error
            assert error["path"] == path
            assert (await http.post(f"{url}/lookup", json={})).json() == []


async def test_ordinary_values_stay_accepted(sqlite_url: str, tmp_path: Path) -> None:
    """The strict checks let through what real networks use."""
    with running_registry(sqlite_url, tmp_path) as url:
        async with client() as http:
            for change in ({"subscriber_id": "shop_1.lakou.localhost"}, {"subscriber_id": "localhost"},
                           {"subscriber_id": "ref-app-buyer-staging-v2.ondc.org"},
                           {"url": "http://127.0.0.1:8300/beckn"}, {"url": "https://[::1]:8443/beckn?x=1"},
                           {"unique_key_id": "UK-1"}, {"domain": "ONDC:RET10", "city": "std:080"}):
                rec = record(change.get("subscriber_id", f"bpp{uuid.uuid4().hex[:6]}.fdf.mq"))
                rec.update(change)
                response = await http.post(f"{url}/admin/participants", json=rec, headers=AUTH)
                assert response.status_code == 201, (change, response.text)


# ------------------------------------------------------------------ no personal data


EMAIL = re.compile(r"[^@\s\"]+@[^@\s\"]+\.[a-z]{2,}", re.IGNORECASE)
PHONE = re.compile(r"(\+|tel:)\d[\d .-]{7,}\d")
# A DID document's properties (W3C DID core) that a registry may publish.
DID_PROPERTIES = {"@context", "id", "controller", "alsoKnownAs", "verificationMethod", "authentication",
                  "assertionMethod", "keyAgreement", "capabilityInvocation", "capabilityDelegation", "service"}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


async def test_public_answers_carry_only_the_documented_public_fields(db_url: str, tmp_path: Path) -> None:
    with running_registry(db_url, tmp_path) as url:
        async with client() as http:
            # Personal details cannot even be recorded: the record has no place for them.
            for extra in ({"email": "ti-jan@example.mq"}, {"phone": "+596 696 00 00 00"},
                          {"name_of_authorised_signatory": "Ti Jan"}, {"contact": {"name": "Ti Jan"}}):
                refused = await http.post(f"{url}/admin/participants", json={**record("bpp.fdf.mq"), **extra},
                                          headers=AUTH)
                assert refused.status_code == 400 and "unknown field" in error_of(refused)["message"]
            for rec in (record("bpp.fdf.mq"), record("bap.lakou.mq", type="BAP"), record("bg.lakou.mq", type="BG")):
                assert (await http.post(f"{url}/admin/participants", json=rec, headers=AUTH)).status_code == 201

            schemas = (await http.get(f"{url}/openapi.json")).json()["components"]["schemas"]
            documented = set(schemas["Subscription"]["properties"])
            answers = (await http.post(f"{url}/lookup", json={})).json()
            assert len(answers) == 3
            for element in answers:
                assert set(element) <= documented, set(element) - documented
                assert set(element) <= {"subscriber_id", "subscriber_url", "url", "type", "domain", "city",
                                         "country", "location", "signing_public_key", "encr_public_key",
                                         "valid_from", "valid_until", "status", "created", "updated", "ukId",
                                         "unique_key_id", "key_id", "revoked_at"}

            documents = [(await http.get(f"{url}/participants/{e['subscriber_id']}/did.json")).json()
                         for e in answers]
            documents.append((await http.get(f"{url}/.well-known/did.json")).json())
            for document in [*documents, answers]:
                for text in _strings(document):
                    assert not EMAIL.search(text) and not PHONE.search(text), text
            for document in documents:
                assert set(document) <= DID_PROPERTIES, set(document) - DID_PROPERTIES
