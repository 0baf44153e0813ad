"""Read and check an Anthropic Messages request once: JSON, the caps, and the fields a decision needs.

Only what the stages read is checked; every other field (``thinking``, ``metadata``, ``cache_control``, betas'
fields) passes through untouched. The errors are the caller's 400s, in Anthropic's shape on these paths.
"""

from __future__ import annotations

from typing import Any

from router.api.parse import load_object
from router.api.request_caps import DEFAULT_CAPS, RequestCaps, check_text, check_tools, refuse
from router.errors import InvalidRequest

_CALL_BLOCKS = frozenset(("tool_use", "server_tool_use", "mcp_tool_use"))


def parse_messages_body(body: bytes, caps: RequestCaps = DEFAULT_CAPS, *, needs_max_tokens: bool = True
                        ) -> dict[str, Any]:
    """The body of ``POST /v1/messages`` (``needs_max_tokens=False`` for ``/v1/messages/count_tokens``)."""
    payload = load_object(body, caps, "Messages request")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Field required (a non-empty string)", param="model")
    if needs_max_tokens:
        max_tokens = payload.get("max_tokens")
        if type(max_tokens) is not int or max_tokens < 1:
            raise InvalidRequest("max_tokens: Field required (a positive integer)", param="max_tokens")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: must be a non-empty array", param="messages")
    if len(messages) > caps.max_messages:
        raise refuse(f"messages has {len(messages)} entries", caps.max_messages, "max_messages", "messages")
    calls = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}: must be an object whose role is 'user' or 'assistant'",
                                 param=f"messages.{i}")
        calls += _check_content(i, message.get("content"), caps)
    if calls > caps.max_tool_calls:
        raise refuse(f"the history holds {calls} tool calls", caps.max_tool_calls, "max_tool_calls", "messages")
    system = payload.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: must be a string or an array of text blocks", param="system")
    if isinstance(system, str):
        check_text(system, caps.max_message_chars, "max_message_chars", "system")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    tools = payload.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: must be an array", param="tools")
        check_tools("tools", tools, caps)
    return payload


def _check_content(i: int, content: object, caps: RequestCaps) -> int:
    """Refuse content that is neither a string nor an array, or too long; the number of tool calls it holds."""
    if type(content) is str:
        check_text(content, caps.max_message_chars, "max_message_chars", f"messages.{i}.content")
        return 0
    if type(content) is not list:
        raise InvalidRequest(f"messages.{i}.content: must be a string or an array of content blocks",
                             param=f"messages.{i}.content")
    size = calls = 0
    for j, block in enumerate(content):
        if type(block) is not dict:
            raise InvalidRequest(f"messages.{i}.content.{j}: must be an object", param=f"messages.{i}.content.{j}")
        text = block.get("text")
        if type(text) is str:
            size += len(text)
        if block.get("type") in _CALL_BLOCKS:
            calls += 1
            check_text(block.get("name"), caps.max_tool_name_chars, "max_tool_name_chars",
                       f"messages.{i}.content.{j} name")
    if size > caps.max_message_chars:
        raise refuse(f"messages.{i}.content has {size} characters", caps.max_message_chars, "max_message_chars",
                     f"messages.{i}.content")
    return calls
