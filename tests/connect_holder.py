"""A minimal OpenID4VCI / OpenID4VP holder for the Martinique Connect tests: did.keys + jwcrypto.

It is NOT the project's wallet (did.wallet); it does by hand exactly what a wallet must send, so the
tests pin the wire format.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from jwcrypto import jwk, jwt

from did import keys, sdjwt

PRE_AUTH = "urn:ietf:params:oauth:grant-type:pre-authorized_code"


def parse_offer(link: str) -> dict[str, Any]:
    assert link.startswith("openid-credential-offer://?"), link
    return json.loads(parse_qs(urlsplit(link).query)["credential_offer"][0])


def key_proof(key: jwk.JWK, *, aud: str, nonce: str | None, iat: int | None = None, with_jwk: bool = True,
              typ: str = "openid4vci-proof+jwt") -> str:
    header: dict[str, Any] = {"alg": keys.jws_alg(key), "typ": typ}
    if with_jwk:
        header["jwk"] = key.export_public(as_dict=True)
    claims: dict[str, Any] = {"aud": aud, "iat": int(time.time()) if iat is None else iat}
    if nonce is not None:
        claims["nonce"] = nonce
    token = jwt.JWT(header=header, claims=claims)
    token.make_signed_token(key)
    return token.serialize()


class Holder:
    def __init__(self, kind: str = "Ed25519") -> None:
        self.key = keys.generate_key(kind)
        self.credential: str | None = None

    async def redeem(self, http: httpx.AsyncClient, offer: dict[str, Any], tx_code: str | None = None) -> dict:
        issuer = offer["credential_issuer"]
        meta = (await http.get(f"{issuer}/.well-known/openid-credential-issuer")).json()
        assert meta["credential_issuer"] == issuer
        grant = offer["grants"][PRE_AUTH]
        form = {"grant_type": PRE_AUTH, "pre-authorized_code": grant["pre-authorized_code"]}
        if tx_code:
            form["tx_code"] = tx_code
        token = await http.post(f"{issuer}/token", data=form)
        assert token.status_code == 200, token.text
        nonce = (await http.post(meta["nonce_endpoint"])).json()["c_nonce"]
        answer = await http.post(meta["credential_endpoint"], headers={
            "Authorization": f"Bearer {token.json()['access_token']}"}, json={
            "credential_configuration_id": offer["credential_configuration_ids"][0],
            "proofs": {"jwt": [key_proof(self.key, aud=issuer, nonce=nonce)]}})
        assert answer.status_code == 200, answer.text
        self.credential = answer.json()["credentials"][0]["credential"]
        return answer.json()

    def present(self, disclose: list[str], *, nonce: str, aud: str) -> str:
        assert self.credential is not None
        return sdjwt.present(self.credential, disclose, holder_key=self.key, nonce=nonce, aud=aud)
