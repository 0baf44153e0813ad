"""``POST /v1/embeddings``: OpenAI embeddings on the shared pipeline (:mod:`router.api.pipeline`).

Served like chat, on the plain-ASGI fast path, with the same identity, model access, limits, rules, fallback
and records; the codec is :class:`router.wire.embeddings.EmbeddingsCodec`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from router.api.asgi_io import Receive, Scope, Send
from router.api.pipeline import serve
from router.state import RouterState
from router.wire import EMBEDDINGS, codec_for

api = APIRouter()


async def serve_embeddings(state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(codec_for(EMBEDDINGS), state, scope, receive, send)


async def _documented(request: Request) -> Response:
    """Only reached when the app is mounted without :class:`router.app.RouterApp` in front."""
    return _Delegated(request.app.state.router)


class _Delegated(Response):
    def __init__(self, state: RouterState) -> None:
        super().__init__()  # FastAPI reads a returned response's attributes (background) before calling it
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_embeddings(self._state, scope, receive, send)


api.add_api_route("/v1/embeddings", _documented, methods=["POST"],
                  summary="Create embeddings (OpenAI-compatible)",
                  response_description="An OpenAI embeddings list: one vector per input, float or base64, with "
                                       "the input tokens used")
