"""The words both translation directions share: stop reasons, usage and ids, so requests, answers and streams
cannot disagree on them."""

from __future__ import annotations

import secrets
from typing import Any

CHAT_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
               "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}
"""Anthropic ``stop_reason`` -> chat ``finish_reason``."""
MESSAGES_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}
"""Chat ``finish_reason`` -> Anthropic ``stop_reason``."""


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """Anthropic usage as chat's: its ``input_tokens`` excludes cache reads and writes, chat's prompt includes them."""
    if not isinstance(usage, dict):
        return None
    read = _count(usage.get("cache_read_input_tokens"))
    prompt = _count(usage.get("input_tokens")) + _count(usage.get("cache_creation_input_tokens")) + read
    completion = _count(usage.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read}}


def messages_usage(usage: Any) -> dict[str, Any] | None:
    """Chat usage as Anthropic's: cached prompt tokens are cache reads; chat never reports cache writes."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(usage.get("prompt_tokens"))
    return {"input_tokens": max(prompt - cached, 0), "output_tokens": _count(usage.get("completion_tokens")),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": min(cached, prompt)}


def message_id(chat_id: Any) -> str:
    """``chatcmpl-X`` -> ``msg_X`` (a fresh id when the upstream gave none)."""
    if isinstance(chat_id, str) and chat_id:
        return "msg_" + chat_id.removeprefix("chatcmpl-")
    return "msg_" + secrets.token_hex(12)


def completion_id(msg_id: Any) -> str:
    """``msg_X`` -> ``chatcmpl-X`` (a fresh id when the upstream gave none)."""
    if isinstance(msg_id, str) and msg_id:
        return "chatcmpl-" + msg_id.removeprefix("msg_")
    return "chatcmpl-" + secrets.token_hex(12)


def tool_id() -> str:
    """An id for a tool call the upstream left unnamed (both wires require one)."""
    return "toolu_" + secrets.token_hex(12)
