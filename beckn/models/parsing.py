"""Endpoint registry and `parse_envelope`: JSON data -> envelope model, or every problem found.

Each pydantic error becomes a BECKN-005 `30000` error whose `path` a sender can follow into its
own message (`message.order.items[0].quantity.selected.count`) and whose text says what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from beckn.errors import BecknError, ErrorCode
from beckn.models import envelopes as e
from beckn.models.base import BecknModel

REQUEST_ACTIONS: tuple[str, ...] = (
    "search", "select", "init", "confirm", "status", "track", "cancel", "update", "rating", "support",
)
CALLBACK_ACTIONS: tuple[str, ...] = tuple(f"on_{action}" for action in REQUEST_ACTIONS)

ENVELOPES: dict[str, type[BecknModel]] = {
    "search": e.SearchRequest,
    "select": e.SelectRequest,
    "init": e.InitRequest,
    "confirm": e.ConfirmRequest,
    "status": e.StatusRequest,
    "track": e.TrackRequest,
    "cancel": e.CancelRequest,
    "update": e.UpdateRequest,
    "rating": e.RatingRequest,
    "support": e.SupportRequest,
    "on_search": e.OnSearchRequest,
    "on_select": e.OnSelectRequest,
    "on_init": e.OnInitRequest,
    "on_confirm": e.OnConfirmRequest,
    "on_status": e.OnStatusRequest,
    "on_track": e.OnTrackRequest,
    "on_cancel": e.OnCancelRequest,
    "on_update": e.OnUpdateRequest,
    "on_rating": e.OnRatingRequest,
    "on_support": e.OnSupportRequest,
}

_CALLBACKS = frozenset(CALLBACK_ACTIONS)
_INPUT_PREVIEW = 60


def is_callback(action: str) -> bool:
    """True for the ten `on_*` endpoints (BPP -> BAP), False for requests and unknown names."""
    return action in _CALLBACKS


class EnvelopeInvalid(Exception):
    """The body does not fit the endpoint's envelope; `errors` lists every problem."""

    def __init__(self, errors: Sequence[BecknError]) -> None:
        self.errors: list[BecknError] = list(errors)
        super().__init__("; ".join(error.message for error in self.errors))


def parse_envelope(action: str, data: object) -> BecknModel:
    """Validate parsed JSON `data` as the body of endpoint `action` (e.g. "on_select")."""
    model = ENVELOPES.get(action)
    if model is None:
        raise EnvelopeInvalid([BecknError(
            ErrorCode.INVALID_REQUEST,
            f"unknown action {action!r}: expected one of {', '.join(ENVELOPES)}",
        )])
    if not isinstance(data, dict):
        raise EnvelopeInvalid([BecknError(
            ErrorCode.INVALID_REQUEST,
            f"the body must be a JSON object with `context` and `message`, not {_json_kind(data)}",
        )])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EnvelopeInvalid(list(_to_beckn_errors(exc.errors(include_url=False)))) from None


def format_path(loc: Iterable[int | str]) -> str | None:
    """('message', 'order', 'items', 0, 'id') -> 'message.order.items[0].id'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or None


def _to_beckn_errors(details: list[ErrorDetails]) -> Iterable[BecknError]:
    for detail in details:
        if detail["type"] == e.MESSAGE_OR_ERROR:
            yield BecknError(ErrorCode.INVALID_REQUEST, detail["msg"], "message")
            continue
        path = format_path(detail["loc"])
        text = _describe(detail)
        if detail["type"] not in ("missing", "extra_forbidden"):
            text += f" (got {_preview(detail['input'])})"
        yield BecknError(ErrorCode.INVALID_REQUEST, f"{path or 'body'} {text}", path)


def _describe(detail: ErrorDetails) -> str:
    kind = detail["type"]
    ctx: dict[str, Any] = detail.get("ctx") or {}
    match kind:
        case "missing":
            return "is required"
        case "string_type":
            return "must be a string"
        case "int_type" | "int_parsing" | "int_from_float":
            return "must be an integer"
        case "bool_type" | "bool_parsing":
            return "must be true or false"
        case "list_type":
            return "must be a JSON array"
        case "model_type" | "model_attributes_type" | "dict_type":
            return "must be a JSON object"
        case "greater_than_equal":
            return f"must be {ctx.get('ge')} or more"
        case "less_than_equal":
            return f"must be {ctx.get('le')} or less"
        case "literal_error":
            return f"must be one of {ctx.get('expected')}"
        case _:
            return detail["msg"]


def _preview(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _INPUT_PREVIEW else text[: _INPUT_PREVIEW - 1] + "…"


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    if value is None:
        return "null"
    return type(value).__name__
