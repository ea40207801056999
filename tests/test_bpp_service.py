"""The BPP service over real HTTP: a signed BAP talks to it, callbacks come back signed and valid.

Each test network is the real registry service (registry/app.py; the BPP registers itself through
its admin API), a recording BAP (and gateway) peer answering ACK, and the BPP itself (`bpp.app.create_app`) with the demo catalogue of Martinique merchants.
Every callback the peers receive is checked against the BPP's key and the official 1.1.1
transaction.yaml before a test looks at it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from nacl.public import PrivateKey
from nacl.signing import SigningKey
from sqlalchemy import MetaData, func, select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from beckn.errors import ACK_BODY
from beckn.keys import load_verify_key
from beckn.settings import Settings
from beckn.signing import Signer, body_digest, parse_signature_header, verify_signature
from beckn.store.db import create_engine, session_factory, upgrade
from beckn.store.tables import metadata
from bpp.app import create_app
from bpp.catalogue import DEMO_CATALOGUE
from bpp.tables import BppItem, BppOrder, BppOrderLine
from conftest import TRANSACTION_YAML, free_port, migrated_sqlite_copy, serve_app
from test_conformance import Spec
from test_store import _diff

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

BAP_ID = "bap.lakou.test"
GATEWAY_ID = "gateway.lakou.test"
ADMIN_TOKEN = "operateur-secret-972"
REGISTRY_TOKEN = "registre-secret-972"
DEMO = json.loads(DEMO_CATALOGUE.read_text(encoding="utf-8"))
DEMO_ITEMS = {(p["id"], i["id"]): i for p in DEMO["providers"] for i in p["items"]}


def demo_item(item_id: str) -> dict[str, Any]:
    return next(item for (_, iid), item in DEMO_ITEMS.items() if iid == item_id)


def demo_price(item_id: str) -> Decimal:
    return Decimal(demo_item(item_id)["price"])


# ------------------------------------------------------------------------------ the network


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Peer:
    """A BAP or gateway: records every Beckn call it gets and answers ACK."""

    subscriber_id: str
    type: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    ukid: str = field(default_factory=lambda: str(uuid.uuid4()))
    received: list[Received] = field(default_factory=list)
    base: str = ""

    @property
    def url(self) -> str:
        return f"{self.base}/beckn"

    @property
    def signer(self) -> Signer:
        return Signer(self.subscriber_id, self.ukid, self.key)

    def registration(self) -> dict[str, Any]:
        """The record the registry's admin API takes, as `BecknNode.registration()` makes it."""
        return {
            "subscriber_id": self.subscriber_id, "type": self.type, "url": self.url,
            "domain": "lakou:retail", "city": "", "country": "MTQ", "unique_key_id": self.ukid,
            "signing_public_key": base64.b64encode(bytes(self.key.verify_key)).decode(),
            "encr_public_key": base64.b64encode(bytes(PrivateKey.generate().public_key)).decode(),
            "valid_from": "2020-01-01T00:00:00.000Z", "valid_until": "2099-01-01T00:00:00.000Z",
        }

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            self.received.append(Received(request.url.path, await request.body(), dict(request.headers)))
            return Response(ACK_BODY, media_type="application/json")

        return Starlette(routes=[Route("/beckn/{action}", endpoint, methods=["POST"])])


@dataclass
class Registry:
    """The real registry service (registry/app.py), fed through its admin API."""

    url: str
    token: str

    def register(self, record: dict[str, Any]) -> None:
        response = httpx.post(f"{self.url}/admin/participants", json=record,
                              headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def spec() -> Spec:
    with TRANSACTION_YAML.open(encoding="utf-8") as f:
        return Spec(yaml.safe_load(f))


@dataclass
class Network:
    bpp: str  # base URL
    bpp_id: str
    bpp_verify_key: Any
    bap: Peer
    gateway: Peer
    db_url: str
    spec: Spec
    registry: Registry
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    # ---- requests

    def context(self, action: str, *, transaction_id: str | None = None, city: str = "*", **extra: Any) -> dict:
        context = {
            "domain": "lakou:retail", "action": action, "version": "1.1.0",
            "location": {"city": {"code": city}, "country": {"code": "MTQ"}},
            "bap_id": BAP_ID, "bap_uri": self.bap.url,
            "transaction_id": transaction_id or str(uuid.uuid4()), "message_id": str(uuid.uuid4()),
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "ttl": "PT30S",
        }
        if action != "search":
            context |= {"bpp_id": self.bpp_id, "bpp_uri": f"{self.bpp}/beckn"}
        return context | extra

    def post(self, action: str, body: dict | bytes, *, via_gateway: bool = False,
             headers: dict[str, str] | None = None) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        sent = {"Content-Type": "application/json", "Authorization": self.bap.signer.sign(raw)}
        if via_gateway:
            sent["X-Gateway-Authorization"] = self.gateway.signer.sign(raw)
        return self.http.post(f"{self.bpp}/beckn/{action}", content=raw, headers=sent | (headers or {}))

    def call(self, action: str, message: dict, *, peer: Peer | None = None, via_gateway: bool = False,
             **context: Any) -> dict:
        """Send a request, expect ACK, and return its (checked) callback."""
        body = {"context": self.context(action, **context), "message": message}
        response = self.post(action, body, via_gateway=via_gateway)
        assert response.status_code == 200 and response.content == ACK_BODY, response.text
        return self.callback(body["context"]["message_id"], f"on_{action}", peer=peer)

    def callback(self, message_id: str, action: str, *, peer: Peer | None = None, timeout: float = 10) -> dict:
        peer = peer or self.bap
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in peer.received:
                if received.path == f"/beckn/{action}" and received.json["context"]["message_id"] == message_id:
                    self.check(received, action)
                    return received.json
            time.sleep(0.02)
        raise AssertionError(f"no {action} for message {message_id} at {peer.subscriber_id}")

    def callbacks(self, message_id: str, action: str, peer: Peer | None = None) -> list[Received]:
        return [r for r in (peer or self.bap).received
                if r.path == f"/beckn/{action}" and r.json["context"]["message_id"] == message_id]

    def check(self, received: Received, action: str) -> None:
        """Signed by the BPP over these exact bytes, and valid against transaction.yaml."""
        params = parse_signature_header(received.headers["authorization"])
        assert params.subscriber_id == self.bpp_id
        verify_signature(params, self.bpp_verify_key, digest_b64=body_digest(received.body))
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in self.spec.request_validator(action).iter_errors(received.json)]
        assert errors == [], errors
        context = received.json["context"]
        assert context["action"] == action
        assert context["bpp_id"] == self.bpp_id and context["bpp_uri"] == f"{self.bpp}/beckn"

    # ---- state

    def order_view(self, order_id: str, token: str | None = ADMIN_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(f"{self.bpp}/api/v1/orders/{order_id}", headers=headers)

    def query(self, statement: Any, *, commit: bool = False) -> list[Any]:
        async def run() -> list[Any]:
            engine = create_engine(self.db_url)
            try:
                async with session_factory(engine)() as session:
                    result = await session.execute(statement)
                    rows = list(result.all())
                    if commit:
                        await session.commit()
                    return rows
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def stock(self, item_id: str) -> int:
        return self.query(select(BppItem.stock).where(BppItem.id == item_id))[0][0]


@contextlib.contextmanager
def network(spec: Spec, data_dir: Path, db_url: str, **settings: Any) -> Iterator[Network]:
    """Registry, BAP, gateway and a BPP with the demo catalogue, all on 127.0.0.1."""
    from registry.app import create_app as create_registry

    registry_dir = data_dir / "registry"
    migrated_sqlite_copy(registry_dir / "r.db")  # the registry's store is not what these tests are about
    registry_settings = Settings(data_dir=registry_dir, database_url=f"sqlite+aiosqlite:///{registry_dir / 'r.db'}",
                                 registry_admin_token=REGISTRY_TOKEN)
    bap, gateway = Peer(BAP_ID, "BAP"), Peer(GATEWAY_ID, "BG")
    with serve_app(create_registry(registry_settings)) as registry_url, serve_app(bap.app()) as bap.base, \
            serve_app(gateway.app()) as gateway.base:
        registry = Registry(registry_url, REGISTRY_TOKEN)
        registry.register(bap.registration())
        registry.register(gateway.registration())
        port = free_port()
        # With the registry's token the BPP registers its own key at start, as in production.
        config = Settings(data_dir=data_dir, database_url=db_url, registry_url=registry_url,
                          registry_admin_token=REGISTRY_TOKEN, subscriber_id="bpp.lakou.test")
        values = {"bpp_catalogue": "demo", "bpp_admin_token": ADMIN_TOKEN} | settings
        app = create_app(_bpp_settings(config, values), port=port)
        node = app.state.node
        with serve_app(app, port=port) as bpp_url:
            deadline = time.monotonic() + 60  # a guard against a hang, generous for a loaded machine
            while not node.registered:
                assert time.monotonic() < deadline, "the BPP did not register at the registry"
                time.sleep(0.02)
            yield Network(bpp=bpp_url, bpp_id=node.subscriber_id,
                          bpp_verify_key=load_verify_key(node.keys["signing_public_key"]),
                          bap=bap, gateway=gateway, db_url=db_url, spec=spec, registry=registry)


def _bpp_settings(config: Settings, values: dict[str, Any]) -> Settings:
    from bpp.settings import BppSettings

    return BppSettings(**(config.model_dump() | values))


@pytest.fixture(scope="module")
def shared(spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """One SQLite network for the tests that only read the catalogue or quote."""
    data_dir = tmp_path_factory.mktemp("bpp")
    with network(spec, data_dir, f"sqlite+aiosqlite:///{data_dir / 'lakou.db'}") as net:
        yield net


@pytest.fixture
def net(spec: Spec, tmp_path: Path, db_url: str) -> Iterator[Network]:
    """A fresh network per test on SQLite and on PostgreSQL: for orders and stock."""
    with network(spec, tmp_path, db_url) as fresh:
        yield fresh


# ------------------------------------------------------------------------------ helpers


def lang_tags(lang: str) -> list[dict[str, Any]]:
    return [{"descriptor": {"code": "search"}, "list": [{"descriptor": {"code": "lang"}, "value": lang}]}]


def search(net: Network, intent: dict | None = None, *, lang: str | None = None, **context: Any) -> dict:
    message: dict[str, Any] = {}
    if intent is not None or lang is not None:
        message["intent"] = dict(intent or {})
        if lang is not None:
            message["intent"]["tags"] = lang_tags(lang)
    return net.call("search", message, **context)


def found_items(on_search: dict) -> dict[str, dict]:
    return {item["id"]: item for provider in on_search["message"]["catalog"]["providers"]
            for item in provider["items"]}


def order(provider: str, *lines: tuple[str, int], **extra: Any) -> dict:
    return {"order": {"provider": {"id": provider},
                      "items": [{"id": item, "quantity": {"selected": {"count": count}}} for item, count in lines],
                      **extra}}


BILLING = {"name": "Léa Marie-Sainte", "phone": "+596696123456", "email": "lea.marie-sainte@example.mq",
           "address": "12 rue Victor Hugo, 97200 Fort-de-France"}
PAY_AT_PICKUP = [{"type": "ON-FULFILLMENT", "collected_by": "BPP"}]


def confirm_message(provider: str, *lines: tuple[str, int]) -> dict:
    return order(provider, *lines, billing=BILLING, payments=PAY_AT_PICKUP,
                 fulfillments=[{"type": "Self-Pickup"}])


# ------------------------------------------------------------------------------ search


@pytest.mark.parametrize("query, lang, expected", [
    ("christophine", "fr", {"christophine-kg"}),
    ("CHRISTOPHINES", "fr", {"christophine-kg"}),
    ("Chayote", "en", {"christophine-kg"}),
    ("Ñame", "es", {"igname-kg"}),
    ("name", "es", {"igname-kg"}),
    ("yams", "en", {"igname-kg"}),
    ("bananes plantain", "fr", {"banane-plantain-kg"}),
    ("plátano", "es", {"banane-plantain-kg"}),
    ("PLATANOS", "es", {"banane-plantain-kg"}),
    ("Kochbananen", "de", {"banane-plantain-kg"}),
    ("Süßkartoffel", "de", {"patate-douce-kg"}),
    ("susskartoffel", "de", {"patate-douce-kg"}),
    ("red snapper", "en", {"vivaneau-kg"}),
    ("poulpe", "fr", {"chatrou-kg"}),
    ("lambí", "es", {"lambi-kg"}),
    ("rhum vieux", "fr", {"rhum-vieux-vsop-70cl", "rhum-hors-d-age-70cl"}),
    ("tourment d'amour", "en", {"tourment-d-amour"}),
    ("pâtisseries", "fr", {"sacristain", "tourment-d-amour", "flan-coco"}),
    ("meeresfruchte", "de", {"chatrou-kg", "lambi-kg"}),
])
def test_search_matches_any_language_ignoring_accents_and_answers_in_the_asked_one(
    shared: Network, query: str, lang: str, expected: set[str]
) -> None:
    answer = search(shared, {"descriptor": {"name": query}}, lang=lang)
    items = found_items(answer)
    assert set(items) == expected
    for item_id, item in items.items():
        assert item["descriptor"]["name"] == demo_item(item_id)["descriptor"][lang]["name"]
        assert item["price"] == {"currency": "EUR", "value": demo_item(item_id)["price"]}
        assert item["quantity"]["available"]["count"] == demo_item(item_id)["stock"]
    provider = answer["message"]["catalog"]["providers"][0]
    demo_provider = next(p for p in DEMO["providers"] if p["id"] == provider["id"])
    assert provider["descriptor"]["name"] == demo_provider["descriptor"][lang]["name"]
    assert provider["locations"][0]["city"]["code"] == demo_provider["location"]["city"]["code"]


def test_french_is_the_default_language_and_unknown_ones_fall_back_to_it(shared: Network) -> None:
    for lang in (None, "it", "EN-gb"):
        items = found_items(search(shared, {"item": {"descriptor": {"name": "igname"}}}, lang=lang))
        expected = "Yam" if lang == "EN-gb" else "Igname"
        assert items["igname-kg"]["descriptor"]["name"] == expected


def test_empty_intent_lists_the_whole_catalogue(shared: Network) -> None:
    answer = search(shared, None)
    catalog = answer["message"]["catalog"]
    assert [p["id"] for p in catalog["providers"]] == sorted(p["id"] for p in DEMO["providers"])
    assert len(found_items(answer)) == len(DEMO_ITEMS) == 25
    for provider in catalog["providers"]:
        assert provider["payments"][0]["type"] == "ON-FULFILLMENT"
        assert any(f["type"] == "Self-Pickup" for f in provider["fulfillments"])


def test_search_by_category_provider_and_commune(shared: Network) -> None:
    fish = found_items(search(shared, {"category": {"id": "poissons"}}))
    assert set(fish) == {"vivaneau-kg", "thon-jaune-kg", "dorade-coryphene-kg", "marlin-fume-200g"}
    seafood = found_items(search(shared, {"category": {"descriptor": {"name": "Seafood"}}}))
    assert set(seafood) == {"chatrou-kg", "lambi-kg"}
    bakery = found_items(search(shared, {"provider": {"descriptor": {"name": "Bäckerei"}}}))
    assert set(bakery) == {i for (p, i) in DEMO_ITEMS if p == "boulangerie-fort-de-france"}
    by_id = found_items(search(shared, {"provider": {"id": "distillerie-sainte-marie"},
                                        "descriptor": {"name": "shrubb"}}))
    assert set(by_id) == {"shrubb-50cl"}

    # The commune from the context, or from a stop of the intent's fulfillment.
    sainte_marie = search(shared, {}, city="insee:97228")["message"]["catalog"]["providers"]
    assert [p["id"] for p in sainte_marie] == ["distillerie-sainte-marie"]
    stop = {"fulfillment": {"stops": [{"type": "end", "location": {"city": {"code": "insee:97209"}}}]}}
    # The Lamentin market garden also has a stall in Fort-de-France (one of its other locations).
    assert {p["id"] for p in search(shared, stop)["message"]["catalog"]["providers"]} == {
        "boulangerie-fort-de-france", "jardin-lamentin"}
    # Free text also matches the merchant's name, and every word must match.
    assert set(found_items(search(shared, {"descriptor": {"name": "vivaneau Robert"}}))) == {"vivaneau-kg"}


def test_no_match_is_an_on_search_with_an_empty_catalog(shared: Network) -> None:
    # Rum is made in Sainte-Marie, not in Fort-de-France.
    answer = search(shared, {"descriptor": {"name": "rhum"}}, city="insee:97209")
    assert answer["message"]["catalog"]["providers"] == []
    assert "error" not in answer
    # Words match from their start: "thon" is tuna, and does not find the "python" in nothing.
    assert found_items(search(shared, {"descriptor": {"name": "python"}})) == {}
    assert set(found_items(search(shared, {"descriptor": {"name": "thon"}}))) == {"thon-jaune-kg"}


# ------------------------------------------------------------------------------ routing


def test_on_search_goes_direct_by_default_even_for_a_gateway_search(shared: Network) -> None:
    answer = search(shared, {"descriptor": {"name": "lambi"}}, via_gateway=True)
    assert set(found_items(answer)) == {"lambi-kg"}
    assert not [r for r in shared.gateway.received if r.path == "/beckn/on_search"]


def test_on_search_goes_back_through_the_gateway_when_configured(spec: Spec, tmp_path: Path) -> None:
    with network(spec, tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}",
                 bpp_on_search_via="gateway") as net:
        via_gateway = net.call("search", {"intent": {"descriptor": {"name": "giraumon"}}},
                               via_gateway=True, peer=net.gateway)
        assert set(found_items(via_gateway)) == {"giraumon-kg"}
        message_id = via_gateway["context"]["message_id"]
        assert net.callbacks(message_id, "on_search") == []  # nothing went to the BAP directly

        # A search straight from the BAP (no gateway signature) is answered straight to it.
        direct = net.call("search", {"intent": {"descriptor": {"name": "giraumon"}}})
        assert set(found_items(direct)) == {"giraumon-kg"}
        assert net.callbacks(direct["context"]["message_id"], "on_search", net.gateway) == []


# ------------------------------------------------------------------------------ select, init


def test_select_quotes_every_line_with_exact_decimal_totals(shared: Network) -> None:
    lines = [("sacristain", 3), ("baguette", 7), ("flan-coco", 1)]
    answer = shared.call("select", order("boulangerie-fort-de-france", *lines))
    quote = answer["message"]["order"]["quote"]
    expected = sum((demo_price(item) * count for item, count in lines), Decimal("0"))
    assert quote["price"] == {"currency": "EUR", "value": f"{expected:.2f}"} == {"currency": "EUR", "value": "15.10"}
    assert [(b["item"]["id"], b["item"]["quantity"]["selected"]["count"], b["item"]["price"]["value"],
             b["price"]["value"]) for b in quote["breakup"]] == [
        (item, count, demo_item(item)["price"], f"{demo_price(item) * count:.2f}") for item, count in lines]
    assert sum(Decimal(b["price"]["value"]) for b in quote["breakup"]) == Decimal(quote["price"]["value"])
    assert quote["breakup"][0]["title"] == "Sacristain × 3"
    assert answer["message"]["order"]["provider"]["id"] == "boulangerie-fort-de-france"


def test_select_in_english_and_the_prices_of_the_catalogue_not_the_bap(shared: Network) -> None:
    message = order("jardin-lamentin", ("igname-kg", 2), tags=lang_tags("en"))
    message["order"]["items"][0]["price"] = {"currency": "EUR", "value": "0.01"}  # a BAP cannot set prices
    quote = shared.call("select", message)["message"]["order"]["quote"]
    assert quote["price"]["value"] == "8.40"
    assert quote["breakup"][0]["title"] == "Yam × 2"


@pytest.mark.parametrize("message, code, path", [
    (order("pecherie-robert", ("lambi-kg", 7)), "40002", "message.order.items[0].quantity.selected.count"),
    (order("pecherie-robert", ("vivaneau-kg", 1), ("lambi-kg", 99)), "40002",
     "message.order.items[1].quantity.selected.count"),
    (order("pecherie-robert", ("baguette", 1)), "30004", "message.order.items[0].id"),
    (order("poissonnerie-inconnue", ("lambi-kg", 1)), "30001", "message.order.provider.id"),
    (order("pecherie-robert", ("lambi-kg", 0)), "30000", "message.order.items[0].quantity.selected.count"),
    (order("distillerie-sainte-marie", ("shrubb-50cl", 1), fulfillments=[{"type": "Delivery"}]), "30008",
     "message.order.fulfillments[0].type"),
])
def test_select_problems_are_spec_shaped_errors_in_on_select(
    shared: Network, message: dict, code: str, path: str
) -> None:
    answer = shared.call("select", message)
    assert "message" not in answer
    assert answer["error"]["code"] == code
    assert answer["error"]["paths"] == path
    assert answer["error"]["message"]


def test_init_returns_billing_fulfillment_and_pay_at_pickup_terms(shared: Network) -> None:
    message = order("jardin-lamentin", ("christophine-kg", 3), ("bouquet-garni-creole", 2),
                    billing=BILLING, fulfillments=[{"type": "Self-Pickup"}])
    result = shared.call("init", message)["message"]["order"]
    assert result["billing"] == BILLING
    assert result["quote"]["price"]["value"] == "11.40"  # 3 × 2.80 + 2 × 1.50
    [payment] = result["payments"]
    assert payment["type"] == "ON-FULFILLMENT" and payment["collected_by"] == "BPP"
    assert payment["status"] == "NOT-PAID"
    assert payment["params"] == {"amount": "11.40", "currency": "EUR"}
    [fulfillment] = result["fulfillments"]
    assert fulfillment["type"] == "Self-Pickup"
    assert fulfillment["stops"][0]["location"]["city"]["code"] == "insee:97213"


def test_init_delivery_echoes_the_address_and_refuses_other_payment_terms(shared: Network) -> None:
    end = {"type": "end", "location": {"address": "Rue Schoelcher, 97231 Le Robert", "gps": "14.6790, -60.9420"}}
    message = order("pecherie-robert", ("thon-jaune-kg", 1), billing=BILLING,
                    fulfillments=[{"type": "Delivery", "stops": [end]}])
    result = shared.call("init", message)["message"]["order"]
    assert result["fulfillments"][0]["stops"][-1] == end

    prepaid = order("pecherie-robert", ("thon-jaune-kg", 1), billing=BILLING,
                    payments=[{"type": "PRE-ORDER", "collected_by": "BAP"}])
    assert shared.call("init", prepaid)["error"]["code"] == "40004"
    no_billing = order("pecherie-robert", ("thon-jaune-kg", 1))
    assert shared.call("init", no_billing)["error"] == {
        "code": "30000", "paths": "message.order.billing.name",
        "message": "message.order.billing with at least a name is required"}
    no_address = order("pecherie-robert", ("thon-jaune-kg", 1), billing=BILLING, fulfillments=[{"type": "Delivery"}])
    assert shared.call("init", no_address)["error"]["paths"] == "message.order.fulfillments[0].stops"


# ------------------------------------------------------------------------------ confirm, status


def test_confirm_creates_one_order_and_takes_stock_once_despite_retries(net: Network) -> None:
    lines = [("chatrou-kg", 2), ("vivaneau-kg", 3)]
    before = {item: net.stock(item) for item, _ in lines}
    transaction_id = str(uuid.uuid4())
    body = {"context": net.context("confirm", transaction_id=transaction_id),
            "message": confirm_message("pecherie-robert", *lines)}
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert net.post("confirm", raw).content == ACK_BODY
    first = net.callback(body["context"]["message_id"], "on_confirm")["message"]["order"]

    # A byte-identical retransmission gets the same ACK and is not processed again.
    assert net.post("confirm", raw).content == ACK_BODY
    # The BAP retries the confirm under a new message_id: same order, no new stock taken.
    retried = net.call("confirm", confirm_message("pecherie-robert", *lines), transaction_id=transaction_id)
    assert retried["message"]["order"]["id"] == first["id"]

    assert first["id"].startswith("LKU-") and first["status"] == "ACTIVE"
    assert first["quote"]["price"]["value"] == "84.00"  # 2 × 15.00 + 3 × 18.00
    assert first["payments"][0]["status"] == "NOT-PAID" and first["payments"][0]["params"]["amount"] == "84.00"
    assert first["billing"] == BILLING
    assert first["fulfillments"][0]["state"]["descriptor"]["code"] == "RECEIVED"
    assert [(i["id"], i["quantity"]["selected"]["count"]) for i in first["items"]] == lines

    time.sleep(0.3)  # a second processing of the retransmission would have answered by now
    assert len(net.callbacks(body["context"]["message_id"], "on_confirm")) == 1
    assert {item: net.stock(item) for item, _ in lines} == {item: before[item] - n for item, n in lines}
    assert net.query(select(func.count()).select_from(BppOrder))[0][0] == 1
    assert net.query(select(BppOrderLine.item_id, BppOrderLine.quantity).order_by(BppOrderLine.line_no)) == lines

    # The operator view: the order exists at the BPP with the right items and total.
    view = net.order_view(first["id"])
    assert view.status_code == 200
    assert view.json() | {"created_at": None, "transaction_id": None} == {
        "id": first["id"], "status": "ACTIVE", "transaction_id": None, "bap_id": BAP_ID,
        "provider_id": "pecherie-robert", "currency": "EUR", "total": "84.00", "created_at": None,
        "items": [
            {"id": "chatrou-kg", "name": "Chatrou (poulpe)", "quantity": 2, "unit_price": "15.00", "line_total": "30.00"},
            {"id": "vivaneau-kg", "name": "Vivaneau", "quantity": 3, "unit_price": "18.00", "line_total": "54.00"},
        ]}
    assert "Marie-Sainte" not in view.text  # no personal data in the operator view

    status = net.call("status", {"order_id": first["id"]})["message"]["order"]
    assert status | {"updated_at": None} == first | {"updated_at": None}
    missing = net.call("status", {"order_id": "LKU-0000000000"})
    assert missing["error"]["code"] == "30010" and missing["error"]["paths"] == "message.order_id"


def test_concurrent_confirms_of_one_transaction_make_one_order(net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    before = net.stock("rhum-blanc-50-1l")
    bodies = [{"context": net.context("confirm", transaction_id=transaction_id),
               "message": confirm_message("distillerie-sainte-marie", ("rhum-blanc-50-1l", 4))} for _ in range(4)]

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            async def one(body: dict) -> int:
                raw = json.dumps(body).encode()
                response = await client.post(f"{net.bpp}/beckn/confirm", content=raw, headers={
                    "Content-Type": "application/json", "Authorization": net.bap.signer.sign(raw)})
                return response.status_code
            return await asyncio.gather(*(one(body) for body in bodies))

    assert asyncio.run(send_all()) == [200] * 4
    answers = [net.callback(body["context"]["message_id"], "on_confirm") for body in bodies]
    assert len({answer["message"]["order"]["id"] for answer in answers}) == 1
    assert net.stock("rhum-blanc-50-1l") == before - 4
    assert net.query(select(func.count()).select_from(BppOrder))[0][0] == 1


def test_confirm_of_a_quote_that_no_longer_holds_is_40003_and_changes_nothing(net: Network) -> None:
    """The buyer confirms what on_init showed: a price changed in between refuses the confirm."""
    transaction_id = str(uuid.uuid4())
    initialised = net.call("init", confirm_message("pecherie-robert", ("chatrou-kg", 2)),
                           transaction_id=transaction_id)["message"]["order"]
    assert initialised["quote"]["price"]["value"] == "30.00"
    net.query(update(BppItem).where(BppItem.id == "chatrou-kg").values(price=Decimal("19.90"))
              .returning(BppItem.id), commit=True)  # the fishmonger raises the octopus price
    stock = net.stock("chatrou-kg")

    refused = net.call("confirm", {"order": initialised}, transaction_id=transaction_id)
    assert refused["error"]["code"] == "40003"
    assert refused["error"]["paths"] == "message.order.quote.price.value"
    assert "39.80" in refused["error"]["message"]
    assert net.stock("chatrou-kg") == stock
    assert net.query(select(func.count()).select_from(BppOrder))[0][0] == 0

    # init again shows the new price; confirming that quote places the order.
    again = net.call("init", confirm_message("pecherie-robert", ("chatrou-kg", 2)),
                     transaction_id=transaction_id)["message"]["order"]
    placed = net.call("confirm", {"order": again}, transaction_id=transaction_id)["message"]["order"]
    assert placed["quote"]["price"]["value"] == "39.80" and placed["status"] == "ACTIVE"


def test_confirm_beyond_stock_is_40002_and_changes_nothing(net: Network) -> None:
    before = {item: net.stock(item) for item in ("rhum-hors-d-age-70cl", "shrubb-50cl")}
    answer = net.call("confirm", confirm_message("distillerie-sainte-marie", ("shrubb-50cl", 2),
                                                 ("rhum-hors-d-age-70cl", before["rhum-hors-d-age-70cl"] + 1)))
    assert answer["error"]["code"] == "40002"
    assert answer["error"]["paths"] == "message.order.items[1].quantity.selected.count"
    assert {item: net.stock(item) for item in before} == before
    assert net.query(select(func.count()).select_from(BppOrder))[0][0] == 0

    # Exactly the remaining stock can still be bought, and then it is gone.
    last = net.call("confirm", confirm_message("distillerie-sainte-marie",
                                               ("rhum-hors-d-age-70cl", before["rhum-hors-d-age-70cl"])))
    assert last["message"]["order"]["status"] == "ACTIVE"
    assert net.stock("rhum-hors-d-age-70cl") == 0
    sold_out = net.call("select", order("distillerie-sainte-marie", ("rhum-hors-d-age-70cl", 1)))
    assert sold_out["error"]["code"] == "40002"


def test_a_bap_sees_only_its_own_orders(net: Network) -> None:
    placed = net.call("confirm", confirm_message("jardin-lamentin", ("giraumon-kg", 1)))["message"]["order"]
    other = Peer("autre-bap.lakou.test", "BAP", base=net.bap.base)  # its callbacks land in the same recorder
    net.registry.register(other.registration())
    body = {"context": net.context("status", bap_id=other.subscriber_id), "message": {"order_id": placed["id"]}}
    raw = json.dumps(body).encode()
    response = net.http.post(f"{net.bpp}/beckn/status", content=raw,
                             headers={"Content-Type": "application/json", "Authorization": other.signer.sign(raw)})
    assert response.content == ACK_BODY
    answer = net.callback(body["context"]["message_id"], "on_status")
    assert answer["error"]["code"] == "30010" and "message" not in answer
    assert net.call("status", {"order_id": placed["id"]})["message"]["order"]["id"] == placed["id"]


def test_a_confirm_replayed_after_a_crash_is_not_answered_twice(spec: Spec, tmp_path: Path, db_url: str) -> None:
    from beckn.store.tables import InboundMessage, OutboxMessage
    from sqlalchemy import update

    with network(spec, tmp_path, db_url) as net:
        answer = net.call("confirm", confirm_message("pecherie-robert", ("thon-jaune-kg", 2)))
        stock = net.stock("thon-jaune-kg")
        # As if the process died after committing the order but before marking the message processed.
        reset = net.query(update(InboundMessage).where(InboundMessage.action == "confirm")
                          .values(processed_at=None).returning(InboundMessage.id), commit=True)
        assert len(reset) == 1
    with network(spec, tmp_path, db_url) as restarted:
        deadline = time.monotonic() + 10
        while restarted.query(select(InboundMessage.processed_at).where(InboundMessage.action == "confirm"))[0][0] \
                is None:
            assert time.monotonic() < deadline, "the inbox did not replay the confirm"
            time.sleep(0.05)
        assert restarted.stock("thon-jaune-kg") == stock
        assert restarted.query(select(func.count()).select_from(BppOrder))[0][0] == 1
        assert restarted.query(select(func.count()).select_from(OutboxMessage)
                               .where(OutboxMessage.action == "on_confirm"))[0][0] == 1
        assert answer["message"]["order"]["id"] == restarted.query(select(BppOrder.id))[0][0]


def test_personal_data_is_never_logged(shared: Network, capfd: pytest.CaptureFixture[str]) -> None:
    placed = shared.call("confirm", confirm_message("boulangerie-fort-de-france", ("pain-au-beurre-450g", 1)))
    time.sleep(0.3)  # let the delivery worker log its attempt too
    logged = "".join(capfd.readouterr())
    assert placed["message"]["order"]["id"] in logged  # the logs are really captured here
    for value in (BILLING["name"], BILLING["phone"], BILLING["email"], "Marie-Sainte", "696123456"):
        assert value not in logged


# ------------------------------------------------------------------------------ bad input


def test_bad_requests_are_nacked_with_code_and_path(shared: Network) -> None:
    unsigned = shared.http.post(f"{shared.bpp}/beckn/search", content=b"{}",
                                headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["message"]["ack"]["status"] == "NACK"

    malformed = shared.post("select", b'{"context": ')
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "30000"

    wrong_type = {"context": shared.context("select"),
                  "message": {"order": {"items": [{"id": "igname-kg", "quantity": {"selected": {"count": "2"}}}]}}}
    response = shared.post("select", wrong_type)
    assert response.status_code == 400
    assert response.json()["error"]["paths"] == "message.order.items[0].quantity.selected.count"

    no_order_id = {"context": shared.context("status"), "message": {}}
    response = shared.post("status", no_order_id)
    assert response.status_code == 400 and response.json()["error"]["paths"] == "message.order_id"

    # A BPP serves the ten Beckn requests; the callbacks are the BAP's, not routes here at all.
    assert shared.post("on_status", {"context": shared.context("on_status"),
                                     "message": {"order": {"id": "LKU-0000000000"}}}).status_code == 404


# ------------------------------------------------------------------------------ JSON API, health


def test_operator_api_needs_the_token(shared: Network, spec: Spec, tmp_path: Path) -> None:
    assert shared.order_view("LKU-0000000000", token=None).status_code == 401
    assert shared.order_view("LKU-0000000000", token="devine").status_code == 401
    missing = shared.order_view("LKU-0000000000")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]

    with network(spec, tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}", bpp_admin_token=None) as closed:
        refused = closed.order_view("LKU-0000000000")
        assert refused.status_code == 403 and "LAKOU_BPP_ADMIN_TOKEN" in refused.json()["detail"]


def test_public_catalogue_and_health(shared: Network) -> None:
    german = shared.http.get(f"{shared.bpp}/api/v1/catalogue", params={"lang": "de", "q": "Kokos"}).json()
    names = {i["id"]: i["descriptor"]["name"] for p in german["catalog"]["providers"] for i in p["items"]}
    assert names == {"pain-coco": "Kokosbrot", "flan-coco": "Kokosflan", "punch-coco-70cl": "Kokos-Punsch",
                     "tourment-d-amour": "Tourment d'amour (Kokostörtchen)"}
    in_town = shared.http.get(f"{shared.bpp}/api/v1/catalogue", params={"q": "coco", "city": "insee:97209"}).json()
    assert {i["descriptor"]["name"] for p in in_town["catalog"]["providers"] for i in p["items"]} == {
        "Pain coco", "Flan coco", "Tourment d'amour"}
    assert shared.http.get(f"{shared.bpp}/api/v1/catalogue", params={"lang": "it"}).status_code == 422

    health = shared.http.get(f"{shared.bpp}/health")
    assert health.status_code == 200
    assert health.json()["catalogue"] == {"providers": 4, "items": 25}
    assert health.json()["service"] == "bpp"
    openapi = shared.http.get(f"{shared.bpp}/openapi.json").json()
    assert openapi["info"]["title"] == "Lakou BPP" and openapi["info"]["version"] == "0.3.0"


# ------------------------------------------------------------------------------ catalogue, schema


def test_a_catalogue_file_seeds_once_and_a_bad_one_stops_the_start(
    spec: Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = {"providers": [DEMO["providers"][3] | {"items": DEMO["providers"][3]["items"][:2]}]}
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(mine), encoding="utf-8")
    db = f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}"
    with network(spec, tmp_path, db, bpp_catalogue=str(path)) as net:
        assert net.http.get(f"{net.bpp}/health").json()["catalogue"] == {"providers": 1, "items": 2}
    # Restarted with the demo catalogue: the catalogue is not empty, so nothing is added.
    with network(spec, tmp_path, db, bpp_catalogue="demo") as net:
        assert net.http.get(f"{net.bpp}/health").json()["catalogue"] == {"providers": 1, "items": 2}

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"providers": [mine["providers"][0] | {"id": "Pas Un Id"}]}), encoding="utf-8")
    settings = Settings(data_dir=tmp_path, database_url=db)
    with pytest.raises(ValueError, match="providers.0.id"):
        create_app(_bpp_settings(settings, {"bpp_catalogue": str(bad)}))
    # `lakou serve` hands a plain Settings: the LAKOU_BPP_* variables still apply.
    monkeypatch.setenv("LAKOU_BPP_CATALOGUE", str(bad))
    with pytest.raises(ValueError, match="providers.0.id"):
        create_app(settings)
    with pytest.raises(ValueError, match="cannot read the catalogue file"):
        create_app(_bpp_settings(settings, {"bpp_catalogue": str(tmp_path / "absent.json")}))


async def test_bpp_migration_matches_the_models(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            bpp_only = MetaData(naming_convention=metadata.naming_convention)
            for table in metadata.tables.values():
                table.to_metadata(bpp_only)
            diff = await conn.run_sync(_diff, bpp_only)
    finally:
        await engine.dispose()
    ours = [d for d in diff if _table_of(d).startswith("bpp_")]
    assert ours == []
    assert {"bpp_provider", "bpp_item", "bpp_order", "bpp_order_line"} <= set(metadata.tables)


def _table_of(difference: Any) -> str:
    if isinstance(difference, list):  # column modifications come as lists of tuples
        return _table_of(difference[0])
    for part in difference[1:]:
        name = getattr(part, "name", None) if not isinstance(part, str) else part
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return table.name
        if getattr(part, "columns", None) is not None and isinstance(name, str) and hasattr(part, "c"):
            return name
        if isinstance(part, str):
            return part
    return ""
