"""BPP search over real HTTP: fulfilment type, GPS circle, combined filters, and large answers split
across several on_search callbacks.

The network is the one of test_bpp_service (real registry, recording BAP, the BPP app); every
callback is checked against the BPP's signature and the official 1.1.1 transaction.yaml.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.models import Context, Intent
from beckn.store.db import create_engine, session_factory, upgrade
from bpp.catalogue import CatalogueFile, seed_if_empty
from bpp.geo import distance_km, parse_gps, radius_km
from bpp.search import search_answer, split_answer
from test_bpp_service import Network, Spec, found_items, network, search
from test_bpp_service import spec as spec  # noqa: F401 - the module-scoped fixture, re-exported for pytest

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

# Place de la Savane, Fort-de-France. Shops of the demo catalogue, as the crow flies from it:
# boulangerie-fort-de-france ~0.2 km, jardin-lamentin ~0.6 km (its stand at the Grand Marché, one
# of its other_locations; its garden is ~7.5 km away), pecherie-robert ~16 km,
# distillerie-sainte-marie ~22 km.
FORT_DE_FRANCE = "14.6010, -61.0670"
LE_ROBERT = "14.6776, -60.9406"


@pytest.fixture(scope="module")
def demo(spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    data_dir = tmp_path_factory.mktemp("bpp-search")
    with network(spec, data_dir, f"sqlite+aiosqlite:///{data_dir / 'lakou.db'}") as net:
        yield net


def providers(on_search: dict) -> set[str]:
    return {provider["id"] for provider in on_search["message"]["catalog"]["providers"]}


def circle_intent(gps: str, value: str, unit: str, **extra: Any) -> dict[str, Any]:
    fulfillment = {"stops": [{"location": {"circle": {"gps": gps, "radius": {"value": value, "unit": unit}}}}]}
    return {"fulfillment": fulfillment | extra}


# ------------------------------------------------------------------------------ geometry


def test_haversine_distances_between_martinique_communes() -> None:
    # Fort-de-France to Le Robert is about 16 km as the crow flies; a point is 0 km from itself.
    assert distance_km(parse_gps(FORT_DE_FRANCE), parse_gps(LE_ROBERT)) == pytest.approx(16.1, abs=0.3)
    assert distance_km(parse_gps(LE_ROBERT), parse_gps(LE_ROBERT)) == 0
    # One degree of latitude is ~111.2 km anywhere.
    assert distance_km((14.0, -61.0), (15.0, -61.0)) == pytest.approx(111.2, abs=0.1)
    assert radius_km("2500", "m") == 2.5 and radius_km("3", "KM") == 3
    for value, unit in [("3", "mi"), ("3", None), ("-1", "km"), ("x", "km"), (None, "km")]:
        with pytest.raises(ValueError):
            radius_km(value, unit)


# ------------------------------------------------------------------------------ matchers


@pytest.mark.parametrize("kind, expected", [
    ("Delivery", {"jardin-lamentin", "pecherie-robert"}),
    ("Self-Pickup", {"jardin-lamentin", "pecherie-robert", "distillerie-sainte-marie", "boulangerie-fort-de-france"}),
])
def test_fulfillment_type_keeps_the_merchants_offering_it(demo: Network, kind: str, expected: set[str]) -> None:
    found = search(demo, {"fulfillment": {"type": kind}})
    assert providers(found) == expected
    for provider in found["message"]["catalog"]["providers"]:
        assert kind in {f["type"] for f in provider["fulfillments"]}


@pytest.mark.parametrize("gps, value, unit, expected", [
    (FORT_DE_FRANCE, "0.4", "km", {"boulangerie-fort-de-france"}),
    (FORT_DE_FRANCE, "5", "km", {"boulangerie-fort-de-france", "jardin-lamentin"}),
    (FORT_DE_FRANCE, "10", "km", {"boulangerie-fort-de-france", "jardin-lamentin"}),
    (FORT_DE_FRANCE, "20000", "m", {"boulangerie-fort-de-france", "jardin-lamentin", "pecherie-robert"}),
    (LE_ROBERT, "2", "km", {"pecherie-robert"}),
    (LE_ROBERT, "15", "km", {"pecherie-robert", "jardin-lamentin", "distillerie-sainte-marie"}),
    ("14.4000, -60.8500", "3", "km", set()),  # out at sea, off Sainte-Anne
])
def test_gps_circle_keeps_the_shops_inside_it(demo: Network, gps: str, value: str, unit: str,
                                              expected: set[str]) -> None:
    assert providers(search(demo, circle_intent(gps, value, unit))) == expected


def test_filters_combine(demo: Network) -> None:
    # Delivery within 10 km of Fort-de-France: only the Lamentin garden (the bakery does not deliver).
    found = search(demo, circle_intent(FORT_DE_FRANCE, "10", "km", type="Delivery"))
    assert providers(found) == {"jardin-lamentin"}
    # ... and of its tubers, by text in Spanish with an accent, answered in English.
    found = search(demo, circle_intent(FORT_DE_FRANCE, "10", "km", type="Delivery")
                   | {"descriptor": {"name": "ÑAME"}}, lang="en")
    assert set(found_items(found)) == {"igname-kg"}
    assert found_items(found)["igname-kg"]["descriptor"]["name"] == "Yam"
    # Category and GPS: fish within 15 km of Le Robert, but not from the Lamentin garden.
    found = search(demo, circle_intent(LE_ROBERT, "15", "km") | {"category": {"id": "poissons"}})
    assert providers(found) == {"pecherie-robert"}
    assert set(found_items(found)) == {"vivaneau-kg", "thon-jaune-kg", "dorade-coryphene-kg", "marlin-fume-200g"}
    # A circle that excludes the only match: an empty catalog.
    found = search(demo, circle_intent(FORT_DE_FRANCE, "5", "km") | {"descriptor": {"name": "lambi"}})
    assert providers(found) == set()
    # Provider id and item id with a fulfilment type the provider does not offer: nothing.
    found = search(demo, {"provider": {"id": "distillerie-sainte-marie"}, "item": {"id": "shrubb-50cl"},
                          "fulfillment": {"type": "Delivery"}})
    assert providers(found) == set()
    found = search(demo, {"provider": {"id": "distillerie-sainte-marie"}, "item": {"id": "shrubb-50cl"},
                          "fulfillment": {"type": "Self-Pickup"}})
    assert set(found_items(found)) == {"shrubb-50cl"}
    # The commune of a stop and a circle around another commune: no shop is in both.
    found = search(demo, {"fulfillment": {"stops": [{"location": {
        "city": {"code": "insee:97222"},
        "circle": {"gps": FORT_DE_FRANCE, "radius": {"value": "10", "unit": "km"}}}}]}})
    assert providers(found) == set()


@pytest.mark.parametrize("fulfillment, code, path, words", [
    ({"type": "Drone"}, "30008", "message.intent.fulfillment.type", "Self-Pickup or Delivery"),
    ({"stops": [{"location": {"circle": {"gps": FORT_DE_FRANCE, "radius": {"value": "3", "unit": "mi"}}}}]},
     "30000", "message.intent.fulfillment.stops[0].location.circle.radius", "use m or km"),
    ({"stops": [{"location": {"circle": {"gps": FORT_DE_FRANCE, "radius": {"unit": "km"}}}}]},
     "30000", "message.intent.fulfillment.stops[0].location.circle.radius", "not a non-negative decimal"),
    ({"stops": [{"type": "end"}, {"location": {"circle": {"radius": {"value": "3", "unit": "km"}}}}]},
     "30000", "message.intent.fulfillment.stops[1].location.circle.gps", "centre"),
    ({"stops": [{"location": {"circle": {"gps": FORT_DE_FRANCE}}}]},
     "30000", "message.intent.fulfillment.stops[0].location.circle.radius", "needs a radius"),
])
def test_unusable_fulfillment_criteria_are_on_search_errors_with_code_and_path(
        demo: Network, fulfillment: dict, code: str, path: str, words: str) -> None:
    answer = search(demo, {"fulfillment": fulfillment})
    assert "message" not in answer
    assert answer["error"]["code"] == code
    assert answer["error"]["paths"] == path
    assert words in answer["error"]["message"]


# ------------------------------------------------------------------------------ large answers


def big_catalogue(path: Path, providers_count: int, items_each: int) -> dict[str, Any]:
    """A catalogue of `providers_count` Lamentin shops selling `items_each` items each."""
    def text(name: str) -> dict[str, dict[str, str]]:
        return {"fr": {"name": name}, "en": {"name": f"{name} (en)"}}

    catalogue = {"providers": [
        {
            "id": f"etal-{p:02d}",
            "descriptor": text(f"Étal {p}"),
            "location": {"id": f"etal-{p:02d}-boutique", "gps": f"14.61{p:02d}, -60.9996",
                         "address": f"{p} rue du Marché, Le Lamentin",
                         "city": {"code": "insee:97213", "name": "Le Lamentin"}, "area_code": "97232"},
            "fulfillment_types": ["Self-Pickup", "Delivery"] if p % 2 else ["Self-Pickup"],
            "categories": [{"id": "legumes", "descriptor": text("Légumes")}],
            "items": [
                {"id": f"produit-{i:03d}", "descriptor": text(f"{'Giraumon' if i % 3 == 0 else 'Christophine'} {i}"),
                 "category_ids": ["legumes"], "price": f"{1 + i % 7}.50", "unit": "kilogram", "stock": 10 + i}
                for i in range(items_each)
            ],
        }
        for p in range(providers_count)
    ]}
    path.write_text(json.dumps(catalogue, ensure_ascii=False), encoding="utf-8")
    return catalogue


PAGE = 10


@pytest.fixture
def big(spec: Spec, tmp_path: Path, db_url: str) -> Iterator[tuple[Network, dict[str, Any]]]:
    catalogue = big_catalogue(tmp_path / "catalogue.json", providers_count=4, items_each=9)  # 36 items
    with network(spec, tmp_path, db_url, bpp_catalogue=str(tmp_path / "catalogue.json"),
                 bpp_search_page_items=PAGE) as net:
        yield net, catalogue


def all_pages(net: Network, message_id: str, count: int) -> list[dict[str, Any]]:
    """Wait for `count` on_search callbacks of `message_id`, check each, and make sure no more come."""
    deadline = time.monotonic() + 10
    while len(net.callbacks(message_id, "on_search")) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # any extra page would have been queued in the same transaction as these
    received = net.callbacks(message_id, "on_search")
    assert len(received) == count, f"{len(received)} on_search callbacks, expected {count}"
    for page in received:
        net.check(page, "on_search")
    return [page.json for page in received]


def union(pages: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for page in pages:
        for provider in page["message"]["catalog"]["providers"]:
            for item in provider["items"]:
                assert (provider["id"], item["id"]) not in items, "an item came twice"
                items[(provider["id"], item["id"])] = item
    return items


def test_a_large_answer_comes_as_several_complete_on_search_callbacks(big: tuple[Network, dict[str, Any]]) -> None:
    net, catalogue = big
    first = search(net, {}, lang="en")  # waits for (and checks) the first page
    message_id = first["context"]["message_id"]
    pages = all_pages(net, message_id, count=math.ceil(36 / PAGE))

    expected = {(p["id"], i["id"]): i for p in catalogue["providers"] for i in p["items"]}
    found = union(pages)
    assert set(found) == set(expected)
    for key, item in found.items():
        assert item["descriptor"]["name"] == expected[key]["descriptor"]["en"]["name"]
        assert item["quantity"]["available"]["count"] == expected[key]["stock"]
    for page in pages:
        assert page["context"]["transaction_id"] == first["context"]["transaction_id"]
        catalog = page["message"]["catalog"]
        assert sum(len(p["items"]) for p in catalog["providers"]) <= PAGE
        assert catalog["descriptor"]["name"] == "Lakou market"
        for provider in catalog["providers"]:
            # Each page shows its providers whole, so an item can be ordered from the page alone.
            assert provider["locations"] and provider["fulfillments"] and provider["payments"]
            assert provider["descriptor"]["name"].endswith("(en)")


def test_a_filtered_answer_is_split_too_and_a_small_one_is_not(big: tuple[Network, dict[str, Any]]) -> None:
    net, catalogue = big
    # "giraumon" at the delivering shops (odd ids): 3 items each at 2 shops = 6 items, one page.
    first = search(net, {"descriptor": {"name": "giraumons"}, "fulfillment": {"type": "Delivery"}})
    small = all_pages(net, first["context"]["message_id"], count=1)
    assert set(union(small)) == {(f"etal-{p:02d}", f"produit-{i:03d}") for p in (1, 3) for i in (0, 3, 6)}
    # "christophine" everywhere: 6 items at each of 4 shops = 24 items, three pages.
    first = search(net, {"descriptor": {"name": "CHRISTOPHINE"}})
    pages = all_pages(net, first["context"]["message_id"], count=3)
    assert set(union(pages)) == {(f"etal-{p:02d}", f"produit-{i:03d}")
                                 for p in range(4) for i in range(9) if i % 3}


def test_split_answer_keeps_errors_and_order() -> None:
    error = {"error": {"code": "30000", "message": "bad"}}
    assert split_answer(error, 2) == [error]
    catalog = {"descriptor": {"name": "Marché Lakou"}, "providers": [
        {"id": "a", "items": [{"id": "1"}, {"id": "2"}, {"id": "3"}]},
        {"id": "b", "items": [{"id": "4"}]},
    ]}
    pages = split_answer({"message": {"catalog": catalog}}, 2)
    assert [[(p["id"], [i["id"] for i in p["items"]]) for p in page["message"]["catalog"]["providers"]]
            for page in pages] == [[("a", ["1", "2"])], [("a", ["3"]), ("b", ["4"])]]
    assert all(page["message"]["catalog"]["descriptor"] == catalog["descriptor"] for page in pages)
    assert split_answer({"message": {"catalog": catalog}}, 4) == [{"message": {"catalog": catalog}}]
    empty = {"message": {"catalog": {"descriptor": {"name": "x"}, "providers": []}}}
    assert split_answer(empty, 1) == [empty]


# ------------------------------------------------------------------------------ several locations, cap, categories
#
# Straight on the search functions over a seeded database, on SQLite and PostgreSQL: the SQL that
# selects and orders the items is what differs between the backends.

LE_ROBERT_PICKUP = "14.6776, -60.9406"


def shop(provider_id: str, commune: tuple[str, str, str], gps: str, suffix: str = "boutique") -> dict[str, Any]:
    code, name, postal = commune
    return {"id": f"{provider_id}-{suffix}", "gps": gps, "address": f"1 rue du Bourg, {postal} {name}",
            "city": {"code": code, "name": name}, "area_code": postal}


FDF = ("insee:97209", "Fort-de-France", "97200")
ROBERT = ("insee:97222", "Le Robert", "97231")
LAMENTIN = ("insee:97213", "Le Lamentin", "97232")

CATEGORIES = [
    {"id": "fruits", "descriptor": {"fr": {"name": "Fruits"}, "en": {"name": "Fruit"}}},
    {"id": "fruits-secs", "descriptor": {"fr": {"name": "Fruits secs"}, "en": {"name": "Dried fruit"}}},
    {"id": "boissons", "descriptor": {"fr": {"name": "Boissons"}, "en": {"name": "Drinks"}}},
]


def product(item_id: str, name: str, category: str) -> dict[str, Any]:
    return {"id": item_id, "descriptor": {"fr": {"name": name}}, "category_ids": [category],
            "price": "2.00", "unit": "unit", "stock": 5}


# Ids are chosen so that id order and distance order differ: seen from Le Robert, "z-marche-multi"
# is nearest (its pickup point is there) but sorts last by id.
LOCATIONS_CATALOGUE: dict[str, Any] = {"providers": [
    {"id": "a-epicerie-robert", "descriptor": {"fr": {"name": "Épicerie du Robert"}},
     "location": shop("a-epicerie-robert", ROBERT, "14.6830, -60.9380"),  # ~0.65 km from the pickup point
     "categories": CATEGORIES,
     "items": [
         # Named with the word "fruits" but in the drinks category: a category-name search must not
         # list them, though their search_text has the word.
         product("a-jus-fruits-goyave", "Jus de fruits goyave", "boissons"),
         product("b-jus-fruits-maracuja", "Jus de fruits maracuja", "boissons"),
         product("c-mangue", "Mangue Julie", "fruits"),
         product("d-amandes", "Amandes grillées", "fruits-secs"),
     ]},
    {"id": "m-jardin-lamentin", "descriptor": {"fr": {"name": "Jardin du Lamentin"}},
     "location": shop("m-jardin-lamentin", LAMENTIN, "14.6097, -60.9967"),
     "categories": CATEGORIES[:1],
     "items": [product("goyave", "Goyave", "fruits"), product("prune-cythere", "Prune de Cythère", "fruits")]},
    {"id": "z-marche-multi", "descriptor": {"fr": {"name": "Marché multi-sites"}},
     "location": shop("z-marche-multi", FDF, "14.6030, -61.0690"),
     "other_locations": [shop("z-marche-multi", ROBERT, LE_ROBERT_PICKUP, "relais-robert")],
     "fulfillment_types": ["Self-Pickup", "Delivery"],
     "categories": CATEGORIES,
     "items": [product("banane", "Banane plantain", "fruits"), product("coco-sec", "Coco sèche", "fruits-secs"),
               product("ananas", "Ananas Victoria", "fruits")]},
]}


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade(db_url)
    engine = create_engine(db_url)
    factory = session_factory(engine)
    assert await seed_if_empty(factory, CatalogueFile.model_validate(LOCATIONS_CATALOGUE))
    try:
        yield factory
    finally:
        await engine.dispose()


def beckn_context(city: str = "std:972") -> Context:
    return Context.model_validate({
        "domain": "retail", "action": "search", "version": "1.1.0",
        "location": {"country": {"code": "MTQ"}, "city": {"code": city}},
        "bap_id": "bap.lakou.test", "bap_uri": "https://bap.lakou.test/beckn",
        "transaction_id": "1c7a0c4e-0000-4000-8000-000000000001",
        "message_id": "1c7a0c4e-0000-4000-8000-000000000002",
        "timestamp": "2026-11-23T10:00:00.000Z", "ttl": "PT30S"})


async def answer(sessions: async_sessionmaker[AsyncSession], intent: dict[str, Any] | None, *,
                 city: str = "std:972", max_items: int = 500) -> list[tuple[str, list[str]]]:
    """(provider id, [item ids]) in the answer's order."""
    async with sessions() as session:
        body = await search_answer(session, beckn_context(city),
                                   Intent.model_validate(intent) if intent is not None else None,
                                   max_items=max_items)
    return [(p["id"], [i["id"] for i in p["items"]]) for p in body["message"]["catalog"]["providers"]]


def ids(found: list[tuple[str, list[str]]]) -> list[str]:
    return [provider for provider, _ in found]


async def test_a_merchant_is_found_in_the_commune_of_any_of_its_locations(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    # Le Robert: the grocery's shop and the market's pickup point there; the market's main shop
    # is in Fort-de-France.
    assert ids(await answer(sessions, None, city="insee:97222")) == ["a-epicerie-robert", "z-marche-multi"]
    assert ids(await answer(sessions, None, city="insee:97209")) == ["z-marche-multi"]
    # The commune of a fulfilment stop counts the same way, and combines with the other criteria.
    stop_in_robert = {"fulfillment": {"type": "Delivery", "stops": [{"location": {"city": {"code": "insee:97222"}}}]}}
    assert ids(await answer(sessions, stop_in_robert)) == ["z-marche-multi"]
    assert await answer(sessions, None, city="insee:97230") == []  # Le Vauclin: nobody there


async def test_a_gps_circle_finds_a_merchant_by_any_location_nearest_first(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    near_robert = circle_intent(LE_ROBERT_PICKUP, "1", "km")
    found = await answer(sessions, near_robert)
    # The market's pickup point is at the centre (0 km), the grocery ~0.65 km away: nearest first,
    # whatever their ids.
    assert ids(found) == ["z-marche-multi", "a-epicerie-robert"]
    assert found[0][1] == ["ananas", "banane", "coco-sec"]  # items by id within a merchant
    # Around Fort-de-France the market is found by its main shop; 20 km around Le Robert takes in
    # everyone, the Lamentin garden (~6 km away) last.
    assert ids(await answer(sessions, circle_intent(FORT_DE_FRANCE, "1", "km"))) == ["z-marche-multi"]
    assert ids(await answer(sessions, circle_intent(LE_ROBERT_PICKUP, "20", "km"))) == [
        "z-marche-multi", "a-epicerie-robert", "m-jardin-lamentin"]
    assert await answer(sessions, circle_intent("14.4000, -60.8500", "3", "km")) == []


async def test_the_answer_is_capped_nearest_merchants_first(sessions: async_sessionmaker[AsyncSession]) -> None:
    # 9 items match an empty intent. Capped at 4: the first 4 in a stable order (merchant id, item id).
    found = await answer(sessions, {}, max_items=4)
    assert found == [("a-epicerie-robert", ["a-jus-fruits-goyave", "b-jus-fruits-maracuja", "c-mangue", "d-amandes"])]
    found = await answer(sessions, {}, max_items=5)
    assert found == [("a-epicerie-robert", ["a-jus-fruits-goyave", "b-jus-fruits-maracuja", "c-mangue", "d-amandes"]),
                     ("m-jardin-lamentin", ["goyave"])]
    assert sum(len(items) for _, items in await answer(sessions, {}, max_items=9)) == 9
    # A GPS search keeps the items of the nearest merchants: the market (0 km) before the grocery.
    found = await answer(sessions, circle_intent(LE_ROBERT_PICKUP, "20", "km"), max_items=4)
    assert found == [("z-marche-multi", ["ananas", "banane", "coco-sec"]), ("a-epicerie-robert", ["a-jus-fruits-goyave"])]
    # The cap counts what the other criteria kept: fruit (by category id) near Le Robert.
    found = await answer(sessions, circle_intent(LE_ROBERT_PICKUP, "20", "km") | {"category": {"id": "fruits"}},
                         max_items=3)
    assert found == [("z-marche-multi", ["ananas", "banane"]), ("a-epicerie-robert", ["c-mangue"])]


@pytest.mark.parametrize("category, expected", [
    ({"id": "fruits"}, {"c-mangue", "goyave", "prune-cythere", "banane", "ananas"}),
    ({"id": "fruits-secs"}, {"d-amandes", "coco-sec"}),
    ({"id": "secs"}, set()),  # a suffix of an id is not an id
    ({"id": "fruit"}, set()),  # nor a prefix
    ({"descriptor": {"name": "Dried fruit"}}, {"d-amandes", "coco-sec"}),
    ({"descriptor": {"name": "secs"}}, {"d-amandes", "coco-sec"}),
    # "fruits" starts the names of both fruit categories, not of the drinks category, whatever
    # the drinks' own names say.
    ({"descriptor": {"name": "FRUITS"}}, {"c-mangue", "goyave", "prune-cythere", "banane", "ananas", "d-amandes",
                                          "coco-sec"}),
    ({"descriptor": {"name": "goyave"}}, set()),  # an item's name is not a category's
])
async def test_category_by_id_and_by_name_is_exact(sessions: async_sessionmaker[AsyncSession],
                                                   category: dict[str, Any], expected: set[str]) -> None:
    found = await answer(sessions, {"category": category})
    assert {item for _, items in found for item in items} == expected


async def test_a_capped_category_name_search_counts_only_true_matches(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    # The grocery's two fruit juices come first by id and have the word in their search text; the
    # exact check drops them and the search reads on, so the cap is filled with real matches.
    found = await answer(sessions, {"category": {"descriptor": {"name": "fruits"}}}, max_items=2)
    assert found == [("a-epicerie-robert", ["c-mangue", "d-amandes"])]
    found = await answer(sessions, {"category": {"descriptor": {"name": "fruits"}}}, max_items=3)
    assert found == [("a-epicerie-robert", ["c-mangue", "d-amandes"]), ("m-jardin-lamentin", ["goyave"])]


def test_over_http_a_pickup_point_finds_its_merchant_and_is_listed(spec: Spec, tmp_path: Path) -> None:
    (tmp_path / "catalogue.json").write_text(json.dumps(LOCATIONS_CATALOGUE, ensure_ascii=False), encoding="utf-8")
    with network(spec, tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}",
                 bpp_catalogue=str(tmp_path / "catalogue.json")) as net:
        # Every callback is checked against the BPP's signature and transaction.yaml by `search`.
        by_city = search(net, {"fulfillment": {"stops": [{"location": {"city": {"code": "insee:97222"}}}]}})
        assert providers(by_city) == {"a-epicerie-robert", "z-marche-multi"}
        by_gps = search(net, circle_intent(LE_ROBERT_PICKUP, "300", "m"))
        assert [p["id"] for p in by_gps["message"]["catalog"]["providers"]] == ["z-marche-multi"]
        market = by_gps["message"]["catalog"]["providers"][0]
        # The answer shows the location that matched among the merchant's locations.
        assert {location["id"] for location in market["locations"]} >= {"z-marche-multi-relais-robert"}



def test_the_live_bpp_caps_an_answer_at_its_max_items_setting(spec: Spec, tmp_path: Path) -> None:
    """LAKOU_BPP_SEARCH_MAX_ITEMS reaches the BPP's search handler: a whole-catalogue search of the
    25 demo items, capped at 7, lists 7 items, still paged into callbacks of at most 3."""
    with network(spec, tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'lakou.db'}",
                 bpp_search_max_items=7, bpp_search_page_items=3) as net:
        first = search(net, {})
        pages = all_pages(net, first["context"]["message_id"], count=3)  # 3 + 3 + 1
        assert len(union(pages)) == 7
