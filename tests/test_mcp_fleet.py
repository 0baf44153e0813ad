"""Two router replicas sharing one Redis count a role's tool-call limits together: whichever replica an agent
reaches, the limit holds for the fleet, and the fake MCP server's own record shows exactly the calls let through.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import mcp.types as types
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.backing_services import REDIS_URL, redis_prefix
from tests.fakes.mcp_fake import FakeMcpServer
from tests.harness import RouterServer, free_port, write_config
from tests.mcp_helpers import gateway_config, mcp_session, text_of

pytestmark = pytest.mark.timeout(120)

ROLES = """
  searcher:
    mcp:
      servers: [github]
      tools: {allow: ["github:search", "github:get_issue"]}
      limits:
        - {tool: "search", calls: 2, per: hour}
        - {tool: "github:get_issue", calls: 1, per: hour, scope: agent}
"""
AGENTS = (("ann", "searcher"), ("bob", "searcher"))
SERVERS = """  github:
    url: "{url}"
    timeout: 5
    credentials:
      searcher: {{headers: {{Authorization: "Bearer gh-fleet-token-77aa88bb"}}}}
"""


@pytest.fixture(scope="module")
def github(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeMcpServer]:
    with FakeMcpServer.start_http(tmp_path_factory.mktemp("github"), "github") as server:
        yield server


def _config(github: FakeMcpServer, tmp_path: Path) -> Path:
    return write_config(gateway_config(SERVERS.format(url=github.url), ROLES, AGENTS), str(tmp_path))


@pytest.fixture
def fleet(github: FakeMcpServer, tmp_path: Path) -> Iterator[list[RouterServer]]:
    """Two replicas on one Redis, under a key prefix of this test's own."""
    config = _config(github, tmp_path)
    with redis_prefix() as prefix:
        replicas = [RouterServer(config, redis_url=REDIS_URL, redis_prefix=prefix).start() for _ in range(2)]
        try:
            yield replicas
        finally:
            for replica in replicas:
                replica.stop()


async def _call(url: str, key: str, tool: str, arguments: dict[str, object], mode: str = "legacy"
                ) -> types.CallToolResult:
    """One call in its own client: a legacy session, or a 2026-07-28 exchange with no session at all."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=20) as http, \
            Client(streamable_http_client(f"{url}/mcp/github", http_client=http), mode=mode) as client:
        with anyio.fail_after(20):
            return await client.call_tool(tool, arguments)


def _queries(github: FakeMcpServer, prefix: str) -> list[str]:
    return [str(c["arguments"]["query"]) for c in github.tool_calls("search")
            if str(c["arguments"].get("query", "")).startswith(prefix)]


def test_a_role_limit_is_counted_across_both_replicas(fleet: list[RouterServer], github: FakeMcpServer,
                                                      request: pytest.FixtureRequest) -> None:
    one, two = (replica.url for replica in fleet)
    tag = request.node.name
    first = anyio.run(_call, one, "ann-key", "search", {"query": f"{tag}-1"})
    second = anyio.run(_call, two, "bob-key", "search", {"query": f"{tag}-2"}, "2026-07-28")
    third_one = anyio.run(_call, one, "bob-key", "search", {"query": f"{tag}-3"})
    third_two = anyio.run(_call, two, "ann-key", "search", {"query": f"{tag}-4"}, "2026-07-28")

    assert not first.is_error and not second.is_error, (text_of(first), text_of(second))
    for refused in (third_one, third_two):
        assert refused.is_error and "rule: limit:search#0" in text_of(refused), text_of(refused)
        assert "per hour for role 'searcher'" in text_of(refused)
    assert _queries(github, tag) == [f"{tag}-1", f"{tag}-2"]  # the server saw exactly the two let through


def test_an_agent_scoped_limit_follows_the_agent_not_the_replica(fleet: list[RouterServer],
                                                                 github: FakeMcpServer) -> None:
    one, two = (replica.url for replica in fleet)
    before = len(github.tool_calls("get_issue"))

    async def body() -> list[types.CallToolResult]:
        async with mcp_session(f"{one}/mcp/github", "ann-key") as ann_one, \
                mcp_session(f"{two}/mcp/github", "ann-key") as ann_two, \
                mcp_session(f"{two}/mcp/github", "bob-key") as bob_two:
            return [await ann_one.call_tool("get_issue", {"number": 1}),
                    await ann_two.call_tool("get_issue", {"number": 2}),
                    await bob_two.call_tool("get_issue", {"number": 3})]

    ann_first, ann_again, bob_first = anyio.run(body)
    assert not ann_first.is_error and text_of(ann_first) == "issue 1"
    assert ann_again.is_error and "for agent 'ann'" in text_of(ann_again)  # the other replica knew
    assert not bob_first.is_error and text_of(bob_first) == "issue 3"  # another agent of the role has its own
    assert [c["arguments"]["number"] for c in github.tool_calls("get_issue")[before:]] == [1, 3]


def test_a_limited_call_is_refused_when_the_shared_counters_are_unreachable(github: FakeMcpServer,
                                                                             tmp_path: Path) -> None:
    """Fail closed: a replica that cannot reach Redis cannot know how many calls the fleet made."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    replica = RouterServer(_config(github, tmp_path), redis_url=nowhere, redis_prefix="ar-test-nowhere:",
                           redis_timeout=0.2).start()
    try:
        result = anyio.run(_call, replica.url, "ann-key", "search", {"query": "unreachable-redis"})
    finally:
        replica.stop()
    assert result.is_error and "limits-unavailable" in text_of(result), text_of(result)
    assert not _queries(github, "unreachable-redis")
