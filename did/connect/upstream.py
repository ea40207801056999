"""Brokering an upstream OpenID Provider (FranceConnect): Martinique Connect as its relying party.

Does what FranceConnect asks of a service provider (identity.md §1.6): code flow with a random
`state` and `nonce` (and PKCE, which FC ignores but our own OP requires), the code exchanged with
authlib's client, the ID token verified with jwcrypto against the upstream JWKS (signature, `iss`,
`aud`, `exp`, `nonce`), UserInfo read (JSON or a signed JWT, verified). The upstream `sub` is
linked to a local account (created on first login from the pivot identity claims, with no
password); the session's `acr` is the upstream's (`eidas1` at FranceConnect).

The pending login (state, nonce, PKCE verifier, the original authorize parameters) travels in a
cookie sealed with XSalsa20-Poly1305 under a key derived from the server secret: no table needed.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
import uuid
from typing import Any

import httpx
import nacl.encoding
import nacl.exceptions
import nacl.secret
from jwcrypto import jwk, jwt
from sqlalchemy import select

from did.connect.keys import derive
from did.connect.oauth import sha256
from did.connect.settings import ConnectSettings
from did.connect.tables import ConnectAccount, ConnectUpstreamLink

COOKIE = "mq_upstream"
TTL = 600


class UpstreamError(Exception):
    pass


class Upstream:
    def __init__(self, settings: ConnectSettings, secret: bytes, callback_url: str) -> None:
        self.settings = settings
        self.issuer = (settings.connect_upstream_issuer or "").rstrip("/")
        self.callback_url = callback_url
        self._box = nacl.secret.SecretBox(derive(secret, "mq-upstream"))
        self._meta: dict[str, Any] | None = None
        self._jwks: jwk.JWKSet | None = None

    async def metadata(self, http: httpx.AsyncClient) -> dict[str, Any]:
        if self._meta is None:
            answer = await http.get(f"{self.issuer}/.well-known/openid-configuration")
            answer.raise_for_status()
            meta = answer.json()
            if meta.get("issuer") != self.issuer:
                raise UpstreamError("the upstream discovery document names another issuer")
            self._meta = meta
        return self._meta

    async def keys(self, http: httpx.AsyncClient, *, refresh: bool = False) -> jwk.JWKSet:
        if self._jwks is None or refresh:
            answer = await http.get((await self.metadata(http))["jwks_uri"])
            answer.raise_for_status()
            self._jwks = jwk.JWKSet.from_json(answer.text)
        return self._jwks

    def seal(self, data: dict[str, Any]) -> str:
        return self._box.encrypt(json.dumps(data).encode(), encoder=nacl.encoding.URLSafeBase64Encoder).decode()

    def unseal(self, value: str | None) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            data = json.loads(self._box.decrypt(value.encode(), encoder=nacl.encoding.URLSafeBase64Encoder))
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return None
        return data if data.get("exp", 0) > time.time() else None

    async def start(self, http: httpx.AsyncClient, params: dict[str, str]) -> tuple[str, str]:
        """The upstream authorize URL and the sealed cookie value to set."""
        from authlib.integrations.httpx_client import AsyncOAuth2Client  # deferred: authlib's httpx shim warns

        meta = await self.metadata(http)
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        client = AsyncOAuth2Client(self.settings.connect_upstream_client_id, scope=self.settings.connect_upstream_scope,
                                   redirect_uri=self.callback_url, code_challenge_method="S256")
        extra = {"acr_values": self.settings.connect_upstream_acr_values} if self.settings.connect_upstream_acr_values else {}
        url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce,
                                                 code_verifier=verifier, **extra)
        await client.aclose()
        return url, self.seal({"state": state, "nonce": nonce, "verifier": verifier, "params": params,
                               "exp": time.time() + TTL})

    async def finish(self, http: httpx.AsyncClient, pending: dict[str, Any], query: dict[str, str]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check the callback, exchange the code, verify the ID token; returns (id token claims, userinfo)."""
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        if not hmac.compare_digest(pending["state"].encode(), (query.get("state") or "").encode()):
            raise UpstreamError("state mismatch")
        if "iss" in query and query["iss"] != self.issuer:
            raise UpstreamError("the response names another issuer (RFC 9207)")
        if query.get("error"):
            raise UpstreamError(f"upstream refused: {query['error']}")
        if not query.get("code"):
            raise UpstreamError("no code in the callback")
        meta = await self.metadata(http)
        async with AsyncOAuth2Client(self.settings.connect_upstream_client_id,
                                     self.settings.connect_upstream_client_secret,
                                     token_endpoint_auth_method="client_secret_basic",
                                     redirect_uri=self.callback_url, timeout=10) as client:
            try:
                token = await client.fetch_token(meta["token_endpoint"], code=query["code"],
                                                 code_verifier=pending["verifier"])
            except Exception as exc:  # noqa: BLE001 - authlib raises OAuthError and httpx errors
                raise UpstreamError(f"the code exchange failed: {type(exc).__name__}") from None
        claims = await self.verify(http, token.get("id_token", ""), check={
            "iss": self.issuer, "aud": self.settings.connect_upstream_client_id, "exp": None})
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), pending["nonce"].encode()):
            raise UpstreamError("nonce mismatch")
        info: dict[str, Any] = {}
        if meta.get("userinfo_endpoint"):
            answer = await http.get(meta["userinfo_endpoint"],
                                    headers={"Authorization": f"Bearer {token['access_token']}"})
            if answer.status_code == 200:
                if answer.headers.get("content-type", "").startswith("application/jwt"):
                    info = await self.verify(http, answer.text, check={"iss": self.issuer})
                else:
                    info = answer.json()
            if info.get("sub") != claims["sub"]:
                info = {}
        return claims, info

    async def verify(self, http: httpx.AsyncClient, token: str, *, check: dict[str, Any]) -> dict[str, Any]:
        for refresh in (False, True):  # FC: on an unknown kid, fetch the JWKS again before failing
            try:
                parsed = jwt.JWT(jwt=token, key=await self.keys(http, refresh=refresh), check_claims=check,
                                 algs=["ES256", "RS256"])
                return json.loads(parsed.claims)
            except Exception as exc:  # noqa: BLE001 - jwcrypto raises many types
                last = exc
        raise UpstreamError(f"the upstream token does not verify: {type(last).__name__}")

    async def account(self, sessions: Any, claims: dict[str, Any], info: dict[str, Any]) -> ConnectAccount:
        """The local account linked to this upstream identity, created on its first login."""
        async with sessions() as s, s.begin():
            link = (await s.execute(select(ConnectUpstreamLink).where(
                ConnectUpstreamLink.issuer == self.issuer, ConnectUpstreamLink.upstream_sub == claims["sub"]
            ))).scalar_one_or_none()
            if link is not None:
                return await s.get(ConnectAccount, link.account_id)
            account = ConnectAccount(
                id=str(uuid.uuid4()), username="up-" + sha256(f"{self.issuer}\0{claims['sub']}")[:24],
                password_hash="!upstream-only", given_name=info.get("given_name"),
                family_name=info.get("family_name"), birthdate=info.get("birthdate"))
            s.add(account)
            await s.flush()
            s.add(ConnectUpstreamLink(issuer=self.issuer, upstream_sub=claims["sub"], account_id=account.id))
            return account
