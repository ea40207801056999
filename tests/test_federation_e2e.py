"""Federation end to end: a Martinique citizen orders from a Guadeloupe shop.

Two registries run on loopback as `lakou serve registry` processes, each the other's trusted
partner: Martinique (MTQ) with the BAP and the gateway, Guadeloupe (GLP) with one BPP whose
catalogue is in Pointe-à-Pitre (insee:97120). Nothing is registered twice. The citizen searches
through the Martinique BAP for that commune; the Martinique gateway's lookup falls back to the
Guadeloupe registry, the BPP's verification of the BAP's signature falls back to the Martinique
registry, the BAP's verification of the BPP's answers too, and the order completes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from beckn.cli.demo import JourneyFailed, run_journey
from beckn.keyfile import ensure_node_keys
from beckn.keys import load_verify_key
from conftest import free_port
from network import Network
from registry.signed_response import RESPONSE_SIGNATURE_HEADER, verify_lookup_response

GLP_CITY = "insee:97120"  # Pointe-à-Pitre
GLP_CATALOGUE = {"providers": [{
    "id": "lolo-pointe-a-pitre",
    "descriptor": {"fr": {"name": "Lolo de la Darse", "short_desc": "Épicerie du port de Pointe-à-Pitre"},
                   "en": {"name": "La Darse grocery", "short_desc": "Grocery by the Pointe-à-Pitre harbour"}},
    "location": {"id": "lolo-darse", "gps": "16.2411, -61.5331", "address": "Quai Lardenoy, 97110 Pointe-à-Pitre",
                 "city": {"code": GLP_CITY, "name": "Pointe-à-Pitre"}, "area_code": "97110"},
    "fulfillment_types": ["Self-Pickup"],
    "categories": [{"id": "epicerie", "descriptor": {"fr": {"name": "Épicerie"}, "en": {"name": "Grocery"}}}],
    "items": [{"id": "confiture-goyave", "descriptor": {"fr": {"name": "Confiture de goyave",
                                                               "short_desc": "Pot de 350 g, goyaves de Vieux-Habitants"},
                                                        "en": {"name": "Guava jam"}},
               "category_ids": ["epicerie"], "price": "6.50", "unit": "pot", "stock": 40}],
}]}


@pytest.fixture(scope="module")
def territories(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("federation")
    net = Network(root)
    mtq_port, glp_port = net.registry_port, free_port()
    # The registries' keys exist before they start, so that each can name the other as a partner.
    keys = {name: ensure_node_keys(root / name) for name in ("registry", "registry-glp")}
    ids = {"registry": "registry.lakou.localhost", "registry-glp": "registry-glp.lakou.localhost"}
    urls = {"registry": f"http://127.0.0.1:{mtq_port}", "registry-glp": f"http://127.0.0.1:{glp_port}"}

    def partner(name: str) -> str:
        return json.dumps([{"id": ids[name], "url": urls[name], "signing_public_key": keys[name]["signing_public_key"]}])

    catalogue = root / "glp-catalogue.json"
    catalogue.write_text(json.dumps(GLP_CATALOGUE, ensure_ascii=False), encoding="utf-8")
    try:
        mtq = net.start("registry", extra_env={"LAKOU_SUBSCRIBER_ID": ids["registry"],
                                               "LAKOU_REGISTRY_PARTNERS": partner("registry-glp")})
        glp = net.start("registry", name="registry-glp", port=glp_port, extra_env={
            "LAKOU_SUBSCRIBER_ID": ids["registry-glp"], "LAKOU_COUNTRY": "GLP",
            "LAKOU_REGISTRY_PARTNERS": partner("registry")})
        net.wait_ready(mtq, glp)
        gateway = net.start("gateway")
        bap = net.start("bap")
        bpp = net.start("bpp", name="bpp-glp", extra_env={
            "LAKOU_REGISTRY_URL": glp.url, "LAKOU_COUNTRY": "GLP", "LAKOU_CITY": GLP_CITY,
            "LAKOU_BPP_CATALOGUE": str(catalogue)})
        net.wait_ready(gateway, bap, bpp)
        yield {"net": net, "mtq": mtq, "glp": glp, "gateway": gateway, "bap": bap, "bpp": bpp, "keys": keys}
    finally:
        net.stop_all()


def test_each_participant_is_registered_in_its_own_territory_only(territories: dict[str, Any]) -> None:
    mtq, glp = territories["mtq"].url, territories["glp"].url

    def local(base: str) -> set[str]:
        # Asked as a partner would (hops=1): the registry's own tables only.
        answer = httpx.post(f"{base}/lookup", json={}, headers={"X-Lakou-Federation-Hops": "1"}, timeout=10)
        return {e["subscriber_id"] for e in answer.json()}

    assert local(mtq) == {"gateway.lakou.localhost", "bap.lakou.localhost"}
    assert local(glp) == {"bpp-glp.lakou.localhost"}
    # Martinique answers for the Guadeloupe BPP, marked as Guadeloupe's, and signs the answer itself.
    answer = httpx.post(f"{mtq}/lookup", json={"type": "BPP", "city": GLP_CITY, "country": "GLP"}, timeout=10)
    [entry] = answer.json()
    assert entry["subscriber_id"] == "bpp-glp.lakou.localhost"
    assert entry["origin_registry"] == "registry-glp.lakou.localhost" and entry["country"] == "GLP"
    verify_lookup_response(answer.content, answer.headers[RESPONSE_SIGNATURE_HEADER],
                           load_verify_key(territories["keys"]["registry"]["signing_public_key"]),
                           registry_id="registry.lakou.localhost")


def test_a_martinique_citizen_orders_from_a_guadeloupe_shop(territories: dict[str, Any]) -> None:
    try:
        result = run_journey(territories["bap"].url, query="confiture goyave", lang="fr", quantity=3, timeout=20,
                             console=Console(file=io.StringIO(), width=120), city=GLP_CITY, country="GLP")
    except JourneyFailed as failure:
        pytest.fail(f"journey failed at {failure.step}: {failure.reason}\n{territories['net'].logs()}")
    offer = result["offer"]
    assert offer["bpp_id"] == "bpp-glp.lakou.localhost"
    assert offer["provider"]["city"] == GLP_CITY and offer["provider"]["city_name"] == "Pointe-à-Pitre"
    order = httpx.get(f"{territories['bpp'].url}/api/v1/orders/{result['order_id']}",
                      headers={"Authorization": f"Bearer {territories['net'].bpp_admin_token}"}, timeout=5)
    assert order.status_code == 200, order.text
    body = order.json()
    assert body["bap_id"] == "bap.lakou.localhost"
    assert {(line["id"], line["quantity"]) for line in body["items"]} == {("confiture-goyave", 3)}
    assert body["total"] in ("19.50", "19.5") and result["status"]["order_id"] == result["order_id"]

    # The BPP verified the Martinique BAP's signatures: its requests were accepted (not 401),
    # with the BAP's key found only through the Guadeloupe registry's partner.
    accepted = territories["bpp"].rows("SELECT action FROM inbound_message WHERE sender_id = 'bap.lakou.localhost' AND response_status = 200")
    assert {"select", "init", "confirm", "status"} <= {action for (action,) in accepted}, accepted
    # The BAP searched Guadeloupe (its own country is MTQ); the shop is shown as in Guadeloupe.
    [(search,)] = territories["bap"].rows("SELECT body FROM outbox_message WHERE action = 'search'")
    assert json.loads(search)["context"]["location"] == {"country": {"code": "GLP"}, "city": {"code": GLP_CITY}}
    [(on_search,)] = territories["bpp"].rows("SELECT body FROM outbox_message WHERE action = 'on_search'")
    [provider] = json.loads(on_search)["message"]["catalog"]["providers"]
    assert provider["locations"][0]["country"]["code"] == "GLP" and provider["locations"][0]["state"]["code"] == "971"
    # The search reached it through the Martinique gateway, which found it through federation.
    assert territories["gateway"].rows("SELECT count(*) FROM outbox_message WHERE action = 'search'")[0][0] >= 1
