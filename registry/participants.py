"""Adding participants and keys by operator decision: one function shared by the admin API and
the `lakou registry add` command.

The input is exactly what `beckn.node.BecknNode.registration()` sends (with the usual aliases
accepted). Operator-added participants are approved, so their entry is SUBSCRIBED at once; the
subscribe / on_subscribe challenge flow will create INITIATED entries through the same tables.

Idempotence is what nodes rely on: they post their record at every start. Re-posting the same
record changes nothing (and does not bump `updated`); a new `unique_key_id` adds a key and keeps
the old ones; a known `unique_key_id` is never rebound to other key material.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from beckn.errors import BecknError, ErrorCode
from beckn.keys import KeyFormatError, load_verify_key, load_x25519_public, raw_public_b64
from beckn.tlog.note import ED25519, NoteError, NoteVerifier
from registry.errors import ApiError
from registry.tables import ParticipantStatus, ParticipantType, RegistryKey, RegistryParticipant
from registry.vocabulary import (
    MAX_DOMAIN,
    MAX_KEY_ID,
    check_code,
    check_identifier,
    check_subscriber_id,
    check_url,
    parse_time,
    parse_type,
    truncate_ms,
    wire_time,
)

log = structlog.get_logger(__name__)

DEFAULT_VALIDITY = timedelta(days=365)

# Alternative spellings accepted on input (digest §6.1); the first of each group is canonical.
_ALIASES: dict[str, tuple[str, ...]] = {
    "url": ("url", "subscriber_url"),
    "unique_key_id": ("unique_key_id", "ukId", "key_id", "pub_key_id"),
    "encr_public_key": ("encr_public_key", "encryption_public_key"),
}

_EXAMPLE = {
    "subscriber_id": "bpp.lakou.localhost",
    "type": "BPP",
    "url": "http://127.0.0.1:8300/beckn",
    "domain": "lakou:retail",
    "city": "",
    "country": "MTQ",
    "unique_key_id": "0b6b0a4e-5f1c-4f2a-9d0e-1c2b3a4d5e6f",
    "signing_public_key": "Fhjwaka1Za+ld+7Nms7S0C675r24mZoyWVn8JbYTjSs=",
    "encr_public_key": "2qqMXvKp4hMcWsUpGF5Lrj3Cs7jxUeXNA6wXfEwiah4=",
    "valid_from": "2026-11-23T10:00:00.000Z",
    "valid_until": "2027-11-23T10:00:00.000Z",
}


class Registration(BaseModel):
    """A participant entry and one of its keys, as an operator (or a node at start) submits it.

    `domain`, `city` and `country` may be blank, meaning "any". For a new key, `valid_from`
    defaults to now and `valid_until` to a year later; for a known key, omitted bounds are kept."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    subscriber_id: StrictStr = Field(description="The participant's FQDN.")
    type: ParticipantType = Field(description="BAP, BPP, BG or BREG (aliases accepted, any case).")
    url: StrictStr = Field(validation_alias=AliasChoices(*_ALIASES["url"]),
                           description="Callback base URL (absolute http/https); alias subscriber_url.")
    domain: StrictStr = Field("", description="Domain code; blank means any domain.")
    city: StrictStr = Field("", description="City code, e.g. insee:97209; blank means the whole country.")
    country: StrictStr = Field("", description="Country code, e.g. MTQ; blank means any.")
    unique_key_id: StrictStr = Field(validation_alias=AliasChoices(*_ALIASES["unique_key_id"]),
                                     description="Key id (ukId); aliases key_id, ukId, pub_key_id.")
    signing_public_key: StrictStr = Field(description="Ed25519 public key: raw base64, DER base64 or PEM.")
    encr_public_key: StrictStr = Field(validation_alias=AliasChoices(*_ALIASES["encr_public_key"]),
                                       description="X25519 public key: raw base64, DER base64 or PEM.")
    valid_from: datetime | None = Field(None, description="RFC 3339 date-time with a time zone.")
    valid_until: datetime | None = Field(None, description="RFC 3339 date-time with a time zone.")
    log_vkey: StrictStr | None = Field(
        None, description="Optional transaction-log key (issue 8): a C2SP signed-note verifier key for Ed25519, "
                          "<name>+<8 hex key ID>+<base64(0x01 || 32-byte public key)>. Bound to this "
                          "unique_key_id; omitted on a later post, the registered one is kept.")

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for canonical, names in _ALIASES.items():
            given = {name: data[name] for name in names if name in data}
            if len(set(map(repr, given.values()))) > 1:
                raise ValueError(f"{' and '.join(given)} are spellings of {canonical} but differ")
        # Core `location {city {code}, country {code}}`, as a lookup returns it.
        location = data.pop("location", None)
        if location is not None:
            if not isinstance(location, dict):
                raise ValueError("location must be an object like {\"city\": {\"code\": ...}}")
            for part in ("city", "country"):
                value = location.get(part)
                code = value.get("code") if isinstance(value, dict) else None
                if code is not None:
                    if part in data and data[part] != code:
                        raise ValueError(f"{part} and location.{part}.code differ")
                    data[part] = code
        return data

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return parse_type(value) if isinstance(value, str) else value

    @field_validator("valid_from", "valid_until", mode="before")
    @classmethod
    def _time(cls, value: Any, info: Any) -> Any:
        return None if value is None else parse_time(value, info.field_name)

    @field_validator("subscriber_id")
    @classmethod
    def _subscriber_id(cls, value: str) -> str:
        return check_subscriber_id(value)

    @field_validator("unique_key_id")
    @classmethod
    def _key_id(cls, value: str) -> str:
        return check_identifier(value, "unique_key_id", MAX_KEY_ID)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return check_code(value, "domain", MAX_DOMAIN)

    @field_validator("city", "country")
    @classmethod
    def _code(cls, value: str, info: Any) -> str:
        return check_code(value, info.field_name)

    @field_validator("signing_public_key")
    @classmethod
    def _signing_key(cls, value: str) -> str:
        try:
            return raw_public_b64(load_verify_key(value))  # stored and published as raw base64
        except KeyFormatError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("encr_public_key")
    @classmethod
    def _encr_key(cls, value: str) -> str:
        try:
            return base64.b64encode(load_x25519_public(value)).decode("ascii")
        except KeyFormatError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("log_vkey")
    @classmethod
    def _log_vkey(cls, value: str | None) -> str | None:
        return None if value is None else check_log_vkey(value)

    @model_validator(mode="after")
    def _window(self) -> Registration:
        if self.valid_from is not None and self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be later than valid_from")
        return self


MAX_LOG_VKEY = 512  # registry_key.log_vkey


def check_log_vkey(value: str) -> str:
    """A log key as the registry publishes it: an Ed25519 (type 0x01) C2SP note verifier key whose
    key ID matches its key; ValueError otherwise. Cosigner keys (0x04) are refused: a log signs
    checkpoints with 0x01 signatures."""
    if len(value) > MAX_LOG_VKEY:
        raise ValueError(f"log_vkey is longer than {MAX_LOG_VKEY} characters")
    try:
        verifier = NoteVerifier.from_vkey(value)
    except NoteError as exc:
        raise ValueError(f"log_vkey is not a C2SP note verifier key (<name>+<8 hex key ID>+"
                         f"<base64(0x01 || Ed25519 public key)>): {exc}") from None
    if verifier.sig_type != ED25519:
        raise ValueError(f"log_vkey must be an Ed25519 note key (type 0x01), not type 0x{verifier.sig_type:02x}")
    return value


def validation_errors(exc: ValidationError) -> list[BecknError]:
    """Pydantic's errors as Beckn errors: one per field, with its path and a readable message."""
    errors = []
    for error in exc.errors():
        message = error.get("msg", "invalid").removeprefix("Value error, ")
        path = ".".join(str(p) for p in error.get("loc", ())) or None
        if error.get("type") == "extra_forbidden":
            message = f"unknown field {path!r}"
        elif error.get("type") == "missing":
            message = f"{path} is required"
        elif path and path not in message and path.replace("_", " ") not in message:
            message = f"{path}: {message}"
        errors.append(BecknError(ErrorCode.INVALID_REQUEST.value, message, path))
    return errors


def parse_registration(payload: Any) -> Registration:
    """A `Registration` from decoded JSON, or `ApiError` 400 listing every problem."""
    if not isinstance(payload, dict):
        raise ApiError(400, f"request body must be a JSON object, not {type(payload).__name__}")
    try:
        return Registration.model_validate(payload)
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise ApiError(400, errors[0].message, path=errors[0].path, details=errors[1:]) from None


class RegistrationConflict(ApiError):
    """The registration contradicts what the registry already holds (HTTP 409)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(409, message, path=path, code=ErrorCode.POLICY_ERROR.value)


@dataclass(frozen=True, slots=True)
class Registered:
    participant: RegistryParticipant
    key: RegistryKey
    participant_created: bool
    key_created: bool
    changed: bool  # False: the registry already held exactly this

    @property
    def created(self) -> bool:
        return self.participant_created or self.key_created


async def register(
    sessions: async_sessionmaker[AsyncSession],
    registration: Registration,
    *,
    now: datetime | None = None,
    status: ParticipantStatus = ParticipantStatus.SUBSCRIBED,
) -> Registered:
    """Insert or update the entry (subscriber_id, type, domain) with `status` (SUBSCRIBED: the
    operator's approval; the subscribe flow may pass UNDER_SUBSCRIPTION), and its key.

    Raises `RegistrationConflict` if `unique_key_id` is already bound to other key material or
    was revoked, `ApiError` 400 if the merged validity window is empty. Safe when the same node
    registers from several processes at once: a lost insert race is retried.
    """
    now = truncate_ms(now or datetime.now(UTC))
    for attempt in range(3):
        try:
            async with sessions() as session, session.begin():
                return await _upsert(session, registration, now, status)
        except IntegrityError:
            if attempt == 2:
                raise
            # Someone inserted the same entry or key between our read and our write: read again.
    raise AssertionError("unreachable")


async def _upsert(session: AsyncSession, reg: Registration, now: datetime,
                  status: ParticipantStatus = ParticipantStatus.SUBSCRIBED) -> Registered:
    key = (await session.execute(
        select(RegistryKey).where(RegistryKey.subscriber_id == reg.subscriber_id,
                                  RegistryKey.unique_key_id == reg.unique_key_id)
    )).scalar_one_or_none()
    key_created = key is None
    key_changed = False
    if key is None:
        valid_from = reg.valid_from or now
        valid_until = reg.valid_until or valid_from + DEFAULT_VALIDITY
        _check_window(valid_from, valid_until)
        key = RegistryKey(subscriber_id=reg.subscriber_id, unique_key_id=reg.unique_key_id,
                          signing_public_key=reg.signing_public_key, encr_public_key=reg.encr_public_key,
                          valid_from=valid_from, valid_until=valid_until, created=now, log_vkey=reg.log_vkey)
        session.add(key)
    else:
        label = f"{reg.subscriber_id}|{reg.unique_key_id}"
        if key.signing_public_key != reg.signing_public_key:
            raise RegistrationConflict(
                f"key {label} is already registered with another signing_public_key; a key id is never "
                "rebound: register the new key under a new unique_key_id", "signing_public_key")
        if key.encr_public_key != reg.encr_public_key:
            raise RegistrationConflict(
                f"key {label} is already registered with another encr_public_key; a key id is never "
                "rebound: register the new key under a new unique_key_id", "encr_public_key")
        if key.revoked_at is not None:
            raise RegistrationConflict(
                f"key {label} was revoked at {wire_time(key.revoked_at)}; register a new unique_key_id",
                "unique_key_id")
        log_conflict = log_vkey_conflict(key, reg)
        if log_conflict:
            raise RegistrationConflict(log_conflict, "log_vkey")
        if reg.log_vkey is not None and key.log_vkey is None:
            # First publication of a log key for this Beckn key (a node that turned its log on).
            key.log_vkey = reg.log_vkey
            key_changed = True
        # A key valid once stays valid from then on (signatures made under it must keep
        # verifying), so valid_from only ever moves earlier; valid_until follows the operator,
        # which is how a key is renewed or retired.
        valid_from = min(key.valid_from, reg.valid_from) if reg.valid_from else key.valid_from
        valid_until = reg.valid_until or key.valid_until
        _check_window(valid_from, valid_until)
        if (valid_from, valid_until) != (key.valid_from, key.valid_until):
            key.valid_from, key.valid_until = valid_from, valid_until
            key_changed = True

    participant = (await session.execute(
        select(RegistryParticipant).where(RegistryParticipant.subscriber_id == reg.subscriber_id,
                                          RegistryParticipant.type == reg.type.value,
                                          RegistryParticipant.domain == reg.domain)
    )).scalar_one_or_none()
    participant_created = participant is None
    participant_changed = False
    wanted = {"url": reg.url, "city": reg.city, "country": reg.country,
              "status": status.value}
    if participant is None:
        participant = RegistryParticipant(subscriber_id=reg.subscriber_id, type=reg.type.value,
                                          domain=reg.domain, created=now, updated=now, **wanted)
        session.add(participant)
    else:
        for name, value in wanted.items():
            if getattr(participant, name) != value:
                setattr(participant, name, value)
                participant_changed = True
        if participant_changed:
            participant.updated = now
    await session.flush()

    changed = key_created or key_changed or participant_created or participant_changed
    if changed:
        log.info("registry.registered", subscriber_id=reg.subscriber_id, type=reg.type.value, domain=reg.domain,
                 unique_key_id=reg.unique_key_id, new_entry=participant_created, new_key=key_created)
    return Registered(participant, key, participant_created, key_created, changed)


def log_vkey_conflict(key: RegistryKey, reg: Registration) -> str | None:
    """Why `reg` may not be applied to the stored `key` because of its log key, or None.

    A log key, once published with a unique_key_id, is part of that key's material: never
    rebound (an auditor dates the log key by the Beckn key's validity window). A new log key is
    registered with a new unique_key_id. Omitting it keeps the stored one."""
    if reg.log_vkey is None or key.log_vkey is None or reg.log_vkey == key.log_vkey:
        return None
    return (f"key {reg.subscriber_id}|{reg.unique_key_id} is already registered with another log_vkey; a key id is "
            "never rebound: register the new log key with a new unique_key_id")


def _check_window(valid_from: datetime, valid_until: datetime) -> None:
    if valid_until <= valid_from:
        raise ApiError(400, f"valid_until ({wire_time(valid_until)}) must be later than valid_from "
                            f"({wire_time(valid_from)})", path="valid_until")


# ------------------------------------------------------------------ listing (operator views)


async def list_entries(
    session: AsyncSession, *, subscriber_id: str | None = None
) -> list[tuple[RegistryParticipant, list[RegistryKey]]]:
    """Every entry (any status) with all its subscriber's keys, newest key first."""
    query = select(RegistryParticipant).order_by(
        RegistryParticipant.subscriber_id, RegistryParticipant.type, RegistryParticipant.domain)
    keys_query = select(RegistryKey).order_by(RegistryKey.valid_from.desc(), RegistryKey.id.desc())
    if subscriber_id is not None:
        query = query.where(RegistryParticipant.subscriber_id == subscriber_id)
        keys_query = keys_query.where(RegistryKey.subscriber_id == subscriber_id)
    participants = (await session.execute(query)).scalars().all()
    keys: dict[str, list[RegistryKey]] = {}
    for key in (await session.execute(keys_query)).scalars().all():
        keys.setdefault(key.subscriber_id, []).append(key)
    return [(p, keys.get(p.subscriber_id, [])) for p in participants]


def key_state(key: RegistryKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if now < key.valid_from:
        return "not yet valid"
    if now >= key.valid_until:
        return "expired"
    return "valid"


def key_json(key: RegistryKey, now: datetime) -> dict[str, Any]:
    return {
        "unique_key_id": key.unique_key_id,
        "signing_public_key": key.signing_public_key,
        "encr_public_key": key.encr_public_key,
        "valid_from": wire_time(key.valid_from),
        "valid_until": wire_time(key.valid_until),
        "created": wire_time(key.created),
        "revoked_at": wire_time(key.revoked_at) if key.revoked_at else None,
        "log_vkey": key.log_vkey,
        "state": key_state(key, now),
    }


def entry_json(participant: RegistryParticipant, keys: Sequence[RegistryKey], now: datetime) -> dict[str, Any]:
    return {
        "subscriber_id": participant.subscriber_id,
        "type": participant.type,
        "domain": participant.domain,
        "city": participant.city,
        "country": participant.country,
        "url": participant.url,
        "status": participant.status,
        "created": wire_time(participant.created),
        "updated": wire_time(participant.updated),
        "keys": [key_json(k, now) for k in keys],
    }
