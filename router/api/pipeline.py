"""The request's walk, the same for every wire format; the format's :class:`~router.wire.codec.Codec` answers
each stage's questions, so a new format is one codec, not a fork of this module.

    parse -> identity -> model access -> limits -> request policy -> rules -> executor
          -> response policy (whole answer or stream filter) -> ledger
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

import orjson

from providers.base import LastBatch
from router.agent_session import CLIENT_HEADER_NAMES
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
)
from router.api.request_id import client_request_id, id_headers, new_request_id
from router.context import RequestContext
from router.errors import ProviderError, RouterError
from router.exact_counts import ensure_exact_counts
from router.executor import close_stream
from router.ledger import estimate
from router.plan import RoutePlan
from router.policy.events import summary_header
from router.rules import plan_route
from router.state import RouterState
from router.wire.codec import Codec, EventFilter

log = logging.getLogger("agent_router.pipeline")

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


STAGE_HEADERS = ("x-agent-router-", "anthropic-", "x-claude-code-")
"""Request headers the stages read: the router's metadata (rules), ``anthropic-*`` (forwarded verbatim to a Messages
upstream) and Claude Code's session and sub-agent ids (records, rules, session affinity)."""


def metadata_headers(headers: dict[str, str]) -> dict[str, str]:
    """The caller's request headers the stages read (names are lower-case); see :data:`STAGE_HEADERS`."""
    return {name: value for name, value in headers.items()
            if name.startswith(STAGE_HEADERS) or name in CLIENT_HEADER_NAMES}


async def serve(codec: Codec, state: RouterState, scope: Scope, receive: Receive, send: Send) -> None:
    """Plain ASGI: every outcome is answered here, as the answer, a stream, or an error in ``codec``'s shape."""
    headers = header_map(scope["headers"])
    own, sent = new_request_id(), client_request_id(headers.get("x-request-id"))
    ids = id_headers(own, sent)
    client = scope.get("client")
    ctx = RequestContext(request_id=own.decode(), snapshot=state.snapshot, payload={}, stream=False,
                         requested_model="", client=client[0] if client else None,
                         client_request_id=sent.decode() if sent else None, wire=codec.name)
    try:
        await state.identity.authenticate(headers, ctx)
        body = await read_body(receive, headers.get("content-length"), state.settings.max_body_bytes)
        payload = codec.parse(body, state.caps)
        ctx.payload, ctx.requested_model, ctx.body_bytes = payload, payload["model"], len(body)
        ctx.stream = bool(payload.get("stream"))
        ctx.headers = metadata_headers(headers)
        state.identity.authorize_model(ctx)
        await state.limits.admit(ctx)
        if codec.stateful:
            await codec.prepare(state, ctx)
        codec.review_request(ctx)
        await ensure_exact_counts(ctx)  # loads a tokenizer off the loop, only when a count is really needed
        plan = state.affinity.apply(ctx, plan_route(ctx, state.stats))
        ctx.rule = plan.rule
        if ctx.stream:
            await _stream(codec, state, ctx, plan, receive, send, ids)
        else:
            await _complete(codec, state, ctx, plan, send, ids)
    except RouterError as exc:
        ctx.error = exc
        state.finish(ctx, status="error")
        if not ctx.response_started:
            await _send_error(codec, send, exc, ids)
    except asyncio.CancelledError:
        if ctx.error is None:
            ctx.error = RouterError("the request was cancelled (client gone or server stopping)")
        state.finish(ctx, status="error")
        raise
    except ClientGone:  # normal traffic: one info line, no traceback
        if ctx.error is None:
            ctx.error = RouterError("the client disconnected before its request was read")
        log.info("request %s: %s", ctx.request_id, ctx.error.message)
        state.finish(ctx, status="error")
    except Exception as exc:  # a bug of ours: still ledgered, then a 500 without traceback
        error = RouterError(f"internal error (request id {ctx.request_id})")
        ctx.error = error
        log.exception("request %s failed: %s: %s", ctx.request_id, type(exc).__name__, exc)
        state.finish(ctx, status="error")
        if not ctx.response_started:
            await _send_error(codec, send, error, ids)


async def _complete(codec: Codec, state: RouterState, ctx: RequestContext, plan: RoutePlan, send: Send,
                    ids: list[tuple[bytes, bytes]]) -> None:
    completion = await state.executor.complete(ctx, plan)
    data = completion.data
    ctx.usage = codec.answer_usage(ctx, data)
    if ctx.usage is None:
        ctx.answer_text = codec.answer_text(data)
    changed = codec.filter_answer(ctx, data)
    raw = completion.raw
    content = raw if raw is not None and not changed and not codec.may_carry_call(raw) else orjson.dumps(data)
    if codec.stateful:
        codec.kept(state, ctx, data)
    state.finish(ctx, status="ok")
    headers = [JSON, *ids]
    headers += decision_headers(ctx)
    ctx.response_started = True
    await send_bytes(send, 200, content, headers)


async def _stream(codec: Codec, state: RouterState, ctx: RequestContext, plan: RoutePlan, receive: Receive,
                  send: Send, ids: list[tuple[bytes, bytes]]) -> None:
    codec.prepare_stream(ctx)
    first, rest = await state.executor.open_stream(ctx, plan)
    # Always watched: a manipulated model may emit calls nobody offered. The filters' fast path (a byte search per
    # event) keeps the cost of watching text-only streams tiny.
    stream_filter = codec.stream_filter(ctx)
    headers = [*EVENT_STREAM, *ids]
    headers += decision_headers(ctx)
    ctx.response_started = True
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    closing, ok = await _relay(codec, state, ctx, first, rest, stream_filter, receive, send)
    await send({"type": "http.response.body", "body": closing + codec.stream_end if ok else closing})


async def _relay(codec: Codec, state: RouterState, ctx: RequestContext, first: list[bytes],
                 rest: AsyncIterator[list[bytes]], stream_filter: EventFilter, receive: Receive,
                 send: Send) -> tuple[bytes, bool]:
    """Send each batch of events that arrived together in one write, never waiting to fill a batch; return the
    stream's last bytes (the filter's tail or an error event) and whether it ended well; the caller sends them with
    the wire's end marker (chat's ``[DONE]`` also after an error event, as before).

    While it waits for the upstream, a :class:`DisconnectWatch` stops it if the client leaves (none is needed
    when the whole answer came in the first read)."""
    status = "ok"
    watch: DisconnectWatch | None = None
    # References to the raw chunks (no copy, no parse): the ledger estimates tokens from them only when the
    # upstream sent no usage chunk.
    kept: list[bytes] = []
    ctx.stream_chunks = kept
    out: list[bytes] = []
    closing = b""
    try:
        batch: list[bytes] | None = first
        while batch is not None:
            if len(kept) < estimate.MAX_KEPT_CHUNKS:
                kept.extend(batch[: estimate.MAX_KEPT_CHUNKS - len(kept)])
            for payload in batch:
                if not codec.stream_usage(ctx, payload):
                    out.extend(stream_filter.feed(payload))
            if type(batch) is LastBatch:
                break  # the upstream is done: these events go out with the stream's end, in one write
            if out:
                await send({"type": "http.response.body", "body": codec.frame(out), "more_body": True})
                out = []
            if watch is None:
                watch = DisconnectWatch(receive)
            batch = await anext(rest, None)
        out.extend(stream_filter.finish())
        if out:
            closing = codec.frame(out)
    except RouterError as exc:
        # Bytes already reached the client: no fallback now. End the stream with an error event.
        status = "error"
        ctx.error = exc
        if ctx.attempts and isinstance(exc, ProviderError):
            ctx.attempts[-1].status, ctx.attempts[-1].error = "error", exc.message
        closing = (codec.frame(out) if out else b"") + codec.error_event(exc, ctx)
    except asyncio.CancelledError:
        status = "error"
        if watch is None or not watch.disconnected:
            raise  # the server is stopping
        ctx.error = RouterError("the client disconnected mid-stream")
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
        ctx.error = error
        closing = (codec.frame(out) if out else b"") + codec.error_event(error, ctx)
    finally:
        if watch is not None:
            watch.stop()
        await close_stream(rest)
        if status == "ok" and codec.stateful:
            codec.kept(state, ctx, None)
        # The codec's stream state refers back to ctx: drop the cycle now, so the stream's events are freed by
        # reference counting, not left for the cyclic collector (whose full passes are long pauses under load).
        ctx.stream_state = None
        state.finish(ctx, status=status)
    return closing, status == "ok" or codec.name == "chat"


async def _send_error(codec: Codec, send: Send, exc: RouterError, ids: list[tuple[bytes, bytes]]) -> None:
    """An error answer in the caller's shape, with its status and headers (``retry-after`` for 429/503)."""
    status, body = codec.error_body(exc)
    headers = [JSON, *ids]
    headers.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in exc.headers().items())
    await send_bytes(send, status, body, headers)
