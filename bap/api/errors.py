"""Every API refusal as `{"error": {"code", "message", "detail", ...}}`: never a bare 500, never
FastAPI's `detail` list. `message` is for the citizen, in their language (Accept-Language, else the
cart's or search's, else French: see bap.i18n); `detail` is English, for developers."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from bap.i18n import bind_request_language, citizen_message, field_message, request_language, unbind_request_language
from bap.service import ApiError

log = structlog.get_logger(__name__)

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="lakou-bap"'}


def _where(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def error_body(code: str, lang: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": citizen_message(code, lang), "detail": detail, **extra}}


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    headers = UNAUTHORIZED_HEADERS if exc.status == 401 else None
    return JSONResponse(exc.body(request_language(request, fallback=exc.lang)), status_code=exc.status,
                        headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    lang = request_language(request)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse(error_body("invalid_json", lang, "the body is not valid JSON"), status_code=400)
    # Field locations stay as they are (the app highlights the field); each gets a short phrase in the
    # citizen's language and pydantic's English text for the developer.
    details = [{"field": _where(e.get("loc", ())), "message": field_message(e.get("type"), lang),
                "detail": str(e.get("msg", "invalid"))} for e in errors]
    summary = "; ".join(f"{d['field']}: {d['detail']}" for d in details[:5])
    fields = ", ".join(dict.fromkeys(d["field"] for d in details[:5]))
    message = f"{citizen_message('invalid_request', lang)} ({fields})"
    return JSONResponse({"error": {"code": "invalid_request", "message": message, "detail": summary,
                                   "details": details}}, status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, request_language(request), str(exc.detail)),
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug must still answer in the API's shape, without a stack trace; the log has the rest.
    log.error("bap.api.unexpected_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
    if not request.url.path.startswith("/api/"):
        return JSONResponse({"error": {"code": "internal_error", "message": "Internal Server Error"}},
                            status_code=500)
    return JSONResponse(error_body("internal_error", request_language(request),
                                   "unexpected server error; it has been logged"), status_code=500)


class LanguageMiddleware:
    """Makes the request's Accept-Language available to code that has no `Request` at hand
    (`bap.i18n.request_language()` with no request). Plain ASGI: it does not buffer event streams."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"accept-language"), None)
        token = bind_request_language(header)
        try:
            await self.app(scope, receive, send)
        finally:
            unbind_request_language(token)


def install(app: FastAPI) -> None:
    app.add_middleware(LanguageMiddleware)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
