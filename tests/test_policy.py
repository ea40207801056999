"""beckn.policy: the network's context rules, each with its exact code and path, and the time helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from beckn.errors import BecknError, ErrorCode
from beckn.models import CALLBACK_ACTIONS, ENVELOPES, REQUEST_ACTIONS, Context, is_callback, parse_envelope
from beckn.policy import NetworkPolicy, message_expires_at, parse_duration, parse_timestamp
from beckn_examples import example_callback, example_request, wire_time

NOW = datetime(2025, 6, 4, 10, 0, 0, tzinfo=UTC)
REQUIRED = ("domain", "action", "version", "bap_id", "bap_uri", "transaction_id", "message_id", "timestamp", "ttl")


def _wire(action: str, now: datetime = NOW) -> dict[str, Any]:
    return example_callback(action, now=now) if is_callback(action) else example_request(action, now=now)


def _check(action: str, wire: dict[str, Any], *, now: datetime = NOW, policy: NetworkPolicy | None = None
           ) -> list[BecknError]:
    return (policy or NetworkPolicy()).check(action, parse_envelope(action, wire), now=now)


def _paths(errors: list[BecknError]) -> list[str | None]:
    return [error.path for error in errors]


def _one(errors: list[BecknError], path: str, code: str = ErrorCode.INVALID_REQUEST) -> BecknError:
    assert _paths(errors) == [path], [e.message for e in errors]
    assert errors[0].code == code
    return errors[0]


@pytest.mark.parametrize("action", list(ENVELOPES))
def test_a_complete_message_passes(action: str) -> None:
    assert _check(action, _wire(action)) == []


# --- required context fields ------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED)
@pytest.mark.parametrize("action", ["search", "confirm", "on_status"])
@pytest.mark.parametrize("absent", ["deleted", "empty"])
def test_required_context_fields(action: str, field: str, absent: str) -> None:
    wire = _wire(action)
    if absent == "deleted":
        del wire["context"][field]
    else:
        wire["context"][field] = ""
    error = _one(_check(action, wire), f"context.{field}")
    assert error.message == f"context.{field} is required"


@pytest.mark.parametrize("field", ["country", "city"])
def test_search_needs_country_and_city_codes(field: str) -> None:
    wire = _wire("search")
    del wire["context"]["location"][field]["code"]
    error = _one(_check("search", wire), f"context.location.{field}.code")
    assert "required on search" in error.message


def test_search_without_location_reports_both_codes() -> None:
    wire = _wire("search")
    del wire["context"]["location"]
    assert _paths(_check("search", wire)) == ["context.location.country.code", "context.location.city.code"]


@pytest.mark.parametrize("action", [a for a in ENVELOPES if a != "search"])
def test_other_actions_do_not_need_a_location(action: str) -> None:
    wire = _wire(action)
    del wire["context"]["location"]
    assert _check(action, wire) == []


@pytest.mark.parametrize("field", ["bpp_id", "bpp_uri"])
@pytest.mark.parametrize("action", [a for a in ENVELOPES if a != "search"])
def test_bpp_fields_are_required_except_on_search(action: str, field: str) -> None:
    wire = _wire(action)
    del wire["context"][field]
    _one(_check(action, wire), f"context.{field}")


def test_search_through_the_gateway_names_no_bpp() -> None:
    wire = _wire("search")
    assert "bpp_id" not in wire["context"] and "bpp_uri" not in wire["context"]
    assert _check("search", wire) == []


def test_on_search_must_name_its_bpp() -> None:
    # the BAP addresses later calls to the bpp_id/bpp_uri given here
    wire = _wire("on_search")
    del wire["context"]["bpp_id"], wire["context"]["bpp_uri"]
    assert _paths(_check("on_search", wire)) == ["context.bpp_id", "context.bpp_uri"]


# --- field values -----------------------------------------------------------------------------


def test_context_action_must_match_the_endpoint() -> None:
    wire = _wire("select")
    wire["context"]["action"] = "init"
    error = _one(_check("select", wire), "context.action")
    assert "'init'" in error.message and "/select" in error.message


@pytest.mark.parametrize("version, accepted", [
    ("1.1.0", True), ("1.1.1", True), ("1.0.0", False), ("2.0.0", False), ("1.2.0", False),
])
def test_version_must_be_accepted(version: str, accepted: bool) -> None:
    wire = _wire("init")
    wire["context"]["version"] = version
    errors = _check("init", wire)
    if accepted:
        assert errors == []
    else:
        assert "1.1.0, 1.1.1" in _one(errors, "context.version").message


def test_accepted_versions_are_configurable() -> None:
    wire = _wire("init")
    wire["context"]["version"] = "1.1.0"
    _one(_check("init", wire, policy=NetworkPolicy(accepted_versions=("1.2.0",))), "context.version")


@pytest.mark.parametrize("value, ok", [
    ("6D0F7C2E-8F5B-4B7A-9D51-3C2E1A0B9F84", True),  # upper case is still a UUID
    ("0190a6c1-7b5e-7c3a-8f00-5d2a9b1c4e7f", True),  # v7
    ("1655281254860", False),  # ONDC-style
    ("{6d0f7c2e-8f5b-4b7a-9d51-3c2e1a0b9f84}", False),
    ("6d0f7c2e8f5b4b7a9d513c2e1a0b9f84", False),
    ("urn:uuid:6d0f7c2e-8f5b-4b7a-9d51-3c2e1a0b9f84", False),
    ("6d0f7c2e-8f5b-4b7a-9d51-3c2e1a0b9f8", False),
])
@pytest.mark.parametrize("field", ["transaction_id", "message_id"])
def test_ids_must_be_uuids(field: str, value: str, ok: bool) -> None:
    wire = _wire("status")
    wire["context"][field] = value
    errors = _check("status", wire)
    if ok:
        assert errors == []
    else:
        assert repr(value) in _one(errors, f"context.{field}").message
        assert _check("status", wire, policy=NetworkPolicy(require_uuid_ids=False)) == []


@pytest.mark.parametrize("value, ok", [
    ("https://bap.lakou.test/beckn", True),
    ("http://127.0.0.1:8080/beckn", True),
    ("https://[::1]/beckn", True),
    ("bap.lakou.test/beckn", False),
    ("ftp://bap.lakou.test/beckn", False),
    ("https://", False),
    ("https:///beckn", False),
    ("https://bap.lakou .test/beckn", False),
    ("https://[::1/beckn", False),
])
@pytest.mark.parametrize("field", ["bap_uri", "bpp_uri"])
def test_uris_must_be_absolute_http_urls(field: str, value: str, ok: bool) -> None:
    wire = _wire("confirm")
    wire["context"][field] = value
    errors = _check("confirm", wire)
    if ok:
        assert errors == []
    else:
        _one(errors, f"context.{field}")


def test_a_bpp_uri_on_search_is_still_checked() -> None:
    wire = _wire("search")
    wire["context"] |= {"bpp_id": "bpp.lakou.test", "bpp_uri": "bpp.lakou.test"}
    _one(_check("search", wire), "context.bpp_uri")


@pytest.mark.parametrize("code, ok", [
    ("MTQ", True), ("MQ", True), ("GLP", True), ("FRA", True),
    ("mtq", False), ("Martinique", False), ("972", False), ("FR-972", False), ("M", False),
])
@pytest.mark.parametrize("action", ["search", "on_confirm"])
def test_country_code_must_look_like_iso_3166(action: str, code: str, ok: bool) -> None:
    wire = _wire(action)
    wire["context"]["location"]["country"]["code"] = code
    errors = _check(action, wire)
    if ok:
        assert errors == []
    else:
        _one(errors, "context.location.country.code")


def test_city_codes_are_the_networks_business() -> None:
    for code in ("97213", "std:0596", "std:972", "FDF"):
        wire = _wire("search")
        wire["context"]["location"]["city"]["code"] = code
        assert _check("search", wire) == []


# --- time: format, skew, staleness ------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "2025-06-04 10:00:00Z",  # space
    "2025-06-04T10:00:00",  # no offset
    "2025-06-04T10:00Z",  # no seconds
    "2025-06-04",
    "04/06/2025 10:00",
    "2025-13-04T10:00:00Z",  # month 13
    "2025-06-04T25:00:00Z",
    "1749031200",
])
def test_timestamp_must_be_rfc3339(value: str) -> None:
    wire = _wire("select")
    wire["context"]["timestamp"] = value
    error = _one(_check("select", wire), "context.timestamp")
    assert repr(value) in error.message


@pytest.mark.parametrize("value", ["2025-06-04T10:00:00Z", "2025-06-04t10:00:00.123456789z", "2025-06-04T14:00:00+04:00",
                                   "2025-06-04T06:00:00-04:00"])
def test_rfc3339_variants_are_accepted(value: str) -> None:
    wire = _wire("select")
    wire["context"]["timestamp"] = value
    assert _check("select", wire, now=NOW) == []


def test_timestamp_skew_boundary() -> None:
    policy = NetworkPolicy(timestamp_skew_seconds=30)
    wire = _wire("search", now=NOW + timedelta(seconds=30))
    assert _check("search", wire, policy=policy) == []
    wire = _wire("search", now=NOW + timedelta(seconds=30, milliseconds=1))
    error = _one(_check("search", wire, policy=policy), "context.timestamp")
    assert "in the future" in error.message and "30 s" in error.message


def test_staleness_boundary() -> None:
    wire = _wire("select")  # sent at NOW with ttl PT30S
    assert _check("select", wire, now=NOW + timedelta(seconds=30)) == []
    error = _one(_check("select", wire, now=NOW + timedelta(seconds=30, milliseconds=1)),
                 "context.timestamp", code=ErrorCode.BPP_STALE_REQUEST)
    assert "stale" in error.message and "2025-06-04T10:00:30.000Z" in error.message


def test_stale_code_is_configurable_for_a_bap() -> None:
    wire = _wire("on_select")
    later = NOW + timedelta(minutes=5)
    policy = NetworkPolicy(stale_code=ErrorCode.BAP_STALE_REQUEST)
    _one(_check("on_select", wire, now=later, policy=policy), "context.timestamp", code="20002")


def test_long_ttl_keeps_a_message_fresh() -> None:
    wire = _wire("on_status")
    wire["context"]["ttl"] = "P1D"
    assert _check("on_status", wire, now=NOW + timedelta(hours=23)) == []
    _one(_check("on_status", wire, now=NOW + timedelta(hours=25)), "context.timestamp", code="30022")


@pytest.mark.parametrize("ttl", ["30", "PT30", "pt30s", "-PT30S", "00:00:30", "P", "PT", "30 seconds"])
def test_ttl_must_be_an_iso8601_duration(ttl: str) -> None:
    wire = _wire("track")
    wire["context"]["ttl"] = ttl
    error = _one(_check("track", wire), "context.ttl")
    assert "ISO-8601" in error.message


def test_ttl_is_capped() -> None:
    wire = _wire("confirm")
    wire["context"]["ttl"] = "P31D"
    error = _one(_check("confirm", wire, policy=NetworkPolicy(max_ttl_seconds=86400 * 30)), "context.ttl")
    assert "2592000 seconds" in error.message
    wire["context"]["ttl"] = "P1M"  # 30 days: at the limit
    assert _check("confirm", wire, policy=NetworkPolicy(max_ttl_seconds=86400 * 30)) == []
    wire["context"]["ttl"] = "P1000Y"
    assert _check("confirm", wire, policy=NetworkPolicy(max_ttl_seconds=None)) == []


def test_every_violation_is_reported_at_once() -> None:
    wire = _wire("on_init")
    wire["context"] |= {
        "action": "on_select", "version": "0.9.4", "message_id": "42", "bpp_uri": "bpp.lakou.test",
        "ttl": "30s", "timestamp": wire_time(NOW + timedelta(hours=1)),
    }
    del wire["context"]["domain"]
    wire["context"]["location"]["country"]["code"] = "martinique"
    errors = _check("on_init", wire)
    assert _paths(errors) == [
        "context.domain", "context.action", "context.version", "context.message_id", "context.bpp_uri",
        "context.location.country.code", "context.ttl", "context.timestamp",
    ]
    assert all(error.code == ErrorCode.INVALID_REQUEST for error in errors)


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        NetworkPolicy().check("search", parse_envelope("search", _wire("search")), now=datetime(2025, 6, 4))


def test_now_in_another_zone_is_the_same_instant() -> None:
    martinique = timezone(timedelta(hours=-4))
    wire = _wire("select")
    assert _check("select", wire, now=NOW.astimezone(martinique)) == []


def test_unknown_action_is_a_violation() -> None:
    envelope = parse_envelope("search", _wire("search"))
    [error] = NetworkPolicy().check("purchase", envelope, now=NOW)
    assert error.code == ErrorCode.INVALID_REQUEST and "purchase" in error.message


def test_requests_and_callbacks_are_all_covered() -> None:
    for action in REQUEST_ACTIONS + CALLBACK_ACTIONS:
        assert _check(action, _wire(action)) == [], action


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("PT30S", timedelta(seconds=30)),
    ("PT0.5S", timedelta(milliseconds=500)),
    ("PT1H30M", timedelta(hours=1, minutes=30)),
    ("P1D", timedelta(days=1)),
    ("P1W", timedelta(days=7)),
    ("P1M", timedelta(days=30)),
    ("P1Y", timedelta(days=365)),
    ("P1DT2H", timedelta(days=1, hours=2)),
    ("P0D", timedelta(0)),
])
def test_parse_duration(value: str, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value, fragment", [
    ("-PT30S", "negative"),
    ("30", "ISO-8601"),
    ("PT30", "ISO-8601"),
    ("P99999999999Y", "too large"),
])
def test_parse_duration_errors_say_what_is_wrong(value: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)


def test_parse_timestamp_returns_aware_utc() -> None:
    parsed = parse_timestamp("2025-06-04T06:00:00.250-04:00")
    assert parsed == datetime(2025, 6, 4, 10, 0, 0, 250000, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_timestamp("2025-06-04T10:00:00")


def test_message_expires_at() -> None:
    context = Context(timestamp="2025-06-04T10:00:00.000Z", ttl="PT30S")
    assert message_expires_at(context) == NOW + timedelta(seconds=30)
    assert message_expires_at({"timestamp": "2025-06-04T10:00:00.000Z", "ttl": "P1D"}) == NOW + timedelta(days=1)
    assert message_expires_at(Context(timestamp="2025-06-04T10:00:00.000Z")) is None
    assert message_expires_at(Context(timestamp="yesterday", ttl="PT30S")) is None
    assert message_expires_at({"timestamp": "9999-12-31T23:59:59Z", "ttl": "P1Y"}) is None
