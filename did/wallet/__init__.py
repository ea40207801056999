"""The holder wallet (identity.md 5.2): one encrypted file, SD-JWT VCs, OpenID4VCI and OpenID4VP.

    w = Wallet.create("me.wallet", "passphrase")            # or Wallet.open(path, passphrase)
    await w.receive_offer("openid-credential-offer://?credential_offer=...", tx_code="1234", http=client)
    req = w.parse_request("openid4vp://?client_id=redirect_uri%3A...")
    w.match(req)                                             # what would be disclosed, for consent
    await w.respond(req, credential_id, http=client)         # direct_post; logged in w.activity
    w.holder_for("bpp.example.mq").did                      # a pairwise did:key per verifier

See `store.py` (file format, keys, credentials), `oid4vci.py` and `oid4vp.py`.
"""

from __future__ import annotations

import httpx

from did.wallet import oid4vci, oid4vp
from did.wallet.oid4vci import IssuanceError
from did.wallet.oid4vp import Candidate, NoMatchingCredential, PresentationError, PresentationRequest
from did.wallet.store import (
    CredentialInfo,
    CredentialNotFound,
    HolderKey,
    WalletError,
    WalletFileError,
    WalletStore,
)
from did.keys import TamperedBlob, WrongPassphrase

__all__ = [
    "Wallet", "WalletError", "WalletFileError", "CredentialNotFound", "CredentialInfo", "HolderKey",
    "IssuanceError", "PresentationError", "NoMatchingCredential", "PresentationRequest", "Candidate",
    "WrongPassphrase", "TamperedBlob",
]


class Wallet(WalletStore):
    async def receive_offer(self, offer: str | dict, *, tx_code: str | None = None,
                            http: httpx.AsyncClient, key_id: str | None = None,
                            allow_http: bool = False, trust_list=None) -> list[CredentialInfo]:
        """OpenID4VCI 1.0 pre-authorized code flow; stores and returns the new credentials.
        `allow_http` permits http:// issuer URLs (tests, local development only); `trust_list`
        (a `did.trust.TrustList`) makes the issuer's trust for the credential's vct mandatory."""
        return await oid4vci.receive_offer(self, offer, tx_code=tx_code, http=http, key_id=key_id,
                                           allow_http=allow_http, trust_list=trust_list)

    def parse_request(self, uri: str | dict, *, allow_http: bool = False) -> PresentationRequest:
        return oid4vp.parse_request(uri, allow_http=allow_http)

    async def parse_request_async(self, uri: str | dict, *, http: httpx.AsyncClient,
                                  allow_http: bool = False) -> PresentationRequest:
        """As `parse_request`, also following `request_uri` (unsigned request objects only)."""
        return await oid4vp.parse_request_async(uri, http=http, allow_http=allow_http)

    def match(self, request: PresentationRequest) -> dict[str, list[Candidate]]:
        return oid4vp.match(self, request)

    async def respond(self, request: PresentationRequest, credential_id=None, *, http: httpx.AsyncClient,
                      purpose: str | None = None) -> dict:
        return await oid4vp.respond(self, request, credential_id, http=http, purpose=purpose)
