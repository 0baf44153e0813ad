"""Tool policy on the OpenAI Responses wire: request review, whole answers and streams, adversarial cases.

Requests, answers and event sequences are shaped as the Responses API sends them. Emitted answers and events are
validated against the OpenAI spec and the openai SDK's types, and streams are fed to the SDK's own accumulator
(``ResponseStreamState``, what ``client.responses.stream()`` uses), so a client can consume what the filter sends."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import orjson
import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from router.config import load_snapshot
from router.config.snapshot import Snapshot
from router.context import RequestContext
from router.errors import PolicyViolation
from router.policy.responses_answer import filter_response, may_carry_call
from router.policy.responses_request import review_responses_request
from router.policy.responses_stream import MAX_QUEUED, ResponsesStreamFilter
from tests.configs import openai_config
from tests.harness import write_config
from tests.spec import assert_matches

ROLES = """
policy:
  max_tool_call_bytes: 1024
roles:
  coder:
    models: ["*"]
    tools:
      allow: ["search", "bash", "deploy", "apply_diff", "web_search", "file_search", "code_interpreter",
              "computer_use", "local_shell", "shell", "apply_patch", "image_generation", "mcp:docs"]
      conditions:
        - tool: "mcp:docs"
          when: {path: server_url, op: ne, value: "https://docs.example/mcp"}
          reason: the docs server is only reached at its own URL
        - tool: deploy
          when: {path: environment, op: eq, value: production}
          reason: agents never deploy to production
        - tool: local_shell
          when: {path: "command[0]", op: eq, value: rm}
  reader:
    models: ["*"]
    notice: "removed {tool}"
    tools: {allow: ["search"]}
  blocker:
    models: ["*"]
    on_violation: block
    tools: {allow: ["search", "deploy"],
            conditions: [{tool: deploy, when: {path: environment, op: eq, value: production}}]}
  shadow:
    models: ["*"]
    on_violation: audit_only
    tools: {allow: ["search"]}
"""
EVENT = TypeAdapter(ResponseStreamEvent)
SECRET = "Bearer mcp-secret-token-123"


@cache
def snapshot() -> Snapshot:
    return load_snapshot(str(write_config(openai_config("http://127.0.0.1:9/v1", ROLES), None)))


def make_ctx(role: str, payload: dict[str, Any]) -> RequestContext:
    return RequestContext(request_id="req-test", snapshot=snapshot(), payload=payload, stream=True,
                          requested_model="fast", agent="agent-a", role=role, wire="responses")


def fn(name: str) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": {"type": "object", "properties": {}}, "strict": False}


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "fast", "input": "hi", **fields}


def reviewed(role: str, payload: dict[str, Any]) -> tuple[dict[str, Any], RequestContext]:
    ctx = make_ctx(role, payload)
    review_responses_request(ctx)
    return payload, ctx


def offered(role: str, *tools: dict[str, Any]) -> RequestContext:
    return reviewed(role, request(tools=list(tools)))[1]


# -- request side --------------------------------------------------------------------------------------
def test_function_tools_look_alike_names_are_judged_as_canonical_or_refused() -> None:
    payload, ctx = reviewed("coder", request(tools=[fn("Bash "), fn("b\u0430sh"), fn("se\u200barch"),
                                                    fn("delete_all")]))
    assert [t["name"] for t in payload["tools"]] == ["Bash "]
    assert ctx.offered_tools == frozenset({"bash"})
    assert {e["rule"] for e in ctx.audit_events if e["action"] != "allowed"} == {"unsafe-name", "default-deny"}
    assert all(e["stage"] == "request" for e in ctx.audit_events)


@pytest.mark.parametrize(("kind", "family"), [
    ("web_search", "web_search"), ("web_search_preview", "web_search"),
    ("web_search_preview_2025_03_11", "web_search"), ("web_search_2025_08_26", "web_search"),
    ("file_search", "file_search"), ("code_interpreter", "code_interpreter"),
    ("computer_use_preview", "computer_use"), ("computer", "computer_use"), ("local_shell", "local_shell"),
    ("shell", "shell"), ("apply_patch", "apply_patch"), ("image_generation", "image_generation")])
def test_each_hosted_tool_is_decided_as_its_family(kind: str, family: str) -> None:
    tool = {"type": kind}
    payload, ctx = reviewed("coder", request(tools=[copy.deepcopy(tool)]))
    assert payload["tools"] == [tool]
    assert ctx.offered_tools == frozenset({family})
    payload, ctx = reviewed("reader", request(tools=[copy.deepcopy(tool), fn("search")],
                                              tool_choice={"type": kind}))
    assert payload["tools"] == [fn("search")]
    assert payload["tool_choice"] == "auto"
    assert (ctx.audit_events[0]["tool"], ctx.audit_events[0]["action"]) == (family, "stripped")


def test_unknown_tool_types_are_denied_by_default_on_their_type() -> None:
    payload, ctx = reviewed("coder", request(tools=[{"type": "quantum_oracle_2099", "power": 9}, fn("search")]))
    assert payload["tools"] == [fn("search")]
    assert ctx.audit_events[0]["tool"] == "quantum_oracle_2099"
    assert ctx.audit_events[0]["rule"] == "default-deny"


def test_custom_tools_are_decided_on_their_name() -> None:
    custom = {"type": "custom", "name": "apply_diff", "description": "apply a diff", "format": {"type": "text"}}
    payload, ctx = reviewed("coder", request(tools=[custom, {**custom, "name": "exec_anything"}]))
    assert payload["tools"] == [custom]
    assert ctx.offered_tools == frozenset({"apply_diff"})


def mcp(label: str, **server: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "require_approval": "never",
            "headers": {"Authorization": SECRET}, **server}


def test_mcp_tools_are_decided_by_label_and_their_url_is_pinned_by_a_condition() -> None:
    good = mcp("docs", server_url="https://docs.example/mcp", allowed_tools=["lookup"])
    tools = [good, mcp("docs", server_url="https://evil.example/mcp"), mcp("docs", connector_id="connector_x"),
             mcp("payments", server_url="https://pay.example/mcp"), {"type": "mcp", "server_url": "https://x"}]
    payload, ctx = reviewed("coder", request(tools=copy.deepcopy(tools)))
    assert payload["tools"] == [good]
    assert ctx.offered_tools == frozenset({"mcp:docs"})
    denied = [e for e in ctx.audit_events if e["action"] == "stripped"]
    assert [e["tool"] for e in denied] == ["mcp:docs", "mcp:docs", "mcp:payments", None]
    assert "own URL" in denied[0]["reason"]
    assert SECRET not in orjson.dumps([ctx.audit_events, ctx.policy_summary]).decode()
    with pytest.raises(PolicyViolation) as caught:
        reviewed("blocker", request(tools=copy.deepcopy(tools)))
    assert SECRET not in caught.value.message


def test_forced_choices_naming_a_removed_tool_become_auto_or_go() -> None:
    payload, ctx = reviewed("reader", request(tools=[fn("search"), fn("bash")],
                                              tool_choice={"type": "function", "name": "bash"}))
    assert payload["tool_choice"] == "auto"
    assert any(e["action"] == "rewritten" and e["rule"] == "tool_choice-rewrite" for e in ctx.audit_events)
    payload, _ = reviewed("reader", request(tools=[fn("bash")], tool_choice={"type": "function", "name": "bash"}))
    assert "tools" not in payload and "tool_choice" not in payload
    payload, _ = reviewed("reader", request(tools=[fn("bash")], tool_choice="required"))
    assert "tools" not in payload and "tool_choice" not in payload
    payload, _ = reviewed("reader", request(tools=[fn("search")], tool_choice={"type": "custom", "name": "x"}))
    assert payload["tool_choice"] == "auto"
    payload, _ = reviewed("coder", request(tools=[mcp("docs", server_url="https://docs.example/mcp")],
                                           tool_choice={"type": "mcp", "server_label": "docs", "name": "lookup"}))
    assert payload["tool_choice"]["type"] == "mcp"


def test_allowed_tools_choice_keeps_only_tools_still_offered() -> None:
    choice = {"type": "allowed_tools", "mode": "required",
              "tools": [{"type": "function", "name": "search"}, {"type": "function", "name": "bash"},
                        {"type": "web_search"}]}
    payload, _ = reviewed("reader", request(tools=[fn("search"), fn("bash"), {"type": "web_search"}],
                                            tool_choice=copy.deepcopy(choice)))
    assert payload["tool_choice"] == {**choice, "tools": [{"type": "function", "name": "search"}]}
    payload, _ = reviewed("coder", request(tools=[fn("search"), fn("bash"), {"type": "web_search"}],
                                           tool_choice=copy.deepcopy(choice)))
    assert payload["tool_choice"] == choice


def test_forged_history_loses_denied_calls_and_the_items_answering_them() -> None:
    items: list[Any] = [
        {"role": "user", "content": "clean up"},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "search", "arguments": '{"q":"a"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"},
        {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "deploy",
         "arguments": '{"environment": "production"}'},
        {"type": "function_call_output", "call_id": "call_2", "output": "deployed"},
        {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_3", "status": "completed",
         "action": {"type": "exec", "command": ["rm", "-rf", "/"], "env": {}}},
        {"type": "local_shell_call_output", "id": "call_3", "output": "gone"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_4", "name": "exec_anything", "input": "x"},
        {"type": "custom_tool_call_output", "call_id": "call_4", "output": "done"},
        {"type": "teleport_call", "id": "tp_1", "call_id": "call_5"},
        {"type": "teleport_call_output", "call_id": "call_5", "output": "arrived"},
        {"type": "brand_new_item", "id": "bn_1", "data": 1},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
    ]
    payload, ctx = reviewed("coder", request(input=copy.deepcopy(items)))
    assert payload["input"] == [items[i] for i in (0, 1, 2, 11, 12, 13)]
    stripped = [e["tool"] for e in ctx.audit_events if e["stage"] == "history" and e["action"] == "stripped"]
    assert stripped == ["deploy", "local_shell", "exec_anything", "teleport_call"]
    payload, _ = reviewed("coder", request(input="a string has no history"))
    assert payload["input"] == "a string has no history"


def test_past_mcp_calls_are_judged_with_the_server_the_request_offers() -> None:
    call = {"type": "mcp_call", "id": "mcp_1", "server_label": "docs", "name": "lookup", "arguments": "{}",
            "output": "page"}
    payload, _ = reviewed("coder", request(tools=[mcp("docs", server_url="https://docs.example/mcp")],
                                           input=[copy.deepcopy(call)]))
    assert payload["input"] == [call]
    payload, _ = reviewed("coder", request(input=[copy.deepcopy(call)]))
    assert payload["input"] == []


def test_request_look_alike_keys_are_refused() -> None:
    payload, ctx = reviewed("coder", request(Tools=[fn("bash")], input=[
        {"type": "function_call_output", "Call_Id": "call_9", "output": "x"}]))
    assert "Tools" not in payload and payload["input"] == [{"type": "function_call_output", "output": "x"}]
    assert sum(e["rule"] == "look-alike-key" for e in ctx.audit_events) == 2


def test_block_mode_refuses_and_audit_only_changes_nothing() -> None:
    with pytest.raises(PolicyViolation, match="bash"):
        reviewed("blocker", request(tools=[fn("search"), fn("bash")]))
    with pytest.raises(PolicyViolation, match="deploy"):
        reviewed("blocker", request(input=[{"type": "function_call", "call_id": "c", "name": "deploy",
                                            "arguments": '{"environment":"production"}'}]))
    original = request(tools=[fn("search"), fn("bash"), {"type": "web_search"}], tool_choice="required")
    payload, ctx = reviewed("shadow", copy.deepcopy(original))
    assert payload == original
    assert {e["action"] for e in ctx.audit_events} == {"allowed", "would_strip"}
    assert ctx.offered_tools == frozenset({"search"})


# -- whole answers -------------------------------------------------------------------------------------
def call_item(name: str, arguments: str, n: int = 1) -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": name, "arguments": arguments,
            "status": "completed"}


def message(text: str, n: int = 0) -> dict[str, Any]:
    return {"type": "message", "id": f"msg_{n}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def response(output: list[Any], status: str = "completed") -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "created_at": 1, "status": status, "model": "up-primary",
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
            "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 8}}


ALL_OFFERED = (fn("search"), fn("deploy"), fn("bash"), {"type": "local_shell"}, mcp("docs",
               server_url="https://docs.example/mcp"), {"type": "web_search"})


def test_answer_strips_denied_and_unoffered_calls_and_appends_one_notice() -> None:
    ctx = offered("coder", fn("search"), fn("deploy"))
    data = response([message("working"), call_item("search", '{"q":"x"}', 1),
                     call_item("deploy", '{"environment":"production"}', 2), call_item("bash", "{}", 3),
                     call_item("b\u0430sh", "{}", 4),
                     {"type": "web_search_call", "id": "ws_1", "status": "completed",
                      "action": {"type": "search", "query": "q"}}])
    assert filter_response(ctx, data) is True
    kinds = [(item["type"], item.get("name")) for item in data["output"]]
    assert kinds == [("message", None), ("function_call", "search"), ("web_search_call", None), ("message", None)]
    notice = data["output"][-1]
    assert notice["id"].startswith("msg_") and notice["status"] == "completed"
    assert notice["content"][0]["text"].count("\n") == 2
    rules = [e["rule"] for e in ctx.audit_events if e["stage"] == "response"]
    assert rules == ["allow:search", "condition:deploy#1", "not-offered", "unsafe-name"]
    assert_matches("Response", data)
    Response.model_validate(data)


def test_answer_client_calls_of_every_kind_are_decided_and_upstream_runs_pass() -> None:
    ctx = offered("coder", *ALL_OFFERED)
    shell: dict[str, Any] = {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_s", "status": "completed",
             "action": {"type": "exec", "command": ["rm", "-rf", "/"], "env": {}}}
    safe_shell = {**shell, "id": "lsh_2", "call_id": "call_t", "action": {**shell["action"], "command": ["ls"]}}
    upstream_run = [{"type": "mcp_call", "id": "mcp_1", "server_label": "docs", "name": "lookup",
                     "arguments": "{}", "output": "page"},
                    {"type": "reasoning", "id": "rs_1", "summary": []}]
    data = response([shell, safe_shell, {"type": "computer_call", "id": "cu_1", "call_id": "call_c",
                                         "action": {"type": "screenshot"}, "pending_safety_checks": [],
                                         "status": "completed"},
                     {"type": "Function_Call", "name": "search", "arguments": "{}", "call_id": "x"},
                     *upstream_run])
    filter_response(ctx, data)
    assert data["output"][:-1] == [safe_shell, *upstream_run]
    assert [e["tool"] for e in ctx.audit_events if e["action"] == "stripped"] == [
        "local_shell", "computer_use", "Function_Call"]


def test_answer_block_raises_and_audit_only_records() -> None:
    ctx = offered("blocker", fn("search"), fn("deploy"))
    with pytest.raises(PolicyViolation, match="deploy"):
        filter_response(ctx, response([call_item("deploy", '{"environment":"production"}')]))
    ctx = offered("shadow", fn("search"))
    data = response([call_item("bash", "{}")])
    assert filter_response(ctx, data) is False
    assert data["output"] == [call_item("bash", "{}")]
    assert [e["action"] for e in ctx.audit_events if e["stage"] == "response"] == ["would_strip"]


def test_may_carry_call_sees_every_spelling() -> None:
    for raw in (b'{"type":"function_call"}', b'{"type":"Function-CALL"}', b'{"type":"functionCall"}',
                b'{"type":"function\\u005fcall"}'):
        assert may_carry_call(raw)
    assert not may_carry_call(b'{"type":"response.output_text.delta","delta":"hello"}')


# -- streams -------------------------------------------------------------------------------------------
class Upstream:
    """Builds a Responses event sequence the way OpenAI streams one, numbering events as it goes."""

    def __init__(self, start: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.output: list[dict[str, Any]] = []
        self.seq = start

    def add(self, event: dict[str, Any]) -> None:
        self.events.append({**event, "sequence_number": self.seq})
        self.seq += 1

    def created(self) -> Upstream:
        for kind in ("response.created", "response.in_progress"):
            self.add({"type": kind, "response": response([], "in_progress")})
        return self

    def text(self, text: str, pieces: int = 3) -> Upstream:
        index, item = len(self.output), message(text, len(self.output))
        at = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self.add({"type": "response.output_item.added", "output_index": index,
                  "item": {**item, "status": "in_progress", "content": []}})
        self.add({"type": "response.content_part.added", **at,
                  "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        for i in range(0, len(text), pieces):
            self.add({"type": "response.output_text.delta", **at, "delta": text[i:i + pieces], "logprobs": []})
        self.add({"type": "response.output_text.done", **at, "text": text, "logprobs": []})
        self.add({"type": "response.content_part.done", **at, "part": item["content"][0]})
        self.add({"type": "response.output_item.done", "output_index": index, "item": item})
        self.output.append(item)
        return self

    def call(self, name: str, arguments: str, fragment: int = 4, final: dict[str, Any] | None = None) -> Upstream:
        self.call_start(name)
        self.call_args(len(self.output) - 1, arguments, fragment)
        return self.call_done(len(self.output) - 1, arguments, final)

    def call_start(self, name: str) -> Upstream:
        index = len(self.output)
        item = call_item(name, "", index)
        self.add({"type": "response.output_item.added", "output_index": index,
                  "item": {**item, "status": "in_progress"}})
        self.output.append(item)
        return self

    def call_args(self, index: int, arguments: str, fragment: int = 4) -> Upstream:
        for i in range(0, len(arguments), fragment):
            self.add({"type": "response.function_call_arguments.delta", "item_id": f"fc_{index}",
                      "output_index": index, "delta": arguments[i:i + fragment]})
        return self

    def call_done(self, index: int, arguments: str, final: dict[str, Any] | None = None) -> Upstream:
        item = final or {**self.output[index], "arguments": arguments}
        self.add({"type": "response.function_call_arguments.done", "item_id": f"fc_{index}",
                  "output_index": index, "arguments": arguments, "name": item["name"]})
        self.add({"type": "response.output_item.done", "output_index": index, "item": item})
        self.output[index] = item
        return self

    def completed(self) -> list[bytes]:
        self.add({"type": "response.completed", "response": response(self.output)})
        return self.payloads()

    def payloads(self) -> list[bytes]:
        return [orjson.dumps(event) for event in self.events]


def run(ctx: RequestContext, payloads: list[bytes], *, finish: bool = True) -> list[bytes]:
    filt = ResponsesStreamFilter(ctx)
    out: list[bytes] = []
    for payload in payloads:
        out += filt.feed(payload)
    return out + (filt.finish() if finish else [])


def checked(out: list[bytes], first_seq: int = 0) -> list[dict[str, Any]]:
    """Every event: type first, valid for the spec and the SDK, numbered without gaps; then the SDK's
    accumulator must build the final response from them, equal to the terminal event's output."""
    events = [orjson.loads(payload) for payload in out]
    assert all(payload.startswith(b'{"type":"') for payload in out)
    assert [e["sequence_number"] for e in events] == list(range(first_seq, first_seq + len(events)))
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == list(range(len(added)))
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=omit)
    done: list[dict[str, Any]] = []
    for event in events:
        shown = copy.deepcopy(event)
        if shown["type"] == "response.failed":  # our codes are outside the spec's enum of upstream codes
            shown["response"]["error"]["code"] = "server_error"
        assert_matches("ResponseStreamEvent", shown)
        EVENT.validate_python(shown)
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))  # type: ignore[arg-type]
        if event["type"] == "response.output_item.done":
            done.append(event["item"])
    terminal = events[-1]
    assert terminal["type"] in ("response.completed", "response.failed", "response.incomplete")
    assert terminal["response"]["output"] == done
    return events


def names_called(events: list[dict[str, Any]]) -> list[str]:
    return [e["item"]["name"] for e in events if e["type"] == "response.output_item.done"
            and e["item"]["type"] == "function_call"]


def test_text_stream_passes_as_the_same_bytes() -> None:
    payloads = Upstream(start=7).created().text("hello there, agent").completed()
    filt = ResponsesStreamFilter(offered("reader", fn("search")))
    out = [item for payload in payloads for item in filt.feed(payload)] + filt.finish()
    assert [orjson.loads(p) for p in out] == [orjson.loads(p) for p in payloads]
    # events that carry a Response (its "parallel_tool_calls" may spell a call) go out re-encoded; the rest as
    # the very bytes that came
    assert all(a is b for a, b in zip(out[2:-1], payloads[2:-1], strict=True))
    checked(out, first_seq=7)
    assert filt.next_sequence_number == 7 + len(payloads)


def test_denied_call_never_reaches_the_client_and_indexes_and_numbers_close_up() -> None:
    ctx = offered("reader", fn("search"), fn("bash"))
    payloads = (Upstream().created().text("let me look").call("bash", '{"cmd":"rm -rf /"}')
                .call("search", '{"q":"docs"}', fragment=2).text("done").completed())
    out = run(ctx, payloads)
    assert not any(b"bash" in payload or b"rm -rf" in payload for payload in out[:-7])
    events = checked(out)
    assert names_called(events) == ["search"]
    texts = [e["item"]["content"][0]["text"] for e in events if e["type"] == "response.output_item.done"
             and e["item"]["type"] == "message"]
    assert texts == ["let me look", "done", "removed bash"]
    assert [e["action"] for e in ctx.audit_events if e["stage"] == "stream"] == ["stripped", "allowed"]


def test_argument_conditions_are_decided_on_the_whole_fragmented_arguments() -> None:
    ctx = offered("coder", fn("deploy"))
    payloads = (Upstream().created().call("deploy", '{"environment": "staging"}', fragment=1)
                .call("deploy", '{"environment": "production"}', fragment=1).completed())
    events = checked(run(ctx, payloads))
    calls = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert calls[0].get("arguments") == '{"environment": "staging"}'
    assert len(calls) == 2 and calls[1]["type"] == "message"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert deltas == '{"environment": "staging"}'
    assert [e["rule"] for e in ctx.audit_events if e["stage"] == "stream"] == ["allow:deploy", "condition:deploy#1"]


def test_parallel_interleaved_calls_one_allowed_one_denied() -> None:
    ctx = offered("coder", fn("search"), fn("deploy"))
    up = Upstream().created().call_start("deploy").call_start("search")
    up.call_args(0, '{"environment":"production"}', 3).call_args(1, '{"q":"x"}', 2)
    up.call_done(1, '{"q":"x"}').call_done(0, '{"environment":"production"}')
    events = checked(run(ctx, up.completed()))
    assert names_called(events) == ["search"]
    assert all(e.get("output_index", 0) in (0, 1) for e in events)
    assert not any(e.get("item", {}).get("name") == "deploy" for e in events)


def test_a_done_item_that_differs_from_what_streamed_is_refused() -> None:
    ctx = offered("coder", fn("deploy"), fn("search"))
    swapped = call_item("deploy", '{"environment":"staging"}', 0)
    payloads = Upstream().created().call("deploy", '{"environment":"production"}', final=swapped).completed()
    events = checked(run(ctx, payloads))
    assert names_called(events) == []
    assert [e["rule"] for e in ctx.audit_events if e["stage"] == "stream"] == ["inconsistent-call"]
    renamed = call_item("deploy", '{"q":"x"}', 0)
    ctx = offered("coder", fn("deploy"), fn("search"))
    events = checked(run(ctx, Upstream().created().call("search", '{"q":"x"}', final=renamed).completed()))
    assert names_called(events) == []


def test_look_alike_call_types_and_names_are_dropped() -> None:
    ctx = offered("coder", fn("bash"), fn("search"))
    up = Upstream().created()
    up.add({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "Function_Call", "id": "fc_0", "call_id": "c0", "name": "bash", "arguments": "{}"}})
    up.add({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "Function_Call", "id": "fc_0", "call_id": "c0", "name": "bash", "arguments": "{}"}})
    up.output.append({"type": "Function_Call"})
    up.call("b\u0430sh", "{}").call("Bash ", "{}")
    up.output = [up.output[2]]
    events = checked(run(ctx, up.completed()))
    assert names_called(events) == ["Bash "]


def test_block_mode_ends_with_an_error_and_a_failed_response() -> None:
    ctx = offered("blocker", fn("search"), fn("deploy"))
    payloads = (Upstream(start=3).created().text("sure").call("deploy", '{"environment":"production"}')
                .text("after").completed())
    filt = ResponsesStreamFilter(ctx)
    out = [item for payload in payloads for item in filt.feed(payload)]
    assert filt.finish() == []
    events = checked(out, first_seq=3)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "tool_not_allowed" and events[-2]["param"] is None
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "tool_not_allowed"
    assert failed["id"] == "resp_1" and [i["type"] for i in failed["output"]] == ["message"]
    assert not any(b"deploy" in payload for payload in out[:-2])
    assert filt.next_sequence_number == 3 + len(out)
    assert filt.skeleton()["output"] == failed["output"]


def test_audit_only_passes_every_byte_and_records_would_strip() -> None:
    ctx = offered("shadow", fn("search"))
    up = Upstream().created().call("bash", '{"cmd":"ls"}').call("search", "{}")
    up.add({"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0,
            "delta": "", "Item": {"type": "function_call"}})
    payloads = up.completed()
    out = run(ctx, payloads)
    assert out == payloads
    assert [e["action"] for e in ctx.audit_events if e["stage"] == "stream"] == ["would_strip", "allowed",
                                                                                 "would_strip"]


def test_a_stream_cut_short_still_ends_with_a_terminal_event() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created().text("partial").call_start("search").call_args(1, '{"q": "x"}')
    out = run(ctx, up.payloads())
    events = [orjson.loads(p) for p in out]
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "stream_incomplete"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta") == \
        '{"q": "x"}'
    ctx = offered("shadow", fn("search"))
    out = run(ctx, Upstream().created().text("partial").payloads())
    assert orjson.loads(out[-1])["type"] == "response.failed"


def test_terminal_output_is_what_streamed_even_when_the_upstream_says_otherwise() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created().text("hi")
    up.output.append(call_item("bash", '{"cmd":"smuggled"}', 9))
    events = checked(run(ctx, up.completed()))
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["message"]
    assert not any("smuggled" in orjson.dumps(e).decode() for e in events)


def test_events_for_unknown_or_finished_items_and_after_the_end_are_dropped() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created().call("search", '{"q":"x"}')
    up.add({"type": "response.function_call_arguments.delta", "item_id": "fc_0", "output_index": 0,
            "delta": ',"extra":1'})
    up.add({"type": "response.function_call_arguments.delta", "item_id": "fc_7", "output_index": 7, "delta": "x"})
    payloads = up.completed()
    payloads.append(orjson.dumps({"type": "response.output_text.delta", "item_id": "m", "output_index": 0,
                                  "content_index": 0, "delta": "late", "logprobs": [], "sequence_number": 99}))
    events = checked(run(ctx, payloads))
    assert names_called(events) == ["search"]
    assert sum(e["rule"] == "out-of-order" for e in ctx.audit_events) == 2


def custom_call(up: Upstream, name: str, text: str) -> None:
    index = len(up.output)
    item = {"type": "custom_tool_call", "id": f"ctc_{index}", "call_id": f"call_{index}", "name": name, "input": ""}
    at = {"item_id": item["id"], "output_index": index}
    up.add({"type": "response.output_item.added", "output_index": index, "item": item})
    for i in range(0, len(text), 5):
        up.add({"type": "response.custom_tool_call_input.delta", **at, "delta": text[i:i + 5]})
    up.add({"type": "response.custom_tool_call_input.done", **at, "input": text})
    up.add({"type": "response.output_item.done", "output_index": index, "item": {**item, "input": text}})
    up.output.append({**item, "input": text})


def test_custom_tool_calls_stream_their_input_and_hosted_items_are_renumbered() -> None:
    custom = {"type": "custom", "name": "apply_diff"}
    ctx = offered("coder", custom, {"type": "custom", "name": "exec_anything"}, {"type": "web_search"})
    up = Upstream().created()
    custom_call(up, "exec_anything", "rm -rf / --no-preserve-root")
    up.add({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "web_search_call", "id": "ws_1", "status": "in_progress",
                     "action": {"type": "search", "query": "q"}}})
    up.add({"type": "response.web_search_call.searching", "output_index": 1, "item_id": "ws_1"})
    up.add({"type": "response.output_item.done", "output_index": 1,
            "item": {"type": "web_search_call", "id": "ws_1", "status": "completed",
                     "action": {"type": "search", "query": "q"}}})
    up.output.append({"type": "web_search_call"})
    custom_call(up, "apply_diff", "--- a\n+++ b\n")
    events = checked(run(ctx, up.completed()))
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in items] == ["web_search_call", "custom_tool_call", "message"]
    assert items[1]["input"] == "--- a\n+++ b\n"
    assert [e["output_index"] for e in events if e["type"] == "response.web_search_call.searching"] == [0]
    assert "".join(e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta") == \
        "--- a\n+++ b\n"


def test_stream_look_alike_keys_and_reused_indexes_are_refused() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created().text("one")
    up.add({"type": "response.output_item.added", "output_index": 0,
            "item": call_item("search", "{}", 5)})
    up.add({"type": "response.output_item.done", "output_index": 0, "item": message("one"),
            "Item": call_item("bash", "{}", 6)})
    out = run(ctx, up.completed())
    events = checked(out)
    assert not any(b"bash" in payload for payload in out)
    assert names_called(events) == []
    rules = [e["rule"] for e in ctx.audit_events if e["stage"] == "stream"]
    assert rules == ["out-of-order", "look-alike-key", "out-of-order"]


def test_a_message_that_turns_into_a_call_at_its_done_is_refused() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created()
    up.add({"type": "response.output_item.added", "output_index": 0,
            "item": {**message(""), "status": "in_progress", "content": []}})
    up.add({"type": "response.output_item.done", "output_index": 0, "item": call_item("search", "{}")})
    out = run(ctx, up.completed())
    assert not any(b"function_call" in payload for payload in out)
    assert orjson.loads(out[-1])["response"]["output"][0]["type"] == "message"


def test_a_call_held_behind_too_many_events_is_refused() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created().call_start("search")
    for _ in range(MAX_QUEUED):
        up.add({"type": "response.function_call_arguments.delta", "item_id": "fc_0", "output_index": 0, "delta": ""})
    out = run(ctx, up.payloads())
    assert not any(b"function_call" in payload for payload in out)
    assert any(e["rule"] == "oversized" for e in ctx.audit_events)


def test_skeleton_before_any_event_is_a_failed_response_the_sdk_reads() -> None:
    filt = ResponsesStreamFilter(offered("coder", fn("search")))
    out = filt.finish()
    event = orjson.loads(out[0])
    assert event["type"] == "response.failed" and event["sequence_number"] == 0
    assert filt.next_sequence_number == 1
    assert filt.skeleton()["output"] == []
    shown = copy.deepcopy(event)
    shown["response"]["error"]["code"] = "server_error"
    assert_matches("ResponseFailedEvent", shown)


def test_a_second_item_at_the_index_of_a_held_call_drops_both() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created().call_start("search").call_args(0, '{"q":"x"}')
    up.add({"type": "response.output_item.added", "output_index": 0, "item": {**message("hi"), "content": []}})
    up.call_done(0, '{"q":"x"}')
    out = run(ctx, up.completed())
    assert not any(b"function_call" in payload or b"msg_0" in payload for payload in out[:-7])
    assert names_called(checked(out)) == []


def test_calls_in_events_that_do_not_add_items_never_go_out() -> None:
    ctx = offered("coder", fn("search"))
    up = Upstream().created().text("hi")
    up.add({"type": "response.output_item.updated", "output_index": 0, "item": call_item("bash", "{}", 7)})
    up.add({"type": "response.vendor_extra", "response": {"output": [call_item("bash", "{}", 8)]}})
    out = run(ctx, up.completed())
    assert not any(b"bash" in payload for payload in out)
    assert [e["rule"] for e in ctx.audit_events if e["stage"] == "stream"] == ["out-of-order"]
