"""The network's own rules on top of Beckn 1.1, which leaves every context field optional.

`NetworkPolicy.check` returns every violation at once (code + path), so a sender can fix a
message in one round. The rules are the digest's recommended policy (beckn-spec.md §3.1) and
hold for any federated territory: nothing here is specific to Martinique.

Durations: context `ttl` is ISO-8601 (`PT30S`, `P1D`). Calendar units have no fixed length, so
a year counts as 365 days and a month as 30 days (the convention of pydantic's parser, used
here); a ttl is a validity window, and a day's error over a month is irrelevant to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from beckn.errors import BecknError, ErrorCode
from beckn.models import ENVELOPES, BecknModel, Context

_REQUIRED_ALWAYS = (
    "domain", "action", "version", "bap_id", "bap_uri", "transaction_id", "message_id", "timestamp", "ttl",
)
# The canonical 8-4-4-4-12 form, as JSON Schema's `uuid` format demands; uuid.UUID() alone would
# also take braces, "urn:uuid:" prefixes and bare hex, which other peers' validators refuse.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# RFC 3339 `date-time` (section 5.6) is a strict profile of ISO 8601: full date, time, and an
# explicit offset. datetime.fromisoformat() accepts much more (no offset, week dates, basic
# format), so the shape is checked first and the parsing left to the standard library.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
_COUNTRY = re.compile(r"[A-Z]{2,3}")
_TIMEDELTA = TypeAdapter(timedelta)


def parse_duration(value: str) -> timedelta:
    """An ISO-8601 duration such as "PT30S" or "P1DT2H"; a month is 30 days, a year 365.

    Raises ValueError saying what is wrong. Negative durations are refused: a validity window
    cannot end before it starts.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO-8601 duration string such as \"PT30S\", not {type(value).__name__}")
    # pydantic also reads "00:00:30" and bare numbers as durations; the wire format is ISO-8601 only.
    if not value.startswith("P"):
        hint = " (negative durations are not allowed)" if value.startswith("-") else ""
        raise ValueError(f"{value!r} is not an ISO-8601 duration such as \"PT30S\" or \"P1D\"{hint}")
    try:
        return _TIMEDELTA.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors(include_url=False)[0]["msg"].removeprefix("Input should be a valid timedelta, ")
        raise ValueError(f"{value!r} is not an ISO-8601 duration such as \"PT30S\" or \"P1D\": {reason}") from None


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 date-time with an explicit offset, returned as an aware UTC datetime."""
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError(
            f"{value!r} is not an RFC 3339 date-time with a time zone, such as \"2025-06-03T08:00:00.000Z\""
        )
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):  # right shape, impossible values such as month 13 or 25:00
        raise ValueError(f"{value!r} is not a valid date and time") from None


def message_expires_at(context: Context | Mapping[str, object]) -> datetime | None:
    """`timestamp + ttl`, or None when either is missing or unreadable."""
    if isinstance(context, Context):
        timestamp, ttl = context.timestamp, context.ttl
    else:
        timestamp, ttl = context.get("timestamp"), context.get("ttl")
    if not isinstance(timestamp, str) or not isinstance(ttl, str):
        return None
    try:
        return parse_timestamp(timestamp) + parse_duration(ttl)
    except (ValueError, OverflowError):
        return None


@dataclass
class NetworkPolicy:
    """What this network demands of a message's context beyond the 1.1 schema.

    - `timestamp_skew_seconds`: how far in the future a sender's clock may be.
    - `accepted_versions`: `context.version` values we speak (1.1.x wire version).
    - `stale_code`: the code for an expired message; ONDC's 30022 (receiver is a BPP) or 20002
      (receiver is a BAP).
    - `require_uuid_ids`: transaction_id and message_id must be UUIDs, as the spec's format says;
      turn off only for peers that send ONDC-style numeric ids.
    - `max_ttl_seconds`: the longest validity we accept (None: no limit). A message is kept for
      duplicate detection until it expires, so an unbounded ttl would be an unbounded replay window.
    """

    timestamp_skew_seconds: int = 30
    accepted_versions: tuple[str, ...] = ("1.1.0", "1.1.1")
    stale_code: str = ErrorCode.BPP_STALE_REQUEST
    require_uuid_ids: bool = True
    max_ttl_seconds: int | None = 86400 * 30

    def check(self, action: str, envelope: BecknModel, *, now: datetime) -> list[BecknError]:
        """Every violation of this policy by `envelope`, received at endpoint `action`."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if action not in ENVELOPES:
            return [_invalid(f"unknown action {action!r}", None)]
        context = getattr(envelope, "context", None)
        if not isinstance(context, Context):
            return [_invalid("the message has no context", "context")]

        errors: list[BecknError] = []
        for name in self._required_fields(action):
            if not getattr(context, name):
                errors.append(_invalid(f"context.{name} is required", f"context.{name}"))
        if action == "search":
            location = context.location
            if not (location and location.country and location.country.code):
                errors.append(_invalid(
                    "context.location.country.code is required on search (ISO 3166-1, e.g. \"MTQ\")",
                    "context.location.country.code"))
            if not (location and location.city and location.city.code):
                errors.append(_invalid("context.location.city.code is required on search",
                                       "context.location.city.code"))

        if context.action and context.action != action:
            errors.append(_invalid(
                f"context.action is {context.action!r} but the message was sent to /{action}", "context.action"))
        if context.version and context.version not in self.accepted_versions:
            errors.append(_invalid(
                f"context.version {context.version!r} is not supported; use one of "
                f"{', '.join(self.accepted_versions)}", "context.version"))
        if self.require_uuid_ids:
            for name in ("transaction_id", "message_id"):
                value = getattr(context, name)
                if value and _UUID.fullmatch(value) is None:
                    errors.append(_invalid(
                        f"context.{name} must be a UUID such as \"3f1c2a4e-0b6d-4c1e-9a57-2d1f0c9e8b7a\", "
                        f"got {value!r}", f"context.{name}"))
        for name in ("bap_uri", "bpp_uri"):
            value = getattr(context, name)
            if value and not _is_http_url(value):
                errors.append(_invalid(
                    f"context.{name} must be an absolute http(s) URL such as \"https://bap.example.mq/beckn\", "
                    f"got {value!r}", f"context.{name}"))
        location = context.location
        if location and location.country and location.country.code:
            code = location.country.code
            if _COUNTRY.fullmatch(code) is None:
                errors.append(_invalid(
                    f"context.location.country.code must be an ISO 3166-1 alpha-3 or alpha-2 code in capitals "
                    f"such as \"MTQ\", got {code!r}", "context.location.country.code"))

        errors.extend(self._check_times(context, now))
        return errors

    def _required_fields(self, action: str) -> tuple[str, ...]:
        # A search may go through the gateway, which fans it out: it names no BPP yet.
        if action == "search":
            return _REQUIRED_ALWAYS
        return _REQUIRED_ALWAYS + ("bpp_id", "bpp_uri")

    def _check_times(self, context: Context, now: datetime) -> list[BecknError]:
        errors: list[BecknError] = []
        timestamp: datetime | None = None
        ttl: timedelta | None = None
        if context.timestamp:
            try:
                timestamp = parse_timestamp(context.timestamp)
            except ValueError as exc:
                errors.append(_invalid(f"context.timestamp: {exc}", "context.timestamp"))
        if context.ttl:
            try:
                ttl = parse_duration(context.ttl)
            except ValueError as exc:
                errors.append(_invalid(f"context.ttl: {exc}", "context.ttl"))
            else:
                if self.max_ttl_seconds is not None and ttl > timedelta(seconds=self.max_ttl_seconds):
                    errors.append(_invalid(
                        f"context.ttl {context.ttl!r} is longer than this network allows "
                        f"({self.max_ttl_seconds} seconds)", "context.ttl"))
                    ttl = None  # its expiry would be meaningless
        if timestamp is None:
            return errors
        ahead = timestamp - now
        if ahead > timedelta(seconds=self.timestamp_skew_seconds):
            errors.append(_invalid(
                f"context.timestamp {context.timestamp!r} is {ahead.total_seconds():.0f} s in the future "
                f"(allowed clock skew: {self.timestamp_skew_seconds} s); check the sender's clock",
                "context.timestamp"))
        elif ttl is not None:
            try:
                expires = timestamp + ttl
            except OverflowError:  # expires after year 9999: not stale
                return errors
            if expires < now:
                errors.append(BecknError(
                    self.stale_code,
                    f"stale message: sent at {context.timestamp} with ttl {context.ttl}, it expired at "
                    f"{_iso(expires)}, before it was received at {_iso(now)}",
                    "context.timestamp"))
        return errors


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)


def _invalid(message: str, path: str | None) -> BecknError:
    return BecknError(ErrorCode.INVALID_REQUEST, message, path)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
