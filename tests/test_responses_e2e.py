"""Responses across formats and turns, driven by the openai SDK: translation to chat-only and Anthropic deployments
(whole and streamed), fallback across formats, chat and Messages callers on a Responses-only upstream,
``previous_response_id`` round trips, and encrypted reasoning kept on the deployment that sealed it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai
import orjson
import pytest

from tests.backing_services import redis_prefix, require_redis
from tests.fakes.behaviours import Error, Text, ToolCalls
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer, wait_until, write_config
from tests.ledger_helpers import run_cli
from tests.messages_helpers import request_rows
from tests.responses_helpers import responses_config

TOOLS = [{"type": "function", "name": "get_weather", "description": "weather", "strict": False,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture
def router(upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(responses_config(upstream.url), ledger_flush_interval=0.05)


@pytest.mark.parametrize(("model", "upstream_model", "path"), [("chatonly", "up-chat", "/v1/chat/completions"),
                                                                ("claude", "up-claude", "/v1/messages")])
def test_translated_whole_and_streamed(router: RouterServer, upstream: FakeUpstream, model: str,
                                       upstream_model: str, path: str) -> None:
    client = router.client()
    upstream.queue(upstream_model, ToolCalls([("get_weather", '{"city": "Paris"}')], content="Checking."))
    whole = client.responses.create(model=model, input="weather in Paris?", instructions="Be brief.", tools=TOOLS)
    sent = upstream.served(upstream_model)[-1]
    assert sent.path == path
    calls = [item for item in whole.output if item.type == "function_call"]
    assert [(c.name, orjson.loads(c.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"})]
    assert whole.output_text == "Checking."
    upstream.queue(upstream_model, Text("streamed and translated", usage=(9, 4)))
    with client.responses.stream(model=model, input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == "streamed and translated"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.usage is not None and final.usage.input_tokens == 9
    rows = request_rows(router, 2)
    assert {row["api"] for row in rows} == {"responses"}


def test_a_function_call_loop_through_chat_translation(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    upstream.queue("up-chat", ToolCalls([("get_weather", '{"city": "Oslo"}')]), Text("Sunny."))
    first = client.responses.create(model="chatonly", input="weather?", tools=TOOLS, store=False)
    call = next(item for item in first.output if item.type == "function_call")
    history = [{"role": "user", "content": "weather?"}, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]  # type: ignore[union-attr]
    second = client.responses.create(model="chatonly", input=history, tools=TOOLS, store=False)
    assert second.output_text == "Sunny."
    messages = upstream.served("up-chat")[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}  # type: ignore[union-attr]


def test_fallback_crosses_formats(router: RouterServer, upstream: FakeUpstream) -> None:
    upstream.always("up-native", Error(503))
    upstream.queue("up-chat", Text("from the chat deployment"))
    answer = router.client().responses.create(model="crossing", input="hi")
    assert answer.output_text == "from the chat deployment"
    row = request_rows(router)[0]
    assert row["deployment"] == "chatdep"


def test_hosted_tools_skip_a_deployment_that_cannot_carry_them(router: RouterServer, upstream: FakeUpstream) -> None:
    # The tester role allows every tool, so the request reaches the deployment, which cannot carry a hosted tool.
    with pytest.raises(openai.APIStatusError) as refused:
        router.client().responses.create(model="chatonly", input="search", tools=[{"type": "web_search"}])
    assert "web_search" in str(refused.value)
    assert upstream.served("up-chat") == []


@pytest.mark.parametrize("api", ["chat", "messages"])
def test_chat_and_messages_callers_on_a_responses_only_upstream(router: RouterServer, upstream: FakeUpstream,
                                                                api: str) -> None:
    upstream.queue("up-only", Text("answered by /responses", usage=(5, 3)))
    if api == "chat":
        answer = router.client().chat.completions.create(model="responses-only",
                                                          messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "answered by /responses"
    else:
        message = router.anthropic().messages.create(model="responses-only", max_tokens=32,
                                                     messages=[{"role": "user", "content": "hi"}])
        assert message.content[0].text == "answered by /responses"  # type: ignore[union-attr]
    sent = upstream.served("up-only")[-1]
    assert sent.path == "/v1/responses" and sent.body["store"] is False


def test_previous_response_id_round_trips(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    upstream.queue("up-chat", Text("My name is Fake."), Text("You asked my name."))
    first = client.responses.create(model="chatonly", input="What is your name?", instructions="Be kind.")
    second = client.responses.create(model="chatonly", input="What did I ask?", previous_response_id=first.id)
    assert second.output_text == "You asked my name."
    messages = upstream.served("up-chat")[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "What is your name?"), ("assistant", "My name is Fake."), ("user", "What did I ask?")]
    # The stored responses are there for their agent: retrieve, list input items, delete.
    assert client.responses.retrieve(first.id).output_text == "My name is Fake."
    items = list(client.responses.input_items.list(second.id, order="asc"))
    assert [item.content[0].text for item in items] == ["What did I ask?"]  # type: ignore[union-attr]  # its own turn
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_an_unknown_previous_response_is_the_code_codex_recovers_on(router: RouterServer) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        router.client().responses.create(model="native", input="hi", previous_response_id="resp_nope")
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["code"] == "previous_response_not_found" and body["param"] == "previous_response_id"


def test_a_stored_response_continues_on_another_format(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    upstream.queue("up-native", Text("native first turn"))
    first = client.responses.create(model="native", input="turn one")
    upstream.queue("up-claude", Text("claude second turn"))
    second = client.responses.create(model="claude", input="turn two", previous_response_id=first.id)
    assert second.output_text == "claude second turn"
    sent = upstream.served("up-claude")[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert "previous_response_id" not in upstream.served("up-native")[-1].body
    # A third turn rebuilds both earlier ones from the chain (each stored turn holds only its own input).
    upstream.queue("up-chat", Text("third"))
    client.responses.create(model="chatonly", input="turn three", previous_response_id=second.id)
    sent_chat = upstream.served("up-chat")[-1].body["messages"]
    assert [m["content"] for m in sent_chat] == ["turn one", "native first turn", "turn two", "claude second turn",
                                                 "turn three"]


def test_encrypted_reasoning_stays_where_it_was_made(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    upstream.seal = "sealed-by-native-b"
    upstream.always("up-native", Error(503))  # pair = [native, native-b]: the first turn is served by native-b
    first = client.responses.create(model="pair", input="think", store=False,
                                    include=["reasoning.encrypted_content"])
    upstream.always("up-native", None)
    upstream.seal = None
    history = [{"role": "user", "content": "think"}, *[item.model_dump(exclude_none=True) for item in first.output],
               {"role": "user", "content": "again"}]
    upstream.queue("up-native-b", Text("native-b again"))
    second = client.responses.create(model="pair", input=history, store=False)
    assert second.output_text == "native-b again"  # pinned to the deployment that sealed the reasoning
    sent = upstream.served("up-native-b")[-1].body["input"]
    assert any(item.get("encrypted_content") == "sealed-by-native-b" for item in sent)
    # When that deployment fails, the fallback gets the request without the sealed item.
    upstream.always("up-native-b", Error(503))
    upstream.queue("up-native", Text("native, without the sealed item"))
    third = client.responses.create(model="pair", input=history, store=False)
    assert third.output_text == "native, without the sealed item"
    fallback_input = upstream.served("up-native")[-1].body["input"]
    assert not any(item.get("type") == "reasoning" for item in fallback_input)
    assert not any("id" in item for item in fallback_input if item.get("role") == "assistant")


def test_the_built_in_mock_answers_responses_with_no_config(tmp_path: Path) -> None:
    """No config at all: the built-in ``mock`` model (a chat-format provider) serves the Responses API through the
    translation, whole and streamed, and stores the answer for a follow-up."""
    database = f"sqlite:///{tmp_path / 'ledger.db'}"
    created = run_cli("keys", "create", "--agent", "demo", "--role", "default", url=database)
    assert created.returncode == 0, created.stderr
    router = RouterServer(None, database_url=database).start()
    try:
        client = router.client(api_key=created.stdout.strip())
        first = client.responses.create(model="mock", input="hello from codex")
        assert "hello from codex" in first.output_text
        with client.responses.stream(model="mock", input="streamed hello", previous_response_id=first.id) as stream:
            final = stream.get_final_response()
        assert "streamed hello" in final.output_text
    finally:
        router.stop()


def test_a_streamed_response_is_stored_and_explained(router: RouterServer, upstream: FakeUpstream) -> None:
    client = router.client()
    upstream.queue("up-native", Text("streamed and stored"))
    with client.responses.stream(model="native", input="keep this") as stream:
        final = stream.get_final_response()
    assert client.responses.retrieve(final.id).output_text == "streamed and stored"
    explained = router.http().post("/v1/route/explain?api=responses", headers={"authorization": "Bearer test-key"},
                                   json={"model": "crossing", "input": "hi", "previous_response_id": final.id})
    assert explained.status_code == 200, explained.text
    assert explained.json()["deployments"][:2] == ["native", "chatdep"]
    wrong = router.http().post("/v1/route/explain?api=nope", headers={"authorization": "Bearer test-key"},
                               json={"model": "crossing", "input": "hi"})
    assert wrong.status_code == 400 and "error" in wrong.json()


def test_rules_match_the_responses_api_and_codex_headers(upstream: FakeUpstream, tmp_path: Path,
                                                         start_router: Callable[..., RouterServer]) -> None:
    (tmp_path / "routing_rules").mkdir()
    (tmp_path / "routing_rules" / "10-codex.yaml").write_text("""
rules:
  - name: codex-sessions
    when: {api: responses, headers: {originator: codex_cli_rs, session_id: "codex-*"}}
    route: {deployments: [native-b]}
""")
    router = start_router(responses_config(upstream.url, f"rules: {tmp_path / 'routing_rules'}"),
                          ledger_flush_interval=0.05)
    upstream.queue("up-native-b", Text("codex rule"))
    codex = router.client().responses.with_raw_response.create(
        model="native", input="hi", extra_headers={"session_id": "codex-42", "originator": "codex_cli_rs"})
    assert codex.headers["x-agent-router-rule"] == "codex-sessions"
    assert codex.parse().output_text == "codex rule"
    other = router.client().responses.with_raw_response.create(model="native", input="hi")
    assert other.headers["x-agent-router-rule"] != "codex-sessions"


def test_a_fleet_shares_where_encrypted_reasoning_was_made(upstream: FakeUpstream, tmp_path: Path) -> None:
    """Two replicas behind one Redis: a stateless follow-up (Codex sends the whole history each turn) that lands on
    the replica that did not serve the first turn still goes to the deployment that sealed the reasoning."""
    config = write_config(responses_config(upstream.url), str(tmp_path))
    with redis_prefix() as prefix:
        first, second = (RouterServer(config, database_url=f"sqlite:///{tmp_path / f'r{i}.db'}",
                                      redis_url=require_redis(), redis_prefix=prefix).start() for i in range(2))
        try:
            upstream.seal = "sealed-by-native-b"
            upstream.always("up-native", Error(503))
            turn = first.client().responses.create(model="pair", input="think", store=False,
                                                   include=["reasoning.encrypted_content"])
            upstream.always("up-native", None)
            upstream.seal = None
            history = [{"role": "user", "content": "think"},
                       *[item.model_dump(exclude_none=True) for item in turn.output], {"role": "user", "content": "on"}]
            upstream.queue("up-native-b", Text("the other replica pinned it"))
            assert wait_until(lambda: second.client().responses.create(
                model="pair", input=history, store=False).output_text == "the other replica pinned it", timeout=5)
        finally:
            first.stop()
            second.stop()
