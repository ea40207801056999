"""Beckn `update` over real signed calls: a buyer app changes an active order's billing or its
fulfillment, and every refusal comes back as an `on_update` error with its code and path.

The network (registry, recording BAP, BPP with the demo catalogue) is the one of
tests/test_bpp_service.py, on SQLite and on PostgreSQL; every callback the BAP receives is checked
there against the BPP's key and the official 1.1.1 transaction.yaml before a test looks at it.
Merchants and their terms are made through the merchant API, and move their orders on through it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from bpp.tables import BppOrder, BppWebhookDelivery
from test_bpp_lifecycle import (  # noqa: F401 - fixtures
    cancel_body,
    move,
    other_bap,
    place_prepaid,
    prepaid_net,
    send,
    transaction_of,
)
from test_bpp_merchant_api import SIRET_A, Merchant, item, profile
from test_bpp_service import (  # noqa: F401 - fixtures
    BILLING,
    Network,
    confirm_message,
    net,
    spec,
)

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

SHOP, BASKET = "panier-livre", "panier-livre-panier"
# The shop is in Le Lamentin; it delivers within 10 km for 3.50 (free from 40.00).
DELIVERY = {"radius_km": "10", "fee": "3.50", "free_above": "40.00"}
FORT_DE_FRANCE = {"gps": "14.6160, -61.0588", "address": "12 rue Victor Hugo, 97200 Fort-de-France"}
SCHOELCHER = {"gps": "14.6140, -61.0870", "address": "3 route de la Plage, 97233 Schœlcher"}
SAINTE_MARIE = {"gps": "14.7848, -60.9913", "address": "Bourg, 97230 Sainte-Marie"}  # about 19 km away


def delivery_shop(net: Network, **changes: Any) -> Merchant:
    merchant = Merchant(net, "Le Panier Livré")
    created = merchant.request("POST", "/providers", json=shop_profile(**changes))
    assert created.status_code == 201, created.text
    put = merchant.request("PUT", f"/providers/{SHOP}/items/{BASKET}",
                           json=item("Panier", "Basket", price="6.00", stock=40))
    assert put.status_code == 201, put.text
    return merchant


def shop_profile(**changes: Any) -> dict[str, Any]:
    return profile(SHOP, siret=SIRET_A, fulfillment_types=["Self-Pickup", "Delivery"], delivery=DELIVERY) | changes


def place(net: Network, *, delivery_to: dict[str, str] | None = None, count: int = 2) -> dict[str, Any]:
    message = confirm_message(SHOP, (BASKET, count))
    if delivery_to is not None:
        message["order"]["fulfillments"] = [{"type": "Delivery",
                                             "stops": [{"type": "end", "location": delivery_to}]}]
    answer = net.call("confirm", message)
    assert "error" not in answer, answer
    return answer["message"]["order"]


def update_body(net: Network, order_id: str | None, target: str, **parts: Any) -> dict[str, Any]:
    order: dict[str, Any] = {"id": order_id} if order_id is not None else {}
    known = net.query(select(BppOrder.transaction_id).where(BppOrder.id == order_id)) if order_id else []
    transaction_id = known[0][0] if known else str(uuid.uuid4())  # the order's transaction, as a BAP sends it
    return {"context": net.context("update", transaction_id=transaction_id),
            "message": {"update_target": target, "order": order | parts}}


def updated(net: Network, order_id: str | None, target: str, **parts: Any) -> dict[str, Any]:
    """Send an update and return its on_update (checked against the schema by the network)."""
    body = update_body(net, order_id, target, **parts)
    send(net, "update", body)
    return net.callback(body["context"]["message_id"], "on_update")


def stored(net: Network, order_id: str) -> BppOrder:
    return net.query(select(BppOrder).where(BppOrder.id == order_id))[0][0]


def events(net: Network, event_type: str) -> list[dict[str, Any]]:
    return [json.loads(row[0]) for row in net.query(select(BppWebhookDelivery.body))
            if json.loads(row[0])["type"] == event_type]


# ------------------------------------------------------------------------------ billing


def test_billing_changes_while_the_order_is_active_and_the_merchant_is_told(net: Network) -> None:
    merchant = delivery_shop(net)
    assert merchant.request("PUT", "/webhook", json={"url": "http://127.0.0.1:9/hook"}).status_code == 200
    placed = place(net)
    new = {"phone": "+596696999888", "email": "lea.ms@example.mq"}

    body = update_body(net, placed["id"], "billing", billing=new)
    send(net, "update", body)
    send(net, "update", body)  # a retransmission is answered once, and applied once
    answer = net.callback(body["context"]["message_id"], "on_update")["message"]["order"]
    assert answer["id"] == placed["id"] and answer["status"] == "ACTIVE"
    assert answer["billing"] == BILLING | new  # the fields sent replace the stored ones, the rest stays
    assert answer["quote"] == placed["quote"] and answer["items"] == placed["items"]
    time.sleep(0.3)
    assert len(net.callbacks(body["context"]["message_id"], "on_update")) == 1
    assert net.call("status", {"order_id": placed["id"]}, transaction_id=transaction_of(net, placed["id"]))[
        "message"]["order"]["billing"] == BILLING | new

    # The merchant's webhook hears of it: ids and the parts changed, not the new phone number.
    [event] = events(net, "order.updated")
    assert event["data"]["order_id"] == placed["id"] and event["data"]["changed"] == ["billing"]
    assert new["phone"] not in json.dumps(event) and new["email"] not in json.dumps(event)

    # Checked as init checks it; a refusal changes nothing.
    bad = updated(net, placed["id"], "billing", billing={"email": "pas-une-adresse"})
    assert bad["error"]["code"] == "30000" and bad["error"]["paths"] == "message.order.billing.email"
    assert "message" not in bad
    assert stored(net, placed["id"]).billing == BILLING | new

    # Once cancelled, nothing more changes.
    assert "error" not in net.call("cancel", cancel_body(net, placed["id"])["message"],
                                   transaction_id=transaction_of(net, placed["id"]))
    late = updated(net, placed["id"], "billing", billing={"name": "Léa M."})
    assert late["error"]["code"] == "50002" and "cancelled" in late["error"]["message"]


# ------------------------------------------------------------------------------ fulfillment


def test_a_new_delivery_address_is_checked_against_the_zone_and_priced_again(net: Network) -> None:
    merchant = delivery_shop(net)
    placed = place(net, delivery_to=FORT_DE_FRANCE)
    assert placed["quote"]["price"]["value"] == "15.50"  # 2 × 6.00 + 3.50
    # The merchant has raised its delivery fee since: a new address is quoted at today's fee.
    raised = {key: value for key, value in shop_profile(delivery=DELIVERY | {"fee": "4.00"}).items() if key != "id"}
    changed = merchant.request("PUT", f"/providers/{SHOP}", json=raised)
    assert changed.status_code == 200, changed.text

    moved = updated(net, placed["id"], "fulfillment", fulfillments=[{
        "id": placed["fulfillments"][0]["id"], "type": "Delivery",
        "stops": [{"type": "end", "location": SCHOELCHER, "instructions": {"name": "Sonner deux fois"}}]}])
    order = moved["message"]["order"]
    [end] = [stop for stop in order["fulfillments"][0]["stops"] if stop["type"] == "end"]
    assert end["location"] == SCHOELCHER and end["instructions"] == {"name": "Sonner deux fois"}
    assert order["quote"]["price"]["value"] == "16.00"
    assert order["quote"]["breakup"][-1] == {"title": "Frais de livraison", "price": {"currency": "EUR",
                                                                                      "value": "4.00"}}
    assert order["payments"][0]["params"]["amount"] == "16.00"
    assert order["fulfillments"][0]["state"]["descriptor"]["code"] == "RECEIVED"
    assert str(stored(net, placed["id"]).total) == "16.00"

    # Outside the zone: refused as at init, and the order keeps its address and price.
    far = updated(net, placed["id"], "fulfillment", fulfillments=[{
        "stops": [{"type": "end", "location": SAINTE_MARIE}]}])
    assert far["error"]["code"] == "30008" and "10 km" in far["error"]["message"]
    assert far["error"]["paths"].startswith("message.order.fulfillments[0].stops")
    row = stored(net, placed["id"])
    assert row.fulfillment["stops"][-1]["location"] == SCHOELCHER and str(row.total) == "16.00"

    # Out for delivery, the address is fixed; the contact at the door can still change.
    move(merchant, placed["id"], "PACKED", "OUT_FOR_DELIVERY")
    late = updated(net, placed["id"], "fulfillment", fulfillments=[{
        "stops": [{"type": "end", "location": FORT_DE_FRANCE}]}])
    assert late["error"]["code"] == "50002" and "OUT_FOR_DELIVERY" in late["error"]["message"]
    assert late["error"]["paths"] == "message.order.fulfillments[0].stops[0].location"
    contact = updated(net, placed["id"], "fulfillment", fulfillments=[{
        "stops": [{"type": "end", "contact": {"phone": "+596696000111"}}]}])["message"]["order"]
    [end] = [stop for stop in contact["fulfillments"][0]["stops"] if stop["type"] == "end"]
    assert end["contact"] == {"phone": "+596696000111"} and end["location"] == SCHOELCHER


def test_the_type_changes_only_while_received_and_is_quoted_again(net: Network) -> None:
    merchant = delivery_shop(net)
    pickup = place(net)
    assert pickup["quote"]["price"]["value"] == "12.00"
    answer = updated(net, pickup["id"], "fulfillment", fulfillments=[{
        "type": "Delivery", "stops": [{"type": "end", "location": FORT_DE_FRANCE}],
        "customer": {"person": {"name": "Léa"}, "contact": {"phone": "+596696123456"}}}])
    order = answer["message"]["order"]
    [fulfillment] = order["fulfillments"]
    assert fulfillment["type"] == "Delivery" and fulfillment["id"] == f"{SHOP}-delivery"
    assert fulfillment["stops"][-1] == {"type": "end", "location": FORT_DE_FRANCE}
    assert fulfillment["customer"]["person"] == {"name": "Léa"}
    assert fulfillment["state"]["descriptor"]["code"] == "RECEIVED"
    assert order["quote"]["price"]["value"] == "15.50" and order["quote"]["breakup"][-1]["price"]["value"] == "3.50"
    # The merchant now has a Delivery order to send out.
    detail = merchant.request("GET", f"/orders/{pickup['id']}").json()
    assert detail["allowed_next_states"] == ["PACKED"] and detail["order"]["fulfillments"][0]["type"] == "Delivery"

    # And back to a pickup, by the other fulfillment's id: the fee goes.
    back = updated(net, pickup["id"], "fulfillment", fulfillments=[{"id": f"{SHOP}-self-pickup"}])["message"]["order"]
    assert back["fulfillments"][0]["type"] == "Self-Pickup" and back["quote"]["price"]["value"] == "12.00"
    assert all("item" in line for line in back["quote"]["breakup"])

    # Once the merchant has packed it, the type is settled.
    move(merchant, pickup["id"], "PACKED")
    late = updated(net, pickup["id"], "fulfillment", fulfillments=[{
        "type": "Delivery", "stops": [{"type": "end", "location": FORT_DE_FRANCE}]}])
    assert late["error"]["code"] == "50002" and late["error"]["paths"] == "message.order.fulfillments[0].type"
    assert "PACKED" in late["error"]["message"]
    # The person who collects can still change.
    who = updated(net, pickup["id"], "fulfillment", fulfillments=[{"customer": {"person": {"name": "Marc"}}}])
    assert who["message"]["order"]["fulfillments"][0]["customer"] == {"person": {"name": "Marc"}}


def test_a_type_the_merchant_does_not_offer_is_30008(net: Network) -> None:
    merchant = Merchant(net, "Le Comptoir")
    assert merchant.request("POST", "/providers", json=profile(SHOP, siret=SIRET_A)).status_code == 201
    put = merchant.request("PUT", f"/providers/{SHOP}/items/{BASKET}", json=item("Panier", "Basket", price="6.00"))
    assert put.status_code == 201
    placed = place(net)
    refused = updated(net, placed["id"], "fulfillment", fulfillments=[{
        "type": "Delivery", "stops": [{"type": "end", "location": FORT_DE_FRANCE}]}])
    assert refused["error"]["code"] == "30008" and refused["error"]["paths"] == "message.order.fulfillments[0].type"


def test_a_prepaid_order_keeps_its_price(prepaid_net: Network) -> None:
    placed = place_prepaid(prepaid_net, 2)
    refused = updated(prepaid_net, placed["id"], "fulfillment", fulfillments=[{
        "type": "Delivery", "stops": [{"type": "end", "location": FORT_DE_FRANCE}]}])
    assert refused["error"]["code"] == "50002" and "prepaid" in refused["error"]["message"]
    assert refused["error"]["paths"] == "message.order.fulfillments[0].type"
    # Its billing may still change.
    billed = updated(prepaid_net, placed["id"], "billing", billing={"phone": "+596696000222"})
    assert billed["message"]["order"]["billing"]["phone"] == "+596696000222"
    assert billed["message"]["order"]["quote"] == placed["quote"]


# ------------------------------------------------------------------------------ refusals


def test_update_refusals_name_their_code_and_path(net: Network) -> None:
    delivery_shop(net)
    placed = place(net)
    before = stored(net, placed["id"])

    def refused(order_id: str | None, target: str, **parts: Any) -> dict[str, str]:
        answer = updated(net, order_id, target, **parts)
        assert "message" not in answer, answer
        return answer["error"]

    cases = [
        # (order id, update_target, order parts, code, path)
        (placed["id"], "items", {"items": [{"id": BASKET}]}, "30012", "message.update_target"),
        (placed["id"], "billing,payments", {"billing": {"name": "L"}}, "30012", "message.update_target"),
        (placed["id"], " , ", {}, "30012", "message.update_target"),
        (None, "billing", {"billing": {"name": "L"}}, "30010", "message.order.id"),
        ("LKU-0000000000", "billing", {"billing": {"name": "L"}}, "30010", "message.order.id"),
        (placed["id"], "billing", {}, "30013", "message.order.billing"),
        (placed["id"], "fulfillment", {"billing": {"name": "L"}}, "30013", "message.order.fulfillments"),
        (placed["id"], "billing", {"billing": {"name": "L"}, "items": [
            {"id": BASKET, "quantity": {"selected": {"count": 5}}}]}, "30013", "message.order.items[0]"),
        (placed["id"], "billing", {"billing": {"name": "L"}, "items": [{"id": "baguette"}]}, "30013",
         "message.order.items[0]"),
        (placed["id"], "billing", {"billing": {"name": "L"}, "provider": {"id": "jardin-lamentin"}}, "30013",
         "message.order.provider.id"),
        (placed["id"], "fulfillment", {"fulfillments": [{"id": placed["fulfillments"][0]["id"]}]}, "30013",
         "message.order.fulfillments[0]"),
        (placed["id"], "fulfillment", {"fulfillments": [{"id": "ailleurs-delivery"}]}, "30013",
         "message.order.fulfillments[0].id"),
        (placed["id"], "fulfillment", {"fulfillments": [{"stops": [{"type": "start", "location": {"id": "autre"}}]}]},
         "30013", "message.order.fulfillments[0].stops[0].location.id"),
        (placed["id"], "fulfillment", {"fulfillments": [{"stops": [{"type": "end", "location": FORT_DE_FRANCE}]}]},
         "30013", "message.order.fulfillments[0].stops[0].type"),  # a pickup has no end stop to change
    ]
    for order_id, target, parts, code, path in cases:
        error = refused(order_id, target, **parts)
        assert (error["code"], error["paths"]) == (code, path), (target, parts, error)
        assert error["message"]

    # The items echoed as ordered are fine: only what the target names changes.
    echoed = updated(net, placed["id"], "billing", billing={"name": "Léa M."},
                     items=[{"id": BASKET, "quantity": {"selected": {"count": 2}}}])
    assert echoed["message"]["order"]["billing"]["name"] == "Léa M."

    # Only the buyer app that placed the order may change it; to the others it does not exist.
    stranger = other_bap(net)
    body = update_body(net, placed["id"], "billing", billing={"name": "Intrus"})
    body["context"]["bap_id"] = stranger.subscriber_id
    send(net, "update", body, peer=stranger)
    assert net.callback(body["context"]["message_id"], "on_update")["error"]["code"] == "30010"
    after = stored(net, placed["id"])
    assert after.billing == BILLING | {"name": "Léa M."}
    assert (after.fulfillment, after.quote, after.total) == (before.fulfillment, before.quote, before.total)
