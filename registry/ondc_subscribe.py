"""The ONDC-shaped `/subscribe` body, translated into the registry's own subscriptions (digest §6.2).

ONDC participants onboard with a body unlike Beckn core's `Subscription`:

    {"context": {"operation": {"ops_no": 1 | 2 | 4}},
     "message": {"request_id", "timestamp",
                 "entity": {"gst": {...}, "pan": {...}, "name_of_authorised_signatory", ...,
                            "country": "IND", "subscriber_id", "unique_key_id",
                            "callback_url": "/relative",
                            "key_pair": {"signing_public_key", "encryption_public_key",
                                         "valid_from", "valid_until"}},
                 "network_participant": [{"subscriber_url": "/relative", "domain": "ONDC:RET10",
                                          "type": "buyerApp" | "sellerApp", "msn": false,
                                          "city_code": ["std:080"]}]}}

`translate_ondc` turns it into one core subscription per `network_participant` entry, i.e. one
registry entry per (type, domain), all under the one subscriber and key of `entity`; the core
flow (registry/subscribe.py) then checks each exactly as a core body, and `relabel` renames the
fields of its refusals back to the ONDC paths the client sent.

Choices, each made so that an ONDC client works unchanged and Lakou stores no more than it needs:

* `ops_no` 1 = buyer app (BAP), 2 = seller app (BPP), 4 = both; each entry's `type` must be one
  of those roles. 3 and 5 (MSN / seller-on-record) are deprecated by ONDC: refused with a 400.
  `msn` is read as a boolean and not recorded.
* `callback_url` and `subscriber_url` are paths relative to `https://<subscriber_id>`, as ONDC
  defines them. An absolute http(s) URL is accepted too, under the same host rule as the core
  `url` (on the subscriber's domain; a loopback host for `*.localhost` ids): that is how a
  development network, whose `*.localhost` ids cannot have an `https://` base, points at a
  loopback port. The challenge goes to `<callback base><callback_url>/on_subscribe` with
  `{"subscriber_id", "challenge"}`, the entries publish `<base><subscriber_url>`.
* `city_code`: a single code is registered as the entry's city; several codes, `"*"` or an
  empty list register a blank city, which a lookup matches for any city (one entry per
  (type, domain) is all the registry holds).
* `entity.country` is the entries' country.
* **Lakou does not do KYC.** Everything else in `entity` (gst, pan, name_of_authorised_signatory,
  addresses, email, mobile...) is personal or company data: it is never read, so it is neither
  stored, nor published by a lookup, nor logged, nor echoed in an error. Vetting a participant's
  legal identity is the network operator's business, out of band, before approving it.
* Unknown fields are ignored, as ONDC's body evolves; `request_id` and `timestamp` are checked for
  type only (`request_id` serves ONDC's site verification, which Lakou replaces by the signature
  and the challenge).
* Success is answered ONDC's way, `{"message": {"ack": {"status": "ACK"}}, "error": {...null}}`;
  a refusal keeps the registry's `error` object and HTTP status and adds
  `"message": {"ack": {"status": "NACK"}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

from beckn.errors import BecknError
from registry.errors import ApiError, bad_request
from registry.tables import ParticipantType
from registry.vocabulary import check_subscriber_id, parse_time, parse_type

# ops_no → the roles its network_participant entries may take (ONDC onboarding doc).
OPS_ROLES: dict[int, frozenset[ParticipantType]] = {
    1: frozenset({ParticipantType.BAP}),
    2: frozenset({ParticipantType.BPP}),
    4: frozenset({ParticipantType.BAP, ParticipantType.BPP}),
}
_OPS_MEANING = "1 (buyer app: BAP), 2 (seller app: BPP) or 4 (both)"
_DEPRECATED_OPS = {3: "MSN seller", 5: "buyer app and MSN seller"}
# Each entry is one row and one challenge-covered write: a sane bound for one participant.
MAX_NETWORK_PARTICIPANTS = 64
_ANY_CITY = "*"

ONDC_ACK: dict[str, Any] = {"message": {"ack": {"status": "ACK"}},
                            "error": {"type": None, "code": None, "path": None, "message": None}}

_ENTITY = "message.entity"
_KEY_PAIR = "message.entity.key_pair"
# Where each field of a core subscription came from (entry-specific ones take the index).
_ENTITY_PATHS = {
    "subscriber_id": f"{_ENTITY}.subscriber_id",
    "unique_key_id": f"{_ENTITY}.unique_key_id",
    "country": f"{_ENTITY}.country",
    "signing_public_key": f"{_KEY_PAIR}.signing_public_key",
    "encr_public_key": f"{_KEY_PAIR}.encryption_public_key",
    "valid_from": f"{_KEY_PAIR}.valid_from",
    "valid_until": f"{_KEY_PAIR}.valid_until",
    "log_vkey": f"{_KEY_PAIR}.log_vkey",
}
_ENTRY_PATHS = {"url": "subscriber_url", "type": "type", "domain": "domain", "city": "city_code"}


def is_ondc_body(payload: Any) -> bool:
    """ONDC's envelope: neither `context` nor `message` is a field of a core Subscription."""
    return isinstance(payload, Mapping) and ("context" in payload or "message" in payload)


@dataclass(frozen=True, slots=True)
class OndcSubscription:
    ops_no: int
    subscriptions: list[dict[str, Any]]  # core Subscription bodies, one per network_participant
    callback_url: str  # absolute; the challenge goes to f"{callback_url}/on_subscribe"
    request_id: str | None = None
    _paths: list[dict[str, str]] = field(default_factory=list, repr=False)

    def relabel(self, exc: ApiError, index: int) -> ApiError:
        """`exc`, raised for `subscriptions[index]`, with its field names as the client spelt them."""
        paths = self._paths[index]
        details = [BecknError(d.code, _rename(d.message, d.path, paths), paths.get(d.path or "", d.path))
                   for d in exc.details]
        return ApiError(exc.status_code, _rename(exc.error.message, exc.error.path, paths),
                        path=paths.get(exc.error.path or "", exc.error.path), code=exc.error.code,
                        details=details, headers=exc.headers)


def _rename(message: str, path: str | None, paths: Mapping[str, str]) -> str:
    if not path or path not in paths:
        return message
    if message.startswith(path):
        return paths[path] + message[len(path):]
    return f"{paths[path]}: {message}"


# ------------------------------------------------------------------ reading the envelope


def _object(value: Any, path: str, example: str) -> Mapping[str, Any]:
    if value is None:
        raise bad_request(f"{path} is required: the ONDC subscribe body carries {example}", path)
    if not isinstance(value, Mapping):
        raise bad_request(f"{path} must be a JSON object such as {example}", path)
    return value


def _string(parent: Mapping[str, Any], name: str, path: str, example: str, *, required: bool = True) -> str | None:
    value = parent.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        state = "is required" if value is None else "must be a non-empty string"
        raise bad_request(f"{path}.{name} {state}, e.g. {example}", f"{path}.{name}")
    return value.strip()


def _ops_no(context: Mapping[str, Any]) -> int:
    operation = _object(context.get("operation"), "context.operation", '{"ops_no": 1}')
    ops_no = operation.get("ops_no")
    path = "context.operation.ops_no"
    if ops_no is None:
        raise bad_request(f"{path} is required: {_OPS_MEANING}", path)
    if isinstance(ops_no, bool) or not isinstance(ops_no, int):
        raise bad_request(f"{path} must be the number {_OPS_MEANING}, not {ops_no!r:.40}", path)
    if ops_no in _DEPRECATED_OPS:
        raise bad_request(f"{path} {ops_no} ({_DEPRECATED_OPS[ops_no]}) is deprecated by ONDC and not supported "
                          f"here: subscribe with {_OPS_MEANING}", path)
    if ops_no not in OPS_ROLES:
        raise bad_request(f"{path} {ops_no} is unknown: use {_OPS_MEANING}", path)
    return ops_no


def resolve_url(subscriber_id: str, value: Any, path: str) -> str:
    """ONDC's relative URL against `https://<subscriber_id>`; an absolute URL as is (its host is
    checked by the core rules afterwards: module docstring)."""
    hint = (f"a path relative to https://{subscriber_id} such as \"/beckn\" (or, for a development "
            "network, an absolute http(s) URL on a loopback host)")
    if not isinstance(value, str) or not value.strip():
        state = "is required" if value is None else "must be a non-empty string"
        raise bad_request(f"{path} {state}: {hint}", path)
    url = value.strip()
    if url.startswith("/") and not url.startswith("//"):
        return f"https://{subscriber_id}{url}"
    if url.lower().startswith(("http://", "https://")):
        return url
    raise bad_request(f"{path} {url[:80]!r} is neither a path starting with \"/\" nor an absolute URL: use {hint}",
                      path)


def _city(value: Any, path: str) -> str:
    if value is None:
        return ""
    codes = [value] if isinstance(value, str) else value
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise bad_request(f"{path} must be a list of city codes such as [\"std:080\"] (or [\"*\"] for all)", path)
    codes = [c.strip() for c in codes]
    # One entry per (type, domain): several cities, or all of them, are registered as "any city".
    if len(codes) != 1 or codes[0] == _ANY_CITY:
        return ""
    return codes[0]


# ------------------------------------------------------------------ the translation


def translate_ondc(payload: Mapping[str, Any]) -> OndcSubscription:
    """The core subscriptions an ONDC body asks for, or `ApiError` 400 naming the ONDC path at fault.
    Only the fields listed in the module docstring are read; `entity`'s personal data never is."""
    ops_no = _ops_no(_object(payload.get("context"), "context", '{"operation": {"ops_no": 1}}'))
    roles = OPS_ROLES[ops_no]
    message = _object(payload.get("message"), "message", '{"request_id", "entity", "network_participant"}')
    request_id = _string(message, "request_id", "message", '"a UUID"', required=False)
    if message.get("timestamp") is not None:
        try:
            parse_time(message["timestamp"], "message.timestamp")
        except ValueError as exc:
            raise bad_request(str(exc), "message.timestamp") from None

    entity = _object(message.get("entity"), _ENTITY, '{"subscriber_id", "unique_key_id", "callback_url", '
                                                     '"key_pair": {...}}')
    subscriber_id = _string(entity, "subscriber_id", _ENTITY, '"bpp.example.mq"')
    assert subscriber_id is not None
    try:
        check_subscriber_id(subscriber_id)
    except ValueError as exc:
        raise bad_request(str(exc), f"{_ENTITY}.subscriber_id") from None
    key_id = _string(entity, "unique_key_id", _ENTITY, '"a UUID naming this key pair"')
    callback_url = resolve_url(subscriber_id, entity.get("callback_url"), f"{_ENTITY}.callback_url").rstrip("/")
    country = entity.get("country", "")
    key_pair = _object(entity.get("key_pair"), _KEY_PAIR,
                       '{"signing_public_key", "encryption_public_key", "valid_from", "valid_until"}')
    for name in ("signing_public_key", "encryption_public_key"):
        _string(key_pair, name, _KEY_PAIR, "a base64 public key")
    key = {"subscriber_id": subscriber_id, "unique_key_id": key_id, "country": country,
           "signing_public_key": key_pair["signing_public_key"],
           "encr_public_key": key_pair["encryption_public_key"]}
    # log_vkey: our extension (issue 8), the transaction-log key; ONDC clients never send it.
    for name in ("valid_from", "valid_until", "log_vkey"):
        if key_pair.get(name) is not None:
            key[name] = key_pair[name]

    entries = message.get("network_participant")
    np_path = "message.network_participant"
    if entries is None:
        raise bad_request(f"{np_path} is required: a list with one entry per domain, e.g. [{{\"subscriber_url\": "
                          "\"/beckn\", \"domain\": \"ONDC:RET10\", \"type\": \"sellerApp\", \"city_code\": "
                          "[\"std:080\"]}]", np_path)
    if not isinstance(entries, list) or not entries:
        raise bad_request(f"{np_path} must be a non-empty list, one entry per domain", np_path)
    if len(entries) > MAX_NETWORK_PARTICIPANTS:
        raise bad_request(f"{np_path} has {len(entries)} entries; at most {MAX_NETWORK_PARTICIPANTS} per subscribe",
                          np_path)

    subscriptions: list[dict[str, Any]] = []
    paths: list[dict[str, str]] = []
    seen: dict[tuple[ParticipantType, str], int] = {}
    for index, entry in enumerate(entries):
        at = f"{np_path}[{index}]"
        entry = _object(entry, at, '{"subscriber_url", "domain", "type", "city_code"}')
        role_name = _string(entry, "type", at, '"buyerApp" or "sellerApp"')
        assert role_name is not None
        try:
            role = parse_type(role_name)
        except ValueError as exc:
            raise bad_request(str(exc), f"{at}.type") from None
        if role not in roles:
            allowed = " or ".join(sorted("buyerApp" if r is ParticipantType.BAP else "sellerApp" for r in roles))
            raise bad_request(f"{at}.type {role_name!r} does not match context.operation.ops_no {ops_no} "
                              f"({_OPS_MEANING}): use {allowed}, or the ops_no of that role", f"{at}.type")
        domain = _string(entry, "domain", at, '"ONDC:RET10"')
        assert domain is not None
        if (role, domain) in seen:
            raise bad_request(f"{at} repeats type {role.value} in domain {domain!r} of {np_path}[{seen[role, domain]}]: "
                              "send one entry per (type, domain)", at)
        seen[role, domain] = index
        msn = entry.get("msn")
        if msn is not None and not isinstance(msn, bool):
            raise bad_request(f"{at}.msn must be true or false", f"{at}.msn")
        subscriptions.append({**key, "type": role.value, "domain": domain,
                              "url": resolve_url(subscriber_id, entry.get("subscriber_url"), f"{at}.subscriber_url"),
                              "city": _city(entry.get("city_code"), f"{at}.city_code")})
        paths.append({**_ENTITY_PATHS, **{core: f"{at}.{name}" for core, name in _ENTRY_PATHS.items()}})
    return OndcSubscription(ops_no, subscriptions, callback_url, request_id, paths)


def nack(exc: ApiError) -> JSONResponse:
    """A refusal of an ONDC-shaped subscribe: the registry's error, plus ONDC's NACK."""
    error: dict[str, Any] = dict(exc.error.to_json())
    if exc.details:
        error["details"] = [d.to_json() for d in exc.details]
    return JSONResponse({"message": {"ack": {"status": "NACK"}}, "error": error}, status_code=exc.status_code,
                        headers=exc.headers)


__all__ = [
    "MAX_NETWORK_PARTICIPANTS",
    "ONDC_ACK",
    "OPS_ROLES",
    "OndcSubscription",
    "is_ondc_body",
    "nack",
    "resolve_url",
    "translate_ondc",
]
