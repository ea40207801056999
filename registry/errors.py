"""Errors of the registry's HTTP API, and the one JSON shape they are answered with.

Every refusal is `{"error": {"code", "message", "paths"/"path", "type", "details"?}}`: the Beckn
error object (beckn/errors.py), so the same clients that read a NACK can read it, with the HTTP
status saying what kind of failure it is (400 bad input, 401 credentials, 403 disabled, 409
conflict, 413 too large, 503 store unavailable: retry).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from beckn.errors import BecknError, ErrorCode

log = structlog.get_logger(__name__)

# Nesting deeper than this in a request body is refused before it can exhaust the parser.
MAX_JSON_DEPTH = 32


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        path: str | None = None,
        code: str = ErrorCode.INVALID_REQUEST.value,
        details: list[BecknError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = BecknError(code, message, path)
        self.details = details or []
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body: dict[str, Any] = dict(self.error.to_json())
        if self.details:
            body["details"] = [d.to_json() for d in self.details]
        return JSONResponse({"error": body}, status_code=self.status_code, headers=self.headers)


def bad_request(message: str, path: str | None = None) -> ApiError:
    return ApiError(400, message, path=path)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body parsed as strict JSON, read at most `max_bytes` far. Raises `ApiError`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("request body is empty: send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("request body is not UTF-8 encoded JSON") from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise bad_request(f"request body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, and NaN/Infinity refused below
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    _check_strings(value, "")
    return value


def _check_strings(value: Any, path: str) -> None:
    """Refuse strings no field can hold: a lone UTF-16 surrogate (a `\\ud800` escape without
    its pair is valid JSON text but not Unicode: it cannot be stored, signed or answered) and
    NUL (PostgreSQL text cannot hold it). Checked once here so that no route meets them."""
    if isinstance(value, str):
        if "\x00" in value:
            raise bad_request(f"{path or 'request body'} contains a NUL character (\\u0000), which no field "
                              "accepts", path or None)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request(f"{path or 'request body'} contains a lone UTF-16 surrogate escape (e.g. "
                              "\\ud800 without its pair), which is not Unicode text", path or None) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, path)
            _check_strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, f"{path}[{index}]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _nesting(text: str) -> int:
    """Upper bound of the JSON nesting depth (brackets inside strings may count: it only errs high
    for bodies that are odd anyway)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def install_handlers(app: FastAPI) -> None:
    """Answer every refusal, including FastAPI's own, in the registry's error shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
        assert isinstance(exc, StarletteHTTPException)
        return ApiError(exc.status_code, str(exc.detail), headers=exc.headers).response()

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
        assert isinstance(exc, RequestValidationError)
        errors = [BecknError(ErrorCode.INVALID_REQUEST.value, e.get("msg", "invalid"),
                             ".".join(str(p) for p in e.get("loc", ()))) for e in exc.errors()]
        first = errors[0] if errors else BecknError(ErrorCode.INVALID_REQUEST.value, "invalid request")
        return ApiError(400, first.message, path=first.path, details=errors[1:]).response()

    async def on_store_error(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
        # Our fault, not the caller's, and usually passing (restart, failover): ask for a retry.
        log.error("registry.store_unavailable", error_type=type(exc).__name__)
        return ApiError(503, "the registry's store is unavailable; retry shortly",
                        headers={"Retry-After": "2"}).response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(SQLAlchemyError, on_store_error)
    app.add_exception_handler(OSError, on_store_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
