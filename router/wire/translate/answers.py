"""A whole answer from an upstream of one wire format, as a caller of the other expects it. Upstream bytes are
not trusted: missing or malformed pieces are skipped, never raised on."""

from __future__ import annotations

import time
from typing import Any

import orjson

from router.wire.translate import vocab


def chat_to_messages(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``chat.completion`` as an Anthropic ``message``. Chat's ``reasoning_content`` becomes a thinking block
    with an empty signature (the caller sees the reasoning; Anthropic would refuse it if sent back, which is why
    the request translators drop unsigned thinking)."""
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    raw = choice.get("message")
    message: dict[str, Any] = raw if isinstance(raw, dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    for key in ("content", "refusal"):
        text = message.get(key)
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        block = _tool_use(call)
        if block is not None:
            content.append(block)
    finish = choice.get("finish_reason")
    stop_reason = vocab.MESSAGES_STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    usage = vocab.messages_usage(data.get("usage")) or vocab.messages_usage({})
    return {"id": vocab.message_id(data.get("id")), "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}


def _tool_use(call: Any) -> dict[str, Any] | None:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    return {"type": "tool_use", "id": call.get("id") if isinstance(call.get("id"), str) else vocab.tool_id(),
            "name": function["name"], "input": parse_arguments(function.get("arguments"))}


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Chat's JSON-text arguments as Anthropic's ``input`` object; what is not a JSON object becomes ``{}``
    (Anthropic's ``input`` must be an object and the model's broken JSON cannot be repaired faithfully)."""
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def messages_to_chat(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic ``message`` as a ``chat.completion``: text blocks joined, thinking as ``reasoning_content``,
    ``tool_use`` blocks as ``tool_calls`` with JSON-text arguments (their ids kept)."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    content = data.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
        elif kind == "tool_use" and isinstance(block.get("name"), str):
            call_id = block.get("id") if isinstance(block.get("id"), str) else vocab.tool_id()
            arguments = orjson.dumps(block.get("input", {})).decode()
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": block["name"], "arguments": arguments}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                               "refusal": None}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    stop = data.get("stop_reason")
    finish = vocab.CHAT_FINISH.get(stop, "stop") if isinstance(stop, str) else "stop"
    out: dict[str, Any] = {"id": vocab.completion_id(data.get("id")), "object": "chat.completion",
                           "created": int(time.time()), "model": model,
                           "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}
    usage = vocab.chat_usage(data.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out
