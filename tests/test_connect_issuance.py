"""SSO → credential: OpenID4VCI 1.0 pre-authorized code issuance of a MartiniqueResidentCredential.

A real holder (tests/connect_holder.py: did.keys + jwcrypto) redeems the offer a signed-in citizen
got; the credential is checked with did.sdjwt.verify. Negative cases check the spec's error codes.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jwcrypto import jwt

from did import sdjwt
from tests.connect_holder import PRE_AUTH, Holder, key_proof, parse_offer
from tests.connect_support import Provider, code_flow, provider

# Not about migrations: stores start at the newest one (tests/conftest.py).
pytestmark = pytest.mark.migrated_store


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    tmp = tmp_path_factory.mktemp("issuance")
    with provider(tmp, f"sqlite+aiosqlite:///{tmp / 'lakou.db'}") as running:
        yield running


async def signed_in(op: Provider, username: str = "josephine") -> httpx.AsyncClient:
    browser = httpx.AsyncClient()
    await code_flow(op, browser=browser, username=username)
    return browser


async def offer_from_page(op: Provider, browser: httpx.AsyncClient, **params: str) -> tuple[dict, str | None]:
    page = await browser.get(f"{op.url}/wallet/offer", params=params)
    assert page.status_code == 200, page.text
    import re
    from html import unescape
    link = unescape(re.search(r'class="offer" href="([^"]+)"', page.text).group(1))
    pin = re.search(r'class="tx-code">[^<]*?(\d{6})', page.text)
    return parse_offer(link), pin.group(1) if pin else None


async def issue_once(op: Provider) -> tuple[Holder, dict]:
    browser = await signed_in(op)
    async with aclosing(browser), httpx.AsyncClient() as wallet:
        offer, _ = await offer_from_page(op, browser)
        holder = Holder()
        await holder.redeem(wallet, offer)
    return holder, offer


def test_issuance_and_consents_both_backends(db_url: str, tmp_path: Path) -> None:
    with provider(tmp_path, db_url) as op:
        asyncio.run(end_to_end(op))
        asyncio.run(consents_flow(op))


async def end_to_end(op: Provider) -> None:
    if True:
        holder, offer = await issue_once(op)
        assert offer["credential_issuer"] == op.url
        assert offer["credential_configuration_ids"] == ["MartiniqueResidentCredential"]
        async with httpx.AsyncClient() as http:
            meta = (await http.get(f"{op.url}/.well-known/openid-credential-issuer")).json()
            status = (await http.get(f"{op.url}/status/1")).json()
        conf = meta["credential_configurations_supported"]["MartiniqueResidentCredential"]
        assert conf["format"] == "dc+sd-jwt" and conf["vct"] == "MartiniqueResidentCredential"
        assert set(conf["proof_types_supported"]["jwt"]["proof_signing_alg_values_supported"]) == {"ES256", "EdDSA"}
        assert meta["issuer_did"].startswith("did:jwk:")
        # Everything disclosed, with a KB-JWT: verify against the issuer's did:jwk (resolved offline).
        pres = holder.present(["given_name", "family_name", "birthdate"], nonce="n-1", aud="https://rp.example")
        checked = sdjwt.verify(pres, nonce="n-1", aud="https://rp.example", vct="MartiniqueResidentCredential")
        claims = checked.claims
        assert claims["iss"] == meta["issuer_did"]
        assert claims["commune_insee"] == "97209" and claims["age_over_18"] is True
        assert (claims["given_name"], claims["family_name"], claims["birthdate"]) == ("Joséphine", "Rosier",
                                                                                     "1990-05-04")
        assert claims["cnf"]["jwk"]["x"] == holder.key.export_public(as_dict=True)["x"]
        assert 364 * 86400 < claims["exp"] - claims["iat"] <= 366 * 86400
        entry = claims["status"]["bitstring_status_list_entry"]
        assert entry["statusListCredential"] == f"{op.url}/status/1" == status["id"]
        # Minimal disclosure: names stay hidden, commune and age always visible.
        minimal = sdjwt.verify(holder.present([], nonce="n-2", aud="a"), nonce="n-2", aud="a").claims
        assert "given_name" not in minimal and "birthdate" not in minimal
        assert minimal["commune_insee"] == "97209" and minimal["age_over_18"] is True


async def test_pre_authorized_code_is_single_use(op: Provider) -> None:
    browser = await signed_in(op)
    async with aclosing(browser), httpx.AsyncClient() as wallet:
        offer, _ = await offer_from_page(op, browser)
        code = offer["grants"][PRE_AUTH]["pre-authorized_code"]
        form = {"grant_type": PRE_AUTH, "pre-authorized_code": code}
        first = await wallet.post(f"{op.url}/token", data=form)
        assert first.status_code == 200 and first.json()["token_type"] == "Bearer"
        again = await wallet.post(f"{op.url}/token", data=form)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        unknown = await wallet.post(f"{op.url}/token", data=form | {"pre-authorized_code": "nope"})
        assert unknown.json()["error"] == "invalid_grant"


async def test_tx_code_is_checked(op: Provider) -> None:
    browser = await signed_in(op)
    async with aclosing(browser), httpx.AsyncClient() as wallet:
        offer, pin = await offer_from_page(op, browser, tx_code="1")
        assert pin and offer["grants"][PRE_AUTH]["tx_code"]["length"] == 6
        code = offer["grants"][PRE_AUTH]["pre-authorized_code"]
        missing = await wallet.post(f"{op.url}/token", data={"grant_type": PRE_AUTH, "pre-authorized_code": code})
        assert missing.json()["error"] == "invalid_request"
        wrong = "000000" if pin != "000000" else "111111"
        bad = await wallet.post(f"{op.url}/token", data={"grant_type": PRE_AUTH, "pre-authorized_code": code,
                                                         "tx_code": wrong})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
        # A wrong code burns the offer; a new one with the right code works.
        offer, pin = await offer_from_page(op, browser, tx_code="1")
        await Holder().redeem(wallet, offer, tx_code=pin)


async def test_offer_needs_a_session_and_csrf(op: Provider) -> None:
    async with httpx.AsyncClient() as anonymous:
        page = await anonymous.get(f"{op.url}/wallet/offer", headers={"Accept-Language": "de"})
        assert page.status_code == 401 and 'lang="de"' in page.text
        api = await anonymous.post(f"{op.url}/api/wallet/offer", json={})
        assert api.status_code == 401 and api.json()["error"] == "login_required"
    browser = await signed_in(op)
    async with aclosing(browser):
        no_csrf = await browser.post(f"{op.url}/api/wallet/offer", json={})
        assert no_csrf.status_code == 403
        csrf = (await browser.get(f"{op.url}/api/wallet/csrf")).json()["csrf"]
        made = await browser.post(f"{op.url}/api/wallet/offer", json={}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 200, made.text
        assert parse_offer(made.json()["credential_offer_uri"]) == made.json()["credential_offer"]
        for lang, word in (("fr", "portefeuille"), ("en", "wallet"), ("es", "cartera"), ("de", "Wallet")):
            page = await browser.get(f"{op.url}/wallet/offer", headers={"Accept-Language": lang})
            assert page.status_code == 200 and word in page.text


async def _token_and_nonce(op: Provider, browser: httpx.AsyncClient, wallet: httpx.AsyncClient) -> tuple[str, str]:
    offer, _ = await offer_from_page(op, browser)
    token = (await wallet.post(f"{op.url}/token", data={
        "grant_type": PRE_AUTH, "pre-authorized_code": offer["grants"][PRE_AUTH]["pre-authorized_code"]})).json()
    nonce = (await wallet.post(f"{op.url}/nonce")).json()["c_nonce"]
    return token["access_token"], nonce


async def test_bad_proofs_are_refused(op: Provider) -> None:
    holder = Holder("P-256")
    browser = await signed_in(op)
    async with aclosing(browser), httpx.AsyncClient() as wallet:
        token, nonce = await _token_and_nonce(op, browser, wallet)

        async def send(proof: str, **body: object) -> httpx.Response:
            return await wallet.post(f"{op.url}/credential", headers={"Authorization": f"Bearer {token}"},
                                     json={"credential_configuration_id": "MartiniqueResidentCredential",
                                           "proofs": {"jwt": [proof]}} | body)

        cases = {
            "wrong aud": (key_proof(holder.key, aud="https://elsewhere.example", nonce=nonce), "invalid_proof"),
            "no jwk": (key_proof(holder.key, aud=op.url, nonce=nonce, with_jwk=False), "invalid_proof"),
            "wrong typ": (key_proof(holder.key, aud=op.url, nonce=nonce, typ="JWT"), "invalid_proof"),
            "no nonce": (key_proof(holder.key, aud=op.url, nonce=None), "invalid_nonce"),
            "forged nonce": (key_proof(holder.key, aud=op.url, nonce="1.abc.def"), "invalid_nonce"),
            "stale nonce": (key_proof(holder.key, aud=op.url,
                                     nonce=op_issuer_nonce(op, int(time.time()) - 3600)), "invalid_nonce"),
            "not a jwt": ("garbage", "invalid_proof"),
        }
        for name, (proof, code) in cases.items():
            answer = await send(proof)
            assert answer.status_code == 400 and answer.json()["error"] == code, (name, answer.text)
        unknown = await send(key_proof(holder.key, aud=op.url, nonce=nonce),
                             credential_configuration_id="Other")
        assert unknown.json()["error"] == "unknown_credential_configuration"
        no_token = await wallet.post(f"{op.url}/credential", json={})
        assert no_token.status_code == 401 and no_token.json()["error"] == "invalid_token"
        ok = await send(key_proof(holder.key, aud=op.url, nonce=nonce))
        assert ok.status_code == 200, ok.text
        payload = sdjwt.verify(ok.json()["credentials"][0]["credential"], require_kb=False).claims
        assert payload["cnf"]["jwk"]["crv"] == "P-256"


def op_issuer_nonce(op: Provider, at: int) -> str:
    """A nonce sealed with the provider's key but issued long ago (built the way the server builds them)."""
    from types import SimpleNamespace

    from did.connect.issuance import Issuer
    from did.connect.keys import load_server_secret

    fake = SimpleNamespace(secret=load_server_secret(op.settings.connect_secret, op.settings.data_dir), issuer=op.url)
    return Issuer(fake).new_nonce(at)


async def consents_flow(op: Provider) -> None:
    """Sign in to `shop`, get a credential; both releases are listed; revoking them has effects."""
    from did import status as w3c_status

    browser = httpx.AsyncClient()
    async with aclosing(browser), httpx.AsyncClient() as wallet:
        flow = await code_flow(op, browser=browser)
        offer, _ = await offer_from_page(op, browser)
        holder = Holder()
        await holder.redeem(wallet, offer)
        listed = (await browser.get(f"{op.url}/account/consents", headers={"Accept": "application/json"})).json()
        records = listed["consents"]
        shop = next(r for r in records if r["client_id"] == "shop" and r["revoked_at"] is None)
        issued = next(r for r in records if r["client_id"] is None and r["revoked_at"] is None)
        assert shop["purpose"] == "sign-in" and "commune_insee" in shop["claims"] and "email" in shop["claims"]
        assert issued["purpose"] == "wallet issuance" and issued["recipient"] == "wallet issuance"
        assert {"commune_insee", "age_over_18", "given_name"} <= set(issued["claims"])
        page = await browser.get(f"{op.url}/account/consents", headers={"Accept-Language": "en"})
        assert page.status_code == 200 and "My consents" in page.text and "shop" in page.text

        access = flow["token"]["access_token"]
        assert (await wallet.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {access}"})).status_code == 200
        refused = await browser.post(f"{op.url}/account/consents/{shop['id']}/revoke",
                                     headers={"X-CSRF-Token": "wrong" * 8})
        assert refused.status_code == 403
        before = len(op.logout_tokens)
        done = await browser.post(f"{op.url}/account/consents/{shop['id']}/revoke",
                                  headers={"X-CSRF-Token": listed["csrf"]})
        assert done.status_code == 200 and done.json()["revoked_at"]
        assert (await wallet.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {access}"})).status_code == 401
        for _ in range(50):
            if len(op.logout_tokens) > before:
                break
            await asyncio.sleep(0.05)
        logout = json.loads(jwt.JWT(jwt=op.logout_tokens[-1]).token.objects["payload"])
        assert logout["aud"] == "shop" and "sid" in logout

        # Revoking the wallet issuance revokes the credential: its bit is set in /status/1.
        entry = sdjwt.verify(holder.credential, require_kb=False).claims["status"]["bitstring_status_list_entry"]
        status_list = (await wallet.get(f"{op.url}/status/1")).json()
        assert w3c_status.check_status(entry, status_list) is False
        form = await browser.post(f"{op.url}/account/consents/{issued['id']}/revoke",
                                  data={"csrf": listed["csrf"]})
        assert form.status_code == 303
        status_list = (await wallet.get(f"{op.url}/status/1")).json()
        assert w3c_status.check_status(entry, status_list) is True
        # Another citizen cannot touch these records.
        other = await signed_in(op, "victor")
        async with aclosing(other):
            csrf = (await other.get(f"{op.url}/api/wallet/csrf")).json()["csrf"]
            stolen = await other.post(f"{op.url}/account/consents/{shop['id']}/revoke", headers={"X-CSRF-Token": csrf})
            assert stolen.status_code == 404
