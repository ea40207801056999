"""Merchant login at the BPP through a real Martinique Connect (bpp.merchant_login).

One provider (did.connect on 127.0.0.1) with the BPP registered as a client, real BPPs (in-thread
uvicorn; no registry needed for these routes), httpx as the browser (its cookie jar included): for a
login, the BPP's /login/start (which sets the login cookie), then Martinique Connect's login form
with its CSRF token, consent, then the redirect to the BPP's callback.
"""

from __future__ import annotations

import secrets
import time
from http.cookies import SimpleCookie
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from beckn.store.db import create_engine, session_factory
from bpp.app import create_app
from bpp.merchant_login import LINK_CODE_TTL, link_code_sealer, relying_party, ticket_sealer
from bpp.settings import BppSettings
from bpp.tables import BppMerchantLogin, BppMerchantSession
from did.connect import admin
from did.connect.rp import RelyingParty
from tests.conftest import free_port, serve_app
from tests.connect_support import PASSWORD, Provider, browser_login, provider
from test_bpp_merchant_api import SIRET_B, profile

CLIENT = "lakou-bpp"
ADMIN = "operator-token-" + "o" * 24
APP_URL = "https://marchands.lakou.example/app"
COOKIE = "lakou_merchant_login"  # the login cookie of a plain-http BPP (these tests' BPPs)


@dataclass
class World:
    op: Provider
    ports: dict[str, int]
    tmp: Path


@dataclass
class Person:
    """Someone with a Martinique Connect account and a browser that keeps its session there (after
    the first login, Connect asks no password: one Argon2 check per person, tests stay fast)."""

    username: str
    browser: httpx.AsyncClient


NewPerson = Callable[..., Awaitable[Person]]


@dataclass
class Bpp:
    url: str
    db_url: str
    settings: BppSettings


def _redirect(port: int) -> str:
    return f"http://127.0.0.1:{port}/api/v1/merchant/auth/callback"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bpp-login")
    # Every BPP of this module needs its redirect URI registered with the client up front.
    ports = {name: free_port() for name in ("main", "app", "postgres", "https")}
    client = {"redirect_uris": [_redirect(p) for p in ports.values()], "name": "Lakou marchands"}
    with provider(tmp / "mc", f"sqlite+aiosqlite:///{tmp / 'mc.db'}", extra_clients={CLIENT: client}) as op:
        yield World(op, ports, tmp)


@contextmanager
def running_bpp(world: World, name: str, db_url: str | None = None, **extra: Any) -> Iterator[Bpp]:
    port = world.ports[name]
    db_url = db_url or f"sqlite+aiosqlite:///{world.tmp / f'bpp-{name}.db'}"
    settings = BppSettings(data_dir=world.tmp / f"bpp-{name}", database_url=db_url, registry_url="http://127.0.0.1:9",
                           bpp_admin_token=ADMIN, bpp_connect_issuer=world.op.url, bpp_connect_client_id=CLIENT,
                           bpp_connect_client_secret=world.op.clients[CLIENT],
                           **({"bpp_connect_redirect_uri": _redirect(port)} | extra))
    with serve_app(create_app(settings, port=port), port=port) as url:
        yield Bpp(url, db_url, settings)


@pytest.fixture(scope="module")
def bpp(world: World) -> Iterator[Bpp]:
    with running_bpp(world, "main") as running:
        yield running


@pytest.fixture
async def http(bpp: Bpp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{bpp.url}/api/v1", timeout=20) as client:
        yield client


@pytest.fixture
async def person(world: World) -> AsyncIterator[NewPerson]:
    """`await person()`: a fresh Martinique Connect account (tests never share an identity on one
    BPP); `await person("josephine")`: one of the provider's accounts."""
    made: list[Person] = []

    async def make(username: str | None = None) -> Person:
        if username is None:
            username = f"m-{secrets.token_hex(4)}"
            await admin.add_user(world.op.settings, username=username, password=PASSWORD)
        made.append(Person(username, httpx.AsyncClient(timeout=20)))
        return made[-1]

    yield make
    for someone in made:
        await someone.browser.aclose()


# ------------------------------------------------------------------ helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_merchant(http: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    created = await http.post("/admin/merchants", json={"name": name}, headers=bearer(ADMIN))
    assert created.status_code == 201, created.text
    return created.json()["id"], bearer(created.json()["api_key"])


async def open_login(browser: httpx.AsyncClient, url: str) -> str:
    """A browser opens a login's URL (this BPP's /login/start): it gets the login cookie and is sent
    on to Martinique Connect; the URL it is sent to."""
    started = await browser.get(url)
    assert started.status_code == 303 and started.headers["cache-control"] == "no-store", started.text
    assert started.cookies.get(COOKIE)
    return started.headers["location"]


async def to_callback(http: httpx.AsyncClient, path: str, who: Person, auth: dict[str, str] | None = None) -> str:
    """Start a link or a login, drive Martinique Connect's pages; the callback URL (not followed)."""
    start = await http.post(f"/merchant/auth/{path}", headers=auth or {})
    assert start.status_code == 200, start.text
    url = start.json()["authorization_url"]
    if path == "login":  # a login goes through the BPP's /login/start first (a link is not bound)
        url = await open_login(who.browser, url)
    answer = await browser_login(who.browser, url, username=who.username)
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["location"]


async def flow(http: httpx.AsyncClient, path: str, who: Person, auth: dict[str, str] | None = None,
               **headers: str) -> httpx.Response:
    callback = await to_callback(http, path, who, auth)
    return await who.browser.get(callback, headers=headers)


async def link_code(http: httpx.AsyncClient, auth: dict[str, str], who: Person) -> dict[str, Any]:
    """Start a link as a merchant, complete it in `who`'s browser: the callback's answer (a code)."""
    answer = await flow(http, "link", who, auth)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store", answer.text
    return answer.json()


async def complete(http: httpx.AsyncClient, auth: dict[str, str], code: str) -> httpx.Response:
    return await http.post("/merchant/auth/link/complete", json={"link_code": code}, headers=auth)


async def link(http: httpx.AsyncClient, auth: dict[str, str], who: Person) -> dict[str, Any]:
    """The whole link: the browser's login, then the merchant confirms the code."""
    confirmed = await complete(http, auth, (await link_code(http, auth, who))["link_code"])
    assert confirmed.status_code == 200, confirmed.text
    return confirmed.json()


async def login(http: httpx.AsyncClient, who: Person) -> dict[str, Any]:
    answer = await flow(http, "login", who)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.json()


async def db_rows(db_url: str, statement: Any) -> list[Any]:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            return list((await s.execute(statement)).scalars().all())
    finally:
        await engine.dispose()


async def db_run(db_url: str, statement: Any) -> None:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            await s.execute(statement)
            await s.commit()
    finally:
        await engine.dispose()


def error_code(answer: httpx.Response) -> str:
    return answer.json()["detail"]["code"]


# ------------------------------------------------------------------ link and login


async def _link_login_and_use(http: httpx.AsyncClient, op: Provider, db_url: str, person: Person) -> list[str]:
    """Link, log in, act as the merchant (and only as it), log out: shared by SQLite and PostgreSQL.
    Returns the secrets seen (tokens, the sub), which no log may hold."""
    lea_id, lea_key = await new_merchant(http, "Le Panier de Mamie Léa")
    rene_id, rene_key = await new_merchant(http, "Poissonnerie René")
    suffix = secrets.token_hex(3)
    lea_shop, rene_shop = f"panier-lea-{suffix}", f"poisson-rene-{suffix}"
    assert (await http.post("/merchant/providers", headers=lea_key, json=profile(lea_shop))).status_code == 201
    assert (await http.post("/merchant/providers", headers=rene_key, json=profile(
        rene_shop, siret=SIRET_B, descriptor={"fr": {"name": "Poissonnerie René"}}))).status_code == 201

    linked = await link(http, lea_key, person)
    assert linked["linked"] is True and linked["merchant_id"] == lea_id and linked["issuer"] == op.url
    assert len(linked["sub"]) >= 20 and person.username not in linked["sub"]  # the pairwise sub, not the username
    listed = await http.get("/merchant/auth/link", headers=lea_key)
    assert [(x["issuer"], x["sub"]) for x in listed.json()] == [(op.url, linked["sub"])]
    assert (await http.get("/merchant/auth/link", headers=rene_key)).json() == []

    session = await login(http, person)
    token = session["token"]
    assert token.startswith("lkms_") and session["token_type"] == "Bearer" and session["merchant_id"] == lea_id
    expires = datetime.fromisoformat(session["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)

    # The session token is accepted like Léa's API key, in both header forms, and only for Léa.
    assert (await http.get("/merchant/me", headers=bearer(token))).json()["id"] == lea_id
    own = await http.get("/merchant/providers", headers=bearer(token))
    assert own.status_code == 200 and [p["id"] for p in own.json()] == [lea_shop]
    assert (await http.get(f"/merchant/providers/{lea_shop}", headers={"X-API-Key": token})).status_code == 200
    assert (await http.get(f"/merchant/providers/{rene_shop}", headers=bearer(token))).status_code == 404
    assert (await http.put(f"/merchant/providers/{rene_shop}/categories/fruits", headers=bearer(token),
                           json={"descriptor": {"fr": {"name": "Fruits"}}})).status_code == 404
    assert (await http.put(f"/merchant/providers/{lea_shop}/categories/fruits", headers=bearer(token),
                           json={"descriptor": {"fr": {"name": "Fruits"}}})).status_code == 200
    # Only a hash is stored: the token's secret is nowhere in its row.
    rows = await db_rows(db_url, select(BppMerchantSession).where(BppMerchantSession.merchant_id == lea_id))
    assert len(rows) == 1 and token.split("_", 2)[2] not in repr(rows[0].model_dump())

    # A second login is a second session; logging one out leaves the other and the API key working.
    second = (await login(http, person))["token"]
    assert second != token
    assert (await http.post("/merchant/auth/logout", headers=bearer(token))).status_code == 204
    assert (await http.get("/merchant/me", headers=bearer(token))).status_code == 401
    assert (await http.post("/merchant/auth/logout", headers=bearer(token))).status_code == 401
    assert (await http.get("/merchant/me", headers=bearer(second))).json()["id"] == lea_id
    # Logout takes a session token, never an API key (keys are the operator's to revoke).
    assert (await http.post("/merchant/auth/logout", headers=lea_key)).status_code == 401
    assert (await http.get("/merchant/providers", headers=lea_key)).status_code == 200
    assert (await http.get("/merchant/me", headers=rene_key)).json()["id"] == rene_id

    # An expired session is refused, by the merchant routes and by logout.
    await db_run(db_url, update(BppMerchantSession).where(BppMerchantSession.id == second.split("_")[1])
                 .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert (await http.get("/merchant/me", headers=bearer(second))).status_code == 401
    assert (await http.post("/merchant/auth/logout", headers=bearer(second))).status_code == 401
    assert (await http.get("/merchant/me", headers=lea_key)).status_code == 200
    return [token.split("_", 2)[2], second.split("_", 2)[2], linked["sub"]]


async def test_link_then_login_gives_a_session_of_that_merchant_only(world: World, bpp: Bpp, http: httpx.AsyncClient,
                                                                      person: NewPerson,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    secrets_seen = await _link_login_and_use(http, world.op, bpp.db_url, await person("josephine"))
    logs = "".join(capfd.readouterr())
    assert "bpp.merchant_login.ok" in logs  # the logs are captured here...
    assert not [s for s in secrets_seen if s in logs]  # ...and hold no token and no identity


async def test_the_storage_path_on_postgres(world: World, postgres_url: str, person: NewPerson) -> None:
    with running_bpp(world, "postgres", postgres_url) as pg:  # its own database: josephine is unlinked there
        async with httpx.AsyncClient(base_url=f"{pg.url}/api/v1", timeout=20) as client:
            await _link_login_and_use(client, world.op, postgres_url, await person("josephine"))


async def test_an_unlinked_identity_is_refused_with_403(bpp: Bpp, http: httpx.AsyncClient, person: NewPerson) -> None:
    stranger = await person("victor")  # never linked on this BPP
    before = len(await db_rows(bpp.db_url, select(BppMerchantSession.id)))
    refused = await flow(http, "login", stranger)
    assert refused.status_code == 403 and error_code(refused) == "not_linked"
    assert "link" in refused.json()["detail"]["message"]
    page = await flow(http, "login", stranger, accept="text/html")
    assert page.status_code == 403 and "not_linked" in page.text and page.headers["content-type"].startswith("text/html")
    assert len(await db_rows(bpp.db_url, select(BppMerchantSession.id))) == before


async def test_one_identity_one_merchant_and_unlinking_ends_its_sessions(bpp: Bpp, http: httpx.AsyncClient,
                                                                         person: NewPerson) -> None:
    lea_id, lea_key = await new_merchant(http, "Léa")
    _, rene_key = await new_merchant(http, "René")
    owner, staff = await person(), await person()
    sub = (await link(http, lea_key, owner))["sub"]
    again = await link(http, lea_key, owner)  # linking twice to the same merchant is harmless
    assert again["sub"] == sub
    taken = await flow(http, "link", owner, rene_key)
    assert taken.status_code == 409 and error_code(taken) == "already_linked"
    late = (await link_code(http, rene_key, staff))["link_code"]  # staff is free when René's code is made...
    staff_sub = (await link(http, lea_key, staff))["sub"]
    taken_late = await complete(http, rene_key, late)  # ...and Léa's when René confirms it
    assert taken_late.status_code == 409 and error_code(taken_late) == "already_linked"
    assert {x["sub"] for x in (await http.get("/merchant/auth/link", headers=lea_key)).json()} == {sub, staff_sub}

    token, staff_token = (await login(http, owner))["token"], (await login(http, staff))["token"]
    # Unlinking is authenticated, names only this merchant's identities, and ends their sessions.
    assert (await http.delete("/merchant/auth/link")).status_code == 401
    assert (await http.delete("/merchant/auth/link", params={"sub": sub}, headers=rene_key)).status_code == 404
    assert (await http.get("/merchant/me", headers=bearer(token))).status_code == 200
    assert (await http.delete("/merchant/auth/link", params={"sub": staff_sub}, headers=lea_key)).status_code == 204
    assert (await http.get("/merchant/me", headers=bearer(staff_token))).status_code == 401
    assert (await http.get("/merchant/me", headers=bearer(token))).json()["id"] == lea_id
    assert (await http.delete("/merchant/auth/link", headers=bearer(token))).status_code == 204  # all of them
    assert (await http.get("/merchant/me", headers=bearer(token))).status_code == 401
    assert await db_rows(bpp.db_url, select(BppMerchantLogin).where(BppMerchantLogin.merchant_id == lea_id)) == []
    assert error_code(await flow(http, "login", owner)) == "not_linked"
    # Now free, the identity can be linked to René.
    assert (await link(http, rene_key, owner))["sub"] == sub


async def test_the_callback_links_nothing_until_the_same_merchant_confirms(
        bpp: Bpp, http: httpx.AsyncClient, person: NewPerson) -> None:
    """Link CSRF: a merchant's link URL completed by someone else (forwarded to a victim, or leaked)
    must not link them: the code lands in their browser and only that merchant can confirm it."""
    lea_id, lea_key = await new_merchant(http, "Léa")
    rene_id, rene_key = await new_merchant(http, "René")
    victim = await person()
    answer = await link_code(http, lea_key, victim)
    code = answer["link_code"]
    assert answer["merchant_id"] == lea_id and "sub" not in answer and "linked" not in answer
    expires = datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) <= LINK_CODE_TTL
    page = await flow(http, "link", victim, lea_key, accept="text/html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and lea_id in page.text

    async def nothing_linked() -> None:
        assert await db_rows(bpp.db_url, select(BppMerchantLogin).where(
            BppMerchantLogin.merchant_id.in_([lea_id, rene_id]))) == []  # type: ignore[attr-defined]

    await nothing_linked()  # the callback alone links nothing...
    assert error_code(await flow(http, "login", victim)) == "not_linked"  # ...so the victim logs in to nothing
    # Only Léa (who started the link) can confirm: not René, not anyone without a key.
    refused = await complete(http, rene_key, code)
    assert refused.status_code == 400 and error_code(refused) == "invalid_link_code"
    assert (await complete(http, {}, code)).status_code == 401
    assert (await http.post("/merchant/auth/link/complete", json={}, headers=lea_key)).status_code == 422
    # Tampered, sealed for another use (a login state), expired: refused, with a control that the
    # same code unexpired would pass (so the refusal is the expiry, not the forgery).
    rp, sealer = relying_party(bpp.settings), link_code_sealer(bpp.settings)
    assert rp is not None and sealer is not None
    middle = len(code) // 2
    tampered = code[:middle] + ("A" if code[middle] != "A" else "B") + code[middle + 1:]
    now = int(time.time())
    forged = {"p": "link_code", "m": lea_id, "iss": bpp.settings.bpp_connect_issuer, "sub": "someone-else",
              "r": "r"}
    for bad, why in ((tampered, "tampered"), ("x" * 60, "garbage"),
                     (rp.seal(forged | {"exp": now + 60}), "sealed under the login state's label"),
                     (sealer.seal(forged | {"exp": now - 1}), "expired"),
                     (sealer.seal(forged | {"p": "link", "exp": now + 60}), "not a link code")):
        answer = await complete(http, lea_key, bad)
        assert answer.status_code == 400 and error_code(answer) == "invalid_link_code", why
    await nothing_linked()

    linked = await complete(http, lea_key, code)
    assert linked.status_code == 200 and linked.json()["merchant_id"] == lea_id and linked.json()["linked"] is True
    again = await complete(http, lea_key, code)  # a replay while linked: the same answer, nothing new
    assert again.status_code == 200 and again.json() == linked.json()
    assert [x["sub"] for x in (await http.get("/merchant/auth/link", headers=lea_key)).json()] == [linked.json()["sub"]]
    assert error_code(await complete(http, rene_key, code)) == "invalid_link_code"
    assert (await login(http, victim))["merchant_id"] == lea_id
    forged_ok = await complete(http, lea_key, sealer.seal(forged | {"exp": now + 60}))
    assert forged_ok.status_code == 200 and forged_ok.json()["sub"] == "someone-else"  # the control


async def test_bad_callbacks_are_refused_with_400(world: World, bpp: Bpp, http: httpx.AsyncClient,
                                                  person: NewPerson) -> None:
    _, key = await new_merchant(http, "Léa")
    someone = await person()
    await link(http, key, someone)
    callback = await to_callback(http, "login", someone)
    params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    base = callback.split("?", 1)[0]
    rp = relying_party(bpp.settings)
    assert rp is not None
    foreign = RelyingParty(issuer=world.op.url, client_id=CLIENT, client_secret=world.op.clients[CLIENT],
                           redirect_uri=_redirect(world.ports["main"]), state_secret=world.op.clients[CLIENT],
                           state_label=b"lakou/bap/login-state/v1")
    later = {"p": "login", "v": "x" * 64, "n": "y" * 43, "r": "z"}
    # This login's cookie, sent by hand from another client: each refusal below is the state's or the
    # query's, not a missing cookie (the cookie itself is tested with the login CSRF below).
    cookie = {"Cookie": f"{COOKIE}={someone.browser.cookies[COOKIE]}"}
    async with httpx.AsyncClient() as browser:
        for state, why in ((params["state"][:-4] + ("AAAA" if not params["state"].endswith("AAAA") else "BBBB"),
                            "tampered"),
                           ("x" * 60, "garbage"),
                           (foreign.seal(later | {"exp": int(time.time()) + 300}), "sealed for another use"),
                           (rp.seal(later | {"exp": int(time.time()) - 1}), "expired"),
                           (rp.seal(later | {"exp": int(time.time()) + 300}), "a login bound to no browser"),
                           (rp.seal({"p": "admin", "v": "v", "n": "n", "r": "r", "exp": int(time.time()) + 300}),
                            "unknown purpose")):
            answer = await browser.get(base, params={**params, "state": state}, headers=cookie)
            assert answer.status_code == 400 and error_code(answer) == "invalid_state", why
        wrong_iss = await browser.get(base, params={**params, "iss": "https://evil.example"}, headers=cookie)
        assert wrong_iss.status_code == 400 and error_code(wrong_iss) == "wrong_issuer"
        refused = await browser.get(base, params={"state": params["state"], "error": "access_denied"}, headers=cookie)
        assert refused.status_code == 400 and error_code(refused) == "login_refused"

    ok = await someone.browser.get(callback)
    assert ok.status_code == 200 and ok.json()["token"].startswith("lkms_")
    assert COOKIE not in someone.browser.cookies  # spent with the login
    replay = await someone.browser.get(callback)
    assert replay.status_code == 400 and error_code(replay) == "invalid_state" and "lkms_" not in replay.text
    async with httpx.AsyncClient() as browser:  # even with the spent cookie kept: the code is single use
        replay = await browser.get(callback, headers=cookie)
        assert replay.status_code == 400 and error_code(replay) == "login_failed"
        assert "lkms_" not in replay.text


def set_cookie(answer: httpx.Response) -> Any:
    """The one cookie an answer sets (http.cookies' Morsel: its attributes as the browser reads them)."""
    headers = answer.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers[0])
    [morsel] = jar.values()
    return morsel


async def test_a_login_callback_url_opened_in_another_browser_is_refused(bpp: Bpp, http: httpx.AsyncClient,
                                                                           person: NewPerson) -> None:
    """Login CSRF: Mallory logs in as herself up to Martinique Connect's redirect, does not follow it,
    and sends the callback URL (even with the start link she used) to a victim merchant. The victim's
    browser must get no session in Mallory's account; Mallory's own browser still logs in."""
    mallory_id, mallory_key = await new_merchant(http, "Mallory")
    mallory = await person()
    await link(http, mallory_key, mallory)
    sessions_before = len(await db_rows(bpp.db_url, select(BppMerchantSession.id)))
    start = (await http.post("/merchant/auth/login")).json()["authorization_url"]
    assert start.startswith(f"{bpp.url}/api/v1/merchant/auth/login/start?t=")
    to_connect = await open_login(mallory.browser, start)
    assert to_connect.startswith(f"{bpp.settings.bpp_connect_issuer}/authorize?")
    answer = await browser_login(mallory.browser, to_connect, username=mallory.username)
    callback = answer.headers["location"]
    assert callback.startswith(_redirect(bpp.url.rsplit(":", 1)[1]) + "?")  # stopped there, not followed

    async with httpx.AsyncClient() as victim:
        for accept in ("application/json", "text/html"):  # no login cookie at all
            refused = await victim.get(callback, headers={"accept": accept})
            assert refused.status_code == 400 and "invalid_state" in refused.text, accept
            assert "not started in this browser" in refused.text and "lkms_" not in refused.text
        # The start link Mallory used, opened by the victim: a fresh cookie, not Mallory's...
        own_connect = await open_login(victim, start)
        own_state = parse_qs(urlsplit(own_connect).query)["state"][0]
        assert victim.cookies[COOKIE] != mallory.browser.cookies[COOKIE]
        assert own_state != parse_qs(urlsplit(callback).query)["state"][0]
        refused = await victim.get(callback)  # ...so her callback still matches nothing here
        assert refused.status_code == 400 and error_code(refused) == "invalid_state"
        assert "set-cookie" not in refused.headers and victim.cookies.get(COOKIE)  # the victim's own login lives on
    assert len(await db_rows(bpp.db_url, select(BppMerchantSession.id))) == sessions_before  # no token was issued

    mine = await mallory.browser.get(callback)  # the browser that started the login
    assert mine.status_code == 200 and mine.json()["merchant_id"] == mallory_id
    cleared = set_cookie(mine)
    assert cleared.key == COOKIE and cleared.value == "" and cleared["max-age"] == "0"
    assert cleared["path"] == "/api/v1/merchant/auth"
    assert COOKIE not in mallory.browser.cookies


async def test_the_login_cookie_and_ticket(world: World, bpp: Bpp, http: httpx.AsyncClient) -> None:
    start = (await http.post("/merchant/auth/login")).json()["authorization_url"]
    async with httpx.AsyncClient() as browser:
        started = await browser.get(start)
        assert started.status_code == 303 and started.headers["referrer-policy"] == "no-referrer"
        cookie = set_cookie(started)
        assert cookie.key == COOKIE and len(cookie.value) >= 43 and cookie.value not in started.headers["location"]
        assert cookie["httponly"] is True and cookie["samesite"].lower() == "lax" and not cookie["secure"]
        assert cookie["path"] == "/api/v1/merchant/auth" and cookie["max-age"] == "600" and not cookie["domain"]
        again = set_cookie(await browser.get(start))  # a ticket is no one-time value: each visit draws its own
        assert again.value != cookie.value

        # Tampered, garbage, missing, expired, sealed for another use: 400, and no cookie.
        rp, tickets = relying_party(bpp.settings), ticket_sealer(bpp.settings)
        assert rp is not None and tickets is not None
        ticket = parse_qs(urlsplit(start).query)["t"][0]
        middle = len(ticket) // 2
        now = int(time.time())
        for bad, why in (({"t": ticket[:middle] + ("A" if ticket[middle] != "A" else "B") + ticket[middle + 1:]},
                          "tampered"),
                         ({"t": "x" * 60}, "garbage"), ({}, "missing"), ({"t": "x" * 5000}, "oversized"),
                         ({"t": tickets.seal({"p": "login_ticket", "exp": now - 1})}, "expired"),
                         ({"t": rp.seal({"p": "login_ticket", "exp": now + 60})}, "sealed as a state"),
                         ({"t": tickets.seal({"p": "login", "exp": now + 60})}, "not a ticket")):
            refused = await browser.get("/".join(start.split("/")[:3]) + "/api/v1/merchant/auth/login/start",
                                        params=bad)
            assert refused.status_code == 400 and error_code(refused) == "invalid_ticket", why
            assert "set-cookie" not in refused.headers, why
        page = await browser.get(start.split("?")[0], params={"t": "x" * 60}, headers={"accept": "text/html"})
        assert page.status_code == 400 and "invalid_ticket" in page.text
        control = await browser.get(start.split("?")[0], params={"t": tickets.seal({"p": "login_ticket",
                                                                                     "exp": now + 60})})
        assert control.status_code == 303  # the same forgery, unexpired and under the ticket's label, passes

    # A BPP published over https: the cookie is `__Host-` (Secure, Path=/, no Domain) on its own origin.
    public = "https://bpp.lakou.example/api/v1/merchant/auth/callback"
    with running_bpp(world, "https", bpp_connect_redirect_uri=public) as tls:
        async with httpx.AsyncClient(base_url=tls.url) as client:
            url = (await client.post("/api/v1/merchant/auth/login")).json()["authorization_url"]
            assert url.startswith("https://bpp.lakou.example/api/v1/merchant/auth/login/start?t=")
            started = await client.get(url.replace("https://bpp.lakou.example", tls.url))
            assert started.status_code == 303
            cookie = set_cookie(started)
            assert cookie.key == "__Host-" + COOKIE and cookie["secure"] is True and cookie["httponly"] is True
            assert cookie["path"] == "/" and not cookie["domain"] and cookie["samesite"].lower() == "lax"


async def test_the_merchant_app_gets_the_token_in_the_fragment(world: World, person: NewPerson) -> None:
    with running_bpp(world, "app", bpp_connect_app_url=APP_URL) as app_bpp:
        async with httpx.AsyncClient(base_url=f"{app_bpp.url}/api/v1", timeout=20) as client:
            merchant_id, key = await new_merchant(client, "Léa")
            # Their own database: josephine and victor are linked to nothing there.
            owner, stranger = await person("josephine"), await person("victor")
            linked = await flow(client, "link", owner, key)
            assert linked.status_code == 303 and linked.headers["referrer-policy"] == "no-referrer"
            target = urlsplit(linked.headers["location"])
            assert target._replace(fragment="").geturl() == APP_URL and target.query == ""
            fragment = {k: v[0] for k, v in parse_qs(target.fragment).items()}
            assert fragment.keys() == {"link_code", "merchant_id", "expires_at"}
            assert fragment["merchant_id"] == merchant_id
            assert (await client.get("/merchant/auth/link", headers=key)).json() == []  # not before the app confirms
            assert (await complete(client, key, fragment["link_code"])).json()["merchant_id"] == merchant_id
            answer = await flow(client, "login", owner)
            assert answer.status_code == 303 and answer.headers["referrer-policy"] == "no-referrer"
            target = urlsplit(answer.headers["location"])
            assert target._replace(fragment="").geturl() == APP_URL and target.query == ""
            fragment = {k: v[0] for k, v in parse_qs(target.fragment).items()}
            assert fragment["merchant_id"] == merchant_id and fragment["token_type"] == "Bearer"
            assert (await client.get("/merchant/me", headers=bearer(fragment["token"]))).json()["id"] == merchant_id
            refused = await flow(client, "login", stranger)
            assert refused.status_code == 303 and refused.headers["location"] == f"{APP_URL}#error=not_linked"
            bad = await client.get("/merchant/auth/login/start", params={"t": "x" * 60})
            assert bad.status_code == 303 and bad.headers["location"] == f"{APP_URL}#error=invalid_ticket"


async def test_login_not_configured_is_a_clear_404(tmp_path: Path) -> None:
    port = free_port()
    settings = BppSettings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
                           registry_url="http://127.0.0.1:9", bpp_admin_token=ADMIN)
    with serve_app(create_app(settings, port=port), port=port) as url:
        async with httpx.AsyncClient(base_url=f"{url}/api/v1") as client:
            _, key = await new_merchant(client, "Léa")
            answer = await client.post("/merchant/auth/login")
            assert answer.status_code == 404 and error_code(answer) == "login_unavailable"
            assert "LAKOU_BPP_CONNECT_ISSUER" in answer.json()["detail"]["message"]
            assert error_code(await client.post("/merchant/auth/link", headers=key)) == "login_unavailable"
            assert error_code(await complete(client, key, "x" * 60)) == "login_unavailable"
            assert (await complete(client, {}, "x" * 60)).status_code == 401
            assert (await client.post("/merchant/auth/link")).status_code == 401
            assert (await client.get("/merchant/auth/callback", params={"code": "c", "state": "s"})).status_code == 404
            assert error_code(await client.get("/merchant/auth/login/start", params={"t": "t"})) == "login_unavailable"
            assert (await client.get("/merchant/me", headers=key)).status_code == 200
