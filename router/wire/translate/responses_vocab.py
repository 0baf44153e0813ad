"""The Responses API words that whole answers and streams share: ids, usage, and the ``Response`` object
around an output, so a translated answer and a translated stream's ``response.completed`` cannot disagree."""

from __future__ import annotations

import secrets
import time
from typing import Any

from router.context import RequestContext

_ECHOED_DEFAULTS: dict[str, Any] = {
    "instructions": None, "max_output_tokens": None, "parallel_tool_calls": True, "previous_response_id": None,
    "reasoning": None, "store": True, "temperature": None, "text": {"format": {"type": "text"}},
    "tool_choice": "auto", "tools": [], "top_p": None, "truncation": "disabled",
}
"""Request parameters a ``Response`` echoes, with what an omitted one means."""
_ECHOED_IF_GIVEN = ("user", "prompt_cache_key", "safety_identifier")


def new_id(prefix: str) -> str:
    """``resp_``, ``msg_``, ``fc_``, ``rs_`` followed by 32 hex digits."""
    return prefix + secrets.token_hex(16)


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _detail(usage: dict[str, Any], group: str, name: str) -> int:
    details = usage.get(group)
    return _count(details.get(name)) if isinstance(details, dict) else 0


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """Chat usage as a Responses ``usage`` (the same counts: both include cached and reasoning tokens)."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": _detail(usage, "prompt_tokens_details", "cached_tokens"),
                                     "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": _detail(usage, "completion_tokens_details",
                                                                  "reasoning_tokens")},
            "total_tokens": prompt + completion}


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """A Responses ``usage`` as chat's."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("input_tokens"))
    completion = _count(usage.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": _detail(usage, "input_tokens_details", "cached_tokens")},
            "completion_tokens_details": {"reasoning_tokens": _detail(usage, "output_tokens_details",
                                                                      "reasoning_tokens")}}


def status_of(finish: Any) -> tuple[str, dict[str, Any] | None]:
    """Chat's ``finish_reason`` as a Response's ``status`` and ``incomplete_details``."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_object(ctx: RequestContext, response_id: str, created_at: int, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None,
                    incomplete: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``Response`` for the caller's request ``ctx.payload``: its parameters echoed as the API does."""
    payload = ctx.payload
    out: dict[str, Any] = {"id": response_id, "object": "response", "created_at": created_at, "status": status,
                           "completed_at": int(time.time()) if status == "completed" else None,
                           "error": None, "incomplete_details": incomplete, "model": ctx.requested_model,
                           "output": output}
    for key, default in _ECHOED_DEFAULTS.items():
        value = payload.get(key)
        out[key] = default if value is None else value
    for key in _ECHOED_IF_GIVEN:
        if isinstance(payload.get(key), str):
            out[key] = payload[key]
    metadata = payload.get("metadata")
    out["metadata"] = metadata if isinstance(metadata, dict) else {}
    if usage is not None:
        out["usage"] = usage
    return out
