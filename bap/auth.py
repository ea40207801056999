"""Citizen login at the BAP through Martinique Connect, and the citizen's pairwise DIDs.

The BAP is an OpenID Connect relying party of Martinique Connect (specs/martinique-connect.md):
authorization code flow with PKCE S256, `state` and `nonce`, the RFC 9207 `iss` check, the code
exchanged with authlib's `AsyncOAuth2Client`, the ID token verified with jwcrypto against the
provider's JWKS (signature, iss, aud, azp, exp, nonce, at_hash when present).

Login state: `POST /auth/login` returns an authorization URL whose `state` is an
encrypted, expiring value (did.connect.rp: JWE, `dir` + A256GCM, key derived with HKDF from
LAKOU_BAP_IDENTITY_SECRET, else from the client secret) holding the session id, the session's login
nonce, the PKCE verifier, the nonce, the `acr` the login must give (if any) and a random value.
Only the BAP can read or forge it; the PKCE verifier stays secret even though the state travels in
URLs. A replayed callback fails at the provider (a code is single use); a state older than
LOGIN_TTL_SECONDS is refused.

The callback does not log the session in (login CSRF: whoever completes the login in a browser is
not necessarily whoever started it; an attacker could start a login on their own session and have a
victim finish it). It hands that browser a login code instead: sealed the same way under another
label (a state is never a login code and a code never a state), valid LOGIN_CODE_TTL_SECONDS,
holding the session id, the login nonce, the account, `acr` and `auth_time`. The app that started
the login redeems it with its own bearer token (`POST /auth/complete`); a code for another session
is refused, and the login nonce on the session row makes it single use (bap.api.auth).

Login methods: `wallet` sends `acr_values=mq:wallet` (Martinique Connect then goes straight to its
OpenID4VP wallet login) and the callback refuses an ID token whose `acr` is not `mq:wallet`
(`acr_not_met`): the citizen app tells the citizen they signed in with their wallet, so it must be
true. `password` sends `acr_values=mq:local` as a preference only (the citizen may still pick
another way on the login page); no method: the citizen chooses.

Pairwise DIDs: for a logged-in session, `master = HMAC-SHA256(LAKOU_BAP_IDENTITY_SECRET,
"lakou/bap/pairwise-master/v1" || 0x00 || account id)` and the DID sent to a BPP is
`did.pairwise.pairwise_did(master, bpp subscriber id)`: stable for one citizen and one merchant,
different (and unlinkable without the secret) between merchants. Nothing is stored; the master
secret never leaves this module. Anonymous sessions send no DID (see `customer_did`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bap.settings import BapSettings
from did.connect.rp import LOGIN_TTL_SECONDS, LoginError, RelyingParty
from did.pairwise import pairwise_did

_STATE_LABEL = b"lakou/bap/login-state/v1"
_CODE_LABEL = b"lakou/bap/login-code/v1"
_MASTER_LABEL = b"lakou/bap/pairwise-master/v1\x00"
# Long enough for the browser to hand the code to the app, short enough that a code copied out of a
# browser history or a screenshot is useless.
LOGIN_CODE_TTL_SECONDS = 120
ACR_WALLET = "mq:wallet"
ACR_LOCAL = "mq:local"
# What each login method asks Martinique Connect for, and whether the answer must match it.
METHOD_ACR: dict[str, tuple[str, bool]] = {"wallet": (ACR_WALLET, True), "password": (ACR_LOCAL, False)}


@dataclass(frozen=True)
class Login:
    """A verified login, for the session `session_id` while its login nonce is still `nonce`."""

    session_id: int
    nonce: str
    account_id: str  # "<issuer> <sub>": two issuers never collide
    acr: str | None
    auth_time: int | None


def account_id(issuer: str, sub: str) -> str:
    return f"{issuer} {sub}"


def split_account(account: str) -> tuple[str, str]:
    issuer, _, sub = account.partition(" ")
    return issuer, sub


# ------------------------------------------------------------------ pairwise DIDs


def _master_secret(settings: BapSettings, account: str) -> bytes:
    secret = (settings.bap_identity_secret or "").encode()
    return hmac.new(secret, _MASTER_LABEL + account.encode(), hashlib.sha256).digest()


def customer_did(settings: BapSettings, account: str | None, bpp_id: str | None) -> str | None:
    """The citizen's pairwise DID for the BPP `bpp_id`, or None (anonymous session, no
    LAKOU_BAP_IDENTITY_SECRET, or no BPP). Anonymous sessions get none on purpose: a per-session DID
    would identify nothing the merchant can use and would only add a tracker."""
    if not account or not bpp_id or not settings.bap_identity_secret:
        return None
    return pairwise_did(_master_secret(settings, account), bpp_id)


# ------------------------------------------------------------------ the relying party


class ConnectLogin(RelyingParty):
    """The BAP as a relying party of one Martinique Connect issuer (discovery, JWKS, sealed state and
    ID token checks: did.connect.rp, shared with the BPP's merchant login), plus its login codes."""

    def __init__(self, settings: BapSettings, http: httpx.AsyncClient | None = None) -> None:
        assert settings.connect_configured()
        common: dict[str, Any] = {
            "issuer": str(settings.bap_connect_issuer), "client_id": str(settings.bap_connect_client_id),
            "client_secret": str(settings.bap_connect_client_secret),
            "redirect_uri": str(settings.bap_connect_redirect_uri),
            "state_secret": settings.bap_identity_secret or str(settings.bap_connect_client_secret)}
        super().__init__(**common, state_label=_STATE_LABEL, http=http, ttl=LOGIN_TTL_SECONDS)
        # Only its seal/open are used (never its network side): the same sealing as the state, with
        # a key of its own (another HKDF label) and a shorter life.
        self._codes = RelyingParty(**common, state_label=_CODE_LABEL, ttl=LOGIN_CODE_TTL_SECONDS)
        self.settings = settings

    # -------------------------------------------------------------- the login

    async def start(self, session_id: int, nonce: str, *, ui_locales: str | None = None,
                    method: str | None = None) -> str:
        """The authorization URL for the session `session_id` whose pending login is `nonce`;
        `method` is a key of METHOD_ACR or None."""
        acr, required = METHOD_ACR[method] if method else (None, False)
        payload: dict[str, Any] = {"sid": session_id, "ln": nonce}
        if required:
            payload["acr"] = acr  # checked against the ID token at the callback
        extra = {"acr_values": acr} if acr else {}
        return await self.authorization_url(payload, ui_locales=ui_locales, **extra)

    async def finish(self, query: dict[str, str]) -> Login:
        """Checks the callback (`state`, `iss`), exchanges the code, verifies the ID token and the `acr`."""
        pending, claims = await self.complete(query)
        if not isinstance(pending.get("sid"), int) or not isinstance(pending.get("ln"), str):
            raise LoginError(400, "invalid_state", "unknown or tampered state: start the login again")
        if pending.get("acr") and claims.get("acr") != pending["acr"]:
            # The code is spent and nothing is stored: the citizen starts again with the wallet.
            raise LoginError(400, "acr_not_met", f"this login asked for a {pending['acr']} sign-in and Martinique "
                             "Connect answered another one: start the login again and sign in with the wallet")
        # Stored on the session row: kept only when they fit its columns (a string of at most 64
        # characters; a Unix time a datetime can hold), never a 500 for an odd but signed token.
        acr, auth_time = claims.get("acr"), claims.get("auth_time")
        acr = acr if isinstance(acr, str) and 0 < len(acr) <= 64 else None
        auth_time = auth_time if isinstance(auth_time, int) and 0 < auth_time < 253402300800 else None
        return Login(session_id=pending["sid"], nonce=pending["ln"], account_id=account_id(self.issuer, claims["sub"]),
                     acr=acr, auth_time=auth_time)

    # -------------------------------------------------------------- login codes

    def login_code(self, login: Login) -> str:
        """The sealed, short-lived code the callback gives the browser for the app to redeem."""
        return self._codes.seal({"sid": login.session_id, "ln": login.nonce, "acc": login.account_id,
                                 "acr": login.acr, "at": login.auth_time, "r": secrets.token_urlsafe(16),
                                 "exp": int(time.time()) + LOGIN_CODE_TTL_SECONDS})

    def redeem(self, code: str) -> Login:
        """The login a code carries, or LoginError 400 `invalid_login_code` (forged, foreign, a state,
        expired). Whether it is this session's, and still pending, is for the caller to check."""
        try:
            payload = self._codes.open(code)
        except LoginError as exc:
            expired = "too long" in exc.detail  # did.connect.rp's wording for an expired seal
            raise LoginError(400, "invalid_login_code", "the login code has expired (it lasts "
                             f"{LOGIN_CODE_TTL_SECONDS} s): log in again" if expired
                             else "unknown or tampered login code: log in again") from None
        sid, nonce, account = payload.get("sid"), payload.get("ln"), payload.get("acc")
        acr, auth_time = payload.get("acr"), payload.get("at")
        if not (isinstance(sid, int) and isinstance(nonce, str) and isinstance(account, str)
                and (acr is None or isinstance(acr, str)) and (auth_time is None or isinstance(auth_time, int))):
            raise LoginError(400, "invalid_login_code", "unknown or tampered login code: log in again")
        return Login(session_id=sid, nonce=nonce, account_id=account, acr=acr, auth_time=auth_time)
