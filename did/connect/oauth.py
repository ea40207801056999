"""authlib's OAuth 2.0 / OpenID Connect server, wired to our storage and to Starlette.

authlib ships server integrations for Flask and Django only, and its server API is synchronous,
while our storage is async (SQLAlchemy asyncio). The adapter below is therefore small and
two-phased: the endpoint handler (did.connect.app) first loads, asynchronously, everything
authlib's hooks will ask for (the client, the consumed code, the account, the signing key) into a
per-request `Ctx` (a ContextVar), runs authlib synchronously, then writes what the hooks queued
(`Ctx.pending`) in one transaction. Grants, PKCE, redirect-URI checks, client authentication,
`state` passing, `prompt` handling, the ID token and its `at_hash` and the RFC 9207 `iss`
parameter are authlib's; we add only the stricter rules of Martinique Connect (`Requirements`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from authlib.oauth2 import rfc6749
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant as _CodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode

from did.connect.keys import ALG, pairwise_sub
from did.connect.tables import ConnectAccessToken, ConnectAccount, ConnectAuthCode, ConnectClient, ConnectSession

SCOPES = ["openid", "profile", "email", "mq_residence"]
CLAIMS = ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid",
          "given_name", "family_name", "birthdate", "email", "commune_insee"]
ACR_LOCAL = "mq:local"


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def password_hasher(settings: Any) -> PasswordHasher:
    """The Argon2id hasher for new hashes, at the cost the settings ask (ConnectSettings)."""
    return _hasher(settings.connect_password_time_cost, settings.connect_password_memory_kib,
                   settings.connect_password_parallelism)


# Verification reads the parameters stored in each hash, so one verifier checks hashes of any cost.
_verifier = PasswordHasher()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def verify_secret(hashed: str, value: str) -> bool:
    try:
        return _verifier.verify(hashed, value)
    except (VerifyMismatchError, InvalidHashError):
        return False


# ---- per-request context filled by the async handler before authlib runs


@dataclass
class Ctx:
    issuer: str
    secret: bytes
    settings: Any
    clients: dict[str, Client] = field(default_factory=dict)
    code: Code | None = None
    account: ConnectAccount | None = None
    session: ConnectSession | None = None
    signing_key: dict | None = None
    pending: list[Any] = field(default_factory=list)


current: ContextVar[Ctx] = ContextVar("connect_ctx")


class Client(ClientMixin):
    def __init__(self, row: ConnectClient) -> None:
        self.row = row
        self.client_id = row.client_id

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # redirect_uri is always required (OIDC Core §3.1.2.1)

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.row.scopes or SCOPES)
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris  # exact string match

    def check_client_secret(self, client_secret: str) -> bool:
        return verify_secret(self.row.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method in ("client_secret_basic", "client_secret_post")
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


class Code(rfc6749.AuthorizationCodeMixin):
    def __init__(self, row: ConnectAuthCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> str:
        return self.row.acr

    def get_amr(self) -> list[str]:
        return list(self.row.amr)


# ---- the Starlette side of authlib's request model


class _Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: dict[str, list[str]] = {}
        for k, v in items:
            self._data.setdefault(k, v)
            self._datalist.setdefault(k, []).append(v)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    def __init__(self, method: str, url: str, headers: Any, args: list[tuple[str, str]],
                 form: list[tuple[str, str]]) -> None:
        super().__init__(method=method, uri=url, headers=headers)
        self._args = dict(args)
        self._form = dict(form)
        self.payload = _Payload(list(args) + list(form))

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class Reply:
    """authlib's (status, body, headers); `location` is what IssuerParameter rewrites."""

    status: int
    body: Any
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "location"), None)

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != "location"] + [("Location", value)]


# ---- grants and extensions


class S256Challenge(CodeChallenge):
    """PKCE (RFC 7636) mandatory for every client, S256 only."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):  # noqa: ANN001, ANN201
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE (RFC 7636) is required.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        return super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):  # noqa: ANN001, ANN201
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        return super().validate_code_verifier(grant, result)


class Requirements:
    """Martinique Connect's rules on top of OAuth/OIDC: `openid` scope, `state` and `nonce` long enough."""

    def __call__(self, grant) -> None:  # noqa: ANN001
        grant.register_hook("after_validate_authorization_request_payload", self.check)

    def check(self, grant, redirect_uri) -> None:  # noqa: ANN001, ARG002
        data = grant.request.payload.data
        minimum = current.get().settings.connect_min_state_length
        if "openid" not in (data.get("scope") or "").split():
            raise InvalidRequestError("The 'openid' scope is required.")
        for name in ("state", "nonce"):
            value = data.get(name) or ""
            if len(value) < minimum:
                raise InvalidRequestError(f"'{name}' is required, at least {minimum} characters.")


class CodeGrant(_CodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        ctx = current.get()
        assert ctx.session is not None and ctx.account is not None
        data = request.payload.data
        now = datetime.now(UTC)
        ctx.pending.append(ConnectAuthCode(
            code_hash=sha256(code), client_id=request.client.client_id, account_id=ctx.account.id,
            session_sid=ctx.session.sid, redirect_uri=data["redirect_uri"], scope=request.scope,
            nonce=data["nonce"], code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"], auth_time=ctx.session.auth_time,
            acr=ctx.session.acr, amr=list(ctx.session.amr), created_at=now,
            expires_at=now + timedelta(seconds=ctx.settings.connect_code_seconds),
        ))

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        # The handler consumed the code atomically before authlib ran (single use, reuse revokes).
        found = current.get().code
        if found and found.row.client_id == client.client_id and found.row.code_hash == sha256(code):
            return found
        return None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        pass  # already marked consumed; kept to detect reuse

    def authenticate_user(self, authorization_code: Code) -> ConnectAccount | None:
        return current.get().account


class MqOpenIDCode(OpenIDCode):
    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # nonce replay is the RP's check; codes are single use here

    def resolve_client_private_key(self, client: Client) -> dict:
        key = current.get().signing_key
        assert key is not None
        return key

    def get_client_algorithm(self, client: Client) -> str:
        return ALG

    def get_encode_header(self, client: Client) -> dict:
        return {"alg": ALG, "kid": current.get().signing_key["kid"], "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict:
        ctx = current.get()
        now = int(time.time())
        return {"iss": ctx.issuer, "aud": [client.client_id], "iat": now,
                "exp": now + ctx.settings.connect_id_token_seconds}

    def generate_user_info(self, user: ConnectAccount, scope: str) -> UserInfo:
        ctx = current.get()
        code = ctx.code
        assert code is not None
        client = ctx.clients[code.row.client_id]
        return UserInfo(sub=pairwise_sub(ctx.secret, client.row.sector_identifier, user.id),
                        sid=code.row.session_sid)


class Server(rfc6749.AuthorizationServer):
    def __init__(self) -> None:
        super().__init__(scopes_supported=SCOPES)
        self.issuer_parameter = Issuer()
        self.register_extension(self.issuer_parameter)
        self.register_grant(CodeGrant, [S256Challenge(required=True), MqOpenIDCode(require_nonce=True),
                                        Requirements()])
        self.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: secrets.token_urlsafe(32),
            expires_generator=lambda client, grant_type: current.get().settings.connect_access_token_seconds,
        ))

    def query_client(self, client_id: str) -> Client | None:
        return current.get().clients.get(client_id)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        ctx = current.get()
        assert ctx.code is not None and ctx.account is not None
        client: Client = request.client
        now = datetime.now(UTC)
        ctx.pending.append(ConnectAccessToken(
            token_hash=sha256(token["access_token"]), code_id=ctx.code.row.id, client_id=client.client_id,
            account_id=ctx.account.id, scope=token["scope"],
            sub=pairwise_sub(ctx.secret, client.row.sector_identifier, ctx.account.id), issued_at=now,
            expires_at=now + timedelta(seconds=int(token["expires_in"])),
        ))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # the handler builds a StarletteOAuth2Request itself (it had to await the body)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Reply:
        return Reply(status, body, list(headers))


class Issuer(IssuerParameter):
    """RFC 9207 `iss` in every authorization response (authlib's extension)."""

    def get_issuer(self) -> str:
        return current.get().issuer
