"""Starlette/FastAPI adapter for the inbound pipeline: one POST route per Beckn action."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response

from beckn.errors import BecknError, ErrorCode, nack_body
from beckn.inbound import AcceptedMessage, InboundPipeline

AcceptedHandler = Callable[[AcceptedMessage], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing early past `limit` bytes so a hostile client cannot make us buffer
    an arbitrarily large upload (Content-Length may be absent or lie)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
    return b"".join(chunks)


def beckn_router(
    pipeline: InboundPipeline,
    actions: Iterable[str],
    *,
    on_accepted: AcceptedHandler | None = None,
    prefix: str = "",
) -> APIRouter:
    """Routes `POST {prefix}/{action}` through the pipeline. `on_accepted` runs after the response
    is sent, for messages that were stored and ACKed (never for retransmissions or NACKs)."""
    router = APIRouter(prefix=prefix)

    def endpoint_for(action: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await read_body(request, pipeline.max_body_bytes)
            except BodyTooLarge as exc:
                error = BecknError(ErrorCode.INVALID_REQUEST,
                                   f"body of at least {exc.args[0]} bytes exceeds the limit of "
                                   f"{pipeline.max_body_bytes} bytes")
                return Response(nack_body(error), status_code=413, media_type="application/json")
            result = await pipeline.handle(action, body, request.headers)
            background = (BackgroundTask(on_accepted, result.accepted)
                          if on_accepted is not None and result.accepted is not None else None)
            return Response(result.response.body, status_code=result.response.status_code,
                            headers=result.response.headers, media_type="application/json",
                            background=background)

        endpoint.__name__ = f"beckn_{action}"
        return endpoint

    for action in actions:
        router.add_api_route(f"/{action}", endpoint_for(action), methods=["POST"], name=action,
                             summary=f"Beckn {action}", tags=["beckn"])
    return router
