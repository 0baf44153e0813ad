"""``POST /v1/embeddings``: OpenAI embeddings on the shared pipeline (:mod:`router.api.pipeline`).

Served like chat, on the plain-ASGI fast path, with the same identity, model access, limits, rules, fallback
and records; the codec is :class:`router.wire.embeddings.EmbeddingsCodec`.
"""

from __future__ import annotations

from fastapi import APIRouter

from router.api.asgi_io import Receive, Scope, Send
from router.api.pipeline import serve
from router.api.pipeline_route import add_pipeline_route
from router.state import RouterState
from router.wire import EMBEDDINGS, codec_for

api = APIRouter()


async def serve_embeddings(state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(codec_for(EMBEDDINGS), state, scope, receive, send)


add_pipeline_route(api, "/v1/embeddings", serve_embeddings, "Create embeddings (OpenAI-compatible)",
                   "An OpenAI embeddings list: one vector per input, float or base64, with the input tokens used")
