"""A built-in deterministic model, so the router answers with no keys and no network at all.

It echoes the last user message (and answers embeddings: :mod:`providers.mock_embeddings`). When tools are
offered and the message names one of them, it calls that tool (arguments ``{}``, or the JSON object that follows
the name), which makes tool governance easy to see in a demo. Same input, same output: tests and demos can rely on it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from providers.base import ChatCall, Completion
from providers.mock_embeddings import mock_embeddings
from router.config.schema import ProviderSpec
from router.errors import UpstreamBadRequest


class MockProvider:
    wires = ("chat", "embeddings")

    def __init__(self, name: str, spec: ProviderSpec) -> None:
        self.name = name
        self.spec = spec

    async def complete(self, call: ChatCall) -> Completion:
        body = call.body
        if call.wire == "embeddings":
            return Completion(data=mock_embeddings(body))
        message, finish = _answer(body)
        prompt_tokens, completion_tokens = _usage(body, message)
        data = {
            "id": _completion_id(body),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "mock"),
            "system_fingerprint": "agent-router-mock",
            "choices": [
                {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                for i in range(_n(body))
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return Completion(data=data)

    async def stream(self, call: ChatCall) -> AsyncIterator[bytes]:
        body = call.body
        message, finish = _answer(body)
        base = {"id": _completion_id(body), "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", "mock"), "system_fingerprint": "agent-router-mock"}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return orjson.dumps({**base, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        content = message.get("content") or ""
        words = content.split(" ")
        for i, word in enumerate(words):
            yield chunk({"content": word if i == 0 else " " + word})
        for index, tool_call in enumerate(message.get("tool_calls") or []):
            function = tool_call["function"]
            yield chunk({"tool_calls": [{"index": index, "id": tool_call["id"], "type": "function",
                                         "function": {"name": function["name"], "arguments": ""}}]})
            arguments = function["arguments"]
            for start in range(0, len(arguments), 8):
                piece = arguments[start : start + 8]
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt_tokens, completion_tokens = _usage(body, message)
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                     "total_tokens": prompt_tokens + completion_tokens}
            yield orjson.dumps({**base, "choices": [], "usage": usage})

    async def close(self) -> None:
        return None


def _n(body: dict[str, Any]) -> int:
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 8:
        raise UpstreamBadRequest("n must be an integer from 1 to 8")
    return n


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _offered_tools(body: dict[str, Any]) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            name = (tool.get("function") or {}).get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def _answer(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    text = _last_user_text(body)
    if body.get("tool_choice") != "none":
        calls: list[dict[str, Any]] = []
        for name in _offered_tools(body):
            at = text.find(name)
            if at >= 0:
                calls.append(_tool_call(name, text[at + len(name) :], len(calls)))
        if calls:
            return {"role": "assistant", "content": None, "tool_calls": calls, "refusal": None}, "tool_calls"
    reply = f"Mock answer to: {text[:200]}" if text else "Mock answer."
    return {"role": "assistant", "content": reply, "refusal": None}, "stop"


def _tool_call(name: str, rest: str, index: int) -> dict[str, Any]:
    arguments = "{}"
    start = rest.find("{")
    if start >= 0 and rest[:start].strip() == "":
        end = rest.rfind("}")
        candidate = rest[start : end + 1]
        try:
            orjson.loads(candidate)
            arguments = candidate
        except orjson.JSONDecodeError:
            pass
    digest = hashlib.sha256(f"{name}{arguments}{index}".encode()).hexdigest()[:24]
    return {"id": f"call_{digest}", "type": "function", "function": {"name": name, "arguments": arguments}}


def _completion_id(body: dict[str, Any]) -> str:
    return "chatcmpl-mock-" + hashlib.sha256(orjson.dumps(body.get("messages"))).hexdigest()[:20]


def _usage(body: dict[str, Any], message: dict[str, Any]) -> tuple[int, int]:
    prompt = sum(len(_text(m.get("content")).split()) + 4 for m in body.get("messages") or [] if isinstance(m, dict))
    completion = len((message.get("content") or "").split())
    completion += sum(len(c["function"]["arguments"]) // 4 + 3 for c in message.get("tool_calls") or [])
    return prompt, max(completion, 1)
