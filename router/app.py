"""Build the ASGI application around one :class:`RouterState`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from router import __version__
from router.api import chat, health, models, route_explain
from router.api.admin_modules import admin_modules
from router.api.error_handlers import install_error_handlers
from router.api.request_id import RequestIdMiddleware
from router.config import Snapshot, load_snapshot
from router.reloader import Reloader
from router.settings import Settings
from router.state import RouterState


def create_app(settings: Settings | None = None, snapshot: Snapshot | None = None) -> FastAPI:
    """Config errors surface here, before the server binds its port."""
    settings = settings or Settings()
    snapshot = snapshot or load_snapshot(settings.config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = RouterState(settings, snapshot)
        app.state.router = state
        await state.start()
        reloader = Reloader(state)
        reloader.start()
        try:
            yield
        finally:
            await reloader.close()
            await state.close()

    app = FastAPI(title="agent-router", version=__version__, lifespan=lifespan, telemetry=_telemetry(settings),
                  description="OpenAI-compatible model router for AI agents.")
    install_error_handlers(app)
    for module in (chat, models, health, route_explain, *admin_modules()):
        app.include_router(module.api)
    app.router.routes.insert(0, chat.hot_route)
    app.add_middleware(RequestIdMiddleware)
    return app


_OTEL_VARIABLES = ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def _telemetry(settings: Settings) -> dict[str, Any] | None:
    """FastAPI's telemetry asks OpenTelemetry on every request whether a provider is configured (about 9 µs,
    a few per cent of the hot path); decide once here instead. None keeps FastAPI's default (on)."""
    wanted = settings.opentelemetry
    if wanted is None:
        wanted = os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" \
            or any(os.environ.get(name) for name in _OTEL_VARIABLES) or _tracer_provider_installed()
    return None if wanted else {"tracing": False, "metrics": False, "logs": False}


def _tracer_provider_installed() -> bool:
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
