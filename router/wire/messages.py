"""Anthropic Messages (``POST /v1/messages``; Claude Code's wire): the codec.

Events travel as the JSON payloads of their ``data:`` lines; the event name Anthropic puts on the ``event:`` line
is the payload's ``type``, so :meth:`MessagesCodec.frame` writes it back from there (the SDK dispatches on it).
Usage is read into the ledger's OpenAI-style shape: Anthropic's ``input_tokens`` leaves out cache reads and
writes, so ``prompt_tokens`` is their sum and the cache counts are kept apart for their own prices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from router.api.parse_messages import parse_messages_body
from router.api.request_caps import RequestCaps
from router.capabilities import Needs
from router.context import RequestContext
from router.errors import ProviderError, RouterError
from router.ledger.usage import reported_usage, valid_count
from router.policy.messages_answer import filter_message, may_carry_call
from router.policy.messages_request import review_messages_request
from router.policy.messages_stream import MessagesStreamFilter
from router.tokens import IMAGE_PART_TOKENS, REPLY_PRIMING, TOKENS_PER_MESSAGE
from router.wire.anthropic_errors import anthropic_error
from router.wire.codec import EventFilter

if TYPE_CHECKING:
    from router.state import RouterState

_EVENT_NAME = re.compile(rb"[A-Za-z0-9_.]{1,64}")
_TYPE_PREFIX = b'{"type":"'
_USAGE_EVENTS = (b'"message_start"', b'"message_delta"')
_MEDIA_BLOCKS = frozenset(("image", "document"))


def event_name(payload: bytes) -> bytes:
    """The ``type`` of an event payload, safe for an ``event:`` line: read from the first bytes when the payload
    starts with it (every Anthropic event does), else parsed; a name that is not a plain word is never echoed
    (a hostile upstream could otherwise inject SSE lines)."""
    if payload.startswith(_TYPE_PREFIX):
        end = payload.find(b'"', 9)
        name = payload[9:end] if end > 9 else b""
    else:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return b"message"
        kind = data.get("type") if isinstance(data, dict) else None
        name = kind.encode() if isinstance(kind, str) else b""
    return name if _EVENT_NAME.fullmatch(name) else b"message"


def frame_event(payload: bytes) -> bytes:
    return b"event: " + event_name(payload) + b"\ndata: " + payload + b"\n\n"


def normalised_usage(usage: Any) -> dict[str, Any] | None:
    """Anthropic usage as the ledger reads it; None when a count the ledger needs is impossible or missing."""
    if not isinstance(usage, dict):
        return None
    counts = {}
    for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(key)
        if value is None:
            value = 0
            if key in ("input_tokens", "output_tokens"):
                return None
        if not valid_count(value):
            return None
        counts[key] = int(value)
    written, read = counts["cache_creation_input_tokens"], counts["cache_read_input_tokens"]
    return {"prompt_tokens": counts["input_tokens"] + written + read, "completion_tokens": counts["output_tokens"],
            "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written}, "anthropic": counts}


def _block_texts(block: Any) -> tuple[list[str], int]:
    """(texts, media blocks) of one content block, nested tool results included."""
    if not isinstance(block, dict):
        return [], 0
    kind = block.get("type")
    if kind in _MEDIA_BLOCKS:
        return [], 1
    texts = [v for v in (block.get("text"), block.get("thinking"), block.get("name")) if isinstance(v, str)]
    if "input" in block and block.get("input") is not None:
        texts.append(orjson.dumps(block["input"]).decode())
    content = block.get("content")
    media = 0
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for inner in content:
            more, images = _block_texts(inner)
            texts.extend(more)
            media += images
    return texts, media


def _content_texts(content: Any) -> tuple[list[str], int]:
    if isinstance(content, str):
        return [content], 0
    texts: list[str] = []
    media = 0
    for block in content if isinstance(content, list) else ():
        more, images = _block_texts(block)
        texts.extend(more)
        media += images
    return texts, media


class MessagesCodec:
    name = "messages"
    stateful = False
    stream_end = b""

    def parse(self, body: bytes, caps: RequestCaps) -> dict[str, Any]:
        return parse_messages_body(body, caps)

    async def prepare(self, state: RouterState, ctx: RequestContext) -> None:
        return None

    def kept(self, state: RouterState, ctx: RequestContext, data: dict[str, Any] | None) -> None:
        return None

    def review_request(self, ctx: RequestContext) -> None:
        review_messages_request(ctx)

    def tools_offered(self, payload: dict[str, Any]) -> bool:
        return bool(payload.get("tools"))

    def needs(self, payload: dict[str, Any]) -> Needs:
        tools = bool(payload.get("tools"))
        vision = False
        for message in payload.get("messages") or ():
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list) and _content_texts(content)[1]:
                vision = True
                break
        return Needs(tools=tools, vision=vision)

    def prompt_pieces(self, payload: dict[str, Any]) -> tuple[int, list[str]]:
        total = REPLY_PRIMING
        pieces, media = _content_texts(payload.get("system"))
        for message in payload.get("messages") or ():
            if not isinstance(message, dict):
                continue
            texts, images = _content_texts(message.get("content"))
            pieces.extend(texts)
            media += images
            total += TOKENS_PER_MESSAGE
        tools = payload.get("tools")
        if tools:
            pieces.append(orjson.dumps(tools).decode())
        return total + media * IMAGE_PART_TOKENS, pieces

    def message_count(self, payload: dict[str, Any]) -> int:
        messages = payload.get("messages")
        system = payload.get("system")
        return (len(messages) if isinstance(messages, list) else 0) + (len(system) if isinstance(system, list) else 1)

    def prepare_stream(self, ctx: RequestContext) -> None:
        return None  # Anthropic streams always carry usage (message_start and message_delta)

    def filter_answer(self, ctx: RequestContext, data: dict[str, Any]) -> bool:
        return filter_message(ctx, data)

    def may_carry_call(self, raw: bytes) -> bool:
        return may_carry_call(raw)

    def answer_usage(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any] | None:
        usage = data.get("usage")
        if usage is None:
            return None
        return reported_usage(ctx, normalised_usage(usage) or {"prompt_tokens": None})

    def answer_text(self, data: dict[str, Any]) -> str:
        return "".join(_content_texts(data.get("content"))[0])

    def stream_filter(self, ctx: RequestContext) -> EventFilter:
        return MessagesStreamFilter(ctx)

    def stream_usage(self, ctx: RequestContext, payload: bytes) -> bool:
        """``message_start`` carries the input side, ``message_delta`` the output so far (and, from newer API
        versions, updated input counts): the latest of each wins. Never hidden from the client."""
        if b'"usage"' not in payload or not any(marker in payload[:40] for marker in _USAGE_EVENTS):
            return False
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(event, dict):
            return False
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
        elif kind == "message_delta":
            usage = event.get("usage")
        else:
            return False
        if not isinstance(usage, dict):
            return False
        known = ctx.usage.get("anthropic") if isinstance(ctx.usage, dict) else None
        merged = {**known, **usage} if isinstance(known, dict) else usage
        ctx.usage = reported_usage(ctx, normalised_usage(merged) or {"prompt_tokens": None})
        return False

    def streamed_text(self, chunks: Iterable[bytes]) -> str:
        texts: list[str] = []
        for raw in chunks:
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            delta = event.get("delta") if event.get("type") == "content_block_delta" else None
            block = event.get("content_block") if event.get("type") == "content_block_start" else None
            source = delta if isinstance(delta, dict) else block if isinstance(block, dict) else {}
            texts.extend(v for key in ("text", "partial_json", "thinking", "name")
                         if isinstance(v := source.get(key), str))
        return "".join(texts)

    def frame(self, payloads: list[bytes]) -> bytes:
        if len(payloads) == 1:
            return frame_event(payloads[0])
        return b"".join(frame_event(payload) for payload in payloads)

    def error_body(self, exc: RouterError) -> tuple[int, bytes]:
        """An Anthropic upstream's own error body goes back unmodified (clients match on its wording)."""
        if isinstance(exc, ProviderError) and exc.upstream_body and exc.upstream_wire == self.name:
            return exc.upstream_status or exc.status, exc.upstream_body
        return exc.status, orjson.dumps(anthropic_error(exc.status, exc.message))

    def error_event(self, exc: RouterError, ctx: RequestContext) -> bytes:
        if isinstance(exc, ProviderError) and exc.upstream_body and exc.upstream_wire == self.name \
                and exc.upstream_body.startswith(b"{") and b"\n" not in exc.upstream_body:
            return b"event: error\ndata: " + exc.upstream_body + b"\n\n"
        return b"event: error\ndata: " + orjson.dumps(anthropic_error(exc.status, exc.message)) + b"\n\n"
