"""A stream from an upstream of one wire format, translated event by event for a caller of the other. Each
class is an :class:`~router.wire.codec.EventFilter`: fed the JSON payload of one SSE ``data:`` line, it returns
the payloads to send; ``finish`` closes what the source left open so the caller always sees a complete stream.
Malformed upstream events are skipped, never raised on."""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.wire.translate import vocab


def _load(payload: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _dump(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


class ChatToMessages:
    """Chat chunks -> Anthropic Messages events. Chat gives prompt usage only at the end, so ``message_start``
    carries zeros and the real figures arrive in ``message_delta``. Chat's parallel tool calls come one after
    another (by ``index``); a new index closes the previous block, as Anthropic's blocks cannot interleave."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._ended = False
        self._open: str | None = None
        """The kind of the open block (``text``, ``thinking``, ``tool``) or None."""
        self._index = -1
        self._tools: dict[int, int] = {}
        """Chat tool-call index -> Anthropic block index."""
        self._stop: str | None = None
        self._usage: dict[str, Any] | None = None

    def feed(self, payload: bytes) -> list[bytes]:
        chunk = _load(payload)
        if chunk is None or self._ended:
            return []
        out: list[bytes] = []
        if isinstance(chunk.get("error"), dict):
            message = chunk["error"].get("message")
            self._ended = True
            error = {"type": "api_error", "message": message if isinstance(message, str) else "upstream error"}
            return [_dump({"type": "error", "error": error})]
        if not self._started:
            out.append(self._message_start(chunk))
        usage = vocab.messages_usage(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is not None:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            finish = choice.get("finish_reason")
            if isinstance(finish, str):
                self._stop = vocab.MESSAGES_STOP.get(finish, "end_turn")
        if self._stop is not None and usage is not None:
            out.extend(self._end())
        return out

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        out = [] if self._started else [self._message_start({})]
        return out + self._end()

    def _message_start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        message: dict[str, Any] = {"id": vocab.message_id(chunk.get("id")), "type": "message", "role": "assistant",
                   "model": self._model, "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return _dump({"type": "message_start", "message": message})

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            self._ensure("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
            out.append(self._block_delta({"type": "thinking_delta", "thinking": reasoning}))
        text = delta.get("content")
        if isinstance(text, str) and text:
            self._ensure("text", {"type": "text", "text": ""}, out)
            out.append(self._block_delta({"type": "text_delta", "text": text}))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                self._tool_delta(call, out)

    def _tool_delta(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", 0)
        raw = call.get("function")
        function: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if not isinstance(position, int):
            return
        if position not in self._tools:
            name = function.get("name")
            if not isinstance(name, str) or not name:
                return  # a call's first piece names it; a nameless start cannot open a tool_use block
            self._close(out)
            call_id = call.get("id") if isinstance(call.get("id"), str) else vocab.tool_id()
            self._open_block("tool", {"type": "tool_use", "id": call_id, "name": name, "input": {}}, out)
            self._tools[position] = self._index
        elif self._tools[position] != self._index or self._open != "tool":
            return  # a late piece of a closed call: Anthropic blocks cannot be reopened
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(self._block_delta({"type": "input_json_delta", "partial_json": arguments}))

    def _ensure(self, kind: str, block: dict[str, Any], out: list[bytes]) -> None:
        if self._open != kind:
            self._close(out)
            self._open_block(kind, block, out)

    def _open_block(self, kind: str, block: dict[str, Any], out: list[bytes]) -> None:
        self._index += 1
        self._open = kind
        out.append(_dump({"type": "content_block_start", "index": self._index, "content_block": block}))

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        return _dump({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(_dump({"type": "content_block_stop", "index": self._index}))
            self._open = None

    def _end(self) -> list[bytes]:
        out: list[bytes] = []
        self._close(out)
        self._ended = True
        usage = self._usage or {"output_tokens": 0}
        delta = {"stop_reason": self._stop or "end_turn", "stop_sequence": None}
        out.append(_dump({"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(_dump({"type": "message_stop"}))
        return out


class MessagesToChat:
    """Anthropic Messages events -> chat chunks. Usage is added up from ``message_start`` (input and cache
    tokens) and ``message_delta`` (output tokens, and input again when the upstream updates it), then sent as
    chat's usage chunk (``choices: []``) after the chunk that carries ``finish_reason``."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = vocab.completion_id(None)
        self._created = int(time.time())
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}
        """Anthropic block index -> chat tool-call index."""
        self._started = False
        self._finished = False
        self._ended = False

    def feed(self, payload: bytes) -> list[bytes]:
        event = _load(payload)
        if event is None or self._ended:
            return []
        kind = event.get("type")
        if kind == "message_start":
            return self._start(event.get("message"))
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            return self.finish()
        if kind == "error":
            raw = event.get("error")
            error: dict[str, Any] = raw if isinstance(raw, dict) else {}
            self._ended = True
            message = error.get("message") if isinstance(error.get("message"), str) else "upstream error"
            return [_dump({"error": {"message": message, "type": error.get("type") or "api_error",
                                     "param": None, "code": None}})]
        return []  # ping, content_block_stop, and event types yet unknown

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        out = [] if self._started else self._start(None)
        if not self._finished:
            out.append(self._chunk({}, "stop"))
        self._ended = True
        if self._usage:
            usage = vocab.chat_usage(self._usage)
            out.append(_dump({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                              "model": self._model, "choices": [], "usage": usage}))
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _dump({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                      "model": self._model, "choices": [choice]})

    def _start(self, message: Any) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        if isinstance(message, dict):
            self._id = vocab.completion_id(message.get("id"))
            self._take_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({key: value for key, value in usage.items() if type(value) is int})

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        out = self._start(None)
        block = event.get("content_block")
        index = event.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return out
        if block.get("type") == "tool_use" and isinstance(block.get("name"), str):
            position = len(self._tools)
            self._tools[index] = position
            call_id = block.get("id") if isinstance(block.get("id"), str) else vocab.tool_id()
            call = {"index": position, "id": call_id, "type": "function",
                    "function": {"name": block["name"], "arguments": ""}}
            out.append(self._chunk({"tool_calls": [call]}))
        elif block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            out.append(self._chunk({"content": block["text"]}))
        return out

    def _block_delta(self, event: dict[str, Any]) -> list[bytes]:
        out = self._start(None)
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return out
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            out.append(self._chunk({"content": delta["text"]}))
        elif kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        elif kind == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            index = event.get("index")
            position = self._tools.get(index) if isinstance(index, int) else None
            if position is not None and delta["partial_json"]:
                call = {"index": position, "function": {"arguments": delta["partial_json"]}}
                out.append(self._chunk({"tool_calls": [call]}))
        return out

    def _message_delta(self, event: dict[str, Any]) -> list[bytes]:
        out = self._start(None)
        self._take_usage(event.get("usage"))
        delta = event.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if isinstance(stop, str) and not self._finished:
            self._finished = True
            out.append(self._chunk({}, vocab.CHAT_FINISH.get(stop, "stop")))
        return out
