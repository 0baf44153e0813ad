"""The fake upstream's OpenAI Responses answers and events, built from the same behaviours as chat and Messages.

Shapes follow the Responses API: a ``Response`` object with ``output`` items (``message`` with ``output_text``
parts, ``function_call`` with ``call_id``/``name``/``arguments``), and a stream of typed events with
``sequence_number``s from ``response.created`` to ``response.completed``, function-call arguments cut into
fragments. ``reasoning`` adds an encrypted reasoning item first (as a model with ``include:
["reasoning.encrypted_content"]`` sends it).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.fakes.behaviours import Behaviour, ResetMidStream, SlowStream, Text, ToolCalls


def _text_of(behaviour: Behaviour) -> str:
    if isinstance(behaviour, Text | SlowStream):
        return behaviour.content
    if isinstance(behaviour, ToolCalls):
        return behaviour.content or ""
    if isinstance(behaviour, ResetMidStream):
        return "this stream will break before it ends properly"
    return ""


def _usage(behaviour: Behaviour) -> dict[str, Any] | None:
    pair = getattr(behaviour, "usage", (11, 7))
    if pair is None:
        return None
    return {"input_tokens": pair[0], "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": pair[1], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": pair[0] + pair[1]}


def _skeleton(model: str, request: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "error": None, "incomplete_details": None,
            "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
            "model": model, "output": [], "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": request.get("previous_response_id"), "reasoning": {"effort": None,
                                                                                      "summary": None},
            "store": request.get("store", True), "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"), "tools": _echoed(request.get("tools")), "top_p": 1.0,
            "truncation": "disabled", "metadata": request.get("metadata") or {}}


def _echoed(tools: Any) -> list[Any]:
    """The request's tools as OpenAI echoes them (function tools with ``strict`` and ``parameters`` filled in)."""
    out = []
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") == "function":
            tool = {"strict": True, "parameters": None, "description": None, **tool}
        out.append(tool)
    return out


def reasoning_item(seal: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": f"rs_{uuid.uuid4().hex[:16]}", "summary": [],
            "encrypted_content": seal}


def output_items(behaviour: Behaviour, seal: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if seal is not None:
        items.append(reasoning_item(seal))
    text = _text_of(behaviour)
    if text:
        items.append({"type": "message", "id": f"msg_{uuid.uuid4().hex[:16]}", "status": "completed",
                      "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": [],
                                                               "logprobs": []}]})
    if isinstance(behaviour, ToolCalls):
        for i, (name, args) in enumerate(behaviour.calls):
            items.append({"type": "function_call", "id": f"fc_{i}_{uuid.uuid4().hex[:8]}",
                          "call_id": f"call_{i}_{name}", "name": name, "arguments": args, "status": "completed"})
    return items


def responses_answer(model: str, behaviour: Behaviour, request: dict[str, Any],
                     seal: str | None = None) -> dict[str, Any]:
    answer = _skeleton(model, request)
    answer.update(status="completed", output=output_items(behaviour, seal), usage=_usage(behaviour))
    return answer


def responses_events(model: str, behaviour: Behaviour, request: dict[str, Any],
                     seal: str | None = None) -> list[dict[str, Any]]:
    """The whole event sequence, ``sequence_number``s included, ending with ``response.completed``."""
    response = _skeleton(model, request)
    events: list[dict[str, Any]] = [{"type": "response.created", "response": response},
                                    {"type": "response.in_progress", "response": response}]
    items = output_items(behaviour, seal)
    size = behaviour.chunk_size if isinstance(behaviour, Text) else 6
    fragment = behaviour.fragment if isinstance(behaviour, ToolCalls) else 5
    for index, item in enumerate(items):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "status": "in_progress", "content": []}})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append({"type": "response.content_part.added", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "part": part})
            for start in range(0, len(text), size):
                events.append({"type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                               "content_index": 0, "delta": text[start : start + size], "logprobs": []})
            events.append({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "text": text, "logprobs": []})
            events.append({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                           "content_index": 0, "part": {**part, "text": text}})
        elif item["type"] == "function_call":
            args = item["arguments"]
            events.append({"type": "response.output_item.added", "output_index": index,
                           "item": {**item, "arguments": "", "status": "in_progress"}})
            for start in range(0, len(args), fragment):
                events.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                               "output_index": index, "delta": args[start : start + fragment]})
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": index, "name": item["name"], "arguments": args})
        else:
            events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed",
                   "response": {**response, "status": "completed", "output": items, "usage": _usage(behaviour)}})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events
