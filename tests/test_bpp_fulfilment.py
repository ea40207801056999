"""Pickup and delivery: a shop's delivery zone and fee, quoted as Beckn breakup lines.

The demo catalogue's market gardener (Le Lamentin) delivers within 12 km for 4.00 EUR, free from
40.00 EUR of items; the fishmonger (Le Robert) within 8 km for 5.00 EUR, free from 60.00 EUR.
Real BPP, registry and BAP (tests/test_bpp_service.py); every callback is checked against
transaction.yaml by `Network.call`.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bpp.catalogue import DEMO_CATALOGUE, load_catalogue
from bpp.tables import BppOrder
from test_bpp_merchant_api import Merchant, profile
from test_bpp_service import (  # noqa: F401 (fixtures)
    BILLING, PAY_AT_PICKUP, Network, demo_price, found_items, net, order, search, shared, spec,
)

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

FORT_DE_FRANCE = "14.6025, -61.0679"  # 7.5 km from the Lamentin garden, 14 km from Le Robert
SAINTE_MARIE = "14.7848, -60.9913"  # 19 km from the Lamentin garden


def delivery(gps: str | None, address: str = "12 rue Victor Hugo, 97200 Fort-de-France") -> list[dict[str, Any]]:
    location: dict[str, Any] = {"address": address} | ({"gps": gps} if gps else {})
    return [{"type": "Delivery", "stops": [{"type": "end", "location": location}]}]


def quote(callback: dict[str, Any]) -> dict[str, Any]:
    assert "error" not in callback, callback.get("error")
    return callback["message"]["order"]["quote"]


def test_delivery_inside_the_zone_adds_the_fee_as_its_own_breakup_line(shared: Network) -> None:
    message = order("jardin-lamentin", ("christophine-kg", 2), fulfillments=delivery(FORT_DE_FRANCE))
    result = shared.call("select", message)["message"]["order"]
    items = demo_price("christophine-kg") * 2
    assert items < Decimal("40.00")
    *lines, fee = result["quote"]["breakup"]
    assert [line["item"]["id"] for line in lines] == ["christophine-kg"]
    assert fee == {"title": "Frais de livraison", "price": {"currency": "EUR", "value": "4.00"}}
    assert Decimal(result["quote"]["price"]["value"]) == items + Decimal("4.00")
    assert result["payments"][0]["params"]["amount"] == result["quote"]["price"]["value"]
    assert result["fulfillments"][0]["type"] == "Delivery"
    assert result["fulfillments"][0]["stops"][-1]["location"]["gps"] == FORT_DE_FRANCE


@pytest.mark.parametrize("lang, title", [("en", "Delivery fee"), ("es", "Gastos de envío"), ("de", "Liefergebühr")])
def test_the_fee_line_speaks_the_shoppers_language(shared: Network, lang: str, title: str) -> None:
    message = order("jardin-lamentin", ("christophine-kg", 1), fulfillments=delivery(FORT_DE_FRANCE))
    message["order"]["tags"] = [{"descriptor": {"code": "search"},
                                 "list": [{"descriptor": {"code": "lang"}, "value": lang}]}]
    assert quote(shared.call("select", message))["breakup"][-1]["title"] == title


def test_delivery_is_free_from_the_threshold(shared: Network) -> None:
    unit = demo_price("christophine-kg")
    count = int(Decimal("40.00") / unit) + 1  # just over 40.00 EUR of items
    message = order("jardin-lamentin", ("christophine-kg", count), fulfillments=delivery(FORT_DE_FRANCE))
    result = quote(shared.call("select", message))
    assert result["breakup"][-1] == {"title": "Frais de livraison", "price": {"currency": "EUR", "value": "0.00"}}
    assert Decimal(result["price"]["value"]) == unit * count >= Decimal("40.00")


def test_pickup_has_no_fee_line(shared: Network) -> None:
    message = order("jardin-lamentin", ("christophine-kg", 2), fulfillments=[{"type": "Self-Pickup"}])
    result = quote(shared.call("select", message))
    assert [line["item"]["id"] for line in result["breakup"]] == ["christophine-kg"]
    assert Decimal(result["price"]["value"]) == demo_price("christophine-kg") * 2


def test_delivery_outside_the_zone_is_30008_at_select_and_init(shared: Network) -> None:
    far = order("jardin-lamentin", ("christophine-kg", 1), fulfillments=delivery(SAINTE_MARIE))
    error = shared.call("select", far)["error"]
    assert error["code"] == "30008"
    assert error["paths"] == "message.order.fulfillments[0].stops.location.gps"
    assert "within 12 km" in error["message"] and "19." in error["message"]
    far_fish = order("pecherie-robert", ("thon-jaune-kg", 1), billing=BILLING, fulfillments=delivery(FORT_DE_FRANCE))
    assert shared.call("init", far_fish)["error"]["code"] == "30008"


def test_init_needs_the_gps_of_the_drop_off_when_the_shop_has_a_zone(shared: Network) -> None:
    message = order("jardin-lamentin", ("christophine-kg", 1), billing=BILLING, fulfillments=delivery(None))
    error = shared.call("init", message)["error"]
    assert error["code"] == "30000" and error["paths"] == "message.order.fulfillments[0].stops.location.gps"
    # select may quote before the address is known: the fee is the same anywhere in the zone.
    quoted = quote(shared.call("select", order("jardin-lamentin", ("christophine-kg", 1),
                                               fulfillments=[{"type": "Delivery"}])))
    assert quoted["breakup"][-1]["price"]["value"] == "4.00"


def test_on_search_shows_the_delivery_terms_on_the_fulfillment(shared: Network) -> None:
    providers = {p["id"]: p for p in search(shared)["message"]["catalog"]["providers"]}
    (garden,) = [f for f in providers["jardin-lamentin"]["fulfillments"] if f["type"] == "Delivery"]
    assert garden["tags"] == [{"descriptor": {"code": "lakou:delivery"}, "list": [
        {"descriptor": {"code": "radius_km"}, "value": "12"},
        {"descriptor": {"code": "fee"}, "value": "4.00"},
        {"descriptor": {"code": "free_above"}, "value": "40.00"}]}]
    assert all("tags" not in f for f in providers["distillerie-sainte-marie"]["fulfillments"])


def test_a_confirmed_delivery_order_totals_items_and_fee(net: Network) -> None:
    message = order("pecherie-robert", ("thon-jaune-kg", 1), billing=BILLING, payments=PAY_AT_PICKUP,
                    fulfillments=delivery("14.6790, -60.9420", "Rue Schoelcher, 97231 Le Robert"))
    initialised = net.call("init", message)["message"]["order"]
    expected = demo_price("thon-jaune-kg") + Decimal("5.00")
    assert Decimal(initialised["quote"]["price"]["value"]) == expected
    assert initialised["payments"][0]["params"]["amount"] == f"{expected:.2f}"
    confirmed = net.call("confirm", message)["message"]["order"]
    assert Decimal(confirmed["quote"]["price"]["value"]) == expected
    assert confirmed["quote"]["breakup"][-1]["title"] == "Frais de livraison"
    view = net.order_view(confirmed["id"])
    assert view.status_code == 200 and Decimal(view.json()["total"]) == expected


def test_merchants_set_their_delivery_zone_and_fee(net: Network) -> None:
    merchant = Merchant(net, "Panier de Léa")
    terms = {"radius_km": "5", "fee": "2.50"}
    body = profile("panier-lea", fulfillment_types=["Self-Pickup", "Delivery"], delivery=terms)
    created = merchant.request("POST", "/providers", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["delivery"] == terms
    item = {"descriptor": {"fr": {"name": "Giraumon"}}, "price": "3.00", "unit": "kilogram", "stock": 10}
    assert merchant.request("PUT", "/providers/panier-lea/items/giraumon-kg", json=item).status_code == 201

    near = net.call("select", order("panier-lea", ("giraumon-kg", 2), fulfillments=delivery("14.6135, -60.9996")))
    assert quote(near)["price"]["value"] == "8.50"
    far = net.call("select", order("panier-lea", ("giraumon-kg", 2), fulfillments=delivery(FORT_DE_FRANCE)))
    assert far["error"]["code"] == "30008"

    updated = merchant.request("PUT", "/providers/panier-lea",
                               json=profile(fulfillment_types=["Self-Pickup", "Delivery"],
                                            delivery={"radius_km": "10", "fee": "2.50", "free_above": "5.00"}))
    assert updated.status_code == 200, updated.text
    free = net.call("select", order("panier-lea", ("giraumon-kg", 2), fulfillments=delivery(FORT_DE_FRANCE)))
    assert quote(free)["price"]["value"] == "6.00"

    for bad in ({"radius_km": "0", "fee": "2.50"}, {"radius_km": "5", "fee": "2.5"}, {"radius_km": "5"}):
        response = merchant.request("PUT", "/providers/panier-lea",
                                    json=profile(fulfillment_types=["Delivery"], delivery=bad))
        assert response.status_code == 422, response.text
    no_type = merchant.request("PUT", "/providers/panier-lea", json=profile(delivery=terms))
    assert no_type.status_code == 422 and "'Delivery' is not in fulfillment_types" in no_type.text


def test_a_catalogue_file_with_delivery_terms_but_no_delivery_is_refused(tmp_path: Path) -> None:
    catalogue = json.loads(DEMO_CATALOGUE.read_text(encoding="utf-8"))
    catalogue["providers"][0]["fulfillment_types"] = ["Self-Pickup"]
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(catalogue), encoding="utf-8")
    with pytest.raises(ValueError, match="'Delivery' is not in fulfillment_types"):
        load_catalogue(str(path))


# ------------------------------------------------------------------------------ item tags


@pytest.mark.parametrize("lang, origin, local, label, organic", [
    ("fr", "Origine", "Produit péi", "Label", "Bio"),
    ("en", "Origin", "Local produce", "Label", "Organic"),
    ("es", "Origen", "Producto local", "Sello", "Ecológico"),
    ("de", "Herkunft", "Regionales Produkt", "Siegel", "Bio"),
])
def test_on_search_shows_local_and_organic_tags_in_four_languages(
        shared: Network, lang: str, origin: str, local: str, label: str, organic: str) -> None:
    items = found_items(search(shared, lang=lang))
    assert items["christophine-kg"]["tags"] == [
        {"descriptor": {"code": "lakou:origin", "name": origin},
         "list": [{"descriptor": {"code": "local", "name": local}, "value": "true"}]},
        {"descriptor": {"code": "lakou:label", "name": label},
         "list": [{"descriptor": {"code": "organic", "name": organic}, "value": "true"}]},
    ]
    assert [g["descriptor"]["code"] for g in items["thon-jaune-kg"]["tags"]] == ["lakou:origin"]
    assert "tags" not in items["baguette"]


def test_a_search_for_bio_finds_the_organic_items(shared: Network) -> None:
    found = found_items(search(shared, {"item": {"descriptor": {"name": "bio"}}}))
    assert found and all(any(tag["descriptor"]["code"] == "organic" for group in item["tags"] for tag in group["list"])
                         for item in found.values())
    assert "christophine-kg" in found and "thon-jaune-kg" not in found


def test_merchants_tag_their_items(net: Network) -> None:
    merchant = Merchant(net, "Panier de Léa")
    assert merchant.request("POST", "/providers", json=profile("panier-lea")).status_code == 201
    item = {"descriptor": {"fr": {"name": "Giraumon"}, "en": {"name": "Pumpkin"}}, "price": "3.00",
            "unit": "kilogram", "stock": 10, "tags": ["organic", "local"]}
    created = merchant.request("PUT", "/providers/panier-lea/items/giraumon-kg", json=item)
    assert created.status_code == 201 and created.json()["tags"] == ["organic", "local"]
    shown = found_items(search(net, {"provider": {"id": "panier-lea"}}, lang="en"))["giraumon-kg"]
    assert [group["list"][0]["descriptor"]["name"] for group in shown["tags"]] == ["Organic", "Local produce"]

    untagged = merchant.request("PUT", "/providers/panier-lea/items/giraumon-kg", json=item | {"tags": []})
    assert untagged.status_code == 200 and untagged.json()["tags"] == []
    assert "tags" not in found_items(search(net, {"provider": {"id": "panier-lea"}}))["giraumon-kg"]
    for bad in (["halal"], ["local", "local"]):
        response = merchant.request("PUT", "/providers/panier-lea/items/giraumon-kg", json=item | {"tags": bad})
        assert response.status_code == 422, response.text


# ------------------------------------------------------------------------------ several locations

# The demo market gardener sells at its garden in Le Lamentin (the main shop) and at a stall of
# the Grand Marché in Fort-de-France: a buyer picks where to collect.
GARDEN, STALL = "jardin-lamentin-bois-carre", "jardin-lamentin-grand-marche"


def pickup_at(location_id: str) -> list[dict[str, Any]]:
    return [{"type": "Self-Pickup", "stops": [{"type": "start", "location": {"id": location_id}}]}]


def start_stop(order_json: dict[str, Any]) -> dict[str, Any]:
    (start,) = [stop for stop in order_json["fulfillments"][0]["stops"] if stop["type"] == "start"]
    return start


def test_on_search_offers_pickup_at_every_location_of_a_provider(shared: Network) -> None:
    providers = {p["id"]: p for p in search(shared)["message"]["catalog"]["providers"]}
    garden = providers["jardin-lamentin"]
    assert [location["id"] for location in garden["locations"]] == [GARDEN, STALL]
    stall = garden["locations"][1]
    assert stall["city"] == {"code": "insee:97209", "name": "Fort-de-France"} and stall["area_code"] == "97200"
    assert stall["country"]["code"] == "MTQ"
    fulfillments = {f["type"]: f for f in garden["fulfillments"]}
    # One start stop per location, each named by the location's id: what a BAP sends back to choose.
    assert [(stop["id"], stop["type"], stop["location"]) for stop in fulfillments["Self-Pickup"]["stops"]] == [
        (GARDEN, "start", garden["locations"][0]), (STALL, "start", stall)]
    assert "stops" not in fulfillments["Delivery"]  # a delivery leaves from the main shop
    for item in garden["items"]:
        assert item["location_ids"] == [GARDEN, STALL]
    # A one-shop provider is unchanged: one location, one pickup stop.
    robert = providers["pecherie-robert"]
    assert len(robert["locations"]) == 1
    assert [stop["id"] for stop in robert["fulfillments"][0]["stops"]] == ["pecherie-robert-front-de-mer"]


def test_pickup_at_the_second_location_through_select_init_confirm_status_and_track(net: Network) -> None:
    transaction_id = str(uuid.uuid4())
    # select and confirm name the stop; init names the provider's location: both ways work.
    selected = net.call("select", order("jardin-lamentin", ("giraumon-kg", 1), fulfillments=pickup_at(STALL)),
                        transaction_id=transaction_id)["message"]["order"]
    assert start_stop(selected)["location"]["id"] == STALL
    assert start_stop(selected)["location"]["address"].startswith("Grand Marché couvert")
    assert selected["provider"]["locations"] == [{"id": STALL}]
    message = order("jardin-lamentin", ("giraumon-kg", 1), billing=BILLING, payments=PAY_AT_PICKUP,
                    fulfillments=[{"type": "Self-Pickup"}])
    message["order"]["provider"]["locations"] = [{"id": STALL}]
    initialised = net.call("init", message, transaction_id=transaction_id)["message"]["order"]
    assert start_stop(initialised)["location"]["id"] == STALL
    assert initialised["provider"]["locations"] == [{"id": STALL}]
    assert [line["item"]["id"] for line in initialised["quote"]["breakup"]] == ["giraumon-kg"]  # no fee for a pickup

    confirm = order("jardin-lamentin", ("giraumon-kg", 1), billing=BILLING, payments=PAY_AT_PICKUP,
                    fulfillments=pickup_at(STALL))
    placed = net.call("confirm", confirm, transaction_id=transaction_id)["message"]["order"]
    assert start_stop(placed)["id"] == STALL and start_stop(placed)["location"]["city"]["name"] == "Fort-de-France"
    assert placed["provider"]["locations"] == [{"id": STALL}]
    status = net.call("status", {"order_id": placed["id"]})["message"]["order"]
    assert start_stop(status)["location"]["id"] == STALL and status["provider"]["locations"] == [{"id": STALL}]
    tracking = net.call("track", {"order_id": placed["id"]})["message"]["tracking"]
    assert tracking["location"]["id"] == STALL  # where to collect it

    # Without a choice, the pickup is at the main shop, as before.
    default = net.call("select", order("jardin-lamentin", ("giraumon-kg", 1),
                                       fulfillments=[{"type": "Self-Pickup"}]))["message"]["order"]
    assert start_stop(default)["location"]["id"] == GARDEN and default["provider"]["locations"] == [{"id": GARDEN}]


def test_a_delivery_leaves_from_the_main_shop_whatever_location_is_named(shared: Network) -> None:
    message = order("jardin-lamentin", ("christophine-kg", 1), fulfillments=delivery(FORT_DE_FRANCE))
    message["order"]["provider"]["locations"] = [{"id": STALL}]
    result = shared.call("select", message)["message"]["order"]
    # The zone and fee are the main shop's (12 km from Le Lamentin), not the Fort-de-France stall's.
    assert start_stop(result)["location"]["id"] == GARDEN
    assert result["quote"]["breakup"][-1]["price"]["value"] == "4.00"
    far = order("jardin-lamentin", ("christophine-kg", 1), fulfillments=delivery(SAINTE_MARIE))
    far["order"]["provider"]["locations"] = [{"id": STALL}]
    assert shared.call("select", far)["error"]["code"] == "30008"


def test_an_unknown_pickup_location_is_30002_with_its_path_and_takes_no_stock(net: Network) -> None:
    by_stop = net.call("select", order("jardin-lamentin", ("giraumon-kg", 1), fulfillments=pickup_at("marche-trinite")))
    assert by_stop["error"]["code"] == "30002"
    assert by_stop["error"]["paths"] == "message.order.fulfillments[0].stops[0].location.id"
    assert "marche-trinite" in by_stop["error"]["message"] and STALL in by_stop["error"]["message"]

    message = order("jardin-lamentin", ("giraumon-kg", 1), billing=BILLING, payments=PAY_AT_PICKUP)
    message["order"]["provider"]["locations"] = [{"id": "pecherie-robert-front-de-mer"}]  # another provider's
    by_provider = net.call("init", message)
    assert by_provider["error"]["code"] == "30002"
    assert by_provider["error"]["paths"] == "message.order.provider.locations[0].id"

    before = net.stock("giraumon-kg")
    refused = net.call("confirm", order("jardin-lamentin", ("giraumon-kg", 1), billing=BILLING,
                                        payments=PAY_AT_PICKUP, fulfillments=pickup_at("marche-trinite")))
    assert refused["error"]["code"] == "30002" and "message" not in refused
    assert net.stock("giraumon-kg") == before
    assert net.query(select(func.count()).select_from(BppOrder))[0][0] == 0
