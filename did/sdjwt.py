"""SD-JWT (RFC 9901) with the SD-JWT VC profile (draft-ietf-oauth-sd-jwt-vc).

Three roles, three functions:

- :func:`issue` (issuer): a JWT signed with ES256 (P-256) or EdDSA (Ed25519), header
  ``typ: dc+sd-jwt``, ``_sd_alg: sha-256``, the VC claims ``iss``, ``vct``, ``iat``, ``nbf``,
  ``exp``, ``cnf.jwk`` (holder binding) and an optional ``status`` (a Token Status List reference),
  plus always-visible and selectively disclosable claims (object properties and array elements,
  marked with :class:`SD`), with decoy digests. Returns ``<JWT>~<D1>~...~<Dn>~``.
- :func:`present` (holder): keeps a chosen subset of the disclosures and appends a KB-JWT
  (``typ: kb+jwt``; ``iat``, ``nonce``, ``aud``, ``sd_hash``) signed with the holder key.
- :func:`verify` (verifier): RFC 9901 section 7 processing; returns the disclosed claims and the
  holder key. Every failure raises :class:`SdJwtError` with its own message.

Why hand-written: JWS signing and verification are jwcrypto's. The SD-JWT structure (disclosures,
digests, ``_sd``/``...`` processing, the ``~`` serialisation, the KB-JWT's ``sd_hash``) is written
here because the only maintained Python implementation is the ``sd-jwt`` reference package, which
is a test/demo tool: it defaults ``typ`` to ``example+sd-jwt``, assumes ES256 for key binding,
leaves ``exp``/``nbf``/``iat`` unchecked (a ``TODO`` in its verifier) and reports failures as bare
``ValueError``/``KeyError``. We use it only in tests, to cross-check interoperability both ways.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Union

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

SD_JWT_TYP = "dc+sd-jwt"
#: The media type used before draft-ietf-oauth-sd-jwt-vc-06; accepted only when asked for.
LEGACY_SD_JWT_TYP = "vc+sd-jwt"
KB_JWT_TYP = "kb+jwt"
SD_ALG = "sha-256"
SUPPORTED_ALGS = ("ES256", "EdDSA")
#: Claims the SD-JWT VC draft forbids to make selectively disclosable.
NEVER_DISCLOSABLE = frozenset({"iss", "nbf", "exp", "cnf", "vct", "vct#integrity", "status"})
#: Names with a meaning in the SD-JWT structure itself, refused as claim names.
RESERVED = frozenset({"_sd", "..."})

DEFAULT_LIFETIME = 365 * 24 * 3600  # identity.md 5.3: resident credentials live one year
DEFAULT_LEEWAY = 60  # clock skew tolerated on iat/nbf/exp, seconds
DEFAULT_KB_MAX_AGE = 300  # a KB-JWT older than this is refused, seconds

Path = tuple  # claim path: ("address", "locality") or ("nationalities", 1)
IssuerKey = Union[jwk.JWK, Callable[[str, dict], jwk.JWK], None]


class SdJwtError(ValueError):
    """An SD-JWT or SD-JWT+KB that must be rejected; the message says why."""


@dataclass(frozen=True)
class SD:
    """Marks a claim value (object property or array element) as selectively disclosable."""

    value: Any


@dataclass
class Verified:
    """The result of :func:`verify`."""

    claims: dict  # processed payload: visible claims + disclosed ones, no _sd/_sd_alg/decoys
    header: dict  # the issuer-signed JWT's protected header
    holder_jwk: jwk.JWK | None  # from cnf.jwk
    key_binding: dict | None = None  # the KB-JWT payload, when one was presented and checked
    disclosed: list = field(default_factory=list)  # claim paths revealed by disclosures


# --- encoding helpers ---------------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not text or any(
        c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text
    ):
        raise SdJwtError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def digest(disclosure: str) -> str:
    """RFC 9901 4.2.3: base64url(SHA-256(ASCII bytes of the *encoded* disclosure))."""
    return b64url_encode(hashlib.sha256(disclosure.encode("ascii")).digest())


def sd_hash(presented_sd_jwt: str) -> str:
    """RFC 9901 4.3.1: the KB-JWT's ``sd_hash``, over ``<JWT>~<D1>~...~<Dn>~``."""
    return digest(presented_sd_jwt)


def _new_salt() -> str:
    return b64url_encode(secrets.token_bytes(16))  # 128 bits, RFC 9901 9.3


def make_disclosure(value: Any, name: str | None = None, *, salt: str | None = None) -> str:
    """A disclosure: ``[salt, name, value]`` for a property, ``[salt, value]`` for an element."""
    arr = [salt or _new_salt()] + ([name] if name is not None else []) + [value]
    return b64url_encode(json.dumps(arr, ensure_ascii=False).encode("utf-8"))


def decode_disclosure(disclosure: str) -> list:
    try:
        arr = json.loads(b64url_decode(disclosure).decode("utf-8"))
    except (SdJwtError, UnicodeDecodeError, json.JSONDecodeError):
        raise SdJwtError("disclosure is not base64url-encoded JSON") from None
    if not isinstance(arr, list) or len(arr) not in (2, 3) or not isinstance(arr[0], str):
        raise SdJwtError("disclosure is not an array [salt, name, value] or [salt, value]")
    if len(arr) == 3:
        if not isinstance(arr[1], str):
            raise SdJwtError("disclosure claim name is not a string")
        if arr[1] in RESERVED:
            raise SdJwtError(f"disclosure uses the reserved claim name {arr[1]!r}")
    return arr


def _alg_for(key: jwk.JWK) -> str:
    kty, crv = key.get("kty"), key.get("crv")
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    raise SdJwtError(f"unsupported key type {kty}/{crv}: use P-256 (ES256) or Ed25519 (EdDSA)")


def _sign(payload: dict, key: jwk.JWK, header: dict) -> str:
    if not key.has_private:
        raise SdJwtError("signing key has no private part")
    token = jws.JWS(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    token.add_signature(key, alg=None, protected=json.dumps({"alg": _alg_for(key), **header}))
    return token.serialize(compact=True)


def _b64json(part: str, what: str) -> dict:
    try:
        obj = json.loads(b64url_decode(part))
    except (SdJwtError, ValueError):
        raise SdJwtError(f"{what} is not a JWT") from None
    if not isinstance(obj, dict):
        raise SdJwtError(f"{what} is not a JWT")
    return obj


def _unverified_jwt(token: str, what: str) -> tuple[dict, dict]:
    parts = token.split(".")
    if len(parts) != 3:
        raise SdJwtError(f"{what} is not a compact JWS")
    return _b64json(parts[0], what), _b64json(parts[1], what)


def _verify_jws(token: str, key: jwk.JWK, what: str) -> None:
    header, _ = _unverified_jwt(token, what)
    alg = header.get("alg")
    if alg not in SUPPORTED_ALGS:
        raise SdJwtError(f"{what} alg {alg!r} is not allowed (allowed: {', '.join(SUPPORTED_ALGS)})")
    if alg != _alg_for(key):
        raise SdJwtError(f"{what} alg {alg} does not match the key type")
    obj = jws.JWS()
    obj.allowed_algs = list(SUPPORTED_ALGS)
    try:
        obj.deserialize(token)
        obj.verify(key)
    except (JWException, ValueError, TypeError):
        raise SdJwtError(f"{what} signature is invalid") from None


def split(serialized: str) -> tuple[str, list[str], str | None]:
    """``<JWT>~<D1>~...~<Dn>~[<KB-JWT>]`` → (JWT, disclosures, KB-JWT or None)."""
    if not isinstance(serialized, str) or "~" not in serialized:
        raise SdJwtError("not an SD-JWT: no '~' separator")
    parts = serialized.split("~")
    jwt, disclosures, last = parts[0], parts[1:-1], parts[-1]
    if not jwt or any(not d for d in disclosures):
        raise SdJwtError("not an SD-JWT: empty component")
    return jwt, disclosures, (last or None)


# --- issuer -------------------------------------------------------------------------------------


class _Issuing:
    def __init__(self, decoys: int | None):
        self.decoys = decoys
        self.disclosures: list[str] = []

    def n_decoys(self) -> int:
        return random.SystemRandom().randint(1, 3) if self.decoys is None else self.decoys

    def encode(self, value: Any, path: Path) -> Any:
        if isinstance(value, SD):
            raise SdJwtError(f"SD() at {_fmt(path)} must be an object property or array element")
        if isinstance(value, Mapping):
            return self.encode_object(value, path)
        if isinstance(value, (list, tuple)):
            return self.encode_array(value, path)
        return value

    def encode_object(self, obj: Mapping, path: Path) -> dict:
        out: dict = {}
        digests: list[str] = []
        for name, value in obj.items():
            if not isinstance(name, str) or name in RESERVED or name == "_sd_alg":
                raise SdJwtError(f"claim name {name!r} is reserved by SD-JWT")
            if isinstance(value, SD):
                if not path and name in NEVER_DISCLOSABLE:
                    raise SdJwtError(f"claim {name!r} must not be selectively disclosable")
                d = make_disclosure(self.encode(value.value, path + (name,)), name)
                self.disclosures.append(d)
                digests.append(digest(d))
            else:
                out[name] = self.encode(value, path + (name,))
        if digests:
            digests += [digest(make_disclosure(None)) for _ in range(self.n_decoys())]
            out["_sd"] = sorted(digests)  # sorted: hides the claims' original order (9.7)
        return out

    def encode_array(self, arr: Iterable, path: Path) -> list:
        out: list = []
        any_sd = False
        for i, value in enumerate(arr):
            if isinstance(value, SD):
                d = make_disclosure(self.encode(value.value, path + (i,)))
                self.disclosures.append(d)
                out.append({"...": digest(d)})
                any_sd = True
            else:
                out.append(self.encode(value, path + (i,)))
        if any_sd:
            rng = random.SystemRandom()
            for _ in range(self.n_decoys()):
                out.insert(rng.randint(0, len(out)), {"...": digest(make_disclosure(None))})
        return out


def status_list_reference(uri: str, idx: int) -> dict:
    """The ``status`` claim pointing at an entry of an IETF Token Status List."""
    return {"status_list": {"idx": int(idx), "uri": uri}}


def issue(
    claims: Mapping,
    *,
    issuer_key: jwk.JWK,
    iss: str,
    vct: str,
    holder_jwk: jwk.JWK | Mapping | None = None,
    kid: str | None = None,
    iat: int | None = None,
    nbf: int | None = None,
    exp: int | None = None,
    lifetime: int | None = DEFAULT_LIFETIME,
    status: Mapping | None = None,
    decoys: int | None = None,
) -> str:
    """Issue an SD-JWT VC. ``claims`` holds the subject's claims; wrap a property value or array
    element in :class:`SD` to make it selectively disclosable. ``decoys``: decoy digests added to
    every object/array that has disclosable members (``None``: a random 1-3 each, ``0``: none).
    ``exp`` defaults to ``iat + lifetime`` (``lifetime=None``: no ``exp``)."""
    for reserved in ("iss", "vct", "iat", "nbf", "exp", "cnf", "status", "_sd_alg"):
        if reserved in claims:
            raise SdJwtError(f"claim {reserved!r} is set by issue(), not in claims")
    now = int(time.time()) if iat is None else int(iat)
    payload: dict = {"iss": iss, "vct": vct, "iat": now}
    if nbf is not None:
        payload["nbf"] = int(nbf)
    if exp is not None:
        payload["exp"] = int(exp)
    elif lifetime is not None:
        payload["exp"] = now + int(lifetime)
    if holder_jwk is not None:
        pub = holder_jwk.export_public(as_dict=True) if isinstance(holder_jwk, jwk.JWK) else dict(
            holder_jwk
        )
        if "d" in pub:
            raise SdJwtError("holder_jwk must be a public key")
        payload["cnf"] = {"jwk": pub}
    if status is not None:
        payload["status"] = dict(status)
    state = _Issuing(decoys)
    body = state.encode_object(claims, ())
    payload.update(body)
    payload["_sd_alg"] = SD_ALG
    header = {"typ": SD_JWT_TYP}
    if kid:
        header["kid"] = kid
    jwt = _sign(payload, issuer_key, header)
    return "~".join([jwt, *state.disclosures]) + "~"


# --- processing (shared by holder and verifier) -------------------------------------------------


def _fmt(path: Path) -> str:
    return "/".join(str(p) for p in path) or "/"


class _Processor:
    """RFC 9901 7.1 steps 3-5: replace digests with disclosed values, recursively."""

    def __init__(self, disclosures: list[str], *, vc_profile: bool = True):
        self.vc_profile = vc_profile
        self.by_digest: dict[str, tuple[str, list]] = {}
        for d in disclosures:
            decoded = decode_disclosure(d)  # first: it refuses non-base64url (non-ASCII) text
            h = digest(d)
            if h in self.by_digest:
                raise SdJwtError("a disclosure is presented more than once")
            self.by_digest[h] = (d, decoded)
        self.seen: set[str] = set()
        self.disclosed: list[tuple[Path, str, Any]] = []  # (path, disclosure, processed value)

    def _take(self, h: Any, path: Path) -> tuple[str, list] | None:
        if not isinstance(h, str):
            raise SdJwtError(f"digest at {_fmt(path)} is not a string")
        if h in self.seen:
            raise SdJwtError("a digest appears more than once in the SD-JWT")
        self.seen.add(h)
        return self.by_digest.get(h)

    def process(self, value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return self.process_object(value, path)
        if isinstance(value, list):
            return self.process_array(value, path)
        return value

    def process_object(self, obj: dict, path: Path) -> dict:
        out: dict = {}
        for name, value in obj.items():
            if name == "_sd" or (name == "_sd_alg" and not path):
                continue
            if name == "...":
                raise SdJwtError(f"'...' is only allowed in an array element at {_fmt(path)}")
            out[name] = self.process(value, path + (name,))
        sd = obj.get("_sd", [])
        if not isinstance(sd, list):
            raise SdJwtError(f"_sd at {_fmt(path)} is not an array")
        for h in sd:
            found = self._take(h, path)
            if found is None:
                continue  # a decoy, or a claim the holder did not disclose
            d, arr = found
            if len(arr) != 3:
                raise SdJwtError("an array-element disclosure is referenced from an object's _sd")
            _, name, value = arr
            if name in out:
                raise SdJwtError(f"disclosed claim {name!r} already exists at {_fmt(path)}")
            if self.vc_profile and not path and name in NEVER_DISCLOSABLE:
                raise SdJwtError(f"claim {name!r} must not be selectively disclosable")
            out[name] = self.process(value, path + (name,))
            self.disclosed.append((path + (name,), d, out[name]))
        return out

    def process_array(self, arr: list, path: Path) -> list:
        out: list = []
        for el in arr:
            if isinstance(el, dict) and "..." in el:
                if len(el) != 1:
                    raise SdJwtError(f"array element digest at {_fmt(path)} has other keys")
                found = self._take(el["..."], path)
                if found is None:
                    continue
                d, disc = found
                if len(disc) != 2:
                    raise SdJwtError("an object-property disclosure is referenced from an array")
                # index in the processed array: with every disclosure (the holder's view) it
                # is the element's index in the array the issuer was given, decoys excluded
                value = self.process(disc[1], path + (len(out),))
                self.disclosed.append((path + (len(out),), d, value))
                out.append(value)
            else:
                out.append(self.process(el, path + (len(out),)))
        return out

    def check_all_used(self) -> None:
        if set(self.by_digest) - self.seen:
            raise SdJwtError("a disclosure does not match any digest in the SD-JWT")


# --- holder -------------------------------------------------------------------------------------


def disclosures_by_path(sd_jwt: str) -> dict[Path, Any]:
    """The holder's view: every disclosable claim path and its value (for a consent screen).
    Does not check the issuer signature: the wallet verifies a credential when it receives it."""
    jwt, disclosures, _ = split(sd_jwt)
    _, payload = _unverified_jwt(jwt, "SD-JWT")
    proc = _Processor(disclosures)
    proc.process(payload, ())
    return {p: value for p, _, value in proc.disclosed}


def _norm_path(p: str | Iterable) -> Path:
    return (p,) if isinstance(p, str) else tuple(p)


def present(
    sd_jwt: str,
    disclose: Iterable[str | Iterable],
    *,
    holder_key: jwk.JWK | None = None,
    nonce: str | None = None,
    aud: str | None = None,
    iat: int | None = None,
) -> str:
    """Holder: keep the disclosures for the claim paths in ``disclose`` (a top-level name, or a
    tuple such as ``("address", "locality")`` / ``("nationalities", 0)``; array indices count
    every element the issuer put in the array), plus those of their enclosing disclosable claims,
    and append a KB-JWT signed by ``holder_key`` (omit it for a presentation without binding)."""
    jwt, disclosures, kb = split(sd_jwt)
    if kb is not None:
        raise SdJwtError("already a presentation: it carries a KB-JWT")
    _, payload = _unverified_jwt(jwt, "SD-JWT")
    proc = _Processor(disclosures)
    proc.process(payload, ())
    available = {p for p, _, _ in proc.disclosed}
    wanted = {_norm_path(p) for p in disclose}
    unknown = [p for p in wanted if p not in available]
    if unknown:
        raise SdJwtError(f"no disclosure for claim {_fmt(unknown[0])}")
    # An enclosing disclosable claim must be disclosed for a nested one to be reachable.
    keep = {p for p in available if any(w[: len(p)] == p for w in wanted)}
    chosen = [d for p, d, _ in proc.disclosed if p in keep]
    presented = "~".join([jwt, *chosen]) + "~"
    if holder_key is None:
        return presented
    if not nonce or not aud:
        raise SdJwtError("a KB-JWT needs the verifier's nonce and aud")
    kb_payload = {
        "iat": int(time.time()) if iat is None else int(iat),
        "aud": aud,
        "nonce": nonce,
        "sd_hash": sd_hash(presented),
    }
    return presented + _sign(kb_payload, holder_key, {"typ": KB_JWT_TYP})


# --- verifier -----------------------------------------------------------------------------------


def _issuer_did_url(iss: Any, header: dict) -> str:
    if not isinstance(iss, str) or not iss.startswith("did:"):
        raise SdJwtError("no issuer key supplied and iss is not a DID")
    kid = header.get("kid")
    if kid is None:
        return iss
    if isinstance(kid, str) and kid.startswith("#"):
        return iss + kid
    if isinstance(kid, str) and kid.split("#", 1)[0] == iss:
        return kid
    raise SdJwtError("kid does not belong to the issuer DID")


def _issuer_key(iss: Any, header: dict, issuer_key: IssuerKey) -> jwk.JWK:
    if isinstance(issuer_key, jwk.JWK):
        return issuer_key
    if callable(issuer_key):
        key = issuer_key(iss, header)  # e.g. a trust-list lookup; may raise SdJwtError itself
        if not isinstance(key, jwk.JWK):
            raise SdJwtError("no key for this issuer")
        return key
    did_url = _issuer_did_url(iss, header)
    from did import methods  # C2's resolver (did:key, did:jwk offline)

    try:
        return methods.verification_key(did_url, purpose="assertionMethod")
    except ValueError as exc:  # methods.DIDError: its message is safe to show
        raise SdJwtError(f"cannot resolve the issuer key: {exc}") from None


def _check_times(payload: dict, now: int, leeway: int, what: str) -> None:
    for claim in ("iat", "nbf", "exp"):
        if claim in payload and (
            not isinstance(payload[claim], (int, float)) or isinstance(payload[claim], bool)
        ):
            raise SdJwtError(f"{what} {claim} is not a number")
    if "exp" in payload and now - leeway >= payload["exp"]:
        raise SdJwtError(f"{what} has expired")
    if "nbf" in payload and now + leeway < payload["nbf"]:
        raise SdJwtError(f"{what} is not yet valid")
    if "iat" in payload and now + leeway < payload["iat"]:
        raise SdJwtError(f"{what} is issued in the future")


def verify(
    presentation: str,
    *,
    issuer_key: IssuerKey = None,
    require_kb: bool = True,
    nonce: str | None = None,
    aud: str | None = None,
    vct: str | Iterable[str] | None = None,
    now: int | None = None,
    leeway: int = DEFAULT_LEEWAY,
    kb_max_age: int = DEFAULT_KB_MAX_AGE,
    accept_legacy_typ: bool = False,
    vc_profile: bool = True,
) -> Verified:
    """Verifier: check an SD-JWT VC (with its KB-JWT when ``require_kb``) and return the
    disclosed claims. ``issuer_key``: a JWK, a callable ``(iss, header) -> JWK`` (e.g. a trust
    list lookup), or ``None`` to resolve ``iss`` (a DID) + ``kid`` via ``did.methods``. This does
    not check the status list entry nor whether the issuer is trusted for ``vct``: callers do.
    ``vc_profile=False`` applies RFC 9901 alone: no ``typ``/``iss``/``vct`` requirements."""
    now = int(time.time()) if now is None else int(now)
    if require_kb and (not nonce or not aud):
        raise SdJwtError("the expected nonce and aud are required to check key binding")
    jwt, disclosures, kb = split(presentation)

    header, payload = _unverified_jwt(jwt, "SD-JWT")
    typs = {SD_JWT_TYP} | ({LEGACY_SD_JWT_TYP} if accept_legacy_typ else set())
    if vc_profile and header.get("typ") not in typs:
        raise SdJwtError(f"SD-JWT typ must be {SD_JWT_TYP}, got {header.get('typ')!r}")
    _verify_jws(jwt, _issuer_key(payload.get("iss"), header, issuer_key), "SD-JWT")

    if payload.get("_sd_alg", SD_ALG) != SD_ALG:
        raise SdJwtError(f"unsupported _sd_alg {payload.get('_sd_alg')!r}: only sha-256")
    for claim in ("iss", "vct") if vc_profile else ():
        if not isinstance(payload.get(claim), str) or not payload[claim]:
            raise SdJwtError(f"SD-JWT VC has no {claim}")
    if vct is not None:
        expected = {vct} if isinstance(vct, str) else set(vct)
        if payload["vct"] not in expected:
            raise SdJwtError(f"unexpected vct {payload['vct']!r}")
    _check_times(payload, now, leeway, "SD-JWT")

    proc = _Processor(disclosures, vc_profile=vc_profile)
    claims = proc.process(payload, ())
    proc.check_all_used()

    holder = None
    cnf = payload.get("cnf")
    if cnf is not None:
        if not isinstance(cnf, dict) or not isinstance(cnf.get("jwk"), dict):
            raise SdJwtError("cnf has no jwk")
        try:
            holder = jwk.JWK(**cnf["jwk"])
            holder.get_op_key("verify")  # loads the point: refuses keys off the curve
        except (JWException, ValueError, TypeError):
            raise SdJwtError("cnf.jwk is not a valid key") from None
        if holder.has_private:
            raise SdJwtError("cnf.jwk contains a private key")

    kb_payload = None
    if kb is None:
        if require_kb:
            raise SdJwtError("key binding JWT is missing")
    else:
        if holder is None:
            raise SdJwtError("KB-JWT present but the SD-JWT has no cnf.jwk")
        kb_header, kb_payload = _unverified_jwt(kb, "KB-JWT")
        if kb_header.get("typ") != KB_JWT_TYP:
            raise SdJwtError(f"KB-JWT typ must be {KB_JWT_TYP}, got {kb_header.get('typ')!r}")
        _verify_jws(kb, holder, "KB-JWT")
        iat = kb_payload.get("iat")
        if not isinstance(iat, (int, float)) or isinstance(iat, bool):
            raise SdJwtError("KB-JWT has no iat")
        if iat > now + leeway:
            raise SdJwtError("KB-JWT is issued in the future")
        if iat < now - kb_max_age - leeway:
            raise SdJwtError("KB-JWT is too old")
        if nonce is not None and kb_payload.get("nonce") != nonce:
            raise SdJwtError("KB-JWT nonce does not match")
        if aud is not None and kb_payload.get("aud") != aud:
            raise SdJwtError("KB-JWT aud does not match")
        if kb_payload.get("sd_hash") != sd_hash(presentation[: len(presentation) - len(kb)]):
            raise SdJwtError("KB-JWT sd_hash does not match the presented SD-JWT")

    return Verified(
        claims=claims,
        header=header,
        holder_jwk=holder,
        key_binding=kb_payload,
        disclosed=[p for p, _, _ in proc.disclosed],
    )


async def verify_async(presentation: str, *, issuer_key: IssuerKey = None, allow_http: bool = False,
                       client: Any = None, **kwargs: Any) -> Verified:
    """As :func:`verify`; without ``issuer_key``, resolves any DID issuer including did:web
    (``allow_http`` and ``client`` are passed to ``did.methods.verification_key_async``)."""
    if issuer_key is None:
        jwt = split(presentation)[0]
        header, payload = _unverified_jwt(jwt, "SD-JWT")
        did_url = _issuer_did_url(payload.get("iss"), header)
        from did import methods

        try:
            issuer_key = await methods.verification_key_async(
                did_url, purpose="assertionMethod", allow_http=allow_http, client=client
            )
        except ValueError as exc:
            raise SdJwtError(f"cannot resolve the issuer key: {exc}") from None
    return verify(presentation, issuer_key=issuer_key, **kwargs)
