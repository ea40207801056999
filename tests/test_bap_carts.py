"""Carts, checkout and ordering through the citizen API, against a real network on 127.0.0.1.

Registry, gateway, the Lakou BPP with its demo catalogue (sandbox payment processor) and the BAP
run as `lakou serve` processes. The app's calls are the mobile app's: search, cart, quantities,
checkout (pickup at a second shop, delivery with its fee, prepay), order; and the refusals it must
be able to show: a short stock, a changed total, an unpaid prepayment, someone else's cart.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from conftest import TRANSACTION_YAML, scratch_postgres_database
from test_conformance import Spec

from network import Network

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

BILLING = {"name": "Léa Joseph", "phone": "+596696123456", "email": "lea.joseph.cart@example.mq"}
LAMENTIN = "insee:97213"  # jardin-lamentin: pickup at two places, delivery 12 km, 4.00 fee under 40.00
SAINTE_MARIE = "insee:97228"  # distillerie-sainte-marie: pay on pickup or prepay; returnable 14 days
NEAR_LAMENTIN = "14.6100, -61.0050"  # about 0.8 km from the garden's shop
SAINTE_ANNE = "14.4400, -60.8800"  # about 23 km away: outside the delivery zone


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def bap_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The BAP's store: its SQLite file (None), or a fresh PostgreSQL database for this module."""
    if request.param == "sqlite":
        yield None
        return
    with scratch_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, bap_database: str | None) -> Iterator[dict[str, Any]]:
    network = Network(tmp_path_factory.mktemp("carts"))
    try:
        registry = network.start("registry")
        network.wait_ready(registry)
        gateway = network.start("gateway")
        bpp = network.start("bpp", extra_env={"LAKOU_BPP_CATALOGUE": "demo", "LAKOU_BPP_ON_SEARCH_VIA": "direct",
                                              "LAKOU_BPP_PAYMENT_PROCESSOR": "sandbox"})
        bap = network.start("bap", extra_env={"LAKOU_DATABASE_URL": bap_database} if bap_database else None)
        network.wait_ready(gateway, bpp, bap)
        yield {"registry": registry, "gateway": gateway, "bpp": bpp, "bap": bap, "network": network,
               "bap_database": bap_database}
    finally:
        network.stop_all()


def _bap_rows(net: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    """Read the BAP's store, SQLite or PostgreSQL."""
    if net["bap_database"] is None:
        return net["bap"].rows(sql)

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(net["bap_database"].replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _client(net: dict[str, Any]) -> httpx.Client:
    token = httpx.post(net["bap"].url + "/api/v1/sessions", timeout=10).json()["token"]
    return httpx.Client(base_url=net["bap"].url + "/api/v1", timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def _search(client: httpx.Client, city: str, provider_id: str, lang: str = "fr") -> dict[str, Any]:
    """A search of a commune, read until that provider's offers are in."""
    started = client.post("/searches", json={"city": city, "lang": lang, "ttl_seconds": 5})
    assert started.status_code == 202, started.text
    search_id = started.json()["transaction_id"]
    offers: list[dict[str, Any]] = []
    for _ in range(20):
        page = client.get(f"/searches/{search_id}/results", params={"wait_ms": 2000, "page_size": 100})
        assert page.status_code == 200, page.text
        offers = [o for o in page.json()["offers"] if o["provider"]["id"] == provider_id]
        if offers or page.json()["complete"]:
            break
    assert offers, f"no offer of {provider_id} in the search"
    return {"search_id": search_id, "bpp_id": offers[0]["bpp_id"], "offers": offers}


def _cart(client: httpx.Client, found: dict[str, Any], provider_id: str, items: list[dict[str, Any]],
          expect: int = 201) -> dict[str, Any]:
    response = client.post("/carts", json={"search_id": found["search_id"], "bpp_id": found["bpp_id"],
                                           "provider_id": provider_id, "items": items, "wait_ms": 15000})
    assert response.status_code == expect, response.text
    return response.json()


def _line(quote: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [line for line in quote["breakup"] if line["kind"] == kind]


def _sent(net: dict[str, Any], cart_id: str, action: str) -> int:
    return _bap_rows(net, f"SELECT count(*) FROM bap_request WHERE transaction_id = '{cart_id}' "
                           f"AND action = '{action}'")[0][0]


def _text(body: bytes | str) -> str:
    return body.decode() if isinstance(body, bytes) else body


def _bpp_order(net: dict[str, Any], order_id: str) -> dict[str, Any]:
    response = httpx.get(f"{net['bpp'].url}/api/v1/orders/{order_id}", timeout=10,
                         headers={"Authorization": f"Bearer {net['network'].bpp_admin_token}"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def lamentin(net: dict[str, Any]) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    with _client(net) as client:
        yield client, _search(client, LAMENTIN, "jardin-lamentin")


# ------------------------------------------------------------------------------ the cart


def test_a_cart_is_quoted_and_the_quote_follows_its_quantities(lamentin: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, found = lamentin
    cart = _cart(client, found, "jardin-lamentin", [{"id": "igname-kg", "quantity": 2},
                                                    {"id": "christophine-kg", "quantity": 1}])
    assert cart["status"] == "quoted" and cart["search_id"] == found["search_id"]
    assert cart["provider"]["id"] == "jardin-lamentin" and cart["provider"]["name"] == "Jardin Créole du Lamentin"
    lines = {line["id"]: line for line in cart["items"]}
    assert lines["igname-kg"] == {"id": "igname-kg", "name": "Igname", "quantity": 2,
                                  "unit_price": {"currency": "EUR", "value": "4.20"},
                                  "line_total": {"currency": "EUR", "value": "8.40"}}
    assert lines["christophine-kg"]["line_total"]["value"] == "2.80"
    assert cart["quote"]["total"] == {"currency": "EUR", "value": "11.20"}
    assert [line["item_id"] for line in _line(cart["quote"], "item")] == ["igname-kg", "christophine-kg"]
    # What the app offers at checkout: two pickup points, delivery with its zone and fee, pay on pickup.
    options = {option["type"]: option for option in cart["fulfillment_options"]}
    assert [place["id"] for place in options["pickup"]["locations"]] == [
        "jardin-lamentin-bois-carre", "jardin-lamentin-grand-marche"]
    assert options["pickup"]["locations"][1]["city"] == "Fort-de-France"
    assert options["delivery"]["fee"] == {"currency": "EUR", "value": "4.00"}
    assert options["delivery"]["radius_km"] == "12" and options["delivery"]["free_above"]["value"] == "40.00"
    assert options["delivery"]["needs_gps"] is True
    assert [option["type"] for option in cart["payment_options"]] == ["on_fulfillment"]
    assert cart["cancellation_terms"]["terms"] == [{"state": "RECEIVED", "fee_percent": "0", "fee": None,
                                                    "reason_required": True}]
    assert cart["cancellation_terms"]["raw"][0]["fulfillment_state"]["descriptor"]["code"] == "RECEIVED"
    assert cart["return_terms"]["returnable"] is False and cart["return_terms"]["raw"]

    more = client.put(f"/carts/{cart['id']}/items", json={"items": [{"id": "igname-kg", "quantity": 3}],
                                                            "wait_ms": 15000})
    assert more.status_code == 200, more.text
    assert more.json()["quote"]["total"]["value"] == "15.40"  # 3 × 4.20 + 2.80
    assert {line["id"]: line["quantity"] for line in more.json()["items"]} == {"igname-kg": 3, "christophine-kg": 1}

    fewer = client.put(f"/carts/{cart['id']}/items", json={"items": [{"id": "christophine-kg", "quantity": 0},
                                                                     {"id": "giraumon-kg", "quantity": 1}],
                                                           "wait_ms": 15000})
    assert fewer.status_code == 200, fewer.text
    assert [(line["id"], line["quantity"]) for line in fewer.json()["items"]] == [("igname-kg", 3), ("giraumon-kg", 1)]
    assert fewer.json()["quote"]["total"]["value"] == "15.50"  # 12.60 + 2.90
    again = client.get(f"/carts/{cart['id']}")
    assert again.status_code == 200 and again.json()["quote"] == fewer.json()["quote"]


def test_pickup_at_the_second_shop_then_the_order_on_exactly_that_total(
    net: dict[str, Any], lamentin: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, found = lamentin
    cart = _cart(client, found, "jardin-lamentin", [{"id": "patate-douce-kg", "quantity": 2}])
    answer = client.post(f"/carts/{cart['id']}/checkout", json={
        "billing": BILLING, "fulfillment": {"type": "pickup", "location_id": "jardin-lamentin-grand-marche"},
        "payment": {"type": "on_fulfillment"}, "wait_ms": 15000})
    assert answer.status_code == 200, answer.text
    checkout = answer.json()
    assert checkout["status"] == "checked_out" and checkout["cart_id"] == cart["id"]
    assert checkout["quote"]["total"] == {"currency": "EUR", "value": "6.00"}
    assert checkout["payment"]["type"] == "on_fulfillment" and checkout["payment"]["status"] == "not_paid"
    assert checkout["payment"]["amount"] == {"currency": "EUR", "value": "6.00"} and checkout["payment"]["url"] is None
    assert checkout["fulfillment"]["type"] == "pickup"
    assert checkout["fulfillment"]["pickup"]["id"] == "jardin-lamentin-grand-marche"
    assert "Grand Marché" in checkout["fulfillment"]["pickup"]["address"]
    assert checkout["billing"]["email"] == BILLING["email"]

    # A total the citizen did not see is refused, and nothing goes to the merchant.
    changed = client.post(f"/carts/{cart['id']}/order", json={"accept_total": "5.00", "wait_ms": 15000})
    assert changed.status_code == 409, changed.text
    assert changed.json()["error"]["code"] == "price_changed"
    assert changed.json()["error"]["quote"]["total"]["value"] == "6.00"
    assert _sent(net, cart["id"], "confirm") == 0

    ordered = client.post(f"/carts/{cart['id']}/order", json={"accept_total": "6.00", "wait_ms": 15000})
    assert ordered.status_code == 201, ordered.text
    order = ordered.json()
    assert order["id"] == cart["id"] and order["order_id"] and order["confirmed_at"]
    assert order["quote"]["total"]["value"] == "6.00"
    at_bpp = _bpp_order(net, order["order_id"])
    assert [(line["id"], line["quantity"]) for line in at_bpp["items"]] == [("patate-douce-kg", 2)]
    assert Decimal(at_bpp["total"]) == Decimal("6.00")
    (fulfillment,) = net["bpp"].rows(f"SELECT fulfillment FROM bpp_order WHERE id = '{order['order_id']}'")[0]
    assert json.loads(fulfillment)["stops"][0]["location"]["id"] == "jardin-lamentin-grand-marche"

    # Ordering again (a retried request) answers the same order; the items can no longer change.
    retried = client.post(f"/carts/{cart['id']}/order", json={"accept_total": "6.00"})
    assert retried.status_code == 200 and retried.json()["order_id"] == order["order_id"]
    assert _sent(net, cart["id"], "confirm") == 1
    frozen = client.put(f"/carts/{cart['id']}/items", json={"items": [{"id": "patate-douce-kg", "quantity": 1}]})
    assert frozen.status_code == 409, frozen.text
    shown = client.get(f"/carts/{cart['id']}").json()
    assert shown["status"] == "ordered" and shown["order_id"] == order["order_id"]


def test_a_price_change_after_checkout_is_price_changed_and_nothing_is_ordered(
    net: dict[str, Any], lamentin: tuple[httpx.Client, dict[str, Any]],
) -> None:
    """The merchant raises a price between checkout and order: the BPP refuses the old quote (40003)
    and the app gets the same 409 `price_changed` as for a wrong accept_total; checking out again
    shows the new total, which can then be ordered."""
    client, found = lamentin
    cart = _cart(client, found, "jardin-lamentin", [{"id": "giraumon-kg", "quantity": 1}])
    checkout = {"billing": BILLING, "fulfillment": {"type": "pickup"}, "wait_ms": 15000}
    first = client.post(f"/carts/{cart['id']}/checkout", json=checkout).json()
    old_total = first["quote"]["total"]["value"]
    bpp_db = net["bpp"].db_path
    with sqlite3.connect(bpp_db, timeout=10) as db:  # the merchant's new price, straight in its catalogue
        db.execute("UPDATE bpp_item SET price = price + 1 WHERE id = 'giraumon-kg'")
    try:
        refused = client.post(f"/carts/{cart['id']}/order", json={"accept_total": old_total, "wait_ms": 15000})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "price_changed"
        assert refused.json()["error"]["bpp_code"] == "40003"
        assert not net["bpp"].rows("SELECT id FROM bpp_order WHERE transaction_id = '%s'" % cart["id"])
        again = client.post(f"/carts/{cart['id']}/checkout", json=checkout).json()
        new_total = again["quote"]["total"]["value"]
        assert Decimal(new_total) == Decimal(old_total) + 1
        ordered = client.post(f"/carts/{cart['id']}/order", json={"accept_total": new_total, "wait_ms": 15000})
        assert ordered.status_code == 201, ordered.text
    finally:
        with sqlite3.connect(bpp_db, timeout=10) as db:
            db.execute("UPDATE bpp_item SET price = price - 1 WHERE id = 'giraumon-kg'")


def test_delivery_adds_the_fee_and_its_zone_is_checked(lamentin: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, found = lamentin
    cart = _cart(client, found, "jardin-lamentin", [{"id": "igname-kg", "quantity": 2}])
    assert cart["quote"]["total"]["value"] == "8.40" and not _line(cart["quote"], "delivery")
    delivery = {"type": "delivery", "address": "Rue des Alpinias, 97232 Le Lamentin"}

    no_gps = client.post(f"/carts/{cart['id']}/checkout", json={"billing": BILLING, "fulfillment": delivery})
    assert no_gps.status_code == 422 and no_gps.json()["error"]["code"] == "gps_required", no_gps.text

    too_far = client.post(f"/carts/{cart['id']}/checkout", json={
        "billing": BILLING, "fulfillment": {**delivery, "gps": SAINTE_ANNE}, "wait_ms": 15000})
    assert too_far.status_code == 422, too_far.text
    assert too_far.json()["error"]["code"] == "30008" and "km" in too_far.json()["error"]["detail"]
    assert too_far.json()["cart"]["status"] == "quoted"  # still a valid cart: check out again

    answer = client.post(f"/carts/{cart['id']}/checkout", json={
        "billing": BILLING, "fulfillment": {**delivery, "gps": NEAR_LAMENTIN}, "wait_ms": 15000})
    assert answer.status_code == 200, answer.text
    checkout = answer.json()
    assert checkout["quote"]["total"]["value"] == "12.40"  # 8.40 + the 4.00 fee
    fee = _line(checkout["quote"], "delivery")
    assert len(fee) == 1 and fee[0]["price"] == {"currency": "EUR", "value": "4.00"}
    assert fee[0]["title"] == "Frais de livraison"
    assert checkout["fulfillment"]["type"] == "delivery"
    assert checkout["fulfillment"]["delivery"] == {"address": delivery["address"], "gps": NEAR_LAMENTIN}
    # The cart shows the checkout too (the poll path after a 202).
    assert client.get(f"/carts/{cart['id']}").json()["checkout"]["quote"]["total"]["value"] == "12.40"

    # Changing the items voids the checkout: ordering needs a new one.
    client.put(f"/carts/{cart['id']}/items", json={"items": [{"id": "igname-kg", "quantity": 1}], "wait_ms": 15000})
    stale = client.post(f"/carts/{cart['id']}/order", json={"accept_total": "12.40"})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "not_checked_out", stale.text


def test_prepay_through_the_merchants_payment_link_then_order(net: dict[str, Any]) -> None:
    with _client(net) as client:
        found = _search(client, SAINTE_MARIE, "distillerie-sainte-marie")
        cart = _cart(client, found, "distillerie-sainte-marie", [{"id": "punch-coco-70cl", "quantity": 2}])
        assert {option["type"] for option in cart["payment_options"]} == {"on_fulfillment", "prepay"}
        assert cart["return_terms"]["returnable"] is True and cart["return_terms"]["within_days"] == 14
        assert {(t["state"], t["fee_percent"]) for t in cart["cancellation_terms"]["terms"]} == {
            ("RECEIVED", "0"), ("PACKED", "20")}
        answer = client.post(f"/carts/{cart['id']}/checkout", json={
            "billing": BILLING, "fulfillment": {"type": "pickup"}, "payment": {"type": "prepay"}, "wait_ms": 15000})
        assert answer.status_code == 200, answer.text
        payment = answer.json()["payment"]
        assert payment["type"] == "prepay" and payment["status"] == "not_paid"
        assert payment["amount"] == {"currency": "EUR", "value": "29.00"}
        assert payment["url"].startswith(f"{net['bpp'].url}/sandbox/pay/sbx_")

        unpaid = client.post(f"/carts/{cart['id']}/order", json={"accept_total": "29.00", "wait_ms": 15000},
                             headers={"Accept-Language": "en"})
        assert unpaid.status_code == 402, unpaid.text
        error = unpaid.json()["error"]
        assert error["code"] == "payment_required" and error["bpp_code"] == "40000"
        assert error["payment"]["url"] == payment["url"] and error["payment"]["amount"]["value"] == "29.00"
        assert unpaid.json()["cart"]["status"] == "checked_out"

        charge_id = payment["url"].rsplit("/", 1)[-1]
        paid = httpx.post(f"{net['bpp'].url}/sandbox/api/charges/{charge_id}/pay", timeout=10)
        assert paid.status_code == 200 and paid.json()["status"] == "PAID", paid.text
        ordered = client.post(f"/carts/{cart['id']}/order", json={"accept_total": "29.00", "wait_ms": 15000})
        assert ordered.status_code == 201, ordered.text
        assert ordered.json()["payment"]["status"] == "paid" and ordered.json()["order_id"]
        assert Decimal(_bpp_order(net, ordered.json()["order_id"])["total"]) == Decimal("29.00")


def test_short_stock_is_the_merchants_error_in_the_citizens_language(
    lamentin: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, found = lamentin
    response = client.post("/carts", headers={"Accept-Language": "en"}, json={
        "search_id": found["search_id"], "bpp_id": found["bpp_id"], "provider_id": "jardin-lamentin",
        "items": [{"id": "dachine-kg", "quantity": 500}], "wait_ms": 15000})
    assert response.status_code == 422, response.text
    error, cart = response.json()["error"], response.json()["cart"]
    assert error["code"] == "40002" and error["source"] == "bpp"
    assert "available" in error["detail"] and error["message"] and error["message"] != error["detail"]
    assert cart["status"] == "error" and cart["quote"] is None and cart["error"]["code"] == "40002"
    french = client.get(f"/carts/{cart['id']}")
    assert french.status_code == 200 and french.json()["status"] == "error"
    # Not checkable out until the quantities are fixed.
    refused = client.post(f"/carts/{cart['id']}/checkout", json={"billing": BILLING, "fulfillment": {"type": "pickup"}})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "select_first", refused.text
    fixed = client.put(f"/carts/{cart['id']}/items", json={"items": [{"id": "dachine-kg", "quantity": 2}],
                                                           "wait_ms": 15000})
    assert fixed.status_code == 200 and fixed.json()["status"] == "quoted", fixed.text
    assert fixed.json()["quote"]["total"]["value"] == "9.00" and fixed.json()["error"] is None


def test_another_session_sees_none_of_a_cart(net: dict[str, Any], lamentin: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, found = lamentin
    cart = _cart(client, found, "jardin-lamentin", [{"id": "fruit-a-pain", "quantity": 1}])
    with _client(net) as other:
        calls = [
            other.get(f"/carts/{cart['id']}"),
            other.put(f"/carts/{cart['id']}/items", json={"items": [{"id": "fruit-a-pain", "quantity": 2}]}),
            other.post(f"/carts/{cart['id']}/checkout", json={"billing": BILLING, "fulfillment": {"type": "pickup"}}),
            other.post(f"/carts/{cart['id']}/order", json={"accept_total": "3.50"}),
            # Nor can it make a cart from someone else's search.
            other.post("/carts", json={"search_id": found["search_id"], "bpp_id": found["bpp_id"],
                                       "provider_id": "jardin-lamentin", "items": [{"id": "fruit-a-pain", "quantity": 1}]}),
        ]
        for response in calls:
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"
            assert "fruit" not in response.text and "Lamentin" not in response.text
    # A search is not a cart.
    assert client.get(f"/carts/{found['search_id']}").status_code == 404
    assert client.get(f"/carts/{cart['id']}").json()["items"][0]["quantity"] == 1
    assert httpx.get(f"{net['bap'].url}/api/v1/carts/{cart['id']}").status_code == 401


def test_invalid_carts_and_checkouts_are_refused_with_a_clear_422(
    net: dict[str, Any], lamentin: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, found = lamentin
    base = {"search_id": found["search_id"], "bpp_id": found["bpp_id"], "provider_id": "jardin-lamentin"}
    cases = [
        ({**base, "items": []}, "invalid_request"),
        ({**base, "items": [{"id": "igname-kg", "quantity": 0}]}, "invalid_request"),
        ({**base, "items": [{"id": "igname-kg", "quantity": 1}, {"id": "igname-kg", "quantity": 2}]},
         "invalid_request"),
        ({**base, "items": [{"id": "vivaneau-kg", "quantity": 1}]}, "unknown_item"),  # another merchant's
        ({**base, "provider_id": "pecherie-robert", "items": [{"id": "vivaneau-kg", "quantity": 1}]},
         "unknown_provider"),  # not in this search
        ({**base, "bpp_id": "nobody.example", "items": [{"id": "igname-kg", "quantity": 1}]}, "unknown_bpp"),
    ]
    for body, code in cases:
        response = client.post("/carts", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    assert client.post("/carts", json={**base, "items": [{"id": "vivaneau-kg", "quantity": 1}]}).json()[
        "error"]["items"] == ["vivaneau-kg"]

    cart = _cart(client, found, "jardin-lamentin", [{"id": "bouquet-garni-creole", "quantity": 1}])
    url = f"/carts/{cart['id']}"
    not_yet = client.post(f"{url}/order", json={"accept_total": "1.50"})
    assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "not_checked_out"
    checkouts = [
        ({"billing": BILLING, "fulfillment": {"type": "pickup", "location_id": "ailleurs"}}, "unknown_location"),
        ({"billing": BILLING, "fulfillment": {"type": "delivery"}}, "invalid_request"),  # no address
        ({"billing": BILLING, "fulfillment": {"type": "pickup"}, "payment": {"type": "prepay"}},
         "payment_unavailable"),
        ({"billing": {**BILLING, "email": "not-an-email"}, "fulfillment": {"type": "pickup"}}, "invalid_request"),
        ({"billing": BILLING, "fulfillment": {"type": "teleport"}}, "invalid_request"),
    ]
    for body, code in checkouts:
        response = client.post(f"{url}/checkout", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    assert _sent(net, cart["id"], "init") == 0  # refused before anything went to the merchant
    assert client.post(f"{url}/order", json={"accept_total": "1,50"}).status_code == 422
    empty = client.put(f"{url}/items", json={"items": [{"id": "bouquet-garni-creole", "quantity": 0}]})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_cart", empty.text
    assert client.post(f"{url}/checkout", content=b"{not json", headers={"Content-Type": "application/json"}
                       ).status_code == 400


def test_billing_goes_only_to_the_chosen_merchant_and_never_into_logs(net: dict[str, Any]) -> None:
    """Run after the checkouts above (file order): the e-mail is in init/confirm to the BPP, nowhere else."""
    email = BILLING["email"]
    sent = [(action, destination) for action, destination, body in
            _bap_rows(net, "SELECT action, destination_url, body FROM outbox_message") if email in _text(body)]
    assert sent, "no checkout sent the billing details"
    assert {action for action, _ in sent} <= {"init", "confirm"}
    assert all(destination.startswith(net["bpp"].url + "/") for _, destination in sent), sent
    assert not [body for (body,) in net["gateway"].rows("SELECT body FROM inbound_message")
                if email in _text(body)]
    for name in ("registry", "gateway", "bpp", "bap"):
        assert email not in net[name].log() and BILLING["phone"] not in net[name].log(), name


def test_a_cart_can_be_made_without_waiting_then_polled(lamentin: tuple[httpx.Client, dict[str, Any]]) -> None:
    client, found = lamentin
    response = client.post("/carts", json={"search_id": found["search_id"], "bpp_id": found["bpp_id"],
                                           "provider_id": "jardin-lamentin",
                                           "items": [{"id": "giraumon-kg", "quantity": 2}], "wait_ms": 0})
    assert response.status_code in (201, 202), response.text
    cart = response.json()
    if response.status_code == 202:
        assert cart["status"] == "quoting" and cart["quote"] is None
        assert cart["pending"]["action"] == "select" and cart["pending"]["message_id"]
    polled = client.get(f"/carts/{cart['id']}", params={"wait_ms": 15000})
    assert polled.status_code == 200 and polled.json()["status"] == "quoted", polled.text
    assert polled.json()["quote"]["total"]["value"] == "5.80" and polled.json()["pending"] is None


def test_every_cart_message_on_the_wire_validates_against_the_beckn_spec(net: dict[str, Any]) -> None:
    with TRANSACTION_YAML.open(encoding="utf-8") as f:
        spec = Spec(yaml.safe_load(f))
    problems, seen = [], set()
    for action, body in _bap_rows(net, "SELECT action, body FROM outbox_message"):
        seen.add(action)
        errors = [e.message for e in spec.request_validator(action).iter_errors(json.loads(body))]
        if errors:
            problems.append(f"BAP sent {action}: {errors[:3]}")
    for action, body in net["bpp"].rows("SELECT action, body FROM outbox_message"):
        seen.add(action)
        errors = [e.message for e in spec.request_validator(action).iter_errors(json.loads(body))]
        if errors:
            problems.append(f"BPP sent {action}: {errors[:3]}")
    assert not problems, "\n".join(problems)
    assert {"select", "on_select", "init", "on_init", "confirm", "on_confirm"} <= seen


def test_the_cart_view_survives_a_malformed_merchant_answer() -> None:
    """Whatever a BPP sends, the app gets a cart (odd values dropped), never a 500."""
    from bap.carts import CartState, cart_view, quote_view
    from bap.tables import BapTransaction

    odd_order = {
        "items": [{"id": ["not", "a", "string"]}, {"id": "igname-kg", "price": "free", "descriptor": []}],
        "quote": {"price": {"currency": "EUR", "value": "9.40"}, "breakup": [
            {"item": {"id": {"x": 1}}, "title": 7, "price": None},
            {"title": "Liefergebühr", "price": {"currency": "EUR", "value": "1.00"}},
            {"title": "Frais d'annulation", "price": {"currency": "EUR", "value": "0.50"}},
            "not a line"]},
        "payments": [{"type": ["PRE-ORDER"]}, {"type": "ON-FULFILLMENT", "status": {"odd": True}}],
        "fulfillments": [{"type": None, "tags": [{"descriptor": {"code": "lakou:delivery"},
                                                   "list": [{"descriptor": {"code": ["x"]}, "value": "1"}]}]},
                         {"type": "Delivery", "tags": "nope"}],
        "cancellation_terms": "none", "return_terms": [{"return_eligible": True, "return_time": {"duration": 5}}],
    }
    quote = quote_view(odd_order)
    assert quote is not None
    assert [line["kind"] for line in quote["breakup"]] == ["item", "delivery", "cancellation_fee"]
    tx = BapTransaction(id="c1", session_id=1, city="insee:97213", search={}, search_id="s1", bpp_id="b",
                        provider_id="p", items=[{"id": "igname-kg", "quantity": 2}], order=odd_order,
                        order_id="LKU-1")
    view = cart_view(CartState(tx=tx, provider={"id": "p", "fulfillments": 3, "items": {}}))
    assert view["status"] == "ordered" and view["items"][0]["id"] == "igname-kg"
    assert view["payment_options"] == [{"type": "on_fulfillment", "id": None, "collected_by": None}]
    assert [option["type"] for option in view["fulfillment_options"]] == ["delivery"]
    assert view["return_terms"]["returnable"] is True and view["cancellation_terms"]["terms"] == []
    json.dumps(view)  # what the API sends
