"""``POST /v1/chat/completions``: OpenAI Chat Completions on the shared pipeline (:mod:`router.api.pipeline`)."""

from __future__ import annotations

from fastapi import APIRouter

from router.api.asgi_io import Receive, Scope, Send
from router.api.pipeline import serve
from router.api.pipeline_route import add_pipeline_route
from router.state import RouterState
from router.wire import CHAT, codec_for

api = APIRouter()


async def serve_chat(state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(codec_for(CHAT), state, scope, receive, send)


add_pipeline_route(api, "/v1/chat/completions", serve_chat, "Create a chat completion (OpenAI-compatible)",
                   "An OpenAI chat completion, or an SSE stream of chunks when stream=true")
