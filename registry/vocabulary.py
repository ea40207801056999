"""The registry's input vocabulary: role aliases, identifiers, URLs and timestamps.

Each function takes a value as a client sent it and returns it normalised, or raises
`ValueError` with a message fit to show that client.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from registry.tables import ParticipantType

# Role names seen in the wild (digest §6.1): core BAP/BPP/BG, protocol-server's BREG, ONDC's
# buyerApp/sellerApp/gateway, and 0.9.x lowercase roles where `bppr`/`bgr` are registries.
TYPE_ALIASES: dict[str, ParticipantType] = {
    "bap": ParticipantType.BAP,
    "buyerapp": ParticipantType.BAP,
    "bpp": ParticipantType.BPP,
    "sellerapp": ParticipantType.BPP,
    "bg": ParticipantType.BG,
    "gateway": ParticipantType.BG,
    "breg": ParticipantType.BREG,
    "registry": ParticipantType.BREG,
    "bppr": ParticipantType.BREG,
    "bgr": ParticipantType.BREG,
}
TYPES_ACCEPTED = "BAP, BPP, BG or BREG (any case; also buyerApp, sellerApp, gateway)"

# An identifier goes into the BECKN-006 keyId `"{subscriber_id}|{unique_key_id}|ed25519"`:
# a `|`, a quote, a comma or whitespace in it would make that header ambiguous or unparseable.
_IDENTIFIER = re.compile(r'^[^\s|",\\]+$')
# Domain-name labels; '_' too, which DNS allows outside host names and some ids use.
_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                          r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$")
# What urlsplit leaves of a host: a domain name, IPv4, or an IPv6 literal without its brackets.
_HOST = re.compile(r"^(?:[A-Za-z0-9_.-]+|[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)$")
MAX_SUBSCRIBER_ID = 255
MAX_KEY_ID = 128
MAX_URL = 2048
MAX_CODE = 64
MAX_DOMAIN = 255


def parse_type(value: str) -> ParticipantType:
    role = TYPE_ALIASES.get(value.strip().lower())
    if role is None:
        raise ValueError(f"unknown participant type {value!r}: expected {TYPES_ACCEPTED}")
    return role


def check_identifier(value: str, what: str, max_length: int) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{what} is empty")
    if len(value) > max_length:
        raise ValueError(f"{what} is longer than {max_length} characters")
    if _has_control(value):
        raise ValueError(f"{what} {value!r} contains a control character")
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{what} {value!r} contains whitespace or one of | \" , \\ (it goes into the "
                         "Authorization keyId, where they are separators)")
    if not value.isascii():
        raise ValueError(f"{what} {value!r} must be ASCII (write an internationalised domain name in its "
                         "xn-- form)")
    return value


def check_subscriber_id(value: str) -> str:
    """A subscriber id: the participant's domain name (Beckn: an FQDN), such as bpp.example.mq.
    Stricter than other identifiers because it is also a DID path segment and a host name."""
    value = check_identifier(value, "subscriber_id", MAX_SUBSCRIBER_ID)
    if not _DOMAIN_NAME.match(value):
        raise ValueError(f"subscriber_id {value!r} must be a domain name such as bpp.example.mq: letters, digits, "
                         "'-' and '_' in dot-separated labels (write an internationalised name in its xn-- form)")
    return value


def check_code(value: str, what: str, max_length: int = MAX_CODE) -> str:
    """A domain, city or country code; '' means "any" (registered as blank)."""
    value = value.strip()
    if len(value) > max_length:
        raise ValueError(f"{what} is longer than {max_length} characters")
    if _has_control(value):
        raise ValueError(f"{what} {value!r} contains a control character")
    if any(c.isspace() for c in value):
        raise ValueError(f"{what} {value!r} contains whitespace")
    return value


def check_url(value: str) -> str:
    """An absolute http(s) URL, without a trailing slash (so lookups by URL compare exactly)."""
    value = value.strip()
    if len(value) > MAX_URL:
        raise ValueError(f"url is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"url {value!r} is not a valid URL: {exc}") from None
    if _has_control(value):
        raise ValueError(f"url {value!r} contains a control character")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url {value!r} must be an absolute http:// or https:// URL, "
                         "e.g. https://bpp.example.mq/beckn")
    if parts.fragment or any(c.isspace() for c in value):
        raise ValueError(f"url {value!r} must not contain a fragment or whitespace")
    # Published to every participant: credentials in it would leak, and would be sent on each call.
    if "@" in parts.netloc:
        raise ValueError(f"url {value!r} must not carry credentials (user:password@): participants "
                         "authenticate by signature")
    if not value.isascii():
        raise ValueError(f"url {value!r} must be ASCII: percent-encode the path and write an "
                         "internationalised host name in its xn-- form")
    if not _HOST.match(parts.hostname):
        raise ValueError(f"url {value!r} has an invalid host {parts.hostname!r}: expected a domain name or "
                         "an IP address")
    return value.rstrip("/")


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def parse_time(value: Any, what: str) -> datetime:
    """An RFC 3339 date-time with a time zone, as an aware UTC datetime to the millisecond.

    Milliseconds, because that is what lookups emit: a stored value then reads back exactly."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an RFC 3339 date-time string, e.g. 2026-01-01T00:00:00Z")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an RFC 3339 date-time, e.g. 2026-01-01T00:00:00Z") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {value!r} has no time zone: add Z or an offset such as -04:00")
    return truncate_ms(moment.astimezone(UTC))


def truncate_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def wire_time(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as every Lakou node writes timestamps."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
