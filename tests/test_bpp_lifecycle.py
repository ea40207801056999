"""After the order, over real signed Beckn calls: cancel (under the merchant's own cancellation
terms, with its fee, the stock back once and a prepaid order refunded less the fee), track,
support and rating.

The network (registry, recording BAP, BPP with the demo catalogue) is the one of
tests/test_bpp_service.py, on SQLite and on PostgreSQL; every callback the BAP receives is checked
there against the BPP's key and the official 1.1.1 transaction.yaml before a test looks at it.
Merchants set their terms and move their orders on through the merchant API; prepaid orders are
paid on the sandbox processor's checkout page.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from beckn.errors import ACK_BODY
from bpp.lifecycle import CANCELLATION_FEE_TITLE, CANCELLATION_REASONS
from bpp.tables import BppMerchant, BppOrder, BppProviderProfile, BppWebhookDelivery
from test_bpp_merchant_api import SIRET_A, Merchant, item, profile
from test_bpp_payments import pay, payment_row
from test_bpp_service import (  # noqa: F401 - fixtures
    BILLING,
    Network,
    Peer,
    confirm_message,
    lang_tags,
    net,
    network,
    order,
    shared,
    spec,
)
from test_conformance import Spec

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

DEFAULT_TERMS = [{"fulfillment_state": {"descriptor": {"code": "RECEIVED"}}, "reason_required": True,
                  "cancellation_fee": {"percentage": "0"}}]
NO_RETURNS = [{"fulfillment_state": {"descriptor": {"code": "COMPLETED"}}, "return_eligible": False}]


def place(net: Network, provider: str, *lines: tuple[str, int], transaction_id: str | None = None) -> dict[str, Any]:
    answer = net.call("confirm", confirm_message(provider, *lines), transaction_id=transaction_id or str(uuid.uuid4()))
    return answer["message"]["order"]


def cancel_body(net: Network, order_id: str, reason: str | None = "002", **context: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"order_id": order_id}
    if reason is not None:
        message["cancellation_reason_id"] = reason
    return {"context": net.context("cancel", **context), "message": message}


def send(net: Network, action: str, body: dict[str, Any], peer: Peer | None = None) -> None:
    """POST a signed request (by `peer`, the test BAP by default) and expect ACK."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    signer = (peer or net.bap).signer
    response = net.http.post(f"{net.bpp}/beckn/{action}", content=raw,
                             headers={"Content-Type": "application/json", "Authorization": signer.sign(raw)})
    assert response.status_code == 200 and response.content == ACK_BODY, response.text


def other_bap(net: Network) -> Peer:
    other = Peer("autre-bap.lakou.test", "BAP", base=net.bap.base)  # its callbacks land in the same recorder
    net.registry.register(other.registration())
    return other


def stored_ratings(net: Network, order_id: str) -> list[dict[str, Any]]:
    return net.query(select(BppOrder.ratings).where(BppOrder.id == order_id))[0][0] or []


# ------------------------------------------------------------------------------ cancel


def test_cancel_returns_stock_once_and_a_cancelled_order_stays_cancelled(net: Network) -> None:
    before = net.stock("giraumon-kg"), net.stock("christophine-kg")
    placed = place(net, "jardin-lamentin", ("giraumon-kg", 2), ("christophine-kg", 3))
    # A merchant who set no terms: free cancellation while RECEIVED, no returns.
    assert placed["cancellation_terms"] == DEFAULT_TERMS and placed["return_terms"] == NO_RETURNS
    assert (net.stock("giraumon-kg"), net.stock("christophine-kg")) == (before[0] - 2, before[1] - 3)

    # The same cancel sent twice (a retransmission), then again under a new message id.
    body = cancel_body(net, placed["id"])
    send(net, "cancel", body)
    send(net, "cancel", body)
    cancelled = net.callback(body["context"]["message_id"], "on_cancel")["message"]["order"]
    assert cancelled["id"] == placed["id"] and cancelled["status"] == "CANCELLED"
    assert cancelled["fulfillments"][0]["state"]["descriptor"]["code"] == "CANCELLED"
    assert cancelled["cancellation"]["cancelled_by"] == "CONSUMER"
    assert cancelled["cancellation"]["reason"] == {
        "id": "002", "descriptor": {"code": "002", "name": CANCELLATION_REASONS["002"]["fr"]["name"]}}
    assert "lakou" not in cancelled["fulfillments"][0]
    # Free: nothing is due any more, and the quote says so line by line.
    assert cancelled["cancellation"]["fee"] == {"percentage": "0", "amount": {"currency": "EUR", "value": "0.00"}}
    assert cancelled["quote"]["price"] == {"currency": "EUR", "value": "0.00"}
    assert cancelled["quote"]["breakup"][-1] == {"title": "Frais d'annulation",
                                                 "price": {"currency": "EUR", "value": "0.00"}}
    assert [line["item"]["quantity"]["selected"]["count"] for line in cancelled["quote"]["breakup"][:-1]] == [0, 0]
    again = net.call("cancel", cancel_body(net, placed["id"])["message"])
    assert again["error"]["code"] == "50001" and "already cancelled" in again["error"]["message"]
    assert again["error"]["paths"] == "message.order_id"
    assert (net.stock("giraumon-kg"), net.stock("christophine-kg")) == before
    assert len(net.callbacks(body["context"]["message_id"], "on_cancel")) == 1

    status = net.call("status", {"order_id": placed["id"]})["message"]["order"]
    assert status["status"] == "CANCELLED" and status["cancellation"] == cancelled["cancellation"]


def test_concurrent_cancels_return_the_stock_once(net: Network) -> None:
    before = net.stock("lambi-kg")
    placed = place(net, "pecherie-robert", ("lambi-kg", 1))
    bodies = [cancel_body(net, placed["id"], reason="001") for _ in range(4)]
    threads = [threading.Thread(target=send, args=(net, "cancel", body)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers = [net.callback(body["context"]["message_id"], "on_cancel") for body in bodies]
    assert sorted("error" in answer for answer in answers) == [False, True, True, True]
    assert net.stock("lambi-kg") == before


def test_cancel_errors(net: Network) -> None:
    placed = place(net, "boulangerie-fort-de-france", ("pain-au-beurre-450g", 1))
    stock = net.stock("pain-au-beurre-450g")

    # Only the BAP that placed the order may cancel it; to the others it does not exist.
    stranger = other_bap(net)
    body = cancel_body(net, placed["id"], bap_id=stranger.subscriber_id)
    send(net, "cancel", body, peer=stranger)
    refused = net.callback(body["context"]["message_id"], "on_cancel")
    assert refused["error"]["code"] == "30010" and "message" not in refused

    no_reason = net.call("cancel", cancel_body(net, placed["id"], reason=None)["message"])
    assert no_reason["error"]["code"] == "30011" and no_reason["error"]["paths"] == "message.cancellation_reason_id"
    unknown = net.call("cancel", cancel_body(net, placed["id"], reason="999")["message"])
    assert unknown["error"]["code"] == "30011" and "001" in unknown["error"]["message"]
    missing = net.call("cancel", cancel_body(net, "LKU-0000000000")["message"])
    assert missing["error"]["code"] == "30010"
    assert net.stock("pain-au-beurre-450g") == stock
    assert net.call("status", {"order_id": placed["id"]})["message"]["order"]["status"] == "ACTIVE"

    # Once the merchant has started on the order, the free cancellation is over (no other terms set).
    fulfillment = net.query(select(BppOrder.fulfillment).where(BppOrder.id == placed["id"]))[0][0]
    fulfillment["state"] = {"descriptor": {"code": "PACKED"}, "updated_at": "2026-11-23T12:00:00.000Z"}
    net.query(update(BppOrder).where(BppOrder.id == placed["id"]).values(fulfillment=fulfillment)
              .returning(BppOrder.id), commit=True)
    late = net.call("cancel", cancel_body(net, placed["id"])["message"])
    assert late["error"]["code"] == "50001" and late["error"]["paths"] == "message.order_id"
    assert "is PACKED" in late["error"]["message"] and "RECEIVED (free)" in late["error"]["message"]
    assert net.stock("pain-au-beurre-450g") == stock


# ------------------------------------------------------------------------------ the merchant's terms


TERMS = [{"state": "RECEIVED", "fee_percent": "0"}, {"state": "PACKED", "fee_percent": "12.5"},
         {"state": "READY_FOR_PICKUP", "fee_percent": "50"}]
RETURNS = {"returnable": True, "within_days": 14, "managed_by": "CONSUMER"}
SHOP, BASKET = "epicerie-lea", "epicerie-lea-panier"


def terms_shop(net: Network) -> Merchant:
    """A merchant who set its own cancellation and return terms, selling baskets at 2.12."""
    merchant = Merchant(net, "Épicerie de Léa")
    body = profile(SHOP, siret=SIRET_A, fulfillment_types=["Self-Pickup", "Delivery"],
                   cancellation_terms=TERMS, return_terms=RETURNS)
    created = merchant.request("POST", "/providers", json=body)
    assert created.status_code == 201, created.text
    put = merchant.request("PUT", f"/providers/{SHOP}/items/{BASKET}", json=item("Panier", "Basket", price="2.12",
                                                                               stock=50))
    assert put.status_code == 201, put.text
    return merchant


def move(merchant: Merchant, order_id: str, *states: str) -> None:
    for state in states:
        moved = merchant.request("POST", f"/orders/{order_id}/state", json={"fulfillment_state": state})
        assert moved.status_code == 200, moved.text


def transaction_of(net: Network, order_id: str) -> str:
    return net.query(select(BppOrder.transaction_id).where(BppOrder.id == order_id))[0][0]


def test_the_merchants_terms_set_the_fee_in_each_state_and_are_shown_in_every_order(net: Network) -> None:
    lea = terms_shop(net)
    hook = lea.request("PUT", "/webhook", json={"url": "http://127.0.0.1:9/hook"})  # events are only queued here
    assert hook.status_code == 200, hook.text
    expected_terms = [{"fulfillment_state": {"descriptor": {"code": term["state"]}}, "reason_required": True,
                       "cancellation_fee": {"percentage": term["fee_percent"]}} for term in TERMS]

    # Before ordering, on_select and on_init already state the terms the order will have.
    for action, extra in (("select", {}), ("init", {"billing": BILLING})):
        quoted = net.call(action, order(SHOP, (BASKET, 1), **extra))["message"]["order"]
        assert quoted["cancellation_terms"] == expected_terms, action
        [returns] = quoted["return_terms"]
        assert returns["return_eligible"] is True and returns["return_time"] == {"duration": "P14D"}
        assert returns["fulfillment_managed_by"] == "CONSUMER"
        assert returns["fulfillment_state"] == {"descriptor": {"code": "COMPLETED"}}
        assert returns["return_location"] == quoted["fulfillments"][0]["stops"][0]["location"]  # the shop

    stock = net.stock(BASKET)
    # (count, states the merchant moves it through, language, fee): 12.5 % of 2.12 is 0.265, half up 0.27.
    cases = [(1, (), "fr", "0", "0.00"), (1, ("PACKED",), "fr", "12.5", "0.27"),
             (3, ("PACKED", "READY_FOR_PICKUP"), "en", "50", "3.18")]
    for count, states, lang, percent, fee in cases:
        message = confirm_message(SHOP, (BASKET, count))
        message["order"]["tags"] = lang_tags(lang)
        placed = net.call("confirm", message)["message"]["order"]
        assert placed["cancellation_terms"] == expected_terms and placed["return_terms"][0]["return_eligible"]
        move(lea, placed["id"], *states)
        answer = net.call("cancel", cancel_body(net, placed["id"])["message"],
                          transaction_id=transaction_of(net, placed["id"]))
        cancelled = answer["message"]["order"]
        assert cancelled["status"] == "CANCELLED"
        assert cancelled["cancellation"]["fee"] == {"percentage": percent, "amount": {"currency": "EUR", "value": fee}}
        assert cancelled["quote"]["price"] == {"currency": "EUR", "value": fee}
        assert cancelled["quote"]["breakup"][-1] == {"title": CANCELLATION_FEE_TITLE[lang],
                                                     "price": {"currency": "EUR", "value": fee}}
        assert cancelled["quote"]["breakup"][0]["price"]["value"] == "0.00"
        assert cancelled["cancellation_terms"] == expected_terms
        assert net.stock(BASKET) == stock, "the basket is back in stock, whatever the fee"

        # The merchant is told, with the fee it keeps and nothing personal.
        bodies = [row[0] for row in net.query(select(BppWebhookDelivery.body))]
        [event] = [json.loads(body) for body in bodies if placed["id"].encode() in body
                   and b"order.cancelled" in body]
        assert event["data"]["fee"] == fee and event["data"]["status"] == "CANCELLED"
        assert BILLING["name"].encode() not in b"".join(bodies)


def test_no_cancel_in_a_state_the_merchant_did_not_list(net: Network) -> None:
    lea = terms_shop(net)
    message = confirm_message(SHOP, (BASKET, 2))
    message["order"]["fulfillments"] = [{"type": "Delivery", "stops": [{"type": "end", "location": {
        "gps": "14.6160, -61.0588", "address": "12 rue Victor Hugo, 97200 Fort-de-France"}}]}]
    placed = net.call("confirm", message)["message"]["order"]
    stock = net.stock(BASKET)
    move(lea, placed["id"], "PACKED", "OUT_FOR_DELIVERY")
    refused = net.call("cancel", cancel_body(net, placed["id"])["message"],
                       transaction_id=transaction_of(net, placed["id"]))
    assert refused["error"]["code"] == "50001" and refused["error"]["paths"] == "message.order_id"
    assert "OUT_FOR_DELIVERY" in refused["error"]["message"]
    assert "RECEIVED (free), PACKED (12.5 % fee), READY_FOR_PICKUP (50 % fee)" in refused["error"]["message"]
    assert net.stock(BASKET) == stock

    # Complete, it is never cancellable (that is what returns are for).
    move(lea, placed["id"], "COMPLETED")
    done = net.call("cancel", cancel_body(net, placed["id"])["message"], transaction_id=transaction_of(net, placed["id"]))
    assert done["error"]["code"] == "50001" and "complete" in done["error"]["message"]
    status = net.call("status", {"order_id": placed["id"]})["message"]["order"]
    assert status["status"] == "COMPLETE" and "cancellation" not in status


def test_an_order_keeps_the_terms_it_was_confirmed_under(net: Network) -> None:
    lea = terms_shop(net)
    placed = net.call("confirm", confirm_message(SHOP, (BASKET, 2)))["message"]["order"]
    move(lea, placed["id"], "PACKED")

    # The merchant then makes cancelling dearer and stops taking returns: new orders only.
    body = profile(SHOP, siret=SIRET_A, fulfillment_types=["Self-Pickup", "Delivery"],
                   cancellation_terms=[{"state": "RECEIVED", "fee_percent": "5"}], return_terms={"returnable": False})
    changed = lea.request("PUT", f"/providers/{SHOP}", json={key: value for key, value in body.items() if key != "id"})
    assert changed.status_code == 200, changed.text
    quoted = net.call("select", order(SHOP, (BASKET, 1)))["message"]["order"]
    assert [term["fulfillment_state"]["descriptor"]["code"] for term in quoted["cancellation_terms"]] == ["RECEIVED"]
    assert quoted["return_terms"][0]["return_eligible"] is False

    status = net.call("status", {"order_id": placed["id"]}, transaction_id=transaction_of(net, placed["id"]))
    kept = status["message"]["order"]
    assert [term["cancellation_fee"]["percentage"] for term in kept["cancellation_terms"]] == ["0", "12.5", "50"]
    assert kept["return_terms"][0]["return_eligible"] is True
    # PACKED is no longer in the merchant's terms, but this order was confirmed when it was: 12.5 %.
    answer = net.call("cancel", cancel_body(net, placed["id"])["message"],
                      transaction_id=transaction_of(net, placed["id"]))
    assert answer["message"]["order"]["cancellation"]["fee"]["percentage"] == "12.5"
    assert answer["message"]["order"]["quote"]["price"]["value"] == "0.53"  # 12.5 % of 4.24, half up


# ------------------------------------------------------------------------------ prepaid orders


PREPAID_SHOP = "epicerie-prepayee"
PREPAID_CATALOGUE = {"providers": [{
    "id": PREPAID_SHOP, "descriptor": {"fr": {"name": "Épicerie prépayée"}},
    "location": {"id": "epicerie-prepayee-shop", "gps": "14.6050, -61.0700",
                 "address": "1 rue de la Liberté, 97200 Fort-de-France",
                 "city": {"code": "insee:97209", "name": "Fort-de-France"}, "area_code": "97200"},
    "fulfillment_types": ["Self-Pickup", "Delivery"], "payment_types": ["PRE-ORDER"],
    "cancellation_terms": [{"state": "RECEIVED", "fee_percent": "15"}],
    "items": [{"id": "colombo-epices", "descriptor": {"fr": {"name": "Épices à colombo"}}, "price": "4.30",
               "unit": "unit", "stock": 10}]}]}


@pytest.fixture
def prepaid_net(spec: Spec, tmp_path: Path, db_url: str) -> Iterator[Network]:
    """A BPP with the sandbox payment processor and one prepaid-only shop, on SQLite and PostgreSQL."""
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(PREPAID_CATALOGUE, ensure_ascii=False), encoding="utf-8")
    with network(spec, tmp_path, db_url, bpp_catalogue=str(catalogue), bpp_payment_processor="sandbox") as fresh:
        yield fresh


def place_prepaid(net: Network, count: int) -> dict[str, Any]:
    """Init (a payment link), pay it on the sandbox checkout page, confirm: a prepaid order."""
    transaction_id = str(uuid.uuid4())
    lines = (("colombo-epices", count),)
    wanted = order(PREPAID_SHOP, *lines, billing=BILLING, fulfillments=[{"type": "Self-Pickup"}],
                   payments=[{"type": "PRE-ORDER", "collected_by": "BPP"}])
    [link] = net.call("init", wanted, transaction_id=transaction_id)["message"]["order"]["payments"]
    assert pay(net, link).status_code == 200
    chosen = [{"id": link["id"], "type": "PRE-ORDER", "collected_by": "BPP",
               "params": {"transaction_id": link["params"]["transaction_id"]}}]
    confirmed = net.call("confirm", order(PREPAID_SHOP, *lines, billing=BILLING, fulfillments=[{"type": "Self-Pickup"}],
                                          payments=chosen), transaction_id=transaction_id)
    assert "error" not in confirmed, confirmed
    return confirmed["message"]["order"]


def test_a_prepaid_order_is_refunded_less_the_fee(prepaid_net: Network) -> None:
    placed = place_prepaid(prepaid_net, 3)  # 12.90 paid
    assert placed["payments"][0]["status"] == "PAID"
    cancelled = prepaid_net.call("cancel", cancel_body(prepaid_net, placed["id"])["message"],
                                 transaction_id=transaction_of(prepaid_net, placed["id"]))["message"]["order"]
    # 15 % of 12.90 is 1.935: the merchant keeps 1.94 (half up) and the buyer gets 10.96 back.
    assert cancelled["cancellation"]["fee"]["amount"]["value"] == "1.94"
    assert cancelled["quote"]["price"]["value"] == "1.94"
    [refund] = [tag for tag in cancelled["payments"][0]["tags"] if tag["descriptor"]["code"] == "lakou:refund"]
    assert {entry["descriptor"]["code"]: entry["value"] for entry in refund["list"]}["amount"] == "10.96"
    record = prepaid_net.query(select(BppOrder.cancellation).where(BppOrder.id == placed["id"]))[0][0]
    assert record["refunded"] == {"currency": "EUR", "value": "10.96"} and record["state"] == "RECEIVED"
    assert prepaid_net.stock("colombo-epices") == 10
    # Cancelled again (a new message id): refused, nothing refunded twice.
    again = prepaid_net.call("cancel", cancel_body(prepaid_net, placed["id"])["message"],
                             transaction_id=transaction_of(prepaid_net, placed["id"]))
    assert again["error"]["code"] == "50001"
    [payment_id] = [placed["payments"][0]["params"]["transaction_id"]]
    assert str(payment_row(prepaid_net, payment_id).refunded) == "10.96"


# ------------------------------------------------------------------------------ track


def test_track_is_active_while_the_order_is_open(net: Network) -> None:
    placed = place(net, "distillerie-sainte-marie", ("shrubb-50cl", 1))
    tracking = net.call("track", {"order_id": placed["id"]})["message"]["tracking"]
    assert tracking["id"] == placed["id"] and tracking["status"] == "active"
    assert tracking["location"] == placed["fulfillments"][0]["stops"][0]["location"]  # where to collect it

    stranger = other_bap(net)
    body = {"context": net.context("track", bap_id=stranger.subscriber_id), "message": {"order_id": placed["id"]}}
    send(net, "track", body, peer=stranger)
    assert net.callback(body["context"]["message_id"], "on_track")["error"]["code"] == "30010"

    assert "error" not in net.call("cancel", cancel_body(net, placed["id"])["message"])
    assert net.call("track", {"order_id": placed["id"]})["message"]["tracking"] == {
        "id": placed["id"], "status": "inactive"}


# ------------------------------------------------------------------------------ support


def test_support_gives_the_merchants_contact_for_an_order_or_a_provider(net: Network) -> None:
    # The merchant who owns jardin-lamentin filed its business contact with its profile.
    now = datetime.now(UTC)
    net.query(insert(BppMerchant).values(id="mch_jardin", name="Jardin du Lamentin", created_at=now)
              .returning(BppMerchant.id), commit=True)
    net.query(insert(BppProviderProfile).values(
        provider_id="jardin-lamentin", merchant_id="mch_jardin", siret="94580730215736", opening_hours=[],
        created_at=now, updated_at=now, contact={"phone": "+596 596 12 34 56", "email": "contact@jardin-lamentin.mq"})
        .returning(BppProviderProfile.provider_id), commit=True)
    placed = place(net, "jardin-lamentin", ("giraumon-kg", 1))
    expected = {"phone": "+596596123456", "email": "contact@jardin-lamentin.mq"}

    for ref_id in (placed["id"], "jardin-lamentin"):
        support = net.call("support", {"support": {"ref_id": ref_id}})["message"]["support"]
        assert support == {"ref_id": ref_id, **expected}

    # Another BAP's order is not found, a merchant without a contact on file has no support.
    stranger = other_bap(net)
    body = {"context": net.context("support", bap_id=stranger.subscriber_id),
            "message": {"support": {"ref_id": placed["id"]}}}
    send(net, "support", body, peer=stranger)
    refused = net.callback(body["context"]["message_id"], "on_support")
    assert refused["error"]["code"] == "30010" and refused["error"]["paths"] == "message.support.ref_id"
    assert net.call("support", {"support": {"ref_id": "pecherie-robert"}})["error"]["code"] == "50004"
    assert net.call("support", {})["error"]["paths"] == "message.support.ref_id"


# ------------------------------------------------------------------------------ rating


def test_ratings_are_stored_on_the_order_and_bad_ones_refused_with_their_path(net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    placed = place(net, "jardin-lamentin", ("giraumon-kg", 1), ("igname-kg", 2), transaction_id=transaction_id)
    fulfillment_id = placed["fulfillments"][0]["id"]

    # In the order's transaction the items, the merchant and the fulfillment can be rated.
    answer = net.call("rating", {"ratings": [
        {"rating_category": "Item", "id": "giraumon-kg", "value": "5"},
        {"rating_category": "Provider", "id": "jardin-lamentin", "value": "4"},
        {"rating_category": "Fulfillment", "id": fulfillment_id, "value": "3"},
    ]}, transaction_id=transaction_id)
    assert answer["message"] == {} and "error" not in answer
    # From another transaction, an Order rating names the order; a new rating replaces the old one.
    assert "error" not in net.call("rating", {"ratings": [
        {"rating_category": "Order", "id": placed["id"], "value": "4"},
        {"rating_category": "Item", "id": "giraumon-kg", "value": "2"},
    ]})
    stored = {(r["rating_category"], r["id"]): r["value"] for r in stored_ratings(net, placed["id"])}
    assert stored == {("Item", "giraumon-kg"): "2", ("Provider", "jardin-lamentin"): "4",
                      ("Fulfillment", fulfillment_id): "3", ("Order", placed["id"]): "4"}
    assert "lakou" not in net.call("status", {"order_id": placed["id"]})["message"]["order"]["fulfillments"][0]

    def refused(ratings: list[dict[str, str]], **context: Any) -> dict[str, str]:
        answer = net.call("rating", {"ratings": ratings}, **context)
        assert answer["message"] == {}  # on_rating always carries a message, as the spec requires
        return answer["error"]

    in_order = {"transaction_id": transaction_id}
    for value in ("6", "0", "4.5", "gte 4", "cinq"):
        error = refused([{"rating_category": "Item", "id": "igname-kg", "value": "5"},
                         {"rating_category": "Item", "id": "igname-kg", "value": value}], **in_order)
        assert error["code"] == "30015" and error["paths"] == "message.ratings[1].value"
    error = refused([{"rating_category": "Agent", "id": "x", "value": "5"}], **in_order)
    assert error["code"] == "50003" and error["paths"] == "message.ratings[0].rating_category"
    error = refused([{"rating_category": "Item", "id": "lambi-kg", "value": "5"}], **in_order)
    assert error["code"] == "30014" and error["paths"] == "message.ratings[0].id"
    # A transaction with no order, and no Order rating to name one.
    error = refused([{"rating_category": "Item", "id": "giraumon-kg", "value": "5"}])
    assert error["code"] == "30014" and error["paths"] == "message.ratings"
    error = refused([{"rating_category": "Order", "id": "LKU-0000000000", "value": "5"}])
    assert error["code"] == "30014" and error["paths"] == "message.ratings[0].id"
    assert refused([], **in_order)["code"] == "30000"
    # A refused batch stores none of its ratings, not even the valid ones.
    assert {(r["rating_category"], r["id"]) for r in stored_ratings(net, placed["id"])} == set(stored)

    stranger = other_bap(net)
    body = {"context": net.context("rating", bap_id=stranger.subscriber_id),
            "message": {"ratings": [{"rating_category": "Order", "id": placed["id"], "value": "1"}]}}
    send(net, "rating", body, peer=stranger)
    assert net.callback(body["context"]["message_id"], "on_rating")["error"]["code"] == "30014"
