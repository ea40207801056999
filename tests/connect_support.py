"""Helpers for the Martinique Connect tests: a provider on 127.0.0.1, a browser, a relying party."""

from __future__ import annotations

import asyncio
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import FastAPI, Request
from jwcrypto import jwk, jwt

from did.connect import admin
from did.connect.app import create_app
from did.connect.settings import ConnectSettings
from tests.conftest import free_port, serve_app

PASSWORD = "correct horse battery"


@dataclass
class Provider:
    url: str
    settings: ConnectSettings
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret
    rp_url: str = ""
    logout_tokens: list[str] = field(default_factory=list)


def rp_app(received: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/backchannel")
    async def backchannel(request: Request) -> dict:
        received.append(parse_qs((await request.body()).decode())["logout_token"][0])
        return {}

    return app


@contextmanager
def provider(tmp: Path, db_url: str, *, port: int | None = None, extra_clients: dict[str, dict] | None = None,
             **overrides: Any) -> Iterator[Provider]:
    port = port or free_port()
    settings = ConnectSettings(data_dir=tmp, database_url=db_url, **({"connect_secret": "s" * 40} | overrides))
    received: list[str] = []
    with serve_app(rp_app(received)) as rp:
        async def setup() -> dict[str, str]:
            secrets_ = {
                "shop": await admin.add_client(
                    settings, client_id="shop", name="Boutique <b>Lakou</b>",
                    redirect_uris=["http://127.0.0.1:9/cb"], post_logout_redirect_uris=["http://127.0.0.1:9/bye"],
                    backchannel_logout_uri=f"{rp}/backchannel"),
                "mairie": await admin.add_client(
                    settings, client_id="mairie", redirect_uris=["http://localhost:9/cb"], userinfo_signed=True,
                    backchannel_logout_uri=f"{rp}/backchannel"),
                "shop2": await admin.add_client(
                    settings, client_id="shop2", redirect_uris=["http://127.0.0.1:9/other"]),
            }
            for client_id, options in (extra_clients or {}).items():
                secrets_[client_id] = await admin.add_client(settings, client_id=client_id, **options)
            await admin.add_user(settings, username="josephine", password=PASSWORD, email="jo@example.mq",
                                 given_name="Joséphine", family_name="Rosier", birthdate="1990-05-04",
                                 commune="insee:97209")
            await admin.add_user(settings, username="victor", password=PASSWORD)
            return secrets_

        clients = asyncio.run(setup())
        with serve_app(create_app(settings, port=port), port=port) as url:
            yield Provider(url, settings, clients, rp, received)


def form_fields(html: str) -> dict[str, str]:
    return {unescape(m.group(1)): unescape(m.group(2))
            for m in re.finditer(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', html)}


def random_value() -> str:
    return secrets.token_urlsafe(32)


async def browser_login(browser: httpx.AsyncClient, authorize_url: str, *, username: str = "josephine",
                        password: str = PASSWORD, consent: str = "allow") -> httpx.Response:
    """Follow the pages like a user; return the final redirect to the client (not followed)."""
    page = await browser.get(authorize_url)
    if page.status_code == 200 and 'action="login"' in page.text:
        fields = form_fields(page.text)
        page = await browser.post(str(page.url.join("login")), data=fields | {"username": username,
                                                                              "password": password})
        assert page.status_code == 303, page.text
        page = await browser.get(page.headers["location"])
    if page.status_code == 200 and 'action="consent"' in page.text:
        page = await browser.post(str(page.url.join("consent")), data=form_fields(page.text) | {"decision": consent})
    return page


def callback_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), (response.status_code, response.text)
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def code_flow(op: Provider, client_id: str = "shop", *, redirect_uri: str = "http://127.0.0.1:9/cb",
                    auth_method: str = "client_secret_basic", scope: str = "openid profile email mq_residence",
                    username: str = "josephine", password: str = PASSWORD,
                    browser: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """The whole code flow with authlib's client (PKCE S256); returns token, nonce and the callback."""
    nonce = random_value()
    async with AsyncOAuth2Client(client_id, op.clients[client_id], scope=scope, redirect_uri=redirect_uri,
                                 code_challenge_method="S256", token_endpoint_auth_method=auth_method) as rp:
        verifier = secrets.token_urlsafe(48)
        url, state = rp.create_authorization_url(f"{op.url}/authorize", code_verifier=verifier, nonce=nonce,
                                                 state=random_value())
        own = browser is None
        browser = browser or httpx.AsyncClient()
        try:
            callback = callback_params(await browser_login(browser, url, username=username, password=password))
        finally:
            if own:
                await browser.aclose()
        assert callback["state"] == state and callback["iss"] == op.url
        token = await rp.fetch_token(f"{op.url}/token", code=callback["code"], code_verifier=verifier,
                                     redirect_uri=redirect_uri)
    return {"token": token, "nonce": nonce, "callback": callback, "verifier": verifier}


async def verify_id_token(op: Provider, id_token: str, client_id: str, nonce: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        keys = jwk.JWKSet.from_json((await http.get(f"{op.url}/jwks")).text)
    token = jwt.JWT(jwt=id_token, key=keys, check_claims={"iss": op.url, "aud": client_id, "exp": None})
    import json
    return json.loads(token.claims)
