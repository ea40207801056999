"""Credential → SSO: a relying party (authlib's client) signs a citizen in through a wallet presentation
(OpenID4VP 1.0, DCQL, direct_post) and gets an ID token with acr mq:wallet and amr ["vc"].

The holder is tests/connect_holder.py (did.keys + jwcrypto), not the project's wallet.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import aclosing
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client

from did import keys, methods, sdjwt
from did.keys import Argon2Params
from did.wallet import Wallet
from tests.connect_holder import Holder
from tests.connect_support import Provider, callback_params, code_flow, form_fields, provider, random_value, verify_id_token
from tests.test_connect_issuance import offer_from_page

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store

REDIRECT = "http://127.0.0.1:9/cb"


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    tmp = tmp_path_factory.mktemp("wallet-login")
    with provider(tmp, f"sqlite+aiosqlite:///{tmp / 'lakou.db'}") as running:
        yield running


async def holder_with_credential(op: Provider) -> tuple[Holder, httpx.AsyncClient]:
    """A citizen signs in (password), takes the offer, the holder redeems it. Returns the signed-in browser."""
    browser = httpx.AsyncClient()
    await code_flow(op, browser=browser)
    offer, _ = await offer_from_page(op, browser)
    holder = Holder()
    async with httpx.AsyncClient() as wallet:
        await holder.redeem(wallet, offer)
    return holder, browser


async def start_wallet_login(op: Provider, browser: httpx.AsyncClient, rp: AsyncOAuth2Client, nonce: str,
                             verifier: str) -> tuple[dict[str, str], str]:
    url, state = rp.create_authorization_url(f"{op.url}/authorize", code_verifier=verifier, nonce=nonce,
                                             state=random_value())
    login = await browser.get(url, headers={"Accept-Language": "fr"})
    assert "Se connecter avec mon portefeuille" in login.text
    href = unescape(re.search(r'class="wallet" href="([^"]+)"', login.text).group(1))
    page = await browser.get(str(login.url.join(href)))
    assert page.status_code == 200, page.text
    link = unescape(re.search(r'class="wallet-request" href="([^"]+)"', page.text).group(1))
    assert link.startswith("openid4vp://?")
    request = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    return request, state


def vp_form(holder: Holder, request: dict[str, str], *, nonce: str | None = None, aud: str | None = None) -> dict:
    query = json.loads(request["dcql_query"])["credentials"][0]
    assert query["meta"]["vct_values"] == ["MartiniqueResidentCredential"]
    presentation = holder.present([], nonce=nonce or request["nonce"], aud=aud or request["client_id"])
    return {"vp_token": json.dumps({query["id"]: [presentation]}), "state": request["state"]}


async def test_wallet_login_gives_an_id_token_with_acr_mq_wallet(op: Provider) -> None:
    holder, citizen = await holder_with_credential(op)
    await citizen.aclose()
    nonce, verifier = random_value(), secrets.token_urlsafe(48)
    async with AsyncOAuth2Client("shop", op.clients["shop"], scope="openid mq_residence", redirect_uri=REDIRECT,
                                 code_challenge_method="S256") as rp, httpx.AsyncClient() as browser, \
            httpx.AsyncClient() as wallet:
        request, state = await start_wallet_login(op, browser, rp, nonce, verifier)
        assert request["client_id"] == f"redirect_uri:{op.url}/wallet/response"
        assert request["response_mode"] == "direct_post" and request["response_uri"] == f"{op.url}/wallet/response"
        claims = json.loads(request["dcql_query"])["credentials"][0]["claims"]
        assert [c["path"] for c in claims] == [["commune_insee"], ["age_over_18"]]
        pending = await browser.get(f"{op.url}/wallet/status", params={"state": request["state"]})
        assert pending.json()["status"] == "pending"
        async with httpx.AsyncClient() as stranger:  # another browser cannot poll nor complete it
            assert (await stranger.get(f"{op.url}/wallet/status", params={"state": request["state"]})).status_code == 404
        answer = await wallet.post(request["response_uri"], data=vp_form(holder, request))
        assert answer.status_code == 200, answer.text
        done = (await browser.get(f"{op.url}/wallet/status", params={"state": request["state"]})).json()
        assert done["status"] == "done" and done["next"] == answer.json()["redirect_uri"]
        page = await browser.get(done["next"])
        assert page.status_code == 303
        page = await browser.get(page.headers["location"])
        if 'action="consent"' in page.text:
            page = await browser.post(str(page.url.join("consent")), data=form_fields(page.text) | {"decision": "allow"})
        callback = callback_params(page)
        assert callback["state"] == state
        token = await rp.fetch_token(f"{op.url}/token", code=callback["code"], code_verifier=verifier,
                                     redirect_uri=REDIRECT)
        id_token = await verify_id_token(op, token["id_token"], "shop", nonce)
        assert id_token["acr"] == "mq:wallet" and id_token["amr"] == ["vc"]
        # Same pairwise sub as a password login of the same citizen at the same client.
        password = await code_flow(op, scope="openid")
        other = await verify_id_token(op, password["token"]["id_token"], "shop", password["nonce"])
        assert other["sub"] == id_token["sub"]
        again = await browser.get(done["next"])
        assert again.status_code == 400  # single use
        replay = await wallet.post(request["response_uri"], data=vp_form(holder, request))
        assert replay.status_code == 400


async def refused(op: Provider, form_of) -> httpx.Response:  # noqa: ANN001
    async with AsyncOAuth2Client("shop", op.clients["shop"], scope="openid", redirect_uri=REDIRECT,
                                 code_challenge_method="S256") as rp, httpx.AsyncClient() as browser, \
            httpx.AsyncClient() as wallet:
        request, _ = await start_wallet_login(op, browser, rp, random_value(), secrets.token_urlsafe(48))
        answer = await wallet.post(request["response_uri"], data=form_of(request))
        status = (await browser.get(f"{op.url}/wallet/status", params={"state": request["state"]})).json()
        assert status["status"] == "failed"
        complete = await browser.get(f"{op.url}/wallet/complete", params={"state": request["state"]})
        assert complete.status_code == 400
        return answer


async def test_wrong_nonce_or_audience_is_refused(op: Provider) -> None:
    holder, citizen = await holder_with_credential(op)
    await citizen.aclose()
    answer = await refused(op, lambda r: vp_form(holder, r, nonce="not-the-nonce"))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert "nonce" in answer.json()["error_description"]
    answer = await refused(op, lambda r: vp_form(holder, r, aud="https://elsewhere.example"))
    assert answer.status_code == 400


async def test_revoked_credential_is_refused(op: Provider) -> None:
    holder, citizen = await holder_with_credential(op)
    async with aclosing(citizen):
        listed = (await citizen.get(f"{op.url}/account/consents", headers={"Accept": "application/json"})).json()
        issued = next(r for r in listed["consents"] if r["client_id"] is None and r["revoked_at"] is None)
        done = await citizen.post(f"{op.url}/account/consents/{issued['id']}/revoke",
                                  headers={"X-CSRF-Token": listed["csrf"]})
        assert done.status_code == 200
    answer = await refused(op, lambda r: vp_form(holder, r))
    assert "revoked" in answer.json()["error_description"]


async def test_credential_from_another_issuer_is_refused(op: Provider) -> None:
    holder = Holder()
    other = keys.generate_key("Ed25519")
    other_did = methods.did_jwk_from_jwk(other)
    holder.credential = sdjwt.issue({"commune_insee": "97209", "age_over_18": True}, issuer_key=other,
                                    iss=other_did, kid=f"{other_did}#0", vct="MartiniqueResidentCredential",
                                    holder_jwk=holder.key.export_public(as_dict=True))
    answer = await refused(op, lambda r: vp_form(holder, r))
    assert "not issued by Martinique Connect" in answer.json()["error_description"]


async def test_malformed_responses_are_4xx(op: Provider) -> None:
    async with httpx.AsyncClient() as wallet:
        for form in ({}, {"state": "x"}, {"state": "unknown", "vp_token": "abc"}):
            answer = await wallet.post(f"{op.url}/wallet/response", data=form)
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    answer = await refused(op, lambda r: {"vp_token": "{\"resident\": [42]}", "state": r["state"]})
    assert answer.status_code == 400


def test_wallet_login_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    with provider(tmp_path, postgres_url) as running:
        asyncio.run(test_wallet_login_gives_an_id_token_with_acr_mq_wallet(running))


async def test_the_projects_wallet_takes_the_credential_and_signs_in_with_it(op: Provider, tmp_path: Path) -> None:
    """The bridge end to end with `did.wallet` (not the test holder): the citizen signs in with a
    password, the wallet redeems the offer (OpenID4VCI), then signs the citizen in at a relying
    party (OpenID4VP): the ID token has acr mq:wallet and the wallet logged what it disclosed."""
    wallet_file = Wallet.create(tmp_path / "wallet", "a wallet passphrase", params=Argon2Params(1, 64, 1))
    citizen = httpx.AsyncClient()
    async with aclosing(citizen), httpx.AsyncClient() as http:
        await code_flow(op, browser=citizen)
        offer, pin = await offer_from_page(op, citizen)
        uri = "openid-credential-offer://?credential_offer=" + quote(json.dumps(offer))
        [received] = await wallet_file.receive_offer(uri, tx_code=pin, http=http, allow_http=True)
        assert received.vct == "MartiniqueResidentCredential" and received.holder_kid == wallet_file.default_key.kid

        nonce, verifier = random_value(), secrets.token_urlsafe(48)
        async with AsyncOAuth2Client("shop", op.clients["shop"], scope="openid mq_residence", redirect_uri=REDIRECT,
                                     code_challenge_method="S256") as rp, httpx.AsyncClient() as browser:
            url, state = rp.create_authorization_url(f"{op.url}/authorize", code_verifier=verifier, nonce=nonce,
                                                     state=random_value())
            login = await browser.get(url)
            href = unescape(re.search(r'class="wallet" href="([^"]+)"', login.text).group(1))
            page = await browser.get(str(login.url.join(href)))
            link = unescape(re.search(r'class="wallet-request" href="([^"]+)"', page.text).group(1))
            request = wallet_file.parse_request(link, allow_http=True)  # the test provider is plain http
            answer = await wallet_file.respond(request, http=http, purpose="sign in")
            done = (await browser.get(f"{op.url}/wallet/status", params={"state": request.state})).json()
            assert done["status"] == "done" and done["next"] == answer["redirect_uri"]
            page = await browser.get(done["next"])
            page = await browser.get(page.headers["location"])
            if 'action="consent"' in page.text:
                page = await browser.post(str(page.url.join("consent")),
                                          data=form_fields(page.text) | {"decision": "allow"})
            callback = callback_params(page)
            assert callback["state"] == state
            token = await rp.fetch_token(f"{op.url}/token", code=callback["code"], code_verifier=verifier,
                                         redirect_uri=REDIRECT)
            id_token = await verify_id_token(op, token["id_token"], "shop", nonce)
            assert id_token["acr"] == "mq:wallet"
    [presented] = [entry for entry in wallet_file.activity if entry["kind"] == "presentation"]
    assert presented["accepted"] and presented["purpose"] == "sign in"
    # commune_insee and age_over_18 are always visible: the request needed no selective disclosure,
    # so none of the names nor the birthdate left the wallet.
    assert not {"given_name", "family_name", "birthdate"} & set(presented["claims_disclosed"])
