"""The search event stream, read the way an app reads it: a real HTTP client (httpx, streaming)
against a real BAP process on 127.0.0.1, with real BPPs answering through a real gateway.

`paged` answers a search in several on_search parts (small pages); `later` answers 1.5 s later
(its on_search held by a `DelayingProxy`, still within the search's ttl): offers must reach the app
as each answer lands, not at the end; `end` closes the stream; a reconnect with `Last-Event-ID`
resumes where the app left off, without repeating anything.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import free_port
from network import DelayingProxy, Network
from test_bpp_merchant_api import item, profile

SEARCH_TTL = 5
LATER_BY = 1.5


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    net = Network(tmp_path_factory.mktemp("bap-sse"))
    later_port = free_port()
    proxy = DelayingProxy(upstream_port=later_port).start()
    try:
        registry = net.start("registry")
        net.wait_ready(registry)
        gateway = net.start("gateway")
        paged = net.start("bpp", name="paged", extra_env={
            "LAKOU_BPP_CATALOGUE": "demo", "LAKOU_BPP_ON_SEARCH_VIA": "direct", "LAKOU_BPP_SEARCH_PAGE_ITEMS": "1"})
        later = net.start("bpp", name="later", port=later_port, extra_env={
            "LAKOU_BPP_CATALOGUE": "demo", "LAKOU_BPP_ON_SEARCH_VIA": "direct", "LAKOU_PUBLIC_URL": proxy.url,
            "HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""})
        bap = net.start("bap")
        net.wait_ready(gateway, paged, later, bap)
        proxy.delays["/on_search"] = LATER_BY
        # A merchant of its own on `paged`, to move an order on (the demo catalogue has no API key).
        admin = {"Authorization": f"Bearer {net.bpp_admin_token}"}
        created = httpx.post(f"{paged.url}/api/v1/admin/merchants", json={"name": "Kaz à Ti-Jean"}, headers=admin)
        assert created.status_code == 201, created.text
        merchant = {"Authorization": f"Bearer {created.json()['api_key']}"}
        made = httpx.post(f"{paged.url}/api/v1/merchant/providers", headers=merchant,
                          json=profile("kaz-tijean", descriptor={"fr": {"name": "Kaz à Ti-Jean"}}))
        assert made.status_code == 201, made.text
        put = httpx.put(f"{paged.url}/api/v1/merchant/providers/kaz-tijean/items/kaz-tijean-accras", headers=merchant,
                        json=item("Accras de morue", "Cod fritters", stock=40))
        assert put.status_code == 201, put.text
        yield {"net": net, "bap": bap, "paged": "paged.lakou.localhost", "later": "later.lakou.localhost",
               "paged_url": paged.url, "merchant": merchant, "proxy": proxy}
    finally:
        net.stop_all()
        proxy.stop()


def _session(network: dict[str, Any]) -> dict[str, str]:
    token = httpx.post(network["bap"].url + "/api/v1/sessions", timeout=10).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def _search(network: dict[str, Any], auth: dict[str, str], query: str) -> str:
    created = httpx.post(network["bap"].url + "/api/v1/searches", headers=auth, timeout=10,
                         json={"query": query, "lang": "fr", "ttl_seconds": SEARCH_TTL})
    assert created.status_code == 202, created.text
    return created.json()["id"]


def _events(response: httpx.Response, started: float) -> Iterator[dict[str, Any]]:
    """Parse a text/event-stream as it arrives: {"id", "event", "data", "at" (s since `started`)}."""
    event: dict[str, Any] = {}
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data or event:
                yield {**event, "data": json.loads("\n".join(data)) if data else None,
                       "at": time.monotonic() - started}
            event, data = {}, []
        elif line.startswith(":"):
            continue  # a comment: stream open, keep-alive
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field in ("id", "event"):
                event[field] = value


def _stream(network: dict[str, Any], auth: dict[str, str], search_id: str, **headers: str) -> Any:
    return httpx.stream("GET", network["bap"].url + f"/api/v1/searches/{search_id}/events",
                        headers={**auth, **headers}, timeout=httpx.Timeout(10, read=SEARCH_TTL + 10))


def test_offers_stream_in_as_bpps_answer_then_end(network: dict[str, Any]) -> None:
    auth = _session(network)
    started = time.monotonic()
    search_id = _search(network, auth, "rhum")
    # `later`'s answer is held on the way until `paged`'s first offers have reached the app.
    proxy: DelayingProxy = network["proxy"]
    release = threading.Event()
    proxy.holds["/on_search"] = release
    events: list[dict[str, Any]] = []
    try:
        with _stream(network, auth, search_id) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in _events(response, started):
                events.append(event)
                if event["event"] == "offers" and event["data"]["bpp_id"] == network["paged"]:
                    release.set()
    finally:
        proxy.holds.pop("/on_search", None)
        release.set()
    *offers, end = events
    assert end["event"] == "end" and end["data"]["complete"] is True
    assert offers and all(e["event"] == "offers" and e["data"]["offers"] for e in offers)
    ids = [int(e["id"]) for e in offers]
    assert ids == sorted(set(ids)), ids  # increasing cursors, no event twice
    by_bpp = {e["data"]["bpp_id"] for e in offers}
    assert by_bpp == {network["paged"], network["later"]}, by_bpp
    # Each answer as it lands: `paged`'s while `later`'s was still held, then `later`'s, before the end.
    first_paged = min(i for i, e in enumerate(offers) if e["data"]["bpp_id"] == network["paged"])
    first_later = min(i for i, e in enumerate(offers) if e["data"]["bpp_id"] == network["later"])
    assert first_paged < first_later
    assert any(url.endswith("/on_search") for url in proxy.held)
    # The paged BPP's parts came as several events, their offers never repeated.
    paged_offers = [o["item"]["id"] for e in offers if e["data"]["bpp_id"] == network["paged"]
                    for o in e["data"]["offers"]]
    assert len([e for e in offers if e["data"]["bpp_id"] == network["paged"]]) >= 2
    assert len(paged_offers) == len(set(paged_offers))
    # The stream shows exactly what the results show.
    results = httpx.get(network["bap"].url + f"/api/v1/searches/{search_id}/results", headers=auth,
                        params={"page_size": 100}, timeout=10).json()
    streamed = {(o["bpp_id"], o["provider"]["id"], o["item"]["id"]) for e in offers for o in e["data"]["offers"]}
    assert streamed == {(o["bpp_id"], o["provider"]["id"], o["item"]["id"]) for o in results["offers"]}
    assert end["data"]["cursor"] == results["cursor"]


def test_a_reconnect_with_last_event_id_resumes_without_repeats(network: dict[str, Any]) -> None:
    auth = _session(network)
    started = time.monotonic()
    search_id = _search(network, auth, "rhum")
    # The app reads one event, then loses the connection.
    with _stream(network, auth, search_id) as response:
        first = next(_events(response, started))
    assert first["event"] == "offers" and first["id"]
    # It reconnects, saying what it has seen last: the rest comes, and nothing it already had.
    with _stream(network, auth, search_id, **{"Last-Event-ID": first["id"]}) as response:
        assert response.status_code == 200
        rest = list(_events(response, started))
    assert rest[-1]["event"] == "end"
    resumed = [e for e in rest if e["event"] == "offers"]
    assert all(int(e["id"]) > int(first["id"]) for e in resumed)
    keys = [(o["bpp_id"], o["provider"]["id"], o["item"]["id"]) for e in [first, *resumed] for o in e["data"]["offers"]]
    assert len(keys) == len(set(keys)), "an offer was sent twice"
    # Together they are the whole answer: the same as a fresh stream read after the end.
    with _stream(network, auth, search_id) as response:
        replay = [e for e in _events(response, started) if e["event"] == "offers"]
    assert {k for e in replay for k in ((o["bpp_id"], o["provider"]["id"], o["item"]["id"])
                                          for o in e["data"]["offers"])} == set(keys)
    # After the end, a reconnect from the last event gets only `end`.
    with _stream(network, auth, search_id, **{"Last-Event-ID": rest[-1]["data"]["cursor"]}) as response:
        assert [e["event"] for e in _events(response, started)] == ["end"]


def test_the_stream_is_refused_cleanly_to_others(network: dict[str, Any]) -> None:
    auth = _session(network)
    search_id = _search(network, auth, "rhum")
    stranger = _session(network)
    with _stream(network, stranger, search_id, **{"Accept-Language": "es"}) as response:
        assert response.status_code == 404
        error = json.loads(response.read())["error"]
        assert error["code"] == "not_found" and error["message"].startswith("No encontrado")
    with _stream(network, {}, search_id) as response:
        assert response.status_code == 401
    with _stream(network, auth, search_id, **{"Last-Event-ID": "not-a-cursor"}) as response:
        assert response.status_code == 422 and json.loads(response.read())["error"]["code"] == "invalid_request"


def test_an_order_stream_receives_the_merchants_unsolicited_status(network: dict[str, Any]) -> None:
    auth = _session(network)
    api = network["bap"].url + "/api/v1"
    search_id = _search(network, auth, "accras")
    offer = None
    deadline = time.monotonic() + SEARCH_TTL + 5
    while offer is None and time.monotonic() < deadline:
        page = httpx.get(f"{api}/searches/{search_id}/results", headers=auth, params={"wait_ms": 2000},
                         timeout=10).json()
        offer = next((o for o in page["offers"] if o["provider"]["id"] == "kaz-tijean"), None)
    assert offer is not None
    cart = httpx.post(f"{api}/carts", headers=auth, timeout=20, json={
        "search_id": search_id, "bpp_id": offer["bpp_id"], "provider_id": "kaz-tijean",
        "items": [{"id": offer["item"]["id"], "quantity": 2}], "wait_ms": 10000})
    assert cart.status_code == 201, cart.text
    cart_id = cart.json()["id"]
    checkout = httpx.post(f"{api}/carts/{cart_id}/checkout", headers=auth, timeout=20, json={
        "billing": {"name": "Ti-Paul Céleste", "phone": "+596696112233", "email": "tipaul@example.mq"},
        "fulfillment": {"type": "pickup"}, "wait_ms": 10000})
    assert checkout.status_code == 200, checkout.text
    ordered = httpx.post(f"{api}/carts/{cart_id}/order", headers=auth, timeout=20, json={
        "accept_total": checkout.json()["quote"]["total"]["value"], "wait_ms": 10000})
    assert ordered.status_code == 201, ordered.text
    order_id = ordered.json()["order_id"]

    started = time.monotonic()
    with httpx.stream("GET", f"{api}/orders/{cart_id}/events", headers=auth,
                      timeout=httpx.Timeout(10, read=20)) as response:
        assert response.status_code == 200
        events = _events(response, started)
        confirmed = next(events)  # what happened before the app connected: the on_confirm
        assert confirmed["event"] == "order" and confirmed["data"]["update"] == "on_confirm"
        # The merchant packs the order in its back office: the BPP tells the BAP on its own.
        moved = httpx.post(f"{network['paged_url']}/api/v1/merchant/orders/{order_id}/state",
                           headers=network["merchant"], json={"fulfillment_state": "PACKED"}, timeout=10)
        assert moved.status_code == 200, moved.text
        packed = next(events)
    assert packed["event"] == "order" and packed["data"]["update"] == "on_status"
    assert packed["data"]["solicited"] is False
    assert packed["data"]["order"]["state"]["code"] == "PACKED"
    assert int(packed["id"]) > int(confirmed["id"])
    # A reconnect from the confirmation gets the packing, and only it.
    with httpx.stream("GET", f"{api}/orders/{cart_id}/events", headers={**auth, "Last-Event-ID": confirmed["id"]},
                      timeout=httpx.Timeout(10, read=20)) as response:
        resumed = next(_events(response, started))
    assert resumed["id"] == packed["id"]
