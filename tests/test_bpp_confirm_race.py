"""Two buyers, one last jar: concurrent confirms from different buyer apps never oversell.

Two different BAPs (each registered at the real registry with its own key, each signing its own
request) confirm the last unit of the same item in two different transactions at the same moment,
through a real BPP on 127.0.0.1, on SQLite and on PostgreSQL. Exactly one order is made; the other
buyer gets a spec-shaped 40002 "item quantity unavailable" on_confirm; the stock ends at 0, never
below. The race is run several rounds so that a lost update would show. Every on_confirm is checked
against the BPP's key and the official 1.1.1 transaction.yaml (tests/test_bpp_service.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from beckn.errors import ACK_BODY
from bpp.tables import BppItem, BppOrder
from test_bpp_merchant_api import Merchant, item, profile
from test_bpp_service import BILLING, PAY_AT_PICKUP, Network, Peer, net, spec  # noqa: F401 (fixtures)

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

ROUNDS = 6
PROVIDER, ITEM = "confiturerie-lea", "confiture-goyave"


def confirm_body(net: Network, buyer: Peer) -> dict[str, Any]:
    """A confirm of the last jar by `buyer`, in a transaction of its own."""
    context = net.context("confirm", transaction_id=str(uuid.uuid4()), bap_id=buyer.subscriber_id,
                          bap_uri=buyer.url)
    return {"context": context, "message": {"order": {
        "provider": {"id": PROVIDER},
        "items": [{"id": ITEM, "quantity": {"selected": {"count": 1}}}],
        "billing": BILLING, "payments": PAY_AT_PICKUP, "fulfillments": [{"type": "Self-Pickup"}]}}}


async def send_together(net: Network, sends: list[tuple[Peer, dict[str, Any]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=10) as client:
        async def one(buyer: Peer, body: dict[str, Any]) -> httpx.Response:
            raw = json.dumps(body, ensure_ascii=False).encode()
            return await client.post(f"{net.bpp}/beckn/confirm", content=raw, headers={
                "Content-Type": "application/json", "Authorization": buyer.signer.sign(raw)})
        return await asyncio.gather(*(one(buyer, body) for buyer, body in sends))


def test_two_buyers_confirming_the_last_unit_make_exactly_one_order(net: Network) -> None:
    merchant = Merchant(net, "Confiturerie de Léa")
    assert merchant.request("POST", "/providers", json=profile(PROVIDER)).status_code == 201
    put = merchant.request("PUT", f"/providers/{PROVIDER}/items/{ITEM}",
                           json=item("Confiture de goyave", "Guava jam", unit="jar", stock=1))
    assert put.status_code == 201, put.text
    # A second buyer app: its own identity and key, its callbacks recorded next to the first one's.
    other = Peer("autre-bap.lakou.test", "BAP", base=net.bap.base)
    net.registry.register(other.registration())

    winners = []
    for round_ in range(ROUNDS):
        restock = merchant.request("PATCH", f"/providers/{PROVIDER}/items/{ITEM}", json={"stock": 1})
        assert restock.status_code == 200 and restock.json()["stock"] == 1
        # Alternate who sends first, so neither buyer app is always ahead.
        buyers = [net.bap, other] if round_ % 2 == 0 else [other, net.bap]
        bodies = [(buyer, confirm_body(net, buyer)) for buyer in buyers]
        responses = asyncio.run(send_together(net, bodies))
        assert [(r.status_code, r.content) for r in responses] == [(200, ACK_BODY)] * 2

        answers = {buyer.subscriber_id: net.callback(body["context"]["message_id"], "on_confirm")
                   for buyer, body in bodies}
        placed = {bap: answer["message"]["order"] for bap, answer in answers.items() if "message" in answer}
        refused = {bap: answer["error"] for bap, answer in answers.items() if "error" in answer}
        assert len(placed) == 1 and len(refused) == 1, answers
        (winner, order), (_, error) = next(iter(placed.items())), next(iter(refused.items()))
        winners.append(winner)
        assert order["status"] == "ACTIVE" and order["items"][0]["quantity"]["selected"]["count"] == 1
        assert error["code"] == "40002" and error["paths"] == "message.order.items[0].quantity.selected.count"
        assert "only 0" in error["message"]
        # Stock is exactly gone, never below zero; the winner's order is the only new one.
        assert net.stock(ITEM) == 0
        assert net.query(select(func.count()).select_from(BppOrder).where(BppOrder.provider_id == PROVIDER))[0][0] \
            == round_ + 1
        view = net.order_view(order["id"])
        assert view.status_code == 200 and view.json()["bap_id"] == winner

    # Each order belongs to the buyer app that won its round, and nothing ever went negative.
    orders = net.query(select(BppOrder.bap_id).where(BppOrder.provider_id == PROVIDER).order_by(BppOrder.created_at))
    assert sorted(bap for (bap,) in orders) == sorted(winners)
    assert net.query(select(func.min(BppItem.stock)))[0][0] >= 0
