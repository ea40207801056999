"""A relying party of Martinique Connect (or any OpenID Provider with the same profile).

What a Lakou service needs to log people in through Martinique Connect (specs/martinique-connect.md):
the authorization code flow with PKCE S256, `state` and `nonce`, the RFC 9207 `iss` check, the code
exchanged with authlib's `AsyncOAuth2Client`, the ID token verified with jwcrypto against the
provider's JWKS (signature, iss, aud, azp, exp, nonce, at_hash when present).

Login state without a table: `authorization_url(payload)` returns a URL whose `state` is an
encrypted, expiring value (JWE, `dir` + A256GCM, key derived with HKDF from the caller's secret and
label) holding the caller's payload, the PKCE verifier, the nonce and a random value. Only this
service can read or forge it; the PKCE verifier stays secret even though the state travels in URLs.
A replayed callback fails at the provider (a code is single use); a state older than `ttl` seconds
is refused. The label keeps two services (or two uses) from accepting each other's states even if
they were given the same secret.

Errors are `LoginError`s with a short English detail: never a token, a code or a claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto import jwe, jwk, jwt

LOGIN_TTL_SECONDS = 600
METADATA_TTL_SECONDS = 300
ID_TOKEN_ALGS = ["ES256", "RS256", "EdDSA"]
# Keys of the sealed state that belong to this module; the caller's payload must not use them.
_RESERVED = frozenset({"v", "n", "r", "exp"})


class LoginError(Exception):
    """A refused login step: `status` and a short English `detail` (never a token or a claim)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg(token: str) -> str:
    header = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("alg", ""))


class RelyingParty:
    """One client of one issuer: `authorization_url` starts a login, `complete` checks the callback."""

    def __init__(self, *, issuer: str, client_id: str, client_secret: str, redirect_uri: str,
                 state_secret: str, state_label: bytes, http: httpx.AsyncClient | None = None,
                 ttl: int = LOGIN_TTL_SECONDS) -> None:
        if not (issuer and client_id and client_secret and redirect_uri and state_secret):
            raise ValueError("issuer, client id, client secret, redirect URI and state secret are all required")
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.ttl = ttl
        self._http = http
        self._meta: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, jwk.JWKSet] | None = None
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=state_label, info=state_label).derive(
            state_secret.encode())
        self._state_key = jwk.JWK(kty="oct", k=_b64(key))

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def metadata(self) -> dict[str, Any]:
        if self._meta is None or self._meta[0] < time.monotonic():
            try:
                answer = await self.http().get(f"{self.issuer}/.well-known/openid-configuration")
                meta = answer.json() if answer.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                meta = None
            if not isinstance(meta, dict) or str(meta.get("issuer", "")).rstrip("/") != self.issuer:
                raise LoginError(502, "login_provider_unavailable",
                                 "Martinique Connect's discovery document could not be read or names another issuer")
            self._meta = (time.monotonic() + METADATA_TTL_SECONDS, meta)
        return self._meta[1]

    async def jwks(self, *, refresh: bool = False) -> jwk.JWKSet:
        if refresh or self._keys is None or self._keys[0] < time.monotonic():
            meta = await self.metadata()
            try:
                answer = await self.http().get(meta["jwks_uri"])
                keys = jwk.JWKSet.from_json(answer.text)
            except Exception:  # noqa: BLE001 - httpx and jwcrypto errors alike
                raise LoginError(502, "login_provider_unavailable", "Martinique Connect's JWKS could not be read") from None
            self._keys = (time.monotonic() + METADATA_TTL_SECONDS, keys)
        return self._keys[1]

    # -------------------------------------------------------------- state

    def seal(self, payload: dict[str, Any]) -> str:
        token = jwe.JWE(json.dumps(payload).encode(), protected={"alg": "dir", "enc": "A256GCM"})
        token.add_recipient(self._state_key)
        return token.serialize(compact=True)

    def open(self, state: str) -> dict[str, Any]:
        """The sealed payload of a `state`, or LoginError 400 `invalid_state` (forged, foreign, expired)."""
        try:
            token = jwe.JWE()
            token.deserialize(state, key=self._state_key)
            payload = json.loads(token.payload)
        except Exception:  # noqa: BLE001 - a forged or foreign state
            raise LoginError(400, "invalid_state", "unknown or tampered state: start the login again") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) or payload["exp"] < time.time():
            raise LoginError(400, "invalid_state", "the login took too long: start it again")
        return payload

    # -------------------------------------------------------------- the two steps

    async def authorization_url(self, payload: dict[str, Any], *, ui_locales: str | None = None,
                                **extra: str) -> str:
        """The URL to send the browser to; `payload` comes back from `complete` once the login is done."""
        if _RESERVED & payload.keys():
            raise ValueError(f"payload keys {sorted(_RESERVED & payload.keys())} are reserved")
        meta = await self.metadata()
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(32)
        state = self.seal({**payload, "v": verifier, "n": nonce, "r": secrets.token_urlsafe(16),
                           "exp": int(time.time()) + self.ttl})
        params: dict[str, str] = {**extra, **({"ui_locales": ui_locales} if ui_locales else {})}
        client = AsyncOAuth2Client(self.client_id, scope="openid", redirect_uri=self.redirect_uri,
                                   code_challenge_method="S256")
        url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=state, nonce=nonce,
                                                 code_verifier=verifier, **params)
        await client.aclose()
        return url

    async def complete(self, query: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Checks the callback (`state`, `iss`), exchanges the code, verifies the ID token; returns the
        payload given to `authorization_url` and the ID token's claims."""
        pending = self.open(query.get("state") or "")
        if query.get("iss") is not None and query["iss"].rstrip("/") != self.issuer:
            raise LoginError(400, "wrong_issuer", "the response names another issuer (RFC 9207)")
        if query.get("error"):
            raise LoginError(400, "login_refused", f"Martinique Connect answered {query['error'][:64]}")
        if not query.get("code"):
            raise LoginError(400, "invalid_request", "no code in the callback")
        meta = await self.metadata()
        async with AsyncOAuth2Client(self.client_id, self.client_secret,
                                     token_endpoint_auth_method="client_secret_basic",
                                     redirect_uri=self.redirect_uri, timeout=10) as client:
            try:
                token = await client.fetch_token(meta["token_endpoint"], code=query["code"],
                                                 code_verifier=pending["v"])
            except Exception as exc:  # noqa: BLE001 - authlib's OAuthError, httpx errors
                error = getattr(exc, "error", None) or type(exc).__name__
                raise LoginError(400, "login_failed",
                                 f"the code exchange was refused ({error}): the code is used or expired; "
                                 "start the login again") from None
        claims = await self.verify_id_token(str(token.get("id_token") or ""), nonce=pending["n"],
                                            access_token=token.get("access_token"))
        return {k: v for k, v in pending.items() if k not in _RESERVED}, claims

    async def verify_id_token(self, id_token: str, *, nonce: str, access_token: str | None) -> dict[str, Any]:
        check = {"iss": self.issuer, "aud": self.client_id, "exp": None, "sub": None}
        claims: dict[str, Any] | None = None
        for refresh in (False, True):  # an unknown kid: fetch the JWKS again once (key rotation)
            try:
                parsed = jwt.JWT(jwt=id_token, key=await self.jwks(refresh=refresh), check_claims=check,
                                 algs=ID_TOKEN_ALGS, expected_type="JWS")
                claims = json.loads(parsed.claims)
                break
            except LoginError:
                raise
            except Exception:  # noqa: BLE001 - jwcrypto raises many types; never echo the token
                continue
        if claims is None:
            raise LoginError(400, "invalid_id_token", "the ID token does not verify (signature, issuer, "
                             "audience or expiry)")
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise LoginError(400, "invalid_id_token", "the ID token is for several audiences without azp")
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise LoginError(400, "invalid_id_token", "the ID token's nonce does not match this login")
        if "at_hash" in claims and access_token:
            # OIDC Core 3.1.3.6: the left half of the hash the signing alg uses (SHA-512 for EdDSA/Ed25519).
            digest = {"ES256": hashlib.sha256, "RS256": hashlib.sha256}.get(_alg(id_token), hashlib.sha512)(
                access_token.encode()).digest()
            if not hmac.compare_digest(_b64(digest[: len(digest) // 2]).encode(), str(claims["at_hash"]).encode()):
                raise LoginError(400, "invalid_id_token", "the ID token's at_hash does not match the access token")
        if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise LoginError(400, "invalid_id_token", "the ID token has no usable subject")
        return claims


__all__ = ["ID_TOKEN_ALGS", "LOGIN_TTL_SECONDS", "LoginError", "RelyingParty"]
