"""Responses API <-> Chat Completions (and Messages, through chat) translation: requests, whole answers and
streams, each output checked against the OpenAI spec and the official SDK's own types; translated Responses
streams are served over real HTTP on 127.0.0.1 and read with the openai SDK's ``responses.stream`` helper."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic.types as at
import openai
import orjson
import pydantic
import pytest
from aiohttp import web
from anthropic.lib.streaming._messages import accumulate_event
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from router.config.schema import DeploymentSpec
from router.context import RequestContext
from router.errors import InvalidRequest, RequestNotForwardable, UpstreamServerError
from router.wire import CHAT, MESSAGES, RESPONSES
from router.wire.codec import EventFilter
from router.wire.translate import stream_translator, translate_answer, upstream_request
from router.wire.translate.responses_answers import chat_to_response, response_to_chat
from router.wire.translate.responses_chunks import ResponsesToChat
from router.wire.translate.responses_requests import chat_to_responses, responses_to_chat
from router.wire.translate.responses_streams import ChatToResponses
from tests.policy_helpers import make_ctx
from tests.spec import assert_matches

DEPLOYMENT = DeploymentSpec(provider="p", model="upstream-model")
STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
MESSAGES_EVENT = pydantic.TypeAdapter(at.RawMessageStreamEvent)
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _assert_responses_request(body: dict[str, Any]) -> None:
    """The spec's ``InputItem`` is a oneOf that a user message with content parts matches twice (as an
    EasyInputMessage and as an InputMessage; OpenAPI's discriminator would settle it): items are checked one by
    one, the rest of the body as a whole."""
    for item in body["input"]:
        assert_matches("EasyInputMessage" if item["type"] == "message" else "Item", item)
    assert_matches("CreateResponse", {**body, "input": "checked above"})


def _ctx(payload: dict[str, Any], wire: str = RESPONSES) -> RequestContext:
    ctx = make_ctx(None, payload)
    ctx.wire = wire
    return ctx


# -- requests: Responses -> chat ---------------------------------------------------------------------------------

RESPONSES_REQUEST: dict[str, Any] = {
    "model": "public", "instructions": "be brief", "stream": True, "store": True, "temperature": 0.3, "top_p": 0.9,
    "parallel_tool_calls": False, "max_output_tokens": 200, "reasoning": {"effort": "low", "summary": "auto"},
    "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}},
    "metadata": {"k": "v"}, "include": ["reasoning.encrypted_content"], "truncation": "auto", "user": "u1",
    "previous_response_id": None, "prompt_cache_key": "pc", "service_tier": "auto", "background": False,
    "tools": [{"type": "function", "name": "get_weather", "description": "weather", "parameters": WEATHER,
               "strict": True}],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "input": [
        {"role": "developer", "content": "use tools"},
        {"role": "user", "content": [{"type": "input_text", "text": "weather in "},
                                     {"type": "input_text", "text": "Paris and Rome?"},
                                     {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "get_weather",
         "arguments": "{\"city\":\"Rome\"}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b",
         "output": [{"type": "input_text", "text": "rain"}, {"type": "input_text", "text": "y"}]},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "late rule"}]},
    ],
}


def test_responses_request_becomes_a_valid_chat_request() -> None:
    before = orjson.dumps(RESPONSES_REQUEST)
    body = responses_to_chat(RESPONSES_REQUEST, DEPLOYMENT)
    assert orjson.dumps(RESPONSES_REQUEST) == before  # pure
    assert_matches("CreateChatCompletionRequest", body)
    assert body["model"] == "upstream-model"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "use tools"},
        {"role": "user", "content": [{"type": "text", "text": "weather in "},
                                     {"type": "text", "text": "Paris and Rome?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "rainy"},
        {"role": "system", "content": "late rule"},
    ]
    assert body["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                               "parameters": WEATHER, "strict": True}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object"}, "strict": True}}
    assert (body["max_tokens"], body["reasoning_effort"], body["temperature"], body["top_p"]) == (200, "low", 0.3, 0.9)
    assert body["parallel_tool_calls"] is False and body["user"] == "u1"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    for dropped in ("store", "include", "truncation", "metadata", "previous_response_id", "background",
                    "prompt_cache_key", "service_tier", "instructions", "input", "text", "reasoning"):
        assert dropped not in body


def test_string_input_and_calls_without_preceding_text() -> None:
    body = responses_to_chat({"model": "m", "input": "hi"}, DEPLOYMENT)
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    body = responses_to_chat({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
    ]}, DEPLOYMENT)
    assert_matches("CreateChatCompletionRequest", body)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert body["messages"][1]["content"] is None and body["messages"][3]["tool_calls"][0]["id"] == "c2"


@pytest.mark.parametrize("item", [
    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
    {"type": "custom_tool_call", "call_id": "c", "name": "grammar", "input": "x"},
    {"type": "mcp_call", "id": "mcp_1", "name": "t", "server_label": "s", "arguments": "{}"},
    {"type": "local_shell_call", "id": "ls", "call_id": "c", "action": {}, "status": "completed"},
    {"type": "item_from_the_future", "payload": 1},
])
def test_items_chat_cannot_carry_are_refused_by_type(item: dict[str, Any]) -> None:
    with pytest.raises(RequestNotForwardable, match=item["type"]):
        responses_to_chat({"model": "m", "input": [{"role": "user", "content": "hi"}, item]}, DEPLOYMENT)


@pytest.mark.parametrize("tool", [
    {"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "file_search", "vector_store_ids": ["vs"]}, {"type": "mcp", "server_label": "s", "server_url": "u"},
    {"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "linux"},
    {"type": "local_shell"}, {"type": "custom", "name": "grammar"},
])
def test_hosted_and_custom_tools_are_refused_by_type(tool: dict[str, Any]) -> None:
    with pytest.raises(RequestNotForwardable, match=tool["type"]):
        responses_to_chat({"model": "m", "input": "hi", "tools": [tool]}, DEPLOYMENT)


def test_hosted_tool_choice_and_file_parts_are_refused() -> None:
    with pytest.raises(RequestNotForwardable, match="web_search"):
        responses_to_chat({"model": "m", "input": "hi", "tool_choice": {"type": "web_search"}}, DEPLOYMENT)
    with pytest.raises(RequestNotForwardable, match="input_file"):
        responses_to_chat({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_file", "file_id": "file-1"}]}]}, DEPLOYMENT)


# -- requests: chat -> Responses, and the chains -----------------------------------------------------------------

CHAT_REQUEST: dict[str, Any] = {
    "model": "public", "stream": True, "max_completion_tokens": 50, "temperature": 0.2, "reasoning_effort": "high",
    "response_format": {"type": "json_object"}, "tool_choice": "required", "parallel_tool_calls": True,
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
    "messages": [
        {"role": "system", "content": "be brief"}, {"role": "developer", "content": [{"type": "text", "text": "x"}]},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": "ok", "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"P\"}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "system", "content": "late"},
    ],
}


def test_chat_request_becomes_a_valid_responses_request() -> None:
    body = chat_to_responses(CHAT_REQUEST, DEPLOYMENT)
    _assert_responses_request(body)
    assert body["model"] == "upstream-model" and body["store"] is False
    assert body["instructions"] == "be brief\n\nx"
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}]},
        {"type": "message", "role": "assistant", "content": "ok"},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"P\"}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "message", "role": "developer", "content": "late"},
    ]
    assert body["tools"] == [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}]
    assert (body["tool_choice"], body["max_output_tokens"], body["reasoning"]) == ("required", 50, {"effort": "high"})
    assert body["text"] == {"format": {"type": "json_object"}} and body["stream"] is True


def test_requests_round_trip_through_chat() -> None:
    chat = responses_to_chat(RESPONSES_REQUEST, DEPLOYMENT)
    back = chat_to_responses(chat, DEPLOYMENT)
    _assert_responses_request(back)
    kinds = [item["type"] for item in back["input"]]
    assert kinds == ["message", "message", "function_call", "function_call", "function_call_output",
                     "function_call_output", "message"]
    assert back["instructions"] == "be brief\n\nuse tools" and back["input"][-1]["role"] == "developer"
    assert [item["call_id"] for item in back["input"] if item["type"] == "function_call"] == ["call_a", "call_b"]
    assert back["tool_choice"] == RESPONSES_REQUEST["tool_choice"]
    assert back["text"] == RESPONSES_REQUEST["text"]
    assert back["tools"] == RESPONSES_REQUEST["tools"]


def test_messages_and_responses_requests_go_through_chat() -> None:
    messages = {"model": "claude", "max_tokens": 64, "system": "be kind", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}]}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    body = upstream_request(_ctx(messages, MESSAGES), RESPONSES, DEPLOYMENT)
    _assert_responses_request(body)
    assert body["instructions"] == "be kind" and body["max_output_tokens"] == 64
    assert [item["type"] for item in body["input"]] == ["message", "function_call", "function_call_output"]
    assert body["input"][1]["arguments"] == "{\"a\":1}"

    ctx = _ctx({"model": "public", "instructions": "be kind", "max_output_tokens": 32, "input": [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]})
    anthropic_body = upstream_request(ctx, MESSAGES, DEPLOYMENT)
    assert anthropic_body["system"] == [{"type": "text", "text": "be kind"}] and anthropic_body["max_tokens"] == 32
    assert [m["role"] for m in anthropic_body["messages"]] == ["user", "assistant", "user"]
    assert anthropic_body["messages"][1]["content"][0] == {"type": "tool_use", "id": "c1", "name": "f",
                                                           "input": {"a": 1}}
    assert CHAT in ctx.translated and ctx.translated[MESSAGES] is anthropic_body


# -- whole answers -----------------------------------------------------------------------------------------------

CHAT_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-w1", "object": "chat.completion", "created": 1700000000, "model": "upstream-model",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": "Let me check.", "reasoning_content": "two cities",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"P\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"R\"}"}},
        ]}}],
    "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
              "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 4}},
}


def test_chat_answer_as_a_valid_response() -> None:
    ctx = _ctx(RESPONSES_REQUEST)
    data = chat_to_response(CHAT_ANSWER, ctx)
    assert_matches("Response", data)
    response = Response.model_validate(data)
    assert data["id"].startswith("resp_") and len(data["id"]) == 37
    assert response.status == "completed" and response.model == "fast" and response.created_at == 1700000000
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call", "function_call"]
    assert response.output_text == "Let me check."
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments, c.status) for c in calls] == \
        [("call_a", "get_weather", "{\"city\":\"P\"}", "completed"), ("call_b", "get_weather", "{\"city\":\"R\"}",
                                                                      "completed")]
    assert all(c.id is not None and c.id.startswith("fc_") for c in calls)
    assert data["output"][0]["summary"] == [{"type": "summary_text", "text": "two cities"}]
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (30, 12, 42)
    assert response.usage.input_tokens_details.cached_tokens == 8
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    assert (data["instructions"], data["tool_choice"], data["parallel_tool_calls"]) == \
        ("be brief", RESPONSES_REQUEST["tool_choice"], False)
    assert (data["metadata"], data["truncation"], data["store"], data["max_output_tokens"]) == \
        ({"k": "v"}, "auto", True, 200)
    assert data["error"] is None and data["incomplete_details"] is None


def test_echoed_defaults_and_incomplete_answers() -> None:
    truncated = {**CHAT_ANSWER, "choices": [{"index": 0, "finish_reason": "length",
                                             "message": {"role": "assistant", "content": "cut"}}]}
    data = chat_to_response(truncated, _ctx({"model": "public", "input": "hi"}))
    assert_matches("Response", data)
    response = Response.model_validate(data)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert (data["tools"], data["tool_choice"], data["parallel_tool_calls"], data["metadata"]) == \
        ([], "auto", True, {})
    assert (data["truncation"], data["previous_response_id"], data["instructions"]) == ("disabled", None, None)
    filtered = {"choices": [{"finish_reason": "content_filter", "message": {"role": "assistant", "content": None}}]}
    data = chat_to_response(filtered, _ctx({"model": "public", "input": "hi"}))
    assert_matches("Response", data)
    assert data["incomplete_details"] == {"reason": "content_filter"} and data["output"] == []


def test_response_answer_as_chat_completion() -> None:
    response = chat_to_response(CHAT_ANSWER, _ctx(RESPONSES_REQUEST))
    response["output"].insert(0, {"type": "web_search_call", "id": "ws", "status": "completed"})
    data = response_to_chat(response, "public")
    assert_matches("CreateChatCompletionResponse", data)
    message = data["choices"][0]["message"]
    assert data["choices"][0]["finish_reason"] == "tool_calls" and data["model"] == "public"
    assert message["content"] == "Let me check." and message["reasoning_content"] == "two cities"
    assert message["tool_calls"] == CHAT_ANSWER["choices"][0]["message"]["tool_calls"]
    assert data["usage"]["prompt_tokens_details"] == {"cached_tokens": 8}
    assert (data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"]) == (30, 12)
    incomplete = response_to_chat({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                                   "output": []}, "m")
    assert incomplete["choices"][0]["finish_reason"] == "length"
    with pytest.raises(UpstreamServerError, match="overloaded"):
        response_to_chat({"status": "failed", "error": {"code": "server_error", "message": "overloaded"}}, "m")


@pytest.mark.parametrize("data", [{}, {"output": "x"}, {"output": [1, {"type": "message", "content": [7]}]},
                                  {"output": [{"type": "function_call"}], "usage": "many"}])
def test_hostile_response_answers_never_crash(data: dict[str, Any]) -> None:
    assert_matches("CreateChatCompletionResponse", response_to_chat(data, "m"))


def test_messages_and_responses_answers_go_through_chat() -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "tool_use",
               "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 2},
               "content": [{"type": "text", "text": "hi"},
                           {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]}
    ctx = _ctx({"model": "public", "input": "hi"})
    data = translate_answer(MESSAGES, RESPONSES, message, ctx)
    assert_matches("Response", data)
    response = Response.model_validate(data)
    assert response.output_text == "hi" and response.output[1].type == "function_call"
    back = translate_answer(RESPONSES, MESSAGES, data, _ctx({"model": "claude", "messages": []}, MESSAGES))
    parsed = at.Message.model_validate(back)
    assert parsed.stop_reason == "tool_use" and parsed.content[1].type == "tool_use"
    assert parsed.content[1].input == {"a": 1}


# -- streams -----------------------------------------------------------------------------------------------------

def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return orjson.dumps({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "up",
                         "choices": choices, **extra})


def _call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


PARALLEL_CHUNKS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"reasoning_content": "two "}), _chunk({"reasoning_content": "cities"}),
    _chunk({"content": "Let me "}), _chunk({"content": "check."}),
    _chunk(_call(0, "", "call_a", "get_weather")), _chunk(_call(0, "{\"ci")), _chunk(_call(0, "ty\": \"P")),
    _chunk(_call(0, "aris\"}")),
    _chunk(_call(1, "{\"city\"", "call_b", "get_weather")), _chunk(_call(1, ": \"Rome\"}")),
    _chunk({}, "tool_calls"),
    _chunk(None, usage={"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                        "prompt_tokens_details": {"cached_tokens": 8}}),
]


def _run(translator: EventFilter, payloads: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for payload in payloads:
        out.extend(translator.feed(payload))
    return out + translator.finish()


def _check_responses_events(out: list[bytes]) -> list[dict[str, Any]]:
    """Every event valid and SDK-parsable, ``type`` first, numbered from 0, exactly one terminal event (last),
    contiguous output indexes, and the terminal ``output`` equal to the items streamed."""
    events = [orjson.loads(payload) for payload in out]
    for payload, event in zip(out, events, strict=True):
        assert payload.startswith(b'{"type":"')
        assert_matches("ResponseStreamEvent", event)
        STREAM_EVENT.validate_python(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    terminal = [e for e in events if e["type"] in ("response.completed", "response.incomplete", "response.failed")]
    assert len(terminal) == 1 and terminal[0] is events[-1]
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == list(range(len(added)))
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert terminal[0]["response"]["output"] == done
    return events


async def _sdk_final_response(out: list[bytes], tools: list[dict[str, Any]]) -> tuple[list[Any], Any]:
    """Serve the events as a real SSE stream on 127.0.0.1 and read them with the openai SDK's stream helper:
    its events, and its final response (the terminal event's response when that is not ``response.completed``)."""
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for payload in out:
            kind = orjson.loads(payload)["type"]
            await response.write(b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    try:
        async with client.responses.stream(model="public", input="weather?", tools=tools) as stream:  # type: ignore[arg-type]
            events = [event async for event in stream]
            if events[-1].type != "response.completed":  # the helper's final response needs response.completed
                return events, events[-1].response  # type: ignore[union-attr]
            final = await stream.get_final_response()
        return events, final
    finally:
        await client.close()
        await runner.cleanup()


def test_chat_stream_with_parallel_calls_read_by_the_openai_sdk() -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}]
    out = _run(ChatToResponses(_ctx({"model": "public", "input": "weather?", "tools": tools, "stream": True})),
               PARALLEL_CHUNKS)
    events = _check_responses_events(out)
    assert events[-1]["type"] == "response.completed"
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ["{\"ci", "ty\": \"P", "aris\"}", "{\"city\"", ": \"Rome\"}"]
    sdk_events, final = asyncio.run(_sdk_final_response(out, tools))
    assert sdk_events[-1].type == "response.completed"
    assert final.status == "completed" and final.model == "fast"
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]
    assert final.output_text == "Let me check."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == \
        [("call_a", "get_weather", "{\"city\": \"Paris\"}"), ("call_b", "get_weather", "{\"city\": \"Rome\"}")]
    assert final.output[0].summary[0].text == "two cities"
    assert final.usage is not None and final.usage.input_tokens == 30
    assert final.usage.input_tokens_details.cached_tokens == 8 and final.usage.total_tokens == 42


def test_chat_stream_endings_always_give_one_terminal_event() -> None:
    cut = _check_responses_events(_run(ChatToResponses(_ctx({"input": "hi"})), [_chunk({"content": "partial"})]))
    assert cut[-1]["type"] == "response.completed" and cut[-1]["response"]["output"][0]["content"][0]["text"] == \
        "partial"
    empty = _check_responses_events(_run(ChatToResponses(_ctx({"input": "hi"})), []))
    assert [e["type"] for e in empty] == ["response.created", "response.in_progress", "response.completed"]
    length = _check_responses_events(_run(ChatToResponses(_ctx({"input": "hi"})),
                                          [_chunk({"content": "a"}), _chunk({}, "length")]))
    assert length[-1]["type"] == "response.incomplete"
    assert length[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    error = _run(ChatToResponses(_ctx({"input": "hi"})),
                 [_chunk({"content": "a"}), orjson.dumps({"error": {"message": "boom", "type": "api_error"}}),
                  _chunk({"content": "late"})])
    events = _check_responses_events(error)
    assert [e["type"] for e in events[-3:]] == ["response.output_item.done", "error", "response.failed"]
    assert events[-3]["item"]["status"] == "incomplete" and events[-2]["message"] == "boom"
    assert events[-1]["response"]["error"]["message"] == "boom" and b"late" not in b"".join(error)


def test_late_fragment_of_a_closed_call_and_nameless_starts_are_dropped() -> None:
    chunks = [_chunk(_call(0, "{", "c0", "f")), _chunk(_call(1, "{}", "c1", "g")), _chunk(_call(0, "}")),
              _chunk(_call(2, "{}")), _chunk({}, "tool_calls")]
    events = _check_responses_events(_run(ChatToResponses(_ctx({"input": "hi"})), chunks))
    calls = [(i["call_id"], i["arguments"]) for i in events[-1]["response"]["output"]]
    assert calls == [("c0", "{"), ("c1", "{}")]


def _accumulate_chat(payloads: list[bytes]) -> Any:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for payload in payloads:
        data = orjson.loads(payload)
        assert_matches("CreateChatCompletionStreamResponse", data)
        state.handle_chunk(ChatCompletionChunk.model_validate(data))
    return state.get_final_completion()


def test_responses_stream_round_trips_to_chat_chunks() -> None:
    responses_events = _run(ChatToResponses(_ctx({"input": "hi"})), PARALLEL_CHUNKS)
    out = _run(ResponsesToChat("public"), responses_events)
    completion = _accumulate_chat(out)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == \
        [("call_a", "get_weather", "{\"city\": \"Paris\"}"), ("call_b", "get_weather", "{\"city\": \"Rome\"}")]
    assert completion.usage is not None and completion.usage.prompt_tokens == 30
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 8
    chunks = [orjson.loads(payload) for payload in out]
    reasoning = [c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"]]
    assert "".join(reasoning) == "two cities"
    assert orjson.loads(out[-1])["choices"] == []


def _r(kind: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, **fields})


def test_native_responses_stream_with_arguments_only_at_done() -> None:
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "",
            "status": "in_progress"}
    events = [
        _r("response.created", response={"id": "resp_abc", "status": "in_progress", "output": []}),
        _r("response.output_item.added", output_index=0, item=call),
        _r("response.output_item.done", output_index=0, item={**call, "arguments": "{\"x\":1}"}),
        _r("response.web_search_call.searching", output_index=1, item_id="ws"),
        b"{broken",
        _r("response.completed", response={"id": "resp_abc", "status": "completed", "output": [],
                                           "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}),
        _r("response.output_text.delta", delta="after the end"),
    ]
    out = _run(ResponsesToChat("public"), events)
    completion = _accumulate_chat(out)
    assert completion.id == "chatcmpl-abc" and completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.tool_calls[0].function.arguments == "{\"x\":1}"
    assert completion.usage is not None and completion.usage.total_tokens == 5
    assert b"after the end" not in b"".join(out)


@pytest.mark.parametrize("event", [
    _r("response.failed", response={"id": "r", "status": "failed", "error": {"code": "x", "message": "overloaded"}}),
    _r("error", code="server_error", message="overloaded", param=None),
])
def test_failed_responses_stream_raises_with_the_upstream_message(event: bytes) -> None:
    translator = ResponsesToChat("m")
    translator.feed(_r("response.created", response={"id": "r"}))
    with pytest.raises(UpstreamServerError, match="overloaded"):
        translator.feed(event)


def test_messages_stream_to_responses_and_back_through_chat() -> None:
    start: dict[str, Any] = {"id": "msg_s", "type": "message", "role": "assistant", "model": "claude", "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 7, "output_tokens": 1}}
    anthropic_events = [
        _r("message_start", message=start),
        _r("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        _r("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hi"}),
        _r("content_block_stop", index=0),
        _r("content_block_start", index=1, content_block={"type": "tool_use", "id": "toolu_1", "name": "f",
                                                          "input": {}}),
        _r("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": "{\"a\""}),
        _r("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ": 1}"}),
        _r("content_block_stop", index=1),
        _r("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 4}),
        _r("message_stop"),
    ]
    responses_ctx = _ctx({"model": "public", "input": "hi", "stream": True})
    out = _run(stream_translator(MESSAGES, RESPONSES, responses_ctx), anthropic_events)
    events = _check_responses_events(out)
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == "{\"a\": 1}" and final["usage"]["input_tokens"] == 7

    back = _run(stream_translator(RESPONSES, MESSAGES, _ctx({"model": "claude", "messages": []}, MESSAGES)), out)
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for payload in back:
        snapshot = accumulate_event(event=MESSAGES_EVENT.validate_json(payload), current_snapshot=snapshot,
                                    json_bufs=json_bufs)
    assert snapshot is not None
    message = at.Message.model_validate(snapshot.to_dict())
    assert message.stop_reason == "tool_use" and message.content[0].type == "text"
    assert message.content[1].type == "tool_use" and message.content[1].input == {"a": 1}


def test_allowed_tools_and_verbosity_both_ways() -> None:
    request = {"model": "m", "input": "hi", "text": {"verbosity": "low"},
               "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}],
               "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function",
                                                                                      "name": "f"}]}}
    chat = responses_to_chat(request, DEPLOYMENT)
    assert_matches("CreateChatCompletionRequest", chat)
    assert chat["verbosity"] == "low" and chat["tool_choice"] == {
        "type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function",
                                                                                  "function": {"name": "f"}}]}}
    back = chat_to_responses(chat, DEPLOYMENT)
    _assert_responses_request({**back, "input": []})
    assert back["tool_choice"] == request["tool_choice"] and back["text"] == {"verbosity": "low"}
    hosted = {**request, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]}}
    with pytest.raises(RequestNotForwardable, match="non-function"):
        responses_to_chat(hosted, DEPLOYMENT)


@pytest.mark.parametrize("payload", [
    {"input": 7}, {"input": [3]}, {"input": [{"role": "user"}]}, {"input": [{"role": "user", "content": [5]}]},
    {"input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]},
    {"input": [{"role": "tool", "content": "x"}]},
    {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]},
    {"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
    {"input": "hi", "tools": {"type": "function"}}, {"input": "hi", "tools": [{"type": "function"}]},
    {"input": "hi", "tool_choice": 3}, {"input": "hi", "tool_choice": {"type": "function"}},
])
def test_malformed_responses_requests_raise_only_typed_errors(payload: dict[str, Any]) -> None:
    with pytest.raises((InvalidRequest, RequestNotForwardable)):
        responses_to_chat({"model": "m", **payload}, DEPLOYMENT)


@pytest.mark.parametrize("payload", [
    {"messages": "x"}, {"messages": [{"role": "wizard", "content": "x"}]}, {"messages": [], "n": 2},
    {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": 3}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
    {"messages": [], "tools": [{"type": "custom", "custom": {"name": "g"}}]},
    {"messages": [], "tool_choice": {"type": "custom", "custom": {"name": "g"}}},
])
def test_malformed_chat_requests_for_responses_raise_only_typed_errors(payload: dict[str, Any]) -> None:
    with pytest.raises((InvalidRequest, RequestNotForwardable)):
        chat_to_responses({"model": "m", **payload}, DEPLOYMENT)


def test_refusals_whole_and_streamed() -> None:
    refused = {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": None,
                                                                  "refusal": "I can't help with that."}}]}
    data = chat_to_response(refused, _ctx({"model": "public", "input": "hi"}))
    assert_matches("Response", data)
    assert data["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert response_to_chat(data, "m")["choices"][0]["message"]["refusal"] == "I can't help with that."

    chunks = [_chunk({"content": "Well. "}), _chunk({"refusal": "I can't "}), _chunk({"refusal": "help."}),
              _chunk({}, "stop")]
    events = _check_responses_events(_run(ChatToResponses(_ctx({"input": "hi"})), chunks))
    [message] = events[-1]["response"]["output"]
    assert message["content"] == [{"type": "output_text", "text": "Well. ", "annotations": [], "logprobs": []},
                                  {"type": "refusal", "refusal": "I can't help."}]
    assert [e["content_index"] for e in events if e["type"] == "response.refusal.delta"] == [1, 1]
    chat = _accumulate_chat(_run(ResponsesToChat("m"), [orjson.dumps(e) for e in events]))
    assert chat.choices[0].message.content == "Well. " and chat.choices[0].message.refusal == "I can't help."


def _mangled_chunks() -> list[bytes]:
    shapes: list[Any] = [None, 1, "x", [], {"choices": "x"}, {"choices": [1]}, {"choices": [{"delta": 3}]},
                         {"choices": [{"delta": {"content": 5, "tool_calls": "x"}}]},
                         {"choices": [{"delta": {"tool_calls": [1, {"index": "a"}, {"index": 0, "function": 3}]}}]},
                         {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": 4}}]}}]},
                         {"usage": "lots"}, {"usage": {"prompt_tokens": -3}}, {"error": "not an object"}]
    return [b"{broken", b""] + [orjson.dumps(shape) for shape in shapes]


def test_mangled_upstream_events_are_skipped_and_streams_still_close() -> None:
    events = _check_responses_events(_run(ChatToResponses(_ctx({"input": "hi"})), _mangled_chunks()))
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["output"] == []
    mangled = [*_mangled_chunks(),
               _r("response.output_item.added", output_index="x", item={"type": "function_call"}),
               _r("response.function_call_arguments.delta", output_index=9, delta="{}"),
               _r("response.output_item.done", output_index=0, item=None),
               _r("response.completed", response="not an object")]
    completion = _accumulate_chat(_run(ResponsesToChat("m"), mangled))
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.tool_calls is None


def test_incomplete_and_failed_streams_read_by_the_openai_sdk() -> None:
    out = _run(ChatToResponses(_ctx({"model": "public", "input": "hi", "stream": True})),
               [_chunk({"content": "a long"}), _chunk({}, "length"),
                _chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12})])
    sdk_events, final = asyncio.run(_sdk_final_response(out, []))
    assert sdk_events[-1].type == "response.incomplete" and final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].content[0].text == "a long" and final.usage.output_tokens == 9

    failed = _run(ChatToResponses(_ctx({"model": "public", "input": "hi", "stream": True})),
                  [_chunk({"content": "a"}), orjson.dumps({"error": {"message": "boom"}})])
    sdk_events, final = asyncio.run(_sdk_final_response(failed, []))
    assert [e.type for e in sdk_events[-2:]] == ["error", "response.failed"]
    assert sdk_events[-2].message == "boom" and final.status == "failed" and final.error.message == "boom"
