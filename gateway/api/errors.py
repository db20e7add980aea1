"""Every error leaves as ``{"error": {"code", "message"}}``; bad input is a 4xx, never a 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError

log = logging.getLogger("gateway.api")

MAX_BODY_BYTES = 1024 * 1024
MAX_INBOUND_BYTES = 32 * 1024 * 1024

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _describe(errors: list[Any]) -> str:
    parts = []
    if (
        len(errors) == 1
        and tuple(errors[0].get("loc", ())) == ("body",)
        and errors[0].get("type") in ("model_attributes_type", "dict_type", "missing")
    ):
        return "the body must be a JSON object, sent with Content-Type: application/json"
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the first route's methods; a path served by several routes (GET list, POST
            # create) has them all. OPTIONS is answered, not refused.
            allow = allowed_methods(app, request.scope)
            headers = {**(headers or {}), "Allow": ", ".join(allow)}
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
            message = f"{request.method} is not allowed here; use {' or '.join(allow)}"
            return error_response(405, "method_not_allowed", message, headers)
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # the contract: bad input is a 422
            return error_response(
                422, "invalid_request", "the body is not valid JSON (send Content-Type: application/json)"
            )
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "the gateway hit an unexpected error; it has been logged")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at this path (asked of the router itself, so included routers count)."""
    found = {
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)
    }
    return sorted(found | {"OPTIONS"})


class BodyLimit:
    """Refuses bodies over the limit before reading them (pure ASGI: no per-request overhead to speak of). Mail
    delivered by webhook (/inbound/) may carry attachments: its limit is larger."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, inbound_limit: int = MAX_INBOUND_BYTES) -> None:
        self.app = app
        self.default_limit = limit
        self.inbound_limit = inbound_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.inbound_limit if scope.get("path", "").startswith("/inbound/") else self.default_limit
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                response = error_response(413, "payload_too_large", f"the body is larger than {limit} bytes")
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLargeError
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLargeError:
            response = error_response(413, "payload_too_large", f"the body is larger than {limit} bytes")
            await response(scope, receive, send)


class _TooLargeError(Exception):
    pass
