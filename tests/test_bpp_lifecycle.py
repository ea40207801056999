"""After the order, over real signed Beckn calls: cancel, track, support and rating.

The network (registry, recording BAP, BPP with the demo catalogue) is the one of
tests/test_bpp_service.py; every callback the BAP receives is checked there against the BPP's
key and the official 1.1.1 transaction.yaml before a test looks at it.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from beckn.errors import ACK_BODY
from bpp.lifecycle import CANCELLATION_REASONS
from bpp.tables import BppMerchant, BppOrder, BppProviderProfile
from test_bpp_service import (  # noqa: F401 - fixtures
    Network,
    Peer,
    confirm_message,
    net,
    shared,
    spec,
)


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


def private(net: Network, order_id: str) -> dict[str, Any]:
    fulfillment = net.query(select(BppOrder.fulfillment).where(BppOrder.id == order_id))[0][0]
    return fulfillment.get("lakou", {})


# ------------------------------------------------------------------------------ cancel


def test_cancel_returns_stock_once_and_a_cancelled_order_stays_cancelled(net: Network) -> None:
    before = net.stock("giraumon-kg"), net.stock("christophine-kg")
    placed = place(net, "jardin-lamentin", ("giraumon-kg", 2), ("christophine-kg", 3))
    assert placed["cancellation_terms"] == [{"fulfillment_state": {"descriptor": {"code": "RECEIVED"}},
                                             "reason_required": True, "cancellation_fee": {"percentage": "0"}}]
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

    # Once the merchant has started on the order, the free cancellation is over.
    fulfillment = net.query(select(BppOrder.fulfillment).where(BppOrder.id == placed["id"]))[0][0]
    fulfillment["state"] = {"descriptor": {"code": "PREPARING"}, "updated_at": "2026-11-23T12:00:00.000Z"}
    net.query(update(BppOrder).where(BppOrder.id == placed["id"]).values(fulfillment=fulfillment)
              .returning(BppOrder.id), commit=True)
    late = net.call("cancel", cancel_body(net, placed["id"])["message"])
    assert late["error"]["code"] == "50001" and "PREPARING" in late["error"]["message"]
    assert net.stock("pain-au-beurre-450g") == stock


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
    stored = {(r["rating_category"], r["id"]): r["value"] for r in private(net, placed["id"])["ratings"]}
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
    assert {(r["rating_category"], r["id"]) for r in private(net, placed["id"])["ratings"]} == set(stored)

    stranger = other_bap(net)
    body = {"context": net.context("rating", bap_id=stranger.subscriber_id),
            "message": {"ratings": [{"rating_category": "Order", "id": placed["id"], "value": "1"}]}}
    send(net, "rating", body, peer=stranger)
    assert net.callback(body["context"]["message_id"], "on_rating")["error"]["code"] == "30014"
