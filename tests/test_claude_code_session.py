"""A scripted Claude-Code-like session through the router: model discovery with x-api-key, count_tokens, a
``system`` array with cache_control and betas, a streamed turn with a signed thinking block and a tool call, and
the next turn sending that thinking block back byte for byte; the session's records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.fakes.behaviours import Scripted, Text
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer
from tests.messages_helpers import messages_config, request_rows

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds+Qz/8fmyv6kE3Z4N6Hl0/Q=="
THINKING = "The user wants the tests run. I will call Bash with pytest."
HEADERS = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming",
           "x-claude-code-session-id": "9f3c-session", "x-claude-code-agent-id": "main"}
SYSTEM = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
          {"type": "text", "text": "You are Claude Code, Anthropic's official CLI.",
           "cache_control": {"type": "ephemeral"}},
          {"type": "text", "text": "Project instructions: run tests with pytest.",
           "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
TOOLS = [{"name": "Bash", "description": "Run a shell command",
          "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
          "cache_control": {"type": "ephemeral"}}]


def _turn_events() -> list[dict[str, Any]]:
    message = {"id": "msg_01", "type": "message", "role": "assistant", "model": "up-claude", "content": [],
               "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 12, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 30000,
                         "output_tokens": 1}}
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                       "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THINKING[:20]}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": THINKING[20:]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_01",
                                                                       "name": "Bash", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                              "partial_json": '{"command": "pyt'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'est -q"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 57}},
        {"type": "message_stop"},
    ]


@pytest.fixture
def router(upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    roles = """
roles:
  claude-code: {models: ["sonnet"], tools: {allow: [Bash, Read]}}
agents:
  cc: {role: claude-code, keys: [{hash: "sha256:__HASH__"}]}
"""
    import hashlib
    roles = roles.replace("__HASH__", hashlib.sha256(b"cc-key").hexdigest())
    return start_router(messages_config(upstream.url, roles), ledger_flush_interval=0.05)


def test_a_claude_code_session(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.anthropic(api_key="cc-key")  # ANTHROPIC_API_KEY: sent as x-api-key
    models = client.models.list(limit=1000)
    assert [model.id for model in models.data] == ["sonnet"]

    count = client.messages.count_tokens(model="sonnet", system=SYSTEM, tools=TOOLS,  # type: ignore[arg-type]
                                         messages=[{"role": "user", "content": "run the tests"}],
                                         extra_headers=HEADERS)
    counted = upstream.served("up-claude")[-1]
    assert counted.path == "/v1/messages/count_tokens"
    assert count.input_tokens == len(orjson.dumps(counted.body)) // 4 + 1  # the upstream's count, not an estimate
    assert counted.body["system"] == SYSTEM and "max_tokens" not in counted.body

    upstream.queue("up-claude", Scripted(events=_turn_events()))
    first_turn = [{"role": "user", "content": [{"type": "text", "text": "run the tests",
                                                "cache_control": {"type": "ephemeral"}}]}]
    with client.messages.stream(model="sonnet", max_tokens=32000, system=SYSTEM,  # type: ignore[arg-type]
                                tools=TOOLS, messages=first_turn,  # type: ignore[arg-type]
                                thinking={"type": "enabled", "budget_tokens": 10000},
                                extra_headers=HEADERS) as stream:
        answer = stream.get_final_message()
    sent = upstream.served("up-claude")[-1]
    assert sent.headers["anthropic-beta"] == HEADERS["anthropic-beta"]
    assert sent.body["system"] == SYSTEM and sent.body["tools"] == TOOLS
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 10000}
    thinking, call = answer.content
    assert thinking.type == "thinking" and thinking.thinking == THINKING and thinking.signature == SIGNATURE
    assert call.type == "tool_use" and call.input == {"command": "pytest -q"}
    assert answer.usage.cache_read_input_tokens == 30000 and answer.usage.cache_creation_input_tokens == 2048

    upstream.queue("up-claude", Text("All 12 tests passed."))
    second_turn = [*first_turn,
                   {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in answer.content]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                                 "content": "12 passed", "cache_control": {"type": "ephemeral"}}]}]
    with client.messages.stream(model="sonnet", max_tokens=32000, system=SYSTEM,  # type: ignore[arg-type]
                                tools=TOOLS, messages=second_turn,  # type: ignore[arg-type]
                                thinking={"type": "enabled", "budget_tokens": 10000},
                                extra_headers=HEADERS) as stream:
        done = stream.get_final_message()
    assert done.content[0].text == "All 12 tests passed."  # type: ignore[union-attr]
    replayed = upstream.served("up-claude")[-1].body["messages"][1]["content"][0]
    assert replayed == {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE}
    assert upstream.served("up-claude")[-1].body["messages"][2]["content"][0]["cache_control"] == \
        {"type": "ephemeral"}

    rows = request_rows(router, 2)
    first = rows[-2]
    assert (first["api"], first["session_id"], first["session_agent"]) == ("messages", "9f3c-session", "main")
    assert first["prompt_tokens"] == 12 + 2048 + 30000 and first["cached_tokens"] == 30000
    assert first["cache_write_tokens"] == 2048 and first["completion_tokens"] == 57
    # 12 input at $3/M, 30,000 cache reads at $0.30/M, 2,048 cache writes at $3.75/M, 57 output at $15/M
    expected = (12 * 3 + 30000 * 0.3 + 2048 * 3.75 + 57 * 15) / 1e6
    assert first["cost_nano"] == round(expected * 1e9)
