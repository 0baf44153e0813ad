"""The OpenAI Agents SDK as an agent of both planes at once: its model goes through the router's model plane to a
scripted fake upstream, and its MCP tools come from the router's gateway in front of a fake MCP server.

The model is scripted to ask for a tool its role may use and for one it may not. The SDK is never offered the
forbidden tool (the gateway hides it), so it cannot run it; the fake MCP server's own record proves that only
the allowed tool ever executed, and the run still finishes with the model's answer. (The model plane strips the
forbidden call from the model's answer too, since the request never offered that tool: the SDK never sees it.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, set_tracing_disabled
from agents.mcp import MCPServerStreamableHttp

from tests.fakes.behaviours import Text, ToolCalls
from tests.fakes.mcp_fake import FakeMcpServer
from tests.fakes.upstream import FakeUpstream, Received
from tests.harness import RouterServer
from tests.responses_helpers import responses_config

pytestmark = pytest.mark.timeout(90)

CODER_KEY = "agents-sdk-mcp-coder-key"
GITHUB_TOKEN = "gh-coder-token-9f8e7d6c"
ISSUE_REASON = "agents do not file issues on production repositories"


def _extra(github_url: str) -> str:
    """The model plane lets every tool call through (``tools: allow: ["*"]``), so whatever keeps a tool from
    running here is the tool plane alone."""
    key_hash = "sha256:" + hashlib.sha256(CODER_KEY.encode()).hexdigest()
    return f"""
mcp_servers:
  github:
    url: "{github_url}"
    timeout: 5
    credentials:
      coder: {{headers: {{Authorization: "Bearer {GITHUB_TOKEN}"}}}}
roles:
  coder:
    models: ["*"]
    tools: {{allow: ["*"]}}
    mcp:
      servers: [github]
      tools:
        allow: ["github:*"]
        deny: ["delete_*", "crash"]
        conditions:
          - tool: "github:create_issue"
            when: {{path: repo, op: glob, value: "prod*"}}
            reason: {ISSUE_REASON}
agents:
  coder-1: {{role: coder, keys: [{{hash: "{key_hash}"}}]}}
"""


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI with the agent's key
    yield


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMcpServer]:
    with FakeMcpServer.start_http(tmp_path_factory.mktemp("github"), "github") as server:
        yield server


@pytest.fixture
def router(upstream: FakeUpstream, github: FakeMcpServer, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(responses_config(upstream.url, _extra(github.url)))


def _mcp_server(router: RouterServer, path: str, *, cache_tools_list: bool = True,
                seen: list[str] | None = None) -> MCPServerStreamableHttp:
    """The SDK's Streamable HTTP MCP client on the router, with the agent key; ``seen`` collects the JSON-RPC
    method of every message it posts (what crossed the wire, read from the requests themselves)."""
    params: dict[str, Any] = {"url": f"{router.url}{path}", "headers": {"Authorization": f"Bearer {CODER_KEY}"},
                              "timeout": 10}
    if seen is not None:
        async def note(request: httpx2.Request) -> None:
            if request.method == "POST":
                seen.append(json.loads(request.content).get("method", ""))

        def factory(headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None) -> Any:
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, event_hooks={"request": [note]})

        params["httpx_client_factory"] = factory
    return MCPServerStreamableHttp(params=params, cache_tools_list=cache_tools_list, name="github-via-router",
                                   client_session_timeout_seconds=10)


def _agent(router: RouterServer, server: MCPServerStreamableHttp) -> Agent:
    client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key=CODER_KEY, max_retries=0, timeout=30)
    return Agent(name="triage", instructions="Help with issues.", mcp_servers=[server],
                 model=OpenAIResponsesModel(model="native", openai_client=client))


async def _run(agent: Agent, server: MCPServerStreamableHttp, prompt: str) -> str:
    async with server:
        # The SDK's default for a call to a tool it was not given is to raise and end the run: a run that
        # finishes proves no forbidden call ever reached it.
        result = await Runner.run(agent, prompt, run_config=RunConfig(tracing_disabled=True), max_turns=4)
        return str(result.final_output)


def _output_text(item: dict[str, Any]) -> str:
    output = item["output"]
    if isinstance(output, str):
        return output
    return "".join(part.get("text", "") for part in output)


def _outputs(request: Received) -> dict[str, str]:
    """call id -> the tool output the SDK sent back in this model request."""
    return {item["call_id"]: _output_text(item) for item in request.body["input"]
            if item.get("type") == "function_call_output"}


def _calls(request: Received) -> dict[str, str]:
    """call id -> tool name of the function calls this model request replays."""
    return {item["call_id"]: item["name"] for item in request.body["input"] if item.get("type") == "function_call"}


def _offered(request: Received) -> set[str]:
    return {tool["name"] for tool in request.body.get("tools", [])}


def _by_name(request: Received) -> dict[str, str]:
    calls, outputs = _calls(request), _outputs(request)
    return {name: outputs[call_id] for call_id, name in calls.items()}


@pytest.mark.parametrize(("path", "prefix"), [("/mcp/github", ""), ("/mcp", "github__")], ids=["server", "aggregate"])
def test_only_the_allowed_mcp_tool_ever_runs(router: RouterServer, upstream: FakeUpstream, github: FakeMcpServer,
                                             path: str, prefix: str) -> None:
    issues_before, deletes_before = len(github.tool_calls("get_issue")), len(github.tool_calls("delete_repo"))
    upstream.queue("up-native",
                   ToolCalls([(f"{prefix}delete_repo", '{"repo": "production"}'),
                              (f"{prefix}get_issue", '{"number": 7}')], fragment=4),
                   Text("Issue 7 is open; I did not delete anything."))
    server = _mcp_server(router, path)

    final = asyncio.run(_run(_agent(router, server), server, "Read issue 7, then delete the production repo."))

    assert final == "Issue 7 is open; I did not delete anything."
    first, second = upstream.served("up-native")[-2:]
    offered = _offered(first)
    assert f"{prefix}get_issue" in offered and f"{prefix}search" in offered
    assert not {name for name in offered if "delete" in name or "crash" in name}  # hidden by the gateway
    assert _by_name(second) == {f"{prefix}get_issue": "issue 7"}  # the forbidden call was stripped on the way
    # the fake MCP server's own record: the allowed call arrived once, the forbidden one never
    issues = github.tool_calls("get_issue")[issues_before:]
    assert [call["arguments"] for call in issues] == [{"number": 7}]
    assert issues[0]["headers"]["authorization"] == f"Bearer {GITHUB_TOKEN}"  # the role's credential, not the key
    assert len(github.tool_calls("delete_repo")) == deletes_before == 0
    assert not any(CODER_KEY in json.dumps(record) for record in github.calls())


def test_without_a_cached_tool_list_every_turn_lists_again_and_sees_the_same_filter(
        router: RouterServer, upstream: FakeUpstream, github: FakeMcpServer) -> None:
    searches_before = len(github.tool_calls("search"))
    upstream.queue("up-native", ToolCalls([("search", '{"query": "flaky"}')]),
                   ToolCalls([("delete_repo", '{"repo": "sandbox"}'), ("get_issue", '{"number": 3}')]),
                   Text("Found them."))
    seen: list[str] = []
    server = _mcp_server(router, "/mcp/github", cache_tools_list=False, seen=seen)

    final = asyncio.run(_run(_agent(router, server), server, "Search for flaky tests."))

    assert final == "Found them."
    turns = upstream.served("up-native")[-3:]
    assert seen.count("tools/list") >= len(turns)  # asked the router again before every model turn
    for turn in turns:
        assert "search" in _offered(turn) and "delete_repo" not in _offered(turn)
    assert _by_name(turns[1]) == {"search": "results for flaky"}
    assert _by_name(turns[2]) == {"search": "results for flaky", "get_issue": "issue 3"}
    assert [c["arguments"] for c in github.tool_calls("search")[searches_before:]] == [{"query": "flaky"}]
    assert not github.tool_calls("delete_repo")
    assert seen.count("tools/call") == 2  # search and get_issue: delete_repo was never even sent


def test_a_call_denied_by_a_condition_reaches_the_model_as_the_tool_output(
        router: RouterServer, upstream: FakeUpstream, github: FakeMcpServer) -> None:
    upstream.queue("up-native",
                   ToolCalls([("create_issue", '{"repo": "production", "title": "outage"}')]),
                   # the fake names a call by its position and tool: a second position keeps the ids apart
                   ToolCalls([("get_issue", '{"number": 1}'),
                              ("create_issue", '{"repo": "sandbox", "title": "outage"}')]),
                   Text("Filed it in sandbox instead."))
    server = _mcp_server(router, "/mcp/github")

    final = asyncio.run(_run(_agent(router, server), server, "File an outage issue."))

    assert final == "Filed it in sandbox instead."
    first, second, third = upstream.served("up-native")[-3:]
    assert "create_issue" in _offered(first)  # offered: only this call's arguments are refused
    refused = _by_name(second)["create_issue"]
    assert ISSUE_REASON in refused and "condition:github:create_issue#0" in refused
    assert _outputs(third)["call_1_create_issue"] == "created sandbox: outage"
    repos = [call["arguments"]["repo"] for call in github.tool_calls("create_issue")]
    assert "sandbox" in repos and "production" not in repos
