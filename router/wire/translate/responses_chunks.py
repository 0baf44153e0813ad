"""A Responses API stream as chat chunks (:class:`ResponsesToChat`), for a chat caller (or, chained, a
Messages caller) served by a deployment that speaks only Responses. Malformed upstream events and event types
chat has no place for (hosted tool progress, annotations...) are skipped, never raised on; an upstream's own
failure is raised."""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.errors import UpstreamServerError
from router.wire.translate import vocab
from router.wire.translate.responses_answers import finish_reason
from router.wire.translate.responses_streams import load_event
from router.wire.translate.responses_vocab import chat_usage


class ResponsesToChat:
    """Responses events -> chat chunks: a first chunk with the role, text and reasoning deltas, each
    ``function_call`` item as a tool call (index, id, name, then argument fragments), the finish chunk and one
    usage chunk from the terminal event. ``response.failed`` and ``error`` raise :class:`UpstreamServerError`
    with the upstream's message, so the caller's stream ends with an error."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = vocab.completion_id(None)
        self._created = int(time.time())
        self._calls: dict[int, int] = {}
        """Output index -> chat tool-call index."""
        self._argued: set[int] = set()
        """Output indexes of calls whose arguments came as deltas (else they come with the item's done)."""
        self._started = False
        self._ended = False

    def feed(self, payload: bytes) -> list[bytes]:
        event = load_event(payload)
        if event is None or self._ended:
            return []
        kind = event.get("type")
        if kind in ("response.failed", "error"):
            raw = event.get("response")
            error = raw.get("error") if isinstance(raw, dict) else event
            message = error.get("message") if isinstance(error, dict) else None
            self._ended = True
            raise UpstreamServerError(f"the upstream's response failed: {message or 'no reason given'}")
        out = self._start(event.get("response"))
        if kind in ("response.output_text.delta", "response.refusal.delta", "response.reasoning_summary_text.delta",
                    "response.reasoning_text.delta"):
            text = event.get("delta")
            if isinstance(text, str) and text:
                field = {"response.output_text.delta": "content", "response.refusal.delta": "refusal"}.get(
                    kind, "reasoning_content")
                out.append(self._chunk({field: text}))
        elif kind == "response.output_item.added":
            self._item_added(event, out)
        elif kind == "response.function_call_arguments.delta":
            self._arguments(event.get("output_index"), event.get("delta"), out)
        elif kind == "response.output_item.done":
            item = event.get("item")
            index = event.get("output_index")
            if isinstance(item, dict) and index not in self._argued:
                self._arguments(index, item.get("arguments"), out)
        elif kind in ("response.completed", "response.incomplete"):
            out.extend(self._end(event.get("response")))
        return out

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        return self._start(None) + self._end(None)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return orjson.dumps({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                             "model": self._model, "choices": [choice]})

    def _start(self, response: Any) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self._id = vocab.completion_id(response["id"].removeprefix("resp_"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _item_added(self, event: dict[str, Any], out: list[bytes]) -> None:
        item = event.get("item")
        index = event.get("output_index")
        if not isinstance(item, dict) or item.get("type") != "function_call" or not isinstance(index, int) \
                or not isinstance(item.get("name"), str) or index in self._calls:
            return
        position = len(self._calls)
        self._calls[index] = position
        call_id = item["call_id"] if isinstance(item.get("call_id"), str) else vocab.tool_id()
        call = {"index": position, "id": call_id, "type": "function",
                "function": {"name": item["name"], "arguments": ""}}
        out.append(self._chunk({"tool_calls": [call]}))
        arguments = item.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._arguments(index, arguments, out)

    def _arguments(self, index: Any, arguments: Any, out: list[bytes]) -> None:
        position = self._calls.get(index) if isinstance(index, int) else None
        if position is None or not isinstance(arguments, str) or not arguments:
            return
        self._argued.add(index)
        out.append(self._chunk({"tool_calls": [{"index": position, "function": {"arguments": arguments}}]}))

    def _end(self, response: Any) -> list[bytes]:
        self._ended = True
        data: dict[str, Any] = response if isinstance(response, dict) else {}
        out = [self._chunk({}, finish_reason(data, bool(self._calls)))]
        usage = chat_usage(data.get("usage"))
        if usage is not None:
            out.append(orjson.dumps({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                     "model": self._model, "choices": [], "usage": usage}))
        return out
