"""The mcp SDK's high-level ``Client`` against the gateway in both protocol eras.

``mode="legacy"`` opens a session (initialize, ``Mcp-Session-Id``); ``mode="2026-07-28"`` sends self-contained
requests with no handshake and no session, which the SDK's session manager serves on its per-request path
(``handle_modern_request``); ``mode="auto"`` probes and settles on the modern era. In every era the role's
filter decides what is listed and what is forwarded, and a refused call never reaches the server. Each test
also reads the wire: what the client sent, and what came back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import httpx2
import mcp.types as types
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from tests.fakes.mcp_fake import FakeMcpServer
from tests.harness import RouterServer, write_config
from tests.mcp_helpers import gateway_config, text_of

pytestmark = pytest.mark.timeout(90)

MODERN = "2026-07-28"
TOKEN = "gh-era-token-5a4b3c2d1e"
ROLES = """
  triager:
    mcp:
      servers: [github]
      tools:
        allow: ["github:get_issue", "github:search", "github:create_issue", "github:slow_progress",
                "github:ask_user"]
        conditions:
          - tool: "github:create_issue"
            when: {path: repo, op: glob, value: "prod*"}
            reason: agents do not file issues on production repositories
"""
SERVERS = """  github:
    url: "{url}"
    timeout: 5
    credentials:
      triager: {{headers: {{Authorization: "Bearer {token}"}}}}
"""
ERAS = ["legacy", MODERN, "auto"]
LISTED = {"get_issue", "search", "create_issue", "slow_progress", "ask_user"}


@dataclass
class Wire:
    """What one client put on the wire: each POST's JSON body and headers, each answer's status and headers."""

    sent: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def methods(self) -> list[str]:
        return [body.get("method", "") for body, _ in self.sent]

    def client(self, key: str) -> httpx2.AsyncClient:
        async def on_request(request: httpx2.Request) -> None:
            if request.method == "POST":
                self.sent.append((json.loads(request.content), {k.lower(): v for k, v in request.headers.items()}))

        async def on_response(response: httpx2.Response) -> None:
            self.answers.append((response.status_code, {k.lower(): v for k, v in response.headers.items()}))

        return httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=20,
                                  event_hooks={"request": [on_request], "response": [on_response]})


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMcpServer]:
    with FakeMcpServer.start_http(tmp_path_factory.mktemp("github"), "github") as server:
        yield server


@pytest.fixture(scope="module")
def router(github: FakeMcpServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterServer]:
    config = gateway_config(SERVERS.format(url=github.url, token=TOKEN), ROLES, (("triager", "triager"),))
    server = RouterServer(write_config(config, str(tmp_path_factory.mktemp("router")))).start()
    yield server
    server.stop()


async def _session(router: RouterServer, path: str, mode: str, wire: Wire,
                   calls: list[tuple[str, dict[str, Any]]]) -> tuple[str, set[str], list[types.CallToolResult]]:
    async with wire.client("triager-key") as http, \
            Client(streamable_http_client(f"{router.url}{path}", http_client=http), mode=mode) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        results = [await client.call_tool(name, arguments) for name, arguments in calls]
        return client.protocol_version, listed, results


def _assert_era(wire: Wire, mode: str) -> None:
    sessions = {headers.get("mcp-session-id") for _, headers in wire.answers} - {None}
    if mode == "legacy":
        assert wire.methods()[:2] == ["initialize", "notifications/initialized"]
        assert len(sessions) == 1  # one session, opened by initialize
        assert all(headers.get("mcp-session-id") in sessions for _, headers in wire.sent[1:])
        return
    assert "initialize" not in wire.methods() and not sessions  # no handshake, no session, both ways
    assert not any("mcp-session-id" in headers for _, headers in wire.sent)
    assert {headers["mcp-protocol-version"] for body, headers in wire.sent
            if body.get("method") in ("tools/list", "tools/call")} == {MODERN}


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize(("path", "prefix"), [("/mcp/github", ""), ("/mcp", "github__")], ids=["server", "aggregate"])
def test_each_era_lists_the_roles_tools_and_calls_an_allowed_one(router: RouterServer, github: FakeMcpServer,
                                                                 mode: str, path: str, prefix: str) -> None:
    wire = Wire()
    before = len(github.tool_calls("get_issue"))
    version, listed, (result,) = anyio.run(_session, router, path, mode, wire,
                                           [(f"{prefix}get_issue", {"number": 12})])

    assert version in HANDSHAKE_PROTOCOL_VERSIONS if mode == "legacy" else version == MODERN
    assert listed == {prefix + name for name in LISTED}
    assert not result.is_error and text_of(result) == "issue 12"
    calls = github.tool_calls("get_issue")[before:]
    assert [c["arguments"] for c in calls] == [{"number": 12}]
    assert calls[0]["headers"]["authorization"] == f"Bearer {TOKEN}"  # the role's credential went upstream
    _assert_era(wire, mode)


@pytest.mark.parametrize("mode", ERAS)
def test_each_era_refuses_a_hidden_tool_and_a_denying_condition(router: RouterServer, github: FakeMcpServer,
                                                                mode: str) -> None:
    wire = Wire()
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("delete_repo", {"repo": f"sandbox-{mode}"}),
        ("create_issue", {"repo": f"production-{mode}", "title": "t"}),
        ("create_issue", {"repo": f"sandbox-{mode}", "title": "t"})]
    _, _, (hidden, conditioned, allowed) = anyio.run(_session, router, "/mcp/github", mode, wire, attempts)

    assert hidden.is_error and "rule: default-deny" in text_of(hidden)
    assert conditioned.is_error and "production repositories" in text_of(conditioned)
    assert conditioned.meta is not None
    assert conditioned.meta["agent-router/decision"]["rule"] == "condition:github:create_issue#0"
    assert not allowed.is_error and text_of(allowed) == f"created sandbox-{mode}: t"
    repos = [c["arguments"]["repo"] for c in github.tool_calls() if c["tool"] in ("create_issue", "delete_repo")]
    assert f"sandbox-{mode}" in repos
    assert f"production-{mode}" not in repos and not github.tool_calls("delete_repo")
    _assert_era(wire, mode)


def test_a_modern_listing_is_never_cacheable_by_others(router: RouterServer) -> None:
    """A listing filtered for one role must not be kept in a shared cache and served to another: the modern
    answer says ``cacheScope: private``. Replays the SDK's own modern ``tools/list`` request by hand."""
    wire = Wire()
    anyio.run(_session, router, "/mcp/github", MODERN, wire, [])
    body, headers = next((b, h) for b, h in wire.sent if b.get("method") == "tools/list")
    replay = {k: v for k, v in headers.items() if k in ("authorization", "accept", "content-type",
                                                         "mcp-protocol-version") or k.startswith("mcp-")}
    with httpx.Client(base_url=router.url, timeout=10) as http:
        answer = http.post("/mcp/github", json=body, headers=replay)
        anonymous = http.post("/mcp/github", json=body, headers={k: v for k, v in replay.items()
                                                                  if k != "authorization"})
    assert answer.status_code == 200, answer.text
    assert "mcp-session-id" not in answer.headers
    result = answer.json()["result"]
    assert result["cacheScope"] == "private"
    assert {tool["name"] for tool in result["tools"]} == LISTED
    assert anonymous.status_code == 401 and "get_issue" not in anonymous.text  # every modern request authenticates


@pytest.mark.parametrize("mode", ["legacy", MODERN])
def test_progress_reaches_the_client_in_both_eras_and_elicitation_only_where_it_can(router: RouterServer,
                                                                                   mode: str) -> None:
    """A 2026-07-28 exchange has no channel for a server's own requests: the upstream's elicitation is refused
    (an error result, at once) instead of waiting for an answer that cannot come. Progress flows in both."""
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def elicit(ctx: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"answer": "yes"})

    async def body() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with httpx2.AsyncClient(headers={"Authorization": "Bearer triager-key"}, timeout=20) as http, \
                Client(streamable_http_client(f"{router.url}/mcp/github", http_client=http), mode=mode,
                       elicitation_callback=elicit, read_timeout_seconds=10) as client:
            with anyio.fail_after(20):
                slow = await client.call_tool("slow_progress", {"steps": 3}, progress_callback=on_progress)
                asked = await client.call_tool("ask_user", {"question": "deploy?"})
            return slow, asked

    slow, asked = anyio.run(body)
    assert not slow.is_error and text_of(slow) == "done"
    assert progress == [1.0, 2.0, 3.0]
    if mode == "legacy":
        assert not asked.is_error and text_of(asked) == "answer: yes"
    else:
        assert asked.is_error and "no back-channel" in text_of(asked)
