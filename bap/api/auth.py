"""Citizen login through Martinique Connect (OpenID Connect, code flow + PKCE): see bap.auth.

    POST /api/v1/auth/login      (bearer, optional {"method": "wallet" | "password"})
                                           → {"authorization_url": "https://connect.../authorize?..."}
    GET  /api/v1/auth/callback?code&state&iss  (the browser, redirected by Martinique Connect)
                                           → a login code for the app: 303 to LAKOU_BAP_CONNECT_APP_URL
                                             #login_code=..., else {"login_code": ...} or a page showing it
    POST /api/v1/auth/complete   (bearer, {"login_code": "..."}) → the /auth/me view
    GET  /api/v1/auth/me         (bearer)  → {"logged_in", "account" (pairwise sub), "issuer", "acr", "auth_time"}
    POST /api/v1/auth/logout     (bearer)  → the /auth/me view, logged out (account, acr, auth_time null)

Why two steps (login CSRF): the callback is reached by a browser, and the browser that completes a
login is not proof of who started it: an attacker could start a login on their own session, send
the URL to a victim and, if the callback logged the session in, be handed the victim's account (and
the orders that follow it). So the callback changes no session: it gives the login code to the
browser that completed the login, and only the session that started the login can redeem it, with
its own bearer token. Each session has at most one pending login (`bap_session.login_nonce`, set by
/auth/login, cleared by /auth/complete and /auth/logout): a code works once, and a new /auth/login
or a logout voids older ones.

The session keeps its token, carts and orders across login and logout. /auth/complete writes on the
session row the account and how and when the citizen authenticated (`acr`, `auth_time`), so
/auth/me answers the same from any BAP process; once logged in, the session also reads the
account's orders from its other sessions (bap.api.orders). Logout clears all three. JSON refusals are the
API's error body, with a message for the citizen in fr/en/es/de (bap.i18n); without a Martinique
Connect client, /auth/login, /auth/callback and /auth/complete answer 404 `login_unavailable`.
Tokens, claims and login codes are never logged; of the claims, only the pairwise `sub`, `acr` and
`auth_time` are returned.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from html import escape
from typing import Any, Literal
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from bap.api.errors import error_body
from bap.api.schemas import ErrorBody
from bap.api.sessions import UNAUTHORIZED, CurrentSession, service
from bap.auth import LOGIN_CODE_TTL_SECONDS, ConnectLogin, Login, LoginError, split_account
from bap.i18n import request_language
from bap.service import ApiError
from bap.tables import BapSession

log = structlog.get_logger(__name__)
router = APIRouter(tags=["login"])

NOT_OFFERED = {404: {"model": ErrorBody, "description": "`login_unavailable`: this BAP has no Martinique Connect "
                                                        "client configured (LAKOU_BAP_CONNECT_*)."}}


class LoginOut(BaseModel):
    authorization_url: str = Field(description="Open it in the system browser (not a web view); Martinique Connect "
                                   "sends the browser back to this BAP's /api/v1/auth/callback.",
                                   examples=["https://connect.lakou.mq/authorize?response_type=code&client_id=lakou-bap"
                                             "&redirect_uri=...&scope=openid&state=...&nonce=...&code_challenge=..."
                                             "&code_challenge_method=S256"])


class LoginIn(BaseModel):
    method: Literal["wallet", "password"] | None = Field(
        None, description="`wallet`: sign in with the MartiniqueResidentCredential in the citizen's wallet "
        "(OpenID4VP); Martinique Connect opens its wallet login directly (`acr_values=mq:wallet`) and the "
        "callback refuses any other sign-in with `acr_not_met`. `password`: Martinique Connect's login form "
        "(`acr_values=mq:local`, a preference). Absent or null: the citizen chooses on Martinique Connect's page.",
        examples=["wallet"])


class LoginCodeOut(BaseModel):
    login_code: str = Field(description=f"Give it to POST /api/v1/auth/complete with the bearer token of the session "
                            f"that started the login, within {LOGIN_CODE_TTL_SECONDS} s. It works once, and only "
                            "for that session's latest login.", examples=["eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..."])


class CompleteIn(BaseModel):
    login_code: str = Field(min_length=1, max_length=4096, description="The code the callback gave the browser "
                            "(the app URL's `#login_code=` fragment, or the callback's answer).")


class MeOut(BaseModel):
    logged_in: bool = Field(examples=[True])
    account: str | None = Field(None, description="The citizen's pairwise subject at Martinique Connect (for this BAP "
                                "only).", examples=["5LJ3Qx0d7yJrVd4qk1n4cX1Lr3Tq8m9p0aBcDeFgHiJ"])
    issuer: str | None = Field(None, examples=["https://connect.lakou.mq"])
    acr: str | None = Field(None, description="How the citizen authenticated at Martinique Connect (mq:local: "
                            "password, eidas1: FranceConnect, mq:wallet: wallet presentation).",
                            examples=["mq:wallet"])
    auth_time: int | None = Field(None, description="When the citizen authenticated there (Unix time).",
                                  examples=[1763910000])


def _login(request: Request) -> ConnectLogin:
    login: ConnectLogin | None = getattr(request.app.state, "connect_login", None)
    if login is None:
        raise ApiError(404, "login_unavailable", "login is not offered: this BAP has no Martinique Connect client "
                       "(set LAKOU_BAP_CONNECT_ISSUER, _CLIENT_ID, _CLIENT_SECRET and _REDIRECT_URI)")
    return login


def _refused(exc: LoginError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.detail)


@router.post("/auth/login", response_model=LoginOut, summary="Start a login through Martinique Connect",
             responses={**UNAUTHORIZED, **NOT_OFFERED,
                        422: {"model": ErrorBody, "description": "An unknown `method`."},
                        502: {"model": ErrorBody, "description": "Martinique Connect is unreachable."}})
async def login(request: Request, citizen: CurrentSession, body: LoginIn | None = None) -> dict[str, str]:
    """Returns the URL to open in the browser. Its `state` is an encrypted, expiring (10 min) value
    bound to this session holding the PKCE verifier, the nonce and the asked method. The session's
    pending login becomes this one: a login started earlier can no longer be completed. The body is
    optional."""
    connect = _login(request)
    lang = request_language(request)
    nonce = secrets.token_urlsafe(16)
    try:
        url = await connect.start(int(citizen.id or 0), nonce, ui_locales=lang, method=body.method if body else None)
    except LoginError as exc:
        raise _refused(exc) from None
    async with service(request).node.sessions() as db:
        await db.execute(update(BapSession).where(BapSession.id == citizen.id).values(login_nonce=nonce))
        await db.commit()
    return {"authorization_url": url}


NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(title: str, text: str, status: int, code: str | None = None) -> HTMLResponse:
    shown = f"<p><code style='word-break:break-all'>{escape(code)}</code></p>" if code else ""
    body = (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1><p>{escape(text)}</p>{shown}"
            "</body></html>")
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def _answer(request: Request, status: int, code: str, detail: str, login_code: str | None = None) -> Response:
    """The callback's answer to the browser. With an app URL, everything goes in its fragment (a
    fragment is never sent to a server, so the code stays out of access logs and Referer headers)."""
    app_url = service(request).settings.bap_connect_app_url
    if app_url:
        fragment = {"login_code": login_code} if login_code else {"login": "failed", "error": code}
        return RedirectResponse(app_url.split("#", 1)[0] + "#" + urlencode(fragment), status_code=303,
                                headers=NO_STORE)
    html = "text/html" in request.headers.get("accept", "")
    if login_code:
        if html:
            return _page("Code de connexion · Login code", "Copiez ce code dans l'application (valable "
                         f"{LOGIN_CODE_TTL_SECONDS // 60} minutes). Copy this code into the app (valid "
                         f"{LOGIN_CODE_TTL_SECONDS // 60} minutes).", 200, login_code)
        return JSONResponse({"login_code": login_code}, headers=NO_STORE)
    if html:
        return _page("Connexion refusée · Login refused", f"{code}: {detail}", status)
    return JSONResponse(error_body(code, request_language(request), detail), status_code=status,
                        headers={"Cache-Control": "no-store"})


@router.get("/auth/callback", summary="Martinique Connect's redirect (the registered redirect URI)",
            response_class=HTMLResponse,
            responses={200: {"model": LoginCodeOut, "content": {"text/html": {}},
                             "description": "No LAKOU_BAP_CONNECT_APP_URL: the login code, as JSON, or as a page "
                             "showing it when the browser asks for text/html (developer setups). The session is "
                             "not logged in yet: the app redeems the code with POST /api/v1/auth/complete."},
                       303: {"description": "LAKOU_BAP_CONNECT_APP_URL set: to the app URL with the answer in "
                             "its fragment (any fragment of the setting is replaced): `#login_code=<code>`, or "
                             "`#login=failed&error=<code>`."},
                       400: {"model": ErrorBody, "description": "`invalid_state` (unknown, tampered, expired, "
                             "the session is gone, or it started a newer login since), `wrong_issuer` (RFC 9207), "
                             "`login_refused`, `login_failed` (code used or expired: a replayed callback), "
                             "`invalid_id_token`, `acr_not_met` (a `wallet` login answered with another sign-in)."},
                       **NOT_OFFERED})
async def callback(
    request: Request,
    code: str | None = Query(None, max_length=2048), state: str | None = Query(None, max_length=4096),
    iss: str | None = Query(None, max_length=2048), error: str | None = Query(None, max_length=256),
) -> Response:
    """Verifies the login (state, `iss`, code exchange, ID token, `acr`) and hands a login code to
    this browser. It changes no session: the browser that completes a login is not proof of who
    started it (login CSRF), so only the app holding the session's bearer token can apply it."""
    connect = _login(request)
    svc = service(request)
    query = {k: v for k, v in {"code": code, "state": state, "iss": iss, "error": error}.items() if v is not None}
    try:
        who = await connect.finish(query)
        async with svc.node.sessions() as db:
            pending = (await db.execute(
                select(BapSession.id).where(BapSession.id == who.session_id, BapSession.login_nonce == who.nonce,
                                            BapSession.expires_at > datetime.now(UTC)))).scalar_one_or_none()
        if pending is None:  # said here, where the citizen is, rather than later in the app
            raise LoginError(400, "invalid_state", "the app's session has expired or started another login since: "
                             "log in again from the app")
    except LoginError as exc:
        log.info("bap.login.refused", code=exc.code)  # never the token, the claims or the state
        return _answer(request, exc.status, exc.code, exc.detail)
    log.info("bap.login.verified", session=who.session_id)
    return _answer(request, 200, "ok", "verified", login_code=connect.login_code(who))


@router.post("/auth/complete", response_model=MeOut, summary="Apply a login to this session (its login code)",
             responses={**UNAUTHORIZED, **NOT_OFFERED,
                        400: {"model": ErrorBody, "description": "`invalid_login_code`: unknown, tampered or "
                              "expired; made for another session (a login this app did not start); already "
                              "used; or the session started a newer login since. Nothing changes."},
                        422: {"model": ErrorBody, "description": "No `login_code` string."}})
async def complete(request: Request, citizen: CurrentSession, body: CompleteIn) -> dict[str, Any]:
    """Logs this session in as the citizen who completed the login it started, given the login code
    the callback handed to the browser. The code must have been made for this session's latest
    `/auth/login`; it works once (a second try is refused and changes nothing)."""
    connect = _login(request)
    try:
        who: Login = connect.redeem(body.login_code)
    except LoginError as exc:
        raise _refused(exc) from None
    if who.session_id != citizen.id:
        # The login was started by another session: this is the login CSRF this step exists to stop.
        log.info("bap.login.code_refused", reason="other_session", session=citizen.id)
        raise ApiError(400, "invalid_login_code", "this login code was made for another session: a login this "
                       "app did not start. Start a login from this app")
    auth_time = datetime.fromtimestamp(who.auth_time, UTC) if who.auth_time is not None else None
    async with service(request).node.sessions() as db:
        # One statement checks and spends the pending login: two concurrent calls cannot both apply it.
        changed = (await db.execute(
            update(BapSession).where(BapSession.id == citizen.id, BapSession.login_nonce == who.nonce)
            .values(account_id=who.account_id, acr=who.acr, auth_time=auth_time, login_nonce=None))).rowcount
        await db.commit()
    if not changed:
        log.info("bap.login.code_refused", reason="not_pending", session=citizen.id)
        raise ApiError(400, "invalid_login_code", "this login code was already used, or this session started "
                       "another login since: log in again")
    log.info("bap.login.ok", session=citizen.id)
    citizen.account_id, citizen.acr, citizen.auth_time, citizen.login_nonce = who.account_id, who.acr, auth_time, None
    return _me(citizen)


def _me(session: BapSession) -> dict[str, Any]:
    if not session.account_id:
        return {"logged_in": False, "account": None, "issuer": None, "acr": None, "auth_time": None}
    issuer, sub = split_account(session.account_id)
    auth_time = int(session.auth_time.timestamp()) if session.auth_time is not None else None
    return {"logged_in": True, "account": sub, "issuer": issuer, "acr": session.acr, "auth_time": auth_time}


@router.get("/auth/me", response_model=MeOut, summary="Is this session logged in, and as whom",
            responses={**UNAUTHORIZED})
async def me(citizen: CurrentSession) -> dict[str, Any]:
    return _me(citizen)


@router.post("/auth/logout", response_model=MeOut, summary="Log the session out (it stays open, anonymous)",
             responses={**UNAUTHORIZED})
async def logout(request: Request, citizen: CurrentSession) -> dict[str, Any]:
    """The session forgets its account; its carts and orders stay with it. This does not end the
    citizen's session at Martinique Connect (use its end_session_endpoint for that)."""
    svc = service(request)
    async with svc.node.sessions() as db:
        await db.execute(update(BapSession).where(BapSession.id == citizen.id)
                         .values(account_id=None, acr=None, auth_time=None, login_nonce=None))
        await db.commit()  # a login pending at logout is void too: the citizen said stop
    citizen.account_id, citizen.acr, citizen.auth_time, citizen.login_nonce = None, None, None, None
    return _me(citizen)
