"""Beckn error vocabulary: BECKN-005 codes, the Error object and ACK/NACK bodies.

The 1.1 core `Error` is `{code, paths, message}`; 0.9.x and ONDC peers read `{type, code, path,
message}`. We emit both spellings so that every peer finds what it parses (digest §10.2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    """BECKN-005 codes, plus the ONDC signature and staleness codes the core spec lacks."""

    INVALID_REQUEST = "30000"
    PROVIDER_NOT_FOUND = "30001"
    PROVIDER_LOCATION_NOT_FOUND = "30002"
    PROVIDER_CATEGORY_NOT_FOUND = "30003"
    ITEM_NOT_FOUND = "30004"
    CATEGORY_NOT_FOUND = "30005"
    OFFER_NOT_FOUND = "30006"
    ADD_ON_NOT_FOUND = "30007"
    FULFILLMENT_UNAVAILABLE = "30008"
    FULFILLMENT_PROVIDER_UNAVAILABLE = "30009"
    ORDER_NOT_FOUND = "30010"
    INVALID_CANCELLATION_REASON = "30011"
    INVALID_UPDATE_TARGET = "30012"
    UPDATE_INCONSISTENCY = "30013"
    ENTITY_TO_RATE_NOT_FOUND = "30014"
    INVALID_RATING_VALUE = "30015"
    BUSINESS_ERROR = "40000"
    ACTION_NOT_APPLICABLE = "40001"
    ITEM_QUANTITY_UNAVAILABLE = "40002"
    QUOTE_UNAVAILABLE = "40003"
    PAYMENT_NOT_SUPPORTED = "40004"
    TRACKING_NOT_SUPPORTED = "40005"
    FULFILLMENT_AGENT_UNAVAILABLE = "40006"
    POLICY_ERROR = "50000"
    CANCELLATION_NOT_POSSIBLE = "50001"
    UPDATION_NOT_POSSIBLE = "50002"
    UNSUPPORTED_RATING_CATEGORY = "50003"
    SUPPORT_UNAVAILABLE = "50004"
    # ONDC extension codes (ONDC-Official/developer-docs:protocol-network-extension/error-codes.md):
    # BECKN-005 has no code for a bad signature or a stale message, and peers that already
    # handle ONDC's understand these.
    GATEWAY_INVALID_SIGNATURE = "10001"
    BAP_INVALID_SIGNATURE = "20001"
    BAP_STALE_REQUEST = "20002"
    BPP_INVALID_SIGNATURE = "30016"
    BPP_STALE_REQUEST = "30022"


_ERROR_TYPE_BY_FAMILY = {"1": "CONTEXT-ERROR", "2": "CONTEXT-ERROR", "3": "CORE-ERROR",
                         "4": "DOMAIN-ERROR", "5": "POLICY-ERROR"}


@dataclass(frozen=True, slots=True)
class BecknError:
    """One reason to refuse a message. `path` is a JSONPath-like pointer such as
    `message.order.items[0].id`, or `context.ttl`, or None when the whole message is at fault."""

    code: str
    message: str
    path: str | None = None

    def to_json(self) -> dict[str, str]:
        out: dict[str, str] = {
            "type": _ERROR_TYPE_BY_FAMILY.get(self.code[:1], "CORE-ERROR"),
            "code": self.code,
            "message": self.message,
        }
        if self.path is not None:
            out["paths"] = self.path  # Beckn 1.1 spelling
            out["path"] = self.path  # 0.9.x / ONDC spelling
        return out


ACK_BODY: bytes = b'{"message":{"ack":{"status":"ACK"}}}'


def nack_body(error: BecknError | None = None, *, details: list[BecknError] | None = None) -> bytes:
    """A NACK response body. The first error goes in `error`; further ones, if any, ride along
    in `error.details` so a sender can fix every problem in one round."""
    payload: dict[str, object] = {"message": {"ack": {"status": "NACK"}}}
    if error is not None:
        err: dict[str, object] = dict(error.to_json())
        if details:
            err["details"] = [e.to_json() for e in details]
        payload["error"] = err
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def error_callback_payload(error: BecknError) -> dict[str, object]:
    """The `error` member of an `on_*` callback that reports a business failure."""
    return {k: v for k, v in error.to_json().items() if k in ("code", "paths", "message")}
