"""OpenAI Chat Completions: the codec over the chat-shaped policy, usage and estimate modules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from router import sse
from router.api.parse import parse_chat_body
from router.api.request_caps import RequestCaps
from router.capabilities import Needs, request_needs
from router.context import RequestContext
from router.errors import RouterError
from router.ledger import estimate
from router.ledger.usage import reported_usage, take_stream_usage
from router.policy.request_side import apply_request_policy
from router.policy.response_side import filter_completion, may_carry_call
from router.policy.stream_filter import StreamFilter
from router.tokens import chat_prompt_pieces
from router.wire.codec import EventFilter

if TYPE_CHECKING:
    from router.state import RouterState


class ChatCodec:
    name = "chat"
    stateful = False
    stream_end = sse.DONE

    def parse(self, body: bytes, caps: RequestCaps) -> dict[str, Any]:
        return parse_chat_body(body, caps)

    async def prepare(self, state: RouterState, ctx: RequestContext) -> None:
        return None

    def kept(self, state: RouterState, ctx: RequestContext, data: dict[str, Any] | None) -> None:
        return None

    def review_request(self, ctx: RequestContext) -> None:
        apply_request_policy(ctx)

    def tools_offered(self, payload: dict[str, Any]) -> bool:
        return bool(payload.get("tools") or payload.get("functions"))

    def needs(self, payload: dict[str, Any]) -> Needs:
        return request_needs(payload)

    def prompt_pieces(self, payload: dict[str, Any]) -> tuple[int, list[str]]:
        return chat_prompt_pieces(payload)

    def message_count(self, payload: dict[str, Any]) -> int:
        messages = payload.get("messages")
        return len(messages) if isinstance(messages, list) else 0

    def prepare_stream(self, ctx: RequestContext) -> None:
        options = ctx.payload.get("stream_options") or {}
        ctx.client_wants_usage = bool(options.get("include_usage"))
        if not ctx.client_wants_usage:
            # Ask for usage anyway so the ledger gets real token counts; the extra chunk is hidden from the client.
            ctx.payload["stream_options"] = {**options, "include_usage": True}

    def filter_answer(self, ctx: RequestContext, data: dict[str, Any]) -> bool:
        return filter_completion(ctx, data)

    def may_carry_call(self, raw: bytes) -> bool:
        return may_carry_call(raw)

    def answer_usage(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any] | None:
        return reported_usage(ctx, data.get("usage"))

    def answer_text(self, data: dict[str, Any]) -> str:
        return estimate.completion_text(data)

    def stream_filter(self, ctx: RequestContext) -> EventFilter:
        return StreamFilter(ctx)

    def stream_usage(self, ctx: RequestContext, payload: bytes) -> bool:
        return take_stream_usage(ctx, payload)

    def streamed_text(self, chunks: Iterable[bytes]) -> str:
        return estimate.streamed_text(chunks)

    def frame(self, payloads: list[bytes]) -> bytes:
        return sse.events(payloads)

    def error_body(self, exc: RouterError) -> tuple[int, bytes]:
        return exc.status, orjson.dumps(exc.to_body())

    def error_event(self, exc: RouterError, ctx: RequestContext) -> bytes:
        return sse.json_event(exc.to_body())
