"""Response-side bypasses end to end: a scripted hostile upstream, the real router, the openai SDK or raw httpx."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.configs import openai_config
from tests.fakes.behaviours import Scripted
from tests.policy_helpers import ROLES, agent_key, agents_yaml, tool

AGENTS = agents_yaml(("ops-bot", "ops"), ("block-bot", "blocker"))
MESSAGES = [{"role": "user", "content": "tidy up the environments"}]
PROD = '{"environment": "production"}'
BASE = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "up-primary"}


@pytest.fixture
def router(upstream: Any, start_router: Any) -> Any:
    return start_router(openai_config(upstream.openai_base_url, ROLES + AGENTS))


def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def call(index: int, call_id: str, name: str, arguments: str, key: str = "tool_calls") -> dict[str, Any]:
    return event({key: [{"index": index, "id": call_id, "type": "function",
                         "function": {"name": name, "arguments": arguments}}]})


def test_a_second_call_reusing_an_index_is_not_glued_onto_the_first(router: Any, upstream: Any) -> None:
    upstream.queue("up-primary", Scripted(events=[
        event({"role": "assistant", "content": ""}), call(0, "c0", "search", '{"q": "envs"}'),
        call(0, "c1", "delete_environment", PROD), event({}, "tool_calls")]))
    stream = router.client(api_key=agent_key("ops-bot")).chat.completions.create(
        model="fast", messages=MESSAGES, tools=[tool("search"), tool("delete_environment")], stream=True)
    calls: dict[int, dict[str, str]] = {}
    for chunk in stream:
        for fragment in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(fragment.index, {"name": "", "arguments": ""})
            entry["name"] += fragment.function.name or ""
            entry["arguments"] += fragment.function.arguments or ""
    assert calls == {0: {"name": "search", "arguments": '{"q": "envs"}'}}


def test_a_look_alike_tool_calls_key_never_reaches_the_client(router: Any, upstream: Any) -> None:
    message = {"role": "assistant", "content": None, "Tool_Calls": [
        {"id": "c0", "type": "function", "function": {"name": "delete_environment", "arguments": PROD}}]}
    upstream.queue("up-primary", Scripted(answer={
        "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "up-primary",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls"}]}))
    body = {"model": "fast", "messages": MESSAGES, "tools": [tool("search")]}
    with router.http() as http:
        response = http.post("/v1/chat/completions", json=body,
                             headers={"authorization": f"Bearer {agent_key('ops-bot')}"})
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert "Tool_Calls" not in choice["message"] and choice["finish_reason"] == "stop"
    summary = json.loads(response.headers["x-agent-router-policy"])
    assert [(entry["action"], entry["stage"]) for entry in summary] == [("stripped", "response")]


def test_a_look_alike_key_in_a_stream_never_reaches_the_client(router: Any, upstream: Any) -> None:
    upstream.queue("up-primary", Scripted(events=[
        event({"role": "assistant", "content": ""}), call(0, "c0", "delete_environment", PROD, key="toolCalls"),
        event({}, "tool_calls")]))
    body = {"model": "fast", "messages": MESSAGES, "tools": [tool("search")], "stream": True}
    with router.http() as http, http.stream("POST", "/v1/chat/completions", json=body,
                                            headers={"authorization": f"Bearer {agent_key('ops-bot')}"}) as response:
        text = "".join(response.iter_text())
    items = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    deltas = [choice["delta"] for item in items for choice in item.get("choices", [])]
    assert deltas and not any("toolCalls" in delta or "tool_calls" in delta for delta in deltas)
    assert [c["finish_reason"] for item in items for c in item.get("choices", []) if c["finish_reason"]] == ["stop"]


def test_tools_smuggled_in_a_merged_object_or_a_look_alike_key_never_reach_the_provider(router: Any,
                                                                                          upstream: Any) -> None:
    smuggled = {"extra_body": {"tools": [tool("rm_rf")], "tool_choice": {"type": "function",
                                                                         "function": {"name": "rm_rf"}}},
                "Tools": [tool("rm_rf")]}
    response = router.client(api_key=agent_key("ops-bot")).chat.completions.with_raw_response.create(
        model="fast", messages=MESSAGES, tools=[tool("search")], extra_body=smuggled)
    (received,) = upstream.served()
    assert "rm_rf" not in json.dumps(received.body) and received.tool_names == ["search"]
    summary = json.loads(response.headers["x-agent-router-policy"])
    assert {entry["stage"] for entry in summary} == {"request"} and len(summary) >= 3
    with pytest.raises(openai.PermissionDeniedError) as info:
        router.client(api_key=agent_key("block-bot")).chat.completions.create(
            model="fast", messages=MESSAGES, tools=[tool("search")], extra_body={"extra_body": smuggled["extra_body"]})
    assert info.value.code == "tool_not_allowed" and len(upstream.served()) == 1


def _first_wins(text: str) -> Any:
    """Decode as a first-wins parser (several Go, .NET and Java mappers) would."""
    def first(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            out.setdefault(key, value)
        return out
    return json.loads(text, object_pairs_hook=first)


EVIL_CALLS = ('[{"id": "c0", "type": "function", "function": {"name": "delete_environment", '
              '"arguments": "{\\"environment\\": \\"production\\"}"}}]')


def test_a_duplicate_tool_calls_key_in_a_whole_answer_is_not_relayed(router: Any, upstream: Any) -> None:
    answer = ('{"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "up-primary", "choices": '
              '[{"index": 0, "logprobs": null, "finish_reason": "stop", "message": {"role": "assistant", '
              f'"content": "done", "tool_calls": {EVIL_CALLS}, "tool_calls": null}}}}]}}').encode()
    upstream.queue("up-primary", Scripted(answer=answer))
    body = {"model": "fast", "messages": MESSAGES, "tools": [tool("search")]}
    with router.http() as http:
        response = http.post("/v1/chat/completions", json=body,
                             headers={"authorization": f"Bearer {agent_key('ops-bot')}"})
    assert response.status_code == 200
    assert "delete_environment" not in response.text
    assert not _first_wins(response.text)["choices"][0]["message"].get("tool_calls")


def test_a_duplicate_delta_key_in_a_stream_is_not_relayed(router: Any, upstream: Any) -> None:
    chunk = ('{"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "up-primary", '
             '"choices": [{"index": 0, "logprobs": null, "finish_reason": null, '
             '"delta": {"tool_calls": [{"index": 0, "id": "c0", "type": "function", "function": '
             '{"name": "delete_environment", "arguments": "{}"}}]}, "delta": {"content": "hi"}}]}')
    upstream.queue("up-primary", Scripted(events=[event({"role": "assistant", "content": ""}), chunk.encode(),
                                                  event({}, "stop")]))
    body = {"model": "fast", "messages": MESSAGES, "tools": [tool("search")], "stream": True}
    with router.http() as http, http.stream("POST", "/v1/chat/completions", json=body,
                                            headers={"authorization": f"Bearer {agent_key('ops-bot')}"}) as response:
        text = "".join(response.iter_text())
    assert "delete_environment" not in text
    items = [_first_wins(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert not any(c["delta"].get("tool_calls") for item in items for c in item.get("choices", []))
