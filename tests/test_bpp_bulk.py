"""Bulk catalogue import and export over real HTTP, on SQLite and PostgreSQL: a French Excel CSV,
every error of a bad file at once with nothing written, JSON, round trips, replace mode,
isolation, the size limit, and a signed Beckn search finding an imported item.

The network is the one of tests/test_bpp_service.py (every on_search is checked there against the
BPP's key and the official 1.1.1 transaction.yaml)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from test_bpp_merchant_api import SIRET_B, Merchant, item, on_search_item, profile
from test_bpp_service import Network, confirm_message, found_items, net, search, shared, spec  # noqa: F401

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

CSV_HEADERS = {"Content-Type": "text/csv"}


class Shop(Merchant):
    def request(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        # Merchant.request sets the auth header itself: merge ours (the upload's Content-Type) in.
        headers = {"Authorization": f"Bearer {key or self.api_key}"} | kwargs.pop("headers", {})
        return self.net.http.request(method, f"{self.net.bpp}/api/v1/merchant{path}", headers=headers, **kwargs)

# What French Excel writes with "CSV UTF-8": a BOM, semicolons, decimal commas, CRLF.
GOOD_CSV = (
    "\ufefftype;id;category_ids;name_fr;short_desc_fr;name_en;name_es;name_de;price;unit;unit_value;stock;images\r\n"
    "category;fruits;;Fruits péi;;Fruit;Frutas;Obst;;;;;\r\n"
    "category;legumes;;Légumes;;Vegetables;;;;;;;\r\n"
    "item;corossol-kg;fruits;Corossol;Bien mûr;Soursop;Guanábana;Stachelannone;4,50;kilogram;1;12;"
    "https://img.lakou.example/corossol.jpg\r\n"
    "item;christophine;legumes;Christophine;;Chayote;;;1,2;unit;;30;\r\n"
    ";;;;;;;;;;;;\r\n"  # the empty row spreadsheets leave behind
    "item;giraumon-kg;legumes|fruits;Giraumon;;Pumpkin;;;3 €;kilogram;0,5;0;\r\n"
).encode()


def shop(net: Network, name: str = "Le Panier de Mamie Léa", provider_id: str = "panier-lea",
         **changes: Any) -> Shop:
    merchant = Shop(net, name)
    created = merchant.request("POST", "/providers", json=profile(provider_id, **changes))
    assert created.status_code == 201, created.text
    return merchant


def items_of(merchant: Shop, provider_id: str = "panier-lea") -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in merchant.request("GET", f"/providers/{provider_id}/items").json()}


def test_a_french_excel_csv_is_imported_found_by_search_and_round_trips(net: Network) -> None:
    lea = shop(net)
    put = lea.request("PUT", "/providers/panier-lea/catalogue", content=GOOD_CSV, headers=CSV_HEADERS)
    assert put.status_code == 200, put.text
    assert put.json() == {"created": 3, "updated": 0, "unchanged": 0, "deleted": 0,
                                              "categories": 2}
    stored = items_of(lea)
    assert stored["corossol-kg"]["price"] == "4.50" and stored["christophine"]["price"] == "1.20"
    assert stored["giraumon-kg"]["price"] == "3.00" and stored["giraumon-kg"]["unit_value"] == "0.5"
    assert stored["giraumon-kg"]["category_ids"] == ["legumes", "fruits"]
    assert stored["corossol-kg"]["descriptor"]["de"]["name"] == "Stachelannone"
    assert stored["corossol-kg"]["images"] == ["https://img.lakou.example/corossol.jpg"]

    # In the next signed Beckn search, in the shopper's language, by name and by category.
    found = on_search_item(net, "guanabana", lang="es")
    assert found is not None and found["id"] == "corossol-kg" and found["price"]["value"] == "4.50"
    assert found["descriptor"]["images"] == [{"url": "https://img.lakou.example/corossol.jpg"}]
    at_lea = {"provider": {"id": "panier-lea"}}
    chayote = found_items(search(net, at_lea | {"item": {"descriptor": {"name": "chayote"}}}, lang="en"))
    assert chayote["christophine"]["quantity"]["available"]["count"] == 30

    # Export -> import unchanged -> nothing changes, in both formats and both CSV conventions.
    before = items_of(lea)
    exported = lea.request("GET", "/providers/panier-lea/catalogue.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.content.startswith("\ufefftype;id;".encode()) and b";4,50;" in exported.content
    comma = lea.request("GET", "/providers/panier-lea/catalogue.csv", params={"sep": "comma"})
    assert b",4.50," in comma.content
    as_json = lea.request("GET", "/providers/panier-lea/catalogue.json")
    assert as_json.status_code == 200 and len(as_json.json()["items"]) == 3
    for body, headers in [(exported.content, CSV_HEADERS), (comma.content, CSV_HEADERS),
                          (as_json.content, {"Content-Type": "application/json"})]:
        again = lea.request("PUT", "/providers/panier-lea/catalogue", params={"mode": "replace"},
                            content=body, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json() == {"created": 0, "updated": 0, "unchanged": 3, "deleted": 0, "categories": 2}
    assert items_of(lea) == before  # updated_at included
    assert lea.request("GET", "/providers/panier-lea/categories").json()[0]["descriptor"]["fr"]["name"] == "Fruits péi"

    # Isolation: another merchant's provider answers 404 on every bulk route, and nothing changes.
    rene = shop(net, "Poissonnerie René", "poissonnerie-rene", siret=SIRET_B)
    for method, path, body in [("GET", "/providers/panier-lea/catalogue.csv", None),
                               ("GET", "/providers/panier-lea/catalogue.json", None),
                               ("PUT", "/providers/panier-lea/catalogue", b"type;id;name_fr\r\n")]:
        answer = rene.request(method, path, content=body, headers=CSV_HEADERS)
        assert answer.status_code == 404, (path, answer.text)
    assert lea.request("GET", "/providers/demo/catalogue.json").status_code == 404
    assert items_of(lea) == before


def test_a_bad_csv_lists_every_error_and_changes_nothing(net: Network) -> None:
    lea = shop(net)
    assert lea.request("PUT", "/providers/panier-lea/items/banane-kg",
                       json=item("Banane", "Banana", price="2.00")).status_code == 201
    bad = (
        "type,id,category_ids,name_fr,name_en,price,unit,stock\r\n"   # commas this time, no BOM
        "category,fruits,,Fruits,Fruit,,,\r\n"
        "item,banane-kg,fruits,Banane,Banana,\"4,505\",kilogram,12\r\n"  # 3 decimals: row 3
        "item,Mangue Julie,fruits,Mangue,,abc,kilogram,-2\r\n"          # id, price, stock: row 4
        "item,coco,noix,,Coconut,1.00,,5\r\n"                           # name_fr, unit: row 5
        "legume,igname,,Igname,,,,\r\n"                                 # type: row 6
        "item,ananas,legumes,Ananas,,3.00,unit,4\r\n"                   # unknown category: row 7
        "item,coco,fruits,Coco,,1.00,unit,5\r\n"                        # duplicate id: row 8
    ).encode()
    answer = lea.request("PUT", "/providers/panier-lea/catalogue", content=bad, headers=CSV_HEADERS)
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert {(e["line"], e["column"]) for e in errors} == {
        (3, "price"), (4, "id"), (4, "price"), (4, "stock"), (5, "name_fr"), (5, "unit"), (6, "type"),
        (7, "category_ids"), (8, "id"),
    }
    price = next(e for e in errors if (e["line"], e["column"]) == (3, "price"))
    assert price["message"] == "ligne 3, colonne price : « 4,505 » n'est pas un prix — écrivez par exemple 4.50 ou 4,50"
    assert price["message_en"].startswith("line 3, column price:")
    # Nothing was written: the banana keeps its price, no category appeared.
    assert items_of(lea)["banane-kg"]["price"] == "2.00" and set(items_of(lea)) == {"banane-kg"}
    assert lea.request("GET", "/providers/panier-lea/categories").json() == []

    # Not UTF-8 (Excel's old "CSV" in Windows-1252): one clear error, no 500.
    latin = lea.request("PUT", "/providers/panier-lea/catalogue",
                        content="type;id;name_fr\r\nitem;cafe;Café\r\n".encode("cp1252"), headers=CSV_HEADERS)
    assert latin.status_code == 422 and "CSV UTF-8" in latin.json()["errors"][0]["message"]
    # Size limits and content type.
    rows = "".join(f"item;article-{n};Article {n};1,00;unit;1\r\n" for n in range(5001))
    too_many = lea.request("PUT", "/providers/panier-lea/catalogue",
                           content=f"type;id;name_fr;price;unit;stock\r\n{rows}".encode(), headers=CSV_HEADERS)
    assert too_many.status_code == 413 and "5000" in too_many.json()["detail"]
    too_big = lea.request("PUT", "/providers/panier-lea/catalogue", content=b"x" * (2 * 1024 * 1024 + 1),
                          headers=CSV_HEADERS)
    assert too_big.status_code == 413
    assert lea.request("PUT", "/providers/panier-lea/catalogue", content=b"<xml/>",
                       headers={"Content-Type": "application/xml"}).status_code == 415
    assert set(items_of(lea)) == {"banane-kg"}


def test_json_import_upserts_by_default_and_replace_deletes_what_is_absent(net: Network) -> None:
    lea = shop(net)
    assert lea.request("PUT", "/providers/panier-lea/items/banane-kg",
                       json=item("Banane", "Banana", price="2.00")).status_code == 201
    catalogue = {
        "categories": [{"id": "epices", "descriptor": {"fr": {"name": "Épices"}, "en": {"name": "Spices"}}}],
        "items": [{"id": "colombo", **item("Poudre à colombo", "Colombo powder", category_ids=["epices"],
                                           price="3.20", unit="unit")}],
    }
    upsert = lea.request("PUT", "/providers/panier-lea/catalogue", json=catalogue)
    assert upsert.status_code == 200, upsert.text
    assert upsert.json()["created"] == 1 and upsert.json()["deleted"] == 0
    assert set(items_of(lea)) == {"banane-kg", "colombo"}  # upsert keeps what the file does not name
    assert on_search_item(net, "colombo powder", lang="en")["price"]["value"] == "3.20"  # type: ignore[index]

    # JSON errors name the entry (from 1) and the field.
    broken = {"items": [catalogue["items"][0] | {"price": "3,2"}, {"id": "x", "descriptor": {"en": {"name": "X"}},
                                                                   "price": "1.00", "unit": "unit", "stock": 1}]}
    answer = lea.request("PUT", "/providers/panier-lea/catalogue", json=broken)
    assert answer.status_code == 422
    assert {(e["line"], e["column"]) for e in answer.json()["errors"]} == {(1, "items.price"),
                                                                           (2, "items.descriptor")}

    # Replace deletes what the file leaves out, except an item that has been ordered: that one is
    # an error naming it, and nothing at all is deleted.
    assert lea.request("PUT", "/providers/panier-lea/items/ti-punch",
                       json=item("Ti-punch", "Ti-punch", price="5.00", unit="unit")).status_code == 201
    on_confirm = net.call("confirm", confirm_message("panier-lea", ("banane-kg", 1)))
    assert "error" not in on_confirm, on_confirm
    refused = lea.request("PUT", "/providers/panier-lea/catalogue", params={"mode": "replace"}, json=catalogue)
    assert refused.status_code == 422, refused.text
    assert [(e["line"], e["id"]) for e in refused.json()["errors"]] == [(None, "banane-kg")]
    assert "a des commandes" in refused.json()["errors"][0]["message"]
    assert set(items_of(lea)) == {"banane-kg", "colombo", "ti-punch"}

    kept = dict(catalogue, items=[*catalogue["items"], {"id": "banane-kg", **item("Banane", "Banana", stock=0)}])
    replaced = lea.request("PUT", "/providers/panier-lea/catalogue", params={"mode": "replace"}, json=kept)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["deleted"] == 1 and replaced.json()["updated"] == 1
    assert set(items_of(lea)) == {"banane-kg", "colombo"}
    at_lea = {"provider": {"id": "panier-lea"}}
    assert set(found_items(search(net, at_lea | {"item": {"descriptor": {"name": "punch"}}}))) == set()
    assert set(found_items(search(net, at_lea | {"item": {"descriptor": {"name": "colombo"}}}))) == {"colombo"}


def test_csv_tags_round_trip_with_search_and_bad_tags_are_listed_by_line(net: Network) -> None:
    lea = shop(net)
    tagged = (
        "\ufefftype;id;name_fr;name_en;price;unit;stock;tags\r\n"
        "item;corossol-kg;Corossol;Soursop;4,50;kilogram;12;\"local;organic\"\r\n"
        "item;giraumon-kg;Giraumon;Pumpkin;3,00;kilogram;5;Bio | péi\r\n"  # French words, any case
        "item;ananas;Ananas;Pineapple;2,50;unit;8;\r\n"
    ).encode()
    put = lea.request("PUT", "/providers/panier-lea/catalogue", content=tagged, headers=CSV_HEADERS)
    assert put.status_code == 200, put.text
    stored = items_of(lea)
    assert stored["corossol-kg"]["tags"] == ["local", "organic"]
    assert stored["giraumon-kg"]["tags"] == ["organic", "local"]
    assert stored["ananas"]["tags"] == []
    # The signed Beckn search shows them and finds "bio" items.
    organic = found_items(search(net, {"provider": {"id": "panier-lea"}, "item": {"descriptor": {"name": "bio"}}}))
    assert set(organic) == {"corossol-kg", "giraumon-kg"}
    assert {group["descriptor"]["code"] for group in organic["corossol-kg"]["tags"]} == {"lakou:origin", "lakou:label"}

    # Export: a tags column, `|`-separated; importing it back changes nothing.
    exported = lea.request("GET", "/providers/panier-lea/catalogue.csv")
    header, *rows = exported.content.decode("utf-8-sig").split("\r\n")
    assert header.split(";")[-1] == "tags"
    assert any(row.startswith("item;corossol-kg;") and row.endswith(";local|organic") for row in rows)
    again = lea.request("PUT", "/providers/panier-lea/catalogue", params={"mode": "replace"},
                        content=exported.content, headers=CSV_HEADERS)
    assert again.json() == {"created": 0, "updated": 0, "unchanged": 3, "deleted": 0, "categories": 0}
    # A file from before the tags column (no such column) keeps the stored tags.
    old = ("type;id;name_fr;name_en;price;unit;stock\r\n"
           "item;corossol-kg;Corossol;Soursop;4,20;kilogram;12\r\n").encode()
    kept = lea.request("PUT", "/providers/panier-lea/catalogue", content=old, headers=CSV_HEADERS)
    assert kept.json()["updated"] == 1
    assert items_of(lea)["corossol-kg"]["tags"] == ["local", "organic"]
    assert items_of(lea)["corossol-kg"]["price"] == "4.20"
    # An empty tags cell in a file with the column clears them.
    cleared = ("type;id;name_fr;name_en;price;unit;stock;tags\r\n"
               "item;corossol-kg;Corossol;Soursop;4,20;kilogram;12;\r\n").encode()
    emptied = lea.request("PUT", "/providers/panier-lea/catalogue", content=cleared, headers=CSV_HEADERS)
    assert emptied.status_code == 200
    assert items_of(lea)["corossol-kg"]["tags"] == []

    bad = (
        "type;id;name_fr;price;unit;stock;tags\r\n"
        "category;fruits;Fruits;;;;local\r\n"                 # tags on a category: row 2
        "item;corossol-kg;Corossol;4,50;kilogram;12;vegan\r\n"  # unknown tag: row 3
        "item;ananas;Ananas;2,50;unit;8;local|sans-sucre\r\n"   # one good, one unknown: row 4
    ).encode()
    refused = lea.request("PUT", "/providers/panier-lea/catalogue", content=bad, headers=CSV_HEADERS)
    assert refused.status_code == 422, refused.text
    errors = refused.json()["errors"]
    assert [(e["line"], e["column"], e["id"]) for e in errors] == [
        (2, "tags", "fruits"), (3, "tags", "corossol-kg"), (4, "tags", "ananas")]
    assert errors[1]["message"].startswith("ligne 3, colonne tags : « vegan » n'est pas une étiquette")
    assert "sans-sucre" in errors[2]["message_en"] and "local and/or organic" in errors[2]["message_en"]
    assert items_of(lea)["corossol-kg"]["tags"] == [] and items_of(lea)["ananas"]["tags"] == []  # nothing written
