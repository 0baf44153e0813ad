"""``POST /v1/messages`` (Anthropic Messages, Claude Code's wire) on the shared pipeline, and
``POST /v1/messages/count_tokens``.

Claude Code sends ``/v1/messages?beta=true``: the path decides, the query is ignored. ``count_tokens`` asks the
route's first Anthropic-format deployment when there is one (its tokenizer is the real one), and counts with the
router's own estimate otherwise; it spends no request or token budget and leaves no usage row.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from providers.base import ChatCall
from router.api.asgi_io import Receive, Scope, Send, read_body
from router.api.parse_messages import parse_messages_body
from router.api.pipeline import metadata_headers, serve
from router.api.pipeline_route import add_pipeline_route
from router.api.request_id import new_request_id
from router.context import RequestContext
from router.errors import ProviderError
from router.executor import masked
from router.rules import plan_route
from router.state import RouterState
from router.tokens import prompt_tokens
from router.wire import MESSAGES, codec_for
from router.wire.translate import upstream_headers

api = APIRouter(tags=["messages"])

COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")
"""What Anthropic's count_tokens accepts; other Messages fields (max_tokens, stream, metadata) are left out."""


async def serve_messages(state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    await serve(codec_for(MESSAGES), state, scope, receive, send)


add_pipeline_route(api, "/v1/messages", serve_messages, "Create a message (Anthropic Messages-compatible)",
                   "An Anthropic message, or an SSE stream of Messages events when stream=true")


@api.post("/v1/messages/count_tokens", summary="Count the input tokens of a Messages request")
async def count_tokens(request: Request) -> JSONResponse:
    state: RouterState = request.app.state.router
    headers = {name: value for name, value in request.headers.items()}
    ctx = RequestContext(request_id=new_request_id().decode(), snapshot=state.snapshot, payload={}, stream=False,
                         requested_model="", wire=MESSAGES)
    await state.identity.authenticate(headers, ctx)
    body = await read_body(request.receive, headers.get("content-length"), state.settings.max_body_bytes)
    payload = parse_messages_body(body, state.caps, needs_max_tokens=False)
    ctx.payload, ctx.requested_model, ctx.body_bytes = payload, payload["model"], len(body)
    ctx.headers = metadata_headers(headers)
    state.identity.authorize_model(ctx)
    codec_for(MESSAGES).review_request(ctx)  # count what would really be sent: the role's tools only
    plan = plan_route(ctx, state.stats)
    for name in plan.deployments:
        deployment = ctx.snapshot.deployments[name]
        provider = ctx.snapshot.providers[deployment.provider]
        counter = getattr(provider, "count_tokens", None)
        if counter is None or getattr(provider, "wire", "chat") != MESSAGES:
            continue
        fields: dict[str, Any] = {k: v for k, v in ctx.payload.items() if k in COUNT_FIELDS}
        call = ChatCall(body={**fields, "model": deployment.model}, timeout=_timeout(ctx, deployment.provider),
                        request_id=ctx.request_id, extra_headers=upstream_headers(ctx, MESSAGES))
        try:
            counted = await counter(call)
        except ProviderError as exc:
            raise masked(exc, ctx.snapshot.redactor) from None
        return JSONResponse(counted)
    return JSONResponse({"input_tokens": prompt_tokens(ctx)})


def _timeout(ctx: RequestContext, provider: str) -> float:
    return min(ctx.snapshot.provider_specs[provider].timeout, ctx.snapshot.spec.routing.deadline_seconds)

