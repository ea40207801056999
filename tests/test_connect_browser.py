"""A real browser on Martinique Connect's login and consent pages.

Debian's chromium (``/usr/bin/chromium``, or ``LAKOU_CHROMIUM``) driven by Playwright through an
explicit ``executable_path``: no browser is downloaded. Without chromium the tests are skipped with
a loud reason, unless ``LAKOU_REQUIRE_BROWSER=1`` (set by ``.ci/run`` once it installed chromium),
where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from jwcrypto import jwk, jwt

from did.connect import pages
from tests.conftest import serve_app
from tests.connect_support import PASSWORD, Provider, provider

CHROMIUM = os.environ.get("LAKOU_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("LAKOU_REQUIRE_BROWSER") == "1"

try:
    from playwright import sync_api as playwright_sync
except ImportError:
    if REQUIRED:  # a collection error: CI must not pass without the browser tests
        raise
    _MISSING = "!!! BROWSER TESTS NOT RUN: the playwright package is not installed (pip install -e '.[test]') !!!"
    warnings.warn(_MISSING, stacklevel=1)  # shown in the warnings summary, not only with -rs
    pytest.skip(_MISSING, allow_module_level=True)


def csp(rp_url: str) -> str:
    # form-action allows the client's redirect_uri origin: Chromium checks it on the redirect that
    # ends a form submission, and would block the way back to the client otherwise.
    return f"default-src 'none'; form-action 'self' {rp_url}; frame-ancestors 'none'"


CLIENT = "browser-rp"
CLIENT_NAME = "Boutique Navigateur"


def _chromium_path() -> str:
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found:
        return found
    message = (f"!!! BROWSER TESTS NOT RUN: no chromium at {CHROMIUM} "
               "(apt-get install chromium, or set LAKOU_CHROMIUM) !!!")
    if REQUIRED:
        pytest.fail(message + " and LAKOU_REQUIRE_BROWSER=1", pytrace=False)
    warnings.warn(message, stacklevel=1)  # shown in the warnings summary, not only with -rs
    pytest.skip(message)


@dataclass
class RelyingParty:
    url: str
    callbacks: list[dict[str, str]] = field(default_factory=list)


def rp_app(rp: RelyingParty) -> FastAPI:
    app = FastAPI()

    @app.get("/callback")
    async def callback(request: Request) -> HTMLResponse:
        rp.callbacks.append(dict(request.query_params))
        return HTMLResponse('<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>RP</title></head>'
                            "<body><h1>Retour</h1></body></html>")

    @app.get("/favicon.ico")
    async def favicon() -> HTMLResponse:
        return HTMLResponse("", status_code=204)

    return app


@dataclass
class Flow:
    url: str
    state: str
    nonce: str
    verifier: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Provider, RelyingParty]]:
    _chromium_path()  # skip (or fail) before starting the servers
    tmp = tmp_path_factory.mktemp("connect-browser")
    rp = RelyingParty("")
    with serve_app(rp_app(rp)) as rp_url:
        rp.url = rp_url
        clients = {CLIENT: {"name": CLIENT_NAME, "redirect_uris": [f"{rp_url}/callback"]}}
        with provider(tmp, f"sqlite+aiosqlite:///{tmp / 'lakou.db'}", extra_clients=clients) as op:
            yield op, rp


@pytest.fixture(scope="module")
def browser() -> Iterator["playwright_sync.Browser"]:
    path = _chromium_path()
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium's sandbox refuses to run as root
    with playwright_sync.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, headless=True, args=args)
        try:
            yield launched
        finally:
            launched.close()


def start(op: Provider, rp: RelyingParty, **extra: str) -> Flow:
    """The relying party's authorization URL: authlib's client, PKCE S256, state and nonce."""
    verifier, nonce = generate_token(48), generate_token(32)
    with OAuth2Client(CLIENT, op.clients[CLIENT], scope="openid profile email", redirect_uri=f"{rp.url}/callback",
                      code_challenge_method="S256") as client:
        url, state = client.create_authorization_url(f"{op.url}/authorize", code_verifier=verifier, nonce=nonce,
                                                     state=generate_token(32), **extra)
    return Flow(url, state, nonce, verifier)


@pytest.fixture
def context(browser: "playwright_sync.Browser") -> Iterator["playwright_sync.BrowserContext"]:
    ctx = browser.new_context(locale="fr-FR")
    yield ctx
    ctx.close()


def watch(page: "playwright_sync.Page") -> list[str]:
    """Console errors and uncaught page errors of a page."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def title(page: "playwright_sync.Page") -> str:
    return page.locator("h1").inner_text()


def test_login_consent_and_callback_with_the_keyboard(servers: tuple[Provider, RelyingParty],
                                                      context: "playwright_sync.BrowserContext",
                                                      tmp_path: Path) -> None:
    op, rp = servers
    flow = start(op, rp)
    page = context.new_page()
    errors = watch(page)

    response = page.goto(flow.url)
    assert response is not None and response.status == 200, rp.callbacks
    assert page.url.startswith(op.url), rp.callbacks
    # French by default (the context's Accept-Language is fr-FR; fr is also the fallback).
    assert title(page) == pages.TEXT["fr"]["login_title"]
    assert page.locator("html").get_attribute("lang") == "fr"
    assert response.headers["content-security-policy"] == csp(rp.url)
    assert response.headers["x-frame-options"] == "DENY"

    shot = tmp_path / "login.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Keyboard only: the first Tab reaches the username, the next the password, Enter submits.
    page.locator("body").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "username"
    page.keyboard.type("josephine")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "password"
    page.keyboard.type(PASSWORD)
    with page.expect_navigation() as consent:
        page.keyboard.press("Enter")
    assert consent.value is not None and consent.value.headers["content-security-policy"] == csp(rp.url)

    assert title(page) == pages.TEXT["fr"]["consent_title"].format(client=CLIENT_NAME)
    listed = page.locator("li").all_inner_texts()
    assert listed == [pages.TEXT["fr"][f"scope_{s}"] for s in ("openid", "profile", "email")]
    with page.expect_navigation(url=f"{rp.url}/callback**"):
        page.get_by_role("button", name=pages.TEXT["fr"]["allow"]).click()

    query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert rp.callbacks[-1] == query
    assert query["state"] == flow.state and query["iss"] == op.url and query["code"]
    assert errors == []

    # The code is real: the relying party redeems it with its PKCE verifier.
    with OAuth2Client(CLIENT, op.clients[CLIENT], redirect_uri=f"{rp.url}/callback") as client:
        token = client.fetch_token(f"{op.url}/token", code=query["code"], code_verifier=flow.verifier,
                                   redirect_uri=f"{rp.url}/callback")
    # (Playwright's sync API owns this thread's event loop: verify the ID token synchronously.)
    keys = jwk.JWKSet.from_json(httpx.get(f"{op.url}/jwks").text)
    claims = json.loads(jwt.JWT(jwt=token["id_token"], key=keys,
                                check_claims={"iss": op.url, "aud": CLIENT, "exp": None}).claims)
    assert claims["nonce"] == flow.nonce and claims["sub"]


def test_english_with_ui_locales(servers: tuple[Provider, RelyingParty],
                                 context: "playwright_sync.BrowserContext") -> None:
    op, rp = servers
    page = context.new_page()
    errors = watch(page)
    page.goto(start(op, rp, ui_locales="en").url)
    assert title(page) == pages.TEXT["en"]["login_title"]
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("button").inner_text() == pages.TEXT["en"]["sign_in"]
    assert page.get_by_label(pages.TEXT["en"]["username"]).is_visible()
    assert page.get_by_label(pages.TEXT["en"]["password"]).is_visible()
    assert errors == []


@pytest.mark.parametrize("locale, lang", [("es-ES", "es"), ("de-DE", "de"), ("en-GB", "en")])
def test_language_from_the_browser_locale(servers: tuple[Provider, RelyingParty],
                                          browser: "playwright_sync.Browser", locale: str, lang: str) -> None:
    op, rp = servers
    ctx = browser.new_context(locale=locale)
    try:
        page = ctx.new_page()
        page.goto(start(op, rp).url)
        assert title(page) == pages.TEXT[lang]["login_title"]
        assert page.locator("html").get_attribute("lang") == lang
    finally:
        ctx.close()


def test_wrong_password_says_the_same_as_an_unknown_user(servers: tuple[Provider, RelyingParty],
                                                         browser: "playwright_sync.Browser") -> None:
    op, rp = servers
    ctx = browser.new_context(locale="de-DE")
    try:
        shown = []
        for username, password in (("victor", "not the password"), ("nobody-here", PASSWORD)):
            page = ctx.new_page()
            errors = watch(page)
            page.goto(start(op, rp).url)
            page.get_by_label(pages.TEXT["de"]["username"]).fill(username)
            page.get_by_label(pages.TEXT["de"]["password"]).fill(password)
            with page.expect_navigation() as nav:
                page.get_by_role("button", name=pages.TEXT["de"]["sign_in"]).click()
            assert nav.value is not None and nav.value.status == 401
            assert nav.value.headers["content-security-policy"] == csp(rp.url)
            alert = page.get_by_role("alert")
            shown.append(alert.inner_text())
            assert title(page) == pages.TEXT["de"]["login_title"]
            # The username is kept, the password never echoed back.
            assert page.get_by_label(pages.TEXT["de"]["username"]).input_value() == username
            assert page.get_by_label(pages.TEXT["de"]["password"]).input_value() == ""
            assert password not in page.content()
            # Chromium reports the 401 document itself as a failed resource; nothing else.
            assert [e for e in errors if "401" not in e] == []
            page.close()
        assert shown == [pages.TEXT["de"]["bad_login"]] * 2
    finally:
        ctx.close()


def test_csp_blocks_inline_scripts(servers: tuple[Provider, RelyingParty],
                                   context: "playwright_sync.BrowserContext") -> None:
    op, rp = servers
    page = context.new_page()
    errors = watch(page)
    page.goto(start(op, rp).url)
    # An injected inline script (as an XSS would add) must not run; the policy reports the violation.
    violations = page.evaluate("""() => new Promise(resolve => {
        const seen = [];
        document.addEventListener('securitypolicyviolation', e => seen.push(e.effectiveDirective));
        const s = document.createElement('script');
        s.textContent = 'window.__injected = true;';
        document.body.appendChild(s);
        setTimeout(() => resolve(seen), 200);
    })""")
    assert page.evaluate("window.__injected === undefined")
    assert violations and violations[0].startswith("script-src")
    assert any("Content Security Policy" in e for e in errors)
    # Inline event handlers are blocked too.
    page.evaluate("""() => { const i = document.createElement('img');
        i.setAttribute('onerror', 'window.__injected = true'); i.src = 'x:'; document.body.appendChild(i); }""")
    page.wait_for_timeout(100)
    assert page.evaluate("window.__injected === undefined")


def test_whole_flow_without_javascript(servers: tuple[Provider, RelyingParty],
                                       browser: "playwright_sync.Browser") -> None:
    op, rp = servers
    ctx = browser.new_context(locale="es-ES", java_script_enabled=False)
    try:
        flow = start(op, rp)
        page = ctx.new_page()
        page.goto(flow.url)
        assert title(page) == pages.TEXT["es"]["login_title"]
        page.get_by_label(pages.TEXT["es"]["username"]).fill("victor")
        page.get_by_label(pages.TEXT["es"]["password"]).fill(PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name=pages.TEXT["es"]["sign_in"]).click()
        assert title(page) == pages.TEXT["es"]["consent_title"].format(client=CLIENT_NAME)
        with page.expect_navigation(url=f"{rp.url}/callback**"):
            page.get_by_role("button", name=pages.TEXT["es"]["allow"]).click()
        query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
        assert query["state"] == flow.state and query["iss"] == op.url and query["code"]
    finally:
        ctx.close()


def test_deny_returns_access_denied(servers: tuple[Provider, RelyingParty],
                                    browser: "playwright_sync.Browser") -> None:
    op, rp = servers
    ctx = browser.new_context(locale="en-US")
    try:
        flow = start(op, rp)
        page = ctx.new_page()
        page.goto(flow.url)
        page.get_by_label(pages.TEXT["en"]["username"]).fill("josephine")
        page.get_by_label(pages.TEXT["en"]["password"]).fill(PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name=pages.TEXT["en"]["sign_in"]).click()
        with page.expect_navigation(url=f"{rp.url}/callback**"):
            page.get_by_role("button", name=pages.TEXT["en"]["deny"]).click()
        query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
        assert query["error"] == "access_denied" and query["state"] == flow.state and "code" not in query
    finally:
        ctx.close()


def test_no_browser_skips_loudly_or_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(module, "REQUIRED", False)
    with pytest.raises(pytest.skip.Exception, match="BROWSER TESTS NOT RUN"), \
            pytest.warns(UserWarning, match="BROWSER TESTS NOT RUN"):
        _chromium_path()
    monkeypatch.setattr(module, "REQUIRED", True)
    with pytest.raises(pytest.fail.Exception, match="LAKOU_REQUIRE_BROWSER=1"):
        _chromium_path()
