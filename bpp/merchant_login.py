"""Merchant login through Martinique Connect (OpenID Connect code flow + PKCE: did.connect.rp).

    POST   /api/v1/merchant/auth/link      (API key or session) → {"authorization_url": ...}
    POST   /api/v1/merchant/auth/link/complete {"link_code"} (the SAME merchant's key or session) → linked
    GET    /api/v1/merchant/auth/link      (API key or session) → the identities linked to this merchant
    DELETE /api/v1/merchant/auth/link[?sub=]  (API key or session) → 204: unlink, and end their sessions
    POST   /api/v1/merchant/auth/login     (no auth)            → {"authorization_url": <login/start?t=...>}
    GET    /api/v1/merchant/auth/login/start?t=<ticket>         (the browser) → cookie, 303 to Martinique Connect
    GET    /api/v1/merchant/auth/callback?code&state&iss        (the browser, sent back by Martinique Connect)
    POST   /api/v1/merchant/auth/logout    (session token)      → 204: the session ends at once

A merchant first links its Martinique Connect identity (the pairwise `sub` this BPP sees) while
authenticated by an API key, in two steps. The link callback links nothing: it answers the browser
that completed the login with a `link_code` (sealed like the state, under its own label: merchant
id, issuer, sub, 5 minutes); the merchant's tool, authenticated as the SAME merchant, confirms it
with `POST /link/complete`. So a link URL forwarded to someone (login CSRF: the victim would later
log in to the sender's account and type their own data into it) or leaked links no one: the code
lands in the other person's browser, and only the merchant that started the link can redeem it.
A code carries no server-side state: redeeming it again while the identity is linked to that
merchant gives the same answer (idempotent, harmless); it is never accepted after 5 minutes. (So
an identity unlinked within those 5 minutes could be linked again by that same merchant, with the
code the person gave it: no one else can, and the person did consent to that merchant.)

Afterwards a login by that identity opens a merchant session: a random bearer token
`lkms_<id>_<secret>` (only the SHA-256 of its secret is stored) accepted by every merchant route
exactly like an API key (bpp.merchants), for LAKOU_BPP_MERCHANT_SESSION_HOURS.
The token is shown once: in the callback's JSON answer, or, when LAKOU_BPP_CONNECT_APP_URL is set,
in the URL *fragment* of the redirect to the merchant app (a fragment is not sent to servers, so
the token stays out of access logs and Referer headers). An identity not linked to a merchant is
refused with 403 `not_linked`.

A login is bound to the browser that started it (login CSRF: otherwise someone could log in as
themselves, stop at Martinique Connect's redirect and send the unused callback URL to a merchant,
whose browser would then hold a session in the SENDER's account and type its data into it). The
URL `POST /login` answers is this BPP's own `GET /login/start?t=<ticket>` (the ticket is sealed under
its own label, 5 minutes, and fixes nothing about the login). Each visit of it draws a fresh random
value, sets it in an HttpOnly, SameSite=Lax cookie (`__Host-` and Secure when the redirect URI is
https) and puts its SHA-256 in the new state; the callback of a login requires that cookie to match
(400 `invalid_state` otherwise, before the code is spent) and then clears it. The value is drawn at
the start, not sealed in the ticket: a ticket forwarded to a victim sets a value the sender never
sees, so the sender's callback matches no one else's browser. One login at a time per browser:
starting another replaces the cookie. Links are not bound this way (their link_code step already
protects them), so their URL is Martinique Connect's own.

The `state` (sealed by did.connect.rp, 10 minutes) says what the login is for: `{"p": "link", "m":
<merchant id>}` or `{"p": "login", "b": <SHA-256 of the browser's cookie>}`; it is keyed from the
client secret under this module's label, so a BAP login state is no use here. A replayed
callback is refused by Martinique Connect (a code is single use). Tokens, codes, states, cookies
and claims are never logged: only merchant and session ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.node import wire_timestamp
from bpp import merchants
from bpp.settings import BppSettings
from bpp.tables import BppMerchant, BppMerchantLogin, BppMerchantSession
from did.connect.rp import LoginError, RelyingParty

log = structlog.get_logger(__name__)

_STATE_LABEL = b"lakou/bpp/merchant-login-state/v1"
# Link codes are sealed under their own label: a state is no link code, and the reverse.
_LINK_CODE_LABEL = b"lakou/bpp/merchant-link-code/v1"
LINK_CODE_TTL = timedelta(minutes=5)
# Login tickets (the t= of /login/start) too: a ticket is no state and no link code.
_TICKET_LABEL = b"lakou/bpp/merchant-login-ticket/v1"
LOGIN_TICKET_TTL = timedelta(minutes=5)
_COOKIE = "lakou_merchant_login"
_KEEP_ENDED = timedelta(days=30)
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def relying_party(config: BppSettings, http: httpx.AsyncClient | None = None, *,
                  label: bytes = _STATE_LABEL) -> RelyingParty | None:
    """This BPP as a client of Martinique Connect, or None when LAKOU_BPP_CONNECT_* is incomplete."""
    values = (config.bpp_connect_issuer, config.bpp_connect_client_id, config.bpp_connect_client_secret,
              config.bpp_connect_redirect_uri)
    if not all(values):
        return None
    issuer, client_id, secret, redirect = (str(v) for v in values)
    return RelyingParty(issuer=issuer, client_id=client_id, client_secret=secret, redirect_uri=redirect,
                        state_secret=secret, state_label=label, http=http)


def link_code_sealer(config: BppSettings) -> RelyingParty | None:
    """Seals and opens link codes with did.connect.rp's sealing (JWE dir + A256GCM, key from HKDF over
    the client secret and `_LINK_CODE_LABEL`). Only its seal/open are used: it never talks HTTP."""
    return relying_party(config, label=_LINK_CODE_LABEL)


def ticket_sealer(config: BppSettings) -> RelyingParty | None:
    """Seals and opens login tickets the same way, under `_TICKET_LABEL`."""
    return relying_party(config, label=_TICKET_LABEL)


class Binding:
    """The cookie that binds a login to the browser that started it, on the redirect URI's origin
    (the callback's, so the browser sends it back there). https: `__Host-` name, Secure, Path=/ (the
    prefix requires that path; it keeps a sibling subdomain from planting its own value); plain
    http (development): the plain name, on the callback's folder only."""

    def __init__(self, redirect_uri: str, max_age: int) -> None:
        self.secure = urlsplit(redirect_uri).scheme == "https"
        self.name = f"__Host-{_COOKIE}" if self.secure else _COOKIE
        self.path = "/" if self.secure else (urlsplit(redirect_uri).path.rsplit("/", 1)[0] or "/")
        self.max_age = max_age
        # Also on the callback's origin: /login/start next to the registered callback.
        self.start_url = urljoin(redirect_uri.split("?", 1)[0], "login/start")

    @staticmethod
    def digest(value: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()).rstrip(b"=").decode()

    def set(self, response: Response, value: str) -> None:
        response.set_cookie(self.name, value, max_age=self.max_age, path=self.path, secure=self.secure,
                            httponly=True, samesite="lax")

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path=self.path, secure=self.secure, httponly=True, samesite="lax")

    def matches(self, request: Request, digest: Any) -> bool:
        value = request.cookies.get(self.name)
        return bool(value) and isinstance(digest, str) and hmac.compare_digest(
            self.digest(value).encode(), digest.encode())


class AuthorizationOut(BaseModel):
    authorization_url: str = Field(
        description="Open it in the system browser (not a web view); that same browser must finish the flow. A "
        "login: this BPP's /api/v1/merchant/auth/login/start (valid 5 minutes), which binds the login to the "
        "browser with a cookie and sends it on to Martinique Connect. A link: Martinique Connect's authorization "
        "URL (valid 10 minutes). Martinique Connect sends the browser back to /api/v1/merchant/auth/callback.",
        examples=["https://bpp.lakou.mq/api/v1/merchant/auth/login/start?t=eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..x",
                  "https://connect.lakou.mq/authorize?response_type=code&client_id=lakou-bpp&redirect_uri=...&scope="
                  "openid&state=...&nonce=...&code_challenge=...&code_challenge_method=S256"])


class LinkOut(BaseModel):
    issuer: str = Field(examples=["https://connect.lakou.mq"])
    sub: str = Field(description="The person's pairwise subject at Martinique Connect (for this BPP only).",
                     examples=["5LJ3Qx0d7yJrVd4qk1n4cX1Lr3Tq8m9p0aBcDeFgHiJ"])
    linked_at: str = Field(examples=["2026-11-23T16:00:00.000Z"])


class SessionOut(BaseModel):
    """The callback's answer to a login (shown once; only a hash is kept)."""

    token: str = Field(description="Send it as `Authorization: Bearer <token>` to every merchant route.",
                       examples=["lkms_0123456789abcdef_" + "x" * 43])
    token_type: str = Field("Bearer", examples=["Bearer"])
    expires_at: str = Field(examples=["2026-11-24T04:00:00.000Z"])
    merchant_id: str = Field(examples=["mch_0123456789abcdef"])


class LinkCodeOut(BaseModel):
    """The callback's answer to a link: nothing is linked until the merchant confirms the code."""

    link_code: str = Field(description="Opaque, valid 5 minutes. The merchant that started the link confirms it "
                           "with POST /api/v1/merchant/auth/link/complete (its API key or session); any other "
                           "merchant is refused.", examples=["eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..x.y.z"])
    merchant_id: str = Field(description="The merchant account this identity would be linked to.",
                             examples=["mch_0123456789abcdef"])
    expires_at: str = Field(examples=["2026-11-23T16:05:00.000Z"])


class LinkCodeIn(BaseModel):
    link_code: str = Field(min_length=1, max_length=4096, description="The callback's `link_code`.")


class LinkedOut(BaseModel):
    """The identity linked by POST /link/complete (the same answer when completed again)."""

    linked: bool = Field(examples=[True])
    merchant_id: str = Field(examples=["mch_0123456789abcdef"])
    issuer: str = Field(examples=["https://connect.lakou.mq"])
    sub: str = Field(examples=["5LJ3Qx0d7yJrVd4qk1n4cX1Lr3Tq8m9p0aBcDeFgHiJ"])


def _problem(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, {"code": code, "message": message})


def _page(title: str, lines: list[str], status: int) -> HTMLResponse:
    text = "".join(f"<p>{escape(line)}</p>" for line in lines)
    body = (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{text}</body></html>")
    return HTMLResponse(body, status_code=status, headers=_NO_STORE)


def _answer(request: Request, config: BppSettings, status: int, body: dict[str, Any]) -> Response:
    """The callback's answer: to the merchant app (outcome in the fragment), a page, or JSON."""
    if config.bpp_connect_app_url:
        if status < 400:
            fragment = ({"token": body["token"], "token_type": "Bearer", "expires_at": body["expires_at"],
                         "merchant_id": body["merchant_id"]} if "token" in body
                        else {"link_code": body["link_code"], "merchant_id": body["merchant_id"],
                              "expires_at": body["expires_at"]})
        else:
            fragment = {"error": body["detail"]["code"]}
        target = config.bpp_connect_app_url.split("#", 1)[0] + "#" + urlencode(fragment)
        return RedirectResponse(target, status_code=303, headers=_NO_STORE)
    if "text/html" in request.headers.get("accept", ""):
        if status >= 400:
            return _page("Connexion refusée · Login refused",
                         [f"{body['detail']['code']}: {body['detail']['message']}"], status)
        if "token" in body:
            return _page("Connecté · Logged in", [
                "Votre jeton de session marchand (affiché une seule fois) · Your merchant session token (shown once):",
                body["token"], f"Expire · Expires: {body['expires_at']}"], status)
        return _page("Confirmer la liaison · Confirm the link", [
            f"Compte marchand · Merchant account: {body['merchant_id']}",
            "Rien n'est encore lié. Si vous avez demandé cette liaison, donnez ce code à votre outil marchand "
            "(5 minutes). Sinon, ignorez-le. · Nothing is linked yet. If you asked for this link, give this code "
            "to your merchant tool (5 minutes). Otherwise, ignore it.",
            body["link_code"], f"Expire · Expires: {body['expires_at']}"], status)
    return JSONResponse(body, status_code=status, headers=_NO_STORE)


def merchant_login_routes(sessions: async_sessionmaker[AsyncSession], config: BppSettings,
                          rp: RelyingParty | None) -> APIRouter:
    router = APIRouter(prefix="/api/v1/merchant/auth", tags=["merchant login"])
    current_merchant = merchants.merchant_auth(sessions)
    session_bearer = HTTPBearer(auto_error=False, scheme_name="MerchantSession",
                                description="A merchant session token (lkms_...) from a Martinique Connect login.")
    ttl = timedelta(hours=config.bpp_merchant_session_hours)
    not_offered = {404: {"description": "`login_unavailable`: this BPP has no Martinique Connect client configured "
                                        "(LAKOU_BPP_CONNECT_*)."},
                   502: {"description": "`login_provider_unavailable`: Martinique Connect is unreachable."}}
    authenticated = {401: {"description": "Missing, unknown, revoked or expired API key or session token"}}

    codes = link_code_sealer(config) if rp is not None else None
    tickets = ticket_sealer(config) if rp is not None else None
    binding = Binding(rp.redirect_uri, rp.ttl) if rp is not None else None

    def connect() -> RelyingParty:
        if rp is None:
            raise _problem(404, "login_unavailable", "merchant login is not offered: this BPP has no Martinique "
                           "Connect client (set LAKOU_BPP_CONNECT_ISSUER, _CLIENT_ID, _CLIENT_SECRET and "
                           "_REDIRECT_URI); use an API key")
        return rp

    def link_codes() -> RelyingParty:
        connect()
        assert codes is not None  # made whenever rp is: both come from LAKOU_BPP_CONNECT_*
        return codes

    def login_parts() -> tuple[RelyingParty, RelyingParty, Binding]:
        relying = connect()
        assert tickets is not None and binding is not None  # made whenever rp is, like codes
        return relying, tickets, binding

    async def start(payload: dict[str, Any]) -> dict[str, str]:
        try:
            return {"authorization_url": await connect().authorization_url(payload)}
        except LoginError as exc:
            raise _problem(exc.status, exc.code, exc.detail) from None

    @router.post("/link", response_model=AuthorizationOut, responses={**authenticated, **not_offered},
                 summary="Start linking a Martinique Connect identity to this merchant account")
    async def link(merchant_id: str = Depends(current_merchant)) -> dict[str, str]:
        """Open the URL in your browser and log in at Martinique Connect: the callback links nothing, it
        gives that browser a `link_code` (5 minutes) that this same merchant account confirms with
        POST /api/v1/merchant/auth/link/complete. A forwarded or leaked URL therefore links no one."""
        return await start({"p": "link", "m": merchant_id})

    @router.post("/link/complete", response_model=LinkedOut,
                 responses={**authenticated, 404: not_offered[404],
                            400: {"description": "`invalid_link_code`: unknown, tampered or expired (5 minutes), or "
                                  "made for another merchant account; nothing is linked."},
                            409: {"description": "`already_linked`: this identity is linked to another merchant."}},
                 summary="Confirm a link: link the identity of a `link_code` to this merchant account")
    async def complete_link(body: LinkCodeIn, merchant_id: str = Depends(current_merchant)) -> dict[str, Any]:
        """Only the merchant account that started the link (its API key or a session) can confirm its
        code. Confirming a code again while the identity is linked to this merchant gives the same
        answer (a code holds no server-side state; it is harmless and ends after 5 minutes)."""
        sealer = link_codes()
        issuer, sub = _redeem(sealer, body.link_code.strip(), merchant_id)
        try:
            return await _link(sessions, merchant_id, issuer, sub)
        except LoginError as exc:
            raise _problem(exc.status, exc.code, exc.detail) from None

    @router.get("/link", response_model=list[LinkOut], responses=authenticated,
                summary="The Martinique Connect identities linked to this merchant account")
    async def links(merchant_id: str = Depends(current_merchant)) -> list[LinkOut]:
        async with sessions() as db:
            rows = (await db.execute(select(BppMerchantLogin).where(BppMerchantLogin.merchant_id == merchant_id)
                                     .order_by(BppMerchantLogin.linked_at))).scalars()
            return [LinkOut(issuer=r.issuer, sub=r.sub, linked_at=wire_timestamp(r.linked_at)) for r in rows]

    @router.delete("/link", status_code=204, responses={**authenticated,
                                                        404: {"description": "`not_linked`: no such linked identity"}},
                   summary="Unlink Martinique Connect identities (all, or `sub`) and end their sessions")
    async def unlink(merchant_id: str = Depends(current_merchant),
                     sub: str | None = Query(None, max_length=255,
                                             description="Only this identity; all when absent.")) -> Response:
        async with sessions() as db:
            linked = select(BppMerchantLogin).where(BppMerchantLogin.merchant_id == merchant_id)
            if sub is not None:
                linked = linked.where(BppMerchantLogin.sub == sub)
            rows = list((await db.execute(linked)).scalars())
            if sub is not None and not rows:
                raise _problem(404, "not_linked", "no such identity is linked to this merchant account")
            for row in rows:
                await db.delete(row)
                # Its sessions end with the link: unlinking is how a merchant removes someone's access.
                await db.execute(update(BppMerchantSession).where(
                    BppMerchantSession.merchant_id == merchant_id, BppMerchantSession.issuer == row.issuer,
                    BppMerchantSession.sub == row.sub, BppMerchantSession.revoked_at.is_(None))  # type: ignore[union-attr]
                    .values(revoked_at=_now()))
            await db.commit()
        log.info("bpp.merchant_login.unlinked", merchant_id=merchant_id, identities=len(rows))
        return Response(status_code=204)

    @router.post("/login", response_model=AuthorizationOut, responses=not_offered,
                 summary="Start a merchant login through Martinique Connect (no authentication)")
    async def login() -> dict[str, str]:
        """Open `authorization_url` (this BPP's /login/start, valid 5 minutes) in the browser that will
        finish the login: it binds the login to that browser with a cookie. After the browser flow,
        the callback gives a merchant session token if the identity is linked to a merchant account,
        else 403 `not_linked`; a callback URL opened in another browser gets 400 `invalid_state`."""
        relying, sealer, bind = login_parts()
        try:
            await relying.metadata()  # Martinique Connect unreachable: say so here, not later in the browser
        except LoginError as exc:
            raise _problem(exc.status, exc.code, exc.detail) from None
        # The ticket fixes nothing about the login: /login/start draws the browser's value and the state.
        ticket = sealer.seal({"p": "login_ticket", "exp": int((_now() + LOGIN_TICKET_TTL).timestamp())})
        return {"authorization_url": f"{bind.start_url}?{urlencode({'t': ticket})}"}

    @router.get("/login/start", summary="Bind a merchant login to this browser, then go to Martinique Connect",
                response_class=RedirectResponse, status_code=303,
                responses={303: {"description": "To Martinique Connect's authorization endpoint, setting the login "
                                 "cookie (`__Host-lakou_merchant_login`, or `lakou_merchant_login` when the BPP is "
                                 "plain http; HttpOnly, SameSite=Lax, 10 minutes) that the callback checks."},
                           400: {"description": "`invalid_ticket`: unknown, tampered or expired (5 minutes): start "
                                 "the login again. JSON, a page (Accept: text/html), or #error= to the app."},
                           **not_offered})
    async def login_start(request: Request, t: str | None = Query(
            None, description="The ticket from POST /api/v1/merchant/auth/login.")) -> Response:
        relying, sealer, bind = login_parts()
        try:
            try:  # any bad ticket (even an oversized one) gets the same answer, as a page to a browser
                ticket = sealer.open(t) if t and len(t) <= 4096 else {}
            except LoginError:
                ticket = {}
            if ticket.get("p") != "login_ticket":
                raise LoginError(400, "invalid_ticket", "unknown, tampered or expired login link (valid 5 minutes): "
                                 "start the login again (POST /api/v1/merchant/auth/login)")
            # Fresh at each visit, never in the ticket: a forwarded ticket gives its sender no value to match.
            value = secrets.token_urlsafe(32)
            url = await relying.authorization_url({"p": "login", "b": bind.digest(value)})
        except LoginError as exc:
            log.info("bpp.merchant_login.refused", code=exc.code)
            return _answer(request, config, exc.status, {"detail": {"code": exc.code, "message": exc.detail}})
        response = RedirectResponse(url, status_code=303, headers=_NO_STORE)
        bind.set(response, value)
        return response

    @router.get("/callback", summary="Martinique Connect's redirect (the registered redirect URI)",
                responses={200: {"model": SessionOut | LinkCodeOut,
                                 "content": {"text/html": {"schema": {"type": "string"}}},
                                 "description": "A login: the session token (SessionOut, shown once); a link: "
                                 "LinkCodeOut (nothing linked yet: the merchant confirms the code with POST "
                                 "/api/v1/merchant/auth/link/complete). JSON, or a small page to a browser "
                                 "(Accept: text/html)."},
                           303: {"description": "LAKOU_BPP_CONNECT_APP_URL set: to the app with the outcome in the "
                                 "fragment: #token=...&token_type=Bearer&expires_at=...&merchant_id=..., "
                                 "#link_code=...&merchant_id=...&expires_at=..., or #error=<code>."},
                           400: {"description": "`invalid_state` (unknown, tampered or expired; or a login not "
                                 "started in this browser: no or another login cookie), `wrong_issuer` "
                                 "(RFC 9207), `login_refused`, `login_failed` (code used or expired: a replayed "
                                 "callback), `invalid_id_token`."},
                           403: {"description": "`not_linked`: this identity is linked to no merchant account."},
                           409: {"description": "`already_linked`: this identity is linked to another merchant."},
                           **not_offered})
    async def callback(
        request: Request,
        code: str | None = Query(None, max_length=2048), state: str | None = Query(None, max_length=4096),
        iss: str | None = Query(None, max_length=2048), error: str | None = Query(None, max_length=256),
    ) -> Response:
        relying, _, bind = login_parts()
        query = {k: v for k, v in {"code": code, "state": state, "iss": iss, "error": error}.items() if v is not None}
        bound = False  # a login whose browser matched: its cookie is spent whatever the outcome
        try:
            purpose = relying.open(state or "")  # before the code exchange: a state of no use spends no code
            if not ((purpose.get("p") == "login" and isinstance(purpose.get("b"), str))
                    or (purpose.get("p") == "link" and isinstance(purpose.get("m"), str))):
                raise LoginError(400, "invalid_state", "unknown or tampered state: start the login again")
            if purpose["p"] == "login":
                if not bind.matches(request, purpose["b"]):  # login CSRF: someone else's callback URL
                    raise LoginError(400, "invalid_state", "this login was not started in this browser: start it "
                                     "again here, and finish it in the browser that opened its link")
                bound = True
            payload, claims = await relying.complete(query)
            if payload["p"] == "link":  # links nothing: the merchant confirms the code (POST /link/complete)
                body = await _link_code(sessions, link_codes(), payload["m"], relying.issuer, claims["sub"])
            else:
                body = await _open_session(sessions, relying.issuer, claims["sub"], ttl)
        except LoginError as exc:
            log.info("bpp.merchant_login.refused", code=exc.code)  # never the token, the claims or the state
            answer = _answer(request, config, exc.status, {"detail": {"code": exc.code, "message": exc.detail}})
        else:
            answer = _answer(request, config, 200, body)
        if bound:
            bind.clear(answer)
        return answer

    @router.post("/logout", status_code=204, summary="End this merchant session (the token stops working at once)",
                 responses={401: {"description": "Not a live merchant session token (API keys are revoked through "
                                                 "the operator API)"}})
    async def logout(credentials: HTTPAuthorizationCredentials | None = Depends(session_bearer)) -> Response:
        async with sessions() as db:
            row = await merchants.live_session(db, credentials.credentials.strip()) if credentials else None
            if row is None:
                raise HTTPException(401, "a live merchant session token (lkms_...) is required as 'Authorization: "
                                         "Bearer <token>'; API keys are revoked through the operator API",
                                    headers={"WWW-Authenticate": merchants.REALM})
            row.revoked_at = _now()
            await db.commit()
            log.info("bpp.merchant_login.logout", merchant_id=row.merchant_id, session_id=row.id)
        return Response(status_code=204)

    return router


def _now() -> datetime:
    return datetime.now(UTC)


def _already_linked() -> LoginError:
    return LoginError(409, "already_linked", "this Martinique Connect identity is already linked to another "
                      "merchant account: unlink it there first")


async def _link_code(sessions: async_sessionmaker[AsyncSession], codes: RelyingParty, merchant_id: str, issuer: str,
                     sub: str) -> dict[str, Any]:
    """The callback's answer to a link: a sealed code, only once the link could be made (the merchant
    exists, the identity is not another merchant's), so the browser hears of a conflict at once."""
    async with sessions() as db:
        if await db.get(BppMerchant, merchant_id) is None:
            raise LoginError(400, "invalid_state", "the merchant account of this link no longer exists")
        existing = await db.get(BppMerchantLogin, (issuer, sub))
    if existing is not None and existing.merchant_id != merchant_id:
        raise _already_linked()
    exp = int((_now() + LINK_CODE_TTL).timestamp())  # whole seconds, rounded down: never more than 5 minutes
    code = codes.seal({"p": "link_code", "m": merchant_id, "iss": issuer, "sub": sub, "exp": exp,
                       "r": secrets.token_urlsafe(16)})
    log.info("bpp.merchant_login.link_code", merchant_id=merchant_id)  # never the code or the sub
    return {"link_code": code, "merchant_id": merchant_id,
            "expires_at": wire_timestamp(datetime.fromtimestamp(exp, UTC))}


def _redeem(codes: RelyingParty, code: str, merchant_id: str) -> tuple[str, str]:
    """The (issuer, sub) of a live link code made for this merchant; 400 `invalid_link_code` otherwise
    (forged, sealed for another use, expired, another merchant's, another issuer's)."""
    try:
        payload = codes.open(code)
    except LoginError:
        payload = {}
    sub = payload.get("sub")
    if (payload.get("p") != "link_code" or payload.get("m") != merchant_id or payload.get("iss") != codes.issuer
            or not isinstance(sub, str) or not sub):
        raise _problem(400, "invalid_link_code", "unknown, tampered or expired link code (valid 5 minutes), or one "
                       "made for another merchant account: start the link again (POST /api/v1/merchant/auth/link) "
                       "and confirm it with this merchant's own API key or session")
    return codes.issuer, sub


async def _link(sessions: async_sessionmaker[AsyncSession], merchant_id: str, issuer: str, sub: str) -> dict[str, Any]:
    async with sessions() as db:
        if await db.get(BppMerchant, merchant_id) is None:
            raise LoginError(400, "invalid_state", "the merchant account of this link no longer exists")
        existing = await db.get(BppMerchantLogin, (issuer, sub))
        if existing is None:
            db.add(BppMerchantLogin(issuer=issuer, sub=sub, merchant_id=merchant_id))
            try:
                await db.commit()
            except IntegrityError:  # the same identity linked by a concurrent callback
                await db.rollback()
                existing = await db.get(BppMerchantLogin, (issuer, sub))
        if existing is not None and existing.merchant_id != merchant_id:
            raise _already_linked()
    log.info("bpp.merchant_login.linked", merchant_id=merchant_id)
    return {"linked": True, "merchant_id": merchant_id, "issuer": issuer, "sub": sub}


async def _open_session(sessions: async_sessionmaker[AsyncSession], issuer: str, sub: str,
                        ttl: timedelta) -> dict[str, Any]:
    async with sessions() as db:
        link = await db.get(BppMerchantLogin, (issuer, sub))
        if link is None:
            raise LoginError(403, "not_linked", "this Martinique Connect identity is not linked to a merchant "
                             "account: log in with an API key and link it first (POST /api/v1/merchant/auth/link)")
        row, token = merchants.new_session_token(link.merchant_id, issuer, sub, ttl)
        db.add(row)
        # Sessions long over are of no use: drop this merchant's, so the table does not grow forever.
        await db.execute(delete(BppMerchantSession).where(BppMerchantSession.merchant_id == link.merchant_id,
                                                          BppMerchantSession.expires_at < _now() - _KEEP_ENDED))
        await db.commit()
        log.info("bpp.merchant_login.ok", merchant_id=row.merchant_id, session_id=row.id)
        return {"token": token, "token_type": "Bearer", "expires_at": wire_timestamp(row.expires_at),
                "merchant_id": row.merchant_id}


__all__ = ["LINK_CODE_TTL", "LOGIN_TICKET_TTL", "Binding", "link_code_sealer", "merchant_login_routes",
           "relying_party", "ticket_sealer"]
