"""Identity end to end (issue 7), over real `lakou serve` processes on 127.0.0.1: registry, gateway,
bpp, bap and Martinique Connect. httpx is the citizen's browser and `did.wallet` their wallet.

1. The operator registers the BAP at Martinique Connect and creates the citizen's local account
   with the CLI (`lakou connect client add`, `lakou connect user add`).
2. The citizen logs in at the BAP with a password (`{"method": "password"}`); Martinique Connect
   then offers them a MartiniqueResidentCredential (OpenID4VCI, pre-authorized code + tx_code),
   which the wallet redeems and stores.
3. The citizen logs in at the BAP again with `{"method": "wallet"}`: Martinique Connect goes to its
   wallet login (even over the password session), the wallet answers the OpenID4VP request, and
   the BAP's /auth/me says acr mq:wallet. Each time the BAP's callback hands the browser a login
   code and the app applies it to its own session (`POST /auth/complete`).
4. The citizen searches, makes a cart at a provider with a residents' discount, and checks out with
   the wallet's presentation (aud = the cart's bpp_id, nonce = the cart id); the BPP trusts
   Martinique Connect's issuer DID (read from its issuer metadata) and the order is placed at the
   discounted total, with the BAP's pairwise DID (not the Connect `sub`) as the customer's id.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from bap.auth import customer_did
from bap.settings import BapSettings
from bpp.catalogue import DEMO_CATALOGUE
from did import sdjwt
from did.keys import Argon2Params
from did.wallet import Wallet
from network import Network
from conftest import free_port  # the module network.py uses: one set of ports handed out
from tests.connect_support import browser_login, form_fields

CLIENT = "lakou-bap"
PASSWORD = "a citizen's long passphrase"
IDENTITY_SECRET = "e2e-bap-identity-secret-" + "y" * 32
PROVIDER = "jardin-lamentin"
ITEM = "christophine-kg"  # 2.80 EUR the kg: 5 kg = 14.00, less 10 % = 12.60
VCT = "MartiniqueResidentCredential"


def cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`lakou connect ...`, started (both commands run at once: the store's upgrade is safe for that)."""
    return subprocess.Popen([sys.executable, "-m", "beckn.cli", "connect", *args], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(command: subprocess.Popen[str], stdin: str | None = None) -> str:
    out, err = command.communicate(stdin, timeout=90)
    assert command.returncode == 0, err
    return out


def catalogue_with_discount(root: Path) -> Path:
    catalogue = json.loads(DEMO_CATALOGUE.read_text(encoding="utf-8"))
    for provider in catalogue["providers"]:
        if provider["id"] == PROVIDER:
            provider["resident_discount_percent"] = 10
    path = root / "catalogue.json"
    path.write_text(json.dumps(catalogue, ensure_ascii=False), encoding="utf-8")
    return path


async def login_code(browser: httpx.AsyncClient, page: httpx.Response) -> str:
    """From a redirect (or a consent page) at Martinique Connect to the BAP's callback, which hands the
    browser a login code (no app URL configured: as JSON) and logs no session in by itself."""
    while page.status_code in (302, 303) and "/api/v1/auth/callback" not in page.headers["location"]:
        page = await browser.get(str(page.url.join(page.headers["location"])))
    if page.status_code == 200 and 'action="consent"' in page.text:
        page = await browser.post(str(page.url.join("consent")), data=form_fields(page.text) | {"decision": "allow"})
    assert page.status_code in (302, 303) and "/api/v1/auth/callback" in page.headers["location"], page.text
    answer = await browser.get(page.headers["location"])
    assert answer.status_code == 200, answer.text
    return answer.json()["login_code"]


async def complete(app: httpx.AsyncClient, code: str) -> dict[str, Any]:
    """The app applies the login to its own session (its bearer token)."""
    done = await app.post("/auth/complete", json={"login_code": code})
    assert done.status_code == 200 and done.json()["logged_in"] is True, done.text
    return done.json()


async def test_a_citizen_gets_a_credential_signs_in_with_it_and_orders_with_the_residents_discount(
        tmp_path: Path) -> None:
    net = Network(tmp_path / "net")
    connect_port, bap_port = free_port(), free_port()
    connect_url, bap_url = f"http://127.0.0.1:{connect_port}", f"http://127.0.0.1:{bap_port}"
    redirect = f"{bap_url}/api/v1/auth/callback"
    try:
        registry = net.start("registry")

        # 1. The operator, with the CLI, in Martinique Connect's data directory (before it starts).
        connect_dir = net.root / "connect"
        connect_dir.mkdir(parents=True)
        operator = {k: v for k, v in os.environ.items() if not k.startswith("LAKOU_")} | {
            "LAKOU_DATA_DIR": str(connect_dir)}
        client_add = cli(operator, "client", "add", "--client-id", CLIENT, "--redirect-uri", redirect,
                         "--name", "Lakou")
        user_add = cli(operator, "user", "add", "--username", "lea", "--email", "lea.joseph@example.mq",
                       "--given-name", "Léa", "--family-name", "Joseph", "--birthdate", "1990-05-04",
                       "--commune", "insee:97209")
        client_secret = re.search(r"^client_secret: (\S+)$", finished(client_add), re.M).group(1)
        assert "created for lea" in finished(user_add, PASSWORD + "\n")  # the password, read from stdin

        net.wait_ready(registry)
        gateway = net.start("gateway")
        connect = net.start("connect", port=connect_port)
        bap = net.start("bap", port=bap_port, extra_env={
            "LAKOU_BAP_CONNECT_ISSUER": connect_url, "LAKOU_BAP_CONNECT_CLIENT_ID": CLIENT,
            "LAKOU_BAP_CONNECT_CLIENT_SECRET": client_secret, "LAKOU_BAP_CONNECT_REDIRECT_URI": redirect,
            "LAKOU_BAP_IDENTITY_SECRET": IDENTITY_SECRET})
        net.wait_ready(connect)
        # The merchant trusts Martinique Connect's credential issuer, as its metadata names it.
        metadata = httpx.get(f"{connect_url}/.well-known/openid-credential-issuer", timeout=10).json()
        issuer_did = metadata["issuer_did"]
        assert issuer_did.startswith("did:jwk:")
        bpp = net.start("bpp", extra_env={
            "LAKOU_BPP_CATALOGUE": str(catalogue_with_discount(tmp_path)), "LAKOU_BPP_ON_SEARCH_VIA": "direct",
            "LAKOU_BPP_TRUSTED_RESIDENT_ISSUERS": issuer_did})
        net.wait_ready(gateway, bap, bpp)

        wallet = Wallet.create(tmp_path / "lea.wallet", "the wallet's passphrase", params=Argon2Params(1, 64, 1))
        async with httpx.AsyncClient(timeout=20) as browser, httpx.AsyncClient(timeout=20) as wallet_http, \
                httpx.AsyncClient(base_url=f"{bap_url}/api/v1", timeout=30) as app:
            token = (await app.post("/sessions")).json()["token"]
            app.headers["Authorization"] = f"Bearer {token}"

            # 2. A password login at the BAP; Martinique Connect offers the credential; the wallet takes it.
            login = await app.post("/auth/login", json={"method": "password"})
            assert login.status_code == 200, login.text
            page = await browser_login(browser, login.json()["authorization_url"], username="lea", password=PASSWORD)
            code = await login_code(browser, page)
            assert (await app.get("/auth/me")).json()["logged_in"] is False  # not before the app completes
            by_password = await complete(app, code)
            assert (await app.get("/auth/me")).json() == by_password
            assert by_password["logged_in"] and by_password["acr"] == "mq:local"

            csrf = (await browser.get(f"{connect_url}/api/wallet/csrf")).json()["csrf"]
            offer = await browser.post(f"{connect_url}/api/wallet/offer", json={"tx_code": True},
                                       headers={"X-CSRF-Token": csrf})
            assert offer.status_code == 200, offer.text
            [credential] = await wallet.receive_offer(offer.json()["credential_offer_uri"],
                                                      tx_code=offer.json()["tx_code"], http=wallet_http,
                                                      allow_http=True)  # the test provider is plain http
            assert credential.vct == VCT and credential.issuer == issuer_did
            assert wallet.credential_claims(credential.id)["commune_insee"] == "97209"

            # 3. A wallet login at the BAP: straight to the wallet page, the wallet answers, acr mq:wallet.
            login = await app.post("/auth/login", json={"method": "wallet"})
            assert login.status_code == 200, login.text
            assert parse_qs(urlsplit(login.json()["authorization_url"]).query)["acr_values"] == ["mq:wallet"]
            page = await browser.get(login.json()["authorization_url"])
            assert page.status_code == 303 and urlsplit(page.headers["location"]).path == "/wallet/login"
            page = await browser.get(page.headers["location"])
            link = unescape(re.search(r'class="wallet-request" href="([^"]+)"', page.text).group(1))
            request = wallet.parse_request(link, allow_http=True)
            answer = await wallet.respond(request, http=wallet_http, purpose="sign in at Lakou")
            done = await browser.get(answer["redirect_uri"])  # the same device: the browser follows it
            me = await complete(app, await login_code(browser, done))
            assert me["logged_in"] and me["acr"] == "mq:wallet" and me["issuer"] == connect_url
            assert me["account"] == by_password["account"]  # the same citizen, the same pairwise sub
            assert me["auth_time"] >= by_password["auth_time"]

            # 4. Search, cart, checkout with the wallet's presentation, order.
            started = await app.post("/searches", json={"city": "insee:97213", "lang": "en", "ttl_seconds": 5})
            assert started.status_code == 202, started.text
            search_id = started.json()["transaction_id"]
            offers: list[dict[str, Any]] = []
            for _ in range(20):
                results = (await app.get(f"/searches/{search_id}/results",
                                         params={"wait_ms": 2000, "page_size": 100})).json()
                offers = [o for o in results["offers"] if o["provider"]["id"] == PROVIDER]
                if offers or results["complete"]:
                    break
            assert offers
            bpp_id = offers[0]["bpp_id"]
            cart = await app.post("/carts", json={"search_id": search_id, "bpp_id": bpp_id, "provider_id": PROVIDER,
                                                  "items": [{"id": ITEM, "quantity": 5}], "wait_ms": 15000})
            assert cart.status_code == 201, cart.text
            cart_id = cart.json()["id"]
            # The wallet proves residence to this merchant for this cart only (KB-JWT aud and nonce),
            # disclosing nothing selectively disclosable (commune_insee and age_over_18 are visible).
            holder = wallet.key(credential.holder_kid).key
            proof = sdjwt.present(wallet.get_credential(credential.id), [], holder_key=holder, aud=bpp_id,
                                  nonce=cart_id)
            checkout = await app.post(f"/carts/{cart_id}/checkout", json={
                "billing": {"name": "Léa Joseph", "phone": "+596696123456", "email": "lea.joseph@example.mq"},
                "fulfillment": {"type": "pickup"}, "payment": {"type": "on_fulfillment"},
                "offer_id": f"residents-{PROVIDER}", "resident_presentation": proof, "wait_ms": 15000})
            assert checkout.status_code == 200, checkout.text
            assert checkout.json()["quote"]["total"]["value"] == "12.60"
            ordered = await app.post(f"/carts/{cart_id}/order", json={"accept_total": "12.60", "wait_ms": 15000})
            assert ordered.status_code == 201, ordered.text
            order_id = ordered.json()["order_id"]

        [(total, fulfillment)] = bpp.rows(f"SELECT total, fulfillment FROM bpp_order WHERE id = '{order_id}'")
        assert Decimal(str(total)) == Decimal("12.60")
        person_id = json.loads(fulfillment)["customer"]["person"]["id"]
        expected = customer_did(BapSettings(bap_identity_secret=IDENTITY_SECRET), f"{connect_url} {me['account']}",
                                bpp_id)
        assert person_id == expected and person_id.startswith("did:key:")
        assert me["account"] not in person_id
    except BaseException:
        print(net.logs())
        raise
    finally:
        net.stop_all()
