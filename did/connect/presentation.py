"""Credential → SSO: wallet login with OpenID4VP 1.0 (DCQL, `response_mode=direct_post`).

From the login page ("Se connecter avec mon portefeuille"), `GET /wallet/login?<authorize params>`
creates a presentation request bound to the browser (a cookie) and shows it as an `openid4vp://` link.
The wallet POSTs `vp_token` + `state` to `/wallet/response`; the provider verifies the SD-JWT VC with
`did.sdjwt.verify` (its own issuer key only, KB-JWT `nonce` and `aud` = our client_id, validity), checks
the credential is one it issued, to that holder key, and not revoked, and answers a `redirect_uri`
(same device). The browser that started the request polls `/wallet/status?state=` (cross device) and
goes to `/wallet/complete?state=`, which opens a session with `acr` `mq:wallet`, `amr` `["vc"]` and
resumes the OIDC authorization request.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jwcrypto import jwk
from sqlalchemy import update

from did import sdjwt
from did.connect import pages
from did.connect.issuance import VCT, Issuer
from did.connect.oauth import sha256
from did.connect.tables import ConnectAccount, ConnectIssuedCredential, ConnectWalletRequest

ACR_WALLET = "mq:wallet"
COOKIE = "mq_wallet"
REQUEST_SECONDS = 300
QUERY_ID = "resident"

TEXT = {
    "fr": {"title": "Se connecter avec mon portefeuille", "open": "Ouvrir le portefeuille",
           "intro": "Ouvrez ce lien avec votre portefeuille (ou scannez-le), puis revenez ici :",
           "continue": "Continuer", "pending": "En attente du portefeuille…"},
    "en": {"title": "Sign in with my wallet", "open": "Open the wallet",
           "intro": "Open this link with your wallet (or scan it), then come back here:",
           "continue": "Continue", "pending": "Waiting for the wallet…"},
    "es": {"title": "Iniciar sesión con mi cartera", "open": "Abrir la cartera",
           "intro": "Abra este enlace con su cartera (o escanéelo) y luego vuelva aquí:",
           "continue": "Continuar", "pending": "Esperando la cartera…"},
    "de": {"title": "Mit meiner Wallet anmelden", "open": "Wallet öffnen",
           "intro": "Öffnen Sie diesen Link mit Ihrer Wallet (oder scannen Sie ihn) und kehren Sie dann zurück:",
           "continue": "Weiter", "pending": "Warten auf die Wallet…"},
}


def dcql_query() -> dict[str, Any]:
    return {"credentials": [{"id": QUERY_ID, "format": "dc+sd-jwt", "meta": {"vct_values": [VCT]},
                             "claims": [{"path": ["commune_insee"]}, {"path": ["age_over_18"]}]}]}


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store"})


class Verifier:
    def __init__(self, op: Any, issuer: Issuer) -> None:
        self.op = op
        self.issuer = issuer

    @property
    def response_uri(self) -> str:
        return f"{self.op.issuer}/wallet/response"

    @property
    def client_id(self) -> str:
        return f"redirect_uri:{self.response_uri}"

    def request_params(self, row: ConnectWalletRequest) -> dict[str, str]:
        return {"client_id": self.client_id, "response_type": "vp_token", "response_mode": "direct_post",
                "response_uri": self.response_uri, "nonce": row.nonce, "state": row.state,
                "dcql_query": json.dumps(dcql_query(), separators=(",", ":"))}

    def link(self, row: ConnectWalletRequest) -> str:
        return "openid4vp://?" + urlencode(self.request_params(row))

    async def verify(self, row: ConnectWalletRequest, vp_token: str) -> str:
        """The account the presentation proves, or raise SdJwtError with a reason safe to show."""
        try:
            parsed = json.loads(vp_token)
        except ValueError:
            parsed = vp_token  # a bare SD-JWT+KB is accepted too
        if isinstance(parsed, dict):
            found = parsed.get(QUERY_ID)
            parsed = found[0] if isinstance(found, list) and found else found
        if not isinstance(parsed, str):
            raise sdjwt.SdJwtError(f"vp_token must be {{\"{QUERY_ID}\": [\"<SD-JWT+KB>\"]}}")
        try:
            _, payload = sdjwt._unverified_jwt(parsed.split("~", 1)[0], "SD-JWT")
        except sdjwt.SdJwtError:
            raise
        except Exception:  # noqa: BLE001 - any malformed input is a refusal, never a 500
            raise sdjwt.SdJwtError("the presentation is not an SD-JWT") from None
        if payload.get("iss") != self.issuer.did:
            raise sdjwt.SdJwtError("the credential was not issued by Martinique Connect")
        checked = sdjwt.verify(parsed, issuer_key=self.issuer.public, nonce=row.nonce, aud=self.client_id, vct=VCT)
        claims = checked.claims
        for name in ("commune_insee", "age_over_18"):
            if name not in claims:
                raise sdjwt.SdJwtError(f"the presentation lacks {name}")
        entry = (claims.get("status") or {}).get("bitstring_status_list_entry") or {}
        index = entry.get("statusListIndex")
        if entry.get("statusListCredential") != self.issuer.status_list_url or not (str(index or "").isdigit() and len(str(index)) <= 15):
            raise sdjwt.SdJwtError("the credential has no status entry of this issuer")
        try:
            holder = jwk.JWK(**claims["cnf"]["jwk"]).thumbprint()
        except Exception:  # noqa: BLE001
            raise sdjwt.SdJwtError("the credential has no usable cnf.jwk") from None
        async with self.op.sessions() as s:
            issued = await s.get(ConnectIssuedCredential, int(index))
        if issued is None or issued.holder_thumbprint != holder:
            raise sdjwt.SdJwtError("unknown credential")
        if issued.revoked_at is not None:
            raise sdjwt.SdJwtError("the credential is revoked")
        return issued.account_id


def register(app: FastAPI, op: Any, issuer: Issuer, *, lang_of: Any, html: Any, signed_in: Any,
             authorize_params: tuple[str, ...], read_form: Any) -> Verifier:
    verifier = Verifier(op, issuer)

    @app.get("/wallet/login", summary="Start a wallet login (OpenID4VP request) for an authorization request")
    async def wallet_login(request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if k in authorize_params}
        lang = lang_of(request, params)
        t = TEXT[lang]
        client = await op.client(params.get("client_id"))
        if client is None or params.get("redirect_uri") not in client.row.redirect_uris:
            return html(pages.error_page(lang, "invalid_request", "Unknown client or redirect_uri."), 400)
        browser = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = ConnectWalletRequest(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                                   browser_hash=sha256(browser), params=params, created_at=now,
                                   expires_at=now + timedelta(seconds=REQUEST_SECONDS))
        await op.save([row])
        link = pages.escape(verifier.link(row))
        next_url = pages.escape(f"complete?{urlencode({'state': row.state})}")
        body = (f"<p>{pages.escape(t['intro'])}</p><p><a class=\"wallet-request\" href=\"{link}\">"
                f"{pages.escape(t['open'])}</a></p><pre class=\"request-uri\">{link}</pre>"
                f"<p class=\"pending\" data-status=\"status?{pages.escape(urlencode({'state': row.state}))}\">"
                f"{pages.escape(t['pending'])}</p><p><a class=\"continue\" href=\"{next_url}\">"
                f"{pages.escape(t['continue'])}</a></p>")
        response = html(pages._page(lang, t["title"], body))
        response.set_cookie(COOKIE, browser, httponly=True, secure=op.secure_cookies, samesite="lax",
                            path="/wallet", max_age=REQUEST_SECONDS)
        return response

    @app.post("/wallet/response", summary="OpenID4VP direct_post: the wallet's vp_token and state")
    async def wallet_response(request: Request) -> Response:
        form = dict(await read_form(request))
        state, vp_token = form.get("state"), form.get("vp_token")
        if not state or not vp_token:
            return _error(400, "invalid_request", "Send vp_token and state (application/x-www-form-urlencoded).")
        now = datetime.now(UTC)
        async with op.sessions() as s:
            row = await s.get(ConnectWalletRequest, state)
        if row is None or row.expires_at <= now or row.answered_at is not None:
            return _error(400, "invalid_request", "Unknown, expired or already answered state.")
        try:
            account_id, error = await verifier.verify(row, vp_token), None
        except (sdjwt.SdJwtError, ValueError) as exc:
            account_id, error = None, str(exc)[:300]
        async with op.sessions() as s, s.begin():
            taken = await s.execute(update(ConnectWalletRequest).where(
                ConnectWalletRequest.state == state, ConnectWalletRequest.answered_at.is_(None)
            ).values(answered_at=now, account_id=account_id, error=error))
        if taken.rowcount != 1:
            return _error(400, "invalid_request", "Already answered.")
        if error:
            return _error(400, "invalid_request", f"The presentation is refused: {error}")
        return JSONResponse({"redirect_uri": f"{op.issuer}/wallet/complete?{urlencode({'state': state})}"},
                            headers={"Cache-Control": "no-store"})

    @app.get("/wallet/status", summary="Poll a wallet login: pending, done (with next) or failed")
    async def wallet_status(request: Request) -> Response:
        state = request.query_params.get("state") or ""
        async with op.sessions() as s:
            row = await s.get(ConnectWalletRequest, state) if state else None
        cookie = request.cookies.get(COOKIE) or ""
        if row is None or row.browser_hash != sha256(cookie):
            return _error(404, "not_found", "No wallet login under way in this browser for that state.")
        if row.answered_at is None:
            status = "expired" if row.expires_at <= datetime.now(UTC) else "pending"
            return JSONResponse({"status": status}, headers={"Cache-Control": "no-store"})
        if row.error:
            return JSONResponse({"status": "failed", "error": row.error}, headers={"Cache-Control": "no-store"})
        return JSONResponse({"status": "done", "next": f"{op.issuer}/wallet/complete?{urlencode({'state': state})}"},
                            headers={"Cache-Control": "no-store"})

    @app.get("/wallet/complete", summary="Finish a wallet login in the browser that started it")
    async def wallet_complete(request: Request) -> Response:
        state = request.query_params.get("state") or ""
        lang = lang_of(request, {})
        cookie = request.cookies.get(COOKIE) or ""
        now = datetime.now(UTC)
        async with op.sessions() as s, s.begin():
            row = await s.get(ConnectWalletRequest, state) if state else None
            if row is None or row.browser_hash != sha256(cookie):
                return html(pages.error_page(lang, "invalid_request", "No wallet login under way in this browser."),
                            400)
            if row.answered_at is None:
                return html(pages.message_page(lang, "login_title", TEXT[lang]["pending"]), 409)
            if row.error or row.account_id is None:
                return html(pages.error_page(lang, "access_denied", row.error or "refused"), 400)
            taken = await s.execute(update(ConnectWalletRequest).where(
                ConnectWalletRequest.state == state, ConnectWalletRequest.used_at.is_(None)).values(used_at=now))
            if taken.rowcount != 1:
                return html(pages.error_page(lang, "invalid_request", "This wallet login was already used."), 400)
            account = await s.get(ConnectAccount, row.account_id)
            params = dict(row.params)
        response = await signed_in(account, ACR_WALLET, ["vc"], params)
        response.delete_cookie(COOKIE, path="/wallet")
        return response

    return verifier
