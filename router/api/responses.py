"""``POST /v1/responses`` (OpenAI Responses: Codex CLI's and the Agents SDK's wire) on the shared pipeline, and the
refusal of its WebSocket mode.

Codex CLI first tries a WebSocket upgrade on ``/v1/responses`` and falls back to HTTP SSE when the upgrade fails.
The router serves the HTTP mode only, so it refuses the upgrade at once: 426 with an OpenAI-style error saying so,
sent before any WebSocket is accepted, and the client's fallback starts immediately.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter

from router.api.asgi_io import JSON, Receive, Scope, Send, send_bytes
from router.api.pipeline import serve
from router.api.pipeline_route import add_pipeline_route
from router.state import RouterState
from router.wire import RESPONSES, codec_for

api = APIRouter(tags=["responses"])

WEBSOCKET_REFUSED = orjson.dumps({"error": {
    "message": "this router serves the Responses API over HTTP (SSE when stream=true), not over WebSocket: "
               "send the request as POST /v1/responses (Codex: supports_websockets = false)",
    "type": "invalid_request_error", "param": None, "code": "websocket_not_supported"}})


async def serve_responses(state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(codec_for(RESPONSES), state, scope, receive, send)


async def refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Deny a WebSocket handshake with a 426 and a reason when the server can send one (the ASGI
    ``websocket.http.response`` extension; uvicorn has it), else close before accepting (the client sees 403)."""
    if scope["type"] == "http":  # an upgrade the server did not take over (no WebSocket library installed)
        await send_bytes(send, 426, WEBSOCKET_REFUSED, [JSON])
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 426,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "websocket.http.response.body", "body": WEBSOCKET_REFUSED})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": "use HTTP POST /v1/responses"})


add_pipeline_route(api, "/v1/responses", serve_responses, "Create a model response (OpenAI Responses-compatible)",
                   "A Response object, or an SSE stream of Responses events when stream=true")
