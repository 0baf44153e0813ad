"""Read and check an OpenAI Responses request once: JSON, the caps, and the fields a decision needs.

``input`` is a string or a list of items; item types are an open set (Codex and the Agents SDK add new ones), so
only what the stages read is checked: that every item is an object, the sizes, and the names of past calls.
Every other field passes through untouched. The errors are OpenAI-style 400s.
"""

from __future__ import annotations

from typing import Any

from router.api.parse import load_object
from router.api.request_caps import DEFAULT_CAPS, RequestCaps, check_text, check_tools, refuse
from router.errors import InvalidRequest

_BOOLEANS = ("stream", "store", "parallel_tool_calls", "background")


def parse_responses_body(body: bytes, caps: RequestCaps = DEFAULT_CAPS) -> dict[str, Any]:
    """The body of ``POST /v1/responses``."""
    payload = load_object(body, caps, "Responses request")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Field required (a non-empty string)", param="model")
    for name in _BOOLEANS:
        value = payload.get(name)
        if value is not None and not isinstance(value, bool):
            raise InvalidRequest(f"{name}: must be a boolean", param=name)
    if payload.get("background"):
        raise InvalidRequest("background: background responses are not supported by this router", param="background")
    previous = payload.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous or len(previous) > 256):
        raise InvalidRequest("previous_response_id: must be a response id (a non-empty string)",
                             param="previous_response_id")
    instructions = payload.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("instructions: must be a string", param="instructions")
        check_text(instructions, caps.max_message_chars, "max_message_chars", "instructions")
    _check_input(payload.get("input"), previous is not None, caps)
    tools = payload.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: must be an array", param="tools")
        check_tools("tools", tools, caps)
    limit = payload.get("max_output_tokens")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise InvalidRequest("max_output_tokens: must be a positive integer", param="max_output_tokens")
    return payload


def _check_input(items: object, continues: bool, caps: RequestCaps) -> None:
    if items is None:
        if not continues:
            raise InvalidRequest("input: Field required (a string or an array of input items)", param="input")
        return
    if isinstance(items, str):
        check_text(items, caps.max_message_chars, "max_message_chars", "input")
        return
    if not isinstance(items, list):
        raise InvalidRequest("input: must be a string or an array of input items", param="input")
    if len(items) > caps.max_messages:
        raise refuse(f"input has {len(items)} items", caps.max_messages, "max_messages", "input")
    calls = 0
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise InvalidRequest(f"input.{i}: must be an object", param=f"input.{i}")
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            raise InvalidRequest(f"input.{i}.type: must be a string", param=f"input.{i}.type")
        if kind is None or kind == "message":
            _check_message(i, item, caps)
        elif kind.endswith("_call"):
            calls += 1
            check_text(item.get("name"), caps.max_tool_name_chars, "max_tool_name_chars", f"input.{i} name")
        for field in ("arguments", "output", "input"):
            value = item.get(field)
            if type(value) is str:
                check_text(value, caps.max_message_chars, "max_message_chars", f"input.{i}.{field}")
    if calls > caps.max_tool_calls:
        raise refuse(f"input holds {calls} tool calls", caps.max_tool_calls, "max_tool_calls", "input")


def _check_message(i: int, item: dict[str, Any], caps: RequestCaps) -> None:
    if item.get("role") not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(f"input.{i}.role: must be one of user, assistant, system, developer",
                             param=f"input.{i}.role")
    content = item.get("content")
    if type(content) is str:
        check_text(content, caps.max_message_chars, "max_message_chars", f"input.{i}.content")
        return
    if type(content) is not list:
        raise InvalidRequest(f"input.{i}.content: must be a string or an array of content parts",
                             param=f"input.{i}.content")
    size = 0
    for j, part in enumerate(content):
        if type(part) is not dict:
            raise InvalidRequest(f"input.{i}.content.{j}: must be an object", param=f"input.{i}.content.{j}")
        text = part.get("text")
        if type(text) is str:
            size += len(text)
    if size > caps.max_message_chars:
        raise refuse(f"input.{i}.content has {size} characters", caps.max_message_chars, "max_message_chars",
                     f"input.{i}.content")
