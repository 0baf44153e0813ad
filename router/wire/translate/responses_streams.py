"""A chat stream as the Responses API's event sequence (:class:`ChatToResponses`), and :class:`Chained` for
the Messages pairs (which go through chat); the reverse direction is :mod:`router.wire.translate.responses_chunks`.
Both are :class:`~router.wire.codec.EventFilter` s. Every Responses event written here starts with its ``type``
(``{"type":"response....``: later stages read the type from the first bytes) and carries a ``sequence_number``
counting from 0."""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.context import RequestContext
from router.wire.codec import EventFilter
from router.wire.translate.responses_answers import (
    call_item,
    message_item,
    reasoning_item,
    text_part,
)
from router.wire.translate.responses_vocab import new_id, response_object, responses_usage, status_of


def load_event(payload: bytes) -> dict[str, Any] | None:
    """One event payload as an object; None when it is not one (skipped by the callers)."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


_PART_EVENTS = {"output_text": ("response.output_text", "text"), "refusal": ("response.refusal", "refusal")}
"""A message part type -> its events' prefix and the field of its ``.done`` event."""


def _part(part_type: str, text: str) -> dict[str, Any]:
    return text_part(text) if part_type == "output_text" else {"type": "refusal", "refusal": text}


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
        """The open item's text so far (message part, reasoning summary, or call arguments)."""
        self._part: str | None = None
        """The open message part's type (``output_text``, ``refusal``) or None."""
        self._calls: dict[int, int] = {}
        """Chat tool-call index -> output index."""
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._started = False
        self._ended = False

    def feed(self, payload: bytes) -> list[bytes]:
        chunk = load_event(payload)
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
        for field, part_type in (("content", "output_text"), ("refusal", "refusal")):
            text = delta.get(field)
            if isinstance(text, str) and text:
                self._message_delta(part_type, text, out)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                self._call_delta(call, out)

    def _message_delta(self, part_type: str, text: str, out: list[bytes]) -> None:
        """Text or refusal into the open message item, in a content part of that type (a new part when the
        type changes)."""
        if self._kind() != "message":
            self._add(message_item(new_id("msg_"), [], "in_progress"), out)
        assert self._open is not None
        if self._part != part_type:
            self._close_part(out)
            self._part = part_type
            self._text = ""
            out.append(self._event("response.content_part.added", **self._at(),
                                   content_index=len(self._open["content"]),
                                   part=_part(part_type, "")))
        index = len(self._open["content"])  # the open part's: finished parts are in the item already
        self._text += text
        extra: dict[str, Any] = {"logprobs": []} if part_type == "output_text" else {}
        out.append(self._event(_PART_EVENTS[part_type][0] + ".delta", **self._at(), content_index=index,
                               delta=text, **extra))

    def _close_part(self, out: list[bytes]) -> None:
        if self._part is None or self._open is None:
            return
        prefix, field = _PART_EVENTS[self._part]
        index = len(self._open["content"])
        extra: dict[str, Any] = {"logprobs": []} if self._part == "output_text" else {}
        out.append(self._event(prefix + ".done", **self._at(), content_index=index, **{field: self._text}, **extra))
        part = _part(self._part, self._text)
        out.append(self._event("response.content_part.done", **self._at(), content_index=index, part=part))
        self._open["content"].append(part)
        self._part = None

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
            self._close_part(out)
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
