"""A stream between Chat Completions and the Responses API, event by event, and :class:`Chained` for the
Messages pairs (which go through chat). Each class is an :class:`~router.wire.codec.EventFilter`. Every
Responses event this writes starts with its ``type`` (``{"type":"response....``: later stages read the type from
the first bytes) and carries a ``sequence_number`` counting from 0."""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.context import RequestContext
from router.errors import UpstreamServerError
from router.wire.codec import EventFilter
from router.wire.translate import vocab
from router.wire.translate.responses_answers import (
    call_item,
    finish_reason,
    message_item,
    reasoning_item,
    text_part,
)
from router.wire.translate.responses_vocab import chat_usage, new_id, response_object, responses_usage, status_of


def _load(payload: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


class Chained:
    """Two event filters in a row: what ``first`` emits is fed to ``second`` (Messages <-> chat <-> Responses)."""

    def __init__(self, first: EventFilter, second: EventFilter) -> None:
        self._first = first
        self._second = second

    def feed(self, payload: bytes) -> list[bytes]:
        out: list[bytes] = []
        for middle in self._first.feed(payload):
            out.extend(self._second.feed(middle))
        return out

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        for middle in self._first.finish():
            out.extend(self._second.feed(middle))
        return out + self._second.finish()


class ChatToResponses:
    """Chat chunks -> the Responses event sequence. One output item is open at a time: reasoning, the message
    text, or one tool call (chat sends parallel calls one after another by ``index``; a new index closes the
    previous call, and a late fragment of a closed call is dropped, as items cannot be reopened). Closed items
    are kept so that the terminal event's ``response.output`` is exactly what was streamed."""

    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx
        self._id = new_id("resp_")
        self._created = int(time.time())
        self._seq = 0
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._text = ""
        self._calls: dict[int, int] = {}
        """Chat tool-call index -> output index."""
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._started = False
        self._ended = False

    def feed(self, payload: bytes) -> list[bytes]:
        chunk = _load(payload)
        if chunk is None or self._ended:
            return []
        out = self._start()
        if isinstance(chunk.get("error"), dict):
            return out + self._fail(chunk["error"])
        usage = responses_usage(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is not None:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if isinstance(choice.get("finish_reason"), str):
                self._finish = choice["finish_reason"]
        if self._finish is not None and usage is not None:
            out.extend(self._end())
        return out

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        return self._start() + self._end()

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return orjson.dumps(event)

    def _response(self, status: str, incomplete: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self._ctx, self._id, self._created, status, list(self._output), self._usage,
                               incomplete)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        response = self._response("in_progress")
        return [self._event("response.created", response=response),
                self._event("response.in_progress", response=response)]

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            if self._kind() != "reasoning":
                self._add(reasoning_item(new_id("rs_"), None), out)
                out.append(self._event("response.reasoning_summary_part.added", **self._at(), summary_index=0,
                                       part={"type": "summary_text", "text": ""}))
            self._text += reasoning
            out.append(self._event("response.reasoning_summary_text.delta", **self._at(), summary_index=0,
                                   delta=reasoning))
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._kind() != "message":
                self._add(message_item(new_id("msg_"), [], "in_progress"), out)
                out.append(self._event("response.content_part.added", **self._at(), content_index=0,
                                       part=text_part("")))
            self._text += text
            out.append(self._event("response.output_text.delta", **self._at(), content_index=0, delta=text,
                                   logprobs=[]))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                self._call_delta(call, out)

    def _call_delta(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", 0)
        raw = call.get("function")
        function: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if not isinstance(position, int):
            return
        if position not in self._calls:
            name = function.get("name")
            if not isinstance(name, str) or not name:
                return  # a call's first piece names it: a nameless start cannot open an item
            call_id = call["id"] if isinstance(call.get("id"), str) else new_id("call_")
            self._add(call_item(new_id("fc_"), call_id, name, "", "in_progress"), out)
            self._calls[position] = len(self._output) - 1
        elif self._open is None or self._calls[position] != len(self._output) - 1:
            return  # a late fragment of a closed call
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._text += arguments
            out.append(self._event("response.function_call_arguments.delta", **self._at(), delta=arguments))

    def _kind(self) -> str | None:
        return self._open["type"] if self._open is not None else None

    def _at(self) -> dict[str, Any]:
        assert self._open is not None
        return {"item_id": self._open["id"], "output_index": len(self._output) - 1}

    def _add(self, item: dict[str, Any], out: list[bytes]) -> None:
        self._close(out)
        self._output.append(item)
        self._open = item
        self._text = ""
        out.append(self._event("response.output_item.added", output_index=len(self._output) - 1, item=dict(item)))

    def _close(self, out: list[bytes], status: str = "completed") -> None:
        item = self._open
        if item is None:
            return
        at = self._at()
        kind = item["type"]
        if kind == "message":
            out.append(self._event("response.output_text.done", **at, content_index=0, text=self._text,
                                   logprobs=[]))
            part = text_part(self._text)
            out.append(self._event("response.content_part.done", **at, content_index=0, part=part))
            item["content"] = [part]
        elif kind == "reasoning":
            part = {"type": "summary_text", "text": self._text}
            out.append(self._event("response.reasoning_summary_text.done", **at, summary_index=0, text=self._text))
            out.append(self._event("response.reasoning_summary_part.done", **at, summary_index=0, part=part))
            item["summary"] = [part]
        else:
            item["arguments"] = self._text
            out.append(self._event("response.function_call_arguments.done", **at, name=item["name"],
                                   arguments=self._text))
        if kind != "reasoning":
            item["status"] = status
        self._open = None
        out.append(self._event("response.output_item.done", output_index=at["output_index"], item=item))

    def _end(self) -> list[bytes]:
        status, incomplete = status_of(self._finish)
        out: list[bytes] = []
        self._close(out, "completed" if status == "completed" else "incomplete")
        self._ended = True
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=self._response(status, incomplete)))
        return out

    def _fail(self, error: dict[str, Any]) -> list[bytes]:
        """An upstream error mid-stream: the open item closed as incomplete, an ``error`` event, then
        ``response.failed`` as the one terminal event."""
        message = error.get("message") if isinstance(error.get("message"), str) else "upstream error"
        code = error.get("code") if isinstance(error.get("code"), str) else "upstream_error"
        out: list[bytes] = []
        self._close(out, "incomplete")
        out.append(self._event("error", code=code, message=message, param=None))
        self._ended = True
        response = self._response("failed")
        response["error"] = {"code": "server_error", "message": message}
        out.append(self._event("response.failed", response=response))
        return out


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
        event = _load(payload)
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
