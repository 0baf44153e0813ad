"""Anthropic Messages through the router with the official anthropic SDK: a faithful pass-through to an
Anthropic-format upstream, translation to and from OpenAI-format deployments, fallback across the two, records."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import openai
import orjson
import pytest

from tests.fakes.behaviours import Error, Scripted, Text, ToolCalls
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer
from tests.messages_helpers import USER, messages_config, request_rows


@pytest.fixture
def router(upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(messages_config(upstream.url), ledger_flush_interval=0.05)


def test_whole_answer_passes_through_with_headers_and_fields(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-claude", Text("Bonjour", usage=(12, 3)))
    system = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": "Second block."}]
    message = router.anthropic().messages.create(
        model="sonnet", max_tokens=64, system=system, messages=USER, metadata={"user_id": "u-1"},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14,some-future-beta"},
        extra_body={"a_field_the_router_does_not_know": {"kept": True}})
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour"
    assert message.usage.input_tokens == 12 and message.usage.output_tokens == 3
    sent = upstream.served("up-claude")[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,some-future-beta"
    assert sent.headers["anthropic-version"] == router.anthropic().default_headers["anthropic-version"]  # verbatim
    assert sent.headers["x-api-key"] == "sk-ant-upstream-secret"
    assert "test-key" not in str(sent.headers)
    assert sent.body["system"] == system and sent.body["metadata"] == {"user_id": "u-1"}
    assert sent.body["a_field_the_router_does_not_know"] == {"kept": True}


def test_stream_helper_accumulates_the_answer(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-claude", Text("streamed through the router", usage=(20, 6)))
    with router.anthropic().messages.stream(model="sonnet", max_tokens=64, messages=USER) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].text == "streamed through the router"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 6
    assert events[0] == "message_start" and "content_block_delta" in events and events[-1] == "message_stop"


def test_tool_use_loop(router: RouterServer, upstream: FakeUpstream) -> None:
    tools = [{"name": "read_file", "description": "read a file",
              "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    upstream.queue("up-claude", ToolCalls([("read_file", '{"path": "README.md"}')], content="Let me look."))
    client = router.anthropic()
    with client.messages.stream(model="sonnet", max_tokens=64, messages=USER, tools=tools) as stream:
        first = stream.get_final_message()
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "read_file" and call.input == {"path": "README.md"}
    assert first.stop_reason == "tool_use"
    upstream.queue("up-claude", Text("It says hello."))
    history = [*USER, {"role": "assistant", "content": [block.model_dump() for block in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "hello"}]}]
    second = client.messages.create(model="sonnet", max_tokens=64, messages=history, tools=tools)
    assert second.content[0].text == "It says hello."  # type: ignore[union-attr]
    sent = upstream.served("up-claude")[-1].body
    assert sent["messages"][2]["content"][0]["tool_use_id"] == call.id


def test_upstream_error_body_reaches_the_client_unmodified(router: RouterServer, upstream: FakeUpstream) -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error",
                                       "message": "messages.1.content.0.thinking.signature: Invalid signature"}}
    upstream.queue("up-claude", Error(400, body))
    with pytest.raises(anthropic.BadRequestError) as caught:
        router.anthropic().messages.create(model="sonnet", max_tokens=64, messages=USER)
    assert caught.value.body == body


def test_overloaded_upstream_is_the_sdks_overloaded_error(router: RouterServer, upstream: FakeUpstream) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.always("up-claude", Error(529, overloaded))
    with pytest.raises(anthropic.APIStatusError) as caught:
        router.anthropic().messages.create(model="sonnet", max_tokens=64, messages=USER)
    assert caught.value.status_code == 529
    assert caught.value.body == overloaded


@pytest.mark.parametrize("stream", [False, True])
def test_messages_request_to_an_openai_deployment_is_translated(router: RouterServer, upstream: FakeUpstream,
                                                                stream: bool) -> None:
    tools = [{"name": "read_file", "description": "read", "input_schema": {"type": "object"}}]
    upstream.queue("up-gpt", ToolCalls([("read_file", '{"path": "a.txt"}')], content="Looking."))
    client = router.anthropic()
    if stream:
        with client.messages.stream(model="gpt", max_tokens=64, messages=USER, tools=tools,
                                    system="be brief") as events:
            answer = events.get_final_message()
    else:
        answer = client.messages.create(model="gpt", max_tokens=64, messages=USER, tools=tools, system="be brief")
    kinds = [block.type for block in answer.content]
    assert kinds == ["text", "tool_use"] and answer.stop_reason == "tool_use"
    assert answer.content[1].input == {"path": "a.txt"}  # type: ignore[union-attr]
    sent = upstream.served("up-gpt")[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent.body["tools"][0]["function"]["name"] == "read_file"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_request_to_an_anthropic_deployment_is_translated(router: RouterServer, upstream: FakeUpstream,
                                                               stream: bool) -> None:
    upstream.queue("up-claude", Text("from claude", usage=(9, 4)))
    client: openai.OpenAI = router.client()
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    if stream:
        chunks = list(client.chat.completions.create(model="sonnet", messages=messages, stream=True,  # type: ignore
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = [c.usage for c in chunks if c.usage is not None]
        assert usage and usage[-1].prompt_tokens == 9 and usage[-1].completion_tokens == 4
    else:
        completion = client.chat.completions.create(model="sonnet", messages=messages)  # type: ignore[arg-type]
        text = completion.choices[0].message.content or ""
        assert completion.choices[0].finish_reason == "stop"
    assert text == "from claude"
    sent = upstream.served("up-claude")[-1]
    assert sent.path == "/v1/messages" and sent.body["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
    assert sent.body["max_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_from_anthropic_to_openai_keeps_the_messages_wire(router: RouterServer, upstream: FakeUpstream,
                                                                   stream: bool) -> None:
    upstream.always("up-claude", Error(529, {"type": "error", "error": {"type": "overloaded_error",
                                                                        "message": "Overloaded"}}))
    upstream.queue("up-gpt", Text("the fallback answered"))
    client = router.anthropic()
    if stream:
        with client.messages.stream(model="mixed", max_tokens=64, messages=USER) as events:
            answer = events.get_final_message()
    else:
        answer = client.messages.create(model="mixed", max_tokens=64, messages=USER)
    assert answer.content[0].text == "the fallback answered"  # type: ignore[union-attr]
    assert answer.type == "message" and answer.role == "assistant"
    row = request_rows(router)[-1]
    assert row["deployment"] == "gpt" and row["api"] == "messages"


def test_usage_row_counts_cache_reads_and_writes_and_the_session(router: RouterServer,
                                                                 upstream: FakeUpstream) -> None:
    upstream.queue("up-claude", Text("cached", usage=(100, 10)))
    headers = {"x-claude-code-session-id": "sess-1", "x-claude-code-agent-id": "sub-7",
               "x-claude-code-parent-agent-id": "main-agent"}
    router.anthropic().messages.create(model="sonnet", max_tokens=64, messages=USER, extra_headers=headers)
    row = request_rows(router)[-1]
    assert (row["api"], row["session_id"], row["session_agent"], row["parent_agent"]) == \
        ("messages", "sess-1", "sub-7", "main-agent")
    assert row["prompt_tokens"] == 100 and row["completion_tokens"] == 10 and row["estimated"] == 0


def _start(model: str = "up-claude") -> list[dict[str, object]]:
    message = {"id": "msg_x", "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
    return [{"type": "message_start", "message": message},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}}]


def test_a_mid_stream_error_event_reaches_the_client_as_anthropic_sent_it(router: RouterServer,
                                                                          upstream: FakeUpstream) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.queue("up-claude", Scripted(events=[*_start(), error]))
    with router.http() as http:
        response = http.post("/v1/messages", json={"model": "sonnet", "max_tokens": 9, "messages": USER,
                                                   "stream": True}, headers={"x-api-key": "test-key"})
    assert response.text.endswith("event: error\ndata: " + orjson.dumps(error).decode() + "\n\n")
    assert "partial" in response.text
    upstream.queue("up-claude", Scripted(events=[*_start(), error]))
    with pytest.raises(anthropic.APIStatusError), router.anthropic().messages.stream(
            model="sonnet", max_tokens=9, messages=USER) as stream:
        stream.get_final_message()


def test_a_stream_cut_before_message_stop_ends_with_an_error_event(router: RouterServer,
                                                                   upstream: FakeUpstream) -> None:
    upstream.queue("up-claude", Scripted(events=_start()))
    with router.http() as http:
        response = http.post("/v1/messages", json={"model": "sonnet", "max_tokens": 9, "messages": USER,
                                                   "stream": True}, headers={"x-api-key": "test-key"})
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\ndata: ")
    assert orjson.loads(last.split("data: ", 1)[1])["error"]["type"] == "api_error"
    row = request_rows(router)[-1]
    assert row["status"] == "error" and row["api"] == "messages"


def test_a_hostile_event_type_cannot_inject_sse_lines(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.queue("up-claude", Scripted(events=[*_start(), b'{"type":"x\\nevent: message_stop","a":1}',
                                                {"type": "message_stop"}]))
    with router.http() as http:
        response = http.post("/v1/messages", json={"model": "sonnet", "max_tokens": 9, "messages": USER,
                                                   "stream": True}, headers={"x-api-key": "test-key"})
    names = [line for line in response.text.split("\n") if line.startswith("event: ")]
    assert names.count("event: message_stop") == 1  # the escaped newline stayed inside the JSON string
    assert all(" " not in name[7:] for name in names)
