"""The Messages (Anthropic) counterparts of :mod:`bench.payloads`: the same agent turn, answer and stream.

The turn, the tools and the answer carry the same content as the chat ones (four tools offered, one past
``read_file`` call with its result, an answer calling ``run_shell`` with harmless arguments), so the two wires'
figures compare the cost of the wire, not of a different workload. The role allows ``run_shell`` under an
argument condition, so the router's policy holds the streamed block until its input is complete, checks it and
lets it through unchanged. Usage carries cache fields, as a real Anthropic answer does.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.payloads import ANSWER_ARGS, ANSWER_TEXT, STREAM_CHUNKS, TOOL_SPECS

MODEL = "claude-coder"
ANTHROPIC_VERSION = "2023-06-01"

_TOOLS = [{"name": name, "description": description,
           "input_schema": {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}}
          for name, arg, description in TOOL_SPECS]

_SYSTEM = [{"type": "text", "text": "You are a careful coding agent. Use the tools to inspect and test the code. "
                                    "Explain briefly what you do before each tool call.",
            "cache_control": {"type": "ephemeral"}}]

_MESSAGES = [
    {"role": "user", "content": "The test tests/test_parse.py::test_empty_body fails with a KeyError. "
                                "Find out why and propose a fix."},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_bench_0", "name": "read_file",
                                       "input": {"path": "router/api/parse.py"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_bench_0",
                                  "content": "def parse_chat_body(body):\n" + "    ...\n" * 20}]},
]

_USAGE = {"input_tokens": 12, "output_tokens": 38, "cache_creation_input_tokens": 0,
          "cache_read_input_tokens": 400}


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "system": _SYSTEM, "messages": _MESSAGES, "tools": _TOOLS,
                            "tool_choice": {"type": "auto"}, "max_tokens": 512}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def message_body() -> bytes:
    """A whole Anthropic message: a text block, then a ``tool_use`` block calling ``run_shell``."""
    return orjson.dumps({
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "up-claude",
        "content": [{"type": "text", "text": ANSWER_TEXT},
                    {"type": "tool_use", "id": "toolu_bench_1", "name": "run_shell",
                     "input": orjson.loads(ANSWER_ARGS)}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": _USAGE})


def _event(payload: dict[str, Any]) -> bytes:
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def stream_body() -> bytes:
    """About 20 events, as Anthropic sends them: message_start (usage with cache fields), a ping, a text block
    in deltas, a ``tool_use`` block whose input arrives as three ``input_json_delta`` fragments, message_delta
    (stop reason, output tokens) and message_stop."""
    words = ANSWER_TEXT.split(" ")
    text_deltas = STREAM_CHUNKS - 10
    step = -(-len(words) // text_deltas)
    start_usage = {**_USAGE, "output_tokens": 1}
    events = [_event({"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "up-claude", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
    events.append(_event({"type": "ping"}))
    events.append(_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
    events += [_event({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": " ".join(words[i:i + step]) + " "}})
               for i in range(0, len(words), step)]
    events.append(_event({"type": "content_block_stop", "index": 0}))
    events.append(_event({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_bench_1", "name": "run_shell", "input": {}}}))
    pieces = [ANSWER_ARGS[:12], ANSWER_ARGS[12:24], ANSWER_ARGS[24:]]
    events += [_event({"type": "content_block_delta", "index": 1,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}) for piece in pieces]
    events.append(_event({"type": "content_block_stop", "index": 1}))
    events.append(_event({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"output_tokens": _USAGE["output_tokens"]}}))
    events.append(_event({"type": "message_stop"}))
    return b"".join(events)
