"""The MCP gateway end to end: a fake MCP server (the official SDK, its own process, recording every request it
receives), the router in front of it, and the official mcp client SDK as the agent.

Every refusal is proved twice: the agent gets an ``isError`` result naming the rule, and the fake server's own
record shows the call never reached it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as types
import pytest

from tests.fakes.mcp_fake import FakeMcpServer
from tests.harness import RouterServer, wait_until, write_config
from tests.mcp_helpers import gateway_config, mcp_session, text_of

pytestmark = pytest.mark.timeout(120)

READER_TOKEN = "gh-read-only-token-123456"
MAINTAINER_TOKEN = "gh-write-token-abcdef789"
ROLES = """
  reader:
    mcp:
      servers: [github]
      tools: {allow: ["github:get_issue", "github:search", "github:whoami", "github:echo", "github:slow_progress",
                      "github:ask_user", "github:hang", "github:big", "github:add_tool", "github:added_*"]}
      limits: [{tool: "search", calls: 2, per: hour, scope: agent}]
  maintainer:
    mcp:
      servers: ["git*"]
      tools:
        allow: ["github:*"]
        deny: ["delete_*", "crash"]
        conditions:
          - tool: "github:create_issue"
            when: {path: repo, op: glob, value: "prod*"}
            reason: agents do not file issues on production repositories
      limits: [{tool: "github:create_issue", calls: 3, per: hour}]
  auditor:
    on_violation: audit_only
    mcp: {servers: [github], tools: {allow: ["github:get_issue"]}}
"""
AGENTS = (("reader", "reader"), ("maintainer", "maintainer"), ("intruder", "reader"), ("auditor", "auditor"))


def _servers(url: str) -> str:
    return f"""  github:
    url: "{url}"
    timeout: 3
    max_result_bytes: 4194304
    credentials:
      reader: {{headers: {{Authorization: "Bearer {READER_TOKEN}"}}}}
      maintainer: {{headers: {{Authorization: "Bearer {MAINTAINER_TOKEN}"}}}}
      auditor: {{headers: {{Authorization: "Bearer auditor-token-000000"}}}}
"""


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMcpServer]:
    with FakeMcpServer.start_http(tmp_path_factory.mktemp("github"), "github") as server:
        yield server


@pytest.fixture(scope="module")
def router(github: FakeMcpServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterServer]:
    config = write_config(gateway_config(_servers(github.url), ROLES, AGENTS),
                          str(tmp_path_factory.mktemp("router")))
    server = RouterServer(config).start()
    yield server
    server.stop()


def run(coro_fn: Any, *args: Any) -> Any:
    return anyio.run(coro_fn, *args)


def _names(result: types.ListToolsResult) -> set[str]:
    return {tool.name for tool in result.tools}


def test_tools_list_shows_only_what_the_role_may_call(router: RouterServer) -> None:
    async def body() -> tuple[set[str], set[str]]:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key") as reader, \
                mcp_session(f"{router.url}/mcp/github", "maintainer-key") as maintainer:
            return _names(await reader.list_tools()), _names(await maintainer.list_tools())

    reader, maintainer = run(body)
    assert "get_issue" in reader and "search" in reader
    assert not reader & {"delete_repo", "create_issue", "crash"}
    assert "create_issue" in maintainer and "delete_repo" not in maintainer and "crash" not in maintainer


def test_an_allowed_call_reaches_the_server_with_the_roles_own_credential(router: RouterServer,
                                                                         github: FakeMcpServer) -> None:
    async def body() -> tuple[str, str, str]:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key") as reader, \
                mcp_session(f"{router.url}/mcp/github", "maintainer-key") as maintainer:
            issue = text_of(await reader.call_tool("get_issue", {"number": 7}))
            return issue, text_of(await reader.call_tool("whoami", {})), \
                text_of(await maintainer.call_tool("whoami", {}))

    issue, reader_sees, maintainer_sees = run(body)
    assert issue == "issue 7"
    # the server saw each role's own token; the agent never does, even when a server echoes it back
    assert READER_TOKEN not in reader_sees and MAINTAINER_TOKEN not in reader_sees and "***" in reader_sees
    assert MAINTAINER_TOKEN not in maintainer_sees
    recorded = github.tool_calls("whoami")
    tokens = {r["headers"].get("authorization") for r in recorded}
    assert f"Bearer {READER_TOKEN}" in tokens and f"Bearer {MAINTAINER_TOKEN}" in tokens
    assert all("reader-key" not in json.dumps(r) for r in github.calls())  # the agent's key never goes upstream


def test_denied_hidden_and_lookalike_calls_never_reach_the_server(router: RouterServer,
                                                                  github: FakeMcpServer) -> None:
    attempts = [("delete_repo", {"repo": "x"}, "maintainer-key", "deny:delete_*"),
                ("create_issue", {"repo": "x", "title": "t"}, "reader-key", "default-deny"),
                ("crash", {}, "reader-key", "default-deny"),
                ("DELETE_REPO", {"repo": "x"}, "maintainer-key", "not-listed"),
                ("ｄelete_repo", {"repo": "x"}, "maintainer-key", "not-listed"),
                ("delete_rеpo", {"repo": "x"}, "maintainer-key", "not-listed"),  # Cyrillic е
                ("delete_repo\u200b", {"repo": "x"}, "maintainer-key", "not-listed"),
                ("no_such_tool", {}, "maintainer-key", "not-listed")]
    before = len(github.tool_calls())

    async def body() -> list[types.CallToolResult]:
        results = []
        for name, arguments, key, _ in attempts:
            async with mcp_session(f"{router.url}/mcp/github", key) as session:
                results.append(await session.call_tool(name, arguments))
        return results

    for (name, _, _, rule), result in zip(attempts, run(body), strict=True):
        assert result.is_error, name
        assert f"rule: {rule}" in text_of(result), (name, text_of(result))
        assert result.meta is not None and result.meta["agent-router/decision"]["rule"] == rule
    time.sleep(0.2)
    assert len(github.tool_calls()) == before
    assert not github.tool_calls("delete_repo") and not github.tool_calls("crash")


def test_argument_conditions_decide_on_what_the_server_will_read(router: RouterServer,
                                                                 github: FakeMcpServer) -> None:
    async def body() -> list[types.CallToolResult]:
        async with mcp_session(f"{router.url}/mcp/github", "maintainer-key") as session:
            return [await session.call_tool("create_issue", {"repo": "production", "title": "t"}),
                    await session.call_tool("create_issue", {"repo": "sandbox", "title": "t"}),
                    await session.call_tool("create_issue", {"repo": 5, "title": "t"})]

    denied, allowed, undecidable = run(body)
    assert denied.is_error and "production repositories" in text_of(denied)
    assert not allowed.is_error
    assert undecidable.is_error and "condition:github:create_issue#0" in text_of(undecidable)
    repos = [r["arguments"]["repo"] for r in github.tool_calls("create_issue")]
    assert "sandbox" in repos and "production" not in repos and 5 not in repos


def _raw_session(router: RouterServer, key: str, path: str = "/mcp/github") -> tuple[httpx.Client, dict[str, str]]:
    """A session opened by hand (initialize + initialized) for requests the SDK would never send."""
    http = httpx.Client(base_url=router.url, timeout=10)
    headers = {"authorization": f"Bearer {key}", "accept": "application/json, text/event-stream",
               "content-type": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}}
    answer = http.post(path, json=init, headers=headers)
    assert answer.status_code == 200, answer.text
    headers["mcp-session-id"] = answer.headers["mcp-session-id"]
    headers["mcp-protocol-version"] = "2025-06-18"
    http.post(path, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return http, headers


def _sse_json(answer: httpx.Response) -> dict[str, Any]:
    if answer.headers.get("content-type", "").startswith("application/json"):
        return dict(answer.json())
    for line in answer.text.splitlines():
        if line.startswith("data:") and line[5:].strip():
            return dict(json.loads(line[5:]))
    raise AssertionError(f"no JSON-RPC message in {answer.text[:300]!r}")


def test_a_body_that_repeats_a_key_is_refused_before_any_decision(router: RouterServer,
                                                                  github: FakeMcpServer) -> None:
    http, headers = _raw_session(router, "maintainer-key")
    body = ('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "create_issue", '
            '"arguments": {"repo": "production", "repo": "sandbox", "title": "dup"}}}')
    answer = http.post("/mcp/github", content=body, headers=headers)
    assert answer.status_code == 400 and "repeats a key" in answer.text
    escaped = ('{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "create_issue", '
               '"arguments": {"repo": "\\u0070roduction", "title": "escaped"}}}')
    result = _sse_json(http.post("/mcp/github", content=escaped, headers=headers))["result"]
    assert result["isError"] and "production repositories" in result["content"][0]["text"]
    assert not [r for r in github.tool_calls("create_issue") if r["arguments"].get("title") in ("dup", "escaped")]


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'[{"jsonrpc": "2.0", "id": 9, "method": "tools/list"}]',
                                  b'{"jsonrpc": "2.0", "id": 9}', b'{"jsonrpc": "1.0", "id": 9, "method": "x"}',
                                  b'"just a string"', b"\x00\xff"])
def test_malformed_json_rpc_gets_a_json_rpc_error_not_a_traceback(router: RouterServer, body: bytes) -> None:
    http, headers = _raw_session(router, "reader-key")
    answer = http.post("/mcp/github", content=body, headers=headers)
    assert 400 <= answer.status_code < 500 or answer.status_code == 200, answer.text
    assert "Traceback" not in answer.text
    if answer.status_code != 202:
        message = _sse_json(answer)
        assert message.get("jsonrpc") == "2.0" and "error" in message, message


def test_a_session_belongs_to_the_key_and_endpoint_that_opened_it(router: RouterServer) -> None:
    http, headers = _raw_session(router, "reader-key")
    listing = {"jsonrpc": "2.0", "id": 5, "method": "tools/list"}
    assert http.post("/mcp/github", json=listing, headers=headers).status_code == 200
    stolen = {**headers, "authorization": "Bearer intruder-key"}
    assert http.post("/mcp/github", json=listing, headers=stolen).status_code == 404
    assert http.post("/mcp", json=listing, headers=headers).status_code == 404
    assert http.post("/mcp/github", json=listing, headers=headers).status_code == 200


def test_identity_failures_are_json_rpc_errors_with_the_right_status(router: RouterServer) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    accept = {"accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=router.url, timeout=10) as http:
        missing = http.post("/mcp/github", json=init, headers=accept)
        wrong = http.post("/mcp/github", json=init, headers={**accept, "authorization": "Bearer nope"})
        unknown = http.post("/mcp/nowhere", json=init, headers={**accept, "x-api-key": "reader-key"})
        hidden = http.post("/mcp/github", json=init, headers={**accept, "x-api-key": "auditor-key"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] < 0
    assert "www-authenticate" in missing.headers
    assert wrong.status_code == 401 and "nope" not in wrong.text
    assert unknown.status_code == 404 and unknown.json()["jsonrpc"] == "2.0"
    assert hidden.status_code != 404  # auditor may reach github: its key in x-api-key works


def test_oversized_arguments_and_bodies_are_refused(router: RouterServer, github: FakeMcpServer) -> None:
    async def body() -> types.CallToolResult:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key") as session:
            return await session.call_tool("echo", {"value": "x" * 70_000})

    result = run(body)
    assert result.is_error and "arguments-too-large" in text_of(result)
    http, headers = _raw_session(router, "reader-key")
    huge = {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"value": "y" * (5 * 1024 * 1024)}}}
    assert http.post("/mcp/github", json=huge, headers=headers).status_code == 413
    assert not [r for r in github.tool_calls("echo") if len(json.dumps(r["arguments"])) > 60_000]


def test_progress_and_elicitation_are_relayed_both_ways(router: RouterServer) -> None:
    progress: list[tuple[float, float | None]] = []
    questions: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async def on_elicit(context: Any, params: Any) -> types.ElicitResult:
        questions.append(params.message)
        return types.ElicitResult(action="accept", content={"answer": "blue"})

    async def body() -> tuple[str, str]:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key", elicitation_callback=on_elicit) as session:
            done = text_of(await session.call_tool("slow_progress", {"steps": 3}, progress_callback=on_progress))
            answer = text_of(await session.call_tool("ask_user", {"question": "favourite colour?"}))
            return done, answer

    done, answer = run(body)
    assert done == "done" and len(progress) == 3 and progress[-1][0] == 3
    assert questions == ["favourite colour?"] and answer == "answer: blue"


def test_a_hanging_server_gives_a_clear_error_and_cancellation_reaches_it(router: RouterServer,
                                                                          github: FakeMcpServer) -> None:
    cancels_before = len([r for r in github.calls() if r["method"] == "notifications/cancelled"])

    async def body() -> tuple[types.CallToolResult, float, str]:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key") as session:
            started = time.monotonic()
            hung = await session.call_tool("hang", {})
            took = time.monotonic() - started
            with anyio.move_on_after(1.0):
                await session.call_tool("hang", {})
            return hung, took, text_of(await session.call_tool("get_issue", {"number": 2}))

    hung, took, after = run(body)
    assert hung.is_error and "did not answer within 3s" in text_of(hung)
    assert took < 10
    assert after == "issue 2"
    # the timed-out call and the one the agent cancelled were both cancelled at the server too
    assert wait_until(lambda: len([r for r in github.calls() if r["method"] == "notifications/cancelled"])
                      >= cancels_before + 2, timeout=10)


def test_list_changed_is_relayed_and_the_new_tool_is_governed(router: RouterServer) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async def body() -> tuple[set[str], bool]:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key", message_handler=on_message) as session:
            await session.call_tool("add_tool", {"name": "added_tool"})
            with anyio.move_on_after(10):
                await changed.wait()
            return _names(await session.list_tools()), changed.is_set()

    names, notified = run(body)
    assert notified
    assert "added_tool" in names


def test_audit_only_lets_the_call_through(router: RouterServer, github: FakeMcpServer) -> None:
    async def body() -> types.CallToolResult:
        async with mcp_session(f"{router.url}/mcp/github", "auditor-key") as session:
            return await session.call_tool("search", {"query": "audited"})

    result = run(body)
    assert not result.is_error
    assert [r for r in github.tool_calls("search") if r["arguments"] == {"query": "audited"}]


def test_tool_limits_count_per_agent_and_per_role(router: RouterServer, github: FakeMcpServer) -> None:
    async def body(key: str, tool: str, arguments: dict[str, Any], times: int) -> list[types.CallToolResult]:
        async with mcp_session(f"{router.url}/mcp/github", key) as session:
            return [await session.call_tool(tool, arguments) for _ in range(times)]

    searches = run(body, "reader-key", "search", {"query": "limited"}, 3)
    assert [r.is_error for r in searches] == [False, False, True]
    assert "limit:search#0" in text_of(searches[2]) and "per hour for agent 'reader'" in text_of(searches[2])
    assert not run(body, "intruder-key", "search", {"query": "limited"}, 1)[0].is_error  # another agent's count
    assert len([r for r in github.tool_calls("search") if r["arguments"] == {"query": "limited"}]) == 3
    issues = run(body, "maintainer-key", "create_issue", {"repo": "limits", "title": "t"}, 4)
    assert [r.is_error for r in issues][-1] and "limit:github:create_issue#0" in text_of(issues[-1])


def test_resources_and_prompts_follow_server_access(router: RouterServer, github: FakeMcpServer) -> None:
    async def body() -> tuple[str, str]:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key") as session:
            resources = await session.list_resources()
            read = await session.read_resource(str(resources.resources[0].uri))
            prompt = await session.get_prompt("review", {"code": "x = 1"})
            return str(read.contents[0].text), str(prompt.messages[0].content.text)  # type: ignore[union-attr]

    readme, review = run(body)
    assert readme and "x = 1" in review


def test_the_router_logs_no_upstream_token(router: RouterServer, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key") as session:
            await session.call_tool("whoami", {})
            await session.call_tool("hang", {})

    with caplog.at_level("DEBUG"):
        run(body)
    assert READER_TOKEN not in caplog.text and MAINTAINER_TOKEN not in caplog.text


def test_a_reload_keeps_open_sessions_and_applies_the_new_policy(github: FakeMcpServer, tmp_path: Path) -> None:
    path = write_config(gateway_config(_servers(github.url), ROLES, AGENTS), str(tmp_path))
    server = RouterServer(path, admin_key="admin-key-for-reload").start()
    try:
        async def body() -> tuple[bool, bool, str]:
            async with mcp_session(f"{server.url}/mcp/github", "reader-key") as session:
                before = (await session.call_tool("echo", {"value": 1})).is_error
                path.write_text(path.read_text().replace('"github:echo", ', ""))
                async with httpx.AsyncClient(base_url=server.url) as http:
                    admin = {"authorization": "Bearer admin-key-for-reload"}
                    reloaded = await http.post("/admin/reload", headers=admin)
                    assert reloaded.status_code == 200, reloaded.text
                after = await session.call_tool("echo", {"value": 2})
                still = text_of(await session.call_tool("get_issue", {"number": 3}))
                return before, bool(after.is_error), still

        before, after, still = run(body)
    finally:
        server.stop()
    assert before is False and after is True and still == "issue 3"


def test_one_agent_cannot_take_every_session(github: FakeMcpServer, tmp_path: Path) -> None:
    path = write_config(gateway_config(_servers(github.url), ROLES, AGENTS), str(tmp_path))
    server = RouterServer(path, mcp_max_sessions_per_agent=2).start()
    try:
        first, first_headers = _raw_session(server, "reader-key")
        _raw_session(server, "reader-key")
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "raw", "version": "1"}}}
        accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        third = first.post("/mcp/github", json=init, headers={**accept, "authorization": "Bearer reader-key"})
        assert third.status_code == 429 and third.json()["error"]["code"] < 0
        _raw_session(server, "intruder-key")  # another agent of the same role has its own allowance
        assert first.delete("/mcp/github", headers=first_headers).status_code == 200
        assert wait_until(lambda: first.post("/mcp/github", json=init, headers={
            **accept, "authorization": "Bearer reader-key"}).status_code == 200, timeout=5)
    finally:
        server.stop()


def test_results_are_relayed_up_to_the_servers_cap_and_refused_beyond(router: RouterServer) -> None:
    async def body() -> tuple[types.CallToolResult, types.CallToolResult, str]:
        async with mcp_session(f"{router.url}/mcp/github", "reader-key", max_event_bytes=8 * 1024 * 1024) as session:
            # 1.5 MiB of text, twice in the result (content and structuredContent): above the SDK's 1 MiB SSE default
            big = await session.call_tool("big", {"size": 1536 * 1024})
            huge = await session.call_tool("big", {"size": 5 * 1024 * 1024})
            return big, huge, text_of(await session.call_tool("get_issue", {"number": 4}))

    big, huge, after = run(body)
    assert not big.is_error and len(text_of(big)) == 1536 * 1024
    assert huge.is_error and len(text_of(huge)) < 10_000
    assert after == "issue 4"


def test_a_server_that_dies_leaves_the_others_serving(tmp_path: Path) -> None:
    with FakeMcpServer.start_http(tmp_path, "github") as doomed, FakeMcpServer.start_http(tmp_path, "ci") as ci:
        servers = f'  github: {{url: "{doomed.url}", timeout: 5}}\n  ci: {{url: "{ci.url}", timeout: 5}}\n'
        roles = '  ops:\n    mcp: {servers: ["*"], tools: {allow: ["get_issue", "hang"]}}\n'
        path = write_config(gateway_config(servers, roles, (("ops", "ops"),)), str(tmp_path))
        server = RouterServer(path).start()
        try:
            async def body() -> tuple[types.CallToolResult, float, str, set[str], types.CallToolResult]:
                async with mcp_session(f"{server.url}/mcp", "ops-key") as session:
                    await session.call_tool("github__get_issue", {"number": 1})
                    await session.call_tool("ci__get_issue", {"number": 1})
                    started = time.monotonic()
                    async with anyio.create_task_group() as group:
                        died: list[types.CallToolResult] = []

                        async def hang() -> None:
                            died.append(await session.call_tool("github__hang", {}))

                        group.start_soon(hang)
                        await anyio.sleep(0.5)
                        await anyio.to_thread.run_sync(doomed.kill)
                    took = time.monotonic() - started
                    alive = text_of(await session.call_tool("ci__get_issue", {"number": 2}))
                    names = {tool.name for tool in (await session.list_tools()).tools}
                    again = await session.call_tool("github__get_issue", {"number": 3})
                    return died[0], took, alive, names, again

            died, took, alive, names, again = run(body)
        finally:
            server.stop()
    assert died.is_error and took < 8
    assert alive == "issue 2"
    assert "ci__get_issue" in names and not {n for n in names if n.startswith("github__")}
    assert again.is_error


def test_a_json_answering_server_is_bounded_too(tmp_path: Path) -> None:
    """A server answering JSON bodies (not SSE): results within the cap relayed, a larger declared body refused
    before it is read, and the session goes on."""
    with FakeMcpServer.start_http(tmp_path, "github", json_response=True) as plain:
        servers = f'  github: {{url: "{plain.url}", timeout: 5, max_result_bytes: 1048576}}\n'
        roles = '  ops:\n    mcp: {servers: [github], tools: {allow: ["get_issue", "big"]}}\n'
        path = write_config(gateway_config(servers, roles, (("ops", "ops"),)), str(tmp_path))
        server = RouterServer(path).start()
        try:
            async def body() -> tuple[types.CallToolResult, types.CallToolResult, str]:
                async with mcp_session(f"{server.url}/mcp/github", "ops-key",
                                       max_event_bytes=8 * 1024 * 1024) as session:
                    small = await session.call_tool("big", {"size": 100_000})
                    huge = await session.call_tool("big", {"size": 3 * 1024 * 1024})
                    return small, huge, text_of(await session.call_tool("get_issue", {"number": 5}))

            small, huge, after = run(body)
        finally:
            server.stop()
    assert not small.is_error and len(text_of(small)) == 100_000
    assert huge.is_error and "above 1114112" in text_of(huge)  # refused on its declared length, body unread
    assert after == "issue 5"
