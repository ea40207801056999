"""Citizen login at the BAP through a real Martinique Connect, and pairwise DIDs in init/confirm.

One provider (did.connect on 127.0.0.1) with the BAP registered as a client, one BAP (no gateway
needed for these routes), httpx as the browser: login form with its CSRF token, consent, then
the redirect to the BAP's callback.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from datetime import UTC, datetime
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import yaml
from sqlalchemy import select

from bap import messages
from bap.app import create_app
from bap.auth import customer_did
from bap.settings import BapSettings
from bap.tables import BapSession, BapTransaction
from beckn.store.db import create_engine, session_factory
from beckn.store.tables import OutboxMessage
from tests.conftest import TRANSACTION_YAML, free_port, serve_app
from tests.connect_support import Provider, browser_login, provider
from tests.test_conformance import Spec

CLIENT = "lakou-bap"
IDENTITY_SECRET = "bap-identity-secret-" + "x" * 32


@dataclass
class World:
    op: Provider
    bap: str
    db_url: str
    settings: BapSettings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bap-login")
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/api/v1/auth/callback"
    with provider(tmp / "mc", f"sqlite+aiosqlite:///{tmp / 'mc.db'}",
                  extra_clients={CLIENT: {"redirect_uris": [redirect], "name": "Lakou"}}) as op:
        db_url = f"sqlite+aiosqlite:///{tmp / 'bap.db'}"
        settings = BapSettings(data_dir=tmp / "bap", database_url=db_url, registry_url="http://127.0.0.1:9",
                               city="insee:97209", bap_connect_issuer=op.url, bap_connect_client_id=CLIENT,
                               bap_connect_client_secret=op.clients[CLIENT], bap_connect_redirect_uri=redirect,
                               bap_identity_secret=IDENTITY_SECRET)
        with serve_app(create_app(settings, port=port), port=port) as bap:
            yield World(op, bap, db_url, settings)


@pytest.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{world.bap}/api/v1", timeout=20) as client:
        yield client


async def new_session(http: httpx.AsyncClient) -> dict[str, str]:
    answer = await http.post("/sessions")
    assert answer.status_code == 201
    return {"Authorization": f"Bearer {answer.json()['token']}"}


async def start(http: httpx.AsyncClient, auth: dict[str, str], method: str | None = None) -> str:
    answer = await http.post("/auth/login", headers=auth, **({"json": {"method": method}} if method else {}))
    assert answer.status_code == 200, answer.text
    return answer.json()["authorization_url"]


async def to_callback(url: str, username: str = "josephine") -> str:
    """Drive Martinique Connect's pages; return the redirect to the BAP's callback (not followed)."""
    async with httpx.AsyncClient() as browser:
        answer = await browser_login(browser, url, username=username)
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["location"]


async def code_from(callback: str) -> str:
    """The browser at the BAP's callback (no app URL: the login code as JSON)."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(callback)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.json()["login_code"]


async def complete(http: httpx.AsyncClient, auth: dict[str, str], code: str) -> httpx.Response:
    return await http.post("/auth/complete", headers=auth, json={"login_code": code})


async def login(http: httpx.AsyncClient, auth: dict[str, str], username: str = "josephine") -> dict[str, Any]:
    """The whole login: start, Martinique Connect's pages, the callback, then the app's complete."""
    code = await code_from(await to_callback(await start(http, auth), username))
    done = await complete(http, auth, code)
    assert done.status_code == 200, done.text
    me = (await http.get("/auth/me", headers=auth)).json()
    assert done.json() == me
    return me


def refused(answer: httpx.Response, code: str = "invalid_login_code") -> str:
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
    return str(answer.json()["error"]["detail"])


async def db_rows(db_url: str, statement: Any) -> list[Any]:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            return list((await s.execute(statement)).scalars().all())
    finally:
        await engine.dispose()


async def db_add(db_url: str, *rows: Any) -> None:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            s.add_all(rows)
            await s.commit()
    finally:
        await engine.dispose()


async def session_id(db_url: str, auth: dict[str, str]) -> int:
    from bap.api.sessions import token_hash
    token = auth["Authorization"].split(" ", 1)[1]
    rows = await db_rows(db_url, select(BapSession).where(BapSession.token_hash == token_hash(token)))
    return int(rows[0].id)


# ------------------------------------------------------------------ login


async def test_login_sets_a_pairwise_account_and_logout_clears_it(world: World, http: httpx.AsyncClient) -> None:
    auth = await new_session(http)
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False
    url = await start(http, auth)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{world.op.url}/authorize")
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) >= 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32 and query["scope"] == "openid"
    assert "code_verifier" not in url

    me = await login(http, auth)
    assert me["logged_in"] is True and me["issuer"] == world.op.url and me["acr"] == "mq:local"
    assert isinstance(me["auth_time"], int) and len(me["account"]) >= 20
    assert me["account"] not in ("josephine", "jo@example.mq")  # the pairwise sub, not the username
    rows = await db_rows(world.db_url, select(BapSession.account_id).where(BapSession.account_id.is_not(None)))
    assert f"{world.op.url} {me['account']}" in rows  # prefixed by the issuer

    # The same citizen again, from another session: the same account.
    other = await new_session(http)
    assert (await login(http, other))["account"] == me["account"]

    out = await http.post("/auth/logout", headers=auth)
    assert out.status_code == 200 and out.json()["logged_in"] is False
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False
    assert (await http.get("/auth/me", headers=other)).json()["logged_in"] is True


async def test_another_sessions_login_does_not_leak(world: World, http: httpx.AsyncClient) -> None:
    jo, victor = await new_session(http), await new_session(http)
    jo_me = await login(http, jo)
    victor_me = await login(http, victor, username="victor")
    assert victor_me["account"] != jo_me["account"]
    assert (await http.get("/auth/me", headers=jo)).json()["account"] == jo_me["account"]
    # A session that did not log in stays anonymous.
    bystander = await new_session(http)
    assert (await http.get("/auth/me", headers=bystander)).json()["logged_in"] is False


async def test_bad_callbacks_are_refused_with_4xx(world: World, http: httpx.AsyncClient) -> None:
    auth = await new_session(http)
    callback = await to_callback(await start(http, auth))
    params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    base = callback.split("?", 1)[0]
    async with httpx.AsyncClient() as browser:
        wrong_state = await browser.get(base, params={**params, "state": "x" * 60})
        assert wrong_state.status_code == 400 and wrong_state.json()["error"]["code"] == "invalid_state"
        tampered = params["state"][:-4] + ("AAAA" if not params["state"].endswith("AAAA") else "BBBB")
        assert (await browser.get(base, params={**params, "state": tampered})).status_code == 400
        wrong_iss = await browser.get(base, params={**params, "iss": "https://evil.example"})
        assert wrong_iss.status_code == 400 and wrong_iss.json()["error"]["code"] == "wrong_issuer"
        no_code = await browser.get(base, params={"state": params["state"]})
        assert no_code.status_code == 400
        refused = await browser.get(base, params={"state": params["state"], "error": "access_denied"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "login_refused"
        assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False  # nothing so far

        ok = await browser.get(callback)
        assert ok.status_code == 200 and ok.json()["login_code"]
        replay = await browser.get(callback)  # the code is single-use at Martinique Connect
        assert replay.status_code == 400 and replay.json()["error"]["code"] == "login_failed"
        html = await browser.get(callback, headers={"Accept": "text/html"})
        assert html.status_code == 400 and "login_failed" in html.text
    # The callback alone logs nobody in: the app applies the login with the code and its bearer.
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False
    assert (await complete(http, auth, ok.json()["login_code"])).json()["logged_in"] is True


async def test_login_csrf_the_callback_changes_no_session_and_a_code_serves_only_its_session(
        world: World, http: httpx.AsyncClient) -> None:
    """The attack: a session starts a login and sends the URL to a victim, who signs in. The callback
    only hands a code to the victim's browser (the attacker never sees it), and that code applies to
    no session but the one that started the login: the victim's app cannot be tricked into it either."""
    attacker = await new_session(http)
    url = await start(http, attacker)
    code = await code_from(await to_callback(url, username="victor"))  # in the victim's browser
    assert (await http.get("/auth/me", headers=attacker)).json()["logged_in"] is False
    [row] = await db_rows(world.db_url, select(BapSession).where(BapSession.id == await session_id(world.db_url, attacker)))
    assert (row.account_id, row.acr, row.auth_time) == (None, None, None)

    # The victim's app (anonymous, or already logged in as the victim) gets the code: refused, unchanged.
    anonymous, victim = await new_session(http), await new_session(http)
    victim_me = await login(http, victim, username="victor")
    victim_id = await session_id(world.db_url, victim)
    await db_add(world.db_url, _cart(victim_id, "bpp-a.lakou.mq", order_id="order-victim", state="Created",
                                     confirmed_at=datetime.now(UTC)))
    for app in (anonymous, victim):
        answer = await http.post("/auth/complete", headers={**app, "Accept-Language": "en"}, json={"login_code": code})
        assert "another session" in refused(answer)
        assert "not started from this app" in answer.json()["error"]["message"]  # what the app shows
    assert (await http.get("/auth/me", headers=anonymous)).json()["logged_in"] is False
    assert (await http.get("/auth/me", headers=victim)).json() == victim_me
    # The attacker's session is still anonymous and sees none of the victim's orders.
    assert (await http.get("/auth/me", headers=attacker)).json()["logged_in"] is False
    orders = (await http.get("/orders", headers=attacker)).json()["orders"]
    assert all(o.get("order_id") != "order-victim" for o in orders) and orders == []
    # Without a bearer token nothing is applied at all.
    assert (await http.post("/auth/complete", json={"login_code": code})).status_code == 401
    await http.post("/auth/logout", headers=victim)  # the victim's order leaves the account (other tests)


async def test_a_login_code_is_sealed_short_lived_and_single_use(world: World, http: httpx.AsyncClient) -> None:
    auth = await new_session(http)
    url = await start(http, auth)
    state = parse_qs(urlsplit(url).query)["state"][0]
    code = await code_from(await to_callback(url))
    connect = create_app(world.settings).state.connect_login  # another process with the same secret

    tampered = code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB")
    assert "tampered" in refused(await complete(http, auth, tampered))
    assert "tampered" in refused(await complete(http, auth, state))  # a state is not a login code
    expired = connect._codes.seal({**connect._codes.open(code), "exp": int(datetime.now(UTC).timestamp()) - 1})
    assert "expired" in refused(await complete(http, auth, expired))
    other_key = create_app(world.settings.model_copy(update={"bap_identity_secret": "another-secret-" + "z" * 32}))
    forged = other_key.state.connect_login.login_code(connect.redeem(code))
    assert "tampered" in refused(await complete(http, auth, forged))
    for bad in ({}, {"login_code": ""}, {"login_code": 3}, {"login_code": "x" * 5000}):
        answer = await http.post("/auth/complete", headers=auth, json=bad)
        assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "login_code", bad
    async with httpx.AsyncClient() as browser:  # nor is a login code a state
        as_state = await browser.get(f"{world.bap}/api/v1/auth/callback", params={"code": "c", "state": code})
    assert as_state.status_code == 400 and as_state.json()["error"]["code"] == "invalid_state"
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False

    done = await complete(http, auth, code)
    assert done.status_code == 200 and done.json()["logged_in"] is True
    # A replay is refused and harmless: the session stays as the first use left it.
    assert "already used" in refused(await complete(http, auth, code))
    assert (await http.get("/auth/me", headers=auth)).json() == done.json()
    await http.post("/auth/logout", headers=auth)
    refused(await complete(http, auth, code))
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False


async def test_a_new_login_or_a_logout_voids_the_pending_login(world: World, http: httpx.AsyncClient) -> None:
    auth = await new_session(http)
    first = await code_from(await to_callback(await start(http, auth)))
    second_url = await start(http, auth)  # the app started again: only this login may complete
    assert "another login" in refused(await complete(http, auth, first))
    second = await code_from(await to_callback(second_url))
    assert (await complete(http, auth, second)).json()["logged_in"] is True

    # A callback for a login the session has since replaced says so to the browser, at once.
    stale = await to_callback(await start(http, auth), username="victor")
    await start(http, auth)
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(stale)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_state", answer.text
    assert "another login" in answer.json()["error"]["detail"]

    pending = await code_from(await to_callback(await start(http, auth), username="victor"))
    await http.post("/auth/logout", headers=auth)
    refused(await complete(http, auth, pending))
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False


async def test_the_code_goes_to_the_app_url_fragment_or_to_a_page(world: World, http: httpx.AsyncClient,
                                                                   tmp_path: Path) -> None:
    port = free_port()
    app_url = "https://app.lakou.mq/login?from=bap"
    settings = world.settings.model_copy(update={"data_dir": tmp_path, "bap_connect_app_url": app_url + "#stale"})
    auth = await new_session(http)
    with serve_app(create_app(settings, port=port), port=port) as other:
        # The same BAP behind another address (a replica with the app URL set): the same callback.
        callback = (await to_callback(await start(http, auth))).replace(world.bap, other, 1)
        params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        async with httpx.AsyncClient() as browser:
            ok = await browser.get(callback)
            failed = await browser.get(callback.split("?", 1)[0], params={"state": params["state"],
                                                                         "error": "access_denied"})
        assert ok.status_code == 303 and ok.headers["cache-control"] == "no-store"
        base, _, fragment = ok.headers["location"].partition("#")
        assert base == app_url and "stale" not in fragment  # in the fragment, never in the query
        code = parse_qs(fragment)["login_code"][0]
        assert failed.status_code == 303
        assert failed.headers["location"] == app_url + "#login=failed&error=login_refused"
        assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False
        async with httpx.AsyncClient(base_url=f"{other}/api/v1") as app:
            assert (await complete(app, auth, code)).json()["logged_in"] is True

    # No app URL and a browser asking for a page (developer setups): the code is shown on it.
    other_session = await new_session(http)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(await to_callback(await start(http, other_session)), headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store" and "Copy this code into the app" in page.text
    shown = unescape(re.search(r"<code[^>]*>([^<]+)</code>", page.text).group(1))
    assert (await complete(http, other_session, shown)).json()["logged_in"] is True


async def test_a_tampered_or_foreign_id_token_is_refused(world: World) -> None:
    connect = create_app(world.settings).state.connect_login
    async with httpx.AsyncClient() as http_client:
        connect._http = http_client
        from tests.connect_support import code_flow
        flow = await code_flow(world.op, "shop", scope="openid")
        token = flow["token"]
        # Issued for another client: the audience check refuses it.
        with pytest.raises(Exception) as wrong_aud:
            await connect.verify_id_token(token["id_token"], nonce=flow["nonce"], access_token=token["access_token"])
        assert getattr(wrong_aud.value, "code", "") == "invalid_id_token"
        head, body, sig = token["id_token"].split(".")
        flipped = sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")
        with pytest.raises(Exception) as bad_sig:
            await connect.verify_id_token(f"{head}.{body}.{flipped}", nonce=flow["nonce"], access_token=None)
        assert getattr(bad_sig.value, "code", "") == "invalid_id_token"


async def test_login_not_configured_is_a_clear_404(tmp_path: Path) -> None:
    port = free_port()
    settings = BapSettings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
                           registry_url="http://127.0.0.1:9", city="insee:97209")
    with serve_app(create_app(settings, port=port), port=port) as bap:
        async with httpx.AsyncClient(base_url=f"{bap}/api/v1") as client:
            auth = await new_session(client)
            answer = await client.post("/auth/login", headers=auth)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "login_unavailable"
            assert "LAKOU_BAP_CONNECT_ISSUER" in answer.json()["error"]["detail"]
            assert (await client.get("/auth/callback", params={"code": "c", "state": "s"})).status_code == 404
            assert (await client.post("/auth/complete", headers=auth, json={"login_code": "c"})).status_code == 404
            assert (await client.get("/auth/me", headers=auth)).json()["logged_in"] is False
            assert (await client.post("/auth/login")).status_code == 401


async def test_acr_and_auth_time_are_kept_on_the_session_row(world: World, http: httpx.AsyncClient,
                                                              tmp_path: Path) -> None:
    auth = await new_session(http)
    me = await login(http, auth)
    assert me["acr"] == "mq:local" and abs(me["auth_time"] - datetime.now(UTC).timestamp()) < 300
    [row] = await db_rows(world.db_url, select(BapSession).where(BapSession.id == await session_id(world.db_url, auth)))
    assert row.acr == "mq:local" and int(row.auth_time.timestamp()) == me["auth_time"]
    # Another BAP process on the same database (a restart, or a second replica) answers the same.
    port = free_port()
    with serve_app(create_app(world.settings.model_copy(update={"data_dir": tmp_path}), port=port), port=port) as other:
        async with httpx.AsyncClient(base_url=f"{other}/api/v1", timeout=20) as replica:
            assert (await replica.get("/auth/me", headers=auth)).json() == me
            out = await replica.post("/auth/logout", headers=auth)
            assert out.json() == {"logged_in": False, "account": None, "issuer": None, "acr": None, "auth_time": None}
    [row] = await db_rows(world.db_url, select(BapSession).where(BapSession.id == row.id))
    assert (row.account_id, row.acr, row.auth_time) == (None, None, None)
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False


async def test_the_login_method_chooses_acr_values(world: World, http: httpx.AsyncClient) -> None:
    auth = await new_session(http)
    for method, acr_values in ((None, None), ("password", "mq:local"), ("wallet", "mq:wallet")):
        query = parse_qs(urlsplit(await start(http, auth, method)).query)
        assert query.get("acr_values") == ([acr_values] if acr_values else None), method
    empty = await http.post("/auth/login", headers=auth, json={})
    assert empty.status_code == 200 and "acr_values" not in empty.json()["authorization_url"]
    for bad in ({"method": "fingerprint"}, {"method": 3}):
        answer = await http.post("/auth/login", headers=auth, json=bad)
        assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "method", answer.text
    assert (await http.post("/auth/login", json={"method": "wallet"})).status_code == 401


async def test_a_wallet_login_goes_to_the_wallet_page_even_over_a_password_session(
        world: World, http: httpx.AsyncClient) -> None:
    """Martinique Connect honours acr_values=mq:wallet: no password form, and a browser already signed
    in with a password is not let through (a step-up), so the citizen really presents the wallet."""
    async with httpx.AsyncClient() as browser:
        password = await new_session(http)
        callback = (await browser_login(browser, await start(http, password, "password"))).headers["location"]
        code = await browser.get(callback)  # this browser now has a Connect session
        assert (await complete(http, password, code.json()["login_code"])).json()["acr"] == "mq:local"
        wallet = await new_session(http)
        url = await start(http, wallet, "wallet")
        page = await browser.get(url)
        assert page.status_code == 303, page.text
        target = urlsplit(page.headers["location"])
        assert f"{target.scheme}://{target.netloc}" == world.op.url and target.path == "/wallet/login"
        assert parse_qs(target.query)["acr_values"] == ["mq:wallet"]
        wallet_page = await browser.get(page.headers["location"])
        assert wallet_page.status_code == 200 and "openid4vp://" in wallet_page.text
    assert (await http.get("/auth/me", headers=wallet)).json()["logged_in"] is False


async def test_a_wallet_login_answered_with_a_password_is_refused(world: World, http: httpx.AsyncClient) -> None:
    """The state remembers that the app asked for the wallet: a browser that drops acr_values from the
    authorization request and signs in with a password gets acr mq:local, and the BAP refuses it."""
    auth = await new_session(http)
    url = await start(http, auth, "wallet")
    query = [(k, v) for k, v in parse_qs(urlsplit(url).query).items() if k != "acr_values"]
    stripped = url.split("?", 1)[0] + "?" + urlencode([(k, v[0]) for k, v in query])
    callback = await to_callback(stripped)
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(callback, headers={"Accept-Language": "de"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "acr_not_met", answer.text
    assert "wallet" in answer.json()["error"]["detail"]
    assert "Wallet" in answer.json()["error"]["message"]  # the citizen's words, in German
    assert (await http.get("/auth/me", headers=auth)).json()["logged_in"] is False
    [row] = await db_rows(world.db_url, select(BapSession).where(BapSession.id == await session_id(world.db_url, auth)))
    assert (row.account_id, row.acr, row.auth_time) == (None, None, None)


# ------------------------------------------------------------------ orders and pairwise DIDs


def _cart(session: int, bpp_id: str, **extra: Any) -> BapTransaction:
    return BapTransaction(id=str(uuid.uuid4()), session_id=session, city="insee:97209", bpp_id=bpp_id,
                          bpp_uri="http://127.0.0.1:9/beckn", provider_id="p1",
                          items=[{"id": "i1", "quantity": 1}], last_action="on_select", **extra)


@functools.cache
def init_validator() -> Any:
    with TRANSACTION_YAML.open(encoding="utf-8") as f:
        return Spec(yaml.safe_load(f)).request_validator("init")


async def _init_body(world: World, http: httpx.AsyncClient, auth: dict[str, str], tx: BapTransaction) -> dict:
    await db_add(world.db_url, tx)
    answer = await http.post(f"/transactions/{tx.id}/init", headers=auth, json={
        "billing": {"name": "Léa Joseph", "phone": "+596696123456", "email": "lea@example.mq"},
        "fulfillment": {"type": "pickup"}, "wait_ms": 0})
    assert answer.status_code in (200, 202, 502, 504), answer.text
    rows = await db_rows(world.db_url, select(OutboxMessage).where(OutboxMessage.transaction_id == tx.id,
                                                                    OutboxMessage.action == "init"))
    assert len(rows) == 1
    body = json.loads(rows[0].body)
    errors = list(init_validator().iter_errors(body))  # Beckn 1.1.1: Person.id is a string
    assert errors == [], [e.message for e in errors[:3]]
    return body


async def test_orders_of_the_accounts_other_sessions_are_listed(world: World, http: httpx.AsyncClient) -> None:
    phone, laptop, stranger = await new_session(http), await new_session(http), await new_session(http)
    phone_id, laptop_id, stranger_id = [await session_id(world.db_url, a) for a in (phone, laptop, stranger)]
    orders = {name: _cart(sid, "bpp-a.lakou.mq", order_id=f"order-{name}", state="Created",
                          confirmed_at=datetime.now(UTC))
              for name, sid in (("phone", phone_id), ("laptop", laptop_id), ("stranger", stranger_id))}
    await db_add(world.db_url, *orders.values())

    def ids(answer: httpx.Response) -> set[str]:
        assert answer.status_code == 200, answer.text
        return {o["id"] for o in answer.json()["orders"]}

    # Anonymous: each session sees its own order (kept after login).
    assert ids(await http.get("/orders", headers=phone)) == {orders["phone"].id}
    await login(http, phone)
    assert ids(await http.get("/orders", headers=phone)) == {orders["phone"].id}
    await login(http, laptop)
    both = {orders["phone"].id, orders["laptop"].id}
    assert ids(await http.get("/orders", headers=phone)) == both
    assert ids(await http.get("/orders", headers=laptop)) == both
    assert (await http.get(f"/orders/{orders['laptop'].id}", headers=phone)).status_code == 200
    assert ids(await http.get("/orders", headers=stranger)) == {orders["stranger"].id}
    assert (await http.get(f"/orders/{orders['phone'].id}", headers=stranger)).status_code == 404
    await login(http, stranger, username="victor")
    assert ids(await http.get("/orders", headers=stranger)) == {orders["stranger"].id}
    await http.post("/auth/logout", headers=laptop)
    assert ids(await http.get("/orders", headers=laptop)) == {orders["laptop"].id}
    assert ids(await http.get("/orders", headers=phone)) == {orders["phone"].id}


def test_confirm_adds_the_did_to_the_echoed_customer() -> None:
    order = {"id": "o1", "fulfillments": [{"id": "f1", "customer": {"person": {"name": "Léa"}}}, {"id": "f2"}]}
    sent = messages.confirm_message(order, "fr", person_id="did:key:z6MkA")["order"]
    assert sent["fulfillments"][0]["customer"]["person"] == {"name": "Léa", "id": "did:key:z6MkA"}
    assert sent["fulfillments"][1] == {"id": "f2"}
    assert order["fulfillments"][0]["customer"]["person"] == {"name": "Léa"}  # not mutated
    kept = {"fulfillments": [{"customer": {"person": {"id": "did:key:z6MkOld"}}}]}
    assert messages.confirm_message(kept, person_id="did:key:z6MkNew")["order"] == kept
    assert messages.confirm_message(order)["order"] == order


def test_customer_did_needs_an_account_and_the_secret() -> None:
    settings = BapSettings(bap_identity_secret=IDENTITY_SECRET)
    assert customer_did(settings, None, "bpp-a") is None
    assert customer_did(settings, "iss sub", None) is None
    assert customer_did(BapSettings(), "iss sub", "bpp-a") is None
    assert customer_did(settings, "iss sub", "bpp-a") == customer_did(settings, "iss sub", "bpp-a")
    assert customer_did(settings, "iss sub", "bpp-a") != customer_did(settings, "iss2 sub", "bpp-a")


async def test_pairwise_did_in_init_per_bpp_and_stable(world: World, http: httpx.AsyncClient) -> None:
    anonymous = await new_session(http)
    anon_id = await session_id(world.db_url, anonymous)
    body = await _init_body(world, http, anonymous, _cart(anon_id, "bpp-a.lakou.mq"))
    assert "id" not in body["message"]["order"]["fulfillments"][0]["customer"]["person"]

    first, second = await new_session(http), await new_session(http)
    await login(http, first)
    await login(http, second)  # the same citizen, another session
    first_id, second_id = await session_id(world.db_url, first), await session_id(world.db_url, second)
    dids = []
    for auth, sid, bpp in ((first, first_id, "bpp-a.lakou.mq"), (second, second_id, "bpp-a.lakou.mq"),
                           (first, first_id, "bpp-b.lakou.mq")):
        body = await _init_body(world, http, auth, _cart(sid, bpp))
        dids.append(body["message"]["order"]["fulfillments"][0]["customer"]["person"]["id"])
        assert body["context"]["bpp_id"] == bpp
    assert all(d.startswith("did:key:z6Mk") for d in dids)
    assert dids[0] == dids[1]  # stable for one citizen and one BPP
    assert dids[0] != dids[2]  # never the same for two BPPs
    assert IDENTITY_SECRET not in json.dumps(body)

    victor = await new_session(http)
    await login(http, victor, username="victor")
    victor_id = await session_id(world.db_url, victor)
    body = await _init_body(world, http, victor, _cart(victor_id, "bpp-a.lakou.mq"))
    assert body["message"]["order"]["fulfillments"][0]["customer"]["person"]["id"] not in dids
