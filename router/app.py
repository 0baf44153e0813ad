"""Build the ASGI application around one :class:`RouterState`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

    app = FastAPI(title="agent-router", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible model router for AI agents.")
    install_error_handlers(app)
    for module in (chat, models, health, route_explain, *admin_modules()):
        app.include_router(module.api)
    app.add_middleware(RequestIdMiddleware)
    return app
