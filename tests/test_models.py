"""beckn.models: lossless round-trip, aliases, strict JSON types, and errors a sender can act on."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import beckn.models as models
from beckn.errors import ACK_BODY, BecknError, ErrorCode, nack_body
from beckn.models import (
    CALLBACK_ACTIONS,
    ENVELOPES,
    REQUEST_ACTIONS,
    AckResponse,
    BecknModel,
    Context,
    EnvelopeInvalid,
    Location,
    OnSearchRequest,
    OnSelectRequest,
    SelectRequest,
    Tag,
    TagGroup,
    is_callback,
    parse_envelope,
)
from beckn_examples import example_callback, example_request


def _example(action: str) -> dict[str, Any]:
    return example_callback(action) if is_callback(action) else example_request(action)


def _invalid(action: str, data: object) -> list[BecknError]:
    with pytest.raises(EnvelopeInvalid) as caught:
        parse_envelope(action, data)
    assert caught.value.errors, "EnvelopeInvalid must carry at least one error"
    assert all(error.code == ErrorCode.INVALID_REQUEST for error in caught.value.errors)
    return caught.value.errors


# --- registries -------------------------------------------------------------------------------


def test_registries_cover_the_twenty_endpoints() -> None:
    assert REQUEST_ACTIONS == ("search", "select", "init", "confirm", "status", "track", "cancel", "update",
                               "rating", "support")
    assert CALLBACK_ACTIONS == tuple(f"on_{a}" for a in REQUEST_ACTIONS)
    assert set(ENVELOPES) == set(REQUEST_ACTIONS) | set(CALLBACK_ACTIONS)
    assert ENVELOPES["select"] is SelectRequest and ENVELOPES["on_search"] is OnSearchRequest
    assert all(is_callback(a) for a in CALLBACK_ACTIONS)
    assert not any(is_callback(a) for a in REQUEST_ACTIONS)
    assert not is_callback("on_nothing")


# --- lossless round-trip ----------------------------------------------------------------------


@pytest.mark.parametrize("action", list(ENVELOPES))
def test_every_example_round_trips(action: str) -> None:
    wire = _example(action)
    envelope = parse_envelope(action, wire)
    assert isinstance(envelope, ENVELOPES[action])
    assert envelope.to_wire() == wire
    assert json.loads(envelope.to_wire_json()) == wire


def test_unknown_fields_survive_at_every_level() -> None:
    wire = example_callback("on_search")
    wire["signature_hint"] = {"alg": "ed25519"}  # top level
    wire["context"]["core_version"] = "1.2.0"  # 0.9/ONDC context fields
    wire["context"]["city"] = "std:0596"
    catalog = wire["message"]["catalog"]
    catalog["bpp/descriptor"] = {"name": "Lakou"}  # 0.9-style prefixed key
    provider = catalog["providers"][0]
    provider["@ondc/org/fssai_license_no"] = "12345678901234"
    item = provider["items"][0]
    item["@ondc/org/returnable"] = False
    item["@ondc/org/statutory_reqs_packaged_commodities"] = {"manufacturer_or_packer_name": "Ferme Bellevue"}
    item["price"]["tax_included"] = True  # unknown key inside a known nested object
    item["tags"][0]["code"] = "origine"  # ONDC-style TagGroup, inside a list
    item["tags"][0]["list"][0]["code"] = "commune"  # ... and inside a list inside a list
    item["tags"].append({"code": "veggie_nonveg", "list": [{"code": "veg", "value": "yes"}]})
    provider["locations"][0]["time"] = {"days": "1,2,3,4,5", "schedule": {"holidays": []}}

    envelope = parse_envelope("on_search", wire)
    assert envelope.to_wire() == wire
    parsed_item = envelope.message.catalog.providers[0].items[0]  # type: ignore[attr-defined]
    assert parsed_item.model_extra["@ondc/org/returnable"] is False
    assert parsed_item.tags[-1].model_extra == {"code": "veggie_nonveg"}
    assert parsed_item.tags[-1].list_[0].model_extra == {"code": "veg"}


# JSON has no NaN or Infinity, so neither is generated.
_json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_objects(value))
    return found


def _all_field_names() -> set[str]:
    names: set[str] = set()
    for name in models.__all__:
        model = getattr(models, name)
        if isinstance(model, type) and issubclass(model, BecknModel):
            names.update(info.alias or field for field, info in model.model_fields.items())
    return names


_ALL_FIELD_NAMES = _all_field_names()
_CONFIRM = example_callback("on_confirm")
_CONFIRM_OBJECTS = len(_objects(_CONFIRM))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extras=st.lists(
        st.tuples(st.integers(0, _CONFIRM_OBJECTS - 1), st.text(min_size=1, max_size=10), _json_values),
        min_size=1, max_size=5,
    )
)
def test_any_json_under_any_unknown_key_round_trips(extras: list[tuple[int, str, Any]]) -> None:
    wire = copy.deepcopy(_CONFIRM)
    objects = _objects(wire)
    for index, key, value in extras:
        # Unknown keys only (a name no model uses anywhere): a known key is a different test.
        if key not in _ALL_FIELD_NAMES:
            objects[index][key] = value
    assert parse_envelope("on_confirm", wire).to_wire() == wire


def test_wire_values_are_never_reformatted() -> None:
    wire = example_callback("on_select")
    wire["context"]["timestamp"] = "2025-06-04T14:00:00.5+04:00"  # not normalised to UTC or ms
    order = wire["message"]["order"]
    order["quote"]["price"]["value"] = "19.1"  # not "19.10", not a float
    order["quote"]["ttl"] = 900  # integer seconds stay an integer...
    order["provider"]["ttl"] = "PT1H"  # ... and a duration string stays a string
    order["items"][0]["price"]["value"] = "+004.50"
    order["fulfillments"][0]["stops"][0]["location"]["gps"] = "14.6037,-61.0742"
    assert parse_envelope("on_select", wire).to_wire() == wire


def test_only_fields_that_were_set_are_emitted() -> None:
    location = Location(gps="14.6097, -60.9967", address=None)
    assert location.to_wire() == {"gps": "14.6097, -60.9967", "address": None}
    assert Context(action="search").to_wire() == {"action": "search"}


# --- aliases ----------------------------------------------------------------------------------


def test_3dspace_alias_reads_and_writes_the_spec_name() -> None:
    location = Location.model_validate({"3dspace": "POLYHEDRON((0 0 0, 1 1 1))"})
    assert location.space_3d == "POLYHEDRON((0 0 0, 1 1 1))"
    assert location.to_wire() == {"3dspace": "POLYHEDRON((0 0 0, 1 1 1))"}
    assert Location(space_3d="x").to_wire() == {"3dspace": "x"}


def test_tag_group_list_alias() -> None:
    by_alias = TagGroup(list=[Tag(value="Le Lamentin")])
    by_name = TagGroup(list_=[Tag(value="Le Lamentin")])
    assert by_alias.to_wire() == by_name.to_wire() == {"list": [{"value": "Le Lamentin"}]}


# --- errors with exact paths ------------------------------------------------------------------


def test_error_paths_point_into_the_message() -> None:
    wire = example_request("select")
    items = wire["message"]["order"]["items"]
    items[0]["quantity"]["selected"]["count"] = "two"
    items[1]["quantity"]["selected"]["count"] = -1
    items[1]["price"]["value"] = 2.8
    items[1]["tags"] = [{"list": [{"display": "none"}]}]
    wire["message"]["order"]["provider"] = "ferme-bellevue-lamentin"
    errors = _invalid("select", wire)
    by_path = {error.path: error.message for error in errors}
    assert set(by_path) == {
        "message.order.items[0].quantity.selected.count",
        "message.order.items[1].quantity.selected.count",
        "message.order.items[1].price.value",
        "message.order.items[1].tags[0].list[0].display",
        "message.order.provider",
    }
    assert by_path["message.order.items[0].quantity.selected.count"] == (
        'message.order.items[0].quantity.selected.count must be an integer (got "two")')
    assert "must be 0 or more" in by_path["message.order.items[1].quantity.selected.count"]
    assert '"4.50"' in by_path["message.order.items[1].price.value"]
    assert "true or false" in by_path["message.order.items[1].tags[0].list[0].display"]
    assert "must be a JSON object" in by_path["message.order.provider"]


@pytest.mark.parametrize("value", ["2", 2.0, True, None])
def test_integers_are_not_coerced(value: object) -> None:
    # Accepting "2" and emitting 2 would break the round-trip; a clear refusal is better.
    wire = example_request("select")
    wire["message"]["order"]["items"][0]["quantity"]["selected"]["count"] = value
    if value is None:  # null is "not given", which every optional field allows
        assert parse_envelope("select", wire).to_wire() == wire
        return
    [error] = _invalid("select", wire)
    assert error.path == "message.order.items[0].quantity.selected.count"


@pytest.mark.parametrize("gps", ["200, 61", "14.6", "14,6 ; -61,0", "lat 14.6 lng -61"])
def test_gps_must_be_lat_comma_lng(gps: str) -> None:
    wire = example_request("search")
    wire["message"]["intent"]["fulfillment"]["stops"][0]["location"]["gps"] = gps
    [error] = _invalid("search", wire)
    assert error.path == "message.intent.fulfillment.stops[0].location.gps"
    assert "latitude, longitude" in error.message


@pytest.mark.parametrize("value", ["4,50", "abc1", "", "4.50 EUR", "1e3"])
def test_decimal_values_must_be_decimal_strings(value: str) -> None:
    wire = example_callback("on_search")
    wire["message"]["catalog"]["providers"][0]["items"][0]["price"]["value"] = value
    [error] = _invalid("on_search", wire)
    assert error.path == "message.catalog.providers[0].items[0].price.value"


@pytest.mark.parametrize("action, drop, path", [
    ("select", ("message", "order"), "message.order"),
    ("status", ("message", "order_id"), "message.order_id"),
    ("track", ("message", "order_id"), "message.order_id"),
    ("cancel", ("message", "order_id"), "message.order_id"),
    ("update", ("message", "update_target"), "message.update_target"),
    ("on_search", ("message", "catalog"), "message.catalog"),
    ("on_init", ("message", "order"), "message.order"),
    ("on_track", ("message", "tracking"), "message.tracking"),
    ("confirm", ("context",), "context"),
    ("search", ("message",), "message"),
])
def test_required_members_are_reported_by_path(action: str, drop: tuple[str, ...], path: str) -> None:
    wire = _example(action)
    parent = wire
    for key in drop[:-1]:
        parent = parent[key]
    del parent[drop[-1]]
    [error] = _invalid(action, wire)
    assert error.path == path
    assert error.message == f"{path} is required"


def test_every_problem_is_reported_at_once() -> None:
    errors = _invalid("update", {"context": {"action": 7, "ttl": 30}, "message": {}})
    assert [e.path for e in errors] == ["context.action", "context.ttl", "message.update_target", "message.order"]


def test_optional_message_contents_may_be_absent() -> None:
    for action in ("search", "rating", "support"):
        wire = {"context": {"action": action}, "message": {}}
        assert parse_envelope(action, wire).to_wire() == wire


def test_unknown_action_is_refused() -> None:
    [error] = _invalid("checkout", example_request("select"))
    assert error.path is None and "unknown action 'checkout'" in error.message


@pytest.mark.parametrize("data, kind", [
    ([{"context": {}}], "a JSON array"),
    ("{}", "a JSON string"),
    (None, "null"),
    (42, "a JSON number"),
    (True, "a JSON boolean"),
])
def test_non_object_bodies_get_a_clear_error(data: object, kind: str) -> None:
    [error] = _invalid("search", data)
    assert error.path is None
    assert "must be a JSON object" in error.message and kind in error.message


def test_envelope_invalid_message_lists_the_problems() -> None:
    with pytest.raises(EnvelopeInvalid) as caught:
        parse_envelope("status", {"context": {}, "message": {}})
    assert str(caught.value) == "message.order_id is required"


def test_long_inputs_are_abbreviated_in_messages() -> None:
    wire = example_request("select")
    wire["message"]["order"]["provider"] = "x" * 500
    [error] = _invalid("select", wire)
    assert len(error.message) < 150 and error.message.endswith("…)")


# --- callbacks ---------------------------------------------------------------------------------


def test_callback_may_carry_error_instead_of_message() -> None:
    wire = example_callback("on_select")
    del wire["message"]
    wire["error"] = {"code": "40002", "paths": "message.order.items[0].quantity", "message": "Quantité indisponible"}
    envelope = parse_envelope("on_select", wire)
    assert isinstance(envelope, OnSelectRequest)
    assert envelope.message is None and envelope.error is not None and envelope.error.code == "40002"
    assert envelope.to_wire() == wire


def test_callback_error_in_the_0_9_ondc_shape_is_accepted() -> None:
    wire = example_callback("on_confirm")
    del wire["message"]
    wire["error"] = {"type": "DOMAIN-ERROR", "code": "40000", "path": None, "message": "Stock épuisé"}
    envelope = parse_envelope("on_confirm", wire)
    assert envelope.error.type == "DOMAIN-ERROR" and envelope.error.path is None  # type: ignore[attr-defined]
    assert envelope.to_wire() == wire


def test_callback_with_neither_message_nor_error_is_refused() -> None:
    wire = example_callback("on_status")
    del wire["message"]
    [error] = _invalid("on_status", wire)
    assert error.path == "message" and "`error`" in error.message


def test_on_rating_needs_its_message_even_with_an_error() -> None:
    wire = example_callback("on_rating")
    del wire["message"]
    wire["error"] = {"code": "50003", "message": "Catégorie non notée"}
    [error] = _invalid("on_rating", wire)
    assert error.path == "message" and error.message == "message is required"


def test_callback_message_contents_are_still_checked_next_to_an_error() -> None:
    wire = example_callback("on_init")
    wire["error"] = {"code": "40000", "message": "x"}
    wire["message"] = {}
    [error] = _invalid("on_init", wire)
    assert error.path == "message.order"


# --- the synchronous response ------------------------------------------------------------------


def test_ack_and_nack_bodies_parse_and_round_trip() -> None:
    ack = AckResponse.model_validate_json(ACK_BODY)
    assert ack.message.ack.status == "ACK" and ack.error is None
    assert ack.to_wire() == json.loads(ACK_BODY)

    body = nack_body(BecknError(ErrorCode.ITEM_NOT_FOUND, "Article introuvable", "message.order.items[0].id"),
                     details=[BecknError(ErrorCode.INVALID_REQUEST, "context.ttl is required", "context.ttl")])
    nack = AckResponse.model_validate_json(body)
    assert nack.message.ack.status == "NACK"
    assert nack.error is not None and nack.error.code == "30004" and nack.error.paths == "message.order.items[0].id"
    assert nack.error.details is not None and nack.error.details[0].path == "context.ttl"
    assert nack.to_wire() == json.loads(body)


def test_ack_status_keeps_its_enum() -> None:
    with pytest.raises(ValueError, match="'ACK' or 'NACK'"):
        AckResponse.model_validate({"message": {"ack": {"status": "OK"}}})
