"""A pipeline endpoint as a documented FastAPI route.

:class:`router.app.RouterApp` serves the model endpoints itself, in front of FastAPI (the hot path). The route
registered here puts each one on the OpenAPI page and still serves it when the app is mounted without RouterApp in
front: the handler hands the untouched request to the pipeline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from router.api.asgi_io import Receive, Scope, Send
from router.state import RouterState

Handler = Callable[[RouterState, Scope, Receive, Send], Awaitable[None]]


class _Delegated(Response):
    def __init__(self, state: RouterState, handler: Handler) -> None:
        super().__init__()  # FastAPI reads a returned response's attributes (background) before calling it
        self._state, self._handler = state, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(self._state, scope, receive, send)


def add_pipeline_route(api: APIRouter, path: str, handler: Handler, summary: str, answer: str) -> None:
    """Document ``POST path`` on ``api``, served by ``handler``."""

    async def documented(request: Request) -> Response:
        return _Delegated(request.app.state.router, handler)

    api.add_api_route(path, documented, methods=["POST"], summary=summary, response_description=answer)
