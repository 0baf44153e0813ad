"""Build the ASGI application around one :class:`RouterState`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from router import __version__
from router.api import chat, embeddings, health, messages, models, responses, responses_store_api, route_explain
from router.api.admin_modules import admin_modules
from router.api.error_handlers import install_error_handlers
from router.api.openapi_errors import install_error_docs
from router.api.request_id import RequestIdMiddleware
from router.config import Snapshot, load_snapshot
from router.mcp.lazy_gateway import LazyGateway
from router.reloader import Reloader
from router.settings import Settings
from router.state import RouterState

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
RESPONSES_PATH = "/v1/responses"
EMBEDDINGS_PATH = "/v1/embeddings"
MCP_PATH = "/mcp"


class RouterApp(FastAPI):
    """FastAPI for everything but the hot paths: ``POST /v1/chat/completions``, ``/v1/messages``,
    ``/v1/responses`` and ``/v1/embeddings`` go straight to the plain-ASGI handler, skipping Starlette's middleware
    stack, routing and Request/Response objects (about 15% of a request's CPU under load), and a WebSocket upgrade
    on ``/v1/responses`` is refused at once. Every other path and method keeps FastAPI's handling (404/405, admin,
    docs)."""

    router_state: RouterState | None = None
    mcp_gateway: LazyGateway | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        state = self.router_state
        kind = scope["type"]
        if state is not None and kind == "http" and scope["method"] == "POST":
            path = route_path(scope)
            if path == CHAT_PATH:
                await chat.serve_chat(state, scope, receive, send)
                return
            if path == MESSAGES_PATH:
                await messages.serve_messages(state, scope, receive, send)
                return
            if path == RESPONSES_PATH:
                await responses.serve_responses(state, scope, receive, send)
                return
            if path == EMBEDDINGS_PATH:
                await embeddings.serve_embeddings(state, scope, receive, send)
                return
        if self.mcp_gateway is not None and kind == "http":
            path = route_path(scope)
            if path == MCP_PATH or path.startswith(MCP_PATH + "/"):
                await self.mcp_gateway(path, scope, receive, send)
                return
        if (kind == "websocket" or (kind == "http" and _is_upgrade(scope))) and route_path(scope) == RESPONSES_PATH:
            await responses.refuse_websocket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _is_upgrade(scope: MutableMapping[str, Any]) -> bool:
    return any(name == b"upgrade" and value.lower() == b"websocket" for name, value in scope["headers"])


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The path inside this app: under ``app.mount("/prefix", ...)`` or ``--root-path /prefix`` the ASGI path
    still starts with the prefix, which Starlette strips the same way when it routes."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


def create_app(settings: Settings | None = None, snapshot: Snapshot | None = None) -> RouterApp:
    """Config errors surface here, before the server binds its port."""
    settings = settings or Settings()
    snapshot = snapshot or load_snapshot(settings.config)

    @asynccontextmanager
    async def lifespan(app: RouterApp) -> AsyncIterator[None]:
        state = RouterState(settings, snapshot)
        app.state.router = state
        await state.start()
        gateway = LazyGateway(state)
        app.router_state, app.mcp_gateway = state, gateway
        gateway.warm()
        reloader = Reloader(state)
        reloader.start()
        try:
            yield
        finally:
            app.mcp_gateway = None
            await gateway.close()
            await reloader.close()
            app.router_state = None
            await state.close()

    # No redirect_slashes: its 307 is built from the caller's Host header; a stray "/" gets an OpenAI-style 404.
    app = RouterApp(title="agent-router", version=__version__, lifespan=lifespan, telemetry=_telemetry(settings),
                    description="OpenAI- and Anthropic-compatible model router and tool gateway for AI agents.",
                    redirect_slashes=False)
    install_error_handlers(app)
    install_error_docs(app)
    for module in (chat, messages, responses, responses_store_api, embeddings, models, health, route_explain,
                   *admin_modules()):
        app.include_router(module.api)
    app.add_middleware(RequestIdMiddleware)
    return app


_OTEL_VARIABLES = ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def telemetry_on(settings: Settings) -> bool:
    """Whether the router emits OpenTelemetry: the setting, else whether OpenTelemetry is configured at start."""
    wanted = settings.opentelemetry
    if wanted is None:
        wanted = os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" \
            or any(os.environ.get(name) for name in _OTEL_VARIABLES) or _tracer_provider_installed()
    return wanted


def _telemetry(settings: Settings) -> TelemetryConfig | None:
    """FastAPI's telemetry asks OpenTelemetry on every request whether a provider is configured (about 9 µs,
    a few per cent of the hot path); decide once here instead. None keeps FastAPI's default (on)."""
    return None if telemetry_on(settings) else {"tracing": False, "metrics": False, "logs": False}


def _tracer_provider_installed() -> bool:
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
