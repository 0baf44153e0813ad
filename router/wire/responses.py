"""OpenAI Responses (``POST /v1/responses``; Codex CLI's and the Agents SDK's wire): the codec.

Events travel as the JSON payloads of their ``data:`` lines and are framed back with an ``event:`` line named by
their ``type``, as OpenAI sends them. A stream always ends with a terminal event (``response.completed``,
``.incomplete`` or ``.failed``): an error after the first event is sent as an ``error`` event and a
``response.failed`` numbered after the last event the client saw, so clients that treat a missing terminal event as
fatal get a reason instead. The Responses API is stateful: the codec expands ``previous_response_id`` from the
router's own store before the policy sees the request, and keeps what it served for the next turn.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from router.api.parse_responses import parse_responses_body
from router.api.request_caps import RequestCaps
from router.capabilities import Needs
from router.context import RequestContext
from router.errors import RouterError
from router.ledger.usage import reported_usage, valid_count
from router.policy.responses_answer import filter_response, may_carry_call
from router.policy.responses_request import review_responses_request
from router.policy.responses_stream import ResponsesStreamFilter
from router.response_store import expand_previous
from router.tokens import IMAGE_PART_TOKENS, REPLY_PRIMING, TOKENS_PER_MESSAGE
from router.wire.codec import EventFilter
from router.wire.messages import frame_event
from router.wire.pinning import has_sealed_state

if TYPE_CHECKING:
    from router.state import RouterState

_TERMINAL_EVENTS = (b'{"type":"response.completed"', b'{"type":"response.incomplete"', b'{"type":"response.failed"')
_DELTA_EVENTS = (b'{"type":"response.output_text.delta"', b'{"type":"response.function_call_arguments.delta"',
                 b'{"type":"response.refusal.delta"')
_MEDIA_PARTS = frozenset(("input_image", "input_file"))


def normalised_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage as the ledger reads it (OpenAI chat's names); None when a count is impossible or missing.
    ``input_tokens`` already includes the cached ones, as chat's ``prompt_tokens`` does."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not (valid_count(prompt) and valid_count(completion)):
        return None
    normalised: dict[str, Any] = {"prompt_tokens": int(prompt or 0), "completion_tokens": int(completion or 0)}
    details = usage.get("input_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is not None:
        normalised["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = usage.get("output_tokens_details")
    if isinstance(reasoning, dict) and reasoning.get("reasoning_tokens") is not None:
        normalised["completion_tokens_details"] = {"reasoning_tokens": reasoning["reasoning_tokens"]}
    return normalised


def input_items(payload: dict[str, Any]) -> list[Any]:
    """``input`` as a list of items (a string is one user message)."""
    items = payload.get("input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    return items if isinstance(items, list) else []


def _item_texts(item: Any) -> tuple[list[str], int]:
    """(texts, media parts) of one input or output item."""
    if not isinstance(item, dict):
        return [], 0
    texts = [v for key in ("name", "arguments", "output", "input") if isinstance(v := item.get(key), str)]
    media = 0
    content = item.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") in _MEDIA_PARTS:
                media += 1
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
    for summary in item.get("summary") or () if isinstance(item.get("summary"), list) else ():
        if isinstance(summary, dict) and isinstance(summary.get("text"), str):
            texts.append(summary["text"])
    return texts, media


def output_text(data: dict[str, Any]) -> str:
    texts: list[str] = []
    for item in data.get("output") or () if isinstance(data.get("output"), list) else ():
        texts.extend(_item_texts(item)[0])
    return "".join(texts)


class ResponsesCodec:
    name = "responses"
    stream_end = b""
    stateful = True

    def parse(self, body: bytes, caps: RequestCaps) -> dict[str, Any]:
        return parse_responses_body(body, caps)

    async def prepare(self, state: RouterState, ctx: RequestContext) -> None:
        """Before the policy: ``previous_response_id`` becomes the stored turns (the policy then judges the whole
        history, and every upstream is called statelessly); encrypted reasoning pins the deployment that made it
        (it is valid nowhere else)."""
        continued = ctx.payload.get("previous_response_id")
        ctx.turn = (continued if isinstance(continued, str) else None, list(input_items(ctx.payload)))
        previous = await expand_previous(state.responses, ctx)
        if has_sealed_state(ctx.payload):
            origin = await state.responses.origins.locate(input_items(ctx.payload))
            ctx.pinned_deployment = origin or previous

    def review_request(self, ctx: RequestContext) -> None:
        review_responses_request(ctx)

    def tools_offered(self, payload: dict[str, Any]) -> bool:
        return bool(payload.get("tools"))

    def needs(self, payload: dict[str, Any]) -> Needs:
        tools = payload.get("tools")
        vision = any(_item_texts(item)[1] for item in input_items(payload))
        text = payload.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        return Needs(tools=bool(tools), parallel_tool_calls=bool(tools) and payload.get("parallel_tool_calls") is True,
                     json_mode=kind in ("json_object", "json_schema"), json_schema=kind == "json_schema",
                     vision=vision)

    def prompt_pieces(self, payload: dict[str, Any]) -> tuple[int, list[str]]:
        total = REPLY_PRIMING
        pieces: list[str] = []
        instructions = payload.get("instructions")
        if isinstance(instructions, str):
            pieces.append(instructions)
            total += TOKENS_PER_MESSAGE
        media = 0
        for item in input_items(payload):
            texts, images = _item_texts(item)
            pieces.extend(texts)
            media += images
            total += TOKENS_PER_MESSAGE
        tools = payload.get("tools")
        if tools:
            pieces.append(orjson.dumps(tools).decode())
        return total + media * IMAGE_PART_TOKENS, pieces

    def message_count(self, payload: dict[str, Any]) -> int:
        return len(input_items(payload)) + (1 if payload.get("instructions") else 0)

    def prepare_stream(self, ctx: RequestContext) -> None:
        return None  # the terminal event carries the usage

    def filter_answer(self, ctx: RequestContext, data: dict[str, Any]) -> bool:
        return filter_response(ctx, data)

    def may_carry_call(self, raw: bytes) -> bool:
        return may_carry_call(raw)

    def answer_usage(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any] | None:
        usage = data.get("usage")
        if usage is None:
            return None
        return reported_usage(ctx, normalised_usage(usage) or {"prompt_tokens": None})

    def answer_text(self, data: dict[str, Any]) -> str:
        return output_text(data)

    def kept(self, state: RouterState, ctx: RequestContext, data: dict[str, Any] | None) -> None:
        """After a successful answer (``data``, or for a stream the response its terminal event carried, as the
        client saw it): keep it for ``previous_response_id`` unless the caller asked ``store: false``."""
        if data is None and isinstance(ctx.stream_state, ResponsesStreamFilter):
            data = ctx.stream_state.skeleton()
        served = ctx.served_by
        if data is None or served is None:
            return
        output = data.get("output")
        if isinstance(output, list):
            state.responses.origins.remember(output, served.deployment)
        if ctx.payload.get("store") is not False:
            continued, items = ctx.turn or (None, input_items(ctx.payload))
            state.responses.keep(ctx.agent, data, items, served.deployment, served.provider, continued)

    def stream_filter(self, ctx: RequestContext) -> EventFilter:
        stream_filter = ResponsesStreamFilter(ctx)
        ctx.stream_state = stream_filter
        return stream_filter

    def stream_usage(self, ctx: RequestContext, payload: bytes) -> bool:
        """The terminal event's ``response.usage`` (never hidden from the client)."""
        if not payload.startswith(_TERMINAL_EVENTS):
            return False
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        response = event.get("response") if isinstance(event, dict) else None
        usage = response.get("usage") if isinstance(response, dict) else None
        if usage is not None:
            ctx.usage = reported_usage(ctx, normalised_usage(usage) or {"prompt_tokens": None})
        return False

    def streamed_text(self, chunks: Iterable[bytes]) -> str:
        texts: list[str] = []
        for raw in chunks:
            if not raw.startswith(_DELTA_EVENTS):
                continue
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            delta = event.get("delta") if isinstance(event, dict) else None
            if isinstance(delta, str):
                texts.append(delta)
        return "".join(texts)

    def frame(self, payloads: list[bytes]) -> bytes:
        if len(payloads) == 1:
            return frame_event(payloads[0])
        return b"".join(frame_event(payload) for payload in payloads)

    def error_body(self, exc: RouterError) -> tuple[int, bytes]:
        return exc.status, orjson.dumps(exc.to_body())

    def error_event(self, exc: RouterError, ctx: RequestContext) -> bytes:
        """An ``error`` event, then the terminal ``response.failed``, numbered after what the client saw."""
        state = ctx.stream_state
        number = state.next_sequence_number if isinstance(state, ResponsesStreamFilter) else 0
        response = state.skeleton() if isinstance(state, ResponsesStreamFilter) else _skeleton(ctx)
        code = exc.code or exc.type
        error = {"type": "error", "code": code, "message": exc.message, "param": exc.param, "sequence_number": number}
        failed = {"type": "response.failed", "sequence_number": number + 1,
                  "response": {**response, "status": "failed", "error": {"code": code, "message": exc.message}}}
        return frame_event(orjson.dumps(error)) + frame_event(orjson.dumps(failed))


def _skeleton(ctx: RequestContext) -> dict[str, Any]:
    """A minimal Response for a terminal event when the stream never showed one."""
    return {"id": f"resp_{ctx.request_id.replace('-', '')[:32]}", "object": "response", "created_at": int(time.time()),
            "model": ctx.requested_model, "output": [], "status": "failed", "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "parallel_tool_calls": True,
            "temperature": None, "tool_choice": "auto", "tools": [], "top_p": None}
