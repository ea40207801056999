"""DID methods: did:key and did:jwk (resolved offline) and did:web (resolved over HTTPS).

Public interface (shared with `did.sdjwt`, `did.vc`, `did.verify`):

- `resolve(did) -> dict`: the DID document of a did:key or did:jwk DID, offline, synchronous.
- `await resolve_async(did, *, allow_http=False, client=None) -> dict`: any supported method,
  did:web included (fetched with httpx).
- `verification_key(did_url, *, purpose=None) -> jwcrypto.jwk.JWK` (did:key, did:jwk) and
  `await verification_key_async(did_url, *, purpose=None, allow_http=False, client=None)` (all):
  the public key a DID URL such as `did:key:z6Mk…#z6Mk…` names. With `purpose` (for example
  `"assertionMethod"` for an issuer, `"authentication"` for a holder) the key must also be listed
  under that verification relationship. The returned JWK carries `kid` = the absolute DID URL.
- `did_key_from_jwk(jwk) -> str`, `did_jwk_from_jwk(jwk) -> str`: the DID of a public key
  (a private JWK is accepted and only its public half is used).

Every failure raises a `DIDError` subclass (a `ValueError`) whose message says what is wrong
and is safe to return to a client in a 4xx response: `InvalidDID` (malformed DID or DID URL,
or a key type we do not support), `MethodNotSupported`, `DIDNotFound` (did:web document absent),
`ResolutionError` (did:web fetch failed, oversized, or not a valid document for that DID),
`VerificationMethodNotFound`.

Why hand-written: no maintained Python library resolves these methods (didkit is archived and
cannot be on a hot path, see identity.md section 4); each method is a few lines over
jwcrypto (JWK), `base58` (base58btc) and `cryptography` (P-256 point compression).

did:key follows the W3C CCG "did:key Method" spec v0.9 (https://w3c-ccg.github.io/did-method-key/):
`did:key:z<base58btc(varint(multicodec) || public key bytes)>`, with multicodec `ed25519-pub`
(0xed, varint `ed 01`, 32 raw bytes, DIDs start `z6Mk`) and `p256-pub` (0x1200, varint `80 24`,
33-byte SEC1 *compressed* point, DIDs start `zDn`). Its document has one verification method,
id `did:key:<mb>#<mb>`, referenced from `authentication`, `assertionMethod`,
`capabilityInvocation` and `capabilityDelegation`. Representation: the spec's default
`publicKeyFormat` is `Multikey` (`publicKeyMultibase` = the DID's own multibase value, context
`https://w3id.org/security/multikey/v1`); `JsonWebKey2020` (`publicKeyJwk`, context
`https://w3id.org/security/suites/jws-2020/v1`) is produced on request. didkit 0.3.3 instead
emits the legacy `Ed25519VerificationKey2018` / `EcdsaSecp256r1VerificationKey2019` types with a
`publicKeyJwk`: same key, same verification method id, other representation (the tests check
that the key material is identical). We do not derive an X25519 `keyAgreement` key from
Ed25519 keys (the spec's `enableEncryptionKeyDerivation` option, off by default): the wallet signs
with these keys and never encrypts to them.

did:jwk follows https://github.com/quartzjer/did-jwk/blob/main/spec.md: `did:jwk:` +
base64url(UTF-8 JSON of a *public* JWK), one `JsonWebKey2020` method with the fixed id `#0`;
`use: "sig"` drops `keyAgreement`, `use: "enc"` keeps only `keyAgreement`. We serialise the JWK
with its members sorted and no whitespace (as the spec's P-256 example does), so the same key
always gives the same DID.

did:web follows https://w3c-ccg.github.io/did-method-web/: `did:web:example.com` →
`https://example.com/.well-known/did.json`; `did:web:example.com:user:alice` →
`https://example.com/user/alice/did.json`; a port is percent-encoded (`example.com%3A8443`).
Safety: HTTPS only, no redirects, a 5 s timeout and a 64 KiB size limit by default, and the
document's `id` must equal the DID. Plain `http://` and loopback hosts (`localhost`,
127.0.0.0/8, `::1`) are allowed only with `allow_http=True`, which exists for tests and local
development and must never be set in production. IP-literal hosts are refused otherwise, and so
is a domain whose DNS answer is a non-public address (best-effort SSRF guard, see
`refuse_internal_host`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import re
import socket
from typing import Any
from urllib.parse import unquote

import base58
import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwk as jwk_mod

__all__ = [
    "DIDError",
    "InvalidDID",
    "MethodNotSupported",
    "DIDNotFound",
    "ResolutionError",
    "VerificationMethodNotFound",
    "resolve",
    "refuse_internal_host",
    "resolve_async",
    "verification_key",
    "verification_key_async",
    "did_key_from_jwk",
    "did_jwk_from_jwk",
    "jwk_from_multikey",
    "multikey_from_jwk",
    "did_web_url",
    "DID_CONTEXT",
    "MULTIKEY_CONTEXT",
    "JWS2020_CONTEXT",
    "WEB_MAX_BYTES",
    "WEB_TIMEOUT",
]

DID_CONTEXT = "https://www.w3.org/ns/did/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"
JWS2020_CONTEXT = "https://w3id.org/security/suites/jws-2020/v1"

WEB_MAX_BYTES = 64 * 1024
WEB_TIMEOUT = 5.0
_MAX_DID_LENGTH = 4096

# Multicodec prefixes, as unsigned varints (multiformats/multicodec table).
_ED25519_PUB = b"\xed\x01"  # 0xed
_P256_PUB = b"\x80\x24"  # 0x1200

_RELATIONSHIPS = (
    "authentication",
    "assertionMethod",
    "capabilityInvocation",
    "capabilityDelegation",
    "keyAgreement",
)


class DIDError(ValueError):
    """A DID could not be parsed, resolved or dereferenced; the message is safe to show."""


class InvalidDID(DIDError):
    pass


class MethodNotSupported(DIDError):
    pass


class DIDNotFound(DIDError):
    pass


class ResolutionError(DIDError):
    pass


class VerificationMethodNotFound(DIDError):
    pass


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64u_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise InvalidDID("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidDID("not base64url") from exc


def _as_jwk(key: Any) -> jwk_mod.JWK:
    if isinstance(key, jwk_mod.JWK):
        return key
    try:
        if isinstance(key, (str, bytes)):
            return jwk_mod.JWK.from_json(key)
        if isinstance(key, dict):
            return jwk_mod.JWK(**key)
    except Exception as exc:  # jwcrypto raises several types for bad keys
        raise InvalidDID(f"not a valid JWK: {exc}") from exc
    raise InvalidDID("expected a JWK (jwcrypto JWK, dict or JSON string)")


def _public_members(key: Any) -> dict:
    """The required public members of an Ed25519 or P-256 JWK (RFC 7638 member set)."""
    k = _as_jwk(key)
    pub = json.loads(k.export_public())
    kty, crv = pub.get("kty"), pub.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        return {"crv": crv, "kty": kty, "x": pub["x"]}
    if kty == "EC" and crv == "P-256":
        return {"crv": crv, "kty": kty, "x": pub["x"], "y": pub["y"]}
    raise InvalidDID(f"unsupported key type {kty}/{crv}: only Ed25519 (OKP) and P-256 (EC) keys")


def _split_did_url(did_url: str) -> tuple[str, str | None]:
    if not isinstance(did_url, str):
        raise InvalidDID("a DID must be a string")
    if len(did_url) > _MAX_DID_LENGTH:
        raise InvalidDID(f"DID longer than {_MAX_DID_LENGTH} characters")
    base, sep, fragment = did_url.partition("#")
    if "?" in base:
        raise InvalidDID("DID URL query parameters are not supported")
    if sep and not fragment:
        raise InvalidDID("empty DID URL fragment")
    return base, (fragment if sep else None)


def _method(did: str) -> tuple[str, str]:
    m = re.fullmatch(r"did:([a-z0-9]+):(.+)", did)
    if not m:
        raise InvalidDID(f"not a DID: expected did:<method>:<id>, got {did[:80]!r}")
    return m.group(1), m.group(2)


# --------------------------------------------------------------------------------------------
# did:key
# --------------------------------------------------------------------------------------------


def multikey_from_jwk(key: Any) -> str:
    """The multibase (base58btc, `z`) Multikey value of an Ed25519 or P-256 public key."""
    pub = _public_members(key)
    if pub["kty"] == "OKP":
        raw = _b64u_decode(pub["x"])
        return "z" + base58.b58encode(_ED25519_PUB + raw).decode("ascii")
    point = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + _b64u_decode(pub["x"]) + _b64u_decode(pub["y"])
    )
    compressed = point.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    return "z" + base58.b58encode(_P256_PUB + compressed).decode("ascii")


def jwk_from_multikey(multibase: str) -> jwk_mod.JWK:
    """Decode a `z…` Multikey value (ed25519-pub or p256-pub) to a public jwcrypto JWK."""
    if not isinstance(multibase, str) or not multibase.startswith("z"):
        raise InvalidDID("did:key identifier must be multibase base58btc (start with 'z')")
    try:
        data = base58.b58decode(multibase[1:])
    except ValueError as exc:
        raise InvalidDID("did:key identifier is not valid base58btc") from exc
    if data.startswith(_ED25519_PUB):
        raw = data[len(_ED25519_PUB) :]
        if len(raw) != 32:
            raise InvalidDID(f"Ed25519 did:key must hold 32 key bytes, got {len(raw)}")
        return jwk_mod.JWK(kty="OKP", crv="Ed25519", x=_b64u(raw))
    if data.startswith(_P256_PUB):
        raw = data[len(_P256_PUB) :]
        # The spec mandates the 33-byte compressed SEC1 form for P-256.
        if len(raw) != 33 or raw[0] not in (2, 3):
            raise InvalidDID("P-256 did:key must hold a 33-byte compressed point")
        try:
            point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError as exc:
            raise InvalidDID("P-256 did:key is not a point on the curve") from exc
        nums = point.public_numbers()
        return jwk_mod.JWK(
            kty="EC",
            crv="P-256",
            x=_b64u(nums.x.to_bytes(32, "big")),
            y=_b64u(nums.y.to_bytes(32, "big")),
        )
    raise InvalidDID("unsupported did:key multicodec: only ed25519-pub (z6Mk…) and p256-pub (zDn…)")


def did_key_from_jwk(key: Any) -> str:
    """`did:key:z…` of an Ed25519 or P-256 key (jwcrypto JWK, dict or JSON; public half used)."""
    return "did:key:" + multikey_from_jwk(key)


def _resolve_did_key(did: str, ident: str, public_key_format: str) -> dict:
    public = jwk_from_multikey(ident)
    if multikey_from_jwk(public) != ident:  # non-canonical encodings (e.g. leading zeros)
        raise InvalidDID("did:key identifier is not in canonical form")
    vm_id = f"{did}#{ident}"
    if public_key_format == "Multikey":
        vm = {"id": vm_id, "type": "Multikey", "controller": did, "publicKeyMultibase": ident}
        context = [DID_CONTEXT, MULTIKEY_CONTEXT]
    elif public_key_format == "JsonWebKey2020":
        vm = {
            "id": vm_id,
            "type": "JsonWebKey2020",
            "controller": did,
            "publicKeyJwk": _public_members(public),
        }
        context = [DID_CONTEXT, JWS2020_CONTEXT]
    else:
        raise ValueError("public_key_format must be 'Multikey' or 'JsonWebKey2020'")
    doc = {"@context": context, "id": did, "verificationMethod": [vm]}
    for rel in ("authentication", "assertionMethod", "capabilityInvocation", "capabilityDelegation"):
        doc[rel] = [vm_id]
    return doc


# --------------------------------------------------------------------------------------------
# did:jwk
# --------------------------------------------------------------------------------------------


def did_jwk_from_jwk(key: Any) -> str:
    """`did:jwk:…` of an Ed25519 or P-256 key: base64url of its sorted, compact public JWK."""
    pub = _public_members(key)
    text = json.dumps(pub, sort_keys=True, separators=(",", ":"))
    return "did:jwk:" + _b64u(text.encode("utf-8"))


def _resolve_did_jwk(did: str, ident: str) -> dict:
    try:
        key_json = json.loads(_b64u_decode(ident).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDID("did:jwk identifier does not decode to JSON") from exc
    if not isinstance(key_json, dict):
        raise InvalidDID("did:jwk identifier does not decode to a JSON object")
    if "d" in key_json or any(k in key_json for k in ("p", "q", "dp", "dq", "qi", "k")):
        raise InvalidDID("did:jwk must not contain private key material")
    try:
        parsed = jwk_mod.JWK(**key_json)
    except Exception as exc:
        raise InvalidDID(f"did:jwk does not hold a valid JWK: {exc}") from exc
    if parsed.has_private:
        raise InvalidDID("did:jwk must not contain private key material")
    vm_id = f"{did}#0"
    doc = {
        "@context": [DID_CONTEXT, JWS2020_CONTEXT],
        "id": did,
        "verificationMethod": [
            {"id": vm_id, "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": key_json}
        ],
    }
    use = key_json.get("use")
    if use != "enc":
        for rel in ("assertionMethod", "authentication", "capabilityInvocation", "capabilityDelegation"):
            doc[rel] = [vm_id]
    if use != "sig":
        doc["keyAgreement"] = [vm_id]
    return doc


# --------------------------------------------------------------------------------------------
# did:web
# --------------------------------------------------------------------------------------------

_HOST_RE = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")


def _is_loopback(host: str) -> bool:
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def did_web_url(did: str, *, allow_http: bool = False) -> str:
    """The URL of a did:web DID's document (https, or http when `allow_http`)."""
    method, ident = _method(did)
    if method != "web":
        raise InvalidDID("not a did:web DID")
    parts = ident.split(":")
    if any(p == "" for p in parts):
        raise InvalidDID("did:web has an empty segment")
    host_port = unquote(parts[0])
    host, _, port = host_port.rpartition(":") if re.search(r":\d+$", host_port) else (host_port, "", "")
    if not _HOST_RE.fullmatch(host) or host.startswith(("-", ".")) or ".." in host:
        raise InvalidDID(f"did:web has an invalid host {host_port!r}")
    if port and not (0 < int(port) < 65536):
        raise InvalidDID("did:web has an invalid port")
    is_ip = host.startswith("[") or re.fullmatch(r"[0-9.]+", host) is not None
    if not allow_http:
        if _is_loopback(host):
            raise ResolutionError("did:web on a loopback host is allowed only in test mode (allow_http)")
        if is_ip:
            raise InvalidDID("did:web must name a domain, not an IP address")
    path_parts = [unquote(p) for p in parts[1:]]
    for p in path_parts:
        if p in (".", "..") or "/" in p or not re.fullmatch(r"[A-Za-z0-9._~!$&'()*+,;=@%-]+", p):
            raise InvalidDID(f"did:web has an invalid path segment {p!r}")
    path = "/" + "/".join(path_parts) + "/did.json" if path_parts else "/.well-known/did.json"
    scheme = "http" if allow_http else "https"
    netloc = host.lower() + (f":{port}" if port else "")
    return f"{scheme}://{netloc}{path}"


async def refuse_internal_host(host: str) -> None:
    """Refuse a did:web domain whose DNS names a loopback/private/link-local address (SSRF).

    A best-effort pre-check: httpx resolves the name again when connecting, so a DNS-rebinding
    attacker could still race it; deployments that resolve untrusted did:web DIDs should also
    egress through a proxy that blocks internal ranges.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, 443, type=socket.SOCK_STREAM), WEB_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as exc:
        raise ResolutionError(f"cannot resolve the did:web host {host!r}") from exc
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if not addr.is_global:
            raise ResolutionError(f"did:web host {host!r} resolves to a non-public address")


async def _resolve_did_web(did: str, *, allow_http: bool, client: httpx.AsyncClient | None,
                           max_bytes: int, timeout: float) -> dict:
    url = did_web_url(did, allow_http=allow_http)
    own = client is None
    if own and not allow_http:
        await refuse_internal_host(httpx.URL(url).host)
    http = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    try:
        try:
            async with http.stream("GET", url, headers={"Accept": "application/did+json, application/json"},
                                   timeout=timeout, follow_redirects=False) as resp:
                if resp.status_code in (404, 410):
                    raise DIDNotFound(f"DID document not found at {url} (HTTP {resp.status_code})")
                if resp.status_code != 200:
                    raise ResolutionError(f"fetching {url} failed: HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ResolutionError(f"DID document at {url} exceeds {max_bytes} bytes")
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        raise ResolutionError(f"DID document at {url} exceeds {max_bytes} bytes")
        except httpx.TimeoutException as exc:
            raise ResolutionError(f"fetching {url} timed out") from exc
        except httpx.HTTPError as exc:
            raise ResolutionError(f"fetching {url} failed: {type(exc).__name__}") from exc
    finally:
        if own:
            await http.aclose()
    try:
        doc = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResolutionError(f"DID document at {url} is not JSON") from exc
    if not isinstance(doc, dict):
        raise ResolutionError(f"DID document at {url} is not a JSON object")
    if doc.get("id") != did:
        raise ResolutionError(f"DID document at {url} has id {str(doc.get('id'))[:100]!r}, expected {did!r}")
    vms = doc.get("verificationMethod", [])
    if not isinstance(vms, list) or not all(isinstance(v, dict) for v in vms):
        raise ResolutionError("DID document verificationMethod must be a list of objects")
    return doc


# --------------------------------------------------------------------------------------------
# Resolution and dereferencing
# --------------------------------------------------------------------------------------------


def resolve(did: str, *, public_key_format: str = "Multikey") -> dict:
    """Resolve a did:key or did:jwk DID offline to its DID document (use `resolve_async` for did:web).

    `public_key_format` applies to did:key: `Multikey` (default, per the spec) or `JsonWebKey2020`.
    """
    base, fragment = _split_did_url(did)
    if fragment is not None:
        raise InvalidDID("resolve() takes a DID, not a DID URL with a fragment")
    method, ident = _method(base)
    if method == "key":
        return _resolve_did_key(base, ident, public_key_format)
    if method == "jwk":
        return _resolve_did_jwk(base, ident)
    if method == "web":
        raise MethodNotSupported("did:web needs the network: use `await resolve_async(did)`")
    raise MethodNotSupported(f"DID method {method!r} is not supported (did:key, did:jwk, did:web)")


async def resolve_async(did: str, *, allow_http: bool = False, client: httpx.AsyncClient | None = None,
                        public_key_format: str = "Multikey", max_bytes: int = WEB_MAX_BYTES,
                        timeout: float = WEB_TIMEOUT) -> dict:
    """Resolve any supported DID. did:web is fetched over HTTPS (`allow_http` only in tests)."""
    base, fragment = _split_did_url(did)
    if fragment is not None:
        raise InvalidDID("resolve_async() takes a DID, not a DID URL with a fragment")
    method, _ = _method(base)
    if method == "web":
        return await _resolve_did_web(base, allow_http=allow_http, client=client,
                                      max_bytes=max_bytes, timeout=timeout)
    return resolve(base, public_key_format=public_key_format)


def _vm_key(vm: dict) -> jwk_mod.JWK:
    if "publicKeyJwk" in vm:
        pub = vm["publicKeyJwk"]
        if not isinstance(pub, dict):
            raise ResolutionError("publicKeyJwk must be a JSON object")
        if "d" in pub:
            raise ResolutionError("verification method exposes private key material")
        try:
            return jwk_mod.JWK(**pub)
        except Exception as exc:
            raise ResolutionError(f"verification method has an invalid publicKeyJwk: {exc}") from exc
    if "publicKeyMultibase" in vm:
        try:
            return jwk_from_multikey(vm["publicKeyMultibase"])
        except InvalidDID as exc:
            raise ResolutionError(f"verification method has an invalid publicKeyMultibase: {exc}") from exc
    if "publicKeyBase58" in vm and vm.get("type") == "Ed25519VerificationKey2018":
        # Legacy form still published by deployed stacks (Sunbird RC, Inji, didkit's did:web).
        try:
            raw = base58.b58decode(vm["publicKeyBase58"])
        except (ValueError, TypeError) as exc:
            raise ResolutionError("verification method has an invalid publicKeyBase58") from exc
        if len(raw) != 32:
            raise ResolutionError("Ed25519 publicKeyBase58 must hold 32 bytes")
        return jwk_mod.JWK(kty="OKP", crv="Ed25519", x=_b64u(raw))
    raise ResolutionError("verification method has no supported key (publicKeyJwk, publicKeyMultibase, "
                          "or Ed25519VerificationKey2018 publicKeyBase58)")


def _absolute(ref: str, did: str) -> str:
    return did + ref if ref.startswith("#") else ref


def _dereference(doc: dict, did: str, fragment: str | None, purpose: str | None) -> jwk_mod.JWK:
    methods: dict[str, dict] = {}
    for vm in doc.get("verificationMethod", []) or []:
        if isinstance(vm, dict) and isinstance(vm.get("id"), str):
            methods[_absolute(vm["id"], did)] = vm
    # Embedded verification methods inside relationships are also valid (DID Core 5.3).
    for rel in _RELATIONSHIPS:
        for item in doc.get(rel, []) or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                methods.setdefault(_absolute(item["id"], did), item)
    if fragment is None:
        candidates = list(methods)
        if purpose is not None:
            candidates = [
                m for m in candidates
                if any(_absolute(r if isinstance(r, str) else r.get("id", ""), did) == m
                       for r in doc.get(purpose, []) or [])
            ]
        if len(candidates) != 1:
            raise VerificationMethodNotFound(
                f"{did} has {len(candidates)} usable verification methods: name one with a #fragment"
            )
        vm_id = candidates[0]
    else:
        vm_id = f"{did}#{fragment}"
    vm = methods.get(vm_id)
    if vm is None:
        raise VerificationMethodNotFound(f"no verification method {vm_id} in the DID document")
    if vm.get("controller") not in (None, did) and doc.get("id") == did:
        # A method controlled by another DID is legal in DID Core, but then its key must be
        # checked against that controller; we do not follow such chains.
        raise VerificationMethodNotFound(f"verification method {vm_id} is controlled by another DID")
    if purpose is not None:
        refs = doc.get(purpose, []) or []
        ids = {_absolute(r if isinstance(r, str) else r.get("id", ""), did) for r in refs}
        if vm_id not in ids:
            raise VerificationMethodNotFound(f"{vm_id} is not authorised for {purpose}")
    key = _vm_key(vm)
    result = jwk_mod.JWK(**{**json.loads(key.export_public()), "kid": vm_id})
    return result


def verification_key(did_url: str, *, purpose: str | None = None) -> jwk_mod.JWK:
    """Public key (jwcrypto JWK, `kid` = DID URL) named by a did:key/did:jwk DID URL, offline.

    Without a fragment the DID must have exactly one (matching) verification method.
    """
    did, fragment = _split_did_url(did_url)
    doc = resolve(did)
    return _dereference(doc, did, fragment, purpose)


async def verification_key_async(did_url: str, *, purpose: str | None = None, allow_http: bool = False,
                                 client: httpx.AsyncClient | None = None) -> jwk_mod.JWK:
    """As `verification_key`, for every supported method including did:web."""
    did, fragment = _split_did_url(did_url)
    doc = await resolve_async(did, allow_http=allow_http, client=client)
    return _dereference(doc, did, fragment, purpose)
