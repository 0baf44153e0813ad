"""The benchmark's Messages modes speak real Anthropic Messages: the official SDK reads the fake upstream's canned
message and stream, directly and through both pass-through floors, and gets the allowed ``run_shell`` call whole.

So the Messages figures measure a faithful workload (a stream the SDK accepts, tool input in fragments), and the
floors really relay ``/v1/messages`` rather than only chat.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import orjson
import pytest

from bench.messages_payloads import MODEL, request_body
from bench.payloads import ANSWER_ARGS, ANSWER_TEXT
from bench.procs import Server, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("bench-upstream") / "upstream.log"
    server = Server("fake upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)], port,
                    "/readyz", env={"PYTHONPATH": str(ROOT)}, log_path=log).start(timeout=20)
    try:
        yield port
    finally:
        server.stop()


def _passthrough(stack: str, upstream_root: str, log: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.passthrough", "--port", str(port), "--stack", stack,
            "--upstream", upstream_root]
    return Server(f"passthrough-{stack}", argv, port, "/readyz", env={"PYTHONPATH": str(ROOT)},
                  log_path=log).start(timeout=30)


def _client(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="bench-key-coder-1", max_retries=0, timeout=10)


def _ask(client: anthropic.Anthropic, stream: bool) -> anthropic.types.Message:
    """The bench request itself (as sent by the load generator), through the SDK."""
    body = orjson.loads(request_body(stream=False))
    kwargs = {key: body[key] for key in ("system", "messages", "tools", "tool_choice", "max_tokens")}
    if not stream:
        whole: anthropic.types.Message = client.messages.create(model=MODEL, **kwargs)
        return whole
    with client.messages.stream(model=MODEL, **kwargs) as events:
        kinds = {event.type for event in events}
        message = events.get_final_message()
    assert {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
            "message_stop"} <= kinds
    return message


def _assert_bench_answer(message: anthropic.types.Message) -> None:
    text, call = message.content
    assert text.type == "text" and text.text.strip() == ANSWER_TEXT.strip()
    assert call.type == "tool_use" and call.name == "run_shell" and call.input == orjson.loads(ANSWER_ARGS)
    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == 400 and message.usage.output_tokens == 38


@pytest.mark.parametrize("stream", [False, True], ids=["messages", "messages-sse"])
def test_the_fake_upstream_answers_what_the_sdk_reads(upstream: int, stream: bool) -> None:
    mode = "messages-sse" if stream else "messages"
    _assert_bench_answer(_ask(_client(f"http://127.0.0.1:{upstream}/{mode}"), stream))


@pytest.mark.parametrize("stack", ["starlette", "own"])
def test_both_pass_throughs_relay_messages_whole_and_streamed(upstream: int, stack: str, tmp_path: Path) -> None:
    for mode, stream in (("messages", False), ("messages-sse", True)):
        # The pass-through's upstream is the mode's root, as the bench starts it.
        server = _passthrough(stack, f"http://127.0.0.1:{upstream}/{mode}", tmp_path / f"{stack}-{mode}.log")
        try:
            _assert_bench_answer(_ask(_client(f"http://127.0.0.1:{server.port}"), stream))
        finally:
            server.stop()
