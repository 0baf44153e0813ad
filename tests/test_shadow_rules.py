"""Rules in shadow (issue 15, item 4): a deny entry or a condition with ``shadow: true`` decides every call and
records ``would_deny`` (rule ``shadow:...``) without enforcing, while the rest of the role enforces, on both
planes; ``agent-router audit report --shadow`` and ``GET /admin/audit/shadow`` sum up what they would have
changed, with example request ids, and the figures equal what was sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest

from router.config import ConfigError, load_snapshot
from tests.configs import openai_config
from tests.fakes.behaviours import ToolCalls
from tests.fakes.mcp_fake import FakeMcpServer
from tests.harness import RouterServer, wait_until, write_config
from tests.mcp_helpers import agents, mcp_session, text_of

pytestmark = pytest.mark.timeout(120)

ADMIN = "admin-key-for-shadow"
PROD = '{"environment": "production"}'
ROLES = """
roles:
  ops:
    models: ["*"]
    tools:
      allow: ["search", "delete_environment", "deploy", "read_secrets"]
      deny:
        - read_secrets
        - {pattern: "delete_*", shadow: true, reason: deletions will need approval}
      conditions:
        - tool: deploy
          when: {path: environment, op: eq, value: production}
          shadow: true
    mcp:
      servers: [github]
      tools:
        allow: ["github:*"]
        deny: [{pattern: "delete_*", shadow: true}, "crash"]
"""


def _config(upstream_url: str, mcp_url: str) -> str:
    return openai_config(upstream_url, ROLES + agents(("ops-1", "ops"), ("ops-2", "ops"))) + \
        f'mcp_servers:\n  github: {{url: "{mcp_url}", timeout: 5}}\n'


@pytest.fixture
def github(tmp_path: Path) -> Any:
    with FakeMcpServer.start_http(tmp_path, "github") as server:
        yield server


@pytest.fixture
def router(upstream: Any, github: FakeMcpServer, start_router: Any) -> RouterServer:
    server: RouterServer = start_router(_config(upstream.openai_base_url, github.url), admin_key=ADMIN,
                                        ledger_flush_interval=0.05)
    return server


def _tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def _shadow_events(router: RouterServer) -> list[dict[str, Any]]:
    with router.http() as http:
        answer = http.get("/admin/audit", params={"action": "would_deny", "limit": 1000},
                          headers={"authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200, answer.text
    return [row for row in answer.json()["data"] if str(row["rule"]).startswith("shadow:")]


def test_a_shadow_rule_records_and_the_rest_of_the_role_enforces(router: RouterServer, upstream: Any) -> None:
    upstream.queue("up-primary", ToolCalls(calls=[("delete_environment", PROD), ("deploy", PROD),
                                                  ("read_secrets", "{}"), ("search", '{"q": "x"}')]))
    client = openai.OpenAI(base_url=f"{router.url}/v1", api_key="ops-1-key", max_retries=0)
    answer = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "go"}],
                                            tools=[_tool(n) for n in ("search", "delete_environment", "deploy")])
    called = [call.function.name for call in answer.choices[0].message.tool_calls or []]
    assert called == ["delete_environment", "deploy", "search"]  # shadow rules do not enforce
    assert upstream.served()[0].tool_names == ["search", "delete_environment", "deploy"]
    assert wait_until(lambda: len(_shadow_events(router)) >= 3, timeout=10)
    rules = {(row["tool"], row["rule"], row["stage"]) for row in _shadow_events(router)}
    assert ("delete_environment", "shadow:deny:delete_*", "request") in rules
    assert ("delete_environment", "shadow:deny:delete_*", "response") in rules
    assert ("deploy", "shadow:condition:deploy#0", "response") in rules
    assert not [r for r in rules if r[0] == "search"]


def test_a_shadow_rule_on_the_tool_plane_lets_the_call_reach_the_server(router: RouterServer,
                                                                         github: FakeMcpServer) -> None:
    async def body() -> tuple[Any, Any]:
        async with mcp_session(f"{router.url}/mcp/github", "ops-1-key") as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert "delete_repo" in names and "crash" not in names
            return await session.call_tool("delete_repo", {"repo": "old"}), await session.call_tool("crash", {})

    deleted, crashed = anyio.run(body)
    assert not deleted.is_error and github.tool_calls("delete_repo")
    assert crashed.is_error and "deny:crash" in text_of(crashed)
    assert wait_until(lambda: any(row["tool"] == "github:delete_repo" for row in _shadow_events(router)), 10)


def test_the_shadow_report_counts_what_was_sent(router: RouterServer, upstream: Any, github: FakeMcpServer) -> None:
    sent = 3
    for agent in ("ops-1", "ops-2", "ops-1"):
        upstream.queue("up-primary", ToolCalls(calls=[("delete_environment", PROD)]))
        openai.OpenAI(base_url=f"{router.url}/v1", api_key=f"{agent}-key", max_retries=0).chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "go"}], tools=[_tool("delete_environment")])

    async def mcp_calls() -> None:
        async with mcp_session(f"{router.url}/mcp/github", "ops-2-key") as session:
            for repo in ("a", "b"):
                await session.call_tool("delete_repo", {"repo": repo})

    anyio.run(mcp_calls)
    with router.http() as http:
        def report() -> dict[str, Any]:
            answer = http.get("/admin/audit/shadow", headers={"authorization": f"Bearer {ADMIN}"})
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        assert wait_until(lambda: report()["total"] >= 2 * sent + 2, timeout=10)
        groups = {(g["plane"], g["tool"], g["rule"]): g for g in report()["groups"]}
    model = groups[("model", "delete_environment", "shadow:deny:delete_*")]
    assert model["calls"] == 2 * sent and model["agents"] == 2 and model["role"] == "ops"  # request + response
    assert 1 <= len(model["examples"]) <= 3
    tool_plane = groups[("mcp", "github:delete_repo", "shadow:deny:delete_*")]
    assert tool_plane["calls"] == 2 and tool_plane["agents"] == 1
    database = router.settings.database_url
    time.sleep(0.2)
    cli = subprocess.run([sys.executable, "-m", "router", "audit", "report", "--shadow", "--format", "json",
                          "--database-url", database], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["total"] == report_total(router)
    table = subprocess.run([sys.executable, "-m", "router", "audit", "report", "--shadow", "--database-url",
                            database], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "shadow:deny:delete_*" in table.stdout


def report_total(router: RouterServer) -> int:
    with httpx.Client(base_url=router.url) as http:
        return int(http.get("/admin/audit/shadow", headers={"authorization": f"Bearer {ADMIN}"}).json()["total"])


def test_a_bad_shadow_entry_is_refused_with_its_line(tmp_path: Path) -> None:
    text = """
providers: {mock: {type: mock}}
deployments: {m: {provider: mock, model: mock}}
models: {m: [m]}
roles:
  ops:
    models: ["*"]
    tools:
      allow: ["*"]
      deny:
        - {pattern: "bad pattern!", shadow: true}
"""
    with pytest.raises(ConfigError) as caught:
        load_snapshot(str(write_config(text, str(tmp_path))))
    assert ":11:" in str(caught.value) and "bad pattern!" in str(caught.value)
