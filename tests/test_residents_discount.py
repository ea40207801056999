"""A residents' discount checked by the BPP before on_confirm (issue 7, bpp.offers).

A BPP whose catalogue file gives one provider `resident_discount_percent` lists a Beckn Offer on it;
select/init/confirm with `order.offers` carry a negative breakup line, and init/confirm require a
MartiniqueResidentCredential presentation (SD-JWT VC + KB-JWT, did.sdjwt) from a trusted issuer,
bound to this BPP (aud) and the transaction (nonce), for a Martinique commune (972xx), within its
validity dates and not revoked.

Status: a real Martinique Connect on 127.0.0.1 (tests/connect_support.py) issues the credential to a
holder (tests/connect_holder.py) and revokes it when the citizen revokes the issuance; the BPP fetches
Connect's `/status/1` (plain http to loopback: the test network's registry is http, i.e. test mode).
The network here sets LAKOU_BPP_STATUS_LIST_CACHE_SECONDS=0, so that a revocation is seen by the very
next order; the cache itself is tested on StatusLists against a small real HTTP server. Credentials of
the locally made issuers carry no `status` claim: accepted (did.verify's policy, see bpp.offers).
A merchant sets the discount through the merchant API too."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from jwcrypto import jwk
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bpp.catalogue import DEMO_CATALOGUE
from bpp.offers import StatusLists, StatusUnavailable, cache_seconds
from bpp.tables import BppOrder
from conftest import serve_app
from did import sdjwt, vc
from did.connect.issuance import Issuer
from did.keys import generate_key
from did.methods import did_jwk_from_jwk
from did.status import BitstringStatusList, status_entry, status_list_credential
from test_bpp_merchant_api import Merchant, fields, profile
from test_bpp_service import BILLING, PAY_AT_PICKUP, Network, lang_tags, network, search, spec  # noqa: F401
from test_conformance import Spec
from tests.connect_holder import Holder
from tests.connect_support import Provider, code_flow, provider

PROVIDER = "jardin-lamentin"
ITEM = "christophine-kg"  # 2.80 EUR the kg
ISSUER = jwk.JWK.generate(kty="EC", crv="P-256")
ISSUER_DID = did_jwk_from_jwk(ISSUER)
STRANGER = jwk.JWK.generate(kty="EC", crv="P-256")
STRANGER_DID = did_jwk_from_jwk(STRANGER)
HOLDER = jwk.JWK.generate(kty="EC", crv="P-256")
# An Ed25519 issuer (status lists are eddsa-jcs-2022) whose status lists the tests serve themselves.
LIST_ISSUER = generate_key("Ed25519")
LIST_ISSUER_DID = did_jwk_from_jwk(LIST_ISSUER)
FORGER = generate_key("Ed25519")
FORGER_DID = did_jwk_from_jwk(FORGER)
COULD_NOT_CHECK = "could not check the resident credential's status"


# ------------------------------------------------------------------------------ a status list server


class ListServer:
    """Serves status list documents (or anything) at `/lists/<name>` and counts the requests."""

    def __init__(self) -> None:
        self.documents: dict[str, tuple[Any, dict[str, str], int]] = {}
        self.hits: dict[str, int] = {}
        self.url = ""

    def put(self, name: str, document: Any, *, headers: dict[str, str] | None = None, status: int = 200) -> str:
        self.documents[name] = (document, headers if headers is not None else {"Cache-Control": "max-age=60"},
                                status)
        return f"{self.url}/lists/{name}"

    def app(self) -> Starlette:
        async def serve(request: Request) -> Response:
            name = request.path_params["name"]
            self.hits[name] = self.hits.get(name, 0) + 1
            if name not in self.documents:
                return Response(status_code=404)
            document, headers, status = self.documents[name]
            if isinstance(document, bytes):
                return Response(document, status_code=status, headers=headers, media_type="application/json")
            return JSONResponse(document, status_code=status, headers=headers)

        return Starlette(routes=[Route("/lists/{name}", serve)])


@contextmanager
def list_server() -> Iterator[ListServer]:
    server = ListServer()
    with serve_app(server.app()) as url:
        server.url = url
        yield server


def signed_list(url: str, *, revoked: tuple[int, ...] = (), issuer: str = LIST_ISSUER_DID,
                key: jwk.JWK = LIST_ISSUER, vm: str | None = None) -> dict[str, Any]:
    bits = BitstringStatusList()
    for index in revoked:
        bits.set(index)
    return vc.add_proof(status_list_credential(url, issuer, bits), key, vm or f"{issuer}#0")


# ------------------------------------------------------------------------------ Martinique Connect


# Connect's credential issuer key derives from its secret (did.connect.issuance.Issuer): the BPP can
# trust its DID before it starts.
CONNECT_SECRET = "residents-connect-secret-" + "r" * 20
CONNECT_DID = Issuer(SimpleNamespace(secret=CONNECT_SECRET.encode())).did


def connect_did(op: Provider) -> str:
    return httpx.get(f"{op.url}/.well-known/openid-credential-issuer", timeout=10).json()["issuer_did"]


async def issued_credential(op: Provider) -> tuple[Holder, httpx.Cookies, int]:
    """Joséphine (commune 97209) signs in, asks for an offer, her wallet redeems it. Returns the holder,
    her browser's session cookies and the id of the issuance's consent record."""
    async with httpx.AsyncClient(timeout=10) as browser, httpx.AsyncClient(timeout=10) as wallet:
        await code_flow(op, browser=browser)
        csrf = (await browser.get(f"{op.url}/api/wallet/csrf")).json()["csrf"]
        made = await browser.post(f"{op.url}/api/wallet/offer", json={}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 200, made.text
        holder = Holder()
        await holder.redeem(wallet, made.json()["credential_offer"])
        consents = (await browser.get(f"{op.url}/account/consents", headers={"Accept": "application/json"})).json()
        newest = next(r for r in consents["consents"] if r["client_id"] is None)  # newest first: this issuance
        assert newest["revoked_at"] is None
        return holder, browser.cookies, newest["id"]


async def revoke_issuance(op: Provider, cookies: httpx.Cookies, consent_id: int) -> None:
    """The citizen revokes the issuance on her consents page (JSON): Connect sets the credential's bit."""
    async with httpx.AsyncClient(timeout=10, cookies=cookies) as browser:
        csrf = (await browser.get(f"{op.url}/api/wallet/csrf")).json()["csrf"]
        done = await browser.post(f"{op.url}/account/consents/{consent_id}/revoke", headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200 and done.json()["revoked_at"], done.text


# ------------------------------------------------------------------------------ the BPP network


@pytest.fixture(scope="module")
def net(spec: Spec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:  # noqa: F811
    data_dir = tmp_path_factory.mktemp("residents")
    catalogue = json.loads(DEMO_CATALOGUE.read_text(encoding="utf-8"))
    for provider in catalogue["providers"]:
        if provider["id"] == PROVIDER:
            provider["resident_discount_percent"] = 10
    path = data_dir / "catalogue.json"
    path.write_text(json.dumps(catalogue, ensure_ascii=False), encoding="utf-8")
    with network(spec, data_dir, f"sqlite+aiosqlite:///{data_dir / 'lakou.db'}", bpp_catalogue=str(path),
                 bpp_trusted_resident_issuers=f"did:key:z6MkUnrelated,{ISSUER_DID},{LIST_ISSUER_DID},"
                                              f"{CONNECT_DID}",
                 bpp_status_list_cache_seconds=0) as fresh:
        yield fresh


def credential(commune: str = "97209", *, issuer: jwk.JWK = ISSUER, iss: str = ISSUER_DID, **dates_or_status: Any) -> str:
    return sdjwt.issue({"commune_insee": commune, "age_over_18": True, "given_name": sdjwt.SD("Léa")},
                       issuer_key=issuer, iss=iss, vct="MartiniqueResidentCredential", holder_jwk=HOLDER,
                       **dates_or_status)


def presented(sd_jwt: str, *, aud: str, nonce: str) -> str:
    return sdjwt.present(sd_jwt, [], holder_key=HOLDER, aud=aud, nonce=nonce)


def message(presentation: str | None, *, offer: bool = True, quote: str | None = None) -> dict[str, Any]:
    fulfillment: dict[str, Any] = {"type": "Self-Pickup"}
    if presentation is not None:
        fulfillment["customer"] = {"person": {"creds": [{
            "id": f"urn:uuid:{uuid.uuid4()}", "type": "VerifiableCredential",
            "url": f"data:application/dc+sd-jwt,{presentation}"}]}}
    order: dict[str, Any] = {
        "provider": {"id": PROVIDER}, "items": [{"id": ITEM, "quantity": {"selected": {"count": 5}}}],
        "billing": BILLING, "payments": PAY_AT_PICKUP, "fulfillments": [fulfillment],
    }
    if offer:
        order["offers"] = [{"id": f"residents-{PROVIDER}"}]
    if quote is not None:
        order["quote"] = {"price": {"currency": "EUR", "value": quote}}
    return {"order": order}


def orders_of(net: Network, transaction_id: str) -> int:
    return net.query(select(func.count()).select_from(BppOrder).where(BppOrder.transaction_id == transaction_id))[0][0]


def test_on_search_lists_the_residents_offer_in_the_shoppers_language(net: Network) -> None:
    answer = search(net, {"provider": {"id": PROVIDER}}, lang="en")
    providers = {p["id"]: p for p in answer["message"]["catalog"]["providers"]}
    offer, = providers[PROVIDER]["offers"]
    assert offer["id"] == f"residents-{PROVIDER}"
    assert offer["descriptor"]["name"] == "Residents' discount: -10%"
    assert offer["tags"] == [{"descriptor": {"code": "lakou:requires-credential"}, "list": [
        {"descriptor": {"code": "vct"}, "value": "MartiniqueResidentCredential"},
        {"descriptor": {"code": "claim"}, "value": "commune_insee"}]}]
    assert all("offers" not in p for pid, p in providers.items() if pid != PROVIDER)


def test_select_quotes_the_discount_and_confirm_with_a_valid_presentation_applies_it(net: Network) -> None:
    txn = str(uuid.uuid4())
    selected = net.call("select", message(None), transaction_id=txn)
    quote = selected["message"]["order"]["quote"]
    assert quote["price"]["value"] == "12.60"  # 5 x 2.80 = 14.00, less 10 %
    assert quote["breakup"][-1]["price"]["value"] == "-1.40"
    proof = presented(credential(), aud=net.bpp_id, nonce=txn)
    initialised = net.call("init", message(proof), transaction_id=txn)
    assert "error" not in initialised, initialised
    assert initialised["message"]["order"]["quote"]["price"]["value"] == "12.60"
    confirmed = net.call("confirm", message(proof, quote="12.60"), transaction_id=txn)
    assert "error" not in confirmed, confirmed
    assert Decimal(confirmed["message"]["order"]["quote"]["price"]["value"]) == Decimal("12.60")
    assert orders_of(net, txn) == 1
    # The presentation (the citizen's disclosed claims) is checked, then neither echoed nor kept.
    assert "creds" not in json.dumps(confirmed) and proof.split("~")[0] not in json.dumps(confirmed)
    [(stored,)] = net.query(select(BppOrder.fulfillment).where(BppOrder.transaction_id == txn))
    assert "creds" not in json.dumps(stored) and proof.split("~")[0] not in json.dumps(stored)


def test_an_order_without_the_offer_needs_no_credential(net: Network) -> None:
    txn = str(uuid.uuid4())
    confirmed = net.call("confirm", message(None, offer=False), transaction_id=txn)
    assert "error" not in confirmed, confirmed
    assert confirmed["message"]["order"]["quote"]["price"]["value"] == "14.00"


def test_an_unknown_offer_is_an_invalid_request(net: Network) -> None:
    answer = net.call("select", {"order": {**message(None)["order"], "offers": [{"id": "residents-other"}]}})
    assert answer["error"]["code"] == "30000" and answer["error"]["paths"] == "message.order.offers[0].id"


def _refused(net: Network, action: str, presentation_for: Any, words: str) -> str:
    txn = str(uuid.uuid4())
    answer = net.call(action, message(presentation_for(txn)), transaction_id=txn)
    assert "message" not in answer, answer
    assert answer["error"]["code"] == "40000"
    assert answer["error"]["paths"] == "message.order.fulfillments[0].customer.person.creds"
    assert words in answer["error"]["message"], answer["error"]["message"]
    assert orders_of(net, txn) == 0
    return answer["error"]["message"]


@pytest.mark.parametrize("action", ["init", "confirm"])
def test_no_presentation_is_40000_and_no_order(net: Network, action: str) -> None:
    _refused(net, action, lambda txn: None, "needs a MartiniqueResidentCredential presentation")


@pytest.mark.parametrize("case, words", [
    ("untrusted-issuer", "not trusted"),
    ("wrong-aud", "aud"),
    ("wrong-nonce", "nonce"),
    ("commune-outside-martinique", "not a Martinique commune"),
    ("not-a-data-url", "must be a data:application/dc+sd-jwt"),
    ("expired", "expired"),
    ("not-yet-valid", "not yet valid"),
    ("issued-in-the-future", "issued in the future"),
    ("token-status-list", COULD_NOT_CHECK),
])
def test_invalid_presentations_are_40000_and_no_order(net: Network, case: str, words: str) -> None:
    def make(txn: str) -> str:
        match case:
            case "untrusted-issuer":
                return presented(credential(issuer=STRANGER, iss=STRANGER_DID), aud=net.bpp_id, nonce=txn)
            case "wrong-aud":
                return presented(credential(), aud="other-bpp.lakou.test", nonce=txn)
            case "wrong-nonce":
                return presented(credential(), aud=net.bpp_id, nonce=str(uuid.uuid4()))
            case "commune-outside-martinique":
                return presented(credential("97105"), aud=net.bpp_id, nonce=txn)
            case "expired":
                now = int(time.time())
                return presented(credential(iat=now - 400 * 86400, exp=now - 3600), aud=net.bpp_id, nonce=txn)
            case "not-yet-valid":
                return presented(credential(nbf=int(time.time()) + 3600), aud=net.bpp_id, nonce=txn)
            case "issued-in-the-future":
                return presented(credential(iat=int(time.time()) + 3600), aud=net.bpp_id, nonce=txn)
            case "token-status-list":  # an IETF Token Status List reference: not one this BPP can read
                status = sdjwt.status_list_reference("https://status.example/1", 3)
                return presented(credential(status=status), aud=net.bpp_id, nonce=txn)
        return ""

    if case == "not-a-data-url":
        txn = str(uuid.uuid4())
        body = message("x")
        body["order"]["fulfillments"][0]["customer"]["person"]["creds"][0]["url"] = "https://example.org/vc"
        answer = net.call("confirm", body, transaction_id=txn)
        assert answer["error"]["code"] == "40000" and words in answer["error"]["message"]
        assert orders_of(net, txn) == 0
        return
    _refused(net, "confirm", make, words)


def test_init_in_french_names_the_discount_line(net: Network) -> None:
    txn = str(uuid.uuid4())
    body = message(presented(credential(), aud=net.bpp_id, nonce=txn))
    body["order"]["tags"] = lang_tags("fr")
    answer = net.call("init", body, transaction_id=txn)
    assert answer["message"]["order"]["quote"]["breakup"][-1]["title"] == "Remise résidents"


# ------------------------------------------------------------------------------ through the BAP's cart API


def test_the_bap_carries_the_presentation_through_checkout_and_order(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A citizen's app checks out with `offer_id` and its wallet's presentation (aud = the cart's
    bpp_id, nonce = the cart id): the BAP sends it at init and again at confirm."""
    import httpx
    from network import Network as Processes

    root = tmp_path_factory.mktemp("residents-bap")
    catalogue = json.loads(DEMO_CATALOGUE.read_text(encoding="utf-8"))
    for provider in catalogue["providers"]:
        if provider["id"] == PROVIDER:
            provider["resident_discount_percent"] = 10
    path = root / "catalogue.json"
    path.write_text(json.dumps(catalogue, ensure_ascii=False), encoding="utf-8")
    network = Processes(root / "net")
    try:
        registry = network.start("registry")
        network.wait_ready(registry)
        gateway = network.start("gateway")
        bpp = network.start("bpp", extra_env={"LAKOU_BPP_CATALOGUE": str(path), "LAKOU_BPP_ON_SEARCH_VIA": "direct",
                                              "LAKOU_BPP_TRUSTED_RESIDENT_ISSUERS": ISSUER_DID})
        bap = network.start("bap")
        network.wait_ready(gateway, bpp, bap)
        token = httpx.post(bap.url + "/api/v1/sessions", timeout=10).json()["token"]
        with httpx.Client(base_url=bap.url + "/api/v1", timeout=30, headers={"Authorization": f"Bearer {token}"}) \
                as client:
            started = client.post("/searches", json={"city": "insee:97213", "lang": "en", "ttl_seconds": 5})
            assert started.status_code == 202, started.text
            search_id = started.json()["transaction_id"]
            offers: list[dict[str, Any]] = []
            for _ in range(20):
                page = client.get(f"/searches/{search_id}/results", params={"wait_ms": 2000, "page_size": 100})
                offers = [o for o in page.json()["offers"] if o["provider"]["id"] == PROVIDER]
                if offers or page.json()["complete"]:
                    break
            assert offers
            bpp_id = offers[0]["bpp_id"]
            cart = client.post("/carts", json={"search_id": search_id, "bpp_id": bpp_id, "provider_id": PROVIDER,
                                               "items": [{"id": ITEM, "quantity": 5}], "wait_ms": 15000})
            assert cart.status_code == 201, cart.text
            cart_id = cart.json()["id"]
            proof = presented(credential(), aud=bpp_id, nonce=cart_id)
            checkout = client.post(f"/carts/{cart_id}/checkout", json={
                "billing": {"name": "Léa Joseph", "phone": "+596696123456", "email": "lea.joseph.residents@example.mq"},
                "fulfillment": {"type": "pickup"},
                "payment": {"type": "on_fulfillment"}, "offer_id": f"residents-{PROVIDER}",
                "resident_presentation": proof, "wait_ms": 15000})
            assert checkout.status_code == 200, checkout.text
            assert checkout.json()["quote"]["total"]["value"] == "12.60"
            ordered = client.post(f"/carts/{cart_id}/order", json={"accept_total": "12.60", "wait_ms": 15000})
            assert ordered.status_code == 201, ordered.text
            order_id = ordered.json()["order_id"]
            (total,) = bpp.rows(f"SELECT total FROM bpp_order WHERE id = '{order_id}'")[0]
            assert Decimal(str(total)) == Decimal("12.60")
    finally:
        network.stop_all()


# ------------------------------------------------------------------------------ status, with a real Connect


def _confirmed(net: Network, presentation_for: Any) -> dict[str, Any]:
    txn = str(uuid.uuid4())
    answer = net.call("confirm", message(presentation_for(txn), quote="12.60"), transaction_id=txn)
    assert "error" not in answer, answer
    assert answer["message"]["order"]["quote"]["price"]["value"] == "12.60"
    assert orders_of(net, txn) == 1
    return answer


def test_a_connect_credential_gets_the_discount_until_revoked_and_not_while_connect_is_down(
        net: Network, tmp_path: Path) -> None:
    with provider(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'connect.db'}", connect_secret=CONNECT_SECRET) as connect:
        assert connect_did(connect) == CONNECT_DID
        holder, cookies, consent_id = asyncio.run(issued_credential(connect))
        other = asyncio.run(issued_credential(connect))[0]
        # The real credential: Connect's status entry, its did:jwk issuer; the BPP fetches /status/1.
        status = sdjwt.verify(holder.credential, require_kb=False).claims["status"]  # type: ignore[arg-type]
        assert status["bitstring_status_list_entry"]["statusListCredential"] == f"{connect.url}/status/1"
        _confirmed(net, lambda txn: holder.present([], nonce=txn, aud=net.bpp_id))

        # Joséphine revokes that issuance at Connect: refused at the next init and confirm.
        asyncio.run(revoke_issuance(connect, cookies, consent_id))
        for action in ("init", "confirm"):
            _refused(net, action, lambda txn: holder.present([], nonce=txn, aud=net.bpp_id),
                     "the resident credential has been revoked by its issuer")
        _confirmed(net, lambda txn: other.present([], nonce=txn, aud=net.bpp_id))  # her other credential

    # Connect is down: its status list cannot be fetched, and the BPP refuses rather than guess.
    for action in ("init", "confirm"):
        _refused(net, action, lambda txn: other.present([], nonce=txn, aud=net.bpp_id),
                 f"{COULD_NOT_CHECK}: fetching the status list {connect.url}/status/1 failed")


@pytest.mark.parametrize("case, words", [
    ("signed-by-another-key", "invalid signature"),
    ("vm-of-another-did", "does not belong to the issuer"),
    ("another-issuers-list", "not issued by the credential's issuer"),
    ("list-not-found", "HTTP 404"),
    ("not-json", "not JSON"),
    ("bit-set", "has been revoked by its issuer"),
])
def test_a_status_list_that_does_not_clear_the_credential_is_refused(net: Network, case: str, words: str) -> None:
    with list_server() as lists:
        url = f"{lists.url}/lists/{case}"
        match case:
            case "signed-by-another-key":  # claims to be the issuer's list, signed with another key
                lists.put(case, signed_list(url, key=FORGER, vm=f"{LIST_ISSUER_DID}#0"))
            case "vm-of-another-did":
                lists.put(case, signed_list(url, key=FORGER, vm=f"{FORGER_DID}#0"))
            case "another-issuers-list":  # well signed, by someone else
                lists.put(case, signed_list(url, issuer=FORGER_DID, key=FORGER))
            case "not-json":
                lists.put(case, b"<html>maintenance</html>")
            case "bit-set":
                lists.put(case, signed_list(url, revoked=(7,)))
        status = {"bitstring_status_list_entry": status_entry(url, 7)}
        sd_jwt = credential(issuer=LIST_ISSUER, iss=LIST_ISSUER_DID, status=status)
        refusal = _refused(net, "confirm", lambda txn: presented(sd_jwt, aud=net.bpp_id, nonce=txn), words)
        assert refusal.startswith(COULD_NOT_CHECK) is (case != "bit-set"), refusal
        # The same credential, its list now clear and well signed: accepted (the refusal was the list's).
        lists.put(case, signed_list(url))
        _confirmed(net, lambda txn: presented(sd_jwt, aud=net.bpp_id, nonce=txn))


# ------------------------------------------------------------------------------ the status list fetcher


def test_status_lists_are_reused_for_their_max_age_at_most_the_cap_and_fetched_once_at_a_time() -> None:
    async def run(lists: ListServer) -> None:
        fetcher = StatusLists(allow_loopback_http=True, max_cache_seconds=300)
        hour = lists.put("hour", signed_list("x"), headers={"Cache-Control": "public, max-age=3600"})
        minute = lists.put("minute", signed_list("x"), headers={"Cache-Control": "max-age=60"})
        never = lists.put("never", signed_list("x"), headers={"Cache-Control": "no-store"})
        # Five orders checking at once while nothing is cached: one fetch.
        documents = await asyncio.gather(*(fetcher.get(minute) for _ in range(5)))
        assert lists.hits["minute"] == 1 and all(d == documents[0] for d in documents)
        await fetcher.get(minute)
        assert lists.hits["minute"] == 1  # a hot path does not refetch
        until = fetcher.cached_until(minute)
        assert until is not None and 0 < until - time.monotonic() <= 60
        await fetcher.get(hour)
        until = fetcher.cached_until(hour)
        assert until is not None and until - time.monotonic() <= 300  # the cap, not the issuer's hour
        await fetcher.get(never)
        await fetcher.get(never)
        assert lists.hits["never"] == 2 and fetcher.cached_until(never) is None
        # A failure is not cached: once the list is back, the next check gets it.
        back = f"{lists.url}/lists/back"
        with pytest.raises(StatusUnavailable, match="HTTP 404"):
            await fetcher.get(back)
        lists.put("back", signed_list("x"))
        assert (await fetcher.get(back))["type"] == ["VerifiableCredential", "BitstringStatusListCredential"]
        # Caching off (LAKOU_BPP_STATUS_LIST_CACHE_SECONDS=0): every check fetches.
        uncached = StatusLists(allow_loopback_http=True, max_cache_seconds=0)
        await uncached.get(hour)
        await uncached.get(hour)
        assert lists.hits["hour"] == 3

    with list_server() as lists:
        asyncio.run(run(lists))


@pytest.mark.parametrize("header, cap, seconds", [
    ("max-age=60", 300, 60), ("public, max-age=3600", 300, 300), (None, 300, 60), ("no-store", 300, 0),
    ("no-cache, max-age=60", 300, 0), ("max-age=abc", 300, 0), ("max-age=60", 0, 0), ('max-age="30"', 300, 30),
])
def test_cache_seconds(header: str | None, cap: int, seconds: int) -> None:
    assert cache_seconds(header, cap) == seconds


def test_status_list_fetches_are_guarded() -> None:
    async def run(lists: ListServer) -> None:
        production = StatusLists()  # https only
        test_mode = StatusLists(allow_loopback_http=True, max_bytes=4096)
        ok = lists.put("ok", signed_list("x"))
        with pytest.raises(StatusUnavailable, match="must be https"):
            await production.get(ok)  # plain http, even to loopback, outside test mode
        with pytest.raises(StatusUnavailable, match="must be https"):
            await test_mode.get("http://status.example.org/1")  # test mode allows loopback only
        with pytest.raises(StatusUnavailable, match="must be https"):
            await test_mode.get("file:///etc/passwd")
        with pytest.raises(StatusUnavailable, match="public address"):
            await production.get("https://127.0.0.1:9/status/1")  # the SSRF guard of did:web
        with pytest.raises(StatusUnavailable, match="exceeds 4096 bytes"):
            await test_mode.get(lists.put("big", b"[" + b"0," * 4000 + b"0]"))
        with pytest.raises(StatusUnavailable, match="HTTP 302"):
            await test_mode.get(lists.put("moved", {}, headers={"Location": "http://169.254.169.254/"}, status=302))
        assert "ok" not in lists.hits  # refused before any request

    with list_server() as lists:
        asyncio.run(run(lists))


# ------------------------------------------------------------------------------ the merchant sets the discount


def residents_offer(net: Network, provider_id: str) -> list[dict[str, Any]]:
    answer = search(net, {"provider": {"id": provider_id}}, lang="en")
    found = [p for p in answer["message"]["catalog"]["providers"] if p["id"] == provider_id]
    return found[0].get("offers", []) if found else []


def test_a_merchant_sets_the_residents_discount_and_on_search_shows_it(net: Network) -> None:
    lea, rene = Merchant(net, "Le Panier de Mamie Léa"), Merchant(net, "Poissonnerie René")
    created = lea.request("POST", "/providers", json=profile("panier-lea-residents", resident_discount_percent=15))
    assert created.status_code == 201, created.text
    assert created.json()["resident_discount_percent"] == 15
    assert lea.request("PUT", "/providers/panier-lea-residents/items/corossol-kg", json={
        "descriptor": {"fr": {"name": "Corossol"}}, "price": "4.00", "unit": "kilogram", "stock": 10}).status_code == 201
    offer, = residents_offer(net, "panier-lea-residents")
    assert offer["id"] == "residents-panier-lea-residents"
    assert offer["descriptor"]["name"] == "Residents' discount: -15%"
    # select with the offer quotes it: 2 x 4.00 = 8.00, less 15 % = 6.80.
    selected = net.call("select", {"order": {
        "provider": {"id": "panier-lea-residents"}, "items": [{"id": "corossol-kg", "quantity": {"selected": {"count": 2}}}],
        "offers": [{"id": "residents-panier-lea-residents"}]}})
    assert selected["message"]["order"]["quote"]["price"]["value"] == "6.80", selected

    changed = lea.request("PUT", "/providers/panier-lea-residents",
                          json=profile(resident_discount_percent=20))
    assert changed.status_code == 200 and changed.json()["resident_discount_percent"] == 20
    assert residents_offer(net, "panier-lea-residents")[0]["descriptor"]["name"] == "Residents' discount: -20%"
    assert lea.request("GET", "/providers/panier-lea-residents").json()["resident_discount_percent"] == 20

    # Another merchant can neither see nor change it; nobody without a key can.
    assert rene.request("GET", "/providers/panier-lea-residents").status_code == 404
    stolen = rene.request("PUT", "/providers/panier-lea-residents", json=profile(resident_discount_percent=90))
    assert stolen.status_code == 404
    anonymous = net.http.put(f"{net.bpp}/api/v1/merchant/providers/panier-lea-residents",
                             json=profile(resident_discount_percent=90))
    assert anonymous.status_code == 401
    assert residents_offer(net, "panier-lea-residents")[0]["descriptor"]["name"] == "Residents' discount: -20%"

    # Bad values: 422 naming the field, and nothing changes.
    for bad in (0, 91, -5, "dix", 12.5, True):
        refused = lea.request("PUT", "/providers/panier-lea-residents", json=profile(resident_discount_percent=bad))
        assert "resident_discount_percent" in fields(refused), (bad, refused.text)
        assert all(error["msg"] for error in refused.json()["detail"])
    assert lea.request("GET", "/providers/panier-lea-residents").json()["resident_discount_percent"] == 20

    # null (or leaving it out of the profile, which PUT replaces whole) withdraws the offer.
    withdrawn = lea.request("PUT", "/providers/panier-lea-residents", json=profile(resident_discount_percent=None))
    assert withdrawn.status_code == 200 and withdrawn.json()["resident_discount_percent"] is None
    assert residents_offer(net, "panier-lea-residents") == []
    unknown = net.call("select", {"order": {
        "provider": {"id": "panier-lea-residents"}, "items": [{"id": "corossol-kg", "quantity": {"selected": {"count": 2}}}],
        "offers": [{"id": "residents-panier-lea-residents"}]}})
    assert unknown["error"]["code"] == "30000"
