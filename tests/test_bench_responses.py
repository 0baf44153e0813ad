"""The benchmark's Responses modes speak real OpenAI Responses: the canned answer, every streamed event and the
request match the OpenAI spec; the official SDK reads the fake upstream's answer and stream (``responses.create``
and the ``responses.stream`` helper), directly, through both pass-through floors and through agent-router with the
bench's own config, and gets the allowed ``run_shell`` call whole.

So the Responses figures measure a faithful workload (the real event sequence, arguments in fragments), the floors
really relay ``/v1/responses``, and the router serves the mode as the bench measures it (no lost call).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from openai.types.responses import Response

from bench import report
from bench.contestants import AGENT_KEYS, ROUTER, start_contestant
from bench.modes import MODES
from bench.payloads import ANSWER_ARGS, ANSWER_TEXT, stream_body
from bench.procs import Server, free_port
from bench.responses_payloads import MODEL, request_body, response_body, stream_events, text_deltas
from tests.spec import assert_matches

ROOT = Path(__file__).resolve().parent.parent
MODE_OF = {False: "responses", True: "responses-sse"}


def test_the_request_the_answer_and_every_event_match_the_spec() -> None:
    assert_matches("CreateResponse", orjson.loads(request_body(stream=True)))
    assert_matches("Response", orjson.loads(response_body()))
    events = stream_events()
    for event in events:
        assert_matches("ResponseStreamEvent", event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    kinds = [event["type"] for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"] and kinds[-1] == "response.completed"
    chat_chunks = [orjson.loads(line[6:]) for line in stream_body().split(b"\n\n") if line.startswith(b"data: {")]
    chat_text_chunks = sum(1 for chunk in chat_chunks
                           if chunk["choices"] and chunk["choices"][0]["delta"].get("content"))
    assert kinds.count("response.output_text.delta") == len(text_deltas()) == chat_text_chunks
    assert kinds.count("response.function_call_arguments.delta") == 3
    assert events[-1]["response"]["output"][1]["arguments"] == ANSWER_ARGS


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


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=AGENT_KEYS[0], max_retries=0, timeout=10)


def _ask(client: openai.OpenAI, stream: bool) -> Response:
    """The bench request itself (as sent by the load generator), through the SDK."""
    body: dict[str, Any] = orjson.loads(request_body(stream=False))
    kwargs = {key: body[key] for key in ("instructions", "input", "tools", "tool_choice", "temperature",
                                         "max_output_tokens", "store")}
    if not stream:
        whole: Response = client.responses.create(model=MODEL, **kwargs)
        return whole
    with client.responses.stream(model=MODEL, **kwargs) as events:
        kinds = [event.type for event in events]
        response = events.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert {"response.output_text.delta", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done"} <= set(kinds)
    return response


def _assert_bench_answer(response: Response) -> None:
    message, call = response.output
    assert message.type == "message" and response.output_text.strip() == ANSWER_TEXT.strip()
    assert call.type == "function_call" and call.name == "run_shell" and call.call_id == "call_1"
    assert json.loads(call.arguments) == orjson.loads(ANSWER_ARGS)
    assert response.status == "completed"
    assert response.usage is not None and response.usage.input_tokens == 412 and response.usage.output_tokens == 38


@pytest.mark.parametrize("stream", [False, True], ids=["responses", "responses-sse"])
def test_the_fake_upstream_answers_what_the_sdk_reads(upstream: int, stream: bool) -> None:
    _assert_bench_answer(_ask(_client(f"http://127.0.0.1:{upstream}/{MODE_OF[stream]}/v1"), stream))


def _passthrough(stack: str, upstream_root: str, log: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.passthrough", "--port", str(port), "--stack", stack,
            "--upstream", upstream_root]
    return Server(f"passthrough-{stack}", argv, port, "/readyz", env={"PYTHONPATH": str(ROOT)},
                  log_path=log).start(timeout=30)


@pytest.mark.parametrize("stack", ["starlette", "own"])
def test_both_pass_throughs_relay_responses_whole_and_streamed(upstream: int, stack: str, tmp_path: Path) -> None:
    for stream, mode in MODE_OF.items():
        # The pass-through's upstream is the mode's root, as the bench starts it.
        server = _passthrough(stack, f"http://127.0.0.1:{upstream}/{mode}", tmp_path / f"{stack}-{mode}.log")
        try:
            _assert_bench_answer(_ask(_client(f"http://127.0.0.1:{server.port}/v1"), stream))
        finally:
            server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["responses", "responses-sse"])
def test_agent_router_with_the_bench_config_keeps_the_allowed_call(upstream: int, stream: bool,
                                                                  tmp_path: Path) -> None:
    """Started as the bench starts it (its config, the mode's root as the OpenAI base URL): the Responses request
    passes through natively and the ``run_shell`` call, allowed under its argument condition, arrives whole."""
    mode = MODES[MODE_OF[stream]]
    server = start_contestant(ROUTER, f"http://127.0.0.1:{upstream}/{mode.name}", tmp_path, None)
    try:
        _assert_bench_answer(_ask(_client(f"http://127.0.0.1:{server.port}/v1"), stream))
    finally:
        server.stop()


def _sample(rps: float) -> dict[str, Any]:
    return {"round": 1, "c1_p50_ms": 1.0, "c1_p99_ms": 2.0, "c32_rps": rps, "c32_p99_ms": 30.0, "rss_mb": 80.0,
            "cold_start_s": 0.5, "errors": 0}


def test_the_report_says_when_responses_miss_chats_cost() -> None:
    samples = {mode: {ROUTER: [_sample(rps)]} for mode, rps in
               (("plain", 2000.0), ("sse", 1000.0), ("responses", 1000.0), ("responses-sse", 950.0))}
    checks = report.target_checks(report.figures(samples))
    twins = {check["mode"]: check for check in checks if "chat_twin" in check}
    assert twins["responses"]["met"] is False and twins["responses"]["value"] == 0.5
    assert twins["responses-sse"]["met"] is True and twins["responses-sse"]["goal"] == 0.9
    meta = {"when": "now", "method": "m", "notes": "n"}
    markdown = report.markdown(report.figures(samples), checks, meta)
    missed = [line for line in markdown.splitlines() if line.startswith("**Missed:**")]
    assert len(missed) == 1 and "Responses, non-streaming" in missed[0] and "0.5×" in missed[0]
