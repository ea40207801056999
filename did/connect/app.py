"""Composition root of Martinique Connect, the territorial OpenID Provider (`lakou serve connect`).

Endpoints: discovery, JWKS, authorize (+ login and consent pages), token, userinfo, logout
(RP-initiated, with back-channel logout to every client the session signed in to).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import OAuth2Error
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jwcrypto import jwk, jws, jwt
from sqlalchemy import func, select, update

from beckn.settings import Settings
from beckn.store.db import create_engine, session_factory, upgrade
from did.connect import consents, issuance, pages, presentation
from did.connect.keys import ALG, KeyStore, derive, load_server_secret, pairwise_sub
from did.connect.oauth import (
    ACR_LOCAL,
    CLAIMS,
    SCOPES,
    Client,
    Code,
    Ctx,
    Reply,
    Server,
    StarletteOAuth2Request,
    current,
    password_hasher,
    sha256,
    verify_secret,
)
from did.connect.settings import ConnectSettings, connect_settings
from did.connect.upstream import COOKIE as UPSTREAM_COOKIE
from did.connect.upstream import TTL as UPSTREAM_TTL
from did.connect.upstream import Upstream, UpstreamError
from did.connect.tables import (
    ConnectAccessToken,
    ConnectAccount,
    ConnectAuthCode,
    ConnectClient,
    ConnectLoginAttempt,
    ConnectSession,
)

log = logging.getLogger("lakou.connect")

SESSION_COOKIE = "mq_session"
CSRF_COOKIE = "mq_csrf"
AUTHORIZE_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
                    "code_challenge_method", "prompt", "max_age", "ui_locales", "login_hint", "acr_values",
                    "claims_locales", "id_token_hint", "display", "response_mode")
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Provider:
    def __init__(self, settings: ConnectSettings, issuer: str) -> None:
        self.settings = settings
        self.issuer = issuer.rstrip("/")
        self.secret = load_server_secret(settings.connect_secret, settings.data_dir)
        self.database_url = settings.resolved_database_url()
        self.engine = create_engine(self.database_url)
        self.sessions = session_factory(self.engine)
        self.keys = KeyStore(self.sessions, self.secret)
        self.server = Server()
        self.hasher = password_hasher(settings)
        # A valid Argon2id hash, at the configured cost, of nothing anyone knows: unknown usernames
        # cost the same time as wrong passwords.
        self.dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        self.secure_cookies = self.issuer.startswith("https://")
        self.http: httpx.AsyncClient | None = None
        self.upstream = (Upstream(settings, self.secret, f"{self.issuer}/upstream/callback")
                         if settings.connect_upstream_issuer else None)

    def ctx(self) -> Ctx:
        return Ctx(issuer=self.issuer, secret=self.secret, settings=self.settings)

    # ---- storage helpers

    async def client(self, client_id: str | None) -> Client | None:
        if not client_id:
            return None
        async with self.sessions() as s:
            row = await s.get(ConnectClient, client_id)
        return Client(row) if row else None

    async def browser_session(self, request: Request) -> tuple[ConnectSession, ConnectAccount] | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        async with self.sessions() as s:
            row = await s.get(ConnectSession, sha256(cookie))
            if row is None or row.ended_at is not None or row.expires_at <= datetime.now(UTC):
                return None
            account = await s.get(ConnectAccount, row.account_id)
        return (row, account) if account else None

    async def save(self, rows: list[Any]) -> None:
        if not rows:
            return
        async with self.sessions() as s, s.begin():
            for row in rows:
                await s.merge(row) if isinstance(row, ConnectSession) else s.add(row)

    def oauth_request(self, request: Request, args: list[tuple[str, str]], form: list[tuple[str, str]]
                      ) -> StarletteOAuth2Request:
        return StarletteOAuth2Request(request.method, f"{self.issuer}{request.url.path}", request.headers, args, form)


# ---- small request and response helpers


async def read_form(request: Request) -> list[tuple[str, str]]:
    """An application/x-www-form-urlencoded body (every form here is one; no python-multipart needed)."""
    if request.method != "POST":
        return []
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return []
    body = await request.body()
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return []



def _to_response(reply: Reply) -> Response:
    headers = dict(reply.headers)
    if isinstance(reply.body, dict):
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)
    return Response(reply.body or b"", status_code=reply.status, headers=headers)


def _oauth_json_error(status: int, error: str, description: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _lang(request: Request, params: dict[str, str]) -> str:
    return pages.choose_lang(params.get("ui_locales"), request.headers.get("accept-language"))


def _html(body: str, status: int = 200, *, redirect_uri: str | None = None) -> HTMLResponse:
    # Browsers (Chromium) check form-action on every redirect a form submission follows: the login
    # and consent forms end on the client's redirect_uri (validated by the caller), so its origin
    # must be allowed too, or the browser blocks the final redirect.
    form_action = "'self'"
    if redirect_uri:
        parts = urlsplit(redirect_uri)
        if parts.scheme in ("http", "https") and parts.netloc:
            form_action += f" {parts.scheme}://{parts.netloc}"
    return HTMLResponse(body, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY",
        "Content-Security-Policy": f"default-src 'none'; form-action {form_action}; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer"})


async def _registered_redirect(op: "Provider", params: dict[str, str]) -> str | None:
    """The request's redirect_uri when it is one the client registered, else None."""
    client = await op.client(params.get("client_id"))
    uri = params.get("redirect_uri")
    return uri if client is not None and uri and client.check_redirect_uri(uri) else None


def create_app(settings: Settings, *, host: str = "127.0.0.1", port: int = 8500) -> FastAPI:
    config = connect_settings(settings)
    issuer = config.connect_issuer or f"http://{host}:{port}"
    op = Provider(config, issuer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:  # noqa: ARG001
        await upgrade(op.database_url)
        await op.keys.ensure()
        op.http = httpx.AsyncClient(timeout=5.0)
        try:
            yield
        finally:
            await op.http.aclose()
            await op.engine.dispose()

    app = FastAPI(title="Lakou Martinique Connect", version="0.1.0", lifespan=lifespan,
                  description="The territorial OpenID Provider of the Lakou network.")
    app.state.connect = op
    upstream_name = config.connect_upstream_name if op.upstream else None

    def csrf_token(request: Request) -> tuple[str, bool]:
        value = request.cookies.get(CSRF_COOKIE)
        return (value, False) if value and len(value) >= 32 else (secrets.token_urlsafe(32), True)

    def set_csrf(response: Response, token: str, fresh: bool) -> Response:
        if fresh:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, secure=op.secure_cookies, samesite="lax",
                                path="/")
        return response

    def csrf_ok(request: Request, form: dict[str, str]) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE) or ""
        return bool(cookie) and hmac.compare_digest(cookie.encode(), (form.get("csrf") or "").encode())

    def error_response(request: Request, error: OAuth2Error, params: dict[str, str]) -> Response:
        """Redirect the error to the client when its redirect_uri was validated, else show a page."""
        if error.redirect_uri:
            reply = op.server.handle_error_response(None, error)
            op.server.issuer_parameter.add_issuer_parameter(op.server, reply)
            return _to_response(reply)
        lang = _lang(request, params)
        return _html(pages.error_page(lang, error.error, error.description), status=400)

    wallet_issuer = issuance.register(app, op, browser_session=op.browser_session, csrf_token=csrf_token,
                                      set_csrf=set_csrf, csrf_ok=csrf_ok, lang_of=_lang, html=_html)
    app.state.wallet_issuer = wallet_issuer

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "service": "connect", "issuer": op.issuer}

    @app.get("/.well-known/openid-configuration")
    @app.get("/.well-known/oauth-authorization-server")
    async def discovery() -> JSONResponse:
        i = op.issuer
        return JSONResponse({
            "issuer": i,
            "authorization_endpoint": f"{i}/authorize",
            "token_endpoint": f"{i}/token",
            "userinfo_endpoint": f"{i}/userinfo",
            "jwks_uri": f"{i}/jwks",
            "end_session_endpoint": f"{i}/logout",
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", issuance.PRE_AUTH_GRANT],
            "pre-authorized_grant_anonymous_access_supported": True,
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [ALG],
            "userinfo_signing_alg_values_supported": [ALG],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": CLAIMS,
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "acr_values_supported": [ACR_LOCAL, *(["eidas1"] if op.upstream else []), presentation.ACR_WALLET],
            "ui_locales_supported": list(pages.LANGS),
            "authorization_response_iss_parameter_supported": True,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "frontchannel_logout_supported": False,
        }, headers={"Cache-Control": "public, max-age=300"})

    @app.get("/jwks")
    async def jwks() -> JSONResponse:
        return JSONResponse(await op.keys.jwks(), headers={"Cache-Control": "public, max-age=300"},
                            media_type="application/jwk-set+json")

    # ---- authorization endpoint

    async def authorize_flow(request: Request, items: list[tuple[str, str]], *, consent: str | None = None,
                             method: str | None = None) -> Response:
        params = {k: v for k, v in items if k in AUTHORIZE_PARAMS}
        ctx = op.ctx()
        client = await op.client(params.get("client_id"))
        if client:
            ctx.clients[client.client_id] = client
        found = await op.browser_session(request)
        prompts = (params.get("prompt") or "").split()
        if found and params.get("max_age", "").isdigit():
            if time.time() - found[0].auth_time.timestamp() > int(params["max_age"]):
                found = None
        if found and "login" in prompts and consent is None:
            found = None
        # acr_values is the client's preference order (OIDC Core 3.1.2.1): a request that puts
        # mq:wallet first gets a wallet login, even over a password session (a step-up).
        wallet_first = (params.get("acr_values") or "").split()[:1] == [presentation.ACR_WALLET]
        if found and wallet_first and found[0].acr != presentation.ACR_WALLET:
            found = None
        token = current.set(ctx)
        try:
            as_query = (method or request.method) == "GET"
            oreq = op.oauth_request(request, items if as_query else [], [] if as_query else items)
            try:
                grant = op.server.get_consent_grant(oreq, end_user=found[1] if found else None)
            except OAuth2Error as error:
                return error_response(request, error, params)
            lang = _lang(request, params)
            csrf, fresh = csrf_token(request)
            if found is None and wallet_first:
                return RedirectResponse(f"{op.issuer}/wallet/login?{urlencode(params)}", status_code=303,
                                        headers={"Cache-Control": "no-store"})
            if found is None:
                return set_csrf(_html(pages.login_page(lang, csrf=csrf, params=params, upstream=upstream_name),
                                      redirect_uri=grant.redirect_uri), csrf, fresh)
            session, account = found
            scopes = oreq.scope.split()
            granted = set(session.consents.get(client.client_id, []))
            needs_consent = "consent" in prompts or not set(scopes) <= granted
            if consent is None and needs_consent and "none" in prompts:
                from authlib.oidc.core.errors import ConsentRequiredError
                return error_response(request, ConsentRequiredError(redirect_uri=grant.redirect_uri,
                                                                    state=params.get("state")), params)
            if consent is None and needs_consent:
                return set_csrf(_html(pages.consent_page(lang, csrf=csrf, params=params, client_name=client.row.name,
                                                         scopes=scopes), redirect_uri=grant.redirect_uri), csrf, fresh)
            if consent == "deny":
                from authlib.oauth2.rfc6749.errors import AccessDeniedError
                error = AccessDeniedError(redirect_uri=grant.redirect_uri, state=params.get("state"))
                return error_response(request, error, params)
            ctx.session, ctx.account = session, account
            reply = op.server.create_authorization_response(oreq, grant_user=account, grant=grant)
        finally:
            current.reset(token)
        session.consents = {**session.consents, client.client_id: sorted(granted | set(scopes))}
        session.clients = sorted(set(session.clients) | {client.client_id})
        await op.save(ctx.pending + [session])
        return _to_response(reply)

    @app.get("/authorize")
    async def authorize_get(request: Request) -> Response:
        return await authorize_flow(request, list(request.query_params.multi_items()))

    @app.post("/authorize")
    async def authorize_post(request: Request) -> Response:
        return await authorize_flow(request, await read_form(request))

    @app.post("/consent")
    async def consent(request: Request) -> Response:
        form = dict(await read_form(request))
        params = {k: v for k, v in form.items() if k in AUTHORIZE_PARAMS}
        if not csrf_ok(request, form):
            lang = _lang(request, params)
            return _html(pages.message_page(lang, "error_title", pages.TEXT[lang]["csrf"]), status=403)
        decision = "allow" if form.get("decision") == "allow" else "deny"
        # The authorize parameters are validated again by authlib, as the query they first came in.
        return await authorize_flow(request, list(params.items()), consent=decision, method="GET")

    # ---- login

    async def failures(key_column: Any, key: str) -> int:
        since = datetime.now(UTC) - timedelta(minutes=config.connect_lockout_minutes)
        async with op.sessions() as s:
            # Failures since the last success on that key.
            last_ok = (await s.execute(select(func.max(ConnectLoginAttempt.at)).where(
                key_column == key, ConnectLoginAttempt.success.is_(True)))).scalar_one()
            start = max(since, last_ok) if last_ok else since
            return (await s.execute(select(func.count()).select_from(ConnectLoginAttempt).where(
                key_column == key, ConnectLoginAttempt.success.is_(False), ConnectLoginAttempt.at > start)
            )).scalar_one()

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = dict(await read_form(request))
        params = {k: v for k, v in form.items() if k in AUTHORIZE_PARAMS}
        lang = _lang(request, params)
        text = pages.TEXT[lang]
        if not csrf_ok(request, form):
            return _html(pages.message_page(lang, "error_title", text["csrf"]), status=403)
        username = (form.get("username") or "").strip()[:320]
        password = form.get("password") or ""
        csrf = request.cookies[CSRF_COOKIE]
        account_key = sha256("acct:" + username.lower())
        ip_key = sha256("ip:" + (request.client.host if request.client else "?"))
        if (await failures(ConnectLoginAttempt.account_key, account_key) >= config.connect_max_failures_per_account
                or await failures(ConnectLoginAttempt.ip_key, ip_key) >= config.connect_max_failures_per_ip):
            message = text["locked"].format(minutes=config.connect_lockout_minutes)
            return _html(pages.login_page(lang, csrf=csrf, params=params, error=message, username=username,
                                          upstream=upstream_name),
                         status=429, redirect_uri=await _registered_redirect(op, params))
        async with op.sessions() as s:
            account = (await s.execute(select(ConnectAccount).where(
                (func.lower(ConnectAccount.username) == username.lower())
                | (func.lower(ConnectAccount.email) == username.lower())))).scalars().first()
        ok = verify_secret(account.password_hash if account else op.dummy_hash, password) and account is not None
        await op.save([ConnectLoginAttempt(account_key=account_key, ip_key=ip_key, success=ok)])
        if ok and op.hasher.check_needs_rehash(account.password_hash):
            # The operator changed the Argon2id cost: only now, with the password at hand, can the
            # stored hash move to the new parameters.
            async with op.sessions() as s, s.begin():
                await s.execute(update(ConnectAccount).where(ConnectAccount.id == account.id)
                                .values(password_hash=op.hasher.hash(password)))
        if not ok:
            return _html(pages.login_page(lang, csrf=csrf, params=params, error=text["bad_login"], username=username,
                                          upstream=upstream_name),
                         status=401, redirect_uri=await _registered_redirect(op, params))
        return await signed_in(account, ACR_LOCAL, ["pwd"], params)

    async def signed_in(account: ConnectAccount, acr: str, amr: list[str], params: dict[str, str]) -> Response:
        """Open a session for the account and resume the authorization request."""
        cookie = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await op.save([ConnectSession(id=sha256(cookie), account_id=account.id, sid=secrets.token_urlsafe(24),
                                      auth_time=now, acr=acr, amr=amr, consents={}, clients=[],
                                      expires_at=now + timedelta(minutes=config.connect_session_minutes))])
        params = {k: v for k, v in params.items() if k in AUTHORIZE_PARAMS}
        params.pop("prompt", None) if params.get("prompt") == "login" else None
        response = RedirectResponse(f"{op.issuer}/authorize?{urlencode(params)}", status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, httponly=True, secure=op.secure_cookies, samesite="lax",
                            path="/", max_age=config.connect_session_minutes * 60)
        return response

    # ---- upstream provider (FranceConnect) brokering

    @app.get("/upstream/start", summary="Sign in through the upstream provider (FranceConnect)")
    async def upstream_start(request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if k in AUTHORIZE_PARAMS}
        lang = _lang(request, params)
        if op.upstream is None:
            return _html(pages.error_page(lang, "not_found", "No upstream provider is configured."), status=404)
        try:
            url, sealed = await op.upstream.start(op.http, params)
        except (httpx.HTTPError, UpstreamError, ValueError, KeyError) as exc:
            log.warning("upstream provider unavailable: %s", type(exc).__name__)
            return _html(pages.error_page(lang, "temporarily_unavailable",
                                          f"{config.connect_upstream_name} cannot be reached."), status=503)
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(UPSTREAM_COOKIE, sealed, httponly=True, secure=op.secure_cookies, samesite="lax",
                            path="/upstream", max_age=UPSTREAM_TTL)
        return response

    @app.get("/upstream/callback", summary="Return from the upstream provider")
    async def upstream_callback(request: Request) -> Response:
        pending = op.upstream.unseal(request.cookies.get(UPSTREAM_COOKIE)) if op.upstream else None
        params = pending["params"] if pending else {}
        lang = _lang(request, params)
        if pending is None:
            return _html(pages.error_page(lang, "invalid_request", "No sign-in through "
                                          f"{config.connect_upstream_name} is under way (or it expired)."), 400)
        try:
            claims, info = await op.upstream.finish(op.http, pending, dict(request.query_params))
        except (UpstreamError, httpx.HTTPError) as exc:
            reason = str(exc) if isinstance(exc, UpstreamError) else type(exc).__name__
            return _html(pages.error_page(lang, "access_denied", f"{config.connect_upstream_name}: {reason}"), 400)
        account = await op.upstream.account(op.sessions, claims, info)
        amr = [str(v) for v in claims.get("amr", [])] if isinstance(claims.get("amr"), list) else []
        response = await signed_in(account, str(claims.get("acr") or "eidas1"), ["fc", *amr], params)
        response.delete_cookie(UPSTREAM_COOKIE, path="/upstream")
        return response

    # ---- token endpoint

    @app.post("/token")
    async def token_endpoint(request: Request) -> Response:
        form = await read_form(request)
        data = dict(form)
        if data.get("grant_type") == issuance.PRE_AUTH_GRANT:
            return await wallet_issuer.token(data)  # OpenID4VCI pre-authorized code: a dedicated handler
        ctx = op.ctx()
        client_id = data.get("client_id")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            import base64
            from urllib.parse import unquote
            try:
                client_id = unquote(base64.b64decode(auth[6:]).decode().split(":", 1)[0])
            except (ValueError, UnicodeDecodeError):
                return _oauth_json_error(401, "invalid_client", "Malformed Basic credentials.")
        client = await op.client(client_id)
        if client:
            ctx.clients[client.client_id] = client
        code = data.get("code")
        if code and data.get("grant_type") == "authorization_code":
            await consume_code(ctx, code)
        key = await op.keys.signing_key()
        ctx.signing_key = key.export_private(as_dict=True) | {"kid": key.get("kid")}
        token = current.set(ctx)
        try:
            reply = op.server.create_token_response(op.oauth_request(request, [], form))
        finally:
            current.reset(token)
        if reply.status == 200 and ctx.code is not None and ctx.account is not None:
            # A release of claims (ID token, and UserInfo through the access token): a consent record.
            ctx.pending.append(consents.sign_in_record(ctx.account.id, ctx.code.row.client_id, ctx.code.row.scope))
        await op.save(ctx.pending)
        return _to_response(reply)

    async def consume_code(ctx: Ctx, code: str) -> None:
        """Mark the code used, atomically; a second use revokes the tokens issued from it (RFC 6749 §4.1.2)."""
        now = datetime.now(UTC)
        digest = sha256(code)
        async with op.sessions() as s, s.begin():
            taken = await s.execute(update(ConnectAuthCode).where(
                ConnectAuthCode.code_hash == digest, ConnectAuthCode.consumed_at.is_(None),
                ConnectAuthCode.expires_at > now).values(consumed_at=now))
            row = (await s.execute(select(ConnectAuthCode).where(ConnectAuthCode.code_hash == digest))).scalar_one_or_none()
            if row is None:
                return
            if taken.rowcount != 1:
                if row.consumed_at is not None and row.consumed_at != now:
                    revoked = await s.execute(update(ConnectAccessToken).where(
                        ConnectAccessToken.code_id == row.id, ConnectAccessToken.revoked_at.is_(None)
                    ).values(revoked_at=now))
                    log.warning("authorization code reused by client %s: %d token(s) revoked",
                                row.client_id, revoked.rowcount)
                return
            ctx.code = Code(row)
            ctx.account = await s.get(ConnectAccount, row.account_id)

    # ---- userinfo

    async def bearer(request: Request) -> tuple[ConnectAccessToken, ConnectAccount, Client] | Response:
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if "access_token" in request.query_params:
            return _oauth_json_error(400, "invalid_request",
                                     "Access tokens are accepted in the Authorization header only (RFC 6750 §2.1).")
        if request.method == "POST":
            if "access_token" in dict(await read_form(request)):
                return _oauth_json_error(400, "invalid_request",
                                         "Access tokens are accepted in the Authorization header only (RFC 6750 §2.1).")
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return _oauth_json_error(401, "invalid_token", "Missing bearer access token.",
                                     {"WWW-Authenticate": 'Bearer realm="martinique-connect"'})
        async with op.sessions() as s:
            row = await s.get(ConnectAccessToken, sha256(auth[7:].strip()))
            if row is None or row.revoked_at is not None or row.expires_at <= datetime.now(UTC):
                return _oauth_json_error(401, "invalid_token", "The access token is unknown, expired or revoked.",
                                         challenge)
            account = await s.get(ConnectAccount, row.account_id)
            client_row = await s.get(ConnectClient, row.client_id)
        return row, account, Client(client_row)

    def claims_for(account: ConnectAccount, scope: str, sub: str) -> dict[str, Any]:
        scopes = scope.split()
        claims: dict[str, Any] = {"sub": sub}
        if "profile" in scopes:
            claims |= {k: getattr(account, k) for k in ("given_name", "family_name", "birthdate")
                       if getattr(account, k)}
        if "email" in scopes and account.email:
            claims["email"] = account.email
        if "mq_residence" in scopes and account.commune:
            claims["commune_insee"] = account.commune.removeprefix("insee:")
        return claims

    async def sign(claims: dict[str, Any], typ: str = "JWT") -> str:
        key = await op.keys.signing_key()
        token = jwt.JWT(header={"alg": ALG, "kid": key.get("kid"), "typ": typ}, claims=claims)
        token.make_signed_token(key)
        return token.serialize()

    @app.get("/userinfo", summary="UserInfo (Bearer token in the Authorization header)")
    async def userinfo_get(request: Request) -> Response:
        return await userinfo(request)

    @app.post("/userinfo", summary="UserInfo, POST form (Bearer token in the Authorization header)")
    async def userinfo_post(request: Request) -> Response:
        return await userinfo(request)

    async def userinfo(request: Request) -> Response:
        found = await bearer(request)
        if isinstance(found, Response):
            return found
        row, account, client = found
        claims = claims_for(account, row.scope, row.sub)
        headers = {"Cache-Control": "no-store"}
        if client.row.userinfo_signed_response_alg:
            now = int(time.time())
            signed = await sign(claims | {"iss": op.issuer, "aud": client.client_id, "iat": now})
            return Response(signed, media_type="application/jwt", headers=headers)
        return JSONResponse(claims, headers=headers)

    # ---- logout

    async def verify_own_token(token: str) -> dict[str, Any] | None:
        """An ID token we issued (any published key, expiry not checked: OIDC RP-Initiated Logout §2)."""
        keyset = jwk.JWKSet.from_json(json.dumps(await op.keys.jwks()))
        try:
            obj = jws.JWS()
            obj.deserialize(token)
            obj.verify(keyset)
            claims = json.loads(obj.payload)
        except Exception:  # noqa: BLE001 - jwcrypto raises many types for malformed input
            return None
        return claims if claims.get("iss") == op.issuer else None

    async def backchannel(session: ConnectSession) -> None:
        """Back-channel logout (OIDC Back-Channel Logout 1.0 §2.4) to each client of the session."""
        async with op.sessions() as s:
            rows = list((await s.execute(select(ConnectClient).where(
                ConnectClient.client_id.in_(session.clients or [""])))).scalars())
        now = int(time.time())

        async def send(row: ConnectClient) -> None:
            token = await sign({
                "iss": op.issuer, "aud": row.client_id, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4()),
                "sub": pairwise_sub(op.secret, row.sector_identifier, session.account_id), "sid": session.sid,
                "events": {BACKCHANNEL_EVENT: {}},
            }, typ="logout+jwt")
            try:
                answer = await op.http.post(row.backchannel_logout_uri, data={"logout_token": token})
                if answer.status_code >= 400:
                    log.warning("back-channel logout to client %s: HTTP %s", row.client_id, answer.status_code)
            except httpx.HTTPError as exc:
                log.warning("back-channel logout to client %s failed: %s", row.client_id, type(exc).__name__)

        await asyncio.gather(*(send(r) for r in rows if r.backchannel_logout_uri))

    @app.get("/logout", summary="RP-initiated logout (then back-channel logout to the session's clients)")
    async def logout_get(request: Request) -> Response:
        return await logout(request)

    @app.post("/logout", summary="RP-initiated logout, POST form")
    async def logout_post(request: Request) -> Response:
        return await logout(request)

    async def logout(request: Request) -> Response:
        items = dict(request.query_params) if request.method == "GET" else dict(await read_form(request))
        lang = _lang(request, items)
        hint, target, state = items.get("id_token_hint"), items.get("post_logout_redirect_uri"), items.get("state")
        # As FranceConnect: id_token_hint is required (it names the client and the session, and keeps a
        # cross-site link from signing people out).
        claims = await verify_own_token(hint) if hint else None
        if claims is None:
            return _html(pages.error_page(lang, "invalid_request", "id_token_hint is not a valid ID token of "
                                          "this provider."), status=400)
        if target:
            aud = claims.get("aud") if claims else None
            client_id = aud[0] if isinstance(aud, list) else aud
            client = await op.client(client_id)
            if client is None or target not in client.row.post_logout_redirect_uris:
                return _html(pages.error_page(lang, "invalid_request",
                                              "post_logout_redirect_uri is not registered for this client "
                                              "(an id_token_hint naming the client is required)."), status=400)
        found = await op.browser_session(request)
        session = found[0] if found else None
        if session is None and claims and claims.get("sid"):
            async with op.sessions() as s:
                session = (await s.execute(select(ConnectSession).where(
                    ConnectSession.sid == claims["sid"], ConnectSession.ended_at.is_(None)))).scalar_one_or_none()
        if session is not None:
            session.ended_at = datetime.now(UTC)
            await op.save([session])
            await backchannel(session)
        if target:
            response: Response = RedirectResponse(add_params_to_uri(target, {"state": state} if state else {}),
                                                  status_code=303)
        else:
            response = _html(pages.message_page(lang, "logout_title", pages.TEXT[lang]["logged_out"]))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    presentation.register(app, op, wallet_issuer, lang_of=_lang, html=_html, signed_in=signed_in,
                          authorize_params=AUTHORIZE_PARAMS, read_form=read_form)
    consents.register(app, op, browser_session=op.browser_session, csrf_token=csrf_token, set_csrf=set_csrf,
                      csrf_ok=csrf_ok, lang_of=_lang, html=_html, sign=sign, read_form=read_form)

    return app


__all__ = ["create_app", "Provider", "derive"]
