"""OpenAI Responses through the router with the official openai SDK: a faithful pass-through to an upstream that
serves /responses, the event stream, records, errors in OpenAI's shape, and the refusal of Codex's WebSocket mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import openai
import orjson
import pytest
import websockets

from tests import spec
from tests.fakes.behaviours import Error, ResetMidStream, Scripted, Text, ToolCalls, openai_error
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer
from tests.messages_helpers import request_rows
from tests.responses_helpers import responses_config


@pytest.fixture
def router(upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(responses_config(upstream.url), ledger_flush_interval=0.05)


def test_whole_answer_passes_through_with_every_field(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-native", Text("Bonjour", usage=(12, 3)))
    response = router.client().responses.create(
        model="native", input="hello", instructions="Be brief.", store=False, max_output_tokens=50,
        metadata={"ticket": "T-1"}, truncation="auto", include=["reasoning.encrypted_content"],
        extra_body={"a_field_the_router_does_not_know": {"kept": True}})
    assert response.output_text == "Bonjour"
    assert response.usage is not None and response.usage.input_tokens == 12
    sent = upstream.served("up-native")[-1]
    assert sent.path == "/v1/responses"
    assert sent.headers["Authorization"] == "Bearer sk-native-upstream-secret"
    assert sent.body["input"] == "hello" and sent.body["instructions"] == "Be brief."
    assert sent.body["metadata"] == {"ticket": "T-1"} and sent.body["truncation"] == "auto"
    assert sent.body["include"] == ["reasoning.encrypted_content"] and sent.body["store"] is False
    assert sent.body["a_field_the_router_does_not_know"] == {"kept": True}
    row = request_rows(router)[0]
    assert row["api"] == "responses" and row["prompt_tokens"] == 12 and row["completion_tokens"] == 3
    assert row["cost_nano"] == (12 * 2 + 3 * 8) * 1000


def test_whole_answer_matches_the_spec(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-native", ToolCalls([("get_weather", '{"city": "Paris"}')], content="Checking."))
    tools = [{"type": "function", "name": "get_weather", "description": "weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    answer = router.http().post("/v1/responses", headers={"authorization": "Bearer test-key"},
                                json={"model": "native", "input": "weather?", "tools": tools})
    assert answer.status_code == 200, answer.text
    spec.assert_matches("Response", answer.json())
    kinds = [item["type"] for item in answer.json()["output"]]
    assert kinds == ["message", "function_call"]


def test_stream_helper_accumulates_the_answer(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-native", Text("streamed through the router", usage=(20, 6)))
    with router.client().responses.stream(model="native", input="hello") as stream:
        events = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == "streamed through the router"
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert "response.output_text.delta" in events
    row = request_rows(router)[0]
    assert row["stream"] == 1 and row["prompt_tokens"] == 20 and row["completion_tokens"] == 6


def test_stream_events_are_framed_and_numbered(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-native", ToolCalls([("get_weather", '{"city": "Paris"}')], fragment=3))
    tools = [{"type": "function", "name": "get_weather", "parameters": {}}]
    with router.http().stream("POST", "/v1/responses", headers={"authorization": "Bearer test-key"},
                              json={"model": "native", "input": "weather?", "stream": True, "tools": tools}) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = answer.read().decode()
    blocks = [block for block in text.split("\n\n") if block.strip()]
    numbers = []
    for block in blocks:
        name_line, data_line = block.split("\n")
        event = orjson.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {event['type']}"
        numbers.append(event["sequence_number"])
        spec.assert_matches("ResponseStreamEvent", event)
    assert numbers == list(range(len(numbers)))
    assert "data: [DONE]" not in text


def test_a_stream_cut_before_its_terminal_event_ends_with_error_and_response_failed(
        router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-native", ResetMidStream(after_chunks=4))
    with router.http().stream("POST", "/v1/responses", headers={"authorization": "Bearer test-key"},
                              json={"model": "native", "input": "hi", "stream": True}) as answer:
        text = answer.read().decode()
    events = [orjson.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    numbers = [e["sequence_number"] for e in events]
    assert numbers == list(range(len(numbers)))
    assert events[-1]["response"]["status"] == "failed"
    assert request_rows(router)[0]["status"] == "error"


def test_upstream_errors_and_bad_requests_are_openai_shaped(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="native", input=42)  # type: ignore[arg-type]
    assert refused.value.body["param"] == "input"  # type: ignore[index]
    upstream.queue("up-native", Error(400, openai_error("Invalid 'input[0]': bad item.", code="invalid_value")))
    with pytest.raises(openai.BadRequestError) as upstream_refused:
        client.responses.create(model="native", input="hello")
    assert "bad item" in str(upstream_refused.value)
    unknown = router.http().post("/v1/responses", headers={"authorization": "Bearer nope"},
                                 json={"model": "native", "input": "x"})
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_api_key"


def test_an_error_event_before_any_output_falls_back(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.always("up-native", Scripted(events=[{"type": "error", "code": "server_error",
                                                  "message": "overloaded", "sequence_number": 0}]))
    upstream.queue("up-native-b", Text("from b"))
    with router.client().responses.stream(model="pair", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "from b"


def test_codex_session_is_recorded_and_kept_on_one_deployment(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    for _ in range(2):
        client.responses.create(model="pair", input="hi", extra_headers={"session_id": "codex-s-1",
                                                                         "originator": "codex_cli_rs"})
    rows = request_rows(router, 2)
    assert {row["session_id"] for row in rows} == {"codex-s-1"}


def test_a_websocket_upgrade_is_refused_at_once(router: RouterServer) -> None:
    async def connect() -> tuple[int, bytes, float]:
        began = time.perf_counter()
        url = router.url.replace("http://", "ws://") + "/v1/responses"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers={"authorization": "Bearer test-key"},
                                          open_timeout=5):
                pass
        answer = refused.value.response
        return answer.status_code, answer.body or b"", time.perf_counter() - began

    status, body, took = asyncio.run(connect())
    assert status == 426 and took < 1.0
    assert orjson.loads(body)["error"]["code"] == "websocket_not_supported"
    # A plain HTTP request asking for an upgrade (no WebSocket library in front) gets the same answer.
    plain = httpx.get(f"{router.url}/v1/responses", headers={"upgrade": "websocket", "connection": "upgrade"})
    assert plain.status_code in (426, 400)
