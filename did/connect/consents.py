"""Consent records: one per release of claims (an ID token + access token to a client, a credential to
the citizen's wallet); the citizen lists them and revokes them (`/account/consents`).

Revoking a client's record revokes that client's access tokens for the account, forgets the consent in
the account's open sessions (the next sign-in asks again) and sends the client a back-channel logout
token for each such session. Revoking a wallet issuance revokes the credential (its bit in `/status/1`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select, update

from did.connect import pages
from did.connect.keys import pairwise_sub
from did.connect.tables import (
    ConnectAccessToken,
    ConnectClient,
    ConnectConsent,
    ConnectIssuedCredential,
    ConnectSession,
)

log = logging.getLogger("lakou.connect")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SIGN_IN_PURPOSE = "sign-in"
SCOPE_CLAIMS = {"openid": ["sub"], "profile": ["given_name", "family_name", "birthdate"], "email": ["email"],
                "mq_residence": ["commune_insee"]}

TEXT = {
    "fr": {"title": "Mes consentements", "none": "Aucun partage enregistré.", "revoke": "Révoquer",
           "revoked": "révoqué le {at}", "wallet": "Mon portefeuille (attestation)", "claims": "Données",
           "date": "Date", "to": "Destinataire", "purpose": "Finalité"},
    "en": {"title": "My consents", "none": "No release recorded.", "revoke": "Revoke",
           "revoked": "revoked on {at}", "wallet": "My wallet (credential)", "claims": "Data",
           "date": "Date", "to": "Recipient", "purpose": "Purpose"},
    "es": {"title": "Mis consentimientos", "none": "Ningún intercambio registrado.", "revoke": "Revocar",
           "revoked": "revocado el {at}", "wallet": "Mi cartera (credencial)", "claims": "Datos",
           "date": "Fecha", "to": "Destinatario", "purpose": "Finalidad"},
    "de": {"title": "Meine Einwilligungen", "none": "Keine Freigabe verzeichnet.", "revoke": "Widerrufen",
           "revoked": "widerrufen am {at}", "wallet": "Meine Wallet (Nachweis)", "claims": "Daten",
           "date": "Datum", "to": "Empfänger", "purpose": "Zweck"},
}


def claims_of(scope: str) -> list[str]:
    return [c for s in scope.split() for c in SCOPE_CLAIMS.get(s, [])]


def sign_in_record(account_id: str, client_id: str, scope: str) -> ConnectConsent:
    return ConnectConsent(account_id=account_id, client_id=client_id, claims=claims_of(scope),
                          purpose=SIGN_IN_PURPOSE, created_at=datetime.now(UTC))


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _json(row: ConnectConsent) -> dict[str, Any]:
    return {"id": row.id, "client_id": row.client_id, "recipient": row.client_id or "wallet issuance",
            "claims": list(row.claims), "purpose": row.purpose, "created_at": _iso(row.created_at),
            "revoked_at": _iso(row.revoked_at)}


def register(app: FastAPI, op: Any, *, browser_session: Any, csrf_token: Any, set_csrf: Any, csrf_ok: Any,
             lang_of: Any, html: Any, sign: Any, read_form: Any) -> None:

    async def rows_for(account_id: str) -> list[ConnectConsent]:
        async with op.sessions() as s:
            return list((await s.execute(select(ConnectConsent).where(ConnectConsent.account_id == account_id)
                                         .order_by(ConnectConsent.id.desc()).limit(500))).scalars())

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "") or request.query_params.get("format") == "json"

    @app.get("/account/consents", summary="The citizen's consent records (HTML, or JSON with Accept: application/json)")
    async def list_consents(request: Request) -> Response:
        lang = lang_of(request, dict(request.query_params))
        t = TEXT[lang]
        found = await browser_session(request)
        if found is None:
            if wants_json(request):
                return JSONResponse({"error": "login_required", "error_description": "Sign in first."}, 401)
            return html(pages.error_page(lang, "login_required", "Sign in to Martinique Connect first."), 401)
        rows = await rows_for(found[1].id)
        token, fresh = csrf_token(request)
        if wants_json(request):
            return set_csrf(JSONResponse({"consents": [_json(r) for r in rows], "csrf": token},
                                         headers={"Cache-Control": "no-store"}), token, fresh)
        esc = pages.escape
        items = []
        for r in rows:
            who = esc(r.client_id) if r.client_id else esc(t["wallet"])
            state = (f"<span class=\"revoked\">{esc(t['revoked'].format(at=_iso(r.revoked_at)))}</span>"
                     if r.revoked_at else
                     f'<form method="post" action="consents/{r.id}/revoke"><input type="hidden" name="csrf" '
                     f'value="{esc(token)}"><button type="submit">{esc(t["revoke"])}</button></form>')
            items.append(f"<tr><td>{esc(_iso(r.created_at) or '')}</td><td>{who}</td><td>{esc(r.purpose)}</td>"
                         f"<td>{esc(', '.join(r.claims))}</td><td>{state}</td></tr>")
        body = (f"<table><thead><tr><th>{esc(t['date'])}</th><th>{esc(t['to'])}</th><th>{esc(t['purpose'])}</th>"
                f"<th>{esc(t['claims'])}</th><th></th></tr></thead><tbody>{''.join(items)}</tbody></table>"
                if items else f"<p>{esc(t['none'])}</p>")
        return set_csrf(html(pages._page(lang, t["title"], body)), token, fresh)

    @app.post("/account/consents/{consent_id}/revoke", summary="Revoke a consent record (CSRF: form field or "
              "X-CSRF-Token header)")
    async def revoke(request: Request, consent_id: int) -> Response:
        as_json = wants_json(request) or "x-csrf-token" in request.headers
        form = dict(await read_form(request))
        found = await browser_session(request)
        if found is None:
            return JSONResponse({"error": "login_required", "error_description": "Sign in first."}, 401)
        if not csrf_ok(request, {"csrf": request.headers.get("x-csrf-token") or form.get("csrf") or ""}):
            return JSONResponse({"error": "invalid_request", "error_description": "Missing or wrong CSRF token."},
                                403)
        account = found[1]
        now = datetime.now(UTC)
        async with op.sessions() as s, s.begin():
            row = await s.get(ConnectConsent, consent_id)
            if row is None or row.account_id != account.id:
                return JSONResponse({"error": "not_found", "error_description": "No such consent record."}, 404)
            already = row.revoked_at is not None
            if not already:
                row.revoked_at = now
                if row.credential_id is not None:
                    await s.execute(update(ConnectIssuedCredential).where(
                        ConnectIssuedCredential.id == row.credential_id,
                        ConnectIssuedCredential.revoked_at.is_(None)).values(revoked_at=now))
            sessions: list[ConnectSession] = []
            client_row = None
            if row.client_id and not already:
                await s.execute(update(ConnectAccessToken).where(
                    ConnectAccessToken.account_id == account.id, ConnectAccessToken.client_id == row.client_id,
                    ConnectAccessToken.revoked_at.is_(None)).values(revoked_at=now))
                client_row = await s.get(ConnectClient, row.client_id)
                for session in (await s.execute(select(ConnectSession).where(
                        ConnectSession.account_id == account.id, ConnectSession.ended_at.is_(None)))).scalars():
                    if row.client_id in (session.clients or []) or row.client_id in (session.consents or {}):
                        session.clients = [c for c in session.clients if c != row.client_id]
                        session.consents = {k: v for k, v in session.consents.items() if k != row.client_id}
                        sessions.append(session)
            result = _json(row)
        if client_row is not None and client_row.backchannel_logout_uri:
            await asyncio.gather(*(send_logout(client_row, session.sid, account.id) for session in sessions))
        if as_json:
            return JSONResponse(result, headers={"Cache-Control": "no-store"})
        return RedirectResponse(f"{op.issuer}/account/consents", status_code=303)

    async def send_logout(row: ConnectClient, sid: str, account_id: str) -> None:
        now = int(time.time())
        token = await sign({
            "iss": op.issuer, "aud": row.client_id, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4()),
            "sub": pairwise_sub(op.secret, row.sector_identifier, account_id), "sid": sid,
            "events": {BACKCHANNEL_EVENT: {}},
        }, typ="logout+jwt")
        try:
            answer = await op.http.post(row.backchannel_logout_uri, data={"logout_token": token})
            if answer.status_code >= 400:
                log.warning("back-channel logout (consent revoked) to client %s: HTTP %s", row.client_id,
                            answer.status_code)
        except httpx.HTTPError as exc:
            log.warning("back-channel logout (consent revoked) to client %s failed: %s", row.client_id,
                        type(exc).__name__)


__all__ = ["register", "sign_in_record", "claims_of"]
