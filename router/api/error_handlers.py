"""Map every failure to an error body with the right status, in the caller's wire shape: Anthropic's on
``/v1/messages*`` and for Anthropic clients (an ``anthropic-version`` header), OpenAI's elsewhere. No traceback
reaches a client."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from router.errors import RouterError, error_body
from router.wire import MESSAGES, codec_for
from router.wire.anthropic_errors import anthropic_error

log = logging.getLogger("agent_router.api")

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
                 429: "rate_limit_error"}


def anthropic_caller(request: Request) -> bool:
    """Whether the caller speaks Anthropic's wire: on its paths, or sending its version header."""
    return request.url.path.startswith("/v1/messages") or "anthropic-version" in request.headers


def error_response(exc: RouterError, request: Request | None = None) -> Response:
    if request is not None and anthropic_caller(request):
        status, body = codec_for(MESSAGES).error_body(exc)
        return Response(body, status_code=status, media_type="application/json", headers=exc.headers())
    return Response(orjson.dumps(exc.to_body()), status_code=exc.status, media_type="application/json",
                    headers=exc.headers())


def _body(request: Request, status: int, message: str, type_: str, code: str | None = None,
          param: str | None = None) -> bytes:
    if anthropic_caller(request):
        return orjson.dumps(anthropic_error(status, message))
    return orjson.dumps(error_body(status, message, type_, code=code, param=param))


async def _router_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RouterError)
    return error_response(exc, request)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if status == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    body = _body(request, status, message, _STATUS_TYPES.get(status, "api_error"), code=str(status))
    headers = getattr(exc, "headers", None)
    if status == 405:
        headers = {**(headers or {}), "allow": allowed_methods(request)}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method some route serves on this path: Starlette names only those of the first route matching the
    path (``GET`` on ``/admin/keys``, though ``POST`` is served too). Each method is tried against the routes'
    own matching (included routers nest their routes); only on a 405, so the probing costs nothing else."""
    routes = request.app.router.routes
    served = [method for method in _METHODS
              if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)]
    return ", ".join(served)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    body = _body(request, 400, f"invalid request: {first.get('msg', 'invalid input')}", "invalid_request_error",
                 param=param, code="invalid_request")
    return Response(body, status_code=400, media_type="application/json")


async def _unexpected(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "?")
    log.exception("unhandled error in request %s", request_id)
    body = _body(request, 500, f"internal error (request id {request_id})", "api_error", code="internal_error")
    client = getattr(request.state, "client_request_id", None)
    return Response(body, status_code=500, media_type="application/json",
                    headers={"x-request-id": client or request_id, "x-agent-router-request-id": request_id})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RouterError, _router_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
