"""The holder wallet (did/wallet/): encrypted file, credentials, pairwise DIDs, OpenID4VCI client
against an in-test issuer and OpenID4VP responder against an in-test verifier (real HTTP on
127.0.0.1). Argon2id parameters are lowered explicitly (FAST) to keep the file quick."""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from urllib.parse import parse_qs, quote, urlencode

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jwcrypto import jwk, jws

from did import sdjwt
from did.keys import Argon2Params, TamperedBlob, WrongPassphrase
from did.sdjwt import SD
from did.wallet import (
    CredentialNotFound,
    IssuanceError,
    NoMatchingCredential,
    Wallet,
    WalletFileError,
)
from tests.conftest import serve_app

FAST = Argon2Params(time_cost=1, memory_kib=64, parallelism=1)
PASS = "correct horse battery staple"
VCT = "https://connect.lakou.mq/vct/MartiniqueResidentCredential"
PRE_AUTH = "urn:ietf:params:oauth:grant-type:pre-authorized_code"


@pytest.fixture
def wallet(tmp_path):
    return Wallet.create(tmp_path / "me.wallet", PASS, params=FAST)


def _issue(holder_jwk, issuer_key, iss=None, **kw):
    return sdjwt.issue(
        {"commune_insee": "97209", "age_over_18": True, "given_name": SD("Marie-Josée"),
         "family_name": SD("Lagrange"), "birthdate": SD("1990-04-22")},
        issuer_key=issuer_key, iss=iss or "https://issuer.example", vct=VCT, holder_jwk=holder_jwk,
        status=sdjwt.status_list_reference("https://issuer.example/status/1", 7), **kw)


# --- file ------------------------------------------------------------------------------------


def test_create_open_roundtrip(tmp_path, wallet):
    path = tmp_path / "me.wallet"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["fmt"] == "lakou-wallet" and doc["v"] == 1
    assert "Marie" not in path.read_text() and wallet.default_key.kid not in path.read_text()
    again = Wallet.open(path, PASS)
    assert again.default_key.kid == wallet.default_key.kid
    assert again.default_key.alg == "EdDSA" and again.default_key.did_key.startswith("did:key:z6Mk")
    assert again.holder_for("bpp.example").did == wallet.holder_for("bpp.example").did


def test_p256_option(tmp_path):
    w = Wallet.create(tmp_path / "p.wallet", PASS, key_type="P-256", params=FAST)
    assert w.default_key.alg == "ES256" and w.default_key.did_key.startswith("did:key:zDn")


def test_wrong_passphrase_tamper_and_bad_files(tmp_path, wallet):
    path = tmp_path / "me.wallet"
    with pytest.raises(WrongPassphrase):
        Wallet.open(path, "not it")
    doc = json.loads(path.read_text())
    blob = json.loads(doc["blob"])
    ct = blob["ct"]
    blob["ct"] = ct[:-4] + ("AAAA" if ct[-4:] != "AAAA" else "BBBB")
    path.write_text(json.dumps({**doc, "blob": json.dumps(blob)}))
    with pytest.raises(TamperedBlob):
        Wallet.open(path, PASS)
    path.write_text(json.dumps({**doc, "v": 99}))
    with pytest.raises(WalletFileError, match="version"):
        Wallet.open(path, PASS)
    path.write_text("not json")
    with pytest.raises(WalletFileError):
        Wallet.open(path, PASS)
    with pytest.raises(WalletFileError, match="no wallet"):
        Wallet.open(tmp_path / "absent.wallet", PASS)
    with pytest.raises(WalletFileError, match="exists"):
        Wallet.create(path, PASS, params=FAST)


def test_atomic_save_leaves_old_file_on_failure(tmp_path, wallet, monkeypatch):
    path = tmp_path / "me.wallet"
    before = path.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        wallet.add_credential(_issue(wallet.default_key.key, jwk.JWK.generate(kty="EC", crv="P-256")))
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["me.wallet"]  # no temp file left behind
    assert Wallet.open(path, PASS).list_credentials() == []


def test_store_list_get_delete_and_persist(tmp_path, wallet):
    issuer = jwk.JWK.generate(kty="EC", crv="P-256")
    info = wallet.add_credential(_issue(wallet.default_key.key, issuer), source="https://issuer.example")
    assert info.vct == VCT and info.issuer == "https://issuer.example"
    assert info.expires_at > info.issued_at and not info.expired
    assert info.status == {"status_list": {"idx": 7, "uri": "https://issuer.example/status/1"}}
    assert info.holder_kid == wallet.default_key.kid
    w2 = Wallet.open(tmp_path / "me.wallet", PASS)
    assert [c.id for c in w2.list_credentials(vct=VCT)] == [info.id]
    assert w2.list_credentials(vct="other") == []
    assert w2.credential_claims(info.id)["given_name"] == "Marie-Josée"
    assert w2.get_credential(info.id).endswith("~")
    w2.delete_credential(info.id)
    assert Wallet.open(tmp_path / "me.wallet", PASS).list_credentials() == []
    with pytest.raises(CredentialNotFound):
        w2.get_credential(info.id)


def test_export_import(tmp_path, wallet):
    wallet.add_credential(_issue(wallet.default_key.key, jwk.JWK.generate(kty="OKP", crv="Ed25519")))
    backup = wallet.export_backup("backup pass", params=FAST)
    assert json.loads(backup)["fmt"] == "lakou-wallet-backup" and "Marie" not in backup
    with pytest.raises(WrongPassphrase):
        Wallet.import_backup(backup, "wrong", tmp_path / "r.wallet", "new pass")
    restored = Wallet.import_backup(backup, "backup pass", tmp_path / "r.wallet", "new pass")
    assert restored.holder_for("v").did == wallet.holder_for("v").did
    assert len(restored.list_credentials()) == 1
    assert Wallet.open(tmp_path / "r.wallet", "new pass").default_key.kid == wallet.default_key.kid
    with pytest.raises(WalletFileError):
        Wallet.import_backup("{}", "backup pass", tmp_path / "x.wallet", "p")


def test_pairwise_and_rotation(tmp_path, wallet):
    a, b = wallet.holder_for("bpp.lakou.mq"), wallet.holder_for("mairie-fdf.mq")
    assert a.did != b.did and a.did.startswith("did:key:z6Mk")
    assert wallet.holder_for("bpp.lakou.mq").did == a.did
    other = Wallet.create(tmp_path / "other.wallet", PASS, params=FAST)
    assert other.holder_for("bpp.lakou.mq").did != a.did
    rotated = wallet.rotate_pairwise("bpp.lakou.mq")
    assert rotated.did != a.did and wallet.holder_for("mairie-fdf.mq").did == b.did
    assert Wallet.open(tmp_path / "me.wallet", PASS).holder_for("bpp.lakou.mq").did == rotated.did
    old = wallet.default_key
    new = wallet.rotate_key()
    assert new.kid != old.kid and wallet.key(old.kid).retired_at is not None
    events = [e["event"] for e in Wallet.open(tmp_path / "me.wallet", PASS).key_events]
    assert events == ["created", "pairwise rotated", "retired", "rotated"]


# --- OpenID4VCI ------------------------------------------------------------------------------


def _issuer_app(state: dict) -> FastAPI:
    app = FastAPI()
    key = state["key"]

    @app.get("/.well-known/openid-credential-issuer")
    async def meta():
        base = state["base"]
        return {"credential_issuer": base, "credential_endpoint": f"{base}/credential",
                "nonce_endpoint": f"{base}/nonce",
                "credential_configurations_supported": {"resident": {
                    "format": "dc+sd-jwt", "vct": VCT, "cryptographic_binding_methods_supported": ["jwk"],
                    "proof_types_supported": {"jwt": {"proof_signing_alg_values_supported": ["EdDSA", "ES256"]}}}}}

    @app.get("/.well-known/oauth-authorization-server")
    async def as_meta():
        return {"issuer": state["base"], "token_endpoint": f"{state['base']}/token",
                "grant_types_supported": [PRE_AUTH]}

    @app.get("/.well-known/jwt-vc-issuer")
    async def vc_issuer():
        published = state.get("published") or key
        return {"issuer": state["base"], "jwks": {"keys": [published.export_public(as_dict=True)]}}

    @app.get("/offer")
    async def offer():
        return state["offer"]

    @app.post("/token")
    async def token(request: Request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        state["token_form"] = form
        if form.get("grant_type") != PRE_AUTH or form.get("pre-authorized_code") != state["code"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "bad code"}, 400)
        if form.get("tx_code") != state["tx_code"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "wrong tx_code"}, 400)
        state["access_token"] = secrets.token_urlsafe(16)
        return JSONResponse({"access_token": state["access_token"], "token_type": "Bearer", "expires_in": 300},
                            headers={"Cache-Control": "no-store"})

    @app.post("/nonce")
    async def nonce():
        state["nonce"] = secrets.token_urlsafe(16)
        return JSONResponse({"c_nonce": state["nonce"]}, headers={"Cache-Control": "no-store"})

    @app.post("/credential")
    async def credential(request: Request):
        if request.headers.get("authorization") != f"Bearer {state.get('access_token')}":
            return JSONResponse({"error": "invalid_token"}, 401)
        body = await request.json()
        if body.get("credential_configuration_id") != "resident":
            return JSONResponse({"error": "unknown_credential_configuration"}, 400)
        proof = body["proofs"]["jwt"][0]
        header = json.loads(sdjwt.b64url_decode(proof.split(".")[0]))
        holder = jwk.JWK(**header["jwk"])
        tok = jws.JWS()
        tok.deserialize(proof)
        tok.verify(holder)
        claims = json.loads(tok.payload)
        state["proof_header"], state["proof_claims"] = header, claims
        if header["typ"] != "openid4vci-proof+jwt" or claims["aud"] != state["base"]:
            return JSONResponse({"error": "invalid_proof"}, 400)
        if claims.get("nonce") != state["nonce"] or state.pop("stale_once", False):
            state["proofs_refused"] = state.get("proofs_refused", 0) + 1
            return JSONResponse({"error": "invalid_nonce"}, 400)
        bound = state.get("bind_to") or holder
        iss = state.get("iss") or state["base"]
        kid = f"{iss}#0" if iss.startswith("did:") else None
        return {"credentials": [{"credential": _issue(bound, key, iss=iss, kid=kid)}]}

    return app


@pytest.fixture
def issuer():
    state = {"key": jwk.JWK.generate(kty="EC", crv="P-256"), "code": secrets.token_urlsafe(12),
             "tx_code": "493536"}
    with serve_app(_issuer_app(state)) as base:
        state["base"] = base
        state["offer"] = {"credential_issuer": base, "credential_configuration_ids": ["resident"],
                          "grants": {PRE_AUTH: {"pre-authorized_code": state["code"],
                                                "tx_code": {"input_mode": "numeric", "length": 6}}}}
        yield state


def _offer_uri(offer: dict) -> str:
    return "openid-credential-offer://?credential_offer=" + quote(json.dumps(offer))


async def test_receive_offer_by_value(wallet, issuer):
    async with httpx.AsyncClient() as http:
        with pytest.raises(IssuanceError, match="tx_code"):
            await wallet.receive_offer(_offer_uri(issuer["offer"]), http=http, allow_http=True)
        with pytest.raises(IssuanceError, match="invalid_grant"):
            await wallet.receive_offer(_offer_uri(issuer["offer"]), tx_code="000000", http=http, allow_http=True)
        [info] = await wallet.receive_offer(_offer_uri(issuer["offer"]), tx_code="493536", http=http,
                                            allow_http=True)
    assert issuer["token_form"]["grant_type"] == PRE_AUTH
    assert issuer["proof_header"]["jwk"] == wallet.default_key.public_jwk()
    assert "d" not in issuer["proof_header"]["jwk"] and issuer["proof_header"]["alg"] == "EdDSA"
    assert issuer["proof_claims"]["aud"] == issuer["base"] and issuer["proof_claims"]["nonce"] == issuer["nonce"]
    assert abs(issuer["proof_claims"]["iat"] - time.time()) < 30
    assert info.vct == VCT and info.holder_kid == wallet.default_key.kid
    assert info.credential_configuration_id == "resident" and info.source == issuer["base"]
    assert [c.id for c in Wallet.open(wallet.path, PASS).list_credentials()] == [info.id]


async def test_p256_holder_and_invalid_nonce_retry(tmp_path, issuer):
    w = Wallet.create(tmp_path / "p.wallet", PASS, key_type="P-256", params=FAST)
    issuer["stale_once"] = True
    async with httpx.AsyncClient() as http:
        [info] = await w.receive_offer(issuer["offer"], tx_code="493536", http=http, allow_http=True)
    assert issuer["proofs_refused"] == 1 and issuer["proof_header"]["alg"] == "ES256"
    assert info.holder_kid == w.default_key.kid


async def test_did_issuer_and_trust_list(wallet, issuer):
    from did.methods import did_jwk_from_jwk
    from did.trust import TrustList

    issuer["iss"] = did_jwk_from_jwk(issuer["key"])  # iss a DID: key resolved offline
    untrusted = TrustList.from_mapping({VCT: ["did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"]})
    trusted = TrustList.from_mapping({VCT: [issuer["iss"]]})
    async with httpx.AsyncClient() as http:
        with pytest.raises(IssuanceError, match="trust list"):
            await wallet.receive_offer(issuer["offer"], tx_code="493536", http=http, allow_http=True,
                                       trust_list=untrusted)
        [info] = await wallet.receive_offer(issuer["offer"], tx_code="493536", http=http, allow_http=True,
                                            trust_list=trusted)
    assert info.issuer == issuer["iss"]


async def test_receive_offer_by_reference_and_https_required(wallet, issuer):
    uri = "openid-credential-offer://?credential_offer_uri=" + quote(issuer["base"] + "/offer")
    async with httpx.AsyncClient() as http:
        with pytest.raises(IssuanceError, match="https"):
            await wallet.receive_offer(uri, tx_code="493536", http=http)
        [info] = await wallet.receive_offer(uri, tx_code="493536", http=http, allow_http=True)
    assert info.vct == VCT


async def test_refuses_credential_bound_to_another_key(wallet, issuer):
    issuer["bind_to"] = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    async with httpx.AsyncClient() as http:
        with pytest.raises(IssuanceError, match="not bound to this wallet"):
            await wallet.receive_offer(issuer["offer"], tx_code="493536", http=http, allow_http=True)
    assert wallet.list_credentials() == []


async def test_refuses_credential_signed_by_unpublished_key(wallet, issuer):
    issuer["published"] = jwk.JWK.generate(kty="EC", crv="P-256")  # jwt-vc-issuer lists another key
    async with httpx.AsyncClient() as http:
        with pytest.raises(IssuanceError, match="does not verify: SD-JWT signature is invalid"):
            await wallet.receive_offer(issuer["offer"], tx_code="493536", http=http, allow_http=True)
    assert wallet.list_credentials() == []


# --- OpenID4VP -------------------------------------------------------------------------------


def _verifier_app(state: dict) -> FastAPI:
    app = FastAPI()

    @app.post("/wallet/response")
    async def response(request: Request):
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        state["form"] = form
        if form.get("state") != state["state"]:
            return JSONResponse({"error": "invalid_request", "error_description": "state"}, 400)
        vp_token = json.loads(form["vp_token"])
        try:
            verified = sdjwt.verify(vp_token["resident"][0], issuer_key=state["issuer_key"],
                                    nonce=state["nonce"], aud=state["client_id"], vct=VCT)
        except sdjwt.SdJwtError as exc:
            return JSONResponse({"error": "invalid_request", "error_description": str(exc)}, 400)
        state["verified"] = verified
        return {"redirect_uri": "https://verifier.example/done#response_code=abc"}

    @app.get("/request/{rid}")
    async def request_object(rid: str):
        header = sdjwt.b64url_encode(json.dumps({"alg": "none", "typ": "oauth-authz-req+jwt"}).encode())
        body = sdjwt.b64url_encode(json.dumps(state["request_object"]).encode())
        return Response(f"{header}.{body}.", media_type="application/oauth-authz-req+jwt")

    return app


@pytest.fixture
def verifier():
    state = {"issuer_key": jwk.JWK.generate(kty="EC", crv="P-256"), "nonce": secrets.token_urlsafe(16),
             "state": secrets.token_urlsafe(8)}
    with serve_app(_verifier_app(state)) as base:
        state["response_uri"] = f"{base}/wallet/response"
        state["client_id"] = "redirect_uri:" + state["response_uri"]
        yield state


def _request_uri(v: dict, claims=(("given_name",), ("commune_insee",)), vct=VCT, **extra) -> str:
    dcql = {"credentials": [{"id": "resident", "format": "dc+sd-jwt", "meta": {"vct_values": [vct]},
                             "claims": [{"path": list(p)} for p in claims]}]}
    params = {"client_id": v["client_id"], "response_type": "vp_token", "response_mode": "direct_post",
              "response_uri": v["response_uri"], "nonce": v["nonce"], "state": v["state"],
              "dcql_query": json.dumps(dcql), **extra}
    return "openid4vp://?" + urlencode(params)


async def test_present_only_requested_claims(wallet, verifier):
    info = wallet.add_credential(_issue(wallet.default_key.key, verifier["issuer_key"]))
    req = wallet.parse_request(_request_uri(verifier), allow_http=True)
    assert req.nonce == verifier["nonce"] and req.verifier == verifier["response_uri"]
    [cand] = wallet.match(req)["resident"]
    assert cand.credential_id == info.id and cand.disclose == [("given_name",)]
    assert cand.values == {"given_name": "Marie-Josée", "commune_insee": "97209"}
    async with httpx.AsyncClient() as http:
        answer = await wallet.respond(req, info.id, http=http, purpose="residents' discount")
    assert answer["redirect_uri"].startswith("https://verifier.example/done")
    v = verifier["verified"]
    assert v.claims["given_name"] == "Marie-Josée" and v.claims["commune_insee"] == "97209"
    assert "family_name" not in v.claims and "birthdate" not in v.claims
    assert v.key_binding["nonce"] == verifier["nonce"] and v.key_binding["aud"] == verifier["client_id"]
    assert verifier["form"]["state"] == verifier["state"]
    [act] = Wallet.open(wallet.path, PASS).activity
    assert act["kind"] == "presentation" and act["verifier"] == verifier["response_uri"]
    assert act["claims_disclosed"] == ["given_name"] and act["purpose"] == "residents' discount"
    assert act["accepted"] is True and abs(act["at"] - time.time()) < 30


async def test_request_for_missing_credential(wallet, verifier):
    wallet.add_credential(_issue(wallet.default_key.key, verifier["issuer_key"]))
    req = wallet.parse_request(_request_uri(verifier, vct="https://other/vct/Student"), allow_http=True)
    assert wallet.match(req) == {"resident": []}
    async with httpx.AsyncClient() as http:
        with pytest.raises(NoMatchingCredential, match="does not hold.*Student"):
            await wallet.respond(req, http=http)
    req2 = wallet.parse_request(_request_uri(verifier, claims=[("nationality",)]), allow_http=True)
    async with httpx.AsyncClient() as http:
        with pytest.raises(NoMatchingCredential):
            await wallet.respond(req2, http=http)
    assert wallet.match(req2) == {"resident": []}
    assert "form" not in verifier and wallet.activity == []


async def test_verifier_refusal_is_reported_and_logged(wallet, verifier):
    wallet.add_credential(_issue(wallet.default_key.key, jwk.JWK.generate(kty="EC", crv="P-256")))
    req = wallet.parse_request(_request_uri(verifier), allow_http=True)
    async with httpx.AsyncClient() as http:
        with pytest.raises(Exception, match="refused the presentation: invalid_request"):
            await wallet.respond(req, http=http)
    assert wallet.activity[0]["accepted"] is False


async def test_request_by_reference(wallet, verifier):
    info = wallet.add_credential(_issue(wallet.default_key.key, verifier["issuer_key"]))
    verifier["request_object"] = {
        "client_id": verifier["client_id"], "response_type": "vp_token", "response_mode": "direct_post",
        "response_uri": verifier["response_uri"], "nonce": verifier["nonce"], "state": verifier["state"],
        "dcql_query": {"credentials": [{"id": "resident", "format": "dc+sd-jwt",
                                        "meta": {"vct_values": [VCT]},
                                        "claims": [{"path": ["birthdate"]}]}]}}
    base = verifier["response_uri"].rsplit("/wallet/", 1)[0]
    uri = "openid4vp://?" + urlencode({"client_id": verifier["client_id"], "request_uri": f"{base}/request/1"})
    with pytest.raises(Exception, match="parse_request_async"):
        wallet.parse_request(uri, allow_http=True)
    async with httpx.AsyncClient() as http:
        req = await wallet.parse_request_async(uri, http=http, allow_http=True)
        assert req.nonce == verifier["nonce"]
        await wallet.respond(req, info.id, http=http)
        assert set(verifier["verified"].claims) >= {"birthdate"}
        assert "given_name" not in verifier["verified"].claims
        other = "openid4vp://?" + urlencode({"client_id": "redirect_uri:https://x.example/r",
                                             "request_uri": f"{base}/request/1"})
        with pytest.raises(Exception, match="client_id differs"):
            await wallet.parse_request_async(other, http=http, allow_http=True)


@pytest.mark.parametrize("change, message", [
    ({"client_id": "x509_san_dns:verifier.example"}, "prefix"),
    ({"client_id": "redirect_uri:https://elsewhere.example/cb"}, "client_id must be"),
    ({"response_mode": "fragment"}, "response_mode"),
    ({"nonce": ""}, "nonce"),
    ({"dcql_query": "{"}, "dcql_query"),
    ({"request_uri": "https://verifier.example/req"}, "parse_request_async"),
], ids=["prefix", "client-id-mismatch", "mode", "nonce", "dcql", "request-uri"])
def test_parse_request_rejections(wallet, change, message):
    v = {"client_id": "redirect_uri:https://v.example/r", "response_uri": "https://v.example/r",
         "nonce": "n", "state": "s"}
    base = {"client_id": v["client_id"], "response_type": "vp_token", "response_mode": "direct_post",
            "response_uri": v["response_uri"], "nonce": "n", "state": "s",
            "dcql_query": json.dumps({"credentials": [{"id": "a", "format": "dc+sd-jwt"}]})}
    base.update(change)
    with pytest.raises(Exception, match=message):
        wallet.parse_request("openid4vp://?" + urlencode(base))


def test_match_nested_paths_values_and_claim_sets(wallet):
    cred = sdjwt.issue({"address": SD({"locality": SD("Fort-de-France"), "postal_code": SD("97200")}),
                        "age_over_18": True, "given_name": SD("Marie")},
                       issuer_key=jwk.JWK.generate(kty="EC", crv="P-256"), iss="https://i.example", vct=VCT,
                       holder_jwk=wallet.default_key.key)
    info = wallet.add_credential(cred)
    v = {"client_id": "redirect_uri:https://v.example/r", "response_type": "vp_token",
         "response_mode": "direct_post", "response_uri": "https://v.example/r", "nonce": "n"}

    def req(query):
        return wallet.parse_request({**v, "dcql_query": {"credentials": [
            {"id": "q", "format": "dc+sd-jwt", "meta": {"vct_values": [VCT]}, **query}]}})

    [c] = wallet.match(req({"claims": [{"path": ["address", "locality"]}]}))["q"]
    assert c.credential_id == info.id and c.disclose == [("address",), ("address", "locality")]
    [c] = wallet.match(req({}))["q"]
    assert c.disclose == [] and "age_over_18" in c.always_visible
    assert wallet.match(req({"claims": [{"path": ["age_over_18"], "values": [False]}]}))["q"] == []
    [c] = wallet.match(req({"claims": [{"id": "a", "path": ["nationality"]}, {"id": "b", "path": ["given_name"]}],
                            "claim_sets": [["a"], ["b"]]}))["q"]
    assert c.disclose == [("given_name",)]
    with pytest.raises(Exception, match="unknown claim ids"):
        wallet.match(req({"claims": [{"id": "a", "path": ["x"]}], "claim_sets": [["zz"]]}))
