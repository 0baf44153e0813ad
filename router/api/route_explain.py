"""``POST /v1/route/explain``: what the router would do with a request, without calling any provider.

The body is a request of the wire format named by ``?api=`` (``chat``, the default; ``messages``, ``responses``,
``embeddings``); the caller is authenticated and its request policy applied exactly as on that format's endpoint,
so the answer shows the rule, why it matched and the chain that would be tried.
"""

from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from router.api.asgi_io import read_body
from router.api.pipeline import metadata_headers
from router.context import RequestContext
from router.exact_counts import ensure_exact_counts
from router.rules.explain import explain_route
from router.state import RouterState
from router.wire import codec_for

api = APIRouter(tags=["routing"])


@api.post("/v1/route/explain", summary="Explain the routing decision for a request (nothing is sent)")
async def route_explain(request: Request, api: Literal["chat", "messages", "responses", "embeddings"] = "chat"
                        ) -> Response:
    state: RouterState = request.app.state.router
    codec = codec_for(api)
    ctx = RequestContext(request_id=request.state.request_id, snapshot=state.snapshot, payload={},
                         stream=False, requested_model="", wire=api)
    await state.identity.authenticate(request.headers, ctx)
    body = await read_body(request.receive, request.headers.get("content-length"), state.settings.max_body_bytes)
    payload = codec.parse(body, state.caps)
    ctx.payload, ctx.requested_model, ctx.body_bytes = payload, payload["model"], len(body)
    ctx.stream = bool(payload.get("stream"))
    ctx.headers = metadata_headers({k: v for k, v in request.headers.items()})
    state.identity.authorize_model(ctx)
    if codec.stateful:
        await codec.prepare(state, ctx)
    codec.review_request(ctx)
    await ensure_exact_counts(ctx, explain=True)
    return Response(orjson.dumps(explain_route(ctx, state.stats)), media_type="application/json")
