"""Verified merchants (issue 7): a business credential issued by the operator, uploaded by the
merchant to its BPP, advertised in on_search, verified by the BAP and shown in search results.

Registry, gateway, BPP and BAP run as `lakou serve` processes on 127.0.0.1 (tests/network.py); the
issuer's status list is served in-process. The BAP trusts one issuer (LAKOU_BAP_TRUSTED_MERCHANT_ISSUERS).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, serve_app
from fastapi import FastAPI
from typer.testing import CliRunner

from bap.merchant_verification import MerchantVerifier, advertised
from beckn.cli import app as lakou
from beckn.cli.did import issue_merchant, read_issuer_key, write_issuer_key
from did import keys, status
from did.methods import did_key_from_jwk
from did.trust import TrustList
from did.vc import add_proof
from did.verify import verify_credential
from network import Network
from registry.did import participant_did

SIRETS = {"jardin": "94580730215736", "rhum": "86039547620075", "revoque": "73282932000074", "sans": "35600000000048",
          "cles": "41234567000019"}
LAMENTIN = {"code": "insee:97213", "name": "Le Lamentin"}


def _profile(provider_id: str, name: str) -> dict[str, Any]:
    return {"id": provider_id, "descriptor": {"fr": {"name": name}}, "siret": SIRETS[provider_id],
            "address": "Rue Schoelcher", "commune": LAMENTIN, "postal_code": "97232", "gps": "14.6097, -60.9967",
            "contact": {"phone": "+596 596 12 34 56"}}


def _item(name: str) -> dict[str, Any]:
    return {"descriptor": {lang: {"name": name} for lang in ("fr", "en", "es", "de")},
            "price": "3.00", "unit": "unit", "stock": 5}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("merchants")
    trusted_path, untrusted_path = root / "operator.jwk", root / "other.jwk"
    trusted_did = write_issuer_key(trusted_path, passphrase=None, plain=True)
    untrusted_did = write_issuer_key(untrusted_path, passphrase=None, plain=True)
    trusted_key = read_issuer_key(trusted_path, passphrase=None)

    # The operator's revocation list: bit 7 set (revoked), bit 3 clear.
    status_port = free_port()
    list_url = f"http://127.0.0.1:{status_port}/status/1"
    bits = status.BitstringStatusList()
    bits.set(7)
    list_credential = add_proof(status.status_list_credential(list_url, trusted_did, bits), trusted_key)
    lists = FastAPI()
    lists.get("/status/1")(lambda: list_credential)

    network = Network(root)
    try:
        with serve_app(lists, port=status_port):
            registry = network.start("registry")
            network.wait_ready(registry)
            gateway = network.start("gateway")
            bpp = network.start("bpp", extra_env={"LAKOU_BPP_ON_SEARCH_VIA": "direct"})
            bap = network.start("bap", extra_env={"LAKOU_BAP_TRUSTED_MERCHANT_ISSUERS": f"did:key:zNotThis, {trusted_did}"})
            network.wait_ready(gateway, bpp, bap)
            yield {"network": network, "registry": registry, "bpp": bpp, "bap": bap,
                   "trusted": trusted_path, "untrusted": untrusted_path, "trusted_did": trusted_did,
                   "untrusted_did": untrusted_did, "list_url": list_url,
                   "bpp_did": participant_did(network.registry_url, "bpp.lakou.localhost")}
    finally:
        network.stop_all()


class Merchant:
    def __init__(self, net: dict[str, Any], name: str) -> None:
        created = httpx.post(f"{net['bpp'].url}/api/v1/admin/merchants", json={"name": name}, timeout=10,
                             headers={"Authorization": f"Bearer {net['network'].bpp_admin_token}"})
        assert created.status_code == 201, created.text
        self.http = httpx.Client(base_url=f"{net['bpp'].url}/api/v1/merchant", timeout=10,
                                 headers={"Authorization": f"Bearer {created.json()['api_key']}"})


def _issue(net: dict[str, Any], provider_id: str, *, issuer: str = "trusted", status_index: int | None = 3,
           **changes: str) -> dict[str, Any]:
    fields = {"subject_did": net["bpp_did"], "provider_id": provider_id, "siret": SIRETS.get(provider_id, SIRETS["jardin"]),
              "name": f"{provider_id.title()} SARL", "commune": "insee:97213"} | changes
    return issue_merchant(issuer_key=net[issuer], status_list=net["list_url"] if status_index is not None else None,
                          status_index=status_index, **fields)


def _unprocessable(response: httpx.Response, words: str) -> None:
    assert response.status_code == 422, response.text
    assert words in json.dumps(response.json()), response.text


def test_keygen_encrypts_and_issue_merchant_prints_a_signed_credential(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKOU_DID_PASSPHRASE", "correct horse battery staple")
    runner = CliRunner()
    made = runner.invoke(lakou, ["did", "keygen", "--out", str(tmp_path / "issuer.key")])
    assert made.exit_code == 0, made.output
    did = made.stdout.strip()
    assert did.startswith("did:key:z6Mk")
    assert "\"d\"" not in (tmp_path / "issuer.key").read_text()  # the private key is not in clear
    again = runner.invoke(lakou, ["did", "keygen", "--out", str(tmp_path / "issuer.key")])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output

    printed = runner.invoke(lakou, ["did", "issue-merchant", "--issuer-key", str(tmp_path / "issuer.key"),
                                    "--subject-did", "did:web:registry.lakou.mq:participants:bpp.mq",
                                    "--provider-id", "jardin", "--siret", "9458 0730 2157 36",
                                    "--name", "Jardin SARL", "--commune", "insee:97213", "--valid-days", "30"])
    assert printed.exit_code == 0, printed.output
    credential = json.loads(printed.stdout)
    assert credential["issuer"] == did and credential["type"] == ["VerifiableCredential", "MartiniqueMerchantCredential"]
    assert credential["credentialSubject"] == {
        "id": "did:web:registry.lakou.mq:participants:bpp.mq", "type": "MartiniqueMerchant", "providerId": "jardin",
        "siret": "94580730215736", "legalName": "Jardin SARL", "commune": "insee:97213"}
    assert credential["proof"]["cryptosuite"] == "eddsa-jcs-2022"

    trust = TrustList.from_mapping({"MartiniqueMerchantCredential": [did]})
    assert verify_credential(credential, trust_list=trust).ok
    credential["credentialSubject"]["siret"] = "86039547620075"
    assert not verify_credential(credential, trust_list=trust).checks["signature"].ok

    monkeypatch.setenv("LAKOU_DID_PASSPHRASE", "wrong")
    wrong = runner.invoke(lakou, ["did", "issue-merchant", "--issuer-key", str(tmp_path / "issuer.key"),
                                  "--subject-did", "did:web:r.mq:participants:b.mq", "--provider-id", "jardin",
                                  "--siret", "94580730215736", "--name", "J", "--commune", "insee:97213"])
    assert wrong.exit_code == 2 and "passphrase" in wrong.output
    monkeypatch.setenv("LAKOU_DID_PASSPHRASE", "correct horse battery staple")
    bad = runner.invoke(lakou, ["did", "issue-merchant", "--issuer-key", str(tmp_path / "issuer.key"),
                                "--subject-did", "did:web:r.mq:participants:b.mq", "--provider-id", "jardin",
                                "--siret", "94580730215736", "--name", "J", "--commune", "insee:75056"])
    assert bad.exit_code == 2 and "INSEE" in bad.output


def test_upload_is_checked_and_on_search_shows_verified_merchants(net: dict[str, Any]) -> None:
    lea, other = Merchant(net, "Léa"), Merchant(net, "Another merchant")
    for provider_id, name in (("jardin", "Le Jardin"), ("rhum", "Rhum péi"), ("revoque", "Révoqué"),
                              ("sans", "Sans papier")):
        assert lea.http.post("/providers", json=_profile(provider_id, name)).status_code == 201
        assert lea.http.put(f"/providers/{provider_id}/items/article", json=_item(f"Article {name}")).status_code in (200, 201)

    # The BPP checks what it is given: this provider, its SIRET, this BPP as the subject.
    _unprocessable(lea.http.put("/providers/jardin/credential", json=_issue(net, "rhum", siret=SIRETS["jardin"])),
                   "is for provider 'rhum'")
    _unprocessable(lea.http.put("/providers/jardin/credential", json=_issue(net, "jardin", siret=SIRETS["rhum"])),
                   "SIRET")
    gateway_did = participant_did(net["network"].registry_url, "gateway.lakou.localhost")
    _unprocessable(lea.http.put("/providers/jardin/credential", json=_issue(net, "jardin", subject_did=gateway_did)),
                   "this BPP's participant DID")
    _unprocessable(lea.http.put("/providers/jardin/credential", json={"type": ["VerifiableCredential"]}),
                   "not a usable MartiniqueMerchantCredential")
    good = _issue(net, "jardin")
    assert other.http.put("/providers/jardin/credential", json=good).status_code == 404
    assert other.http.delete("/providers/jardin/credential").status_code == 404
    uploaded = lea.http.put("/providers/jardin/credential", json=good)
    assert uploaded.status_code == 200, uploaded.text
    url = uploaded.json()["url"]
    assert url == f"{net['bpp'].url}/credentials/providers/jardin.json"
    assert httpx.get(url).json() == good  # public, as uploaded

    # Removed, then back: DELETE really removes it.
    assert lea.http.delete("/providers/jardin/credential").status_code == 204
    assert httpx.get(url).status_code == 404
    assert lea.http.put("/providers/jardin/credential", json=good).status_code == 200
    assert lea.http.put("/providers/rhum/credential", json=_issue(net, "rhum", issuer="untrusted")).status_code == 200
    assert lea.http.put("/providers/revoque/credential", json=_issue(net, "revoque", status_index=7)).status_code == 200

    # The citizen searches Le Lamentin through the BAP; verdicts arrive as the checks finish.
    token = httpx.post(net["bap"].url + "/api/v1/sessions", timeout=10).json()["token"]
    citizen = httpx.Client(base_url=net["bap"].url + "/api/v1", timeout=30, headers={"Authorization": f"Bearer {token}"})
    started = citizen.post("/searches", json={"city": "insee:97213", "lang": "fr", "ttl_seconds": 5})
    assert started.status_code == 202, started.text
    search_id = started.json()["transaction_id"]
    providers: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page = citizen.get(f"/searches/{search_id}/results", params={"wait_ms": 1000, "page_size": 100}).json()
        providers = {o["provider"]["id"]: o["provider"] for o in page["offers"]}
        if len(providers) == 4 and all(p["verified"] is not None for p in providers.values()):
            break
        time.sleep(0.2)
    assert set(providers) == {"jardin", "rhum", "revoque", "sans"}, providers

    tags = {t["code"]: t["value"] for t in providers["jardin"]["tags"] if t["group"] == "verifiable-credentials"}
    assert tags == {"business-credential": url, "holder-did": net["bpp_did"]}
    assert providers["jardin"]["verified"] is True
    assert providers["jardin"]["verified_siret"] == SIRETS["jardin"]
    assert providers["jardin"]["verified_name"] == "Jardin SARL"
    assert providers["rhum"]["verified"] is False and providers["rhum"]["verified_siret"] is None  # untrusted issuer
    assert providers["revoque"]["verified"] is False  # revoked on the status list
    assert providers["sans"]["verified"] is False  # no credential at all
    bap_log = net["bap"].log()
    assert "not on the trust list" in bap_log and "revoked" in bap_log


def test_a_credential_whose_subject_has_other_keys_than_the_bpp_is_not_verified(net: dict[str, Any]) -> None:
    """The BAP ties the credential to the key the BPP signs with: here the registry lists another key
    for the BPP than those of the credential's subject DID, as if the credential were someone else's."""
    merchant = Merchant(net, "Key check")
    assert merchant.http.post("/providers", json=_profile("cles", "Clés")).status_code == 201
    uploaded = merchant.http.put("/providers/cles/credential", json=_issue(net, "cles"))
    assert uploaded.status_code == 200, uploaded.text
    url = uploaded.json()["url"]

    async def check(registered: list[bytes]) -> Any:
        async def keys_of(bpp_id: str) -> list[bytes]:
            return registered

        verifier = MerchantVerifier(trusted_issuers=[net["trusted_did"]], registered_keys=keys_of, allow_http=True)
        return await verifier.verify("bpp.lakou.localhost", "cles", url, net["bpp_did"])

    other = keys.generate_key("Ed25519")
    other_raw = other.export_public(as_dict=True)["x"]
    verdict = asyncio.run(check([base64.urlsafe_b64decode(other_raw + "==")]))
    assert verdict.verified is False and "not bpp.lakou.localhost's registered signing keys" in verdict.reason
    # With the BPP's real registered keys the same check passes: the refusal above is about the key alone.

    registry_keys = httpx.post(f"{net['network'].registry_url}/lookup",
                               json={"subscriber_id": "bpp.lakou.localhost"}, timeout=10).json()
    real = [base64.b64decode(r["signing_public_key"]) for r in registry_keys]
    assert asyncio.run(check(real)).verified is True

    # The same credential claimed by another BPP id: the subject is not that participant's DID.
    async def as_other() -> Any:
        async def keys_of(bpp_id: str) -> list[bytes]:
            return real

        verifier = MerchantVerifier(trusted_issuers=[net["trusted_did"]], registered_keys=keys_of, allow_http=True)
        return await verifier.verify("copycat.lakou.localhost", "cles", url, None)

    assert "not the participant DID of copycat.lakou.localhost" in asyncio.run(as_other()).reason


def test_advertised_reads_the_tag_group() -> None:
    provider = {"id": "p", "tags": [
        {"descriptor": {"code": "lakou:opening_hours"}, "list": [{"descriptor": {"code": "mon"}, "value": "07:00-12:00"}]},
        {"descriptor": {"code": "verifiable-credentials"},
         "list": [{"descriptor": {"code": "business-credential"}, "value": "https://bpp.mq/c.json"},
                  {"descriptor": {"code": "holder-did"}, "value": "did:web:r.mq:participants:bpp.mq"}]}]}
    assert advertised(provider) == ("https://bpp.mq/c.json", "did:web:r.mq:participants:bpp.mq")
    assert advertised({"id": "p", "tags": [{"descriptor": {"code": "verifiable-credentials"}, "list": []}]}) is None
    assert did_key_from_jwk(keys.generate_key()).startswith("did:key:")
