"""Turn litellm's response objects (as plain dicts) into OpenAI's exact chat shapes.

litellm answers in an OpenAI-like shape padded with its own fields (``provider_specific_fields``, ``None``
placeholders, cost details). Clients and the router's stream filter expect OpenAI's shape, so these pure
functions keep what OpenAI defines (plus ``reasoning_content`` when a model thinks aloud) and drop the rest.
No litellm import here: the functions take ``model_dump()`` dicts, which keeps them fast to test.
"""

from __future__ import annotations

from typing import Any

import orjson


def openai_usage(usage: Any) -> dict[str, Any] | None:
    """OpenAI's usage object; cached and reasoning token counts kept when the provider reported them."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": int(usage.get("total_tokens") or prompt + completion)}
    prompt_details = usage.get("prompt_tokens_details") or {}
    cached = prompt_details.get("cached_tokens") or usage.get("cache_read_input_tokens")
    written = prompt_details.get("cache_creation_tokens") or usage.get("cache_creation_input_tokens")
    if cached or written:
        out["prompt_tokens_details"] = {"cached_tokens": int(cached or 0)}
        if written:
            out["prompt_tokens_details"]["cache_creation_tokens"] = int(written)
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": int(reasoning)}
    return out


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"id": call.get("id") or "", "type": "function",
            "function": {"name": function.get("name") or "", "arguments": function.get("arguments") or ""}}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.get("role") or "assistant", "content": message.get("content")}
    tool_calls = message.get("tool_calls")
    if tool_calls:
        out["tool_calls"] = [_tool_call(call) for call in tool_calls]
    if message.get("reasoning_content"):
        out["reasoning_content"] = message["reasoning_content"]
    out["refusal"] = message.get("refusal")
    return out


def openai_completion(data: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object from litellm's ``ModelResponse.model_dump()``."""
    choices = [
        {"index": choice.get("index", i), "message": _message(choice.get("message") or {}),
         "finish_reason": choice.get("finish_reason"), "logprobs": choice.get("logprobs")}
        for i, choice in enumerate(data.get("choices") or [])
    ]
    out: dict[str, Any] = {"id": data.get("id") or "", "object": "chat.completion",
                           "created": data.get("created") or 0, "model": data.get("model") or "", "choices": choices}
    if data.get("system_fingerprint"):
        out["system_fingerprint"] = data["system_fingerprint"]
    usage = openai_usage(data.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return out


class ChunkShaper:
    """Reshape litellm stream chunks into OpenAI ``chat.completion.chunk`` payloads, one chunk at a time.

    Promises the shape OpenAI streams have: the first delta of a tool call carries ``index``, ``id``,
    ``type`` and ``function.name``, later ones only ``index`` and ``function.arguments``; each parallel call
    gets its own index even when a provider reuses one; usage is never mixed into a chunk with choices but
    sent once, last, with ``choices: []``, and only when the request asked for it.
    """

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage: dict[str, Any] | None = None
        self._base: dict[str, Any] | None = None
        self._tool_index: dict[tuple[int, int], int] = {}
        self._next_tool_index: dict[int, int] = {}

    def feed(self, chunk: dict[str, Any]) -> bytes | None:
        """Return the payload for one litellm chunk, or None when it carries nothing a client needs."""
        if self._base is None:
            self._base = {"id": chunk.get("id") or "", "object": "chat.completion.chunk",
                          "created": chunk.get("created") or 0, "model": chunk.get("model") or ""}
            if chunk.get("system_fingerprint"):
                self._base["system_fingerprint"] = chunk["system_fingerprint"]
        usage = openai_usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = []
        for position, choice in enumerate(chunk.get("choices") or []):
            index = choice.get("index", position)
            delta = self._delta(index, choice.get("delta") or {})
            finish = choice.get("finish_reason")
            if delta or finish is not None:
                choices.append({"index": index, "delta": delta, "finish_reason": finish,
                                "logprobs": choice.get("logprobs")})
        if not choices:
            return None
        return orjson.dumps({**self._base, "choices": choices})

    def finish(self) -> bytes | None:
        """The closing usage chunk, when asked for and reported."""
        if not self.include_usage or self.usage is None:
            return None
        base = self._base or {"id": "", "object": "chat.completion.chunk", "created": 0, "model": ""}
        return orjson.dumps({**base, "choices": [], "usage": self.usage})

    def _delta(self, choice_index: int, delta: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if delta.get("role"):
            out["role"] = delta["role"]
        tool_calls = [self._tool_delta(choice_index, call) for call in delta.get("tool_calls") or []]
        content = delta.get("content")
        if content is not None and (content != "" or ("role" in out and not tool_calls)):
            out["content"] = content
        if delta.get("reasoning_content"):
            out["reasoning_content"] = delta["reasoning_content"]
        if delta.get("refusal") is not None:
            out["refusal"] = delta["refusal"]
        if tool_calls:
            out["tool_calls"] = tool_calls
        return out

    def _tool_delta(self, choice_index: int, call: dict[str, Any]) -> dict[str, Any]:
        function = call.get("function") or {}
        reported = int(call.get("index") or 0)
        key = (choice_index, reported)
        if call.get("id"):
            index = self._next_tool_index.get(choice_index, 0)
            self._next_tool_index[choice_index] = index + 1
            self._tool_index[key] = index
            return {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": function.get("name") or "", "arguments": function.get("arguments") or ""}}
        index = self._tool_index.get(key, reported)
        return {"index": index, "function": {"arguments": function.get("arguments") or ""}}
