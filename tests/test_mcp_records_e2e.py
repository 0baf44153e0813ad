"""Records of MCP tool calls made through the real gateway: the official mcp client SDK as the agent, a fake MCP
server behind the router; each call leaves one ``mcp_calls`` row and its audit event (server, method, session in
``extra``) in a chain that verifies, and ``mcp report`` counts them. Runs once the gateway is in the tree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("router.mcp.gateway", reason="the MCP gateway is not in this tree yet")

from tests.fakes.mcp_fake import FakeMcpServer
from tests.harness import RouterServer, wait_until, write_config
from tests.ledger_helpers import query, run_cli
from tests.mcp_helpers import gateway_config, mcp_session

pytestmark = pytest.mark.timeout(120)

ROLES = """
  maintainer:
    mcp:
      servers: [github]
      tools: {allow: ["github:*"], deny: ["delete_*"]}
"""


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeMcpServer]:
    with FakeMcpServer.start_http(tmp_path, "github") as server:
        yield server


def test_calls_through_the_gateway_are_recorded_audited_and_reported(github: FakeMcpServer, tmp_path: Path) -> None:
    servers = f'  github:\n    url: "{github.url}"\n    timeout: 3\n'
    config = write_config(gateway_config(servers, ROLES, (("maintainer", "maintainer"),)), str(tmp_path))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    router = RouterServer(config, database_url=url, ledger_flush_interval=0.05).start()
    try:
        async def body() -> None:
            async with mcp_session(f"{router.url}/mcp/github", "maintainer-key") as session:
                await session.call_tool("get_issue", {"number": 7})
                await session.call_tool("delete_repo", {"repo": "x"})

        anyio.run(body)
        assert wait_until(lambda: len(query(url, "SELECT id FROM mcp_calls")) == 2, 10)
    finally:
        router.stop()
    rows = query(url, "SELECT * FROM mcp_calls ORDER BY id")
    assert [(r["server"], r["tool"], r["decision"], r["outcome"], r["agent"]) for r in rows] == [
        ("github", "get_issue", "allowed", "ok", "maintainer"), ("github", "delete_repo", "denied", "refused",
                                                                 "maintainer")]
    events = query(url, "SELECT * FROM audit_events WHERE stage = 'mcp' ORDER BY seq")
    assert [(e["tool"], e["action"], e["request_id"]) for e in events] == [
        ("github:get_issue", "allowed", rows[0]["request_id"]), ("github:delete_repo", "blocked",
                                                                 rows[1]["request_id"])]
    extra = json.loads(events[1]["extra"])
    assert (extra["server"], extra["method"], extra["session"]) == ("github", "tools/call", rows[1]["session"])
    assert run_cli("audit", "verify", url=url).returncode == 0
    report: dict[str, Any] = json.loads(run_cli("mcp", "report", "--format", "json", url=url).stdout)
    assert [(g["tool"], g["calls"], g["allowed"], g["denied"]) for g in report["groups"]] == [
        ("delete_repo", 1, 0, 1), ("get_issue", 1, 1, 0)]
