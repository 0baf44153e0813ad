"""``POST /v1/chat/completions``: the hot path. Each stage lives in its own module; this one wires them.

    parse -> identity -> model access -> limits -> request policy -> rules -> executor
          -> response policy (whole answer or stream filter) -> ledger
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from providers.base import LastBatch
from router import sse
from router.api.asgi_io import (
    EVENT_STREAM,
    JSON,
    ClientGone,
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
    send_bytes,
    send_error,
)
from router.api.parse import parse_chat_body
from router.api.request_id import client_request_id, id_headers, new_request_id
from router.context import RequestContext
from router.errors import ProviderError, RouterError
from router.exact_counts import ensure_exact_counts
from router.executor import close_stream
from router.ledger import estimate
from router.ledger.usage import reported_usage, take_stream_usage
from router.plan import RoutePlan
from router.policy.events import summary_header
from router.policy.request_side import apply_request_policy
from router.policy.response_side import filter_completion, may_carry_call
from router.policy.stream_filter import StreamFilter, needs_stream_filter
from router.rules import plan_route
from router.state import RouterState

log = logging.getLogger("agent_router.chat")

api = APIRouter()

@functools.lru_cache(maxsize=4096)
def _header_value(text: str) -> bytes:
    """Names from config or the key store may hold any character: headers carry latin-1 without line breaks.
    Cached: the same few rule, agent and deployment names come back on every request."""
    return text.encode("latin-1", "replace").replace(b"\r", b" ").replace(b"\n", b" ")


def decision_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    """The ``x-agent-router-*`` response headers, already encoded (appended to the response as they are)."""
    served = ctx.served_by
    headers = [(b"x-agent-router-rule", _header_value(ctx.rule or "")),
               (b"x-agent-router-attempts", str(len(ctx.attempts)).encode())]
    if served is not None:
        headers.append((b"x-agent-router-deployment", _header_value(served.deployment)))
        headers.append((b"x-agent-router-provider", _header_value(served.provider)))
    if ctx.agent:
        headers.append((b"x-agent-router-agent", _header_value(ctx.agent)))
    if ctx.policy_summary:
        headers.append((b"x-agent-router-policy", summary_header(ctx.policy_summary).encode("latin-1")))
    return headers


def _metadata_headers(headers: dict[str, str]) -> dict[str, str]:
    """The caller's ``x-agent-router-*`` request headers (names are lower-case)."""
    return {name: value for name, value in headers.items() if name.startswith("x-agent-router-")}


async def serve_chat(state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    """Plain ASGI: every outcome is answered here, as the answer, a stream, or an OpenAI-style error."""
    headers = header_map(scope["headers"])
    own, sent = new_request_id(), client_request_id(headers.get("x-request-id"))
    ids = id_headers(own, sent)
    client = scope.get("client")
    ctx = RequestContext(request_id=own.decode(), snapshot=state.snapshot, payload={}, stream=False,
                         requested_model="", client=client[0] if client else None,
                         client_request_id=sent.decode() if sent else None)
    try:
        await state.identity.authenticate(headers, ctx)
        body = await read_body(receive, headers.get("content-length"), state.settings.max_body_bytes)
        payload = parse_chat_body(body, state.caps)
        ctx.payload, ctx.requested_model, ctx.body_bytes = payload, payload["model"], len(body)
        ctx.stream = bool(payload.get("stream"))
        ctx.headers = _metadata_headers(headers)
        state.identity.authorize_model(ctx)
        await state.limits.admit(ctx)
        apply_request_policy(ctx)
        await ensure_exact_counts(ctx)  # loads a tokenizer off the loop, only when a count is really needed
        plan = plan_route(ctx, state.stats)
        ctx.rule = plan.rule
        if ctx.stream:
            await _stream(state, ctx, plan, receive, send, ids)
        else:
            await _complete(state, ctx, plan, send, ids)
    except RouterError as exc:
        ctx.extra["error"] = exc
        state.finish(ctx, status="error")
        if not ctx.extra.get("response_started"):
            await send_error(send, exc, ids)
    except asyncio.CancelledError:
        ctx.extra.setdefault("error", RouterError("the request was cancelled (client gone or server stopping)"))
        state.finish(ctx, status="error")
        raise
    except ClientGone:  # normal traffic: one info line, no traceback
        error = ctx.extra.setdefault("error", RouterError("the client disconnected before its request was read"))
        log.info("request %s: %s", ctx.request_id, error.message)
        state.finish(ctx, status="error")
    except Exception as exc:  # a bug of ours: still ledgered, then a 500 without traceback
        error = RouterError(f"internal error (request id {ctx.request_id})")
        ctx.extra["error"] = error
        log.exception("request %s failed: %s: %s", ctx.request_id, type(exc).__name__, exc)
        state.finish(ctx, status="error")
        if not ctx.extra.get("response_started"):
            await send_error(send, error, ids)


async def _complete(state: RouterState, ctx: RequestContext, plan: RoutePlan, send: Send,
                    ids: list[tuple[bytes, bytes]]) -> None:
    completion = await state.executor.complete(ctx, plan)
    data = completion.data
    ctx.usage = reported_usage(ctx, data.get("usage"))
    if ctx.usage is None:
        ctx.extra[estimate.TEXT_KEY] = estimate.completion_text(data)
    changed = filter_completion(ctx, data)
    raw = completion.raw
    content = raw if raw is not None and not changed and not may_carry_call(raw) else orjson.dumps(data)
    state.finish(ctx, status="ok")
    headers = [JSON, *ids]
    headers += decision_headers(ctx)
    ctx.extra["response_started"] = True
    await send_bytes(send, 200, content, headers)


async def _stream(state: RouterState, ctx: RequestContext, plan: RoutePlan, receive: Receive, send: Send,
                  ids: list[tuple[bytes, bytes]]) -> None:
    options = ctx.payload.get("stream_options") or {}
    ctx.client_wants_usage = bool(options.get("include_usage"))
    if not ctx.client_wants_usage:
        # Ask for usage anyway so the ledger gets real token counts; the extra chunk is hidden below.
        ctx.payload["stream_options"] = {**options, "include_usage": True}
    first, rest = await state.executor.open_stream(ctx, plan)
    stream_filter = StreamFilter(ctx) if needs_stream_filter(ctx) else None
    headers = [*EVENT_STREAM, *ids]
    headers += decision_headers(ctx)
    ctx.extra["response_started"] = True
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    closing = await _relay(state, ctx, first, rest, stream_filter, receive, send)
    await send({"type": "http.response.body", "body": closing + sse.DONE})


async def _relay(state: RouterState, ctx: RequestContext, first: list[bytes], rest: AsyncIterator[list[bytes]],
                 stream_filter: StreamFilter | None, receive: Receive, send: Send) -> bytes:
    """Send each batch of events that arrived together in one write, never waiting to fill a batch; return the
    stream's last bytes (the filter's tail or an error event), which the caller sends with ``[DONE]``.

    While it waits for the upstream, a :class:`DisconnectWatch` stops it if the client leaves (none is needed
    when the whole answer came in the first read)."""
    status = "ok"
    watch: DisconnectWatch | None = None
    # References to the raw chunks (no copy, no parse): the ledger estimates tokens from them only when the
    # upstream sent no usage chunk.
    kept: list[bytes] = ctx.extra.setdefault(estimate.CHUNKS_KEY, [])
    out: list[bytes] = []
    closing = b""
    try:
        batch: list[bytes] | None = first
        while batch is not None:
            if len(kept) < estimate.MAX_KEPT_CHUNKS:
                kept.extend(batch[: estimate.MAX_KEPT_CHUNKS - len(kept)])
            for payload in batch:
                if not take_stream_usage(ctx, payload):
                    if stream_filter is None:
                        out.append(payload)
                    else:
                        out.extend(stream_filter.feed(payload))
            if type(batch) is LastBatch:
                break  # the upstream is done: these events go out with the stream's end, in one write
            if out:
                await send({"type": "http.response.body", "body": sse.events(out), "more_body": True})
                out = []
            if watch is None:
                watch = DisconnectWatch(receive)
            batch = await anext(rest, None)
        if stream_filter is not None:
            out.extend(stream_filter.finish())
        if out:
            closing = sse.events(out)
    except RouterError as exc:
        # Bytes already reached the client: no fallback now. End the stream with an error event.
        status = "error"
        ctx.extra["error"] = exc
        if ctx.attempts and isinstance(exc, ProviderError):
            ctx.attempts[-1].status, ctx.attempts[-1].error = "error", exc.message
        closing = (sse.events(out) if out else b"") + sse.json_event(exc.to_body())
    except asyncio.CancelledError:
        status = "error"
        if watch is None or not watch.disconnected:
            raise  # the server is stopping
        ctx.extra["error"] = RouterError("the client disconnected mid-stream")
        if ctx.attempts:
            ctx.attempts[-1].status, ctx.attempts[-1].error = "error", "client disconnected"
        # Our own watch cancelled us: take the cancellation back, or uvicorn logs it as an error with a traceback
        # (unless the server asked to cancel too: then it stays a cancellation).
        task = asyncio.current_task()
        if task is not None and task.uncancel() > 0:
            raise
        raise ClientGone from None
    except Exception:
        status = "error"
        log.exception("stream relay failed for request %s", ctx.request_id)
        error = RouterError(f"internal error (request id {ctx.request_id})")
        ctx.extra["error"] = error
        closing = (sse.events(out) if out else b"") + sse.json_event(error.to_body())
    finally:
        if watch is not None:
            watch.stop()
        await close_stream(rest)
        state.finish(ctx, status=status)
    return closing


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
