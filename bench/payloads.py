"""The canned request and answers: an agent turn offering tools, a tool-calling answer, and its SSE stream.

The answers call ``run_shell`` with harmless arguments: the role allows it under an argument condition, so
the router's policy really evaluates the call (whole answer and stream) and lets it through unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

MODEL = "coder"
STREAM_CHUNKS = 20

TOOL_SPECS = (
    ("read_file", "path", "Read a file from the workspace."),
    ("run_tests", "target", "Run the test suite or one test."),
    ("run_shell", "command", "Run a shell command in the sandbox."),
    ("web_search", "query", "Search the web."),
)
"""(name, its one string argument, description): the tools offered, shared with :mod:`bench.messages_payloads`."""

_TOOLS = [
    {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}}}
    for name, arg, description in TOOL_SPECS
]

_MESSAGES = [
    {"role": "system", "content": "You are a careful coding agent. Use the tools to inspect and test the code. "
                                  "Explain briefly what you do before each tool call."},
    {"role": "user", "content": "The test tests/test_parse.py::test_empty_body fails with a KeyError. "
                                "Find out why and propose a fix."},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "read_file",
                                                          "arguments": '{"path": "router/api/parse.py"}'}}]},
    {"role": "tool", "tool_call_id": "call_0", "content": "def parse_chat_body(body):\n" + "    ...\n" * 20},
]


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "messages": _MESSAGES, "tools": _TOOLS, "tool_choice": "auto",
                            "temperature": 0.2, "max_tokens": 512}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


ANSWER_ARGS = '{"command": "pytest -q tests/test_parse.py"}'
ANSWER_TEXT = "The parser reads the model field before it checks that the body is a JSON object, so an empty body "


def completion_body() -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1760000000, "model": "up-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": ANSWER_TEXT,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "run_shell", "arguments": ANSWER_ARGS}}]}}],
        "usage": {"prompt_tokens": 412, "completion_tokens": 38, "total_tokens": 450}})


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    chunk: dict[str, Any] = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1760000000,
                             "model": "up-model", "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def stream_body() -> bytes:
    """About 20 SSE events: text deltas, one tool call in fragments, the finish, a usage chunk, [DONE]."""
    words = ANSWER_TEXT.split(" ")
    text_chunks = STREAM_CHUNKS - 7
    step = -(-len(words) // text_chunks)
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": " ".join(words[i:i + step]) + " "}) for i in range(0, len(words), step)]
    events.append(_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                          "function": {"name": "run_shell", "arguments": ""}}]}))
    pieces = [ANSWER_ARGS[:12], ANSWER_ARGS[12:24], ANSWER_ARGS[24:]]
    events += [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in pieces]
    events.append(_chunk({}, finish="tool_calls"))
    events.append(_chunk(None, usage={"prompt_tokens": 412, "completion_tokens": 38, "total_tokens": 450}))
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)
