"""The free token ceiling from the body's size must never be below the prompt's counted bounds: rules and the
context-window screen trust it to skip counting."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from router.config import load_snapshot
from router.context import RequestContext
from router.tokens import prompt_ceiling, prompt_token_bounds

_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    "x": {"type": "number", "minimum": 1E2, "maximum": 1e15, "multipleOf": 1E-7}}}}}

PAYLOADS: list[dict[str, Any]] = [
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": [{"role": "u", "content": [{"type": "image_url"}] * 50}]},
    {"model": "m", "messages": [{"role": "u", "name": "n", "content": ""}] * 40},
    {"model": "m", "messages": [{"role": "user", "content": "é漢字🙂\n\t\"\\" * 200}]},
    {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}] * 10}],
     "tools": [_TOOL] * 5},
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("encode", [orjson.dumps, lambda p: json.dumps(p, ensure_ascii=True).encode(),
                                    lambda p: json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode()])
def test_the_ceiling_is_never_below_the_counted_bounds(payload: dict[str, Any], encode: Any) -> None:
    body = encode(payload)
    parsed = orjson.loads(body)
    ctx = RequestContext(request_id="r", snapshot=load_snapshot(None), payload=parsed, stream=False,
                         requested_model="m", body_bytes=len(body))
    ceiling = prompt_ceiling(ctx)
    assert ceiling is not None and ceiling >= prompt_token_bounds(parsed)[1]


def test_no_body_size_means_no_ceiling() -> None:
    ctx = RequestContext(request_id="r", snapshot=load_snapshot(None), payload=PAYLOADS[0], stream=False,
                         requested_model="m")
    assert prompt_ceiling(ctx) is None
