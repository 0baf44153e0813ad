"""Malformed and hostile bodies never produce a 500 or a traceback: only OpenAI-style 4xx errors."""

from __future__ import annotations

import json
import random

import pytest

from tests.configs import openai_config

SHAPES = [
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "tools": [1, "two", None, {"type": "function"}]},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "tools": [{"function": "not-an-object"}]},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "tools": [{"function": {"name": 42}}]},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"function": []}},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "tool_choice": 17},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "functions": [{"name": None}]},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "function_call": {"name": ["a"]}},
    {"model": "fast", "messages": [{"role": "assistant", "tool_calls": "nope"}]},
    {"model": "fast", "messages": [{"role": "assistant", "tool_calls": [{"function": None}]}]},
    {"model": "fast", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": {}}}]}]},
    {"model": "fast", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}, 7, None]}]},
    {"model": "fast", "messages": [{"role": "user", "content": {"deep": {"er": [[[[]]]]}}}]},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": "yes"},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "metadata": [1, 2]},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "user": {"id": 1}},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
    {"model": "fast", "messages": [{"role": "user", "content": "x"}], "n": 0},
    {"model": "f" * 10_000, "messages": [{"role": "user", "content": "x"}]},
    {"model": "../../etc/passwd", "messages": [{"role": "user", "content": "x"}]},
    {"model": "fast\u0000", "messages": [{"role": "user", "content": "x"}]},
]


def _mutations(seed: int, count: int) -> list[object]:
    """Random structural damage to a valid request: deterministic, bounded."""
    rng = random.Random(seed)
    junk = [None, 0, -1, 1.5, "", "x", [], {}, [None], {"a": None}, True, "\u202e", "\ud83d\ude00" * 3]
    keys = ["model", "messages", "tools", "tool_choice", "stream", "stream_options", "functions", "function_call",
            "n", "max_tokens", "metadata", "user", "response_format", "parallel_tool_calls"]
    out: list[object] = []
    for _ in range(count):
        body: dict[str, object] = {"model": "fast", "messages": [{"role": "user", "content": "hello"}]}
        for _ in range(rng.randint(1, 4)):
            body[rng.choice(keys)] = rng.choice(junk)
        out.append(body)
    return out


@pytest.fixture
def router(upstream, start_router):
    return start_router(openai_config(upstream.openai_base_url))


@pytest.mark.parametrize("body", SHAPES + _mutations(1234, 60))
def test_no_malformed_body_yields_a_server_error(router, body):
    with router.http() as http:
        resp = http.post("/v1/chat/completions", content=json.dumps(body),
                         headers={"authorization": "Bearer test-key", "content-type": "application/json"})
        if body.get("stream") is True and resp.status_code == 200:  # type: ignore[union-attr]
            return
    assert resp.status_code < 500 or resp.status_code in (502, 503, 504), resp.text
    if resp.status_code >= 400:
        assert set(resp.json()["error"]) >= {"message", "type", "param", "code"}
    assert "Traceback" not in resp.text
