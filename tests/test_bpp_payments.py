"""PRE-ORDER payments over real HTTP: payment links at init, the sandbox checkout page, confirm
only once paid, refunds on cancellation or when the stock ran out, and a processor plugged in by
dotted path. A signed BAP drives a real BPP (tests/test_bpp_service.py's network) and every
callback is checked against the official 1.1.1 schema."""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

import payment_processor_stub
from beckn.store.db import create_engine, session_factory
from bpp.app import create_app
from bpp.payments import Payments, attach, refund_order
from bpp.payments.sandbox import SandboxProcessor
from bpp.tables import BppItem, BppOrder, BppPayment, SandboxCharge
from test_bpp_service import (  # noqa: F401 - fixtures
    BILLING,
    Network,
    found_items,
    net,
    network,
    order,
    search,
    shared,
    spec,
)
from test_conformance import Spec

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

SHOP = "epicerie-prepaye"  # accepts both payment types
CASH_ONLY = "marche-comptant"  # pays at pickup only
# A merchant name with markup in it: the checkout page must show it as text.
SHOP_NAME_FR = '<script>alert("pwn")</script> Épicerie & Fils'
PREPAY = [{"type": "PRE-ORDER", "collected_by": "BPP"}]


def _location(provider_id: str) -> dict[str, Any]:
    return {"id": f"{provider_id}-shop", "gps": "14.6050, -61.0700",
            "address": "1 rue de la Liberté, 97200 Fort-de-France",
            "city": {"code": "insee:97209", "name": "Fort-de-France"}, "area_code": "97200"}


def _item(item_id: str, name: str, price: str, stock: int) -> dict[str, Any]:
    return {"id": item_id, "descriptor": {"fr": {"name": name}, "en": {"name": name}}, "price": price,
            "unit": "unit", "stock": stock}


CATALOGUE = {"providers": [
    {"id": SHOP, "descriptor": {"fr": {"name": SHOP_NAME_FR}, "en": {"name": "Prepaid Grocery"}},
     "location": _location(SHOP), "fulfillment_types": ["Self-Pickup"],
     "payment_types": ["PRE-ORDER", "ON-FULFILLMENT"],
     "items": [_item("colombo-poudre", "Poudre à colombo", "4.50", 10),
               _item("sirop-batterie", "Sirop de batterie", "1234.50", 2)]},
    {"id": CASH_ONLY, "descriptor": {"fr": {"name": "Marché au comptant"}},
     "location": _location(CASH_ONLY), "fulfillment_types": ["Self-Pickup"],
     "items": [_item("piment-vegetarien", "Piment végétarien", "2.00", 10)]},
]}



@pytest.fixture
def pay_net(spec: Spec, tmp_path: Path, db_url: str) -> Iterator[Network]:
    """A BPP with the sandbox processor and this file's catalogue, on SQLite and on PostgreSQL."""
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(CATALOGUE, ensure_ascii=False), encoding="utf-8")
    with network(spec, tmp_path, db_url, bpp_catalogue=str(catalogue), bpp_payment_processor="sandbox") as fresh:
        yield fresh


# ------------------------------------------------------------------------------ helpers


def prepay_order(*lines: tuple[str, int], payments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return order(SHOP, *lines, billing=BILLING, fulfillments=[{"type": "Self-Pickup"}],
                 payments=PREPAY if payments is None else payments)


def init_link(net: Network, transaction_id: str, *lines: tuple[str, int]) -> dict[str, Any]:
    answer = net.call("init", prepay_order(*lines), transaction_id=transaction_id)
    assert "error" not in answer, answer
    [payment] = answer["message"]["order"]["payments"]
    return payment


def confirm(net: Network, transaction_id: str, payment: dict[str, Any], *lines: tuple[str, int]) -> dict[str, Any]:
    chosen = [{"id": payment["id"], "type": "PRE-ORDER", "collected_by": "BPP",
               "params": {"transaction_id": payment["params"]["transaction_id"]}}]
    return net.call("confirm", prepay_order(*lines, payments=chosen), transaction_id=transaction_id)


def checkout_path(payment: dict[str, Any], net: Network) -> str:
    url = payment["url"]
    assert url.startswith(f"{net.bpp}/sandbox/pay/sbx_")
    return url.removeprefix(net.bpp)


def pay(net: Network, payment: dict[str, Any]) -> httpx.Response:
    """What the buyer does: open the checkout page, press its button (the form's POST)."""
    page = net.http.get(payment["url"], params={"lang": "en"})
    assert page.status_code == 200
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None, page.text
    return net.http.post(f"{net.bpp}{html.unescape(action.group(1))}")


def write(net: Network, statement: Any) -> None:
    """Change the database behind the BPP's back (time passing, another buyer taking the stock)."""
    async def run() -> None:
        engine = create_engine(net.db_url)
        try:
            async with session_factory(engine)() as session:
                await session.execute(statement)
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


def payment_row(net: Network, payment_id: str) -> BppPayment:
    return net.query(select(BppPayment).where(BppPayment.id == payment_id))[0][0]


def charge_row(net: Network, charge_id: str) -> SandboxCharge:
    return net.query(select(SandboxCharge).where(SandboxCharge.id == charge_id))[0][0]


def orders_of(net: Network, transaction_id: str) -> list[BppOrder]:
    return [row[0] for row in net.query(select(BppOrder).where(BppOrder.transaction_id == transaction_id))]


def cancel(net: Network, order_id: str) -> dict[str, Any]:
    return net.call("cancel", {"order_id": order_id, "cancellation_reason_id": "002"})


# ------------------------------------------------------------------------------ terms


def test_catalogue_and_select_list_each_accepted_payment_term(pay_net: Network) -> None:
    catalog = search(pay_net, {"item": {"descriptor": {"name": "colombo"}}})["message"]["catalog"]
    [provider] = [p for p in catalog["providers"] if p["id"] == SHOP]
    assert provider["payments"] == [
        {"id": "prepaiement-en-ligne", "type": "PRE-ORDER", "collected_by": "BPP"},
        {"id": "paiement-a-la-remise", "type": "ON-FULFILLMENT", "collected_by": "BPP"}]
    assert found_items(search(pay_net, {"item": {"descriptor": {"name": "colombo"}}}))["colombo-poudre"][
        "payment_ids"] == ["prepaiement-en-ligne", "paiement-a-la-remise"]
    cash = search(pay_net, {"item": {"descriptor": {"name": "piment"}}})["message"]["catalog"]["providers"]
    assert [p["payments"] for p in cash if p["id"] == CASH_ONLY] == [
        [{"id": "paiement-a-la-remise", "type": "ON-FULFILLMENT", "collected_by": "BPP"}]]

    selected = pay_net.call("select", order(SHOP, ("colombo-poudre", 2)))["message"]["order"]
    assert [(p["type"], p["params"]) for p in selected["payments"]] == [
        ("PRE-ORDER", {"amount": "9.00", "currency": "EUR"}), ("ON-FULFILLMENT", {"amount": "9.00", "currency": "EUR"})]


def test_init_refuses_unaccepted_terms_with_40004_and_its_path(pay_net: Network) -> None:
    cash = order(CASH_ONLY, ("piment-vegetarien", 1), billing=BILLING, payments=PREPAY)
    error = pay_net.call("init", cash)["error"]
    assert error["code"] == "40004" and error["paths"] == "message.order.payments[0].type"
    assert "ON-FULFILLMENT" in error["message"]
    unknown_id = pay_net.call("init", prepay_order(("colombo-poudre", 1), payments=[{"id": "bitcoin"}]))["error"]
    assert unknown_id["code"] == "40004" and unknown_id["paths"] == "message.order.payments[0].id"
    by_bap = pay_net.call("init", prepay_order(("colombo-poudre", 1),
                                               payments=[{"type": "PRE-ORDER", "collected_by": "BAP"}]))["error"]
    assert by_bap["code"] == "40004" and by_bap["paths"] == "message.order.payments[0].collected_by"
    assert "settlement" in by_bap["message"]
    assert pay_net.query(select(BppPayment)) == []  # a refused init makes no payment link

    # Chosen by id, or by default (the merchant's first accepted type), PRE-ORDER gets a link.
    by_id = pay_net.call("init", prepay_order(("colombo-poudre", 1), payments=[{"id": "prepaiement-en-ligne"}]))
    assert by_id["message"]["order"]["payments"][0]["type"] == "PRE-ORDER"
    pay_later = pay_net.call("init", prepay_order(("colombo-poudre", 1), payments=[{"type": "ON-FULFILLMENT"}]))
    assert pay_later["message"]["order"]["payments"][0] == {
        "id": "paiement-a-la-remise", "type": "ON-FULFILLMENT", "collected_by": "BPP", "status": "NOT-PAID",
        "params": {"amount": "4.50", "currency": "EUR"}}


def test_without_a_processor_pre_order_is_refused_at_init(shared: Network) -> None:
    """The default processor "none": a demo merchant listing PRE-ORDER cannot be prepaid."""
    message = order("distillerie-sainte-marie", ("rhum-blanc-50-1l", 1), billing=BILLING, payments=PREPAY)
    error = shared.call("init", message)["error"]
    assert error["code"] == "40004" and "no payment processor" in error["message"]
    selected = shared.call("select", order("distillerie-sainte-marie", ("rhum-blanc-50-1l", 1)))
    assert [p["type"] for p in selected["message"]["order"]["payments"]] == ["ON-FULFILLMENT"]
    # Nor do the catalogues offer it, in Beckn search or in the BPP's own catalogue API.
    found = search(shared, {"provider": {"id": "distillerie-sainte-marie"}})["message"]["catalog"]["providers"]
    assert [p["type"] for p in found[0]["payments"]] == ["ON-FULFILLMENT"]
    assert {tuple(item["payment_ids"]) for item in found[0]["items"]} == {("paiement-a-la-remise",)}
    listed = shared.http.get(f"{shared.bpp}/api/v1/catalogue", params={"q": "rhum"}).json()["catalog"]["providers"]
    assert [[p["type"] for p in provider["payments"]] for provider in listed] == [["ON-FULFILLMENT"]]


# ------------------------------------------------------------------------------ the prepaid order


def test_prepaid_order_confirms_only_once_paid_then_refunds_on_cancel(pay_net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    lines = [("colombo-poudre", 3)]
    payment = init_link(pay_net, transaction_id, *lines)
    assert payment["type"] == "PRE-ORDER" and payment["collected_by"] == "BPP" and payment["status"] == "NOT-PAID"
    assert payment["params"]["amount"] == "13.50" and payment["params"]["currency"] == "EUR"
    assert payment["params"]["transaction_id"].startswith("pay_")
    # init sent again for the same cart: the same link, not a second charge
    assert init_link(pay_net, transaction_id, *lines) == payment

    refused = confirm(pay_net, transaction_id, payment, *lines)
    assert refused["error"]["code"] == "40000" and payment["url"] in refused["error"]["message"]
    assert orders_of(pay_net, transaction_id) == [] and pay_net.stock("colombo-poudre") == 10

    paid_page = pay(pay_net, payment)
    assert paid_page.status_code == 200 and "Payment received" in paid_page.text
    charge_id = checkout_path(payment, pay_net).rsplit("/", 1)[1]
    assert pay_net.http.get(f"{pay_net.bpp}/sandbox/api/charges/{charge_id}").json()["status"] == "PAID"

    # A paid link pays for its own transaction only: another one naming it gets no order.
    stolen = confirm(pay_net, str(uuid.uuid4()), payment, *lines)["error"]
    assert stolen["code"] == "40000" and stolen["paths"] == "message.order.payments[0].params.transaction_id"

    confirmed = confirm(pay_net, transaction_id, payment, *lines)["message"]["order"]
    assert confirmed["payments"] == [{
        "id": "prepaiement-en-ligne", "type": "PRE-ORDER", "collected_by": "BPP", "status": "PAID",
        "params": {"transaction_id": payment["params"]["transaction_id"], "amount": "13.50", "currency": "EUR"}}]
    assert pay_net.stock("colombo-poudre") == 7
    row = payment_row(pay_net, payment["params"]["transaction_id"])
    assert row.order_id == confirmed["id"] and row.status == "PAID"
    # Retried under a new message id: the same order, stock taken once.
    assert confirm(pay_net, transaction_id, payment, *lines)["message"]["order"]["id"] == confirmed["id"]
    assert len(orders_of(pay_net, transaction_id)) == 1 and pay_net.stock("colombo-poudre") == 7

    cancelled = cancel(pay_net, confirmed["id"])["message"]["order"]
    assert cancelled["status"] == "CANCELLED"
    row = payment_row(pay_net, payment["params"]["transaction_id"])
    assert row.status == "REFUNDED" and row.refunded == Decimal("13.50")
    assert charge_row(pay_net, charge_id).refunded == Decimal("13.50")
    [refund_tag] = [t for t in cancelled["payments"][0]["tags"] if t["descriptor"]["code"] == "lakou:refund"]
    assert {e["descriptor"]["code"]: e["value"] for e in refund_tag["list"]} == {
        "amount": "13.50", "currency": "EUR", "status": "REFUNDED"}


def test_concurrent_confirms_of_a_paid_order_make_one_order(pay_net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    lines = [("colombo-poudre", 2)]
    payment = init_link(pay_net, transaction_id, *lines)
    pay(pay_net, payment)
    chosen = [{"type": "PRE-ORDER", "params": {"transaction_id": payment["params"]["transaction_id"]}}]
    bodies = [{"context": pay_net.context("confirm", transaction_id=transaction_id),
               "message": prepay_order(*lines, payments=chosen)} for _ in range(5)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: pay_net.post("confirm", body), bodies))
    assert all(response.status_code == 200 for response in responses)
    answers = [pay_net.callback(body["context"]["message_id"], "on_confirm", timeout=30) for body in bodies]
    assert {answer["message"]["order"]["id"] for answer in answers} == {orders_of(pay_net, transaction_id)[0].id}
    assert all(answer["message"]["order"]["payments"][0]["status"] == "PAID" for answer in answers)
    assert pay_net.stock("colombo-poudre") == 8
    assert payment_row(pay_net, payment["params"]["transaction_id"]).status == "PAID"


def test_an_expired_link_cannot_be_paid_and_init_makes_a_new_one(pay_net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    payment = init_link(pay_net, transaction_id, ("colombo-poudre", 1))
    charge_id = checkout_path(payment, pay_net).rsplit("/", 1)[1]
    past = datetime.now(UTC) - timedelta(minutes=1)
    write(pay_net, update(SandboxCharge).where(SandboxCharge.id == charge_id).values(expires_at=past))
    write(pay_net, update(BppPayment).where(BppPayment.id == payment["params"]["transaction_id"])
                   .values(expires_at=past))

    assert pay_net.http.post(f"{pay_net.bpp}/sandbox/api/charges/{charge_id}/pay").status_code == 410
    form = pay_net.http.post(f"{pay_net.bpp}/sandbox/pay/{charge_id}", params={"lang": "fr"})
    assert form.status_code == 410 and "expiré" in form.text and "<form" not in form.text
    assert charge_row(pay_net, charge_id).status == "OPEN" and charge_row(pay_net, charge_id).paid_at is None

    refused = confirm(pay_net, transaction_id, payment, ("colombo-poudre", 1))["error"]
    assert refused["code"] == "40000" and "expired" in refused["message"]
    fresh = init_link(pay_net, transaction_id, ("colombo-poudre", 1))
    assert fresh["url"] != payment["url"] and fresh["params"]["transaction_id"] != payment["params"]["transaction_id"]


def test_stock_gone_after_payment_refunds_in_full_and_answers_40002(pay_net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    payment = init_link(pay_net, transaction_id, ("sirop-batterie", 2))
    assert pay(pay_net, payment).status_code == 200
    write(pay_net, update(BppItem).where(BppItem.id == "sirop-batterie").values(stock=1))

    error = confirm(pay_net, transaction_id, payment, ("sirop-batterie", 2))["error"]
    assert error["code"] == "40002" and "refunded in full" in error["message"]
    assert orders_of(pay_net, transaction_id) == [] and pay_net.stock("sirop-batterie") == 1
    row = payment_row(pay_net, payment["params"]["transaction_id"])
    assert row.status == "REFUNDED" and row.refunded == Decimal("2469.00") and row.order_id is None
    assert charge_row(pay_net, row.processor_ref).refunded == Decimal("2469.00")
    # Confirmed again: still no order, and the refunded payment is not taken again.
    again = confirm(pay_net, transaction_id, payment, ("sirop-batterie", 1))["error"]
    assert again["code"] == "40000" and "refunded" in again["message"]


def test_refund_order_keeps_the_fee_and_never_refunds_twice(pay_net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    payment = init_link(pay_net, transaction_id, ("colombo-poudre", 2))
    pay(pay_net, payment)
    order_id = confirm(pay_net, transaction_id, payment, ("colombo-poudre", 2))["message"]["order"]["id"]

    async def refund(fee: str) -> tuple[Decimal, str, Decimal]:
        engine = create_engine(pay_net.db_url)
        sessions = session_factory(engine)
        attach(sessions, Payments(SandboxProcessor(pay_net.bpp)))
        try:
            async with sessions() as session:
                row = await session.get(BppOrder, order_id)
                assert row is not None
                refunded = await refund_order(session, row, Decimal(fee))
                await session.commit()
                stored = await session.get(BppPayment, payment["params"]["transaction_id"])
                assert stored is not None
                return refunded, stored.status, stored.refunded
        finally:
            await engine.dispose()

    assert asyncio.run(refund("2.00")) == (Decimal("7.00"), "PARTIALLY_REFUNDED", Decimal("7.00"))
    assert asyncio.run(refund("0")) == (Decimal("2.00"), "REFUNDED", Decimal("9.00"))
    assert asyncio.run(refund("0")) == (Decimal("0"), "REFUNDED", Decimal("9.00"))
    assert charge_row(pay_net, payment_row(pay_net, payment["params"]["transaction_id"]).processor_ref).refunded \
        == Decimal("9.00")


# ------------------------------------------------------------------------------ the checkout page


def test_checkout_page_is_localised_and_escapes_the_merchant_name(pay_net: Network) -> None:
    payment = init_link(pay_net, str(uuid.uuid4()), ("sirop-batterie", 1))
    french = pay_net.http.get(payment["url"])
    assert french.status_code == 200 and french.headers["content-type"].startswith("text/html")
    assert "<script>" not in french.text
    assert "&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt; Épicerie &amp; Fils" in french.text
    assert "1\u202f234,50\u00a0€" in french.text and "Payer" in french.text
    assert "1.234,50\u00a0€" in pay_net.http.get(payment["url"], params={"lang": "de"}).text
    assert "Pagar" in pay_net.http.get(payment["url"], params={"lang": "es"}).text
    assert "€1,234.50" in pay_net.http.get(payment["url"], params={"lang": "en"}).text
    assert pay_net.http.get(f"{pay_net.bpp}/sandbox/pay/sbx_unknown").status_code == 404
    assert pay_net.http.post(f"{pay_net.bpp}/sandbox/api/charges/sbx_unknown/pay").status_code == 404


# ------------------------------------------------------------------------------ a plugged-in processor


@pytest.fixture
def psp_net(spec: Spec, tmp_path: Path) -> Iterator[Network]:
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(CATALOGUE, ensure_ascii=False), encoding="utf-8")
    with network(spec, tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}", bpp_catalogue=str(catalogue),
                 bpp_payment_processor="payment_processor_stub:factory") as fresh:
        yield fresh


def test_a_processor_loaded_by_dotted_path_takes_the_payments(psp_net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    payment = init_link(psp_net, transaction_id, ("colombo-poudre", 1))
    assert payment["url"].startswith("https://psp.example.fr/checkout/psp_")
    ref = payment["url"].rsplit("/", 1)[1]
    assert payment_processor_stub.BOOK[ref]["account"] == "bpp.lakou.test"  # factory(settings)
    assert psp_net.http.get(f"{psp_net.bpp}/sandbox/pay/anything").status_code == 404  # no sandbox routes

    assert confirm(psp_net, transaction_id, payment, ("colombo-poudre", 1))["error"]["code"] == "40000"
    payment_processor_stub.BOOK[ref]["status"] = payment_processor_stub.ChargeStatus.PAID  # the PSP's side
    confirmed = confirm(psp_net, transaction_id, payment, ("colombo-poudre", 1))["message"]["order"]
    assert confirmed["payments"][0]["status"] == "PAID"
    assert payment_row(psp_net, payment["params"]["transaction_id"]).processor == "stub-psp"
    cancel(psp_net, confirmed["id"])
    assert payment_processor_stub.BOOK[ref]["refunded"] == Decimal("4.50")


@pytest.mark.parametrize("spec_value, reason", [
    ("payment_processor_stub:missing", "cannot be loaded"),
    ("no_such_module_here:factory", "cannot be loaded"),
    ("payment_processor_stub:not_a_processor", "did not return a PaymentProcessor"),
    ("stripe", "expected none, sandbox or package.module:factory"),
])
def test_a_bad_processor_setting_stops_the_start(tmp_path: Path, spec_value: str, reason: str) -> None:
    from bpp.settings import BppSettings

    settings = BppSettings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'l.db'}",
                           bpp_payment_processor=spec_value)
    with pytest.raises(ValueError, match=reason):
        create_app(settings)



def test_lakou_up_runs_the_bpp_with_the_sandbox_processor(tmp_path: Path) -> None:
    from beckn.cli.network import network_environment
    from beckn.cli.serve import DEFAULT_PORTS, Service

    env = network_environment(tmp_path, "127.0.0.1", dict(DEFAULT_PORTS), "demo")
    assert env[Service.bpp]["LAKOU_BPP_PAYMENT_PROCESSOR"] == "sandbox"
    demo = json.loads((Path(__file__).resolve().parent.parent / "bpp" / "demo_catalogue.json").read_text("utf-8"))
    assert [p["id"] for p in demo["providers"] if "PRE-ORDER" in p.get("payment_types", [])]
