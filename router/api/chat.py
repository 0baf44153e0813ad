"""``POST /v1/chat/completions``: OpenAI Chat Completions on the shared pipeline (:mod:`router.api.pipeline`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from router.api.asgi_io import Receive, Scope, Send
from router.api.pipeline import serve
from router.state import RouterState
from router.wire import CHAT, codec_for

api = APIRouter()


async def serve_chat(state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(codec_for(CHAT), state, scope, receive, send)


async def _documented(request: Request) -> Response:
    """Only reached when the app is mounted without :class:`router.app.RouterApp` in front (which serves the path
    itself): hand the untouched request to the same handler."""
    return _Delegated(request.app.state.router)


class _Delegated(Response):
    def __init__(self, state: RouterState) -> None:
        super().__init__()  # FastAPI reads a returned response's attributes (background) before calling it
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_chat(self._state, scope, receive, send)


# The OpenAPI page documents the endpoint; requests are served by serve_chat, in front of FastAPI.
api.add_api_route("/v1/chat/completions", _documented, methods=["POST"],
                  summary="Create a chat completion (OpenAI-compatible)",
                  response_description="An OpenAI chat completion, or an SSE stream of chunks when stream=true")
