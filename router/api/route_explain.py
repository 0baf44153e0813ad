"""``POST /v1/route/explain``: what the router would do with a chat request, without calling any provider.

The body is a chat completion request; the caller is authenticated and its request policy applied exactly as
for ``/v1/chat/completions``, so the answer shows the rule, why it matched and the chain that would be tried.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from router.api.asgi_io import read_body
from router.api.parse import parse_chat_body
from router.context import RequestContext
from router.exact_counts import ensure_exact_counts
from router.policy.request_side import apply_request_policy
from router.rules.explain import explain_route
from router.state import RouterState

api = APIRouter(tags=["routing"])


@api.post("/v1/route/explain", summary="Explain the routing decision for a chat request (nothing is sent)")
async def route_explain(request: Request) -> Response:
    state: RouterState = request.app.state.router
    ctx = RequestContext(request_id=request.state.request_id, snapshot=state.snapshot, payload={},
                         stream=False, requested_model="")
    await state.identity.authenticate(request.headers, ctx)
    body = await read_body(request.receive, request.headers.get("content-length"), state.settings.max_body_bytes)
    payload = parse_chat_body(body, state.caps)
    ctx.payload, ctx.requested_model, ctx.body_bytes = payload, payload["model"], len(body)
    ctx.stream = bool(payload.get("stream"))
    ctx.headers = {k: v for k, v in request.headers.items() if k.startswith("x-agent-router-")}
    state.identity.authorize_model(ctx)
    apply_request_policy(ctx)
    await ensure_exact_counts(ctx, explain=True)
    return Response(orjson.dumps(explain_route(ctx, state.stats)), media_type="application/json")
