"""OpenID for Verifiable Credential Issuance 1.0 — the wallet side, pre-authorized code flow.

1. Parse the credential offer (``openid-credential-offer://?credential_offer=<JSON>`` or
   ``?credential_offer_uri=<https URL>``, or the JSON itself) — OID4VCI 1.0 section 4.1.
2. Fetch the Credential Issuer metadata at ``/.well-known/openid-credential-issuer`` (path
   inserted after the host, section 12.2.2) and check its ``credential_issuer``.
3. Find the token endpoint in the Authorization Server's RFC 8414 metadata
   (``/.well-known/oauth-authorization-server``, falling back to ``openid-configuration``);
   the AS is the offer grant's ``authorization_server``, else the first of the metadata's
   ``authorization_servers``, else the issuer itself.
4. Token request (form): ``grant_type=urn:ietf:params:oauth:grant-type:pre-authorized_code``,
   ``pre-authorized_code`` and ``tx_code`` when the offer asks for one (section 6.1).
5. ``c_nonce`` from the ``nonce_endpoint`` (POST, section 7).
6. Credential request (section 8.2): ``credential_configuration_id`` (or the
   ``credential_identifier`` from the token's ``authorization_details``) and
   ``proofs: {"jwt": [<key proof>]}``; the key proof (appendix F.1) has header
   ``typ: openid4vci-proof+jwt``, ``alg`` and ``jwk`` (the holder's public key) and claims
   ``aud`` = credential_issuer, ``iat``, ``nonce`` = c_nonce. One retry on ``invalid_nonce``.
7. The SD-JWT VC in ``credentials[0].credential`` is verified (signature, times, ``vct``) and
   must be bound (``cnf.jwk``) to the key we proved; then it is stored.

Issuer key (SD-JWT VC draft section 5): a DID ``iss`` is resolved with ``did.methods`` (did:web
over HTTP only with ``allow_http``); an https ``iss`` must be the credential issuer and its key
comes from ``/.well-known/jwt-vc-issuer`` (``jwks`` or ``jwks_uri``), else from ``jwks``/``jwks_uri``
in the credential issuer metadata, else from the ``jwks_uri`` of the issuer's own AS/OP metadata.
Optionally (``trust_list``) the issuer must be on the Martinique trust list for the ``vct``.
Deferred issuance (HTTP 202 with ``transaction_id``) is reported as an error, not yet handled.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
from jwcrypto import jwk as jwk_mod
from jwcrypto import jws as jws_mod

from did import sdjwt
from did.wallet.store import WalletError

PRE_AUTH_GRANT = "urn:ietf:params:oauth:grant-type:pre-authorized_code"
PROOF_TYP = "openid4vci-proof+jwt"
OFFER_SCHEME = "openid-credential-offer"
SD_JWT_FORMATS = ("dc+sd-jwt", "vc+sd-jwt")
MAX_JSON = 256 * 1024


class IssuanceError(WalletError):
    """OpenID4VCI failed; `error` carries the issuer's OAuth error code when there was one."""

    def __init__(self, message: str, error: str | None = None):
        super().__init__(message)
        self.error = error


@dataclass
class CredentialOffer:
    credential_issuer: str
    credential_configuration_ids: list[str]
    pre_authorized_code: str
    tx_code: dict | None  # {"input_mode", "length", "description"} when a tx_code is required
    authorization_server: str | None
    raw: dict


def _url_ok(url: Any, allow_http: bool) -> str:
    if not isinstance(url, str):
        raise IssuanceError("a URL in the offer or metadata is missing")
    parts = urlsplit(url)
    if parts.scheme == "https" or (allow_http and parts.scheme == "http"):
        if parts.netloc:
            return url
    raise IssuanceError(f"URL must be https: {url[:200]}")


def _well_known(base: str, name: str) -> str:
    """RFC 8414 / OID4VCI 12.2.2: insert ``/.well-known/<name>`` between host and path."""
    p = urlsplit(base)
    path = p.path.rstrip("/")
    return urlunsplit((p.scheme, p.netloc, f"/.well-known/{name}{path}", "", ""))


async def _json(resp: httpx.Response, what: str) -> dict:
    if len(resp.content) > MAX_JSON:
        raise IssuanceError(f"{what}: response too large")
    try:
        data = resp.json()
    except ValueError:
        raise IssuanceError(f"{what}: HTTP {resp.status_code}, not JSON") from None
    if not isinstance(data, dict):
        raise IssuanceError(f"{what}: not a JSON object")
    return data


async def _get_json(http: httpx.AsyncClient, url: str, what: str) -> dict:
    try:
        resp = await http.get(url, headers={"Accept": "application/json"}, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise IssuanceError(f"{what}: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise IssuanceError(f"{what}: HTTP {resp.status_code}")
    return await _json(resp, what)


def _oauth_error(data: dict, what: str, status: int) -> IssuanceError:
    err = data.get("error") if isinstance(data.get("error"), str) else None
    desc = data.get("error_description") if isinstance(data.get("error_description"), str) else ""
    return IssuanceError(f"{what} refused (HTTP {status}): {err or 'error'}{': ' + desc[:300] if desc else ''}",
                         error=err)


def parse_offer_text(offer: str | dict) -> dict | str:
    """The offer object, or the ``credential_offer_uri`` to fetch (a str)."""
    if isinstance(offer, dict):
        return offer
    if not isinstance(offer, str) or not offer.strip():
        raise IssuanceError("empty credential offer")
    text = offer.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            raise IssuanceError("credential offer is not valid JSON") from None
    parts = urlsplit(text)
    q = parse_qs(parts.query)
    if "credential_offer" in q and "credential_offer_uri" in q:
        raise IssuanceError("credential offer has both credential_offer and credential_offer_uri")
    if "credential_offer" in q:
        try:
            return json.loads(q["credential_offer"][0])
        except ValueError:
            raise IssuanceError("credential_offer is not valid JSON") from None
    if "credential_offer_uri" in q:
        return q["credential_offer_uri"][0]
    raise IssuanceError("no credential_offer or credential_offer_uri in the offer")


def offer_from_json(data: Any) -> CredentialOffer:
    if not isinstance(data, dict):
        raise IssuanceError("credential offer is not a JSON object")
    issuer = data.get("credential_issuer")
    ids = data.get("credential_configuration_ids")
    if not isinstance(issuer, str) or not issuer:
        raise IssuanceError("credential offer has no credential_issuer")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise IssuanceError("credential offer has no credential_configuration_ids")
    grant = (data.get("grants") or {}).get(PRE_AUTH_GRANT) if isinstance(data.get("grants"), dict) else None
    if not isinstance(grant, dict) or not isinstance(grant.get("pre-authorized_code"), str):
        raise IssuanceError("credential offer has no pre-authorized code grant (only that flow is supported)")
    tx = grant.get("tx_code")
    if tx is not None and not isinstance(tx, dict):
        raise IssuanceError("credential offer tx_code is not an object")
    return CredentialOffer(credential_issuer=issuer, credential_configuration_ids=ids,
                           pre_authorized_code=grant["pre-authorized_code"], tx_code=tx,
                           authorization_server=grant.get("authorization_server"), raw=data)


def key_proof(holder_key: jwk_mod.JWK, *, audience: str, nonce: str | None, alg: str,
              iat: int | None = None) -> str:
    """The ``openid4vci-proof+jwt`` key proof (OID4VCI 1.0 appendix F.1)."""
    claims: dict = {"aud": audience, "iat": int(time.time()) if iat is None else iat}
    if nonce is not None:
        claims["nonce"] = nonce
    token = jws_mod.JWS(json.dumps(claims, separators=(",", ":")).encode())
    header = {"alg": alg, "typ": PROOF_TYP, "jwk": holder_key.export_public(as_dict=True)}
    token.add_signature(holder_key, alg=None, protected=json.dumps(header))
    return token.serialize(compact=True)


async def _issuer_key_resolver(http: httpx.AsyncClient, metadata: dict, credential: str,
                               allow_http: bool) -> Any:
    """What to pass as ``sdjwt.verify(issuer_key=...)`` for this credential."""
    jwt = sdjwt.split(credential)[0]
    header, payload = sdjwt._unverified_jwt(jwt, "SD-JWT")
    iss = payload.get("iss")
    if isinstance(iss, str) and iss.startswith("did:"):
        from did import methods

        did_url = sdjwt._issuer_did_url(iss, header)
        try:
            return await methods.verification_key_async(did_url, purpose="assertionMethod",
                                                        allow_http=allow_http, client=http)
        except ValueError as exc:
            raise IssuanceError(f"cannot resolve the issuer key: {exc}") from None
    if iss != metadata["credential_issuer"]:
        raise IssuanceError("the credential's iss is neither a DID nor the credential issuer")
    jwks = None
    try:
        vc_meta = await _get_json(http, _well_known(iss, "jwt-vc-issuer"), "jwt-vc-issuer metadata")
        if vc_meta.get("issuer") not in (None, iss):
            raise IssuanceError("jwt-vc-issuer metadata names another issuer")
        jwks = vc_meta.get("jwks") or (await _get_json(http, _url_ok(vc_meta["jwks_uri"], allow_http), "issuer JWKS")
                                        if vc_meta.get("jwks_uri") else None)
    except IssuanceError as exc:
        if "another issuer" in str(exc):
            raise
    if jwks is None and (metadata.get("jwks") or metadata.get("jwks_uri")):
        jwks = metadata.get("jwks") or await _get_json(http, _url_ok(metadata["jwks_uri"], allow_http), "issuer JWKS")
    if jwks is None:
        for name in ("oauth-authorization-server", "openid-configuration"):
            try:
                as_meta = await _get_json(http, _well_known(iss, name), "issuer metadata")
            except IssuanceError:
                continue
            if as_meta.get("issuer") == iss and as_meta.get("jwks_uri"):
                jwks = await _get_json(http, _url_ok(as_meta["jwks_uri"], allow_http), "issuer JWKS")
                break
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise IssuanceError("no key published for the credential issuer")
    kid = header.get("kid")
    candidates = [k for k in jwks["keys"] if isinstance(k, dict) and (kid is None or k.get("kid") == kid)]
    if len(candidates) != 1:
        raise IssuanceError("the issuer's signing key is not (uniquely) in its published keys")
    try:
        return jwk_mod.JWK(**candidates[0])
    except Exception:
        raise IssuanceError("the issuer's published key is invalid") from None


async def receive_offer(wallet, offer: str | dict, *, tx_code: str | None = None,
                        http: httpx.AsyncClient, key_id: str | None = None,
                        allow_http: bool = False, trust_list: Any = None) -> list:
    """Run the pre-authorized code flow for every offered configuration; store and return the
    credentials' metadata (:class:`did.wallet.store.CredentialInfo`). With `trust_list`
    (a `did.trust.TrustList`), the credential's `iss` must be trusted for its `vct`."""
    parsed = parse_offer_text(offer)
    if isinstance(parsed, str):
        parsed = await _get_json(http, _url_ok(parsed, allow_http), "credential_offer_uri")
    off = offer_from_json(parsed)
    _url_ok(off.credential_issuer, allow_http)
    if off.tx_code is not None and not tx_code:
        raise IssuanceError("this offer needs a transaction code (tx_code) sent to you separately")

    metadata = await _get_json(http, _well_known(off.credential_issuer, "openid-credential-issuer"),
                               "credential issuer metadata")
    if metadata.get("credential_issuer") != off.credential_issuer:
        raise IssuanceError("credential issuer metadata names another issuer")
    configs = metadata.get("credential_configurations_supported")
    if not isinstance(configs, dict):
        raise IssuanceError("credential issuer metadata has no credential_configurations_supported")
    credential_endpoint = _url_ok(metadata.get("credential_endpoint"), allow_http)

    as_url = off.authorization_server
    if as_url is None:
        servers = metadata.get("authorization_servers")
        as_url = servers[0] if isinstance(servers, list) and servers else off.credential_issuer
    _url_ok(as_url, allow_http)
    token_endpoint = None
    for name in ("oauth-authorization-server", "openid-configuration"):
        try:
            as_meta = await _get_json(http, _well_known(as_url, name), "authorization server metadata")
        except IssuanceError:
            continue
        if as_meta.get("token_endpoint"):
            token_endpoint = _url_ok(as_meta["token_endpoint"], allow_http)
            break
    if token_endpoint is None:
        raise IssuanceError("the authorization server publishes no token endpoint")

    form = {"grant_type": PRE_AUTH_GRANT, "pre-authorized_code": off.pre_authorized_code}
    if tx_code:
        form["tx_code"] = tx_code
    try:
        resp = await http.post(token_endpoint, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise IssuanceError(f"token request: {type(exc).__name__}") from None
    tok = await _json(resp, "token request")
    if resp.status_code != 200:
        raise _oauth_error(tok, "token request", resp.status_code)
    access_token = tok.get("access_token")
    if not isinstance(access_token, str) or str(tok.get("token_type", "")).lower() not in ("bearer", "dpop"):
        raise IssuanceError("token response has no bearer access_token")
    c_nonce = tok.get("c_nonce")  # pre-1.0 issuers; 1.0 uses the nonce endpoint

    holder = wallet.key(key_id)
    identifiers: dict[str, list[str]] = {}
    for detail in tok.get("authorization_details") or []:
        if isinstance(detail, dict) and detail.get("credential_configuration_id"):
            identifiers[detail["credential_configuration_id"]] = list(detail.get("credential_identifiers") or [])

    async def fresh_nonce() -> str | None:
        if not metadata.get("nonce_endpoint"):
            return c_nonce
        try:
            r = await http.post(_url_ok(metadata["nonce_endpoint"], allow_http))
        except httpx.HTTPError as exc:
            raise IssuanceError(f"nonce request: {type(exc).__name__}") from None
        data = await _json(r, "nonce request")
        if r.status_code != 200 or not isinstance(data.get("c_nonce"), str):
            raise IssuanceError("nonce endpoint returned no c_nonce")
        return data["c_nonce"]

    stored = []
    for config_id in off.credential_configuration_ids:
        config = configs.get(config_id)
        if not isinstance(config, dict):
            raise IssuanceError(f"the issuer does not describe credential configuration {config_id!r}")
        fmt = config.get("format")
        if fmt not in SD_JWT_FORMATS:
            raise IssuanceError(f"credential format {fmt!r} is not supported by this wallet (SD-JWT VC only)")
        algs = (((config.get("proof_types_supported") or {}).get("jwt") or {})
                .get("proof_signing_alg_values_supported"))
        if isinstance(algs, list) and holder.alg not in algs:
            raise IssuanceError(f"the issuer does not accept {holder.alg} key proofs")
        body: dict = ({"credential_identifier": identifiers[config_id][0]} if identifiers.get(config_id)
                      else {"credential_configuration_id": config_id})
        nonce = await fresh_nonce()
        for attempt in (1, 2):
            body["proofs"] = {"jwt": [key_proof(holder.key, audience=off.credential_issuer, nonce=nonce,
                                                alg=holder.alg)]}
            try:
                r = await http.post(credential_endpoint, json=body,
                                    headers={"Authorization": f"Bearer {access_token}",
                                             "Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise IssuanceError(f"credential request: {type(exc).__name__}") from None
            data = await _json(r, "credential request")
            if r.status_code == 400 and data.get("error") == "invalid_nonce" and attempt == 1:
                nonce = data.get("c_nonce") if isinstance(data.get("c_nonce"), str) else await fresh_nonce()
                continue
            break
        if r.status_code == 202 or (data.get("transaction_id") and not data.get("credentials")):
            raise IssuanceError("deferred issuance is not supported yet; try again later")
        if r.status_code != 200:
            raise _oauth_error(data, "credential request", r.status_code)
        creds = data.get("credentials")
        if isinstance(creds, list) and creds and isinstance(creds[0], dict):
            credential = creds[0].get("credential")
        else:
            credential = data.get("credential")  # pre-1.0 drafts
        if not isinstance(credential, str):
            raise IssuanceError("credential response holds no credential")

        issuer_key = await _issuer_key_resolver(http, metadata, credential, allow_http)
        try:
            verified = sdjwt.verify(credential, issuer_key=issuer_key, require_kb=False,
                                    vct=config.get("vct"), accept_legacy_typ=(fmt == "vc+sd-jwt"))
        except sdjwt.SdJwtError as exc:
            raise IssuanceError(f"the issued credential does not verify: {exc}") from None
        iss = verified.claims.get("iss")
        declared = metadata.get("issuer_did")  # not standard; checked when an issuer declares it
        if isinstance(declared, str) and isinstance(iss, str) and iss.startswith("did:") and iss != declared:
            raise IssuanceError("the credential's iss is not the DID the issuer declares")
        if trust_list is not None and not trust_list.check_issuer(verified.claims.get("vct"), iss):
            raise IssuanceError("the credential's issuer is not on the trust list for this credential type")
        if verified.holder_jwk is None or verified.holder_jwk.thumbprint() != holder.kid:
            raise IssuanceError("the issued credential is not bound to this wallet's key")
        info = wallet.add_credential(credential, fmt=fmt, source=off.credential_issuer,
                                     credential_configuration_id=config_id, save=False)
        wallet._record_activity({"kind": "issuance", "issuer": off.credential_issuer,
                                 "credential_id": info.id, "vct": info.vct})
        stored.append(info)
    wallet.save()
    return stored
