"""The OpenAI Responses counterparts of :mod:`bench.payloads`: the same agent turn, answer and stream.

The turn carries the same content as the chat one (the same instructions and user message, the four tools as flat
function tools, the past ``read_file`` call as a ``function_call`` + ``function_call_output`` item pair) and is
stateless (``store: false``, the whole history in ``input``, as Codex CLI sends it). The answer is the same text
and the same ``run_shell`` call, as a ``Response`` that echoes the request's settings, as OpenAI's does. The stream
is the real event sequence, every event numbered: ``response.created``, ``response.in_progress``, the message item
(``output_item.added``, ``content_part.added``, the text in as many ``output_text.delta`` events as the chat stream
has text chunks, ``output_text.done``, ``content_part.done``, ``output_item.done``), the ``function_call`` item
(its arguments in the chat stream's three fragments, ``function_call_arguments.done``), and ``response.completed``
with usage. The role allows ``run_shell`` under an argument condition, so the router's policy really checks the
call, whole and streamed, and lets it through unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.payloads import ANSWER_ARGS, ANSWER_TEXT, STREAM_CHUNKS, TOOL_SPECS

MODEL = "codex-coder"
UPSTREAM_MODEL = "up-codex"
INSTRUCTIONS = ("You are a careful coding agent. Use the tools to inspect and test the code. "
                "Explain briefly what you do before each tool call.")
CALL_MARKER = b'"type":"function_call"'
"""Found only in an output ``function_call`` item (the echoed tools are ``"type":"function"``): an answer without it
lost its call on the way."""

_TOOLS = [{"type": "function", "name": name, "description": description, "strict": False,
           "parameters": {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}}
          for name, arg, description in TOOL_SPECS]

_INPUT = [
    {"role": "user", "content": "The test tests/test_parse.py::test_empty_body fails with a KeyError. "
                                "Find out why and propose a fix."},
    {"type": "function_call", "call_id": "call_0", "name": "read_file",
     "arguments": '{"path": "router/api/parse.py"}'},
    {"type": "function_call_output", "call_id": "call_0", "output": "def parse_chat_body(body):\n" + "    ...\n" * 20},
]

_USAGE = {"input_tokens": 412, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
          "output_tokens": 38, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 450}

_MESSAGE_ID, _CALL_ITEM_ID = "msg_bench_1", "fc_bench_1"


def request_body(stream: bool) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "instructions": INSTRUCTIONS, "input": _INPUT, "tools": _TOOLS,
                            "tool_choice": "auto", "temperature": 0.2, "max_output_tokens": 512, "store": False}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def text_deltas() -> list[str]:
    """The answer text cut exactly as :func:`bench.payloads.stream_body` cuts it into chat chunks."""
    words = ANSWER_TEXT.split(" ")
    step = -(-len(words) // (STREAM_CHUNKS - 7))
    return [" ".join(words[i:i + step]) + " " for i in range(0, len(words), step)]


def _message(text: str, status: str) -> dict[str, Any]:
    done = status == "completed"
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if done else []
    return {"id": _MESSAGE_ID, "type": "message", "status": status, "role": "assistant", "content": content}


def _call(arguments: str, status: str) -> dict[str, Any]:
    return {"id": _CALL_ITEM_ID, "type": "function_call", "status": status, "call_id": "call_1",
            "name": "run_shell", "arguments": arguments}


def _response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    """A ``Response``; ``usage`` is left out until it is known (the spec does not allow null there)."""
    response: dict[str, Any] = {
        "id": "resp_bench", "object": "response", "created_at": 1760000000, "status": status,
        "completed_at": 1760000001 if status == "completed" else None, "error": None, "incomplete_details": None,
        "instructions": INSTRUCTIONS, "max_output_tokens": 512, "model": UPSTREAM_MODEL, "output": output,
        "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
        "store": False, "temperature": 0.2, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": _TOOLS, "top_p": 1.0, "truncation": "disabled", "metadata": {}}
    if usage is not None:
        response["usage"] = usage
    return response


def response_body() -> bytes:
    """A whole ``Response``: a message with the text, then a ``function_call`` item calling ``run_shell``."""
    output = [_message(ANSWER_TEXT, "completed"), _call(ANSWER_ARGS, "completed")]
    return orjson.dumps(_response("completed", output, _USAGE))


def stream_events() -> list[dict[str, Any]]:
    """The stream's events in order, each with its ``sequence_number`` (see the module docstring)."""
    deltas = text_deltas()
    text = "".join(deltas)
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    text_at = {"item_id": _MESSAGE_ID, "output_index": 0, "content_index": 0}
    call_at = {"item_id": _CALL_ITEM_ID, "output_index": 1}
    pieces = [ANSWER_ARGS[:12], ANSWER_ARGS[12:24], ANSWER_ARGS[24:]]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", [], None)},
        {"type": "response.in_progress", "response": _response("in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0, "item": _message("", "in_progress")},
        {"type": "response.content_part.added", **text_at, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **text_at, "delta": delta, "logprobs": []} for delta in deltas),
        {"type": "response.output_text.done", **text_at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **text_at, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": _message(text, "completed")},
        {"type": "response.output_item.added", "output_index": 1, "item": _call("", "in_progress")},
        *({"type": "response.function_call_arguments.delta", **call_at, "delta": piece} for piece in pieces),
        {"type": "response.function_call_arguments.done", **call_at, "name": "run_shell", "arguments": ANSWER_ARGS},
        {"type": "response.output_item.done", "output_index": 1, "item": _call(ANSWER_ARGS, "completed")},
        {"type": "response.completed", "response": _response(
            "completed", [_message(text, "completed"), _call(ANSWER_ARGS, "completed")], _USAGE)},
    ]
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def stream_body() -> bytes:
    """:func:`stream_events` framed as OpenAI sends them: an ``event:`` line naming the type, then ``data:``."""
    return b"".join(b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
                    for event in stream_events())
