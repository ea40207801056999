"""OpenID for Verifiable Presentations 1.0 — the wallet side (DCQL, SD-JWT VC, direct_post).

- :func:`parse_request` reads an authorization request passed by value
  (``openid4vp://?client_id=...&response_type=vp_token&response_mode=direct_post&response_uri=...
  &nonce=...&state=...&dcql_query=<JSON>``). Client identifier prefix supported: ``redirect_uri:``
  (section 5.9.3), whose value must equal the ``response_uri`` for ``direct_post``; such requests
  are unsigned by definition, so the verifier's identity is its URL — shown to the user.
- :func:`match` evaluates the DCQL query (section 6) against the wallet: for each credential
  query, the stored SD-JWT VCs whose ``vct`` is in ``meta.vct_values`` and that hold every
  requested claim path (``claims``; ``claim_sets`` picks the first satisfiable set; no ``claims``
  = only what is always disclosed). Result: candidates with the claims that would be disclosed.
- :func:`respond` presents with ``did.sdjwt.present`` (only the requested selectively disclosable
  claims; KB-JWT ``aud`` = the full client_id, ``nonce`` = the request nonce, signed by the key
  the credential is bound to), POSTs ``vp_token`` = ``{"<query id>": ["<SD-JWT+KB>"]}`` and
  ``state`` as ``application/x-www-form-urlencoded`` to ``response_uri`` (section 8.2) and records
  the presentation in the wallet's activity log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from did import sdjwt
from did.wallet.store import WalletError

SD_JWT_FORMATS = ("dc+sd-jwt", "vc+sd-jwt")


class PresentationError(WalletError):
    pass


class NoMatchingCredential(PresentationError):
    """The wallet holds no credential that satisfies the request."""


@dataclass
class PresentationRequest:
    client_id: str
    client_id_prefix: str
    response_uri: str
    response_mode: str
    nonce: str
    state: str | None
    dcql_query: dict
    purpose: str | None = None
    raw: dict = field(default_factory=dict)

    @property
    def verifier(self) -> str:
        """What to show the user as the verifier (the URL for a redirect_uri: client)."""
        return self.client_id.split(":", 1)[1] if ":" in self.client_id else self.client_id


@dataclass
class Candidate:
    query_id: str
    credential_id: str
    vct: str | None
    issuer: str | None
    disclose: list  # claim paths (tuples) that will be revealed (selectively disclosable ones)
    always_visible: list  # top-level claim names the verifier always sees
    values: dict  # path as "a/b" -> value, for the consent screen


def _http_url(url: Any, allow_http: bool) -> bool:
    if not isinstance(url, str):
        return False
    p = urlsplit(url)
    return bool(p.netloc) and (p.scheme == "https" or (allow_http and p.scheme == "http"))


def parse_request(uri: str | dict, *, allow_http: bool = False) -> PresentationRequest:
    if isinstance(uri, dict):
        params = {k: v for k, v in uri.items()}
    else:
        if not isinstance(uri, str) or not uri.strip():
            raise PresentationError("empty presentation request")
        params = {k: v[0] for k, v in parse_qs(urlsplit(uri.strip()).query).items()}
    if "request_uri" in params or "request" in params:
        raise PresentationError("request_uri/request: use parse_request_async (by-reference requests)")
    client_id = params.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise PresentationError("presentation request has no client_id")
    prefix = client_id.split(":", 1)[0] if ":" in client_id else ""
    if prefix != "redirect_uri":
        raise PresentationError(f"client_id prefix {prefix or '(none)'!r} is not supported (only redirect_uri:)")
    if params.get("response_type") != "vp_token":
        raise PresentationError("response_type must be vp_token")
    mode = params.get("response_mode") or "fragment"
    if mode != "direct_post":
        raise PresentationError(f"response_mode {mode!r} is not supported (only direct_post)")
    response_uri = params.get("response_uri")
    if not _http_url(response_uri, allow_http):
        raise PresentationError("response_uri is missing or not https")
    if client_id.split(":", 1)[1] != response_uri:
        raise PresentationError("for a redirect_uri: client, client_id must be redirect_uri:<response_uri>")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise PresentationError("presentation request has no nonce")
    raw_q = params.get("dcql_query")
    try:
        dcql = json.loads(raw_q) if isinstance(raw_q, str) else raw_q
    except ValueError:
        raise PresentationError("dcql_query is not valid JSON") from None
    if not isinstance(dcql, dict) or not isinstance(dcql.get("credentials"), list) or not dcql["credentials"]:
        raise PresentationError("presentation request has no DCQL query with credentials")
    for q in dcql["credentials"]:
        if not isinstance(q, dict) or not isinstance(q.get("id"), str) or not isinstance(q.get("format"), str):
            raise PresentationError("a DCQL credential query lacks its id or format")
    return PresentationRequest(client_id=client_id, client_id_prefix=prefix, response_uri=response_uri,
                               response_mode=mode, nonce=nonce, state=params.get("state"),
                               dcql_query=dcql, purpose=params.get("purpose"), raw=params)


async def parse_request_async(uri: str | dict, *, http: httpx.AsyncClient,
                              allow_http: bool = False) -> PresentationRequest:
    """As :func:`parse_request`, and also follows ``request_uri`` (RFC 9101 / OID4VP 5.10): the
    request object is fetched (GET, or POST when ``request_uri_method=post``). Only unsigned
    request objects (``alg: none``) are accepted, and only for the ``redirect_uri:`` prefix (the
    only prefix supported, whose requests cannot be signed); its ``client_id`` must equal the
    one in the URI."""
    if isinstance(uri, dict):
        params = dict(uri)
    else:
        params = {k: v[0] for k, v in parse_qs(urlsplit(str(uri).strip()).query).items()}
    if "request" in params:
        raise PresentationError("request objects passed by value (request=) are not supported")
    if "request_uri" not in params:
        return parse_request(params, allow_http=allow_http)
    ref = params["request_uri"]
    if not _http_url(ref, allow_http):
        raise PresentationError("request_uri is not https")
    method = params.get("request_uri_method", "get")
    try:
        if method == "post":
            resp = await http.post(ref, data={}, headers={"Accept": "application/oauth-authz-req+jwt"},
                                   follow_redirects=False)
        elif method == "get":
            resp = await http.get(ref, headers={"Accept": "application/oauth-authz-req+jwt"},
                                  follow_redirects=False)
        else:
            raise PresentationError("request_uri_method must be get or post")
    except httpx.HTTPError as exc:
        raise PresentationError(f"could not fetch the request: {type(exc).__name__}") from None
    if resp.status_code != 200 or len(resp.content) > 64 * 1024:
        raise PresentationError(f"could not fetch the request: HTTP {resp.status_code}")
    parts = resp.text.strip().split(".")
    if len(parts) != 3:
        raise PresentationError("the request object is not a JWT")
    try:
        header = json.loads(sdjwt.b64url_decode(parts[0]))
        obj = json.loads(sdjwt.b64url_decode(parts[1]))
    except (sdjwt.SdJwtError, ValueError):
        raise PresentationError("the request object is not a JWT") from None
    if not isinstance(header, dict) or not isinstance(obj, dict):
        raise PresentationError("the request object is not a JWT")
    if header.get("alg") != "none" or parts[2]:
        raise PresentationError("signed request objects are not supported (only redirect_uri: clients)")
    if obj.get("client_id") != params.get("client_id"):
        raise PresentationError("the request object's client_id differs from the request's")
    return parse_request(obj, allow_http=allow_http)


def _path(p: Any) -> tuple:
    if not isinstance(p, list) or not p or not all(isinstance(x, (str, int)) and not isinstance(x, bool) or x is None for x in p):
        raise PresentationError("a DCQL claim path is not a non-empty array of strings/integers")
    if any(x is None for x in p):
        raise PresentationError("DCQL wildcard (null) claim paths are not supported")
    return tuple(p)


def _lookup(claims: Any, path: tuple) -> tuple[bool, Any]:
    cur = claims
    for step in path:
        if isinstance(step, str) and isinstance(cur, dict) and step in cur:
            cur = cur[step]
        elif isinstance(step, int) and isinstance(cur, list) and 0 <= step < len(cur):
            cur = cur[step]
        else:
            return False, None
    return True, cur


def _candidate_for(wallet, query: dict, cid: str) -> Candidate | None:
    info = wallet.credential_info(cid)
    if info.format not in SD_JWT_FORMATS or query.get("format") not in SD_JWT_FORMATS:
        return None
    vcts = (query.get("meta") or {}).get("vct_values")
    if isinstance(vcts, list) and info.vct not in vcts:
        return None
    if info.expired:
        return None
    cred = wallet.get_credential(cid)
    claims = wallet.credential_claims(cid)
    disclosable = set(sdjwt.disclosures_by_path(cred))
    queries = query.get("claims")
    if queries is None:
        wanted_sets: list[list[tuple]] = [[]]
    else:
        if not isinstance(queries, list):
            raise PresentationError("DCQL claims must be an array")
        by_id = {}
        all_paths = []
        for cq in queries:
            if not isinstance(cq, dict):
                raise PresentationError("a DCQL claims query is not an object")
            p = _path(cq.get("path"))
            all_paths.append((p, cq.get("values")))
            if cq.get("id"):
                by_id[cq["id"]] = (p, cq.get("values"))
        sets = query.get("claim_sets")
        if isinstance(sets, list) and sets:
            if any(not isinstance(s, list) or any(i not in by_id for i in s) for s in sets):
                raise PresentationError("DCQL claim_sets refer to unknown claim ids")
            wanted_sets = [[by_id[i] for i in s] for s in sets]
        else:
            wanted_sets = [all_paths]
    for wanted in wanted_sets:
        values = {}
        ok = True
        for item in wanted:
            p, allowed = item if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], tuple) else (item, None)
            found, value = _lookup(claims, p)
            if not found or (isinstance(allowed, list) and value not in allowed):
                ok = False
                break
            values["/".join(map(str, p))] = value
        if not ok:
            continue
        disclose = []
        for item in wanted:
            p = item[0] if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], tuple) else item
            disclose += [d for d in disclosable if d[: len(p)] == p or p[: len(d)] == d]
        disclose = sorted(set(disclose), key=lambda t: tuple(map(str, t)))
        # the verifier also sees every claim that is not selectively disclosable
        jwt = cred.split("~", 1)[0]
        _, payload = sdjwt._unverified_jwt(jwt, "SD-JWT")
        visible = sorted(k for k in payload if k not in ("_sd", "_sd_alg"))
        return Candidate(query_id=query["id"], credential_id=cid, vct=info.vct, issuer=info.issuer,
                         disclose=disclose, always_visible=visible, values=values)
    return None


def match(wallet, request: PresentationRequest) -> dict[str, list[Candidate]]:
    """For every DCQL credential query id, the wallet's matching credentials (possibly none)."""
    out: dict[str, list[Candidate]] = {}
    for query in request.dcql_query["credentials"]:
        out[query["id"]] = [c for cid in list(wallet._state["credentials"])
                            if (c := _candidate_for(wallet, query, cid)) is not None]
    return out


async def respond(wallet, request: PresentationRequest, credential_id: str | dict[str, str] | None = None, *,
                  http: httpx.AsyncClient, purpose: str | None = None) -> dict:
    """Present the chosen credential(s) and POST the response; returns the verifier's JSON answer
    (e.g. ``{"redirect_uri": ...}``). `credential_id`: one id (for a single-query request), a
    ``{query id: credential id}`` map, or None to take the first match of every query."""
    matches = match(wallet, request)
    queries = request.dcql_query["credentials"]
    chosen: dict[str, Candidate] = {}
    for q in queries:
        qid = q["id"]
        cands = matches.get(qid, [])
        want = credential_id.get(qid) if isinstance(credential_id, dict) else credential_id
        pick = next((c for c in cands if want is None or c.credential_id == want), None)
        if pick is None:
            if q.get("required", True) is False or request.dcql_query.get("credential_sets"):
                continue
            what = ", ".join((q.get("meta") or {}).get("vct_values") or [q.get("format")])
            raise NoMatchingCredential(
                f"the verifier asks for a credential this wallet does not hold ({what})"
                if want is None else "the chosen credential does not satisfy the verifier's request")
        chosen[qid] = pick
    if not chosen:
        raise NoMatchingCredential("the wallet holds none of the requested credentials")

    vp_token: dict[str, list[str]] = {}
    for qid, cand in chosen.items():
        info = wallet.credential_info(cand.credential_id)
        if info.holder_kid is None:
            raise PresentationError("this credential is not bound to a key of this wallet")
        key = wallet.key(info.holder_kid).key
        try:
            vp = sdjwt.present(wallet.get_credential(cand.credential_id), cand.disclose,
                               holder_key=key, nonce=request.nonce, aud=request.client_id)
        except sdjwt.SdJwtError as exc:
            raise PresentationError(f"cannot build the presentation: {exc}") from None
        vp_token[qid] = [vp]

    form = {"vp_token": json.dumps(vp_token, separators=(",", ":"))}
    if request.state is not None:
        form["state"] = request.state
    try:
        resp = await http.post(request.response_uri, data=form, headers={"Accept": "application/json"},
                               follow_redirects=False)
    except httpx.HTTPError as exc:
        raise PresentationError(f"could not reach the verifier: {type(exc).__name__}") from None
    try:
        answer = resp.json() if resp.content else {}
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    wallet._record_activity({
        "kind": "presentation",
        "verifier": request.verifier,
        "client_id": request.client_id,
        "credentials": [{"credential_id": c.credential_id, "vct": c.vct, "issuer": c.issuer,
                         "claims": ["/".join(map(str, p)) for p in c.disclose]} for c in chosen.values()],
        "claims_disclosed": sorted({"/".join(map(str, p)) for c in chosen.values() for p in c.disclose}),
        "purpose": purpose or request.purpose,
        "accepted": resp.status_code == 200,
        "http_status": resp.status_code,
    })
    wallet.save()
    if resp.status_code != 200:
        err = answer.get("error") if isinstance(answer.get("error"), str) else f"HTTP {resp.status_code}"
        desc = answer.get("error_description")
        raise PresentationError(f"the verifier refused the presentation: {err}"
                                + (f": {str(desc)[:300]}" if isinstance(desc, str) else ""))
    return answer
