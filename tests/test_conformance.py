"""What we emit conforms to the published Beckn 1.1.1 OpenAPI (transaction.yaml).

For each of the 20 endpoints, a realistic message built with `beckn.models` and dumped with
`to_wire()` must validate against that endpoint's request-body schema (JSON Schema 2020-12, with
format checking), and our ACK/NACK bodies against its response schema.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from beckn.errors import ACK_BODY, BecknError, ErrorCode, nack_body
from beckn.models import CALLBACK_ACTIONS, ENVELOPES, REQUEST_ACTIONS, is_callback, parse_envelope
from beckn_examples import example_callback, example_request
from conftest import TRANSACTION_YAML

SPEC_URI = "urn:beckn:core:1.1.1:transaction"


class Spec:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource(SPEC_URI, resource)
        self._resolver = self.registry.resolver(SPEC_URI)

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{SPEC_URI}#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def request_validator(self, action: str) -> Draft202012Validator:
        return self.validator(f"/paths/~1{action}/post/requestBody/content/application~1json/schema")

    def response_validator(self, action: str) -> Draft202012Validator:
        # Most paths' `responses.default` is a $ref to /init's: follow it to the real response.
        pointer = f"/paths/~1{action}/post/responses/default"
        for _ in range(5):
            contents = self._resolver.lookup(f"#{pointer}").contents
            if "$ref" not in contents:
                return self.validator(f"{pointer}/content/application~1json/schema")
            pointer = contents["$ref"].removeprefix("#")
        raise AssertionError(f"$ref chain too long for {action} responses")


@pytest.fixture(scope="session")
def spec() -> Spec:
    if not TRANSACTION_YAML.is_file():
        pytest.fail(f"the Beckn spec is missing: expected {TRANSACTION_YAML} (shared/specs beside the repo)")
    with TRANSACTION_YAML.open(encoding="utf-8") as f:
        return Spec(yaml.safe_load(f))


def _errors(validator: Draft202012Validator, instance: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)]


def test_the_spec_has_exactly_our_twenty_endpoints(spec: Spec) -> None:
    assert sorted(p.removeprefix("/") for p in spec.document["paths"]) == sorted(ENVELOPES)
    assert len(REQUEST_ACTIONS) == len(CALLBACK_ACTIONS) == 10


def test_format_checking_is_really_on() -> None:
    # Without rfc3339-validator and rfc3986-validator installed, jsonschema silently skips the
    # `date-time` and `uri` formats, and the tests below would check much less than they claim.
    missing = {"date-time", "uri", "uuid"} - set(Draft202012Validator.FORMAT_CHECKER.checkers)
    assert not missing, f"jsonschema cannot check formats {missing}: install rfc3339-validator rfc3986-validator"


@pytest.mark.parametrize("action", list(ENVELOPES))
def test_our_message_validates_against_the_spec(spec: Spec, action: str) -> None:
    wire = example_callback(action) if is_callback(action) else example_request(action)
    assert wire["context"]["action"] == action
    assert _errors(spec.request_validator(action), wire) == []
    # and our own parser reads it back unchanged
    assert parse_envelope(action, wire).to_wire() == wire


@pytest.mark.parametrize("action", list(ENVELOPES))
def test_our_ack_and_nack_bodies_validate_against_the_spec(spec: Spec, action: str) -> None:
    validator = spec.response_validator(action)
    first = BecknError(ErrorCode.ITEM_NOT_FOUND, "Item not found", "message.order.items[0].id")
    nacks = [
        nack_body(),
        nack_body(first),
        nack_body(first, details=[BecknError(ErrorCode.INVALID_REQUEST, "context.ttl is required", "context.ttl")]),
        nack_body(BecknError(ErrorCode.BPP_STALE_REQUEST, "stale message")),  # no path at all
    ]
    for body in [ACK_BODY, *nacks]:
        assert _errors(validator, json.loads(body)) == [], body


def test_callback_error_member_validates(spec: Spec) -> None:
    wire = example_callback("on_select")
    del wire["message"]
    wire["error"] = {"code": "40002", "paths": "message.order.items[0].quantity", "message": "Quantité indisponible"}
    assert _errors(spec.request_validator("on_select"), wire) == []
    assert parse_envelope("on_select", wire).to_wire() == wire


@pytest.mark.parametrize("mutate, where", [
    (lambda w: w["context"].__setitem__("action", "select"), "context/action"),
    (lambda w: w["context"].__setitem__("message_id", "1655281254860"), "context/message_id"),
    (lambda w: w["context"].__setitem__("timestamp", "04/06/2025 10:00"), "context/timestamp"),
    (lambda w: w["context"].__setitem__("bap_uri", "pas une url"), "context/bap_uri"),
    (lambda w: w["message"]["intent"]["fulfillment"]["stops"][0]["location"].__setitem__("gps", "200, 61"),
     "message/intent/fulfillment/stops/0/location/gps"),
    (lambda w: w.pop("message"), "(root)"),
])
def test_the_validator_really_rejects_bad_messages(spec: Spec, mutate: Any, where: str) -> None:
    wire = example_request("search")
    mutate(wire)
    errors = _errors(spec.request_validator("search"), wire)
    assert errors and all(e.startswith(where + ":") for e in errors), errors


def test_the_validator_rejects_a_bad_order(spec: Spec) -> None:
    wire = example_request("select")
    wire["message"]["order"]["items"][0]["quantity"]["selected"]["count"] = -1
    wire["message"]["order"]["type"] = "WEIRD"
    errors = _errors(spec.request_validator("select"), wire)
    assert len(errors) == 2, errors
    assert any(e.startswith("message/order/items/0/quantity/selected/count:") for e in errors)
    assert any(e.startswith("message/order/type:") for e in errors)


def test_the_response_validator_rejects_a_bad_ack(spec: Spec) -> None:
    validator = spec.response_validator("search")
    assert _errors(validator, {"message": {"ack": {"status": "OK"}}})
    assert _errors(validator, {"error": {"code": "30000"}})
