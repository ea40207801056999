"""Martinique Connect brokering an upstream provider (FranceConnect), tested against a second
instance of our own provider acting as the upstream (as FranceConnect ships mock instances)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client

from tests.conftest import free_port
from tests.connect_support import PASSWORD, Provider, callback_params, form_fields, provider, random_value, \
    verify_id_token


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Provider, Provider]]:
    up_dir, down_dir = tmp_path_factory.mktemp("upstream"), tmp_path_factory.mktemp("downstream")
    down_port = free_port()
    callback = f"http://127.0.0.1:{down_port}/upstream/callback"
    with provider(up_dir, f"sqlite+aiosqlite:///{up_dir / 'l.db'}",
                  extra_clients={"mq-connect": {"redirect_uris": [callback]}}) as upstream:
        with provider(down_dir, f"sqlite+aiosqlite:///{down_dir / 'l.db'}", port=down_port,
                      connect_secret="d" * 40, connect_upstream_issuer=upstream.url,
                      connect_upstream_client_id="mq-connect",
                      connect_upstream_client_secret=upstream.clients["mq-connect"]) as downstream:
            yield upstream, downstream


async def _through_upstream(browser: httpx.AsyncClient, upstream: Provider, url: str) -> httpx.Response:
    """Act as the citizen: choose FranceConnect on our login page, sign in there, consent on both sides."""
    response = await browser.get(url)
    for _ in range(12):
        if response.status_code in (302, 303):
            location = response.headers["location"]
            if location.startswith("http://127.0.0.1:9/"):
                return response
            response = await browser.get(location)
        elif 'action="login"' in response.text and str(response.url).startswith(upstream.url):
            response = await browser.post(f"{upstream.url}/login",
                                          data=form_fields(response.text) | {"username": "josephine",
                                                                             "password": PASSWORD})
        elif 'class="upstream"' in response.text:
            link = unescape(re.search(r'class="upstream" href="([^"]+)"', response.text).group(1))
            response = await browser.get(str(response.url.join(link)))
        elif 'action="consent"' in response.text:
            response = await browser.post(str(response.url.join("consent")),
                                          data=form_fields(response.text) | {"decision": "allow"})
        else:
            raise AssertionError(f"unexpected page {response.status_code} {response.url}: {response.text[:300]}")
    raise AssertionError("too many steps")


async def _login(upstream: Provider, downstream: Provider) -> dict:
    nonce = random_value()
    async with AsyncOAuth2Client("shop", downstream.clients["shop"], scope="openid profile",
                                 redirect_uri="http://127.0.0.1:9/cb", code_challenge_method="S256") as rp:
        verifier = secrets.token_urlsafe(48)
        url, _ = rp.create_authorization_url(f"{downstream.url}/authorize", code_verifier=verifier, nonce=nonce,
                                             state=random_value())
        async with httpx.AsyncClient() as browser:
            back = callback_params(await _through_upstream(browser, upstream, url))
        token = await rp.fetch_token(f"{downstream.url}/token", code=back["code"], code_verifier=verifier)
    claims = await verify_id_token(downstream, token["id_token"], "shop", nonce)
    async with httpx.AsyncClient() as http:
        info = (await http.get(f"{downstream.url}/userinfo",
                               headers={"Authorization": f"Bearer {token['access_token']}"})).json()
    return {"claims": claims, "info": info}


async def test_login_through_the_upstream_provider(pair: tuple[Provider, Provider]) -> None:
    upstream, downstream = pair
    first = await _login(upstream, downstream)
    assert first["claims"]["acr"] == "mq:local"  # the upstream's acr (our own OP as a stand-in for FC)
    assert first["claims"]["amr"] == ["fc", "pwd"]
    assert first["info"]["given_name"] == "Joséphine" and first["info"]["family_name"] == "Rosier"
    # The upstream identity stays linked to the same local account: same pairwise sub next time.
    second = await _login(upstream, downstream)
    assert second["claims"]["sub"] == first["claims"]["sub"]


async def test_upstream_callback_without_our_cookie_or_with_a_forged_state(pair: tuple[Provider, Provider]) -> None:
    upstream, downstream = pair
    async with httpx.AsyncClient() as browser:
        lost = await browser.get(f"{downstream.url}/upstream/callback", params={"code": "x", "state": "y"})
        assert lost.status_code == 400
        page = await browser.get(f"{downstream.url}/authorize", params={
            "response_type": "code", "client_id": "shop", "redirect_uri": "http://127.0.0.1:9/cb",
            "scope": "openid", "state": random_value(), "nonce": random_value(), "ui_locales": "en",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
        assert "Sign in with FranceConnect" in page.text
        link = unescape(re.search(r'class="upstream" href="([^"]+)"', page.text).group(1))
        started = await browser.get(str(page.url.join(link)))
        assert started.status_code == 303 and started.headers["location"].startswith(f"{upstream.url}/authorize?")
        forged = await browser.get(f"{downstream.url}/upstream/callback", params={"code": "x", "state": "forged"})
        assert forged.status_code == 400 and "state mismatch" in forged.text
