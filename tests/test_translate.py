"""Chat Completions <-> Anthropic Messages translation: requests, whole answers and streams, each output checked
against the target's own shapes (the OpenAI spec, the anthropic SDK's types) and streams fed through both
official SDKs' accumulators."""

from __future__ import annotations

from typing import Any

import anthropic.types as at
import orjson
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types.message_create_params import MessageCreateParamsStreaming
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from router.config.schema import DeploymentSpec
from router.errors import InvalidRequest, RequestNotForwardable
from router.wire.translate import answers, requests, streams
from tests.spec import assert_matches

DEPLOYMENT = DeploymentSpec(provider="p", model="upstream-model")
EVENT = pydantic.TypeAdapter(at.RawMessageStreamEvent)


def _events(payloads: list[bytes]) -> list[Any]:
    return [EVENT.validate_json(p) for p in payloads]


def _accumulate_messages(payloads: list[bytes]) -> at.Message:
    events = _events(payloads)
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return at.Message.model_validate(snapshot.to_dict())


def _accumulate_chat(payloads: list[bytes]) -> Any:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for payload in payloads:
        data = orjson.loads(payload)
        assert_matches("CreateChatCompletionStreamResponse", data)
        state.handle_chunk(ChatCompletionChunk.model_validate(data))
    return state.get_final_completion()


# -- requests ----------------------------------------------------------------------------------------------------

MESSAGES_REQUEST: dict[str, Any] = {
    "model": "claude-x", "max_tokens": 100, "stream": True, "temperature": 0.5, "top_k": 5,
    "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "thinking": {"type": "enabled", "budget_tokens": 9},
    "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}},
               {"type": "text", "text": "be kind"}],
    "tools": [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "iVBORw0K"}},
                                     {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                                     {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                                                     "data": "doc"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                          {"type": "text", "text": "calling"},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                      "content": [{"type": "text", "text": "no such city"}]},
                                     {"type": "text", "text": "try again"}]},
    ],
}


def test_messages_request_becomes_a_valid_chat_request() -> None:
    before = orjson.dumps(MESSAGES_REQUEST)
    body = requests.messages_to_chat(MESSAGES_REQUEST, DEPLOYMENT)
    assert orjson.dumps(MESSAGES_REQUEST) == before
    assert_matches("CreateChatCompletionRequest", body)
    assert body["model"] == "claude-x" and body["max_tokens"] == 100 and body["stop"] == ["END"]
    assert body["user"] == "u1" and body["stream_options"] == {"include_usage": True}
    assert "top_k" not in body and "thinking" not in body and "metadata" not in body
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["tools"][0]["function"] == {"name": "get_weather", "description": "weather",
                                            "parameters": {"type": "object"}}
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert body["messages"][0]["content"] == "be brief\n\nbe kind"
    parts = body["messages"][1]["content"]
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,iVBORw0K"
    assert parts[2]["image_url"]["url"] == "https://x/y.png"
    assert parts[3] == {"type": "text", "text": requests.DOCUMENT_PLACEHOLDER}
    assistant = body["messages"][2]
    assert assistant["content"] == "calling"
    assert assistant["tool_calls"][0]["id"] == "toolu_1"
    assert orjson.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no such city"}


def test_assistant_turn_of_only_thinking_keeps_a_content_string() -> None:
    payload = {"model": "m", "max_tokens": 1, "messages": [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}]}
    body = requests.messages_to_chat(payload, DEPLOYMENT)
    assert body["messages"] == [{"role": "assistant", "content": ""}]
    assert_matches("CreateChatCompletionRequest", body)


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
])
def test_messages_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    payload = {"model": "m", "max_tokens": 1, "messages": [], "tool_choice": choice,
               "tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    body = requests.messages_to_chat(payload, DEPLOYMENT)
    assert body["tool_choice"] == expected and "parallel_tool_calls" not in body


@pytest.mark.parametrize("tool_type", ["bash_20250124", "web_search_20250305", "text_editor_20250728"])
def test_typed_anthropic_tools_are_refused_by_type(tool_type: str) -> None:
    payload = {"model": "m", "max_tokens": 1, "messages": [], "tools": [{"type": tool_type, "name": "bash"}]}
    with pytest.raises(RequestNotForwardable, match=tool_type):
        requests.messages_to_chat(payload, DEPLOYMENT)


CHAT_REQUEST: dict[str, Any] = {
    "model": "gpt-x", "temperature": 1.5, "top_p": 0.9, "stop": "END", "user": "u2", "stream": True,
    "logprobs": True, "parallel_tool_calls": False, "tool_choice": "required",
    "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}},
              {"type": "function", "function": {"name": "g"}}],
    "messages": [
        {"role": "system", "content": "sys"},
        {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                                     {"type": "image_url", "image_url": {"url": "http://x/i.png"}}]},
        {"role": "assistant", "content": None, "reasoning_content": "unsigned",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": [{"type": "file", "file": {"filename": "a.pdf",
                                                               "file_data": "data:application/pdf;base64,JVBE"}}]},
    ],
}


def test_chat_request_becomes_a_valid_messages_request() -> None:
    before = orjson.dumps(CHAT_REQUEST)
    body = requests.chat_to_messages(CHAT_REQUEST, DEPLOYMENT)
    assert orjson.dumps(CHAT_REQUEST) == before
    pydantic.TypeAdapter(MessageCreateParamsStreaming).validate_python(body)
    assert body["model"] == "gpt-x" and body["max_tokens"] == requests.DEFAULT_MAX_TOKENS
    assert body["temperature"] == 1.0 and body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "u2"}
    assert "logprobs" not in body and "parallel_tool_calls" not in body and "user" not in body
    assert body["system"] == [{"type": "text", "text": "sys"}, {"type": "text", "text": "dev"}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["tools"][1] == {"name": "g", "input_schema": {"type": "object", "properties": {}}}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    user = body["messages"][0]["content"]
    assert user[1]["source"] == {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}
    assert user[2]["source"] == {"type": "url", "url": "http://x/i.png"}
    assistant = body["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["tool_use", "tool_use"]
    assert assistant[0] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}
    assert assistant[1]["input"] == {}
    results = body["messages"][2]["content"]
    assert results == [{"type": "tool_result", "tool_use_id": "call_1", "content": "one"},
                       {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "two"}]},
                       {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                       "data": "JVBE"}}]


def test_max_tokens_default_comes_from_the_deployment() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    limited = DeploymentSpec(provider="p", model="m", max_output_tokens=777)
    assert requests.chat_to_messages(payload, limited)["max_tokens"] == 777
    assert requests.chat_to_messages({**payload, "max_completion_tokens": 5}, limited)["max_tokens"] == 5


@pytest.mark.parametrize("payload", [
    {"messages": "no"}, {"messages": [1]}, {"messages": [{"role": "user", "content": 3}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]},
    {"messages": [{"role": "function", "content": "x"}]},
    {"messages": [], "tools": [{"type": "custom", "custom": {"name": "x"}}]},
    {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
    {"messages": [], "tool_choice": "sometimes"}, {"messages": [], "n": 2},
])
def test_malformed_chat_requests_raise_only_typed_errors(payload: dict[str, Any]) -> None:
    with pytest.raises((InvalidRequest, RequestNotForwardable)):
        requests.chat_to_messages(payload, DEPLOYMENT)


DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(300):
    _node["a"] = {}
    _node = _node["a"]


@pytest.mark.parametrize("payload", [
    {"messages": None}, {"messages": [{"role": "system", "content": "x"}]}, {"system": 5, "messages": []},
    {"system": [{"type": "image"}], "messages": []},
    {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "server_tool_use"}]}]},
    {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": 1}]}]},
    {"messages": [], "tools": [{"name": "f"}]}, {"messages": [], "tool_choice": {"type": "maybe"}},
    {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": DEEP}]}]},
])
def test_malformed_messages_requests_raise_only_typed_errors(payload: dict[str, Any]) -> None:
    with pytest.raises((InvalidRequest, RequestNotForwardable)):
        requests.messages_to_chat(payload, DEPLOYMENT)


# -- whole answers -----------------------------------------------------------------------------------------------

CHAT_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "up",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                 "message": {"role": "assistant", "content": "let me see", "reasoning_content": "think",
                             "tool_calls": [{"id": "call_9", "type": "function",
                                             "function": {"name": "f", "arguments": "{\"q\": 2}"}}]}}],
    "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
              "prompt_tokens_details": {"cached_tokens": 40}},
}


def test_chat_answer_as_message() -> None:
    message = at.Message.model_validate(answers.chat_to_messages(CHAT_ANSWER, "claude-x"))
    assert message.id == "msg_abc" and message.model == "claude-x" and message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    tool = message.content[2]
    assert isinstance(tool, at.ToolUseBlock) and tool.id == "call_9" and tool.input == {"q": 2}
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == \
        (60, 40, 7)


@pytest.mark.parametrize(("stop", "finish"), [("end_turn", "stop"), ("stop_sequence", "stop"),
                                              ("max_tokens", "length"), ("tool_use", "tool_calls"),
                                              ("refusal", "content_filter")])
def test_stop_reasons_both_ways(stop: str, finish: str) -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": stop,
               "content": [{"type": "text", "text": "x"}], "usage": {"input_tokens": 1, "output_tokens": 1}}
    assert answers.messages_to_chat(message, "m")["choices"][0]["finish_reason"] == finish
    chat = {"choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "x"}}]}
    assert answers.chat_to_messages(chat, "m")["stop_reason"] == ("end_turn" if finish == "stop" else stop)


def test_message_answer_as_chat_completion() -> None:
    message = {"id": "msg_xyz", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "tool_use",
               "stop_sequence": None,
               "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "text", "text": "a"},
                           {"type": "text", "text": "b"},
                           {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": [1]}},
                           {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}}],
               "usage": {"input_tokens": 10, "cache_creation_input_tokens": 20, "cache_read_input_tokens": 30,
                         "output_tokens": 5}}
    chat = answers.messages_to_chat(message, "public")
    assert_matches("CreateChatCompletionResponse", chat)
    assert chat["id"] == "chatcmpl-xyz" and chat["model"] == "public"
    reply = chat["choices"][0]["message"]
    assert reply["content"] == "ab" and reply["reasoning_content"] == "hmm"
    assert [c["id"] for c in reply["tool_calls"]] == ["toolu_1", "toolu_2"]
    assert orjson.loads(reply["tool_calls"][0]["function"]["arguments"]) == {"x": [1]}
    assert chat["usage"] == {"prompt_tokens": 60, "completion_tokens": 5, "total_tokens": 65,
                             "prompt_tokens_details": {"cached_tokens": 30}}


@pytest.mark.parametrize("data", [{}, {"choices": "x"}, {"choices": [{"message": 5}]},
                                  {"choices": [{"message": {"tool_calls": [1, {"function": {"name": "f",
                                                                                             "arguments": "{"}}]}}]},
                                  {"content": 3}, {"content": [1, {"type": "tool_use"}]}])
def test_hostile_answers_never_crash(data: dict[str, Any]) -> None:
    at.Message.model_validate(answers.chat_to_messages(data, "m"))
    assert_matches("CreateChatCompletionResponse", answers.messages_to_chat(data, "m"))


# -- streams: chat -> Messages ----------------------------------------------------------------------------------

def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return orjson.dumps({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": "up",
                         "choices": choices, **extra})


def _run(translator: streams.ChatToMessages | streams.MessagesToChat, payloads: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for payload in payloads:
        out.extend(translator.feed(payload))
    return out + translator.finish()


def test_chat_stream_text_then_parallel_tool_calls_as_messages_events() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "thinking"}),
        _chunk({"content": "Hel"}), _chunk({"content": "lo"}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                "function": {"name": "f", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                "function": {"name": "g", "arguments": "{}"}}]}),
        b"not json", b"[1]",
        _chunk({}, "tool_calls"),
        _chunk(None, usage={"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59,
                            "prompt_tokens_details": {"cached_tokens": 10}}),
    ]
    out = _run(streams.ChatToMessages("claude-x"), chunks)
    events = _events(out)
    deltas = [e.delta.partial_json for e in events if e.type == "content_block_delta"
              and e.delta.type == "input_json_delta"]
    assert deltas == ["{\"ci", "ty\": \"Paris\"}", "{}"]
    message = _accumulate_messages(out)
    assert message.id == "msg_s1" and message.model == "claude-x" and message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[1].text == "Hello"  # type: ignore[union-attr]
    assert message.content[2].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert (message.content[2].id, message.content[3].id) == ("call_a", "call_b")  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == \
        (40, 10, 9)


def test_chat_stream_cut_short_still_ends_as_a_valid_messages_stream() -> None:
    translator = streams.ChatToMessages("m")
    out = _run(translator, [_chunk({"content": "partial"}),
                            _chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]})])
    message = _accumulate_messages(out)
    assert message.stop_reason == "end_turn" and [b.type for b in message.content] == ["text", "tool_use"]
    assert translator.finish() == [] and translator.feed(_chunk({"content": "late"})) == []


def test_empty_chat_stream_and_error_chunk() -> None:
    assert _accumulate_messages(streams.ChatToMessages("m").finish()).content == []
    translator = streams.ChatToMessages("m")
    out = _run(translator, [_chunk({"content": "x"}), orjson.dumps({"error": {"message": "boom"}})])
    _events(out[:-1])
    error = at.ErrorResponse.model_validate_json(out[-1])
    assert error.type == "error" and error.error.type == "api_error" and error.error.message == "boom"


# -- streams: Messages -> chat ----------------------------------------------------------------------------------

def _event(**event: Any) -> bytes:
    return orjson.dumps(event)


def test_messages_stream_as_chat_chunks() -> None:
    start: dict[str, Any] = {"id": "msg_s2", "type": "message", "role": "assistant", "model": "claude", "content": [],
             "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": 12, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 5,
                       "output_tokens": 1}}
    events = [
        _event(type="message_start", message=start), _event(type="ping"),
        _event(type="content_block_start", index=0, content_block={"type": "thinking", "thinking": "",
                                                                   "signature": ""}),
        _event(type="content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hm"}),
        _event(type="content_block_delta", index=0, delta={"type": "signature_delta", "signature": "sig"}),
        _event(type="content_block_stop", index=0),
        _event(type="content_block_start", index=1, content_block={"type": "text", "text": ""}),
        _event(type="content_block_delta", index=1, delta={"type": "text_delta", "text": "Hi"}),
        _event(type="content_block_stop", index=1),
        _event(type="content_block_start", index=2,
               content_block={"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}),
        _event(type="content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": "{\"a\""}),
        _event(type="content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": ": 1}"}),
        _event(type="content_block_stop", index=2),
        _event(type="content_block_start", index=3,
               content_block={"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}),
        _event(type="content_block_delta", index=3, delta={"type": "input_json_delta", "partial_json": "{}"}),
        _event(type="content_block_stop", index=3),
        b"{broken", _event(type="content_block_delta", index=9, delta={"type": "input_json_delta"}),
        _event(type="message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None},
               usage={"output_tokens": 17}),
        _event(type="message_stop"),
    ]
    translator = streams.MessagesToChat("public")
    out = _run(translator, events)
    completion = _accumulate_chat(out)
    assert completion.id == "chatcmpl-s2" and completion.model == "public"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Hi"
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == \
        [("toolu_a", "f", "{\"a\": 1}"), ("toolu_b", "g", "{}")]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (20, 17)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 5
    assert b"hm" in b"".join(out) and b"sig" not in b"".join(out)
    assert orjson.loads(out[-1])["choices"] == []


def test_messages_stream_cut_short_and_error() -> None:
    out = _run(streams.MessagesToChat("m"), [_event(type="content_block_delta", index=0,
                                                    delta={"type": "text_delta", "text": "x"})])
    completion = _accumulate_chat(out)
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.content == "x"
    errored = _run(streams.MessagesToChat("m"), [_event(type="error", error={"type": "overloaded_error",
                                                                              "message": "busy"})])
    assert orjson.loads(errored[-1])["error"]["type"] == "overloaded_error"


def test_translated_streams_round_trip_to_the_same_answer() -> None:
    chunks = [_chunk({"content": "a"}),
              _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"k\":"}}]}),
              _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "true}"}}]}), _chunk({}, "tool_calls")]
    back = _run(streams.MessagesToChat("m"), _run(streams.ChatToMessages("m"), chunks))
    choice = _accumulate_chat(back).choices[0]
    assert choice.message.content == "a" and choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.arguments == "{\"k\":true}"


WRONG: tuple[Any, ...] = (None, 7, "x", [], {})


def _mangled(value: Any) -> list[Any]:
    """``value`` with each nested field in turn replaced by a wrong-typed value (bounded by the input's size).
    Tool-argument text is opaque and relayed as is (broken JSON there is the model's, as from any upstream)."""
    out: list[Any] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("arguments", "partial_json"):
                continue
            out.extend({**value, key: wrong} for wrong in WRONG)
            out.extend({**value, key: variant} for variant in _mangled(item))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend([*value[:i], variant, *value[i + 1:]] for variant in _mangled(item))
    return out


def test_mangled_upstream_events_are_skipped_and_streams_still_close() -> None:
    chat_chunks = [orjson.loads(_chunk({"content": "a", "tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "tool_calls",
        usage={"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}}))]
    for variant in _mangled(chat_chunks[0]):
        _accumulate_messages(_run(streams.ChatToMessages("m"), [orjson.dumps(variant)]))
    anthropic_events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 1, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "f"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 2}},
        {"type": "error", "error": {"type": "api_error", "message": "m"}},
    ]
    for event in anthropic_events:
        for variant in _mangled(event):
            out = _run(streams.MessagesToChat("m"), [orjson.dumps(variant)])
            if b'"error"' not in out[-1]:
                _accumulate_chat(out)


def test_mangled_requests_raise_only_typed_errors() -> None:
    cases = [(requests.messages_to_chat, MESSAGES_REQUEST), (requests.chat_to_messages, CHAT_REQUEST)]
    for translate, request in cases:
        variants = _mangled(request)
        assert len(variants) > 100
        for variant in variants:
            try:
                translate(variant, DEPLOYMENT)
            except (InvalidRequest, RequestNotForwardable):
                pass
