"""Martinique Connect: the OpenID Basic OP and Config OP modules that apply, against the real server.

authlib's own client (AsyncOAuth2Client, PKCE S256) plays the relying party; raw httpx drives the
negative cases; ID tokens are verified with jwcrypto against the published JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jwcrypto import jwk, jwt

from tests.connect_support import (
    PASSWORD,
    Provider,
    browser_login,
    callback_params,
    code_flow,
    form_fields,
    provider,
    random_value,
    verify_id_token,
)


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    tmp = tmp_path_factory.mktemp("connect")
    with provider(tmp, f"sqlite+aiosqlite:///{tmp / 'lakou.db'}") as running:
        yield running


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params = {"response_type": "code", "client_id": "shop", "redirect_uri": "http://127.0.0.1:9/cb",
              "scope": "openid profile", "state": random_value(), "nonce": random_value(),
              "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(b"v" * 50).digest()).rstrip(b"=").decode(),
              "code_challenge_method": "S256"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


async def test_discovery_document(op: Provider) -> None:
    async with httpx.AsyncClient() as http:
        doc = (await http.get(f"{op.url}/.well-known/openid-configuration")).json()
        assert doc["issuer"] == op.url
        for name in ("authorization", "token", "userinfo"):
            assert doc[f"{name}_endpoint"].startswith(op.url + "/")
        assert doc["jwks_uri"] == f"{op.url}/jwks"
        assert "openid" in doc["scopes_supported"]
        assert doc["response_types_supported"] == ["code"]
        assert doc["subject_types_supported"] == ["pairwise"]
        assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["authorization_response_iss_parameter_supported"] is True
        assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"}
        assert "claims_parameter_supported" in doc and "commune_insee" in doc["claims_supported"]
        jwks = (await http.get(doc["jwks_uri"])).json()
    assert len(jwks["keys"]) == 2  # current and next
    for key in jwks["keys"]:
        assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256" and key["use"] == "sig"
        assert "d" not in key
        assert key["kid"] == jwk.JWK(**key).thumbprint()  # RFC 7638


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
async def test_happy_path_id_token_and_userinfo(op: Provider, auth_method: str) -> None:
    flow = await code_flow(op, auth_method=auth_method)
    token = flow["token"]
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 60
    assert "refresh_token" not in token
    claims = await verify_id_token(op, token["id_token"], "shop", flow["nonce"])
    header = json.loads(base64.urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["kid"] == (await _jwks(op))["keys"][0]["kid"]
    assert claims["nonce"] == flow["nonce"] and claims["aud"] == ["shop"] and claims["acr"] == "mq:local"
    assert claims["amr"] == ["pwd"] and claims["exp"] - claims["iat"] == 60 and claims["auth_time"] <= claims["iat"]
    digest = hashlib.sha256(token["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    async with httpx.AsyncClient() as http:
        info = await http.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert info.status_code == 200 and info.headers["content-type"].startswith("application/json")
        assert info.json() == {"sub": claims["sub"], "given_name": "Joséphine", "family_name": "Rosier",
                               "birthdate": "1990-05-04", "email": "jo@example.mq", "commune_insee": "97209"}
        # POST with the token in the header works too
        post = await http.post(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert post.json()["sub"] == claims["sub"]


async def _jwks(op: Provider) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{op.url}/jwks")).json()


async def test_userinfo_signed_jwt_for_clients_that_registered_it(op: Provider) -> None:
    flow = await code_flow(op, "mairie", redirect_uri="http://localhost:9/cb", scope="openid mq_residence")
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{op.url}/userinfo",
                                headers={"Authorization": f"Bearer {flow['token']['access_token']}"})
        keys = jwk.JWKSet.from_json((await http.get(f"{op.url}/jwks")).text)
    assert answer.headers["content-type"].startswith("application/jwt")
    claims = json.loads(jwt.JWT(jwt=answer.text, key=keys, check_claims={"iss": op.url, "aud": "mairie"}).claims)
    id_claims = await verify_id_token(op, flow["token"]["id_token"], "mairie", flow["nonce"])
    assert claims["sub"] == id_claims["sub"] and claims["commune_insee"] == "97209"
    assert "given_name" not in claims  # profile scope not granted


async def test_pairwise_sub_differs_between_sectors_and_is_stable_within_one(op: Provider) -> None:
    async with httpx.AsyncClient() as browser:  # one browser session for all three
        first = await code_flow(op, browser=browser)
        again = await code_flow(op, browser=browser)
        other = await code_flow(op, "mairie", redirect_uri="http://localhost:9/cb", browser=browser)
    sub = [(await verify_id_token(op, f["token"]["id_token"], c, f["nonce"]))["sub"]
           for f, c in ((first, "shop"), (again, "shop"), (other, "mairie"))]
    assert sub[0] == sub[1] and sub[0] != sub[2]
    victor = await code_flow(op, username="victor")
    assert (await verify_id_token(op, victor["token"]["id_token"], "shop", victor["nonce"]))["sub"] != sub[0]


@pytest.mark.parametrize("missing, message", [
    ({"state": None}, "'state' is required"),
    ({"nonce": None}, "'nonce'"),
    ({"state": "short"}, "at least 32"),
    ({"code_challenge": None, "code_challenge_method": None}, "PKCE"),
    ({"code_challenge_method": "plain"}, "S256"),
    ({"scope": "profile"}, "openid"),
    ({"response_type": "token"}, None),
])
async def test_bad_authorization_requests_are_redirected_with_an_error(op: Provider, missing: dict,
                                                                       message: str | None) -> None:
    params = authorize_params(**missing)
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{op.url}/authorize", params=params)
    back = callback_params(answer)
    assert answer.headers["location"].startswith("http://127.0.0.1:9/cb?")
    assert back["error"] in ("invalid_request", "unsupported_response_type", "unauthorized_client")
    assert back["iss"] == op.url and back.get("state") == params.get("state")
    if message:
        assert message in back["error_description"]


@pytest.mark.parametrize("overrides", [
    {"redirect_uri": "http://127.0.0.1:9/cb/"},       # not an exact match
    {"redirect_uri": "http://127.0.0.1:9/other"},     # another client's
    {"redirect_uri": None},                           # missing
    {"client_id": "nobody"},                          # unknown client
])
async def test_untrusted_redirect_uri_gets_an_error_page_not_a_redirect(op: Provider, overrides: dict) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{op.url}/authorize", params=authorize_params(**overrides),
                                headers={"Accept-Language": "en"})
    assert answer.status_code == 400 and "location" not in answer.headers
    assert answer.headers["content-type"].startswith("text/html")


async def test_wrong_verifier_and_code_reuse_revokes_tokens(op: Provider) -> None:
    flow = await code_flow(op)
    access = flow["token"]["access_token"]
    basic = httpx.BasicAuth("shop", op.clients["shop"])
    async with httpx.AsyncClient() as http:
        form = {"grant_type": "authorization_code", "code": flow["callback"]["code"],
                "redirect_uri": "http://127.0.0.1:9/cb", "code_verifier": flow["verifier"]}
        reuse = await http.post(f"{op.url}/token", data=form, auth=basic)
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        revoked = await http.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {access}"})
        assert revoked.status_code == 401 and revoked.json()["error"] == "invalid_token"

        # a fresh code with the wrong PKCE verifier is refused (and burnt)
        async with httpx.AsyncClient() as browser:
            params = authorize_params()
            back = callback_params(await browser_login(browser, f"{op.url}/authorize?" + str(httpx.QueryParams(params))))
        wrong = await http.post(f"{op.url}/token", auth=basic, data={
            "grant_type": "authorization_code", "code": back["code"], "redirect_uri": params["redirect_uri"],
            "code_verifier": "w" * 50})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        missing = await http.post(f"{op.url}/token", auth=basic, data={
            "grant_type": "authorization_code", "code": back["code"], "redirect_uri": params["redirect_uri"]})
        assert missing.status_code == 400 and missing.json()["error"] in ("invalid_request", "invalid_grant")
        bad_secret = await http.post(f"{op.url}/token", auth=httpx.BasicAuth("shop", "nope"), data=form)
        assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"


async def test_access_token_only_in_the_authorization_header(op: Provider) -> None:
    access = (await code_flow(op))["token"]["access_token"]
    async with httpx.AsyncClient() as http:
        query = await http.get(f"{op.url}/userinfo", params={"access_token": access})
        assert query.status_code == 400 and query.json()["error"] == "invalid_request"
        body = await http.post(f"{op.url}/userinfo", data={"access_token": access})
        assert body.status_code == 400 and body.json()["error"] == "invalid_request"
        none = await http.get(f"{op.url}/userinfo")
        assert none.status_code == 401 and "Bearer" in none.headers["www-authenticate"]


@pytest.mark.parametrize("ui_locales, accept, lang, expected", [
    ("fr", None, "fr", "Mot de passe"), ("en", None, "en", "Password"), ("es", None, "es", "Contraseña"),
    ("de", "en", "de", "Passwort"), ("gcf es", None, "es", "Contraseña"),
    (None, "de-DE,de;q=0.9,en;q=0.5", "de", "Passwort"), (None, "es;q=0.2,en;q=0.8", "en", "Password"),
    (None, None, "fr", "Mot de passe"),
])
async def test_login_page_languages(op: Provider, ui_locales: str | None, accept: str | None, lang: str,
                                    expected: str) -> None:
    headers = {"Accept-Language": accept} if accept else {}
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{op.url}/authorize", params=authorize_params(ui_locales=ui_locales), headers=headers)
    assert page.status_code == 200 and expected in page.text and f'<html lang="{lang}"' in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # http issuer


async def test_pages_escape_what_they_echo_and_forms_need_csrf(op: Provider) -> None:
    evil = '"><script>alert(1)</script>' + "x" * 32
    async with httpx.AsyncClient() as browser:
        page = await browser.get(f"{op.url}/authorize", params=authorize_params(state=evil))
        assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text
        fields = form_fields(page.text)
        assert fields["state"] == evil  # round-trips intact
        # no CSRF token: refused
        forged = await httpx.AsyncClient().post(f"{op.url}/login", data={**fields, "username": "josephine",
                                                                        "password": PASSWORD})
        assert forged.status_code == 403
        # consent page escapes the client's name
        response = await browser.post(f"{op.url}/login", data=fields | {"username": "josephine",
                                                                       "password": PASSWORD})
        consent = await browser.get(response.headers["location"])
        assert "Boutique &lt;b&gt;Lakou&lt;/b&gt;" in consent.text and "<b>Lakou" not in consent.text
        denied = await browser.post(f"{op.url}/consent", data=form_fields(consent.text) | {"decision": "deny"})
        back = callback_params(denied)
        assert back["error"] == "access_denied" and back["state"] == evil


async def test_brute_force_lockout_per_account(op: Provider) -> None:
    async with httpx.AsyncClient(headers={"Accept-Language": "en"}) as browser:
        page = await browser.get(f"{op.url}/authorize", params=authorize_params())
        fields = form_fields(page.text)
        for _ in range(5):
            wrong = await browser.post(f"{op.url}/login", data=fields | {"username": "victor", "password": "nope"})
            assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
        locked = await browser.post(f"{op.url}/login", data=fields | {"username": "victor", "password": PASSWORD})
        assert locked.status_code == 429 and "Too many sign-in attempts" in locked.text
        # another account from the same address is not locked (the per-IP limit is higher)
        other = await browser.post(f"{op.url}/login", data=fields | {"username": "josephine", "password": PASSWORD})
        assert other.status_code == 303


async def test_prompt_none_without_a_session_and_without_consent(op: Provider) -> None:
    async with httpx.AsyncClient() as browser:
        back = callback_params(await browser.get(f"{op.url}/authorize", params=authorize_params(prompt="none")))
        assert back["error"] == "login_required"
        await code_flow(op, browser=browser)  # signed in, consented to shop
        other = callback_params(await browser.get(f"{op.url}/authorize", params=authorize_params(
            client_id="mairie", redirect_uri="http://localhost:9/cb", prompt="none")))
        assert other["error"] == "consent_required"
        silent = callback_params(await browser.get(f"{op.url}/authorize", params=authorize_params(
            prompt="none", scope="openid profile email mq_residence")))
        assert "code" in silent and silent["iss"] == op.url


async def test_rp_initiated_and_back_channel_logout(op: Provider) -> None:
    async with httpx.AsyncClient() as browser:
        shop = await code_flow(op, browser=browser)
        mairie = await code_flow(op, "mairie", redirect_uri="http://localhost:9/cb", browser=browser)
        id_token = shop["token"]["id_token"]
        sid = (await verify_id_token(op, id_token, "shop", shop["nonce"]))["sid"]
        op.logout_tokens.clear()
        unregistered = await browser.get(f"{op.url}/logout", params={
            "id_token_hint": id_token, "post_logout_redirect_uri": "http://127.0.0.1:9/elsewhere"})
        assert unregistered.status_code == 400
        no_hint = await browser.get(f"{op.url}/logout", params={"post_logout_redirect_uri": "http://127.0.0.1:9/bye"})
        assert no_hint.status_code == 400 and "location" not in no_hint.headers
        state = random_value()
        out = await browser.get(f"{op.url}/logout", params={
            "id_token_hint": id_token, "post_logout_redirect_uri": "http://127.0.0.1:9/bye", "state": state})
        assert out.status_code == 303 and out.headers["location"] == f"http://127.0.0.1:9/bye?state={state}"
        # the session is over: the next authorization asks for a login again
        again = await browser.get(f"{op.url}/authorize", params=authorize_params())
        assert 'action="login"' in again.text
    keys = jwk.JWKSet.from_json(json.dumps(await _jwks(op)))
    received = {}
    for token in op.logout_tokens:
        parsed = jwt.JWT(jwt=token, key=keys, check_claims={"iss": op.url})
        assert parsed.token.jose_header["typ"] == "logout+jwt"
        claims = json.loads(parsed.claims)
        assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"] and "nonce" not in claims
        received[claims["aud"]] = claims
    assert set(received) == {"shop", "mairie"}
    assert received["shop"]["sid"] == sid
    assert received["shop"]["sub"] == (await verify_id_token(op, id_token, "shop", shop["nonce"]))["sub"]
    assert received["mairie"]["sub"] == (await verify_id_token(op, mairie["token"]["id_token"], "mairie",
                                                               mairie["nonce"]))["sub"]
