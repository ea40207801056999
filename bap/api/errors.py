"""Every API refusal as `{"error": {"code", "message"}}`: never a bare 500, never FastAPI's `detail`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bap.service import ApiError

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="lakou-bap"'}


def _where(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:  # noqa: ARG001
    headers = UNAUTHORIZED_HEADERS if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:  # noqa: ARG001
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse({"error": {"code": "invalid_json", "message": "the body is not valid JSON"}},
                            status_code=400)
    details = [{"field": _where(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in errors]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return JSONResponse({"error": {"code": "invalid_request", "message": summary, "details": details}},
                        status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:  # noqa: ARG001
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
