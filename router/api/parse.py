"""Read and check a chat request once: size, JSON, the caps, and only the fields a decision needs.

Whatever is accepted here can be forwarded: orjson parses up to 1,024 levels of nesting but encodes at most
254, and (orjson 3.13, checked by the tests) nesting is the only thing it parses but refuses to encode (big
integers parse as floats; lone surrogates, NaN and infinities do not parse). A body nested deeper than
``max_json_depth`` is therefore the caller's 400, before any policy work or upstream attempt, never an upstream
fault counted against the deployments it was sent to.
"""

from __future__ import annotations

import gc
from typing import Any

import orjson

from router.api.request_caps import DEFAULT_CAPS, RequestCaps, check_content, check_tools, count_calls, refuse
from router.errors import InvalidRequest


def load_object(body: bytes, caps: RequestCaps, expected: str) -> dict[str, Any]:
    """The body as a JSON object within the nesting guard; ``expected`` names the request in the error."""
    if not body:
        raise InvalidRequest(f"request body is empty; expected a JSON {expected}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    check_depth(body, payload, caps.max_json_depth)
    return payload


def parse_chat_body(body: bytes, caps: RequestCaps = DEFAULT_CAPS) -> dict[str, Any]:
    payload = load_object(body, caps, "chat completion request")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("you must provide a model parameter (a non-empty string)", param="model")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    if len(messages) > caps.max_messages:
        raise refuse(f"messages has {len(messages)} entries", caps.max_messages, "max_messages", "messages")
    calls, max_chars = 0, caps.max_message_chars
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string role", param=f"messages[{i}]")
        content = message.get("content")
        if type(content) is not str or len(content) > max_chars:
            check_content(i, content, caps)
        if "tool_calls" in message:
            calls += count_calls(i, message["tool_calls"], caps)
    if calls > caps.max_tool_calls:
        raise refuse(f"the history holds {calls} tool calls", caps.max_tool_calls, "max_tool_calls", "messages")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    stream_options = payload.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise InvalidRequest("stream_options must be an object", param="stream_options")
    for name in ("tools", "functions"):
        value = payload.get(name)
        if value is not None:
            if not isinstance(value, list):
                raise InvalidRequest(f"{name} must be an array", param=name)
            check_tools(name, value, caps)
    n = payload.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise InvalidRequest("n must be a positive integer", param="n")
    return payload


def check_depth(body: bytes, payload: dict[str, Any], limit: int) -> None:
    """Refuse nesting deeper than ``limit`` (the top-level object is level 1)."""
    if len(body) <= _SMALL_BODY and body.count(b"{") + body.count(b"[") <= limit:
        return  # fewer brackets than levels allowed: cheaper to count than to walk when the body is small
    if not _deeper_than(payload, limit):
        return
    name = next(name for name, value in payload.items()
                if type(value) in _CONTAINERS and _deeper_than(value, limit - 1))
    raise refuse(f"request body field {name!r} nests objects and arrays more than {limit} levels deep",
                 limit, "max_json_depth", name)


_SMALL_BODY = 4096
_CONTAINERS = (dict, list)
_is_scalar = frozenset((str, int, float, bool, type(None))).__contains__


def _deeper_than(root: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether ``root`` nests more than ``limit`` levels of objects and arrays.

    Level by level, every step in C: the garbage collector's traversal lists the values one level down (a dict's
    values, a list's items) and skips strings and numbers (they hold no references), so no Python code runs per
    value. After ``limit`` steps only what sits below level ``limit`` is left; a container there is too deep.
    """
    level: list[Any] = [root]
    for _ in range(limit):
        level = gc.get_referents(*level)
        if not level:
            return False
    return not all(map(_is_scalar, map(type, level)))
