"""The aggregated endpoint ``/mcp`` and stdio servers the router starts itself.

``/mcp`` presents every server a role may reach as one, names qualified ``<server>__<name>``; a server the role
may not reach is not there at all. A stdio server gets exactly the environment its config lists (never the
router's), one process per agent session or one shared, and is stopped when idle.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import anyio
import mcp.types as types
import pytest

from tests.fakes.mcp_fake import FakeMcpServer, read_records, stdio_spec
from tests.harness import RouterServer, wait_until, write_config
from tests.mcp_helpers import gateway_config, mcp_session, text_of

pytestmark = pytest.mark.timeout(120)

ROUTER_SECRET = "router-process-secret-42424242"
SHELL_TOKEN = "shell-ops-token-777777777"
ROLES = """
  reader:
    mcp: {servers: [github], tools: {allow: ["get_issue", "whoami"]}}
  ops:
    mcp:
      servers: ["*"]
      tools: {allow: ["*"], deny: ["github:delete_*", "shell:crash", "github:crash"]}
"""
AGENTS = (("reader", "reader"), ("ops", "ops"), ("ops2", "ops"))


def _servers(github: FakeMcpServer, shell: dict[str, Any], shared: dict[str, Any]) -> str:
    def stdio(name: str, spec: dict[str, Any], process: str) -> str:
        return f"""  {name}:
    command: {json.dumps(spec["command"])}
    args: {json.dumps(spec["args"])}
    cwd: {json.dumps(spec["cwd"])}
    env: {{LANG: C.UTF-8}}
    process: {process}
    idle_seconds: 2
    timeout: 5
    credentials:
      ops: {{env: {{FAKE_TOKEN: "{SHELL_TOKEN}"}}}}
"""
    return f'  github: {{url: "{github.url}", timeout: 5}}\n' + stdio("shell", shell, "per_session") + \
        stdio("tools", shared, "shared")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RouterServer, FakeMcpServer, dict[str, Any],
                                                                        dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("aggregate")
    shell, shared = stdio_spec(tmp, "shell"), stdio_spec(tmp, "tools")
    os.environ["AGENT_ROUTER_TEST_SECRET"] = ROUTER_SECRET
    try:
        with FakeMcpServer.start_http(tmp, "github") as github:
            config = write_config(gateway_config(_servers(github, shell, shared), ROLES, AGENTS), str(tmp))
            router = RouterServer(config).start()
            try:
                yield router, github, shell, shared
            finally:
                router.stop()
    finally:
        os.environ.pop("AGENT_ROUTER_TEST_SECRET", None)


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def test_the_aggregate_shows_each_roles_servers_qualified(setup: Any) -> None:
    router = setup[0]

    async def body(key: str) -> set[str]:
        async with mcp_session(f"{router.url}/mcp", key) as session:
            return {tool.name for tool in (await session.list_tools()).tools}

    reader, ops = run(body, "reader-key"), run(body, "ops-key")
    assert reader == {"github__get_issue", "github__whoami"}
    assert {"github__search", "shell__whoami", "tools__echo"} <= ops
    assert "github__delete_repo" not in ops and "shell__crash" not in ops and "shell__delete_repo" in ops
    assert "tools__crash" in ops


def test_a_call_on_the_aggregate_reaches_only_the_named_server(setup: Any) -> None:
    router, github, shell, _ = setup

    async def body() -> tuple[str, types.CallToolResult, types.CallToolResult]:
        async with mcp_session(f"{router.url}/mcp", "reader-key") as session:
            issue = text_of(await session.call_tool("github__get_issue", {"number": 11}))
            other = await session.call_tool("shell__whoami", {})
            bare = await session.call_tool("get_issue", {"number": 12})
            return issue, other, bare

    issue, other, bare = run(body)
    assert issue == "issue 11"
    assert other.is_error and "server-not-allowed" in text_of(other)
    assert bare.is_error
    assert not [r for r in read_records(shell["record"]) if r["method"] == "tools/call" and r.get("env", {}).get(
        "FAKE_TOKEN") is None]
    assert not [r for r in github.tool_calls("get_issue") if r["arguments"] == {"number": 12}]


def test_a_stdio_server_gets_only_its_configured_environment(setup: Any) -> None:
    router, _, shell, _ = setup

    async def body() -> str:
        async with mcp_session(f"{router.url}/mcp/shell", "ops-key") as session:
            return text_of(await session.call_tool("whoami", {}))

    assert run(body) == "***"  # the process got its token (below); the agent never sees it echoed
    calls = [r for r in read_records(shell["record"]) if r["method"] == "tools/call"]
    env = calls[-1]["env"]
    assert env.get("FAKE_TOKEN") == SHELL_TOKEN and env.get("LANG") == "C.UTF-8"
    assert "AGENT_ROUTER_TEST_SECRET" not in env and ROUTER_SECRET not in json.dumps(calls)
    assert not {"HOME", "PATH", "USER"} & set(env)


def test_per_session_processes_and_a_shared_one(setup: Any) -> None:
    router, _, shell, shared = setup

    async def pids(server: str) -> set[int]:
        seen = set()
        for key in ("ops-key", "ops2-key"):
            async with mcp_session(f"{router.url}/mcp/{server}", key) as session:
                await session.call_tool("whoami", {})
        for record in read_records((shell if server == "shell" else shared)["record"]):
            if record["method"] == "tools/call":
                seen.add(record["pid"])
        return seen

    assert len(run(pids, "shell")) >= 2
    assert len(run(pids, "tools")) == 1


def test_idle_stdio_processes_are_stopped(setup: Any) -> None:
    router, _, _, shared = setup

    async def body() -> None:
        async with mcp_session(f"{router.url}/mcp/tools", "ops-key") as session:
            await session.call_tool("whoami", {})

    run(body)
    pid = [r for r in read_records(shared["record"]) if r["method"] == "tools/call"][-1]["pid"]

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_until(gone, timeout=20), "the idle shared stdio server was not stopped"


def test_a_server_that_dies_mid_call_is_a_clear_error_and_the_next_call_starts_again(setup: Any) -> None:
    router = setup[0]

    async def body() -> tuple[types.CallToolResult, float, str]:
        async with mcp_session(f"{router.url}/mcp/tools", "ops-key") as session:
            started = time.monotonic()
            died = await session.call_tool("crash", {})
            took = time.monotonic() - started
            again = text_of(await session.call_tool("whoami", {}))
            return died, took, again

    died, took, again = run(body)
    assert died.is_error and "tools" in text_of(died) and took < 10
    assert again == "***"
