"""The citizen search API over real HTTP: what a search asks the network (near, fulfilment, no
personal data), and the result list an app builds on (deduplicated, sorted, paginated, with
distances and the offer fields an app shows), polled or streamed.

The harness is tests/test_bap_service.py's: a real BAP and registry, and a peer playing the
gateway and two BPPs that verifies what the BAP sends against the Beckn spec and signs the
on_search callbacks the tests feed in.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_bap_service import Identity, Network, _read_events, callback_request, spec, start_network  # noqa: F401

from beckn_examples import example_callback
from bpp.catalogue import ProviderFile, provider_rows
from bpp.search import catalog_json
from bpp.tables import BppProviderProfile

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

NEAR = {"gps": "14.6000, -61.0000", "radius_km": "10"}


@pytest.fixture
def net(sqlite_url: str, tmp_path: Path, spec: Any) -> Iterator[Network]:  # noqa: F811
    yield from start_network(sqlite_url, tmp_path / "bap", spec)


@pytest.fixture
def net_both(db_url: str, tmp_path: Path, spec: Any) -> Iterator[Network]:  # noqa: F811
    """The same network on SQLite and on PostgreSQL."""
    yield from start_network(db_url, tmp_path / "bap", spec)


# ---------------------------------------------------------------------------------------------
# Catalogues as BPPs send them
# ---------------------------------------------------------------------------------------------


def item(item_id: str, price: str | None, name: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item_id, "descriptor": {"name": name or item_id.title()}, **extra}
    if price is not None:
        out["price"] = {"currency": "EUR", "value": price}
    return out


def provider(provider_id: str, items: list[dict[str, Any]], *, gps: list[str] | None = None) -> dict[str, Any]:
    """A provider with one location per gps point (none: a location without gps)."""
    locations = [{"id": f"{provider_id}-{n}", "address": f"{n} rue Victor Hugo", "gps": point,
                  "city": {"code": "insee:97209", "name": "Fort-de-France"}}
                 for n, point in enumerate(gps or [])] or [{"id": f"{provider_id}-0", "address": "Marché"}]
    return {"id": provider_id, "descriptor": {"name": provider_id.title()}, "locations": locations, "items": items}


def answer(net: Network, bpp: Identity, context: dict[str, Any], providers: list[dict[str, Any]]) -> None:
    """One on_search callback of `bpp` for the search, signed and posted to the BAP."""
    catalog = {**example_callback("on_search")["message"]["catalog"], "providers": providers}
    url, body, headers = callback_request(bpp, net.peer.url, context, "on_search", {"message": {"catalog": catalog}})
    assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200


def settle(net: Network, auth: dict[str, str], txn: str, responses: int) -> None:
    """Wait until the BAP has accepted `responses` on_search callbacks for the search."""
    deadline = time.monotonic() + 10
    while net.api("GET", f"/searches/{txn}/results", auth, params={"wait_ms": 500}).json()["responses"] < responses:
        assert time.monotonic() < deadline, "the callbacks never showed"


def results(net: Network, auth: dict[str, str], txn: str, **params: Any) -> dict[str, Any]:
    response = net.api("GET", f"/searches/{txn}/results", auth, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(body: dict[str, Any]) -> list[str]:
    return [offer["item"]["id"] for offer in body["offers"]]


def started(net: Network, auth: dict[str, str], **body: Any) -> tuple[str, dict[str, Any]]:
    response = net.api("POST", "/searches", auth, json={"ttl_seconds": 30, **body})
    assert response.status_code == 202, response.text
    txn = response.json()["id"]
    assert response.json()["transaction_id"] == txn
    return txn, net.search_context(txn)


# ---------------------------------------------------------------------------------------------
# What a search asks
# ---------------------------------------------------------------------------------------------


def test_a_search_near_a_place_asks_for_a_circle_and_a_fulfilment_without_personal_data(net: Network) -> None:
    auth = net.session()
    txn, context = started(net, auth, category="fruits", near={"gps": "14.6160,-61.0588", "radius_km": 2.5},
                           fulfillment="pickup", lang="de")
    (sent,) = [d for d in net.peer.sent("search") if d["context"]["transaction_id"] == txn]
    intent = sent["message"]["intent"]
    # Nothing else than what was asked; no query given, so no item.
    assert set(sent["message"]) == {"intent"} and set(intent) == {"category", "fulfillment", "tags"}
    assert intent["fulfillment"] == {"type": "Self-Pickup", "stops": [{"location": {"circle": {
        "gps": "14.6160, -61.0588", "radius": {"value": "2.5", "unit": "km"}}}}]}
    assert intent["category"] == {"id": "fruits"}
    assert intent["tags"][0]["list"] == [{"descriptor": {"code": "lang"}, "value": "de"}]
    # The circle narrows the search: no default commune on top of it.
    assert context["location"]["city"]["code"] == "*"
    # The session's token (the only thing that identifies the citizen) is not in the broadcast.
    token = auth["Authorization"].removeprefix("Bearer ")
    assert token not in json.dumps(sent) and "authorization" not in json.dumps(sent["message"]).lower()

    txn, context = started(net, auth, query="poisson", city="insee:97222", fulfillment="delivery")
    (sent,) = [d for d in net.peer.sent("search") if d["context"]["transaction_id"] == txn]
    assert sent["message"]["intent"]["fulfillment"] == {"type": "Delivery"}
    assert sent["message"]["intent"]["item"] == {"descriptor": {"name": "poisson"}}
    assert context["location"]["city"]["code"] == "insee:97222"
    assert sent["message"]["intent"]["tags"][0]["list"][0]["value"] == "fr"  # no lang, no Accept-Language
    # A commune alone is enough to browse; the answer's language follows the app's Accept-Language.
    response = net.api("POST", "/searches", {**auth, "Accept-Language": "es-MX,es;q=0.9,en;q=0.5"},
                       json={"city": "insee:97213"})
    assert response.status_code == 202, response.text
    net.search_context(response.json()["id"])
    (sent,) = [d for d in net.peer.sent("search") if d["context"]["transaction_id"] == response.json()["id"]]
    assert sent["message"]["intent"]["tags"][0]["list"][0]["value"] == "es"


def test_a_search_that_narrows_nothing_or_is_malformed_is_refused(net: Network) -> None:
    auth = net.session()
    for body in ({}, {"lang": "en"}, {"fulfillment": "pickup"}, {"country": "GLP", "ttl_seconds": 5}):
        refused = net.api("POST", "/searches", auth, json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["code"] == "empty_search", body
        assert "query, category, city or near" in refused.json()["error"]["detail"]
    # In the citizen's language: the request's, else the one the search asked for, else French.
    french = net.api("POST", "/searches", auth, json={"fulfillment": "pickup"})
    assert french.json()["error"]["message"].startswith("Dites ce que vous cherchez")
    english = net.api("POST", "/searches", auth, json={"lang": "en"})
    assert english.json()["error"]["message"].startswith("Say what you are looking for")
    german = net.api("POST", "/searches", {**auth, "Accept-Language": "de-DE,de;q=0.9"}, json={"lang": "en"})
    assert german.json()["error"]["message"].startswith("Sagen Sie")
    malformed = [
        {"near": {"gps": "Fort-de-France", "radius_km": "5"}},
        {"near": {"gps": "91.0, -61.0", "radius_km": "5"}},
        {"near": {"gps": "14.6, -181", "radius_km": "5"}},
        {"near": {"gps": "14.6, -61.0", "radius_km": "0"}},
        {"near": {"gps": "14.6, -61.0", "radius_km": "-1"}},
        {"near": {"gps": "14.6, -61.0", "radius_km": "101"}},
        {"near": {"gps": "14.6, -61.0", "radius_km": "cinq"}},
        {"near": {"gps": "14.6, -61.0"}},
        {"query": "ananas", "fulfillment": "drone"},
    ]
    for body in malformed:
        refused = net.api("POST", "/searches", auth, json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["code"] == "invalid_request" and refused.json()["error"]["message"], body
    time.sleep(0.3)
    assert net.peer.sent("search") == []


# ---------------------------------------------------------------------------------------------
# The result list
# ---------------------------------------------------------------------------------------------


def test_offers_are_one_per_bpp_provider_and_item_and_the_latest_answer_wins(net_both: Network) -> None:
    net = net_both
    auth = net.session()
    txn, context = started(net, auth, query="fruits")
    a, b = net.peer.bpp_a, net.peer.bpp_b
    answer(net, a, context, [provider("ferme", [item("ananas", "4.50"), item("banane", "2.00")])])
    # The second part of A's answer: one more item, and the pineapple again at a new price.
    answer(net, a, context, [provider("ferme", [item("ananas", "3.90"), item("mangue", "6.00")])])
    # B sells a pineapple too, with the same ids: another BPP's offer, not a duplicate.
    answer(net, b, context, [provider("ferme", [item("ananas", "5.00")])])
    # B answers twice: the same catalogue again.
    answer(net, b, context, [provider("ferme", [item("ananas", "5.00")])])
    settle(net, auth, txn, 4)

    body = results(net, auth, txn)
    assert body["responses"] == 4 and body["total"] == 4 and body["id"] == txn
    assert [(o["bpp_id"], o["item"]["id"]) for o in body["offers"]] == [
        ("ferme.bpp.test", "ananas"), ("ferme.bpp.test", "banane"), ("ferme.bpp.test", "mangue"),
        ("epicerie.bpp.test", "ananas")]
    # The pineapple keeps its place, with its latest price.
    assert body["offers"][0]["item"]["price"] == {"currency": "EUR", "value": "3.90"}
    assert body["offers"][0]["distance_km"] is None  # no `near` in this search
    assert body["page"] == 1 and body["page_size"] == 20


def test_offers_sort_by_price_as_decimals_by_relevance_and_by_distance(net: Network) -> None:
    auth = net.session()
    txn, context = started(net, auth, query="fruits", near=NEAR)
    answer(net, net.peer.bpp_a, context, [
        provider("loin", [item("melon", "9.50"), item("coco", None)], gps=["14.7000, -61.0000"]),
        provider("pres", [item("goyave", "10.00"), item("corossol", "100.5")], gps=["14.6100, -61.0000"]),
        provider("sans-gps", [item("prune", "0.99")]),
    ])
    settle(net, auth, txn, 1)
    received = ["melon", "coco", "goyave", "corossol", "prune"]
    assert ids(results(net, auth, txn)) == received
    assert ids(results(net, auth, txn, sort="relevance", order="desc")) == received[::-1]
    # As decimals ("10.00" < "9.50" as strings); no price: last either way.
    assert ids(results(net, auth, txn, sort="price")) == ["prune", "melon", "goyave", "corossol", "coco"]
    assert ids(results(net, auth, txn, sort="price", order="desc")) == ["corossol", "goyave", "melon", "prune", "coco"]
    # Equal distances keep the received order; no location with gps: last either way.
    assert ids(results(net, auth, txn, sort="distance")) == ["goyave", "corossol", "melon", "coco", "prune"]
    assert ids(results(net, auth, txn, sort="distance", order="desc")) == [
        "melon", "coco", "goyave", "corossol", "prune"]

    for bad in ({"sort": "name"}, {"order": "up"}, {"page": 0}, {"page_size": 0}, {"page_size": 101}):
        refused = net.api("GET", f"/searches/{txn}/results", auth, params=bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", bad
    # Without `near` there is no distance to sort by.
    plain, _ = started(net, auth, query="fruits")
    refused = net.api("GET", f"/searches/{plain}/results", auth, params={"sort": "distance"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "distance_needs_near"
    assert refused.json()["error"]["message"] == "Le tri par distance demande une recherche autour d'un lieu."
    assert "near" in refused.json()["error"]["detail"]


def test_results_are_paginated(net: Network) -> None:
    auth = net.session()
    txn, context = started(net, auth, category="fruits")
    names = [f"fruit-{n:02d}" for n in range(25)]
    answer(net, net.peer.bpp_a, context, [provider("ferme", [item(name, f"{n}.00") for n, name in enumerate(names)])])
    settle(net, auth, txn, 1)
    first = results(net, auth, txn)
    assert first["total"] == 25 and first["page_size"] == 20 and ids(first) == names[:20]
    assert ids(results(net, auth, txn, page=2)) == names[20:]
    pages = [ids(results(net, auth, txn, page=p, page_size=7)) for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [7, 7, 7, 4] and sum(pages, []) == names
    beyond = results(net, auth, txn, page=5, page_size=7)
    assert beyond["offers"] == [] and beyond["total"] == 25 and beyond["page"] == 5
    assert ids(results(net, auth, txn, page_size=100)) == names
    assert ids(results(net, auth, txn, sort="price", order="desc", page=3, page_size=10)) == names[4::-1]


def _haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(h))


def test_distance_is_to_the_nearest_of_the_providers_locations(net_both: Network) -> None:
    net = net_both
    auth = net.session()
    txn, context = started(net, auth, query="poisson", near={"gps": "14.6000, -61.0000", "radius_km": "30"})
    # A main shop far away, and a market stall close by: the stall counts.
    answer(net, net.peer.bpp_a, context, [
        provider("pecheur", [item("thon", "18.00")], gps=["14.8000, -61.2000", "14.6100, -61.0000"]),
        provider("sans-gps", [item("marlin", "22.00")]),
    ])
    settle(net, auth, txn, 1)
    tuna, marlin = results(net, auth, txn)["offers"]
    expected = _haversine((14.6, -61.0), (14.61, -61.0))
    assert tuna["distance_km"] == pytest.approx(expected, abs=0.001) and 1.0 < tuna["distance_km"] < 1.2
    assert [loc["gps"] for loc in tuna["provider"]["locations"]] == ["14.8000, -61.2000", "14.6100, -61.0000"]
    assert marlin["distance_km"] is None


def test_another_session_sees_no_search(net: Network) -> None:
    alice, bob = net.session(), net.session()
    txn, context = started(net, alice, query="ananas", near=NEAR)
    answer(net, net.peer.bpp_a, context, [provider("ferme", [item("ananas", "4.50")], gps=["14.6, -61.0"])])
    settle(net, alice, txn, 1)
    for params in ({}, {"sort": "distance"}, {"sort": "price", "page": 2}):
        refused = net.api("GET", f"/searches/{txn}/results", bob, params=params)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found", params
        assert "ananas" not in refused.text
    assert net.api("GET", f"/searches/{txn}/events", bob).status_code == 404
    assert net.api("GET", f"/searches/{txn}/results", alice).json()["total"] == 1


# ---------------------------------------------------------------------------------------------
# What an offer shows, from what a Lakou BPP really sends
# ---------------------------------------------------------------------------------------------


def _bpp_catalog() -> dict[str, Any]:
    """A merchant's catalogue as bpp.search shows it in on_search (English, opening hours published)."""
    merchant = ProviderFile.model_validate({
        "id": "jardin-lamentin",
        "descriptor": {"fr": {"name": "Jardin Créole"}, "en": {"name": "Creole Garden"}},
        "location": {"id": "bois-carre", "gps": "14.6135, -60.9996", "address": "Quartier Bois-Carré, 97232 Le Lamentin",
                     "city": {"code": "insee:97213", "name": "Le Lamentin"}, "area_code": "97232"},
        "other_locations": [{"id": "grand-marche", "gps": "14.6056, -61.0694",
                             "address": "Grand Marché couvert, stand 14, 97200 Fort-de-France",
                             "city": {"code": "insee:97209", "name": "Fort-de-France"}, "area_code": "97200"}],
        "fulfillment_types": ["Self-Pickup", "Delivery"],
        "delivery": {"radius_km": "12", "fee": "4.00", "free_above": "40.00"},
        "categories": [{"id": "legumes", "descriptor": {"fr": {"name": "Légumes"}, "en": {"name": "Vegetables"}}}],
        "items": [{"id": "christophine", "descriptor": {"fr": {"name": "Christophine"}, "en": {"name": "Chayote"}},
                   "category_ids": ["legumes"], "price": "2.80", "unit": "kg", "stock": 40,
                   "tags": ["local", "organic"]}],
    })
    row, items = provider_rows(merchant)
    profile = BppProviderProfile(provider_id=row.id, merchant_id="m1", siret="12345678900011", contact={},
                                 opening_hours=[{"days": ["mon", "tue", "wed", "thu", "fri"],
                                                 "opens": "07:30", "closes": "12:30"}])
    return catalog_json([(row, items)], "en", {row.id: profile})


def test_an_offer_carries_what_an_app_shows(net: Network) -> None:
    auth = net.session()
    txn, context = started(net, auth, category="legumes", near={"gps": "14.6056, -61.0694", "radius_km": "20"})
    catalog = {**example_callback("on_search")["message"]["catalog"], "providers": _bpp_catalog()["providers"]}
    url, body, headers = callback_request(net.peer.bpp_a, net.peer.url, context, "on_search",
                                          {"message": {"catalog": catalog}})
    assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200
    settle(net, auth, txn, 1)
    (offer,) = results(net, auth, txn)["offers"]

    shop = offer["provider"]
    assert (shop["id"], shop["name"], shop["city"], shop["city_name"]) == (
        "jardin-lamentin", "Creole Garden", "insee:97213", "Le Lamentin")
    assert [(loc["id"], loc["city"], loc["gps"]) for loc in shop["locations"]] == [
        ("bois-carre", "insee:97213", "14.6135, -60.9996"), ("grand-marche", "insee:97209", "14.6056, -61.0694")]
    assert shop["locations"][1]["address"] == "Grand Marché couvert, stand 14, 97200 Fort-de-France"
    assert shop["opening_hours"] == "Mon-Fri 07:30-12:30"
    assert {(t["code"], t["value"]) for t in shop["tags"] if t["group"] == "lakou:opening_hours"} == {
        (day, "07:30-12:30") for day in ("mon", "tue", "wed", "thu", "fri")}
    assert shop["delivery"] == {"radius_km": "12", "fee": "4.00", "free_above": "40.00"}

    goods = offer["item"]
    assert (goods["id"], goods["name"], goods["price"]) == ("christophine", "Chayote", {"currency": "EUR", "value": "2.80"})
    assert goods["category_ids"] == ["legumes"] and goods["categories"] == [{"id": "legumes", "name": "Vegetables"}]
    assert (goods["available"], goods["unit"], goods["unit_value"]) == (40, "kg", "1")
    assert [(t["code"], t["name"]) for t in goods["tags"]] == [("local", "Local produce"), ("organic", "Organic")]
    assert goods["fulfillment_types"] == ["pickup", "delivery"]
    assert goods["payment_types"] == ["on_fulfillment"]
    # The circle's centre is the market stall: distance 0 from the nearest location.
    assert offer["distance_km"] == 0.0


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------


def test_the_event_stream_sends_only_new_or_changed_offers(net: Network) -> None:
    auth = net.session()
    txn, context = started(net, auth, query="fruits", near=NEAR, ttl_seconds=3)
    a = net.peer.bpp_a
    answer(net, a, context, [provider("ferme", [item("ananas", "4.50"), item("banane", "2.00")], gps=["14.6, -61.0"])])

    def later() -> None:
        # The same two offers, one at a new price, and one new offer; then all of it again.
        again = [provider("ferme", [item("ananas", "4.50"), item("banane", "1.80"), item("mangue", "6.00")],
                          gps=["14.6, -61.0"])]
        answer(net, a, context, again)
        answer(net, a, context, again)

    threading.Timer(0.8, later).start()
    url = f"{net.bap_url}/api/v1/searches/{txn}/events"
    with net.client.stream("GET", url, headers=auth) as response:
        assert response.status_code == 200
        events = _read_events(response)
    assert [name for _, name, _ in events] == ["offers", "offers", "end"]
    assert [o["item"]["id"] for o in events[0][2]["offers"]] == ["ananas", "banane"]
    changed = events[1][2]["offers"]
    assert [(o["item"]["id"], o["item"]["price"]["value"]) for o in changed] == [("banane", "1.80"), ("mangue", "6.00")]
    assert changed[0]["distance_km"] == 0.0
    assert events[1][2]["total"] == 3 and events[2][2]["total"] == 3
    assert results(net, auth, txn)["responses"] == 3  # the repeat was received, and had nothing new

    # Reconnecting after the first event: only what changed since.
    with net.client.stream("GET", url, headers={**auth, "Last-Event-ID": events[0][0] or ""}) as again:
        replay = _read_events(again)
    assert [name for _, name, _ in replay] == ["offers", "end"]
    assert [o["item"]["id"] for o in replay[0][2]["offers"]] == ["banane", "mangue"]
    assert Decimal(replay[0][2]["offers"][0]["item"]["price"]["value"]) == Decimal("1.8")


# ---------------------------------------------------------------------------------------------
# Odd BPP answers
# ---------------------------------------------------------------------------------------------


def test_odd_prices_and_points_from_a_bpp_never_break_the_list() -> None:
    from bap.offers import flatten_catalog, sorted_offers, with_distance

    catalog = {"catalog": {"providers": [{
        "id": "p", "descriptor": {"name": "P"},
        "locations": [{"id": "l1", "gps": "not a point"}, {"id": "l2", "gps": "95.0, 10.0"}, "junk"],
        "items": [item("a", "abc"), item("b", "NaN"), item("c", "1e3"), item("d", None), item("e", "2.5"),
                  {"id": "f", "price": "7.00"}, "junk"],
    }]}}
    offers = with_distance(flatten_catalog("bpp", None, catalog), (14.6, -61.0))
    assert [o["item"]["id"] for o in sorted_offers(offers, "price")] == ["e", "c", "a", "b", "d", "f"]
    assert [o["item"]["id"] for o in sorted_offers(offers, "price", descending=True)] == ["c", "e", "a", "b", "d", "f"]
    # No usable point: no distance, and the offer still sorts (last).
    assert {o["distance_km"] for o in offers} == {None}
    assert len(sorted_offers(offers, "distance")) == 6
    assert flatten_catalog("bpp", None, {"catalog": "junk"}) == [] and flatten_catalog("bpp", None, None) == []
