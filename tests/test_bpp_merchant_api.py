"""The merchant API over real HTTP: accounts and keys, provider profiles, catalogue changes seen by
a signed Beckn search at once, and isolation between merchants.

The network (registry, recording BAP, BPP with the demo catalogue) is the one of
tests/test_bpp_service.py; every on_search it receives is checked there against the BPP's key and
the official 1.1.1 transaction.yaml.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bpp.merchant_api import siret_ok
from test_bpp_service import ADMIN_TOKEN, Network, found_items, net, search, shared, spec  # noqa: F401

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

SIRET_A, SIRET_B = "94580730215736", "86039547620075"  # valid Luhn check digits


def profile(provider_id: str | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "descriptor": {"fr": {"name": "Le Panier de Mamie Léa", "short_desc": "Fruits et légumes péi"},
                       "en": {"name": "Granny Léa's basket"}},
        "siret": SIRET_A,
        "address": "Marché couvert, rue Schoelcher",
        "commune": {"code": "insee:97213", "name": "Le Lamentin"},
        "postal_code": "97232",
        "gps": "14.6097, -60.9967",
        "opening_hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "opens": "07:00", "closes": "13:00"},
                          {"days": ["sat"], "opens": "06:30", "closes": "12:00"}],
        "contact": {"phone": "+596 596 12 34 56", "email": "contact@panier-lea.mq", "url": "https://panier-lea.mq"},
    }
    if provider_id is not None:
        body["id"] = provider_id
    return body | changes


def item(name_fr: str, name_en: str, **changes: Any) -> dict[str, Any]:
    return {
        "descriptor": {"fr": {"name": name_fr}, "en": {"name": name_en}, "es": {"name": name_en},
                       "de": {"name": name_en}},
        "price": "4.50", "unit": "kilogram", "stock": 12,
        "images": ["https://img.lakou.example/produit.jpg"],
    } | changes


class Merchant:
    """A merchant's HTTP client: its API key on every request."""

    def __init__(self, net: Network, name: str, *, header: str = "bearer") -> None:
        created = net.http.post(f"{net.bpp}/api/v1/admin/merchants", json={"name": name},
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert created.status_code == 201, created.text
        self.id, self.key_id, self.api_key = created.json()["id"], created.json()["key_id"], created.json()["api_key"]
        self.net = net
        self.header = header

    def request(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        key = key or self.api_key
        headers = {"Authorization": f"Bearer {key}"} if self.header == "bearer" else {"X-API-Key": key}
        return self.net.http.request(method, f"{self.net.bpp}/api/v1/merchant{path}", headers=headers, **kwargs)


def fields(response: httpx.Response) -> set[str]:
    """The body fields a 422 answer names."""
    assert response.status_code == 422, response.text
    return {str(part) for error in response.json()["detail"] for part in error["loc"]}


def on_search_item(net: Network, query: str, lang: str = "fr") -> dict[str, Any] | None:
    return next(iter(found_items(search(net, {"item": {"descriptor": {"name": query}}}, lang=lang)).values()), None)


# ------------------------------------------------------------------------------ the whole flow


def test_merchants_build_catalogues_that_search_sees_at_once_and_never_see_each_other(net: Network) -> None:
    lea, rene = Merchant(net, "Le Panier de Mamie Léa"), Merchant(net, "Poissonnerie René", header="x-api-key")

    created = lea.request("POST", "/providers", json=profile("panier-lea"))
    assert created.status_code == 201, created.text
    assert created.json()["siret"] == SIRET_A and created.json()["opening_hours"][1]["days"] == ["sat"]
    assert rene.request("POST", "/providers", json=profile(
        "poissonnerie-rene", siret=SIRET_B, descriptor={"fr": {"name": "Poissonnerie René"}},
        commune={"code": "insee:97209", "name": "Fort-de-France"}, postal_code="97200")).status_code == 201
    # Provider ids are public and unique on the BPP: taken ones (a merchant's or the demo's) are refused.
    assert rene.request("POST", "/providers", json=profile("panier-lea")).status_code == 409
    assert lea.request("POST", "/providers", json=profile("jardin-lamentin")).status_code == 409

    assert lea.request("PUT", "/providers/panier-lea/categories/fruits", json={
        "descriptor": {"fr": {"name": "Fruits"}, "en": {"name": "Fruit"}}}).status_code == 200
    put = lea.request("PUT", "/providers/panier-lea/items/corossol-kg",
                      json=item("Corossol", "Soursop", category_ids=["fruits"]))
    assert put.status_code == 201, put.text
    assert rene.request("PUT", "/providers/poissonnerie-rene/items/vivaneau-kg",
                        json=item("Vivaneau", "Red snapper", price="18.00", images=[])).status_code == 201

    # A signed Beckn search finds the new item at once, in the shopper's language, with its image.
    found = on_search_item(net, "soursop", lang="en")
    assert found is not None and found["id"] == "corossol-kg"
    assert found["descriptor"]["name"] == "Soursop"
    assert found["descriptor"]["images"] == [{"url": "https://img.lakou.example/produit.jpg"}]
    assert found["price"] == {"currency": "EUR", "value": "4.50"}
    assert found["quantity"]["available"]["count"] == 12
    assert on_search_item(net, "vivaneau")["price"]["value"] == "18.00"  # type: ignore[index]
    # The category's name is searchable too, and a rename is seen by the next search.
    at_lea = {"provider": {"id": "panier-lea"}}
    by_category = search(net, at_lea | {"category": {"descriptor": {"name": "fruit"}}}, lang="en")
    assert set(found_items(by_category)) == {"corossol-kg"}
    lea.request("PUT", "/providers/panier-lea/categories/fruits", json={"descriptor": {"fr": {"name": "Fruits péi"}}})
    assert set(found_items(search(net, at_lea | {"descriptor": {"name": "fruits pei"}}))) == {"corossol-kg"}

    # Replacing an item (PUT again) answers 200 and search shows the new texts.
    replaced = lea.request("PUT", "/providers/panier-lea/items/corossol-kg",
                           json=item("Corossol péi", "Local soursop", category_ids=["fruits"]))
    assert replaced.status_code == 200 and replaced.json()["descriptor"]["fr"]["name"] == "Corossol péi"
    assert on_search_item(net, "local soursop", lang="en")["descriptor"]["name"] == "Local soursop"  # type: ignore[index]

    # Price and stock changes are in the next on_search.
    patched = lea.request("PATCH", "/providers/panier-lea/items/corossol-kg", json={"price": "3.90", "stock": 0})
    assert patched.status_code == 200 and patched.json()["price"] == "3.90" and patched.json()["stock"] == 0
    found = on_search_item(net, "corossol")
    assert found is not None and found["price"]["value"] == "3.90" and found["quantity"]["available"]["count"] == 0

    # A profile change (name, commune) is seen by search too.
    moved = lea.request("PUT", "/providers/panier-lea", json=profile(
        descriptor={"fr": {"name": "Le Panier de Léa"}}, commune={"code": "insee:97229", "name": "Le Robert"},
        postal_code="97231"))
    assert moved.status_code == 200, moved.text
    answer = search(net, {"item": {"descriptor": {"name": "corossol"}}}, city="insee:97229")
    assert [p["descriptor"]["name"] for p in answer["message"]["catalog"]["providers"]] == ["Le Panier de Léa"]

    # Isolation: René can neither read nor change Léa's shop, and learns nothing (404, as for no shop).
    for method, path, body in [
        ("GET", "/providers/panier-lea", None),
        ("PUT", "/providers/panier-lea", profile()),
        ("GET", "/providers/panier-lea/items", None),
        ("GET", "/providers/panier-lea/items/corossol-kg", None),
        ("PUT", "/providers/panier-lea/items/corossol-kg", item("Volé", "Stolen")),
        ("PATCH", "/providers/panier-lea/items/corossol-kg", {"stock": 999}),
        ("DELETE", "/providers/panier-lea/items/corossol-kg", None),
        ("GET", "/providers/panier-lea/categories", None),
        ("PUT", "/providers/panier-lea/categories/vole", {"descriptor": {"fr": {"name": "Volé"}}}),
        ("DELETE", "/providers/panier-lea/categories/fruits", None),
        ("GET", "/providers/jardin-lamentin", None),  # the demo's shops are the operator's
        ("PATCH", "/providers/jardin-lamentin/items/christophine-kg", {"stock": 0}),
    ]:
        answer_ = rene.request(method, path, json=body)
        assert answer_.status_code == 404, (method, path, answer_.text)
        unknown = rene.request(method, path.replace("panier-lea", "no-such-shop").replace("jardin-lamentin", "nope"),
                               json=body)
        assert unknown.status_code == 404 and unknown.json()["detail"].split()[0] == answer_.json()["detail"].split()[0]
    assert [p["id"] for p in rene.request("GET", "/providers").json()] == ["poissonnerie-rene"]
    assert rene.request("GET", "/me").json()["providers"] == ["poissonnerie-rene"]
    mine = lea.request("GET", "/providers/panier-lea/items/corossol-kg").json()
    assert mine["stock"] == 0 and mine["descriptor"]["fr"]["name"] == "Corossol péi"
    assert len(lea.request("GET", "/providers/panier-lea/categories").json()) == 1

    # A used category cannot be deleted; a deleted item leaves search at once.
    assert lea.request("DELETE", "/providers/panier-lea/categories/fruits").status_code == 409
    assert lea.request("DELETE", "/providers/panier-lea/items/corossol-kg").status_code == 204
    assert on_search_item(net, "corossol") is None
    assert lea.request("DELETE", "/providers/panier-lea/categories/fruits").status_code == 204


# ------------------------------------------------------------------------------ keys


def test_keys_are_required_rotated_and_revoked(shared: Network) -> None:
    url = f"{shared.bpp}/api/v1/merchant/me"
    for headers in [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "lkm_0123456789abcdef_" + "a" * 43},
                    {"Authorization": f"Bearer {ADMIN_TOKEN}"}]:
        refused = shared.http.get(url, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
    merchant = Merchant(shared, "Boulangerie Bèlè")
    assert merchant.request("GET", "/me").json() == {"id": merchant.id, "name": "Boulangerie Bèlè", "providers": []}
    merchant.header = "x-api-key"
    assert merchant.request("GET", "/me").status_code == 200
    # Only the operator makes accounts and keys.
    assert shared.http.post(f"{shared.bpp}/api/v1/admin/merchants", json={"name": "x"},
                            headers={"Authorization": f"Bearer {merchant.api_key}"}).status_code == 401

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    keys_url = f"{shared.bpp}/api/v1/admin/merchants/{merchant.id}/keys"
    rotated = shared.http.post(keys_url, headers=admin)
    assert rotated.status_code == 201
    new_key = rotated.json()["api_key"]
    assert new_key != merchant.api_key and merchant.request("GET", "/me", key=new_key).status_code == 200
    assert {k["key_id"] for k in shared.http.get(keys_url, headers=admin).json()} == {
        merchant.key_id, rotated.json()["key_id"]}
    # The secret is never listed: only ids.
    assert merchant.api_key.rsplit("_", 1)[1] not in shared.http.get(keys_url, headers=admin).text
    assert shared.http.delete(f"{keys_url}/{merchant.key_id}", headers=admin).status_code == 204
    assert merchant.request("GET", "/me").status_code == 401  # revoked: refused at once
    assert merchant.request("GET", "/me", key=new_key).status_code == 200
    assert shared.http.delete(f"{keys_url}/{merchant.key_id}", headers=admin).status_code == 404
    # Another merchant's key id cannot be revoked through this merchant.
    other = Merchant(shared, "Autre")
    assert shared.http.delete(f"{keys_url}/{other.key_id}", headers=admin).status_code == 404
    assert other.request("GET", "/me").status_code == 200


# ------------------------------------------------------------------------------ validation


def test_siret_check_digit() -> None:
    assert siret_ok("73282932000074") and siret_ok(SIRET_A)
    assert not siret_ok("73282932000075") and not siret_ok("7328293200007") and not siret_ok("7328293200007a")
    # La Poste's establishments may fail Luhn when their digits add up to a multiple of 5; others may not.
    assert siret_ok("35600000000048") and siret_ok("35600000010000")
    assert not siret_ok("35600000010001") and not siret_ok("12300000010000")


@pytest.mark.parametrize("changes, field", [
    ({"siret": "73282932000075"}, "siret"),
    ({"siret": "1234"}, "siret"),
    ({"commune": {"code": "insee:75056", "name": "Paris"}}, "commune"),
    ({"postal_code": "75001"}, "postal_code"),
    ({"gps": "north of the market"}, "gps"),
    ({"descriptor": {"en": {"name": "No French"}}}, "descriptor"),
    ({"descriptor": {"fr": {"name": "Nom"}, "it": {"name": "Nome"}}}, "descriptor"),
    ({"opening_hours": [{"days": ["mon"], "opens": "18:00", "closes": "08:00"}]}, "opening_hours"),
    ({"opening_hours": [{"days": ["lundi"], "opens": "08:00", "closes": "12:00"}]}, "opening_hours"),
    ({"contact": {}}, "contact"),
    ({"contact": {"phone": "+596596123456", "url": "http://insecure.example"}}, "contact"),
    ({"fulfillment_types": ["Teleport"]}, "fulfillment_types"),
    ({"id": "Not An Id"}, "id"),
])
def test_bad_profiles_are_refused_naming_the_field(shared: Network, changes: dict, field: str) -> None:
    merchant = Merchant(shared, "Validation")
    body = profile(f"valid-{abs(hash(field)) % 10**8}") | changes
    assert field in fields(merchant.request("POST", "/providers", json=body))


@pytest.mark.parametrize("changes, field", [
    ({"price": "4.5"}, "price"),
    ({"price": "4,50"}, "price"),
    ({"price": 4.5}, "price"),
    ({"price": "-1.00"}, "price"),
    ({"stock": -1}, "stock"),
    ({"currency": "USD"}, "currency"),
    ({"images": ["http://img.example/a.jpg"]}, "images"),
    ({"images": ["javascript:alert(1)"]}, "images"),
    ({"descriptor": {"en": {"name": "Only English"}}}, "descriptor"),
    ({"unit": ""}, "unit"),
    ({"category_ids": ["not-created"]}, "category_ids"),
])
def test_bad_items_are_refused_naming_the_field(shared: Network, changes: dict, field: str) -> None:
    merchant = Merchant(shared, "Validation")
    provider_id = f"items-{merchant.id.removeprefix('mch_')}"
    assert merchant.request("POST", "/providers", json=profile(provider_id)).status_code == 201
    path = f"/providers/{provider_id}/items/ananas"
    assert field in fields(merchant.request("PUT", path, json=item("Ananas", "Pineapple") | changes))
    assert merchant.request("GET", f"/providers/{provider_id}/items").json() == []


def test_bad_price_and_stock_updates_are_refused(shared: Network) -> None:
    merchant = Merchant(shared, "Validation")
    provider_id = f"patch-{merchant.id.removeprefix('mch_')}"
    merchant.request("POST", "/providers", json=profile(provider_id))
    path = f"/providers/{provider_id}/items/ananas"
    assert merchant.request("PUT", path, json=item("Ananas", "Pineapple")).status_code == 201
    assert "price" in fields(merchant.request("PATCH", path, json={"price": "4.999"}))
    assert "stock" in fields(merchant.request("PATCH", path, json={"stock": -3}))
    assert merchant.request("PATCH", path, json={}).status_code == 422
    broken = shared.http.patch(f"{shared.bpp}/api/v1/merchant{path}", content=b"{not json",
                               headers={"Authorization": f"Bearer {merchant.api_key}",
                                        "Content-Type": "application/json"})
    assert broken.status_code == 422
    unchanged = merchant.request("GET", path).json()
    assert unchanged["price"] == "4.50" and unchanged["stock"] == 12
    assert merchant.request("PATCH", f"/providers/{provider_id}/items/nothing", json={"stock": 1}).status_code == 404


# ------------------------------------------------------------------------------ locations, hours, contact

MARKET_STALL = {"id": "panier-lea-marche", "address": "Grand Marché couvert, stand 3, rue Isambert",
                "commune": {"code": "insee:97209", "name": "Fort-de-France"}, "postal_code": "97200",
                "gps": "14.6056, -61.0694"}


def test_a_merchants_other_locations_hours_and_contact_are_in_on_search(net: Network) -> None:
    lea = Merchant(net, "Le Panier de Mamie Léa")
    created = lea.request("POST", "/providers", json=profile("panier-lea", other_locations=[MARKET_STALL]))
    assert created.status_code == 201, created.text
    assert created.json()["other_locations"] == [MARKET_STALL]
    assert lea.request("GET", "/providers/panier-lea").json()["other_locations"] == [MARKET_STALL]
    assert lea.request("PUT", "/providers/panier-lea/items/corossol-kg",
                       json=item("Corossol", "Soursop")).status_code == 201

    at_lea = {"provider": {"id": "panier-lea"}}
    (shown,) = search(net, at_lea)["message"]["catalog"]["providers"]  # checked against transaction.yaml
    assert [location["id"] for location in shown["locations"]] == ["panier-lea-shop", "panier-lea-marche"]
    assert shown["locations"][1]["address"] == MARKET_STALL["address"]
    assert shown["locations"][1]["city"] == MARKET_STALL["commune"] and shown["locations"][1]["area_code"] == "97200"
    (pickup,) = shown["fulfillments"]
    assert [stop["location"]["id"] for stop in pickup["stops"]] == ["panier-lea-shop", "panier-lea-marche"]
    assert shown["items"][0]["location_ids"] == ["panier-lea-shop", "panier-lea-marche"]

    # Opening hours: a label for people, ISO weekdays in Time.days, and a TagGroup for programs.
    assert shown["time"] == {"label": "lun.-ven. 07:00-13:00 · sam. 06:30-12:00", "days": "1,2,3,4,5,6"}
    (hours,) = shown["tags"]
    assert hours["descriptor"] == {"code": "lakou:opening_hours", "name": "Horaires d'ouverture"}
    assert [(tag["descriptor"]["code"], tag["value"]) for tag in hours["list"]] == [
        ("mon", "07:00-13:00"), ("tue", "07:00-13:00"), ("wed", "07:00-13:00"), ("thu", "07:00-13:00"),
        ("fri", "07:00-13:00"), ("sat", "06:30-12:00")]
    # The business contact the merchant published, on the fulfilment and each pickup stop.
    contact = {"phone": "+596596123456", "email": "contact@panier-lea.mq"}
    assert pickup["contact"] == contact and all(stop["contact"] == contact for stop in pickup["stops"])
    english = search(net, at_lea, lang="en")["message"]["catalog"]["providers"][0]
    assert english["time"]["label"] == "Mon-Fri 07:00-13:00 · Sat 06:30-12:00"
    assert english["tags"][0]["descriptor"]["name"] == "Opening hours"

    # A buyer picks the market stall; an unknown location is 30002.
    message = {"order": {"provider": {"id": "panier-lea", "locations": [{"id": "panier-lea-marche"}]},
                         "items": [{"id": "corossol-kg", "quantity": {"selected": {"count": 1}}}]}}
    selected = net.call("select", message)["message"]["order"]
    assert selected["fulfillments"][0]["stops"][0]["location"]["city"]["name"] == "Fort-de-France"
    message["order"]["provider"]["locations"] = [{"id": "panier-lea-trinite"}]
    assert net.call("select", message)["error"]["code"] == "30002"

    # Split hours, no more stall: the next search shows them; the demo's shops (no profile) show none.
    changed = lea.request("PUT", "/providers/panier-lea", json=profile(opening_hours=[
        {"days": ["mon", "wed"], "opens": "08:00", "closes": "12:00"},
        {"days": ["mon"], "opens": "14:00", "closes": "17:30"}]))
    assert changed.status_code == 200, changed.text
    assert changed.json()["other_locations"] == []
    (shown,) = search(net, at_lea)["message"]["catalog"]["providers"]
    assert [location["id"] for location in shown["locations"]] == ["panier-lea-shop"]
    assert shown["time"] == {"label": "lun. 08:00-12:00, 14:00-17:30 · mer. 08:00-12:00", "days": "1,3"}
    assert [(tag["descriptor"]["code"], tag["value"]) for tag in shown["tags"][0]["list"]] == [
        ("mon", "08:00-12:00,14:00-17:30"), ("wed", "08:00-12:00")]
    no_hours = lea.request("PUT", "/providers/panier-lea", json=profile(opening_hours=[]))
    assert no_hours.status_code == 200
    (shown,) = search(net, at_lea)["message"]["catalog"]["providers"]
    assert "time" not in shown and "tags" not in shown and shown["fulfillments"][0]["contact"] == contact
    demo = search(net, {"provider": {"id": "jardin-lamentin"}})["message"]["catalog"]["providers"][0]
    assert "time" not in demo and all("contact" not in f for f in demo["fulfillments"])


@pytest.mark.parametrize("locations, field", [
    ([MARKET_STALL | {"id": "panier-lea-shop"}], "other_locations"),  # the main shop's id
    ([MARKET_STALL, MARKET_STALL | {"address": "Ailleurs"}], "other_locations"),  # twice the same id
    ([MARKET_STALL | {"postal_code": "75001"}], "other_locations"),
    ([MARKET_STALL | {"gps": "au marché"}], "other_locations"),
    ([MARKET_STALL | {"id": "Stand 3"}], "other_locations"),
])
def test_bad_other_locations_are_refused(shared: Network, locations: list[dict[str, Any]], field: str) -> None:
    merchant = Merchant(shared, "Validation")
    answer = merchant.request("POST", "/providers", json=profile("panier-lea", other_locations=locations))
    assert field in fields(answer)
