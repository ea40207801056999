"""SSO → credential: OpenID4VCI 1.0 issuance of a `MartiniqueResidentCredential` (pre-authorized code).

A signed-in citizen asks for an offer (`GET /wallet/offer` page, `POST /api/wallet/offer` JSON);
the wallet reads the issuer metadata (`/.well-known/openid-credential-issuer`), redeems the
pre-authorized code at `/token` (this module's dedicated handler: authlib has no pre-authorized code
grant), fetches a `c_nonce` (`POST /nonce`) and sends a key proof to `POST /credential`. The
credential is an SD-JWT VC (`did.sdjwt.issue`) signed by the provider's credential issuer key, an
Ed25519 key derived from the server secret (so it is protected exactly like the secret that seals
the OIDC signing keys), published as a did:jwk.

Status: we have no IETF Token Status List; each credential's `status` holds a W3C
`BitstringStatusListEntry` into the list served (signed, Data Integrity eddsa-jcs-2022) at `/status/1`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jwcrypto import jwk, jws
from sqlalchemy import func, select, update

from did import methods, sdjwt, vc
from did.connect import pages
from did.connect.keys import derive
from did.connect.oauth import sha256
from did.connect.tables import ConnectAccount, ConnectConsent, ConnectCredentialOffer, ConnectIssuedCredential
from did.keys import ed25519_from_seed
from did.status import BitstringStatusList, status_entry, status_list_credential

VCT = "MartiniqueResidentCredential"
PRE_AUTH_GRANT = "urn:ietf:params:oauth:grant-type:pre-authorized_code"
PROOF_TYP = "openid4vci-proof+jwt"
PROOF_ALGS = ("ES256", "EdDSA")
OFFER_SECONDS = 300
TOKEN_SECONDS = 300
NONCE_SECONDS = 300
LIFETIME = 365 * 24 * 3600
STATUS_LIST_SIZE = 131072  # the W3C minimum (16 KB); the list grows by this many entries
PURPOSE = "wallet issuance"
CLAIMS = ["commune_insee", "age_over_18", "given_name", "family_name", "birthdate"]

TEXT = {
    "fr": {"title": "Ajouter mon attestation de résidence au portefeuille",
           "intro": "Ouvrez ce lien avec votre portefeuille (ou scannez-le) dans les 5 minutes :",
           "tx": "Code à saisir dans le portefeuille : {code}", "open": "Ouvrir dans le portefeuille",
           "login": "Connectez-vous d'abord à Martinique Connect."},
    "en": {"title": "Add my residence credential to my wallet",
           "intro": "Open this link with your wallet (or scan it) within 5 minutes:",
           "tx": "Code to type in the wallet: {code}", "open": "Open in the wallet",
           "login": "Sign in to Martinique Connect first."},
    "es": {"title": "Añadir mi credencial de residencia a la cartera",
           "intro": "Abra este enlace con su cartera (o escanéelo) en los próximos 5 minutos:",
           "tx": "Código para introducir en la cartera: {code}", "open": "Abrir en la cartera",
           "login": "Inicie sesión primero en Martinique Connect."},
    "de": {"title": "Meinen Wohnsitznachweis zur Wallet hinzufügen",
           "intro": "Öffnen Sie diesen Link innerhalb von 5 Minuten mit Ihrer Wallet (oder scannen Sie ihn):",
           "tx": "In der Wallet einzugebender Code: {code}", "open": "In der Wallet öffnen",
           "login": "Melden Sie sich zuerst bei Martinique Connect an."},
}


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def error(status: int, code: str, description: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def age_over_18(birthdate: str | None, today: datetime | None = None) -> bool:
    if not birthdate:
        return False
    try:
        year, month, day = (int(x) for x in birthdate.split("-"))
    except ValueError:
        return False
    today = today or datetime.now(UTC)
    return (today.year - year - ((today.month, today.day) < (month, day))) >= 18


class Issuer:
    """The credential issuer side of the provider (`op` is did.connect.app.Provider)."""

    def __init__(self, op: Any) -> None:
        self.op = op
        self.key = ed25519_from_seed(derive(op.secret, "credential-issuer"))
        self.public = jwk.JWK(**self.key.export_public(as_dict=True))
        self.did = methods.did_jwk_from_jwk(self.public)
        self.kid = f"{self.did}#0"
        self.nonce_key = derive(op.secret, "openid4vci-c_nonce")

    @property
    def url(self) -> str:
        return self.op.issuer

    @property
    def status_list_url(self) -> str:
        return f"{self.op.issuer}/status/1"

    def metadata(self) -> dict[str, Any]:
        i = self.url
        return {
            "credential_issuer": i,
            "authorization_servers": [i],
            "credential_endpoint": f"{i}/credential",
            "nonce_endpoint": f"{i}/nonce",
            "issuer_did": self.did,  # the SD-JWT VCs' `iss` (did:jwk, resolvable offline)
            "display": [{"name": "Martinique Connect", "locale": lang} for lang in pages.LANGS],
            "credential_configurations_supported": {
                VCT: {
                    "format": "dc+sd-jwt",
                    "vct": VCT,
                    "scope": VCT,
                    "cryptographic_binding_methods_supported": ["jwk"],
                    "credential_signing_alg_values_supported": ["EdDSA"],
                    "proof_types_supported": {"jwt": {"proof_signing_alg_values_supported": list(PROOF_ALGS)}},
                    "credential_metadata": {
                        "display": [{"name": TEXT[lang]["title"], "locale": lang} for lang in pages.LANGS],
                        "claims": [{"path": [name]} for name in CLAIMS],
                    },
                },
            },
        }

    # ---- c_nonce: stateless, HMAC-sealed issue time (no table); valid NONCE_SECONDS

    def new_nonce(self, now: int | None = None) -> str:
        body = f"{int(now if now is not None else time.time())}.{secrets.token_urlsafe(12)}"
        mac = hmac.new(self.nonce_key, body.encode(), hashlib.sha256).digest()[:16]
        return f"{body}.{_b64u(mac)}"

    def nonce_ok(self, nonce: Any) -> bool:
        if not isinstance(nonce, str) or nonce.count(".") != 2:
            return False
        body, _, mac = nonce.rpartition(".")
        good = _b64u(hmac.new(self.nonce_key, body.encode(), hashlib.sha256).digest()[:16])
        if not hmac.compare_digest(good, mac):
            return False
        issued = body.split(".", 1)[0]
        return issued.isdigit() and 0 <= time.time() - int(issued) <= NONCE_SECONDS

    # ---- offers

    async def create_offer(self, account: ConnectAccount, *, tx_code: bool = False) -> dict[str, Any]:
        code = secrets.token_urlsafe(32)
        pin = f"{secrets.randbelow(10**6):06d}" if tx_code else None
        now = datetime.now(UTC)
        await self.op.save([ConnectCredentialOffer(
            code_hash=sha256(code), account_id=account.id, tx_code_hash=sha256(pin) if pin else None,
            created_at=now, expires_at=now + timedelta(seconds=OFFER_SECONDS))])
        grant: dict[str, Any] = {"pre-authorized_code": code}
        if pin:
            grant["tx_code"] = {"input_mode": "numeric", "length": 6,
                                "description": "Code shown on the Martinique Connect page"}
        offer = {"credential_issuer": self.url, "credential_configuration_ids": [VCT],
                 "grants": {PRE_AUTH_GRANT: grant}}
        link = "openid-credential-offer://?credential_offer=" + quote(json.dumps(offer, separators=(",", ":")), safe="")
        return {"credential_offer": offer, "credential_offer_uri": link, "tx_code": pin,
                "expires_in": OFFER_SECONDS}

    # ---- token endpoint, pre-authorized code grant

    async def token(self, data: dict[str, str]) -> JSONResponse:
        code = data.get("pre-authorized_code")
        if not code:
            return error(400, "invalid_request", "Missing 'pre-authorized_code'.")
        now = datetime.now(UTC)
        digest = sha256(code)
        token = secrets.token_urlsafe(32)
        async with self.op.sessions() as s, s.begin():
            row = await s.get(ConnectCredentialOffer, digest)
            if row is None or row.consumed_at is not None or row.expires_at <= now:
                return error(400, "invalid_grant", "The pre-authorized code is unknown, used or expired.")
            if row.tx_code_hash is not None:
                tx = data.get("tx_code")
                if not tx:
                    return error(400, "invalid_request", "This offer requires 'tx_code'.")
                if not hmac.compare_digest(row.tx_code_hash, sha256(tx)):
                    # One try: a wrong tx_code burns the offer (6 digits must not be guessable).
                    await s.execute(update(ConnectCredentialOffer).where(
                        ConnectCredentialOffer.code_hash == digest).values(consumed_at=now))
                    return error(400, "invalid_grant", "Wrong tx_code; the offer is withdrawn.")
            taken = await s.execute(update(ConnectCredentialOffer).where(
                ConnectCredentialOffer.code_hash == digest, ConnectCredentialOffer.consumed_at.is_(None)
            ).values(consumed_at=now, token_hash=sha256(token),
                     token_expires_at=now + timedelta(seconds=TOKEN_SECONDS)))
            if taken.rowcount != 1:
                return error(400, "invalid_grant", "The pre-authorized code is unknown, used or expired.")
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                             "scope": VCT,
                             "authorization_details": [{"type": "openid_credential",
                                                        "credential_configuration_id": VCT,
                                                        "credential_identifiers": [VCT]}]},
                            headers={"Cache-Control": "no-store"})

    # ---- credential endpoint

    def check_proof(self, proof: Any) -> jwk.JWK | JSONResponse:
        if not isinstance(proof, str) or proof.count(".") != 2:
            return error(400, "invalid_proof", "The proof must be a compact JWT.")
        try:
            header = json.loads(_b64u_decode(proof.split(".")[0]))
            claims = json.loads(_b64u_decode(proof.split(".")[1]))
        except (ValueError, UnicodeDecodeError):
            return error(400, "invalid_proof", "The proof is not a JWT.")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return error(400, "invalid_proof", "The proof is not a JWT.")
        if header.get("typ") != PROOF_TYP:
            return error(400, "invalid_proof", f"The proof's typ must be {PROOF_TYP}.")
        if header.get("alg") not in PROOF_ALGS:
            return error(400, "invalid_proof", "The proof's alg must be ES256 or EdDSA.")
        raw = header.get("jwk")
        if not isinstance(raw, dict):
            return error(400, "invalid_proof", "The proof must carry the holder key in its 'jwk' header.")
        if "d" in raw or any(k in header for k in ("kid", "x5c")):
            return error(400, "invalid_proof", "The proof's key must be a public 'jwk' only.")
        try:
            key = jwk.JWK(**raw)
            token = jws.JWS()
            token.deserialize(proof)
            token.verify(key, alg=header["alg"])
        except Exception:  # noqa: BLE001 - jwcrypto raises many types for bad keys or signatures
            return error(400, "invalid_proof", "The proof's signature does not verify with its jwk.")
        if claims.get("aud") != self.url:
            return error(400, "invalid_proof", "The proof's aud must be the credential issuer identifier.")
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or abs(time.time() - iat) > NONCE_SECONDS:
            return error(400, "invalid_proof", "The proof's iat is missing or not recent.")
        if not self.nonce_ok(claims.get("nonce")):
            return error(400, "invalid_nonce", "The proof's nonce is missing, unknown or expired; get a new "
                         "one at the nonce endpoint.")
        return key

    async def credential(self, request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return error(401, "invalid_token", "Missing bearer access token.",
                         {"WWW-Authenticate": 'Bearer realm="martinique-connect"'})
        now = datetime.now(UTC)
        async with self.op.sessions() as s:
            offer = (await s.execute(select(ConnectCredentialOffer).where(
                ConnectCredentialOffer.token_hash == sha256(auth[7:].strip())))).scalar_one_or_none()
            if offer is None or offer.token_expires_at is None or offer.token_expires_at <= now:
                return error(401, "invalid_token", "The access token is unknown or expired.", challenge)
            account = await s.get(ConnectAccount, offer.account_id)
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return error(400, "invalid_credential_request", "The body must be a JSON object.")
        wanted = body.get("credential_configuration_id") or body.get("credential_identifier")
        if wanted != VCT:
            return error(400, "unknown_credential_configuration", f"Only {VCT} is offered.")
        proofs = body.get("proofs")
        if isinstance(proofs, dict) and isinstance(proofs.get("jwt"), list) and len(proofs["jwt"]) == 1:
            proof = proofs["jwt"][0]
        elif isinstance(body.get("proof"), dict) and body["proof"].get("proof_type") == "jwt":
            proof = body["proof"].get("jwt")  # the pre-1.0 drafts' single proof
        else:
            return error(400, "invalid_proof", "Send one key proof: {\"proofs\": {\"jwt\": [\"...\"]}}.")
        holder = self.check_proof(proof)
        if isinstance(holder, JSONResponse):
            return holder
        return JSONResponse({"credentials": [{"credential": await self.issue(account, holder)}]},
                            headers={"Cache-Control": "no-store"})

    async def issue(self, account: ConnectAccount, holder: jwk.JWK) -> str:
        now = datetime.now(UTC)
        async with self.op.sessions() as s, s.begin():
            row = ConnectIssuedCredential(account_id=account.id, vct=VCT, holder_thumbprint=holder.thumbprint(),
                                          issued_at=now, expires_at=now + timedelta(seconds=LIFETIME))
            s.add(row)
            await s.flush()
            index = int(row.id)  # its own bit in /status/1 (the list grows by 131072 entries)
            claims: dict[str, Any] = {
                "commune_insee": (account.commune or "").removeprefix("insee:") or None,
                "age_over_18": age_over_18(account.birthdate, now),
            }
            for name in ("given_name", "family_name", "birthdate"):
                if getattr(account, name):
                    claims[name] = sdjwt.SD(getattr(account, name))
            claims = {k: v for k, v in claims.items() if v is not None}
            s.add(ConnectConsent(account_id=account.id, client_id=None, credential_id=row.id, claims=sorted(
                k for k in claims), purpose=PURPOSE, created_at=now))
        return sdjwt.issue(claims, issuer_key=self.key, iss=self.did, kid=self.kid, vct=VCT,
                           holder_jwk=holder.export_public(as_dict=True), iat=int(now.timestamp()),
                           lifetime=LIFETIME,
                           status={"bitstring_status_list_entry": status_entry(self.status_list_url, index)})

    async def status_list(self) -> dict[str, Any]:
        async with self.op.sessions() as s:
            highest = (await s.execute(select(func.max(ConnectIssuedCredential.id)))).scalar() or 0
            bits = BitstringStatusList((int(highest) // STATUS_LIST_SIZE + 1) * STATUS_LIST_SIZE)
            for (ident,) in await s.execute(select(ConnectIssuedCredential.id).where(
                    ConnectIssuedCredential.revoked_at.is_not(None))):
                bits.set(int(ident))
        doc = status_list_credential(self.status_list_url, self.did, bits,
                                     valid_from=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return vc.add_proof(doc, self.key, self.kid)


def register(app: FastAPI, op: Any, *, browser_session: Any, csrf_token: Any, set_csrf: Any, csrf_ok: Any,
             lang_of: Any, html: Any) -> Issuer:
    issuer = Issuer(op)

    @app.get("/.well-known/openid-credential-issuer", summary="OpenID4VCI credential issuer metadata")
    async def issuer_metadata() -> JSONResponse:
        return JSONResponse(issuer.metadata(), headers={"Cache-Control": "public, max-age=300"})

    @app.post("/nonce", summary="OpenID4VCI nonce endpoint (a fresh c_nonce)")
    async def nonce() -> JSONResponse:
        return JSONResponse({"c_nonce": issuer.new_nonce()}, headers={"Cache-Control": "no-store"})

    @app.post("/credential", summary="OpenID4VCI credential endpoint (Bearer token, key proof)")
    async def credential(request: Request) -> JSONResponse:
        return await issuer.credential(request)

    @app.get("/status/1", summary="The W3C Bitstring Status List of issued credentials")
    async def status_list() -> JSONResponse:
        return JSONResponse(await issuer.status_list(), headers={"Cache-Control": "max-age=60"})

    @app.get("/wallet/offer", summary="Page: a credential offer for the signed-in citizen's wallet")
    async def offer_page(request: Request) -> Response:
        lang = lang_of(request, dict(request.query_params))
        t = TEXT[lang]
        found = await browser_session(request)
        if found is None:
            return html(pages._page(lang, t["title"], f"<p>{pages.escape(t['login'])}</p>"), status=401)
        made = await issuer.create_offer(found[1], tx_code=request.query_params.get("tx_code") == "1")
        link = pages.escape(made["credential_offer_uri"])
        body = (f"<p>{pages.escape(t['intro'])}</p><p><a class=\"offer\" href=\"{link}\">"
                f"{pages.escape(t['open'])}</a></p><pre class=\"offer-uri\">{link}</pre>")
        if made["tx_code"]:
            body += f"<p class=\"tx-code\">{pages.escape(t['tx'].format(code=made['tx_code']))}</p>"
        return html(pages._page(lang, t["title"], body))

    @app.get("/api/wallet/csrf", summary="JSON: the CSRF token for the citizen's JSON calls (same origin)")
    async def csrf_api(request: Request) -> Response:
        token, fresh = csrf_token(request)
        return set_csrf(JSONResponse({"csrf": token}, headers={"Cache-Control": "no-store"}), token, fresh)

    @app.post("/api/wallet/offer", summary="JSON: a credential offer (session cookie + CSRF header or field)")
    async def offer_api(request: Request) -> Response:
        found = await browser_session(request)
        if found is None:
            return error(401, "login_required", "Sign in to Martinique Connect first.")
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return error(400, "invalid_request", "The body must be a JSON object.")
        if not csrf_ok(request, {"csrf": request.headers.get("x-csrf-token") or str(body.get("csrf") or "")}):
            return error(403, "invalid_request", "Missing or wrong CSRF token (X-CSRF-Token header).")
        made = await issuer.create_offer(found[1], tx_code=bool(body.get("tx_code")))
        return JSONResponse(made, headers={"Cache-Control": "no-store"})

    return issuer
