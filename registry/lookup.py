"""`/lookup`: who is on the network, with which key (registry.yaml; digest §6.1).

Request: a partial `Subscription` used as a filter, in any dialect seen in the wild (key id as
`ukId`, `unique_key_id`, `key_id` or `pub_key_id`; `url` or `subscriber_url`; core `location`
or flat `city`/`country`; any case of `type`, ONDC's buyerApp/sellerApp/gateway).

Semantics (those of the Succinct registry, the most complete open one):

* no attribute is mandatory; a missing, null or blank criterion is a wildcard;
* `type`, `domain`, `city` and `country` match an entry registered with that value or
  registered blank (blank means "any");
* only SUBSCRIBED entries, and only keys valid now (valid_from <= now < valid_until, not
  revoked), are returned;
* with a key id, only that key; without, each entry's latest valid key.

Key history (`valid_at`, an RFC 3339 date-time with a time zone): the keys valid at that moment
instead of now, so that an auditor can verify a signature years later. Key history is never
deleted (registry/tables.py), so the answer includes keys now expired or superseded:

* a key is valid at T when valid_from <= T < valid_until and it was not revoked by T
  (`revoked_at` NULL or later than T): a key revoked at R still verifies signatures made before
  R, and such an element carries `revoked_at` so that the auditor sees it was revoked later;
* entries are matched whatever their current status, except INITIATED and UNDER_SUBSCRIPTION
  (never confirmed): the registry keeps no status history, and a participant that has since left
  (UNSUBSCRIBED, EXPIRED, INVALID_SSL) must stay verifiable for what it signed while it was in.
  Each element shows the entry's *current* `status`; a `status` criterion narrows the same set.

Response: an array of `Subscription`, every field under each spelling clients read (the
duplicates satisfy every client: core, ONDC, Succinct, protocol-server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.errors import bad_request
from registry.tables import ParticipantStatus, ParticipantType, RegistryKey, RegistryParticipant
from registry.vocabulary import parse_time, parse_type, wire_time

_KEY_ID_NAMES = ("ukId", "unique_key_id", "key_id", "pub_key_id")
_URL_NAMES = ("url", "subscriber_url")
# Beyond these, a filter field is ignored (the schema is open, and clients send extras).
_STRING_FIELDS = ("subscriber_id", "domain", "status")
VALID_AT = "valid_at"
# Entries a history lookup (`valid_at`) may show: every status but those never confirmed.
HISTORY_STATUSES = (ParticipantStatus.SUBSCRIBED, ParticipantStatus.INVALID_SSL,
                    ParticipantStatus.EXPIRED, ParticipantStatus.UNSUBSCRIBED)


@dataclass(frozen=True, slots=True)
class LookupFilter:
    subscriber_id: str | None = None
    unique_key_id: str | None = None
    type: ParticipantType | None = None
    domain: str | None = None
    city: str | None = None
    country: str | None = None
    url: str | None = None
    status: str | None = None
    valid_at: datetime | None = None  # None: now, and only what is usable now

    def criteria_count(self) -> int:
        """How many search criteria are set (valid_at and status excluded: they are not criteria
        on who, only on when and which state)."""
        return sum(v is not None for v in (self.subscriber_id, self.unique_key_id, self.type, self.domain,
                                          self.city, self.country, self.url))


def parse_filter(payload: Any) -> LookupFilter:
    """The criteria of a lookup request body, or `ApiError` 400 saying which field is wrong."""
    if not isinstance(payload, Mapping):
        raise bad_request(f"lookup body must be a JSON object (a partial Subscription), not "
                          f"{_json_type(payload)}")
    found: dict[str, Any] = {}
    for name in _STRING_FIELDS:
        found[name] = _string(payload, name)
    found["unique_key_id"] = _one_of(payload, _KEY_ID_NAMES)
    found["url"] = _one_of(payload, _URL_NAMES)
    if found["url"] is not None:
        found["url"] = found["url"].rstrip("/")  # stored without the trailing slash

    role = _string(payload, "type")
    if role is not None:
        try:
            found["type"] = parse_type(role)
        except ValueError as exc:
            raise bad_request(str(exc), "type") from None

    location = payload.get("location")
    if location is not None and not isinstance(location, Mapping):
        raise bad_request(f"location must be an object, not {_json_type(location)}", "location")
    for part in ("city", "country"):
        flat = _code(payload.get(part), part)
        nested = _code(location.get(part), f"location.{part}") if location else None
        if flat is not None and nested is not None and flat != nested:
            raise bad_request(f"{part} ({flat!r}) and location.{part}.code ({nested!r}) differ", part)
        found[part] = flat if flat is not None else nested

    if found["status"] is not None:
        found["status"] = found["status"].upper()
    moment = payload.get(VALID_AT)
    if moment is not None:
        try:
            found["valid_at"] = parse_time(moment, VALID_AT)
        except ValueError as exc:
            raise bad_request(str(exc), VALID_AT) from None
    return LookupFilter(**found)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _string(payload: Mapping[str, Any], name: str) -> str | None:
    """A string criterion; None, '' and '*' mean "any"."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string, not {_json_type(value)}", name)
    value = value.strip()
    return value if value not in ("", "*") else None


def _one_of(payload: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    values = {name: v for name in names if (v := _string(payload, name)) is not None}
    distinct = set(values.values())
    if len(distinct) > 1:
        raise bad_request(f"{', '.join(values)} are spellings of the same field but differ", names[0])
    return distinct.pop() if distinct else None


def _code(value: Any, path: str) -> str | None:
    """A city or country as a plain code or a core `{code, name}` object."""
    if isinstance(value, Mapping):
        return _string({f"{path}.code": value.get("code")}, f"{path}.code")
    if value is None or isinstance(value, str):
        return _string({path: value}, path)
    raise bad_request(f"{path} must be a code string or an object with a code, not {_json_type(value)}", path)


async def find(session: AsyncSession, criteria: LookupFilter, now: datetime) -> list[tuple[RegistryParticipant, RegistryKey]]:
    """Matching entries, each with its requested (or latest) key: SUBSCRIBED entries and keys
    usable `now`, or with `criteria.valid_at`, the key history at that moment (module doc)."""
    p, k = RegistryParticipant, RegistryKey
    query = select(p, k).join(k, k.subscriber_id == p.subscriber_id)
    if criteria.valid_at is None:
        if criteria.status is not None and criteria.status != ParticipantStatus.SUBSCRIBED:
            return []  # a live lookup only ever shows subscribed entries
        query = query.where(p.status == ParticipantStatus.SUBSCRIBED.value,
                            k.revoked_at.is_(None), k.valid_from <= now, k.valid_until > now)
    else:
        at = criteria.valid_at
        statuses = [s.value for s in HISTORY_STATUSES]
        if criteria.status is not None:
            if criteria.status not in statuses:
                return []
            statuses = [criteria.status]
        query = query.where(p.status.in_(statuses), k.valid_from <= at, k.valid_until > at,
                            or_(k.revoked_at.is_(None), k.revoked_at > at))
    if criteria.subscriber_id is not None:
        query = query.where(p.subscriber_id == criteria.subscriber_id)
    if criteria.unique_key_id is not None:
        query = query.where(k.unique_key_id == criteria.unique_key_id)
    if criteria.url is not None:
        query = query.where(p.url == criteria.url)
    if criteria.type is not None:
        query = query.where(p.type == criteria.type.value)
    for column, value in ((p.domain, criteria.domain), (p.city, criteria.city), (p.country, criteria.country)):
        if value is not None:
            query = query.where(or_(column == value, column == ""))
    # Per entry, the first row is the latest key: newest valid_from, then newest registration.
    query = query.order_by(p.subscriber_id, p.type, p.domain, p.id,
                           k.valid_from.desc(), k.created.desc(), k.id.desc())
    results: list[tuple[RegistryParticipant, RegistryKey]] = []
    seen: set[int | None] = set()
    for participant, key in await session.execute(query):
        if participant.id in seen:
            continue
        seen.add(participant.id)
        results.append((participant, key))
    return results


def subscription_json(participant: RegistryParticipant, key: RegistryKey) -> dict[str, Any]:
    """One lookup result element: a `Subscription` with every alias clients read."""
    location: dict[str, Any] = {"city": {"code": participant.city}, "country": {"code": participant.country}}
    return {
        "subscriber_id": participant.subscriber_id,
        "subscriber_url": participant.url,
        "url": participant.url,
        "type": participant.type,
        "domain": participant.domain,
        "city": participant.city,
        "country": participant.country,
        "location": location,
        "signing_public_key": key.signing_public_key,
        "encr_public_key": key.encr_public_key,
        "valid_from": wire_time(key.valid_from),
        "valid_until": wire_time(key.valid_until),
        "status": participant.status,
        "created": wire_time(participant.created),
        "updated": wire_time(participant.updated),
        "ukId": key.unique_key_id,
        "unique_key_id": key.unique_key_id,
        "key_id": key.unique_key_id,
        # Only history lookups can return a revoked key (one revoked after their valid_at).
        **({"revoked_at": wire_time(key.revoked_at)} if key.revoked_at is not None else {}),
        # The transaction-log key (issue 8), only when published: an extra field every dialect's
        # client ignores, so ONDC and core lookups keep their shape.
        **({"log_vkey": key.log_vkey} if key.log_vkey is not None else {}),
    }
