"""Registry client and key resolver against fake third-party registries served over real HTTP.

Each fake registry speaks one real-world dialect (digest §6.1/§6.2) and filters on the request
field name that dialect reads, so a client sending the wrong name gets the wrong answer.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from conftest import free_port, serve_app
from nacl.signing import SigningKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from beckn.registry_client import (
    InvalidRecord,
    KeyNotFound,
    KeyResolutionError,
    KeyResolver,
    KeyUnusable,
    RegistryClient,
    RegistryUnavailable,
    normalise_record,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
X25519_SPKI_PREFIX = bytes.fromhex("302a300506032b656e032100")


# ---------------------------------------------------------------------------------------------
# Fake third-party registries
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeRegistry:
    """One registry in one dialect. `key_field` is the lookup request field it filters on."""

    key_field: str
    records: list[Any] = field(default_factory=list)
    calls: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    raw_response: tuple[str, str] | None = None  # (body, content-type) returned verbatim
    wrap: Callable[[list[Any]], Any] | None = None
    ignores_criteria: bool = False  # some registries return everything they have

    def matches(self, record: Any, criteria: dict[str, Any]) -> bool:
        if self.ignores_criteria or not isinstance(record, dict):
            return True
        if "subscriber_id" in criteria and record.get("subscriber_id") != criteria["subscriber_id"]:
            return False
        wanted = criteria.get(self.key_field)
        return wanted is None or record.get(self.key_field) in (None, wanted)


REGISTRIES: dict[str, FakeRegistry] = {}


async def _lookup_endpoint(request: Request) -> Response:
    registry = REGISTRIES[request.path_params["name"]]
    registry.calls += 1
    criteria = await request.json()
    registry.bodies.append(criteria)
    if registry.delay:
        await asyncio.sleep(registry.delay)
    if registry.raw_response is not None:
        body, content_type = registry.raw_response
        return Response(body, status_code=registry.status, media_type=content_type)
    if registry.status != 200:
        return JSONResponse({"error": {"code": "500", "message": "registry db down"}},
                            status_code=registry.status)
    found = [r for r in registry.records if registry.matches(r, criteria)]
    return JSONResponse(registry.wrap(found) if registry.wrap else found)


APP = Starlette(routes=[Route("/{name}/lookup", _lookup_endpoint, methods=["POST"])])
_names = itertools.count()


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve_app(APP) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def make_registry(server_url: str, http: httpx.AsyncClient) -> Iterator[Callable[..., tuple[FakeRegistry, RegistryClient]]]:
    created: list[str] = []

    def make(key_field: str = "ukId", *, timeout: float = 2.0) -> tuple[FakeRegistry, RegistryClient]:
        name = f"reg{next(_names)}"
        registry = FakeRegistry(key_field=key_field)
        REGISTRIES[name] = registry
        created.append(name)
        return registry, RegistryClient(f"{server_url}/{name}", http=http, timeout=timeout)

    yield make
    for name in created:
        REGISTRIES.pop(name, None)


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------------------------------------
# Records in each dialect
# ---------------------------------------------------------------------------------------------


def iso(t: float, *, z: bool = True) -> str:
    text = datetime.fromtimestamp(t, tz=UTC).isoformat()
    return text.replace("+00:00", "Z") if z else text.replace("+00:00", "")


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def raw_b64(sk: SigningKey) -> str:
    return base64.b64encode(sk.verify_key.encode()).decode()


def der_b64(sk: SigningKey) -> str:
    return base64.b64encode(ED25519_SPKI_PREFIX + sk.verify_key.encode()).decode()


def core_record(sub: str, kid: str, sk: SigningKey, **over: Any) -> dict[str, Any]:
    """Beckn core 1.1.1 `Subscription`: `url`, `key_id`, nested `location`."""
    record = {
        "subscriber_id": sub,
        "url": f"https://{sub}/beckn",
        "type": "BPP",
        "domain": "nic2004:52110",
        "location": {"city": {"code": "std:0596", "name": "Fort-de-France"}, "country": {"code": "MTQ"}},
        "key_id": kid,
        "signing_public_key": raw_b64(sk),
        "encr_public_key": base64.b64encode(bytes(32)).decode(),
        "valid_from": iso(T0 - DAY),
        "valid_until": iso(T0 + 30 * DAY),
        "status": "SUBSCRIBED",
        "created": iso(T0 - 2 * DAY),
        "updated": iso(T0 - DAY),
    }
    record.update(over)
    return record


def ondc_record(sub: str, kid: str, sk: SigningKey, **over: Any) -> dict[str, Any]:
    """ONDC lookup shape: `subscriber_url`, `ukId`, flat city/country, `sellerApp`, DER keys."""
    record = {
        "subscriber_id": sub,
        "subscriber_url": f"https://{sub}/ondc",
        "type": "sellerApp",
        "domain": "ONDC:RET10",
        "city": "std:0596",
        "country": "MTQ",
        "ukId": kid,
        "signing_public_key": der_b64(sk),
        "encr_public_key": base64.b64encode(X25519_SPKI_PREFIX + bytes(range(32))).decode(),
        "valid_from": "2025-12-31T00:00:00.000Z",
        "valid_until": "2026-01-31T00:00:00.000Z",
        "status": "SUBSCRIBED",
        "created": "2025-12-30T10:11:12.345Z",
        "updated": "2025-12-31T10:11:12.345Z",
    }
    record.update(over)
    return record


def succinct_record(sub: str, kid: str, sk: SigningKey, **over: Any) -> dict[str, Any]:
    """Succinct registry shape: `unique_key_id`, `subscriber_url`, lowercase type, no `Z`."""
    record = {
        "subscriber_id": sub,
        "subscriber_url": f"https://{sub}/bap",
        "type": "bap",
        "domain": "nic2004:52110",
        "city": {"code": "std:0596"},
        "country": "MTQ",
        "unique_key_id": kid,
        "signing_public_key": raw_b64(sk),
        "encryption_public_key": "enc-key",
        "valid_from": "2025-12-31T00:00:00.123456789",
        "valid_until": "2026-01-31T00:00:00",
        "status": "subscribed",
    }
    record.update(over)
    return record


# ---------------------------------------------------------------------------------------------
# Normalisation of each dialect, fetched over HTTP
# ---------------------------------------------------------------------------------------------


async def test_core_shape_is_normalised(make_registry) -> None:
    registry, client = make_registry("key_id")
    sk = SigningKey.generate()
    registry.records = [core_record("bpp.lakou.mq", "k1", sk)]

    [rec] = await client.lookup(subscriber_id="bpp.lakou.mq", unique_key_id="k1")

    assert (rec.subscriber_id, rec.unique_key_id, rec.type) == ("bpp.lakou.mq", "k1", "BPP")
    assert (rec.city, rec.country, rec.domain) == ("std:0596", "MTQ", "nic2004:52110")
    assert rec.url == "https://bpp.lakou.mq/beckn"
    assert rec.verify_key == sk.verify_key
    assert rec.signing_public_key == raw_b64(sk)  # kept as received
    assert rec.valid_from == utc(T0 - DAY) and rec.valid_until == utc(T0 + 30 * DAY)
    assert rec.created == utc(T0 - 2 * DAY) and rec.updated == utc(T0 - DAY)
    assert rec.status == "SUBSCRIBED"
    assert rec.raw["location"]["country"]["code"] == "MTQ"
    assert rec.usable_at(utc(T0)) is None


async def test_ondc_shape_is_normalised(make_registry) -> None:
    registry, client = make_registry("ukId")
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", "uk-1", sk)]

    [rec] = await client.lookup(subscriber_id="seller.example.mq", unique_key_id="uk-1")

    assert rec.type == "BPP"  # sellerApp
    assert rec.unique_key_id == "uk-1"
    assert rec.url == "https://seller.example.mq/ondc"
    assert (rec.city, rec.country) == ("std:0596", "MTQ")
    assert rec.verify_key == sk.verify_key  # DER SPKI parsed to the raw key
    assert rec.signing_public_key.startswith("MCowBQYDK2VwAyEA")
    assert rec.encr_public_key.startswith("MCowBQYDK2VuAyEA")
    assert rec.valid_until == datetime(2026, 1, 31, tzinfo=UTC)
    assert rec.created == datetime(2025, 12, 30, 10, 11, 12, 345000, tzinfo=UTC)


async def test_succinct_shape_is_normalised(make_registry) -> None:
    registry, client = make_registry("unique_key_id")
    sk = SigningKey.generate()
    registry.records = [succinct_record("bap.example.mq", "key-7", sk)]

    [rec] = await client.lookup(subscriber_id="bap.example.mq", unique_key_id="key-7")

    assert (rec.type, rec.status, rec.unique_key_id) == ("BAP", "SUBSCRIBED", "key-7")
    assert rec.city == "std:0596"  # city given as an object {code}
    assert rec.url == "https://bap.example.mq/bap"
    assert rec.encr_public_key == "enc-key"  # `encryption_public_key` spelling
    # nanosecond fraction and no offset: read as UTC
    assert rec.valid_from == datetime(2025, 12, 31, 0, 0, 0, 123456, tzinfo=UTC)
    assert rec.valid_until == datetime(2026, 1, 31, tzinfo=UTC)
    assert rec.verify_key == sk.verify_key


@pytest.mark.parametrize("key_field", ["ukId", "unique_key_id", "key_id"])
async def test_lookup_request_carries_the_key_id_every_dialect_reads(make_registry, key_field: str) -> None:
    registry, client = make_registry(key_field)
    sk = SigningKey.generate()
    registry.records = [core_record("bpp.lakou.mq", kid, sk, **{key_field: kid}) for kid in ("a", "b", "c")]

    records = await client.lookup(subscriber_id="bpp.lakou.mq", unique_key_id="b", domain="nic2004:52110")

    assert len(records) == 1 and records[0].unique_key_id == "b"
    body = registry.bodies[-1]
    assert body["subscriber_id"] == "bpp.lakou.mq" and body["domain"] == "nic2004:52110"
    assert "type" not in body and "city" not in body  # criteria not given are not sent as null


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda rs: {"message": rs}, id="message"),
        pytest.param(lambda rs: {"data": rs}, id="data"),
        pytest.param(lambda rs: {"message": {"subscribers": rs}}, id="message.subscribers"),
        pytest.param(lambda rs: rs[0], id="single-object"),
    ],
)
async def test_wrapped_responses_are_accepted(make_registry, wrap) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", "uk-1", sk)]
    registry.wrap = wrap

    [rec] = await client.lookup(subscriber_id="seller.example.mq", unique_key_id="uk-1")

    assert rec.subscriber_id == "seller.example.mq" and rec.verify_key == sk.verify_key


async def test_empty_answer_is_no_such_subscriber_not_an_error(make_registry) -> None:
    registry, client = make_registry()
    assert await client.lookup(subscriber_id="nobody.example") == []
    registry.wrap = lambda rs: {"message": rs}
    assert await client.lookup(subscriber_id="nobody.example") == []


async def test_malformed_record_does_not_break_the_others(make_registry) -> None:
    registry, client = make_registry()
    good, bad = SigningKey.generate(), SigningKey.generate()
    registry.ignores_criteria = True
    registry.records = [
        ondc_record("good.example.mq", "k", good),
        ondc_record("bad.example.mq", "k", bad, signing_public_key="not a key!!"),
        "garbage",
        {"signing_public_key": raw_b64(good)},  # no subscriber_id
        ondc_record("late.example.mq", "k", good, valid_until="next tuesday"),
    ]

    records = await client.lookup(domain="ONDC:RET10")

    by_id = {r.subscriber_id: r for r in records}
    assert set(by_id) == {"good.example.mq", "bad.example.mq", "late.example.mq"}
    assert by_id["good.example.mq"].usable_at(utc(T0)) is None
    assert by_id["bad.example.mq"].verify_key is None
    assert "signing_public_key" in by_id["bad.example.mq"].usable_at(utc(T0))
    assert "valid_until" in by_id["late.example.mq"].usable_at(utc(T0))

    resolver = KeyResolver(client, clock=Clock())
    assert (await resolver.resolve("good.example.mq", "k")).verify_key == good.verify_key
    with pytest.raises(KeyUnusable, match="signing_public_key"):
        await resolver.resolve("bad.example.mq", "k")


# ---------------------------------------------------------------------------------------------
# normalise_record / usable_at, pure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("BAP", "BAP"), ("bpp", "BPP"), ("Bg", "BG"), ("buyerApp", "BAP"), ("sellerApp", "BPP"),
     ("gateway", "BG"), ("BREG", "BREG"), ("bppr", "BREG"), ("bgr", "BREG"), ("lreg", "LREG"), ("", None)],
)
def test_type_aliases(given: str, expected: str | None) -> None:
    assert normalise_record({"subscriber_id": "x", "type": given}).type == expected


@pytest.mark.parametrize("field_name", ["ukId", "unique_key_id", "key_id", "pub_key_id"])
def test_key_id_spellings(field_name: str) -> None:
    assert normalise_record({"subscriber_id": "x", field_name: "kid"}).unique_key_id == "kid"


@pytest.mark.parametrize(
    "stamp",
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000000000Z",
     "2026-01-01T04:00:00+04:00", "2026-01-01T00:00:00", "2026-01-01 00:00:00+00:00", T0, T0 * 1000],
)
def test_timestamp_variants(stamp: Any) -> None:
    assert normalise_record({"subscriber_id": "x", "valid_until": stamp}).valid_until == utc(T0)


def test_pem_signing_key_is_parsed() -> None:
    # Succinct serves PEM when asked with `pub_key_format: PEM` (digest §5.4).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sk = SigningKey.generate()
    pem = Ed25519PublicKey.from_public_bytes(sk.verify_key.encode()).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    record = normalise_record({"subscriber_id": "x", "signing_public_key": pem})
    assert record.verify_key == sk.verify_key and record.signing_public_key == pem


def test_elements_that_name_no_subscriber_are_invalid() -> None:
    with pytest.raises(InvalidRecord, match="subscriber_id"):
        normalise_record({"url": "https://x"})
    with pytest.raises(InvalidRecord, match="list"):
        normalise_record([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("over", "at", "reason"),
    [
        ({"status": "UNSUBSCRIBED"}, T0, "status UNSUBSCRIBED"),
        ({"status": "INITIATED"}, T0, "status INITIATED"),
        ({"status": None}, T0, "status missing"),
        ({"valid_from": iso(T0 + 10)}, T0, "not valid before"),
        ({"valid_until": iso(T0 - 10)}, T0, "expired"),
        ({"signing_public_key": None}, T0, "no signing_public_key"),
        ({"signing_public_key": base64.b64encode(b"short").decode()}, T0, "unreadable signing_public_key"),
    ],
)
def test_usable_at_gives_the_specific_reason(over: dict[str, Any], at: float, reason: str) -> None:
    record = normalise_record(core_record("bpp.lakou.mq", "k1", SigningKey.generate(), **over))
    found = record.usable_at(utc(at))
    assert found is not None and reason in found and "bpp.lakou.mq|k1" in found


def test_usable_at_bounds_are_inclusive() -> None:
    record = normalise_record(core_record("s", "k", SigningKey.generate(),
                                          valid_from=iso(T0), valid_until=iso(T0 + 60)))
    assert record.usable_at(utc(T0)) is None and record.usable_at(utc(T0 + 60)) is None
    assert record.usable_at(utc(T0 + 61)) is not None


# ---------------------------------------------------------------------------------------------
# KeyResolver: one lookup per key, expiry, status, negative cache, failures
# ---------------------------------------------------------------------------------------------


async def test_fifty_concurrent_resolves_make_one_registry_call(make_registry) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", "uk-1", sk)]
    registry.delay = 0.3  # keep the first lookup in flight while the others arrive
    resolver = KeyResolver(client, clock=Clock())

    results = await asyncio.gather(*(resolver.resolve("seller.example.mq", "uk-1") for _ in range(50)))

    assert registry.calls == 1
    assert all(r.verify_key == sk.verify_key for r in results)
    assert resolver.stats["lookups"] == 1 and resolver.stats["misses"] == 50
    await resolver.resolve("seller.example.mq", "uk-1")
    assert registry.calls == 1 and resolver.stats["hits"] == 1


async def test_shared_lookup_failure_reaches_every_waiter_and_is_not_cached(make_registry) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", "uk-1", sk)]
    registry.status, registry.delay = 503, 0.2
    resolver = KeyResolver(client, clock=Clock())

    outcomes = await asyncio.gather(*(resolver.resolve("seller.example.mq", "uk-1") for _ in range(10)),
                                    return_exceptions=True)

    assert registry.calls == 1
    assert all(isinstance(o, RegistryUnavailable) and o.status_code == 503 for o in outcomes)
    assert not any(isinstance(o, KeyResolutionError) for o in outcomes)
    registry.status, registry.delay = 200, 0.0
    assert (await resolver.resolve("seller.example.mq", "uk-1")).verify_key == sk.verify_key
    assert registry.calls == 2


async def test_cancelled_waiter_does_not_cancel_the_shared_lookup(make_registry) -> None:
    registry, client = make_registry()
    registry.records = [ondc_record("seller.example.mq", "uk-1", SigningKey.generate())]
    registry.delay = 0.3
    resolver = KeyResolver(client, clock=Clock())

    first = asyncio.create_task(resolver.resolve("seller.example.mq", "uk-1"))
    second = asyncio.create_task(resolver.resolve("seller.example.mq", "uk-1"))
    await asyncio.sleep(0.05)
    first.cancel()

    assert (await second).subscriber_id == "seller.example.mq"
    assert first.cancelled() and registry.calls == 1


async def test_entry_expires_after_max_age(make_registry) -> None:
    registry, client = make_registry()
    registry.records = [ondc_record("seller.example.mq", "uk-1", SigningKey.generate())]
    clock = Clock()
    resolver = KeyResolver(client, max_age_seconds=300, clock=clock)

    await resolver.resolve("seller.example.mq", "uk-1")
    clock.t += 299
    await resolver.resolve("seller.example.mq", "uk-1")
    assert registry.calls == 1
    clock.t += 2
    await resolver.resolve("seller.example.mq", "uk-1")
    assert registry.calls == 2


async def test_never_served_past_valid_until(make_registry) -> None:
    registry, client = make_registry("key_id")
    registry.records = [core_record("bpp.lakou.mq", "k1", SigningKey.generate(), valid_until=iso(T0 + 10))]
    clock = Clock()
    resolver = KeyResolver(client, max_age_seconds=300, clock=clock)

    await resolver.resolve("bpp.lakou.mq", "k1")
    clock.t = T0 + 11
    with pytest.raises(KeyUnusable, match="expired"):
        await resolver.resolve("bpp.lakou.mq", "k1")
    assert registry.calls == 2  # the entry died at valid_until, not at max_age
    # A signature `created` before expiry does not make an expired key usable now.
    with pytest.raises(KeyUnusable, match="expired"):
        await resolver.resolve("bpp.lakou.mq", "k1", at=T0 + 5)


async def test_renewed_validity_is_picked_up_at_valid_until(make_registry) -> None:
    registry, client = make_registry("key_id")
    sk = SigningKey.generate()
    registry.records = [core_record("bpp.lakou.mq", "k1", sk, valid_until=iso(T0 + 10))]
    clock = Clock()
    resolver = KeyResolver(client, clock=clock)

    await resolver.resolve("bpp.lakou.mq", "k1")
    registry.records = [core_record("bpp.lakou.mq", "k1", sk, valid_until=iso(T0 + DAY))]
    clock.t = T0 + 11
    assert (await resolver.resolve("bpp.lakou.mq", "k1")).valid_until == utc(T0 + DAY)


async def test_revoked_key_is_refused_once_the_entry_ages_out(make_registry) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", "uk-1", sk)]
    clock = Clock()
    resolver = KeyResolver(client, max_age_seconds=60, clock=clock)
    await resolver.resolve("seller.example.mq", "uk-1")

    registry.records = [ondc_record("seller.example.mq", "uk-1", sk, status="UNSUBSCRIBED")]
    clock.t += 30
    await resolver.resolve("seller.example.mq", "uk-1")  # documented lag: within max_age
    clock.t += 31
    with pytest.raises(KeyUnusable, match="UNSUBSCRIBED") as info:
        await resolver.resolve("seller.example.mq", "uk-1")
    assert "UNSUBSCRIBED" in info.value.reason


async def test_invalidate_forces_a_fresh_lookup(make_registry) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", "uk-1", sk), ondc_record("seller.example.mq", "uk-2", sk)]
    resolver = KeyResolver(client, clock=Clock())
    await resolver.resolve("seller.example.mq", "uk-1")
    await resolver.resolve("seller.example.mq", "uk-2")

    registry.records = [ondc_record("seller.example.mq", k, sk, status="UNSUBSCRIBED") for k in ("uk-1", "uk-2")]
    resolver.invalidate("seller.example.mq", "uk-1")
    with pytest.raises(KeyUnusable):
        await resolver.resolve("seller.example.mq", "uk-1")
    await resolver.resolve("seller.example.mq", "uk-2")  # other key untouched: still cached
    assert registry.calls == 3
    resolver.invalidate("seller.example.mq")
    with pytest.raises(KeyUnusable):
        await resolver.resolve("seller.example.mq", "uk-2")


async def test_not_yet_valid_key_is_refused_until_valid_from(make_registry) -> None:
    registry, client = make_registry()
    registry.records = [ondc_record("seller.example.mq", "uk-1", SigningKey.generate(),
                                    valid_from=iso(T0 + 100))]
    clock = Clock()
    resolver = KeyResolver(client, clock=clock)

    with pytest.raises(KeyUnusable, match="not valid before"):
        await resolver.resolve("seller.example.mq", "uk-1")
    clock.t = T0 + 150
    assert (await resolver.resolve("seller.example.mq", "uk-1")).unique_key_id == "uk-1"


async def test_validity_is_checked_at_the_signature_created_time(make_registry) -> None:
    registry, client = make_registry()
    registry.records = [ondc_record("seller.example.mq", "uk-1", SigningKey.generate(),
                                    valid_from=iso(T0 - 100))]
    resolver = KeyResolver(client, clock=Clock())

    await resolver.resolve("seller.example.mq", "uk-1", at=T0 - 50)
    with pytest.raises(KeyUnusable, match="not valid before"):
        await resolver.resolve("seller.example.mq", "uk-1", at=T0 - 200)


async def test_unknown_key_is_negatively_cached(make_registry) -> None:
    registry, client = make_registry()
    registry.records = [ondc_record("seller.example.mq", "uk-1", SigningKey.generate())]
    clock = Clock()
    resolver = KeyResolver(client, negative_max_age_seconds=30, clock=clock)

    with pytest.raises(KeyNotFound, match="uk-404") as info:
        await resolver.resolve("seller.example.mq", "uk-404")
    assert "seller.example.mq" in info.value.reason
    for _ in range(5):
        with pytest.raises(KeyNotFound):
            await resolver.resolve("seller.example.mq", "uk-404")
    assert registry.calls == 1 and resolver.stats["negative_hits"] == 5

    registry.records.append(ondc_record("seller.example.mq", "uk-404", SigningKey.generate()))
    clock.t += 31
    assert (await resolver.resolve("seller.example.mq", "uk-404")).unique_key_id == "uk-404"
    assert registry.calls == 2


async def test_registry_ignoring_criteria_cannot_lend_another_subscribers_key(make_registry) -> None:
    registry, client = make_registry()
    registry.ignores_criteria = True
    mine, theirs = SigningKey.generate(), SigningKey.generate()
    registry.records = [
        ondc_record("other.example.mq", "uk-1", theirs),
        ondc_record("seller.example.mq", "uk-0", theirs),
        ondc_record("seller.example.mq", "uk-1", mine),
    ]
    resolver = KeyResolver(client, clock=Clock())

    assert (await resolver.resolve("seller.example.mq", "uk-1")).verify_key == mine.verify_key
    with pytest.raises(KeyNotFound):
        await resolver.resolve("nobody.example.mq", "uk-1")


async def test_records_per_domain_share_one_key(make_registry) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [
        ondc_record("seller.example.mq", "uk-1", sk, domain="ONDC:RET12"),
        ondc_record("seller.example.mq", "uk-1", sk, domain="ONDC:RET10", status="UNSUBSCRIBED"),
        ondc_record("seller.example.mq", "uk-1", sk, domain="ONDC:RET11"),
    ]
    resolver = KeyResolver(client, clock=Clock())

    rec = await resolver.resolve("seller.example.mq", "uk-1")

    assert rec.verify_key == sk.verify_key
    assert rec.domain == "ONDC:RET11"  # deterministic: first usable in domain order
    assert registry.calls == 1


async def test_records_with_disagreeing_keys_are_refused(make_registry) -> None:
    registry, client = make_registry()
    registry.records = [
        ondc_record("seller.example.mq", "uk-1", SigningKey.generate(), domain="ONDC:RET10"),
        ondc_record("seller.example.mq", "uk-1", SigningKey.generate(), domain="ONDC:RET11"),
    ]
    resolver = KeyResolver(client, clock=Clock())

    with pytest.raises(KeyUnusable, match="different signing keys"):
        await resolver.resolve("seller.example.mq", "uk-1")


async def test_same_key_in_raw_and_der_form_agrees(make_registry) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [
        ondc_record("seller.example.mq", "uk-1", sk, domain="ONDC:RET10"),
        ondc_record("seller.example.mq", "uk-1", sk, domain="ONDC:RET11", signing_public_key=raw_b64(sk)),
    ]
    resolver = KeyResolver(client, clock=Clock())
    assert (await resolver.resolve("seller.example.mq", "uk-1")).verify_key == sk.verify_key


async def test_cache_is_bounded_lru(make_registry) -> None:
    registry, client = make_registry()
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", f"uk-{i}", sk) for i in range(4)]
    resolver = KeyResolver(client, clock=Clock(), max_entries=3)

    for i in range(3):
        await resolver.resolve("seller.example.mq", f"uk-{i}")
    await resolver.resolve("seller.example.mq", "uk-0")  # uk-0 now most recently used
    await resolver.resolve("seller.example.mq", "uk-3")  # evicts uk-1
    assert resolver.stats["entries"] == 3 and registry.calls == 4

    await resolver.resolve("seller.example.mq", "uk-0")
    assert registry.calls == 4
    await resolver.resolve("seller.example.mq", "uk-1")
    assert registry.calls == 5

    # Hostile unknown keyIds cannot grow memory either.
    for i in range(20):
        with pytest.raises(KeyNotFound):
            await resolver.resolve("seller.example.mq", f"junk-{i}")
    assert resolver.stats["entries"] == 3


# ---------------------------------------------------------------------------------------------
# Registry failures are RegistryUnavailable, never "not found"
# ---------------------------------------------------------------------------------------------


async def test_connection_refused_is_unavailable(http: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    resolver = KeyResolver(RegistryClient(url, http=http), clock=Clock())
    with pytest.raises(RegistryUnavailable, match="127.0.0.1") as info:
        await resolver.resolve("seller.example.mq", "uk-1")
    assert info.value.url == f"{url}/lookup"
    assert resolver.stats["entries"] == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param({"status": 500}, "HTTP 500", id="5xx"),
        pytest.param({"status": 401}, "HTTP 401", id="4xx"),
        pytest.param({"raw_response": ("<html>Bad Gateway</html>", "text/html")}, "not JSON", id="html"),
        pytest.param({"raw_response": ('{"message":{"ack":{"status":"NACK"}},"error":{"code":"1001"}}',
                                       "application/json")}, "refused", id="nack"),
        pytest.param({"raw_response": ('"hello"', "application/json")}, "unexpected JSON", id="scalar"),
        pytest.param({"delay": 1.0}, "timed out", id="timeout"),
    ],
)
async def test_registry_failures_are_unavailable_and_not_cached(make_registry, setup, message) -> None:
    registry, client = make_registry(timeout=0.3)
    sk = SigningKey.generate()
    registry.records = [ondc_record("seller.example.mq", "uk-1", sk)]
    for name, value in setup.items():
        setattr(registry, name, value)
    resolver = KeyResolver(client, clock=Clock())

    with pytest.raises(RegistryUnavailable, match=message) as info:
        await resolver.resolve("seller.example.mq", "uk-1")
    assert client.lookup_url in str(info.value)

    registry.status, registry.raw_response, registry.delay = 200, None, 0.0
    assert (await resolver.resolve("seller.example.mq", "uk-1")).verify_key == sk.verify_key


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="absolute http"):
        RegistryClient("registry.example.mq")
