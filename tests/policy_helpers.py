"""Shared builders for the tool-policy tests: a loaded snapshot with roles, a context, recorded streams."""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

import orjson

from router.config import load_snapshot
from router.config.snapshot import Snapshot
from router.context import RequestContext
from tests.configs import openai_config
from tests.harness import write_config
from tests.spec import assert_matches

ROLES = """
policy:
  max_tool_call_bytes: 1024
roles:
  ops:
    models: ["*"]
    tools:
      allow: ["search", "read_*", "delete_environment", "deploy"]
      deny: ["read_secrets"]
      conditions:
        - tool: delete_environment
          when: {path: environment, op: eq, value: production}
          reason: production environments are never deleted by agents
        - tool: deploy
          when: {any: [{path: replicas, op: gt, value: 10}, {path: $.target.region, op: in, value: [eu-1, us-1]}]}
  blocker:
    models: ["*"]
    on_violation: block
    tools: {allow: ["search", "delete_environment"],
            conditions: [{tool: delete_environment, when: {path: environment, op: eq, value: production}}]}
  shadow:
    models: ["*"]
    on_violation: audit_only
    tools: {allow: ["search"]}
  everything:
    models: ["*"]
    notice: "NOTICE {tool} / {role}"
    tools: {allow: ["*"], deny: ["delete_*"]}
  chat_only:
    models: ["*"]
"""


def agent_key(agent: str) -> str:
    return f"sk-agent-{agent}-0123456789abcdef"


def agents_yaml(*pairs: tuple[str, str]) -> str:
    lines = ["agents:"]
    for agent, role in pairs:
        digest = hashlib.sha256(agent_key(agent).encode()).hexdigest()
        lines.append(f"  {agent}: {{role: {role}, keys: [{{hash: 'sha256:{digest}'}}]}}")
    return "\n".join(lines) + "\n"


@cache
def snapshot() -> Snapshot:
    path = write_config(openai_config("http://127.0.0.1:9/v1", ROLES), None)
    return load_snapshot(str(path))


def make_ctx(role: str | None, payload: dict[str, Any], *, stream: bool = False) -> RequestContext:
    return RequestContext(request_id="req-test", snapshot=snapshot(), payload=payload, stream=stream,
                          requested_model="fast", agent="agent-a", role=role)


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                         "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]})


def call_chunks(calls: list[tuple[str, str]], fragment: int = 3, content: str = "") -> list[bytes]:
    """A recorded OpenAI stream: role, text, then each call as a head fragment plus argument pieces."""
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": content[i:i + 4]}) for i in range(0, len(content), 4)]
    for index, (name, args) in enumerate(calls):
        out.append(chunk({"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                                          "function": {"name": name, "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i:i + fragment]}}]})
                for i in range(0, len(args), fragment)]
    out.append(chunk({}, "tool_calls"))
    return out


def assemble(payloads: list[bytes]) -> dict[str, Any]:
    """What an SDK accumulator builds from chunks: content, calls by index, finish reason, extras."""
    content, calls, finish, extra = "", {}, None, None
    for payload in payloads:
        data = orjson.loads(payload)
        extra = data.get("agent_router", extra)
        for choice in data.get("choices", []):
            delta = choice["delta"]
            content += delta.get("content") or ""
            for frag in delta.get("tool_calls") or []:
                entry = calls.setdefault(frag["index"], {"id": None, "name": "", "arguments": ""})
                entry["id"] = frag.get("id", entry["id"])
                fn = frag.get("function") or {}
                entry["name"] += fn.get("name") or ""
                entry["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {"content": content, "calls": calls, "finish": finish, "agent_router": extra}


def assert_chunk(payload: Any) -> None:
    """A stream chunk (bytes or parsed) must match the spec's CreateChatCompletionStreamResponse."""
    assert_matches("CreateChatCompletionStreamResponse", orjson.loads(payload) if isinstance(payload, bytes)
                   else payload)
